//! What a run counts and times, shared by its producers, workers and progress line.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Tally {
    started: Instant,
    next_message: AtomicU64,
    limit: u64,
    /// Per message: when its webhook was acknowledged, in nanoseconds since the start plus one
    /// (zero: not yet), so a worker can time the pickup from the acknowledgement.
    acknowledged_at: Vec<AtomicU64>,
    acknowledged: AtomicU64,
    completed: AtomicU64,
    foreign_job: AtomicBool,
    webhook_ms: Mutex<Vec<f64>>,
    pickup_ms: Mutex<Vec<f64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    pub fn new(limit: u64) -> Self {
        Self {
            started: Instant::now(),
            next_message: AtomicU64::new(0),
            limit,
            acknowledged_at: (0..limit).map(|_| AtomicU64::new(0)).collect(),
            acknowledged: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            foreign_job: AtomicBool::new(false),
            webhook_ms: Mutex::new(Vec::new()),
            pickup_ms: Mutex::new(Vec::new()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// The sequence numbers of up to `count` messages not sent yet; empty when all are taken.
    pub fn take_messages(&self, count: usize) -> std::ops::Range<u64> {
        let first = self.next_message.fetch_add(count as u64, Ordering::Relaxed);
        first.min(self.limit)..(first + count as u64).min(self.limit)
    }

    pub fn acknowledge(&self, messages: std::ops::Range<u64>, took: Duration) {
        let at = self.started.elapsed().as_nanos() as u64 + 1;
        let count = messages.end - messages.start;
        for seq in messages {
            self.acknowledged_at[seq as usize].store(at, Ordering::Relaxed);
        }
        self.acknowledged.fetch_add(count, Ordering::Relaxed);
        push(&self.webhook_ms, took.as_secs_f64() * 1000.0);
    }

    /// A worker took message `seq`'s job: its pickup time is counted from the acknowledgement
    /// (zero when the job came before the webhook's answer did).
    pub fn picked_up(&self, seq: u64) {
        let Some(acknowledged) = self.acknowledged_at.get(seq as usize) else {
            return;
        };
        let now = self.started.elapsed().as_nanos() as u64 + 1;
        let at = acknowledged.load(Ordering::Relaxed);
        let waited = if at == 0 { 0 } else { now.saturating_sub(at) };
        push(&self.pickup_ms, waited as f64 / 1e6);
    }

    pub fn complete(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, what: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    pub fn found_foreign_job(&self) {
        self.foreign_job.store(true, Ordering::Relaxed);
    }

    pub fn foreign_job(&self) -> bool {
        self.foreign_job.load(Ordering::Relaxed)
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    pub fn error_count(&self) -> u64 {
        self.errors().values().sum()
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn webhook_ms(&self) -> Vec<f64> {
        sorted(&self.webhook_ms)
    }

    pub fn pickup_ms(&self) -> Vec<f64> {
        sorted(&self.pickup_ms)
    }
}

fn push(samples: &Mutex<Vec<f64>>, value: f64) {
    samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(value);
}

fn sorted(samples: &Mutex<Vec<f64>>) -> Vec<f64> {
    let mut values = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    values.sort_by(f64::total_cmp);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_handed_out_once_and_never_past_the_limit() {
        let tally = Tally::new(5);
        assert_eq!(tally.take_messages(2), 0..2);
        assert_eq!(tally.take_messages(2), 2..4);
        assert_eq!(tally.take_messages(2), 4..5);
        assert!(tally.take_messages(2).is_empty());
    }

    #[test]
    fn pickup_counts_from_the_acknowledgement_and_ignores_unknown_messages() {
        let tally = Tally::new(2);
        tally.picked_up(0);
        tally.picked_up(7);
        tally.acknowledge(1..2, Duration::from_millis(3));
        std::thread::sleep(Duration::from_millis(5));
        tally.picked_up(1);
        let pickups = tally.pickup_ms();
        assert_eq!(pickups.len(), 2, "{pickups:?}");
        assert_eq!(pickups[0], 0.0);
        assert!(pickups[1] >= 5.0, "{pickups:?}");
        assert_eq!(tally.acknowledged(), 1);
        assert_eq!(tally.webhook_ms(), vec![3.0]);
    }
}
