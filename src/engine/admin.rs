//! The admin API the operator uses to register tenants. Idempotent: the same PUT twice leaves
//! the same state. Secrets go in, sealed at rest; they never come out.

use crate::engine::auth::Admin;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::providers::Provider;
use crate::engine::secret::Secret;
use crate::engine::senders::{MAX_SENDERS, NewSender, ReplaceError};
use crate::engine::state::AppState;
use crate::engine::tenants::{ChannelSecrets, TenantState, normalize_address, webhook_context};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Everything the engine keeps about a tenant. A PUT replaces it whole.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpsert {
    pub display_name: String,
    /// `active` (default) or `suspended`.
    #[serde(default = "active")]
    pub status: TenantState,
    /// Deliveries of a job before it is dead-lettered (1 to 100, default 5).
    #[serde(default)]
    pub max_attempts: Option<i32>,
    /// Jobs the tenant's workers may hold at once (1 to 1000, default 50).
    #[serde(default)]
    pub max_concurrency: Option<i32>,
    /// Largest inbound media file fetched for the tenant, in bytes (1 B to 100 MiB); absent:
    /// the engine's `--media-max-bytes`. Larger files are marked failed; the message is kept.
    #[serde(default)]
    pub media_max_bytes: Option<i64>,
    /// How long the tenant's media files (inbound and uploaded) are kept, in seconds (60 s to
    /// 400 days); absent: the engine's job retention (`--retention-seconds`).
    #[serde(default)]
    pub media_retention_seconds: Option<i64>,
    /// SHA-256 (hex) of each token the tenant's workers may use. The tokens themselves never
    /// reach the engine.
    #[serde(default)]
    pub worker_token_sha256: Vec<String>,
    /// Secret for the seed's `POST /webhook/inbound` (`X-Webhook-Secret`).
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// The WhatsApp channel: the tenant's only sender. Same as `senders` with one entry; give
    /// one or the other. Absent (and no `senders`): the tenant has none.
    #[serde(default)]
    pub channel: Option<ChannelUpsert>,
    /// The tenant's senders (numbers), at most 20, the first being the default for sends. A
    /// sender belongs to at most one tenant: one another tenant holds gets 409 `sender_in_use`.
    #[serde(default)]
    pub senders: Option<Vec<ChannelUpsert>>,
    /// AI settings (models, monthly token budget, rate limit, data views). Absent: defaults.
    #[serde(default)]
    pub ai: Option<crate::ai::settings::TenantAi>,
}

fn active() -> TenantState {
    TenantState::Active
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelUpsert {
    /// `infobip`, `meta` or `twilio`.
    pub provider: ProviderName,
    /// The business sender: InfoBip number, Meta phone-number-id, Twilio `whatsapp:+...` or `MG...`.
    pub sender: String,
    /// Provider API base URL: an origin (`https://host[:port]`, no path, query, fragment or user
    /// info) on the engine's allow-list for the provider: InfoBip `https://*.api.infobip.com`
    /// (a personal base URL) or `https://api.infobip.com`, Meta `https://graph.facebook.com`,
    /// Twilio `https://api.twilio.com`, and what the platform adds with
    /// `--provider-base-url-allow` (a sandbox, a private deployment). Others get 400. Stored and
    /// shown as the origin. Absent: the provider's public API.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub credentials: ChannelSecrets,
    /// The tenant's name for this number (`sales`, `support`): 1 to 64 characters.
    #[serde(default)]
    pub label: Option<String>,
    /// The number as customers see it (`+44 113 496 0000`), when the sender id is not the
    /// number (Meta's phone-number-id): 1 to 32 characters of digits, spaces, `+`, `-`, `(`, `)`.
    #[serde(default)]
    pub display_number: Option<String>,
}

impl TenantUpsert {
    /// The senders asked for, with the name of the field each came from (`channel` or `senders[i]`).
    fn senders(&self) -> Vec<(String, &ChannelUpsert)> {
        match (&self.channel, &self.senders) {
            (Some(channel), _) => vec![("channel".to_owned(), channel)],
            (None, Some(senders)) => senders
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("senders[{i}]"), s))
                .collect(),
            (None, None) => Vec::new(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    Infobip,
    Meta,
    Twilio,
}

impl ProviderName {
    fn as_str(self) -> &'static str {
        self.provider().as_str()
    }

    fn provider(self) -> Provider {
        match self {
            Self::Infobip => Provider::Infobip,
            Self::Meta => Provider::Meta,
            Self::Twilio => Provider::Twilio,
        }
    }
}

/// A tenant as the admin API shows it: no secret values, only which are set.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    pub status: TenantState,
    pub max_attempts: i32,
    pub max_concurrency: i32,
    /// The tenant's media size limit, when it set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_max_bytes: Option<i64>,
    /// The tenant's media retention in seconds, when it set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_retention_seconds: Option<i64>,
    pub worker_tokens: i64,
    pub webhook_secret_set: bool,
    /// The first sender (the tenant's only one when it has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelView>,
    /// Every sender, the first one first.
    pub senders: Vec<ChannelView>,
    /// When the tenant's worker (its n8n) last asked for a job; absent if it never did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_worker_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    /// The sender's id: `sender` of `POST /messages/send` and of inbound jobs.
    pub id: Uuid,
    pub provider: String,
    pub sender: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_number: Option<String>,
    /// Names of the credentials that are set.
    pub credentials_set: Vec<&'static str>,
}

impl ChannelView {
    fn of(channel: &crate::engine::tenants::Channel) -> Self {
        Self {
            id: channel.id,
            provider: channel.provider.as_str().to_owned(),
            sender: channel.sender.clone(),
            base_url: channel.base_url.clone(),
            label: channel.label.clone(),
            display_number: channel.display_number.clone(),
            credentials_set: channel.secrets.names_set(),
        }
    }
}

fn validate_slug(slug: &str) -> Result<(), ApiError> {
    if crate::engine::tenants::is_valid_slug(slug) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "slug",
            "must be a DNS-1123 label of at most 40 characters",
        ))
    }
}

/// The largest per-tenant media limit: Meta's own limit for documents.
const MAX_MEDIA_BYTES: i64 = 100 * 1024 * 1024;
/// Media retention bounds, seconds: a minute to 400 days.
pub const MEDIA_RETENTION_RANGE: std::ops::RangeInclusive<i64> = 60..=400 * 24 * 3600;

fn validate(body: &TenantUpsert) -> Result<Vec<[u8; 32]>, ApiError> {
    if body.display_name.trim().is_empty() || body.display_name.chars().count() > 200 {
        return Err(ApiError::invalid_field(
            "display_name",
            "must be 1 to 200 characters",
        ));
    }
    if body.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(ApiError::invalid_field(
            "max_attempts",
            "must be between 1 and 100",
        ));
    }
    if body
        .max_concurrency
        .is_some_and(|n| !(1..=1000).contains(&n))
    {
        return Err(ApiError::invalid_field(
            "max_concurrency",
            "must be between 1 and 1000",
        ));
    }
    if body
        .media_max_bytes
        .is_some_and(|n| !(1..=MAX_MEDIA_BYTES).contains(&n))
    {
        return Err(ApiError::invalid_field(
            "media_max_bytes",
            format!("must be between 1 and {MAX_MEDIA_BYTES}"),
        ));
    }
    if body
        .media_retention_seconds
        .is_some_and(|n| !MEDIA_RETENTION_RANGE.contains(&n))
    {
        return Err(ApiError::invalid_field(
            "media_retention_seconds",
            format!(
                "must be between {} and {}",
                MEDIA_RETENTION_RANGE.start(),
                MEDIA_RETENTION_RANGE.end()
            ),
        ));
    }
    if body.channel.is_some() && body.senders.is_some() {
        return Err(ApiError::invalid_field(
            "senders",
            "give either channel or senders, not both",
        ));
    }
    validate_senders(&body.senders())?;
    if let Some(Err((field, reason))) = body.ai.as_ref().map(|ai| ai.validate()) {
        return Err(ApiError::invalid_field(field, reason));
    }
    body.worker_token_sha256
        .iter()
        .enumerate()
        .map(|(i, hash)| {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hash, &mut digest)
                .map(|_| digest)
                .map_err(|_| {
                    ApiError::invalid_field(
                        &format!("worker_token_sha256[{i}]"),
                        "must be 64 hex characters",
                    )
                })
        })
        .collect()
}

/// Each sender well-formed, at most [`MAX_SENDERS`], none listed twice.
fn validate_senders(senders: &[(String, &ChannelUpsert)]) -> Result<(), ApiError> {
    if senders.len() > MAX_SENDERS {
        return Err(ApiError::invalid_field(
            "senders",
            format!("at most {MAX_SENDERS} senders"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (field, sender) in senders {
        let id = sender.sender.trim();
        if id.is_empty() || id.len() > 64 {
            return Err(ApiError::invalid_field(
                &format!("{field}.sender"),
                "must be 1 to 64 characters",
            ));
        }
        if !seen.insert((sender.provider.as_str(), normalize_address(id).to_owned())) {
            return Err(ApiError::invalid_field(
                &format!("{field}.sender"),
                "is listed twice",
            ));
        }
        if sender.label.as_deref().is_some_and(|label| {
            label.trim().is_empty()
                || label.chars().count() > 64
                || label.chars().any(char::is_control)
        }) {
            return Err(ApiError::invalid_field(
                &format!("{field}.label"),
                "must be 1 to 64 characters without control characters",
            ));
        }
        if sender.display_number.as_deref().is_some_and(|number| {
            number.is_empty()
                || number.len() > 32
                || !number
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b" +-()".contains(&b))
        }) {
            return Err(ApiError::invalid_field(
                &format!("{field}.display_number"),
                "must be 1 to 32 characters of digits, spaces, '+', '-', '(' and ')'",
            ));
        }
        if let Err((key, reason)) = sender.credentials.validate() {
            return Err(ApiError::invalid_field(
                &format!("{field}.credentials.{key}"),
                reason,
            ));
        }
    }
    Ok(())
}

#[utoipa::path(put, path = "/admin/tenants/{slug}", tag = "admin", params(("slug" = String, Path)),
    request_body = TenantUpsert, security(("admin_token" = [])),
    responses((status = 200, body = TenantView, description = "updated"), (status = 201, body = TenantView, description = "created"),
              (status = 400), (status = 401), (status = 403), (status = 409, description = "`worker_token_in_use`: a worker token belongs to another tenant; `sender_in_use`: a sender belongs to another tenant (named in the message); nothing written"), (status = 413)))]
pub async fn put_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<TenantUpsert>,
) -> Result<Response, ApiError> {
    validate_slug(&slug)?;
    let digests = validate(&body)?;
    let senders = body.senders();
    let base_urls = senders
        .iter()
        .map(|(field, sender)| sender_base_url(&state, field, sender))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tx = state.pool.begin().await?;
    let (id, created): (Uuid, bool) = sqlx::query_as(
        "INSERT INTO tenants (slug, display_name, status, max_attempts, max_concurrency, media_max_bytes,
                              media_retention_seconds)
         VALUES ($1, $2, $3, COALESCE($4, 5), COALESCE($5, 50), $6, $7)
         ON CONFLICT (slug) DO UPDATE SET display_name = EXCLUDED.display_name, status = EXCLUDED.status,
             max_attempts = EXCLUDED.max_attempts, max_concurrency = EXCLUDED.max_concurrency,
             media_max_bytes = EXCLUDED.media_max_bytes,
             media_retention_seconds = EXCLUDED.media_retention_seconds, updated_at = now()
         RETURNING id, (xmax = 0)",
    )
    .bind(&slug)
    .bind(body.display_name.trim())
    .bind(body.status.as_str())
    .bind(body.max_attempts)
    .bind(body.max_concurrency)
    .bind(body.media_max_bytes)
    .bind(body.media_retention_seconds)
    .fetch_one(&mut *tx)
    .await?;
    replace_worker_tokens(&mut tx, id, &digests).await?;
    let keys = state.tenants.keys();
    let webhook = body
        .webhook_secret
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| keys.seal(&webhook_context(id), s.expose().as_bytes()));
    sqlx::query(
        "UPDATE tenants SET webhook_secret_sealed = $2, webhook_secret_key_id = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(webhook.as_ref().map(|w| &w.0))
    .bind(webhook.as_ref().map(|w| &w.1))
    .execute(&mut *tx)
    .await?;
    replace_senders(&state, &mut tx, id, &senders, base_urls).await?;
    let unknown = crate::ai::settings::store(&mut tx, id, body.ai.as_ref()).await?;
    if !unknown.is_empty() {
        return Err(ApiError::invalid_field(
            "ai.data_views",
            format!("no such view: {}", unknown.join(", ")),
        ));
    }
    tx.commit().await?;
    state.tenants.invalidate(&slug);
    // Resumed tenants may have a backlog waiting for their workers.
    state.queue.wake(&[id]);
    let view = view(&state, &slug).await?.ok_or_else(ApiError::internal)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn replace_worker_tokens(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    digests: &[[u8; 32]],
) -> Result<(), ApiError> {
    let digests: Vec<Vec<u8>> = digests.iter().map(|d| d.to_vec()).collect();
    sqlx::query("DELETE FROM worker_tokens WHERE tenant_id = $1 AND NOT (token_sha256 = ANY($2))")
        .bind(tenant)
        .bind(&digests)
        .execute(&mut *tx)
        .await?;
    let taken: Option<i32> = sqlx::query_scalar(
        "WITH added AS (
             INSERT INTO worker_tokens (token_sha256, tenant_id) SELECT d, $1 FROM UNNEST($2::bytea[]) AS d
             ON CONFLICT (token_sha256) DO NOTHING RETURNING 1)
         SELECT 1 FROM worker_tokens WHERE token_sha256 = ANY($2) AND tenant_id <> $1 LIMIT 1",
    )
    .bind(tenant)
    .bind(&digests)
    .fetch_optional(&mut *tx)
    .await?;
    if taken.is_some() {
        return Err(ApiError::conflict(
            "worker_token_in_use",
            "a worker token hash already belongs to another tenant",
        ));
    }
    Ok(())
}

/// The sender's base URL as stored: its origin, when the engine's allow-list takes it. Tenant
/// input must not choose where the engine connects with the tenant's credentials.
fn sender_base_url(
    state: &AppState,
    field: &str,
    sender: &ChannelUpsert,
) -> Result<Option<String>, ApiError> {
    let Some(url) = &sender.base_url else {
        return Ok(None);
    };
    state
        .settings
        .dispatch
        .policy
        .base_urls
        .resolve(sender.provider.provider(), Some(url))
        .map(|base| Some(base.origin()))
        .map_err(|refused| ApiError::invalid_field(&format!("{field}.base_url"), refused))
}

async fn replace_senders(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    senders: &[(String, &ChannelUpsert)],
    base_urls: Vec<Option<String>>,
) -> Result<(), ApiError> {
    let new: Vec<NewSender> = senders
        .iter()
        .zip(base_urls)
        .map(|((_, sender), base_url)| NewSender {
            provider: sender.provider.provider(),
            sender: &sender.sender,
            base_url,
            label: sender.label.as_deref().map(str::trim),
            display_number: sender.display_number.as_deref(),
            waba_id: sender.credentials.waba_id.as_deref(),
            secrets: &sender.credentials,
        })
        .collect();
    crate::engine::senders::replace(tx, state.tenants.keys(), tenant, &new)
        .await
        .map_err(|error| match error {
            ReplaceError::Taken { .. } => ApiError::conflict(
                "sender_in_use",
                format!("{error}; a sender belongs to at most one tenant, nothing was written"),
            ),
            ReplaceError::Database(db) => ApiError::from(db),
        })
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: Uuid,
    display_name: String,
    status: String,
    max_attempts: i32,
    max_concurrency: i32,
    media_max_bytes: Option<i64>,
    media_retention_seconds: Option<i64>,
    worker_tokens: i64,
    webhook_secret_set: bool,
    last_worker_seen_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn view(state: &AppState, slug: &str) -> Result<Option<TenantView>, ApiError> {
    let row: Option<TenantRow> = sqlx::query_as(
        "SELECT t.id, t.display_name, t.status, t.max_attempts, t.max_concurrency, t.media_max_bytes,
                t.media_retention_seconds, (SELECT count(*) FROM worker_tokens w WHERE w.tenant_id = t.id) AS worker_tokens,
                t.webhook_secret_sealed IS NOT NULL AS webhook_secret_set, t.last_worker_seen_at,
                t.created_at, t.updated_at
         FROM tenants t WHERE t.slug = $1",
    )
    .bind(slug)
    .fetch_optional(&state.pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    state.tenants.invalidate(slug);
    let tenant = crate::engine::webhooks::tenant_or_404(state, slug).await?;
    let channel = tenant.channel.as_ref().map(ChannelView::of);
    let senders = tenant.senders.iter().map(ChannelView::of).collect();
    Ok(Some(TenantView {
        id: row.id,
        slug: slug.to_owned(),
        display_name: row.display_name,
        status: if row.status == "suspended" {
            TenantState::Suspended
        } else {
            TenantState::Active
        },
        max_attempts: row.max_attempts,
        max_concurrency: row.max_concurrency,
        media_max_bytes: row.media_max_bytes,
        media_retention_seconds: row.media_retention_seconds,
        worker_tokens: row.worker_tokens,
        webhook_secret_set: row.webhook_secret_set,
        channel,
        senders,
        last_worker_seen_at: row.last_worker_seen_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

#[utoipa::path(get, path = "/admin/tenants/{slug}", tag = "admin", params(("slug" = String, Path)),
    security(("admin_token" = [])), responses((status = 200, body = TenantView), (status = 401), (status = 403), (status = 404)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    validate_slug(&slug)?;
    view(&state, &slug)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown tenant `{slug}`")))
}

#[utoipa::path(delete, path = "/admin/tenants/{slug}", tag = "admin", params(("slug" = String, Path)),
    security(("admin_token" = [])), responses((status = 204, description = "deleted with all its data"), (status = 401), (status = 403), (status = 404)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    validate_slug(&slug)?;
    // The media rows go with the tenant; their objects in the object store are named first
    // (the CTE reads the rows as they were before the delete) and removed after.
    let (deleted, objects): (i64, Vec<String>) = sqlx::query_as(
        "WITH objects AS (
             SELECT m.object_key FROM media m JOIN tenants t ON t.id = m.tenant_id
             WHERE t.slug = $1 AND m.object_key IS NOT NULL),
         gone AS (DELETE FROM tenants WHERE slug = $1 RETURNING id)
         SELECT (SELECT count(*) FROM gone), array(SELECT object_key FROM objects)",
    )
    .bind(&slug)
    .fetch_one(&state.pool)
    .await?;
    state.settings.media.blobs.delete(&objects).await;
    state.tenants.invalidate(&slug);
    if deleted == 0 {
        return Err(ApiError::not_found(format!("unknown tenant `{slug}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// How to release a conversation blocked by a dead-lettered job.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// `retry`: the dead job is queued again with fresh attempts, ahead of the rest of the
    /// conversation. `skip`: the dead job stays dead and the rest of the conversation flows.
    pub action: ReleaseAction,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseAction {
    Retry,
    Skip,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReleaseResult {
    pub conversation_key: String,
    pub job_id: Uuid,
    pub action: &'static str,
}

#[utoipa::path(post, path = "/admin/tenants/{slug}/conversations/{conversation}/release", tag = "admin",
    params(("slug" = String, Path), ("conversation" = String, Path, description = "the conversation key (the contact)")),
    request_body = ReleaseBody, security(("admin_token" = [])),
    responses((status = 200, body = ReleaseResult), (status = 400), (status = 401), (status = 403), (status = 404, description = "no such blocked conversation")))]
pub async fn release_conversation(
    State(state): State<AppState>,
    _: Admin,
    Path((slug, conversation)): Path<(String, String)>,
    JsonBody(body): JsonBody<ReleaseBody>,
) -> Result<Json<ReleaseResult>, ApiError> {
    let tenant = crate::engine::webhooks::tenant_or_404(&state, &slug).await?;
    // Conversation keys are stored without U+0000 (PostgreSQL cannot store it).
    let conversation = crate::engine::text::without_nul(&conversation).into_owned();
    let mut tx = state.pool.begin().await?;
    let job_id: Option<Uuid> = sqlx::query_scalar(
        "DELETE FROM blocked_conversations WHERE tenant_id = $1 AND conversation_key = $2 RETURNING job_id",
    )
    .bind(tenant.id)
    .bind(&conversation)
    .fetch_optional(&mut *tx)
    .await?;
    let job_id = job_id.ok_or_else(|| ApiError::not_found("this conversation is not blocked"))?;
    if body.action == ReleaseAction::Retry {
        sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_after = now(), last_error = NULL, updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND status = 'dead'",
        )
        .bind(job_id)
        .bind(tenant.id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    state.queue.wake(&[tenant.id]);
    let action = if body.action == ReleaseAction::Retry {
        "retry"
    } else {
        "skip"
    };
    tracing::info!(tenant = %slug, %job_id, action, "conversation released");
    Ok(Json(ReleaseResult {
        conversation_key: conversation,
        job_id,
        action,
    }))
}
