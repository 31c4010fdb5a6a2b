//! Secrets minted once: the n8n encryption key, the worker token and the n8n instance owner. A
//! later reconcile never changes them (n8n cannot read its credentials under another key; the
//! engine knows the token; a person may have written the owner's password down).

use super::retention::retained_meta;
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::Secret;
use rand::RngCore;
use std::collections::BTreeMap;

pub const ENCRYPTION_SECRET: &str = "n8n-encryption";
pub const ENCRYPTION_KEY: &str = "N8N_ENCRYPTION_KEY";
pub const WORKER_SECRET: &str = "flomastr-worker";
pub const WORKER_TOKEN: &str = "FLOMASTR_WORKER_TOKEN";
/// The n8n instance owner: `email` and `password` to log in with, `passwordHash` (bcrypt) for n8n.
pub const OWNER_SECRET: &str = "n8n-owner";
pub const OWNER_EMAIL: &str = "email";
pub const OWNER_PASSWORD: &str = "password";
pub const OWNER_PASSWORD_HASH: &str = "passwordHash";
/// bcrypt's work factor for the owner's password (n8n's own default).
const BCRYPT_COST: u32 = 10;

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn secret(tenant: &Tenant, plan: &Plan, name: &str, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: retained_meta(tenant, plan, name, "secret"),
        string_data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// A new Secret holding one random value (32 bytes, hex) under `key`.
pub fn minted_secret(tenant: &Tenant, plan: &Plan, name: &str, key: &str) -> Secret {
    secret(
        tenant,
        plan,
        name,
        BTreeMap::from([(key.to_owned(), random_hex())]),
    )
}

/// The encryption key Secret holding `key` (a key restored from a backup).
pub fn restored_key_secret(tenant: &Tenant, plan: &Plan, key: String) -> Secret {
    secret(
        tenant,
        plan,
        ENCRYPTION_SECRET,
        BTreeMap::from([(ENCRYPTION_KEY.to_owned(), key)]),
    )
}

/// The owner's login: an address under the tenant's n8n host (n8n needs an email-shaped login;
/// nothing is ever sent to it).
pub fn owner_email(plan: &Plan) -> String {
    format!("owner@{}", plan.n8n_host)
}

/// A new owner Secret: a random password and its bcrypt hash, which n8n reads from
/// `N8N_INSTANCE_OWNER_PASSWORD_HASH` (it never sees the password itself).
pub fn owner_secret(tenant: &Tenant, plan: &Plan) -> Result<Secret, bcrypt::BcryptError> {
    let password = random_hex();
    let hash = bcrypt::hash(&password, BCRYPT_COST)?;
    Ok(secret(
        tenant,
        plan,
        OWNER_SECRET,
        BTreeMap::from([
            (OWNER_EMAIL.to_owned(), owner_email(plan)),
            (OWNER_PASSWORD.to_owned(), password),
            (OWNER_PASSWORD_HASH.to_owned(), hash),
        ]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::children::fixtures::{plan, tenant};

    #[test]
    fn the_owner_secret_holds_a_password_and_its_bcrypt_hash_as_n8n_accepts_it() {
        let (tenant, plan) = (tenant(), plan());
        let secret = owner_secret(&tenant, &plan).unwrap();
        let data = secret.string_data.unwrap();
        let (password, hash) = (&data[OWNER_PASSWORD], &data[OWNER_PASSWORD_HASH]);
        assert_eq!(password.len(), 64);
        assert!(bcrypt::verify(password, hash).unwrap());
        // n8n 2.x's check of N8N_INSTANCE_OWNER_PASSWORD_HASH (owner.instance-settings-loader).
        let shape = regex::Regex::new(r"^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$").unwrap();
        assert!(shape.is_match(hash), "{hash}");
        assert_eq!(data[OWNER_EMAIL], "owner@acme.n8n.example.com");
        let other = owner_secret(&tenant, &plan).unwrap().string_data.unwrap();
        assert_ne!(other[OWNER_PASSWORD], *password, "each mint is new");
    }
}
