//! Failure while under load: the engine killed with SIGKILL, PostgreSQL stopped and started.
//! The invariant each time: every webhook that got a 2xx is a job.

use crate::common::{free_port, fresh_db, unique};
use crate::engine_harness::{ADMIN_TOKEN, args, sha256_hex, start_engine_with};
use serde_json::json;
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn wait_until_up(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the engine at {url} did not come up");
}

/// Sends seed webhooks with unique ids from `senders` tasks until `stop`; returns the acked ids.
fn load(
    http: reqwest::Client,
    base: String,
    secret: String,
    senders: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..senders)
        .map(|s| {
            let (http, base, secret, stop, acked, refused) =
                (http.clone(), base.clone(), secret.clone(), stop.clone(), acked.clone(), refused.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = format!("s{s}-m{i}");
                    let body = json!({"from": format!("4477009{s:05}"), "message": id, "message_id": id,
                                      "tenant_id": "acme", "timestamp": "2026-11-25T10:00:00Z"});
                    let sent = http
                        .post(format!("{base}/webhook/inbound"))
                        .header("x-webhook-secret", &secret)
                        .timeout(Duration::from_secs(10))
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                        Ok(r) if r.status() == 503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn stored_ids(pool: &sqlx::PgPool) -> HashSet<String> {
    sqlx::query_scalar::<_, String>("SELECT substr(dedup_key, 6) FROM jobs")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn wait_for_acks(acked: &Mutex<Vec<String>>, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "the load generator got too few acknowledgements"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_acknowledged_webhook_survives_kill_9() {
    let db = fresh_db().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let engine_args = args(&db);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .arg("engine")
        .env("DATABASE_URL", &db.url)
        .env("FLOMASTR_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOMASTR_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("FLOMASTR_MASTER_KEY", &engine_args.master_key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the engine binary");
    let http = reqwest::Client::new();
    wait_until_up(&http, &format!("{base}/")).await;
    let secret = unique("secret");
    let registered = http
        .put(format!("{base}/admin/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"display_name": "ACME", "webhook_secret": secret, "worker_token_sha256": [sha256_hex("w")]}))
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let senders = load(
        http.clone(),
        base.clone(),
        secret,
        16,
        stop.clone(),
        acked.clone(),
        refused.clone(),
    );
    wait_for_acks(&acked, 300).await;
    child.kill().expect("SIGKILL the engine");
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let stored = stored_ids(&db.pool).await;
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks lost after kill -9: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(acked.len() >= 300);
}

#[tokio::test]
async fn postgres_down_means_503_and_the_engine_recovers_by_itself() {
    // A server of its own: stopping the shared one would break the other tests.
    let dir = tempfile::tempdir().unwrap();
    let pg_dir = dir.path().join("pg");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres");
    let run = |verb: &str| {
        let out = Command::new(script)
            .arg(verb)
            .arg(&pg_dir)
            .output()
            .expect("scripts/postgres runs");
        assert!(
            out.status.success(),
            "postgres {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let env = run("start");
    let admin_url = env
        .lines()
        .find_map(|l| l.strip_prefix("export FLOMASTR_PG_URL='"))
        .map(|l| l.trim_end_matches('\''))
        .expect("the script prints the URL")
        .to_owned();
    let engine = start_engine_with(|a| {
        a.database_url = admin_url.clone();
        a.db_connections = 8;
    })
    .await;
    let secret = "pg-outage-secret-0001";
    let registered = engine
        .admin_put("acme", &json!({"display_name": "ACME", "webhook_secret": secret, "worker_token_sha256": [sha256_hex("w2")]}))
        .await;
    assert!(registered.status().is_success());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let senders = load(
        engine.http.clone(),
        engine.url.clone(),
        secret.to_owned(),
        8,
        stop.clone(),
        acked.clone(),
        refused.clone(),
    );
    wait_for_acks(&acked, 100).await;
    run("stop");
    // While it is down the engine refuses (503), it does not acknowledge.
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.load(Ordering::Relaxed) < 20 {
        assert!(
            Instant::now() < deadline,
            "no 503 while PostgreSQL was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = engine.http.get(engine.at("/")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let before_restart = acked.lock().unwrap().len();
    run("start");
    wait_for_acks(&acked, before_restart + 100).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let pool = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let stored = stored_ids(&pool).await;
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks lost in the outage",
        lost.len()
    );
    pool.close().await;
    drop(engine);
    run("stop");
}
