//! A suspended tenant gets 403 `tenant_suspended` from every AI endpoint, before anything is
//! read, written or sent to a model; resumed, it has its access back.

use crate::ai_knowledge::{ingest, search};
use crate::ai_stub::{Mode, Stub};
use crate::common::unique;
use crate::engine_harness::{TestEngine, TestTenant, start_engine_with};
use reqwest::Method;
use serde_json::{Value, json};

async fn call(
    engine: &TestEngine,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = engine
        .http
        .request(method, engine.at(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Every AI route, with a body it would accept from an active tenant.
fn every_ai_call() -> Vec<(Method, &'static str, Option<Value>)> {
    let template = json!({"name": "hello", "language": "en", "category": "UTILITY", "status": "APPROVED",
        "body": "Hello {{1}}", "variables": [{"description": "name", "example": "there"}]});
    vec![
        (
            Method::POST,
            "/routes/knowledge/documents",
            Some(json!({"title": "New", "text": "Fresh text."})),
        ),
        (Method::GET, "/routes/knowledge/search?q=hours", None),
        (
            Method::POST,
            "/routes/tools/synthesis",
            Some(json!({"question": "hours?", "contact": "447700900001"})),
        ),
        (Method::DELETE, "/routes/memory/447700900001", None),
        (
            Method::POST,
            "/routes/data/nl-query",
            Some(json!({"question": "how many jobs?"})),
        ),
        (
            Method::PUT,
            "/routes/context/templates",
            Some(json!({"templates": [template]})),
        ),
        (Method::GET, "/routes/context/templates", None),
        (
            Method::POST,
            "/routes/context/pulse-content",
            Some(json!({"contacts": ["447700900001"], "brief": "hello"})),
        ),
    ]
}

async fn set_status(engine: &TestEngine, tenant: &TestTenant, status: &str) {
    let mut registration = tenant.registration.clone();
    registration["status"] = json!(status);
    let response = engine.admin_put(&tenant.slug, &registration).await;
    assert!(response.status().is_success());
}

async fn count(engine: &TestEngine, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn ai_suspended_tenants_get_403_from_every_ai_endpoint() {
    let stub = Stub::start(Mode::Reply {
        text: "We open at nine [S1].".into(),
        usage: true,
    })
    .await;
    let url = stub.url.clone();
    let engine = start_engine_with(move |args| {
        args.openai_base_url = Some(url);
        args.chat_model = Some("stub-model".to_owned());
    })
    .await;
    let tenant = engine.tenant(&unique("susp"), "infobip").await;
    assert_eq!(
        ingest(&engine, &tenant, "Hours", "We open at nine.", "text")
            .await
            .status(),
        201
    );
    let asked = call(
        &engine,
        &tenant.worker_token,
        Method::POST,
        "/routes/tools/synthesis",
        Some(json!({"question": "hours?", "contact": "447700900001"})),
    )
    .await;
    assert_eq!(asked.status(), 200);

    set_status(&engine, &tenant, "suspended").await;
    let model_calls = stub.requests().len();
    let audited = count(&engine, "SELECT count(*) FROM ai_audit").await;
    for (method, path, body) in every_ai_call() {
        let response = call(&engine, &tenant.worker_token, method.clone(), path, body).await;
        assert_eq!(response.status(), 403, "{method} {path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            error["error"]["code"], "tenant_suspended",
            "{method} {path}"
        );
        // Credentials are still checked first.
        let anonymous = call(&engine, "not-a-token", method.clone(), path, None).await;
        assert_eq!(anonymous.status(), 401, "{method} {path}");
    }
    assert_eq!(stub.requests().len(), model_calls, "no model was called");
    assert_eq!(
        count(&engine, "SELECT count(*) FROM ai_audit").await,
        audited,
        "no handler ran"
    );
    assert_eq!(count(&engine, "SELECT count(*) FROM kb_documents").await, 1);
    assert_eq!(count(&engine, "SELECT count(*) FROM ai_memory").await, 1);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM message_templates").await,
        0
    );

    set_status(&engine, &tenant, "active").await;
    assert_eq!(search(&engine, &tenant, "hours", 1).await.len(), 1);
    for (method, path, body) in every_ai_call() {
        let response = call(&engine, &tenant.worker_token, method.clone(), path, body).await;
        let answer: Value = response.json().await.unwrap_or_default();
        assert_ne!(
            answer["error"]["code"], "tenant_suspended",
            "{method} {path} after resuming"
        );
    }
}
