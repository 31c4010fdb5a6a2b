//! The batch variant of the worker loop, for workers that handle several jobs at a time:
//! one call completes what the worker finished and takes up to `max` next jobs.
//! Same rules as the single-job calls: the bearer token decides the tenant, every completion is
//! fenced by its lease token, completions are committed before the next jobs are claimed.

use crate::engine::auth::Worker;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::queue::{ClaimedJob, LeaseError};
use crate::engine::state::AppState;
use crate::engine::worker_api::{NextJobQuery, parse_wait, tenant_taking_jobs};
use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The most jobs one call completes or takes.
pub const MAX_BATCH: usize = 100;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct BatchQuery {
    /// Jobs to take, 1 to 100. Default 10.
    max: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Jobs the worker finished (at most 100), each with the lease it holds.
    #[serde(default)]
    pub complete: Vec<Finished>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finished {
    pub job_id: Uuid,
    pub lease_token: Uuid,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchResult {
    /// The completions accepted.
    pub completed: Vec<Uuid>,
    /// The completions refused, each with why (`stale_lease` or `not_found`).
    pub rejected: Vec<Rejected>,
    /// The next jobs (empty when none came within the wait).
    pub jobs: Vec<ClaimedJob>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub job_id: Uuid,
    pub error: &'static str,
}

fn parse_max(value: Option<&str>) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(10);
    };
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_BATCH).contains(n))
        .ok_or_else(|| ApiError::invalid_field("max", "must be a whole number from 1 to 100"))
}

/// Completes the jobs listed, then takes up to `max` next jobs, waiting up to `wait` for the
/// first. A bad `max`, `wait` or body is 400 and completes nothing; a database failure while
/// completing is 503 and claims nothing.
#[utoipa::path(post, path = "/queue/batch", tag = "queue", params(BatchQuery, NextJobQuery),
    request_body = BatchBody, security(("worker_token" = [])),
    responses((status = 200, body = BatchResult),
              (status = 400), (status = 401), (status = 403, description = "tenant suspended (the completions were made)"),
              (status = 503)))]
pub async fn batch(
    State(state): State<AppState>,
    worker: Worker,
    Query(query): Query<BatchQuery>,
    Query(wait): Query<NextJobQuery>,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<Json<BatchResult>, ApiError> {
    let max = parse_max(query.max.as_deref())?;
    let wait = parse_wait(wait.wait.as_deref(), state.settings.max_wait)?;
    if body.complete.len() > MAX_BATCH {
        return Err(ApiError::invalid_field(
            "complete",
            "at most 100 jobs per call",
        ));
    }
    let finished: Vec<(Uuid, Uuid)> = body
        .complete
        .iter()
        .map(|f| (f.job_id, f.lease_token))
        .collect();
    let outcomes = state.queue.complete_many(worker.tenant_id, &finished).await;
    let mut result = BatchResult {
        completed: Vec::new(),
        rejected: Vec::new(),
        jobs: Vec::new(),
    };
    for ((job_id, _), outcome) in finished.into_iter().zip(outcomes) {
        match outcome {
            Ok(()) => result.completed.push(job_id),
            Err(LeaseError::Stale) => result.rejected.push(Rejected {
                job_id,
                error: "stale_lease",
            }),
            Err(LeaseError::NotFound) => result.rejected.push(Rejected {
                job_id,
                error: "not_found",
            }),
            Err(other) => return Err(other.into()),
        }
    }
    let tenant = tenant_taking_jobs(&state, &worker).await?;
    result.jobs = state
        .queue
        .next_jobs(tenant.id, tenant.max_concurrency, max, wait)
        .await?;
    Ok(Json(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn max_is_validated() {
        assert_eq!(parse_max(None).unwrap(), 10);
        assert_eq!(parse_max(Some("1")).unwrap(), 1);
        assert_eq!(parse_max(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", "2.5", ""] {
            assert_eq!(
                parse_max(Some(bad)).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
