//! Secrets minted once: the n8n encryption key and the worker token. A later reconcile never
//! changes them (n8n cannot read its credentials under another key; the engine knows the token).

use super::meta;
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::Secret;
use rand::RngCore;
use std::collections::BTreeMap;

pub const ENCRYPTION_SECRET: &str = "n8n-encryption";
pub const ENCRYPTION_KEY: &str = "N8N_ENCRYPTION_KEY";
pub const WORKER_SECRET: &str = "flomastr-worker";
pub const WORKER_TOKEN: &str = "FLOMASTR_WORKER_TOKEN";

/// A new Secret holding one random value (32 bytes, hex) under `key`.
pub fn minted_secret(tenant: &Tenant, plan: &Plan, name: &str, key: &str) -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret {
        metadata: meta(tenant, plan, name, "secret", true),
        string_data: Some(BTreeMap::from([(key.to_owned(), hex::encode(bytes))])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}
