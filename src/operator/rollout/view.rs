//! What a rollout needs to know about a Tenant, read from its JSON (pure). The backup fields
//! (`spec.backup`, `status.backup.lastRequest`) belong to the operator's backups and are read
//! untyped: the rollout depends only on this contract, not on their Rust types.

use crate::operator::plan::N8N_IMAGE_ANNOTATION;
use serde_json::Value;
use std::collections::BTreeMap;

/// One Tenant as the rollout sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.n8n.image`: the Tenant pins its own version.
    pub pinned: Option<String>,
    /// Suspended or scaled to zero: no n8n runs whose readiness could be checked.
    pub scaled_down: bool,
    /// `spec.backup` is set.
    pub backup_configured: bool,
    /// `status.backup.lastRequest`.
    pub last_backup: Option<BackupOutcome>,
    /// `status.n8nImage`: what the tenant's n8n last ran, rolled out and ready.
    pub running: Option<String>,
    /// The image a rollout chose (the annotation).
    pub chosen: Option<String>,
}

/// The outcome of an on-demand backup (`flomastr.io/backup-now`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupOutcome {
    pub id: String,
    pub succeeded: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub backup_name: Option<String>,
}

impl TenantView {
    pub fn from_json(tenant: &Value) -> Self {
        let text = |pointer: &str| {
            tenant
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let labels = tenant
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let suspended = tenant
            .pointer("/spec/suspended")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let replicas = tenant
            .pointer("/spec/n8n/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let last_backup = tenant
            .pointer("/status/backup/lastRequest")
            .and_then(|last| {
                let field = |name: &str| last.get(name).and_then(Value::as_str).map(str::to_owned);
                Some(BackupOutcome {
                    id: field("id")?,
                    succeeded: field("outcome").as_deref() == Some("Succeeded"),
                    reason: field("reason"),
                    message: field("message"),
                    backup_name: field("backupName"),
                })
            });
        let annotation = format!(
            "/metadata/annotations/{}",
            N8N_IMAGE_ANNOTATION.replace('~', "~0").replace('/', "~1")
        );
        Self {
            name: text("/metadata/name").unwrap_or_default(),
            labels,
            pinned: text("/spec/n8n/image"),
            scaled_down: suspended || replicas == 0,
            backup_configured: tenant.pointer("/spec/backup").is_some_and(|b| !b.is_null()),
            last_backup,
            running: text("/status/n8nImage"),
            chosen: text(&annotation),
        }
    }

    /// The image the Tenant's n8n is set to run now.
    pub fn effective(&self, default_image: &str) -> String {
        self.pinned
            .clone()
            .or_else(|| self.chosen.clone())
            .unwrap_or_else(|| default_image.to_owned())
    }

    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(key, value)| self.labels.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_backup_contract_and_the_chosen_image() {
        let view = TenantView::from_json(&json!({
            "metadata": {"name": "acme", "labels": {"tier": "gold"},
                         "annotations": {"flomastr.io/n8n-image": "n8nio/n8n:2.0.0"}},
            "spec": {"n8n": {"replicas": 1}, "backup": {"schedule": "@daily"}},
            "status": {"n8nImage": "n8nio/n8n:1.0.0",
                       "backup": {"lastRequest": {"id": "r1", "outcome": "Failed", "reason": "TargetFull", "message": "no space"}}}
        }));
        assert_eq!(view.chosen.as_deref(), Some("n8nio/n8n:2.0.0"));
        assert_eq!(view.running.as_deref(), Some("n8nio/n8n:1.0.0"));
        assert!(view.backup_configured && !view.scaled_down);
        let last = view.last_backup.unwrap();
        assert_eq!((last.id.as_str(), last.succeeded), ("r1", false));
        assert_eq!(last.reason.as_deref(), Some("TargetFull"));
        let bare =
            TenantView::from_json(&json!({"metadata": {"name": "b"}, "spec": {"suspended": true}}));
        assert!(!bare.backup_configured && bare.scaled_down && bare.last_backup.is_none());
        assert_eq!(bare.effective("n8n:default"), "n8n:default");
    }
}
