//! `POST /messages/send` and `GET /messages/{id}`: the worker's side of sending. The message is
//! committed before the 202; the dispatcher sends it afterwards.

use super::capabilities::{self, Parts};
use super::content::{InteractiveRequest, MediaRequest, TemplateButton, TemplateHeader};
use super::content_checks;
use super::destination::Destinations;
use crate::engine::auth::Worker;
use crate::engine::body::{RawBody, parse_json};
use crate::engine::error::ApiError;
use crate::engine::policy::category::Category;
use crate::engine::policy::{gate, templates};
use crate::engine::state::AppState;
use crate::engine::tenants::{Tenant, TenantState, normalize_address};
use crate::engine::webhooks::tenant_or_404;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const MAX_TEXT_CHARS: usize = 4096;
/// Free-form messages are allowed this long after the contact's last message.
const WINDOW_HOURS: i64 = 24;

/// A reply to send. The seed's body `{to, message, tenant_id}`, or instead of `message` one of
/// `template`, `media` or `interactive`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The recipient (international number, with or without `+`/`whatsapp:`).
    pub to: String,
    /// Free text (at most 4096 characters). Required unless a template is given.
    #[serde(default)]
    pub message: Option<String>,
    /// The tenant's slug; when given it must be the token's tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// An approved template; required outside the 24-hour window.
    #[serde(default)]
    pub template: Option<TemplateRequest>,
    /// An image, document, audio, video or sticker, by https URL, by an engine media id
    /// (`POST /media`, or an inbound file of the tenant) or by a Meta media id. Media headers
    /// (`interactive.header`, `template.header`) take the same.
    #[serde(default)]
    pub media: Option<MediaRequest>,
    /// Reply buttons or a list (Meta and InfoBip; Twilio: as a Content API template).
    #[serde(default)]
    pub interactive: Option<InteractiveRequest>,
    /// Provider id of the inbound message this one answers (quoted where the provider supports it).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// This reply confirms the contact's opt-out: the one message an opted-out contact still
    /// gets, within 24 hours of opting out. Refused (422 `not_opted_out`) to a contact who has not.
    #[serde(default)]
    pub opt_out_confirmation: bool,
    /// `service`, `utility` or `marketing`. Default: `service` inside the 24-hour window, else
    /// the template's catalog category (`utility` when the catalog does not know it). Utility
    /// and marketing are held in the tenant's quiet hours; marketing counts toward the cap.
    #[serde(default)]
    pub category: Option<Category>,
    /// Which of the tenant's senders sends it: the sender's id (an inbound job's `sender.id`)
    /// or its number / sender id. Default: the sender the contact last wrote to, else the
    /// tenant's first. One that is not the tenant's is refused (403 `wrong_sender`).
    #[serde(default)]
    pub sender: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    /// Template name (Twilio: the Content SID `HX...`).
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// Body placeholders, in order.
    #[serde(default)]
    pub params: Vec<String>,
    /// The header's value: a text placeholder, or the image, video or document of a media header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<TemplateHeader>,
    /// Parameters of the template's quick-reply and URL buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<TemplateButton>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SendAccepted {
    pub message_id: Uuid,
    pub status: String,
    pub category: Category,
    /// Held for the tenant's quiet hours until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<DateTime<Utc>>,
    /// A held message fails with `hold_expired` rather than go out after this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(post, path = "/messages/send", tag = "messages", request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the same message; same key, another body: 409")),
    security(("worker_token" = [])),
    responses((status = 202, body = SendAccepted), (status = 400), (status = 401), (status = 403), (status = 409), (status = 413),
              (status = 409, description = "opted_out: the contact opted out; frequency_capped (details.allowed_at); nothing queued"),
              (status = 403, description = "wrong_tenant; wrong_sender: `sender` is not one of the tenant's senders; tenant_suspended; nothing queued"),
              (status = 422, description = "window_closed: free text outside the 24-hour window; no_channel; not_opted_out; template_not_approved (details.template_status)"), (status = 503)))]
pub async fn send(
    State(state): State<AppState>,
    worker: Worker,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<SendAccepted>), ApiError> {
    let request: SendRequest = parse_json(&body)?;
    let content = validate(&request, &worker, state.dispatcher.destinations())?;
    let tenant = tenant_or_404(&state, &worker.tenant_slug).await?;
    if tenant.state == TenantState::Suspended {
        return Err(ApiError::forbidden(
            "tenant_suspended",
            "the tenant is suspended; sending is stopped",
        ));
    }
    if tenant.channel.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_channel",
            "the tenant has no WhatsApp channel",
        ));
    }
    let asked = request
        .sender
        .as_deref()
        .map(|wanted| chosen_sender(&tenant, wanted))
        .transpose()?;
    let key = idempotency_key(&headers)?;
    // Canonical form (serde_json sorts object keys), so key order in the body does not matter.
    let canonical =
        serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
            .unwrap_or_default();
    let hash = Sha256::digest(&canonical).to_vec();
    if let Some(existing) = existing(&state, tenant.id, key.as_deref(), &hash).await? {
        return Ok((StatusCode::ACCEPTED, Json(existing)));
    }
    let (window, last_sender) = window_open(&state, tenant.id, &request.to).await?;
    // The contact's last sender, while it is still the tenant's; else the first.
    let sender = asked
        .or_else(|| last_sender.filter(|id| tenant.sender(*id).is_some()))
        .or_else(|| tenant.channel.as_ref().map(|c| c.id));
    if let Some(channel) = sender.and_then(|id| tenant.sender(id))
        && !is_plain(&request)
    {
        let parts = Parts {
            template: request.template.as_ref(),
            media: request.media.as_ref(),
            interactive: request.interactive.as_ref(),
        };
        capabilities::check(channel.provider, &parts)?;
        super::stored_media::check(
            &state.pool,
            &state.settings.media,
            tenant.id,
            &parts,
            channel.provider,
        )
        .await?;
    }
    if request.template.is_none() && !window {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "window_closed",
            "the contact has not written in the last 24 hours: only a template can be sent",
        ));
    }
    let catalog = match &request.template {
        Some(template) => {
            templates::lookup(&state.pool, tenant.id, &template.name, &template.language).await?
        }
        None => None,
    };
    if let (Some(entry), Some(template)) = (&catalog, &request.template)
        && entry.status != "APPROVED"
    {
        return Err(templates::not_approved(&template.name, entry));
    }
    let category = category(
        &request,
        window,
        catalog.as_ref().map(|e| e.category.as_str()),
    )?;
    let accepted = insert(
        &state,
        (tenant.id, sender),
        (key.as_deref(), &hash),
        &request,
        content,
        category,
    )
    .await?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Text and header-less, button-less templates: what every provider sends as it is.
fn is_plain(request: &SendRequest) -> bool {
    request.media.is_none()
        && request.interactive.is_none()
        && request
            .template
            .as_ref()
            .is_none_or(|t| t.header.is_none() && t.buttons.is_empty())
}

fn validate(
    request: &SendRequest,
    worker: &Worker,
    destinations: &Destinations,
) -> Result<Value, ApiError> {
    if request
        .tenant_id
        .as_ref()
        .is_some_and(|t| t != &worker.tenant_slug)
    {
        return Err(ApiError::forbidden(
            "wrong_tenant",
            "tenant_id is not the tenant of this worker token",
        ));
    }
    let to = normalize_address(&request.to);
    if to.is_empty() || to.len() > 64 || to.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_field(
            "to",
            "must be a recipient number or id of at most 64 characters",
        ));
    }
    if let Some(text) = &request.message
        && (text.is_empty() || text.chars().count() > MAX_TEXT_CHARS)
    {
        return Err(ApiError::invalid_field(
            "message",
            "must be 1 to 4096 characters",
        ));
    }
    if let Some(media) = &request.media {
        only_content("media", request)?;
        content_checks::media(media, destinations)?;
        return Ok(json!({"media": media}));
    }
    if let Some(interactive) = &request.interactive {
        only_content("interactive", request)?;
        content_checks::interactive(interactive, destinations)?;
        return Ok(json!({"interactive": interactive}));
    }
    match (&request.message, &request.template) {
        (_, Some(template)) => {
            validate_template(template, destinations)?;
            Ok(json!({"template": template}))
        }
        (Some(text), None) => Ok(json!({"text": text})),
        (None, None) => Err(ApiError::invalid_field(
            "message",
            "is required unless a template, media or interactive is given",
        )),
    }
}

/// `field` (media or interactive) is the whole message: no text or template beside it.
fn only_content(field: &str, request: &SendRequest) -> Result<(), ApiError> {
    let others = [
        request.message.is_some(),
        request.template.is_some(),
        request.media.is_some() && request.interactive.is_some(),
    ];
    if others.iter().any(|present| *present) {
        return Err(ApiError::invalid_field(
            field,
            "give one of message, template, media or interactive (a caption goes in media.caption)",
        ));
    }
    Ok(())
}

fn validate_template(
    template: &TemplateRequest,
    destinations: &Destinations,
) -> Result<(), ApiError> {
    if template.name.is_empty() || template.name.len() > 512 {
        return Err(ApiError::invalid_field(
            "template.name",
            "must be 1 to 512 characters",
        ));
    }
    if template.language.is_empty() || template.language.len() > 16 {
        return Err(ApiError::invalid_field(
            "template.language",
            "must be a language code such as en_US",
        ));
    }
    if template.params.len() > 50
        || template
            .params
            .iter()
            .any(|p| p.is_empty() || p.chars().count() > 1024)
    {
        return Err(ApiError::invalid_field(
            "template.params",
            "at most 50 values of 1 to 1024 characters",
        ));
    }
    if let Some(header) = &template.header {
        content_checks::template_header(header, destinations)?;
    }
    content_checks::template_buttons(&template.buttons)
}

/// The send's category; `service` is only for replies inside the window.
fn category(
    request: &SendRequest,
    window: bool,
    template_category: Option<&str>,
) -> Result<Category, ApiError> {
    match request.category {
        Some(Category::Service) if !window => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "window_closed",
            "category: service messages are replies inside the 24-hour window",
        )),
        Some(category) => Ok(category),
        None => Ok(Category::default_for(window, template_category)),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::invalid_field("Idempotency-Key", "must be visible ASCII"))?;
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "must be 1 to 200 characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

async fn existing(
    state: &AppState,
    tenant: Uuid,
    key: Option<&str>,
    hash: &[u8],
) -> Result<Option<SendAccepted>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let row: Option<StoredSend> = sqlx::query_as(
        "SELECT id, status, request_sha256, category, next_attempt_at, expires_at
         FROM outbound_messages WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(&state.pool)
    .await?;
    match row {
        None => Ok(None),
        Some(stored) if stored.request_sha256 == hash => Ok(Some(SendAccepted {
            message_id: stored.id,
            status: stored.status,
            category: match stored.category.as_str() {
                "marketing" => Category::Marketing,
                "utility" => Category::Utility,
                _ => Category::Service,
            },
            held_until: stored.expires_at.map(|_| stored.next_attempt_at),
            expires_at: stored.expires_at,
        })),
        Some(_) => Err(ApiError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was used with another body",
        )),
    }
}

#[derive(sqlx::FromRow)]
struct StoredSend {
    id: Uuid,
    status: String,
    request_sha256: Vec<u8>,
    category: String,
    next_attempt_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

/// Whether the contact's 24-hour window is open, and the sender the contact last wrote to.
async fn window_open(
    state: &AppState,
    tenant: Uuid,
    to: &str,
) -> Result<(bool, Option<Uuid>), ApiError> {
    let row: Option<(bool, Option<Uuid>)> = sqlx::query_as(
        "SELECT last_inbound_at > now() - make_interval(hours => $3), last_sender_id
         FROM contact_windows WHERE tenant_id = $1 AND contact = $2",
    )
    .bind(tenant)
    .bind(normalize_address(to))
    .bind(WINDOW_HOURS as i32)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.unwrap_or((false, None)))
}

/// The tenant's sender a worker named, by id or by its number / sender id.
fn chosen_sender(tenant: &Tenant, wanted: &str) -> Result<Uuid, ApiError> {
    let wanted = wanted.trim();
    let by_id = wanted.parse::<Uuid>().ok().and_then(|id| tenant.sender(id));
    by_id
        .or_else(|| {
            tenant
                .senders
                .iter()
                .find(|s| !wanted.is_empty() && s.owns_address(wanted))
        })
        .map(|s| s.id)
        .ok_or_else(|| {
            ApiError::forbidden(
                "wrong_sender",
                format!(
                    "sender `{}` is not one of this tenant's senders; nothing was queued",
                    wanted.chars().take(64).collect::<String>()
                ),
            )
            .with_details(json!({"field": "sender"}))
        })
}

/// Runs the send policy and queues the message in one transaction; a refusal writes nothing.
async fn insert(
    state: &AppState,
    (tenant, sender): (Uuid, Option<Uuid>),
    (key, hash): (Option<&str>, &[u8]),
    request: &SendRequest,
    content: Value,
    category: Category,
) -> Result<SendAccepted, ApiError> {
    let mut tx = state.pool.begin().await?;
    let send = gate::Send {
        tenant,
        contact: &request.to,
        category,
        opt_out_confirmation: request.opt_out_confirmation,
    };
    let admitted = gate::admit(&mut tx, &send).await??;
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO outbound_messages (tenant_id, idempotency_key, request_sha256, recipient, content, reply_to,
                                        opt_out_confirmation, category, next_attempt_at, expires_at, sender_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE(LEAST($9, $10), now()), $10, $11)
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(tenant)
    .bind(key)
    .bind(hash)
    .bind(normalize_address(&request.to))
    .bind(&content)
    .bind(&request.reply_to)
    .bind(request.opt_out_confirmation)
    .bind(category.as_str())
    .bind(admitted.hold_until)
    .bind(admitted.expires_at)
    .bind(sender)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        // A concurrent request with the same key won the race: answer as it would be answered.
        drop(tx);
        return existing(state, tenant, key, hash)
            .await?
            .ok_or_else(ApiError::internal);
    };
    sqlx::query(
        "INSERT INTO outbound_events (message_id, status, detail) VALUES ($1, 'queued', $2)",
    )
    .bind(id)
    .bind(json!({"category": category.as_str()}))
    .execute(&mut *tx)
    .await?;
    if let Some(until) = admitted.hold_until {
        sqlx::query(
            "INSERT INTO outbound_events (message_id, status, detail) VALUES ($1, 'held', $2)",
        )
        .bind(id)
        .bind(json!({"reason": "quiet_hours", "until": until, "expires_at": admitted.expires_at}))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(SendAccepted {
        message_id: id,
        status: "queued".into(),
        category,
        held_until: admitted.hold_until,
        expires_at: admitted.expires_at,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub message_id: Uuid,
    pub to: String,
    /// queued, sending, accepted, sent, delivered, read or failed.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The tenant's sender it goes out from (absent for messages queued before senders existed:
    /// the tenant's first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Uuid>,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct HistoryEntry {
    pub status: String,
    pub at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub detail: Value,
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: Uuid,
    recipient: String,
    status: String,
    provider: Option<String>,
    provider_message_id: Option<String>,
    sender_id: Option<Uuid>,
    attempts: i32,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/messages/{id}", tag = "messages", params(("id" = Uuid, Path)), security(("worker_token" = [])),
    responses((status = 200, body = MessageView), (status = 400), (status = 401), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    worker: Worker,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::invalid_field("id", "not a message id (UUID)"))?;
    let row: MessageRow = sqlx::query_as(
        "SELECT id, recipient, status, provider, provider_message_id, sender_id, attempts, error_code, error_message,
                created_at, updated_at
         FROM outbound_messages WHERE id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(worker.tenant_id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("no such message"))?;
    let history: Vec<HistoryEntry> = sqlx::query_as(
        "SELECT status, occurred_at AS at, detail FROM outbound_events WHERE message_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(MessageView {
        message_id: row.id,
        to: row.recipient,
        status: row.status,
        provider: row.provider,
        provider_message_id: row.provider_message_id,
        sender: row.sender_id,
        attempts: row.attempts,
        error_code: row.error_code,
        error_message: row.error_message,
        created_at: row.created_at,
        updated_at: row.updated_at,
        history,
    }))
}
