//! The HTTP side of any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp): one
//! `reqwest` client, a base URL and an optional key. Responses are read as loose JSON because
//! compatible servers differ (missing `usage`, `finish_reason` null or "", extra fields).

use crate::engine::secret::Secret;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the model server cannot be reached: {0}")]
    Unreachable(String),
    #[error("the model server answered {status}")]
    Status { status: u16 },
    #[error("the model server's answer is not what was expected: {0}")]
    Malformed(String),
}

#[derive(Clone)]
pub struct Provider {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
}

impl Provider {
    pub fn new(base_url: &str, api_key: Option<Secret>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        }
    }

    /// POSTs `body` to `{base}/{path}` and returns the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ProviderError> {
        let mut request = self
            .http
            .post(format!("{}/{path}", self.base_url))
            .json(body);
        if let Some(key) = self.api_key.as_ref().filter(|k| !k.is_empty()) {
            request = request.bearer_auth(key.expose());
        }
        // reqwest's error text may contain the URL but never headers, so the key stays out.
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::Status {
                status: status.as_u16(),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unreachable(e.without_url().to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Malformed(e.to_string()))
    }
}
