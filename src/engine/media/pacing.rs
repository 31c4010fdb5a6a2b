//! How many downloads the fetcher may start now. While webhook requests queue for the ingest
//! writers' commits (a burst), the fetcher yields the machine to the acknowledgement path: it
//! waits for a quiet moment, at most [`MAX_YIELD`], and then starts at most [`BUSY_BATCH`]
//! downloads. So it never starves — under an endless flood it still fetches `BUSY_BATCH` files
//! every `MAX_YIELD` — and at full concurrency it catches up once the burst ends. Every file
//! waits in its durable `pending` row meanwhile, so yielding loses nothing.

use crate::engine::ingest_activity::IngestActivity;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a quiet moment before starting downloads anyway.
pub const MAX_YIELD: Duration = Duration::from_millis(100);
/// Downloads started after a yield that found no quiet moment.
pub const BUSY_BATCH: usize = 4;
/// How often a yielding fetcher looks whether ingest went quiet.
const LOOK_EVERY: Duration = Duration::from_millis(5);

pub struct Pacer {
    ingest: Arc<IngestActivity>,
}

impl Pacer {
    pub fn new(ingest: Arc<IngestActivity>) -> Self {
        Self { ingest }
    }

    /// Waits for the fetcher's turn; returns how many of the `free` download slots to use.
    pub async fn turn(&self, free: usize) -> usize {
        let asked = Instant::now();
        while self.ingest.busy() {
            if asked.elapsed() >= MAX_YIELD {
                return free.min(BUSY_BATCH);
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_speed_when_quiet_a_bounded_wait_and_a_small_batch_when_busy() {
        let ingest = Arc::new(IngestActivity::default());
        let pacer = Pacer::new(ingest.clone());
        let started = Instant::now();
        assert_eq!(pacer.turn(16).await, 16);
        assert!(started.elapsed() < MAX_YIELD / 2, "no wait when quiet");

        let _burst = ingest.begin(64);
        let started = Instant::now();
        assert_eq!(pacer.turn(16).await, BUSY_BATCH);
        assert!(started.elapsed() >= MAX_YIELD, "yielded first");
        assert!(started.elapsed() < MAX_YIELD * 5, "but not for long");
        assert_eq!(pacer.turn(1).await, 1);
    }
}
