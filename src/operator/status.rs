//! Conditions and phase (pure). `lastTransitionTime` changes only when a condition's status does.

use crate::tenant::{ConditionType, DnsRecordStatus, TenantPhase, TenantStatus};
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
    let conditions = std::iter::once(&ready)
        .chain(observed.findings.iter())
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
    }
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
