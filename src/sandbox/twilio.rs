//! Twilio's Programmable Messaging send endpoint for WhatsApp,
//! `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (reference 3.1–3.3).
//!
//! Form-encoded, HTTP Basic `AccountSid:AuthToken`. Twilio has no idempotency key, so nothing is
//! de-duplicated. Status callbacks `sent`, `delivered`, `read` are form posts signed with
//! `X-Twilio-Signature` over the callback URL and the posted pairs.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use serde_json::{Value, json};

use super::reports::{self, Payload, Report, Step};
use super::state::{Fault, SandboxState, TwilioAccount};
use super::{Outcome, Received};
use crate::engine::providers::twilio::expected_signature;

const PROVIDER: &str = "twilio";
const API_VERSION: &str = "2010-04-01";
const WHATSAPP: &str = "whatsapp:";
const BODY_MAX: usize = 1600;

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route(
        "/2010-04-01/Accounts/{account_sid}/Messages.json",
        post(send),
    )
}

async fn send(
    State(state): State<SandboxState>,
    Path(account_sid): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs: Option<Vec<(String, String)>> = serde_urlencoded::from_bytes(&body).ok();
    let recorded = match &pairs {
        Some(pairs) => reports::form_object(pairs),
        None => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    // An unreadable body carries no parameters: Twilio then complains about the first missing one.
    let form = Form(pairs.unwrap_or_default());
    let outcome = handle(&state, &account_sid, &headers, &form).unwrap_or_else(|e| e);
    let received = Received {
        provider: PROVIDER,
        uri: &uri,
        headers: &headers,
        body: recorded,
    };
    super::finish(&state, received, outcome)
}

/// Auth, validation, the 24 h window, failure injection, then acceptance.
fn handle(
    state: &SandboxState,
    account_sid: &str,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Outcome, Outcome> {
    let account = authenticate(state, account_sid, headers).ok_or_else(unauthorized)?;
    let message = validate(form, &account)?;
    let to_number = message.to.trim_start_matches(WHATSAPP);
    let closed = account
        .closed_window
        .iter()
        .any(|n| n.trim_start_matches(WHATSAPP) == to_number);
    // Outside the window only templates (ContentSid) go through; free-form body or media fail.
    if closed && message.content_sid.is_none() {
        return Err(window_closed());
    }
    if account.unsubscribed.iter().any(|n| {
        n.trim_start_matches(WHATSAPP).trim_start_matches('+') == to_number.trim_start_matches('+')
    }) {
        return Err(invalid(21610, "Attempt to send to unsubscribed recipient"));
    }
    if let Some(fault) = state.next_fault() {
        return Err(fault_error(fault));
    }
    Ok(accept(state, &account, message))
}

/// Basic credentials must name the path's account and carry its auth token.
fn authenticate(
    state: &SandboxState,
    account_sid: &str,
    headers: &HeaderMap,
) -> Option<TwilioAccount> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, token) = decoded.split_once(':')?;
    if user != account_sid {
        return None;
    }
    state
        .accounts()
        .twilio
        .into_iter()
        .find(|account| account.account_sid == user && account.auth_token == token)
}

// ---- validation ----

/// The form pairs, looked up by name.
struct Form(Vec<(String, String)>);

impl Form {
    /// The first non-empty value: Twilio treats an empty parameter as absent.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|(key, value)| key == name && !value.is_empty())
            .count()
    }
}

/// A send that passed validation.
struct Message {
    to: String,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    body: Option<String>,
    content_sid: Option<String>,
    num_media: usize,
    status_callback: Option<String>,
}

/// Checks in the order Twilio reports them: To, the sender, the content, the callback URL.
fn validate(form: &Form, account: &TwilioAccount) -> Result<Message, Outcome> {
    let to = form
        .get("To")
        .ok_or_else(|| invalid(21604, "A 'To' phone number is required."))?;
    if !is_whatsapp_e164(to) {
        return Err(invalid(21211, &format!("Invalid 'To' Phone Number: {to}")));
    }
    let (from, messaging_service_sid) = check_sender(form, account)?;
    let body = form.get("Body");
    let content_sid = form.get("ContentSid");
    let num_media = form.count("MediaUrl");
    check_content(body, content_sid, num_media)?;
    check_media_and_variables(form)?;
    let status_callback = form.get("StatusCallback");
    if status_callback
        .is_some_and(|url| !url.starts_with("http://") && !url.starts_with("https://"))
    {
        return Err(invalid(21609, "Invalid StatusCallback url"));
    }
    Ok(Message {
        to: to.to_owned(),
        from,
        messaging_service_sid,
        body: body.map(str::to_owned),
        content_sid: content_sid.map(str::to_owned),
        num_media,
        status_callback: status_callback.map(str::to_owned),
    })
}

/// `whatsapp:+` then an E.164 number: 7 to 15 digits, not starting with 0.
fn is_whatsapp_e164(address: &str) -> bool {
    let Some(digits) = address.strip_prefix("whatsapp:+") else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|byte| byte.is_ascii_digit())
}

/// `From` must be the account's WhatsApp sender; a `MessagingServiceSid` must be the account's.
fn check_sender(
    form: &Form,
    account: &TwilioAccount,
) -> Result<(Option<String>, Option<String>), Outcome> {
    let from = form.get("From");
    let service = form.get("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return Err(invalid(21603, "A 'From' phone number is required."));
    }
    if let Some(from) = from
        && from != account.sender
    {
        return Err(invalid(
            63007,
            "Twilio could not find a Channel with the specified From address",
        ));
    }
    if let Some(service) = service
        && account.messaging_service_sid.as_deref() != Some(service)
    {
        return Err(invalid(21701, "The Messaging Service does not exist"));
    }
    Ok((from.map(str::to_owned), service.map(str::to_owned)))
}

fn check_content(
    body: Option<&str>,
    content_sid: Option<&str>,
    num_media: usize,
) -> Result<(), Outcome> {
    if body.is_none() && content_sid.is_none() && num_media == 0 {
        return Err(invalid(21602, "Message body is required."));
    }
    if body.is_some_and(|body| body.chars().count() > BODY_MAX) {
        return Err(invalid(
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    if content_sid.is_some_and(|sid| !is_sid(sid, "HX")) {
        return Err(invalid(21655, "The ContentSid is Invalid."));
    }
    Ok(())
}

/// Every `MediaUrl` an absolute http(s) URL; `ContentVariables` a JSON object of strings.
fn check_media_and_variables(form: &Form) -> Result<(), Outcome> {
    let bad_url = form
        .0
        .iter()
        .filter(|(key, _)| key == "MediaUrl")
        .any(|(_, url)| {
            url::Url::parse(url)
                .map(|u| !matches!(u.scheme(), "http" | "https") || u.host().is_none())
                .unwrap_or(true)
        });
    if bad_url {
        return Err(invalid(21620, "Invalid media URL(s)"));
    }
    if let Some(variables) = form.get("ContentVariables") {
        let object = serde_json::from_str::<serde_json::Map<String, Value>>(variables);
        if !object.is_ok_and(|o| o.values().all(Value::is_string)) {
            return Err(invalid(21656, "The ContentVariables Parameter is invalid."));
        }
    }
    Ok(())
}

/// Twilio SIDs: a two-letter prefix and 32 hex digits.
fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

// ---- acceptance and callbacks ----

fn accept(state: &SandboxState, account: &TwilioAccount, message: Message) -> Outcome {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let now = Utc::now().to_rfc2822();
    let base = format!(
        "/{API_VERSION}/Accounts/{}/Messages/{sid}",
        account.account_sid
    );
    // Through a Messaging Service Twilio answers `accepted` and picks the sender later.
    let status = if message.from.is_none() {
        "accepted"
    } else {
        "queued"
    };
    let body = json!({
        "account_sid": account.account_sid,
        "api_version": API_VERSION,
        "body": message.body.clone().unwrap_or_default(),
        "date_created": now,
        "date_sent": null,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": message.from,
        "messaging_service_sid": message.messaging_service_sid,
        "num_media": message.num_media.to_string(),
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": { "media": format!("{base}/Media.json") },
        "to": message.to,
        "uri": format!("{base}.json"),
    });
    let url = message
        .status_callback
        .clone()
        .or_else(|| account.webhook_url.clone());
    if let Some(url) = url {
        reports::schedule(state, callback_steps(account, &message, &sid, url));
    }
    Outcome::accepted(StatusCode::CREATED, body, vec![sid])
}

fn callback_steps(account: &TwilioAccount, message: &Message, sid: &str, url: String) -> Vec<Step> {
    let mut params = vec![
        ("AccountSid".to_owned(), account.account_sid.clone()),
        ("ApiVersion".to_owned(), API_VERSION.to_owned()),
        ("From".to_owned(), account.sender.clone()),
        ("MessageSid".to_owned(), sid.to_owned()),
        ("SmsSid".to_owned(), sid.to_owned()),
        ("To".to_owned(), message.to.clone()),
    ];
    if let Some(service) = &message.messaging_service_sid {
        params.push(("MessagingServiceSid".to_owned(), service.clone()));
    }
    let token = account.auth_token.clone();
    let sid = sid.to_owned();
    ["sent", "delivered", "read"]
        .into_iter()
        .map(|status| {
            let (mut params, token, url, sid) =
                (params.clone(), token.clone(), url.clone(), sid.clone());
            Box::new(move |_now| {
                params.push(("MessageStatus".to_owned(), status.to_owned()));
                params.push(("SmsStatus".to_owned(), status.to_owned()));
                let signature = expected_signature(&token, &url, &params);
                Report {
                    provider: PROVIDER,
                    kind: status,
                    message_id: sid,
                    url,
                    headers: vec![("X-Twilio-Signature".to_owned(), signature)],
                    payload: Payload::Form(params),
                }
            }) as Step
        })
        .collect()
}

// ---- errors ----

fn error(status: StatusCode, code: u32, message: &str) -> Outcome {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    Outcome::new(status, body)
}

fn invalid(code: u32, message: &str) -> Outcome {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn unauthorized() -> Outcome {
    let mut outcome = error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    outcome.headers.push((
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Twilio API\""),
    ));
    outcome
}

fn window_closed() -> Outcome {
    invalid(
        63016,
        "Failed to send freeform message because you are outside the allowed window. \
         If you are using WhatsApp, please use a Message Template.",
    )
}

fn fault_error(fault: Fault) -> Outcome {
    match fault {
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        ),
        Fault::Throttled => error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests"),
    }
}
