//! The tenant's engine registration, built from its spec, its worker token and the credentials
//! Secrets its senders reference (the operator reads those Secrets only).

use crate::operator::engine_client::{ChannelRegistration, Registration};
use crate::tenant::{SenderSpec, Tenant, WhatsAppProvider};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Secret keys (as users write them) and the engine's credential names, per provider.
fn credential_keys(provider: WhatsAppProvider) -> &'static [(&'static str, &'static str)] {
    match provider {
        WhatsAppProvider::Infobip => &[
            ("apiKey", "api_key"),
            ("webhookSecret", "webhook_secret"),
            ("webhookHeader", "webhook_header"),
            ("basicUsername", "basic_username"),
            ("basicPassword", "basic_password"),
            ("webhookHmacSecret", "webhook_hmac_secret"),
            ("webhookSignatureHeader", "webhook_signature_header"),
            ("webhookSignatureAlgorithm", "webhook_signature_algorithm"),
        ],
        WhatsAppProvider::Meta => &[
            ("accessToken", "access_token"),
            ("appSecret", "app_secret"),
            ("verifyToken", "verify_token"),
            ("wabaId", "waba_id"),
        ],
        WhatsAppProvider::Twilio => &[("accountSid", "account_sid"), ("authToken", "auth_token")],
    }
}

/// Keys a provider cannot work without. Meta's `appSecret` and `verifyToken` are needed only for
/// a tenant's own app: numbers on the platform's shared app receive through its webhook.
fn required_keys(provider: WhatsAppProvider) -> &'static [&'static str] {
    match provider {
        WhatsAppProvider::Infobip => &["apiKey"],
        WhatsAppProvider::Meta => &["accessToken"],
        WhatsAppProvider::Twilio => &["accountSid", "authToken"],
    }
}

pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(value.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// A sender's credentials lack a key its provider needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    /// Where the sender is written in the spec (`spec.whatsapp.senders[1]`).
    pub field: String,
    pub provider: WhatsAppProvider,
    pub key: &'static str,
}

/// The registration. `credentials` holds each sender's Secret, in the order of
/// [`crate::tenant::WhatsAppSpec::senders`].
pub fn build(
    tenant: &Tenant,
    credentials: &[Secret],
    worker_token: &str,
) -> Result<Registration, MissingKey> {
    let senders = tenant
        .spec
        .whatsapp
        .senders()
        .into_iter()
        .zip(credentials)
        .map(|((field, sender), secret)| sender_registration(field, &sender, secret))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Registration {
        display_name: tenant.spec.display_name.clone(),
        status: if tenant.spec.suspended {
            "suspended"
        } else {
            "active"
        },
        max_attempts: tenant.spec.limits.max_job_attempts,
        max_concurrency: tenant.spec.limits.max_concurrent_jobs,
        media_max_bytes: tenant.spec.limits.media_max_bytes,
        media_retention_seconds: tenant.spec.limits.media_retention_seconds,
        worker_token_sha256: vec![hex::encode(Sha256::digest(worker_token.as_bytes()))],
        // The seed's inbound webhook uses the same secret as the provider's webhooks (the
        // first sender's).
        webhook_secret: credentials
            .first()
            .and_then(|secret| secret_value(secret, "webhookSecret"))
            .filter(|v| !v.is_empty()),
        senders,
    })
}

fn sender_registration(
    field: String,
    sender: &SenderSpec,
    credentials: &Secret,
) -> Result<ChannelRegistration, MissingKey> {
    let provider = sender.provider;
    if let Some(missing) = required_keys(provider)
        .iter()
        .find(|k| secret_value(credentials, k).is_none_or(|v| v.is_empty()))
    {
        return Err(MissingKey {
            field,
            provider,
            key: missing,
        });
    }
    let mut map = Map::new();
    for (key, name) in credential_keys(provider) {
        if let Some(value) = secret_value(credentials, key).filter(|v| !v.is_empty()) {
            map.insert((*name).to_owned(), Value::String(value));
        }
    }
    Ok(ChannelRegistration {
        provider: provider.as_str(),
        sender: sender.sender.clone(),
        base_url: sender.provider_base_url.clone(),
        label: sender.label.clone(),
        display_number: sender.display_number.clone(),
        credentials: map,
    })
}

/// A digest of what would be sent, to skip re-sending an unchanged registration.
pub fn digest(registration: &Registration) -> [u8; 32] {
    Sha256::digest(serde_json::to_vec(registration).unwrap_or_default()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The Tenant of the shipped InfoBip example.
    fn infobip_tenant() -> Tenant {
        let manifest = include_str!("../../manifests/examples/tenant-infobip.yaml");
        serde_yaml::Deserializer::from_str(manifest)
            .map(|document| serde_yaml::Value::deserialize(document).unwrap())
            .find(|document| document["kind"] == "Tenant")
            .map(|document| serde_yaml::from_value(document).unwrap())
            .unwrap()
    }

    fn secret(data: serde_json::Value) -> Secret {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}, "stringData": data}))
            .unwrap()
    }

    #[test]
    fn infobip_hmac_settings_reach_the_engine() {
        let credentials = secret(serde_json::json!({
            "apiKey": "k",
            "webhookHmacSecret": "hmac-key",
            "webhookSignatureHeader": "X-Infobip-Signature",
            "webhookSignatureAlgorithm": "sha256",
        }));
        let registration = build(&infobip_tenant(), &[credentials], "token").unwrap();
        let sent = &registration.senders[0].credentials;
        assert_eq!(sent["webhook_hmac_secret"], "hmac-key");
        assert_eq!(sent["webhook_signature_header"], "X-Infobip-Signature");
        assert_eq!(sent["webhook_signature_algorithm"], "sha256");
        assert_eq!(registration.webhook_secret, None);
    }

    #[test]
    fn media_limits_reach_the_engine_only_when_set() {
        let credentials = || secret(serde_json::json!({"apiKey": "k"}));
        let mut tenant = infobip_tenant();
        let plain = build(&tenant, &[credentials()], "token").unwrap();
        let body = serde_json::to_value(&plain).unwrap();
        assert!(
            body.get("media_max_bytes").is_none() && body.get("media_retention_seconds").is_none()
        );
        tenant.spec.limits.media_max_bytes = Some(2_000_000);
        tenant.spec.limits.media_retention_seconds = Some(3600);
        let limited = build(&tenant, &[credentials()], "token").unwrap();
        let body = serde_json::to_value(&limited).unwrap();
        assert_eq!(body["media_max_bytes"], 2_000_000);
        assert_eq!(body["media_retention_seconds"], 3600);
        assert_ne!(
            digest(&plain),
            digest(&limited),
            "a change is registered again"
        );
    }
}
