//! The queue anchor, side by side: River (the Go job queue on PostgreSQL, `bench/river`) inserting
//! and working no-op jobs on this run's PostgreSQL server, as the engine's own login in the
//! engine's own database (River in a schema of its own), so durability settings and disk are
//! the same; then our full cycle over HTTP and our queue's claim -> complete without HTTP, each
//! as a ratio to River's figure.

use super::{Postgres, TENANTS, WorkerCalls, full_cycle};
use flomastr::engine::metrics::Metrics;
use flomastr::engine::queue::Queue;
use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Workers on both sides: River's MaxWorkers, our HTTP workers, our in-engine workers.
const WORKERS: usize = 50;
/// Connections on both sides: the engine bench gives the engine 40.
const CONNECTIONS: u32 = 40;
/// Jobs queued before the in-engine measurement (it stops early if they run out).
const IN_ENGINE_BACKLOG: usize = 100_000;

/// The table rows of the anchor: River's three figures, then ours as ratios to them.
pub async fn rows(
    client: &reqwest::Client,
    pg: &Postgres,
    url: &str,
    duration: Duration,
) -> Vec<String> {
    let river = match run_river(pg, duration) {
        Ok(river) => river,
        Err(why) => {
            return vec![format!(
                "| River anchor | not run | — | {} |",
                why.replace('|', "/")
            )];
        }
    };
    let figure = |name: &str| river[name].as_f64().unwrap_or(f64::NAN);
    let (insert_single, insert_many) = (
        figure("insert_single_jobs_per_s"),
        figure("insert_many_jobs_per_s"),
    );
    let (work, cycle) = (
        figure("work_jobs_per_s"),
        figure("cycle_completed_jobs_per_s"),
    );
    let settings = format!(
        "River {}, MaxWorkers {WORKERS}, FetchCooldown {} ms, FetchPollInterval {} ms (River's own benchmark tuning), pool {CONNECTIONS}; synchronous_commit={}, fsync={}",
        river["river_version"].as_str().unwrap_or("?"),
        river["fetch_cooldown_ms"],
        river["fetch_poll_interval_ms"],
        river["synchronous_commit"].as_str().unwrap_or("?"),
        river["fsync"].as_str().unwrap_or("?"),
    );
    let ours_cycle = full_cycle(client, url, WORKERS, 16, duration, WorkerCalls::OneCall)
        .await
        .0;
    pg.psql("DELETE FROM jobs");
    pg.psql("VACUUM ANALYZE jobs");
    let ours_in_engine = in_engine_rate(pg, duration).await;
    pg.psql("DELETE FROM jobs");
    pg.psql("VACUUM ANALYZE jobs");
    vec![
        format!(
            "| River anchor: insert no-op jobs, {WORKERS} clients | Insert {insert_single:.0} jobs/s; InsertMany (100 a call) {insert_many:.0} jobs/s | anchor | same server, same run: {settings} |"
        ),
        format!(
            "| River anchor: work a backlog of no-op jobs, {WORKERS} workers | {work:.0} jobs/s completed | anchor | jobs queued beforehand (COPY); completions counted once committed |"
        ),
        format!(
            "| River anchor: full cycle, 16 producers (InsertMany 10 a call) while {WORKERS} workers work | {cycle:.0} jobs/s completed | anchor | inserted {:.0} jobs/s, backlog kept under 2000 |",
            figure("cycle_inserted_jobs_per_s")
        ),
        format!(
            "| ours vs River: full cycle over HTTP (ingest -> complete-and-next, {WORKERS} workers, {TENANTS} tenants) | {ours_cycle:.0} jobs/s completed | ratio to River | River full cycle {cycle:.0} jobs/s; ratio **{:.2}x** |",
            ours_cycle / cycle
        ),
        format!(
            "| ours vs River: in-engine claim -> complete (the engine's Queue, no HTTP), {WORKERS} workers, {TENANTS} tenants | {ours_in_engine:.0} jobs/s completed | ratio to River | River work {work:.0} jobs/s; ratio **{:.2}x** |",
            ours_in_engine / work
        ),
    ]
}

/// Builds (cached) and runs `bench/river` against the bench's database; its JSON figures, or
/// why it could not run (Go missing, River failing), for the table.
fn run_river(pg: &Postgres, duration: Duration) -> Result<Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/river-bench-build");
    let built = Command::new(script)
        .output()
        .map_err(|e| format!("{script}: {e}"))?;
    if !built.status.success() {
        return Err(last_line(&built.stderr));
    }
    let binary = String::from_utf8_lossy(&built.stdout).trim().to_owned();
    let out = Command::new(&binary)
        // The URL carries the engine login's password: through the environment, not argv.
        .env("DATABASE_URL", &pg.url)
        .args(["-seconds", &duration.as_secs_f64().to_string()])
        .args([
            "-clients",
            &WORKERS.to_string(),
            "-workers",
            &WORKERS.to_string(),
        ])
        .args([
            "-producers",
            "16",
            "-cycle-batch",
            "10",
            "-cycle-backlog",
            "2000",
        ])
        .args(["-pool", &CONNECTIONS.to_string()])
        .output()
        .map_err(|e| format!("{binary}: {e}"))?;
    if !out.status.success() {
        return Err(last_line(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("bench/river printed no JSON: {e}"))
}

fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .last()
        .unwrap_or("failed without a message")
        .to_owned()
}

/// Our queue without HTTP: `WORKERS` tasks in this process spread over the tenants, each taking
/// its tenant's next job from the engine's `Queue` (lanes, batched claims, fencing as in the
/// engine) and completing it, over a backlog of one-job conversations; completions per second.
async fn in_engine_rate(pg: &Postgres, duration: Duration) -> f64 {
    pg.psql(&format!(
        "INSERT INTO jobs (tenant_id, payload, conversation_key, dedup_key) \
         SELECT t.id, jsonb_build_object('message', 'noop', 'message_id', 'q' || g), 'q' || g, 'in-engine-' || g \
         FROM generate_series(1, {IN_ENGINE_BACKLOG}) g JOIN tenants t ON t.slug = 't' || (g % {TENANTS}); ANALYZE jobs"
    ));
    let tenants: Vec<uuid::Uuid> = (0..TENANTS)
        .map(|t| {
            pg.psql(&format!("SELECT id FROM tenants WHERE slug = 't{t}'"))
                .parse()
                .unwrap()
        })
        .collect();
    let pool = flomastr::db::connect(&pg.url, CONNECTIONS)
        .await
        .expect("connect");
    let shutdown = CancellationToken::new();
    let queue = Queue::new(
        pool.clone(),
        Duration::from_secs(60),
        Arc::new(Metrics::default()),
        shutdown.clone(),
    );
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (queue, done, stop, tenant) = (
                queue.clone(),
                done.clone(),
                stop.clone(),
                tenants[w % TENANTS],
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(job)) = queue.next_job(tenant, 1000, Duration::from_secs(1)).await
                    else {
                        continue;
                    };
                    if queue
                        .complete(tenant, job.job_id, job.lease_token)
                        .await
                        .is_ok()
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let deadline = started + duration;
    while Instant::now() < deadline && done.load(Ordering::Relaxed) < IN_ENGINE_BACKLOG as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    shutdown.cancel();
    for w in workers {
        let _ = w.await;
    }
    pool.close().await;
    rate
}
