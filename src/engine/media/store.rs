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

/// A media row taken for one download.
#[derive(Debug, sqlx::FromRow)]
pub struct Claim {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub slug: String,
    pub sender_id: Option<Uuid>,
    pub provider: String,
    pub provider_ref: String,
    pub declared_type: Option<String>,
    pub attempts: i32,
    pub media_max_bytes: Option<i64>,
}

/// Claims up to `limit` pending rows whose try is due, oldest first, in one statement: new
/// files, retries whose backoff ended, and rows an engine that stopped had claimed. Rows another
/// fetcher (or replica) is claiming at the same moment are skipped, not waited for.
pub async fn claim_due(pool: &PgPool, limit: i64) -> Result<Vec<Claim>, sqlx::Error> {
    let mut tx = redoable(pool).await?;
    let claims = sqlx::query_as(include_str!("sql/claim_due.sql"))
        .bind(limit)
        .bind(LEASE.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(claims)
}

/// A transaction whose commit does not wait for the disk. For the fetcher's own writes only:
/// each can be lost in a crash at no cost — the row is then pending (or claimed until the lease
/// ends) and downloaded again — and any later durable commit (a worker completing the job)
/// flushes them first, the log being sequential. Waiting for a flush per batch would take the
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

/// A downloaded file, as stored.
pub struct StoredFile {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub content_type: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
    /// In the row, or in the object store (then the row keeps the key, not the bytes).
    pub placement: Placement,
}

/// A failed try: retried after `retry_after` when given, else failed for good.
pub struct Unfetched {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub error: String,
    pub retry_after: Option<Duration>,
}

/// Records many downloads' outcomes in one transaction (one statement for the stored files, one
/// for the failed tries, each telling the jobs' payloads). Returns the stored files whose rows
/// are gone (their jobs deleted meanwhile): their objects must go too.
pub async fn record<'a>(
    pool: &PgPool,
    stored: &[&'a StoredFile],
    unfetched: &[&Unfetched],
) -> Result<Vec<&'a StoredFile>, sqlx::Error> {
    let mut tx = redoable(pool).await?;
    let gone = if stored.is_empty() {
        Vec::new()
    } else {
        record_stored(&mut tx, stored).await?
    };
    if !unfetched.is_empty() {
        record_unfetched(&mut tx, unfetched).await?;
    }
    tx.commit().await?;
    Ok(stored
        .iter()
        .filter(|file| gone.contains(&(file.tenant_id, file.id)))
        .copied()
        .collect())
}

async fn record_stored(
    tx: &mut sqlx::PgConnection,
    files: &[&StoredFile],
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    let column =
        |f: fn(&StoredFile) -> Option<&str>| files.iter().map(|s| f(s)).collect::<Vec<_>>();
    sqlx::query_as(include_str!("sql/stored_many.sql"))
        .bind(files.iter().map(|f| f.tenant_id).collect::<Vec<_>>())
        .bind(files.iter().map(|f| f.id).collect::<Vec<_>>())
        .bind(column(|f| Some(f.content_type.as_str())))
        .bind(column(|f| Some(f.sha256.as_str())))
        .bind(
            files
                .iter()
                .map(|f| f.bytes.len() as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            files
                .iter()
                .map(|f| (f.placement == Placement::Row).then_some(f.bytes.as_slice()))
                .collect::<Vec<_>>(),
        )
        .bind(column(|f| match &f.placement {
            Placement::Row => None,
            Placement::Object(key) => Some(key.as_str()),
        }))
        .fetch_all(&mut *tx)
        .await
}

async fn record_unfetched(
    tx: &mut sqlx::PgConnection,
    tries: &[&Unfetched],
) -> Result<(), sqlx::Error> {
    let status = |t: &&Unfetched| {
        if t.retry_after.is_some() {
            PENDING
        } else {
            FAILED
        }
    };
    sqlx::query(include_str!("sql/unfetched_many.sql"))
        .bind(tries.iter().map(|t| t.tenant_id).collect::<Vec<_>>())
        .bind(tries.iter().map(|t| t.id).collect::<Vec<_>>())
        .bind(tries.iter().map(status).collect::<Vec<_>>())
        .bind(
            tries
                .iter()
                .map(|t| t.error.chars().take(MAX_ERROR_CHARS).collect::<String>())
                .collect::<Vec<_>>(),
        )
        .bind(
            tries
                .iter()
                .map(|t| t.retry_after.unwrap_or_default().as_secs_f64())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
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
