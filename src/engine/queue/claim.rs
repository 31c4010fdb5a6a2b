//! Leasing jobs to workers (the SQL lives in the `flomastr_claim` function, migration 0005).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// A job as a worker receives it from `GET /queue/next-job`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClaimedJob {
    pub job_id: Uuid,
    /// The message as queued: the seed's fields (`from`, `message`, `tenant_id`, `timestamp`)
    /// plus the provider's details.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Always `processing`.
    pub status: &'static str,
    /// Which delivery this is, from 1.
    pub attempt: i32,
    pub max_attempts: i32,
    /// The lease: send it back with heartbeat, complete and fail. A stale token gets 409.
    pub lease_token: Uuid,
    pub lease_expires_at: DateTime<Utc>,
    /// The conversation (the tenant's contact) this job belongs to.
    pub conversation_key: String,
    #[serde(skip)]
    pub runnable_since: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    payload: serde_json::Value,
    attempts: i32,
    max_attempts: i32,
    lease_token: Uuid,
    lease_expires_at: DateTime<Utc>,
    runnable_since: DateTime<Utc>,
    conversation_key: String,
}

pub async fn claim(
    pool: &PgPool,
    tenant_id: Uuid,
    limit: usize,
    cap: i32,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as("SELECT * FROM flomastr_claim($1, $2, $3, $4)")
        .bind(tenant_id)
        .bind(i32::try_from(limit).unwrap_or(i32::MAX))
        .bind(lease.as_secs_f64())
        .bind(cap)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ClaimedJob {
            job_id: r.id,
            payload: r.payload,
            status: "processing",
            attempt: r.attempts,
            max_attempts: r.max_attempts,
            lease_token: r.lease_token,
            lease_expires_at: r.lease_expires_at,
            conversation_key: r.conversation_key,
            runnable_since: r.runnable_since,
        })
        .collect())
}
