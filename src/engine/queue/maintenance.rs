//! Background work that keeps the queue moving: notifications from other replicas, expired
//! leases, retries coming due, and retention of finished jobs (with their media files: the rows
//! go with the job, their objects in the object store right after).

use super::Queue;
use crate::engine::ingest::JOBS_CHANNEL;
use crate::engine::media::blobs::MediaBlobs;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const REAP_EVERY: Duration = Duration::from_secs(1);
const RETENTION_EVERY: Duration = Duration::from_secs(60);
const RETENTION_BATCH: i64 = 5000;

pub fn spawn_maintenance(
    queue: Queue,
    blobs: MediaBlobs,
    (retention, dead_retention): (Duration, Duration),
    shutdown: CancellationToken,
) {
    tokio::spawn(listen(queue.clone(), shutdown.clone()));
    tokio::spawn(reap(queue.clone(), shutdown.clone()));
    tokio::spawn(retain(queue, blobs, (retention, dead_retention), shutdown));
}

/// Wakes lanes on NOTIFY from any replica (ours included); reconnects by itself, and wakes
/// every lane after a reconnect since notifications may have been missed meanwhile.
async fn listen(queue: Queue, shutdown: CancellationToken) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(queue.pool()).await?;
            listener.listen(JOBS_CHANNEL).await?;
            queue.wake_all();
            loop {
                let notification = listener.recv().await?;
                let tenants: Vec<Uuid> = notification
                    .payload()
                    .split(',')
                    .filter_map(|t| t.parse().ok())
                    .collect();
                queue.wake(&tenants);
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listener => {
                if let Err(error) = result {
                    tracing::warn!(%error, "lost the notification connection; reconnecting");
                }
            }
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Every second: expired leases go back to the queue (or to the dead letters when out of
/// attempts), and tenants whose retries came due are woken.
async fn reap(queue: Queue, shutdown: CancellationToken) {
    let mut since: DateTime<Utc> = Utc::now();
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(error) = expire_leases(&queue).await {
            tracing::warn!(%error, "lease reaper failed; will retry");
        }
        let now = Utc::now();
        match retries_due(&queue, since, now).await {
            Ok(tenants) => {
                queue.wake(&tenants);
                since = now;
            }
            Err(error) => tracing::warn!(%error, "retry waker failed; will retry"),
        }
    }
}

async fn expire_leases(queue: &Queue) -> Result<(), sqlx::Error> {
    let expired: Vec<(Uuid, String)> = sqlx::query_as(include_str!("sql/expire_leases.sql"))
        .fetch_all(queue.pool())
        .await?;
    if expired.is_empty() {
        return Ok(());
    }
    let metrics = queue.metrics();
    metrics.lease_expiries.inc_by(expired.len() as u64);
    let dead = expired
        .iter()
        .filter(|(_, status)| status == "dead")
        .count();
    metrics.dead_letters.inc_by(dead as u64);
    tracing::info!(expired = expired.len(), dead, "leases expired");
    let mut tenants: Vec<Uuid> = expired.into_iter().map(|(tenant, _)| tenant).collect();
    tenants.sort_unstable();
    tenants.dedup();
    queue.wake(&tenants);
    Ok(())
}

async fn retries_due(
    queue: &Queue,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM jobs
         WHERE status = 'queued' AND attempts > 0 AND run_after > $1 AND run_after <= $2",
    )
    .bind(since)
    .bind(until)
    .fetch_all(queue.pool())
    .await
}

/// Deletes finished jobs older than the retention, in batches, so the table never grows without bound.
async fn retain(
    queue: Queue,
    blobs: MediaBlobs,
    (retention, dead_retention): (Duration, Duration),
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match delete_finished(queue.pool(), &blobs, retention, dead_retention).await {
            Ok(0) => {}
            Ok(deleted) => {
                queue.metrics().retention_deleted.inc_by(deleted);
                tracing::info!(deleted, "retention removed finished jobs");
            }
            Err(error) => tracing::warn!(%error, "retention failed; will retry"),
        }
    }
}

/// Deletes finished jobs past their retention; their media rows go with them (ON DELETE
/// CASCADE), and the objects of those kept in the object store are deleted next, so none is
/// left behind without a row.
pub async fn delete_finished(
    pool: &PgPool,
    blobs: &MediaBlobs,
    retention: Duration,
    dead_retention: Duration,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    for (status, keep) in [("completed", retention), ("dead", dead_retention)] {
        loop {
            let (deleted, keys): (i64, Vec<String>) =
                sqlx::query_as(include_str!("sql/delete_finished.sql"))
                    .bind(status)
                    .bind(keep.as_secs_f64())
                    .bind(RETENTION_BATCH)
                    .fetch_one(pool)
                    .await?;
            blobs.delete(&keys).await;
            let deleted = deleted as u64;
            total += deleted;
            if deleted < RETENTION_BATCH as u64 {
                break;
            }
        }
    }
    Ok(total)
}
