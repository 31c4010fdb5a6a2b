//! The engine's unauthenticated surface and its HTTP server limits (issue 11, findings 4 and 7):
//! probes and `GET /` cost no scan of `jobs` and show no tenant without the admin token, a
//! flood of made-up tenant slugs stays cheap, and slow or idle clients cannot hold connections
//! while long polls and graceful shutdown keep working.

use crate::common::eventually;
use crate::engine_harness::{ADMIN_TOKEN, TestEngine, start_engine_with};
use flomastr::engine::config::EngineArgs;
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// Enough completed jobs that one scan of them stands out in the statistics.
const JOBS: i64 = 200_000;

/// Short server timeouts so tests see them act.
fn quick_timeouts(args: &mut EngineArgs) {
    args.server.header_timeout_seconds = 1;
    args.server.body_timeout_seconds = 2;
    args.server.idle_timeout_seconds = 2;
}

fn address(engine: &TestEngine) -> String {
    engine.url.trim_start_matches("http://").to_owned()
}

/// Tuples of `jobs` read by sequential scans, once every other connection has reported them:
/// those connections are ended (a backend flushes its statistics as it exits, before it leaves
/// `pg_stat_activity`; the engine's pool opens new ones as needed).
async fn jobs_read_by_scans(pool: &PgPool) -> i64 {
    let ended: Vec<i32> = sqlx::query_scalar(
        "WITH others AS MATERIALIZED (
             SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid())
         SELECT pid FROM others WHERE pg_terminate_backend(pid)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    eventually("the ended connections to be gone", || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&ended)
                .fetch_one(pool)
                .await
                .ok()?;
        (left == 0).then_some(())
    })
    .await;
    sqlx::query_scalar(
        "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'jobs' AND schemaname = 'public'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn get(engine: &TestEngine, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = engine.http.get(engine.at(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn probes_root_and_metrics_never_scan_jobs_and_show_tenants_only_to_the_admin() {
    let engine = start_engine_with(|args| args.server.depth_refresh_seconds = 3600).await;
    let busy = engine.tenant("edge-busy", "infobip").await;
    engine.tenant("edge-quiet", "meta").await;
    sqlx::query(
        "INSERT INTO jobs (tenant_id, payload, status, conversation_key)
         SELECT t.id, '{}', 'completed', 'c' || (n % 1000) FROM tenants t, generate_series(1, $1) n
         WHERE t.slug = $2",
    )
    .bind(JOBS)
    .bind(&busy.slug)
    .execute(&engine.db.pool)
    .await
    .unwrap();

    // The admin sees the depth per tenant, counted once and then reused.
    let (status, body) = get(&engine, "/", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["queue"]["edge-busy"]["completed"], JOBS);
    assert_eq!(health["totals"]["completed"], JOBS);
    assert!(health["queue_counted_at"].is_string(), "{health}");

    let before = jobs_read_by_scans(&engine.db.pool).await;
    for _ in 0..10 {
        for path in ["/healthz", "/readyz", "/routes/health", "/openapi.json"] {
            assert_eq!(get(&engine, path, None).await.0, 200, "{path}");
        }
        let (status, body) = get(&engine, "/", None).await;
        assert_eq!(status, 200);
        let health: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["database"], "ok");
        for hidden in ["edge-busy", "edge-quiet", "queue", "totals", "completed"] {
            assert!(
                !body.contains(hidden),
                "{hidden} without credentials: {body}"
            );
        }
        let (status, body) = get(&engine, "/", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200);
        assert!(body.contains("edge-busy"));
        let (status, metrics) = get(&engine, "/metrics", None).await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains(&format!(
                "flomastr_queue_depth{{tenant=\"edge-busy\",status=\"completed\"}} {JOBS}"
            )),
            "{metrics}"
        );
    }
    let scanned = jobs_read_by_scans(&engine.db.pool).await - before;
    assert!(
        scanned < JOBS,
        "70 probes, roots and scrapes read {scanned} job rows by sequential scans"
    );

    let (_, document) = get(&engine, "/openapi.json", None).await;
    let document: Value = serde_json::from_str(&document).unwrap();
    for path in ["/", "/healthz", "/readyz", "/routes/health", "/metrics"] {
        assert!(
            document["paths"][path]["get"].is_object(),
            "{path} documented"
        );
    }

    // A token that is not the admin's is refused rather than shown the public view.
    let (status, body) = get(&engine, "/", Some("not-the-admin-token")).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn readiness_needs_the_database_and_fails_once_shutting_down_liveness_needs_nothing() {
    use axum::extract::State;
    use flomastr::engine::health;
    let db = crate::common::fresh_db().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = flomastr::engine::build(&crate::engine_harness::args(&db), shutdown.clone())
        .await
        .unwrap();
    let ready = health::readyz(State(state.clone())).await;
    assert_eq!(ready.status(), 200);
    assert_eq!(json_of(ready).await["status"], "ready");
    shutdown.cancel();
    let stopping = health::readyz(State(state.clone())).await;
    assert_eq!(stopping.status(), 503);
    assert_eq!(json_of(stopping).await["status"], "shutting_down");
    assert_eq!(health::healthz().await.0.status, "ok");

    // With the database gone, readiness fails (within the probe's timeout) and liveness holds.
    let admin = PgPool::connect(&crate::common::require_env(crate::common::PG_URL_VAR))
        .await
        .unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    db.pool.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    let offline = flomastr::engine::health::DatabaseProbe::new(state.pool.clone());
    assert!(
        !offline.reachable().await,
        "a dropped database is not reachable"
    );
}

async fn json_of(response: axum::response::Response) -> Value {
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn a_flood_of_unknown_slugs_is_answered_from_memory_or_one_bounded_lookup() {
    use flomastr::engine::crypto::Keyring;
    use flomastr::engine::tenants::TenantDirectory;
    let engine = start_engine_with(|_| {}).await;
    let known = engine.tenant("edge-known", "infobip").await;
    let keys = Arc::new(Keyring::parse(&crate::engine_harness::master_key()).unwrap());
    let directory = TenantDirectory::new(engine.db.pool.clone(), keys).with_slug_cache_limit(50);
    for i in 0..200 {
        assert!(
            directory
                .by_slug(&format!("nobody-{i}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    assert!(
        directory.cached_slugs() <= 50,
        "unknown slugs fill memory: {} cached",
        directory.cached_slugs()
    );
    let found = directory.by_slug(&known.slug).await.unwrap();
    assert_eq!(found.unwrap().slug, known.slug);

    // A slug no tenant can have is not looked up at all: a directory whose database is
    // unreachable still answers.
    let nowhere = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
        .unwrap();
    let keys = Arc::new(Keyring::parse(&crate::engine_harness::master_key()).unwrap());
    let offline = TenantDirectory::new(nowhere, keys);
    for slug in [
        "",
        "UPPER",
        "with space",
        "dots.in.it",
        &"x".repeat(41),
        "-edge",
        "é",
    ] {
        assert!(offline.by_slug(slug).await.unwrap().is_none(), "{slug:?}");
    }
    assert_eq!(offline.cached_slugs(), 0);

    let response = engine
        .http
        .post(engine.at("/webhook/infobip/NOT_A_TENANT"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "not_found");
}

/// Writes `bytes` one at a time, `every` apart, until the peer closes or they run out.
async fn trickle(mut writer: OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    for byte in bytes {
        if writer.write_all(&[byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// What the server sends until it closes the connection, or None if it keeps it open longer
/// than `patience`.
async fn until_closed(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    patience: Duration,
) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(patience, async {
        let mut buffer = [0u8; 4096];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

fn endless_header() -> Vec<u8> {
    let mut bytes = b"GET /healthz HTTP/1.1\r\nHost: engine\r\nX-Slow: ".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 10_000));
    bytes
}

/// Opens a connection whose request head then arrives byte by byte, slower than the header
/// timeout allows; the task resolves to when the server closed it (None: not within 20 s).
async fn slow_head(address: &str) -> tokio::task::JoinHandle<Option<Instant>> {
    let stream = TcpStream::connect(address).await.unwrap();
    tokio::spawn(async move {
        let (mut reader, writer) = stream.into_split();
        let sender = tokio::spawn(trickle(
            writer,
            endless_header(),
            Duration::from_millis(100),
        ));
        let closed = until_closed(&mut reader, Duration::from_secs(20)).await;
        sender.abort();
        closed.map(|_| Instant::now())
    })
}

#[tokio::test]
async fn request_headers_slower_than_the_header_timeout_are_cut_off() {
    let engine = start_engine_with(quick_timeouts).await;
    let closed = slow_head(&address(&engine)).await.await.unwrap();
    assert!(closed.is_some(), "a slow head held its connection for 20 s");
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408() {
    let engine = start_engine_with(quick_timeouts).await;
    let stream = TcpStream::connect(address(&engine)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /webhook/inbound HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n\
              Content-Length: 5000\r\n\r\n{\"from\":\"",
        )
        .await
        .unwrap();
    let sender = tokio::spawn(trickle(
        writer,
        vec![b'1'; 5000],
        Duration::from_millis(100),
    ));
    let answer = until_closed(&mut reader, Duration::from_secs(20)).await;
    sender.abort();
    let answer = answer.expect("a slow body held its connection for 20 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let engine = start_engine_with(quick_timeouts).await;
    let stream = TcpStream::connect(address(&engine)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: engine\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut reader, Duration::from_secs(20)).await;
    let answer = answer.expect("an idle connection stayed open for 20 s");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_slow_ones_are_cut_off() {
    let engine = start_engine_with(|args| {
        quick_timeouts(args);
        args.server.max_connections = 4;
    })
    .await;
    // Connected first, so the server (accepting in order) gives them every slot.
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(slow_head(&address(&engine)).await);
    }
    let normal = tokio::spawn({
        let http = reqwest::Client::new();
        let url = engine.at("/healthz");
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), Instant::now())
        }
    });
    let mut first_cut = None;
    for connection in slow {
        let closed = connection
            .await
            .unwrap()
            .expect("a slow head held its slot for 20 s");
        first_cut = Some(first_cut.map_or(closed, |first: Instant| first.min(closed)));
    }
    let (status, answered) = tokio::time::timeout(Duration::from_secs(20), normal)
        .await
        .expect("the normal request is served once slots free up")
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        answered >= first_cut.unwrap(),
        "the fifth connection was served while four slow ones held every slot"
    );
}

#[tokio::test]
async fn a_ten_second_long_poll_outlives_every_server_timeout() {
    let engine = Arc::new(start_engine_with(quick_timeouts).await);
    let tenant = engine.tenant("edge-poll", "infobip").await;
    let poll = {
        let (engine, tenant) = (engine.clone(), tenant.clone());
        tokio::spawn(async move { engine.next_job(&tenant, 10.0).await })
    };
    // The job arrives only after the header and idle timeouts have passed for other
    // connections: a slow head cut off, and an idle connection closed.
    assert!(slow_head(&address(&engine)).await.await.unwrap().is_some());
    let stream = TcpStream::connect(address(&engine)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: engine\r\n\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut reader, Duration::from_secs(8))
            .await
            .is_some()
    );
    assert!(!poll.is_finished(), "the long poll is still waiting");
    let response = engine
        .seed(&tenant, "447700900001", "late", "2026-11-25T10:00:00Z")
        .await;
    assert_eq!(response.status(), 200);
    let job = poll.await.unwrap().expect("the long poll gets the job");
    assert_eq!(job["payload"]["message"], "late");
}

#[tokio::test]
async fn shutdown_answers_waiting_workers_finishes_requests_in_flight_and_stops_accepting() {
    let engine = Arc::new(start_engine_with(|_| {}).await);
    let tenant = engine.tenant("edge-stop", "infobip").await;
    let poll = {
        let (engine, tenant) = (engine.clone(), tenant.clone());
        tokio::spawn(async move { engine.next_job(&tenant, 10.0).await })
    };
    // A webhook whose body is half sent when the engine stops: `Expect: 100-continue` shows
    // when the engine has started reading it.
    let body = format!(
        r#"{{"from":"447700900001","message":"in flight","tenant_id":"{}","timestamp":"2026-11-25T10:00:00Z"}}"#,
        tenant.slug
    );
    let (first, rest) = body.split_at(body.len() / 2);
    let stream = TcpStream::connect(address(&engine)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            format!(
                "POST /webhook/inbound HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n\
                 X-Webhook-Secret: {}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                tenant.webhook_secret,
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut continued = [0u8; 25];
    reader.read_exact(&mut continued).await.unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"));
    writer.write_all(first.as_bytes()).await.unwrap();

    engine.shutdown.cancel();
    assert!(
        poll.await.unwrap().is_none(),
        "a waiting worker gets 204 at shutdown"
    );
    writer.write_all(rest.as_bytes()).await.unwrap();
    let answer = until_closed(&mut reader, Duration::from_secs(10))
        .await
        .expect("the connection closes after its answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        engine.count_jobs().await,
        1,
        "the in-flight webhook is stored"
    );
    eventually("new connections to be refused", || async {
        TcpStream::connect(address(&engine))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn metrics_can_be_moved_off_the_api_address() {
    let db = crate::common::fresh_db().await;
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut args = crate::engine_harness::args(&db);
    args.server.metrics_listen = Some(metrics_listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let state = flomastr::engine::build(&args, shutdown.clone())
        .await
        .unwrap();
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api, metrics) = (
        api_listener.local_addr().unwrap(),
        metrics_listener.local_addr().unwrap(),
    );
    let settings = state.settings.server.clone();
    tokio::spawn(flomastr::engine::server::serve(
        api_listener,
        flomastr::engine::router(state.clone()),
        settings.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(flomastr::engine::server::serve(
        metrics_listener,
        flomastr::engine::metrics_router(state),
        settings,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let on_api = http
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
    let scraped = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("flomastr_queue_claimed")
    );
    let healthz = http
        .get(format!("http://{api}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
}
