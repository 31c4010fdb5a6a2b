//! What a worker does with a leased job: heartbeat, complete, fail. Every call is fenced by the
//! lease token, so a worker whose lease expired (and whose job went to someone else) gets 409.
//! Completions are batched across requests: one statement and one commit for many.

use crate::engine::metrics::Metrics;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

const MAX_COMPLETION_BATCH: usize = 1000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaseError {
    #[error("no such job for this tenant")]
    NotFound,
    #[error("the lease is stale: the job is no longer held with this token")]
    Stale,
    #[error("the database is unavailable")]
    Unavailable,
    #[error("database error")]
    Internal,
}

impl From<sqlx::Error> for LeaseError {
    fn from(error: sqlx::Error) -> Self {
        if crate::engine::error::is_unavailable(&error) {
            tracing::warn!(%error, "lease operation: database unavailable");
            Self::Unavailable
        } else {
            tracing::error!(%error, "lease operation failed");
            Self::Internal
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again; runs no earlier than this.
    Retry { run_after: DateTime<Utc> },
    /// Dead-lettered: out of attempts (its conversation blocked until released), or failed
    /// permanently (nothing blocked).
    Dead,
}

/// When a failed job may run again, as the worker asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retry {
    /// The queue's exponential backoff, until the tenant's attempts are used up.
    Backoff,
    /// No earlier than this from now (still within the attempts).
    After(Duration),
    /// Never: the job cannot succeed (bad input), so it is dead-lettered at once.
    Never,
}

pub struct Completion {
    tenant_id: Uuid,
    job_id: Uuid,
    lease_token: Uuid,
    reply: oneshot::Sender<Result<(), LeaseError>>,
}

pub fn start_completer(pool: PgPool, metrics: Arc<Metrics>) -> mpsc::Sender<Completion> {
    let (sender, mut receiver) = mpsc::channel::<Completion>(8192);
    tokio::spawn(async move {
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_COMPLETION_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            complete_batch(&pool, &metrics, batch).await;
        }
    });
    sender
}

pub async fn complete(
    completer: &mpsc::Sender<Completion>,
    tenant_id: Uuid,
    job_id: Uuid,
    lease_token: Uuid,
) -> Result<(), LeaseError> {
    let (reply, answer) = oneshot::channel();
    let completion = Completion {
        tenant_id,
        job_id,
        lease_token,
        reply,
    };
    completer
        .send(completion)
        .await
        .map_err(|_| LeaseError::Unavailable)?;
    answer.await.map_err(|_| LeaseError::Unavailable)?
}

async fn complete_batch(pool: &PgPool, metrics: &Metrics, batch: Vec<Completion>) {
    let ids: Vec<Uuid> = batch.iter().map(|c| c.job_id).collect();
    let tokens: Vec<Uuid> = batch.iter().map(|c| c.lease_token).collect();
    let tenants: Vec<Uuid> = batch.iter().map(|c| c.tenant_id).collect();
    let done: Result<Vec<(Uuid, Uuid, i64)>, sqlx::Error> =
        sqlx::query_as(include_str!("sql/complete.sql"))
            .bind(&ids)
            .bind(&tokens)
            .bind(&tenants)
            .fetch_all(pool)
            .await;
    let done: HashSet<(Uuid, Uuid)> = match done {
        Ok(rows) => rows.into_iter().map(|(id, token, _)| (id, token)).collect(),
        Err(error) => {
            let error = LeaseError::from(error);
            for completion in batch {
                let _ = completion.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    metrics.completed.inc_by(done.len() as u64);
    // A job completed twice in one batch: only the first request wins.
    let mut answered = HashSet::new();
    for completion in batch {
        let key = (completion.job_id, completion.lease_token);
        let result = if done.contains(&key) && answered.insert(key) {
            Ok(())
        } else {
            Err(why_not(pool, completion.tenant_id, completion.job_id).await)
        };
        let _ = completion.reply.send(result);
    }
}

/// Tells a missing job (or another tenant's) from a stale lease.
async fn why_not(pool: &PgPool, tenant_id: Uuid, job_id: Uuid) -> LeaseError {
    let exists: Result<Option<i32>, sqlx::Error> =
        sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = $1 AND tenant_id = $2")
            .bind(job_id)
            .bind(tenant_id)
            .fetch_optional(pool)
            .await;
    match exists {
        Ok(Some(_)) => LeaseError::Stale,
        Ok(None) => LeaseError::NotFound,
        Err(error) => LeaseError::from(error),
    }
}

pub async fn fail(
    pool: &PgPool,
    tenant_id: Uuid,
    job_id: Uuid,
    lease_token: Uuid,
    error: &str,
    retry: Retry,
) -> Result<FailOutcome, LeaseError> {
    let (retry_after, permanent) = match retry {
        Retry::Backoff => (None, false),
        Retry::After(delay) => (Some(delay), false),
        Retry::Never => (None, true),
    };
    let row: Option<(String, DateTime<Utc>, i64)> = sqlx::query_as(include_str!("sql/fail.sql"))
        .bind(job_id)
        .bind(tenant_id)
        .bind(lease_token)
        .bind(error)
        .bind(retry_after.map(|d| d.as_secs_f64()))
        .bind(permanent)
        .fetch_optional(pool)
        .await?;
    match row {
        Some((status, _, _)) if status == "dead" => Ok(FailOutcome::Dead),
        Some((_, run_after, _)) => Ok(FailOutcome::Retry { run_after }),
        None => Err(why_not(pool, tenant_id, job_id).await),
    }
}

pub async fn heartbeat(
    pool: &PgPool,
    tenant_id: Uuid,
    job_id: Uuid,
    lease_token: Uuid,
    lease: Duration,
) -> Result<DateTime<Utc>, LeaseError> {
    let mut tx = pool.begin().await?;
    // Losing a heartbeat in a crash costs nothing: the lease it extended dies with the crash too.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let expires: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND lease_token = $3 AND status = 'processing'
         RETURNING lease_expires_at",
    )
    .bind(job_id)
    .bind(tenant_id)
    .bind(lease_token)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    match expires {
        Some(at) => Ok(at),
        None => Err(why_not(pool, tenant_id, job_id).await),
    }
}

/// Returns leased jobs nobody received to the queue, as if never claimed.
pub async fn give_back(
    pool: &PgPool,
    tenant_id: Uuid,
    jobs: &[(Uuid, Uuid)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.0).collect();
    let tokens: Vec<Uuid> = jobs.iter().map(|j| j.1).collect();
    sqlx::query(
        "UPDATE jobs j SET status = 'queued', attempts = j.attempts - 1, lease_token = NULL,
                lease_expires_at = NULL, updated_at = now()
         FROM UNNEST($1::uuid[], $2::uuid[]) AS g(id, token)
         WHERE j.id = g.id AND j.lease_token = g.token AND j.tenant_id = $3 AND j.status = 'processing'",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(tenant_id)
    .execute(pool)
    .await?;
    Ok(())
}
