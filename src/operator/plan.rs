//! What a Tenant means, decided once per reconcile and shared by every builder (pure).

use crate::operator::config::OperatorArgs;
use crate::tenant::{DnsRecordType, Tenant};
use kube::ResourceExt;
use std::collections::BTreeMap;

pub const MANAGER: &str = "flomastr-operator";
pub const SLUG_LABEL: &str = "flomastr.io/tenant";
/// The n8n image a TenantRollout chose for the tenant: used when `spec.n8n.image` pins none
/// (the Tenant's own pin wins), in place of the operator's default.
pub const N8N_IMAGE_ANNOTATION: &str = "flomastr.io/n8n-image";

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub slug: String,
    pub namespace: String,
    pub n8n_host: String,
    pub frontend_host: String,
    pub n8n_url: String,
    pub image: String,
    pub replicas: i32,
    pub suspended: bool,
    pub ingress_class: Option<String>,
    pub engine_url: String,
    pub dns: Option<DnsPlan>,
    /// The n8n encryption key's fingerprint as recorded in the status (n8n's provisioning
    /// refuses another key); `None` until it is known.
    pub encryption_key_fingerprint: Option<String>,
    /// The PVC n8n-data holds a restore that did not finish (it carries the filling mark): it
    /// keeps the mark and n8n stays at zero until a restore fills it. Known only from the live
    /// PVC, so the reconcile sets it (`hold_for_unfinished_restore`), never `plan()`.
    pub n8n_data_filling: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DnsPlan {
    pub record_type: DnsRecordType,
    pub target: String,
    pub ttl: i32,
    /// Fully qualified names.
    pub names: Vec<String>,
}

pub fn plan(tenant: &Tenant, config: &OperatorArgs) -> Plan {
    let slug = tenant.slug().to_owned();
    let spec = &tenant.spec;
    let n8n_host = spec
        .routing
        .n8n_host
        .clone()
        .unwrap_or_else(|| format!("{slug}.n8n.{}", config.base_domain));
    let frontend_host = spec
        .routing
        .frontend_host
        .clone()
        .unwrap_or_else(|| format!("{slug}.{}", config.base_domain));
    let dns = spec
        .dns
        .enabled
        .then(|| spec.dns.target.clone())
        .flatten()
        .map(|target| DnsPlan {
            record_type: spec
                .dns
                .record_type
                .unwrap_or_else(|| infer_record_type(&target)),
            ttl: spec.dns.ttl.unwrap_or(300),
            names: vec![n8n_host.clone(), frontend_host.clone()],
            target,
        });
    Plan {
        namespace: format!("tenant-{slug}"),
        n8n_url: format!("https://{n8n_host}"),
        image: spec
            .n8n
            .image
            .clone()
            .or_else(|| rollout_image(tenant))
            .unwrap_or_else(|| config.n8n_image.clone()),
        replicas: if spec.suspended { 0 } else { spec.n8n.replicas },
        suspended: spec.suspended,
        ingress_class: spec
            .routing
            .ingress_class_name
            .clone()
            .or_else(|| config.ingress_class.clone()),
        engine_url: config
            .engine_worker_url
            .clone()
            .unwrap_or_else(|| config.engine_url.clone()),
        n8n_host,
        frontend_host,
        dns,
        slug,
        encryption_key_fingerprint: tenant
            .status
            .as_ref()
            .and_then(|s| s.encryption_key_fingerprint.clone()),
        n8n_data_filling: false,
    }
}

impl Plan {
    /// n8n's volume is being (or was partly) filled by a restore: n8n must not start on it.
    pub fn hold_for_unfinished_restore(&mut self) {
        self.n8n_data_filling = true;
        self.replicas = 0;
    }
}

/// The image a rollout set on the Tenant, when it is pinned like `spec.n8n.image` must be (the
/// annotation is not validated by the API server).
fn rollout_image(tenant: &Tenant) -> Option<String> {
    let image = tenant.annotations().get(N8N_IMAGE_ANNOTATION)?.trim();
    let floating = image.ends_with(":latest") || image.ends_with(":stable");
    (!image.is_empty() && image.len() <= 512 && !floating && !image.contains(char::is_whitespace))
        .then(|| image.to_owned())
}

fn infer_record_type(target: &str) -> DnsRecordType {
    match target.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => DnsRecordType::A,
        Ok(std::net::IpAddr::V6(_)) => DnsRecordType::AAAA,
        Err(_) => DnsRecordType::CNAME,
    }
}

impl Plan {
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGER.to_owned(),
            ),
            ("app.kubernetes.io/name".to_owned(), component.to_owned()),
            (
                "app.kubernetes.io/part-of".to_owned(),
                "flomastr".to_owned(),
            ),
            (SLUG_LABEL.to_owned(), self.slug.clone()),
        ])
    }
}
