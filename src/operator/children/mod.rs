//! The objects a Tenant owns, built as pure functions of the Tenant and its plan.

#[cfg(test)]
pub(crate) mod fixtures;
mod ingress;
mod n8n;
mod namespace;
mod network_policy;
mod provisioning;
pub mod retention;
mod secrets;

pub use ingress::{frontend_ingress, frontend_service, n8n_ingress};
pub use n8n::{
    DATA_PVC, FILLING, N8N_DATA_MARK, N8N_UID, PROVISIONING_CONTAINER, PROVISIONING_DIGEST,
    deployment, pvc, service,
};
pub use namespace::{limit_range, namespace, resource_quota};
pub use network_policy::{NON_PUBLIC_V4, NON_PUBLIC_V6, NetworkReach, network_policy};
pub use provisioning::{CONFIG_MAP, CREDENTIAL_ID, WORKFLOW_ID, config_map};
pub use secrets::{
    ENCRYPTION_KEY, ENCRYPTION_SECRET, OWNER_EMAIL, OWNER_PASSWORD, OWNER_PASSWORD_HASH,
    OWNER_SECRET, WORKER_SECRET, WORKER_TOKEN, minted_secret, owner_email, owner_secret,
    restored_key_secret,
};

use crate::tenant::Tenant;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use super::plan::Plan;

/// Metadata of a child: its name and namespace, the plan's labels, owned by the Tenant.
pub fn meta(
    tenant: &Tenant,
    plan: &Plan,
    name: &str,
    component: &str,
    namespaced: bool,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.then(|| plan.namespace.clone()),
        labels: Some(plan.labels(component)),
        owner_references: tenant.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}
