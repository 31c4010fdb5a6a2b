//! The providers' template catalog APIs, for the engine's catalog sync: InfoBip
//! `GET /whatsapp/2/senders/{sender}/templates` (`Authorization: App`) and Meta
//! `GET /{version}/{waba-id}/message_templates` (Bearer). Each account lists its templates in
//! the sandbox's accounts document; each API answers in its provider's shape.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::{DEFAULT_WABA_ID, SandboxState};

/// A template as the accounts document lists it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxTemplate {
    pub name: String,
    pub language: String,
    /// MARKETING, UTILITY or AUTHENTICATION.
    pub category: String,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED, ...
    pub status: String,
    pub body: String,
    /// Meta's quality score: GREEN, YELLOW, RED or UNKNOWN.
    #[serde(default)]
    pub quality: Option<String>,
}

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/whatsapp/2/senders/{sender}/templates", get(infobip))
        // The segment is a WABA id; named as the send route names it (one name per position).
        .route("/{version}/{phone_number_id}/message_templates", get(meta))
}

fn token<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (given, token) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| token.trim())
}

async fn infobip(
    State(state): State<SandboxState>,
    Path(sender): Path<String>,
    headers: HeaderMap,
) -> Response {
    let key = token(&headers, "App").unwrap_or_default();
    let Some(account) = state
        .accounts()
        .infobip
        .into_iter()
        .find(|a| a.api_key == key)
    else {
        let body = json!({"requestError": {"serviceException": {"messageId": "UNAUTHORIZED", "text": "Invalid login details"}}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    };
    if account.sender != sender {
        let body = json!({"errorCode": "E404", "description": "Sender not found.", "action": null, "violations": [], "resources": []});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let templates: Vec<Value> = account
        .templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": format!("{}", 100_000 + i), "businessAccountId": 555, "name": t.name, "language": t.language,
                   "status": t.status, "category": t.category,
                   "structure": {"body": {"text": t.body}, "type": "TEXT"}})
        })
        .collect();
    axum::Json(json!({"templates": templates})).into_response()
}

async fn meta(
    State(state): State<SandboxState>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let bearer = token(&headers, "Bearer").unwrap_or_default();
    let account = state.accounts().meta.into_iter().find(|a| {
        a.access_token == bearer && a.waba_id.as_deref().unwrap_or(DEFAULT_WABA_ID) == waba_id
    });
    let Some(account) = account else {
        let body = json!({"error": {"message": "Invalid OAuth access token - Cannot parse access token",
                                    "type": "OAuthException", "code": 190, "fbtrace_id": "Asandbox"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    };
    let data: Vec<Value> = account
        .templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"name": t.name, "language": t.language, "status": t.status, "category": t.category,
                   "id": format!("{}", 806_312_974_732_000_u64 + i as u64),
                   "components": [{"type": "BODY", "text": t.body}],
                   "quality_score": {"score": t.quality.clone().unwrap_or_else(|| "UNKNOWN".to_owned())}})
        })
        .collect();
    axum::Json(json!({"data": data, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}}))
        .into_response()
}
