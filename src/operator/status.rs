//! Conditions and phase (pure). `lastTransitionTime` changes only when a condition's status does.

use crate::tenant::{
    BackupStatus, ConditionType, DnsRecordStatus, RestoreStatus, TenantPhase, TenantStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One condition as a reconcile found it.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: ConditionType,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Finding {
    pub fn ok(kind: ConditionType, reason: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            ok: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn failed(kind: ConditionType, reason: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            ok: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

pub struct Observed<'a> {
    pub generation: Option<i64>,
    pub suspended: bool,
    pub findings: &'a [Finding],
    pub n8n_url: String,
    pub namespace: String,
    pub dns_records: Vec<DnsRecordStatus>,
    pub encryption_key_fingerprint: Option<String>,
    /// The image n8n rolled out with, when it did; else the recorded one stays.
    pub n8n_image: Option<String>,
    /// Backups: `status.backup`, `status.restore` and BackupReady (reported beside the other
    /// conditions; a failing backup target does not make the tenant unready).
    pub backups: BackupObserved,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupObserved {
    pub status: Option<BackupStatus>,
    pub restore: Option<RestoreStatus>,
    pub ready: Option<Finding>,
}

/// The status to write, given what is there now.
pub fn compute(previous: Option<&TenantStatus>, observed: Observed<'_>, now: Time) -> TenantStatus {
    let all_ok = observed.findings.iter().all(|f| f.ok);
    let ready = if observed.suspended {
        Finding::failed(
            ConditionType::Ready,
            "Suspended",
            "the tenant is suspended (spec.suspended)",
        )
    } else if all_ok {
        Finding::ok(
            ConditionType::Ready,
            "AllReady",
            "n8n, routes, DNS and the engine registration are ready",
        )
    } else {
        let pending: Vec<&str> = observed
            .findings
            .iter()
            .filter(|f| !f.ok)
            .map(|f| f.kind.as_str())
            .collect();
        Finding::failed(
            ConditionType::Ready,
            "NotReady",
            format!("waiting for {}", pending.join(", ")),
        )
    };
    let phase = if observed.suspended {
        TenantPhase::Suspended
    } else if all_ok {
        TenantPhase::Ready
    } else if observed
        .findings
        .iter()
        .any(|f| !f.ok && f.reason != "Progressing")
    {
        TenantPhase::Degraded
    } else {
        TenantPhase::Provisioning
    };
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let [reconciling, stalled] = kstatus(observed.findings, observed.suspended);
    let conditions = std::iter::once(&ready)
        .chain(observed.findings.iter())
        .chain([&reconciling, &stalled])
        .chain(observed.backups.ready.as_ref())
        .map(|f| condition(f, previous_conditions, observed.generation, &now))
        .collect();
    TenantStatus {
        phase: Some(phase),
        observed_generation: observed.generation,
        conditions,
        n8n_url: Some(observed.n8n_url),
        namespace: Some(observed.namespace),
        dns_records: observed.dns_records,
        encryption_key_fingerprint: observed.encryption_key_fingerprint,
        n8n_image: observed
            .n8n_image
            .or_else(|| previous.and_then(|p| p.n8n_image.clone())),
        backup: observed.backups.status,
        restore: observed.backups.restore,
    }
}

/// Reconciling and Stalled, as kstatus (kubectl wait, Flux, Argo CD) reads them: at most one of
/// them True. A failure that is not mere progress stalls the tenant until someone acts (or the
/// cause goes away: the operator retries with backoff); anything else pending is progress.
/// In this Finding, `ok` means the condition is True.
fn kstatus(findings: &[Finding], suspended: bool) -> [Finding; 2] {
    let (reconciling, stalled) = (ConditionType::Reconciling, ConditionType::Stalled);
    if let Some(failed) = findings.iter().find(|f| !f.ok && f.reason != "Progressing") {
        return [
            Finding::failed(
                reconciling,
                "Stalled",
                "stopped by a failure: see the Stalled condition",
            ),
            Finding::ok(
                stalled,
                &failed.reason,
                format!("{}: {}", failed.kind.as_str(), failed.message),
            ),
        ];
    }
    let no_failure = Finding::failed(stalled, "NoFailure", "no condition reports a failure");
    let pending: Vec<&str> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.kind.as_str())
        .collect();
    let reconciling = if !pending.is_empty() {
        Finding::ok(
            reconciling,
            "Progressing",
            format!("waiting for {}", pending.join(", ")),
        )
    } else if suspended {
        Finding::failed(reconciling, "Suspended", "the tenant is suspended")
    } else {
        Finding::failed(reconciling, "Reconciled", "the spec is in effect")
    };
    [reconciling, no_failure]
}

/// The status of a Tenant whose deletion waits for someone to act: Ready False, Stalled True
/// saying why, Reconciling False; the other conditions as they were.
pub fn deletion_blocked(
    previous: Option<&TenantStatus>,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: Time,
) -> TenantStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let blocked = [
        Finding::failed(ConditionType::Ready, "DeletionBlocked", message),
        Finding::failed(
            ConditionType::Reconciling,
            "Stalled",
            "stopped: see the Stalled condition",
        ),
        Finding::ok(ConditionType::Stalled, reason, message),
    ];
    for finding in &blocked {
        let updated = condition(finding, &status.conditions, generation, &now);
        match status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == updated.type_)
        {
            Some(existing) => *existing = updated,
            None => status.conditions.push(updated),
        }
    }
    status.phase = Some(TenantPhase::Terminating);
    status.observed_generation = generation;
    status
}

fn condition(
    finding: &Finding,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if finding.ok { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == finding.kind.as_str() && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: finding.kind.as_str().to_owned(),
        status: status.to_owned(),
        reason: finding.reason.clone(),
        message: finding.message.clone(),
        last_transition_time: last,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn observed(findings: &[Finding], suspended: bool) -> Observed<'_> {
        Observed {
            generation: Some(2),
            suspended,
            findings,
            n8n_url: "https://x".into(),
            namespace: "tenant-x".into(),
            dns_records: vec![],
            encryption_key_fingerprint: None,
            n8n_image: None,
            backups: BackupObserved::default(),
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let waiting = [Finding::failed(
            ConditionType::N8nReady,
            "Progressing",
            "0/1 available",
        )];
        let first = compute(None, observed(&waiting, false), at(100));
        assert_eq!(first.phase, Some(TenantPhase::Provisioning));
        let again = compute(Some(&first), observed(&waiting, false), at(200));
        assert_eq!(
            again.conditions[1].last_transition_time,
            at(100),
            "same status: time kept"
        );
        let done = [Finding::ok(
            ConditionType::N8nReady,
            "Available",
            "1/1 available",
        )];
        let ready = compute(Some(&again), observed(&done, false), at(300));
        assert_eq!(ready.phase, Some(TenantPhase::Ready));
        assert_eq!(ready.conditions[0].type_, "Ready");
        assert_eq!(ready.conditions[0].status, "True");
        assert_eq!(ready.conditions[1].last_transition_time, at(300));
        assert_eq!(ready.observed_generation, Some(2));
    }

    fn find<'a>(status: &'a TenantStatus, kind: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn kstatus_conditions_follow_progress_failure_and_readiness() {
        let waiting = [Finding::failed(
            ConditionType::N8nReady,
            "Progressing",
            "0/1 available",
        )];
        let progressing = compute(None, observed(&waiting, false), at(1));
        assert_eq!(find(&progressing, "Reconciling").status, "True");
        assert_eq!(
            find(&progressing, "Reconciling").message,
            "waiting for N8nReady"
        );
        assert_eq!(find(&progressing, "Stalled").status, "False");

        let broken = [
            waiting[0].clone(),
            Finding::failed(
                ConditionType::EngineRegistered,
                "CredentialsSecretMissing",
                "create it",
            ),
        ];
        let stalled = compute(Some(&progressing), observed(&broken, false), at(2));
        let condition = find(&stalled, "Stalled");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", "CredentialsSecretMissing")
        );
        assert_eq!(condition.message, "EngineRegistered: create it");
        assert_eq!(find(&stalled, "Reconciling").status, "False");

        let done = [Finding::ok(ConditionType::N8nReady, "Available", "1/1")];
        let ready = compute(Some(&stalled), observed(&done, false), at(3));
        for kind in ["Reconciling", "Stalled"] {
            assert_eq!(find(&ready, kind).status, "False", "{kind}");
        }
        assert_eq!(find(&ready, "Ready").status, "True");
        assert!(
            ready
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2)),
            "every condition says which generation it describes"
        );
        let suspended = compute(Some(&ready), observed(&done, true), at(4));
        assert_eq!(find(&suspended, "Reconciling").reason, "Suspended");
        assert_eq!(find(&suspended, "Stalled").status, "False");
    }

    #[test]
    fn a_blocked_deletion_stalls_and_keeps_the_other_conditions() {
        let done = [Finding::ok(ConditionType::N8nReady, "Available", "1/1")];
        let ready = compute(None, observed(&done, false), at(1));
        let blocked = deletion_blocked(
            Some(&ready),
            Some(3),
            "SnapshotUnavailable",
            "no backups",
            at(5),
        );
        assert_eq!(blocked.phase, Some(TenantPhase::Terminating));
        assert_eq!(blocked.observed_generation, Some(3));
        assert_eq!(find(&blocked, "Ready").reason, "DeletionBlocked");
        let stalled = find(&blocked, "Stalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "SnapshotUnavailable")
        );
        assert_eq!(stalled.last_transition_time, at(5));
        assert_eq!(find(&blocked, "N8nReady"), find(&ready, "N8nReady"));
        assert_eq!(blocked.conditions.len(), ready.conditions.len());
    }

    #[test]
    fn errors_degrade_and_suspension_wins() {
        let broken = [Finding::failed(
            ConditionType::EngineRegistered,
            "CredentialsSecretMissing",
            "create it",
        )];
        assert_eq!(
            compute(None, observed(&broken, false), at(1)).phase,
            Some(TenantPhase::Degraded)
        );
        let suspended = compute(None, observed(&broken, true), at(1));
        assert_eq!(suspended.phase, Some(TenantPhase::Suspended));
        assert_eq!(suspended.conditions[0].reason, "Suspended");
    }
}
