//! When each tenant's worker last asked for a job, kept in `tenants.last_worker_seen_at` for the
//! operator's WorkflowReady condition. A worker long-polls all the time, so the row is written
//! at most once per [`WRITE_EVERY`] per tenant (and per engine replica): the condition needs
//! minutes of resolution, not every poll.

use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const WRITE_EVERY: Duration = Duration::from_secs(10);

pub struct WorkerSeen {
    pool: PgPool,
    throttle: Throttle,
}

/// When each tenant's row was last written by this replica.
#[derive(Default)]
struct Throttle {
    written: Mutex<HashMap<Uuid, Instant>>,
}

impl WorkerSeen {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            throttle: Throttle::default(),
        }
    }

    /// Records a poll of `tenant`'s worker. A failed write is only logged: the poll itself
    /// must not fail because the bookkeeping did.
    pub async fn polled(&self, tenant: Uuid) {
        if !self.throttle.due(tenant, Instant::now()) {
            return;
        }
        let result = sqlx::query("UPDATE tenants SET last_worker_seen_at = now() WHERE id = $1")
            .bind(tenant)
            .execute(&self.pool)
            .await;
        if let Err(error) = result {
            tracing::warn!(%tenant, %error, "could not record the worker's poll");
            self.throttle.written.lock().unwrap().remove(&tenant);
        }
    }
}

impl Throttle {
    /// Whether a write is due, claiming it if so.
    fn due(&self, tenant: Uuid, now: Instant) -> bool {
        let mut written = self.written.lock().unwrap();
        match written.get(&tenant) {
            Some(last) if now.duration_since(*last) < WRITE_EVERY => false,
            _ => {
                written.insert(tenant, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_written_at_most_once_per_period() {
        let seen = Throttle::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let start = Instant::now();
        assert!(seen.due(a, start));
        assert!(!seen.due(a, start + Duration::from_secs(1)));
        assert!(seen.due(b, start + Duration::from_secs(1)), "per tenant");
        assert!(seen.due(a, start + WRITE_EVERY));
    }
}
