//! Health, readiness, queue depth and metrics. Everything here is reachable without
//! credentials, so nothing here costs more than a cached answer: the database is probed at most
//! once a second, the queue depth counted at most once per refresh period, and tenants' names
//! and counts are shown only with the admin token.

use crate::engine::depth::{Depth, DepthSnapshot};
use crate::engine::error::ApiError;
use crate::engine::metrics::{DepthLabels, TenantLabels};
use crate::engine::recent::Recent;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one answer of the database probe is reused.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A database slower than this to answer `SELECT 1` counts as unavailable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database answers, asked at most once per [`PROBE_EVERY`] whatever the traffic.
pub struct DatabaseProbe {
    pool: PgPool,
    last: Recent<bool>,
}

impl DatabaseProbe {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            last: Recent::new(PROBE_EVERY),
        }
    }

    pub async fn reachable(&self) -> bool {
        self.last
            .get(|| async {
                let probe = sqlx::query("SELECT 1").execute(&self.pool);
                match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "health: database unreachable");
                        false
                    }
                    Err(_) => {
                        tracing::warn!("health: the database did not answer in time");
                        false
                    }
                }
            })
            .await
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database cannot be reached.
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
    pub database: &'static str,
    /// Only with the admin token: jobs per tenant slug and status.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub queue: Option<BTreeMap<String, Depth>>,
    /// Only with the admin token: jobs per status, all tenants.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub totals: Option<Depth>,
    /// When `queue` and `totals` were counted (they are reused for `--depth-refresh-seconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_counted_at: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/", tag = "health",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` adds the queue depth per tenant and status")),
    responses((status = 200, body = Health), (status = 403, body = crate::engine::error::ErrorBody, description = "a token that is not the admin token"),
              (status = 503, body = Health, description = "the database is unreachable")))]
pub async fn root(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let admin = match crate::engine::auth::bearer_token(&headers) {
        None => false,
        Some(token) if state.admin_token.matches(token.as_bytes()) => true,
        Some(_) => {
            return Err(ApiError::forbidden(
                "forbidden",
                "the admin token is not valid",
            ));
        }
    };
    let reachable = state.database.reachable().await;
    let mut health = Health {
        status: if reachable { "ok" } else { "degraded" },
        service: "flomastr-engine",
        version: env!("CARGO_PKG_VERSION"),
        database: if reachable { "ok" } else { "unavailable" },
        queue: None,
        totals: None,
        queue_counted_at: None,
    };
    if admin
        && reachable
        && let Some(snapshot) = state.depth.current().await
    {
        health.queue = Some(snapshot.by_tenant.clone());
        health.totals = Some(snapshot.totals.clone());
        health.queue_counted_at = Some(snapshot.counted_at);
    }
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(health)).into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoutesHealth {
    /// `ok` (`/routes/health`) or `ready` (`/readyz`); `degraded` when the database cannot be
    /// reached; `shutting_down` once the engine stops.
    pub status: &'static str,
    pub database: &'static str,
}

#[utoipa::path(get, path = "/routes/health", tag = "health",
    responses((status = 200, body = RoutesHealth), (status = 503, body = RoutesHealth)))]
pub async fn routes_health(State(state): State<AppState>) -> Response {
    readiness(&state, "ok").await
}

/// Readiness: the database answers and the engine is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = RoutesHealth), (status = 503, body = RoutesHealth, description = "the database is unreachable or the engine is shutting down")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    readiness(&state, "ready").await
}

async fn readiness(state: &AppState, ready: &'static str) -> Response {
    let reachable = state.database.reachable().await;
    let database = if reachable { "ok" } else { "unavailable" };
    let status = match (state.shutdown.is_cancelled(), reachable) {
        (true, _) => "shutting_down",
        (false, false) => "degraded",
        (false, true) => ready,
    };
    let code = if status == ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(RoutesHealth { status, database })).into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Liveness {
    pub status: &'static str,
}

/// Liveness: the process answers. Asks nothing of the database (an outage is not cured by a
/// restart).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Liveness)))]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format; on the address of `--metrics-listen` when it is set")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // A scrape while the database is down still shows the counters and the last depth.
    if let Some(snapshot) = state.depth.current().await {
        publish_depth(&state, &snapshot);
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

fn publish_depth(state: &AppState, snapshot: &DepthSnapshot) {
    state.metrics.depth.clear();
    state.metrics.oldest_job_age.clear();
    // The age grows between counts: measured now, from when the job became runnable.
    let now = Utc::now();
    for (tenant, depth) in &snapshot.by_tenant {
        let waiting = snapshot
            .oldest_runnable
            .get(tenant)
            .map_or(0, |since| (now - *since).num_seconds().max(0));
        state
            .metrics
            .oldest_job_age
            .get_or_create(&TenantLabels {
                tenant: tenant.clone(),
            })
            .set(waiting);
        for (status, jobs) in depth {
            state
                .metrics
                .depth
                .get_or_create(&DepthLabels {
                    tenant: tenant.clone(),
                    status: status.clone(),
                })
                .set(*jobs);
        }
    }
}
