//! InfoBip's WhatsApp text, template, media and interactive (buttons, list) send endpoints
//! (reference 1.1–1.5).
//!
//! Auth is `Authorization: App <api-key>` only. Errors use InfoBip's new shape
//! (`errorCode`, `description`, `action`, `violations`, `resources`). A client-chosen `messageId`
//! seen before is answered as the first time and not delivered again: InfoBip de-duplicates
//! client message ids, and the engine relies on that to never send twice.

mod content;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::reports::{self, Payload, Report, Step};
use super::state::{Fault, InfobipAccount, Remembered, SandboxState};
use super::{Outcome, Received};

const PROVIDER: &str = "infobip";
const TEXT_MAX: usize = 4096;
const CALLBACK_DATA_MAX: usize = 4000;
const DEFAULT_SECRET_HEADER: &str = "X-Webhook-Secret";

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/whatsapp/1/message/text", post(text))
        .route("/whatsapp/1/message/template", post(template))
        .route("/whatsapp/1/message/interactive/buttons", post(buttons))
        .route("/whatsapp/1/message/interactive/list", post(list))
        .route("/whatsapp/1/message/{kind}", post(media))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Text,
    Template,
    Media(&'static str),
    Buttons,
    List,
}

async fn media(
    State(state): State<SandboxState>,
    Path(kind): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match content::MEDIA_KINDS.iter().find(|k| **k == kind) {
        Some(kind) => handle(&state, &uri, &headers, &body, Endpoint::Media(kind)),
        None => super::unknown_route(axum::http::Method::POST, uri).await,
    }
}

async fn buttons(
    State(state): State<SandboxState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &uri, &headers, &body, Endpoint::Buttons)
}

async fn list(
    State(state): State<SandboxState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &uri, &headers, &body, Endpoint::List)
}

async fn text(
    State(state): State<SandboxState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &uri, &headers, &body, Endpoint::Text)
}

async fn template(
    State(state): State<SandboxState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &uri, &headers, &body, Endpoint::Template)
}

fn handle(
    state: &SandboxState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: Endpoint,
) -> Response {
    let (parsed, recorded) = super::json_or_text(body);
    let outcome = send(state, headers, parsed.as_ref(), endpoint).unwrap_or_else(|error| error);
    let received = Received {
        provider: PROVIDER,
        uri,
        headers,
        body: recorded,
    };
    super::finish(state, received, outcome)
}

/// Auth, then validation, then failure injection, then de-duplication and acceptance.
fn send(
    state: &SandboxState,
    headers: &HeaderMap,
    body: Option<&Value>,
    endpoint: Endpoint,
) -> Result<Outcome, Outcome> {
    let account = authenticate(state, headers).ok_or_else(unauthorized)?;
    let body = body.ok_or_else(|| bad_request(vec![violation("body", "must be valid JSON")]))?;
    let violations = match endpoint {
        Endpoint::Text => check_text(body, &account),
        Endpoint::Template => check_template(body, &account),
        Endpoint::Media(kind) => content::check_media(body, &account, kind),
        Endpoint::Buttons => content::check_buttons(body, &account),
        Endpoint::List => content::check_list(body, &account),
    };
    if !violations.is_empty() {
        return Err(bad_request(violations));
    }
    if let Some(fault) = state.next_fault() {
        return Err(fault_error(fault));
    }
    Ok(match endpoint {
        Endpoint::Template => accept_template(state, &account, body),
        _ => accept_text(state, &account, body),
    })
}

/// Only the `App` scheme: the sandbox stands in for API-key accounts.
fn authenticate(state: &SandboxState, headers: &HeaderMap) -> Option<InfobipAccount> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("App") {
        return None;
    }
    let key = key.trim();
    state
        .accounts()
        .infobip
        .into_iter()
        .find(|account| account.api_key == key)
}

// ---- validation ----

fn violation(property: &str, text: &str) -> Value {
    json!({ "property": property, "violation": text })
}

/// Collects bean-validation style violations (`must not be null`, ...) with dotted property paths.
struct Checker<'a> {
    root: &'a Value,
    prefix: String,
    violations: Vec<Value>,
}

impl<'a> Checker<'a> {
    fn new(root: &'a Value, prefix: String) -> Self {
        Self {
            root,
            prefix,
            violations: Vec::new(),
        }
    }

    fn property(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    fn fail(&mut self, path: &str, text: &str) {
        let property = self.property(path);
        self.violations.push(violation(&property, text));
    }

    fn lookup(&self, path: &str) -> Option<&'a Value> {
        path.split('.')
            .try_fold(self.root, |value, key| value.get(key))
            .filter(|value| !value.is_null())
    }

    /// A required non-blank string of at most `max` characters.
    fn required(&mut self, path: &str, max: usize) -> Option<&'a str> {
        match self.lookup(path) {
            None => {
                self.fail(path, "must not be null");
                None
            }
            Some(value) => self.string(path, value, max),
        }
    }

    fn optional(&mut self, path: &str, max: usize) -> Option<&'a str> {
        let value = self.lookup(path)?;
        self.string(path, value, max)
    }

    fn string(&mut self, path: &str, value: &'a Value, max: usize) -> Option<&'a str> {
        let Some(text) = value.as_str() else {
            self.fail(path, "must be a string");
            return None;
        };
        if text.trim().is_empty() {
            self.fail(path, "must not be blank");
            return None;
        }
        if text.chars().count() > max {
            self.fail(path, &format!("size must be between 1 and {max}"));
            return None;
        }
        Some(text)
    }

    /// The fields every message has, text or template.
    fn envelope(&mut self, account: &InfobipAccount) {
        if let Some(from) = self.required("from", 64)
            && from != account.sender
        {
            self.fail("from", "is not a sender registered for this account");
        }
        if let Some(to) = self.required("to", 64)
            && !is_international(to)
        {
            self.fail("to", "must be a number in international format");
        }
        self.optional("messageId", 200);
        self.optional("callbackData", CALLBACK_DATA_MAX);
        if let Some(url) = self.optional("notifyUrl", 2048)
            && !is_http_url(url)
        {
            self.fail("notifyUrl", "must be an http(s) URL");
        }
    }

    fn placeholders(&mut self) {
        let path = "content.templateData.body.placeholders";
        match self.lookup(path) {
            None => self.fail(path, "must not be null"),
            Some(Value::Array(values)) => {
                for (index, value) in values.iter().enumerate() {
                    let blank = value.as_str().is_none_or(|text| text.trim().is_empty());
                    if blank {
                        self.fail(&format!("{path}[{index}]"), "must not be blank");
                    }
                }
            }
            Some(_) => self.fail(path, "must be an array"),
        }
    }
}

/// Digits, optionally after a `+` (InfoBip's examples have none), at most 15 of them (E.164).
fn is_international(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (7..=15).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_digit())
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn check_text(body: &Value, account: &InfobipAccount) -> Vec<Value> {
    let mut checker = Checker::new(body, String::new());
    checker.envelope(account);
    checker.required("content.text", TEXT_MAX);
    checker.violations
}

fn check_template(body: &Value, account: &InfobipAccount) -> Vec<Value> {
    let mut top = Checker::new(body, String::new());
    top.optional("bulkId", 100);
    let mut violations = top.violations;
    match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {
            for (index, message) in messages.iter().enumerate() {
                violations.extend(check_template_message(message, index, account));
            }
        }
        Some(Value::Array(_)) => violations.push(violation("messages", "must not be empty")),
        None | Some(Value::Null) => violations.push(violation("messages", "must not be null")),
        Some(_) => violations.push(violation("messages", "must be an array")),
    }
    violations
}

fn check_template_message(message: &Value, index: usize, account: &InfobipAccount) -> Vec<Value> {
    let mut checker = Checker::new(message, format!("messages[{index}]."));
    checker.envelope(account);
    checker.required("content.templateName", 512);
    checker.required("content.language", 16);
    checker.placeholders();
    content::check_template_extras(&mut checker);
    checker.violations
}

// ---- acceptance ----

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// `status` of a message InfoBip has accepted but not yet handed to WhatsApp.
fn pending_status() -> Value {
    json!({
        "groupId": 1,
        "groupName": "PENDING",
        "id": 7,
        "name": "PENDING_ENROUTE",
        "description": "Message sent to next instance",
    })
}

fn response_item(to: &str, message_id: &str) -> Value {
    json!({
        "to": to,
        "messageCount": 1,
        "messageId": message_id,
        "status": pending_status(),
    })
}

/// One message accepted (or recognised as a duplicate).
struct Accepted {
    item: Value,
    message_id: String,
    duplicate: bool,
    /// The bulk the message was first accepted in.
    bulk_id: Option<String>,
}

fn accept_message(
    state: &SandboxState,
    account: &InfobipAccount,
    message: &Value,
    bulk_id: Option<&str>,
) -> Accepted {
    let to = str_field(message, "to").unwrap_or_default();
    let given = str_field(message, "messageId");
    let message_id = given.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let item = response_item(to, &message_id);
    let remembered = Remembered {
        item: item.clone(),
        bulk_id: bulk_id.map(str::to_owned),
    };
    // Generated ids are unique; only client-chosen ones can repeat.
    let previous = given.and_then(|id| state.remember_infobip(&account.sender, id, remembered));
    if let Some(previous) = previous {
        return Accepted {
            item: previous.item,
            message_id,
            duplicate: true,
            bulk_id: previous.bulk_id,
        };
    }
    let sent = Sent::new(account, message, &message_id, bulk_id);
    reports::schedule(state, report_steps(account, sent));
    Accepted {
        item,
        message_id,
        duplicate: false,
        bulk_id: bulk_id.map(str::to_owned),
    }
}

fn accept_text(state: &SandboxState, account: &InfobipAccount, body: &Value) -> Outcome {
    let accepted = accept_message(state, account, body, None);
    let mut outcome = Outcome::accepted(StatusCode::OK, accepted.item, vec![accepted.message_id]);
    outcome.duplicate = accepted.duplicate;
    outcome
}

fn accept_template(state: &SandboxState, account: &InfobipAccount, body: &Value) -> Outcome {
    let given_bulk = str_field(body, "bulkId");
    let new_bulk = given_bulk.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let accepted: Vec<Accepted> = messages
        .iter()
        .map(|message| accept_message(state, account, message, Some(&new_bulk)))
        .collect();
    let all_duplicates = !accepted.is_empty() && accepted.iter().all(|a| a.duplicate);
    // A repeated bulk answers with the bulk id it was first given, as the first answer did.
    let bulk_id = match (given_bulk, all_duplicates) {
        (None, true) => accepted
            .first()
            .and_then(|a| a.bulk_id.clone())
            .unwrap_or(new_bulk),
        _ => new_bulk,
    };
    let ids = accepted.iter().map(|a| a.message_id.clone()).collect();
    let items: Vec<Value> = accepted.iter().map(|a| a.item.clone()).collect();
    let response = json!({ "messages": items, "bulkId": bulk_id });
    let mut outcome = Outcome::accepted(StatusCode::OK, response, ids);
    outcome.duplicate = accepted.iter().any(|a| a.duplicate);
    outcome
}

// ---- reports ----

/// What the delivery and seen reports of one message need.
#[derive(Clone)]
struct Sent {
    message_id: String,
    bulk_id: Option<String>,
    to: String,
    sender: String,
    sent_at: DateTime<Utc>,
    url: Option<String>,
    /// Echoed as given: `callbackData`, `entityId`, `applicationId`.
    echoed: Map<String, Value>,
}

impl Sent {
    fn new(
        account: &InfobipAccount,
        message: &Value,
        message_id: &str,
        bulk_id: Option<&str>,
    ) -> Self {
        let echoed = ["callbackData", "entityId", "applicationId"]
            .into_iter()
            .filter_map(|key| Some((key.to_owned(), message.get(key)?.clone())))
            .filter(|(_, value)| !value.is_null())
            .collect();
        Self {
            message_id: message_id.to_owned(),
            bulk_id: bulk_id.map(str::to_owned),
            to: str_field(message, "to").unwrap_or_default().to_owned(),
            sender: account.sender.clone(),
            sent_at: Utc::now(),
            url: str_field(message, "notifyUrl")
                .map(str::to_owned)
                .or_else(|| account.webhook_url.clone()),
            echoed,
        }
    }
}

/// InfoBip's timestamp style: milliseconds and a colon-less offset (`2026-11-25T10:00:00.000+0000`).
fn infobip_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// The delivery report, then the seen report, to `notifyUrl` or the account's webhook URL.
fn report_steps(account: &InfobipAccount, sent: Sent) -> Vec<Step> {
    let Some(url) = sent.url.clone() else {
        return Vec::new();
    };
    let headers: Vec<(String, String)> = account
        .webhook_secret
        .iter()
        .map(|secret| {
            let name = account.webhook_header.as_deref();
            (
                name.unwrap_or(DEFAULT_SECRET_HEADER).to_owned(),
                secret.clone(),
            )
        })
        .collect();
    let seen = sent.clone();
    let (seen_url, seen_headers) = (url.clone(), headers.clone());
    vec![
        Box::new(move |now| report("delivery", url, headers, delivery_report(&sent, now), &sent)),
        Box::new(move |now| {
            report(
                "seen",
                seen_url,
                seen_headers,
                seen_report(&seen, now),
                &seen,
            )
        }),
    ]
}

fn report(
    kind: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Value,
    sent: &Sent,
) -> Report {
    Report {
        provider: PROVIDER,
        kind,
        message_id: sent.message_id.clone(),
        url,
        headers,
        payload: Payload::Json(body.to_string().into_bytes()),
    }
}

fn delivery_report(sent: &Sent, now: DateTime<Utc>) -> Value {
    let mut result = json!({
        "messageId": sent.message_id,
        "to": sent.to,
        "sentAt": infobip_time(sent.sent_at),
        "doneAt": infobip_time(now),
        "messageCount": 1,
        "price": { "pricePerMessage": 0, "currency": "EUR" },
        "status": {
            "groupId": 3,
            "groupName": "DELIVERED",
            "id": 5,
            "name": "DELIVERED_TO_HANDSET",
            "description": "Message delivered to handset",
        },
        "error": {
            "groupId": 0,
            "groupName": "OK",
            "id": 0,
            "name": "NO_ERROR",
            "description": "No Error",
            "permanent": false,
        },
    });
    if let Some(object) = result.as_object_mut() {
        if let Some(bulk_id) = &sent.bulk_id {
            object.insert("bulkId".to_owned(), Value::String(bulk_id.clone()));
        }
        object.extend(sent.echoed.clone());
    }
    json!({ "results": [result] })
}

/// `from` is the recipient who saw the message, `to` our sender (reference 1.5 notes the docs
/// disagree; the engine keys on `messageId` only).
fn seen_report(sent: &Sent, now: DateTime<Utc>) -> Value {
    let mut result = json!({
        "messageId": sent.message_id,
        "from": sent.to,
        "to": sent.sender,
        "sentAt": infobip_time(sent.sent_at),
        "seenAt": infobip_time(now),
    });
    if let Some(object) = result.as_object_mut() {
        for key in ["entityId", "applicationId"] {
            if let Some(value) = sent.echoed.get(key) {
                object.insert(key.to_owned(), value.clone());
            }
        }
    }
    json!({ "results": [result] })
}

// ---- errors ----

fn error(
    status: StatusCode,
    code: &str,
    description: &str,
    action: &str,
    violations: Vec<Value>,
) -> Outcome {
    let body = json!({
        "errorCode": code,
        "description": description,
        "action": action,
        "violations": violations,
        "resources": [],
    });
    Outcome::new(status, body)
}

fn unauthorized() -> Outcome {
    error(
        StatusCode::UNAUTHORIZED,
        "E401",
        "Invalid login details",
        "Check the API key in the Authorization header (App <api-key>).",
        Vec::new(),
    )
}

fn bad_request(violations: Vec<Value>) -> Outcome {
    error(
        StatusCode::BAD_REQUEST,
        "E400",
        "Request cannot be processed.",
        "Check the syntax, violations and adjust the request.",
        violations,
    )
}

fn fault_error(fault: Fault) -> Outcome {
    match fault {
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "E500",
            "Something went wrong.",
            "Retry the request later.",
            Vec::new(),
        ),
        Fault::Throttled => error(
            StatusCode::TOO_MANY_REQUESTS,
            "E429",
            "Too many requests.",
            "Slow down and retry the request later.",
            Vec::new(),
        ),
    }
}
