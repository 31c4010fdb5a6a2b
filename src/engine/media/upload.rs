//! `POST /media`: a worker uploads a file to send (`POST /messages/send` with
//! `media: {type, id}`). The body is the file with its `Content-Type` (the name in `?filename=`),
//! or `multipart/form-data` with the file in a part named `file`.
//!
//! The tenant's size limit (`media_max_bytes`, else `--media-max-bytes`) is enforced while the
//! body arrives (413, nothing stored); the type must be one WhatsApp sends (415). The file is kept
//! for the tenant's media retention.

use super::blobs::Placement;
use super::files::{self, NewUpload};
use super::kinds;
use crate::engine::auth::Worker;
use crate::engine::error::ApiError;
use crate::engine::outbound::content_checks::FILENAME_MAX;
use crate::engine::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file's name (documents show it); a multipart part's own name wins.
    #[serde(default)]
    pub filename: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Send it with `media: {"type": ..., "id": <this>}`.
    pub id: Uuid,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// When the retention deletes it.
    pub expires_at: DateTime<Utc>,
}

/// The file as it arrived.
struct Received {
    content_type: String,
    filename: Option<String>,
    bytes: Vec<u8>,
}

#[utoipa::path(post, path = "/media", tag = "messages", params(UploadQuery),
    request_body(content = Vec<u8>, description = "the file, with its Content-Type; or multipart/form-data with a part named `file`",
                 content_type = "application/octet-stream"),
    security(("worker_token" = [])),
    responses((status = 201, body = Uploaded),
              (status = 400, description = "empty file, bad filename, no `file` part"), (status = 401),
              (status = 413, description = "larger than the tenant's media_max_bytes; nothing stored"),
              (status = 415, description = "a type WhatsApp does not send"), (status = 503)))]
pub async fn upload(
    State(state): State<AppState>,
    worker: Worker,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let limits = files::tenant_media(&state.pool, worker.tenant_id).await?;
    let limit = limits
        .media_max_bytes
        .map_or(state.settings.media.max_bytes, |n| n as u64);
    if declared_length(&request).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let received = receive(&state, request, query.filename, limit).await?;
    check(&received)?;
    let retention = limits
        .media_retention_seconds
        .map_or(state.settings.retention, |s| {
            std::time::Duration::from_secs(s as u64)
        });
    let expires_at = Utc::now()
        + chrono::Duration::from_std(retention).unwrap_or_else(|_| chrono::Duration::days(3650));
    let id = Uuid::new_v4();
    let sha256 = hex::encode(Sha256::digest(&received.bytes));
    let placement = state
        .settings
        .media
        .blobs
        .put(worker.tenant_id, id, &received.bytes)
        .await
        .map_err(|error| {
            tracing::error!(%error, "media upload: the object store refused the file");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the media store is unavailable; nothing was stored",
            )
        })?;
    let (bytes, object_key) = match &placement {
        Placement::Row => (Some(received.bytes.as_slice()), None),
        Placement::Object(key) => (None, Some(key.as_str())),
    };
    let insert = files::insert_upload(
        &state.pool,
        &NewUpload {
            tenant: worker.tenant_id,
            id,
            content_type: &received.content_type,
            sha256: &sha256,
            size: received.bytes.len() as i64,
            filename: received.filename.as_deref(),
            bytes,
            object_key,
            expires_at,
        },
    )
    .await;
    if let Err(error) = insert {
        // The row names the object: without it the object must not stay behind.
        state.settings.media.blobs.delete_placed(&placement).await;
        return Err(error.into());
    }
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            id,
            content_type: received.content_type,
            size: received.bytes.len() as u64,
            sha256,
            filename: received.filename,
            expires_at,
        }),
    ))
}

fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the file is larger than the tenant's media limit of {limit} bytes; nothing was stored"
        ),
    )
    .with_details(json!({"field": "body", "limit": limit}))
}

async fn receive(
    state: &AppState,
    request: Request,
    filename: Option<String>,
    limit: u64,
) -> Result<Received, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if kinds::essence(&content_type) == "multipart/form-data" {
        return multipart(state, request, filename, limit).await;
    }
    let bytes = read_limited(request.into_body(), limit).await?;
    Ok(Received {
        content_type: kinds::essence(&content_type),
        filename,
        bytes,
    })
}

/// The body, refused as soon as it passes `limit`.
async fn read_limited(body: Body, limit: u64) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| ApiError::bad_request("invalid_body", "the body could not be read"))?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn multipart(
    state: &AppState,
    request: Request,
    filename: Option<String>,
    limit: u64,
) -> Result<Received, ApiError> {
    let bad = |reason: String| ApiError::invalid_field("file", reason);
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| bad(rejection.body_text()))?;
    while let Some(mut field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
        if field.name() != Some("file") {
            continue;
        }
        let content_type = kinds::essence(field.content_type().unwrap_or_default());
        let name = field.file_name().map(str::to_owned).or(filename);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.body_text()))? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(too_large(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Received {
            content_type,
            filename: name,
            bytes,
        });
    }
    Err(bad("no part named `file`".into()))
}

fn check(received: &Received) -> Result<(), ApiError> {
    if received.bytes.is_empty() {
        return Err(ApiError::invalid_field("body", "the file is empty"));
    }
    if !kinds::sendable(&received.content_type) {
        let shown: String = received.content_type.chars().take(100).collect();
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type `{shown}` is not a type WhatsApp sends; one of: {}",
                kinds::all_listed()
            ),
        )
        .with_details(json!({"field": "Content-Type"})));
    }
    if let Some(name) = &received.filename {
        let printable = !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
        if name.trim().is_empty() || name.chars().count() > FILENAME_MAX || !printable {
            return Err(ApiError::invalid_field(
                "filename",
                format!(
                    "must be 1 to {FILENAME_MAX} characters, without `/`, `\\` or control characters"
                ),
            ));
        }
    }
    Ok(())
}
