//! `/routes/tenants/{slug}/pulse/campaigns`: create, read (with per-run counts by outcome),
//! pause, resume, cancel, start a run now, and list a run's recipients. Admin token or the
//! tenant's worker token. Every refusal is a 4xx naming the field, with nothing written.

use super::spec::{self, Audience, CampaignIn, Checked, Schedule};
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::policy::caller::TenantCaller;
use crate::engine::policy::category::Category;
use crate::engine::policy::{settings, templates};
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    pub id: Uuid,
    pub name: String,
    /// draft, scheduled, running, paused, completed or cancelled.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    #[schema(value_type = Object)]
    pub audience: Value,
    #[schema(value_type = Object)]
    pub content: Value,
    pub category: String,
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<Value>,
    pub time_zone: String,
    pub per_minute: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub runs: Vec<RunView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: Uuid,
    pub scheduled_for: DateTime<Utc>,
    /// sending, paused, completed or cancelled.
    pub state: String,
    pub planned: i32,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: Counts,
}

/// A run's recipients by outcome.
#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct Counts {
    /// Planned, not yet through the policy.
    pub pending: i64,
    /// Queued and not yet confirmed sent by the provider (queued, sending, accepted).
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    /// Failed messages by error code.
    pub failed: BTreeMap<String, i64>,
    /// Skipped by the policy, by reason (opted_out, frequency_capped, cancelled, ...).
    pub skipped: BTreeMap<String, i64>,
}

#[derive(sqlx::FromRow)]
struct CampaignRow {
    id: Uuid,
    name: String,
    state: String,
    paused_reason: Option<String>,
    audience: Value,
    template_name: Option<String>,
    template_language: Option<String>,
    template_params: Value,
    brief: Option<String>,
    content_language: Option<String>,
    category: String,
    schedule_kind: Option<String>,
    run_at: Option<DateTime<Utc>>,
    weekly_day: Option<i16>,
    weekly_time: Option<NaiveTime>,
    time_zone: String,
    per_minute: i32,
    next_run_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: Uuid,
    scheduled_for: DateTime<Utc>,
    state: String,
    planned: i32,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

#[utoipa::path(post, path = "/routes/tenants/{slug}/pulse/campaigns", tag = "campaigns", request_body = CampaignIn,
    params(("slug" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 201, body = CampaignView),
              (status = 400, description = "invalid_body naming the field (schedule.at in the past, audience.contacts empty, time_zone, ...)"),
              (status = 401), (status = 403), (status = 404),
              (status = 422, description = "unknown_template, template_not_approved, no_approved_template (personalized), unknown_segment or empty_audience, naming the field")))]
pub async fn create(
    State(state): State<AppState>,
    caller: TenantCaller,
    JsonBody(body): JsonBody<CampaignIn>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let tenant = caller.tenant.id;
    let spec::Valid {
        contacts,
        weekly,
        content,
    } = spec::validate(&body, Utc::now())?;
    let time_zone = match &body.time_zone {
        Some(zone) => {
            settings::check_time_zone(&state.pool, "time_zone", zone).await?;
            zone.clone()
        }
        None => settings::load(&state.pool, tenant).await?.time_zone,
    };
    let category = content_category(&state, tenant, &content).await?;
    if let Audience::Recent { days } = &body.audience {
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM contact_windows WHERE tenant_id = $1
                            AND last_inbound_at > now() - make_interval(days => $2))",
        )
        .bind(tenant)
        .bind(days)
        .fetch_one(&state.pool)
        .await?;
        if !any {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty_audience",
                format!("audience: no contact wrote in the last {days} days"),
            ));
        }
    }
    if let Audience::Segment { name } = &body.audience
        && !super::segments::exists(&state.pool, tenant, name).await?
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_segment",
            format!("audience.name: the tenant has no segment `{name}`"),
        ));
    }
    let audience = match &body.audience {
        Audience::Recent { days } => json!({"kind": "recent", "days": days}),
        Audience::List { .. } => json!({"kind": "list", "contacts": contacts}),
        Audience::Segment { name } => json!({"kind": "segment", "name": name}),
    };
    let (kind, run_at) = match &body.schedule {
        Some(Schedule::Once { at }) => (Some("once"), Some(*at)),
        Some(Schedule::Weekly { .. }) => (Some("weekly"), None),
        None => (None, None),
    };
    let (template, brief, language) = match &content {
        Checked::Template(t) => (Some(*t), None, None),
        Checked::Personalized { brief, language } => (None, Some(*brief), *language),
    };
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (tenant_id, name, state, audience, template_name, template_language, template_params,
                                category, schedule_kind, run_at, weekly_day, weekly_time, time_zone, per_minute, next_run_at,
                                brief, content_language)
         VALUES ($1, $2, CASE WHEN $9::text IS NULL THEN 'draft' ELSE 'scheduled' END, $3, $4, $5, $6, $7, $9, $10,
                 $11, $12, $8, $13,
                 CASE $9::text WHEN 'once' THEN $10
                               WHEN 'weekly' THEN flomastr_next_weekly($8, $11::int, $12, now()) END,
                 $14, $15)
         RETURNING id",
    )
    .bind(tenant)
    .bind(body.name.trim())
    .bind(&audience)
    .bind(template.map(|t| &t.name))
    .bind(template.map(|t| &t.language))
    .bind(json!(template.map_or(&Vec::new(), |t| &t.params)))
    .bind(category)
    .bind(&time_zone)
    .bind(kind)
    .bind(run_at)
    .bind(weekly.as_ref().map(|w| w.day))
    .bind(weekly.as_ref().map(|w| w.time))
    .bind(body.pacing.per_minute)
    .bind(brief)
    .bind(language)
    .fetch_one(&state.pool)
    .await?;
    tracing::info!(tenant = %caller.tenant.slug, campaign = %id, actor = caller.actor.as_str(), "campaign created");
    Ok((StatusCode::CREATED, Json(view(&state, tenant, id).await?)))
}

/// The campaign's category, once its content is known to be sendable: one template must be
/// APPROVED (its catalog category decides); personalized content needs an APPROVED template
/// of the language to reach contacts outside the 24-hour window, and is marketing.
async fn content_category(
    state: &AppState,
    tenant: Uuid,
    content: &Checked<'_>,
) -> Result<&'static str, ApiError> {
    match content {
        Checked::Template(template) => {
            let entry = templates::lookup(&state.pool, tenant, &template.name, &template.language)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_template",
                        "content.template.name: no such template (name and language) in the tenant's catalog",
                    )
                })?;
            if entry.status != "APPROVED" {
                return Err(templates::not_approved(&template.name, &entry));
            }
            Ok(match Category::of_template(&entry.category) {
                Category::Marketing => "marketing",
                _ => "utility",
            })
        }
        Checked::Personalized { language, .. } => {
            let catalog = crate::ai::templates::load(&state.pool, tenant).await?;
            if crate::ai::pulse::eligible(&catalog, *language).is_empty() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "no_approved_template",
                    format!(
                        "content.personalized.language: the tenant's catalog has no APPROVED template{}",
                        language.map_or(String::new(), |l| format!(" in `{l}`"))
                    ),
                ));
            }
            Ok("marketing")
        }
    }
}

#[utoipa::path(get, path = "/routes/tenants/{slug}/pulse/campaigns/{id}", tag = "campaigns",
    params(("slug" = String, Path), ("id" = Uuid, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = CampaignView), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String)>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id(&path.1)?;
    Ok(Json(view(&state, caller.tenant.id, id).await?))
}

#[utoipa::path(post, path = "/routes/tenants/{slug}/pulse/campaigns/{id}/{action}", tag = "campaigns",
    params(("slug" = String, Path), ("id" = Uuid, Path), ("action" = String, Path, description = "pause, resume or cancel")),
    security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = CampaignView), (status = 400), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "not possible in the campaign's state, or (resume) its template is still not approved")))]
pub async fn action(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<CampaignView>, ApiError> {
    let (_, id, action) = path;
    let id = campaign_id(&id)?;
    let tenant = caller.tenant.id;
    let current = row(&state, tenant, id).await?;
    let mut tx = state.pool.begin().await?;
    match action.as_str() {
        "pause" => {
            if !super::pause::campaign(
                &mut tx,
                id,
                &format!("paused by the {}", caller.actor.as_str()),
            )
            .await?
            {
                return Err(conflict(&current.state, "paused"));
            }
        }
        "resume" => resume(&state, &mut tx, &current, tenant).await?,
        "cancel" => cancel(&mut tx, &current).await?,
        "runs" => start_now(&mut tx, &current, tenant).await?,
        _ => {
            return Err(ApiError::not_found(
                "no such campaign action (pause, resume, cancel, runs)",
            ));
        }
    }
    tx.commit().await?;
    Ok(Json(view(&state, tenant, id).await?))
}

async fn resume(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    current: &CampaignRow,
    tenant: Uuid,
) -> Result<(), ApiError> {
    if current.state != "paused" {
        return Err(conflict(&current.state, "resumed"));
    }
    if let (Some(name), Some(language)) = (&current.template_name, &current.template_language)
        && let Some(entry) = templates::lookup(&state.pool, tenant, name, language).await?
        && entry.status != "APPROVED"
    {
        return Err(ApiError::conflict(
            "template_not_approved",
            format!(
                "the campaign's template is {}; it resumes once the template is APPROVED",
                entry.status
            ),
        )
        .with_details(json!({"template_status": entry.status})));
    }
    let resumed = sqlx::query("UPDATE campaign_runs SET state = 'sending', next_batch_at = now() WHERE campaign_id = $1 AND state = 'paused'")
        .bind(current.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE campaigns SET state = CASE WHEN $2 THEN 'running' WHEN next_run_at IS NULL THEN 'draft' ELSE 'scheduled' END,
                paused_reason = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(current.id)
    .bind(resumed.rows_affected() > 0)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn cancel(tx: &mut sqlx::PgConnection, current: &CampaignRow) -> Result<(), ApiError> {
    if matches!(current.state.as_str(), "completed" | "cancelled") {
        return Err(conflict(&current.state, "cancelled"));
    }
    let runs: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE campaign_runs SET state = 'cancelled', finished_at = now()
         WHERE campaign_id = $1 AND state IN ('sending', 'paused') RETURNING id",
    )
    .bind(current.id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE campaign_recipients SET state = 'skipped', reason = 'cancelled', updated_at = now()
         WHERE run_id = ANY($1) AND state = 'pending'",
    )
    .bind(&runs)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE campaigns SET state = 'cancelled', next_run_at = NULL, updated_at = now() WHERE id = $1")
        .bind(current.id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A run now (a draft's first, or an extra one): refused while another run is active.
async fn start_now(
    tx: &mut sqlx::PgConnection,
    current: &CampaignRow,
    tenant: Uuid,
) -> Result<(), ApiError> {
    if matches!(
        current.state.as_str(),
        "running" | "paused" | "completed" | "cancelled"
    ) {
        return Err(ApiError::conflict(
            "run_in_progress",
            format!(
                "runs: the campaign is {}; runs of one campaign never overlap",
                current.state
            ),
        ));
    }
    let run: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO campaign_runs (campaign_id, tenant_id, scheduled_for, state, planned)
         VALUES ($1, $2, now(), 'sending', 0) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(current.id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let run = run.ok_or_else(|| {
        ApiError::conflict("run_in_progress", "runs: a run of this campaign is active")
    })?;
    super::plan(tx, run, tenant, &current.audience).await?;
    sqlx::query("UPDATE campaigns SET state = 'running', updated_at = now() WHERE id = $1")
        .bind(current.id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct RecipientView {
    pub contact: String,
    /// pending, queued or skipped.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

#[utoipa::path(get, path = "/routes/tenants/{slug}/pulse/campaigns/{id}/runs/{run}/recipients", tag = "campaigns",
    params(("slug" = String, Path), ("id" = Uuid, Path), ("run" = Uuid, Path),
           ("after" = Option<String>, Query, description = "the last contact of the previous page"),
           ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = [RecipientView]), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn recipients(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String, String)>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<RecipientView>>, ApiError> {
    let (_, id, run) = path;
    let id = campaign_id(&id)?;
    let run: Uuid = run
        .parse()
        .map_err(|_| ApiError::invalid_field("run", "not a run id (UUID)"))?;
    let limit = page.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 1000"));
    }
    row(&state, caller.tenant.id, id).await?;
    let rows: Vec<RecipientView> = sqlx::query_as(
        "SELECT r.contact, r.state, r.reason, r.message_id, m.status, m.error_code
         FROM campaign_recipients r
         JOIN campaign_runs cr ON cr.id = r.run_id AND cr.campaign_id = $2
         LEFT JOIN outbound_messages m ON m.id = r.message_id
         WHERE r.run_id = $1 AND r.contact > COALESCE($3, '')
         ORDER BY r.contact LIMIT $4",
    )
    .bind(run)
    .bind(id)
    .bind(&page.after)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(rows))
}

fn campaign_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::invalid_field("id", "not a campaign id (UUID)"))
}

fn conflict(state: &str, wanted: &str) -> ApiError {
    ApiError::conflict(
        "invalid_state",
        format!("a {state} campaign cannot be {wanted}"),
    )
}

async fn row(state: &AppState, tenant: Uuid, id: Uuid) -> Result<CampaignRow, ApiError> {
    sqlx::query_as(
        "SELECT id, name, state, paused_reason, audience, template_name, template_language, template_params, brief,
                content_language, category,
                schedule_kind, run_at, weekly_day, weekly_time, time_zone, per_minute, next_run_at, created_at
         FROM campaigns WHERE id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("no such campaign"))
}

async fn view(state: &AppState, tenant: Uuid, id: Uuid) -> Result<CampaignView, ApiError> {
    let c = row(state, tenant, id).await?;
    let runs: Vec<RunRow> = sqlx::query_as(
        "SELECT id, scheduled_for, state, planned, started_at, finished_at FROM campaign_runs
         WHERE campaign_id = $1 ORDER BY started_at DESC LIMIT 20",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    let mut views = Vec::with_capacity(runs.len());
    for run in runs {
        views.push(RunView {
            counts: counts(state, run.id).await?,
            id: run.id,
            scheduled_for: run.scheduled_for,
            state: run.state,
            planned: run.planned,
            started_at: run.started_at,
            finished_at: run.finished_at,
        });
    }
    let schedule = match (
        c.schedule_kind.as_deref(),
        c.run_at,
        c.weekly_day,
        c.weekly_time,
    ) {
        (Some("once"), Some(at), _, _) => Some(json!({"kind": "once", "at": at})),
        (Some("weekly"), _, Some(day), Some(time)) => Some(json!({"kind": "weekly",
            "weekday": super::spec::WEEKDAYS.get(usize::try_from(day).unwrap_or(0)).copied().unwrap_or("sunday"),
            "time": time.format("%H:%M").to_string()})),
        _ => None,
    };
    Ok(CampaignView {
        id: c.id,
        name: c.name,
        state: c.state,
        paused_reason: c.paused_reason,
        audience: c.audience,
        content: match (c.template_name, c.brief) {
            (Some(name), _) => json!({"template": {"name": name, "language": c.template_language,
                                                   "params": c.template_params}}),
            (None, brief) => {
                json!({"personalized": {"brief": brief, "language": c.content_language}})
            }
        },
        category: c.category,
        schedule,
        time_zone: c.time_zone,
        per_minute: c.per_minute,
        next_run_at: c.next_run_at,
        created_at: c.created_at,
        runs: views,
    })
}

/// One group of `sql/counts.sql`: recipient state, skip reason, message status, error code.
#[derive(sqlx::FromRow)]
struct CountRow {
    state: String,
    reason: Option<String>,
    status: Option<String>,
    error_code: Option<String>,
    n: i64,
}

async fn counts(state: &AppState, run: Uuid) -> Result<Counts, ApiError> {
    let rows: Vec<CountRow> = sqlx::query_as(include_str!("sql/counts.sql"))
        .bind(run)
        .fetch_all(&state.pool)
        .await?;
    let mut counts = Counts::default();
    for row in rows {
        let CountRow {
            state: recipient,
            reason,
            status,
            error_code: code,
            n,
        } = row;
        match (recipient.as_str(), status.as_deref()) {
            ("pending", _) => counts.pending += n,
            ("skipped", _) => {
                *counts
                    .skipped
                    .entry(reason.unwrap_or_default())
                    .or_default() += n
            }
            (_, Some("sent")) => counts.sent += n,
            (_, Some("delivered")) => counts.delivered += n,
            (_, Some("read")) => counts.read += n,
            (_, Some("failed")) => *counts.failed.entry(code.unwrap_or_default()).or_default() += n,
            _ => counts.queued += n,
        }
    }
    Ok(counts)
}
