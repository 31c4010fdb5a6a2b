//! Frequency caps: marketing over the tenant's cap refused with the time it is allowed again,
//! and allowed then; Meta's per-user marketing limit (131049) recorded and never retried before
//! the provider's period, whether Meta reports it in a status webhook or answers it to the send.

use crate::engine_harness::{TestEngine, TestTenant};
use crate::policy_harness::{call, engine_and_sandbox, tenants};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn send(engine: &TestEngine, tenant: &TestTenant, body: Value) -> (u16, Value) {
    let response = engine.send(tenant, None, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn promo(to: &str) -> Value {
    json!({"to": to, "category": "marketing", "template": {"name": "weekly_offer", "language": "en", "params": ["Ana"]}})
}

#[tokio::test]
async fn marketing_over_the_cap_is_refused_until_the_period_lets_it_through() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(2).1;
    let path = format!("/routes/tenants/{}/policy", tenant.slug);
    let (status, _) = call(
        &engine,
        Method::PUT,
        &path,
        &tenant.worker_token,
        Some(json!({"marketing_cap": {"max": 2, "period_seconds": 3}})),
    )
    .await;
    assert_eq!(status, 200);
    let (first, _) = send(&engine, &tenant, promo("447700900401")).await;
    let (second, _) = send(&engine, &tenant, promo("447700900401")).await;
    assert_eq!((first, second), (202, 202));
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM outbound_messages")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    let (status, refused) = send(&engine, &tenant, promo("447700900401")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("frequency_capped")),
        "{refused}"
    );
    let allowed_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(refused["error"]["details"]["allowed_at"].clone()).unwrap();
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM outbound_messages")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(after, before, "a refusal writes nothing");
    // Other contacts, and utility messages, are not capped.
    assert_eq!(send(&engine, &tenant, promo("447700900402")).await.0, 202);
    let mut utility = promo("447700900401");
    utility["category"] = json!("utility");
    assert_eq!(send(&engine, &tenant, utility).await.0, 202);

    // Allowed again once the first message leaves the rolling period, not before.
    let wait = (allowed_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    assert!(wait <= Duration::from_secs(3), "{allowed_at}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = send(&engine, &tenant, promo("447700900401")).await;
        if status == 202 {
            assert!(
                chrono::Utc::now() >= allowed_at,
                "allowed before {allowed_at}"
            );
            break;
        }
        assert_eq!(status, 409, "{answer}");
        assert!(std::time::Instant::now() < deadline, "never allowed again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the message is queued again after a 131049 with its `retry` entry, then checks
/// it waits the provider's day and the contact is recorded as limited for as long.
async fn waits_the_providers_day(
    engine: &TestEngine,
    tenant: &TestTenant,
    id: &str,
    contact: &str,
) -> Value {
    let view = crate::common::eventually("the 131049 retry", async || {
        let view: Value = engine.message(tenant, id).await.json().await.unwrap();
        let retried = view["history"].as_array().unwrap().iter().any(|h| {
            h["status"] == "retry"
                && h["detail"]["code"] == "131049"
                && h["detail"]["reason"] == "provider_marketing_limit"
        });
        // The row and its history are read apart: wait for both.
        (retried && view["status"] == "queued").then_some(view)
    })
    .await;
    let next: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT next_attempt_at FROM outbound_messages WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    let day = chrono::Utc::now() + chrono::Duration::hours(23);
    assert!(next >= day, "retry at {next}");
    let (hits, until): (i32, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT hits, limited_until FROM contact_marketing_limits WHERE contact = $1",
    )
    .bind(contact)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(hits, 1);
    assert!(until >= day, "limited until {until}");
    view
}

#[tokio::test]
async fn a_131049_is_recorded_and_not_retried_before_the_providers_period() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let extra = json!({"meta": {"marketing_limited": ["447700900501"]}});
    let tenant = tenants(&engine, &sandbox, extra).await.remove(1).1;
    let (status, sent) = send(&engine, &tenant, promo("447700900501")).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["message_id"].as_str().unwrap();
    // Meta accepts, then reports `failed` with 131049: the message waits a day.
    waits_the_providers_day(&engine, &tenant, id, "447700900501").await;
    assert_eq!(sandbox.state.requests().len(), 1, "sent once");

    // New marketing to that contact is refused until the provider's period ends; service is not.
    let (status, refused) = send(&engine, &tenant, promo("447700900501")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("frequency_capped")),
        "{refused}"
    );
    assert_eq!(refused["error"]["details"]["provider_limit"], true);
    let mut utility = promo("447700900501");
    utility["category"] = json!("utility");
    let (status, other) = send(&engine, &tenant, utility).await;
    assert_eq!(status, 202, "{other}");
    // It is sent at once; the waiting promotion is not sent again.
    crate::common::eventually("the utility send", async || {
        (sandbox.state.requests().len() == 2).then_some(())
    })
    .await;
    let view: Value = engine.message(&tenant, id).await.json().await.unwrap();
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_i64()),
        (Some("queued"), Some(1)),
        "{view}"
    );
}

#[tokio::test]
async fn a_131049_in_the_send_answer_is_recorded_and_not_retried_before_the_providers_period() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let extra = json!({"meta": {"marketing_limited_at_send": ["447700900601"]}});
    let tenant = tenants(&engine, &sandbox, extra).await.remove(1).1;
    let (status, sent) = send(&engine, &tenant, promo("447700900601")).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["message_id"].as_str().unwrap();
    // Meta refuses the send itself with 131049 (no status webhook follows): the message waits
    // the provider's day instead of the dispatcher's seconds of backoff.
    let view = waits_the_providers_day(&engine, &tenant, id, "447700900601").await;
    assert_eq!(
        (view["attempts"].as_i64(), view["error_code"].as_str()),
        (Some(1), Some("131049")),
        "{view}"
    );
    let refused: Vec<u16> = sandbox.state.requests().iter().map(|r| r.status).collect();
    assert_eq!(refused, [400], "sent once, refused in the answer");

    // New marketing to the contact is refused for the period; other contacts get theirs.
    let (status, capped) = send(&engine, &tenant, promo("447700900601")).await;
    assert_eq!(
        (status, capped["error"]["code"].as_str()),
        (409, Some("frequency_capped")),
        "{capped}"
    );
    assert_eq!(capped["error"]["details"]["provider_limit"], true);
    let (status, other) = send(&engine, &tenant, promo("447700900602")).await;
    assert_eq!(status, 202, "{other}");
    crate::policy_harness::wait_for_sent(&engine, &tenant, other["message_id"].as_str().unwrap())
        .await;
    // The limited promotion was not sent again meanwhile.
    let view: Value = engine.message(&tenant, id).await.json().await.unwrap();
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_i64()),
        (Some("queued"), Some(1)),
        "{view}"
    );
    assert_eq!(sandbox.state.requests().len(), 2);
}
