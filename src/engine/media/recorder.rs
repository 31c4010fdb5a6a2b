//! Records the outcomes of the fetcher's downloads: whatever finished meanwhile is written in
//! one transaction (group commit), not one per file. A download keeps its slot — and with it
//! the bound on the bytes held in memory — until its outcome is recorded.

use super::blobs::MediaBlobs;
use super::store::{self, StoredFile, Unfetched};
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// Outcomes written in one transaction at most.
const MAX_BATCH: usize = 256;

pub enum Outcome {
    Stored(StoredFile),
    Unfetched(Unfetched),
}

/// One finished download and the slot it holds.
pub struct Done {
    pub outcome: Outcome,
    pub slot: OwnedSemaphorePermit,
}

/// Where downloads hand their outcomes.
pub type Recorder = mpsc::UnboundedSender<Done>;

/// Starts the recorder; it ends when every [`Recorder`] is dropped and all is written.
pub fn spawn(pool: PgPool, blobs: MediaBlobs) -> Recorder {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(run(pool, blobs, receiver));
    sender
}

async fn run(pool: PgPool, blobs: MediaBlobs, mut outcomes: mpsc::UnboundedReceiver<Done>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while outcomes.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&pool, &blobs, &batch).await;
        // The slots are free again: the next downloads may start.
        batch.clear();
    }
}

async fn write(pool: &PgPool, blobs: &MediaBlobs, batch: &[Done]) {
    let mut stored = Vec::new();
    let mut unfetched = Vec::new();
    for done in batch {
        match &done.outcome {
            Outcome::Stored(file) => stored.push(file),
            Outcome::Unfetched(failure) => unfetched.push(failure),
        }
    }
    match store::record(pool, &stored, &unfetched).await {
        // The rows went while the files downloaded: so do their objects.
        Ok(gone) => {
            for file in gone {
                blobs.delete_placed(&file.placement).await;
            }
        }
        Err(error) => {
            tracing::warn!(%error, files = batch.len(),
                "media outcomes not recorded; retried after the lease");
        }
    }
}
