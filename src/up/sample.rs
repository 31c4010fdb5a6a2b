//! The sample tenant `flomastr up` applies: `manifests/examples/tenant-infobip.yaml`, pointed at
//! the local InfoBip stand-in (the sandbox) with credentials minted for this stack.

use crate::tenant::Tenant;
use crate::up::UpError;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use std::path::Path;

pub const EXAMPLE: &str = "manifests/examples/tenant-infobip.yaml";

/// The sample's credentials Secret and Tenant, ready to apply.
pub struct Sample {
    pub secret: Secret,
    pub tenant: Tenant,
}

impl Sample {
    pub fn slug(&self) -> &str {
        self.tenant.metadata.name.as_deref().unwrap_or_default()
    }

    /// The WhatsApp sender of the sample (InfoBip number).
    pub fn sender(&self) -> &str {
        self.tenant
            .spec
            .whatsapp
            .sender
            .as_deref()
            .unwrap_or_default()
    }

    /// Runs the sample's n8n from `image` (the example pins a public one, which a local node
    /// without a registry cannot pull) and gives the Tenant the `labels` its operator selects.
    pub fn adapt(&mut self, image: Option<&str>, labels: &[(String, String)]) {
        if let Some(image) = image {
            self.tenant.spec.n8n.image = Some(image.to_owned());
        }
        let tenant_labels = self.tenant.metadata.labels.get_or_insert_default();
        for (key, value) in labels {
            tenant_labels.insert(key.clone(), value.clone());
        }
    }
}

/// The `key=value,...` labels of an equality-only label selector; `None` when it is not one.
pub fn selector_labels(selector: &str) -> Option<Vec<(String, String)>> {
    selector
        .split(',')
        .map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            let (key, value) = (key.trim(), value.trim_start_matches('=').trim());
            (!key.is_empty() && !key.ends_with('!')).then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Reads the example and points it at the sandbox.
pub fn load(
    root: &Path,
    sandbox_url: &str,
    api_key: &str,
    webhook_secret: &str,
) -> Result<Sample, UpError> {
    let path = root.join(EXAMPLE);
    let text = std::fs::read_to_string(&path).map_err(|source| UpError::Io {
        path: path.clone(),
        source,
    })?;
    let invalid = |detail: String| UpError::Sample {
        path: path.display().to_string(),
        detail,
    };
    let mut secret = None;
    let mut tenant = None;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| invalid(format!("not YAML: {e}")))?;
        match value.get("kind").and_then(Value::as_str) {
            Some("Secret") => secret = Some(value),
            Some("Tenant") => tenant = Some(value),
            _ => {}
        }
    }
    let mut secret = secret.ok_or_else(|| invalid("no Secret".into()))?;
    let mut tenant = tenant.ok_or_else(|| invalid("no Tenant".into()))?;
    secret["stringData"] = json!({"apiKey": api_key, "webhookSecret": webhook_secret});
    tenant["spec"]["whatsapp"]["providerBaseUrl"] = json!(sandbox_url);
    Ok(Sample {
        secret: serde_json::from_value(secret)
            .map_err(|e| invalid(format!("the Secret does not parse: {e}")))?,
        tenant: serde_json::from_value(tenant)
            .map_err(|e| invalid(format!("the Tenant does not parse: {e}")))?,
    })
}

/// The sandbox's accounts: one InfoBip account matching the sample tenant.
pub fn sandbox_accounts(sample: &Sample, api_key: &str, webhook_secret: &str) -> String {
    json!({
        "infobip": [{
            "api_key": api_key,
            "sender": sample.sender(),
            "webhook_secret": webhook_secret,
        }]
    })
    .to_string()
}

/// An InfoBip inbound-message webhook body for the sample, as InfoBip posts it.
pub fn inbound_webhook(sample: &Sample, from: &str, message_id: &str, text: &str) -> Value {
    json!({
        "results": [{
            "from": from,
            "to": sample.sender(),
            "integrationType": "WHATSAPP",
            "receivedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string(),
            "messageId": message_id,
            "pairedMessageId": null,
            "callbackData": null,
            "message": {"type": "TEXT", "text": text},
            "contact": {"name": "Ana"},
            "price": {"pricePerMessage": 0, "currency": "EUR"}
        }],
        "messageCount": 1,
        "pendingMessageCount": 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_example_is_pointed_at_the_sandbox() {
        let sample = load(root(), "http://127.0.0.1:9/", "key-1", "hook-1").unwrap();
        assert_eq!(sample.slug(), "acme");
        assert_eq!(
            sample.tenant.spec.whatsapp.provider_base_url.as_deref(),
            Some("http://127.0.0.1:9/")
        );
        let data = sample.secret.string_data.as_ref().unwrap();
        assert_eq!(data["apiKey"], "key-1");
        assert_eq!(data["webhookSecret"], "hook-1");
        let accounts = sandbox_accounts(&sample, "key-1", "hook-1");
        crate::sandbox::Accounts::from_json(&accounts).expect("the sandbox takes the accounts");
    }

    #[test]
    fn the_sample_runs_the_given_image_with_the_selected_labels() {
        let mut sample = load(root(), "http://127.0.0.1:9/", "k", "h").unwrap();
        let labels = selector_labels("flomastr.io/stack=up, team = a").unwrap();
        sample.adapt(Some("flomastr/n8n:1.2.3"), &labels);
        assert_eq!(
            sample.tenant.spec.n8n.image.as_deref(),
            Some("flomastr/n8n:1.2.3")
        );
        let on_tenant = sample.tenant.metadata.labels.as_ref().unwrap();
        assert_eq!(on_tenant["flomastr.io/stack"], "up");
        assert_eq!(on_tenant["team"], "a");
        // Only equality selectors can be turned into labels.
        assert_eq!(selector_labels("a!=b"), None);
        assert_eq!(selector_labels("a"), None);
        assert_eq!(
            selector_labels("a==b").unwrap(),
            [("a".to_owned(), "b".to_owned())]
        );
    }

    #[test]
    fn the_inbound_webhook_parses_as_infobip() {
        let sample = load(root(), "http://127.0.0.1:9/", "k", "h").unwrap();
        let body = inbound_webhook(&sample, "447700900001", "m-1", "Hola");
        let bytes = serde_json::to_vec(&body).unwrap();
        let events = crate::engine::providers::infobip::parse(&bytes).unwrap();
        assert_eq!(events.len(), 1);
    }
}
