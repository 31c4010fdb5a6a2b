//! Inbound media downloads, in each provider's wire format (reference 1.4, 2.6, 3.1):
//!
//! - Meta: `GET /{version}/{media-id}` with the account's bearer token answers
//!   `{messaging_product, url, mime_type, sha256, file_size, id}`; the `url` answers the file to
//!   the same bearer token only.
//! - InfoBip: `GET /whatsapp/1/senders/{sender}/media/{media-id}` with `Authorization: App <key>`
//!   of the account of that sender.
//! - Twilio: `GET /2010-04-01/Accounts/{sid}/Messages/{message-sid}/Media/{media-sid}` with Basic
//!   auth of the account answers a 307 redirect to a CDN URL that needs no credentials.
//!
//! Tests put files in with `PUT /_sandbox/media/{id}?provider=&account=[&fail=<status>]` (body:
//! the bytes, `Content-Type`: their type); `account` is the Meta phone number id, the InfoBip
//! sender or the Twilio account SID whose credentials may download it. `fail` makes the file's
//! download answer that status (a provider outage); `delay_ms` answers it that much later (a
//! slow provider).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::{SandboxMedia, SandboxState};

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/_sandbox/media/{id}", put(put_media))
        .route("/{version}/{media_id}", get(meta_lookup))
        .route("/_sandbox/cdn/meta/{id}", get(meta_download))
        .route(
            "/whatsapp/1/senders/{sender}/media/{media_id}",
            get(infobip_download),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}/Media/{media_sid}",
            get(twilio_media),
        )
        .route("/_sandbox/cdn/twilio/{id}", get(twilio_cdn))
}

#[derive(Deserialize)]
struct PutQuery {
    provider: String,
    account: String,
    #[serde(default)]
    fail: Option<u16>,
    #[serde(default)]
    delay_ms: Option<u64>,
}

/// The sandbox's own origin as the client reached it.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn put_media(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    Query(query): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !matches!(query.provider.as_str(), "meta" | "infobip" | "twilio") {
        let error = json!({"error": "provider must be meta, infobip or twilio"});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let sha256 = hex::encode(Sha256::digest(&body));
    let origin = origin(&headers);
    let url = match query.provider.as_str() {
        "infobip" => Some(format!(
            "{origin}/whatsapp/1/senders/{}/media/{id}",
            query.account
        )),
        "twilio" => Some(format!(
            "{origin}/2010-04-01/Accounts/{}/Messages/MM{}/Media/{id}",
            query.account,
            "0".repeat(32)
        )),
        _ => None,
    };
    let size = body.len();
    state.put_media(
        id.clone(),
        SandboxMedia {
            provider: query.provider,
            account: query.account,
            content_type,
            bytes: body.to_vec(),
            fail: query.fail,
            delay_ms: query.delay_ms,
            downloads: 0,
        },
    );
    axum::Json(json!({"id": id, "sha256": sha256, "size": size, "url": url})).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then_some(token.trim())
}

/// The media, when it exists for `provider` and `allowed` accepts its account.
fn find(
    state: &SandboxState,
    provider: &str,
    id: &str,
    allowed: impl Fn(&str) -> bool,
) -> Result<SandboxMedia, Found> {
    let media = state.media(id).filter(|m| m.provider == provider);
    match media {
        None => Err(Found::Missing),
        Some(media) if !allowed(&media.account) => Err(Found::Refused),
        Some(media) => Ok(media),
    }
}

enum Found {
    Missing,
    Refused,
}

/// Meta's Graph error envelope.
pub(crate) fn meta_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "OAuthException", "code": code,
                                "fbtrace_id": "AsandboxTraceId"}});
    (status, axum::Json(body)).into_response()
}

/// The token must be the one of the Meta account that received the media.
fn meta_allowed(state: &SandboxState, headers: &HeaderMap) -> impl Fn(&str) -> bool {
    let token = bearer(headers).map(str::to_owned);
    let accounts = state.accounts().meta;
    move |phone_number_id: &str| {
        accounts.iter().any(|account| {
            account.phone_number_id == phone_number_id
                && token.as_deref() == Some(account.access_token.as_str())
        })
    }
}

async fn meta_lookup(
    State(state): State<SandboxState>,
    Path((version, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !version.starts_with('v') {
        return meta_error(StatusCode::BAD_REQUEST, 2500, "Unknown path components");
    }
    match find(&state, "meta", &media_id, meta_allowed(&state, &headers)) {
        Err(Found::Missing) => meta_error(
            StatusCode::BAD_REQUEST,
            100,
            "Unsupported get request. Object with ID does not exist",
        ),
        Err(Found::Refused) => invalid_token(),
        Ok(media) => axum::Json(json!({
            "messaging_product": "whatsapp",
            "url": format!("{}/_sandbox/cdn/meta/{media_id}", origin(&headers)),
            "mime_type": media.content_type,
            "sha256": hex::encode(Sha256::digest(&media.bytes)),
            "file_size": media.bytes.len(),
            "id": media_id,
        }))
        .into_response(),
    }
}

pub(crate) fn invalid_token() -> Response {
    meta_error(
        StatusCode::UNAUTHORIZED,
        190,
        "Invalid OAuth access token - Cannot parse access token",
    )
}

async fn meta_download(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match find(&state, "meta", &id, meta_allowed(&state, &headers)) {
        Err(Found::Missing) => StatusCode::NOT_FOUND.into_response(),
        Err(Found::Refused) => invalid_token(),
        Ok(media) => serve(&state, &id, media).await,
    }
}

async fn infobip_download(
    State(state): State<SandboxState>,
    Path((sender, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("App"))
        .map(|(_, key)| key.trim().to_owned());
    let accounts = state.accounts().infobip;
    let allowed = |account: &str| {
        account == sender
            && accounts
                .iter()
                .any(|a| a.sender == sender && Some(a.api_key.as_str()) == key.as_deref())
    };
    match find(&state, "infobip", &media_id, allowed) {
        Err(Found::Missing) => {
            let body = json!({"requestError": {"serviceException": {"messageId": "NOT_FOUND",
                              "text": "Media not found."}}});
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
        Err(Found::Refused) => {
            let body = json!({"requestError": {"serviceException": {"messageId": "UNAUTHORIZED",
                              "text": "Invalid login details"}}});
            (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
        }
        Ok(media) => serve(&state, &media_id, media).await,
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Twilio answers the media resource with a redirect to its CDN (reference 3.1).
async fn twilio_media(
    State(state): State<SandboxState>,
    Path((account_sid, _message_sid, media_sid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let presented = basic(&headers);
    let accounts = state.accounts().twilio;
    let allowed = |account: &str| {
        account == account_sid
            && accounts.iter().any(|a| {
                presented.as_ref().is_some_and(|(user, token)| {
                    a.account_sid == account_sid && *user == a.account_sid && *token == a.auth_token
                })
            })
    };
    match find(&state, "twilio", &media_sid, allowed) {
        Err(Found::Missing) => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
        Err(Found::Refused) => twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate"),
        Ok(_) => {
            let location = format!("{}/_sandbox/cdn/twilio/{media_sid}", origin(&headers));
            (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, location)]).into_response()
        }
    }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body: Value = json!({"code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()});
    (status, axum::Json(body)).into_response()
}

/// The CDN's signed URL needs no credentials.
async fn twilio_cdn(State(state): State<SandboxState>, Path(id): Path<String>) -> Response {
    match find(&state, "twilio", &id, |_| true) {
        Ok(media) => serve(&state, &id, media).await,
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The file, or the injected failure; each answer is counted.
async fn serve(state: &SandboxState, id: &str, media: SandboxMedia) -> Response {
    if let Some(delay) = media.delay_ms {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    state.count_media_download(id);
    if let Some(status) = media.fail.and_then(|s| StatusCode::from_u16(s).ok()) {
        return (status, "injected failure").into_response();
    }
    ([(CONTENT_TYPE, media.content_type)], media.bytes).into_response()
}
