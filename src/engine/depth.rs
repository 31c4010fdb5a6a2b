//! Queue depth per tenant and status for `GET /` (admin) and `/metrics`, and per tenant when its
//! oldest runnable job became runnable: counting means reading the whole `jobs` table, so it is
//! counted (both in the same pass) at most once per refresh period and shared.

use crate::engine::recent::Recent;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest a count may take (waiting for a connection included); a slower one is given up,
/// on the server too, and tried again next period.
const COUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// Jobs per status.
pub type Depth = BTreeMap<String, i64>;

/// The jobs of every tenant, per status, as counted at one moment.
#[derive(Debug, Default)]
pub struct DepthSnapshot {
    pub counted_at: DateTime<Utc>,
    /// Jobs per tenant slug and status.
    pub by_tenant: BTreeMap<String, Depth>,
    /// Jobs per status, all tenants.
    pub totals: Depth,
    /// Per tenant slug: since when its oldest queued, runnable job (`run_after` passed) waits.
    /// Tenants with nothing runnable are not in it.
    pub oldest_runnable: BTreeMap<String, DateTime<Utc>>,
}

pub struct QueueDepth {
    pool: PgPool,
    latest: Recent<Option<Arc<DepthSnapshot>>>,
}

impl QueueDepth {
    pub fn new(pool: PgPool, refresh: Duration) -> Self {
        Self {
            pool,
            latest: Recent::new(refresh),
        }
    }

    /// The latest counts (at most one refresh period old), or None when they cannot be counted.
    pub async fn current(&self) -> Option<Arc<DepthSnapshot>> {
        self.latest
            .get(|| async {
                match tokio::time::timeout(COUNT_TIMEOUT, count(&self.pool)).await {
                    Ok(Ok(snapshot)) => Some(Arc::new(snapshot)),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "counting the queue depth failed");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("counting the queue depth took too long");
                        None
                    }
                }
            })
            .await
    }
}

async fn count(pool: &PgPool) -> Result<DepthSnapshot, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        COUNT_TIMEOUT.as_millis()
    ))
    .execute(&mut *transaction)
    .await?;
    let rows: Vec<(String, String, i64, Option<DateTime<Utc>>)> =
        sqlx::query_as(include_str!("sql/depth.sql"))
            .fetch_all(&mut *transaction)
            .await?;
    transaction.commit().await?;
    let mut snapshot = DepthSnapshot {
        counted_at: Utc::now(),
        ..Default::default()
    };
    for (slug, status, jobs, runnable_since) in rows {
        *snapshot.totals.entry(status.clone()).or_default() += jobs;
        if let Some(since) = runnable_since {
            snapshot.oldest_runnable.insert(slug.clone(), since);
        }
        snapshot
            .by_tenant
            .entry(slug)
            .or_default()
            .insert(status, jobs);
    }
    Ok(snapshot)
}
