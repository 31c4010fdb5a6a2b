//! Natural-language queries: the model's SQL runs only if it is one SELECT over the tenant's
//! declared views, inside Postgres' read-only envelope. One test per hostile case.

use crate::ai_stub::{Mode, Stub};
use crate::common::unique;
use crate::engine_harness::{TestEngine, TestTenant, start_engine_with};
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
async fn ai_nl_query_envelope_holds_without_the_parser() {
    // The Postgres layer alone: the role reads no table, writes nothing, and times out.
    let s = setup().await;
    let pool = &s.engine.db.pool;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT set_config('statement_timeout', '300', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SET LOCAL ROLE flomastr_ai_readonly")
        .execute(&mut *tx)
        .await
        .unwrap();
    let denied = sqlx::query("SELECT * FROM public.jobs")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT set_config('statement_timeout', '300', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SET LOCAL ROLE flomastr_ai_readonly")
        .execute(&mut *tx)
        .await
        .unwrap();
    let slow = sqlx::query("SELECT pg_sleep(5)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(slow.to_string().contains("statement timeout"), "{slow}");
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .unwrap();
    let write = sqlx::query("CREATE TABLE evil (x int)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(write.to_string().contains("read-only"), "{write}");
    tx.rollback().await.unwrap();
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
