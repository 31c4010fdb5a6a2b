//! `GET /public/media/{id}?t=&exp=&sig=`: a media file for the provider that sends it (InfoBip and
//! Twilio download media from a URL). No worker token: the signature is the permission
//! ([`super::public_url`]). A bad or expired signature is 403 before anything is looked up (so
//! nothing tells whether the id exists); a signed id whose file is gone is 404.

use super::api::{file_response, storage_unavailable};
use super::files;
use super::public_url::Refused;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct Signed {
    /// The tenant whose file it is (links of the first format have none).
    #[serde(default)]
    pub t: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(default)]
    pub exp: Option<String>,
    /// Hex HMAC-SHA256 of the tenant, the id and the expiry.
    #[serde(default)]
    pub sig: Option<String>,
}

#[utoipa::path(get, path = "/public/media/{id}", tag = "messages", params(("id" = String, Path), Signed),
    responses((status = 200, description = "the file, with Content-Type, Content-Length and X-Content-SHA256"),
              (status = 403, description = "`invalid_signature` or `link_expired`"),
              (status = 404, description = "the file was deleted (retention)"), (status = 503)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(signed): Query<Signed>,
) -> Result<Response, ApiError> {
    let forbidden = |refused: Refused| {
        let code = match refused {
            Refused::Signature => "invalid_signature",
            Refused::Expired => "link_expired",
        };
        ApiError::forbidden(code, refused.to_string())
    };
    let id: Uuid = id.parse().map_err(|_| forbidden(Refused::Signature))?;
    let tenant: Option<Uuid> = match signed.t.as_deref() {
        None => None,
        Some(t) => Some(t.parse().map_err(|_| forbidden(Refused::Signature))?),
    };
    let exp: i64 = signed
        .exp
        .as_deref()
        .and_then(|e| e.parse().ok())
        .ok_or(Refused::Signature)
        .map_err(forbidden)?;
    state
        .settings
        .media
        .public
        .verify(
            (tenant, id),
            exp,
            signed.sig.as_deref().unwrap_or_default(),
            chrono::Utc::now(),
        )
        .map_err(forbidden)?;
    let gone = || ApiError::not_found("the media file no longer exists");
    let info = match tenant {
        Some(tenant) => files::info(&state.pool, tenant, id).await?,
        None => files::info_by_id(&state.pool, id).await?,
    };
    let info = info.filter(|f| f.status == "stored").ok_or_else(gone)?;
    let bytes = state
        .settings
        .media
        .blobs
        .get(
            &state.pool,
            (info.tenant_id, id),
            info.object_key.as_deref(),
        )
        .await
        .map_err(storage_unavailable)?
        .ok_or_else(gone)?;
    Ok(file_response(
        info.content_type.as_deref(),
        info.sha256.as_deref(),
        info.filename.as_deref(),
        bytes,
    ))
}
