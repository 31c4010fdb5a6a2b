//! `GET /media/{id}`: a media file of the worker's tenant (the token decides the tenant; another
//! tenant's id answers 404 like an unknown one).
//!
//! - 200: the bytes, `Content-Type`, `Content-Length`, `X-Content-SHA256` (hex) and
//!   `Digest: sha-256=<base64>`.
//! - 409 `media_pending`: not fetched yet (or being retried); `Retry-After` says when to ask again.
//! - 410 `media_failed`: the fetch failed for good (`details.error` says why); the message and its
//!   media reference stay in the job.

use super::store::{self, MediaRow};
use crate::engine::auth::Worker;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use uuid::Uuid;

pub const SHA256_HEADER: &str = "x-content-sha256";

#[utoipa::path(get, path = "/media/{id}", tag = "queue",
    params(("id" = String, Path, description = "A media id from the job's payload (`media[].id`) or from `POST /media`")),
    security(("worker_token" = [])),
    responses((status = 200, description = "the file, with Content-Type, Content-Length, X-Content-SHA256 and Digest"),
              (status = 401), (status = 404, description = "unknown, or another tenant's"),
              (status = 409, description = "`media_pending`: not fetched yet; see Retry-After"),
              (status = 410, description = "`media_failed`: the fetch failed for good"),
              (status = 503)))]
pub async fn get(
    State(state): State<AppState>,
    worker: Worker,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("no such media");
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let mut row = store::read(&state.pool, worker.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    match row.status.as_str() {
        "stored" => {
            let bytes = match row.bytes.take() {
                Some(bytes) => bytes,
                None => state
                    .settings
                    .media
                    .blobs
                    .get(
                        &state.pool,
                        (worker.tenant_id, id),
                        row.object_key.as_deref(),
                    )
                    .await
                    .map_err(storage_unavailable)?
                    .ok_or_else(not_found)?,
            };
            Ok(file(&row, bytes))
        }
        "pending" => Ok(pending(&row)),
        _ => Err(ApiError::new(
            StatusCode::GONE,
            "media_failed",
            "the media could not be fetched from the provider; the message is kept",
        )
        .with_details(json!({"error": row.error}))),
    }
}

/// The object store failed: a 503 (logged, its details not shown).
pub fn storage_unavailable(error: super::blobs::BlobError) -> ApiError {
    tracing::error!(%error, "media: could not read a stored file");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the media store is unavailable; try again",
    )
}

fn file(row: &MediaRow, bytes: Vec<u8>) -> Response {
    file_response(
        row.content_type.as_deref(),
        row.sha256.as_deref(),
        row.filename.as_deref(),
        bytes,
    )
}

/// A stored file's answer: the bytes with their type, length and digests (and, when it has a
/// name, `Content-Disposition`).
pub fn file_response(
    content_type: Option<&str>,
    sha256: Option<&str>,
    filename: Option<&str>,
    bytes: Vec<u8>,
) -> Response {
    let sha256 = sha256.unwrap_or_default().to_owned();
    let digest = hex::decode(&sha256)
        .map(|raw| base64::engine::general_purpose::STANDARD.encode(raw))
        .unwrap_or_default();
    let header = |value: String| {
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    };
    let content_type = content_type
        .unwrap_or("application/octet-stream")
        .to_owned();
    let mut response = (
        StatusCode::OK,
        [
            (CONTENT_TYPE, header(content_type)),
            (CONTENT_LENGTH, HeaderValue::from(bytes.len())),
            (HeaderName::from_static(SHA256_HEADER), header(sha256)),
            (
                HeaderName::from_static("digest"),
                header(format!("sha-256={digest}")),
            ),
        ],
        bytes,
    )
        .into_response();
    if let Some(name) = filename {
        // Quotes and backslashes cannot end the quoted name early.
        let safe: String = name
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || !c.is_ascii() || c.is_ascii_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_DISPOSITION, value);
        }
    }
    response
}

/// Longest Retry-After: the row's next try may be a download's lease (a download in flight ends
/// far sooner), so a worker is never told to wait long.
const MAX_RETRY_AFTER_SECONDS: i64 = 10;

fn pending(row: &MediaRow) -> Response {
    let wait = (row.next_attempt_at - chrono::Utc::now())
        .num_seconds()
        .clamp(1, MAX_RETRY_AFTER_SECONDS);
    let mut response = ApiError::conflict(
        "media_pending",
        "the media is not fetched yet; ask again after Retry-After seconds",
    )
    .with_details(json!({"error": row.error}))
    .into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(wait));
    response
}
