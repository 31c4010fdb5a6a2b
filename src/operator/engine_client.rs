//! The engine's admin API as the operator uses it. The operator never imports engine internals:
//! this speaks the documented JSON of `PUT/DELETE /admin/tenants/{slug}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is unreachable")]
    Unreachable(#[source] reqwest::Error),
    #[error("the engine refused the registration ({status}): {message}")]
    Refused {
        status: u16,
        /// The engine's error code (`sender_in_use`, `invalid_field`, ...).
        code: String,
        message: String,
    },
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Registration {
    pub display_name: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_max_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_retention_seconds: Option<i64>,
    pub worker_token_sha256: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// The tenant's senders, the first one first.
    pub senders: Vec<ChannelRegistration>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ChannelRegistration {
    pub provider: &'static str,
    pub sender: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_number: Option<String>,
    /// The engine's credential names (`api_key`, `app_secret`, ...) with their values.
    pub credentials: Map<String, Value>,
}

impl std::fmt::Display for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        let providers: Vec<&str> = self.senders.iter().map(|s| s.provider).collect();
        write!(
            f,
            "{} ({} via {})",
            self.display_name,
            self.status,
            providers.join(", ")
        )
    }
}

/// What the operator reads back of a registered tenant.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct TenantSeen {
    /// When the tenant's worker (its n8n) last asked for a job.
    #[serde(default)]
    pub last_worker_seen_at: Option<DateTime<Utc>>,
}

pub struct EngineClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl EngineClient {
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with static settings builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    pub async fn register(
        &self,
        slug: &str,
        registration: &Registration,
    ) -> Result<(), EngineError> {
        let response = self
            .http
            .put(format!("{}/admin/tenants/{slug}", self.base))
            .bearer_auth(&self.token)
            .json(registration)
            .send()
            .await
            .map_err(EngineError::Unreachable)?;
        check(response).await
    }

    /// The registered tenant as the engine sees it; `None` when it is not registered.
    pub async fn tenant(&self, slug: &str) -> Result<Option<TenantSeen>, EngineError> {
        let response = self
            .http
            .get(format!("{}/admin/tenants/{slug}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(EngineError::Unreachable)?;
        if response.status() == 404 {
            return Ok(None);
        }
        if !response.status().is_success() {
            return check(response).await.map(|()| None);
        }
        response
            .json()
            .await
            .map(Some)
            .map_err(EngineError::Unreachable)
    }

    /// Deletes the tenant and its data; an unknown tenant counts as deleted.
    pub async fn delete(&self, slug: &str) -> Result<(), EngineError> {
        let response = self
            .http
            .delete(format!("{}/admin/tenants/{slug}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(EngineError::Unreachable)?;
        if response.status() == 404 {
            return Ok(());
        }
        check(response).await
    }
}

async fn check(response: reqwest::Response) -> Result<(), EngineError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("no error message")
        .to_owned();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Err(EngineError::Refused {
        status,
        code,
        message,
    })
}
