//! Media retention: files older than the tenant's media retention (default: the job retention)
//! and uploads past their `expires_at` are deleted, rows first, then their objects in the object
//! store. Runs every minute; a file's job keeps its media reference (`GET /media/{id}` is 404).

use super::blobs::MediaBlobs;
use super::files;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(60);
const BATCH: i64 = 500;

pub fn spawn(pool: PgPool, blobs: MediaBlobs, retention: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match sweep(&pool, &blobs, retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "media retention removed files"),
                Err(error) => tracing::warn!(%error, "media retention failed; will retry"),
            }
        }
    });
}

/// One pass: deletes every expired file, in batches. Returns how many.
pub async fn sweep(
    pool: &PgPool,
    blobs: &MediaBlobs,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let (deleted, keys) = files::delete_expired(pool, retention, BATCH).await?;
        blobs.delete(&keys).await;
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
