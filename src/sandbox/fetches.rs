//! InfoBip and Twilio download the media of an accepted send from its URL, like the real
//! providers do. The sandbox has no internet: it downloads URLs on loopback only (an engine under
//! test serving its signed `/public/media/...` links) and records each download
//! (`GET /_sandbox/fetches`: URL, status, type, size, SHA-256), so a test proves the bytes arrive.

use super::state::SandboxState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, Serialize)]
pub struct Fetched {
    pub provider: &'static str,
    pub url: String,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub size: usize,
    pub sha256: String,
    pub error: Option<String>,
}

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route("/_sandbox/fetches", get(list))
}

async fn list(State(state): State<SandboxState>) -> axum::Json<Vec<Fetched>> {
    axum::Json(state.fetches())
}

/// The media URLs of a send's body (InfoBip `mediaUrl`, Twilio `MediaUrl`, however nested).
fn media_urls(body: &Value, found: &mut Vec<String>) {
    match body {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "mediaUrl" || key == "MediaUrl" {
                    match value {
                        Value::String(url) => found.push(url.clone()),
                        Value::Array(urls) => {
                            found.extend(urls.iter().filter_map(|u| u.as_str().map(str::to_owned)))
                        }
                        _ => {}
                    }
                } else {
                    media_urls(value, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| media_urls(item, found)),
        _ => {}
    }
}

fn on_loopback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
    })
}

/// Downloads, in the background, the loopback media URLs of an accepted send.
pub(crate) fn download_media(state: &SandboxState, provider: &'static str, body: &Value) {
    let mut urls = Vec::new();
    media_urls(body, &mut urls);
    for url in urls.into_iter().filter(|u| on_loopback(u)) {
        let state = state.clone();
        tokio::spawn(async move {
            let fetched = fetch(&state, provider, url).await;
            state.record_fetch(fetched);
        });
    }
}

async fn fetch(state: &SandboxState, provider: &'static str, url: String) -> Fetched {
    let mut fetched = Fetched {
        provider,
        url: url.clone(),
        status: None,
        content_type: None,
        size: 0,
        sha256: String::new(),
        error: None,
    };
    match state.http().get(&url).send().await {
        Err(error) => fetched.error = Some(error.to_string()),
        Ok(response) => {
            fetched.status = Some(response.status().as_u16());
            fetched.content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match response.bytes().await {
                Ok(bytes) => {
                    fetched.size = bytes.len();
                    fetched.sha256 = hex::encode(Sha256::digest(&bytes));
                }
                Err(error) => fetched.error = Some(error.to_string()),
            }
        }
    }
    fetched
}
