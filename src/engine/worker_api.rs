//! The queue as workers see it. The bearer token decides the tenant: a worker can never name,
//! see or touch another tenant's jobs (another tenant's job id answers 404, like a missing one).

use crate::engine::auth::Worker;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::queue::{ClaimedJob, FailOutcome, LeaseError, Retry};
use crate::engine::state::AppState;
use crate::engine::tenants::{Tenant, TenantState};
use crate::engine::webhooks::tenant_or_404;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct NextJobQuery {
    /// Seconds to wait for a job (long poll), 0 to the engine's maximum. Default 0.
    pub wait: Option<String>,
}

#[utoipa::path(get, path = "/queue/next-job", tag = "queue", params(NextJobQuery),
    security(("worker_token" = [])),
    responses((status = 200, body = ClaimedJob), (status = 204, description = "no job within the wait"),
              (status = 400), (status = 401), (status = 403, description = "tenant suspended"), (status = 503)))]
pub async fn next_job(
    State(state): State<AppState>,
    worker: Worker,
    Query(query): Query<NextJobQuery>,
) -> Result<Response, ApiError> {
    let wait = parse_wait(query.wait.as_deref(), state.settings.max_wait)?;
    take_next(&state, &worker, wait).await
}

/// The tenant's next job within `wait`: 200 with the job, 204 when none came.
async fn take_next(
    state: &AppState,
    worker: &Worker,
    wait: Duration,
) -> Result<Response, ApiError> {
    let tenant = tenant_taking_jobs(state, worker).await?;
    match state
        .queue
        .next_job(tenant.id, tenant.max_concurrency, wait)
        .await?
    {
        Some(job) => Ok(Json(job).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// The worker's tenant, unless it is suspended (403); the poll is recorded.
pub async fn tenant_taking_jobs(
    state: &AppState,
    worker: &Worker,
) -> Result<std::sync::Arc<Tenant>, ApiError> {
    let tenant = tenant_or_404(state, &worker.tenant_slug).await?;
    if tenant.state == TenantState::Suspended {
        return Err(ApiError::forbidden(
            "tenant_suspended",
            "the tenant is suspended; its jobs are held until it is resumed",
        ));
    }
    state.worker_seen.polled(tenant.id).await;
    Ok(tenant)
}

pub fn parse_wait(value: Option<&str>, max: Duration) -> Result<Duration, ApiError> {
    let Some(value) = value else {
        return Ok(Duration::ZERO);
    };
    let seconds: f64 = value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| ApiError::invalid_field("wait", "must be a number of seconds, 0 or more"))?;
    Ok(Duration::from_secs_f64(seconds).min(max))
}

/// The lease a worker holds, as received from next-job.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    pub lease_token: Uuid,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    pub lease_token: Uuid,
    /// What went wrong (kept as the job's last error, at most 2000 characters).
    #[serde(default)]
    pub error: Option<String>,
    /// Retry no earlier than this many seconds from now, instead of the exponential backoff.
    #[serde(default)]
    pub retry_after_seconds: Option<f64>,
    /// The job can never succeed (bad input, a 4xx from the tenant's logic): dead-letter it at
    /// once, without retries and without blocking the conversation's later messages.
    #[serde(default)]
    pub permanent: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobState {
    pub job_id: Uuid,
    /// `completed`, `queued` (will be retried) or `dead` (dead-lettered), or `processing` after a heartbeat.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

fn job_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid_field("id", "not a job id (UUID)"))
}

impl From<LeaseError> for ApiError {
    fn from(error: LeaseError) -> Self {
        match error {
            LeaseError::NotFound => ApiError::not_found("no such job"),
            LeaseError::Stale => ApiError::conflict(
                "stale_lease",
                "the lease is no longer held with this token (it expired, or the job was completed)",
            ),
            LeaseError::Unavailable => {
                ApiError::unavailable("the database is unavailable; retry shortly")
            }
            LeaseError::Internal => ApiError::internal(),
        }
    }
}

#[utoipa::path(post, path = "/queue/jobs/{id}/complete", tag = "queue", params(("id" = Uuid, Path)),
    request_body = LeaseBody, security(("worker_token" = [])),
    responses((status = 200, body = JobState), (status = 400), (status = 401), (status = 404), (status = 409, description = "stale lease")))]
pub async fn complete(
    State(state): State<AppState>,
    worker: Worker,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<LeaseBody>,
) -> Result<Json<JobState>, ApiError> {
    let id = job_id(&id)?;
    state
        .queue
        .complete(worker.tenant_id, id, body.lease_token)
        .await?;
    Ok(Json(JobState {
        job_id: id,
        status: "completed",
        run_after: None,
        lease_expires_at: None,
    }))
}

/// Completes a job and takes the tenant's next one in the same call: one round trip per job
/// instead of two for a worker that loops. The completion is committed before the next job is
/// claimed, so the conversation's following message is eligible at once. A stale lease is 409
/// and claims nothing; a bad `wait` is 400 and completes nothing.
#[utoipa::path(post, path = "/queue/jobs/{id}/complete-and-next", tag = "queue",
    params(("id" = Uuid, Path), NextJobQuery), request_body = LeaseBody, security(("worker_token" = [])),
    responses((status = 200, body = ClaimedJob, description = "completed; the next job"),
              (status = 204, description = "completed; no job within the wait"),
              (status = 400), (status = 401), (status = 403, description = "tenant suspended (the job was completed)"),
              (status = 404), (status = 409, description = "stale lease"), (status = 503)))]
pub async fn complete_and_next(
    State(state): State<AppState>,
    worker: Worker,
    Path(id): Path<String>,
    Query(query): Query<NextJobQuery>,
    JsonBody(body): JsonBody<LeaseBody>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let wait = parse_wait(query.wait.as_deref(), state.settings.max_wait)?;
    state
        .queue
        .complete(worker.tenant_id, id, body.lease_token)
        .await?;
    take_next(&state, &worker, wait).await
}

#[utoipa::path(post, path = "/queue/jobs/{id}/fail", tag = "queue", params(("id" = Uuid, Path)),
    request_body = FailBody, security(("worker_token" = [])),
    responses((status = 200, body = JobState), (status = 400), (status = 401), (status = 404), (status = 409, description = "stale lease")))]
pub async fn fail(
    State(state): State<AppState>,
    worker: Worker,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FailBody>,
) -> Result<Json<JobState>, ApiError> {
    let id = job_id(&id)?;
    let retry = match (body.retry_after_seconds, body.permanent) {
        (None, false) => Retry::Backoff,
        (None, true) => Retry::Never,
        (Some(_), true) => {
            return Err(ApiError::invalid_field(
                "retry_after_seconds",
                "cannot be given with permanent: true (a permanent failure is never retried)",
            ));
        }
        (Some(s), false) if s.is_finite() && (0.0..=86_400.0 * 7.0).contains(&s) => {
            Retry::After(Duration::from_secs_f64(s))
        }
        (Some(_), false) => {
            return Err(ApiError::invalid_field(
                "retry_after_seconds",
                "must be between 0 and 604800",
            ));
        }
    };
    let error = body.error.as_deref().unwrap_or("failed by the worker");
    let outcome = state
        .queue
        .fail(worker.tenant_id, id, body.lease_token, error, retry)
        .await?;
    Ok(Json(match outcome {
        FailOutcome::Retry { run_after } => JobState {
            job_id: id,
            status: "queued",
            run_after: Some(run_after),
            lease_expires_at: None,
        },
        FailOutcome::Dead => JobState {
            job_id: id,
            status: "dead",
            run_after: None,
            lease_expires_at: None,
        },
    }))
}

#[utoipa::path(post, path = "/queue/jobs/{id}/heartbeat", tag = "queue", params(("id" = Uuid, Path)),
    request_body = LeaseBody, security(("worker_token" = [])),
    responses((status = 200, body = JobState), (status = 400), (status = 401), (status = 404), (status = 409, description = "stale lease")))]
pub async fn heartbeat(
    State(state): State<AppState>,
    worker: Worker,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<LeaseBody>,
) -> Result<Json<JobState>, ApiError> {
    let id = job_id(&id)?;
    let expires = state
        .queue
        .heartbeat(worker.tenant_id, id, body.lease_token)
        .await?;
    Ok(Json(JobState {
        job_id: id,
        status: "processing",
        run_after: None,
        lease_expires_at: Some(expires),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_clamped_and_validated() {
        let max = Duration::from_secs(30);
        assert_eq!(parse_wait(None, max).unwrap(), Duration::ZERO);
        assert_eq!(
            parse_wait(Some("2.5"), max).unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(parse_wait(Some("999"), max).unwrap(), max);
        for bad in ["-1", "soon", "NaN", "inf", ""] {
            assert_eq!(
                parse_wait(Some(bad), max).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
