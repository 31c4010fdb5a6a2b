//! What each provider can send, checked once the sender (and so the provider) is known: a send
//! a provider cannot carry is refused with a 400 naming the field, rather than failing later at
//! the provider.
//!
//! - Every provider has its size limits per kind of media ([`media_limits`]), checked when the
//!   worker gives the size.
//! - Meta sends everything here, by URL or by a media id uploaded to Meta.
//! - InfoBip downloads media from URLs only (no media ids) and has no button index: the button
//!   parameters of a template are given in the template's order.
//! - Twilio sends media by `MediaUrl` only, with no filename and a caption (`Body`) for images
//!   and videos only; interactive messages, media headers and buttons exist there only inside
//!   Content API templates (`ContentSid`), whose variables are the template's `params`.

use super::api::TemplateRequest;
use super::content::{InteractiveRequest, MediaKind, MediaRequest};
use super::media_limits;
use crate::engine::error::ApiError;
use crate::engine::providers::Provider;

/// The parts of a send that depend on the provider.
pub struct Parts<'a> {
    pub template: Option<&'a TemplateRequest>,
    pub media: Option<&'a MediaRequest>,
    pub interactive: Option<&'a InteractiveRequest>,
}

pub fn check(provider: Provider, parts: &Parts<'_>) -> Result<(), ApiError> {
    if let Some(media) = parts.media
        && let Some(size) = media.size
    {
        media_limits::check(provider, media.kind, size)
            .map_err(|too_large| ApiError::invalid_field("media.size", too_large))?;
    }
    match provider {
        Provider::Infobip => infobip(parts),
        Provider::Twilio => twilio(parts),
        _ => Ok(()),
    }
}

/// A provider's (Meta's) media id: an engine media id is sent by URL where the provider needs one.
fn provider_media_id(media: &MediaRequest) -> bool {
    is_provider_id(media.id.as_deref())
}

fn is_provider_id(id: Option<&str>) -> bool {
    id.is_some_and(|id| uuid::Uuid::parse_str(id).is_err())
}

fn refused(field: &str, why: &str) -> Result<(), ApiError> {
    Err(ApiError::invalid_field(field, why))
}

fn infobip(parts: &Parts<'_>) -> Result<(), ApiError> {
    const BY_URL: &str = "InfoBip sends media by URL only: give url or an engine media id instead of a provider media id";
    if parts.media.is_some_and(provider_media_id) {
        return refused("media.id", BY_URL);
    }
    if let Some(header) = parts.interactive.and_then(|i| i.header.as_ref())
        && is_provider_id(header.id.as_deref())
    {
        return refused("interactive.header.id", BY_URL);
    }
    if let Some(template) = parts.template {
        if let Some(header) = &template.header {
            if is_provider_id(header.id.as_deref()) {
                return refused("template.header.id", BY_URL);
            }
            if header.kind == super::content::HeaderKind::Document && header.filename.is_none() {
                return refused(
                    "template.header.filename",
                    "InfoBip needs a filename for a document header",
                );
            }
        }
        if let Some(i) = template.buttons.iter().position(|b| b.index.is_some()) {
            return refused(
                &format!("template.buttons[{i}].index"),
                "InfoBip takes button parameters in the template's order, without an index",
            );
        }
    }
    Ok(())
}

fn twilio(parts: &Parts<'_>) -> Result<(), ApiError> {
    const CONTENT_API: &str = "Twilio sends interactive messages, media headers and buttons only as Content API templates: \
         create the content (twilio/quick-reply, twilio/list-picker, twilio/media) and send it as a template \
         (name = its ContentSid HX..., params = its variables)";
    if parts.interactive.is_some() {
        return refused("interactive", CONTENT_API);
    }
    if let Some(template) = parts.template {
        if template.header.is_some() {
            return refused("template.header", CONTENT_API);
        }
        if !template.buttons.is_empty() {
            return refused("template.buttons", CONTENT_API);
        }
    }
    let Some(media) = parts.media else {
        return Ok(());
    };
    if provider_media_id(media) {
        return refused(
            "media.id",
            "Twilio sends media by URL only (MediaUrl): give url or an engine media id instead of a provider media id",
        );
    }
    if media.filename.is_some() {
        return refused(
            "media.filename",
            "Twilio cannot set a document's filename: it comes from the URL",
        );
    }
    if media.caption.is_some() && !matches!(media.kind, MediaKind::Image | MediaKind::Video) {
        return refused(
            "media.caption",
            "Twilio sends a caption with images and videos only",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn field(provider: Provider, kind: &str, value: Value) -> Option<String> {
        let template: Option<TemplateRequest> =
            (kind == "template").then(|| serde_json::from_value(value.clone()).unwrap());
        let media: Option<MediaRequest> =
            (kind == "media").then(|| serde_json::from_value(value.clone()).unwrap());
        let interactive: Option<InteractiveRequest> =
            (kind == "interactive").then(|| serde_json::from_value(value.clone()).unwrap());
        let parts = Parts {
            template: template.as_ref(),
            media: media.as_ref(),
            interactive: interactive.as_ref(),
        };
        check(provider, &parts)
            .err()
            .map(|e| e.message.split(':').next().unwrap().to_owned())
    }

    #[test]
    fn each_provider_refuses_what_it_cannot_send() {
        let by_id = json!({"type": "image", "id": "1013859600285441"});
        let buttons = json!({"type": "button", "body": {"text": "?"}, "action": {"buttons": [{"id": "a", "title": "A"}]}});
        let header = json!({"name": "n", "language": "en", "header": {"type": "image", "url": "https://cdn.example.com/a.png"}});
        assert_eq!(field(Provider::Meta, "media", by_id.clone()), None);
        assert_eq!(field(Provider::Meta, "interactive", buttons.clone()), None);
        assert_eq!(
            field(Provider::Infobip, "interactive", buttons.clone()),
            None
        );
        assert_eq!(field(Provider::Infobip, "template", header.clone()), None);
        assert_eq!(
            field(Provider::Infobip, "media", by_id.clone()).as_deref(),
            Some("media.id")
        );
        assert_eq!(
            field(Provider::Twilio, "media", by_id).as_deref(),
            Some("media.id")
        );
        assert_eq!(
            field(Provider::Twilio, "interactive", buttons).as_deref(),
            Some("interactive")
        );
        assert_eq!(
            field(Provider::Twilio, "template", header).as_deref(),
            Some("template.header")
        );
        let document = json!({"name": "n", "language": "en", "header": {"type": "document", "url": "https://cdn.example.com/a.pdf"}});
        assert_eq!(field(Provider::Meta, "template", document.clone()), None);
        assert_eq!(
            field(Provider::Infobip, "template", document).as_deref(),
            Some("template.header.filename")
        );
        let indexed = json!({"name": "n", "language": "en", "buttons": [{"type": "url", "index": 1, "param": "x"}]});
        assert_eq!(field(Provider::Meta, "template", indexed.clone()), None);
        assert_eq!(
            field(Provider::Infobip, "template", indexed).as_deref(),
            Some("template.buttons[0].index")
        );
        let pdf = json!({"type": "document", "url": "https://cdn.example.com/a.pdf", "caption": "Invoice"});
        assert_eq!(field(Provider::Infobip, "media", pdf.clone()), None);
        assert_eq!(
            field(Provider::Twilio, "media", pdf).as_deref(),
            Some("media.caption")
        );
        let named = json!({"type": "document", "url": "https://cdn.example.com/a.pdf", "filename": "a.pdf"});
        assert_eq!(
            field(Provider::Twilio, "media", named).as_deref(),
            Some("media.filename")
        );
        let photo =
            json!({"type": "image", "url": "https://cdn.example.com/a.png", "caption": "Look"});
        assert_eq!(field(Provider::Twilio, "media", photo), None);
        let big =
            json!({"type": "document", "url": "https://cdn.example.com/a.pdf", "size": 20_000_000});
        assert_eq!(field(Provider::Meta, "media", big.clone()), None);
        assert_eq!(
            field(Provider::Twilio, "media", big).as_deref(),
            Some("media.size")
        );
        let sticker =
            json!({"type": "sticker", "url": "https://cdn.example.com/s.webp", "size": 600_000});
        assert_eq!(
            field(Provider::Meta, "media", sticker).as_deref(),
            Some("media.size")
        );
    }
}
