//! A value worked out at most once per period and shared by every caller in between, so a
//! flood of requests costs one computation per period, not one each.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct Recent<T> {
    max_age: Duration,
    slot: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Recent<T> {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            slot: Mutex::new(None),
        }
    }

    /// The value if it is younger than the period; else `compute`'s, which then is kept.
    /// Callers that arrive while it is computed wait for it instead of computing it again.
    pub async fn get<F: Future<Output = T>>(&self, compute: impl FnOnce() -> F) -> T {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref()
            && at.elapsed() < self.max_age
        {
            return value.clone();
        }
        let value = compute().await;
        *slot = Some((Instant::now(), value.clone()));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn count_calls(recent: Arc<Recent<usize>>, calls: Arc<AtomicUsize>) -> usize {
        recent
            .get(|| async {
                tokio::task::yield_now().await;
                calls.fetch_add(1, Ordering::SeqCst) + 1
            })
            .await
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_computation() {
        let recent = Arc::new(Recent::new(Duration::from_secs(3600)));
        let calls = Arc::new(AtomicUsize::new(0));
        let answers = futures::future::join_all(
            (0..50).map(|_| tokio::spawn(count_calls(recent.clone(), calls.clone()))),
        )
        .await;
        assert!(answers.into_iter().all(|answer| answer.unwrap() == 1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_old_value_is_computed_again() {
        let recent = Arc::new(Recent::new(Duration::ZERO));
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(count_calls(recent.clone(), calls.clone()).await, 1);
        assert_eq!(count_calls(recent.clone(), calls.clone()).await, 2);
    }
}
