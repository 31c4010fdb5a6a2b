//! The providers' template catalog APIs, read for the catalog sync: InfoBip
//! `GET /whatsapp/2/senders/{sender}/templates` and Meta `GET /{version}/{waba-id}/message_templates`
//! (Twilio's Content API lives on another host and is not read). Same client, allow-list and
//! address checks as sends; only the first 64 KiB of an answer are read.

use super::clients::Clients;
use super::provider_error;
use crate::engine::providers::Provider;
use crate::engine::tenants::{Channel, normalize_address};
use serde_json::Value;

/// A template as a provider lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderTemplate {
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub body: String,
    pub quality: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{0} has no template API the engine reads")]
    Unsupported(&'static str),
    #[error("the channel lacks `{0}`")]
    Missing(&'static str),
    #[error("the provider's template API cannot be reached: {0}")]
    Unreachable(String),
    #[error("the provider answered HTTP {status}{code}")]
    Refused { status: u16, code: String },
    #[error("the provider's answer is not a template list")]
    Malformed,
}

impl Clients {
    /// The channel's templates as its provider lists them (one page of up to 250 at Meta).
    pub async fn fetch_templates(
        &self,
        channel: &Channel,
    ) -> Result<Vec<ProviderTemplate>, FetchError> {
        let base = self.destination_for(channel).map_err(|_| {
            FetchError::Unreachable(
                "the channel's base URL is refused by the engine's policy".into(),
            )
        })?;
        let secret =
            |s: &Option<crate::engine::secret::Secret>| s.as_ref().map(|s| s.expose().to_owned());
        let request = match channel.provider {
            Provider::Infobip => {
                let key = secret(&channel.secrets.api_key).ok_or(FetchError::Missing("api_key"))?;
                let sender = normalize_address(&channel.sender);
                let url =
                    base.url_with_segments(&["whatsapp", "2", "senders", sender, "templates"]);
                self.http()
                    .get(url)
                    .header("authorization", format!("App {key}"))
            }
            Provider::Meta => {
                let token = secret(&channel.secrets.access_token)
                    .ok_or(FetchError::Missing("access_token"))?;
                let waba = channel
                    .secrets
                    .waba_id
                    .clone()
                    .ok_or(FetchError::Missing("waba_id"))?;
                let mut url =
                    base.url_with_segments(&[self.meta_version(), &waba, "message_templates"]);
                url.query_pairs_mut().append_pair("limit", "250");
                self.http().get(url).bearer_auth(token)
            }
            Provider::Twilio => return Err(FetchError::Unsupported("Twilio")),
            Provider::Seed => return Err(FetchError::Unsupported("the seed format")),
        };
        let response = request.send().await.map_err(|e| {
            FetchError::Unreachable(if e.is_timeout() {
                "timed out".into()
            } else {
                "connection failed".into()
            })
        })?;
        let status = response.status().as_u16();
        let body = provider_error::read_json(response).await;
        if status != 200 {
            let code = body["errorCode"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| body["error"]["code"].as_i64().map(|c| c.to_string()))
                .and_then(|c| provider_error::code(&c))
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            return Err(FetchError::Refused { status, code });
        }
        match channel.provider {
            Provider::Infobip => parse_infobip(&body),
            _ => parse_meta(&body),
        }
        .ok_or(FetchError::Malformed)
    }
}

/// `{templates: [{name, language, status, category, structure: {body: {text}}}]}`
pub fn parse_infobip(body: &Value) -> Option<Vec<ProviderTemplate>> {
    body["templates"]
        .as_array()?
        .iter()
        .map(|t| {
            Some(ProviderTemplate {
                name: t["name"].as_str()?.to_owned(),
                language: t["language"].as_str()?.to_owned(),
                category: t["category"].as_str()?.to_ascii_uppercase(),
                status: t["status"].as_str()?.to_ascii_uppercase(),
                body: t["structure"]["body"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                quality: None,
                id: t["id"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// `{data: [{name, language, status, category, id, components: [{type: BODY, text}], quality_score: {score}}]}`
pub fn parse_meta(body: &Value) -> Option<Vec<ProviderTemplate>> {
    body["data"]
        .as_array()?
        .iter()
        .map(|t| {
            let text = t["components"]
                .as_array()
                .and_then(|c| {
                    c.iter().find(|c| {
                        c["type"]
                            .as_str()
                            .is_some_and(|k| k.eq_ignore_ascii_case("body"))
                    })
                })
                .and_then(|c| c["text"].as_str());
            Some(ProviderTemplate {
                name: t["name"].as_str()?.to_owned(),
                language: t["language"].as_str()?.to_owned(),
                category: t["category"].as_str()?.to_ascii_uppercase(),
                status: t["status"].as_str()?.to_ascii_uppercase(),
                body: text.unwrap_or_default().to_owned(),
                quality: t["quality_score"]["score"]
                    .as_str()
                    .map(str::to_ascii_uppercase),
                id: t["id"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_shapes_parse_and_a_broken_list_is_refused() {
        let meta = json!({"data": [{"name": "weekly_offer", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
            "id": "806", "components": [{"type": "HEADER", "text": "x"}, {"type": "BODY", "text": "Hi {{1}}"}],
            "quality_score": {"score": "GREEN"}}]});
        let parsed = parse_meta(&meta).unwrap();
        assert_eq!(
            (parsed[0].body.as_str(), parsed[0].quality.as_deref()),
            ("Hi {{1}}", Some("GREEN"))
        );
        let infobip = json!({"templates": [{"id": "1", "name": "t", "language": "es", "status": "paused", "category": "utility",
            "structure": {"body": {"text": "Hola"}}}]});
        assert_eq!(parse_infobip(&infobip).unwrap()[0].status, "PAUSED");
        assert_eq!(parse_meta(&json!({"data": [{"name": "x"}]})), None);
        assert_eq!(parse_infobip(&json!({"nope": []})), None);
    }
}
