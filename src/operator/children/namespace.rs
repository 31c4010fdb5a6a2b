//! The tenant's namespace with its ResourceQuota and LimitRange.

use super::meta;
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

pub fn namespace(tenant: &Tenant, plan: &Plan) -> Namespace {
    let mut metadata = meta(tenant, plan, &plan.namespace, "tenant", false);
    // Owned by the Tenant (so deleted after it) only when its policy says Delete.
    if !super::retention::cascades(tenant) {
        metadata.owner_references = None;
    }
    // Pod Security "restricted": n8n runs as uid 1000 without privileges.
    metadata.labels.get_or_insert_default().insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    Namespace {
        metadata,
        ..Namespace::default()
    }
}

pub fn resource_quota(tenant: &Tenant, plan: &Plan) -> ResourceQuota {
    let quota = &tenant.spec.limits.quota;
    let mut hard = BTreeMap::new();
    for (key, value) in [
        ("requests.cpu", &quota.requests_cpu),
        ("requests.memory", &quota.requests_memory),
        ("limits.cpu", &quota.limits_cpu),
        ("limits.memory", &quota.limits_memory),
        ("requests.storage", &quota.requests_storage),
    ] {
        if let Some(value) = value {
            hard.insert(key.to_owned(), Quantity(value.clone()));
        }
    }
    if let Some(pods) = quota.pods {
        hard.insert("pods".to_owned(), Quantity(pods.to_string()));
    }
    ResourceQuota {
        metadata: meta(tenant, plan, "tenant-quota", "quota", true),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Defaults for containers that do not say, so a quota on limits never blocks them.
pub fn limit_range(tenant: &Tenant, plan: &Plan) -> LimitRange {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    LimitRange {
        metadata: meta(tenant, plan, "tenant-limits", "limits", true),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(quantities("500m", "512Mi")),
                default_request: Some(quantities("100m", "128Mi")),
                ..LimitRangeItem::default()
            }],
        }),
    }
}
