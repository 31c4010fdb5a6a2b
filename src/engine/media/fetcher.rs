//! The media fetcher: downloads each media file after its job's commit, off the webhook's
//! acknowledgement path. The ingest writers wake it after each commit that made media rows;
//! it then claims the due `pending` rows in one statement (new files, retries coming due, rows
//! an engine that stopped had claimed — a sweep every few seconds finds what no wake announced),
//! downloads them, at most `concurrency` at once, and the recorder writes the outcomes of many
//! downloads in one transaction. Claims skip rows another fetcher is claiming, so no file is
//! fetched twice at the same time, by this engine or another replica. While webhook requests
//! queue for their commit, the pacer makes the fetcher yield (see `pacing`).

use super::download::{Downloader, FetchError};
use super::pacing::Pacer;
use super::recorder::{self, Done, Outcome, Recorder};
use super::settings::MediaSettings;
use super::store::{self, Claim, StoredFile, Unfetched};
use crate::engine::ingest::MediaHook;
use crate::engine::ingest_activity::IngestActivity;
use crate::engine::metrics::Metrics;
use crate::engine::providers::Provider;
use crate::engine::tenants::{TenantDirectory, parse_provider};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the table is looked at without a wake (retries coming due, other replicas' rows).
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Rows claimed in one statement at most (fewer when fewer download slots are free).
const CLAIM_BATCH: usize = 64;
/// Content type of a file whose provider named none.
const UNKNOWN_TYPE: &str = "application/octet-stream";

/// The waking side, handed to the ingest writers.
pub struct Announcer(Arc<Notify>);

impl Announcer {
    pub fn hook(self) -> MediaHook {
        let wake = self.0;
        // The rows are in the table: a wake is all the fetcher needs (several coalesce into one).
        Arc::new(move |_: &[(Uuid, Uuid)]| wake.notify_one())
    }
}

/// The woken side, until the fetcher starts.
pub struct Inbox(Arc<Notify>);

pub fn channel() -> (Announcer, Inbox) {
    let wake = Arc::new(Notify::new());
    (Announcer(wake.clone()), Inbox(wake))
}

struct Fetcher {
    tenants: Arc<TenantDirectory>,
    downloader: Downloader,
    settings: MediaSettings,
    metrics: Arc<Metrics>,
}

/// What the fetcher works with besides the database.
pub struct FetcherParts {
    pub tenants: Arc<TenantDirectory>,
    pub downloader: Downloader,
    pub settings: MediaSettings,
    pub metrics: Arc<Metrics>,
    /// The acknowledgement path's pressure, which the fetcher yields to.
    pub ingest: Arc<IngestActivity>,
}

pub fn spawn(inbox: Inbox, pool: PgPool, parts: FetcherParts, shutdown: CancellationToken) {
    let recorder = recorder::spawn(pool.clone(), parts.settings.blobs.clone());
    let pacer = Pacer::new(parts.ingest);
    let fetcher = Arc::new(Fetcher {
        tenants: parts.tenants,
        downloader: parts.downloader,
        settings: parts.settings,
        metrics: parts.metrics,
    });
    tokio::spawn(run(fetcher, pool, inbox.0, pacer, recorder, shutdown));
}

async fn run(
    fetcher: Arc<Fetcher>,
    pool: PgPool,
    wake: Arc<Notify>,
    pacer: Pacer,
    recorder: Recorder,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(fetcher.settings.concurrency));
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(mut free) = free_slots(&slots, &pacer, &shutdown).await else {
            return;
        };
        let asked = free.len();
        let claims = store::claim_due(&pool, asked as i64)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "media claim failed; will retry");
                Vec::new()
            });
        let more_due = claims.len() == asked;
        for (claim, slot) in claims.into_iter().zip(free.drain(..)) {
            let (fetcher, recorder) = (fetcher.clone(), recorder.clone());
            tokio::spawn(async move {
                let outcome = fetcher.fetch(&claim).await;
                // A closed recorder means the engine stopped: the lease retries the row.
                let _ = recorder.send(Done { outcome, slot });
            });
        }
        // Slots not used go back now.
        drop(free);
        if !more_due {
            tokio::select! {
                _ = wake.notified() => {}
                _ = sweep.tick() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Waits for at least one free download slot, takes up to [`CLAIM_BATCH`], and keeps as many
/// as the pacer allows; `None` on shutdown.
async fn free_slots(
    slots: &Arc<Semaphore>,
    pacer: &Pacer,
    shutdown: &CancellationToken,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        _ = shutdown.cancelled() => return None,
    };
    // Slots come back many at once (a recorded batch): let the others return before counting.
    tokio::task::yield_now().await;
    let mut free = vec![first];
    while free.len() < CLAIM_BATCH {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            break;
        };
        free.push(slot);
    }
    let allowed = tokio::select! {
        allowed = pacer.turn(free.len()) => allowed,
        _ = shutdown.cancelled() => return None,
    };
    free.truncate(allowed.max(1));
    Some(free)
}

impl Fetcher {
    /// Downloads and places one claimed file; what the recorder is to write.
    async fn fetch(&self, claim: &Claim) -> Outcome {
        let (tenant, id) = (claim.tenant_id, claim.id);
        let fetched = match self.download(claim).await {
            Ok(fetched) => fetched,
            Err(error) => {
                let retry = (error.retryable() && claim.attempts < self.settings.attempts)
                    .then(|| self.settings.backoff(claim.attempts));
                self.count(if retry.is_some() { "retry" } else { "failed" });
                tracing::info!(tenant = %claim.slug, media = %id, code = error.code(), %error,
                    attempt = claim.attempts, retrying = retry.is_some(), "media not fetched");
                return Outcome::Unfetched(Unfetched {
                    tenant_id: tenant,
                    id,
                    error: format!("{}: {error}", error.code()),
                    retry_after: retry,
                });
            }
        };
        let sha256 = hex::encode(Sha256::digest(&fetched.bytes));
        let content_type = fetched
            .content_type
            .or(claim.declared_type.clone())
            .unwrap_or_else(|| UNKNOWN_TYPE.to_owned());
        match self.settings.blobs.put(tenant, id, &fetched.bytes).await {
            Ok(placement) => {
                self.count("stored");
                Outcome::Stored(StoredFile {
                    tenant_id: tenant,
                    id,
                    content_type,
                    sha256,
                    bytes: fetched.bytes,
                    placement,
                })
            }
            Err(error) => {
                // The object store is down: like a provider outage, tried again later.
                tracing::warn!(%error, media = %id, "media object store refused a file");
                self.count("retry");
                Outcome::Unfetched(Unfetched {
                    tenant_id: tenant,
                    id,
                    error: "object_store: the media store is unavailable".into(),
                    retry_after: Some(self.settings.backoff(claim.attempts)),
                })
            }
        }
    }

    /// The tenant's credentials of the sender the message arrived on (or its first sender of
    /// the provider when that one is gone), and its size limit.
    async fn download(&self, claim: &Claim) -> Result<super::download::Fetched, FetchError> {
        let tenant = self
            .tenants
            .by_slug(&claim.slug)
            .await
            .map_err(|_| FetchError::Transport("the tenant cannot be loaded"))?
            .ok_or(FetchError::NoCredentials("tenant"))?;
        let provider: Provider = parse_provider(&claim.provider);
        let channel = claim
            .sender_id
            .and_then(|id| tenant.sender(id))
            .filter(|sender| sender.provider == provider)
            .or_else(|| tenant.senders_of(provider).next())
            .ok_or(FetchError::NoCredentials("sender"))?;
        let limit = claim
            .media_max_bytes
            .map_or(self.settings.max_bytes, |limit| limit as u64);
        self.downloader
            .download(channel, &claim.provider_ref, limit)
            .await
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .media_fetches
            .get_or_create(&crate::engine::metrics::OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
