//! Health, queue depth and metrics.

use crate::engine::error::ApiError;
use crate::engine::metrics::DepthLabels;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeMap;

/// Jobs per status.
pub type Depth = BTreeMap<String, i64>;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database cannot be reached.
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
    pub database: &'static str,
    /// Jobs per tenant slug and status.
    #[schema(value_type = Object)]
    pub queue: BTreeMap<String, Depth>,
    /// Jobs per status, all tenants.
    #[schema(value_type = Object)]
    pub totals: Depth,
}

async fn depth(state: &AppState) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.slug, j.status, count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id
         GROUP BY t.slug, j.status ORDER BY 1, 2",
    )
    .fetch_all(&state.pool)
    .await
}

#[utoipa::path(get, path = "/", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health, description = "the database is unreachable")))]
pub async fn root(State(state): State<AppState>) -> Response {
    match depth(&state).await {
        Ok(rows) => {
            let mut queue: BTreeMap<String, Depth> = BTreeMap::new();
            let mut totals = Depth::new();
            for (slug, status, count) in rows {
                *totals.entry(status.clone()).or_default() += count;
                queue.entry(slug).or_default().insert(status, count);
            }
            Json(health("ok", "ok", queue, totals)).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "health: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(health(
                    "degraded",
                    "unavailable",
                    BTreeMap::new(),
                    Depth::new(),
                )),
            )
                .into_response()
        }
    }
}

fn health(
    status: &'static str,
    database: &'static str,
    queue: BTreeMap<String, Depth>,
    totals: Depth,
) -> Health {
    Health {
        status,
        service: "flomastr-engine",
        version: env!("CARGO_PKG_VERSION"),
        database,
        queue,
        totals,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoutesHealth {
    pub status: &'static str,
    pub database: &'static str,
}

#[utoipa::path(get, path = "/routes/health", tag = "health",
    responses((status = 200, body = RoutesHealth), (status = 503, body = RoutesHealth)))]
pub async fn routes_health(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => Json(RoutesHealth {
            status: "ok",
            database: "ok",
        })
        .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(RoutesHealth {
                status: "degraded",
                database: "unavailable",
            }),
        )
            .into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Depth is read at scrape time; a scrape while the database is down still shows the counters.
    if let Ok(rows) = depth(&state).await {
        state.metrics.depth.clear();
        for (tenant, status, count) in rows {
            state
                .metrics
                .depth
                .get_or_create(&DepthLabels { tenant, status })
                .set(count);
        }
    }
    let body = state.metrics.encode();
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
