//! A tenant's send policy (`GET|PUT /routes/tenants/{slug}/policy`): consent keywords, quiet
//! hours in the tenant's time zone with a maximum hold, and the marketing frequency cap. A PUT
//! replaces the whole policy; a tenant that never set one has the defaults.

use super::caller::TenantCaller;
use super::keywords::{Keywords, MAX_KEYWORD_CHARS, normalize};
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{NaiveTime, Timelike};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Keywords per list at most.
pub const MAX_KEYWORDS: usize = 50;
const DEFAULT_MAX_HOLD_SECONDS: i32 = 12 * 3600;
const DEFAULT_CAP_SECONDS: i32 = 7 * 86400;

/// The policy as set and shown.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendPolicy {
    /// Words that opt a contact out when they are the whole message, in addition to `STOP` and
    /// `UNSUBSCRIBE` (e.g. `BAJA`, `ARRET`, `СТОП`). At most 50 of at most 40 characters.
    #[serde(default)]
    pub opt_out_keywords: Vec<String>,
    /// Words that opt a contact back in, in addition to `START`.
    #[serde(default)]
    pub opt_in_keywords: Vec<String>,
    /// The tenant's IANA time zone (`Europe/Madrid`), for quiet hours and weekly campaigns.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Local hours during which utility and marketing sends are held. Absent: none.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// A held send expires (fails with `hold_expired`) rather than go out later than this after
    /// it was first held: 1 to 604800 seconds, default 43200 (12 hours).
    #[serde(default = "default_max_hold")]
    pub max_hold_seconds: i32,
    /// At most this many marketing messages per contact per rolling period. Absent: no cap.
    #[serde(default)]
    pub marketing_cap: Option<MarketingCap>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM` (or `HH:MM:SS`), local time: the quiet window starts.
    pub start: String,
    /// `HH:MM` (or `HH:MM:SS`): sends go out again. Before `start`: the window crosses midnight.
    pub end: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketingCap {
    /// Messages per contact per period, 1 to 1000.
    pub max: i32,
    /// The rolling period in seconds (1 to 31536000; default 604800, a week).
    #[serde(default = "default_cap_seconds")]
    pub period_seconds: i32,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn default_max_hold() -> i32 {
    DEFAULT_MAX_HOLD_SECONDS
}

fn default_cap_seconds() -> i32 {
    DEFAULT_CAP_SECONDS
}

impl Default for SendPolicy {
    fn default() -> Self {
        Self {
            opt_out_keywords: Vec::new(),
            opt_in_keywords: Vec::new(),
            time_zone: utc(),
            quiet_hours: None,
            max_hold_seconds: DEFAULT_MAX_HOLD_SECONDS,
            marketing_cap: None,
        }
    }
}

impl SendPolicy {
    pub fn keywords(&self) -> Keywords {
        Keywords::new(&self.opt_out_keywords, &self.opt_in_keywords)
    }

    /// Everything but the time zone (checked against the database's zone list).
    fn validate(&self) -> Result<(Option<NaiveTime>, Option<NaiveTime>), ApiError> {
        for (field, list) in [
            ("opt_out_keywords", &self.opt_out_keywords),
            ("opt_in_keywords", &self.opt_in_keywords),
        ] {
            if list.len() > MAX_KEYWORDS {
                return Err(ApiError::invalid_field(
                    field,
                    format!("at most {MAX_KEYWORDS} keywords"),
                ));
            }
            if let Some(index) = list.iter().position(|k| normalize(k).is_none()) {
                return Err(ApiError::invalid_field(
                    &format!("{field}[{index}]"),
                    format!("must be 1 to {MAX_KEYWORD_CHARS} characters besides white space"),
                ));
            }
        }
        if !(1..=604_800).contains(&self.max_hold_seconds) {
            return Err(ApiError::invalid_field(
                "max_hold_seconds",
                "must be 1 to 604800",
            ));
        }
        if let Some(cap) = &self.marketing_cap {
            if !(1..=1000).contains(&cap.max) {
                return Err(ApiError::invalid_field(
                    "marketing_cap.max",
                    "must be 1 to 1000",
                ));
            }
            if !(1..=31_536_000).contains(&cap.period_seconds) {
                return Err(ApiError::invalid_field(
                    "marketing_cap.period_seconds",
                    "must be 1 to 31536000",
                ));
            }
        }
        let Some(quiet) = &self.quiet_hours else {
            return Ok((None, None));
        };
        let start = parse_time("quiet_hours.start", &quiet.start)?;
        let end = parse_time("quiet_hours.end", &quiet.end)?;
        if start == end {
            return Err(ApiError::invalid_field(
                "quiet_hours.end",
                "must differ from quiet_hours.start",
            ));
        }
        Ok((Some(start), Some(end)))
    }
}

fn parse_time(field: &str, value: &str) -> Result<NaiveTime, ApiError> {
    NaiveTime::parse_from_str(value, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(value, "%H:%M"))
        .map_err(|_| ApiError::invalid_field(field, "must be a local time HH:MM (00:00 to 23:59)"))
}

/// Whether PostgreSQL knows the IANA zone (its list is what quiet hours are computed with).
pub async fn check_time_zone(
    db: impl PgExecutor<'_>,
    field: &str,
    zone: &str,
) -> Result<(), ApiError> {
    if zone.is_empty() || zone.len() > 64 {
        return Err(ApiError::invalid_field(
            field,
            "must be an IANA time zone such as Europe/Madrid",
        ));
    }
    let known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)")
            .bind(zone)
            .fetch_one(db)
            .await?;
    if known {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            "is not a known IANA time zone (e.g. Europe/Madrid, America/Mexico_City, UTC)",
        ))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    opt_out_keywords: Vec<String>,
    opt_in_keywords: Vec<String>,
    time_zone: String,
    quiet_start: Option<NaiveTime>,
    quiet_end: Option<NaiveTime>,
    max_hold_seconds: i32,
    marketing_cap: Option<i32>,
    marketing_cap_seconds: i32,
}

/// The tenant's policy, or the defaults.
pub async fn load(db: impl PgExecutor<'_>, tenant: Uuid) -> Result<SendPolicy, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT opt_out_keywords, opt_in_keywords, time_zone, quiet_start, quiet_end, max_hold_seconds,
                marketing_cap, marketing_cap_seconds
         FROM send_policies WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else {
        return Ok(SendPolicy::default());
    };
    let hhmm = |t: NaiveTime| {
        let format = if t.second() == 0 { "%H:%M" } else { "%H:%M:%S" };
        t.format(format).to_string()
    };
    Ok(SendPolicy {
        opt_out_keywords: row.opt_out_keywords,
        opt_in_keywords: row.opt_in_keywords,
        time_zone: row.time_zone,
        quiet_hours: row.quiet_start.zip(row.quiet_end).map(|(s, e)| QuietHours {
            start: hhmm(s),
            end: hhmm(e),
        }),
        max_hold_seconds: row.max_hold_seconds,
        marketing_cap: row.marketing_cap.map(|max| MarketingCap {
            max,
            period_seconds: row.marketing_cap_seconds,
        }),
    })
}

#[utoipa::path(get, path = "/routes/tenants/{slug}/policy", tag = "policy",
    params(("slug" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = SendPolicy), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<Json<SendPolicy>, ApiError> {
    Ok(Json(load(&state.pool, caller.tenant.id).await?))
}

#[utoipa::path(put, path = "/routes/tenants/{slug}/policy", tag = "policy", request_body = SendPolicy,
    params(("slug" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = SendPolicy), (status = 400, description = "invalid_body naming the field; nothing written"),
              (status = 401), (status = 403), (status = 404)))]
pub async fn put(
    State(state): State<AppState>,
    caller: TenantCaller,
    JsonBody(policy): JsonBody<SendPolicy>,
) -> Result<Json<SendPolicy>, ApiError> {
    let (quiet_start, quiet_end) = policy.validate()?;
    check_time_zone(&state.pool, "time_zone", &policy.time_zone).await?;
    let cap = policy.marketing_cap.as_ref();
    sqlx::query(
        "INSERT INTO send_policies (tenant_id, opt_out_keywords, opt_in_keywords, time_zone, quiet_start,
                                    quiet_end, max_hold_seconds, marketing_cap, marketing_cap_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (tenant_id) DO UPDATE
         SET opt_out_keywords = EXCLUDED.opt_out_keywords, opt_in_keywords = EXCLUDED.opt_in_keywords,
             time_zone = EXCLUDED.time_zone, quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
             max_hold_seconds = EXCLUDED.max_hold_seconds, marketing_cap = EXCLUDED.marketing_cap,
             marketing_cap_seconds = EXCLUDED.marketing_cap_seconds, updated_at = now()",
    )
    .bind(caller.tenant.id)
    .bind(&policy.opt_out_keywords)
    .bind(&policy.opt_in_keywords)
    .bind(&policy.time_zone)
    .bind(quiet_start)
    .bind(quiet_end)
    .bind(policy.max_hold_seconds)
    .bind(cap.map(|c| c.max))
    .bind(cap.map_or(DEFAULT_CAP_SECONDS, |c| c.period_seconds))
    .execute(&state.pool)
    .await?;
    // Inbound messages are classified with the keywords cached with the tenant: this replica
    // reads them again at once, the others within the tenant cache's lifetime.
    state.tenants.invalidate(&caller.tenant.slug);
    tracing::info!(tenant = %caller.tenant.slug, actor = caller.actor.as_str(), "send policy set");
    Ok(Json(policy))
}
