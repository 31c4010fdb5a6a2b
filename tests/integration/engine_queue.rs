//! The job queue through the worker API: long poll, leases and fencing, retries, dead letters and
//! the poison policy, per-conversation order, tenant isolation, caps and retention.

use crate::engine_harness::{ADMIN_TOKEN, TestEngine, TestTenant, start_engine, start_engine_with};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn seed_n(engine: &TestEngine, tenant: &TestTenant, from: &str, n: usize) {
    for i in 0..n {
        let ts = format!("2026-11-25T10:00:{:02}Z", i % 60);
        let response = engine.seed(tenant, from, &format!("m{i}"), &ts).await;
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn empty_queue_answers_204_and_long_poll_wakes_on_commit() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    assert!(engine.next_job(&tenant, 0.0).await.is_none());
    let started = Instant::now();
    assert!(engine.next_job(&tenant, 0.3).await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(300));

    let engine = Arc::new(engine);
    let poller = {
        let (engine, tenant) = (engine.clone(), tenant.clone());
        tokio::spawn(async move { engine.next_job(&tenant, 10.0).await })
    };
    // Let the poll start waiting, then deliver a message.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Instant::now();
    assert_eq!(
        engine
            .seed(&tenant, "447700900001", "hola", "2026-11-25T10:00:00Z")
            .await
            .status(),
        200
    );
    let job = poller
        .await
        .unwrap()
        .expect("the waiting worker gets the job");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "woken by the commit, not by the timeout"
    );
    assert_eq!(job["status"], "processing");
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["payload"]["message"], "hola");
    assert_eq!(job["payload"]["tenant_id"], "acme");
    assert!(job["lease_expires_at"].is_string() && job["lease_token"].is_string());
}

#[tokio::test]
async fn tenants_never_see_each_others_jobs() {
    let engine = start_engine().await;
    let a = engine.tenant("tenant-a", "infobip").await;
    let b = engine.tenant_with("tenant-b", "infobip", json!({})).await;
    seed_n(&engine, &a, "447700900001", 3).await;
    assert!(
        engine.next_job(&b, 0.0).await.is_none(),
        "B sees none of A's jobs"
    );
    let job = engine.next_job(&a, 0.0).await.unwrap();
    for action in ["complete", "fail", "heartbeat"] {
        let response = engine
            .job_call(&b, &job, action, json!({"lease_token": job["lease_token"]}))
            .await;
        assert_eq!(response.status(), 404, "B cannot {action} A's job");
    }
    assert_eq!(engine.complete(&a, &job).await.status(), 200);
    let no_token = engine
        .http
        .get(engine.at("/queue/next-job"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let bad_token = engine
        .http
        .get(engine.at("/queue/next-job"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), 401);
}

#[tokio::test]
async fn fencing_stale_leases_get_409_and_expired_leases_return_to_the_queue() {
    let engine = start_engine_with(|args| args.lease_seconds = 1).await;
    let tenant = engine.tenant("acme", "infobip").await;
    seed_n(&engine, &tenant, "447700900001", 1).await;
    let first = engine.next_job(&tenant, 0.0).await.unwrap();
    // Heartbeat keeps it; a wrong token is stale.
    let beat = engine
        .job_call(
            &tenant,
            &first,
            "heartbeat",
            json!({"lease_token": first["lease_token"]}),
        )
        .await;
    assert_eq!(beat.status(), 200);
    let stale = engine
        .job_call(
            &tenant,
            &first,
            "complete",
            json!({"lease_token": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(stale.status(), 409);
    // Let the lease lapse: the reaper gives the job to the next worker, attempt 2.
    let second = engine
        .next_job(&tenant, 5.0)
        .await
        .expect("an expired lease goes back to the queue");
    assert_eq!(second["job_id"], first["job_id"]);
    assert_eq!(second["attempt"], 2);
    assert_eq!(
        engine.complete(&tenant, &first).await.status(),
        409,
        "the first holder is fenced off"
    );
    assert_eq!(engine.complete(&tenant, &second).await.status(), 200);
    assert_eq!(
        engine.complete(&tenant, &second).await.status(),
        409,
        "no double completion"
    );
    let missing_token = engine
        .job_call(&tenant, &second, "complete", json!({}))
        .await;
    assert_eq!(missing_token.status(), 400);
    let not_an_id = engine
        .http
        .post(engine.at("/queue/jobs/nope/complete"))
        .bearer_auth(&tenant.worker_token)
        .json(&json!({"lease_token": uuid::Uuid::new_v4()}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_an_id.status(), 400);
}

#[tokio::test]
async fn failures_retry_with_backoff_then_dead_letter_and_block_only_their_conversation() {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"max_attempts": 2}))
        .await;
    seed_n(&engine, &tenant, "447700900001", 2).await; // conversation X: m0, m1
    assert_eq!(
        engine
            .seed(&tenant, "447700900002", "other", "2026-11-25T10:00:00Z")
            .await
            .status(),
        200
    ); // conversation Y

    let mut jobs = Vec::new();
    while let Some(job) = engine.next_job(&tenant, 0.0).await {
        jobs.push(job);
    }
    assert_eq!(
        jobs.len(),
        2,
        "one head per conversation in flight, never two of one conversation"
    );
    let x_head = jobs
        .iter()
        .find(|j| j["payload"]["from"] == "447700900001")
        .unwrap()
        .clone();
    let y = jobs
        .iter()
        .find(|j| j["payload"]["from"] == "447700900002")
        .unwrap()
        .clone();
    assert_eq!(x_head["payload"]["message"], "m0");

    let retry = engine.job_call(&tenant, &x_head, "fail", json!({"lease_token": x_head["lease_token"], "error": "boom", "retry_after_seconds": 0})).await;
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["status"], "queued");
    let again = engine.next_job(&tenant, 5.0).await.unwrap();
    assert_eq!(
        (again["job_id"].clone(), again["attempt"].clone()),
        (x_head["job_id"].clone(), json!(2)),
        "m0 again, before m1"
    );
    let dead: Value = engine
        .job_call(
            &tenant,
            &again,
            "fail",
            json!({"lease_token": again["lease_token"], "error": "boom again"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dead["status"], "dead");

    // Conversation X is blocked (m1 waits); conversation Y is not affected.
    assert_eq!(engine.complete(&tenant, &y).await.status(), 200);
    assert!(
        engine.next_job(&tenant, 0.5).await.is_none(),
        "m1 waits behind its dead head"
    );
    let blocked: i64 = sqlx::query_scalar("SELECT count(*) FROM blocked_conversations")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(blocked, 1);

    let release = engine
        .http
        .post(engine.at("/admin/tenants/acme/conversations/447700900001/release"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"action": "skip"}))
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), 200);
    let m1 = engine
        .next_job(&tenant, 5.0)
        .await
        .expect("released: the conversation flows again");
    assert_eq!(m1["payload"]["message"], "m1");
    let twice = engine
        .http
        .post(engine.at("/admin/tenants/acme/conversations/447700900001/release"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"action": "skip"}))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 404);
}

#[tokio::test]
async fn the_tenant_concurrency_cap_holds() {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"max_concurrency": 2}))
        .await;
    for contact in 0..5 {
        assert_eq!(
            engine
                .seed(
                    &tenant,
                    &format!("4477009000{contact:02}"),
                    "hi",
                    "2026-11-25T10:00:00Z"
                )
                .await
                .status(),
            200
        );
    }
    let a = engine.next_job(&tenant, 0.0).await.unwrap();
    let _b = engine.next_job(&tenant, 0.0).await.unwrap();
    assert!(
        engine.next_job(&tenant, 0.3).await.is_none(),
        "a third job would exceed the cap"
    );
    assert_eq!(engine.complete(&tenant, &a).await.status(), 200);
    assert!(
        engine.next_job(&tenant, 2.0).await.is_some(),
        "a completion frees a slot"
    );
}

#[tokio::test]
async fn suspended_tenants_keep_their_messages_until_resumed() {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"status": "suspended"}))
        .await;
    assert_eq!(
        engine
            .seed(&tenant, "447700900001", "kept", "2026-11-25T10:00:00Z")
            .await
            .status(),
        200
    );
    let refused = engine
        .http
        .get(engine.at("/queue/next-job"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let mut resume = tenant.registration.clone();
    resume["status"] = json!("active");
    assert_eq!(engine.admin_put("acme", &resume).await.status(), 200);
    let job = engine
        .next_job(&tenant, 2.0)
        .await
        .expect("the held message is delivered after resuming");
    assert_eq!(job["payload"]["message"], "kept");
}

#[tokio::test]
async fn many_workers_keep_conversation_order_and_never_complete_twice() {
    let engine = Arc::new(start_engine().await);
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"max_concurrency": 100}))
        .await;
    let conversations = 20;
    let per_conversation = 15;
    let mut sends = Vec::new();
    for c in 0..conversations {
        let (engine, tenant) = (engine.clone(), tenant.clone());
        sends.push(tokio::spawn(async move {
            for i in 0..per_conversation {
                let ts = format!("2026-11-25T10:{:02}:{:02}Z", i / 60, i % 60);
                let r = engine
                    .seed(&tenant, &format!("c{c}"), &format!("{i}"), &ts)
                    .await;
                assert_eq!(r.status(), 200);
            }
        }));
    }
    // A backlog first, so every conversation has many jobs queued at once.
    for send in sends.drain(..sends.len() / 2) {
        send.await.unwrap();
    }
    let total = conversations * per_conversation;
    let seen: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::default();
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let completed_ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (engine, tenant, seen, in_flight, violations, completed_ids) = (
            engine.clone(),
            tenant.clone(),
            seen.clone(),
            in_flight.clone(),
            violations.clone(),
            completed_ids.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                if completed_ids.lock().unwrap().len() >= total {
                    return;
                }
                let Some(job) = engine.next_job(&tenant, 1.0).await else {
                    continue;
                };
                let from = job["payload"]["from"].as_str().unwrap().to_owned();
                if !in_flight.lock().unwrap().insert(from.clone()) {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("two jobs of {from} in flight"));
                }
                let n: usize = job["payload"]["message"].as_str().unwrap().parse().unwrap();
                seen.lock()
                    .unwrap()
                    .entry(from.clone())
                    .or_default()
                    .push(n);
                tokio::time::sleep(Duration::from_millis(2)).await;
                in_flight.lock().unwrap().remove(&from);
                let response = engine.complete(&tenant, &job).await;
                if response.status() == 200 {
                    completed_ids
                        .lock()
                        .unwrap()
                        .push(job["job_id"].as_str().unwrap().to_owned());
                } else {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("complete answered {}", response.status()));
                }
            }
        }));
    }
    for send in sends {
        send.await.unwrap();
    }
    let deadline =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(workers)).await;
    assert!(deadline.is_ok(), "all jobs done within 60 s");
    let violations = violations.lock().unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    let completed = completed_ids.lock().unwrap();
    let unique: HashSet<&String> = completed.iter().collect();
    assert_eq!(
        (completed.len(), unique.len()),
        (total, total),
        "every job completed exactly once"
    );
    for (conversation, order) in seen.lock().unwrap().iter() {
        let expected: Vec<usize> = (0..per_conversation).collect();
        assert_eq!(order, &expected, "conversation {conversation} out of order");
    }
}

#[tokio::test]
async fn retention_removes_finished_jobs_only() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    seed_n(&engine, &tenant, "447700900001", 1).await;
    seed_n(&engine, &tenant, "447700900002", 1).await;
    let job = engine.next_job(&tenant, 0.0).await.unwrap();
    assert_eq!(engine.complete(&tenant, &job).await.status(), 200);
    sqlx::query(
        "UPDATE jobs SET updated_at = now() - interval '2 hours' WHERE status = 'completed'",
    )
    .execute(&engine.db.pool)
    .await
    .unwrap();
    let pool = engine.db.pool.clone();
    let deleted = flomastr::engine::queue::delete_finished(
        &pool,
        &engine.state.settings.media.blobs,
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(engine.count_jobs().await, 1, "the queued job stays");
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    seed_n(&engine, &tenant, "447700900001", 2).await;
    let health: Value = engine
        .http
        .get(engine.at("/"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["queue"]["acme"]["queued"], 2);
    let routes: Value = engine
        .http
        .get(engine.at("/routes/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(routes["status"], "ok");
    let metrics = engine
        .http
        .get(engine.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "flomastr_webhook_events_total",
        "flomastr_webhook_ingest_seconds",
        "flomastr_queue_depth",
        "flomastr_queue_pickup_seconds",
        "flomastr_queue_lease_expiries_total",
        "flomastr_queue_dead_letters_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics.contains(r#"flomastr_queue_depth{tenant="acme",status="queued"} 2"#),
        "{metrics}"
    );
    let openapi: Value = engine
        .http
        .get(engine.at("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/webhook/inbound",
        "/webhook/infobip/{tenant}",
        "/webhook/meta/{tenant}",
        "/webhook/twilio/{tenant}",
        "/queue/next-job",
        "/queue/jobs/{id}/complete",
        "/admin/tenants/{slug}",
        "/routes/tenants/{slug}/policy",
        "/routes/tenants/{slug}/consent/{contact}",
        "/routes/tenants/{slug}/consent/import",
        "/routes/tenants/{slug}/contacts/{contact}",
        "/routes/tenants/{slug}/templates/sync",
        "/routes/tenants/{slug}/pulse/campaigns",
        "/routes/tenants/{slug}/pulse/campaigns/{id}",
        "/routes/tenants/{slug}/pulse/campaigns/{id}/{action}",
        "/routes/tenants/{slug}/pulse/campaigns/{id}/runs/{run}/recipients",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    assert!(openapi["components"]["schemas"]["TenantUpsert"].is_object());
    for schema in [
        "SendPolicy",
        "CampaignIn",
        "CampaignView",
        "ConsentView",
        "MediaRequest",
        "InteractiveRequest",
        "TemplateHeader",
    ] {
        assert!(
            openapi["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    let unknown = engine
        .http
        .get(engine.at("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn a_late_message_with_an_earlier_timestamp_waits_for_the_one_in_flight() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    assert_eq!(
        engine
            .seed(&tenant, "447700900001", "second", "2026-11-25T10:00:10Z")
            .await
            .status(),
        200
    );
    let in_flight = engine.next_job(&tenant, 0.0).await.unwrap();
    // Delivered late by the provider, but sent earlier.
    assert_eq!(
        engine
            .seed(&tenant, "447700900001", "first", "2026-11-25T10:00:05Z")
            .await
            .status(),
        200
    );
    assert!(
        engine.next_job(&tenant, 0.3).await.is_none(),
        "never two jobs of one conversation in flight"
    );
    assert_eq!(engine.complete(&tenant, &in_flight).await.status(), 200);
    let next = engine.next_job(&tenant, 2.0).await.unwrap();
    assert_eq!(next["payload"]["message"], "first");
}

#[tokio::test]
async fn a_permanent_failure_is_dead_at_once_and_blocks_nothing_and_polls_are_seen() {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with("acme", "infobip", json!({"max_attempts": 5}))
        .await;
    let view = |engine: &TestEngine| {
        let request = engine
            .http
            .get(engine.at("/admin/tenants/acme"))
            .bearer_auth(ADMIN_TOKEN);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert!(
        view(&engine).await.get("last_worker_seen_at").is_none(),
        "no worker has polled yet"
    );
    seed_n(&engine, &tenant, "447700900001", 2).await; // m0, m1 in one conversation
    let head = engine.next_job(&tenant, 0.0).await.unwrap();
    assert_eq!(head["payload"]["message"], "m0");
    let seen = view(&engine).await["last_worker_seen_at"].clone();
    assert!(seen.is_string(), "the poll is recorded: {seen}");

    // Bad input: both a permanent failure and a retry delay is a 400, nothing changes.
    let both = engine
        .job_call(&tenant, &head, "fail", json!({"lease_token": head["lease_token"], "permanent": true, "retry_after_seconds": 5}))
        .await;
    assert_eq!(both.status(), 400);
    let error: Value = both.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry_after_seconds"),
        "{error}"
    );
    let not_bool = engine
        .job_call(
            &tenant,
            &head,
            "fail",
            json!({"lease_token": head["lease_token"], "permanent": "yes"}),
        )
        .await;
    assert_eq!(not_bool.status(), 400);

    let dead: Value = engine
        .job_call(&tenant, &head, "fail", json!({"lease_token": head["lease_token"], "error": "HTTP 400: question", "permanent": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        dead["status"], "dead",
        "attempts were left, but no retry can help"
    );
    let (attempts, blocked): (i32, i64) = sqlx::query_as(
        "SELECT attempts, (SELECT count(*) FROM blocked_conversations) FROM jobs WHERE id = $1::uuid",
    )
    .bind(head["job_id"].as_str().unwrap())
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!((attempts, blocked), (1, 0));
    let next = engine
        .next_job(&tenant, 5.0)
        .await
        .expect("the conversation's next message is not blocked");
    assert_eq!(next["payload"]["message"], "m1");
}

async fn complete_and_next(
    engine: &TestEngine,
    tenant: &TestTenant,
    job: &Value,
    wait: &str,
    lease: Value,
) -> reqwest::Response {
    let id = job["job_id"].as_str().unwrap();
    engine
        .http
        .post(engine.at(&format!("/queue/jobs/{id}/complete-and-next?wait={wait}")))
        .bearer_auth(&tenant.worker_token)
        .json(&json!({ "lease_token": lease }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn complete_and_next_completes_then_hands_out_the_conversations_next_message() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    let other = engine.tenant("globex", "infobip").await;
    seed_n(&engine, &tenant, "447700900001", 3).await;
    seed_n(&engine, &other, "447700900002", 1).await;

    let first = engine.next_job(&tenant, 0.0).await.unwrap();
    assert_eq!(first["payload"]["message"], "m0");
    let response =
        complete_and_next(&engine, &tenant, &first, "1", first["lease_token"].clone()).await;
    assert_eq!(response.status(), 200);
    // The completion is committed first, so the same conversation's next message comes at once.
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["payload"]["message"], "m1");

    // Another tenant's worker cannot complete it; a bad wait or a stale lease completes and
    // claims nothing.
    let foreign =
        complete_and_next(&engine, &other, &second, "0", second["lease_token"].clone()).await;
    assert_eq!(foreign.status(), 404);
    let bad_wait = complete_and_next(
        &engine,
        &tenant,
        &second,
        "soon",
        second["lease_token"].clone(),
    )
    .await;
    assert_eq!(bad_wait.status(), 400);
    let stale =
        complete_and_next(&engine, &tenant, &second, "0", json!(uuid::Uuid::new_v4())).await;
    assert_eq!(stale.status(), 409);
    let status: String = sqlx::query_scalar("SELECT status::text FROM jobs WHERE id = $1")
        .bind(
            second["job_id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        )
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(
        status, "processing",
        "refused calls leave the job as it was"
    );

    let response = complete_and_next(
        &engine,
        &tenant,
        &second,
        "1",
        second["lease_token"].clone(),
    )
    .await;
    let third: Value = response.json().await.unwrap();
    assert_eq!(third["payload"]["message"], "m2");
    // The last one: completed, and no job within the wait (never the other tenant's).
    let response =
        complete_and_next(&engine, &tenant, &third, "0", third["lease_token"].clone()).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        engine.complete(&tenant, &third).await.status(),
        409,
        "completed exactly once"
    );
    let theirs = engine.next_job(&other, 0.0).await.unwrap();
    assert_eq!(theirs["payload"]["message"], "m0");
}
