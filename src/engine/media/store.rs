//! The `media` table: rows made with their job, claimed for a download, and completed.

use super::blobs::Placement;
use super::payload::{FAILED, PENDING};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// How long a claimed download may run before another fetcher may take the row again.
const LEASE: Duration = Duration::from_secs(180);
/// Longest error kept for a media row (the payload shows it too).
const MAX_ERROR_CHARS: usize = 500;

/// Inserts the media rows the payloads of `jobs` (all newly stored) list. Returns (tenant, id)
/// of each row made.
pub async fn insert_for_jobs(
    tx: &mut sqlx::PgConnection,
    jobs: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(include_str!("sql/insert_for_jobs.sql"))
        .bind(jobs)
        .fetch_all(&mut *tx)
        .await
}

/// A media row taken for one download.
#[derive(Debug, sqlx::FromRow)]
pub struct Claim {
    pub slug: String,
    pub sender_id: Option<Uuid>,
    pub provider: String,
    pub provider_ref: String,
    pub declared_type: Option<String>,
    pub attempts: i32,
    pub media_max_bytes: Option<i64>,
}

/// Claims the row when it is pending and due; `None` when another fetcher has it, it is done,
/// or its next try is not due yet.
pub async fn claim(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<Claim>, sqlx::Error> {
    let mut tx = redoable(pool).await?;
    let claim = sqlx::query_as(include_str!("sql/claim.sql"))
        .bind(tenant)
        .bind(id)
        .bind(LEASE.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(claim)
}

/// A transaction whose commit does not wait for the disk. For the fetcher's own writes only:
/// each can be lost in a crash at no cost — the row is then pending (or claimed until the lease
/// ends) and downloaded again — and any later durable commit (a worker completing the job)
/// flushes them first, the log being sequential. Waiting for a flush per file would take the
/// commit rate the webhooks' group commit needs.
async fn redoable(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Pending rows whose try is due, oldest first (after a restart, a retry's backoff, or a
/// notification the fetcher's channel had no room for).
pub async fn due(pool: &PgPool, limit: i64) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, id FROM media
         WHERE status = 'pending' AND next_attempt_at <= now()
         ORDER BY next_attempt_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The downloaded file, as stored.
pub struct Stored<'a> {
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub bytes: &'a [u8],
    /// In the row, or in the object store (then the row keeps the key, not the bytes).
    pub placement: &'a super::blobs::Placement,
}

/// Records the downloaded file; `false` when its row is gone (the job deleted meanwhile).
pub async fn stored(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
    file: Stored<'_>,
) -> Result<bool, sqlx::Error> {
    let mut tx = redoable(pool).await?;
    let exists: bool = sqlx::query_scalar(include_str!("sql/stored.sql"))
        .bind(tenant)
        .bind(id)
        .bind(file.content_type)
        .bind(file.sha256)
        .bind(file.bytes.len() as i64)
        .bind(match file.placement {
            Placement::Row => Some(file.bytes),
            Placement::Object(_) => None,
        })
        .bind(match file.placement {
            Placement::Row => None,
            Placement::Object(key) => Some(key.as_str()),
        })
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(exists)
}

/// A failed try: retried after `retry_after` when given, else failed for good.
pub async fn unfetched(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
    error: &str,
    retry_after: Option<Duration>,
) -> Result<(), sqlx::Error> {
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    let status = if retry_after.is_some() {
        PENDING
    } else {
        FAILED
    };
    sqlx::query(include_str!("sql/unfetched.sql"))
        .bind(tenant)
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(retry_after.unwrap_or_default().as_secs_f64())
        .execute(pool)
        .await?;
    Ok(())
}

/// A media row as a worker may see it.
#[derive(sqlx::FromRow)]
pub struct MediaRow {
    pub status: String,
    pub content_type: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<Vec<u8>>,
    pub error: Option<String>,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub filename: Option<String>,
    /// Where the bytes are when the object store keeps them.
    pub object_key: Option<String>,
}

/// The tenant's media row `id`; another tenant's id is `None`, like a missing one.
pub async fn read(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<MediaRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, content_type, sha256, bytes, error, next_attempt_at, filename, object_key
         FROM media WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await
}
