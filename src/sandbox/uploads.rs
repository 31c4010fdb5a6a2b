//! Meta's media upload, `POST /{version}/{phone-number-id}/media` (multipart/form-data:
//! `messaging_product=whatsapp`, `type`, `file`), with the number's bearer token. The file is kept
//! like an inbound one (`GET /{version}/{media-id}` finds it), so a test can check that the bytes
//! Meta got are the bytes the worker uploaded. Each upload is recorded as a request whose body
//! describes the file (size, SHA-256, type, name).

use super::media::{invalid_token, meta_error};
use super::state::{RecordedRequest, SandboxMedia, SandboxState};
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{SecondsFormat, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Meta's largest file (documents, 100 MB).
const MAX_BYTES: usize = 100 * 1024 * 1024;

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route(
        "/{version}/{phone_number_id}/media",
        post(upload).layer(DefaultBodyLimit::max(MAX_BYTES + 64 * 1024)),
    )
}

struct Form {
    product: Option<String>,
    kind: Option<String>,
    file: Option<(String, Option<String>, Vec<u8>)>,
}

async fn read_form(request: Request, state: &SandboxState) -> Result<Form, String> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| e.body_text())?;
    let mut form = Form {
        product: None,
        kind: None,
        file: None,
    };
    while let Some(field) = multipart.next_field().await.map_err(|e| e.body_text())? {
        match field.name().unwrap_or_default() {
            "messaging_product" => {
                form.product = Some(field.text().await.map_err(|e| e.body_text())?)
            }
            "type" => form.kind = Some(field.text().await.map_err(|e| e.body_text())?),
            "file" => {
                let content_type = field.content_type().unwrap_or_default().to_owned();
                let name = field.file_name().map(str::to_owned);
                let bytes = field.bytes().await.map_err(|e| e.body_text())?;
                form.file = Some((content_type, name, bytes.to_vec()));
            }
            _ => {}
        }
    }
    Ok(form)
}

async fn upload(
    State(state): State<SandboxState>,
    Path((version, phone_number_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    if !version.starts_with('v') {
        return meta_error(StatusCode::BAD_REQUEST, 2500, "Unknown path components");
    }
    let Some(account) = super::meta::authenticate(&state, &phone_number_id, &headers) else {
        return invalid_token();
    };
    let form = match read_form(request, &state).await {
        Ok(form) => form,
        Err(reason) => {
            return meta_error(
                StatusCode::BAD_REQUEST,
                100,
                &format!("Invalid parameter: {reason}"),
            );
        }
    };
    if form.product.as_deref() != Some("whatsapp") {
        return meta_error(
            StatusCode::BAD_REQUEST,
            100,
            "(#100) The parameter messaging_product is required.",
        );
    }
    let Some((content_type, filename, bytes)) = form.file else {
        return meta_error(
            StatusCode::BAD_REQUEST,
            100,
            "(#100) The parameter file is required.",
        );
    };
    let declared = form.kind.unwrap_or_default();
    if !crate::engine::media::kinds::sendable(&declared)
        || crate::engine::media::kinds::essence(&content_type)
            != crate::engine::media::kinds::essence(&declared)
    {
        return meta_error(
            StatusCode::BAD_REQUEST,
            131053,
            "(#131053) Media upload error: unsupported or mismatched file type",
        );
    }
    let id = format!(
        "{}",
        1_000_000_000_000_000u64 + u64::from(rand::random::<u32>())
    );
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len();
    state.put_media(
        id.clone(),
        SandboxMedia {
            provider: "meta".into(),
            account: account.phone_number_id.clone(),
            content_type: declared.clone(),
            bytes,
            fail: None,
            delay_ms: None,
            downloads: 0,
        },
    );
    state.record_request(RecordedRequest {
        provider: "meta",
        path,
        headers: super::state::recorded_headers(&headers),
        body: json!({"messaging_product": "whatsapp", "type": declared, "filename": filename,
                     "size": size, "sha256": sha256}),
        status: 200,
        message_id: Some(id.clone()),
        message_ids: vec![id.clone()],
        duplicate: false,
        received_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    (StatusCode::OK, axum::Json(json!({"id": id}))).into_response()
}
