//! Pulse content against the real engine, the real database and the local model stub: the
//! template catalog (replace, validation, isolation), the 24-hour window rule, model answers
//! checked and refused, history filling the name, degraded answers, redaction, budget, audit,
//! and send bodies that `POST /messages/send` takes as they are.

use crate::ai_stub::{Mode, Stub};
use crate::common::unique;
use crate::engine_harness::{TestEngine, TestTenant, start_engine, start_engine_with};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

/// A dead local port: the dispatcher's sends go nowhere, quickly.
const NO_PROVIDER: &str = "http://127.0.0.1:9";

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

pub fn reply(answer: Value) -> Mode {
    Mode::Reply {
        text: answer.to_string(),
        usage: true,
    }
}

async fn tenant(engine: &TestEngine, ai: Value) -> TestTenant {
    engine
        .tenant_with(
            &unique("pulse"),
            "infobip",
            json!({"ai": ai, "channel_base_url": NO_PROVIDER}),
        )
        .await
}

fn catalog() -> Value {
    json!({"templates": [
        {"name": "spring_sale", "language": "en_US", "category": "marketing", "status": "approved",
         "body": "Hi {{1}}, our spring sale has {{2}} off all shoes.",
         "variables": [{"description": "customer first name", "example": "there"},
                       {"description": "discount", "example": "20%"}]},
        {"name": "order_update", "language": "en_US", "category": "UTILITY", "status": "APPROVED",
         "body": "Your order {{1}} has shipped.",
         "variables": [{"description": "order number", "example": "A-100"}]},
        {"name": "vip_offer", "language": "en_US", "category": "MARKETING", "status": "PENDING",
         "body": "Hi {{1}}, a private shoe offer for you.",
         "variables": [{"description": "name", "example": "friend"}]}
    ]})
}

async fn put_templates(
    engine: &TestEngine,
    tenant: &TestTenant,
    body: &Value,
) -> reqwest::Response {
    engine
        .http
        .put(engine.at("/routes/context/templates"))
        .bearer_auth(&tenant.worker_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get_templates(engine: &TestEngine, tenant: &TestTenant) -> Vec<Value> {
    let response = engine
        .http
        .get(engine.at("/routes/context/templates"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["templates"]
        .as_array()
        .unwrap()
        .clone()
}

async fn pulse(engine: &TestEngine, tenant: &TestTenant, body: Value) -> reqwest::Response {
    engine
        .http
        .post(engine.at("/routes/context/pulse-content"))
        .bearer_auth(&tenant.worker_token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The results of a pulse that must answer 200.
async fn results(engine: &TestEngine, tenant: &TestTenant, body: Value) -> Vec<Value> {
    let response = pulse(engine, tenant, body).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["results"]
        .as_array()
        .unwrap()
        .clone()
}

/// The contact writes through the real InfoBip webhook `age` ago, with a profile name: the
/// job and the contact's window are what the engine itself stores.
pub async fn contact_writes(
    engine: &TestEngine,
    tenant: &TestTenant,
    from: &str,
    name: &str,
    text: &str,
    age: Duration,
) {
    let at = (Utc::now() - age)
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    let body = json!({"results": [{
        "from": from, "to": tenant.sender, "integrationType": "WHATSAPP", "receivedAt": at,
        "messageId": format!("in-{}", uuid::Uuid::new_v4()), "message": {"type": "TEXT", "text": text},
        "contact": {"name": name}, "price": {"pricePerMessage": 0, "currency": "EUR"}
    }]});
    let response = engine
        .http
        .post(engine.at(&format!("/webhook/infobip/{}", tenant.slug)))
        .header("x-webhook-secret", &tenant.webhook_secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn audit_outcomes(engine: &TestEngine) -> Vec<String> {
    sqlx::query_scalar("SELECT outcome FROM ai_audit WHERE endpoint = 'pulse_content' ORDER BY id")
        .fetch_all(&engine.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn ai_pulse_catalog_replaces_validates_and_stays_with_its_tenant() {
    let engine = start_engine().await;
    let a = tenant(&engine, json!({})).await;
    let b = tenant(&engine, json!({})).await;
    let stored = put_templates(&engine, &a, &catalog()).await;
    assert_eq!(stored.status(), 200);
    assert_eq!(
        stored.json::<Value>().await.unwrap(),
        json!({"templates": 3, "approved": 2})
    );
    let listed = get_templates(&engine, &a).await;
    let names: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["order_update", "spring_sale", "vip_offer"]);
    assert_eq!(listed[1]["status"], "APPROVED");
    assert_eq!(listed[1]["category"], "MARKETING");
    assert_eq!(listed[1]["variables"][0]["example"], "there");
    assert!(listed[1]["updated_at"].is_string());

    // What GET gives can be PUT back as it is.
    let round_trip = put_templates(&engine, &a, &json!({"templates": listed})).await;
    assert_eq!(round_trip.status(), 200);

    // Invalid catalogs: 400 naming the field, nothing written (the old catalog stays whole).
    let mut gap = catalog();
    gap["templates"][1]["body"] = json!("Your order {{2}} has shipped.");
    let mut newline = catalog();
    newline["templates"][0]["variables"][1]["example"] = json!("20%\noff");
    let mut count = catalog();
    count["templates"][2]["variables"] = json!([]);
    let mut unknown = catalog();
    unknown["templates"][0]["header"] = json!("SALE");
    let mut status = catalog();
    status["templates"][0]["status"] = json!("LIVE");
    let mut twice = catalog();
    twice["templates"][2]["name"] = json!("spring_sale");
    for (body, field) in [
        (gap, "templates[1].body"),
        (newline, "templates[0].variables[1].example"),
        (count, "templates[2].variables"),
        (unknown, "templates[0]"),
        (status, "templates[0].status"),
        (twice, "templates[2]"),
        (json!({"templates": [], "extra": 1}), "extra"),
    ] {
        let response = put_templates(&engine, &a, &body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_body");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(field) || message.contains(field),
            "{field}: {message}"
        );
        assert_eq!(
            get_templates(&engine, &a).await.len(),
            3,
            "{field}: nothing written"
        );
    }

    // Tenant B sees none of A's catalog and its pulse never uses A's templates.
    assert!(get_templates(&engine, &b).await.is_empty());
    let out = results(
        &engine,
        &b,
        json!({"contacts": ["447700900001"], "brief": "spring sale on shoes"}),
    )
    .await;
    assert_eq!(out[0]["kind"], "none");
    assert_eq!(out[0]["reason"], "no_approved_template");
    assert!(out[0].get("send").is_none());
    // B replacing its own catalog leaves A's alone.
    let only_b = json!({"templates": [{"name": "b_hello", "language": "en", "category": "UTILITY",
        "status": "APPROVED", "body": "Hello from B"}]});
    assert_eq!(put_templates(&engine, &b, &only_b).await.status(), 200);
    assert_eq!(get_templates(&engine, &a).await.len(), 3);
    assert_eq!(get_templates(&engine, &b).await.len(), 1);
    let out = results(
        &engine,
        &a,
        json!({"contacts": ["447700900001"], "brief": "hello"}),
    )
    .await;
    assert_ne!(out[0]["template"]["name"], "b_hello");

    // Row-level security backs the tenant filter up: a role without BYPASSRLS sees only the
    // tenant set in app.tenant_id, even when its query forgets the filter.
    let pool = &engine.db.pool;
    let role = unique("rls").replace('-', "_");
    for statement in [
        format!("CREATE ROLE {role} NOLOGIN"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON message_templates TO {role}"),
    ] {
        sqlx::query(&statement).execute(pool).await.unwrap();
    }
    let b_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(&b.slug)
        .fetch_one(pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(b_id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(&format!("SET LOCAL ROLE {role}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let visible: Vec<String> = sqlx::query_scalar("SELECT name FROM message_templates")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, ["b_hello"]);
    tx.rollback().await.unwrap();
    sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(pool)
        .await
        .unwrap();

    // An empty catalog is a valid catalog.
    assert_eq!(
        put_templates(&engine, &a, &json!({"templates": []}))
            .await
            .status(),
        200
    );
    assert!(get_templates(&engine, &a).await.is_empty());
    assert_eq!(get_templates(&engine, &b).await.len(), 1);

    let openapi: Value = engine
        .http
        .get(engine.at("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &openapi["paths"];
    assert!(paths["/routes/context/templates"]["put"].is_object());
    assert!(paths["/routes/context/templates"]["get"].is_object());
    assert!(paths["/routes/context/pulse-content"]["post"].is_object());
    for schema in [
        "CatalogIn",
        "PulseIn",
        "PulseOut",
        "PulseResult",
        "SendBody",
    ] {
        assert!(
            openapi["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }

    let anonymous = engine
        .http
        .get(engine.at("/routes/context/templates"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn ai_pulse_closed_window_gets_an_approved_template_filled_from_history() {
    // The model answers free text, which a closed window cannot take.
    let (engine, stub) =
        engine_with_stub(reply(json!({"text": "Hi Frank, shoes are 20% off!"}))).await;
    let t = tenant(&engine, json!({})).await;
    assert_eq!(put_templates(&engine, &t, &catalog()).await.status(), 200);
    contact_writes(
        &engine,
        &t,
        "447700900123",
        "Frank",
        "Do you have running shoes in size 44? Call me on +44 7911 123456 or write to frank@example.com",
        Duration::hours(30),
    )
    .await;
    let out = results(
        &engine,
        &t,
        json!({"contacts": ["+447700900123"], "brief": "Spring sale: 20% off all shoes. Ask ops@shop.example.com", "language": "en"}),
    )
    .await;
    let r = &out[0];
    assert_eq!(r["contact"], "+447700900123");
    assert_eq!(r["window_open"], false);
    assert_eq!(r["kind"], "template", "{r}");
    assert_eq!(r["degraded"], true);
    assert_eq!(r["reason"], "invalid_model_answer");
    assert!(r["detail"].as_str().unwrap().contains("window"), "{r}");
    assert_eq!(
        r["template"],
        json!({"name": "spring_sale", "language": "en_US", "params": ["Frank", "20%"]})
    );
    assert_eq!(
        r["text"],
        "Hi Frank, our spring sale has 20% off all shoes."
    );
    assert_eq!(
        r["send"],
        json!({"to": "+447700900123", "template": {"name": "spring_sale", "language": "en_US", "params": ["Frank", "20%"]}})
    );

    // The model saw the history, the name and the templates, but no phone or e-mail.
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let sent = serde_json::to_string(&requests).unwrap();
    assert!(
        sent.contains("running shoes") && sent.contains("Frank") && sent.contains("spring_sale")
    );
    assert!(
        !sent.contains("vip_offer"),
        "only approved templates are offered"
    );
    for personal in [
        "7911 123456",
        "frank@example.com",
        "ops@shop.example.com",
        "447700900123",
    ] {
        assert!(!sent.contains(personal), "{personal} reached the model");
    }
    assert!(sent.contains("[phone]") && sent.contains("[email]"));

    // The send body is taken as it is, although the window is closed.
    let accepted = engine.send(&t, None, r["send"].clone()).await;
    assert_eq!(accepted.status(), 202, "{}", accepted.text().await.unwrap());
}

#[tokio::test]
async fn ai_pulse_open_window_takes_the_models_free_text() {
    let (engine, stub) = engine_with_stub(reply(
        json!({"text": "Hi Ana! Our spring sale has 20% off all shoes."}),
    ))
    .await;
    let t = tenant(&engine, json!({})).await;
    assert_eq!(put_templates(&engine, &t, &catalog()).await.status(), 200);
    contact_writes(
        &engine,
        &t,
        "447700900200",
        "Ana",
        "Hola, any news on shoes?",
        Duration::minutes(5),
    )
    .await;
    let out = results(
        &engine,
        &t,
        json!({"contacts": ["447700900200"], "brief": "spring sale"}),
    )
    .await;
    let r = &out[0];
    assert_eq!(r["window_open"], true);
    assert_eq!(r["kind"], "text");
    assert_eq!(r["degraded"], false);
    assert!(r.get("reason").is_none() && r.get("template").is_none());
    assert_eq!(r["text"], "Hi Ana! Our spring sale has 20% off all shoes.");
    assert_eq!(
        r["send"],
        json!({"to": "447700900200", "message": "Hi Ana! Our spring sale has 20% off all shoes."})
    );
    let prompt = serde_json::to_string(&stub.requests()).unwrap();
    assert!(prompt.contains("OPEN") && prompt.contains("any news on shoes"));
    assert_eq!(engine.send(&t, None, r["send"].clone()).await.status(), 202);

    // A valid template answer is used as the model gave it.
    stub.set(reply(
        json!({"template": "spring_sale", "language": "en_US", "params": ["Ana", "25%"]}),
    ));
    let out = results(
        &engine,
        &t,
        json!({"contacts": ["447700900200"], "brief": "spring sale"}),
    )
    .await;
    assert_eq!(out[0]["kind"], "template");
    assert_eq!(out[0]["degraded"], false);
    assert_eq!(out[0]["template"]["params"], json!(["Ana", "25%"]));
    assert_eq!(
        out[0]["text"],
        "Hi Ana, our spring sale has 25% off all shoes."
    );

    let tokens: i64 = sqlx::query_scalar(
        "SELECT sum(prompt_tokens + completion_tokens)::bigint FROM ai_usage WHERE endpoint = 'pulse_content'",
    )
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(tokens, 240, "two model calls of 120 tokens");
    assert_eq!(audit_outcomes(&engine).await, ["generated", "generated"]);
}

#[tokio::test]
async fn ai_pulse_refuses_pending_templates_wrong_params_and_nonsense() {
    let (engine, stub) = engine_with_stub(Mode::Garbage).await;
    let t = tenant(&engine, json!({})).await;
    assert_eq!(put_templates(&engine, &t, &catalog()).await.status(), 200);
    contact_writes(
        &engine,
        &t,
        "447700900300",
        "Maria Lopez",
        "I love your shoes",
        Duration::minutes(1),
    )
    .await;
    let body = json!({"contacts": ["447700900300"], "brief": "spring sale on shoes"});
    for (mode, why) in [
        (
            reply(json!({"template": "vip_offer", "language": "en_US", "params": ["Maria"]})),
            "PENDING",
        ),
        (
            reply(json!({"template": "spring_sale", "language": "en_US", "params": ["Maria"]})),
            "placeholders",
        ),
        (
            reply(
                json!({"template": "spring_sale", "language": "en_US", "params": ["Maria", "20%     off"]}),
            ),
            "consecutive spaces",
        ),
        (
            reply(json!({"template": "no_such", "language": "en_US", "params": []})),
            "no template",
        ),
        (
            reply(json!({"text": "Call [phone] now"})),
            "redaction marker",
        ),
        (
            Mode::Reply {
                text: "Sure! Here is a lovely message.".into(),
                usage: false,
            },
            "JSON",
        ),
        (Mode::Garbage, "answer"),
    ] {
        stub.set(mode);
        let out = results(&engine, &t, body.clone()).await;
        let r = &out[0];
        assert_eq!(r["kind"], "template", "{why}: {r}");
        assert_eq!(r["degraded"], true, "{why}");
        assert!(r["detail"].as_str().unwrap().contains(why), "{why}: {r}");
        assert_eq!(
            r["template"]["name"], "spring_sale",
            "the approved template the brief fits best"
        );
        assert_eq!(r["template"]["params"], json!(["Maria Lopez", "20%"]));
    }
}

#[tokio::test]
async fn ai_pulse_without_an_approved_template_a_closed_window_gets_none() {
    let (engine, stub) = engine_with_stub(reply(json!({"text": "Hello again!"}))).await;
    let t = tenant(&engine, json!({})).await;
    let pending_only = json!({"templates": [catalog()["templates"][2].clone()]});
    assert_eq!(
        put_templates(&engine, &t, &pending_only).await.status(),
        200
    );
    contact_writes(
        &engine,
        &t,
        "447700900401",
        "Open",
        "hi",
        Duration::minutes(2),
    )
    .await;
    let out = results(
        &engine,
        &t,
        json!({"contacts": ["447700900400", "447700900401"], "brief": "a private offer"}),
    )
    .await;
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["kind"], "none");
    assert_eq!(out[0]["window_open"], false);
    assert_eq!(out[0]["reason"], "no_approved_template");
    assert!(out[0].get("send").is_none() && out[0].get("template").is_none());
    // The open window still gets the model's text.
    assert_eq!(out[1]["kind"], "text");
    assert_eq!(out[1]["send"]["message"], "Hello again!");
    assert_eq!(
        stub.requests().len(),
        1,
        "no model call where nothing could be valid"
    );

    // A language without templates is the same as none.
    assert_eq!(put_templates(&engine, &t, &catalog()).await.status(), 200);
    let out = results(
        &engine,
        &t,
        json!({"contacts": ["447700900400"], "brief": "sale", "language": "fr"}),
    )
    .await;
    assert_eq!(out[0]["kind"], "none");
}

#[tokio::test]
async fn ai_pulse_degrades_when_the_model_is_down_or_absent() {
    let (engine, stub) = engine_with_stub(Mode::Status(500)).await;
    let t = tenant(&engine, json!({})).await;
    assert_eq!(put_templates(&engine, &t, &catalog()).await.status(), 200);
    let contacts: Vec<String> = (0..8).map(|i| format!("44770090050{i}")).collect();
    let out = results(
        &engine,
        &t,
        json!({"contacts": contacts, "brief": "your order has shipped"}),
    )
    .await;
    assert_eq!(out.len(), 8);
    for (r, contact) in out.iter().zip(&contacts) {
        assert_eq!(&r["contact"], contact);
        assert_eq!(r["degraded"], true);
        assert_eq!(r["reason"], "model_unavailable");
        assert_eq!(r["template"]["name"], "order_update");
        assert_eq!(r["text"], "Your order A-100 has shipped.");
    }
    assert!(
        stub.requests().len() <= 4,
        "after a failure the rest of the request does not wait for the model"
    );
    assert_eq!(audit_outcomes(&engine).await, ["degraded"]);

    let plain = start_engine().await;
    let t = tenant(&plain, json!({})).await;
    assert_eq!(put_templates(&plain, &t, &catalog()).await.status(), 200);
    contact_writes(
        &plain,
        &t,
        "447700900600",
        "Zoe",
        "shoes?",
        Duration::minutes(1),
    )
    .await;
    let out = results(
        &plain,
        &t,
        json!({"contacts": ["447700900600"], "brief": "spring sale on shoes"}),
    )
    .await;
    assert_eq!(out[0]["degraded"], true);
    assert_eq!(out[0]["reason"], "no_chat_model");
    assert_eq!(out[0]["template"]["params"], json!(["Zoe", "20%"]));
    assert_eq!(
        plain.send(&t, None, out[0]["send"].clone()).await.status(),
        202
    );
}

#[tokio::test]
async fn ai_pulse_budget_and_bad_bodies_are_refused_and_every_call_is_audited() {
    let (engine, _stub) = engine_with_stub(reply(
        json!({"template": "order_update", "language": "en_US", "params": ["B-7"]}),
    ))
    .await;
    let t = tenant(&engine, json!({"monthly_token_budget": 100})).await;
    assert_eq!(put_templates(&engine, &t, &catalog()).await.status(), 200);
    let body = json!({"contacts": ["447700900700"], "brief": "order shipped"});
    let out = results(&engine, &t, body.clone()).await;
    assert_eq!(out[0]["template"]["params"], json!(["B-7"]));
    let refused = pulse(&engine, &t, body).await;
    assert_eq!(refused.status(), 429);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "budget_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100 tokens")
    );

    for (bad, field) in [
        (json!({"contacts": [], "brief": "x"}), "contacts"),
        (json!({"contacts": ["a"], "brief": ""}), "brief"),
        (json!({"contacts": ["a", "a"], "brief": "x"}), "contacts[1]"),
        (json!({"contacts": [" "], "brief": "x"}), "contacts[0]"),
        (
            json!({"contacts": ["a"], "brief": "x".repeat(2001)}),
            "brief",
        ),
        (
            json!({"contacts": ["a"], "brief": "x", "language": "en US"}),
            "language",
        ),
        (
            json!({"contacts": (0..101).map(|i| i.to_string()).collect::<Vec<_>>(), "brief": "x"}),
            "contacts",
        ),
    ] {
        let response = pulse(&engine, &t, bad).await;
        assert_eq!(response.status(), 400);
        let message = response.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{field}: {message}"
        );
    }
    let unknown = pulse(
        &engine,
        &t,
        json!({"contacts": ["a"], "brief": "x", "tone": "warm"}),
    )
    .await;
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("tone"));

    let outcomes = audit_outcomes(&engine).await;
    assert_eq!(outcomes[..2], ["generated", "budget_exceeded"]);
    assert_eq!(
        outcomes.iter().filter(|o| *o == "invalid_body").count(),
        7,
        "{outcomes:?}"
    );
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM ai_audit WHERE endpoint = 'pulse_content' ORDER BY id LIMIT 1",
    )
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(detail["contacts"], 1);
    assert_eq!(detail["model_calls"], 1);
}

#[tokio::test]
async fn ai_pulse_takes_one_rate_limit_call_per_model_call() {
    let (engine, stub) = engine_with_stub(reply(
        json!({"template": "order_update", "language": "en_US", "params": ["B-7"]}),
    ))
    .await;
    let per_minute = 5;
    let t = tenant(&engine, json!({"requests_per_minute": per_minute})).await;
    assert_eq!(put_templates(&engine, &t, &catalog()).await.status(), 200);
    let contacts: Vec<String> = (0..100).map(|i| format!("4477009{i:05}")).collect();
    let out = results(
        &engine,
        &t,
        json!({"contacts": contacts, "brief": "your order has shipped"}),
    )
    .await;
    assert_eq!(out.len(), 100);
    let calls = stub.requests().len();
    assert!(
        (1..=per_minute).contains(&calls),
        "{calls} model calls with a limit of {per_minute} a minute"
    );
    let limited = out.iter().filter(|r| r["reason"] == "rate_limited").count();
    assert_eq!(limited, 100 - calls, "the rest degrade");
    assert!(out.iter().all(|r| r["template"]["name"] == "order_update"));
    let refused = pulse(
        &engine,
        &t,
        json!({"contacts": ["447700900001"], "brief": "your order has shipped"}),
    )
    .await;
    assert_eq!(refused.status(), 429, "no call is left for another request");
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM ai_audit WHERE endpoint = 'pulse_content' ORDER BY id LIMIT 1",
    )
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(detail["model_calls"], calls);
}
