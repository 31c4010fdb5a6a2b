//! The media fetcher: downloads each media file after its job's commit, off the webhook's
//! acknowledgement path. Committed rows are announced on a channel (the ingest writers' media
//! hook) and, for what the channel missed (a full channel, a restart, a retry coming due), the
//! table is swept every few seconds. At most `concurrency` downloads run at once; each row is
//! claimed in the database first, so no file is fetched twice at the same time, by this engine
//! or another replica.

use super::download::{Downloader, FetchError};
use super::settings::MediaSettings;
use super::store::{self, Claim, Stored};
use crate::engine::ingest::MediaHook;
use crate::engine::metrics::Metrics;
use crate::engine::providers::Provider;
use crate::engine::tenants::{TenantDirectory, parse_provider};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows announced and not yet taken; past this the sweep finds them.
const CHANNEL: usize = 4096;
const SWEEP_EVERY: Duration = Duration::from_secs(2);
const SWEEP_BATCH: i64 = 256;
/// Content type of a file whose provider named none.
const UNKNOWN_TYPE: &str = "application/octet-stream";

type Item = (Uuid, Uuid);

/// The announcing side, handed to the ingest writers.
pub struct Announcer(mpsc::Sender<Item>);

impl Announcer {
    pub fn hook(self) -> MediaHook {
        let sender = self.0;
        Arc::new(move |items: &[Item]| {
            for item in items {
                // A full channel loses nothing: the sweep finds the row.
                let _ = sender.try_send(*item);
            }
        })
    }
}

/// The receiving side, until the fetcher starts.
pub struct Inbox(mpsc::Receiver<Item>);

pub fn channel() -> (Announcer, Inbox) {
    let (sender, receiver) = mpsc::channel(CHANNEL);
    (Announcer(sender), Inbox(receiver))
}

struct Fetcher {
    pool: PgPool,
    tenants: Arc<TenantDirectory>,
    downloader: Downloader,
    settings: MediaSettings,
    metrics: Arc<Metrics>,
}

pub fn spawn(
    inbox: Inbox,
    pool: PgPool,
    tenants: Arc<TenantDirectory>,
    downloader: Downloader,
    settings: MediaSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let fetcher = Arc::new(Fetcher {
        pool,
        tenants,
        downloader,
        settings,
        metrics,
    });
    tokio::spawn(run(fetcher, inbox.0, shutdown));
}

async fn run(fetcher: Arc<Fetcher>, mut inbox: mpsc::Receiver<Item>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(fetcher.settings.concurrency));
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let items = tokio::select! {
            Some(item) = inbox.recv() => vec![item],
            _ = sweep.tick() => store::due(&fetcher.pool, SWEEP_BATCH).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "media sweep failed; will retry");
                Vec::new()
            }),
            _ = shutdown.cancelled() => return,
        };
        for item in items {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("never closed"),
                _ = shutdown.cancelled() => return,
            };
            let fetcher = fetcher.clone();
            tokio::spawn(async move {
                fetcher.fetch(item).await;
                drop(permit);
            });
        }
    }
}

impl Fetcher {
    async fn fetch(&self, (tenant, id): Item) {
        let claim = match store::claim(&self.pool, tenant, id).await {
            Ok(Some(claim)) => claim,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "media claim failed; the sweep retries");
                return;
            }
        };
        let result = match self.download(&claim).await {
            Ok(fetched) => {
                let sha256 = hex::encode(Sha256::digest(&fetched.bytes));
                let content_type = fetched
                    .content_type
                    .or(claim.declared_type.clone())
                    .unwrap_or_else(|| UNKNOWN_TYPE.to_owned());
                match self.settings.blobs.put(tenant, id, &fetched.bytes).await {
                    Ok(placement) => {
                        self.count("stored");
                        let file = Stored {
                            content_type: &content_type,
                            sha256: &sha256,
                            bytes: &fetched.bytes,
                            placement: &placement,
                        };
                        match store::stored(&self.pool, tenant, id, file).await {
                            Ok(true) => Ok(()),
                            // The row went while the file downloaded: so does its object.
                            Ok(false) => {
                                self.settings.blobs.delete_placed(&placement).await;
                                Ok(())
                            }
                            Err(error) => Err(error),
                        }
                    }
                    Err(error) => {
                        // The object store is down: like a provider outage, tried again later.
                        tracing::warn!(%error, media = %id, "media object store refused a file");
                        self.count("retry");
                        let retry = self.settings.backoff(claim.attempts);
                        store::unfetched(
                            &self.pool,
                            tenant,
                            id,
                            "object_store: the media store is unavailable",
                            Some(retry),
                        )
                        .await
                    }
                }
            }
            Err(error) => {
                let retry = (error.retryable() && claim.attempts < self.settings.attempts)
                    .then(|| self.settings.backoff(claim.attempts));
                self.count(if retry.is_some() { "retry" } else { "failed" });
                tracing::info!(tenant = %claim.slug, media = %id, code = error.code(), %error,
                    attempt = claim.attempts, retrying = retry.is_some(), "media not fetched");
                let message = format!("{}: {error}", error.code());
                store::unfetched(&self.pool, tenant, id, &message, retry).await
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, media = %id, "media outcome not recorded; retried after the lease");
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
