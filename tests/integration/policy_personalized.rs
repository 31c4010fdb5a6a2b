//! Personalized campaigns: each contact's message chosen by the pulse-content logic when its
//! batch is sent (the local model stand-in answering), after the send policy: an opted-out
//! contact costs no model call, free text only inside the 24-hour window, the deterministic
//! choice (the contact's own name) when the model's answer is refused; bad content refused
//! naming the field with nothing written.

use crate::ai_pulse::{contact_writes, reply};
use crate::ai_stub::Stub;
use crate::common::within;
use crate::engine_harness::{TestEngine, TestTenant, allow_sandbox, start_engine_public};
use crate::policy_harness::{call, count, sandbox, tenants};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const OPEN: &str = "447700900911";
const CLOSED: &str = "447700900912";
const OPTED_OUT: &str = "447700900913";

fn catalog() -> Value {
    json!({"templates": [
        {"name": "weekly_offer", "language": "en_US", "category": "MARKETING", "status": "APPROVED",
         "body": "Hi {{1}}, this week: 20% off.", "variables": [{"description": "customer first name", "example": "friend"}]},
    ]})
}

fn campaigns(tenant: &TestTenant) -> String {
    format!("/routes/tenants/{}/pulse/campaigns", tenant.slug)
}

fn personalized(brief: &str, language: &str) -> Value {
    json!({"name": "pulse", "audience": {"kind": "list", "contacts": [OPEN, CLOSED, OPTED_OUT]},
           "content": {"personalized": {"brief": brief, "language": language}},
           "pacing": {"per_minute": 600}})
}

async fn setup(stub: &Stub) -> (TestEngine, TestTenant) {
    let sandbox = sandbox().await;
    let (sandbox_url, stub_url) = (sandbox.url.clone(), stub.url.clone());
    let engine = start_engine_public(move |args| {
        allow_sandbox(args, &sandbox_url);
        args.openai_base_url = Some(stub_url);
        args.chat_model = Some("stub-model".to_owned());
    })
    .await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(0).1;
    let (status, _) = call(
        &engine,
        Method::PUT,
        "/routes/context/templates",
        &tenant.worker_token,
        Some(catalog()),
    )
    .await;
    assert_eq!(status, 200);
    (engine, tenant)
}

#[tokio::test]
async fn each_contact_gets_its_own_message_through_the_policy_and_the_pulse_logic() {
    let answer = json!({"text": "Ana, your spring picks are in: 20% off this week."});
    let stub = Stub::start(reply(answer)).await;
    let (engine, tenant) = setup(&stub).await;
    contact_writes(
        &engine,
        &tenant,
        OPEN,
        "Ana",
        "any news on shoes?",
        chrono::Duration::minutes(5),
    )
    .await;
    contact_writes(
        &engine,
        &tenant,
        CLOSED,
        "Bruno",
        "thanks!",
        chrono::Duration::days(3),
    )
    .await;
    let (status, _) = call(
        &engine,
        Method::POST,
        &format!("/routes/tenants/{}/consent/import", tenant.slug),
        &tenant.worker_token,
        Some(json!({"contacts": [OPTED_OUT]})),
    )
    .await;
    assert_eq!(status, 200);

    let (status, created) = call(
        &engine,
        Method::POST,
        &campaigns(&tenant),
        &tenant.worker_token,
        Some(personalized("Spring offer for our regulars", "en")),
    )
    .await;
    assert_eq!(
        (status, created["state"].as_str()),
        (201, Some("draft")),
        "{created}"
    );
    assert_eq!(created["category"], "marketing");
    assert_eq!(
        created["content"]["personalized"]["brief"],
        "Spring offer for our regulars"
    );
    let id = created["id"].as_str().unwrap();
    let (status, started) = call(
        &engine,
        Method::POST,
        &format!("{}/{id}/runs", campaigns(&tenant)),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let view = within(
        Duration::from_secs(60),
        "the campaign completed",
        async || {
            let (_, view) = call(
                &engine,
                Method::GET,
                &format!("{}/{id}", campaigns(&tenant)),
                &tenant.worker_token,
                None,
            )
            .await;
            (view["state"] == "completed").then_some(view)
        },
    )
    .await;
    let counts = &view["runs"][0]["counts"];
    assert_eq!(counts["skipped"], json!({"opted_out": 1}), "{view}");
    assert_eq!(counts["pending"], 0, "{view}");

    let content = |contact: &'static str| {
        let pool = engine.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Value>(
                "SELECT content FROM outbound_messages WHERE recipient = $1 AND category = 'marketing'",
            )
            .bind(contact)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    // Inside the window the model's free text is used as it is.
    assert_eq!(
        content(OPEN).await,
        [json!({"text": "Ana, your spring picks are in: 20% off this week."})]
    );
    // Outside it free text is refused: the deterministic choice, with the contact's own name.
    assert_eq!(
        content(CLOSED).await,
        [json!({"template": {"name": "weekly_offer", "language": "en_US", "params": ["Bruno"]}})]
    );
    assert!(content(OPTED_OUT).await.is_empty());
    // The policy ran first: the opted-out contact cost no model call.
    assert_eq!(stub.requests().len(), 2);
    let audit: Vec<(String, Value)> = sqlx::query_as(
        "SELECT outcome, detail FROM ai_audit WHERE endpoint = 'pulse_content' AND detail ->> 'source' = 'campaign'",
    )
    .fetch_all(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (
            audit[0].0.as_str(),
            &audit[0].1["degraded"],
            &audit[0].1["model_calls"]
        ),
        ("degraded", &json!(1), &json!(2)),
        "{audit:?}"
    );
    let (_, recipients) = call(
        &engine,
        Method::GET,
        &format!(
            "{}/{id}/runs/{}/recipients",
            campaigns(&tenant),
            view["runs"][0]["id"].as_str().unwrap()
        ),
        &tenant.worker_token,
        None,
    )
    .await;
    let states: Vec<(&str, &str)> = recipients
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["contact"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [(OPEN, "queued"), (CLOSED, "queued"), (OPTED_OUT, "skipped")]
    );
}

#[tokio::test]
async fn bad_personalized_content_is_refused_naming_the_field_and_nothing_is_written() {
    let stub = Stub::start(reply(json!({"text": "unused"}))).await;
    let (engine, tenant) = setup(&stub).await;
    let mut both = personalized("Spring offer", "en");
    both["content"]["template"] =
        json!({"name": "weekly_offer", "language": "en_US", "params": ["x"]});
    let cases = [
        (
            personalized("Spring offer", "fr"),
            422,
            "no_approved_template",
            "content.personalized.language",
        ),
        (
            personalized("   ", "en"),
            400,
            "invalid_body",
            "content.personalized.brief",
        ),
        (
            personalized("Spring offer", "en US"),
            400,
            "invalid_body",
            "content.personalized.language",
        ),
        (both, 400, "invalid_body", "content:"),
    ];
    for (body, status, code, field) in cases {
        let (got, answer) = call(
            &engine,
            Method::POST,
            &campaigns(&tenant),
            &tenant.worker_token,
            Some(body),
        )
        .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{field}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{field}: {answer}"
        );
    }
    assert_eq!(
        count(&engine, "SELECT count(*) FROM campaigns").await,
        0,
        "nothing written"
    );
    assert!(stub.requests().is_empty());
}
