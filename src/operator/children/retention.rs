//! What outlives its Tenant. The namespace `tenant-<slug>`, n8n's volume and the minted Secrets
//! (the n8n encryption key above all) hold the tenant's data, so none of them is owned by the
//! Tenant: the garbage collector then never removes them because the Tenant went, which it also
//! does when the CRD is deleted (that deletes every Tenant). Only with `deletionPolicy: Delete`
//! does the namespace carry the Tenant as its owner, and the garbage collector removes it, with
//! everything in it, after the Tenant. The operator itself holds no right to delete namespaces,
//! PVCs or Secrets; it puts that ownerReference only on a namespace it created
//! ([`may_cascade`]), and the chart's admission policy refuses it touching any other.

use super::meta;
use crate::operator::plan::{MANAGER, Plan, SLUG_LABEL};
use crate::tenant::{DeletionPolicy, Tenant};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

/// Whether deleting the Tenant deletes its namespace and data. `Snapshot` does not while the
/// Tenant lives (a Tenant removed without the operator must not take its data along): its
/// deletion waits for a backup, and only then deletes as Delete (`deletion::after_snapshot`).
pub fn cascades(tenant: &Tenant) -> bool {
    tenant.spec.deletion_policy == DeletionPolicy::Delete
}

/// Metadata of a child that holds tenant data: labelled as the operator's, owned by nobody.
pub fn retained_meta(tenant: &Tenant, plan: &Plan, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        owner_references: None,
        ..meta(tenant, plan, name, component, true)
    }
}

/// Why the operator must not make `live` (the tenant's namespace as it is) owned by `tenant`,
/// which would let the garbage collector delete it: it is not labelled as the operator's
/// namespace for this tenant, or something else controls it.
pub fn may_cascade(live: &Namespace, tenant: &Tenant) -> Result<(), String> {
    let name = live.name_any();
    let labels = live.labels();
    if labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        != Some(MANAGER)
        || labels.get(SLUG_LABEL).map(String::as_str) != Some(tenant.slug())
    {
        return Err(format!(
            "namespace {name} was not created by the flomastr operator for tenant {} \
             (labels app.kubernetes.io/managed-by={MANAGER}, {SLUG_LABEL}={}); \
             it is never made deletable with the Tenant",
            tenant.slug(),
            tenant.slug()
        ));
    }
    let foreign = live
        .owner_references()
        .iter()
        .find(|owner| owner.controller == Some(true) && !is_tenant(owner, tenant));
    if let Some(owner) = foreign {
        return Err(format!(
            "namespace {name} is controlled by {} {}, not by Tenant {}; \
             it is never made deletable with the Tenant",
            owner.kind,
            owner.name,
            tenant.slug()
        ));
    }
    Ok(())
}

fn is_tenant(
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    tenant: &Tenant,
) -> bool {
    owner.kind == Tenant::kind(&()) && owner.name == tenant.slug()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::children::fixtures::{plan, tenant};
    use crate::operator::children::{ENCRYPTION_KEY, ENCRYPTION_SECRET, minted_secret, pvc};

    fn with_policy(policy: &str) -> Tenant {
        let mut tenant = tenant();
        tenant.spec.deletion_policy = serde_json::from_value(policy.into()).unwrap();
        tenant
    }

    #[test]
    fn only_delete_makes_the_namespace_owned_and_data_is_never_owned() {
        let plan = plan();
        for (policy, owned) in [("Retain", false), ("Snapshot", false), ("Delete", true)] {
            let tenant = with_policy(policy);
            let namespace = crate::operator::children::namespace(&tenant, &plan);
            assert_eq!(
                namespace.metadata.owner_references.is_some(),
                owned,
                "{policy}"
            );
            let volume = pvc(&tenant, &plan);
            let key = minted_secret(&tenant, &plan, ENCRYPTION_SECRET, ENCRYPTION_KEY);
            for data in [&volume.metadata, &key.metadata] {
                assert_eq!(data.owner_references, None, "{policy}: data never owned");
                assert_eq!(data.labels.as_ref().unwrap()[SLUG_LABEL], "acme");
            }
        }
    }

    #[test]
    fn a_namespace_not_created_for_this_tenant_is_never_made_deletable() {
        let (tenant, plan) = (with_policy("Delete"), plan());
        let ours = crate::operator::children::namespace(&tenant, &plan);
        assert_eq!(may_cascade(&ours, &tenant), Ok(()));

        let mut unlabelled = ours.clone();
        unlabelled.metadata.labels = None;
        let refused = may_cascade(&unlabelled, &tenant).unwrap_err();
        assert!(
            refused.contains("not created by the flomastr operator"),
            "{refused}"
        );

        let mut other_tenant = ours.clone();
        other_tenant
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(SLUG_LABEL.into(), "other".into());
        assert!(may_cascade(&other_tenant, &tenant).is_err());

        let mut controlled = ours.clone();
        let mut owner = controlled.metadata.owner_references.clone().unwrap()[0].clone();
        owner.kind = "Project".into();
        owner.name = "platform".into();
        controlled.metadata.owner_references = Some(vec![owner]);
        let refused = may_cascade(&controlled, &tenant).unwrap_err();
        assert!(
            refused.contains("controlled by Project platform"),
            "{refused}"
        );
    }
}
