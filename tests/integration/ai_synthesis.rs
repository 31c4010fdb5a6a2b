//! Synthesis against a local OpenAI-compatible stub: generated answers with sources, memory,
//! degraded extractive answers (no model, 500, garbage), redaction, budget, rate limit, audit.

use crate::ai_knowledge::ingest;
use crate::ai_stub::{Mode, Stub};
use crate::common::unique;
use crate::engine_harness::{TestEngine, TestTenant, start_engine, start_engine_with};
use serde_json::{Value, json};

async fn engine_with_stub(mode: Mode) -> (TestEngine, Stub) {
    let stub = Stub::start(mode).await;
    let url = stub.url.clone();
    let engine = start_engine_with(move |args| {
        args.openai_base_url = Some(url);
        args.chat_model = Some("stub-model".to_owned());
    })
    .await;
    (engine, stub)
}

async fn tenant_with_faq(engine: &TestEngine, ai: Value) -> TestTenant {
    let tenant = engine
        .tenant_with(&unique("syn"), "infobip", json!({"ai": ai}))
        .await;
    let faq = "Our shop opens at 9 am and closes at 6 pm. Call us on +44 20 7946 0958 or write to help@shop.example.com.";
    assert_eq!(
        ingest(engine, &tenant, "Hours", faq, "text").await.status(),
        201
    );
    assert_eq!(
        ingest(
            engine,
            &tenant,
            "Payments",
            "We take cards, cash and bank transfers.",
            "text"
        )
        .await
        .status(),
        201
    );
    tenant
}

async fn ask(engine: &TestEngine, tenant: &TestTenant, body: Value) -> reqwest::Response {
    engine
        .http
        .post(engine.at("/routes/tools/synthesis"))
        .bearer_auth(&tenant.worker_token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn ai_synthesis_generates_with_sources_and_memory_without_personal_data() {
    let (engine, stub) = engine_with_stub(Mode::Reply {
        text: "We open at 9 am [S1].".into(),
        usage: true,
    })
    .await;
    let tenant = tenant_with_faq(&engine, json!({})).await;
    let response = ask(&engine, &tenant, json!({"question": "When do you open? I'm jane@example.org, +1 415 555 0100", "contact": "c-1"})).await;
    assert_eq!(response.status(), 200);
    let out: Value = response.json().await.unwrap();
    assert_eq!(out["mode"], "generated");
    assert_eq!(out["answer"], "We open at 9 am [S1].");
    assert_eq!(out["sources"][0]["title"], "Hours");
    assert!(out["sources"][0]["document_id"].is_string() && out["sources"][0]["chunk_index"] == 0);
    let confidence = out["confidence"].as_f64().unwrap();
    assert!(confidence > 0.0 && confidence <= 1.0);

    // The second question carries the first exchange; nothing sent has a phone or e-mail.
    assert_eq!(
        ask(
            &engine,
            &tenant,
            json!({"question": "And on Sunday?", "contact": "c-1"})
        )
        .await
        .status(),
        200
    );
    let requests = stub.requests();
    assert_eq!(requests.len(), 2);
    let second = requests[1]["messages"].as_array().unwrap();
    assert!(
        second
            .iter()
            .any(|m| m["role"] == "assistant" && m["content"] == "We open at 9 am [S1].")
    );
    let sent = serde_json::to_string(&requests).unwrap();
    for personal in [
        "jane@example.org",
        "415 555 0100",
        "help@shop.example.com",
        "7946 0958",
    ] {
        assert!(!sent.contains(personal), "{personal} reached the model");
    }
    assert!(sent.contains("[email]") && sent.contains("[phone]"));

    let tokens: i64 = sqlx::query_scalar("SELECT sum(prompt_tokens + completion_tokens)::bigint FROM ai_usage WHERE endpoint = 'synthesis'")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(tokens, 240);
    let audits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ai_audit WHERE endpoint = 'synthesis' AND outcome = 'generated'",
    )
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(audits, 2);

    // Memory keeps the exchanges, and the purge forgets them.
    let purge = engine
        .http
        .delete(engine.at("/routes/memory/c-1"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    assert_eq!(purge.json::<Value>().await.unwrap()["exchanges_deleted"], 2);
    assert_eq!(
        ask(
            &engine,
            &tenant,
            json!({"question": "Hours?", "contact": "c-1"})
        )
        .await
        .status(),
        200
    );
    let third = stub.requests()[2]["messages"].as_array().unwrap().clone();
    assert_eq!(third.len(), 2, "system + question only after the purge");
}

#[tokio::test]
async fn ai_synthesis_remembers_only_the_last_ten_exchanges() {
    let (engine, stub) = engine_with_stub(Mode::Reply {
        text: "ok [S1]".into(),
        usage: false,
    })
    .await;
    let tenant = tenant_with_faq(&engine, json!({})).await;
    for i in 0..12 {
        assert_eq!(
            ask(
                &engine,
                &tenant,
                json!({"question": format!("question {i}"), "contact": "c-2"})
            )
            .await
            .status(),
            200
        );
    }
    let last = stub.requests().last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(last.len(), 1 + 2 * 10 + 1);
    assert_eq!(last[1]["content"], "question 1");
    let estimated: bool = sqlx::query_scalar("SELECT bool_and(estimated) FROM ai_usage")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert!(estimated, "no usage reported: tokens are estimated");
}

#[tokio::test]
async fn ai_synthesis_degrades_to_extractive_when_the_model_fails() {
    let (engine, stub) = engine_with_stub(Mode::Status(500)).await;
    let tenant = tenant_with_faq(&engine, json!({})).await;
    for mode in [
        Mode::Status(500),
        Mode::Garbage,
        Mode::Reply {
            text: String::new(),
            usage: false,
        },
    ] {
        stub.set(mode);
        let response = ask(&engine, &tenant, json!({"question": "When do you open?"})).await;
        assert_eq!(response.status(), 200);
        let out: Value = response.json().await.unwrap();
        assert_eq!(out["mode"], "extractive");
        assert!(out["answer"].as_str().unwrap().contains("9 am"), "{out}");
        assert_eq!(out["sources"][0]["title"], "Hours");
    }
}

#[tokio::test]
async fn ai_synthesis_without_a_chat_model_is_extractive() {
    let engine = start_engine().await;
    let tenant = tenant_with_faq(&engine, json!({})).await;
    let out: Value = ask(&engine, &tenant, json!({"question": "Can I pay by card?"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(out["mode"], "extractive");
    assert_eq!(out["sources"][0]["title"], "Payments");
    let empty = engine.tenant(&unique("empty"), "infobip").await;
    let out: Value = ask(&engine, &empty, json!({"question": "Anything?"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(out["mode"], "extractive");
    assert_eq!(out["sources"], json!([]));
    assert_eq!(out["confidence"], 0.0);
}

#[tokio::test]
async fn ai_budget_and_rate_limit_answer_429_with_the_reason() {
    let (engine, _stub) = engine_with_stub(Mode::Reply {
        text: "fine [S1]".into(),
        usage: true,
    })
    .await;
    let tenant = tenant_with_faq(&engine, json!({"monthly_token_budget": 100})).await;
    assert_eq!(
        ask(&engine, &tenant, json!({"question": "hours?"}))
            .await
            .status(),
        200
    );
    let refused = ask(&engine, &tenant, json!({"question": "hours?"})).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100 tokens")
    );

    let limited = engine
        .tenant_with(
            &unique("rl"),
            "infobip",
            json!({"ai": {"requests_per_minute": 2}}),
        )
        .await;
    assert_eq!(
        ask(&engine, &limited, json!({"question": "a"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        ask(&engine, &limited, json!({"question": "b"}))
            .await
            .status(),
        200
    );
    let third = ask(&engine, &limited, json!({"question": "c"})).await;
    assert_eq!(third.status(), 429);
    assert_eq!(
        third.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM ai_audit WHERE endpoint = 'synthesis' ORDER BY id")
            .fetch_all(&engine.db.pool)
            .await
            .unwrap();
    assert!(
        outcomes.contains(&"budget_exceeded".to_owned())
            && outcomes.contains(&"rate_limited".to_owned())
    );
}
