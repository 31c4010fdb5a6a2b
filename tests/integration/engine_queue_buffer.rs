//! The lane buffer (jobs claimed ahead of the workers, held in one replica's memory) and the
//! batch worker call: a buffered job goes to one worker only, goes back to the queue when no
//! worker takes it in time, and comes back by lease expiry when its replica dies holding it.

use crate::engine_harness::{TestEngine, TestTenant, start_engine, start_engine_with};
use flomastr::engine::metrics::Metrics;
use flomastr::engine::queue::Queue;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `n` messages, each in its own conversation, so all are runnable at once.
async fn seed_conversations(engine: &TestEngine, tenant: &TestTenant, n: usize) {
    for i in 0..n {
        let response = engine
            .seed(
                tenant,
                &format!("4477009{i:05}"),
                &format!("m{i}"),
                "2026-11-25T10:00:00Z",
            )
            .await;
        assert_eq!(response.status(), 200);
    }
}

async fn count(engine: &TestEngine, tenant: &TestTenant, status: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id
         WHERE t.slug = $1 AND j.status = $2",
    )
    .bind(&tenant.slug)
    .bind(status)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap()
}

/// A second replica's queue on the engine's database, with its own lease.
async fn replica(engine: &TestEngine, lease: Duration, shutdown: CancellationToken) -> Queue {
    let pool = sqlx::PgPool::connect(&engine.db.url).await.unwrap();
    Queue::new(pool, lease, Arc::new(Metrics::default()), shutdown)
}

/// Two long polls on `queue`: the first claim finds a backlog, so the second claims ahead
/// (its one job plus the prefetch, kept in the buffer).
async fn fill_buffer(queue: &Queue, tenant: Uuid) -> Vec<flomastr::engine::queue::ClaimedJob> {
    let mut handed = Vec::new();
    for _ in 0..2 {
        let job = queue
            .next_job(tenant, 1000, Duration::from_secs(1))
            .await
            .unwrap()
            .expect("a job");
        handed.push(job);
    }
    handed
}

#[tokio::test]
async fn buffered_jobs_nobody_takes_go_back_to_the_queue_as_never_claimed() {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"max_concurrency": 1000}))
        .await;
    seed_conversations(&engine, &tenant, 50).await;
    let shutdown = CancellationToken::new();
    // A 60 s lease: buffered jobs are handed out within 2 s of their claim, or given back.
    let queue = replica(&engine, Duration::from_secs(60), shutdown.clone()).await;
    let handed = fill_buffer(&queue, engine.tenant_uuid(&tenant).await).await;
    assert!(
        count(&engine, &tenant, "processing").await > 2,
        "the second claim took more than its worker's job"
    );
    // Nobody asks: once the buffer's 2 s are over only the two handed-out jobs are leased.
    crate::common::within(
        Duration::from_secs(15),
        "the buffered jobs given back",
        async || (count(&engine, &tenant, "processing").await == 2).then_some(()),
    )
    .await;
    assert_eq!(count(&engine, &tenant, "queued").await, 48);
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT attempts FROM jobs WHERE status = 'queued'")
            .fetch_all(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(attempts, vec![0], "given back as if never claimed");
    // The engine's workers now get the rest, none of the two held by the other replica.
    let held: HashSet<String> = handed.iter().map(|j| j.job_id.to_string()).collect();
    for _ in 0..48 {
        let job = engine.next_job(&tenant, 1.0).await.expect("a queued job");
        assert!(!held.contains(job["job_id"].as_str().unwrap()));
        assert_eq!(engine.complete(&tenant, &job).await.status(), 200);
    }
    assert!(engine.next_job(&tenant, 0.0).await.is_none());
    shutdown.cancel();
}

#[tokio::test]
async fn a_replica_dying_with_a_full_buffer_loses_nothing_and_hands_out_nothing_twice() {
    let engine = start_engine_with(|args| args.lease_seconds = 1).await;
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"max_concurrency": 1000}))
        .await;
    seed_conversations(&engine, &tenant, 50).await;
    let id = engine.tenant_uuid(&tenant).await;
    let url = engine.db.url.clone();
    // The other replica runs on its own runtime; dropping the runtime is its kill -9: its
    // tasks stop where they are, nothing is given back.
    let handed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let queue = Queue::new(
                pool,
                Duration::from_secs(3),
                Arc::new(Metrics::default()),
                CancellationToken::new(),
            );
            fill_buffer(&queue, id).await
        })
    })
    .join()
    .unwrap();
    let leased_by_the_dead = count(&engine, &tenant, "processing").await;
    assert!(
        leased_by_the_dead > 2,
        "the dead replica held a buffer: {leased_by_the_dead}"
    );

    // The engine's workers drain everything: the dead replica's leases expire and come back.
    let mut seen = HashSet::new();
    let mut second_attempts = 0;
    while seen.len() < 50 {
        let job: Value = engine
            .next_job(&tenant, 5.0)
            .await
            .expect("every job comes back within the lease");
        assert!(
            seen.insert(job["job_id"].as_str().unwrap().to_owned()),
            "a job handed out twice: {job}"
        );
        if job["attempt"] == 2 {
            second_attempts += 1;
        }
        assert_eq!(engine.complete(&tenant, &job).await.status(), 200);
    }
    assert_eq!(second_attempts, leased_by_the_dead);
    // The dead replica's workers are fenced off.
    for job in handed {
        let stale = engine
            .job_call(
                &tenant,
                &json!({"job_id": job.job_id}),
                "complete",
                json!({"lease_token": job.lease_token}),
            )
            .await;
        assert_eq!(stale.status(), 409);
    }
    assert_eq!(count(&engine, &tenant, "completed").await, 50);
}

async fn batch(
    engine: &TestEngine,
    tenant: &TestTenant,
    query: &str,
    complete: Value,
) -> reqwest::Response {
    engine
        .http
        .post(engine.at(&format!("/queue/batch?{query}")))
        .bearer_auth(&tenant.worker_token)
        .json(&json!({ "complete": complete }))
        .send()
        .await
        .unwrap()
}

fn leases(jobs: &Value) -> Value {
    Value::Array(
        jobs.as_array()
            .unwrap()
            .iter()
            .map(|j| json!({"job_id": j["job_id"], "lease_token": j["lease_token"]}))
            .collect(),
    )
}

#[tokio::test]
async fn the_batch_call_completes_fenced_then_takes_several_in_conversation_order() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    let other = engine.tenant("globex", "infobip").await;
    seed_conversations(&engine, &tenant, 3).await;
    // A second message in the first conversation: it waits for the first one.
    let later = engine
        .seed(&tenant, "447700900000", "later", "2026-11-25T10:00:01Z")
        .await;
    assert_eq!(later.status(), 200);

    let first: Value = batch(&engine, &tenant, "max=10&wait=1", json!([]))
        .await
        .json()
        .await
        .unwrap();
    let jobs = &first["jobs"];
    assert_eq!(jobs.as_array().unwrap().len(), 3, "{first}");
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["payload"]["message"] != "later"),
        "one job per conversation in flight"
    );

    // Refused input completes nothing.
    for query in ["max=0", "max=101", "max=many", "wait=soon"] {
        let refused = batch(&engine, &tenant, query, leases(jobs)).await;
        assert_eq!(refused.status(), 400, "{query}");
    }
    let unknown_field = engine
        .http
        .post(engine.at("/queue/batch"))
        .bearer_auth(&tenant.worker_token)
        .json(&json!({"complete": [], "extra": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 400);
    assert_eq!(count(&engine, &tenant, "processing").await, 3);

    // Another tenant's worker cannot complete them: not found, nothing changed, none of
    // acme's jobs handed to it.
    let foreign: Value = batch(&engine, &other, "max=5&wait=0", leases(jobs))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(foreign["completed"], json!([]));
    assert_eq!(foreign["rejected"].as_array().unwrap().len(), 3);
    assert_eq!(foreign["rejected"][0]["error"], "not_found");
    assert_eq!(foreign["jobs"], json!([]));
    assert_eq!(count(&engine, &tenant, "processing").await, 3);

    // A stale lease is refused, the others completed; the conversation's next message follows.
    let mut finished = leases(jobs);
    let stale_id = finished[0]["job_id"].clone();
    finished[0]["lease_token"] = json!(Uuid::new_v4());
    let second: Value = batch(&engine, &tenant, "max=10&wait=1", finished)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["completed"].as_array().unwrap().len(), 2);
    assert_eq!(
        second["rejected"],
        json!([{"job_id": stale_id, "error": "stale_lease"}])
    );
    let first_of_conversation = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == stale_id)
        .unwrap()
        .clone();
    if first_of_conversation["payload"]["from"] == "447700900000" {
        assert_eq!(
            second["jobs"],
            json!([]),
            "its conversation is still in flight"
        );
    }
    let last: Value = batch(
        &engine,
        &tenant,
        "max=10&wait=1",
        leases(&json!([first_of_conversation])),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(last["completed"].as_array().unwrap().len(), 1);
    let remaining = [&second["jobs"], &last["jobs"]]
        .iter()
        .flat_map(|j| j.as_array().unwrap().clone())
        .collect::<Vec<_>>();
    assert_eq!(remaining.len(), 1, "the later message, once");
    assert_eq!(remaining[0]["payload"]["message"], "later");
    let done: Value = batch(&engine, &tenant, "wait=0", leases(&json!(remaining)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["completed"].as_array().unwrap().len(), 1);
    assert_eq!(done["jobs"], json!([]));
    assert_eq!(count(&engine, &tenant, "completed").await, 4);
}
