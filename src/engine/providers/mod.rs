//! The providers' webhook wire formats, parsed into one shape the engine queues.
//!
//! Pure code: bytes in, events out, no I/O. Every array element is read (InfoBip `results[]`,
//! Meta `entry[].changes[].value.{messages,statuses}[]`), never only the first, and a payload that
//! does not fit the documented schema is refused with the path of the offending field.

pub mod infobip;
pub mod meta;
pub mod meta_templates;
pub mod time;
pub mod twilio;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which provider an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Infobip,
    Meta,
    Twilio,
    /// The seed's own JSON format (`POST /webhook/inbound`).
    Seed,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Infobip => "infobip",
            Self::Meta => "meta",
            Self::Twilio => "twilio",
            Self::Seed => "seed",
        }
    }
}

/// Who wrote to the business. `id` is the stable conversation key: the phone number when there is
/// one, else the provider's user id (Meta BSUID users known only by username have no number).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contact {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One message a customer sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InboundMessage {
    pub provider: Provider,
    /// The provider's id of this message: the dedup key.
    pub provider_message_id: String,
    pub contact: Contact,
    /// The business side the message was sent to: InfoBip `to`, Meta `metadata.phone_number_id`,
    /// Twilio `To` (without the `whatsapp:` prefix). Used to check the message belongs to the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Twilio `AccountSid`, to check the message belongs to the tenant's account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// When the provider says the message was sent or received (not when we got it).
    pub timestamp: DateTime<Utc>,
    /// Normalised lowercase type: text, image, video, audio, voice, document, sticker, location,
    /// contacts, button, interactive, reaction, order, system, unsupported, ...
    pub kind: String,
    /// The human-readable text of the message when it has one: body, caption, button or list
    /// reply title, reaction emoji. This is the seed's `message` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Id of the message this one replies to or quotes, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The provider's element exactly as received (one `results[]` item, one Meta message with its
    /// contact, or the Twilio form as a JSON object).
    pub raw: serde_json::Value,
    /// Typed content beyond the text: media references, a location, shared contacts, a button
    /// or list reply. `None` for plain text (no allocation on the text path).
    pub content: Option<Box<Content>>,
}

/// What a message carries beyond its text, in one shape for all providers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Content {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<SharedContact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

impl Content {
    /// `None` when there is nothing in it.
    pub fn boxed(self) -> Option<Box<Self>> {
        (!self.is_empty()).then(|| Box::new(self))
    }

    pub fn is_empty(&self) -> bool {
        self.media.is_empty()
            && self.location.is_none()
            && self.contacts.is_empty()
            && self.reply.is_none()
    }
}

/// Where a media file is: Meta gives an id to resolve with the tenant's token, InfoBip and
/// Twilio a URL that needs the tenant's credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
    MetaId(String),
    Url(String),
}

/// One media file a message carries (image, audio, voice, video, document, sticker).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MediaRef {
    pub kind: String,
    pub source: MediaSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// The provider's SHA-256 of the file when it gives one (Meta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A contact card the customer shared: its display name and numbers, with the provider's card.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedContact {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub phones: Vec<String>,
    pub raw: serde_json::Value,
}

/// A tap on a template quick-reply button (`button`), an interactive reply button
/// (`button_reply`) or a list row (`list_reply`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reply {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// The message kinds that carry a media file.
pub fn is_media_kind(kind: &str) -> bool {
    matches!(
        kind,
        "image" | "audio" | "voice" | "video" | "document" | "sticker"
    )
}

/// A shared contact card in Meta's (and InfoBip's) `contacts[]` shape: `name.formatted_name`
/// (or first/last name) and `phones[].phone`. Lenient: a card is kept whatever it lacks.
pub fn shared_contact(card: &serde_json::Value) -> SharedContact {
    let name = card.get("name");
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    let formatted = text(name.and_then(|n| n.get("formatted_name"))).or_else(|| {
        let parts: Vec<&str> = ["first_name", "firstName", "last_name", "lastName"]
            .iter()
            .filter_map(|k| name.and_then(|n| n.get(*k)).and_then(|v| v.as_str()))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    let phones = card
        .get("phones")
        .and_then(|p| p.as_array())
        .map(|phones| {
            phones
                .iter()
                .filter_map(|p| text(p.get("phone")).or_else(|| text(p.get("wa_id"))))
                .collect()
        })
        .unwrap_or_default();
    SharedContact {
        name: formatted,
        phones,
        raw: card.clone(),
    }
}

/// How far a message we sent has got. Ordered: a report never moves a message backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }
}

/// A delivery, seen/read or failure report about a message we sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    pub provider: Provider,
    /// The provider's id of our outbound message (InfoBip: the `messageId` we chose).
    pub provider_message_id: String,
    pub status: DeliveryStatus,
    /// The provider's own status name (`DELIVERED_TO_HANDSET`, `delivered`, `undelivered`, ...).
    pub provider_status: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The provider says retrying cannot help (InfoBip `error.permanent`).
    pub permanent: bool,
    pub raw: serde_json::Value,
}

/// Everything one webhook request carried, in the order it carried it.
#[derive(Clone, Debug, PartialEq)]
pub enum WebhookEvent {
    Message(InboundMessage),
    Status(StatusReport),
}

/// A payload that does not fit the provider's documented schema. `field` is a path such as
/// `results[2].messageId` or `entry[0].changes[1].value.messages[0].timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParseError {
    pub field: String,
    pub reason: String,
}

impl ParseError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A signature that is missing or does not match. Deliberately says nothing about the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
}
