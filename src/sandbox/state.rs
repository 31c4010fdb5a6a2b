//! The sandbox's memory: the accounts each fake provider knows, the knobs that inject failures,
//! every send request received and every report posted back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, HeaderName, PROXY_AUTHORIZATION};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Shown instead of credentials in the request log.
const REDACTED: &str = "***";

/// The accounts of the three fake providers, in the `--accounts` / `POST /_sandbox/accounts` shape.
/// No `Debug`: every account holds a secret.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    #[serde(default)]
    pub infobip: Vec<InfobipAccount>,
    #[serde(default)]
    pub meta: Vec<MetaAccount>,
    #[serde(default)]
    pub twilio: Vec<TwilioAccount>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfobipAccount {
    pub api_key: String,
    /// The registered WhatsApp sender (international format, no `+`); `from` must equal it.
    pub sender: String,
    /// Where reports go when a message has no `notifyUrl`.
    pub webhook_url: Option<String>,
    /// Sent back on every report in the `webhook_header` header (InfoBip's static header secret).
    pub webhook_secret: Option<String>,
    /// Defaults to `X-Webhook-Secret`, the header the engine reads by default.
    pub webhook_header: Option<String>,
    /// What `GET /whatsapp/2/senders/{sender}/templates` lists.
    #[serde(default)]
    pub templates: Vec<super::templates::SandboxTemplate>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaAccount {
    pub access_token: String,
    pub phone_number_id: String,
    /// Signs the status webhooks (`X-Hub-Signature-256`).
    pub app_secret: String,
    pub webhook_url: Option<String>,
    /// Recipients whose 24 h customer service window is closed: free-form text to them fails.
    #[serde(default)]
    pub closed_window: Vec<String>,
    /// Recipients who stopped the business's marketing messages: a template send to them is
    /// accepted, then its status webhook is `failed` with error 131050.
    #[serde(default)]
    pub stopped_marketing: Vec<String>,
    /// Recipients at Meta's per-user marketing limit: a template send to them is accepted, then
    /// its status webhook is `failed` with error 131049.
    #[serde(default)]
    pub marketing_limited: Vec<String>,
    /// Recipients at Meta's per-user marketing limit whose template send is refused in the
    /// send's answer (HTTP 400, error 131049) rather than accepted and reported `failed`: Meta
    /// answers either way.
    #[serde(default)]
    pub marketing_limited_at_send: Vec<String>,
    /// `metadata.display_phone_number` in webhooks; defaults to [`DEFAULT_DISPLAY_PHONE_NUMBER`].
    pub display_phone_number: Option<String>,
    /// `entry[].id` in webhooks and the account of `GET /{version}/{waba-id}/message_templates`;
    /// defaults to [`DEFAULT_WABA_ID`].
    pub waba_id: Option<String>,
    /// What `GET /{version}/{waba-id}/message_templates` lists.
    #[serde(default)]
    pub templates: Vec<super::templates::SandboxTemplate>,
}

/// Meta's documentation example number, used when an account names none.
pub const DEFAULT_DISPLAY_PHONE_NUMBER: &str = "15550783881";
/// Meta's documentation example WhatsApp Business Account id.
pub const DEFAULT_WABA_ID: &str = "102290129340398";

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioAccount {
    pub account_sid: String,
    pub auth_token: String,
    /// `whatsapp:+E164`; `From` must equal it.
    pub sender: String,
    /// Status callbacks go here when a send has no `StatusCallback` (as a Messaging Service's
    /// status callback URL would).
    pub webhook_url: Option<String>,
    /// Recipients (`whatsapp:+E164` or `+E164`) outside the 24 h window: a free-form send to
    /// them (`Body` or `MediaUrl` without `ContentSid`) fails with 63016.
    #[serde(default)]
    pub closed_window: Vec<String>,
    /// Recipients who replied STOP to this sender: any send to them fails with 21610.
    #[serde(default)]
    pub unsubscribed: Vec<String>,
    /// The Messaging Service (`MG…`) this account may send through instead of `From`.
    pub messaging_service_sid: Option<String>,
}

/// An accounts document that cannot be used. Messages name fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AccountsError(pub String);

impl Accounts {
    /// Parses and checks the accounts JSON.
    pub fn from_json(text: &str) -> Result<Self, AccountsError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let accounts: Self = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| AccountsError(describe_json_error(&error)))?;
        accounts.validate()?;
        Ok(accounts)
    }

    fn validate(&self) -> Result<(), AccountsError> {
        for (index, account) in self.infobip.iter().enumerate() {
            let path = format!("infobip[{index}]");
            non_empty(&path, "api_key", &account.api_key)?;
            non_empty(&path, "sender", &account.sender)?;
            if let Some(header) = &account.webhook_header {
                HeaderName::try_from(header.as_str()).map_err(|_| {
                    AccountsError(format!(
                        "accounts: {path}.webhook_header is not a valid header name"
                    ))
                })?;
            }
        }
        for (index, account) in self.meta.iter().enumerate() {
            let path = format!("meta[{index}]");
            non_empty(&path, "access_token", &account.access_token)?;
            non_empty(&path, "phone_number_id", &account.phone_number_id)?;
            non_empty(&path, "app_secret", &account.app_secret)?;
        }
        for (index, account) in self.twilio.iter().enumerate() {
            let path = format!("twilio[{index}]");
            non_empty(&path, "account_sid", &account.account_sid)?;
            non_empty(&path, "auth_token", &account.auth_token)?;
            non_empty(&path, "sender", &account.sender)?;
        }
        Ok(())
    }

    /// How many accounts of each provider there are (what `POST /_sandbox/accounts` answers).
    pub fn counts(&self) -> Value {
        serde_json::json!({
            "infobip": self.infobip.len(),
            "meta": self.meta.len(),
            "twilio": self.twilio.len(),
        })
    }
}

fn non_empty(path: &str, field: &str, value: &str) -> Result<(), AccountsError> {
    if value.trim().is_empty() {
        return Err(AccountsError(format!(
            "accounts: {path}.{field} must not be empty"
        )));
    }
    Ok(())
}

/// serde's type errors quote the offending value (which may be a secret), so only messages about
/// field names are passed on as they are.
fn describe_json_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = error.inner();
    let message = inner.to_string();
    let about_fields = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|prefix| message.starts_with(prefix));
    let what = if about_fields {
        message
    } else if inner.is_syntax() || inner.is_eof() {
        "is not valid JSON".to_owned()
    } else {
        "has the wrong type or value".to_owned()
    };
    format!("accounts JSON at `{}`: {what}", error.path())
}

/// The failure-injection and timing knobs (`POST /_sandbox/config`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Knobs {
    /// Fraction of accepted-looking sends answered with the provider's 5xx error.
    pub failure_rate: f64,
    /// Fraction answered with the provider's throttling error (drawn after `failure_rate`).
    pub throttle_rate: f64,
    /// Wait before each report posted back.
    pub report_delay_ms: u64,
    /// The next N sends fail: deterministic, for tests. Counted before `throttle_next`.
    pub fail_next: u32,
    /// The next N sends are throttled.
    pub throttle_next: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            failure_rate: 0.0,
            throttle_rate: 0.0,
            report_delay_ms: 200,
            fail_next: 0,
            throttle_next: 0,
        }
    }
}

/// A partial change of the knobs; absent fields keep their value.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobsUpdate {
    pub failure_rate: Option<f64>,
    pub throttle_rate: Option<f64>,
    pub report_delay_ms: Option<u64>,
    pub fail_next: Option<u32>,
    pub throttle_next: Option<u32>,
}

impl KnobsUpdate {
    fn apply(self, knobs: Knobs) -> Result<Knobs, String> {
        let failure_rate = checked_rate("failure_rate", self.failure_rate)?;
        let throttle_rate = checked_rate("throttle_rate", self.throttle_rate)?;
        Ok(Knobs {
            failure_rate: failure_rate.unwrap_or(knobs.failure_rate),
            throttle_rate: throttle_rate.unwrap_or(knobs.throttle_rate),
            report_delay_ms: self.report_delay_ms.unwrap_or(knobs.report_delay_ms),
            fail_next: self.fail_next.unwrap_or(knobs.fail_next),
            throttle_next: self.throttle_next.unwrap_or(knobs.throttle_next),
        })
    }
}

/// A rate is a probability: 0.0 ..= 1.0.
pub fn check_rate(value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0.0 and 1.0"))
    }
}

fn checked_rate(name: &str, value: Option<f64>) -> Result<Option<f64>, String> {
    value
        .map(check_rate)
        .transpose()
        .map_err(|error| format!("{name}: {error}"))
}

/// What the failure injection decided for one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The provider's 5xx error.
    ServerError,
    /// The provider's throttling error.
    Throttled,
}

/// Everything the sandbox starts with.
#[derive(Clone, Default)]
pub struct SandboxConfig {
    pub accounts: Accounts,
    pub knobs: Knobs,
}

/// One send request as received, for `GET /_sandbox/messages`.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    pub provider: &'static str,
    /// Path and query as requested.
    pub path: String,
    /// Lower-case names; credentials replaced by `***`.
    pub headers: BTreeMap<String, String>,
    /// The JSON body, or the form as an object (repeated names as arrays), or the raw text when
    /// it was neither.
    pub body: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// The id given to the (first) message when the send was accepted.
    pub message_id: Option<String>,
    /// Every message id of the request (InfoBip template sends may carry several messages).
    pub message_ids: Vec<String>,
    /// InfoBip only: a client `messageId` seen before; answered as before and not delivered.
    pub duplicate: bool,
    /// RFC 3339, UTC.
    pub received_at: String,
}

/// One report posted back to the engine, for `GET /_sandbox/reports`.
#[derive(Clone, Debug, Serialize)]
pub struct ReportRecord {
    pub provider: &'static str,
    /// `delivery`/`seen` (InfoBip), `sent`/`delivered`/`read` (Meta, Twilio).
    pub kind: &'static str,
    pub message_id: String,
    pub url: String,
    /// The HTTP status the engine answered; `None` when no answer came (see `error`).
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The JSON posted, or the form as an object.
    pub body: Value,
    /// RFC 3339, UTC.
    pub sent_at: String,
}

/// What InfoBip answered for a client-chosen `messageId`, to answer it again for a duplicate.
#[derive(Clone, Debug)]
pub(crate) struct Remembered {
    pub item: Value,
    pub bulk_id: Option<String>,
}

/// The shared state of one sandbox: cheap to clone.
#[derive(Clone)]
pub struct SandboxState {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: RwLock<Accounts>,
    knobs: Mutex<Knobs>,
    requests: Mutex<Vec<RecordedRequest>>,
    reports: Mutex<Vec<ReportRecord>>,
    /// `(sender, messageId)` → the first answer: InfoBip de-duplicates client message ids.
    infobip_ids: Mutex<HashMap<(String, String), Remembered>>,
    /// Inbound media files by id (`PUT /_sandbox/media/{id}`).
    media: Mutex<HashMap<String, SandboxMedia>>,
    /// Media URLs of sends downloaded like the provider would.
    fetches: Mutex<Vec<super::fetches::Fetched>>,
    /// Meta media ids deleted or expired ([`SandboxState::forget_media`]): a send naming one is
    /// refused as Meta refuses an unknown media id.
    forgotten_media: Mutex<std::collections::HashSet<String>>,
    http: reqwest::Client,
}

/// A media file a fake provider serves for inbound messages.
#[derive(Clone)]
pub struct SandboxMedia {
    /// `meta`, `infobip` or `twilio`.
    pub provider: String,
    /// Whose credentials may download it: Meta phone number id, InfoBip sender, Twilio SID.
    pub account: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// Answer downloads with this status instead of the file.
    pub fail: Option<u16>,
    /// Answer downloads only after this many milliseconds (a slow provider).
    pub delay_ms: Option<u64>,
    /// Download answers given (the file or the injected failure).
    pub downloads: u32,
}

/// A panic elsewhere must not wedge the sandbox: the data under these locks is always whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SandboxState {
    pub(crate) fn new(config: SandboxConfig, http: reqwest::Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                accounts: RwLock::new(config.accounts),
                knobs: Mutex::new(config.knobs),
                requests: Mutex::new(Vec::new()),
                reports: Mutex::new(Vec::new()),
                infobip_ids: Mutex::new(HashMap::new()),
                media: Mutex::new(HashMap::new()),
                fetches: Mutex::new(Vec::new()),
                forgotten_media: Mutex::new(std::collections::HashSet::new()),
                http,
            }),
        }
    }

    /// A copy of the current accounts (few and small; a copy keeps locks short).
    pub(crate) fn accounts(&self) -> Accounts {
        self.inner
            .accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn record_fetch(&self, fetched: super::fetches::Fetched) {
        lock(&self.inner.fetches).push(fetched);
    }

    pub fn fetches(&self) -> Vec<super::fetches::Fetched> {
        lock(&self.inner.fetches).clone()
    }

    pub fn clear_fetches(&self) {
        lock(&self.inner.fetches).clear();
    }

    pub fn put_media(&self, id: String, media: SandboxMedia) {
        lock(&self.inner.media).insert(id, media);
    }

    pub fn media(&self, id: &str) -> Option<SandboxMedia> {
        lock(&self.inner.media).get(id).cloned()
    }

    /// Meta deletes (or expires) media `id` before its 30 days: sends naming it are refused.
    pub fn forget_media(&self, id: &str) {
        lock(&self.inner.media).remove(id);
        lock(&self.inner.forgotten_media).insert(id.to_owned());
    }

    pub(crate) fn media_forgotten(&self, id: &str) -> bool {
        lock(&self.inner.forgotten_media).contains(id)
    }

    pub(crate) fn count_media_download(&self, id: &str) {
        if let Some(media) = lock(&self.inner.media).get_mut(id) {
            media.downloads += 1;
        }
    }

    /// Download answers given for media `id` (0 when unknown).
    pub fn media_downloads(&self, id: &str) -> u32 {
        self.media(id).map_or(0, |m| m.downloads)
    }

    pub fn set_accounts(&self, accounts: Accounts) {
        *self
            .inner
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner) = accounts;
    }

    pub fn knobs(&self) -> Knobs {
        *lock(&self.inner.knobs)
    }

    pub fn update_knobs(&self, update: KnobsUpdate) -> Result<Knobs, String> {
        let mut knobs = lock(&self.inner.knobs);
        *knobs = update.apply(*knobs)?;
        Ok(*knobs)
    }

    pub(crate) fn report_delay(&self) -> Duration {
        Duration::from_millis(lock(&self.inner.knobs).report_delay_ms)
    }

    /// Decides whether this send fails: the deterministic counters first, then one random draw
    /// split between failure and throttling.
    pub(crate) fn next_fault(&self) -> Option<Fault> {
        let mut knobs = lock(&self.inner.knobs);
        if knobs.fail_next > 0 {
            knobs.fail_next -= 1;
            return Some(Fault::ServerError);
        }
        if knobs.throttle_next > 0 {
            knobs.throttle_next -= 1;
            return Some(Fault::Throttled);
        }
        if knobs.failure_rate <= 0.0 && knobs.throttle_rate <= 0.0 {
            return None;
        }
        let draw: f64 = rand::rng().random();
        if draw < knobs.failure_rate {
            Some(Fault::ServerError)
        } else if draw < knobs.failure_rate + knobs.throttle_rate {
            Some(Fault::Throttled)
        } else {
            None
        }
    }

    /// Remembers the first answer for `(sender, message_id)`; for an id seen before, returns
    /// that first answer instead. Check and insert happen under one lock, so two concurrent
    /// sends with the same id cannot both be accepted.
    pub(crate) fn remember_infobip(
        &self,
        sender: &str,
        message_id: &str,
        answer: Remembered,
    ) -> Option<Remembered> {
        let mut ids = lock(&self.inner.infobip_ids);
        let key = (sender.to_owned(), message_id.to_owned());
        if let Some(previous) = ids.get(&key) {
            return Some(previous.clone());
        }
        ids.insert(key, answer);
        None
    }

    pub(crate) fn record_request(&self, request: RecordedRequest) {
        lock(&self.inner.requests).push(request);
    }

    pub(crate) fn record_report(&self, report: ReportRecord) {
        lock(&self.inner.reports).push(report);
    }

    /// Every send request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.requests).clone()
    }

    /// Every report posted back so far, in the order the posts finished.
    pub fn reports(&self) -> Vec<ReportRecord> {
        lock(&self.inner.reports).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.requests).clear();
    }

    pub fn clear_reports(&self) {
        lock(&self.inner.reports).clear();
    }

    /// Forgets the InfoBip message ids seen, so a fresh test run may reuse them.
    pub fn forget_message_ids(&self) {
        lock(&self.inner.infobip_ids).clear();
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

/// Headers as recorded: lower-case names, credentials redacted, repeated names joined by `, `.
pub(crate) fn recorded_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut recorded: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = if name == AUTHORIZATION || name == PROXY_AUTHORIZATION {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        recorded
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_update_checks_rates() {
        let knobs = Knobs::default();
        let bad = KnobsUpdate {
            failure_rate: Some(1.5),
            ..KnobsUpdate::default()
        };
        assert!(bad.apply(knobs).is_err());
        let nan = KnobsUpdate {
            throttle_rate: Some(f64::NAN),
            ..KnobsUpdate::default()
        };
        assert!(nan.apply(knobs).is_err());
        let good = KnobsUpdate {
            fail_next: Some(2),
            ..KnobsUpdate::default()
        };
        assert_eq!(good.apply(knobs).map(|k| k.fail_next), Ok(2));
    }

    #[test]
    fn account_errors_never_quote_values() {
        let error = Accounts::from_json(r#"{"infobip":[{"api_key":12345678,"sender":"1"}]}"#)
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(error.contains("infobip[0].api_key"), "{error}");
        assert!(!error.contains("12345678"), "{error}");
        let missing = Accounts::from_json(r#"{"meta":[{"access_token":"t"}]}"#)
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(missing.contains("missing field"), "{missing}");
    }

    #[test]
    fn authorization_is_redacted() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "App secret".parse().expect("header"));
        headers.append("x-a", "1".parse().expect("header"));
        headers.append("x-a", "2".parse().expect("header"));
        let recorded = recorded_headers(&headers);
        assert_eq!(recorded["authorization"], "***");
        assert_eq!(recorded["x-a"], "1, 2");
    }
}
