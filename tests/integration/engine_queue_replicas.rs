//! Replicas tell each other which tenants have runnable work (a NOTIFY sent after each commit):
//! a worker long-polling one replica gets a job another replica committed, or unblocked by a
//! completion, while its poll is still open, not when the poll ends.

use crate::engine_harness::{TestEngine, TestTenant, start_engine};
use flomastr::engine::ingest::{Ingestor, JOBS_CHANNEL, NewJob, Submission};
use flomastr::engine::media::blobs::MediaBlobs;
use flomastr::engine::metrics::Metrics;
use flomastr::engine::queue::{ClaimedJob, Queue, spawn_maintenance};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Far longer than any announcement takes: a job that arrives did not wait for the poll's end.
const POLL: Duration = Duration::from_secs(30);

/// A second replica on the engine's database: its own queue, and its own listener.
async fn replica(engine: &TestEngine, shutdown: CancellationToken) -> Queue {
    let pool = sqlx::PgPool::connect(&engine.db.url).await.unwrap();
    let queue = Queue::new(
        pool,
        Duration::from_secs(60),
        Arc::new(Metrics::default()),
        shutdown.clone(),
    );
    let retention = Duration::from_secs(3600);
    spawn_maintenance(
        queue.clone(),
        MediaBlobs::database(),
        (retention, retention),
        shutdown,
    );
    // Both replicas listen before anything is announced.
    crate::common::within(Duration::from_secs(10), "two listeners", async || {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
        (listening >= 2).then_some(())
    })
    .await;
    queue
}

/// A worker long-polling the replica, left until its claim has come back empty.
async fn waiting_worker(queue: &Queue, tenant: Uuid, cap: i32) -> JoinHandle<Option<ClaimedJob>> {
    let queue = queue.clone();
    let worker = tokio::spawn(async move { queue.next_job(tenant, cap, POLL).await.unwrap() });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!worker.is_finished(), "nothing was runnable for it yet");
    worker
}

async fn seed(engine: &TestEngine, tenant: &TestTenant, from: &str, text: &str, at: &str) {
    let response = engine.seed(tenant, from, text, at).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_job_committed_on_one_replica_reaches_a_worker_waiting_on_another() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    let shutdown = CancellationToken::new();
    let other = replica(&engine, shutdown.clone()).await;
    let worker = waiting_worker(&other, engine.tenant_uuid(&tenant).await, 10).await;

    seed(
        &engine,
        &tenant,
        "447700900001",
        "hello",
        "2026-11-25T10:00:00Z",
    )
    .await;
    let job = worker
        .await
        .unwrap()
        .expect("the job, before the poll ended");
    assert_eq!(job.payload["message"], "hello");
    shutdown.cancel();
}

/// Two messages of one conversation, the first held by a worker of the engine, and a worker of
/// another replica waiting (its claim finds nothing: the second waits for the first).
struct Follower {
    engine: TestEngine,
    tenant: TestTenant,
    head: serde_json::Value,
    worker: JoinHandle<Option<ClaimedJob>>,
    shutdown: CancellationToken,
}

async fn follower_waiting_on_another_replica() -> Follower {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    seed(
        &engine,
        &tenant,
        "447700900001",
        "first",
        "2026-11-25T10:00:00Z",
    )
    .await;
    seed(
        &engine,
        &tenant,
        "447700900001",
        "second",
        "2026-11-25T10:00:01Z",
    )
    .await;
    let head = engine.next_job(&tenant, 1.0).await.expect("the head");
    assert_eq!(head["payload"]["message"], "first");
    let shutdown = CancellationToken::new();
    let other = replica(&engine, shutdown.clone()).await;
    let worker = waiting_worker(&other, engine.tenant_uuid(&tenant).await, 10).await;
    Follower {
        engine,
        tenant,
        head,
        worker,
        shutdown,
    }
}

impl Follower {
    async fn reaches_the_waiting_worker(self) {
        let next = self
            .worker
            .await
            .unwrap()
            .expect("the follower, before the poll ended");
        assert_eq!(next.payload["message"], "second");
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn a_completion_on_one_replica_hands_the_conversations_next_message_to_another() {
    let f = follower_waiting_on_another_replica().await;
    let completed = f.engine.complete(&f.tenant, &f.head).await;
    assert_eq!(completed.status(), 200);
    f.reaches_the_waiting_worker().await;
}

#[tokio::test]
async fn a_completion_under_the_tenants_cap_frees_a_slot_for_a_worker_on_another_replica() {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"max_concurrency": 1}))
        .await;
    seed(
        &engine,
        &tenant,
        "447700900001",
        "one",
        "2026-11-25T10:00:00Z",
    )
    .await;
    seed(
        &engine,
        &tenant,
        "447700900002",
        "two",
        "2026-11-25T10:00:01Z",
    )
    .await;
    let first = engine.next_job(&tenant, 1.0).await.expect("a job");
    let shutdown = CancellationToken::new();
    let other = replica(&engine, shutdown.clone()).await;
    // One job in flight is the cap: the replica's claim may take nothing.
    let worker = waiting_worker(&other, engine.tenant_uuid(&tenant).await, 1).await;

    assert_eq!(engine.complete(&tenant, &first).await.status(), 200);
    let next = worker
        .await
        .unwrap()
        .expect("the other job, before the poll ended");
    assert_ne!(next.payload["message"], first["payload"]["message"]);
    shutdown.cancel();
}

#[tokio::test]
async fn only_completions_that_can_serve_a_waiting_worker_tell_the_other_replicas() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    seed(
        &engine,
        &tenant,
        "447700900001",
        "alone",
        "2026-11-25T10:00:00Z",
    )
    .await;
    seed(
        &engine,
        &tenant,
        "447700900002",
        "head",
        "2026-11-25T10:00:01Z",
    )
    .await;
    seed(
        &engine,
        &tenant,
        "447700900002",
        "next",
        "2026-11-25T10:00:02Z",
    )
    .await;
    let mut listener = sqlx::postgres::PgListener::connect(&engine.db.url)
        .await
        .unwrap();
    listener.listen("flomastr_jobs").await.unwrap();

    // Nothing waits behind it and the tenant is far from its cap: nobody to tell (a NOTIFY
    // would hold PostgreSQL's notification lock through this commit's flush for nothing).
    let alone = engine.next_job(&tenant, 1.0).await.expect("a job");
    assert_eq!(alone["payload"]["message"], "alone");
    assert_eq!(engine.complete(&tenant, &alone).await.status(), 200);
    let told = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
    assert!(told.is_err(), "notified for nothing: {told:?}");

    // Its conversation's next message becomes runnable: the tenant is announced.
    let head = engine.next_job(&tenant, 1.0).await.expect("a job");
    assert_eq!(head["payload"]["message"], "head");
    assert_eq!(engine.complete(&tenant, &head).await.status(), 200);
    let told = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification")
        .unwrap();
    assert_eq!(
        told.payload(),
        engine.tenant_uuid(&tenant).await.to_string()
    );
}

#[tokio::test]
async fn a_permanent_failure_hands_the_conversations_next_message_to_another_replica() {
    let f = follower_waiting_on_another_replica().await;
    let body =
        json!({"lease_token": f.head["lease_token"], "error": "bad input", "permanent": true});
    let failed = f.engine.job_call(&f.tenant, &f.head, "fail", body).await;
    assert_eq!(failed.status(), 200, "{}", failed.text().await.unwrap());
    f.reaches_the_waiting_worker().await;
}

#[tokio::test]
async fn one_batch_for_many_tenants_tells_every_tenant_with_new_jobs_in_bounded_notifications() {
    let db = crate::common::fresh_db().await;
    let tenants: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO tenants (slug, display_name)
         SELECT 'many-' || g, 'Many ' || g FROM generate_series(1, 450) AS g RETURNING id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(&db.admin_url)
        .await
        .unwrap();
    listener.listen(JOBS_CHANNEL).await.unwrap();
    let engine_pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let ingestor = Ingestor::start(engine_pool, Arc::new(|_: &[Uuid]| {}));
    let job = |tenant: Uuid, key: String| NewJob {
        tenant_id: tenant,
        payload: json!({"message": key}),
        conversation_key: "447700900001".to_owned(),
        dedup_key: key,
        provider_timestamp: chrono::Utc::now(),
        max_attempts: 5,
        consent: None,
        sender_id: None,
        has_media: false,
    };
    let submission = |round: &str| Submission {
        jobs: tenants
            .iter()
            .map(|t| job(*t, format!("many:{round}:{t}")))
            .collect(),
        reports: Vec::new(),
    };
    ingestor.submit(submission("first")).await.unwrap();

    // 450 ids would not fit in one notification (8000 bytes): every tenant is named, 200 a piece.
    let mut told = std::collections::HashSet::new();
    while told.len() < tenants.len() {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of 450 tenants told", told.len()))
            .unwrap();
        let ids: Vec<Uuid> = notification
            .payload()
            .split(',')
            .map(|id| id.parse().unwrap())
            .collect();
        assert!(ids.len() <= 200, "{} ids in one notification", ids.len());
        told.extend(ids);
    }
    assert_eq!(
        told,
        tenants
            .iter()
            .copied()
            .collect::<std::collections::HashSet<_>>()
    );
    let windows: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_windows")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(windows, 450, "each tenant's contact has its window open");

    // A provider's redelivery of the whole batch: nothing new, nobody told.
    let outcomes = ingestor.submit(submission("first")).await.unwrap();
    assert!(outcomes.iter().all(|o| o.duplicate));
    let again = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
    assert!(again.is_err(), "told of no new job: {again:?}");
}
