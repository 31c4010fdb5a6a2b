//! Meta WhatsApp Cloud API webhooks: the signature, the verification handshake and the payload.
//!
//! One POST may carry several `entry[]`, each with several `changes[]`, each with several
//! `messages[]` and `statuses[]` (reference 2.3): every one of them is read.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::time::parse_epoch_value;
use super::{
    Contact, Content, DeliveryStatus, InboundMessage, Location, MediaRef, MediaSource, ParseError,
    Provider, Reply, SignatureError, StatusReport, WebhookEvent, is_media_kind, shared_contact,
};

type Object = Map<String, Value>;
type HmacSha256 = Hmac<Sha256>;

const SIGNATURE_PREFIX: &str = "sha256=";

/// Meta error code for "message undeliverable": retrying the same recipient cannot help.
const UNDELIVERABLE: i64 = 131_026;

/// Checks the `X-Hub-Signature-256` header against the raw body, as received (before any JSON
/// parsing: Meta signs its own escaping, which a parse/serialise round trip would change).
pub fn verify_signature(
    app_secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(SignatureError::Malformed)?;
    let digest = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if digest.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    // `verify_slice` compares in constant time.
    mac(app_secret, body)
        .ok_or(SignatureError::Mismatch)?
        .verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` header value Meta would send for `body` (`sha256=<lowercase hex>`).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let digest = mac(app_secret, body)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("{SIGNATURE_PREFIX}{digest}")
}

/// HMAC takes keys of any length, so `None` cannot happen; it is handled rather than unwrapped.
fn mac(key: &[u8], body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(body);
    Some(mac)
}

/// The GET handshake: the `hub.challenge` to echo when `hub.mode` is `subscribe` and
/// `hub.verify_token` equals ours, else `None` (answer 403). An empty expected token never matches,
/// so an unconfigured tenant cannot be subscribed with an empty `hub.verify_token`.
pub fn verify_challenge(
    expected_token: &str,
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
) -> Option<String> {
    let token = token?;
    let token_matches: bool = token.as_bytes().ct_eq(expected_token.as_bytes()).into();
    let accepted = mode == Some("subscribe") && !expected_token.is_empty() && token_matches;
    accepted.then(|| challenge.map(str::to_owned)).flatten()
}

/// Parses one Meta webhook body into events: per change, its messages then its statuses.
///
/// Changes whose `field` is not `messages` (account, template or quality updates) are skipped, as
/// are statuses with a `status` value not listed in reference 2.4; `value.errors[]` (app-level
/// errors not tied to a message) produce no event.
pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, ParseError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|error| ParseError::new("body", format!("is not JSON: {error}")))?;
    let root = root
        .as_object()
        .ok_or_else(|| ParseError::new("body", "must be a JSON object"))?;
    let mut events = Vec::new();
    for (index, entry) in req_array(root, "", "entry")?.iter().enumerate() {
        parse_entry(entry, &format!("entry[{index}]"), &mut events)?;
    }
    Ok(events)
}

fn parse_entry(
    entry: &Value,
    path: &str,
    events: &mut Vec<WebhookEvent>,
) -> Result<(), ParseError> {
    let entry = as_object(entry, path)?;
    // The entry's id is the WhatsApp Business Account the changes belong to.
    // Read leniently: routing does not depend on it unless a tenant registered its account.
    let account = get(entry, "id").and_then(Value::as_str);
    for (index, change) in req_array(entry, path, "changes")?.iter().enumerate() {
        parse_change(change, &format!("{path}.changes[{index}]"), account, events)?;
    }
    Ok(())
}

fn parse_change(
    change: &Value,
    path: &str,
    account: Option<&str>,
    events: &mut Vec<WebhookEvent>,
) -> Result<(), ParseError> {
    let change = as_object(change, path)?;
    if req_str(change, path, "field")? != "messages" {
        return Ok(());
    }
    let value = req_obj(change, path, "value")?;
    let value_path = join(path, "value");
    let change = Change::new(value, &value_path, account)?;
    for (index, message) in opt_array(value, &value_path, "messages")?
        .iter()
        .enumerate()
    {
        let message_path = format!("{value_path}.messages[{index}]");
        events.push(WebhookEvent::Message(
            change.message(message, &message_path)?,
        ));
    }
    for (index, status) in opt_array(value, &value_path, "statuses")?
        .iter()
        .enumerate()
    {
        let status_path = format!("{value_path}.statuses[{index}]");
        if let Some(report) = change.status(status, &status_path)? {
            events.push(WebhookEvent::Status(report));
        }
    }
    Ok(())
}

/// What every message and status of one `changes[].value` shares.
struct Change<'a> {
    metadata: &'a Object,
    phone_number_id: &'a str,
    account: Option<&'a str>,
    contacts: Vec<&'a Object>,
    path: &'a str,
}

impl<'a> Change<'a> {
    fn new(value: &'a Object, path: &'a str, account: Option<&'a str>) -> Result<Self, ParseError> {
        let metadata = req_obj(value, path, "metadata")?;
        let phone_number_id = req_str(metadata, &join(path, "metadata"), "phone_number_id")?;
        let contacts = opt_array(value, path, "contacts")?
            .iter()
            .enumerate()
            .map(|(index, contact)| as_object(contact, &format!("{path}.contacts[{index}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            metadata,
            phone_number_id,
            account,
            contacts,
            path,
        })
    }

    fn message(&self, message: &Value, path: &str) -> Result<InboundMessage, ParseError> {
        let object = as_object(message, path)?;
        let id = req_str(object, path, "id")?;
        let from = opt_str(object, path, "from")?;
        let from_user_id = opt_str(object, path, "from_user_id")?;
        if from.is_none() && from_user_id.is_none() {
            return Err(ParseError::new(
                join(path, "from"),
                "is required (or from_user_id)",
            ));
        }
        let timestamp = required(object, path, "timestamp")?;
        let timestamp = parse_epoch_value(&join(path, "timestamp"), timestamp)?;
        let message_type = req_str(object, path, "type")?;
        let kind = message_type.to_lowercase();
        let matched = self.find_contact(from, from_user_id);
        let content = content(object, &kind).boxed();
        Ok(InboundMessage {
            provider: Provider::Meta,
            provider_message_id: id.to_owned(),
            contact: self.contact(matched, from, from_user_id)?,
            to: Some(self.phone_number_id.to_owned()),
            account_id: self.account.map(str::to_owned),
            timestamp,
            text: message_text(object, path, &kind)?.map(str::to_owned),
            kind,
            reply_to: opt_str_at(object, path, &["context", "id"])?.map(str::to_owned),
            content,
            raw: self.raw(message, matched),
        })
    }

    /// `{"message", "contact", "metadata"}`: the message alone would lose who sent it and to which
    /// number. Built by hand because `json!` unwraps internally.
    fn raw(&self, message: &Value, matched: Option<(usize, &Object)>) -> Value {
        let contact = matched.map_or(Value::Null, |(_, contact)| Value::Object(contact.clone()));
        let mut raw = Object::new();
        raw.insert("message".to_owned(), message.clone());
        raw.insert("contact".to_owned(), contact);
        raw.insert("metadata".to_owned(), Value::Object(self.metadata.clone()));
        Value::Object(raw)
    }

    /// Meta may normalise a number differently in `wa_id` and `from` (e.g. Brazilian mobile
    /// prefixes), so a lone contact is taken as the sender even when the ids differ.
    fn find_contact(
        &self,
        from: Option<&str>,
        from_user_id: Option<&str>,
    ) -> Option<(usize, &'a Object)> {
        let matches = |contact: &&Object| {
            let wa_id = contact.get("wa_id").and_then(Value::as_str);
            let user_id = contact.get("user_id").and_then(Value::as_str);
            (from.is_some() && wa_id == from) || (from_user_id.is_some() && user_id == from_user_id)
        };
        let found = self
            .contacts
            .iter()
            .copied()
            .enumerate()
            .find(|(_, c)| matches(c));
        match (found, self.contacts.as_slice()) {
            (Some(found), _) => Some(found),
            (None, [only]) => Some((0, *only)),
            (None, _) => None,
        }
    }

    /// The phone when there is one, else the BSUID: a username-only user must still get a stable key.
    fn contact(
        &self,
        matched: Option<(usize, &Object)>,
        from: Option<&str>,
        from_user_id: Option<&str>,
    ) -> Result<Contact, ParseError> {
        let mut contact = ContactFields::default();
        if let Some((index, object)) = matched {
            contact = ContactFields::read(object, &format!("{}.contacts[{index}]", self.path))?;
        }
        let phone = from.or(contact.wa_id).map(str::to_owned);
        let user_id = from_user_id.or(contact.user_id).map(str::to_owned);
        Ok(Contact {
            id: phone
                .clone()
                .or_else(|| user_id.clone())
                .unwrap_or_default(),
            phone,
            user_id,
            username: contact.username.map(str::to_owned),
            name: contact.name.map(str::to_owned),
        })
    }

    fn status(&self, status: &Value, path: &str) -> Result<Option<StatusReport>, ParseError> {
        let object = as_object(status, path)?;
        let id = req_str(object, path, "id")?;
        let provider_status = req_str(object, path, "status")?;
        let Some(delivery_status) = status_of(provider_status) else {
            return Ok(None);
        };
        let timestamp = required(object, path, "timestamp")?;
        let occurred_at = parse_epoch_value(&join(path, "timestamp"), timestamp)?;
        let recipient =
            opt_str(object, path, "recipient_id")?.or(opt_str(object, path, "recipient_user_id")?);
        let error = first_error(object, path)?;
        Ok(Some(StatusReport {
            provider: Provider::Meta,
            provider_message_id: id.to_owned(),
            status: delivery_status,
            provider_status: provider_status.to_owned(),
            occurred_at,
            recipient: recipient.map(str::to_owned),
            to: Some(self.phone_number_id.to_owned()),
            account_id: self.account.map(str::to_owned),
            permanent: error.as_ref().is_some_and(|e| e.permanent),
            error_code: error.as_ref().map(|e| e.code.clone()),
            error_message: error.and_then(|e| e.message),
            raw: status.clone(),
        }))
    }
}

/// The fields read from one `contacts[]` item.
#[derive(Default)]
struct ContactFields<'a> {
    wa_id: Option<&'a str>,
    user_id: Option<&'a str>,
    name: Option<&'a str>,
    username: Option<&'a str>,
}

impl<'a> ContactFields<'a> {
    fn read(contact: &'a Object, path: &str) -> Result<Self, ParseError> {
        Ok(Self {
            wa_id: opt_str(contact, path, "wa_id")?,
            user_id: opt_str(contact, path, "user_id")?,
            name: opt_str_at(contact, path, &["profile", "name"])?,
            username: opt_str_at(contact, path, &["profile", "username"])?,
        })
    }
}

/// The typed content of a message (reference 2.3). Lenient: what is missing or of the wrong
/// type is left out (the message and its raw form are kept whatever its content holds).
fn content(message: &Object, kind: &str) -> Content {
    let mut content = Content::default();
    let inner = message.get(kind).and_then(Value::as_object);
    let text = |object: Option<&Object>, key: &str| {
        object
            .and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    match kind {
        kind if is_media_kind(kind) => {
            if let Some(id) = text(inner, "id") {
                let voice = inner.and_then(|o| o.get("voice")).and_then(Value::as_bool);
                content.media.push(MediaRef {
                    kind: if voice == Some(true) { "voice" } else { kind }.to_owned(),
                    source: MediaSource::MetaId(id),
                    mime_type: text(inner, "mime_type"),
                    sha256: text(inner, "sha256"),
                    caption: text(inner, "caption"),
                    filename: text(inner, "filename"),
                });
            }
        }
        "location" => {
            let number = |key: &str| inner.and_then(|o| o.get(key)).and_then(Value::as_f64);
            if let (Some(latitude), Some(longitude)) = (number("latitude"), number("longitude")) {
                content.location = Some(Location {
                    latitude,
                    longitude,
                    name: text(inner, "name"),
                    address: text(inner, "address"),
                    url: text(inner, "url"),
                });
            }
        }
        "contacts" => {
            if let Some(cards) = message.get("contacts").and_then(Value::as_array) {
                content.contacts = cards.iter().map(shared_contact).collect();
            }
        }
        "button" => {
            content.reply = Some(Reply {
                kind: "button".to_owned(),
                id: None,
                title: text(inner, "text"),
                description: None,
                payload: text(inner, "payload"),
            });
        }
        "interactive" => {
            let reply_of = |key: &str| inner.and_then(|o| o.get(key)).and_then(Value::as_object);
            let found = [
                ("button_reply", "button_reply"),
                ("list_reply", "list_reply"),
            ]
            .into_iter()
            .find_map(|(key, name)| reply_of(key).map(|r| (name, r)));
            if let Some((name, reply)) = found {
                content.reply = Some(Reply {
                    kind: name.to_owned(),
                    id: text(Some(reply), "id"),
                    title: text(Some(reply), "title"),
                    description: text(Some(reply), "description"),
                    payload: None,
                });
            }
        }
        _ => {}
    }
    content
}

/// The human-readable part of each message type (reference 2.3).
fn message_text<'a>(
    message: &'a Object,
    path: &str,
    kind: &str,
) -> Result<Option<&'a str>, ParseError> {
    match kind {
        "text" => opt_str_at(message, path, &["text", "body"]),
        "image" | "video" | "document" | "audio" | "sticker" => {
            opt_str_at(message, path, &[kind, "caption"])
        }
        "interactive" => {
            Ok(
                opt_str_at(message, path, &["interactive", "button_reply", "title"])?.or(
                    opt_str_at(message, path, &["interactive", "list_reply", "title"])?,
                ),
            )
        }
        "button" => opt_str_at(message, path, &["button", "text"]),
        "reaction" => opt_str_at(message, path, &["reaction", "emoji"]),
        "location" => opt_str_at(message, path, &["location", "name"]),
        _ => Ok(None),
    }
}

/// `played` is a voice message's "listened to", the same step as read. Other values (group
/// variants, future additions) return `None` and are skipped rather than guessed at.
fn status_of(status: &str) -> Option<DeliveryStatus> {
    match status {
        "sent" => Some(DeliveryStatus::Sent),
        "delivered" => Some(DeliveryStatus::Delivered),
        "read" | "played" => Some(DeliveryStatus::Read),
        "failed" => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

struct StatusError {
    code: String,
    message: Option<String>,
    permanent: bool,
}

/// Meta sends one error per failed status in practice; the first is the one reported.
fn first_error(status: &Object, path: &str) -> Result<Option<StatusError>, ParseError> {
    let Some(first) = opt_array(status, path, "errors")?.first() else {
        return Ok(None);
    };
    let error_path = format!("{path}.errors[0]");
    let error = as_object(first, &error_path)?;
    let code = match required(error, &error_path, "code")? {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        _ => {
            return Err(ParseError::new(
                join(&error_path, "code"),
                "must be a number",
            ));
        }
    };
    let message = opt_str(error, &error_path, "title")?.or(opt_str(error, &error_path, "message")?);
    Ok(Some(StatusError {
        permanent: code == UNDELIVERABLE.to_string(),
        code,
        message: message.map(str::to_owned),
    }))
}

// JSON navigation. A JSON `null` counts as absent. Optional fields are still type-checked when
// present, so a schema change surfaces as an error with its path instead of silently empty data.

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Object, ParseError> {
    value
        .as_object()
        .ok_or_else(|| ParseError::new(path, "must be an object"))
}

fn get<'a>(object: &'a Object, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn required<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a Value, ParseError> {
    get(object, key).ok_or_else(|| ParseError::new(join(path, key), "is required"))
}

fn req_str<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a str, ParseError> {
    match required(object, path, key)? {
        Value::String(text) if !text.is_empty() => Ok(text),
        Value::String(_) => Err(ParseError::new(join(path, key), "must not be empty")),
        _ => Err(ParseError::new(join(path, key), "must be a string")),
    }
}

fn req_obj<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a Object, ParseError> {
    opt_obj(object, path, key)?.ok_or_else(|| ParseError::new(join(path, key), "is required"))
}

fn req_array<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a [Value], ParseError> {
    required(object, path, key)?;
    opt_array(object, path, key)
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

fn opt_array<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a [Value], ParseError> {
    match get(object, key) {
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ParseError::new(join(path, key), "must be an array")),
        None => Ok(&[]),
    }
}

/// A string nested under optional objects (`context.id`); absent anywhere is `None`.
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
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use serde_json::json;

    const SECRET: &[u8] = b"meta-app-secret";

    fn epoch(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("in range")
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

    fn metadata(phone_number_id: &str) -> Value {
        json!({"display_phone_number": "15550783881", "phone_number_id": phone_number_id})
    }

    fn envelope(entries: Vec<Value>) -> Value {
        json!({"object": "whatsapp_business_account", "entry": entries})
    }

    fn messages_change(value: Value) -> Value {
        json!({"field": "messages", "value": value})
    }

    fn value_with(contacts: Value, messages: Value, statuses: Value) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata("106540352242922"),
            "contacts": contacts,
            "messages": messages,
            "statuses": statuses
        })
    }

    fn text_message(id: &str, from: &str, body: &str) -> Value {
        json!({"from": from, "id": id, "timestamp": "1732528800", "type": "text", "text": {"body": body}})
    }

    fn phone_contact() -> Value {
        json!({"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"})
    }

    fn username_contact() -> Value {
        json!({"profile": {"name": "Ana", "username": "ana.codes"}, "user_id": "CO.1047823456789"})
    }

    /// Two entries, several changes (one not about messages), messages from a phone user and from
    /// a username-only (BSUID) user, and statuses for both kinds of recipient.
    fn full_payload() -> Value {
        let bsuid_image = json!({
            "from_user_id": "CO.1047823456789", "id": "wamid.BSUID1", "timestamp": "1732528805",
            "type": "image",
            "image": {"id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "abc=", "caption": "my cat"}
        });
        let first = value_with(
            json!([phone_contact(), username_contact()]),
            json!([
                text_message("wamid.TEXT1", "16505551234", "Hi there"),
                bsuid_image
            ]),
            json!([
                {"id": "wamid.OUT1", "status": "delivered", "timestamp": "1732528900", "recipient_id": "16505551234",
                 "conversation": {"id": "c1", "origin": {"type": "service"}},
                 "pricing": {"billable": false, "pricing_model": "PMP", "category": "service"}},
                {"id": "wamid.OUT2", "status": "read", "timestamp": "1732528950",
                 "recipient_user_id": "CO.1047823456789", "recipient_parent_user_id": "CO.P.1"}
            ]),
        );
        let account_update = json!({"field": "account_update", "value": {"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"}});
        let second = json!({
            "messaging_product": "whatsapp",
            "metadata": metadata("106540352242999"),
            "statuses": [
                {"id": "wamid.OUT3", "status": "failed", "timestamp": 1_732_529_000, "recipient_id": "16505550000",
                 "errors": [{"code": 131_026, "title": "Message undeliverable", "message": "Message undeliverable",
                             "error_data": {"details": "Recipient is not a WhatsApp user"}}]},
                {"id": "wamid.OUT4", "status": "deleted", "timestamp": "1732529001", "recipient_id": "16505550000"},
                {"id": "wamid.OUT5", "status": "played", "timestamp": "1732529002", "recipient_id": "16505550000"},
                {"id": "wamid.OUT6", "status": "failed", "timestamp": "1732529003", "recipient_id": "16505550000",
                 "errors": [{"code": 131_047, "title": "Re-engagement message"}]}
            ]
        });
        envelope(vec![
            json!({"id": "102290129340398", "changes": [messages_change(first), account_update]}),
            json!({"id": "102290129340399", "changes": [messages_change(second)]}),
        ])
    }

    #[test]
    fn every_entry_change_message_and_status_is_read() {
        let body = full_payload();
        let events = parse_json(&body).expect("valid payload");
        let ids: Vec<&str> = events
            .iter()
            .map(|event| match event {
                WebhookEvent::Message(m) => m.provider_message_id.as_str(),
                WebhookEvent::Status(s) => s.provider_message_id.as_str(),
            })
            .collect();
        // OUT4 (`deleted`) is not a documented status and is skipped; account_update is skipped.
        assert_eq!(
            ids,
            [
                "wamid.TEXT1",
                "wamid.BSUID1",
                "wamid.OUT1",
                "wamid.OUT2",
                "wamid.OUT3",
                "wamid.OUT5",
                "wamid.OUT6"
            ]
        );
    }

    #[test]
    fn phone_user_message() {
        let body = full_payload();
        let events = parse_json(&body).expect("valid payload");
        let text = message(&events[0]);
        assert_eq!(text.provider, Provider::Meta);
        assert_eq!(text.contact.id, "16505551234");
        assert_eq!(text.contact.phone.as_deref(), Some("16505551234"));
        assert_eq!(text.contact.user_id, None);
        assert_eq!(text.contact.name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(text.to.as_deref(), Some("106540352242922"));
        assert_eq!(text.timestamp, epoch(1_732_528_800));
        assert_eq!(
            (text.kind.as_str(), text.text.as_deref()),
            ("text", Some("Hi there"))
        );
        let value = &body["entry"][0]["changes"][0]["value"];
        assert_eq!(text.raw["message"], value["messages"][0]);
        assert_eq!(text.raw["contact"], value["contacts"][0]);
        assert_eq!(text.raw["metadata"], value["metadata"]);
    }

    #[test]
    fn username_only_user_is_keyed_on_bsuid() {
        let events = parse_json(&full_payload()).expect("valid payload");
        let image = message(&events[1]);
        assert_eq!(image.contact.id, "CO.1047823456789");
        assert_eq!(image.contact.phone, None);
        assert_eq!(image.contact.user_id.as_deref(), Some("CO.1047823456789"));
        assert_eq!(image.contact.username.as_deref(), Some("ana.codes"));
        assert_eq!(image.contact.name.as_deref(), Some("Ana"));
        assert_eq!(
            (image.kind.as_str(), image.text.as_deref()),
            ("image", Some("my cat"))
        );
        assert_eq!(image.raw["contact"]["user_id"], "CO.1047823456789");
    }

    #[test]
    fn statuses() {
        let events = parse_json(&full_payload()).expect("valid payload");
        let delivered = status(&events[2]);
        assert_eq!(delivered.status, DeliveryStatus::Delivered);
        assert_eq!(delivered.provider_status, "delivered");
        assert_eq!(delivered.occurred_at, epoch(1_732_528_900));
        assert_eq!(delivered.recipient.as_deref(), Some("16505551234"));
        assert_eq!(delivered.to.as_deref(), Some("106540352242922"));
        assert_eq!(delivered.error_code, None);

        let read = status(&events[3]);
        assert_eq!(read.status, DeliveryStatus::Read);
        assert_eq!(read.recipient.as_deref(), Some("CO.1047823456789"));

        let failed = status(&events[4]);
        assert_eq!(failed.status, DeliveryStatus::Failed);
        assert_eq!(failed.occurred_at, epoch(1_732_529_000));
        assert_eq!(failed.error_code.as_deref(), Some("131026"));
        assert_eq!(
            failed.error_message.as_deref(),
            Some("Message undeliverable")
        );
        assert!(failed.permanent);
        assert_eq!(failed.to.as_deref(), Some("106540352242999"));

        let played = status(&events[5]);
        assert_eq!(
            (played.status, played.provider_status.as_str()),
            (DeliveryStatus::Read, "played")
        );

        let window = status(&events[6]);
        assert_eq!(window.error_code.as_deref(), Some("131047"));
        assert!(!window.permanent);
    }

    #[test]
    fn every_documented_message_type() {
        let media = |kind: &str, caption: Option<&str>| {
            let mut object =
                json!({"id": "m1", "mime_type": "application/octet-stream", "sha256": "x="});
            if let Some(caption) = caption {
                object["caption"] = json!(caption);
            }
            json!({"type": kind, kind: object})
        };
        let cases = [
            (
                json!({"type": "text", "text": {"body": "hello"}}),
                "text",
                Some("hello"),
            ),
            (media("image", Some("pic")), "image", Some("pic")),
            (media("video", Some("clip")), "video", Some("clip")),
            (
                media("document", Some("invoice")),
                "document",
                Some("invoice"),
            ),
            (media("audio", None), "audio", None),
            (media("sticker", None), "sticker", None),
            (
                json!({"type": "location", "location": {"latitude": 38.9, "longitude": -77.0, "name": "Philz", "address": "1 Main St"}}),
                "location",
                Some("Philz"),
            ),
            (
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ana"}, "phones": [{"phone": "+1 555"}]}]}),
                "contacts",
                None,
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}}}),
                "interactive",
                Some("Yes"),
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Large", "description": "L"}}}),
                "interactive",
                Some("Large"),
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{}"}}}),
                "interactive",
                None,
            ),
            (
                json!({"type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}}),
                "button",
                Some("Stop promotions"),
            ),
            (
                json!({"type": "reaction", "reaction": {"message_id": "wamid.OUT1", "emoji": "❤️"}}),
                "reaction",
                Some("❤️"),
            ),
            (
                json!({"type": "order", "order": {"catalog_id": "c", "product_items": []}}),
                "order",
                None,
            ),
            (
                json!({"type": "system", "system": {"body": "changed number", "type": "user_changed_number"}}),
                "system",
                None,
            ),
            (
                json!({"type": "unsupported", "errors": [{"code": 131_051, "title": "Message type unknown"}]}),
                "unsupported",
                None,
            ),
            (
                json!({"type": "unknown", "errors": [{"code": 131_051}]}),
                "unknown",
                None,
            ),
        ];
        let messages: Vec<Value> = cases
            .iter()
            .enumerate()
            .map(|(index, (fields, _, _))| {
                let mut message = json!({"from": "16505551234", "id": format!("wamid.{index}"), "timestamp": "1732528800",
                                         "context": {"from": "15550783881", "id": "wamid.QUOTED"}});
                for (key, value) in fields.as_object().expect("object") {
                    message[key] = value.clone();
                }
                message
            })
            .collect();
        let value = value_with(json!([phone_contact()]), json!(messages), json!([]));
        let body = envelope(vec![
            json!({"id": "1", "changes": [messages_change(value)]}),
        ]);
        let events = parse_json(&body).expect("all types parse");
        assert_eq!(events.len(), cases.len());
        for (event, (fields, kind, text)) in events.iter().zip(&cases) {
            let parsed = message(event);
            assert_eq!(parsed.kind, *kind, "{fields}");
            assert_eq!(parsed.text.as_deref(), *text, "{fields}");
            assert_eq!(parsed.reply_to.as_deref(), Some("wamid.QUOTED"));
        }
    }

    #[test]
    fn contact_matching() {
        let other = json!({"profile": {"name": "Other"}, "wa_id": "19990000000"});
        // Matched by wa_id among several contacts.
        let value = value_with(
            json!([other, phone_contact()]),
            json!([text_message("w1", "16505551234", "x")]),
            json!([]),
        );
        let events = parse_json(&envelope(vec![
            json!({"id": "1", "changes": [messages_change(value)]}),
        ]))
        .expect("valid");
        assert_eq!(
            message(&events[0]).contact.name.as_deref(),
            Some("Sheena Nelson")
        );
        // A lone contact is used even when its wa_id is normalised differently from `from`.
        let lone = json!([{"profile": {"name": "Brazil"}, "wa_id": "5511987654321"}]);
        let value = value_with(
            lone,
            json!([text_message("w2", "551187654321", "x")]),
            json!([]),
        );
        let events = parse_json(&envelope(vec![
            json!({"id": "1", "changes": [messages_change(value)]}),
        ]))
        .expect("valid");
        let parsed = message(&events[0]);
        assert_eq!(parsed.contact.name.as_deref(), Some("Brazil"));
        assert_eq!(parsed.contact.id, "551187654321");
        // No match among several: no name, raw contact null.
        let value = value_with(
            json!([username_contact(), json!({"wa_id": "1"})]),
            json!([text_message("w3", "16505551234", "x")]),
            json!([]),
        );
        let events = parse_json(&envelope(vec![
            json!({"id": "1", "changes": [messages_change(value)]}),
        ]))
        .expect("valid");
        let parsed = message(&events[0]);
        assert_eq!(parsed.contact.name, None);
        assert_eq!(parsed.raw["contact"], Value::Null);
        // No contacts at all.
        let value = json!({"metadata": metadata("p"), "messages": [text_message("w4", "16505551234", "x")]});
        let events = parse_json(&envelope(vec![
            json!({"id": "1", "changes": [messages_change(value)]}),
        ]))
        .expect("valid");
        assert_eq!(message(&events[0]).contact.id, "16505551234");
    }

    #[test]
    fn empty_and_non_message_payloads() {
        assert_eq!(parse_json(&envelope(vec![])), Ok(vec![]));
        let only_errors = json!({"metadata": metadata("p"), "errors": [{"code": 131_000, "title": "Something went wrong"}]});
        assert_eq!(
            parse_json(&envelope(vec![
                json!({"id": "1", "changes": [messages_change(only_errors)]})
            ])),
            Ok(vec![])
        );
        let templates =
            json!({"field": "message_template_status_update", "value": {"event": "APPROVED"}});
        assert_eq!(
            parse_json(&envelope(vec![json!({"id": "1", "changes": [templates]})])),
            Ok(vec![])
        );
    }

    #[test]
    fn field_errors_name_the_full_path() {
        let with_message = |message: Value| {
            let value = value_with(
                json!([phone_contact()]),
                json!([
                    text_message("ok", "1", "x"),
                    text_message("ok2", "1", "y"),
                    message
                ]),
                json!([]),
            );
            let skipped = json!({"field": "account_alerts", "value": null});
            envelope(vec![
                json!({"id": "1", "changes": [skipped, messages_change(value)]}),
            ])
        };
        let good = text_message("wamid.3", "16505551234", "x");
        let mutate = |key: &str, value: Option<Value>| {
            let mut message = good.clone();
            let object = message.as_object_mut().expect("object");
            match value {
                Some(value) => object.insert(key.to_owned(), value),
                None => object.remove(key),
            };
            with_message(message)
        };
        let path = "entry[0].changes[1].value.messages[2]";
        assert_eq!(field_of(&mutate("id", None)), format!("{path}.id"));
        assert_eq!(
            field_of(&mutate("id", Some(json!("")))),
            format!("{path}.id")
        );
        assert_eq!(field_of(&mutate("from", None)), format!("{path}.from"));
        assert_eq!(
            field_of(&mutate("from", Some(json!(16_505_551_234_i64)))),
            format!("{path}.from")
        );
        assert_eq!(
            field_of(&mutate("timestamp", None)),
            format!("{path}.timestamp")
        );
        assert_eq!(
            field_of(&mutate("timestamp", Some(json!("2024-11-25")))),
            format!("{path}.timestamp")
        );
        assert_eq!(field_of(&mutate("type", None)), format!("{path}.type"));
        assert_eq!(
            field_of(&mutate("text", Some(json!("body")))),
            format!("{path}.text")
        );
        assert_eq!(
            field_of(&mutate("text", Some(json!({"body": 3})))),
            format!("{path}.text.body")
        );
        assert_eq!(
            field_of(&mutate("context", Some(json!({"id": false})))),
            format!("{path}.context.id")
        );
        assert_eq!(field_of(&with_message(json!("not an object"))), path);
    }

    #[test]
    fn structural_errors_name_the_full_path() {
        assert_eq!(parse(b"{").map_err(|e| e.field), Err("body".into()));
        assert_eq!(parse(b"\"x\"").map_err(|e| e.field), Err("body".into()));
        assert_eq!(
            field_of(&json!({"object": "whatsapp_business_account"})),
            "entry"
        );
        assert_eq!(field_of(&json!({"entry": {}})), "entry");
        assert_eq!(
            field_of(&json!({"entry": [{"id": "1"}]})),
            "entry[0].changes"
        );
        assert_eq!(
            field_of(&json!({"entry": [{"changes": [{}]}]})),
            "entry[0].changes[0].field"
        );
        assert_eq!(
            field_of(&json!({"entry": [{"changes": [{"field": "messages"}]}]})),
            "entry[0].changes[0].value"
        );
        let value_without = |key: &str| {
            let mut value = value_with(json!([]), json!([]), json!([]));
            value.as_object_mut().expect("object").remove(key);
            envelope(vec![
                json!({"changes": []}),
                json!({"changes": [messages_change(value)]}),
            ])
        };
        assert_eq!(
            field_of(&value_without("metadata")),
            "entry[1].changes[0].value.metadata"
        );
        let mut bad_metadata = value_with(json!([]), json!([]), json!([]));
        bad_metadata["metadata"] = json!({"display_phone_number": "1"});
        assert_eq!(
            field_of(&envelope(vec![
                json!({"changes": [messages_change(bad_metadata)]})
            ])),
            "entry[0].changes[0].value.metadata.phone_number_id"
        );
        let bad_contacts = value_with(json!([phone_contact(), 5]), json!([]), json!([]));
        assert_eq!(
            field_of(&envelope(vec![
                json!({"changes": [messages_change(bad_contacts)]})
            ])),
            "entry[0].changes[0].value.contacts[1]"
        );
        let bad_messages = value_with(json!([]), json!({"0": {}}), json!([]));
        assert_eq!(
            field_of(&envelope(vec![
                json!({"changes": [messages_change(bad_messages)]})
            ])),
            "entry[0].changes[0].value.messages"
        );
        let bad_profile = value_with(
            json!([{"wa_id": "1", "profile": {"username": 7}}]),
            json!([text_message("w", "1", "x")]),
            json!([]),
        );
        assert_eq!(
            field_of(&envelope(vec![
                json!({"changes": [messages_change(bad_profile)]})
            ])),
            "entry[0].changes[0].value.contacts[0].profile.username"
        );
    }

    #[test]
    fn status_errors_name_the_full_path() {
        let with_status = |status: Value| {
            let value = value_with(
                json!([]),
                json!([]),
                json!([{"id": "ok", "status": "sent", "timestamp": "1"}, status]),
            );
            envelope(vec![json!({"changes": [messages_change(value)]})])
        };
        let path = "entry[0].changes[0].value.statuses[1]";
        assert_eq!(
            field_of(&with_status(json!({"status": "sent", "timestamp": "1"}))),
            format!("{path}.id")
        );
        assert_eq!(
            field_of(&with_status(json!({"id": "x", "timestamp": "1"}))),
            format!("{path}.status")
        );
        assert_eq!(
            field_of(&with_status(json!({"id": "x", "status": "read"}))),
            format!("{path}.timestamp")
        );
        assert_eq!(
            field_of(&with_status(
                json!({"id": "x", "status": "read", "timestamp": "1", "recipient_id": 5})
            )),
            format!("{path}.recipient_id")
        );
        assert_eq!(
            field_of(&with_status(
                json!({"id": "x", "status": "failed", "timestamp": "1", "errors": [{"title": "t"}]})
            )),
            format!("{path}.errors[0].code")
        );
        assert_eq!(
            field_of(&with_status(
                json!({"id": "x", "status": "failed", "timestamp": "1", "errors": ["boom"]})
            )),
            format!("{path}.errors[0]")
        );
    }

    #[test]
    fn signature_known_vectors() {
        // HMAC-SHA256 test vector published on Wikipedia's HMAC page.
        let wiki = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
        let fox = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(sign(b"key", fox), wiki);
        assert_eq!(verify_signature(b"key", Some(wiki), fox), Ok(()));
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let expected = "sha256=ee9f05f989bc0aa2693d85691a477f8b8403933cde7959a1c5c6be7ea85e8d3d";
        assert_eq!(sign(SECRET, body), expected);
        assert_eq!(
            verify_signature(
                SECRET,
                Some(&expected.to_uppercase().replace("SHA256=", "sha256=")),
                body
            ),
            Ok(())
        );
    }

    #[test]
    fn signature_failures() {
        let body = full_payload().to_string();
        let body = body.as_bytes();
        let good = sign(SECRET, body);
        assert_eq!(verify_signature(SECRET, Some(&good), body), Ok(()));
        assert_eq!(
            verify_signature(SECRET, None, body),
            Err(SignatureError::Missing)
        );
        let hex_part = &good["sha256=".len()..];
        for malformed in [
            String::new(),
            hex_part.to_owned(),
            format!("sha1={hex_part}"),
            format!("SHA256={hex_part}"),
            format!("sha256= {hex_part}"),
            format!("sha256={}", &hex_part[..62]),
            format!("sha256={hex_part}00"),
            format!("sha256={}zz", &hex_part[..62]),
        ] {
            assert_eq!(
                verify_signature(SECRET, Some(&malformed), body),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            verify_signature(b"other-secret", Some(&good), body),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert_eq!(
            verify_signature(SECRET, Some(&good), &tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn signature_covers_raw_bytes_not_reserialised_json() {
        // Meta escapes non-ASCII; serde_json writes it raw, so the round trip changes the bytes.
        let raw = br#"{"text":"caf\u00e9"}"#;
        let header = sign(SECRET, raw);
        let reserialised = serde_json::from_slice::<Value>(raw)
            .expect("json")
            .to_string();
        assert_eq!(verify_signature(SECRET, Some(&header), raw), Ok(()));
        assert_eq!(
            verify_signature(SECRET, Some(&header), reserialised.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn challenge_handshake() {
        let ok = verify_challenge(
            "tok3n",
            Some("subscribe"),
            Some("tok3n"),
            Some("1158201444"),
        );
        assert_eq!(ok.as_deref(), Some("1158201444"));
        assert_eq!(
            verify_challenge("tok3n", Some("subscribe"), Some("tok3N"), Some("1")),
            None
        );
        assert_eq!(
            verify_challenge("tok3n", Some("subscribe"), Some("tok3n "), Some("1")),
            None
        );
        assert_eq!(
            verify_challenge("tok3n", Some("unsubscribe"), Some("tok3n"), Some("1")),
            None
        );
        assert_eq!(
            verify_challenge("tok3n", None, Some("tok3n"), Some("1")),
            None
        );
        assert_eq!(
            verify_challenge("tok3n", Some("subscribe"), None, Some("1")),
            None
        );
        assert_eq!(
            verify_challenge("tok3n", Some("subscribe"), Some("tok3n"), None),
            None
        );
        assert_eq!(
            verify_challenge("", Some("subscribe"), Some(""), Some("1")),
            None
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
                "messages",
                "text",
                "image",
                "interactive",
                "reaction",
                "sent",
                "read",
                "played",
                "failed",
                "1732528800",
                "16505551234",
                "CO.1047",
                "",
            ])
            .prop_map(Value::from),
        ]
    }

    /// JSON built from the field names the parser looks at, so near-valid shapes come up often.
    fn arb_json() -> impl Strategy<Value = Value> {
        let keys = prop::sample::select(vec![
            "object",
            "entry",
            "changes",
            "field",
            "value",
            "metadata",
            "phone_number_id",
            "contacts",
            "messages",
            "statuses",
            "wa_id",
            "user_id",
            "profile",
            "name",
            "username",
            "from",
            "from_user_id",
            "id",
            "timestamp",
            "type",
            "text",
            "body",
            "image",
            "caption",
            "interactive",
            "button_reply",
            "list_reply",
            "title",
            "context",
            "status",
            "recipient_id",
            "recipient_user_id",
            "errors",
            "code",
            "message",
        ]);
        leaf().prop_recursive(6, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
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
        fn arbitrary_json_never_panics(value in arb_json(), message in arb_json(), status in arb_json()) {
            let _ = parse_json(&value);
            let change = messages_change(value_with(json!([value.clone()]), json!([message]), json!([status])));
            let _ = parse_json(&envelope(vec![json!({"changes": [change]})]));
        }

        #[test]
        fn signature_functions_never_panic(
            secret in prop::collection::vec(any::<u8>(), 0..80),
            header in prop::option::of(".{0,80}"),
            body in prop::collection::vec(any::<u8>(), 0..128),
        ) {
            let _ = verify_signature(&secret, header.as_deref(), &body);
            let signed = sign(&secret, &body);
            prop_assert_eq!(verify_signature(&secret, Some(&signed), &body), Ok(()));
        }

        #[test]
        fn challenge_never_panics(
            expected in ".{0,16}", mode in prop::option::of(".{0,10}"),
            token in prop::option::of(".{0,16}"), challenge in prop::option::of(".{0,16}"),
        ) {
            let _ = verify_challenge(&expected, mode.as_deref(), token.as_deref(), challenge.as_deref());
        }
    }

    /// One message of each typed kind, parsed into the typed content (reference 2.3).
    fn typed(fields: Value) -> InboundMessage {
        let mut message =
            json!({"from": "16505551234", "id": "wamid.T", "timestamp": "1732528800"});
        for (key, value) in fields.as_object().expect("object") {
            message[key] = value.clone();
        }
        let value = value_with(json!([phone_contact()]), json!([message]), json!([]));
        let body = envelope(vec![
            json!({"id": "1", "changes": [messages_change(value)]}),
        ]);
        message_of(&parse_json(&body).expect("valid"))
    }

    fn message_of(events: &[WebhookEvent]) -> InboundMessage {
        message(&events[0]).clone()
    }

    #[test]
    fn media_location_contacts_and_replies_are_typed() {
        let image = typed(json!({"type": "image", "image": {"id": "1479537139650973",
            "mime_type": "image/jpeg", "sha256": "HgK9", "caption": "look"}}));
        assert_eq!(
            image.content.clone().unwrap_or_default().media,
            vec![MediaRef {
                kind: "image".into(),
                source: MediaSource::MetaId("1479537139650973".into()),
                mime_type: Some("image/jpeg".into()),
                sha256: Some("HgK9".into()),
                caption: Some("look".into()),
                filename: None,
            }]
        );
        let document = typed(json!({"type": "document", "document": {"id": "d1",
            "mime_type": "application/pdf", "filename": "invoice.pdf"}}));
        assert_eq!(
            document.content.clone().unwrap_or_default().media[0]
                .filename
                .as_deref(),
            Some("invoice.pdf")
        );
        let voice = typed(
            json!({"type": "audio", "audio": {"id": "a1", "mime_type": "audio/ogg; codecs=opus", "voice": true}}),
        );
        assert_eq!(
            voice.content.clone().unwrap_or_default().media[0].kind,
            "voice"
        );
        for kind in ["video", "sticker", "audio"] {
            let parsed = typed(json!({"type": kind, kind: {"id": "x", "mime_type": "m"}}));
            assert_eq!(
                parsed.content.clone().unwrap_or_default().media[0].kind,
                kind
            );
        }
        // A media message without an id is kept, without a reference to fetch.
        assert!(
            typed(json!({"type": "image", "image": {}}))
                .content
                .is_none()
        );

        let location = typed(json!({"type": "location", "location": {"latitude": 38.9,
            "longitude": -77.0, "name": "Philz", "address": "1 Main St", "url": "https://p.example"}}));
        assert_eq!(
            location.content.clone().unwrap_or_default().location,
            Some(Location {
                latitude: 38.9,
                longitude: -77.0,
                name: Some("Philz".into()),
                address: Some("1 Main St".into()),
                url: Some("https://p.example".into()),
            })
        );
        let contacts = typed(
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ana Horvat",
            "first_name": "Ana"}, "phones": [{"phone": "+1 555 0100", "type": "CELL", "wa_id": "15550100"}]}]}),
        );
        assert_eq!(
            contacts.content.clone().unwrap_or_default().contacts[0]
                .name
                .as_deref(),
            Some("Ana Horvat")
        );
        assert_eq!(
            contacts.content.clone().unwrap_or_default().contacts[0].phones,
            vec!["+1 555 0100"]
        );
        let button =
            typed(json!({"type": "button", "button": {"payload": "STOP", "text": "Stop"}}));
        assert_eq!(
            button.content.clone().unwrap_or_default().reply,
            Some(Reply {
                kind: "button".into(),
                id: None,
                title: Some("Stop".into()),
                description: None,
                payload: Some("STOP".into()),
            })
        );
        let list = typed(
            json!({"type": "interactive", "interactive": {"type": "list_reply",
            "list_reply": {"id": "r2", "title": "Large", "description": "L"}}}),
        );
        let reply = list
            .content
            .clone()
            .unwrap_or_default()
            .reply
            .expect("a list reply");
        assert_eq!(
            (
                reply.kind.as_str(),
                reply.id.as_deref(),
                reply.description.as_deref()
            ),
            ("list_reply", Some("r2"), Some("L"))
        );
        let tap = typed(
            json!({"type": "interactive", "interactive": {"type": "button_reply",
            "button_reply": {"id": "b1", "title": "Yes"}}}),
        );
        assert_eq!(
            tap.content
                .clone()
                .unwrap_or_default()
                .reply
                .expect("a reply")
                .kind,
            "button_reply"
        );
        assert!(
            typed(json!({"type": "text", "text": {"body": "hi"}}))
                .content
                .is_none()
        );
    }
}
