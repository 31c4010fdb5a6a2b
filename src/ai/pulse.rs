//! `POST /routes/context/pulse-content`: for each contact of a campaign, the message to send —
//! an APPROVED template with its parameters filled from the contact's history, or (only while
//! the contact's 24-hour window is open) free text.
//!
//! With a chat model, one call per contact proposes the message as strict JSON; the answer is
//! checked against the catalog and WhatsApp's rules before it is used. Without a model, or when
//! it fails, answers nonsense, runs out of budget or time, the contact gets the deterministic
//! choice (marked `degraded`): the approved template whose words overlap most with the brief
//! and the history, its parameters filled with the contact's profile name where a variable
//! asks for a name and with the variable's example otherwise. Never a 500.

use crate::ai::chat::{ChatClient, Message};
use crate::ai::controls::{self, Tokens};
use crate::ai::memory::{self, Exchange};
use crate::ai::provider::ProviderError;
use crate::ai::redact::redact;
use crate::ai::settings::{self, TenantAi};
use crate::ai::templates::{self, Template};
use crate::engine::auth::Worker;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::outbound::api::TemplateRequest;
use crate::engine::state::AppState;
use crate::engine::tenants::normalize_address;
use axum::Json;
use axum::extract::State;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const MAX_CONTACTS: usize = 100;
pub const MAX_BRIEF_CHARS: usize = 2000;
/// Free text is sent with `POST /messages/send`, which takes at most this much.
const MAX_TEXT_CHARS: usize = 4096;
/// Inbound messages of a contact read from the queue.
const INBOUND_ITEMS: i64 = 10;
/// Each history text in the prompt is cut to this many characters.
const HISTORY_ITEM_CHARS: usize = 300;
/// Approved templates shown to the model at most (the best by word overlap).
const PROMPT_TEMPLATES: usize = 20;
/// Model calls in flight for one request.
const CONCURRENCY: usize = 4;
/// Model calls of one request must finish within this; later contacts are degraded.
const DEADLINE: Duration = Duration::from_secs(45);
const WINDOW_HOURS: i32 = 24;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PulseIn {
    /// 1 to 100 contacts (phone numbers as the provider sends them, or the tenant's keys).
    pub contacts: Vec<String>,
    /// The campaign's goal, at most 2000 characters.
    pub brief: String,
    /// Only templates of this language (`en` matches `en_US`; an exact match wins).
    #[serde(default)]
    pub language: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PulseOut {
    pub results: Vec<PulseResult>,
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Template,
    Text,
    /// Nothing valid exists for this contact (see `reason`).
    None,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PulseResult {
    pub contact: String,
    /// The contact wrote in the last 24 hours: free text may be sent.
    pub window_open: bool,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRequest>,
    /// The message as the contact would read it (placeholders substituted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The model was not used (none configured, it failed, or its answer was refused).
    pub degraded: bool,
    /// `no_chat_model`, `model_unavailable`, `invalid_model_answer`, `budget_exceeded`,
    /// `budget_unknown`, `rate_limited`, `deadline_exceeded`, `no_approved_template`,
    /// `not_sendable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// What was wrong, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The body for `POST /messages/send`, as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<SendBody>,
}

/// A `POST /messages/send` body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SendBody {
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRequest>,
}

#[utoipa::path(post, path = "/routes/context/pulse-content", tag = "ai", request_body = PulseIn,
    security(("worker_token" = [])),
    responses((status = 200, body = PulseOut), (status = 400), (status = 401), (status = 403, description = "tenant_suspended"),
              (status = 429, description = "rate_limited or budget_exceeded before any model call; later calls that run out degrade their contacts"), (status = 503)))]
pub async fn pulse_content(
    State(state): State<AppState>,
    worker: Worker,
    JsonBody(body): JsonBody<PulseIn>,
) -> Result<Json<PulseOut>, ApiError> {
    let started = Instant::now();
    let tenant = worker.tenant_id;
    let result = run(&state, tenant, body).await;
    let (outcome, detail) = match &result {
        Ok((out, calls)) => {
            let count =
                |f: &dyn Fn(&PulseResult) -> bool| out.results.iter().filter(|r| f(r)).count();
            let degraded = count(&|r| r.degraded);
            (
                if degraded > 0 {
                    "degraded"
                } else {
                    "generated"
                },
                json!({
                    "contacts": out.results.len(),
                    "templates": count(&|r| r.kind == Kind::Template),
                    "texts": count(&|r| r.kind == Kind::Text),
                    "none": count(&|r| r.kind == Kind::None),
                    "degraded": degraded,
                    "model_calls": calls,
                }),
            )
        }
        Err(e) => (controls::outcome_of(e), json!({"reason": e.message})),
    };
    controls::audit(
        &state.pool,
        tenant,
        "pulse_content",
        outcome,
        detail,
        started,
    )
    .await;
    result.map(|(out, _)| Json(out))
}

fn validate(body: &PulseIn) -> Result<(), ApiError> {
    if body.contacts.is_empty() || body.contacts.len() > MAX_CONTACTS {
        return Err(ApiError::invalid_field(
            "contacts",
            "must hold 1 to 100 contacts",
        ));
    }
    let mut seen = HashSet::new();
    for (i, contact) in body.contacts.iter().enumerate() {
        memory::validate_contact(contact).map_err(|_| {
            ApiError::invalid_field(&format!("contacts[{i}]"), "must be 1 to 200 characters")
        })?;
        if !seen.insert(contact.as_str()) {
            return Err(ApiError::invalid_field(
                &format!("contacts[{i}]"),
                "is given twice",
            ));
        }
    }
    let brief = body.brief.trim();
    if brief.is_empty() || brief.chars().count() > MAX_BRIEF_CHARS {
        return Err(ApiError::invalid_field(
            "brief",
            "must be 1 to 2000 characters",
        ));
    }
    if body.language.as_deref().is_some_and(|l| !valid_language(l)) {
        return Err(ApiError::invalid_field(
            "language",
            "must be a language code such as en or en_US",
        ));
    }
    Ok(())
}

/// A language code such as `en` or `en_US`: 1 to 16 letters, digits, `_` and `-`.
pub fn valid_language(language: &str) -> bool {
    !language.is_empty()
        && language.len() <= 16
        && language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What is known about one contact.
#[derive(Default, Debug, Clone)]
struct History {
    window_open: bool,
    /// The contact's profile name, from the newest inbound message that carries one.
    name: Option<String>,
    /// Texts the contact sent, oldest first.
    inbound: Vec<String>,
    exchanges: Vec<Exchange>,
}

impl History {
    fn texts(&self) -> impl Iterator<Item = &str> {
        self.inbound.iter().map(String::as_str).chain(
            self.exchanges
                .iter()
                .flat_map(|e| [e.user_text.as_str(), e.assistant_text.as_str()]),
        )
    }
}

/// The request's model, shared by its contacts.
struct Model<'a> {
    chat: &'a ChatClient,
    name: String,
    settings: &'a TenantAi,
    /// Set after the server failed (unreachable, 5xx, 429): the rest of the request degrades
    /// at once instead of waiting for each call to fail.
    down: AtomicBool,
    deadline: Instant,
    calls: std::sync::atomic::AtomicUsize,
    /// The request's admission took one call from the rate limit: the first model call's.
    /// Every further call takes its own before it is made.
    prepaid: AtomicBool,
}

async fn run(state: &AppState, tenant: Uuid, body: PulseIn) -> Result<(PulseOut, usize), ApiError> {
    validate(&body)?;
    let settings = settings::load(&state.pool, tenant).await?;
    controls::admit(&state.pool, &state.ai.rate, tenant, &settings).await?;
    let request = Request {
        contacts: &body.contacts,
        brief: body.brief.trim(),
        language: body.language.as_deref(),
        without_model: None,
    };
    Ok(generate(state, tenant, &settings, &request).await?)
}

/// Each contact's message for a personalized campaign's batch (contacts already checked by
/// the send policy), in the contacts' order. It never fails because of the model: when the
/// tenant's AI rate or budget is spent, or the model fails, contacts get the deterministic
/// choice. Audited like `POST /routes/context/pulse-content`.
pub async fn for_campaign(
    state: &AppState,
    tenant: Uuid,
    contacts: &[String],
    brief: &str,
    language: Option<&str>,
) -> Result<Vec<PulseResult>, sqlx::Error> {
    let started = Instant::now();
    let settings = settings::load(&state.pool, tenant).await?;
    let mut results = Vec::with_capacity(contacts.len());
    let mut calls = 0;
    for chunk in contacts.chunks(MAX_CONTACTS) {
        let without_model = controls::admit(&state.pool, &state.ai.rate, tenant, &settings)
            .await
            .err()
            .map(|e| match e.code {
                "rate_limited" | "budget_exceeded" => e.code,
                _ => "budget_unknown",
            });
        let request = Request {
            contacts: chunk,
            brief,
            language,
            without_model,
        };
        let (out, made) = generate(state, tenant, &settings, &request).await?;
        results.extend(out.results);
        calls += made;
    }
    let degraded = results.iter().filter(|r| r.degraded).count();
    let outcome = if degraded > 0 {
        "degraded"
    } else {
        "generated"
    };
    let detail = json!({"contacts": results.len(), "degraded": degraded, "model_calls": calls,
                        "source": "campaign"});
    controls::audit(
        &state.pool,
        tenant,
        "pulse_content",
        outcome,
        detail,
        started,
    )
    .await;
    Ok(results)
}

/// What to generate, for whom.
struct Request<'a> {
    contacts: &'a [String],
    brief: &'a str,
    language: Option<&'a str>,
    /// Why the model may not be asked (rate or budget spent), when it may not.
    without_model: Option<&'static str>,
}

async fn generate(
    state: &AppState,
    tenant: Uuid,
    settings: &TenantAi,
    request: &Request<'_>,
) -> Result<(PulseOut, usize), sqlx::Error> {
    let catalog = templates::load(&state.pool, tenant).await?;
    let eligible = eligible(&catalog, request.language);
    let mut histories = histories(&state.pool, tenant, request.contacts).await?;
    for (contact, history) in request.contacts.iter().zip(histories.iter_mut()) {
        history.exchanges = memory::recent(&state.pool, tenant, contact).await?;
        let normalized = normalize_address(contact);
        if history.exchanges.is_empty() && normalized != contact {
            history.exchanges = memory::recent(&state.pool, tenant, normalized).await?;
        }
    }
    let model_name = settings
        .chat_model
        .clone()
        .or_else(|| state.ai.chat_model.clone())
        .filter(|_| request.without_model.is_none());
    let unavailable = request.without_model.unwrap_or("no_chat_model");
    let model = match (&state.ai.chat, model_name) {
        (Some(chat), Some(name)) => Some(Model {
            chat,
            name,
            settings,
            down: AtomicBool::new(false),
            deadline: Instant::now() + DEADLINE,
            calls: Default::default(),
            prepaid: AtomicBool::new(true),
        }),
        _ => None,
    };
    let results: Vec<PulseResult> = futures::stream::iter(0..request.contacts.len())
        .map(|i| {
            one_contact(
                state,
                tenant,
                (model.as_ref(), unavailable),
                &catalog,
                &eligible,
                request.brief,
                &request.contacts[i],
                &histories[i],
            )
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let calls = model.map_or(0, |m| m.calls.load(Ordering::Relaxed));
    Ok((PulseOut { results }, calls))
}

/// The approved templates of the language (an exact match wins over a match of the primary
/// subtag: `en` matches `en_US` when no `en` template exists).
pub fn eligible<'a>(catalog: &'a [Template], language: Option<&str>) -> Vec<&'a Template> {
    let approved = catalog.iter().filter(|t| t.approved());
    let Some(language) = language else {
        return approved.collect();
    };
    let norm = |l: &str| l.to_ascii_lowercase().replace('-', "_");
    let wanted = norm(language);
    let primary = |l: &str| l.split('_').next().unwrap_or_default().to_owned();
    let exact: Vec<&Template> = approved
        .clone()
        .filter(|t| norm(&t.language) == wanted)
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    approved
        .filter(|t| {
            let have = norm(&t.language);
            (!wanted.contains('_') && primary(&have) == wanted)
                || (!have.contains('_') && primary(&wanted) == have)
        })
        .collect()
}

/// Window state, profile name and recent inbound texts of every contact, in one query each.
async fn histories(
    pool: &PgPool,
    tenant: Uuid,
    contacts: &[String],
) -> Result<Vec<History>, sqlx::Error> {
    let keys: Vec<&str> = contacts.iter().map(|c| normalize_address(c)).collect();
    let open: Vec<(String, bool)> = sqlx::query_as(
        "SELECT contact, last_inbound_at > now() - make_interval(hours => $3)
         FROM contact_windows WHERE tenant_id = $1 AND contact = ANY($2)",
    )
    .bind(tenant)
    .bind(&keys)
    .bind(WINDOW_HOURS)
    .fetch_all(pool)
    .await?;
    let open: HashMap<String, bool> = open.into_iter().collect();
    // The queue keeps a contact's messages under the provider's id of them (`+1415...` from
    // Twilio, `447...` from InfoBip): every spelling that normalises to the key matches. Jobs
    // are kept until retention deletes them, so this is the recent history only.
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT key, message, name FROM (
             SELECT c.key, j.payload ->> 'message' AS message, j.payload -> 'contact' ->> 'name' AS name,
                    row_number() OVER (PARTITION BY c.key ORDER BY j.provider_timestamp DESC, j.seq DESC) AS n
             FROM UNNEST($2::text[]) AS c(key)
             CROSS JOIN LATERAL (VALUES (c.key), ('+' || c.key), ('whatsapp:+' || c.key), ('whatsapp:' || c.key))
                 AS v(conversation_key)
             JOIN jobs j ON j.tenant_id = $1 AND j.conversation_key = v.conversation_key
         ) recent WHERE n <= $3 ORDER BY key, n DESC",
    )
    .bind(tenant)
    .bind(&keys)
    .bind(INBOUND_ITEMS)
    .fetch_all(pool)
    .await?;
    let mut by_key: HashMap<String, History> = HashMap::new();
    for (key, message, name) in rows {
        let history = by_key.entry(key).or_default();
        if let Some(message) = message.filter(|m| !m.trim().is_empty()) {
            history.inbound.push(message);
        }
        // Oldest first: the newest name wins.
        if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
            history.name = Some(name);
        }
    }
    Ok(keys
        .iter()
        .map(|key| {
            let mut history = by_key.get(*key).cloned().unwrap_or_default();
            history.window_open = open.get(*key).copied().unwrap_or(false);
            history
        })
        .collect())
}

/// A checked choice for one contact.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    Template {
        template: Template,
        params: Vec<String>,
    },
    Text(String),
}

#[allow(clippy::too_many_arguments)]
async fn one_contact(
    state: &AppState,
    tenant: Uuid,
    (model, unavailable): (Option<&Model<'_>>, &'static str),
    catalog: &[Template],
    eligible: &[&Template],
    brief: &str,
    contact: &str,
    history: &History,
) -> PulseResult {
    let ranked = rank(eligible, brief, history);
    let fallback = ranked.first().map(|t| Choice::Template {
        template: (*t).clone(),
        params: fill(t, history),
    });
    let attempt = if ranked.is_empty() && !history.window_open {
        // Nothing the model could say would be valid.
        Ok(None)
    } else {
        match model {
            None => Err((unavailable, None)),
            Some(model) => ask(
                state, tenant, model, catalog, eligible, &ranked, brief, history,
            )
            .await
            .map(Some),
        }
    };
    let (choice, degraded, mut reason, detail) = match attempt {
        Ok(Some(choice)) => (Some(choice), false, None, None),
        Ok(None) => (None, false, None, None),
        Err((reason, detail)) => (fallback, true, Some(reason), detail),
    };
    let mut result = PulseResult {
        contact: contact.to_owned(),
        window_open: history.window_open,
        kind: Kind::None,
        template: None,
        text: None,
        degraded,
        reason: None,
        detail,
        send: None,
    };
    let to = normalize_address(contact);
    let sendable = !to.is_empty() && to.len() <= 64 && !to.contains(char::is_whitespace);
    match choice {
        None => {
            result.reason = Some("no_approved_template");
            if let Some(why) = reason.take() {
                let detail = result
                    .detail
                    .take()
                    .map_or(String::new(), |d| format!(": {d}"));
                result.detail = Some(format!("no free text either ({why}{detail})"));
            }
            return result;
        }
        Some(Choice::Template { template, params }) => {
            let request = || TemplateRequest {
                name: template.name.clone(),
                language: template.language.clone(),
                params: params.clone(),
                ..TemplateRequest::default()
            };
            result.kind = Kind::Template;
            result.text = Some(template.render(&params));
            result.send = sendable.then(|| SendBody {
                to: contact.to_owned(),
                message: None,
                template: Some(request()),
            });
            result.template = Some(request());
        }
        Some(Choice::Text(text)) => {
            result.kind = Kind::Text;
            result.send = sendable.then(|| SendBody {
                to: contact.to_owned(),
                message: Some(text.clone()),
                template: None,
            });
            result.text = Some(text);
        }
    }
    result.reason = reason;
    if !sendable {
        result.reason = result.reason.or(Some("not_sendable"));
        result.detail = Some("the contact is not a WhatsApp address: no send body".to_owned());
    }
    result
}

type Refusal = (&'static str, Option<String>);

/// Asks the model for this contact and checks its answer.
#[allow(clippy::too_many_arguments)]
async fn ask(
    state: &AppState,
    tenant: Uuid,
    model: &Model<'_>,
    catalog: &[Template],
    eligible: &[&Template],
    ranked: &[&Template],
    brief: &str,
    history: &History,
) -> Result<Choice, Refusal> {
    if model.down.load(Ordering::Relaxed) {
        return Err((
            "model_unavailable",
            Some("the model failed earlier in this request".into()),
        ));
    }
    if let Some(budget) = model.settings.monthly_token_budget {
        let used = controls::month_tokens(&state.pool, tenant)
            .await
            .map_err(|e| {
                (
                    "budget_unknown",
                    Some(format!("cannot read the usage: {e}")),
                )
            })?;
        if used >= budget {
            return Err((
                "budget_exceeded",
                Some(format!("the monthly AI budget of {budget} tokens is spent")),
            ));
        }
    }
    let Some(left) = model.deadline.checked_duration_since(Instant::now()) else {
        return Err(("deadline_exceeded", None));
    };
    let messages = prompt(
        &ranked[..ranked.len().min(PROMPT_TEMPLATES)],
        brief,
        history,
    );
    if !model.prepaid.swap(false, Ordering::Relaxed) {
        let per_minute = controls::calls_per_minute(model.settings);
        if !state.ai.rate.try_acquire(tenant, per_minute) {
            return Err((
                "rate_limited",
                Some(controls::rate_limit_reached(per_minute)),
            ));
        }
    }
    model.calls.fetch_add(1, Ordering::Relaxed);
    let completion = match tokio::time::timeout(left, model.chat.complete(&model.name, &messages))
        .await
    {
        Err(_) => return Err(("deadline_exceeded", None)),
        Ok(Err(error)) => {
            if matches!(error, ProviderError::Unreachable(_))
                || matches!(error, ProviderError::Status { status } if status >= 500 || status == 429)
            {
                model.down.store(true, Ordering::Relaxed);
            }
            tracing::warn!(%tenant, %error, "chat model failed; pulse content is deterministic");
            return Err(("model_unavailable", Some(error.to_string())));
        }
        Ok(Ok(completion)) => completion,
    };
    let tokens = Tokens::of(&messages, &completion);
    if let Err(error) =
        controls::record_usage(&state.pool, tenant, "pulse_content", &model.name, tokens).await
    {
        tracing::error!(%tenant, %error, "cannot record AI usage");
    }
    parse_answer(&completion.text)
        .and_then(|answer| check(answer, catalog, eligible, history.window_open))
        .map_err(|why| ("invalid_model_answer", Some(why)))
}

const SYSTEM_PROMPT: &str = "You write one outbound WhatsApp message of a business's campaign to one customer. \
Answer with strict JSON only, nothing else, in one of two forms:\n\
{\"template\": \"<name>\", \"language\": \"<code>\", \"params\": [\"<value for {{1}}>\", ...]} to send one of the approved templates below, with exactly one value per placeholder, in order;\n\
{\"text\": \"<message>\"} to send free text, allowed only while the customer's 24-hour window is open.\n\
Template values are plain text: no new lines, no tabs, at most 4 consecutive spaces, at most 1024 characters. \
Fill them from what the customer's history says (for example their name); otherwise use the example. \
Never write [phone] or [email]; never invent personal data.";

/// The prompt for one contact: rules and approved templates, then the brief and the history.
/// Everything is redacted: it leaves the engine.
fn prompt(templates: &[&Template], brief: &str, history: &History) -> Vec<Message> {
    let mut system = String::from(SYSTEM_PROMPT);
    if history.window_open {
        system.push_str("\n\nThe 24-hour window is OPEN: a template or free text.");
    } else {
        system.push_str("\n\nThe 24-hour window is CLOSED: answer with a template; free text would not be delivered.");
    }
    if templates.is_empty() {
        system.push_str("\n\nThere are no approved templates.");
    } else {
        system.push_str("\n\nApproved templates:");
    }
    for template in templates {
        system.push_str(&format!(
            "\n- template: {}, language: {}, category: {}\n  body: {}",
            template.name, template.language, template.category, template.body
        ));
        for (i, variable) in template.variables.iter().enumerate() {
            let description = if variable.description.is_empty() {
                "(no description)"
            } else {
                &variable.description
            };
            system.push_str(&format!(
                "\n  {{{{{}}}}}: {} (example: {})",
                i + 1,
                description,
                variable.example
            ));
        }
    }
    let mut user = format!("Campaign goal: {brief}\n");
    user.push_str(&format!(
        "Customer's profile name: {}\n",
        history.name.as_deref().unwrap_or("unknown")
    ));
    if !history.inbound.is_empty() {
        user.push_str("Recent messages from the customer, oldest first:\n");
        for text in &history.inbound {
            user.push_str(&format!("- {}\n", cut(text)));
        }
    }
    if !history.exchanges.is_empty() {
        user.push_str("Earlier exchanges with the business's assistant, oldest first:\n");
        for exchange in &history.exchanges {
            user.push_str(&format!(
                "- customer: {}\n  assistant: {}\n",
                cut(&exchange.user_text),
                cut(&exchange.assistant_text)
            ));
        }
    }
    vec![
        Message::system(redact(&system)),
        Message::user(redact(&user)),
    ]
}

fn cut(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= HISTORY_ITEM_CHARS {
        return text;
    }
    let cut: String = text.chars().take(HISTORY_ITEM_CHARS).collect();
    format!("{cut}…")
}

/// What the model answered, before it is checked.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    params: Option<Vec<String>>,
    #[serde(default)]
    text: Option<String>,
}

/// The model's JSON (a surrounding Markdown code fence is tolerated, nothing else).
fn parse_answer(text: &str) -> Result<Answer, String> {
    let mut text = text.trim();
    if let Some(inner) = text.strip_prefix("```") {
        let inner = inner.strip_prefix("json").unwrap_or(inner);
        text = inner.strip_suffix("```").unwrap_or(inner).trim();
    }
    serde_json::from_str(text).map_err(|e| format!("not the JSON asked for: {e}"))
}

/// Redaction markers in an answer would reach the customer as they are.
fn has_marker(value: &str) -> bool {
    value.contains("[phone]") || value.contains("[email]")
}

/// Checks the model's answer against the catalog, the language and WhatsApp's rules.
fn check(
    answer: Answer,
    catalog: &[Template],
    eligible: &[&Template],
    window_open: bool,
) -> Result<Choice, String> {
    match answer {
        Answer {
            text: Some(text),
            template: None,
            language: None,
            params: None,
        } => {
            if !window_open {
                return Err("free text outside the 24-hour window".into());
            }
            let text = text.trim().to_owned();
            if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
                return Err("the text must be 1 to 4096 characters".into());
            }
            if has_marker(&text) {
                return Err("the text carries a redaction marker".into());
            }
            Ok(Choice::Text(text))
        }
        Answer {
            text: None,
            template: Some(name),
            language: Some(language),
            params,
        } => {
            let params = params.unwrap_or_default();
            let template = catalog
                .iter()
                .find(|t| t.name == name && t.language == language)
                .ok_or_else(|| format!("no template `{name}` in language `{language}`"))?;
            if !template.approved() {
                return Err(format!(
                    "template `{name}` ({language}) is {}, not APPROVED",
                    template.status
                ));
            }
            if !eligible
                .iter()
                .any(|t| t.name == name && t.language == language)
            {
                return Err(format!(
                    "template `{name}` ({language}) is not in the requested language"
                ));
            }
            if params.len() != template.placeholders() {
                return Err(format!(
                    "template `{name}` has {} placeholders, {} params were given",
                    template.placeholders(),
                    params.len()
                ));
            }
            for (i, param) in params.iter().enumerate() {
                if let Some(problem) = templates::param_problem(param) {
                    return Err(format!("params[{i}] {problem}"));
                }
                if has_marker(param) {
                    return Err(format!("params[{i}] carries a redaction marker"));
                }
            }
            Ok(Choice::Template {
                template: template.clone(),
                params,
            })
        }
        _ => Err("the answer must be either {template, language, params} or {text}".into()),
    }
}

const STOP_WORDS: &[&str] = &[
    "the",
    "and",
    "for",
    "you",
    "your",
    "our",
    "are",
    "with",
    "this",
    "that",
    "have",
    "has",
    "was",
    "were",
    "will",
    "can",
    "not",
    "but",
    "all",
    "any",
    "from",
    "they",
    "them",
    "their",
    "what",
    "when",
    "who",
    "how",
    "out",
    "about",
    "into",
    "than",
    "then",
    "there",
    "here",
    "just",
    "also",
    "get",
    "got",
    "one",
    "its",
    "it's",
    "please",
    "thanks",
    "thank",
    "hello",
    "dear",
    "customer",
    "customers",
    "message",
    "send",
    "want",
    "would",
    "could",
    "should",
];

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

/// Eligible templates, most similar first. Similarity is lexical: the words of the template
/// (name, body without placeholders, variable descriptions) found in the brief count twice,
/// those found in the history once, divided by √(template words); ties go by name, language.
fn rank<'a>(eligible: &[&'a Template], brief: &str, history: &History) -> Vec<&'a Template> {
    let brief = words(brief);
    let history: HashSet<String> = history.texts().flat_map(words).collect();
    let mut scored: Vec<(f64, &Template)> = eligible
        .iter()
        .map(|t| {
            let mut text = format!("{} {}", t.name.replace(['_', '-'], " "), t.body);
            for variable in &t.variables {
                text.push(' ');
                text.push_str(&variable.description);
            }
            let own = words(&text);
            let hits = own
                .iter()
                .map(|w| {
                    2.0 * f64::from(u8::from(brief.contains(w)))
                        + f64::from(u8::from(history.contains(w)))
                })
                .sum::<f64>();
            let score = if own.is_empty() {
                0.0
            } else {
                hits / (own.len() as f64).sqrt()
            };
            (score, *t)
        })
        .collect();
    scored.sort_by(|(a, ta), (b, tb)| {
        b.total_cmp(a)
            .then_with(|| ta.name.cmp(&tb.name))
            .then_with(|| ta.language.cmp(&tb.language))
    });
    scored.into_iter().map(|(_, t)| t).collect()
}

/// Words of a variable description that say it is not the customer's name.
const NOT_PERSON: &[&str] = &[
    "product", "company", "business", "shop", "store", "brand", "item", "event", "agent",
    "service", "plan", "course", "file", "venue", "place", "city", "street", "user", "domain",
    "file", "app",
];

/// Whether a variable stands for the customer's name (`customer first name`, `Name`).
fn asks_for_name(description: &str) -> bool {
    let words: Vec<String> = description
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .collect();
    words.iter().any(|w| w == "name" || w == "firstname")
        && !words.iter().any(|w| NOT_PERSON.contains(&w.as_str()))
}

/// Deterministic parameters: the profile name where a variable asks for a name, else the example.
fn fill(template: &Template, history: &History) -> Vec<String> {
    let name = history
        .name
        .as_deref()
        .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|n| templates::param_problem(n).is_none());
    template
        .variables
        .iter()
        .map(|v| match &name {
            Some(name) if asks_for_name(&v.description) => name.clone(),
            _ => v.example.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::templates::Variable;
    use chrono::Utc;

    fn template(
        name: &str,
        language: &str,
        status: &str,
        body: &str,
        vars: &[(&str, &str)],
    ) -> Template {
        Template {
            name: name.into(),
            language: language.into(),
            category: "MARKETING".into(),
            status: status.into(),
            body: body.into(),
            variables: vars
                .iter()
                .map(|(d, e)| Variable {
                    description: (*d).into(),
                    example: (*e).into(),
                })
                .collect(),
            quality: "UNKNOWN".into(),
            updated_at: Utc::now(),
        }
    }

    fn catalog() -> Vec<Template> {
        vec![
            template(
                "spring_sale",
                "en_US",
                "APPROVED",
                "Hi {{1}}, our spring sale: {{2}} off all shoes!",
                &[("customer first name", "there"), ("discount", "20%")],
            ),
            template(
                "order_update",
                "en_US",
                "APPROVED",
                "Your order {{1}} has shipped.",
                &[("order number", "A-1")],
            ),
            template(
                "venta",
                "es",
                "APPROVED",
                "Hola {{1}}, rebajas en zapatos.",
                &[("nombre", "amigo")],
            ),
            template("draft", "en_US", "PENDING", "Hi {{1}}", &[("name", "x")]),
        ]
    }

    #[test]
    fn language_filter_prefers_exact_then_primary() {
        let c = catalog();
        let names = |l: Option<&str>| {
            eligible(&c, l)
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None), ["spring_sale", "order_update", "venta"]);
        assert_eq!(names(Some("en")), ["spring_sale", "order_update"]);
        assert_eq!(names(Some("es_MX")), ["venta"]);
        assert!(names(Some("fr")).is_empty());
    }

    #[test]
    fn the_deterministic_choice_follows_the_brief_and_fills_the_name() {
        let c = catalog();
        let all = eligible(&c, Some("en_US"));
        let history = History {
            name: Some("Ana  María".into()),
            ..Default::default()
        };
        let ranked = rank(&all, "Spring sale on shoes", &history);
        assert_eq!(ranked[0].name, "spring_sale");
        assert_eq!(fill(ranked[0], &history), ["Ana María", "20%"]);
        assert_eq!(fill(ranked[0], &History::default()), ["there", "20%"]);
        let shipped = History {
            inbound: vec!["where is my order? has it shipped".into()],
            ..Default::default()
        };
        assert_eq!(rank(&all, "update", &shipped)[0].name, "order_update");
        assert!(asks_for_name("Name") && !asks_for_name("product name"));
    }

    #[test]
    fn model_answers_are_checked() {
        let c = catalog();
        let all = eligible(&c, None);
        let answer = |s: &str| parse_answer(s).unwrap();
        let ok = check(
            answer(r#"{"template": "spring_sale", "language": "en_US", "params": ["Ana", "30%"]}"#),
            &c,
            &all,
            false,
        )
        .unwrap();
        assert!(matches!(ok, Choice::Template { ref params, .. } if params == &["Ana", "30%"]));
        let fenced = "```json\n{\"text\": \"Hi!\"}\n```";
        assert_eq!(
            check(answer(fenced), &c, &all, true).unwrap(),
            Choice::Text("Hi!".into())
        );
        let refused = |s: &str, open: bool| check(answer(s), &c, &all, open).unwrap_err();
        assert!(refused(r#"{"text": "Hi!"}"#, false).contains("window"));
        assert!(
            refused(
                r#"{"template": "draft", "language": "en_US", "params": ["x"]}"#,
                true
            )
            .contains("PENDING")
        );
        assert!(
            refused(
                r#"{"template": "spring_sale", "language": "en_US", "params": ["Ana"]}"#,
                true
            )
            .contains("placeholders")
        );
        assert!(
            refused(
                r#"{"template": "spring_sale", "language": "en_US", "params": ["Ana", "a\nb"]}"#,
                true
            )
            .contains("new lines")
        );
        assert!(
            refused(
                r#"{"template": "spring_sale", "language": "es", "params": ["Ana", "1"]}"#,
                true
            )
            .contains("no template")
        );
        assert!(
            refused(
                r#"{"template": "spring_sale", "language": "en_US", "params": ["[phone]", "1"]}"#,
                true
            )
            .contains("marker")
        );
        assert!(refused(r#"{"text": "a", "template": "x"}"#, true).contains("either"));
        let es_only = eligible(&c, Some("es"));
        assert!(
            check(
                answer(r#"{"template": "spring_sale", "language": "en_US", "params": ["a", "b"]}"#),
                &c,
                &es_only,
                true
            )
            .unwrap_err()
            .contains("language")
        );
        assert!(parse_answer("Sure! Here is a message").is_err());
    }

    #[test]
    fn prompts_carry_no_phone_or_email() {
        let c = catalog();
        let history = History {
            inbound: vec!["call me on +44 7911 123456 or ana@example.com".into()],
            exchanges: vec![Exchange {
                user_text: "my mail: bob@example.org".into(),
                assistant_text: "ok".into(),
            }],
            ..Default::default()
        };
        let all = eligible(&c, None);
        let messages = prompt(&all, "sale for 555-123-4567", &history);
        let text: String = messages.iter().map(|m| m.content.as_str()).collect();
        for personal in ["7911", "ana@example.com", "bob@example.org", "4567"] {
            assert!(!text.contains(personal), "{personal}");
        }
        assert!(text.contains("CLOSED") && text.contains("spring_sale"));
    }
}
