//! The file types WhatsApp sends per kind of media (Meta's Cloud API "supported media types";
//! InfoBip and Twilio pass WhatsApp's rules on). An upload must be one of them; a send checks the
//! stored type against the kind it is sent as.

use crate::engine::outbound::content::MediaKind;

const IMAGE: &[&str] = &["image/jpeg", "image/png"];
const STICKER: &[&str] = &["image/webp"];
const AUDIO: &[&str] = &[
    "audio/aac",
    "audio/amr",
    "audio/mpeg",
    "audio/mp4",
    "audio/ogg",
];
const VIDEO: &[&str] = &["video/mp4", "video/3gpp"];
const DOCUMENT: &[&str] = &[
    "text/plain",
    "application/pdf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
];

fn types(kind: MediaKind) -> &'static [&'static str] {
    match kind {
        MediaKind::Image => IMAGE,
        MediaKind::Sticker => STICKER,
        MediaKind::Audio => AUDIO,
        MediaKind::Video => VIDEO,
        MediaKind::Document => DOCUMENT,
    }
}

const KINDS: [MediaKind; 5] = [
    MediaKind::Image,
    MediaKind::Sticker,
    MediaKind::Audio,
    MediaKind::Video,
    MediaKind::Document,
];

/// `Content-Type` without parameters, lower case (`Audio/OGG; codecs=opus` → `audio/ogg`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether WhatsApp sends a file of this type as `kind`.
pub fn allows(kind: MediaKind, content_type: &str) -> bool {
    types(kind).contains(&essence(content_type).as_str())
}

/// Whether WhatsApp sends this type as any kind (what an upload may be).
pub fn sendable(content_type: &str) -> bool {
    KINDS.iter().any(|kind| allows(*kind, content_type))
}

/// The types a kind takes, for error messages.
pub fn listed(kind: MediaKind) -> String {
    types(kind).join(", ")
}

/// Every type an upload may have, for error messages.
pub fn all_listed() -> String {
    KINDS
        .iter()
        .map(|k| listed(*k))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_whatsapp() {
        assert!(allows(MediaKind::Image, "image/png"));
        assert!(allows(MediaKind::Audio, "Audio/OGG; codecs=opus"));
        assert!(!allows(MediaKind::Image, "image/webp"));
        assert!(allows(MediaKind::Sticker, "image/webp"));
        assert!(allows(MediaKind::Document, "application/pdf"));
        assert!(!allows(MediaKind::Video, "video/quicktime"));
        assert!(sendable("video/3gpp"));
        assert!(!sendable("image/gif"));
        assert!(!sendable("text/html"));
        assert!(all_listed().contains("image/jpeg"));
    }
}
