//! Token buckets: per sender (the provider's throughput limit, Meta's default 80 msg/s) and per
//! recipient (providers also limit how fast one business may write to one user).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held at once (the burst).
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }
}

/// Many buckets of one rate, by key.
pub struct Buckets {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Takes a token now, or says how long until one is available (taking nothing).
    pub fn try_take(&self, key: &str) -> Result<(), Duration> {
        self.try_take_at(key, Instant::now())
    }

    fn try_take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap();
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.rate.burst,
            updated: now,
        });
        bucket.refill(self.rate, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / self.rate.per_second))
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn take(&self, key: &str) {
        while let Err(wait) = self.try_take(key) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Forgets buckets idle long enough to be full again (bounded memory with many recipients).
    pub fn prune(&self) {
        let now = Instant::now();
        let full_after = Duration::from_secs_f64(self.rate.burst / self.rate.per_second);
        self.buckets
            .lock()
            .unwrap()
            .retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let buckets = Buckets::new(Rate {
            per_second: 10.0,
            burst: 3.0,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(buckets.try_take_at("a", start).is_ok());
        }
        let wait = buckets.try_take_at("a", start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(
            buckets.try_take_at("b", start).is_ok(),
            "keys are independent"
        );
        assert!(
            buckets
                .try_take_at("a", start + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            buckets
                .try_take_at("a", start + Duration::from_millis(100))
                .is_err()
        );
    }
}
