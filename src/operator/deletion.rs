//! What a Tenant's deletion waits for before its cleanup runs. `deletionPolicy: Snapshot`
//! promises a backup before anything is deleted: [`snapshot`] takes a full backup to
//! `spec.backup.target` (n8n's volume, its encryption key, the Tenant, the engine's rows);
//! while there is no target, or the backup fails, the deletion is held (the finalizer stays,
//! nothing is touched) with a status saying why. Once it is taken, the deletion proceeds as
//! Delete ([`after_snapshot`]): everything is in the backup, and restores from it.

use crate::operator::backup::take_tenant_backup;
use crate::operator::context::Context;
use crate::operator::plan::MANAGER;
use crate::operator::reconcile::publish;
use crate::operator::status::deletion_blocked;
use crate::tenant::{DeletionPolicy, Tenant};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;

/// Why a deletion waits: the Stalled condition's reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocked {
    pub reason: &'static str,
    pub message: String,
}

pub const SNAPSHOT_UNAVAILABLE: &str = "SnapshotUnavailable";
pub const SNAPSHOT_FAILED: &str = "SnapshotFailed";

/// Whether the deletion of `tenant` must wait without even trying a backup, and why.
pub fn blocked(tenant: &Tenant) -> Option<Blocked> {
    (tenant.spec.deletion_policy == DeletionPolicy::Snapshot && tenant.spec.backup.is_none()).then(
        || Blocked {
            reason: SNAPSHOT_UNAVAILABLE,
            message: format!(
                "deletionPolicy Snapshot takes a backup before deleting, and Tenant {} has no \
                 spec.backup.target: nothing was deleted. Add a backup target, or set \
                 spec.deletionPolicy to Retain (keep the namespace, n8n's data and key) or \
                 Delete to let the deletion proceed",
                tenant.name_any()
            ),
        },
    )
}

/// Under `deletionPolicy: Snapshot`, takes the full backup the deletion waits for; `None`
/// when the deletion may proceed (another policy, or the backup succeeded).
pub async fn snapshot(ctx: &Context, tenant: &Tenant) -> Option<Blocked> {
    if tenant.spec.deletion_policy != DeletionPolicy::Snapshot {
        return None;
    }
    if let Some(blocked) = blocked(tenant) {
        return Some(blocked);
    }
    match take_tenant_backup(&ctx.client, &ctx.config, tenant).await {
        Ok(taken) => {
            publish(
                ctx,
                tenant,
                EventType::Normal,
                "SnapshotTaken",
                &format!(
                    "backup {} ({} bytes) taken before the deletion",
                    taken.name, taken.size_bytes
                ),
            )
            .await;
            None
        }
        Err(error) => Some(Blocked {
            reason: SNAPSHOT_FAILED,
            message: format!(
                "deletionPolicy Snapshot: the backup before the deletion failed ({}: {error}); \
                 nothing was deleted, it is tried again",
                error.reason()
            ),
        }),
    }
}

/// The Tenant as its deletion proceeds once [`snapshot`] let it: Snapshot deletes as Delete
/// does (the namespace, with n8n's volume and key, goes after the Tenant), since the backup
/// just taken holds all of it. Other policies are unchanged.
pub fn after_snapshot(tenant: &Tenant) -> Tenant {
    let mut deleting = tenant.clone();
    if deleting.spec.deletion_policy == DeletionPolicy::Snapshot {
        deleting.spec.deletion_policy = DeletionPolicy::Delete;
    }
    deleting
}

/// Shows the held deletion in the status and as a Warning Event (once per reason: a status
/// already saying so is not rewritten).
pub async fn hold(ctx: &Context, tenant: &Tenant, blocked: &Blocked) {
    let status = deletion_blocked(
        tenant.status.as_ref(),
        tenant.metadata.generation,
        blocked.reason,
        &blocked.message,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let unchanged = tenant.status.as_ref().is_some_and(|before| {
        let pick = |s: &crate::tenant::TenantStatus| {
            s.conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.observed_generation,
                    )
                })
                .collect::<Vec<_>>()
        };
        pick(before) == pick(&status) && before.phase == status.phase
    });
    if unchanged {
        return;
    }
    publish(
        ctx,
        tenant,
        EventType::Warning,
        blocked.reason,
        &blocked.message,
    )
    .await;
    let patch = serde_json::json!({"apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "status": status});
    if let Err(error) = Api::<Tenant>::all(ctx.client.clone())
        .patch_status(
            &tenant.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::warn!(tenant = %tenant.name_any(), %error, "cannot show the held deletion in the status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::children::fixtures::tenant;

    #[test]
    fn only_snapshot_holds_a_deletion_and_says_how_to_proceed() {
        let mut tenant = tenant();
        for policy in [DeletionPolicy::Retain, DeletionPolicy::Delete] {
            tenant.spec.deletion_policy = policy;
            assert_eq!(blocked(&tenant), None, "{policy:?}");
        }
        tenant.spec.deletion_policy = DeletionPolicy::Snapshot;
        let held = blocked(&tenant).unwrap();
        assert_eq!(held.reason, "SnapshotUnavailable");
        assert!(
            held.message.contains("has no spec.backup.target"),
            "{}",
            held.message
        );
        assert!(held.message.contains("nothing was deleted"));
        assert!(held.message.contains("Tenant acme has no"));
    }

    #[test]
    fn after_its_snapshot_a_snapshot_deletion_deletes_and_others_keep_their_policy() {
        let mut tenant = tenant();
        for (policy, after) in [
            (DeletionPolicy::Retain, DeletionPolicy::Retain),
            (DeletionPolicy::Delete, DeletionPolicy::Delete),
            (DeletionPolicy::Snapshot, DeletionPolicy::Delete),
        ] {
            tenant.spec.deletion_policy = policy;
            let deleting = after_snapshot(&tenant);
            assert_eq!(deleting.spec.deletion_policy, after, "{policy:?}");
            assert_eq!(
                crate::operator::children::retention::cascades(&deleting),
                after == DeletionPolicy::Delete
            );
        }
    }
}
