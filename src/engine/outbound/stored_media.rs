//! Sending a file the engine keeps (`media.id` = an engine media id: an upload, or an inbound file
//! of the same tenant being forwarded).
//!
//! - When the send is accepted: the file must be the tenant's (else 404 naming `media.id`, like an
//!   unknown one), stored, of a type WhatsApp sends as `media.type`, within the provider's limit;
//!   InfoBip and Twilio need the engine's public URL to download it.
//! - When it is sent: Meta gets it uploaded with the sender's token and sent by Meta's id (kept
//!   per file and sender for 29 of Meta's 30 days, so a file sent again is not uploaded again);
//!   InfoBip and Twilio get an expiring signed URL of the engine (`GET /public/media/{id}`).

use super::clients::{Clients, SendOutcome};
use super::content::MediaRequest;
use super::media_limits;
use super::meta_upload::Upload;
use crate::engine::error::ApiError;
use crate::engine::media::files;
use crate::engine::media::kinds;
use crate::engine::media::settings::MediaSettings;
use crate::engine::providers::Provider;
use crate::engine::tenants::Channel;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// How long an uploaded Meta media id is re-used (Meta keeps it 30 days).
const META_ID_LIVES: Duration = Duration::from_secs(29 * 24 * 3600);
/// How long a signed URL given to InfoBip or Twilio stays valid (Twilio may queue a message
/// for up to 4 hours before it downloads the file).
const URL_LIVES: chrono::Duration = chrono::Duration::hours(24);

/// The engine media id in `media.id`, when it is one (Meta's own media ids are digits).
pub fn engine_id(media: &MediaRequest) -> Option<Uuid> {
    media.id.as_deref().and_then(|id| Uuid::parse_str(id).ok())
}

fn field_error(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError::new(status, code, format!("media.id: {message}"))
        .with_details(json!({"field": "media.id"}))
}

/// Checks an engine media id when the send is accepted (see the module's notes).
pub async fn check(
    pool: &PgPool,
    settings: &MediaSettings,
    tenant: Uuid,
    media: &MediaRequest,
    provider: Provider,
) -> Result<(), ApiError> {
    let Some(id) = engine_id(media) else {
        return Ok(());
    };
    let file = files::info(pool, tenant, id).await?.ok_or_else(|| {
        field_error(
            StatusCode::NOT_FOUND,
            "media_not_found",
            "no such media file of this tenant".into(),
        )
    })?;
    if file.status != "stored" {
        return Err(field_error(
            StatusCode::CONFLICT,
            "media_not_ready",
            format!(
                "the file is {} (not fetched from the provider yet, or failed)",
                file.status
            ),
        ));
    }
    let content_type = file.content_type.unwrap_or_default();
    if !kinds::allows(media.kind, &content_type) {
        return Err(ApiError::invalid_field(
            "media.id",
            format!(
                "the file is {content_type}, which WhatsApp does not send as {} (it takes {})",
                media.kind.as_str(),
                kinds::listed(media.kind)
            ),
        ));
    }
    media_limits::check(provider, media.kind, file.size.unwrap_or(0).max(0) as u64)
        .map_err(|too_large| ApiError::invalid_field("media.id", too_large))?;
    if provider != Provider::Meta && !settings.public.has_base() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_public_url",
            format!(
                "media.id: {} downloads media from a URL, and the engine has no public URL (--public-url) to give one",
                provider.as_str()
            ),
        )
        .with_details(json!({"field": "media.id"})));
    }
    Ok(())
}

/// The stored content with an engine media id made sendable by the channel's provider; `None`
/// when the content has none (sent as it is).
pub async fn resolve(
    pool: &PgPool,
    settings: &MediaSettings,
    clients: &Clients,
    (tenant, channel): (Uuid, &Channel),
    content: &Value,
) -> Result<Option<Value>, SendOutcome> {
    let Some(media) = content
        .get("media")
        .and_then(|m| serde_json::from_value::<MediaRequest>(m.clone()).ok())
    else {
        return Ok(None);
    };
    let Some(id) = engine_id(&media) else {
        return Ok(None);
    };
    let gone = || SendOutcome::Permanent {
        code: "media_gone".into(),
        message: "the media file was deleted (retention) before the message was sent".into(),
    };
    let database = |error: sqlx::Error| SendOutcome::Retry {
        code: "database".into(),
        message: format!("could not read the media file: {error}"),
        after: None,
    };
    let file = files::info(pool, tenant, id)
        .await
        .map_err(database)?
        .ok_or_else(gone)?;
    let mut resolved = content.clone();
    let object = &mut resolved["media"];
    if channel.provider == Provider::Meta {
        let meta_id = meta_id(pool, settings, clients, (tenant, channel), &file).await?;
        object["id"] = json!(meta_id);
    } else {
        let url = settings
            .public
            .url(id, chrono::Utc::now() + URL_LIVES)
            .ok_or_else(|| SendOutcome::Permanent {
                code: "no_public_url".into(),
                message: "the engine has no public URL (--public-url) to give the provider".into(),
            })?;
        if let Some(map) = object.as_object_mut() {
            map.remove("id");
        }
        object["url"] = json!(url);
    }
    Ok(Some(resolved))
}

/// Meta's id of the file for this sender: remembered, or uploaded now.
async fn meta_id(
    pool: &PgPool,
    settings: &MediaSettings,
    clients: &Clients,
    (tenant, channel): (Uuid, &Channel),
    file: &files::FileInfo,
) -> Result<String, SendOutcome> {
    let database = |error: sqlx::Error| SendOutcome::Retry {
        code: "database".into(),
        message: format!("could not read the media file: {error}"),
        after: None,
    };
    if let Some(known) = files::provider_id(pool, tenant, file.id, channel.id)
        .await
        .map_err(database)?
    {
        return Ok(known);
    }
    let bytes = settings
        .blobs
        .get(pool, (tenant, file.id), file.object_key.as_deref())
        .await
        .map_err(|error| SendOutcome::Retry {
            code: "media_store".into(),
            message: format!("could not read the media file: {error}"),
            after: None,
        })?
        .ok_or_else(|| SendOutcome::Permanent {
            code: "media_gone".into(),
            message: "the media file was deleted before the message was sent".into(),
        })?;
    let upload = Upload {
        bytes: &bytes,
        content_type: file
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
        filename: file.filename.as_deref(),
    };
    let meta_id = clients.meta_upload(channel, &upload).await?;
    if let Err(error) =
        files::remember_provider_id(pool, (tenant, file.id, channel.id), &meta_id, META_ID_LIVES)
            .await
    {
        // Sent anyway; the next send uploads again.
        tracing::warn!(%error, "could not remember Meta's media id");
    }
    Ok(meta_id)
}
