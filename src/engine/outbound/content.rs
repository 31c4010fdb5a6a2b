//! What a send carries besides text and plain templates: media by URL or provider id, templates
//! with a media or text header and button parameters, and interactive reply buttons and lists.
//!
//! The shapes are the engine's own (one for every provider); each provider adapter turns them
//! into its wire format (`super::wire`). They are stored as given, under one key
//! (`{"media": ...}`, `{"interactive": ...}`), so the dispatcher sends exactly what was accepted.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Document,
    Audio,
    Video,
    Sticker,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Document => "document",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Sticker => "sticker",
        }
    }

    /// WhatsApp shows a caption under images, videos and documents only.
    pub fn takes_caption(self) -> bool {
        matches!(self, Self::Image | Self::Video | Self::Document)
    }
}

/// A media message: exactly one of `url` (https) or `id` (an engine or a Meta media id).
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaRequest {
    #[serde(rename = "type")]
    pub kind: MediaKind,
    /// Where the provider downloads it: `https://`, no user info, a public host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An engine media id (`POST /media`, or an inbound `media[].id` of the tenant: forwarded),
    /// or a media id uploaded to Meta beforehand (Meta only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Image, video and document only; at most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Documents only; at most 240 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The file's size in bytes, when the worker knows it: checked against the provider's limit
    /// for the kind (a URL's size is otherwise only learnt by the provider that downloads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InteractiveKind {
    /// Up to three reply buttons.
    Button,
    /// A button that opens a list of up to ten rows in up to ten sections.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeaderKind {
    Text,
    Image,
    Video,
    Document,
}

impl HeaderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Document => "document",
        }
    }
}

/// An interactive message (inside the 24-hour window only, like any free-form message).
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractiveRequest {
    #[serde(rename = "type")]
    pub kind: InteractiveKind,
    /// Text (at most 60 characters); reply buttons may have an image, video or document instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<InteractiveHeader>,
    /// At most 1024 characters.
    pub body: TextPart,
    /// At most 60 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<TextPart>,
    pub action: InteractiveAction,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextPart {
    pub text: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractiveHeader {
    #[serde(rename = "type")]
    pub kind: HeaderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An engine media id (`POST /media`, or an inbound file of the tenant), or a media id
    /// uploaded to Meta beforehand (Meta only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// `buttons` for `type: button`; `button` and `sections` for `type: list`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractiveAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buttons: Option<Vec<ReplyButton>>,
    /// The list's button text (at most 20 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<ListSection>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyButton {
    /// Returned in the contact's reply; unique, at most 256 characters.
    pub id: String,
    /// Unique, at most 20 characters.
    pub title: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSection {
    /// At most 24 characters; required when there is more than one section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub rows: Vec<ListRow>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRow {
    /// Returned in the contact's reply; unique across sections, at most 200 characters.
    pub id: String,
    /// At most 24 characters.
    pub title: String,
    /// At most 72 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A template's header: a text parameter, or the media of a media header.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateHeader {
    #[serde(rename = "type")]
    pub kind: HeaderKind,
    /// `text`: the header's placeholder value (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An engine media id (`POST /media`, or an inbound file of the tenant), or a media id
    /// uploaded to Meta beforehand (Meta only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `document` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateButtonKind {
    /// A quick-reply button: `payload` comes back when the contact taps it.
    QuickReply,
    /// A URL button with a variable: `param` completes its URL.
    Url,
}

/// A parameter of one of the template's buttons.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateButton {
    #[serde(rename = "type")]
    pub kind: TemplateButtonKind,
    /// The button's position in the template (0-based; Meta). Default: its position here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u8>,
    /// `quick_reply`: at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// `url`: the URL's variable part, at most 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

impl TemplateButton {
    /// The template position this parameter is for.
    pub fn position(&self, listed_at: usize) -> usize {
        self.index.map_or(listed_at, usize::from)
    }
}
