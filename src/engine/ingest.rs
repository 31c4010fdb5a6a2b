//! The durable inbound path: webhook handlers hand their jobs and reports here and get an answer
//! only after the rows are committed. Concurrent requests share one transaction (group commit):
//! a writer takes everything waiting, inserts it with one statement per table, commits once,
//! then answers every request in the batch.

use crate::engine::error::{ApiError, is_unavailable};
use crate::engine::providers::StatusReport;
use crate::engine::tenants::normalize_address;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// Rows per transaction at most; beyond this a batch is split.
const MAX_BATCH_ROWS: usize = 2000;
/// Writers committing in parallel: while one waits for its commit, another gathers the next batch.
const WRITERS: usize = 2;
/// Channel used to tell other engine replicas (and ourselves) that tenants have new jobs.
pub const JOBS_CHANNEL: &str = "flomastr_jobs";

#[derive(Clone, Debug)]
pub struct NewJob {
    pub tenant_id: Uuid,
    pub payload: serde_json::Value,
    pub conversation_key: String,
    pub dedup_key: String,
    pub provider_timestamp: DateTime<Utc>,
    pub max_attempts: i32,
}

#[derive(Clone, Debug)]
pub struct NewReport {
    pub tenant_id: Uuid,
    pub report: StatusReport,
}

/// What one request hands over.
#[derive(Default, Debug)]
pub struct Submission {
    pub jobs: Vec<NewJob>,
    pub reports: Vec<NewReport>,
}

/// The fate of one submitted job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobOutcome {
    pub job_id: Uuid,
    pub duplicate: bool,
}

type Reply = oneshot::Sender<Result<Vec<JobOutcome>, ApiError>>;

/// Told which tenants got new jobs, after each commit.
pub type CommitHook = Arc<dyn Fn(&[Uuid]) + Send + Sync>;

/// Handle to the writers. Cloning is cheap.
#[derive(Clone)]
pub struct Ingestor {
    sender: mpsc::Sender<(Submission, Reply)>,
}

impl Ingestor {
    /// Starts the writers. `on_commit` is told which tenants got new jobs after each commit.
    pub fn start(pool: PgPool, on_commit: CommitHook) -> Self {
        let (sender, receiver) = mpsc::channel::<(Submission, Reply)>(4096);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(writer(pool.clone(), receiver.clone(), on_commit.clone()));
        }
        Self { sender }
    }

    /// Stores a submission durably; returns one outcome per job, in order.
    pub async fn submit(&self, submission: Submission) -> Result<Vec<JobOutcome>, ApiError> {
        if submission.jobs.is_empty() && submission.reports.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((submission, reply))
            .await
            .map_err(|_| ApiError::unavailable("the engine is shutting down"))?;
        answer
            .await
            .map_err(|_| ApiError::unavailable("the engine is shutting down"))?
    }
}

async fn writer(
    pool: PgPool,
    receiver: Arc<Mutex<mpsc::Receiver<(Submission, Reply)>>>,
    on_commit: CommitHook,
) {
    while let Some(batch) = next_batch(&receiver).await {
        let (submissions, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match write_batch(&pool, &submissions).await {
            Ok((outcomes, tenants)) => {
                on_commit(&tenants);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                let api_error = if is_unavailable(&error) {
                    tracing::warn!(%error, "ingest: database unavailable");
                    ApiError::unavailable("the database is unavailable; nothing was stored, retry")
                } else {
                    tracing::error!(%error, "ingest failed");
                    ApiError::internal()
                };
                for reply in replies {
                    let _ = reply.send(Err(api_error.clone()));
                }
            }
        }
    }
}

/// Waits for one submission, then takes whatever else is already waiting, up to the row limit.
async fn next_batch(
    receiver: &Mutex<mpsc::Receiver<(Submission, Reply)>>,
) -> Option<Vec<(Submission, Reply)>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut rows = first.0.jobs.len() + first.0.reports.len();
    let mut batch = vec![first];
    while rows < MAX_BATCH_ROWS {
        let Ok(next) = receiver.try_recv() else { break };
        rows += next.0.jobs.len() + next.0.reports.len();
        batch.push(next);
    }
    Some(batch)
}

/// One transaction for many requests. Returns each request's outcomes and the tenants that got new jobs.
async fn write_batch(
    pool: &PgPool,
    submissions: &[Submission],
) -> Result<(Vec<Vec<JobOutcome>>, Vec<Uuid>), sqlx::Error> {
    let jobs: Vec<&NewJob> = submissions.iter().flat_map(|s| &s.jobs).collect();
    let reports: Vec<&NewReport> = submissions.iter().flat_map(|s| &s.reports).collect();
    let mut tx = pool.begin().await?;
    let ids = insert_jobs(&mut tx, &jobs).await?;
    insert_reports(&mut tx, &reports).await?;
    open_windows(&mut tx, &jobs).await?;
    apply_reports(&mut tx, &reports).await?;
    let mut tenants: Vec<Uuid> = jobs
        .iter()
        .filter(|j| {
            matches!(
                ids.get(&(j.tenant_id, j.dedup_key.clone())),
                Some((_, false))
            )
        })
        .map(|j| j.tenant_id)
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    if !tenants.is_empty() {
        notify_tenants(&mut tx, &tenants).await?;
    }
    tx.commit().await?;
    // The same message twice in one batch: the first submission created it, later ones are duplicates.
    let mut seen = std::collections::HashSet::new();
    let outcomes = submissions
        .iter()
        .map(|s| {
            s.jobs
                .iter()
                .map(|j| {
                    let key = (j.tenant_id, j.dedup_key.clone());
                    let (job_id, stored_before) = ids[&key];
                    let repeated = !seen.insert(key);
                    JobOutcome {
                        job_id,
                        duplicate: stored_before || repeated,
                    }
                })
                .collect()
        })
        .collect();
    Ok((outcomes, tenants))
}

/// Inserts the jobs (skipping ones already stored) and returns every job's id, marking the ones
/// that were already there as duplicates.
async fn insert_jobs(
    tx: &mut sqlx::PgConnection,
    jobs: &[&NewJob],
) -> Result<HashMap<(Uuid, String), (Uuid, bool)>, sqlx::Error> {
    let mut ids = HashMap::with_capacity(jobs.len());
    if jobs.is_empty() {
        return Ok(ids);
    }
    let tenant_ids: Vec<Uuid> = jobs.iter().map(|j| j.tenant_id).collect();
    let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
    let conversations: Vec<&str> = jobs.iter().map(|j| j.conversation_key.as_str()).collect();
    let dedup_keys: Vec<&str> = jobs.iter().map(|j| j.dedup_key.as_str()).collect();
    let timestamps: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.provider_timestamp).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
    let inserted: Vec<(Uuid, String, Uuid)> = sqlx::query_as(include_str!("sql/insert_jobs.sql"))
        .bind(&tenant_ids)
        .bind(&payloads)
        .bind(&conversations)
        .bind(&dedup_keys)
        .bind(&timestamps)
        .bind(&attempts)
        .fetch_all(&mut *tx)
        .await?;
    for (tenant, key, id) in inserted {
        ids.insert((tenant, key), (id, false));
    }
    if ids.len() < jobs.len() {
        let existing: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
            "SELECT j.tenant_id, j.dedup_key, j.id FROM jobs j
             JOIN UNNEST($1::uuid[], $2::text[]) AS k(tenant_id, dedup_key)
               ON j.tenant_id = k.tenant_id AND j.dedup_key = k.dedup_key",
        )
        .bind(&tenant_ids)
        .bind(&dedup_keys)
        .fetch_all(&mut *tx)
        .await?;
        for (tenant, key, id) in existing {
            ids.entry((tenant, key)).or_insert((id, true));
        }
    }
    Ok(ids)
}

async fn insert_reports(
    tx: &mut sqlx::PgConnection,
    reports: &[&NewReport],
) -> Result<(), sqlx::Error> {
    if reports.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&NewReport) -> Option<String>| reports.iter().map(|r| f(r)).collect::<Vec<_>>();
    let tenant_ids: Vec<Uuid> = reports.iter().map(|r| r.tenant_id).collect();
    let occurred: Vec<DateTime<Utc>> = reports.iter().map(|r| r.report.occurred_at).collect();
    let permanent: Vec<bool> = reports.iter().map(|r| r.report.permanent).collect();
    let raw: Vec<&serde_json::Value> = reports.iter().map(|r| &r.report.raw).collect();
    sqlx::query(include_str!("sql/insert_reports.sql"))
        .bind(&tenant_ids)
        .bind(column(|r| Some(r.report.provider.as_str().to_owned())))
        .bind(column(|r| Some(r.report.provider_message_id.clone())))
        .bind(column(|r| Some(r.report.status.as_str().to_owned())))
        .bind(column(|r| Some(r.report.provider_status.clone())))
        .bind(&occurred)
        .bind(column(|r| r.report.error_code.clone()))
        .bind(column(|r| r.report.error_message.clone()))
        .bind(&permanent)
        .bind(&raw)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Each message from a contact (re)opens the tenant's 24-hour window to that contact.
async fn open_windows(tx: &mut sqlx::PgConnection, jobs: &[&NewJob]) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = jobs.iter().map(|j| j.tenant_id).collect();
    let contacts: Vec<&str> = jobs
        .iter()
        .map(|j| normalize_address(&j.conversation_key))
        .collect();
    let at: Vec<DateTime<Utc>> = jobs
        .iter()
        .map(|j| j.provider_timestamp.min(Utc::now()))
        .collect();
    sqlx::query(
        "INSERT INTO contact_windows (tenant_id, contact, last_inbound_at)
         SELECT tenant_id, contact, max(at) FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS w(tenant_id, contact, at)
         GROUP BY tenant_id, contact
         -- One lock order for every writer: concurrent batches cannot deadlock.
         ORDER BY tenant_id, contact
         ON CONFLICT (tenant_id, contact) DO UPDATE
         SET last_inbound_at = GREATEST(contact_windows.last_inbound_at, EXCLUDED.last_inbound_at)",
    )
    .bind(&tenants)
    .bind(&contacts)
    .bind(&at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves the messages these reports are about forward (never back).
async fn apply_reports(
    tx: &mut sqlx::PgConnection,
    reports: &[&NewReport],
) -> Result<(), sqlx::Error> {
    if reports.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = reports.iter().map(|r| r.tenant_id).collect();
    let ids: Vec<&str> = reports
        .iter()
        .map(|r| r.report.provider_message_id.as_str())
        .collect();
    sqlx::query("SELECT flomastr_apply_reports($1, $2)")
        .bind(&tenants)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Tells every engine replica which tenants have new work (payloads stay under NOTIFY's 8000 bytes).
pub async fn notify_tenants(
    tx: &mut sqlx::PgConnection,
    tenants: &[Uuid],
) -> Result<(), sqlx::Error> {
    for chunk in tenants.chunks(200) {
        let payload = chunk
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(JOBS_CHANNEL)
            .bind(payload)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
