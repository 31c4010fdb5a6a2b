//! Whether the acknowledgement path is under pressure: webhook requests queueing behind the
//! ingest writers' commits. Background work that shares the machine with it (the media
//! fetcher) backs off while it is, so a burst of webhooks is answered as fast as the database
//! commits them and the background work catches up when the burst ends.
//!
//! Light traffic does not count: a batch of a few requests means nobody waited for a commit,
//! and background work then runs at full speed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests in one batch from which the path counts as queueing: they arrived while the
/// previous commit ran.
const QUEUEING_BATCH: usize = 4;
/// How long after a queueing batch ended the path still counts as busy: longer than the gap
/// between two batches of a steady stream.
const QUIET_AFTER: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct IngestActivity {
    /// Queueing batches being written now.
    in_flight: AtomicUsize,
    /// When the last queueing batch ended, in µs since `origin` (0: none yet).
    last_end_us: AtomicU64,
    origin: Instant,
}

impl Default for IngestActivity {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            last_end_us: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl IngestActivity {
    /// A writer took a batch of `requests`; the batch counts until the guard drops.
    pub fn begin(&self, requests: usize) -> BatchInFlight<'_> {
        let queueing = requests >= QUEUEING_BATCH;
        if queueing {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        BatchInFlight {
            activity: self,
            queueing,
        }
    }

    /// Whether requests are queueing for a commit now or were a moment ago.
    pub fn busy(&self) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let last = self.last_end_us.load(Ordering::Relaxed);
        last != 0 && self.now_us().saturating_sub(last) < QUIET_AFTER.as_micros() as u64
    }

    fn now_us(&self) -> u64 {
        // At least 1: 0 means "no batch yet".
        (self.origin.elapsed().as_micros() as u64).max(1)
    }
}

/// A batch being written; dropping it ends the batch.
pub struct BatchInFlight<'a> {
    activity: &'a IngestActivity,
    queueing: bool,
}

impl Drop for BatchInFlight<'_> {
    fn drop(&mut self) {
        if self.queueing {
            let now = self.activity.now_us();
            self.activity.last_end_us.store(now, Ordering::Relaxed);
            self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queueing_batches_count_and_only_for_a_moment_after() {
        let activity = IngestActivity::default();
        assert!(!activity.busy(), "nothing written yet");
        {
            let _small = activity.begin(QUEUEING_BATCH - 1);
            assert!(!activity.busy(), "a small batch: nobody queued");
        }
        assert!(!activity.busy());
        {
            let _large = activity.begin(QUEUEING_BATCH);
            assert!(activity.busy(), "requests queued behind a commit");
        }
        assert!(activity.busy(), "just after a queueing batch");
        std::thread::sleep(QUIET_AFTER + Duration::from_millis(5));
        assert!(!activity.busy(), "quiet again");
    }
}
