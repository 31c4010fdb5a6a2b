//! The tenant job queue: long-polling workers, leases with fencing, per-conversation FIFO,
//! per-tenant concurrency caps and fairness between tenants.
//!
//! Waiting workers cost no database queries: each tenant has a lane holding its waiting workers
//! and one claimer task that claims, in a single query, as many jobs as there are waiters, hands
//! them out, and then sleeps until the lane is woken (new jobs committed here, a NOTIFY from
//! another replica, a completion unblocking a conversation, a retry coming due).
//! While the tenant has a backlog, each claim also takes [`PREFETCH`] jobs more into the lane's
//! buffer (see `buffer`), so most workers get a job from memory without a claim of their own.
//! Claims of all tenants share a small fair (FIFO) pool of slots, so a tenant with a huge
//! backlog gets no more claims per round than a quiet one.

mod buffer;
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
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Claim queries running at once across all tenants.
const CLAIM_SLOTS: usize = 4;

/// Jobs a claim takes beyond its waiting workers while the tenant has a backlog.
const PREFETCH: usize = 32;

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
    waiters: Mutex<VecDeque<Waiter>>,
    wake: Notify,
    claimer_running: AtomicBool,
    cap: AtomicI32,
    /// Jobs claimed ahead of the waiters.
    buffer: buffer::Buffer,
    /// Whether the last claim got all it asked for (so more jobs are likely waiting).
    backlog: AtomicBool,
}

/// A worker waiting for its first job; a batch caller `wants` more, taken from the buffer once
/// the first arrives.
struct Waiter {
    sender: oneshot::Sender<ClaimedJob>,
    wants: usize,
}

impl Lane {
    /// Drops waiters that gave up (timed out or disconnected) and counts the jobs the rest want.
    fn live_demand(&self) -> usize {
        let mut waiters = self.waiters.lock().unwrap();
        waiters.retain(|w| !w.sender.is_closed());
        waiters.iter().map(|w| w.wants).sum()
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
        let lane = self.lane(tenant_id);
        lane.cap.store(cap, Ordering::Relaxed);
        if let Some(job) = self.take_from_buffer(&lane) {
            return Ok(Some(job));
        }
        if wait.is_zero() {
            let mut jobs = self.claim(tenant_id, 1, cap).await?;
            let job = jobs.pop();
            if let Some(job) = &job {
                self.delivered(job);
            }
            return Ok(job);
        }
        self.wait_in_lane(&lane, 1, wait).await
    }

    /// Waits in the lane for the first of `wants` jobs: the lane's one claimer claims for all
    /// its waiters together, so a tenant's waiting workers never run claims side by side
    /// (concurrent claims of one tenant queue on its advisory lock, each holding a snapshot that
    /// keeps the queue's dead rows from being cleaned up, which slows every later claim).
    async fn wait_in_lane(
        &self,
        lane: &Arc<Lane>,
        wants: usize,
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, sqlx::Error> {
        let (sender, receiver) = oneshot::channel();
        lane.waiters
            .lock()
            .unwrap()
            .push_back(Waiter { sender, wants });
        self.ensure_claimer(lane);
        lane.wake.notify_one();
        tokio::select! {
            job = receiver => Ok(job.ok()),
            _ = tokio::time::sleep(wait) => Ok(None),
            _ = self.inner.shutdown.cancelled() => Ok(None),
        }
    }

    /// Up to `max` jobs of a tenant: those buffered, else (without a wait) those one claim finds
    /// at once, else the first within `wait` and whatever else is buffered then.
    pub async fn next_jobs(
        &self,
        tenant_id: Uuid,
        cap: i32,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let lane = self.lane(tenant_id);
        lane.cap.store(cap, Ordering::Relaxed);
        let mut jobs = self.take_buffered(&lane, max);
        if !jobs.is_empty() {
            return Ok(jobs);
        }
        if wait.is_zero() {
            jobs = self.claim(tenant_id, max, cap).await?;
            jobs.iter().for_each(|job| self.delivered(job));
            return Ok(jobs);
        }
        if let Some(first) = self.wait_in_lane(&lane, max, wait).await? {
            jobs.push(first);
            jobs.extend(self.take_buffered(&lane, max - 1));
        }
        Ok(jobs)
    }

    fn take_buffered(&self, lane: &Arc<Lane>, max: usize) -> Vec<ClaimedJob> {
        let mut jobs = Vec::new();
        while jobs.len() < max {
            match self.take_from_buffer(lane) {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        jobs
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
                    buffer: buffer::Buffer::new(self.inner.lease),
                    backlog: AtomicBool::new(false),
                })
            })
            .clone()
    }

    fn ensure_claimer(&self, lane: &Arc<Lane>) {
        if !lane.claimer_running.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run_lane(lane.clone()));
        }
    }

    /// The claimer of one lane: claims for its waiters until none are left and its buffer is
    /// empty (buffered jobs no worker takes in time go back to the queue).
    async fn run_lane(self, lane: Arc<Lane>) {
        loop {
            self.give_back_stale(&lane).await;
            self.serve_from_buffer(&lane).await;
            let demand = lane.live_demand();
            if demand == 0 {
                if !lane.buffer.is_empty() {
                    self.sleep_until_woken(&lane, None).await;
                } else {
                    lane.claimer_running.store(false, Ordering::Release);
                    // A waiter may have arrived between the count and the flag: take it over again.
                    if lane.live_demand() > 0 && !lane.claimer_running.swap(true, Ordering::AcqRel)
                    {
                        continue;
                    }
                    return;
                }
            } else {
                self.claim_round(&lane, demand).await;
            }
            if self.inner.shutdown.is_cancelled() {
                lane.waiters.lock().unwrap().clear();
                self.give_back(&lane, lane.buffer.take_all()).await;
                lane.claimer_running.store(false, Ordering::Release);
                return;
            }
        }
    }

    /// One claim for `demand` waiters (and the prefetch, under a backlog), handed out.
    async fn claim_round(&self, lane: &Lane, demand: usize) {
        let cap = lane.cap.load(Ordering::Relaxed);
        let prefetch = if lane.backlog.load(Ordering::Relaxed) {
            PREFETCH
        } else {
            0
        };
        let asked = demand + prefetch;
        match self.claim(lane.tenant_id, asked, cap).await {
            Ok(jobs) => {
                let short = jobs.len() < asked;
                lane.backlog.store(!short, Ordering::Relaxed);
                // Aged from now, not from the claim's start: a slow claim (a loaded database)
                // must still reach the workers it was made for, as before there was a buffer.
                lane.buffer.push(jobs, Instant::now());
                self.serve_from_buffer(lane).await;
                if short {
                    self.sleep_until_woken(lane, None).await;
                }
            }
            Err(error) => {
                tracing::warn!(tenant = %lane.tenant_id, %error, "claim failed; retrying");
                self.sleep_until_woken(lane, Some(Duration::from_millis(500)))
                    .await;
            }
        }
    }

    /// Sleeps until the lane is woken, `at_most` passes or a buffered job goes stale.
    async fn sleep_until_woken(&self, lane: &Lane, at_most: Option<Duration>) {
        let woken = lane.wake.notified();
        let limit = at_most.unwrap_or(Duration::MAX);
        let limit = match lane.buffer.next_stale_at() {
            Some(at) => limit.min(at.saturating_duration_since(Instant::now())),
            None => limit,
        };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(limit) => {}
            _ = self.inner.shutdown.cancelled() => {}
        }
    }

    /// A buffered job for a worker that just asked, if one is fresh.
    fn take_from_buffer(&self, lane: &Arc<Lane>) -> Option<ClaimedJob> {
        let mut stale = Vec::new();
        let held = lane.buffer.pop(Instant::now(), &mut stale);
        if !stale.is_empty() {
            let (queue, lane) = (self.clone(), lane.clone());
            tokio::spawn(async move { queue.give_back(&lane, stale).await });
        }
        let job = held?.job;
        self.delivered(&job);
        Some(job)
    }

    /// Gives buffered jobs to waiting workers in arrival order.
    async fn serve_from_buffer(&self, lane: &Lane) {
        let mut stale = Vec::new();
        loop {
            let Some(waiter) = lane.waiters.lock().unwrap().pop_front() else {
                break;
            };
            if waiter.sender.is_closed() {
                continue;
            }
            let Some(held) = lane.buffer.pop(Instant::now(), &mut stale) else {
                lane.waiters.lock().unwrap().push_front(waiter);
                break;
            };
            let claimed_at = held.claimed_at;
            self.delivered(&held.job);
            match waiter.sender.send(held.job) {
                Ok(()) => {}
                // The worker gave up meanwhile: the job stays first in line.
                Err(job) => lane.buffer.unpop(buffer::Held { job, claimed_at }),
            }
        }
        self.give_back(lane, stale).await;
    }

    async fn give_back_stale(&self, lane: &Lane) {
        let stale = lane.buffer.take_stale(Instant::now());
        self.give_back(lane, stale).await;
    }

    /// Returns buffered jobs nobody took in time to the queue, as if never claimed.
    async fn give_back(&self, lane: &Lane, jobs: Vec<ClaimedJob>) {
        if jobs.is_empty() {
            return;
        }
        let ids: Vec<(Uuid, Uuid)> = jobs.iter().map(|j| (j.job_id, j.lease_token)).collect();
        match lease::give_back(&self.inner.pool, lane.tenant_id, &ids).await {
            // Runnable again: a waiter may be sleeping on a short claim.
            Ok(()) => lane.wake.notify_one(),
            Err(error) => {
                tracing::warn!(%error, "could not give back buffered jobs; their leases will expire")
            }
        }
    }

    /// Counts a job handed to a worker: its pickup latency runs until now.
    fn delivered(&self, job: &ClaimedJob) {
        let waited = (chrono::Utc::now() - job.runnable_since)
            .to_std()
            .unwrap_or_default();
        self.inner
            .metrics
            .pickup_latency
            .observe(waited.as_secs_f64());
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

    /// Completes several jobs (all in the same batched statement, usually); one outcome each.
    pub async fn complete_many(
        &self,
        tenant_id: Uuid,
        jobs: &[(Uuid, Uuid)],
    ) -> Vec<Result<(), LeaseError>> {
        let outcomes = futures::future::join_all(jobs.iter().map(|(job_id, lease_token)| {
            lease::complete(&self.inner.completer, tenant_id, *job_id, *lease_token)
        }))
        .await;
        if outcomes.iter().any(Result::is_ok) {
            self.wake(&[tenant_id]);
        }
        outcomes
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
        // A slot under the cap is free, and a permanent failure unblocks its conversation.
        self.wake(&[tenant_id]);
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
