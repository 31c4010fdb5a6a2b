//! Meta's WhatsApp Cloud API send endpoint, `POST /{version}/{phone-number-id}/messages`
//! (reference 2.2, 2.4, 2.6, 2.7).
//!
//! Text, template (with header and button components), media (image, document, audio, video,
//! sticker) and interactive (reply buttons, list) messages. Meta has no idempotency key, so nothing is de-duplicated.
//! Statuses `sent`, `delivered` and `read` are posted as three webhooks, each signed with the app
//! secret over the exact bytes sent, with non-ASCII escaped as `\uXXXX` as Meta does (so an
//! engine that re-serialises before verifying fails here as it would in production).

mod content;

use std::io;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::reports::{self, Payload, Report, Step};
use super::state::{
    DEFAULT_DISPLAY_PHONE_NUMBER, DEFAULT_WABA_ID, Fault, MetaAccount, SandboxState,
};
use super::{Outcome, Received};
use crate::engine::providers::meta::sign;

const PROVIDER: &str = "meta";
const TEXT_MAX: usize = 4096;
const CALLBACK_DATA_MAX_BYTES: usize = 512;
const WINDOW_CLOSED_DETAILS: &str = "Message failed to send because more than 24 hours have passed since the customer last replied to this number.";

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route("/{version}/{phone_number_id}/messages", post(send))
}

async fn send(
    State(state): State<SandboxState>,
    Path((version, phone_number_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (parsed, recorded) = super::json_or_text(&body);
    let target = Target {
        version: &version,
        phone_number_id: &phone_number_id,
    };
    let outcome = handle(&state, &target, &headers, parsed.as_ref()).unwrap_or_else(|e| e);
    let received = Received {
        provider: PROVIDER,
        uri: &uri,
        headers: &headers,
        body: recorded,
    };
    super::finish(&state, received, outcome)
}

struct Target<'a> {
    version: &'a str,
    phone_number_id: &'a str,
}

/// Path, auth, validation, the 24 h window, failure injection, then acceptance.
fn handle(
    state: &SandboxState,
    target: &Target<'_>,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Result<Outcome, Outcome> {
    if !is_version(target.version) {
        return Err(unknown_path(target));
    }
    let account = authenticate(state, target.phone_number_id, headers).ok_or_else(invalid_token)?;
    let body = body.ok_or_else(|| invalid_parameter("The request body must be JSON."))?;
    let message = validate(body)?;
    if let Some(name) = content::media_ids(body)
        .into_iter()
        .find_map(|(name, id)| state.media_forgotten(&id).then_some(name))
    {
        return Err(unknown_media_id(&name));
    }
    if message.kind != Kind::Template
        && account
            .closed_window
            .iter()
            .any(|n| digits(n) == message.wa_id)
    {
        return Err(window_closed());
    }
    if message.kind == Kind::Template
        && account
            .marketing_limited_at_send
            .iter()
            .any(|n| digits(n) == message.wa_id)
    {
        return Err(marketing_limited());
    }
    if let Some(fault) = state.next_fault() {
        return Err(fault_error(fault));
    }
    Ok(accept(state, &account, &message))
}

/// Graph API versions look like `v21.0`.
fn is_version(version: &str) -> bool {
    let Some((major, minor)) = version.strip_prefix('v').and_then(|v| v.split_once('.')) else {
        return false;
    };
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    numeric(major) && numeric(minor)
}

/// The bearer token must be the one of the account that owns the phone number id.
pub(crate) fn authenticate(
    state: &SandboxState,
    phone_number_id: &str,
    headers: &HeaderMap,
) -> Option<MetaAccount> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    state.accounts().meta.into_iter().find(|account| {
        account.phone_number_id == phone_number_id && account.access_token == token.trim()
    })
}

// ---- validation ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Template,
    Media(&'static str),
    Interactive,
}

/// A send that passed validation.
struct Message {
    to: String,
    wa_id: String,
    kind: Kind,
    callback_data: Option<String>,
}

fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .filter(|value| !value.is_null())
}

/// A required non-empty string; `name` is Meta's parameter spelling (`text['body']`).
fn required<'a>(body: &'a Value, path: &[&str], name: &str) -> Result<&'a str, Outcome> {
    match str_at(body, path) {
        None => Err(invalid_parameter(&format!(
            "The parameter {name} is required."
        ))),
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text),
        Some(Value::String(_)) => Err(invalid_parameter(&format!(
            "Param {name} must not be empty."
        ))),
        Some(_) => Err(invalid_parameter(&format!(
            "Param {name} must be a string."
        ))),
    }
}

fn validate(body: &Value) -> Result<Message, Outcome> {
    if !body.is_object() {
        return Err(invalid_parameter("The request body must be a JSON object."));
    }
    if required(body, &["messaging_product"], "messaging_product")? != "whatsapp" {
        return Err(invalid_parameter(
            "Param messaging_product must be 'whatsapp'.",
        ));
    }
    let to = required(body, &["to"], "to")?;
    let wa_id = check_phone(to)?;
    // Meta sends text when `type` is omitted.
    let kind = match str_at(body, &["type"]).map(Value::as_str) {
        None | Some(Some("text")) => Kind::Text,
        Some(Some("template")) => Kind::Template,
        Some(Some("interactive")) => Kind::Interactive,
        Some(Some(media)) => match content::MEDIA_KINDS.iter().find(|k| **k == media) {
            Some(media) => Kind::Media(media),
            None => return Err(unknown_type()),
        },
        Some(_) => return Err(unknown_type()),
    };
    match kind {
        Kind::Text => check_text(body)?,
        Kind::Template => check_template(body)?,
        Kind::Media(media) => content::media(body, media)?,
        Kind::Interactive => content::interactive(body)?,
    }
    Ok(Message {
        to: to.to_owned(),
        wa_id,
        kind,
        callback_data: check_callback_data(body)?,
    })
}

fn unknown_type() -> Outcome {
    invalid_parameter(
        "Param type must be one of {text, template, image, document, audio, video, sticker, interactive} (the sandbox sends no other type).",
    )
}

/// Meta takes the number with or without `+`, spaces, dashes or brackets; `wa_id` is the digits.
fn check_phone(to: &str) -> Result<String, Outcome> {
    let allowed = |c: char| c.is_ascii_digit() || " +-()".contains(c);
    let wa_id = digits(to);
    if to.chars().all(allowed) && (7..=15).contains(&wa_id.len()) {
        Ok(wa_id)
    } else {
        Err(invalid_parameter("Param to must be a valid phone number."))
    }
}

fn check_text(body: &Value) -> Result<(), Outcome> {
    let text = required(body, &["text", "body"], "text['body']")?;
    if text.chars().count() > TEXT_MAX {
        return Err(invalid_parameter(&format!(
            "Param text['body'] must be at most {TEXT_MAX} characters long."
        )));
    }
    match str_at(body, &["text", "preview_url"]) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(invalid_parameter(
            "Param text['preview_url'] must be a boolean.",
        )),
    }
}

fn check_template(body: &Value) -> Result<(), Outcome> {
    required(body, &["template", "name"], "template['name']")?;
    required(
        body,
        &["template", "language", "code"],
        "template['language']['code']",
    )?;
    match str_at(body, &["template", "components"]) {
        None => Ok(()),
        Some(Value::Array(components)) => content::components(components),
        Some(_) => Err(invalid_parameter(
            "Param template['components'] must be an array.",
        )),
    }
}

fn check_callback_data(body: &Value) -> Result<Option<String>, Outcome> {
    match str_at(body, &["biz_opaque_callback_data"]) {
        None => Ok(None),
        Some(Value::String(data)) if data.len() <= CALLBACK_DATA_MAX_BYTES => {
            Ok(Some(data.clone()))
        }
        Some(Value::String(_)) => Err(invalid_parameter(&format!(
            "Param biz_opaque_callback_data must be at most {CALLBACK_DATA_MAX_BYTES} bytes."
        ))),
        Some(_) => Err(invalid_parameter(
            "Param biz_opaque_callback_data must be a string.",
        )),
    }
}

// ---- acceptance and statuses ----

/// A message id shaped like Meta's: base64 of a small record holding the recipient and a random
/// hex id (so ids contain `+`, `/` or `=` now and then, as real ones do).
fn wamid(wa_id: &str) -> String {
    let mut random = [0u8; 9];
    rand::rng().fill(&mut random);
    let mut record = vec![0x1c, 0x18, u8::try_from(wa_id.len()).unwrap_or(0)];
    record.extend_from_slice(wa_id.as_bytes());
    record.extend_from_slice(&[0x15, 0x02, 0x00, 0x11, 0x18, 0x12]);
    record.extend_from_slice(hex::encode_upper(random).as_bytes());
    record.push(0x00);
    format!("wamid.{}", BASE64.encode(record))
}

fn accept(state: &SandboxState, account: &MetaAccount, message: &Message) -> Outcome {
    let id = wamid(&message.wa_id);
    let body = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": message.to, "wa_id": message.wa_id }],
        "messages": [{ "id": id }],
    });
    if let Some(url) = &account.webhook_url {
        let sent = Sent {
            url: url.clone(),
            app_secret: account.app_secret.clone(),
            waba_id: account
                .waba_id
                .clone()
                .unwrap_or_else(|| DEFAULT_WABA_ID.to_owned()),
            display_phone_number: account
                .display_phone_number
                .clone()
                .unwrap_or_else(|| DEFAULT_DISPLAY_PHONE_NUMBER.to_owned()),
            phone_number_id: account.phone_number_id.clone(),
            message_id: id.clone(),
            recipient_id: message.wa_id.clone(),
            callback_data: message.callback_data.clone(),
            failure: failure(account, message),
        };
        reports::schedule(state, status_steps(&sent));
    }
    Outcome::accepted(StatusCode::OK, body, vec![id])
}

/// What the status webhooks of one message need.
#[derive(Clone)]
struct Sent {
    url: String,
    app_secret: String,
    waba_id: String,
    display_phone_number: String,
    phone_number_id: String,
    message_id: String,
    recipient_id: String,
    callback_data: Option<String>,
    /// The error of the `failed` status posted instead of sent/delivered/read.
    failure: Option<(u32, &'static str)>,
}

/// Marketing limits apply to templates (business-initiated messages), not to replies.
fn failure(account: &MetaAccount, message: &Message) -> Option<(u32, &'static str)> {
    if message.kind != Kind::Template {
        return None;
    }
    let listed = |list: &[String]| list.iter().any(|n| digits(n) == message.wa_id);
    if listed(&account.stopped_marketing) {
        return Some((
            131_050,
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
        ));
    }
    if listed(&account.marketing_limited) {
        return Some((
            131_049,
            "This message was not delivered to maintain healthy ecosystem engagement.",
        ));
    }
    None
}

fn status_steps(sent: &Sent) -> Vec<Step> {
    let statuses: &[&'static str] = if sent.failure.is_some() {
        &["failed"]
    } else {
        &["sent", "delivered", "read"]
    };
    statuses
        .iter()
        .copied()
        .map(|status| {
            let sent = sent.clone();
            Box::new(move |now| status_report(&sent, status, now)) as Step
        })
        .collect()
}

fn status_report(sent: &Sent, status: &'static str, now: DateTime<Utc>) -> Report {
    let bytes = meta_json(&status_body(sent, status, now));
    let signature = sign(sent.app_secret.as_bytes(), &bytes);
    Report {
        provider: PROVIDER,
        kind: status,
        message_id: sent.message_id.clone(),
        url: sent.url.clone(),
        headers: vec![("X-Hub-Signature-256".to_owned(), signature)],
        payload: Payload::Json(bytes),
    }
}

fn status_body(sent: &Sent, status: &str, now: DateTime<Utc>) -> Value {
    let mut entry = json!({
        "id": sent.message_id,
        "status": status,
        "timestamp": now.timestamp().to_string(),
        "recipient_id": sent.recipient_id,
    });
    if let (Some(object), Some((code, title))) = (entry.as_object_mut(), sent.failure) {
        let error = json!({"code": code, "title": title, "message": title,
                           "error_data": {"details": title}});
        object.insert("errors".to_owned(), json!([error]));
    }
    if let (Some(object), Some(data)) = (entry.as_object_mut(), &sent.callback_data) {
        object.insert(
            "biz_opaque_callback_data".to_owned(),
            Value::String(data.clone()),
        );
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": sent.waba_id,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": sent.display_phone_number,
                        "phone_number_id": sent.phone_number_id,
                    },
                    "statuses": [entry],
                },
            }],
        }],
    })
}

/// Compact JSON with every non-ASCII character escaped as `\uXXXX`, as Meta writes webhooks.
fn meta_json(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, AsciiFormatter);
    // Writing a `Value` into memory cannot fail; an empty body would fail verification visibly.
    if value.serialize(&mut serializer).is_err() {
        bytes.clear();
    }
    bytes
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

// ---- errors ----

/// `fbtrace_id` is Meta's request id: opaque, about 23 characters.
fn fbtrace_id() -> String {
    let mut random = [0u8; 16];
    rand::rng().fill(&mut random);
    format!("A{}", URL_SAFE_NO_PAD.encode(random))
}

fn error(status: StatusCode, code: u32, message: &str, details: Option<&str>) -> Outcome {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": fbtrace_id(),
    });
    if let (Some(object), Some(details)) = (error.as_object_mut(), details) {
        let data = json!({ "messaging_product": "whatsapp", "details": details });
        object.insert("error_data".to_owned(), data);
    }
    Outcome::new(status, json!({ "error": error }))
}

fn invalid_token() -> Outcome {
    error(
        StatusCode::UNAUTHORIZED,
        190,
        "Invalid OAuth access token - Cannot parse access token",
        None,
    )
}

fn unknown_path(target: &Target<'_>) -> Outcome {
    let message = format!(
        "Unknown path components: /{}/{}/messages",
        target.version, target.phone_number_id
    );
    error(StatusCode::BAD_REQUEST, 2500, &message, None)
}

/// Code 100; `details` names the parameter.
fn invalid_parameter(details: &str) -> Outcome {
    error(
        StatusCode::BAD_REQUEST,
        100,
        "(#100) Invalid parameter",
        Some(details),
    )
}

/// Meta's answer to a media id it does not know (deleted, expired, or another business's).
fn unknown_media_id(name: &str) -> Outcome {
    let details =
        format!("Param {name} is not a valid whatsapp business account media attachment ID");
    error(
        StatusCode::BAD_REQUEST,
        100,
        &format!("(#100) {details}"),
        Some(&details),
    )
}

fn window_closed() -> Outcome {
    error(
        StatusCode::BAD_REQUEST,
        131_047,
        "(#131047) Re-engagement message",
        Some(WINDOW_CLOSED_DETAILS),
    )
}

/// Meta's per-user marketing limit, answered to the send.
fn marketing_limited() -> Outcome {
    error(
        StatusCode::BAD_REQUEST,
        131_049,
        "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
        Some(
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        ),
    )
}

fn fault_error(fault: Fault) -> Outcome {
    match fault {
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            131_000,
            "(#131000) Something went wrong",
            Some("Something went wrong. Please retry later."),
        ),
        // Meta reports throughput limits as code 130429 on an HTTP 400.
        Fault::Throttled => error(
            StatusCode::BAD_REQUEST,
            130_429,
            "(#130429) Rate limit hit",
            Some("Cloud API message throughput has been reached."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_is_escaped_like_meta() {
        let bytes = meta_json(&json!({ "t": "café \u{1F600} \"q\"\n" }));
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"t":"caf\u00e9 \ud83d\ude00 \"q\"\n"}"#
        );
        let parsed: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(parsed["t"], "café \u{1F600} \"q\"\n");
    }

    #[test]
    fn versions() {
        assert!(is_version("v21.0"));
        assert!(is_version("v9.10"));
        for bad in ["21.0", "v21", "v.0", "vx.0", "v21.0.1", ""] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn wamids_decode_to_the_recipient() {
        let id = wamid("16505551234");
        let decoded = BASE64
            .decode(id.trim_start_matches("wamid."))
            .expect("base64");
        assert_eq!(&decoded[3..14], b"16505551234");
        assert_ne!(wamid("16505551234"), id);
    }
}
