//! Backups in the reconcile: the schedule (`spec.backup.schedule`), requests by annotation
//! (`flomastr.io/backup-now`, `flomastr.io/restore-from`) and what the status says about them.
//! A request is done once per annotation value; a settled Tenant costs no write.

use super::full::{FullBackupError, restore_tenant_backup, take_tenant_backup};
use super::n8n_data::DataRestored;
use super::schedule::next_after;
use crate::operator::context::Context;
use crate::operator::status::{BackupObserved, Finding};
use crate::tenant::{
    BackupRequestStatus, BackupStatus, ConditionType, LastBackup, RestoreStatus, Tenant,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Annotation: take a full backup now; its value is the request id echoed in
/// `status.backup.lastRequest.id`.
pub const BACKUP_NOW: &str = "flomastr.io/backup-now";
/// Annotation: restore this Tenant from the backup named (`<slug>/<time>`).
pub const RESTORE_FROM: &str = "flomastr.io/restore-from";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
/// A scheduled backup that failed is tried again after this (or at the next scheduled time).
const RETRY_FAILED: Duration = Duration::from_secs(300);

fn annotation<'a>(tenant: &'a Tenant, key: &str) -> Option<&'a str> {
    tenant
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The backup named in `flomastr.io/restore-from`, restored already or not.
pub fn requested_restore(tenant: &Tenant) -> Option<String> {
    annotation(tenant, RESTORE_FROM).map(str::to_owned)
}

/// Whether the last restore failed (it may have left n8n's volume half-filled).
pub fn restore_failed(tenant: &Tenant) -> bool {
    tenant
        .status
        .as_ref()
        .and_then(|s| s.restore.as_ref())
        .is_some_and(|r| r.outcome == FAILED)
}

/// The backup named in `flomastr.io/restore-from` when it was not restored yet.
pub fn pending_restore(tenant: &Tenant) -> Option<String> {
    let wanted = annotation(tenant, RESTORE_FROM)?;
    let done = tenant
        .status
        .as_ref()
        .and_then(|s| s.restore.as_ref())
        .is_some_and(|r| r.from == wanted);
    (!done).then(|| wanted.to_owned())
}

/// Restores `name` into `tenant`; the status to show and, when it succeeded, the n8n key's
/// fingerprint (recorded so n8n starts with the restored key).
pub async fn restore(
    ctx: &Context,
    tenant: &Tenant,
    name: &str,
) -> (RestoreStatus, Option<String>) {
    match restore_tenant_backup(&ctx.client, &ctx.config, tenant, name).await {
        Ok(restored) => {
            ctx.registered.lock().unwrap().remove(tenant.slug());
            (
                RestoreStatus {
                    from: name.to_owned(),
                    outcome: SUCCEEDED.into(),
                    reason: SUCCEEDED.into(),
                    message: format!(
                        "restored the n8n encryption key ({}), {} and the engine's data",
                        restored.n8n_key_fingerprint,
                        n8n_data_said(restored.n8n_data.as_ref())
                    ),
                },
                Some(restored.n8n_key_fingerprint),
            )
        }
        Err(error) => {
            tracing::warn!(tenant = %tenant.slug(), backup = %name, %error, "restore failed");
            (
                RestoreStatus {
                    from: name.to_owned(),
                    outcome: FAILED.into(),
                    reason: error.reason().into(),
                    message: error.to_string(),
                },
                None,
            )
        }
    }
}

fn n8n_data_said(restored: Option<&DataRestored>) -> String {
    match restored {
        Some(DataRestored::Filled(bytes)) => format!("n8n's volume ({bytes} bytes)"),
        Some(DataRestored::Kept) => "not n8n's volume (the tenant's own PVC n8n-data is kept: \
                                     delete it first to restore n8n's data)"
            .into(),
        None => "no n8n volume (the backup holds none)".into(),
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn previous_ready(tenant: &Tenant) -> Option<Finding> {
    let condition = tenant
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::BackupReady.as_str())?;
    let kind = ConditionType::BackupReady;
    Some(if condition.status == "True" {
        Finding::ok(kind, &condition.reason, condition.message.clone())
    } else {
        Finding::failed(kind, &condition.reason, condition.message.clone())
    })
}

/// What the reconcile reports about backups, taking the one due or asked for; and how soon to
/// look again (the next scheduled time).
pub async fn backups(
    ctx: &Context,
    tenant: &Tenant,
    restore: Option<RestoreStatus>,
) -> (BackupObserved, Option<Duration>) {
    let now = Utc::now();
    let previous = tenant.status.as_ref().and_then(|s| s.backup.clone());
    let mut status = previous.clone().unwrap_or_default();
    let mut ready = previous_ready(tenant);
    let kind = ConditionType::BackupReady;
    let request = annotation(tenant, BACKUP_NOW)
        .filter(|id| status.last_request.as_ref().is_none_or(|r| r.id != *id))
        .map(str::to_owned);
    let schedule = tenant
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.schedule.as_deref());
    let mut due = false;
    match schedule.map(|s| (s, next_after(s, now))) {
        None => status.next_backup_at = None,
        Some((_, Err(invalid))) => {
            status.next_backup_at = None;
            ready = Some(Finding::failed(kind, "InvalidSchedule", invalid));
        }
        Some((_, Ok(next))) => {
            let recorded = status
                .next_backup_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc());
            match recorded {
                Some(at) if at <= now => due = true,
                Some(_) => {}
                None => status.next_backup_at = Some(rfc3339(next)),
            }
        }
    }
    let ran = due || request.is_some();
    if ran {
        let outcome = take_tenant_backup(&ctx.client, &ctx.config, tenant).await;
        ready = Some(match &outcome {
            Ok(taken) => Finding::ok(
                kind,
                SUCCEEDED,
                format!(
                    "backup {} ({} bytes in {:.1} s)",
                    taken.name,
                    taken.size_bytes,
                    taken.duration.as_secs_f64()
                ),
            ),
            Err(error) => Finding::failed(kind, error.reason(), error.to_string()),
        });
        if let Ok(taken) = &outcome {
            status.last_backup = Some(LastBackup {
                name: taken.name.clone(),
                size_bytes: taken.size_bytes as i64,
                duration_seconds: (taken.duration.as_secs_f64() * 1000.0).round() / 1000.0,
                time: rfc3339(taken.taken_at),
                n8n_data_bytes: taken.n8n_data.as_ref().map(|p| p.size as i64),
                n8n_data_sha256: taken.n8n_data.as_ref().map(|p| p.sha256.clone()),
            });
        }
        if let Some(id) = request {
            status.last_request = Some(request_status(id, &outcome));
        }
        if let Some(Ok(next)) = schedule.map(|s| next_after(s, Utc::now())) {
            let retry = chrono::Duration::from_std(RETRY_FAILED).expect("small duration");
            let next = match outcome {
                Ok(_) => next,
                Err(_) => next.min(Utc::now() + retry),
            };
            status.next_backup_at = Some(rfc3339(next));
        }
    }
    if tenant.spec.backup.is_none() && !ran {
        ready = None;
    }
    if tenant.spec.backup.is_some() && ready.is_none() {
        ready = Some(Finding::ok(
            kind,
            "Scheduled",
            match &status.next_backup_at {
                Some(at) => format!("the first backup is due at {at}"),
                None => "no schedule: backups are taken on request".into(),
            },
        ));
    }
    let requeue = status
        .next_backup_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            (t.to_utc() - Utc::now())
                .to_std()
                .unwrap_or(Duration::from_secs(1))
        });
    let status = (status != BackupStatus::default()).then_some(status);
    let restore = restore.or_else(|| tenant.status.as_ref().and_then(|s| s.restore.clone()));
    (
        BackupObserved {
            status,
            restore,
            ready,
        },
        requeue,
    )
}

fn request_status(
    id: String,
    outcome: &Result<super::full::FullBackup, FullBackupError>,
) -> BackupRequestStatus {
    match outcome {
        Ok(taken) => BackupRequestStatus {
            id,
            outcome: SUCCEEDED.into(),
            reason: SUCCEEDED.into(),
            message: format!("backup {} ({} bytes)", taken.name, taken.size_bytes),
            backup_name: Some(taken.name.clone()),
        },
        Err(error) => BackupRequestStatus {
            id,
            outcome: FAILED.into(),
            reason: error.reason().into(),
            message: error.to_string(),
            backup_name: None,
        },
    }
}
