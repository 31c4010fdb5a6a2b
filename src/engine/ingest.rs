//! The durable inbound path: webhook handlers hand their jobs and reports here and get an answer
//! only after the rows are committed. Concurrent requests share one transaction (group commit):
//! a writer takes everything waiting, writes it with as few statements as it can (a batch of
//! plain messages is one statement, committed on its own), then answers every request in it.
//!
//! No request can fail another's commit: what is handed over is first made storable (U+0000
//! removed, keys bounded), and a batch the database refuses for any reason other than being
//! unavailable is written again one request per transaction, so only the refused request fails.

use crate::engine::error::{ApiError, is_unavailable};
use crate::engine::ingest_activity::IngestActivity;
use crate::engine::media::new_rows::NewMediaRows;
use crate::engine::outbound::report_lock;
use crate::engine::policy::consent::{self, Change};
use crate::engine::policy::marketing_limit;
use crate::engine::providers::StatusReport;
use crate::engine::tenants::normalize_address;
use crate::engine::text::{strip_nul, strip_nul_json};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// Rows per transaction at most; beyond this a batch is split.
const MAX_BATCH_ROWS: usize = 2000;
/// Longest message id, contact or status name, in bytes. These are indexed, and PostgreSQL
/// refuses an index entry over about 2.7 kB; real ids are well under 100 bytes.
pub const MAX_KEY_BYTES: usize = 512;
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
    /// The consent change the message's text asks for (an opt-out or opt-in keyword), recorded
    /// in the job's transaction when the job is new (a redelivery records nothing).
    pub consent: Option<Change>,
    /// The tenant's sender the message arrived on: the contact's default sender for replies.
    pub sender_id: Option<Uuid>,
    /// The payload lists media (`payload.media[]`) to fetch once the job is committed.
    pub has_media: bool,
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

impl Submission {
    /// Makes every row storable: U+0000 removed from every text and JSON string (object keys
    /// included), and keys the database indexes refused when too long (nothing is stored then).
    fn make_storable(&mut self) -> Result<(), ApiError> {
        for job in &mut self.jobs {
            strip_nul_json(&mut job.payload);
            strip_nul(&mut job.conversation_key);
            strip_nul(&mut job.dedup_key);
            check_key_length("message_id", &job.dedup_key)?;
            check_key_length("from", &job.conversation_key)?;
        }
        for NewReport { report, .. } in &mut self.reports {
            strip_nul_json(&mut report.raw);
            for text in [&mut report.provider_message_id, &mut report.provider_status] {
                strip_nul(text);
            }
            let optional = [
                &mut report.recipient,
                &mut report.to,
                &mut report.account_id,
                &mut report.error_code,
                &mut report.error_message,
            ];
            optional.into_iter().flatten().for_each(strip_nul);
            check_key_length("message_id", &report.provider_message_id)?;
            check_key_length("status", &report.provider_status)?;
        }
        Ok(())
    }

    fn rows(&self) -> usize {
        self.jobs.len() + self.reports.len()
    }
}

fn check_key_length(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid_field(
            field,
            format!("is longer than {MAX_KEY_BYTES} bytes; nothing was stored"),
        ));
    }
    Ok(())
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

/// Told which media (tenant, media id) new jobs listed, after each commit: the media fetcher.
pub type MediaHook = Arc<dyn Fn(&[(Uuid, Uuid)]) + Send + Sync>;

/// Handle to the writers. Cloning is cheap.
#[derive(Clone)]
pub struct Ingestor {
    sender: mpsc::Sender<(Submission, Reply)>,
    activity: Arc<IngestActivity>,
}

/// What the writers tell after each commit.
#[derive(Clone)]
struct Hooks {
    on_commit: CommitHook,
    on_media: MediaHook,
}

impl Ingestor {
    /// Starts the writers. `on_commit` is told which tenants got new jobs after each commit.
    pub fn start(pool: PgPool, on_commit: CommitHook) -> Self {
        Self::start_with_media(pool, on_commit, Arc::new(|_: &[(Uuid, Uuid)]| {}))
    }

    /// [`Self::start`], and `on_media` is told which media rows new jobs created.
    pub fn start_with_media(pool: PgPool, on_commit: CommitHook, on_media: MediaHook) -> Self {
        let (sender, receiver) = mpsc::channel::<(Submission, Reply)>(4096);
        let receiver = Arc::new(Mutex::new(receiver));
        let hooks = Hooks {
            on_commit,
            on_media,
        };
        let activity = Arc::new(IngestActivity::default());
        for _ in 0..WRITERS {
            tokio::spawn(writer(
                pool.clone(),
                receiver.clone(),
                hooks.clone(),
                activity.clone(),
            ));
        }
        Self { sender, activity }
    }

    /// Whether webhook requests are queueing for a commit (background work backs off then).
    pub fn activity(&self) -> Arc<IngestActivity> {
        self.activity.clone()
    }

    /// Stores a submission durably; returns one outcome per job, in order.
    /// Refused with 400 when an id is too long to be stored; U+0000 is removed from every text.
    pub async fn submit(&self, mut submission: Submission) -> Result<Vec<JobOutcome>, ApiError> {
        if submission.rows() == 0 {
            return Ok(Vec::new());
        }
        submission.make_storable()?;
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
    hooks: Hooks,
    activity: Arc<IngestActivity>,
) {
    while let Some(batch) = next_batch(&receiver).await {
        let _writing = activity.begin(batch.len());
        let (submissions, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match write_batch(&pool, &submissions).await {
            Ok((outcomes, tenants, media)) => {
                (hooks.on_commit)(&tenants);
                if !media.is_empty() {
                    (hooks.on_media)(&media);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) if is_unavailable(&error) || submissions.len() == 1 => {
                let api_error = ingest_error(&error);
                for reply in replies {
                    let _ = reply.send(Err(api_error.clone()));
                }
            }
            Err(error) => {
                tracing::warn!(%error, requests = submissions.len(),
                    "ingest: the database refused a batch; writing its requests one by one");
                write_one_by_one(&pool, submissions, replies, &hooks).await;
            }
        }
    }
}

/// After a refused batch: each request in its own transaction, so only the one the database
/// refuses fails and the others commit and get their answers.
async fn write_one_by_one(
    pool: &PgPool,
    submissions: Vec<Submission>,
    replies: Vec<Reply>,
    hooks: &Hooks,
) {
    for (submission, reply) in submissions.into_iter().zip(replies) {
        let result = match write_batch(pool, std::slice::from_ref(&submission)).await {
            Ok((outcomes, tenants, media)) => {
                (hooks.on_commit)(&tenants);
                if !media.is_empty() {
                    (hooks.on_media)(&media);
                }
                Ok(outcomes.into_iter().next().unwrap_or_default())
            }
            Err(error) => Err(ingest_error(&error)),
        };
        let _ = reply.send(result);
    }
}

fn ingest_error(error: &sqlx::Error) -> ApiError {
    if is_unavailable(error) {
        tracing::warn!(%error, "ingest: database unavailable");
        ApiError::unavailable("the database is unavailable; nothing was stored, retry")
    } else {
        tracing::error!(%error, "ingest failed");
        ApiError::internal()
    }
}

/// Waits for one submission, then takes whatever else is already waiting, up to the row limit.
async fn next_batch(
    receiver: &Mutex<mpsc::Receiver<(Submission, Reply)>>,
) -> Option<Vec<(Submission, Reply)>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut rows = first.0.rows();
    let mut batch = vec![first];
    while rows < MAX_BATCH_ROWS {
        let Ok(next) = receiver.try_recv() else { break };
        rows += next.0.rows();
        batch.push(next);
    }
    Some(batch)
}

/// What one committed batch produced: each request's outcomes, the tenants that got new jobs,
/// and the media rows new jobs listed.
type BatchResult = (Vec<Vec<JobOutcome>>, Vec<Uuid>, Vec<(Uuid, Uuid)>);

/// One transaction for many requests. A batch of messages without reports or consent keywords
/// is one statement committed on its own; anything else runs in an explicit transaction with
/// the statements it needs.
async fn write_batch(
    pool: &PgPool,
    submissions: &[Submission],
) -> Result<BatchResult, sqlx::Error> {
    let jobs: Vec<&NewJob> = submissions.iter().flat_map(|s| &s.jobs).collect();
    let reports: Vec<&NewReport> = submissions.iter().flat_map(|s| &s.reports).collect();
    let plain = reports.is_empty() && jobs.iter().all(|j| j.consent.is_none());
    let (ids, media) = if plain {
        let mut conn = pool.acquire().await?;
        store_jobs(&mut conn, &jobs).await?
    } else {
        write_in_transaction(pool, &jobs, &reports).await?
    };
    let mut tenants: Vec<Uuid> = ids
        .iter()
        .filter(|(_, (_, stored_before))| !stored_before)
        .map(|((tenant, _), _)| *tenant)
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
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
    Ok((outcomes, tenants, media))
}

/// Each job's id (marking the ones stored before), and the media rows new jobs listed.
type Written = (HashMap<(Uuid, String), (Uuid, bool)>, Vec<(Uuid, Uuid)>);

/// Jobs with reports or consent changes: everything in one explicit transaction.
async fn write_in_transaction(
    pool: &PgPool,
    jobs: &[&NewJob],
    reports: &[&NewReport],
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let report_keys = reports
        .iter()
        .map(|r| report_lock::key(r.tenant_id, &r.report.provider_message_id))
        .collect();
    report_lock::lock(&mut tx, report_keys).await?;
    let (ids, media) = store_jobs(&mut tx, jobs).await?;
    insert_reports(&mut tx, reports).await?;
    apply_reports(&mut tx, reports).await?;
    record_consent(&mut tx, jobs, &ids).await?;
    record_reported_opt_outs(&mut tx, reports).await?;
    requeue_marketing_limited(&mut tx, reports).await?;
    tx.commit().await?;
    Ok((ids, media))
}

/// Inserts the jobs (skipping ones already stored) with their media rows, opens their contacts'
/// windows and tells the tenants that got new jobs, in one statement. Returns every job's id,
/// marking the ones that were already there as duplicates, and (tenant, id) of each media row
/// made.
async fn store_jobs(db: &mut sqlx::PgConnection, jobs: &[&NewJob]) -> Result<Written, sqlx::Error> {
    let mut ids = HashMap::with_capacity(jobs.len());
    if jobs.is_empty() {
        return Ok((ids, Vec::new()));
    }
    // Chosen here so the media rows can name their job in the same statement.
    let job_ids: Vec<Uuid> = jobs.iter().map(|_| Uuid::new_v4()).collect();
    let tenant_ids: Vec<Uuid> = jobs.iter().map(|j| j.tenant_id).collect();
    let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
    let conversations: Vec<&str> = jobs.iter().map(|j| j.conversation_key.as_str()).collect();
    let dedup_keys: Vec<&str> = jobs.iter().map(|j| j.dedup_key.as_str()).collect();
    let timestamps: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.provider_timestamp).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
    let contacts: Vec<&str> = jobs
        .iter()
        .map(|j| normalize_address(&j.conversation_key))
        .collect();
    let now = Utc::now();
    let window_times: Vec<DateTime<Utc>> = timestamps.iter().map(|t| (*t).min(now)).collect();
    let senders: Vec<Option<Uuid>> = jobs.iter().map(|j| j.sender_id).collect();
    let media = media_rows(jobs, &job_ids);
    let rows: Vec<(Uuid, Option<String>, Uuid, i64)> =
        sqlx::query_as(include_str!("sql/store_jobs.sql"))
            .bind(&job_ids)
            .bind(&tenant_ids)
            .bind(&payloads)
            .bind(&conversations)
            .bind(&dedup_keys)
            .bind(&timestamps)
            .bind(&attempts)
            .bind(&contacts)
            .bind(&window_times)
            .bind(&senders)
            .bind(JOBS_CHANNEL)
            .bind(&media.tenant_ids)
            .bind(&media.ids)
            .bind(&media.job_ids)
            .bind(&media.positions)
            .bind(&media.sender_ids)
            .bind(&media.providers)
            .bind(&media.kinds)
            .bind(&media.provider_refs)
            .bind(&media.declared_types)
            .fetch_all(&mut *db)
            .await?;
    let mut new_media = Vec::new();
    for (tenant, key, id, _) in rows {
        match key {
            Some(key) => {
                ids.insert((tenant, key), (id, false));
            }
            None => new_media.push((tenant, id)),
        }
    }
    if ids.len() < jobs.len() {
        let existing: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
            "SELECT j.tenant_id, j.dedup_key, j.id FROM jobs j
             JOIN UNNEST($1::uuid[], $2::text[]) AS k(tenant_id, dedup_key)
               ON j.tenant_id = k.tenant_id AND j.dedup_key = k.dedup_key",
        )
        .bind(&tenant_ids)
        .bind(&dedup_keys)
        .fetch_all(&mut *db)
        .await?;
        for (tenant, key, id) in existing {
            ids.entry((tenant, key)).or_insert((id, true));
        }
    }
    Ok((ids, new_media))
}

/// The media rows of the jobs that list media, from the payloads in hand (no read-back and JSON
/// parse in PostgreSQL). Rows of a job that turns out to be stored already are not inserted.
fn media_rows(jobs: &[&NewJob], job_ids: &[Uuid]) -> NewMediaRows {
    let mut rows = NewMediaRows::default();
    for (job, id) in jobs.iter().zip(job_ids).filter(|(j, _)| j.has_media) {
        rows.add(job.tenant_id, *id, job.sender_id, &job.payload);
    }
    rows
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

/// Consent changes asked for by new jobs' keywords, in the jobs' order. A job seen twice in one
/// batch, or stored before, changes nothing again.
async fn record_consent(
    tx: &mut sqlx::PgConnection,
    jobs: &[&NewJob],
    ids: &HashMap<(Uuid, String), (Uuid, bool)>,
) -> Result<(), sqlx::Error> {
    let mut seen = std::collections::HashSet::new();
    let changes: Vec<Change> = jobs
        .iter()
        .filter(|j| j.consent.is_some())
        .filter(|j| {
            let key = (j.tenant_id, j.dedup_key.clone());
            matches!(ids.get(&key), Some((_, false))) && seen.insert(key)
        })
        .filter_map(|j| j.consent.clone())
        .collect();
    consent::record(tx, &changes).await
}

/// Provider opt-out errors in failure reports (Meta 131050) opt the message's recipient out.
async fn record_reported_opt_outs(
    tx: &mut sqlx::PgConnection,
    reports: &[&NewReport],
) -> Result<(), sqlx::Error> {
    let opt_outs: Vec<&&NewReport> = reports
        .iter()
        .filter(|r| {
            r.report
                .error_code
                .as_deref()
                .is_some_and(consent::is_provider_opt_out)
        })
        .collect();
    if opt_outs.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = opt_outs.iter().map(|r| r.tenant_id).collect();
    let ids: Vec<&str> = opt_outs
        .iter()
        .map(|r| r.report.provider_message_id.as_str())
        .collect();
    consent::record_reported_opt_outs(tx, &tenants, &ids).await
}

/// Meta's per-user marketing limit (131049) in failure reports: recorded, and the message
/// queued again for after the provider's period.
async fn requeue_marketing_limited(
    tx: &mut sqlx::PgConnection,
    reports: &[&NewReport],
) -> Result<(), sqlx::Error> {
    let limited: Vec<&&NewReport> = reports
        .iter()
        .filter(|r| r.report.error_code.as_deref() == Some(marketing_limit::CODE))
        .collect();
    if limited.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = limited.iter().map(|r| r.tenant_id).collect();
    let ids: Vec<&str> = limited
        .iter()
        .map(|r| r.report.provider_message_id.as_str())
        .collect();
    marketing_limit::requeue_reported(tx, &tenants, &ids).await
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
