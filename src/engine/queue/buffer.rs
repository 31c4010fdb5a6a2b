//! Jobs a lane claimed ahead of its waiting workers, held in this replica's memory.
//!
//! Claiming a batch per lane round and handing jobs out from memory brings the claims per job
//! well below one under load. A buffered job is leased in the database like any handed-out job
//! (status `processing`, its own lease token), so:
//! - it is never handed to two workers: it leaves the buffer under the lock, exactly once;
//! - its conversation's next message waits for it, and it counts against the tenant's cap;
//! - if this replica dies holding it, its lease expires and the reaper of any replica returns
//!   it to the queue, as for a worker that died holding it.
//!
//! A buffered job is handed out only while most of its lease is left (`Buffer::max_age`):
//! older ones are given back to the queue, so a worker never gets a lease about to lapse.

use super::ClaimedJob;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a job waits in the buffer, whatever the lease.
const MAX_AGE_CAP: Duration = Duration::from_secs(2);

/// A buffered job and when its claim returned.
pub struct Held {
    pub job: ClaimedJob,
    pub claimed_at: Instant,
}

pub struct Buffer {
    jobs: Mutex<VecDeque<Held>>,
    max_age: Duration,
}

impl Buffer {
    /// A buffer for leases of `lease`: a job is handed out only within a tenth of its lease
    /// (and within [`MAX_AGE_CAP`]) of its claim returning.
    pub fn new(lease: Duration) -> Self {
        Self {
            jobs: Mutex::default(),
            max_age: (lease / 10).min(MAX_AGE_CAP),
        }
    }

    /// Keeps jobs just claimed, in their claim (delivery) order.
    pub fn push(&self, jobs: Vec<ClaimedJob>, claimed_at: Instant) {
        let mut held = self.jobs.lock().unwrap();
        held.extend(jobs.into_iter().map(|job| Held { job, claimed_at }));
    }

    /// The oldest job still fresh enough to hand out; the stale ones met on the way are
    /// removed and returned in `stale` (to be given back).
    pub fn pop(&self, now: Instant, stale: &mut Vec<ClaimedJob>) -> Option<Held> {
        let mut held = self.jobs.lock().unwrap();
        while let Some(next) = held.pop_front() {
            if now.duration_since(next.claimed_at) <= self.max_age {
                return Some(next);
            }
            stale.push(next.job);
        }
        None
    }

    /// Puts back a job that was popped but could not be delivered (its worker had gone).
    pub fn unpop(&self, held: Held) {
        self.jobs.lock().unwrap().push_front(held);
    }

    /// Removes and returns the jobs too old to hand out.
    pub fn take_stale(&self, now: Instant) -> Vec<ClaimedJob> {
        let mut held = self.jobs.lock().unwrap();
        let fresh_from = held
            .iter()
            .position(|h| now.duration_since(h.claimed_at) <= self.max_age)
            .unwrap_or(held.len());
        held.drain(..fresh_from).map(|h| h.job).collect()
    }

    /// Removes and returns every job (shutting down: they go back to the queue).
    pub fn take_all(&self) -> Vec<ClaimedJob> {
        self.jobs.lock().unwrap().drain(..).map(|h| h.job).collect()
    }

    /// When the oldest job goes stale, if any is held.
    pub fn next_stale_at(&self) -> Option<Instant> {
        let held = self.jobs.lock().unwrap();
        held.front().map(|h| h.claimed_at + self.max_age)
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.lock().unwrap().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn job() -> ClaimedJob {
        ClaimedJob {
            job_id: Uuid::new_v4(),
            payload: serde_json::json!({}),
            status: "processing",
            attempt: 1,
            max_attempts: 5,
            lease_token: Uuid::new_v4(),
            lease_expires_at: chrono::Utc::now(),
            conversation_key: "c".into(),
            runnable_since: chrono::Utc::now(),
        }
    }

    #[test]
    fn jobs_leave_once_in_order_and_stale_ones_are_never_handed_out() {
        let buffer = Buffer::new(Duration::from_secs(60));
        assert_eq!(buffer.max_age, MAX_AGE_CAP);
        let start = Instant::now();
        let (old, fresh) = (job(), job());
        buffer.push(vec![old.clone()], start);
        buffer.push(vec![fresh.clone()], start + Duration::from_secs(1));
        let mut stale = Vec::new();
        let later = start + MAX_AGE_CAP + Duration::from_millis(1);
        let got = buffer.pop(later, &mut stale).unwrap();
        assert_eq!(got.job.job_id, fresh.job_id);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].job_id, old.job_id);
        assert!(buffer.pop(later, &mut stale).is_none(), "handed out once");
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_short_lease_keeps_jobs_briefly_and_stale_ones_are_taken() {
        let buffer = Buffer::new(Duration::from_secs(1));
        assert_eq!(buffer.max_age, Duration::from_millis(100));
        let start = Instant::now();
        buffer.push(vec![job(), job()], start);
        buffer.push(vec![job()], start + Duration::from_millis(80));
        assert_eq!(
            buffer.next_stale_at(),
            Some(start + Duration::from_millis(100))
        );
        let stale = buffer.take_stale(start + Duration::from_millis(150));
        assert_eq!(stale.len(), 2);
        assert_eq!(buffer.take_all().len(), 1);
        assert_eq!(buffer.next_stale_at(), None);
    }
}
