//! Sending a file the engine keeps: an engine media id (an upload, or an inbound file of the same
//! tenant being forwarded) in `media.id`, `interactive.header.id` or `template.header.id`.
//!
//! - When the send is accepted: the file must be the tenant's (else 404 naming the field, like an
//!   unknown one), stored, of a type WhatsApp sends as `media.type`, within the provider's limit;
//!   InfoBip and Twilio need the engine's public URL to download it.
//! - When it is sent: Meta gets it uploaded with the sender's token and sent by Meta's id (kept
//!   per file and sender for 29 of Meta's 30 days, so a file sent again is not uploaded again);
//!   InfoBip and Twilio get an expiring signed URL of the engine (`GET /public/media/{id}`).
//!   When Meta refuses a remembered id (deleted or expired early), the file is uploaded again
//!   and the message sent once more.

use super::capabilities::Parts;
use super::clients::{Clients, Outgoing, SendOutcome};
use super::content::{HeaderKind, MediaKind, MediaRequest};
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
    parse_engine_id(media.id.as_deref())
}

fn parse_engine_id(id: Option<&str>) -> Option<Uuid> {
    id.and_then(|id| Uuid::parse_str(id).ok())
}

/// Where a send may name a file: the media message, and the media header of an interactive
/// message or a template (JSON pointers into the stored content, and the request's field).
const PLACES: [(&str, &str); 3] = [
    ("/media", "media.id"),
    ("/interactive/header", "interactive.header.id"),
    ("/template/header", "template.header.id"),
];

/// An engine media id named by a send, with the kind it is sent as.
#[derive(Debug, PartialEq, Eq)]
pub struct EngineRef {
    /// The request's field (`media.id`, `interactive.header.id`, `template.header.id`).
    pub field: &'static str,
    pub kind: MediaKind,
    pub id: Uuid,
}

fn header_kind(kind: HeaderKind) -> Option<MediaKind> {
    match kind {
        HeaderKind::Image => Some(MediaKind::Image),
        HeaderKind::Video => Some(MediaKind::Video),
        HeaderKind::Document => Some(MediaKind::Document),
        HeaderKind::Text => None,
    }
}

/// Every engine media id the send names.
pub fn engine_refs(parts: &Parts<'_>) -> Vec<EngineRef> {
    let mut refs = Vec::new();
    if let Some(media) = parts.media
        && let Some(id) = engine_id(media)
    {
        refs.push(EngineRef {
            field: PLACES[0].1,
            kind: media.kind,
            id,
        });
    }
    if let Some(header) = parts.interactive.and_then(|i| i.header.as_ref())
        && let (Some(kind), Some(id)) = (
            header_kind(header.kind),
            parse_engine_id(header.id.as_deref()),
        )
    {
        refs.push(EngineRef {
            field: PLACES[1].1,
            kind,
            id,
        });
    }
    if let Some(header) = parts.template.and_then(|t| t.header.as_ref())
        && let (Some(kind), Some(id)) = (
            header_kind(header.kind),
            parse_engine_id(header.id.as_deref()),
        )
    {
        refs.push(EngineRef {
            field: PLACES[2].1,
            kind,
            id,
        });
    }
    refs
}

fn field_error(field: &str, status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError::new(status, code, format!("{field}: {message}")).with_details(json!({"field": field}))
}

/// Checks every engine media id of a send when it is accepted (see the module's notes).
pub async fn check(
    pool: &PgPool,
    settings: &MediaSettings,
    tenant: Uuid,
    parts: &Parts<'_>,
    provider: Provider,
) -> Result<(), ApiError> {
    for reference in engine_refs(parts) {
        check_one(pool, settings, tenant, &reference, provider).await?;
    }
    Ok(())
}

async fn check_one(
    pool: &PgPool,
    settings: &MediaSettings,
    tenant: Uuid,
    reference: &EngineRef,
    provider: Provider,
) -> Result<(), ApiError> {
    let field = reference.field;
    // Another tenant's file is not found, like an unknown one: nothing tells it exists.
    let file = files::info(pool, tenant, reference.id)
        .await?
        .ok_or_else(|| {
            field_error(
                field,
                StatusCode::NOT_FOUND,
                "media_not_found",
                "no such media file of this tenant".into(),
            )
        })?;
    if file.status != "stored" {
        return Err(field_error(
            field,
            StatusCode::CONFLICT,
            "media_not_ready",
            format!(
                "the file is {} (not fetched from the provider yet, or failed)",
                file.status
            ),
        ));
    }
    let content_type = file.content_type.unwrap_or_default();
    if !kinds::allows(reference.kind, &content_type) {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "the file is {content_type}, which WhatsApp does not send as {} (it takes {})",
                reference.kind.as_str(),
                kinds::listed(reference.kind)
            ),
        ));
    }
    media_limits::check(
        provider,
        reference.kind,
        file.size.unwrap_or(0).max(0) as u64,
    )
    .map_err(|too_large| ApiError::invalid_field(field, too_large))?;
    if provider != Provider::Meta && !settings.public.has_base() {
        return Err(field_error(
            field,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_public_url",
            format!(
                "{} downloads media from a URL, and the engine has no public URL (--public-url) to give one",
                provider.as_str()
            ),
        ));
    }
    Ok(())
}

/// Stored content whose engine media ids were made sendable by the channel's provider.
pub struct Resolved {
    pub content: Value,
    /// Files sent by a Meta id remembered from an earlier upload (not uploaded for this send).
    pub remembered: Vec<Uuid>,
}

/// The stored content with its engine media ids made sendable by the channel's provider;
/// `None` when the content names none (sent as it is).
pub async fn resolve(
    pool: &PgPool,
    settings: &MediaSettings,
    clients: &Clients,
    (tenant, channel): (Uuid, &Channel),
    content: &Value,
) -> Result<Option<Resolved>, SendOutcome> {
    let named: Vec<(&str, Uuid)> = PLACES
        .iter()
        .filter_map(|(pointer, _)| {
            let id = content.pointer(pointer)?.get("id")?.as_str();
            Some((*pointer, parse_engine_id(id)?))
        })
        .collect();
    if named.is_empty() {
        return Ok(None);
    }
    let mut resolved = Resolved {
        content: content.clone(),
        remembered: Vec::new(),
    };
    for (pointer, id) in named {
        let file = files::info(pool, tenant, id)
            .await
            .map_err(database)?
            .ok_or_else(gone)?;
        let replacement = if channel.provider == Provider::Meta {
            let (meta_id, remembered) =
                meta_id(pool, settings, clients, (tenant, channel), &file).await?;
            if remembered {
                resolved.remembered.push(id);
            }
            ("id", meta_id)
        } else {
            let url = settings
                .public
                .url(tenant, id, chrono::Utc::now() + URL_LIVES)
                .ok_or_else(|| SendOutcome::Permanent {
                    code: "no_public_url".into(),
                    message: "the engine has no public URL (--public-url) to give the provider"
                        .into(),
                })?;
            ("url", url)
        };
        if let Some(object) = resolved
            .content
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
        {
            object.remove("id");
            object.insert(replacement.0.to_owned(), json!(replacement.1));
        }
    }
    Ok(Some(resolved))
}

/// Sends the message, its engine media ids made sendable first. When Meta refuses a media id
/// it was sent by from memory (Meta deleted or expired it before its 30 days), the files are
/// uploaded again and the message sent once more.
pub async fn send(
    pool: &PgPool,
    settings: &MediaSettings,
    clients: &Clients,
    (tenant, channel): (Uuid, &Channel),
    outgoing: &Outgoing,
) -> SendOutcome {
    let resolved = match resolve(
        pool,
        settings,
        clients,
        (tenant, channel),
        &outgoing.content,
    )
    .await
    {
        Ok(Some(resolved)) => resolved,
        Ok(None) => return clients.send(channel, outgoing).await,
        Err(outcome) => return outcome,
    };
    let with = |content: Value| Outgoing {
        content,
        ..outgoing.clone()
    };
    let outcome = clients.send(channel, &with(resolved.content)).await;
    if resolved.remembered.is_empty() || !meta_refused_media_id(&outcome) {
        return outcome;
    }
    tracing::info!(tenant = %tenant, files = resolved.remembered.len(),
        "Meta refused a remembered media id; uploading the files again");
    if let Err(error) =
        files::forget_provider_ids(pool, tenant, channel.id, &resolved.remembered).await
    {
        return database(error);
    }
    match resolve(
        pool,
        settings,
        clients,
        (tenant, channel),
        &outgoing.content,
    )
    .await
    {
        Ok(Some(again)) => clients.send(channel, &with(again.content)).await,
        Ok(None) => outcome,
        Err(outcome) => outcome,
    }
}

/// Meta's answer to a send naming a media id it does not know (any more): `(#100) Param
/// image['id'] is not a valid whatsapp business account media attachment ID`, or a media
/// error 131053.
pub fn meta_refused_media_id(outcome: &SendOutcome) -> bool {
    match outcome {
        SendOutcome::Permanent { code, message } => {
            (code == "100" && message.contains("media attachment ID")) || code == "131053"
        }
        _ => false,
    }
}

fn gone() -> SendOutcome {
    SendOutcome::Permanent {
        code: "media_gone".into(),
        message: "the media file was deleted (retention) before the message was sent".into(),
    }
}

fn database(error: sqlx::Error) -> SendOutcome {
    SendOutcome::Retry {
        code: "database".into(),
        message: format!("could not read the media file: {error}"),
        after: None,
    }
}

/// Meta's id of the file for this sender: remembered (`true`), or uploaded now.
async fn meta_id(
    pool: &PgPool,
    settings: &MediaSettings,
    clients: &Clients,
    (tenant, channel): (Uuid, &Channel),
    file: &files::FileInfo,
) -> Result<(String, bool), SendOutcome> {
    if let Some(known) = files::provider_id(pool, tenant, file.id, channel.id)
        .await
        .map_err(database)?
    {
        return Ok((known, true));
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
    Ok((meta_id, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::outbound::api::TemplateRequest;
    use crate::engine::outbound::content::InteractiveRequest;

    #[test]
    fn engine_ids_are_found_in_media_and_both_headers_only() {
        let id = Uuid::new_v4();
        let interactive: InteractiveRequest = serde_json::from_value(json!({"type": "button",
            "header": {"type": "video", "id": id}, "body": {"text": "?"},
            "action": {"buttons": [{"id": "a", "title": "A"}]}}))
        .unwrap();
        let template: TemplateRequest =
            serde_json::from_value(json!({"name": "t", "language": "en",
            "header": {"type": "document", "id": id, "filename": "a.pdf"}}))
            .unwrap();
        let meta_id: MediaRequest =
            serde_json::from_value(json!({"type": "image", "id": "1013859600285441"})).unwrap();
        let refs = |parts: Parts<'_>| engine_refs(&parts);
        assert_eq!(
            refs(Parts {
                template: None,
                media: None,
                interactive: Some(&interactive)
            }),
            [EngineRef {
                field: "interactive.header.id",
                kind: MediaKind::Video,
                id
            }]
        );
        assert_eq!(
            refs(Parts {
                template: Some(&template),
                media: Some(&meta_id),
                interactive: None
            }),
            [EngineRef {
                field: "template.header.id",
                kind: MediaKind::Document,
                id
            }],
            "a Meta media id is not the engine's"
        );
    }

    #[test]
    fn only_metas_unknown_media_id_answers_start_a_new_upload() {
        let refused = |code: &str, message: &str| SendOutcome::Permanent {
            code: code.into(),
            message: message.into(),
        };
        assert!(meta_refused_media_id(&refused(
            "100",
            "(#100) Param image['id'] is not a valid whatsapp business account media attachment ID"
        )));
        assert!(meta_refused_media_id(&refused(
            "131053",
            "(#131053) Media upload error"
        )));
        assert!(!meta_refused_media_id(&refused(
            "100",
            "(#100) Invalid parameter"
        )));
        assert!(!meta_refused_media_id(&SendOutcome::Retry {
            code: "131053".into(),
            message: String::new(),
            after: None
        }));
    }
}
