//! Inbound webhooks of the four formats. Each request is authenticated before anything is
//! parsed or stored, every event in it is read, events addressed to another sender are refused,
//! and the 2xx goes out only after the jobs are committed.
//!
//! Suspended tenants: their webhooks are still accepted and queued (a provider that gets errors
//! retries for a while and then drops messages; Twilio barely retries at all), but their workers
//! get no jobs until the tenant is resumed; then the backlog is delivered in order.

use crate::engine::body::{RawBody, parse_json};
use crate::engine::error::ApiError;
use crate::engine::ingest::{NewJob, NewReport, Submission};
use crate::engine::metrics::{IngestLabels, ProviderLabels};
use crate::engine::policy::consent::{Change, Source};
use crate::engine::providers::{self, InboundMessage, Provider, SignatureError, WebhookEvent};
use crate::engine::secret::Secret;
use crate::engine::state::AppState;
use crate::engine::tenants::{Channel, Tenant, is_valid_slug};
use crate::engine::text::without_nul;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// What a webhook call stored.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookAck {
    /// Always `accepted`: everything listed below is committed.
    pub status: &'static str,
    /// New jobs created.
    pub queued: usize,
    /// Messages that were already stored (provider redeliveries).
    pub duplicates: usize,
    /// Delivery and seen reports stored.
    pub reports: usize,
    /// Job ids, one per message, in the order of the payload.
    pub job_ids: Vec<uuid::Uuid>,
    /// Shared endpoints: messages and reports addressed to numbers no tenant holds, dropped.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The seed's inbound message.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SeedMessage {
    /// The customer's number or id.
    pub from: String,
    /// The text.
    pub message: String,
    /// The tenant's slug.
    pub tenant_id: String,
    /// When the customer sent it: RFC 3339 (`Z`, `+00:00` or `+0000` offsets) or epoch seconds.
    #[schema(value_type = String)]
    pub timestamp: serde_json::Value,
    /// Optional id of the message; without it the dedup key is derived from the content.
    #[serde(default)]
    pub message_id: Option<String>,
}

#[utoipa::path(post, path = "/webhook/inbound", tag = "webhooks",
    request_body = SeedMessage,
    params(("X-Webhook-Secret" = String, Header, description = "The tenant's webhook secret (or `Authorization: Bearer <secret>`); required before the body is read")),
    responses((status = 200, body = WebhookAck), (status = 400, body = crate::engine::error::ErrorBody),
              (status = 401), (status = 403), (status = 404), (status = 413), (status = 503)))]
pub async fn seed(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookAck>, ApiError> {
    let started = Instant::now();
    // The tenant is named in the body, so the body must be parsed before the secret can be
    // checked; an anonymous request is refused before that.
    let presented = headers
        .get("x-webhook-secret")
        .and_then(|v| v.to_str().ok())
        .or_else(|| crate::engine::auth::bearer_token(&headers))
        .ok_or_else(|| {
            state.metrics.count_rejected("seed", "unauthenticated");
            ApiError::unauthorized("the webhook secret is required (X-Webhook-Secret)")
        })?;
    let message: SeedMessage =
        parse_json(&body).inspect_err(|_| state.metrics.count_rejected("seed", "malformed"))?;
    let tenant = tenant_or_404(&state, &message.tenant_id).await?;
    check_secret(&state, "seed", tenant.webhook_secret.as_ref(), presented)?;
    let inbound = seed_to_inbound(message)?;
    let senders: Vec<&Channel> = tenant.senders.iter().collect();
    let ack = store(
        &state,
        &tenant,
        Provider::Seed,
        vec![WebhookEvent::Message(inbound)],
        &senders,
    )
    .await?;
    observe(&state, "seed", started);
    Ok(Json(ack))
}

fn seed_to_inbound(message: SeedMessage) -> Result<InboundMessage, ApiError> {
    let from = message.from.trim();
    if from.is_empty() || from.len() > 128 {
        return Err(ApiError::invalid_field(
            "from",
            "must be 1 to 128 characters",
        ));
    }
    let timestamp = seed_timestamp(&message.timestamp)?;
    let dedup = match &message.message_id {
        Some(id) if !id.is_empty() => id.clone(),
        // No id: the same sender, instant and text is the same message.
        _ => hex::encode(Sha256::digest(format!(
            "{from}\n{}\n{}",
            timestamp.timestamp_micros(),
            message.message
        ))),
    };
    Ok(InboundMessage {
        provider: Provider::Seed,
        provider_message_id: dedup,
        contact: providers::Contact {
            id: from.to_owned(),
            phone: None,
            user_id: None,
            username: None,
            name: None,
        },
        to: None,
        account_id: None,
        timestamp,
        kind: "text".to_owned(),
        text: Some(message.message.clone()),
        reply_to: None,
        content: None,
        raw: json!({"from": from, "message": message.message, "tenant_id": message.tenant_id, "timestamp": message.timestamp}),
    })
}

fn seed_timestamp(value: &serde_json::Value) -> Result<DateTime<Utc>, ApiError> {
    let parsed = match value {
        serde_json::Value::String(text) => providers::time::parse_timestamp("timestamp", text),
        serde_json::Value::Number(number) => {
            let seconds = number.as_f64().unwrap_or(f64::NAN);
            // Values this large are milliseconds.
            let seconds = if seconds > 1e11 {
                seconds / 1000.0
            } else {
                seconds
            };
            providers::time::parse_epoch_seconds(
                "timestamp",
                &format!("{}", seconds.trunc() as i64),
            )
        }
        _ => {
            return Err(ApiError::invalid_field(
                "timestamp",
                "must be an RFC 3339 string or epoch seconds",
            ));
        }
    };
    parsed.map_err(|e| ApiError::invalid_field(&e.field, e.reason))
}

#[utoipa::path(post, path = "/webhook/infobip/{tenant}", tag = "webhooks",
    params(("tenant" = String, Path, description = "Tenant slug"),
           ("X-Webhook-Secret" = Option<String>, Header, description = "The tenant's webhook secret (header name configurable), or HTTP Basic"),
           ("X-Hub-Signature" = Option<String>, Header, description = "`<algorithm>=<hex HMAC of the raw body>` (header name and algorithm configurable); required once the tenant has an HMAC key")),
    request_body(content = Object, description = "InfoBip `{results: [...]}`: inbound messages, delivery and seen reports"),
    responses((status = 200, body = WebhookAck), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413), (status = 503)))]
pub async fn infobip(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookAck>, ApiError> {
    let started = Instant::now();
    let tenant = tenant_or_404(&state, &slug).await?;
    let senders = authenticated(&state, &tenant, Provider::Infobip, |sender| {
        check_infobip_auth(sender, &headers, &body)
    })?;
    let events = providers::infobip::parse(&body).map_err(|e| malformed(&state, "infobip", e))?;
    let ack = store(&state, &tenant, Provider::Infobip, events, &senders).await?;
    observe(&state, "infobip", started);
    Ok(Json(ack))
}

/// With an HMAC key configured the signature is required, and neither the secret header nor Basic
/// auth can stand in for it; without one, either of those is enough.
fn check_infobip_auth(channel: &Channel, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let secrets = &channel.secrets;
    if let Some(key) = secrets
        .webhook_hmac_secret
        .as_ref()
        .filter(|k| !k.is_empty())
    {
        let header_name = secrets
            .webhook_signature_header
            .as_deref()
            .unwrap_or(providers::infobip::DEFAULT_SIGNATURE_HEADER);
        // A value that is not visible ASCII is a malformed signature, not a missing one.
        let header = headers
            .get(header_name)
            .map(|value| value.to_str().unwrap_or_default());
        let algorithm = secrets.webhook_signature_algorithm.unwrap_or_default();
        return providers::infobip::verify_signature(
            algorithm,
            key.expose().as_bytes(),
            header,
            body,
        )
        .map_err(signature_refusal);
    }
    let header_name = secrets
        .webhook_header
        .as_deref()
        .unwrap_or("x-webhook-secret");
    let by_header = secrets.webhook_secret.as_ref().map(|secret| {
        headers
            .get(header_name)
            .and_then(|v| v.to_str().ok())
            .map(|v| secret.matches(v.as_bytes()))
    });
    let by_basic = match (&secrets.basic_username, &secrets.basic_password) {
        (Some(user), Some(password)) => Some(basic_credentials(headers).map(|(u, p)| {
            // Both compared in full, in constant time, whatever the first result.
            let user_ok = Secret::new(user.clone()).matches(u.as_bytes());
            let password_ok = password.matches(p.as_bytes());
            user_ok & password_ok
        })),
        _ => None,
    };
    match (by_header, by_basic) {
        (None, None) => Err(Refusal::not_configured(
            "this tenant has no InfoBip webhook secret, basic credentials or HMAC key configured",
        )),
        (Some(Some(true)), _) | (_, Some(Some(true))) => Ok(()),
        (Some(None) | None, Some(None) | None) => Err(Refusal {
            reason: "unauthenticated",
            error: ApiError::unauthorized("webhook credentials are required"),
        }),
        _ => Err(Refusal {
            reason: "bad_credentials",
            error: ApiError::forbidden("bad_credentials", "the webhook credentials are not valid"),
        }),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[derive(Deserialize)]
pub struct MetaChallenge {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

#[utoipa::path(get, path = "/webhook/meta/{tenant}", tag = "webhooks",
    params(("tenant" = String, Path), ("hub.mode" = String, Query), ("hub.verify_token" = String, Query), ("hub.challenge" = String, Query)),
    responses((status = 200, description = "the challenge, as plain text"), (status = 403), (status = 404)))]
pub async fn meta_verify(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(query): Query<MetaChallenge>,
) -> Result<String, ApiError> {
    let tenant = tenant_or_404(&state, &slug).await?;
    let tokens: Vec<&str> = senders_of(&tenant, Provider::Meta)?
        .into_iter()
        .filter_map(|sender| sender.secrets.verify_token.as_ref().map(Secret::expose))
        .filter(|token| !token.is_empty())
        .collect();
    if tokens.is_empty() {
        return Err(ApiError::forbidden(
            "webhook_auth_not_configured",
            "this tenant has no Meta verify token configured",
        ));
    }
    tokens
        .into_iter()
        .find_map(|expected| query.answer(expected))
        .ok_or_else(bad_verify_token)
}

impl MetaChallenge {
    /// The challenge to echo when the request carries `expected`.
    pub fn answer(&self, expected: &str) -> Option<String> {
        providers::meta::verify_challenge(
            expected,
            self.mode.as_deref(),
            self.verify_token.as_deref(),
            self.challenge.as_deref(),
        )
    }
}

pub fn bad_verify_token() -> ApiError {
    ApiError::forbidden(
        "bad_verify_token",
        "the verification request does not match",
    )
}

#[utoipa::path(post, path = "/webhook/meta/{tenant}", tag = "webhooks",
    params(("tenant" = String, Path), ("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC of the raw body with the app secret>")),
    request_body(content = Object, description = "Meta `{object, entry: [...]}`"),
    responses((status = 200, body = WebhookAck), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413), (status = 503)))]
pub async fn meta(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookAck>, ApiError> {
    let started = Instant::now();
    let tenant = tenant_or_404(&state, &slug).await?;
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    let senders = authenticated(&state, &tenant, Provider::Meta, |sender| {
        let secret = sender.secrets.app_secret.as_ref().ok_or_else(|| {
            Refusal::not_configured("this tenant has no Meta app secret configured")
        })?;
        providers::meta::verify_signature(secret.expose().as_bytes(), header, &body)
            .map_err(signature_refusal)
    })?;
    let events = providers::meta::parse(&body).map_err(|e| malformed(&state, "meta", e))?;
    let updates =
        providers::meta_templates::parse(&body).map_err(|e| malformed(&state, "meta", e))?;
    template_updates(&state, &tenant, &updates).await?;
    let ack = store(&state, &tenant, Provider::Meta, events, &senders).await?;
    observe(&state, "meta", started);
    Ok(Json(ack))
}

#[utoipa::path(post, path = "/webhook/twilio/{tenant}", tag = "webhooks",
    params(("tenant" = String, Path), ("X-Twilio-Signature" = String, Header, description = "Checked as Twilio's SDKs check it: the public URL with and without its default port, repeated form values de-duplicated")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "At most 256 fields"),
    responses((status = 200, description = "empty TwiML response"), (status = 400), (status = 401), (status = 403), (status = 404),
              (status = 413, description = "too large, or `too_many_fields`"), (status = 503)))]
pub async fn twilio(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let tenant = tenant_or_404(&state, &slug).await?;
    if senders_of(&tenant, Provider::Twilio)?
        .iter()
        .all(|sender| sender.secrets.auth_token.is_none())
    {
        return Err(refuse(
            &state,
            "twilio",
            Refusal::not_configured("this tenant has no Twilio auth token configured"),
        ));
    }
    // The signature covers the decoded form, so everything that can be checked without decoding
    // it comes first: the header, and how many fields the body holds.
    let header = headers
        .get("x-twilio-signature")
        .map(|value| value.to_str().unwrap_or_default());
    providers::twilio::decode_signature(header)
        .map_err(|e| signature_error(&state, "twilio", e))?;
    let fields = providers::twilio::field_count(&body);
    if fields > providers::twilio::MAX_FORM_FIELDS {
        state.metrics.count_rejected("twilio", "too_many_fields");
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_fields",
            format!(
                "the form has {fields} fields; at most {} are accepted",
                providers::twilio::MAX_FORM_FIELDS
            ),
        ));
    }
    let params =
        providers::twilio::parse_form(&body).map_err(|e| malformed(&state, "twilio", e))?;
    let url = public_url(&state, &headers, &uri);
    let senders = authenticated(&state, &tenant, Provider::Twilio, |sender| {
        let token = sender.secrets.auth_token.as_ref().ok_or_else(|| {
            Refusal::not_configured("this tenant has no Twilio auth token configured")
        })?;
        providers::twilio::verify_signature(token.expose(), &url, &params, header)
            .map_err(signature_refusal)
    })?;
    let events = providers::twilio::parse(&params).map_err(|e| malformed(&state, "twilio", e))?;
    store(&state, &tenant, Provider::Twilio, events, &senders).await?;
    observe(&state, "twilio", started);
    let twiml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";
    Ok(([(CONTENT_TYPE, "text/xml")], twiml).into_response())
}

/// The URL the provider called, as it saw it (Twilio signs it).
fn public_url(state: &AppState, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Some(base) = &state.settings.public_url {
        return format!("{base}{path}");
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = header("x-forwarded-proto").unwrap_or("http");
    let host = header("x-forwarded-host")
        .or_else(|| header(HOST.as_str()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{path}")
}

/// Stores the events that belong to the tenant's senders that authenticated the request;
/// refuses the request when any does not. With no senders at all (a tenant without a channel,
/// the seed's format) nothing is checked.
async fn store(
    state: &AppState,
    tenant: &Tenant,
    provider: Provider,
    events: Vec<WebhookEvent>,
    senders: &[&Channel],
) -> Result<WebhookAck, ApiError> {
    let mut arrived_on = Vec::with_capacity(events.len());
    for event in &events {
        let sender = sender_of(senders, event);
        if sender.is_none() && !senders.is_empty() {
            state.metrics.count_rejected(provider.as_str(), "misrouted");
            tracing::warn!(tenant = %tenant.slug, provider = provider.as_str(), "webhook addressed to another sender refused");
            return Err(ApiError::forbidden(
                "wrong_sender",
                format!(
                    "event {} is addressed to a sender that is not this tenant's; nothing was stored",
                    event_id(event)
                ),
            ));
        }
        arrived_on.push(sender);
    }
    let mut submission = Submission::default();
    for (event, sender) in events.into_iter().zip(arrived_on) {
        add_event(&mut submission, tenant, event, sender);
    }
    submit(state, provider, submission).await
}

pub(crate) fn event_id(event: &WebhookEvent) -> &str {
    match event {
        WebhookEvent::Message(m) => m.provider_message_id.as_str(),
        WebhookEvent::Status(s) => s.provider_message_id.as_str(),
    }
}

/// One event into the submission: a message as a job of the tenant (saying which sender it
/// arrived on), a report as the tenant's report.
pub(crate) fn add_event(
    submission: &mut Submission,
    tenant: &Tenant,
    event: WebhookEvent,
    sender: Option<&Channel>,
) {
    match event {
        WebhookEvent::Message(message) => submission.jobs.push(job_for(tenant, message, sender)),
        WebhookEvent::Status(report) => submission.reports.push(NewReport {
            tenant_id: tenant.id,
            report,
        }),
    }
}

/// Commits the submission (one transaction, whatever tenants it holds) and counts it.
pub(crate) async fn submit(
    state: &AppState,
    provider: Provider,
    submission: Submission,
) -> Result<WebhookAck, ApiError> {
    let reports = submission.reports.len();
    let outcomes = state.ingestor.submit(submission).await?;
    let duplicates = outcomes.iter().filter(|o| o.duplicate).count();
    let count = |outcome: &str, n: usize| {
        state
            .metrics
            .ingested
            .get_or_create(&IngestLabels {
                provider: provider.as_str().to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(n as u64);
    };
    count("new", outcomes.len() - duplicates);
    count("duplicate", duplicates);
    count("report", reports);
    Ok(WebhookAck {
        status: "accepted",
        queued: outcomes.len() - duplicates,
        duplicates,
        reports,
        job_ids: outcomes.iter().map(|o| o.job_id).collect(),
        dropped: 0,
    })
}

/// The sender an event arrived on: the one its address names, else a Twilio Messaging Service
/// of the account, else (an event naming no address) the first whose account matches.
fn sender_of<'a>(senders: &[&'a Channel], event: &WebhookEvent) -> Option<&'a Channel> {
    let (to, account) = match event {
        WebhookEvent::Message(m) => (m.to.as_deref(), m.account_id.as_deref()),
        WebhookEvent::Status(s) => (s.to.as_deref(), s.account_id.as_deref()),
    };
    // The account is Twilio's AccountSid (Meta's WABA id is checked on the shared app only,
    // where the app's signature does not say which business sent the change).
    let candidates = || {
        senders.iter().copied().filter(move |channel| {
            match (account, &channel.secrets.account_sid) {
                (Some(account), Some(expected)) if channel.provider == Provider::Twilio => {
                    account == expected
                }
                _ => true,
            }
        })
    };
    let Some(to) = to else {
        return candidates().next();
    };
    candidates()
        .find(|channel| channel.owns_address(to))
        .or_else(|| candidates().find(|channel| channel.sender.starts_with("MG")))
}

/// Why a sender's credentials did not accept a request, and the metric reason to count.
pub(crate) struct Refusal {
    reason: &'static str,
    error: ApiError,
}

impl Refusal {
    fn not_configured(message: &'static str) -> Self {
        Self {
            reason: "unauthenticated",
            error: ApiError::forbidden("webhook_auth_not_configured", message),
        }
    }
}

pub(crate) fn signature_refusal(error: SignatureError) -> Refusal {
    match error {
        SignatureError::Missing => Refusal {
            reason: "unsigned",
            error: ApiError::unauthorized("the request is not signed"),
        },
        SignatureError::Malformed | SignatureError::Mismatch => Refusal {
            reason: "bad_signature",
            error: ApiError::forbidden("bad_signature", "the signature does not match"),
        },
    }
}

/// Counts the refusal and turns it into the answer.
pub(crate) fn refuse(state: &AppState, provider: &str, refusal: Refusal) -> ApiError {
    state.metrics.count_rejected(provider, refusal.reason);
    refusal.error
}

/// The tenant's senders on `provider` whose credentials accept the request (a tenant's numbers
/// may have credentials of their own). When none does, the first sender's refusal, counted once.
fn authenticated<'a>(
    state: &AppState,
    tenant: &'a Tenant,
    provider: Provider,
    check: impl Fn(&Channel) -> Result<(), Refusal>,
) -> Result<Vec<&'a Channel>, ApiError> {
    let mut first_refusal = None;
    let mut accepted = Vec::new();
    for sender in senders_of(tenant, provider)? {
        match check(sender) {
            Ok(()) => accepted.push(sender),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    match first_refusal {
        Some(refusal) if accepted.is_empty() => Err(refuse(state, provider.as_str(), refusal)),
        _ => Ok(accepted),
    }
}

/// Meta's template status and quality updates: into the catalog before the 2xx (Meta retries
/// what is not acknowledged, and applying an update twice changes nothing); campaigns using a
/// template that stopped being APPROVED pause themselves.
pub(crate) async fn template_updates(
    state: &AppState,
    tenant: &Tenant,
    updates: &[providers::meta_templates::TemplateUpdate],
) -> Result<(), ApiError> {
    if updates.is_empty() {
        return Ok(());
    }
    let stopped =
        crate::engine::policy::templates::apply(&state.pool, tenant.id, updates, "webhook").await?;
    if stopped.is_empty() {
        return Ok(());
    }
    let mut tx = state.pool.begin().await?;
    for (name, language, status) in &stopped {
        let paused = crate::engine::campaigns::pause::by_template(
            &mut tx, tenant.id, name, language, status,
        )
        .await?;
        tracing::info!(tenant = %tenant.slug, template = %name, %language, %status, paused, "template no longer approved");
    }
    tx.commit().await?;
    Ok(())
}

/// The consent change a message asks for, when its whole text is a keyword.
fn consent_change(tenant: &Tenant, message: &InboundMessage) -> Option<Change> {
    let (state, keyword) = tenant.keywords.classify(message.text.as_deref()?)?;
    Some(Change {
        tenant_id: tenant.id,
        contact: message.contact.id.clone(),
        state,
        source: Source::Keyword,
        detail: json!({
            "keyword": keyword,
            "provider": message.provider.as_str(),
            "message_id": message.provider_message_id,
        }),
    })
}

/// The job for one inbound message: the seed's fields first, then the provider's details, and
/// `consent` when the message changed the contact's consent (so the worker knows, e.g. to
/// confirm the opt-out). Built by moving the parsed values in (no re-serialisation of the raw
/// payload).
fn job_for(tenant: &Tenant, message: InboundMessage, sender: Option<&Channel>) -> NewJob {
    use serde_json::Value;
    let consent = consent_change(tenant, &message);
    let contact = serde_json::to_value(&message.contact).unwrap_or(Value::Null);
    let optional = |v: Option<String>| v.map_or(Value::Null, Value::String);
    let mut payload = serde_json::Map::with_capacity(11);
    payload.insert("tenant_id".into(), Value::String(tenant.slug.clone()));
    payload.insert("from".into(), Value::String(message.contact.id.clone()));
    payload.insert(
        "message".into(),
        Value::String(message.text.unwrap_or_default()),
    );
    payload.insert(
        "timestamp".into(),
        Value::String(
            message
                .timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    );
    payload.insert(
        "provider".into(),
        Value::String(message.provider.as_str().to_owned()),
    );
    payload.insert(
        "message_id".into(),
        Value::String(message.provider_message_id.clone()),
    );
    payload.insert("type".into(), Value::String(message.kind));
    payload.insert("contact".into(), contact);
    payload.insert("to".into(), optional(message.to));
    payload.insert("reply_to".into(), optional(message.reply_to));
    payload.insert("raw".into(), message.raw);
    let has_media = message
        .content
        .as_ref()
        .is_some_and(|c| !c.media.is_empty());
    if let Some(content) = message.content {
        crate::engine::media::payload::add_content(&mut payload, *content);
    }
    if let Some(sender) = sender {
        payload.insert("sender".into(), sender_payload(sender));
    }
    if let Some(change) = &consent {
        payload.insert(
            "consent".into(),
            json!({"state": change.state.as_str(), "keyword": change.detail["keyword"]}),
        );
    }
    NewJob {
        tenant_id: tenant.id,
        dedup_key: format!(
            "{}:{}",
            message.provider.as_str(),
            message.provider_message_id
        ),
        conversation_key: message.contact.id,
        provider_timestamp: message.timestamp,
        max_attempts: tenant.max_attempts,
        payload: Value::Object(payload),
        consent,
        sender_id: sender.map(|s| s.id),
        has_media,
    }
}

/// The sender a message arrived on, as the worker sees it: `id` is what `POST /messages/send`
/// takes as `sender` to reply from the same number.
fn sender_payload(sender: &Channel) -> serde_json::Value {
    let mut value = json!({
        "id": sender.id,
        "provider": sender.provider.as_str(),
        "sender": sender.sender,
    });
    if let Some(label) = &sender.label {
        value["label"] = json!(label);
    }
    if let Some(number) = &sender.display_number {
        value["display_number"] = json!(number);
    }
    value
}

pub async fn tenant_or_404(state: &AppState, slug: &str) -> Result<Arc<Tenant>, ApiError> {
    // What cannot be a slug names no tenant: no query, and nothing cached for it.
    if !is_valid_slug(slug) {
        return Err(ApiError::not_found(format!(
            "unknown tenant `{}`",
            truncate(&without_nul(slug), 64)
        )));
    }
    let tenant = state
        .tenants
        .by_slug(slug)
        .await
        .map_err(|error| match error {
            crate::engine::tenants::LoadError::Database(db) => ApiError::from(db),
            other => {
                tracing::error!(error = %other, "tenant cannot be loaded");
                ApiError::internal()
            }
        })?;
    tenant.ok_or_else(|| ApiError::not_found(format!("unknown tenant `{}`", truncate(slug, 64))))
}

/// The tenant's senders on `provider`; 404 when it has none there.
fn senders_of(tenant: &Tenant, provider: Provider) -> Result<Vec<&Channel>, ApiError> {
    let senders: Vec<&Channel> = tenant.senders_of(provider).collect();
    if senders.is_empty() {
        return Err(ApiError::not_found(format!(
            "tenant `{}` has no {} channel",
            tenant.slug,
            provider.as_str()
        )));
    }
    Ok(senders)
}

fn check_secret(
    state: &AppState,
    provider: &str,
    expected: Option<&Secret>,
    presented: &str,
) -> Result<(), ApiError> {
    let Some(expected) = expected.filter(|s| !s.is_empty()) else {
        state.metrics.count_rejected(provider, "unauthenticated");
        return Err(ApiError::forbidden(
            "webhook_auth_not_configured",
            "this tenant has no webhook secret configured",
        ));
    };
    if expected.matches(presented.as_bytes()) {
        Ok(())
    } else {
        state.metrics.count_rejected(provider, "bad_credentials");
        Err(ApiError::forbidden(
            "bad_credentials",
            "the webhook secret is not valid",
        ))
    }
}

pub(crate) fn signature_error(state: &AppState, provider: &str, error: SignatureError) -> ApiError {
    refuse(state, provider, signature_refusal(error))
}

pub(crate) fn malformed(
    state: &AppState,
    provider: &str,
    error: providers::ParseError,
) -> ApiError {
    state.metrics.count_rejected(provider, "malformed");
    ApiError::invalid_field(&error.field, error.reason)
}

pub(crate) fn observe(state: &AppState, provider: &str, started: Instant) {
    state
        .metrics
        .ingest_latency
        .get_or_create(&ProviderLabels {
            provider: provider.to_owned(),
        })
        .observe(started.elapsed().as_secs_f64());
}

fn truncate(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((index, _)) => &value[..index],
        None => value,
    }
}
