//! Natural-language queries: the model's SQL runs only if it is one SELECT over the tenant's
//! declared views, inside Postgres' read-only envelope. One test per hostile case, including the
//! outside review's bypasses; the envelope is also attacked on its own (as the query login the
//! engine really uses, not a superuser) to show it holds without the static check.

use crate::ai_stub::{Mode, Stub};
use crate::common::unique;
use crate::engine_harness::{TestEngine, TestTenant, start_engine_with};
use flomastr::ai::nl_query::envelope::Envelope;
use serde_json::{Value, json};

struct Setup {
    engine: TestEngine,
    stub: Stub,
    a: TestTenant,
    b: TestTenant,
}

async fn setup() -> Setup {
    let stub = Stub::start(Mode::Status(500)).await;
    let url = stub.url.clone();
    let engine = start_engine_with(move |args| {
        args.openai_base_url = Some(url);
        args.chat_model = Some("stub-model".to_owned());
    })
    .await;
    let views = json!({"ai": {"data_views": ["inbound_messages"]}});
    let a = engine
        .tenant_with(&unique("nla"), "infobip", views.clone())
        .await;
    let b = engine.tenant_with(&unique("nlb"), "infobip", views).await;
    for (tenant, text) in [
        (&a, "hello from a customer of A"),
        (&b, "secret message to B"),
    ] {
        let status = engine
            .seed(tenant, "447700900001", text, "2026-11-25T10:00:00Z")
            .await
            .status();
        assert_eq!(status, 200);
    }
    Setup { engine, stub, a, b }
}

/// Makes the model answer `sql` and asks; returns status and body.
async fn query(s: &Setup, tenant: &TestTenant, sql: &str) -> (u16, Value) {
    s.stub.set(Mode::Reply {
        text: sql.to_owned(),
        usage: true,
    });
    let response = s
        .engine
        .http
        .post(s.engine.at("/routes/data/nl-query"))
        .bearer_auth(&tenant.worker_token)
        .json(&json!({"question": "how many messages did we get?"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn assert_refused(sql: &str) {
    let s = setup().await;
    let (status, body) = query(&s, &s.a, sql).await;
    assert_eq!(status, 400, "{sql}: {body}");
    assert_eq!(body["error"]["code"], "query_refused", "{sql}: {body}");
    // Nothing changed, and the refusal is audited with its SQL.
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&s.engine.db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 2);
    let audited: Value = sqlx::query_scalar(
        "SELECT detail FROM ai_audit WHERE endpoint = 'nl_query' AND outcome = 'query_refused'",
    )
    .fetch_one(&s.engine.db.pool)
    .await
    .unwrap();
    assert!(audited["sql"].as_str().is_some());
}

#[tokio::test]
async fn ai_nl_query_returns_the_tenants_rows_and_the_sql() {
    let s = setup().await;
    let (status, body) = query(
        &s,
        &s.a,
        "```sql\nSELECT contact, message FROM inbound_messages;\n```",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sql"], "SELECT contact, message FROM inbound_messages");
    assert_eq!(
        body["rows"],
        json!([{"contact": "447700900001", "message": "hello from a customer of A"}])
    );
    let (_, body) = query(
        &s,
        &s.b,
        "SELECT count(*) AS n FROM ai_views.inbound_messages",
    )
    .await;
    assert_eq!(body["rows"], json!([{"n": 1}]));
    let prompt = serde_json::to_string(&s.stub.requests()[0]).unwrap();
    assert!(prompt.contains("ai_views.inbound_messages") && !prompt.contains("outbound_messages"));
}

#[tokio::test]
async fn ai_nl_query_refuses_ddl() {
    assert_refused("DROP TABLE jobs").await;
}

#[tokio::test]
async fn ai_nl_query_refuses_dml() {
    assert_refused("DELETE FROM jobs").await;
    assert_refused("WITH gone AS (UPDATE jobs SET status = 'dead' RETURNING 1) SELECT * FROM gone")
        .await;
}

#[tokio::test]
async fn ai_nl_query_refuses_several_statements() {
    assert_refused("SELECT count(*) FROM inbound_messages; DROP TABLE jobs").await;
}

#[tokio::test]
async fn ai_nl_query_refuses_pg_sleep() {
    assert_refused("SELECT pg_sleep(30)").await;
    assert_refused("SELECT count(*) FROM inbound_messages, pg_sleep(30)").await;
}

#[tokio::test]
async fn ai_nl_query_refuses_system_catalogs() {
    assert_refused("SELECT relname FROM pg_catalog.pg_class").await;
    assert_refused("SELECT table_name FROM information_schema.tables").await;
    assert_refused("SELECT * FROM pg_authid").await;
}

#[tokio::test]
async fn ai_nl_query_refuses_other_tenants_data() {
    let s = setup().await;
    let b_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(&s.b.slug)
        .fetch_one(&s.engine.db.pool)
        .await
        .unwrap();
    let (status, body) = query(
        &s,
        &s.a,
        &format!("SELECT payload FROM jobs WHERE tenant_id = '{b_id}'"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("query_refused"))
    );
    // An undeclared view is refused; through the declared one, A sees only A's rows.
    let (status, _) = query(&s, &s.a, "SELECT * FROM outbound_messages").await;
    assert_eq!(status, 400);
    let (_, body) = query(
        &s,
        &s.a,
        "SELECT message FROM inbound_messages WHERE message LIKE '%B%' OR true",
    )
    .await;
    assert_eq!(
        body["rows"],
        json!([{"message": "hello from a customer of A"}])
    );
}

#[tokio::test]
async fn ai_nl_query_needs_declared_views() {
    let s = setup().await;
    let none = s.engine.tenant(&unique("nlc"), "infobip").await;
    let (status, body) = query(&s, &none, "SELECT 1").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("no_data_views"))
    );
    let mut registration = none.registration.clone();
    registration["ai"] = json!({"data_views": ["pg_class"]});
    assert_eq!(
        s.engine.admin_put(&none.slug, &registration).await.status(),
        400
    );
}

async fn tenant_id(s: &Setup, tenant: &TestTenant) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(&tenant.slug)
        .fetch_one(&s.engine.db.pool)
        .await
        .unwrap()
}

/// The review's read of every tenant's data: a table function in FROM undoing the scope.
#[tokio::test]
async fn ai_nl_query_refuses_the_reviews_scope_escapes() {
    let s = setup().await;
    let b = tenant_id(&s, &s.b).await;
    for sql in [
        format!(
            "SELECT i.message FROM inbound_messages i, LATERAL set_config('app.tenant_id', '{b}', true) x"
        ),
        format!(
            "WITH set_config AS (SELECT 1) SELECT m.message FROM set_config('app.tenant_id', '{b}', true) x, inbound_messages m"
        ),
        "SELECT m.message FROM inbound_messages m, LATERAL set_config('role', 'none', true) r".to_owned(),
        "TABLE jobs".to_owned(),
        "SELECT message FROM inbound_messages UNION ALL TABLE ai_views.outbound_messages".to_owned(),
        "WITH a AS (SELECT query AS message FROM pg_stat_activity), pg_stat_activity AS (SELECT 1) SELECT message FROM a".to_owned(),
    ] {
        let (status, body) = query(&s, &s.a, &sql).await;
        assert_eq!((status, body["error"]["code"].clone()), (400, json!("query_refused")), "{sql}: {body}");
        assert!(!body.to_string().contains("secret message to B"), "{sql}: {body}");
    }
}

/// A session-level advisory lock taken by a query must not outlive it (one froze another
/// tenant's queue claims from a pooled connection).
#[tokio::test]
async fn ai_nl_query_leaves_no_lock_behind() {
    let s = setup().await;
    let (status, _) = query(
        &s,
        &s.a,
        "SELECT count(*) FROM inbound_messages, LATERAL pg_advisory_lock(4242) l",
    )
    .await;
    assert_eq!(status, 400);
    let envelope = Envelope::new(&s.engine.db.nl_query_url).unwrap();
    let engine = sqlx::PgPool::connect(&s.engine.db.url).await.unwrap();
    let a = tenant_id(&s, &s.a).await;
    envelope
        .run(
            &engine,
            a,
            "SELECT pg_advisory_lock(4242), pg_advisory_lock_shared(4243)",
        )
        .await
        .expect("the envelope alone lets the call run");
    // The server releases a session's locks as its backend exits, just after the close.
    let pool = &s.engine.db.pool;
    crate::common::eventually("the query's session and its locks to end", async || {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid IN (4242, 4243)
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        (held == 0).then_some(())
    })
    .await;
    let scopes: i64 = sqlx::query_scalar("SELECT count(*) FROM nl_query_scopes")
        .fetch_one(&s.engine.db.pool)
        .await
        .unwrap();
    assert_eq!(scopes, 0, "the connection's scope is removed");
}

/// The database layer alone, as the real query login: whatever the SQL sets, it sees only the
/// tenant its connection is bound to, and reads nothing but the views.
#[tokio::test]
async fn ai_nl_query_envelope_holds_without_the_parser() {
    let s = setup().await;
    let (a, b) = (tenant_id(&s, &s.a).await, tenant_id(&s, &s.b).await);
    let envelope = Envelope::new(&s.engine.db.nl_query_url).unwrap();
    let engine = sqlx::PgPool::connect(&s.engine.db.url).await.unwrap();
    let run = |sql: String| {
        let (envelope, engine) = (&envelope, &engine);
        async move { envelope.run(engine, a, &sql).await }
    };
    // Changing the settings the old views trusted changes nothing.
    for sql in [
        format!("SELECT m.message FROM (SELECT set_config('app.tenant_id', '{b}', false)) x, inbound_messages m"),
        "SELECT m.message FROM (SELECT set_config('role', 'none', false)) x, inbound_messages m".to_owned(),
        "SELECT m.message FROM (SELECT set_config('role', 'flomastr_test_engine', false)) x, inbound_messages m".to_owned(),
    ] {
        match run(sql.clone()).await {
            Ok(rows) => assert_eq!(rows, vec![json!({"message": "hello from a customer of A"})], "{sql}"),
            Err(error) => assert!(!format!("{error:?}").contains("secret message"), "{sql}: {error:?}"),
        }
    }
    // No way to the engine's role, its tables, the scope table, or the server's files.
    for sql in [
        "SELECT set_config('role', 'flomastr_test_engine', true)",
        "SELECT count(*) FROM public.jobs",
        "SELECT count(*) FROM public.nl_query_scopes",
        "SELECT count(*) FROM public.tenants",
        "SELECT pg_read_file('/etc/hostname')",
        "SELECT * FROM pg_ls_dir('.')",
        "SELECT lo_import('/etc/hostname')",
    ] {
        let error = run(sql.to_owned()).await.expect_err(sql);
        let text = format!("{error:?}");
        assert!(
            text.contains("permission denied") || text.contains("does not exist"),
            "{sql}: {text}"
        );
    }
    // Nothing is written, and a runaway query is stopped.
    let write =
        run("SELECT * FROM (SELECT 1) x, LATERAL (SELECT nextval('jobs_id_seq')) y".to_owned())
            .await;
    assert!(write.is_err());
    let slow = run("SELECT pg_sleep(10)".to_owned())
        .await
        .expect_err("timed out");
    assert!(
        matches!(
            slow,
            flomastr::ai::nl_query::envelope::EnvelopeError::Timeout
        ),
        "{slow:?}"
    );
}

#[tokio::test]
async fn ai_nl_query_bounds_growth_and_result_size() {
    let s = setup().await;
    let (status, body) = query(
        &s,
        &s.a,
        "SELECT replace(replace(message, 'e', 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeee'), 'e', 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeee') FROM inbound_messages",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("query_refused")),
        "{body}"
    );
    // 300 messages of 4 KB: 200 rows of 8 KB exceed the 1 MiB result limit.
    let big = "x".repeat(4000);
    for n in 0..300 {
        let status = s
            .engine
            .seed(
                &s.a,
                &format!("4477009{n:05}"),
                &big,
                "2026-11-25T10:00:00Z",
            )
            .await
            .status();
        assert_eq!(status, 200);
    }
    let (status, body) = query(
        &s,
        &s.a,
        "SELECT message, message AS again FROM inbound_messages",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("result_too_large")),
        "{}",
        status
    );
}

#[tokio::test]
async fn ai_nl_query_runs_a_few_at_a_time_per_tenant() {
    let s = setup().await;
    s.stub.set(Mode::Reply {
        text: "SELECT count(*) FROM inbound_messages".to_owned(),
        usage: true,
    });
    // Hold the jobs table so every query waits (its lock timeout) while the others arrive.
    let mut hold = s.engine.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let ask = |tenant: TestTenant| {
        let engine = &s.engine;
        async move {
            let response = engine
                .http
                .post(engine.at("/routes/data/nl-query"))
                .bearer_auth(&tenant.worker_token)
                .json(&json!({"question": "how many?"}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    let (a1, a2, a3, b1) = tokio::join!(
        ask(s.a.clone()),
        ask(s.a.clone()),
        ask(s.a.clone()),
        ask(s.b.clone())
    );
    hold.rollback().await.unwrap();
    let mut a = [a1, a2, a3];
    a.sort();
    assert_eq!(a[2], (429, "too_many_queries".to_owned()), "{a:?}");
    assert!(a[..2].iter().all(|(status, _)| *status != 429), "{a:?}");
    assert_ne!(b1.0, 429, "another tenant's query is admitted: {b1:?}");
    let (status, body) = query(&s, &s.a, "SELECT count(*) AS n FROM inbound_messages").await;
    assert_eq!((status, body["rows"].clone()), (200, json!([{"n": 1}])));
}

#[tokio::test]
async fn ai_nl_query_refuses_a_privileged_query_login() {
    let db = crate::common::fresh_db().await;
    for (url, expected) in [
        (db.admin_url.clone(), "PrivilegedLogin"),
        (db.url.clone(), "EngineLogin"),
    ] {
        let mut args = crate::engine_harness::args(&db);
        args.nl_query_database_url = Some(url);
        let error = flomastr::engine::build(&args, tokio_util::sync::CancellationToken::new())
            .await
            .err()
            .expect("the engine refuses to start");
        assert!(format!("{error:?}").contains(expected), "{error:?}");
        assert!(!format!("{error}").contains("postgres://"), "{error}");
    }
}
