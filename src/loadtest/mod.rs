//! `flomastr load`: a bounded load test a platform engineer runs against their own deployment.
//! It posts inbound webhooks for one tenant, as its provider would (signed with the tenant's own
//! webhook credentials), and works the jobs they queue with the tenant's worker token, as n8n
//! would; then it prints what it measured. Every message it sends carries a run id, so a job that
//! is not its own is handed back at once and the run stops: point it at a tenant kept for load
//! tests, not at one whose customers are being answered.

mod args;
mod producer;
mod progress;
mod report;
mod tally;
mod webhook;
mod worker;

pub use args::{LoadArgs, LoadProvider};
pub use report::Summary;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tally::Tally;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("could not write the summary to {path}: {source}")]
    Output {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs the load test to its bounds and returns what it measured. The caller decides what a
/// failed run is (see [`Summary::passed`]).
pub async fn run(args: LoadArgs) -> Result<Summary, LoadError> {
    let plan = Arc::new(args.plan()?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.producers + plan.workers)
        .timeout(Duration::from_secs(30))
        .build()?;
    let tally = Arc::new(Tally::new(plan.messages));
    let producing = CancellationToken::new();
    let working = CancellationToken::new();
    let started = Instant::now();

    let progress = progress::spawn(tally.clone(), started, working.clone());
    let producers = producer::spawn_all(&client, &plan, &tally, &producing);
    let workers = if plan.ingest_only {
        Vec::new()
    } else {
        worker::spawn_all(&client, &plan, &tally, &working, &producing)
    };

    // Producers stop at the message count, the duration, or when a worker found a foreign job.
    let deadline = tokio::time::sleep(plan.duration);
    tokio::pin!(deadline);
    let mut producers = producers;
    tokio::select! {
        _ = &mut deadline => producing.cancel(),
        _ = producing.cancelled() => {}
        _ = producer::join(&mut producers) => {}
    }
    producing.cancel();
    producer::join(&mut producers).await;
    let ingest_elapsed = started.elapsed();

    if !plan.ingest_only {
        drain(&tally, &working, plan.drain_timeout).await;
    }
    working.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    let _ = progress.await;

    let summary = Summary::from_tally(&plan, &tally, ingest_elapsed, started.elapsed());
    if let Some(path) = &plan.output {
        std::fs::write(path, summary.table()).map_err(|source| LoadError::Output {
            path: path.clone(),
            source,
        })?;
    }
    Ok(summary)
}

/// Waits until every acknowledged message's job is completed, the workers stopped (a foreign
/// job), or the drain timeout passed.
async fn drain(tally: &Tally, working: &CancellationToken, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !working.is_cancelled() {
        if tally.completed() >= tally.acknowledged() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
