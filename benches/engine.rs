//! Engine benchmarks, each measured side by side in one run on one PostgreSQL server:
//!
//! - ingest: concurrent InfoBip webhooks (2xx after commit) against pgbench with the same
//!   concurrency inserting the rows the engine writes for each message (the job with its own
//!   payload, the contact's window), and against the first anchor, the job row only with one
//!   constant payload;
//! - full cycle: ingest -> next-job -> complete, 50 workers across 10 tenants;
//! - ingest with media: image webhooks whose media the engine fetches from the sandbox after
//!   the commit, against text-only webhooks to the same tenant in the same run;
//! - pickup latency: from a webhook's commit to a worker already waiting in a long poll;
//! - fairness: a quiet tenant's pickup latency while another tenant drains a 100k backlog,
//!   against its latency when the engine is idle;
//! - campaign: a 100,000-contact Relational Pulse campaign planned (time, engine memory), then
//!   sent at its pacing rate while another tenant's inbound pickup is measured against idle.
//! - river: the queue anchor, River (Go, `bench/river`) inserting and working no-op jobs on the
//!   same server in the same run, beside our full cycle and our in-engine claim -> complete.
//!
//! Run with `bench/run` (or `cargo bench --bench engine`); results go to stdout and to
//! `target/bench/engine.md`. The engine runs as its own release process; the load generator
//! shares the machine, as providers and workers would share nothing with it in production.

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Beside this file, not in benches/ itself, so cargo does not take it for a bench of its own.
#[path = "engine/river.rs"]
mod river;

const ADMIN: &str = "bench-admin-token-0123456789";
const TENANTS: usize = 10;
/// The pacing rate the send benchmark configures (messages per second per sender).
const SEND_RATE: u32 = 200;
/// The tenant the media benchmark posts to (`t10`, beside the ten of the other benchmarks).
const MEDIA_TENANT: usize = TENANTS;
/// Size of the image the media benchmark's messages carry.
const MEDIA_BYTES: usize = 16 * 1024;

struct Postgres {
    dir: std::path::PathBuf,
    url: String,
    pgbin: String,
}

impl Postgres {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("flomastr-bench-{}", std::process::id()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres");
        let out = Command::new(script)
            .arg("start")
            .arg(dir.join("pg"))
            .output()
            .expect("scripts/postgres");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .map(|v| v.trim_end_matches('\'').to_owned())
                .unwrap()
        };
        let url = engine_login(&var("FLOMASTR_PG_URL"));
        Self {
            url,
            pgbin: var("PGBIN"),
            dir,
        }
    }

    fn psql(&self, sql: &str) -> String {
        let out = Command::new(format!("{}/psql", self.pgbin))
            .args([&self.url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// As in production: the engine's own login (not a superuser) owning database `flomastr`, set up
/// by `flomastr migrate --admin-url`. pgbench inserts as the same login into the same table.
fn engine_login(admin_url: &str) -> String {
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_username("flomastr_bench").unwrap();
    url.set_password(Some("bench-engine-password")).unwrap();
    url.set_path("/flomastr");
    let out = Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .arg("migrate")
        .env("DATABASE_URL", url.as_str())
        .env("FLOMASTR_DATABASE_ADMIN_URL", admin_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("flomastr migrate");
    assert!(
        out.status.success(),
        "flomastr migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    url.to_string()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres");
        let _ = Command::new(script)
            .arg("stop")
            .arg(self.dir.join("pg"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Engine {
    child: Child,
    url: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sandbox_port`: where the send benchmark's sandbox listens, `media_port` the media
/// benchmark's; the engine allows both explicitly.
fn start_engine(database_url: &str, sandbox_port: u16, media_port: u16) -> Engine {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let child = Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .arg("engine")
        .env("DATABASE_URL", database_url)
        .env("FLOMASTR_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOMASTR_ADMIN_TOKEN", ADMIN)
        .env("FLOMASTR_MASTER_KEY", format!("bench:{key}"))
        .env("FLOMASTR_DB_CONNECTIONS", "40")
        .env("FLOMASTR_SENDER_RATE", SEND_RATE.to_string())
        .env("FLOMASTR_SENDER_BURST", "20")
        .env(
            "FLOMASTR_PROVIDER_BASE_URL_ALLOW",
            format!(
                "infobip=http://127.0.0.1:{sandbox_port},infobip=http://127.0.0.1:{media_port}"
            ),
        )
        .env("FLOMASTR_PROVIDER_PRIVATE_NETWORKS", "127.0.0.1/32")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the engine");
    Engine {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap()
}

async fn wait_up(client: &reqwest::Client, url: &str) {
    for _ in 0..600 {
        if client
            .get(format!("{url}/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("engine did not start");
}

fn sender(tenant: usize) -> String {
    format!("4411349600{tenant:02}")
}

async fn register(client: &reqwest::Client, url: &str, tenant: usize) {
    let body = json!({
        "display_name": format!("Bench {tenant}"),
        "max_concurrency": 1000,
        "worker_token_sha256": [sha256_hex(&format!("worker-{tenant}"))],
        "channel": {"provider": "infobip", "sender": sender(tenant),
                    "credentials": {"webhook_secret": format!("hook-{tenant}")}}
    });
    let r = client
        .put(format!("{url}/admin/tenants/t{tenant}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// An inbound text as InfoBip sends it, received now (so the contact's 24-hour window opens, as
/// it does for real traffic).
fn infobip_message(tenant: usize, contact: u64, id: &str) -> Value {
    let received_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    json!({"from": format!("4477{contact:08}"), "to": sender(tenant), "integrationType": "WHATSAPP",
           "receivedAt": received_at, "messageId": id,
           "message": {"type": "TEXT", "text": "Hola, ¿tenéis pan sin gluten hoy?"}, "contact": {"name": "Bench"}})
}

async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    tenant: usize,
    results: Vec<Value>,
) -> bool {
    client
        .post(format!("{url}/webhook/infobip/t{tenant}"))
        .header("x-webhook-secret", format!("hook-{tenant}"))
        .json(&json!({"results": results, "messageCount": 1, "pendingMessageCount": 0}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// What client `c` posts as its `i`-th webhook (message id given): the tenant and the message.
type MessageOf = Arc<dyn Fn(usize, u64, &str) -> (usize, Value) + Send + Sync>;

/// Texts spread over the ten tenants.
fn spread_texts() -> MessageOf {
    Arc::new(|c, i, id| {
        let tenant = c % TENANTS;
        (
            tenant,
            infobip_message(tenant, c as u64 * 1_000_000 + i, id),
        )
    })
}

/// Concurrent single-message webhooks for `duration`; returns committed rows per second.
async fn ingest_rate(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    duration: Duration,
    message_of: MessageOf,
) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let (client, url, counter, stop, message_of) = (
                client.clone(),
                url.to_owned(),
                counter.clone(),
                stop.clone(),
                message_of.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = format!("ing-{c}-{i}");
                    let (tenant, message) = message_of(c, i, &id);
                    if post_webhook(&client, &url, tenant, vec![message]).await {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// What pgbench inserts for each message.
#[derive(Clone, Copy)]
enum PgbenchRows {
    /// The job row only, with one payload for every row (parsed once, when the statement is
    /// prepared) and one conversation: the anchor this row was first measured against.
    JobOnly,
    /// The rows the engine writes for each message: the job, with a payload of its own (the
    /// message id and contact differ, so PostgreSQL parses each one), and the contact's new
    /// 24-hour window row, in one statement and one transaction per message.
    JobAndWindow,
}

/// pgbench inserting `rows` for each message, one message per transaction as a plain service
/// would, with the same number of clients.
fn pgbench_rate(
    pg: &Postgres,
    tenant_id: &str,
    rows: PgbenchRows,
    concurrency: usize,
    duration: Duration,
) -> f64 {
    let payload = |from: &str, id: &str| {
        json!({"tenant_id": "t0", "from": from, "message": "Hola, ¿tenéis pan sin gluten hoy?",
            "timestamp": "2026-11-25T10:00:00.000Z", "provider": "infobip", "message_id": id, "type": "text",
            "contact": {"id": from, "phone": from, "name": "Bench"}, "to": sender(0),
            "raw": infobip_message(0, 1, id)})
        .to_string()
        .replace('\'', "''")
    };
    let script = match rows {
        PgbenchRows::JobOnly => format!(
            "\\set r random(1, 9000000000000000)\n\
             INSERT INTO jobs (tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts) \
             VALUES ('{tenant_id}', '{}'::jsonb, '447700000001', 'pgbench:' || :client_id || '-' || :r, now(), 5) \
             ON CONFLICT (tenant_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING;\n",
            payload("447700000001", "x")
        ),
        PgbenchRows::JobAndWindow => format!(
            "\\set r random(1, 9000000000000000)\n\
             WITH job AS (INSERT INTO jobs (tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts) \
             VALUES ('{tenant_id}', replace('{}', '@R@', :r::text)::jsonb, '4477' || :r, 'pgbench:' || :client_id || '-' || :r, now(), 5) \
             ON CONFLICT (tenant_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING 1) \
             INSERT INTO contact_windows (tenant_id, contact, last_inbound_at) VALUES ('{tenant_id}', '4477' || :r, now()) \
             ON CONFLICT (tenant_id, contact) DO UPDATE \
             SET last_inbound_at = GREATEST(contact_windows.last_inbound_at, EXCLUDED.last_inbound_at);\n",
            payload("4477@R@", "pgbench-@R@")
        ),
    };
    let file = pg.dir.join("insert.sql");
    std::fs::write(&file, script).unwrap();
    let out = Command::new(format!("{}/pgbench", pg.pgbin))
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &concurrency.to_string(),
            "-j",
            "2",
            "-T",
            &duration.as_secs().to_string(),
            "-f",
        ])
        .arg(&file)
        .arg(&pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .expect("pgbench prints tps")
}

/// How the cycle's workers talk to the engine.
#[derive(Clone, Copy, PartialEq)]
enum WorkerCalls {
    /// next-job, then complete: two round trips per job.
    TwoCalls,
    /// complete-and-next: one round trip per job.
    OneCall,
    /// `POST /queue/batch`: completes the jobs of the last call and takes up to this many.
    Batch(usize),
}

/// ingest -> next-job -> complete, `workers` workers spread over the tenants, calling as `calls`.
async fn full_cycle(
    client: &reqwest::Client,
    url: &str,
    workers: usize,
    producers: usize,
    duration: Duration,
    calls: WorkerCalls,
) -> (f64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    let ingested = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, url, done, stop) =
            (client.clone(), url.to_owned(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let token = format!("worker-{}", w % TENANTS);
            let mut held = None;
            let mut batch = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let WorkerCalls::Batch(max) = calls {
                    let (completed, next) = batch_call(&client, &url, &token, &batch, max).await;
                    batch = next;
                    done.fetch_add(completed, Ordering::Relaxed);
                } else if calls == WorkerCalls::OneCall {
                    let job = match held.take() {
                        Some(job) => job,
                        None => match take(&client, &url, &token).await {
                            Some(job) => job,
                            None => continue,
                        },
                    };
                    let (completed, next) = complete_and_next(&client, &url, &token, &job).await;
                    held = next;
                    if completed {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                } else if take_and_complete(&client, &url, &token).await == Some(true) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for p in 0..producers {
        let (client, url, ingested, done, stop) = (
            client.clone(),
            url.to_owned(),
            ingested.clone(),
            done.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Closed loop: keep a bounded backlog, so the figure is the rate the whole cycle
                // sustains, not how fast a backlog can be piled up.
                if ingested
                    .load(Ordering::Relaxed)
                    .saturating_sub(done.load(Ordering::Relaxed))
                    > 2000
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                i += 1;
                let tenant = (p + i as usize) % TENANTS;
                // InfoBip batches results; 10 per request is a modest bucket.
                let results = (0..10)
                    .map(|k| {
                        infobip_message(
                            tenant,
                            (p as u64) << 32 | i << 4 | k,
                            &format!("cyc-{p}-{i}-{k}"),
                        )
                    })
                    .collect();
                if post_webhook(&client, &url, tenant, results).await {
                    ingested.fetch_add(10, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let elapsed = started.elapsed().as_secs_f64();
    let completed = done.load(Ordering::Relaxed) as f64 / elapsed;
    let offered = ingested.load(Ordering::Relaxed) as f64 / elapsed;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (completed, offered)
}

/// Pickup latency of one tenant's waiting workers: milliseconds from the webhook's 2xx (its
/// commit) to a worker holding the job, for `samples` messages sent one at a time.
async fn pickup_latency(
    client: &reqwest::Client,
    url: &str,
    tenant: usize,
    samples: usize,
) -> Vec<f64> {
    let acked_at: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (client, url, acked_at, latencies, stop) = (
            client.clone(),
            url.to_owned(),
            acked_at.clone(),
            latencies.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let token = format!("worker-{tenant}");
            while !stop.load(Ordering::Relaxed) {
                let Ok(r) = client
                    .get(format!("{url}/queue/next-job?wait=2"))
                    .bearer_auth(&token)
                    .send()
                    .await
                else {
                    continue;
                };
                if r.status() != 200 {
                    continue;
                }
                let job: Value = r.json().await.unwrap();
                let received = Instant::now();
                let id = job["payload"]["message_id"].as_str().unwrap().to_owned();
                // The worker may hold the job before the producer has read its 2xx: wait for it.
                let acked = loop {
                    if let Some(at) = acked_at.lock().unwrap().get(&id) {
                        break *at;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                };
                let ms = received.saturating_duration_since(acked).as_secs_f64() * 1000.0;
                latencies.lock().unwrap().push(ms);
                let jid = job["job_id"].as_str().unwrap();
                let _ = client
                    .post(format!("{url}/queue/jobs/{jid}/complete"))
                    .bearer_auth(&token)
                    .json(&json!({"lease_token": job["lease_token"]}))
                    .send()
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..samples {
        let id = format!("lat-{run}-{i}");
        assert!(
            post_webhook(
                client,
                url,
                tenant,
                vec![infobip_message(tenant, 9_000_000 + i as u64, &id)]
            )
            .await
        );
        acked_at.lock().unwrap().insert(id, Instant::now());
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while latencies.lock().unwrap().len() < samples && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let mut out = latencies.lock().unwrap().clone();
    out.sort_by(f64::total_cmp);
    out
}

/// Drains tenant `tenant`'s backlog with `workers` workers until stopped.
fn drain(
    client: &reqwest::Client,
    url: &str,
    tenant: usize,
    workers: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (client, url, stop, done) =
                (client.clone(), url.to_owned(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let token = format!("worker-{tenant}");
                while !stop.load(Ordering::Relaxed) {
                    if take_and_complete(&client, &url, &token).await.is_some() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// An InfoBip sandbox account on `port` (reports held back an hour, so none reach the engine
/// while it is measured); it stops when the returned sender is dropped or sent to.
async fn start_sandbox(
    port: u16,
    api_key: &str,
    sender: &str,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let accounts = flomastr::sandbox::Accounts::from_json(
        &json!({"infobip": [{"api_key": api_key, "sender": sender}]}).to_string(),
    )
    .unwrap();
    let knobs = flomastr::sandbox::Knobs {
        report_delay_ms: 3_600_000,
        ..Default::default()
    };
    let state = flomastr::sandbox::new_state(flomastr::sandbox::SandboxConfig { accounts, knobs });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, flomastr::sandbox::router(state))
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
            .ok()
    });
    (url, stop)
}

/// Sends `count` messages to distinct recipients through the sandbox; returns (msgs/s, engine CPU %).
async fn send_rate(
    client: &reqwest::Client,
    pg: &Postgres,
    engine: &Engine,
    sandbox_port: u16,
    count: usize,
) -> (f64, f64) {
    let (sandbox_url, _sandbox) = start_sandbox(sandbox_port, "bench-ib-key", &sender(0)).await;
    let body = json!({
        "display_name": "Bench 0", "max_concurrency": 1000,
        "worker_token_sha256": [sha256_hex("worker-0")],
        "channel": {"provider": "infobip", "sender": sender(0), "base_url": sandbox_url,
                    "credentials": {"webhook_secret": "hook-0", "api_key": "bench-ib-key"}}
    });
    let r = client
        .put(format!("{}/admin/tenants/t0", engine.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    pg.psql(&format!(
        "INSERT INTO contact_windows (tenant_id, contact, last_inbound_at) \
         SELECT (SELECT id FROM tenants WHERE slug = 't0'), '4477' || lpad(g::text, 8, '0'), now() FROM generate_series(1, {count}) g \
         ON CONFLICT (tenant_id, contact) DO UPDATE SET last_inbound_at = now()"
    ));
    let cpu_before = cpu_seconds(engine.child.id());
    let started = Instant::now();
    let posts = futures::stream::iter(0..count).map(|i| {
        let client = client.clone();
        let url = engine.url.clone();
        async move {
            let r = client
                .post(format!("{url}/messages/send"))
                .bearer_auth("worker-0")
                .json(
                    &json!({"to": format!("4477{:08}", i + 1), "message": "Tu pedido está listo"}),
                )
                .send()
                .await
                .expect("the engine answers");
            let status = r.status();
            assert_eq!(
                status,
                202,
                "send refused: {}",
                r.text().await.unwrap_or_default()
            );
        }
    });
    use futures::StreamExt as _;
    posts.buffer_unordered(32).collect::<Vec<_>>().await;
    loop {
        let accepted: usize = pg
            .psql("SELECT count(*) FROM outbound_messages WHERE status = 'accepted'")
            .parse()
            .unwrap_or(0);
        if accepted >= count || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(engine.child.id()) - cpu_before) / elapsed * 100.0;
    (count as f64 / elapsed, cpu)
}

/// The campaign benchmark's tenant: its sender, worker token and contacts.
const PULSE_SENDER: &str = "441134960099";
const PULSE_TOKEN: &str = "worker-pulse";

/// Resident memory of a process, MiB (VmRSS from /proc).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Samples a process's resident memory every 10 ms until dropped; keeps the peak.
struct RssPeak {
    peak: Arc<Mutex<f64>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(Mutex::new(rss_mib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = rss_mib(pid);
                let mut peak = p.lock().unwrap();
                *peak = peak.max(now);
                drop(peak);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> f64 {
        *self.peak.lock().unwrap()
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the campaign benchmark measured.
struct CampaignFigures {
    contacts: usize,
    plan_seconds: f64,
    rss_before: f64,
    rss_peak_planning: f64,
    rss_peak: f64,
    per_second: f64,
    queued_rate: f64,
    accepted_rate: f64,
    idle: Vec<f64>,
    busy: Vec<f64>,
}

/// A `contacts`-contact campaign (every contact wrote in the last 30 days) of tenant `pulse`,
/// planned by `POST .../runs` and sent at `per_minute` through the sandbox for `duration`,
/// while tenant 2's inbound pickup is measured; then cancelled and its messages removed, so
/// later benchmarks see none of it. The sandbox listens on `sandbox_port` only meanwhile.
async fn campaign(
    client: &reqwest::Client,
    pg: &Postgres,
    engine: &Engine,
    sandbox_port: u16,
    contacts: usize,
    per_minute: u32,
    duration: Duration,
) -> CampaignFigures {
    let (sandbox_url, stop_sandbox) =
        start_sandbox(sandbox_port, "bench-pulse-key", PULSE_SENDER).await;
    let body = json!({
        "display_name": "Bench pulse", "max_concurrency": 1000,
        "worker_token_sha256": [sha256_hex(PULSE_TOKEN)],
        "channel": {"provider": "infobip", "sender": PULSE_SENDER, "base_url": sandbox_url,
                    "credentials": {"webhook_secret": "hook-pulse", "api_key": "bench-pulse-key"}}
    });
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{}{path}", engine.url))
            .bearer_auth(PULSE_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{status}: {answer}");
            answer
        }
    };
    let r = client
        .put(format!("{}/admin/tenants/pulse", engine.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    call(
        reqwest::Method::PUT,
        "/routes/context/templates",
        Some(json!({"templates": [{"name": "weekly_offer", "language": "en_US", "category": "MARKETING",
            "status": "APPROVED", "body": "Hi {{1}}, this week: 20% off.",
            "variables": [{"description": "customer first name", "example": "friend"}]}]})),
    )
    .await;
    pg.psql(&format!(
        "INSERT INTO contact_windows (tenant_id, contact, last_inbound_at)          SELECT (SELECT id FROM tenants WHERE slug = 'pulse'), '4479' || lpad(g::text, 8, '0'), now() - interval '1 day'          FROM generate_series(1, {contacts}) g ON CONFLICT DO NOTHING; ANALYZE contact_windows"
    ));
    let idle = pickup_latency(client, &engine.url, 2, 300).await;

    let campaigns = "/routes/tenants/pulse/pulse/campaigns";
    let created = call(
        reqwest::Method::POST,
        campaigns,
        Some(json!({"name": "bench pulse", "audience": {"kind": "recent", "days": 30},
            "content": {"template": {"name": "weekly_offer", "language": "en_US", "params": ["friend"]}},
            "pacing": {"per_minute": per_minute}})),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let pid = engine.child.id();
    let rss_before = rss_mib(pid);
    let sampler = RssPeak::start(pid);
    let started = Instant::now();
    let running = call(
        reqwest::Method::POST,
        &format!("{campaigns}/{id}/runs"),
        None,
    )
    .await;
    let plan_seconds = started.elapsed().as_secs_f64();
    let rss_peak_planning = sampler.peak();
    let planned = running["runs"][0]["planned"].as_u64().unwrap_or(0) as usize;
    assert_eq!(planned, contacts, "{running}");

    // Sending: the pace is measured from the first queued message on, the other tenant's
    // pickup while it goes on.
    let queued = || {
        pg.psql("SELECT count(*) FROM campaign_recipients WHERE state = 'queued'")
            .parse::<f64>()
            .unwrap()
    };
    let accepted = || {
        pg.psql(
            "SELECT count(*) FROM outbound_messages m JOIN tenants t ON t.id = m.tenant_id              WHERE t.slug = 'pulse' AND m.status = 'accepted'",
        )
        .parse::<f64>()
        .unwrap()
    };
    let waiting_since = Instant::now();
    while queued() == 0.0 {
        assert!(
            waiting_since.elapsed() < Duration::from_secs(60),
            "the campaign queued nothing within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (queued_from, accepted_from, from) = (queued(), accepted(), Instant::now());
    let busy = pickup_latency(client, &engine.url, 2, 300).await;
    if let Some(rest) = duration.checked_sub(from.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let seconds = from.elapsed().as_secs_f64();
    let queued_rate = (queued() - queued_from) / seconds;
    let accepted_rate = (accepted() - accepted_from) / seconds;
    let rss_peak = sampler.peak();
    drop(sampler);

    call(
        reqwest::Method::POST,
        &format!("{campaigns}/{id}/cancel"),
        None,
    )
    .await;
    pg.psql(
        "DELETE FROM outbound_messages WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'pulse')",
    );
    let _ = stop_sandbox.send(());
    CampaignFigures {
        contacts,
        plan_seconds,
        rss_before,
        rss_peak_planning,
        rss_peak,
        per_second: f64::from(per_minute) / 60.0,
        queued_rate,
        accepted_rate,
        idle,
        busy,
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(filter));
}

async fn run(filter: Option<String>) {
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let duration = Duration::from_secs(seconds);
    let pg = Postgres::start();
    let sandbox_port = free_port();
    let media_port = free_port();
    let engine = start_engine(&pg.url, sandbox_port, media_port);
    let client = http();
    wait_up(&client, &engine.url).await;
    for tenant in 0..TENANTS {
        register(&client, &engine.url, tenant).await;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut rows = vec![format!(
        "Machine: {cores} cores; PostgreSQL 16 (pgserver), synchronous_commit=on, fsync=on; {seconds} s per measurement.\n"
    )];
    rows.push("| benchmark | result | target | side by side |".into());
    rows.push("|---|---|---|---|".into());

    if wants("ingest") {
        let concurrency = 64;
        let tenant_id = pg.psql("SELECT id FROM tenants WHERE slug = 't0'");
        // Every measurement starts from the same tables.
        let reset = || {
            pg.psql("DELETE FROM jobs; DELETE FROM contact_windows");
            pg.psql("VACUUM ANALYZE jobs, contact_windows");
        };
        reset();
        let engine_rate =
            ingest_rate(&client, &engine.url, concurrency, duration, spread_texts()).await;
        reset();
        let job_only = pgbench_rate(&pg, &tenant_id, PgbenchRows::JobOnly, concurrency, duration);
        reset();
        let same_rows = pgbench_rate(
            &pg,
            &tenant_id,
            PgbenchRows::JobAndWindow,
            concurrency,
            duration,
        );
        reset();
        rows.push(format!(
            "| ingest: InfoBip webhooks, 1 message each, {concurrency} clients, 2xx after commit | {engine_rate:.0} msgs/s | >= 1.0x pgbench | pgbench, {concurrency} clients, the job and window rows the engine writes (a payload per row): {same_rows:.0} msgs/s, ratio **{:.2}x**; the job row only, one payload: {job_only:.0} rows/s, ratio **{:.2}x** |",
            engine_rate / same_rows,
            engine_rate / job_only
        ));
    }
    if wants("cycle") {
        for (calls, named) in [
            (WorkerCalls::TwoCalls, "next-job -> complete".to_owned()),
            (WorkerCalls::OneCall, "complete-and-next".to_owned()),
            (
                WorkerCalls::Batch(10),
                "batch (complete the last 10, take up to 10 per call)".to_owned(),
            ),
        ] {
            let (completed, offered) =
                full_cycle(&client, &engine.url, 50, 16, duration, calls).await;
            rows.push(format!(
                "| full cycle: ingest -> {named}, 50 workers, {TENANTS} tenants | {completed:.0} jobs/s completed | >= 5000 jobs/s | ingested {offered:.0} msgs/s (16 producers, 10 results per webhook, backlog kept under 2000) |"
            ));
            pg.psql("DELETE FROM jobs");
            pg.psql("VACUUM ANALYZE jobs");
        }
    }
    if wants("river") {
        rows.extend(river::rows(&client, &pg, &engine.url, duration).await);
    }
    if wants("media") {
        let m = media_ingest(&client, &pg, &engine.url, media_port, duration).await;
        rows.push(format!(
            "| ingest with media fetch: InfoBip image webhooks ({} KiB each), 64 clients, 2xx after commit | {:.0} msgs/s | within 10 % of text-only | text-only to the same tenant, same run: {:.0} msgs/s; ratio **{:.2}x**; {} of {} media fetched and stored, the last {:.1} s after the load stopped |",
            MEDIA_BYTES / 1024, m.image_rate, m.text_rate, m.image_rate / m.text_rate,
            m.stored, m.media, m.drain_seconds
        ));
        pg.psql("DELETE FROM jobs");
        pg.psql("VACUUM ANALYZE jobs, media");
    }
    if wants("pickup") {
        let lat = pickup_latency(&client, &engine.url, 1, 400).await;
        rows.push(format!(
            "| pickup latency: commit -> waiting long-poll worker ({} samples) | p50 {:.2} ms, p99 {:.2} ms | p50 <= 5 ms, p99 <= 25 ms | max {:.2} ms |",
            lat.len(), percentile(&lat, 0.5), percentile(&lat, 0.99), percentile(&lat, 1.0)
        ));
    }
    if wants("fairness") {
        let idle = pickup_latency(&client, &engine.url, 2, 300).await;
        let busy_tenant = pg.psql("SELECT id FROM tenants WHERE slug = 't3'");
        pg.psql(&format!(
            "INSERT INTO jobs (tenant_id, payload, conversation_key, dedup_key) \
             SELECT '{busy_tenant}', jsonb_build_object('message', 'backlog', 'message_id', 'b' || g), 'c' || (g % 5000), 'backlog-' || g \
             FROM generate_series(1, 100000) g; ANALYZE jobs"
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let drained = Arc::new(AtomicU64::new(0));
        let drainers = drain(&client, &engine.url, 3, 20, stop.clone(), drained.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let busy = pickup_latency(&client, &engine.url, 2, 300).await;
        let drain_rate =
            drained.load(Ordering::Relaxed) as f64 / (started.elapsed().as_secs_f64() + 1.0);
        stop.store(true, Ordering::Relaxed);
        for d in drainers {
            let _ = d.await;
        }
        let (idle_p99, busy_p99) = (percentile(&idle, 0.99), percentile(&busy, 0.99));
        rows.push(format!(
            "| fairness: quiet tenant's pickup while another drains a 100k backlog (20 workers) | p99 {busy_p99:.2} ms (idle p99 {idle_p99:.2} ms): **{:.2}x** | <= 2x idle p99 | p50 {:.2} ms busy vs {:.2} ms idle; backlog drained at ~{drain_rate:.0} jobs/s meanwhile |",
            busy_p99 / idle_p99, percentile(&busy, 0.5), percentile(&idle, 0.5)
        ));
    }
    if wants("campaign") {
        let per_minute = 6000;
        let c = campaign(
            &client,
            &pg,
            &engine,
            sandbox_port,
            100_000,
            per_minute,
            duration.max(Duration::from_secs(10)),
        )
        .await;
        rows.push(format!(
            "| campaign: plan a {}-contact run (audience: wrote in the last 30 days) | planned in {:.2} s; engine RSS peak {:.0} MiB | < 5 s, < 100 MiB | RSS {:.0} MiB before planning; peak {:.0} MiB while planning and sending |",
            c.contacts, c.plan_seconds, c.rss_peak_planning, c.rss_before, c.rss_peak
        ));
        let (idle_p99, busy_p99) = (percentile(&c.idle, 0.99), percentile(&c.busy, 0.99));
        rows.push(format!(
            "| campaign: send at pacing {per_minute}/min ({:.0}/s) while tenant 2 takes inbound | queued {:.1} msgs/s, provider accepted {:.1} msgs/s; tenant 2 pickup p99 {busy_p99:.2} ms (idle {idle_p99:.2} ms): **{:.2}x** | the pacing rate; <= 2x idle p99 | p50 {:.2} ms busy vs {:.2} ms idle |",
            c.per_second, c.queued_rate, c.accepted_rate, busy_p99 / idle_p99,
            percentile(&c.busy, 0.5), percentile(&c.idle, 0.5)
        ));
    }
    if wants("send") {
        let (rate, cpu) = send_rate(&client, &pg, &engine, sandbox_port, 3000).await;
        rows.push(format!(
            "| send: 3000 messages through the sandbox (InfoBip), pacing {SEND_RATE} msg/s per sender | {rate:.0} msgs/s | saturate the pacing rate, not the CPU | engine CPU {cpu:.0} % of one core while sending |"
        ));
    }
    let table = rows.join("\n");
    println!("\n{table}\n");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("engine.md"), format!("{table}\n")).unwrap();
    drop(engine);
}

/// A job within a 1 s long poll, if one came.
async fn take(client: &reqwest::Client, url: &str, token: &str) -> Option<Value> {
    let response = client
        .get(format!("{url}/queue/next-job?wait=1"))
        .bearer_auth(token)
        .send()
        .await
        .ok()
        .filter(|r| r.status() == 200)?;
    response.json().await.ok()
}

/// Completes `job` and takes the tenant's next one in the same call: whether the completion was
/// accepted, and the next job if one came within 1 s.
async fn complete_and_next(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    job: &Value,
) -> (bool, Option<Value>) {
    let id = job["job_id"].as_str().unwrap();
    let Ok(response) = client
        .post(format!("{url}/queue/jobs/{id}/complete-and-next?wait=1"))
        .bearer_auth(token)
        .json(&json!({"lease_token": job["lease_token"]}))
        .send()
        .await
    else {
        return (false, None);
    };
    match response.status().as_u16() {
        200 => (true, response.json().await.ok()),
        204 => (true, None),
        _ => (false, None),
    }
}

/// One `POST /queue/batch`: completes `held`, takes up to `max` next jobs (1 s long poll).
/// How many completions were accepted, and the jobs taken.
async fn batch_call(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    held: &[Value],
    max: usize,
) -> (u64, Vec<Value>) {
    let complete: Vec<Value> = held
        .iter()
        .map(|j| json!({"job_id": j["job_id"], "lease_token": j["lease_token"]}))
        .collect();
    let response = client
        .post(format!("{url}/queue/batch?max={max}&wait=1"))
        .bearer_auth(token)
        .json(&json!({"complete": complete}))
        .send()
        .await;
    let Ok(response) = response.and_then(|r| r.error_for_status()) else {
        return (0, Vec::new());
    };
    let Ok(mut body) = response.json::<Value>().await else {
        return (0, Vec::new());
    };
    let completed = body["completed"].as_array().map_or(0, Vec::len) as u64;
    let jobs = match body["jobs"].take() {
        Value::Array(jobs) => jobs,
        _ => Vec::new(),
    };
    (completed, jobs)
}

struct MediaIngest {
    text_rate: f64,
    image_rate: f64,
    media: i64,
    stored: i64,
    drain_seconds: f64,
}

/// Text-only, then image webhooks to one InfoBip tenant whose media the sandbox serves; then
/// waits (at most 120 s) for the fetcher to finish what the image run queued.
async fn media_ingest(
    client: &reqwest::Client,
    pg: &Postgres,
    url: &str,
    media_port: u16,
    duration: Duration,
) -> MediaIngest {
    let tenant = MEDIA_TENANT;
    let (sandbox_url, _sandbox) = start_sandbox(media_port, "bench-ib-key", &sender(tenant)).await;
    let body = json!({
        "display_name": "Bench media", "max_concurrency": 1000,
        "worker_token_sha256": [sha256_hex(&format!("worker-{tenant}"))],
        "channel": {"provider": "infobip", "sender": sender(tenant), "base_url": sandbox_url,
                    "credentials": {"webhook_secret": format!("hook-{tenant}"), "api_key": "bench-ib-key"}}
    });
    let r = client
        .put(format!("{url}/admin/tenants/t{tenant}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let put: Value = client
        .put(format!(
            "{sandbox_url}/_sandbox/media/bench-image?provider=infobip&account={}",
            sender(tenant)
        ))
        .header("content-type", "image/jpeg")
        .body(vec![0xa5u8; MEDIA_BYTES])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image_url = put["url"].as_str().unwrap().to_owned();
    let texts: MessageOf = Arc::new(move |c, i, id| {
        (
            tenant,
            infobip_message(tenant, c as u64 * 1_000_000 + i, id),
        )
    });
    // New contacts, as in the text run: the text run's contacts would turn the image run's
    // 24-hour window inserts into updates.
    let images: MessageOf = Arc::new(move |c, i, id| {
        let mut message = infobip_message(tenant, c as u64 * 1_000_000 + 500_000 + i, id);
        message["messageId"] = json!(format!("img-{id}"));
        message["message"] =
            json!({"type": "IMAGE", "url": image_url, "caption": "¿Tenéis este pan?"});
        (tenant, message)
    });
    let text_rate = ingest_rate(client, url, 64, duration, texts).await;
    // Both runs start from the same table, as every other row's measurements do: the text run's
    // jobs would make autovacuum's passes over `jobs` during the image run longer.
    pg.psql("DELETE FROM jobs");
    pg.psql("VACUUM ANALYZE jobs");
    let image_rate = ingest_rate(client, url, 64, duration, images).await;
    let stopped = Instant::now();
    let pending = || pg.psql("SELECT count(*) FROM media WHERE status = 'pending'");
    while pending() != "0" && stopped.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_seconds = stopped.elapsed().as_secs_f64();
    let count = |sql: &str| pg.psql(sql).parse::<i64>().unwrap_or(-1);
    MediaIngest {
        text_rate,
        image_rate,
        media: count("SELECT count(*) FROM media"),
        stored: count("SELECT count(*) FROM media WHERE status = 'stored'"),
        drain_seconds,
    }
}

/// One worker step: long-poll for a job (1 s) and complete it. `None` when no job came,
/// else whether the completion was accepted.
async fn take_and_complete(client: &reqwest::Client, url: &str, token: &str) -> Option<bool> {
    let response = client
        .get(format!("{url}/queue/next-job?wait=1"))
        .bearer_auth(token)
        .send()
        .await
        .ok()
        .filter(|r| r.status() == 200)?;
    let job: Value = response.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap();
    let completed = client
        .post(format!("{url}/queue/jobs/{id}/complete"))
        .bearer_auth(token)
        .json(&json!({"lease_token": job["lease_token"]}))
        .send()
        .await;
    Some(completed.is_ok_and(|c| c.status() == 200))
}
