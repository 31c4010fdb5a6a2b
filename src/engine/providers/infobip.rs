//! InfoBip WhatsApp webhooks.
//!
//! InfoBip recommends one URL for inbound messages and for delivery, seen and deleted reports, and
//! batches up to 2000 items per POST, so one `results[]` may mix all four kinds. Nothing names the
//! kind: it is told apart by which fields an item carries (reference 1.5).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::time::parse_timestamp;
use super::{
    Contact, Content, DeliveryStatus, InboundMessage, Location, MediaRef, MediaSource, ParseError,
    Provider, Reply, SignatureError, StatusReport, WebhookEvent, shared_contact,
};

type Object = Map<String, Value>;

/// Where an HMAC-signed InfoBip webhook carries its signature unless the tenant names another header.
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-hub-signature";

/// The hash of an HMAC-signed InfoBip webhook (InfoBip's subscription security offers these
/// among others; reference 1.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureAlgorithm {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl SignatureAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The HMAC of `body`; HMAC takes keys of any length, so `None` cannot happen.
    fn mac(self, secret: &[u8], body: &[u8]) -> Option<Vec<u8>> {
        fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], body: &[u8]) -> Option<Vec<u8>> {
            let mut mac = <M as Mac>::new_from_slice(secret).ok()?;
            mac.update(body);
            Some(mac.finalize().into_bytes().to_vec())
        }
        match self {
            Self::Sha1 => run::<Hmac<sha1::Sha1>>(secret, body),
            Self::Sha256 => run::<Hmac<sha2::Sha256>>(secret, body),
            Self::Sha512 => run::<Hmac<sha2::Sha512>>(secret, body),
        }
    }
}

/// Checks an HMAC signature of the raw body, as received: the header value is
/// `<algorithm>=<hex>` (`sha1=…`; the prefix in any case, and optional) with the hex digest in
/// either case. Compared in constant time.
pub fn verify_signature(
    algorithm: SignatureAlgorithm,
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_digest = match header.split_once('=') {
        Some((prefix, digest)) if prefix.eq_ignore_ascii_case(algorithm.as_str()) => digest,
        Some(_) => return Err(SignatureError::Malformed),
        None => header,
    };
    let given = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if given.len() != algorithm.digest_len() {
        return Err(SignatureError::Malformed);
    }
    let expected = algorithm
        .mac(secret, body)
        .ok_or(SignatureError::Mismatch)?;
    if bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_slice(), &given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header value a signing InfoBip adapter sends for `body`: `<algorithm>=<lowercase hex>`.
pub fn sign(algorithm: SignatureAlgorithm, secret: &[u8], body: &[u8]) -> String {
    let digest = algorithm
        .mac(secret, body)
        .map(hex::encode)
        .unwrap_or_default();
    format!("{}={digest}", algorithm.as_str())
}

/// Parses one InfoBip webhook body into events, one per inbound message, delivery or seen report,
/// in `results[]` order. Deleted reports are checked for a `messageId` and then dropped: the engine
/// has nothing to do when a user deletes a message. A delivery report whose status group is unknown
/// is dropped too, rather than refusing the whole batch (and its inbound messages) over it.
pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, ParseError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|error| ParseError::new("body", format!("is not JSON: {error}")))?;
    let root = root
        .as_object()
        .ok_or_else(|| ParseError::new("body", "must be a JSON object"))?;
    let results = match root.get("results") {
        Some(Value::Array(results)) => results,
        None | Some(Value::Null) => return Err(ParseError::new("results", "is required")),
        Some(_) => return Err(ParseError::new("results", "must be an array")),
    };
    let mut events = Vec::with_capacity(results.len());
    for (index, item) in results.iter().enumerate() {
        if let Some(event) = parse_result(item, &format!("results[{index}]"))? {
            events.push(event);
        }
    }
    Ok(events)
}

/// What a `results[]` item is, judged by its discriminating fields.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Inbound,
    Delivery,
    Seen,
    Deleted,
}

/// The checks run from the most specific marker down: `deletedAt` and `seenAt` only ever appear on
/// their own report kinds, while `sentAt` appears on both seen and delivery reports.
fn shape(item: &Object) -> Option<Shape> {
    let has = |key| present(item, key);
    if has("deletedAt") {
        Some(Shape::Deleted)
    } else if has("seenAt") {
        Some(Shape::Seen)
    } else if has("message") && (has("receivedAt") || has("integrationType")) {
        Some(Shape::Inbound)
    } else if has("status") && (has("doneAt") || has("sentAt")) {
        Some(Shape::Delivery)
    } else {
        None
    }
}

fn parse_result(item: &Value, path: &str) -> Result<Option<WebhookEvent>, ParseError> {
    let object = item
        .as_object()
        .ok_or_else(|| ParseError::new(path, "must be an object"))?;
    let shape = shape(object).ok_or_else(|| {
        ParseError::new(
            path,
            "is neither an inbound message (message + receivedAt), a delivery report \
             (status + doneAt), a seen report (seenAt) nor a deleted report (deletedAt)",
        )
    })?;
    match shape {
        Shape::Inbound => inbound(object, path, item).map(|m| Some(WebhookEvent::Message(m))),
        Shape::Delivery => Ok(delivery(object, path, item)?.map(WebhookEvent::Status)),
        Shape::Seen => seen(object, path, item).map(|s| Some(WebhookEvent::Status(s))),
        Shape::Deleted => req_str(object, path, "messageId").map(|_| None),
    }
}

fn inbound(item: &Object, path: &str, raw: &Value) -> Result<InboundMessage, ParseError> {
    let from = req_str(item, path, "from")?;
    let to = req_str(item, path, "to")?;
    let message_id = req_str(item, path, "messageId")?;
    let received_at = req_str(item, path, "receivedAt")?;
    let timestamp = parse_timestamp(&join(path, "receivedAt"), received_at)?;
    let message = req_obj(item, path, "message")?;
    let message_path = join(path, "message");
    let message_type = req_str(message, &message_path, "type")?;
    Ok(InboundMessage {
        provider: Provider::Infobip,
        provider_message_id: message_id.to_owned(),
        contact: Contact {
            id: from.to_owned(),
            phone: Some(from.to_owned()),
            user_id: None,
            username: None,
            name: opt_str_at(item, path, &["contact", "name"])?.map(str::to_owned),
        },
        to: Some(to.to_owned()),
        account_id: None,
        timestamp,
        kind: kind_of(message_type),
        text: message_text(message, &message_path, message_type)?.map(str::to_owned),
        reply_to: opt_str_at(message, &message_path, &["context", "id"])?.map(str::to_owned),
        content: content(message, message_type).boxed(),
        raw: raw.clone(),
    })
}

/// The typed content of a message (reference 1.4). Lenient like Meta's: what is missing or of
/// the wrong type is left out, the message is kept.
fn content(message: &Object, message_type: &str) -> Content {
    let mut content = Content::default();
    let text = |key: &str| {
        message
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    let upper = message_type.to_ascii_uppercase();
    match upper.as_str() {
        "IMAGE" | "DOCUMENT" | "VIDEO" | "VOICE" | "AUDIO" | "STICKER" => {
            if let Some(url) = text("url") {
                content.media.push(MediaRef {
                    kind: upper.to_ascii_lowercase(),
                    source: MediaSource::Url(url),
                    mime_type: None,
                    sha256: None,
                    caption: text("caption"),
                    filename: text("filename"),
                });
            }
        }
        "LOCATION" => {
            let number = |key: &str| message.get(key).and_then(Value::as_f64);
            if let (Some(latitude), Some(longitude)) = (number("latitude"), number("longitude")) {
                content.location = Some(Location {
                    latitude,
                    longitude,
                    name: text("name"),
                    address: text("address"),
                    url: text("url"),
                });
            }
        }
        "CONTACT" => {
            if let Some(cards) = message.get("contacts").and_then(Value::as_array) {
                content.contacts = cards.iter().map(shared_contact).collect();
            }
        }
        "BUTTON" => {
            content.reply = Some(Reply {
                kind: "button".to_owned(),
                id: None,
                title: text("text"),
                description: None,
                payload: text("payload"),
            });
        }
        "INTERACTIVE_BUTTON_REPLY" | "INTERACTIVE_LIST_REPLY" => {
            let kind = if upper == "INTERACTIVE_LIST_REPLY" {
                "list_reply"
            } else {
                "button_reply"
            };
            content.reply = Some(Reply {
                kind: kind.to_owned(),
                id: text("id"),
                title: text("title"),
                description: text("description"),
                payload: None,
            });
        }
        _ => {}
    }
    content
}

/// Normalised kind: InfoBip's upper-case type names mapped onto Meta's lower-case vocabulary, so
/// flows can switch on one set of names whatever the provider. Unknown types pass through lowercased.
fn kind_of(message_type: &str) -> String {
    let upper = message_type.to_ascii_uppercase();
    match upper.as_str() {
        "CONTACT" => "contacts".to_owned(),
        "INTERACTIVE_BUTTON_REPLY" | "INTERACTIVE_LIST_REPLY" | "INTERACTIVE_FLOW_REPLY" => {
            "interactive".to_owned()
        }
        reaction if reaction.contains("REACTION") => "reaction".to_owned(),
        _ => message_type.to_lowercase(),
    }
}

/// The field holding the human-readable text for each documented type (reference 1.4).
fn text_key(message_type: &str) -> Option<&'static str> {
    let upper = message_type.to_ascii_uppercase();
    match upper.as_str() {
        "TEXT" | "BUTTON" => Some("text"),
        "IMAGE" | "DOCUMENT" | "VIDEO" | "VOICE" | "AUDIO" => Some("caption"),
        "INTERACTIVE_BUTTON_REPLY" | "INTERACTIVE_LIST_REPLY" | "INTERACTIVE_FLOW_REPLY" => {
            Some("title")
        }
        "LOCATION" => Some("name"),
        reaction if reaction.contains("REACTION") => Some("emoji"),
        _ => None,
    }
}

fn message_text<'a>(
    message: &'a Object,
    path: &str,
    message_type: &str,
) -> Result<Option<&'a str>, ParseError> {
    match text_key(message_type) {
        Some(key) => opt_str(message, path, key),
        None => Ok(None),
    }
}

fn delivery(item: &Object, path: &str, raw: &Value) -> Result<Option<StatusReport>, ParseError> {
    let message_id = req_str(item, path, "messageId")?;
    let status = req_obj(item, path, "status")?;
    let status_path = join(path, "status");
    let Some(delivery_status) = status_group(status, &status_path)? else {
        return Ok(None);
    };
    let provider_status = opt_str(status, &status_path, "name")?
        .or(opt_str(status, &status_path, "groupName")?)
        .ok_or_else(|| ParseError::new(join(&status_path, "name"), "is required"))?;
    let error = report_error(item, path)?;
    Ok(Some(StatusReport {
        provider: Provider::Infobip,
        provider_message_id: message_id.to_owned(),
        status: delivery_status,
        provider_status: provider_status.to_owned(),
        occurred_at: done_at(item, path)?,
        recipient: opt_str(item, path, "to")?.map(str::to_owned),
        to: None,
        account_id: None,
        error_code: error.as_ref().map(|e| e.code.clone()),
        error_message: error.as_ref().and_then(|e| e.message.clone()),
        permanent: error.as_ref().is_some_and(|e| e.permanent),
        raw: raw.clone(),
    }))
}

/// `groupName` decides; `groupId` (the SDK's conventional 0..5) only when the name is absent or
/// unknown. `None` when neither is recognised.
fn status_group(status: &Object, path: &str) -> Result<Option<DeliveryStatus>, ParseError> {
    let by_name = opt_str(status, path, "groupName")?.and_then(group_by_name);
    let by_id = opt_i64(status, path, "groupId")?.and_then(group_by_id);
    Ok(by_name.or(by_id))
}

/// PENDING and ACCEPTED mean InfoBip holds the message but WhatsApp has not confirmed it, hence
/// Queued rather than Sent.
fn group_by_name(name: &str) -> Option<DeliveryStatus> {
    match name.to_ascii_uppercase().as_str() {
        "ACCEPTED" | "PENDING" => Some(DeliveryStatus::Queued),
        "DELIVERED" => Some(DeliveryStatus::Delivered),
        "UNDELIVERABLE" | "EXPIRED" | "REJECTED" => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

fn group_by_id(id: i64) -> Option<DeliveryStatus> {
    match id {
        0 | 1 => Some(DeliveryStatus::Queued),
        3 => Some(DeliveryStatus::Delivered),
        2 | 4 | 5 => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

/// `doneAt` is when the final state was reached; a report without it falls back to `sentAt`.
fn done_at(item: &Object, path: &str) -> Result<chrono::DateTime<chrono::Utc>, ParseError> {
    let key = if present(item, "doneAt") {
        "doneAt"
    } else {
        "sentAt"
    };
    parse_timestamp(&join(path, key), req_str(item, path, key)?)
}

struct ReportError {
    code: String,
    message: Option<String>,
    permanent: bool,
}

/// InfoBip always sends an `error` object; `{id: 0, name: "NO_ERROR"}` means there was none.
fn report_error(item: &Object, path: &str) -> Result<Option<ReportError>, ParseError> {
    let Some(error) = opt_obj(item, path, "error")? else {
        return Ok(None);
    };
    let error_path = join(path, "error");
    let id = opt_i64(error, &error_path, "id")?.filter(|id| *id != 0);
    let name = opt_str(error, &error_path, "name")?.filter(|name| *name != "NO_ERROR");
    let Some(code) = id.map(|id| id.to_string()).or(name.map(str::to_owned)) else {
        return Ok(None);
    };
    let description = opt_str(error, &error_path, "description")?;
    Ok(Some(ReportError {
        code,
        message: description.or(name).map(str::to_owned),
        permanent: opt_bool(error, &error_path, "permanent")?.unwrap_or(false),
    }))
}

/// Seen reports' `from`/`to` mean different things in different InfoBip documents, so only the
/// `messageId` is trusted and no recipient is reported.
fn seen(item: &Object, path: &str, raw: &Value) -> Result<StatusReport, ParseError> {
    let message_id = req_str(item, path, "messageId")?;
    let seen_at = parse_timestamp(&join(path, "seenAt"), req_str(item, path, "seenAt")?)?;
    Ok(StatusReport {
        provider: Provider::Infobip,
        provider_message_id: message_id.to_owned(),
        status: DeliveryStatus::Read,
        provider_status: "SEEN".to_owned(),
        occurred_at: seen_at,
        recipient: None,
        to: None,
        account_id: None,
        error_code: None,
        error_message: None,
        permanent: false,
        raw: raw.clone(),
    })
}

// JSON navigation. A JSON `null` counts as absent: InfoBip's SDKs serialise unset fields as null.
// Optional fields are still type-checked when present, so a schema change surfaces as an error
// with its path instead of silently empty data.

fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn present(object: &Object, key: &str) -> bool {
    object.get(key).is_some_and(|value| !value.is_null())
}

fn get<'a>(object: &'a Object, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn req_str<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a str, ParseError> {
    match get(object, key) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(ParseError::new(join(path, key), "must not be empty")),
        Some(_) => Err(ParseError::new(join(path, key), "must be a string")),
        None => Err(ParseError::new(join(path, key), "is required")),
    }
}

fn req_obj<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a Object, ParseError> {
    opt_obj(object, path, key)?.ok_or_else(|| ParseError::new(join(path, key), "is required"))
}

/// Empty strings read as absent: an empty caption or name carries nothing.
fn opt_str<'a>(object: &'a Object, path: &str, key: &str) -> Result<Option<&'a str>, ParseError> {
    match get(object, key) {
        Some(Value::String(text)) => Ok(Some(text.as_str()).filter(|text| !text.is_empty())),
        Some(_) => Err(ParseError::new(join(path, key), "must be a string")),
        None => Ok(None),
    }
}

fn opt_obj<'a>(
    object: &'a Object,
    path: &str,
    key: &str,
) -> Result<Option<&'a Object>, ParseError> {
    match get(object, key) {
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(ParseError::new(join(path, key), "must be an object")),
        None => Ok(None),
    }
}

fn opt_i64(object: &Object, path: &str, key: &str) -> Result<Option<i64>, ParseError> {
    match get(object, key) {
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| ParseError::new(join(path, key), "must be an integer")),
        None => Ok(None),
    }
}

fn opt_bool(object: &Object, path: &str, key: &str) -> Result<Option<bool>, ParseError> {
    match get(object, key) {
        Some(value) => value
            .as_bool()
            .map(Some)
            .ok_or_else(|| ParseError::new(join(path, key), "must be a boolean")),
        None => Ok(None),
    }
}

/// A string nested under optional objects (`contact.name`, `context.id`); absent anywhere is `None`.
fn opt_str_at<'a>(
    object: &'a Object,
    path: &str,
    keys: &[&str],
) -> Result<Option<&'a str>, ParseError> {
    let Some((last, parents)) = keys.split_last() else {
        return Ok(None);
    };
    let mut current = object;
    let mut current_path = path.to_owned();
    for key in parents {
        let Some(inner) = opt_obj(current, &current_path, key)? else {
            return Ok(None);
        };
        current = inner;
        current_path = join(&current_path, key);
    }
    opt_str(current, &current_path, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from `openssl dgst -<algorithm> -hmac infobip-hmac-key` over the body below.
    const SIGNED_BODY: &[u8] = br#"{"results":[{"messageId":"ib-1"}]}"#;
    const SIGNING_KEY: &[u8] = b"infobip-hmac-key";
    const SHA1_HEX: &str = "c0828902a0d4e6cd5919325c74e5995f20a1c12e";
    const SHA256_HEX: &str = "bd86c7ced5320d6c52817eac6898180236303d38272982c2006ef28b5db0fbf1";
    const SHA512_HEX: &str = "30cb776f808fc7f8f2d89fdb73107d929acb9295c5faefb5b8cf40d711df0fb35fcce8e3abbb0997e4e979b64477ce999a9daa411e954a7baf02ffc8ac947c78";

    #[test]
    fn hmac_signatures_in_every_algorithm_and_spelling() {
        use SignatureAlgorithm::*;
        for algorithm in [Sha1, Sha256, Sha512] {
            let header = sign(algorithm, SIGNING_KEY, SIGNED_BODY);
            assert_eq!(
                verify_signature(algorithm, SIGNING_KEY, Some(&header), SIGNED_BODY),
                Ok(())
            );
            let (prefix, digest) = header.split_once('=').unwrap();
            for spelling in [
                format!("{}={}", prefix.to_uppercase(), digest.to_uppercase()),
                digest.to_owned(),
                format!(" {header} "),
            ] {
                assert_eq!(
                    verify_signature(algorithm, SIGNING_KEY, Some(&spelling), SIGNED_BODY),
                    Ok(()),
                    "{spelling}"
                );
            }
        }
        assert_eq!(
            sign(Sha1, SIGNING_KEY, SIGNED_BODY),
            format!("sha1={SHA1_HEX}")
        );
        assert_eq!(
            sign(Sha256, SIGNING_KEY, SIGNED_BODY),
            format!("sha256={SHA256_HEX}")
        );
        assert_eq!(
            sign(Sha512, SIGNING_KEY, SIGNED_BODY),
            format!("sha512={SHA512_HEX}")
        );
    }

    #[test]
    fn hmac_signature_failures() {
        use SignatureAlgorithm::*;
        let good = format!("sha1={SHA1_HEX}");
        let verify =
            |header: Option<&str>, body: &[u8]| verify_signature(Sha1, SIGNING_KEY, header, body);
        assert_eq!(verify(None, SIGNED_BODY), Err(SignatureError::Missing));
        for malformed in [
            "",
            "sha1=",
            "sha1=zz",
            "sha256=00",
            &format!("sha256={SHA1_HEX}"),
            &good[..good.len() - 2],
        ] {
            assert_eq!(
                verify(Some(malformed), SIGNED_BODY),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(verify(Some(&good), b"{}"), Err(SignatureError::Mismatch));
        assert_eq!(
            verify_signature(Sha1, b"another-key", Some(&good), SIGNED_BODY),
            Err(SignatureError::Mismatch)
        );
        let sha256 = sign(Sha256, SIGNING_KEY, SIGNED_BODY);
        assert_eq!(
            verify_signature(Sha1, SIGNING_KEY, Some(&sha256), SIGNED_BODY),
            Err(SignatureError::Malformed)
        );
    }

    use chrono::{DateTime, TimeZone, Utc};
    use proptest::prelude::*;
    use serde_json::json;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> DateTime<Utc> {
        let seconds = Utc
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid");
        seconds + chrono::Duration::milliseconds(ms.into())
    }

    fn parse_json(body: &Value) -> Result<Vec<WebhookEvent>, ParseError> {
        parse(body.to_string().as_bytes())
    }

    fn field_of(body: &Value) -> String {
        parse_json(body).expect_err("must be refused").field
    }

    fn message(event: &WebhookEvent) -> &InboundMessage {
        match event {
            WebhookEvent::Message(message) => message,
            WebhookEvent::Status(status) => panic!("expected a message, got {status:?}"),
        }
    }

    fn status(event: &WebhookEvent) -> &StatusReport {
        match event {
            WebhookEvent::Status(status) => status,
            WebhookEvent::Message(message) => panic!("expected a status, got {message:?}"),
        }
    }

    fn inbound_text(id: &str, text: &str) -> Value {
        json!({
            "from": "385916242493",
            "to": "385921004026",
            "integrationType": "WHATSAPP",
            "receivedAt": "2019-07-19T11:21:27.861+0000",
            "messageId": id,
            "pairedMessageId": null,
            "callbackData": null,
            "message": {"type": "TEXT", "text": text},
            "contact": {"name": "Frank"},
            "price": {"pricePerMessage": 0, "currency": "EUR"}
        })
    }

    fn inbound_with(message: Value) -> Value {
        let mut item = inbound_text("ABEGVUGWh3gEAgo-sF0p7", "unused");
        item["message"] = message;
        item
    }

    fn delivered(id: &str) -> Value {
        json!({
            "bulkId": "BULK-ID-123-xyz",
            "price": {"pricePerMessage": 0, "currency": "EUR"},
            "status": {
                "id": 5, "groupId": 3, "groupName": "DELIVERED",
                "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset"
            },
            "error": {
                "id": 0, "name": "NO_ERROR", "description": "No Error",
                "groupId": 0, "groupName": "OK", "permanent": false
            },
            "messageId": id,
            "doneAt": "2019-07-19T11:22:00.000+0000",
            "messageCount": 1,
            "sentAt": "2019-07-19T11:21:30.000+0000",
            "to": "385916242493"
        })
    }

    fn seen_report(id: &str) -> Value {
        json!({
            "messageId": id,
            "from": "385921004026",
            "to": "385916242493",
            "sentAt": "2019-07-19T11:21:30.000+0000",
            "seenAt": "2019-07-19T11:25:10.123+0000"
        })
    }

    #[test]
    fn mixed_batch_keeps_every_item_in_order() {
        let undeliverable = json!({
            "messageId": "out-2",
            "to": "385916242494",
            "sentAt": "2019-07-19T11:21:30.000+0000",
            "doneAt": "2019-07-19T11:30:00.000-0300",
            "status": {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 23, "name": "UNDELIVERABLE_NOT_DELIVERED"},
            "error": {"id": 7001, "name": "EC_UNKNOWN_SUBSCRIBER", "description": "Not on WhatsApp", "permanent": true}
        });
        let deleted = json!({"messageId": "in-0", "from": "385916242493", "to": "385921004026", "deletedAt": "2019-07-19T11:40:00.000+0000"});
        let body = json!({
            "results": [
                inbound_text("in-1", "Hello"), delivered("out-1"), seen_report("out-1"),
                deleted, undeliverable, inbound_text("in-2", "Second")
            ],
            "messageCount": 6,
            "pendingMessageCount": 0
        });
        let events = parse_json(&body).expect("valid batch");
        assert_eq!(events.len(), 5, "the deleted report produces no event");

        let first = message(&events[0]);
        assert_eq!(first.provider, Provider::Infobip);
        assert_eq!(first.provider_message_id, "in-1");
        assert_eq!(first.contact.id, "385916242493");
        assert_eq!(first.contact.phone.as_deref(), Some("385916242493"));
        assert_eq!(first.contact.name.as_deref(), Some("Frank"));
        assert_eq!(first.to.as_deref(), Some("385921004026"));
        assert_eq!(first.timestamp, at(2019, 7, 19, 11, 21, 27, 861));
        assert_eq!(
            (first.kind.as_str(), first.text.as_deref()),
            ("text", Some("Hello"))
        );
        assert_eq!(first.raw, body["results"][0]);

        let report = status(&events[1]);
        assert_eq!(report.provider_message_id, "out-1");
        assert_eq!(report.status, DeliveryStatus::Delivered);
        assert_eq!(report.provider_status, "DELIVERED_TO_HANDSET");
        assert_eq!(report.occurred_at, at(2019, 7, 19, 11, 22, 0, 0));
        assert_eq!(report.recipient.as_deref(), Some("385916242493"));
        assert_eq!(
            (report.error_code.as_ref(), report.permanent),
            (None, false)
        );
        assert_eq!(report.raw, body["results"][1]);

        let seen = status(&events[2]);
        assert_eq!(seen.provider_message_id, "out-1");
        assert_eq!(seen.status, DeliveryStatus::Read);
        assert_eq!(seen.occurred_at, at(2019, 7, 19, 11, 25, 10, 123));
        assert_eq!(seen.recipient, None);

        let failed = status(&events[3]);
        assert_eq!(failed.status, DeliveryStatus::Failed);
        assert_eq!(failed.occurred_at, at(2019, 7, 19, 14, 30, 0, 0));
        assert_eq!(failed.error_code.as_deref(), Some("7001"));
        assert_eq!(failed.error_message.as_deref(), Some("Not on WhatsApp"));
        assert!(failed.permanent);

        assert_eq!(message(&events[4]).provider_message_id, "in-2");
    }

    #[test]
    fn every_documented_message_type() {
        let cases = [
            (json!({"type": "TEXT", "text": "hi"}), "text", Some("hi")),
            (
                json!({"type": "IMAGE", "url": "https://api.infobip.com/whatsapp/1/senders/1/media/2", "caption": "cat"}),
                "image",
                Some("cat"),
            ),
            (
                json!({"type": "DOCUMENT", "url": "https://x/doc", "caption": "invoice.pdf"}),
                "document",
                Some("invoice.pdf"),
            ),
            (
                json!({"type": "VIDEO", "url": "https://x/v"}),
                "video",
                None,
            ),
            (
                json!({"type": "VOICE", "url": "https://x/voice"}),
                "voice",
                None,
            ),
            (
                json!({"type": "AUDIO", "url": "https://x/a", "caption": ""}),
                "audio",
                None,
            ),
            (
                json!({"type": "STICKER", "url": "https://x/s"}),
                "sticker",
                None,
            ),
            (
                json!({"type": "LOCATION", "latitude": 45.8, "longitude": 15.97, "name": "Zagreb office", "address": "Ilica 1"}),
                "location",
                Some("Zagreb office"),
            ),
            (
                json!({"type": "CONTACT", "contacts": [{"name": {"firstName": "Ana"}, "phones": [{"phone": "385911111111"}]}]}),
                "contacts",
                None,
            ),
            (
                json!({"type": "BUTTON", "text": "Yes please", "payload": "YES"}),
                "button",
                Some("Yes please"),
            ),
            (
                json!({"type": "INTERACTIVE_BUTTON_REPLY", "id": "b1", "title": "Confirm"}),
                "interactive",
                Some("Confirm"),
            ),
            (
                json!({"type": "INTERACTIVE_LIST_REPLY", "id": "l2", "title": "Medium", "description": "M size"}),
                "interactive",
                Some("Medium"),
            ),
            (
                json!({"type": "INTERACTIVE_FLOW_REPLY", "response": "{\"flow_token\":\"t\"}"}),
                "interactive",
                None,
            ),
            (
                json!({"type": "INTERACTIVE_PAYMENT_CONFIRMATION", "payment": {}}),
                "interactive_payment_confirmation",
                None,
            ),
            (
                json!({"type": "ORDER", "catalogId": "c1", "productItems": []}),
                "order",
                None,
            ),
            (
                json!({"type": "INFECTED_CONTENT", "malware": "EICAR"}),
                "infected_content",
                None,
            ),
            (json!({"type": "UNSUPPORTED"}), "unsupported", None),
            (
                json!({"type": "REACTION", "emoji": "👍", "action": "REACTED", "context": {"id": "out-9"}}),
                "reaction",
                Some("👍"),
            ),
            (
                json!({"type": "SOMETHING_NEW", "text": 5}),
                "something_new",
                None,
            ),
        ];
        let results: Vec<Value> = cases
            .iter()
            .map(|(m, _, _)| inbound_with(m.clone()))
            .collect();
        let events = parse_json(&json!({"results": results})).expect("all types parse");
        assert_eq!(events.len(), cases.len());
        for (event, (raw_message, kind, text)) in events.iter().zip(&cases) {
            let parsed = message(event);
            assert_eq!(parsed.kind, *kind, "{raw_message}");
            assert_eq!(parsed.text.as_deref(), *text, "{raw_message}");
        }
        assert_eq!(message(&events[17]).reply_to.as_deref(), Some("out-9"));
    }

    #[test]
    fn reply_context_and_missing_contact() {
        let mut item = inbound_with(json!({
            "type": "TEXT", "text": "about this",
            "context": {"from": "385921004026", "id": "out-42"}
        }));
        item.as_object_mut().expect("object").remove("contact");
        let events = parse_json(&json!({"results": [item]})).expect("valid");
        let parsed = message(&events[0]);
        assert_eq!(parsed.reply_to.as_deref(), Some("out-42"));
        assert_eq!(parsed.contact.name, None);
    }

    #[test]
    fn status_groups_by_name_then_id() {
        let cases = [
            (
                json!({"groupName": "PENDING", "groupId": 1, "name": "PENDING_ENROUTE"}),
                Some(DeliveryStatus::Queued),
            ),
            (
                json!({"groupName": "ACCEPTED", "name": "ACCEPTED"}),
                Some(DeliveryStatus::Queued),
            ),
            (
                json!({"groupName": "DELIVERED", "name": "DELIVERED_TO_HANDSET"}),
                Some(DeliveryStatus::Delivered),
            ),
            (
                json!({"groupName": "EXPIRED", "name": "EXPIRED_EXPIRED"}),
                Some(DeliveryStatus::Failed),
            ),
            (
                json!({"groupName": "REJECTED", "name": "REJECTED_NETWORK"}),
                Some(DeliveryStatus::Failed),
            ),
            (
                json!({"groupId": 3, "name": "DELIVERED_TO_HANDSET"}),
                Some(DeliveryStatus::Delivered),
            ),
            (
                json!({"groupId": 0, "name": "X"}),
                Some(DeliveryStatus::Queued),
            ),
            (
                json!({"groupId": 4, "name": "X"}),
                Some(DeliveryStatus::Failed),
            ),
            (
                json!({"groupName": "MYSTERY", "groupId": 2, "name": "X"}),
                Some(DeliveryStatus::Failed),
            ),
            (json!({"groupName": "MYSTERY", "name": "X"}), None),
            (json!({"groupId": 42, "name": "X"}), None),
        ];
        for (status_object, expected) in cases {
            let mut item = delivered("out-1");
            item["status"] = status_object.clone();
            let events = parse_json(&json!({"results": [item]})).expect("valid");
            let got = events.first().map(|event| status(event).status);
            assert_eq!(got, expected, "{status_object}");
        }
    }

    #[test]
    fn delivery_falls_back_to_sent_at_and_group_name() {
        let mut item = delivered("out-3");
        let object = item.as_object_mut().expect("object");
        object.remove("doneAt");
        object.remove("error");
        item["status"] = json!({"groupName": "PENDING"});
        let events = parse_json(&json!({"results": [item]})).expect("valid");
        let report = status(&events[0]);
        assert_eq!(report.occurred_at, at(2019, 7, 19, 11, 21, 30, 0));
        assert_eq!(report.provider_status, "PENDING");
        assert_eq!(report.status, DeliveryStatus::Queued);
    }

    #[test]
    fn error_without_numeric_id_uses_its_name() {
        let mut item = delivered("out-4");
        item["error"] = json!({"name": "EC_ABSENT_SUBSCRIBER"});
        let events = parse_json(&json!({"results": [item]})).expect("valid");
        let report = status(&events[0]);
        assert_eq!(report.error_code.as_deref(), Some("EC_ABSENT_SUBSCRIBER"));
        assert_eq!(
            report.error_message.as_deref(),
            Some("EC_ABSENT_SUBSCRIBER")
        );
        assert!(!report.permanent);
    }

    #[test]
    fn empty_results_is_valid() {
        assert_eq!(
            parse(br#"{"results": [], "messageCount": 0, "pendingMessageCount": 0}"#),
            Ok(vec![])
        );
    }

    #[test]
    fn body_and_results_errors() {
        assert_eq!(parse(b"not json").map_err(|e| e.field), Err("body".into()));
        assert_eq!(parse(b"").map_err(|e| e.field), Err("body".into()));
        assert_eq!(parse(b"[]").map_err(|e| e.field), Err("body".into()));
        assert_eq!(parse(b"{}").map_err(|e| e.field), Err("results".into()));
        assert_eq!(
            parse(br#"{"results": null}"#).map_err(|e| e.field),
            Err("results".into())
        );
        assert_eq!(
            parse(br#"{"results": {}}"#).map_err(|e| e.field),
            Err("results".into())
        );
    }

    #[test]
    fn required_field_errors_name_the_exact_path() {
        let ok = inbound_text("in-1", "x");
        let without = |key: &str| {
            let mut item = ok.clone();
            item.as_object_mut().expect("object").remove(key);
            item
        };
        let with = |key: &str, value: Value| {
            let mut item = ok.clone();
            item[key] = value;
            item
        };
        let batch =
            |bad: Value| json!({"results": [ok.clone(), delivered("o"), seen_report("o"), bad]});
        assert_eq!(
            field_of(&batch(without("messageId"))),
            "results[3].messageId"
        );
        assert_eq!(
            field_of(&batch(with("messageId", json!("")))),
            "results[3].messageId"
        );
        assert_eq!(
            field_of(&batch(with("messageId", json!(12)))),
            "results[3].messageId"
        );
        assert_eq!(field_of(&batch(without("from"))), "results[3].from");
        assert_eq!(field_of(&batch(without("to"))), "results[3].to");
        assert_eq!(
            field_of(&batch(without("receivedAt"))),
            "results[3].receivedAt"
        );
        assert_eq!(
            field_of(&batch(with("receivedAt", json!("19/07/2019")))),
            "results[3].receivedAt"
        );
        assert_eq!(
            field_of(&batch(with("message", json!("TEXT")))),
            "results[3].message"
        );
        assert_eq!(
            field_of(&batch(with("message", json!({"text": "x"})))),
            "results[3].message.type"
        );
        assert_eq!(
            field_of(&batch(with("message", json!({"type": "TEXT", "text": 1})))),
            "results[3].message.text"
        );
        assert_eq!(
            field_of(&batch(with(
                "message",
                json!({"type": "TEXT", "context": {"id": 7}})
            ))),
            "results[3].message.context.id"
        );
        assert_eq!(
            field_of(&batch(with("contact", json!({"name": ["Frank"]})))),
            "results[3].contact.name"
        );
        assert_eq!(field_of(&batch(json!("string item"))), "results[3]");
        assert_eq!(
            field_of(&batch(json!({"messageId": "x", "to": "y"}))),
            "results[3]"
        );
    }

    #[test]
    fn report_field_errors_name_the_exact_path() {
        let mut bad_done = delivered("o");
        bad_done["doneAt"] = json!("soon");
        assert_eq!(
            field_of(&json!({"results": [bad_done]})),
            "results[0].doneAt"
        );
        let mut bad_status = delivered("o");
        bad_status["status"] = json!("DELIVERED");
        assert_eq!(
            field_of(&json!({"results": [bad_status]})),
            "results[0].status"
        );
        let mut bad_group = delivered("o");
        bad_group["status"]["groupId"] = json!("three");
        assert_eq!(
            field_of(&json!({"results": [bad_group]})),
            "results[0].status.groupId"
        );
        let mut no_name = delivered("o");
        no_name["status"] = json!({"groupId": 3});
        assert_eq!(
            field_of(&json!({"results": [no_name]})),
            "results[0].status.name"
        );
        let mut bad_permanent = delivered("o");
        bad_permanent["error"] = json!({"id": 5, "permanent": "yes"});
        assert_eq!(
            field_of(&json!({"results": [bad_permanent]})),
            "results[0].error.permanent"
        );
        let mut bad_seen = seen_report("o");
        bad_seen["seenAt"] = json!(1_563_535_510);
        assert_eq!(
            field_of(&json!({"results": [bad_seen]})),
            "results[0].seenAt"
        );
        let seen_without_id = json!({"seenAt": "2019-07-19T11:25:10.123+0000"});
        assert_eq!(
            field_of(&json!({"results": [seen_without_id]})),
            "results[0].messageId"
        );
        let deleted_without_id = json!({"deletedAt": "2019-07-19T11:25:10.123+0000"});
        assert_eq!(
            field_of(
                &json!({"results": [{"messageId": "a", "deletedAt": "x"}, deleted_without_id]})
            ),
            "results[1].messageId"
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop::sample::select(vec![
                "2019-07-19T11:21:27.861+0000",
                "2026-11-25T10:00:00Z",
                "TEXT",
                "IMAGE",
                "REACTION",
                "DELIVERED",
                "PENDING",
                "NO_ERROR",
                "",
                "385916242493",
            ])
            .prop_map(Value::from),
        ]
    }

    /// JSON built from the field names the parser looks at, so the shapes it discriminates on
    /// (and near misses of them) come up often.
    fn arb_json() -> impl Strategy<Value = Value> {
        let keys = prop::sample::select(vec![
            "results",
            "from",
            "to",
            "messageId",
            "receivedAt",
            "integrationType",
            "message",
            "type",
            "text",
            "caption",
            "title",
            "emoji",
            "name",
            "context",
            "id",
            "contact",
            "status",
            "groupName",
            "groupId",
            "doneAt",
            "sentAt",
            "seenAt",
            "deletedAt",
            "error",
            "permanent",
            "description",
        ]);
        leaf().prop_recursive(4, 48, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::vec((keys.clone(), inner), 0..8).prop_map(|pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&body);
        }

        #[test]
        fn signatures_never_panic_and_round_trip(
            secret in prop::collection::vec(any::<u8>(), 0..80),
            body in prop::collection::vec(any::<u8>(), 0..128),
            header in prop::option::of(".{0,140}"),
            algorithm in prop::sample::select(vec![SignatureAlgorithm::Sha1, SignatureAlgorithm::Sha256, SignatureAlgorithm::Sha512]),
        ) {
            let _ = verify_signature(algorithm, &secret, header.as_deref(), &body);
            let signature = sign(algorithm, &secret, &body);
            prop_assert_eq!(verify_signature(algorithm, &secret, Some(&signature), &body), Ok(()));
        }

        #[test]
        fn arbitrary_json_never_panics(value in arb_json()) {
            let _ = parse_json(&value);
            let _ = parse_json(&json!({"results": [value]}));
        }

        #[test]
        fn mutated_valid_items_never_panic(
            key in prop::sample::select(vec!["from", "to", "messageId", "receivedAt", "message", "contact", "status", "doneAt", "error", "seenAt"]),
            value in arb_json(),
        ) {
            for mut item in [inbound_text("a", "b"), delivered("c"), seen_report("d")] {
                item[key] = value.clone();
                let _ = parse_json(&json!({"results": [item]}));
            }
        }
    }

    fn typed(message: Value) -> InboundMessage {
        let events = parse_json(&json!({"results": [inbound_with(message)]})).expect("valid");
        self::message(&events[0]).clone()
    }

    #[test]
    fn media_location_contacts_and_replies_are_typed() {
        let url = "https://abc.api.infobip.com/whatsapp/1/senders/441134960000/media/m1";
        for (kind, expected) in [
            ("IMAGE", "image"),
            ("DOCUMENT", "document"),
            ("VIDEO", "video"),
            ("VOICE", "voice"),
            ("AUDIO", "audio"),
            ("STICKER", "sticker"),
        ] {
            let parsed = typed(json!({"type": kind, "url": url, "caption": "c"}));
            assert_eq!(
                parsed.content.clone().unwrap_or_default().media.len(),
                1,
                "{kind}"
            );
            let media = &parsed.content.clone().unwrap_or_default().media[0];
            assert_eq!(media.kind, expected);
            assert_eq!(media.source, MediaSource::Url(url.into()));
        }
        let location = typed(
            json!({"type": "LOCATION", "latitude": 45.8, "longitude": 15.97,
                                    "name": "Zagreb", "address": "Trg"}),
        );
        let place = location
            .content
            .clone()
            .unwrap_or_default()
            .location
            .expect("a location");
        assert_eq!(
            (place.latitude, place.longitude, place.name.as_deref()),
            (45.8, 15.97, Some("Zagreb"))
        );
        let contacts = typed(
            json!({"type": "CONTACT", "contacts": [{"name": {"firstName": "Ana", "lastName": "H",
            "formattedName": "Ana H"}, "phones": [{"phone": "385911234567", "type": "MOBILE"}]}]}),
        );
        assert_eq!(contacts.kind, "contacts");
        assert_eq!(
            contacts.content.clone().unwrap_or_default().contacts[0].phones,
            vec!["385911234567"]
        );
        assert_eq!(
            contacts.content.clone().unwrap_or_default().contacts[0]
                .name
                .as_deref(),
            Some("Ana H")
        );
        let button = typed(json!({"type": "BUTTON", "text": "Yes", "payload": "YES_PAYLOAD"}));
        let reply = button
            .content
            .clone()
            .unwrap_or_default()
            .reply
            .expect("a reply");
        assert_eq!(
            (reply.kind.as_str(), reply.payload.as_deref()),
            ("button", Some("YES_PAYLOAD"))
        );
        let list = typed(
            json!({"type": "INTERACTIVE_LIST_REPLY", "id": "r1", "title": "Row", "description": "d"}),
        );
        let reply = list
            .content
            .clone()
            .unwrap_or_default()
            .reply
            .expect("a reply");
        assert_eq!(
            (reply.kind.as_str(), reply.id.as_deref()),
            ("list_reply", Some("r1"))
        );
        let tap = typed(json!({"type": "INTERACTIVE_BUTTON_REPLY", "id": "b1", "title": "OK"}));
        assert_eq!(
            tap.content
                .clone()
                .unwrap_or_default()
                .reply
                .expect("a reply")
                .kind,
            "button_reply"
        );
    }
}
