//! A Tenant and its plan for the builders' unit tests.

use crate::operator::plan::Plan;
use crate::tenant::Tenant;

pub fn tenant() -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "uid": "6a1c7a52-0000-4000-8000-000000000001"},
        "spec": {"displayName": "ACME", "whatsapp": {"provider": "Infobip", "sender": "441134960000",
                 "credentialsSecretRef": {"name": "acme-infobip", "namespace": "flomastr-credentials"}}}
    }))
    .unwrap()
}

pub fn plan() -> Plan {
    Plan {
        slug: "acme".into(),
        namespace: "tenant-acme".into(),
        n8n_host: "acme.n8n.example.com".into(),
        frontend_host: "acme.example.com".into(),
        n8n_url: "https://acme.n8n.example.com".into(),
        image: "n8nio/n8n:2.41.1".into(),
        replicas: 1,
        suspended: false,
        ingress_class: None,
        engine_url: "http://flomastr-engine.flomastr-system.svc:8080".into(),
        dns: None,
        encryption_key_fingerprint: None,
        n8n_data_filling: false,
    }
}
