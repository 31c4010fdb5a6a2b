//! One tenant's upgrade, one step at a time (pure): Pending → (BackingUp →) Upgrading →
//! Upgraded, or → RollingBack → RolledBack / Failed. Each step says what to write on the Tenant;
//! the caller writes it before it records the new state.

use crate::operator::rollout::view::TenantView;
use crate::tenant::{TenantRolloutSpec, TenantUpgrade, UpgradeState};
use chrono::{DateTime, Utc};

/// Annotation that asks the operator's backups for a backup now; its value is the request id,
/// echoed in `status.backup.lastRequest.id` with the outcome.
pub const BACKUP_NOW_ANNOTATION: &str = "flomastr.io/backup-now";
/// Annotation that asks the operator's backups to restore the named backup.
pub const RESTORE_FROM_ANNOTATION: &str = "flomastr.io/restore-from";

/// A change to make on the Tenant.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Run this n8n image (`flomastr.io/n8n-image`).
    Image(String),
    /// Take a backup, with this request id.
    Backup(String),
    /// Restore this backup.
    Restore(String),
}

/// What the tenant's n8n is doing, read for tenants with a step in progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct N8nSeen {
    /// The image n8n is rolled out with and ready, if any.
    pub ready_with: Option<String>,
    /// A pod of the entry's new image started a container.
    pub new_image_started: bool,
    /// Why n8n is not ready, when its pods say.
    pub trouble: Option<String>,
}

/// A tenant's upgrade starts: it is skipped, fails at once, or its first step is requested.
pub fn start(
    spec: &TenantRolloutSpec,
    entry: &mut TenantUpgrade,
    tenant: &TenantView,
    default_image: &str,
    request_id: &str,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let to = entry.to.clone();
    if let Some(pinned) = &tenant.pinned {
        set(
            entry,
            UpgradeState::Skipped,
            "Pinned",
            format!("spec.n8n.image pins {pinned}"),
            now,
        );
        return vec![];
    }
    if tenant.scaled_down {
        set(
            entry,
            UpgradeState::Skipped,
            "ScaledDown",
            "suspended or scaled to zero: no n8n to check; it keeps its version".into(),
            now,
        );
        return vec![];
    }
    let current = tenant.effective(default_image);
    if current == to && tenant.running.as_deref() == Some(to.as_str()) {
        entry.from = Some(current);
        set(
            entry,
            UpgradeState::Upgraded,
            "AlreadyRunning",
            format!("runs {to}"),
            now,
        );
        return vec![];
    }
    entry.from = Some(tenant.running.clone().unwrap_or(current));
    entry.data_touched = false;
    entry.backup_name = None;
    if !spec.require_backup {
        set(
            entry,
            UpgradeState::Upgrading,
            "Upgrading",
            format!("waiting for n8n {to} to be ready"),
            now,
        );
        return vec![Write::Image(to)];
    }
    if !tenant.backup_configured {
        set(
            entry,
            UpgradeState::Failed,
            "NoBackupConfigured",
            "requireBackup is true but the Tenant has no spec.backup: configure its backups (or set requireBackup: false)".into(),
            now,
        );
        return vec![];
    }
    entry.backup_request = Some(request_id.to_owned());
    set(
        entry,
        UpgradeState::BackingUp,
        "BackingUp",
        format!("backup {request_id} requested"),
        now,
    );
    vec![Write::Backup(request_id.to_owned())]
}

/// The next step of a tenant whose upgrade is in progress.
pub fn advance(
    spec: &TenantRolloutSpec,
    entry: &mut TenantUpgrade,
    tenant: &TenantView,
    n8n: &N8nSeen,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let elapsed = entry
        .since
        .as_deref()
        .and_then(|since| DateTime::parse_from_rfc3339(since).ok())
        .map(|since| (now - since.with_timezone(&Utc)).num_seconds())
        .unwrap_or(0);
    match entry.state {
        UpgradeState::BackingUp => backing_up(spec, entry, tenant, elapsed, now),
        UpgradeState::Upgrading => upgrading(spec, entry, n8n, elapsed, now),
        UpgradeState::RollingBack => rolling_back(spec, entry, n8n, elapsed, now),
        _ => vec![],
    }
}

fn backing_up(
    spec: &TenantRolloutSpec,
    entry: &mut TenantUpgrade,
    tenant: &TenantView,
    elapsed: i64,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let answered = tenant
        .last_backup
        .as_ref()
        .filter(|last| entry.backup_request.as_deref() == Some(last.id.as_str()));
    match answered {
        Some(last) if last.succeeded => {
            entry.backup_name = last.backup_name.clone();
            let to = entry.to.clone();
            set(
                entry,
                UpgradeState::Upgrading,
                "Upgrading",
                format!("backed up; waiting for n8n {to} to be ready"),
                now,
            );
            vec![Write::Image(to)]
        }
        Some(last) => {
            let why = [last.reason.as_deref(), last.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            set(
                entry,
                UpgradeState::Failed,
                "BackupFailed",
                format!("the backup before the upgrade failed ({why}); n8n was not changed"),
                now,
            );
            vec![]
        }
        None if elapsed > spec.backup_timeout_seconds => {
            set(
                entry,
                UpgradeState::Failed,
                "BackupTimedOut",
                format!(
                    "no backup outcome within {}s; n8n was not changed",
                    spec.backup_timeout_seconds
                ),
                now,
            );
            vec![]
        }
        None => vec![],
    }
}

fn upgrading(
    spec: &TenantRolloutSpec,
    entry: &mut TenantUpgrade,
    n8n: &N8nSeen,
    elapsed: i64,
    now: DateTime<Utc>,
) -> Vec<Write> {
    entry.data_touched |= n8n.new_image_started;
    let to = entry.to.clone();
    if n8n.ready_with.as_deref() == Some(to.as_str()) {
        set(
            entry,
            UpgradeState::Upgraded,
            "Ready",
            format!("runs {to}"),
            now,
        );
        return vec![];
    }
    // The last trouble the pods told stays in the message: at the timeout they may be gone.
    let trouble = n8n.trouble.clone().or_else(|| {
        entry
            .message
            .as_deref()
            .and_then(|m| m.split_once(TROUBLE))
            .map(|(_, t)| t.to_owned())
    });
    if elapsed <= spec.ready_timeout_seconds {
        if let Some(trouble) = trouble {
            entry.message = Some(format!("waiting for n8n {to}{TROUBLE}{trouble}"));
        }
        return vec![];
    }
    let why = trouble.map(|t| format!(": {t}")).unwrap_or_default();
    let failed = format!(
        "n8n {to} was not ready within {}s{why}",
        spec.ready_timeout_seconds
    );
    let Some(from) = entry.from.clone() else {
        set(
            entry,
            UpgradeState::Failed,
            "NoPreviousVersion",
            format!("{failed}; no previous version to return to"),
            now,
        );
        return vec![];
    };
    let mut writes = vec![Write::Image(from.clone())];
    let restoring = match (&entry.backup_name, entry.data_touched) {
        (Some(backup), true) => {
            writes.push(Write::Restore(backup.clone()));
            format!(" and restoring backup {backup}")
        }
        _ => String::new(),
    };
    set(
        entry,
        UpgradeState::RollingBack,
        "NotReadyInTime",
        format!("{failed}; rolling back to {from}{restoring}"),
        now,
    );
    writes
}

/// Separates the wait from what the pods say in an Upgrading tenant's message.
const TROUBLE: &str = " to be ready; pods: ";

fn rolling_back(
    spec: &TenantRolloutSpec,
    entry: &mut TenantUpgrade,
    n8n: &N8nSeen,
    elapsed: i64,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let from = entry.from.clone().unwrap_or_default();
    let failed = entry
        .message
        .as_deref()
        .and_then(|m| {
            m.split_once("; rolling back")
                .map(|(why, _)| why.to_owned())
        })
        .unwrap_or_default();
    if n8n.ready_with.as_deref() == Some(from.as_str()) {
        let reason = entry.reason.clone().unwrap_or_default();
        set(
            entry,
            UpgradeState::RolledBack,
            &reason,
            format!("{failed}; rolled back to {from}, ready"),
            now,
        );
    } else if elapsed > spec.rollback_timeout_seconds {
        set(
            entry,
            UpgradeState::Failed,
            "RollbackNotReady",
            format!(
                "{failed}; the rollback to {from} was not ready within {}s either",
                spec.rollback_timeout_seconds
            ),
            now,
        );
    }
    vec![]
}

fn set(
    entry: &mut TenantUpgrade,
    state: UpgradeState,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) {
    entry.state = state;
    entry.reason = Some(reason.to_owned());
    entry.message = Some(message);
    entry.since = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::rollout::view::BackupOutcome;

    fn spec(require_backup: bool) -> TenantRolloutSpec {
        serde_json::from_value(serde_json::json!({
            "n8nImage": "n8n:2", "readyTimeoutSeconds": 60, "requireBackup": require_backup
        }))
        .unwrap()
    }

    fn entry() -> TenantUpgrade {
        TenantUpgrade::pending("acme".into(), 0, true, "n8n:2".into())
    }

    fn tenant() -> TenantView {
        TenantView {
            name: "acme".into(),
            running: Some("n8n:1".into()),
            backup_configured: true,
            ..TenantView::default()
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn backup_then_upgrade_then_ready() {
        let (spec, mut entry, mut tenant) = (spec(true), entry(), tenant());
        let writes = start(&spec, &mut entry, &tenant, "n8n:1", "req-1", at(0));
        assert_eq!(writes, [Write::Backup("req-1".into())]);
        assert_eq!(entry.from.as_deref(), Some("n8n:1"));
        let none = N8nSeen::default();
        assert!(advance(&spec, &mut entry, &tenant, &none, at(5)).is_empty());
        tenant.last_backup = Some(BackupOutcome {
            id: "req-1".into(),
            succeeded: true,
            backup_name: Some("acme-20261203".into()),
            ..BackupOutcome::default()
        });
        let writes = advance(&spec, &mut entry, &tenant, &none, at(6));
        assert_eq!(writes, [Write::Image("n8n:2".into())]);
        let ready = N8nSeen {
            ready_with: Some("n8n:2".into()),
            ..N8nSeen::default()
        };
        advance(&spec, &mut entry, &tenant, &ready, at(30));
        assert_eq!(entry.state, UpgradeState::Upgraded);
    }

    #[test]
    fn a_failed_backup_fails_the_tenant_without_touching_n8n() {
        let (spec, mut entry, mut tenant) = (spec(true), entry(), tenant());
        start(&spec, &mut entry, &tenant, "n8n:1", "req-1", at(0));
        tenant.last_backup = Some(BackupOutcome {
            id: "req-0".into(),
            succeeded: true,
            ..BackupOutcome::default()
        });
        let none = N8nSeen::default();
        assert!(advance(&spec, &mut entry, &tenant, &none, at(1)).is_empty());
        assert_eq!(
            entry.state,
            UpgradeState::BackingUp,
            "another request's outcome"
        );
        tenant.last_backup = Some(BackupOutcome {
            id: "req-1".into(),
            succeeded: false,
            reason: Some("TargetUnreachable".into()),
            ..BackupOutcome::default()
        });
        assert!(advance(&spec, &mut entry, &tenant, &none, at(2)).is_empty());
        assert_eq!(entry.state, UpgradeState::Failed);
        assert_eq!(entry.reason.as_deref(), Some("BackupFailed"));
        assert!(entry.message.unwrap().contains("TargetUnreachable"));
    }

    #[test]
    fn no_backup_configured_fails_when_backups_are_required() {
        let (mut entry, mut tenant) = (entry(), tenant());
        tenant.backup_configured = false;
        let writes = start(&spec(true), &mut entry, &tenant, "n8n:1", "r", at(0));
        assert!(writes.is_empty());
        assert_eq!(entry.reason.as_deref(), Some("NoBackupConfigured"));
    }

    #[test]
    fn not_ready_in_time_rolls_back_and_restores_only_touched_data() {
        for touched in [false, true] {
            let (spec, mut entry, mut tenant) = (spec(true), entry(), tenant());
            start(&spec, &mut entry, &tenant, "n8n:1", "r", at(0));
            tenant.last_backup = Some(BackupOutcome {
                id: "r".into(),
                succeeded: true,
                backup_name: Some("b1".into()),
                ..BackupOutcome::default()
            });
            advance(&spec, &mut entry, &tenant, &N8nSeen::default(), at(1));
            let crashing = N8nSeen {
                ready_with: None,
                new_image_started: touched,
                trouble: Some("CrashLoopBackOff".into()),
            };
            assert!(advance(&spec, &mut entry, &tenant, &crashing, at(60)).is_empty());
            let writes = advance(&spec, &mut entry, &tenant, &N8nSeen::default(), at(62));
            let mut expected = vec![Write::Image("n8n:1".into())];
            if touched {
                expected.push(Write::Restore("b1".into()));
            }
            assert_eq!(writes, expected);
            assert_eq!(entry.state, UpgradeState::RollingBack);
            let back = N8nSeen {
                ready_with: Some("n8n:1".into()),
                ..N8nSeen::default()
            };
            advance(&spec, &mut entry, &tenant, &back, at(70));
            assert_eq!(entry.state, UpgradeState::RolledBack);
            assert_eq!(entry.reason.as_deref(), Some("NotReadyInTime"));
            let message = entry.message.unwrap();
            assert!(
                message.contains("CrashLoopBackOff") && message.contains("rolled back to n8n:1")
            );
        }
    }

    #[test]
    fn pinned_scaled_down_and_current_tenants_are_not_upgraded() {
        let spec = spec(false);
        let mut pinned = tenant();
        pinned.pinned = Some("n8n:0".into());
        let mut e = entry();
        assert!(start(&spec, &mut e, &pinned, "n8n:1", "r", at(0)).is_empty());
        assert_eq!(
            (e.state, e.reason.as_deref()),
            (UpgradeState::Skipped, Some("Pinned"))
        );
        let mut current = tenant();
        current.running = Some("n8n:2".into());
        current.chosen = Some("n8n:2".into());
        let mut e = entry();
        assert!(start(&spec, &mut e, &current, "n8n:1", "r", at(0)).is_empty());
        assert_eq!(e.state, UpgradeState::Upgraded);
        let mut e = entry();
        let writes = start(&spec, &mut e, &tenant(), "n8n:1", "r", at(0));
        assert_eq!(
            writes,
            [Write::Image("n8n:2".into())],
            "no backup asked for"
        );
    }
}
