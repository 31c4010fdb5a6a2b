//! Fair turns at the embedder. Documents are embedded in small batches, and the embedder's
//! slots are handed out batch by batch in turns between tenants (round-robin; within a tenant,
//! between its requests in arrival order): a tenant ingesting a large document holds a slot for
//! one batch at a time, never for the whole document. Search queries (one short text each) have
//! slots of their own, taken in turns the same way, so a query never waits behind a document's
//! batch. Works the same for every embedder (local or remote).
//!
//! Each tenant's queued document work is bounded too: a document reserves its texts before it
//! is embedded, and a reservation that would take the tenant past its limit is refused.

use super::{EmbedError, Embedder};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Why a tenant's reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    #[error("{texts} texts are more than the {limit} one tenant may queue")]
    TooLarge { texts: usize, limit: usize },
    #[error("the tenant already has {queued} of its {limit} texts queued")]
    Busy { queued: usize, limit: usize },
}

/// The engine's embedder behind fair, batched turns.
pub struct FairEmbedder {
    inner: Arc<dyn Embedder>,
    /// Slots for documents' batches.
    turns: Turns,
    /// Slots for search queries.
    query_turns: Turns,
    batch: usize,
    /// Texts one tenant may have reserved at once.
    tenant_limit: usize,
    reserved: Mutex<HashMap<Uuid, usize>>,
}

impl FairEmbedder {
    /// `slots`: documents' batches embedded at once, and as many queries beside them;
    /// `batch`: texts per batch; `tenant_limit`: texts one tenant may have reserved at once.
    pub fn new(inner: Arc<dyn Embedder>, slots: usize, batch: usize, tenant_limit: usize) -> Self {
        Self {
            inner,
            turns: Turns::new(slots.max(1)),
            query_turns: Turns::new(slots.max(1)),
            batch: batch.max(1),
            tenant_limit: tenant_limit.max(1),
            reserved: Mutex::default(),
        }
    }

    pub fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    pub fn tenant_limit(&self) -> usize {
        self.tenant_limit
    }

    /// Texts the tenant has reserved (documents being embedded).
    pub fn reserved(&self, tenant: Uuid) -> usize {
        lock(&self.reserved).get(&tenant).copied().unwrap_or(0)
    }

    /// Embeds a document's `texts` for `tenant`, one batch per turn.
    pub async fn embed(&self, tenant: Uuid, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch) {
            let _turn = self.turns.take(tenant).await;
            vectors.extend(self.inner.embed(batch).await?);
        }
        Ok(vectors)
    }

    /// Embeds one search query for `tenant`, in the queries' turns.
    pub async fn embed_query(&self, tenant: Uuid, query: String) -> Result<Vec<f32>, EmbedError> {
        let _turn = self.query_turns.take(tenant).await;
        self.inner.embed_query(query).await
    }

    /// Reserves room for `texts` in the tenant's share of the queue until the reservation is
    /// dropped.
    pub fn reserve(&self, tenant: Uuid, texts: usize) -> Result<Reservation<'_>, ReserveError> {
        let limit = self.tenant_limit;
        if texts > limit {
            return Err(ReserveError::TooLarge { texts, limit });
        }
        let mut reserved = lock(&self.reserved);
        let queued = reserved.entry(tenant).or_default();
        if *queued + texts > limit {
            return Err(ReserveError::Busy {
                queued: *queued,
                limit,
            });
        }
        *queued += texts;
        Ok(Reservation {
            owner: self,
            tenant,
            texts,
        })
    }
}

/// Room in a tenant's share of the queue, given back when dropped.
pub struct Reservation<'a> {
    owner: &'a FairEmbedder,
    tenant: Uuid,
    texts: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = lock(&self.owner.reserved);
        if let Some(queued) = reserved.get_mut(&self.tenant) {
            *queued = queued.saturating_sub(self.texts);
            if *queued == 0 {
                reserved.remove(&self.tenant);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fixed number of slots, handed to waiting tenants in turn.
struct Turns {
    state: Mutex<TurnState>,
}

#[derive(Default)]
struct TurnState {
    free: usize,
    /// Tenants with waiters, in the order of their next turn.
    order: VecDeque<Uuid>,
    /// Each tenant's waiters, first come first served.
    waiters: HashMap<Uuid, VecDeque<oneshot::Sender<()>>>,
}

impl Turns {
    fn new(slots: usize) -> Self {
        Self {
            state: Mutex::new(TurnState {
                free: slots,
                ..Default::default()
            }),
        }
    }

    /// Waits for the tenant's turn; the slot is held until the returned value is dropped.
    async fn take(&self, tenant: Uuid) -> Slot<'_> {
        loop {
            let receiver = {
                let mut state = lock(&self.state);
                // A free slot means nobody waits: `release` hands slots to waiters first.
                if state.free > 0 {
                    state.free -= 1;
                    return Slot { turns: self };
                }
                let (sender, receiver) = oneshot::channel();
                let state = &mut *state;
                let queue = state.waiters.entry(tenant).or_default();
                if queue.is_empty() {
                    state.order.push_back(tenant);
                }
                queue.push_back(sender);
                receiver
            };
            let mut waiting = Waiting {
                turns: self,
                receiver,
                granted: false,
            };
            if (&mut waiting.receiver).await.is_ok() {
                waiting.granted = true;
                return Slot { turns: self };
            }
        }
    }

    /// Gives a slot to the next tenant in turn (its oldest waiter), or frees it.
    fn release(&self) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        while let Some(tenant) = state.order.pop_front() {
            let Some(queue) = state.waiters.get_mut(&tenant) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiters.remove(&tenant);
            } else {
                state.order.push_back(tenant);
            }
            // A waiter that gave up (its request was dropped) refuses the slot: try the next.
            if let Some(sender) = next
                && sender.send(()).is_ok()
            {
                return;
            }
        }
        state.free += 1;
    }
}

/// One embedding slot, given back (to the next tenant in turn) when dropped.
struct Slot<'a> {
    turns: &'a Turns,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.turns.release();
    }
}

/// A waiter whose request may be dropped while it waits: a slot handed to it in the meantime
/// must be passed on, not lost.
struct Waiting<'a> {
    turns: &'a Turns,
    receiver: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        self.receiver.close();
        if self.receiver.try_recv().is_ok() {
            self.turns.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::time::Duration;

    /// Records the order in which batches ran, by the first text of each batch.
    struct Recorder {
        log: Mutex<Vec<String>>,
    }

    impl Embedder for Recorder {
        fn model_id(&self) -> &str {
            "recorder"
        }
        fn dims(&self) -> usize {
            1
        }
        fn embed<'a>(
            &'a self,
            texts: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
            Box::pin(async move {
                lock(&self.log).push(texts[0].clone());
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(texts.iter().map(|_| vec![1.0]).collect())
            })
        }
    }

    fn texts(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    #[tokio::test]
    async fn another_tenants_document_waits_for_one_batch_not_a_document() {
        let recorder = Arc::new(Recorder {
            log: Mutex::default(),
        });
        let fair = Arc::new(FairEmbedder::new(recorder.clone(), 1, 4, 1000));
        let (big, quiet) = (Uuid::new_v4(), Uuid::new_v4());
        let document = texts("doc", 40);
        let ingest = {
            let fair = fair.clone();
            tokio::spawn(async move { fair.embed(big, &document).await.unwrap().len() })
        };
        while lock(&recorder.log).is_empty() {
            tokio::task::yield_now().await;
        }
        let small = fair.embed(quiet, &["small".to_owned()]).await.unwrap();
        assert_eq!(small.len(), 1);
        assert_eq!(ingest.await.unwrap(), 40);
        let log = lock(&recorder.log).clone();
        let position = log.iter().position(|t| t == "small").unwrap();
        assert!(position <= 2, "it ran after {position} batches: {log:?}");
        assert_eq!(log.len(), 11);
    }

    #[tokio::test]
    async fn a_query_does_not_wait_for_a_documents_batch() {
        let recorder = Arc::new(Recorder {
            log: Mutex::default(),
        });
        let fair = FairEmbedder::new(recorder, 1, 4, 1000);
        let _batch_in_flight = fair.turns.take(Uuid::new_v4()).await;
        let query = tokio::time::timeout(
            Duration::from_secs(5),
            fair.embed_query(Uuid::new_v4(), "when do you open?".to_owned()),
        )
        .await;
        assert_eq!(query.unwrap().unwrap(), vec![1.0]);
    }

    #[tokio::test]
    async fn a_dropped_waiter_passes_its_slot_on() {
        let recorder = Arc::new(Recorder {
            log: Mutex::default(),
        });
        let fair = FairEmbedder::new(recorder, 1, 4, 1000);
        let held = fair.turns.take(Uuid::new_v4()).await;
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            fair.embed(Uuid::new_v4(), &texts("x", 1)),
        )
        .await;
        assert!(gave_up.is_err());
        drop(held);
        let done = tokio::time::timeout(
            Duration::from_secs(5),
            fair.embed(Uuid::new_v4(), &texts("y", 1)),
        )
        .await;
        assert!(done.is_ok(), "the slot was not lost");
    }

    #[test]
    fn reservations_are_bounded_per_tenant_and_given_back() {
        let recorder = Arc::new(Recorder {
            log: Mutex::default(),
        });
        let fair = FairEmbedder::new(recorder, 1, 4, 10);
        let tenant = Uuid::new_v4();
        assert_eq!(
            fair.reserve(tenant, 11).err(),
            Some(ReserveError::TooLarge {
                texts: 11,
                limit: 10
            })
        );
        let first = fair.reserve(tenant, 8).unwrap();
        assert_eq!(
            fair.reserve(tenant, 3).err(),
            Some(ReserveError::Busy {
                queued: 8,
                limit: 10
            })
        );
        assert!(fair.reserve(Uuid::new_v4(), 10).is_ok(), "another tenant");
        drop(first);
        assert!(fair.reserve(tenant, 10).is_ok());
    }
}
