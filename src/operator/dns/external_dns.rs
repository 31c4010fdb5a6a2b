//! external-dns mode: one `DNSEndpoint` per tenant, owned by the Tenant, published by external-dns.

use super::{DnsError, record_type_name};
use crate::operator::plan::{DnsPlan, MANAGER, Plan};
use crate::tenant::{DnsRecordStatus, Tenant};
use kube::Resource;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

const NAME: &str = "tenant-dns";

pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint"),
        "dnsendpoints",
    )
}

pub async fn ensure(
    client: &kube::Client,
    tenant: &Tenant,
    plan: &Plan,
    dns: &DnsPlan,
) -> Result<Vec<DnsRecordStatus>, DnsError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &plan.namespace, &resource());
    let endpoints: Vec<_> = dns
        .names
        .iter()
        .map(|name| json!({"dnsName": name, "recordType": record_type_name(dns), "targets": [dns.target], "recordTTL": dns.ttl}))
        .collect();
    let object = json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": NAME, "namespace": plan.namespace, "labels": plan.labels("dns"),
                     "ownerReferences": tenant.controller_owner_ref(&()).map(|r| vec![r])},
        "spec": {"endpoints": endpoints}
    });
    api.patch(
        NAME,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(dns
        .names
        .iter()
        .map(|name| DnsRecordStatus {
            name: name.clone(),
            record_type: dns.record_type,
            target: dns.target.clone(),
            provider: "external-dns".to_owned(),
            id: None,
        })
        .collect())
}

pub async fn remove(client: &kube::Client, plan: &Plan) -> Result<(), DnsError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &plan.namespace, &resource());
    match api.delete(NAME, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}
