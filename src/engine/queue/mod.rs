//! The tenant job queue: long-polling workers, leases with fencing, per-conversation FIFO,
//! per-tenant concurrency caps and fairness between tenants.
//!
//! Waiting workers cost no database queries: each tenant has a lane holding its waiting workers
//! and one claimer task that claims, in a single query, as many jobs as there are waiters, hands
//! them out, and then sleeps until the lane is woken (new jobs committed here, a NOTIFY from
//! another replica, a completion unblocking a conversation, a retry coming due).
//! Claims of all tenants share a small fair (FIFO) pool of slots, so a tenant with a huge
//! backlog gets no more claims per round than a quiet one.

mod claim;
mod lease;
mod maintenance;

pub use claim::ClaimedJob;
pub use lease::{FailOutcome, LeaseError, Retry};
pub use maintenance::{delete_finished, spawn_maintenance};

use crate::engine::metrics::Metrics;
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Claim queries running at once across all tenants.
const CLAIM_SLOTS: usize = 4;

#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    lease: Duration,
    metrics: Arc<Metrics>,
    lanes: Mutex<HashMap<Uuid, Arc<Lane>>>,
    claim_slots: Semaphore,
    completer: mpsc::Sender<lease::Completion>,
    shutdown: CancellationToken,
}

/// One tenant's waiting workers.
struct Lane {
    tenant_id: Uuid,
    waiters: Mutex<VecDeque<oneshot::Sender<ClaimedJob>>>,
    wake: Notify,
    claimer_running: AtomicBool,
    cap: AtomicI32,
}

impl Lane {
    /// Drops waiters that gave up (timed out or disconnected) and counts the rest.
    fn live_waiters(&self) -> usize {
        let mut waiters = self.waiters.lock().unwrap();
        waiters.retain(|w| !w.is_closed());
        waiters.len()
    }
}

impl Queue {
    pub fn new(
        pool: PgPool,
        lease: Duration,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        let completer = lease::start_completer(pool.clone(), metrics.clone());
        Self {
            inner: Arc::new(Inner {
                pool,
                lease,
                metrics,
                lanes: Mutex::default(),
                claim_slots: Semaphore::new(CLAIM_SLOTS),
                completer,
                shutdown,
            }),
        }
    }

    /// The next job of a tenant, waiting up to `wait` for one. `cap` is the tenant's concurrency cap.
    pub async fn next_job(
        &self,
        tenant_id: Uuid,
        cap: i32,
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, sqlx::Error> {
        if wait.is_zero() {
            let mut jobs = self.claim(tenant_id, 1, cap).await?;
            return Ok(jobs.pop());
        }
        let lane = self.lane(tenant_id);
        lane.cap.store(cap, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        lane.waiters.lock().unwrap().push_back(sender);
        self.ensure_claimer(&lane);
        lane.wake.notify_one();
        tokio::select! {
            job = receiver => Ok(job.ok()),
            _ = tokio::time::sleep(wait) => Ok(None),
            _ = self.inner.shutdown.cancelled() => Ok(None),
        }
    }

    /// Wakes the lanes of these tenants: they may have runnable jobs now.
    pub fn wake(&self, tenants: &[Uuid]) {
        let lanes = self.inner.lanes.lock().unwrap();
        for tenant in tenants {
            if let Some(lane) = lanes.get(tenant) {
                lane.wake.notify_one();
            }
        }
    }

    /// Wakes every lane (after a lost NOTIFY connection, when notifications may have been missed).
    pub fn wake_all(&self) {
        for lane in self.inner.lanes.lock().unwrap().values() {
            lane.wake.notify_one();
        }
    }

    fn lane(&self, tenant_id: Uuid) -> Arc<Lane> {
        self.inner
            .lanes
            .lock()
            .unwrap()
            .entry(tenant_id)
            .or_insert_with(|| {
                Arc::new(Lane {
                    tenant_id,
                    waiters: Mutex::default(),
                    wake: Notify::new(),
                    claimer_running: AtomicBool::new(false),
                    cap: AtomicI32::new(1),
                })
            })
            .clone()
    }

    fn ensure_claimer(&self, lane: &Arc<Lane>) {
        if !lane.claimer_running.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run_lane(lane.clone()));
        }
    }

    /// The claimer of one lane: claims for its waiters until none are left.
    async fn run_lane(self, lane: Arc<Lane>) {
        loop {
            let demand = lane.live_waiters();
            if demand == 0 {
                lane.claimer_running.store(false, Ordering::Release);
                // A waiter may have arrived between the count and the flag: take it over again.
                if lane.live_waiters() > 0 && !lane.claimer_running.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
            let cap = lane.cap.load(Ordering::Relaxed);
            match self.claim(lane.tenant_id, demand, cap).await {
                Ok(jobs) => {
                    let short = jobs.len() < demand;
                    self.hand_out(&lane, jobs).await;
                    if short {
                        self.sleep_until_woken(&lane, None).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(tenant = %lane.tenant_id, %error, "claim failed; retrying");
                    self.sleep_until_woken(&lane, Some(Duration::from_millis(500)))
                        .await;
                }
            }
            if self.inner.shutdown.is_cancelled() {
                lane.waiters.lock().unwrap().clear();
                lane.claimer_running.store(false, Ordering::Release);
                return;
            }
        }
    }

    async fn sleep_until_woken(&self, lane: &Lane, at_most: Option<Duration>) {
        let woken = lane.wake.notified();
        let limit = at_most.unwrap_or(Duration::MAX);
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(limit) => {}
            _ = self.inner.shutdown.cancelled() => {}
        }
    }

    /// Gives claimed jobs to waiting workers in arrival order; a job nobody takes goes back.
    async fn hand_out(&self, lane: &Lane, jobs: Vec<ClaimedJob>) {
        let mut unclaimed = Vec::new();
        for mut job in jobs {
            loop {
                let next = lane.waiters.lock().unwrap().pop_front();
                let Some(waiter) = next else {
                    unclaimed.push(job);
                    break;
                };
                match waiter.send(job) {
                    Ok(()) => break,
                    Err(returned) => job = returned,
                }
            }
        }
        if !unclaimed.is_empty() {
            let ids: Vec<(Uuid, Uuid)> = unclaimed
                .iter()
                .map(|j| (j.job_id, j.lease_token))
                .collect();
            if let Err(error) = lease::give_back(&self.inner.pool, lane.tenant_id, &ids).await {
                tracing::warn!(%error, "could not give back unclaimed jobs; their leases will expire");
            }
        }
    }

    async fn claim(
        &self,
        tenant_id: Uuid,
        limit: usize,
        cap: i32,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let _slot = self
            .inner
            .claim_slots
            .acquire()
            .await
            .expect("the claim semaphore is never closed");
        let jobs = claim::claim(&self.inner.pool, tenant_id, limit, cap, self.inner.lease).await?;
        let now = chrono::Utc::now();
        for job in &jobs {
            let waited = (now - job.runnable_since).to_std().unwrap_or_default();
            self.inner
                .metrics
                .pickup_latency
                .observe(waited.as_secs_f64());
        }
        self.inner.metrics.claimed.inc_by(jobs.len() as u64);
        Ok(jobs)
    }

    pub async fn complete(
        &self,
        tenant_id: Uuid,
        job_id: Uuid,
        lease_token: Uuid,
    ) -> Result<(), LeaseError> {
        let result = lease::complete(&self.inner.completer, tenant_id, job_id, lease_token).await;
        if result.is_ok() {
            // The conversation's next message may be runnable now.
            self.wake(&[tenant_id]);
        }
        result
    }

    pub async fn fail(
        &self,
        tenant_id: Uuid,
        job_id: Uuid,
        lease_token: Uuid,
        error: &str,
        retry: Retry,
    ) -> Result<FailOutcome, LeaseError> {
        let outcome = lease::fail(
            &self.inner.pool,
            tenant_id,
            job_id,
            lease_token,
            error,
            retry,
        )
        .await?;
        self.inner.metrics.failed.inc();
        match &outcome {
            FailOutcome::Dead => {
                self.inner.metrics.dead_letters.inc();
            }
            FailOutcome::Retry { run_after } => {
                let queue = self.clone();
                let delay = (*run_after - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    queue.wake(&[tenant_id]);
                });
            }
        }
        Ok(outcome)
    }

    pub async fn heartbeat(
        &self,
        tenant_id: Uuid,
        job_id: Uuid,
        lease_token: Uuid,
    ) -> Result<chrono::DateTime<chrono::Utc>, LeaseError> {
        lease::heartbeat(
            &self.inner.pool,
            tenant_id,
            job_id,
            lease_token,
            self.inner.lease,
        )
        .await
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}
