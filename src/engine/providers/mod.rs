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
