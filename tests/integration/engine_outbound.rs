//! Sending through each provider against `flomastr sandbox`: stored before 202, idempotent,
//! paced and retried, window rules, reports moving status forward only, tenant isolation.

use crate::engine_harness::{TestEngine, TestTenant, allow_sandbox, start_engine_public};
use flomastr::sandbox::{Accounts, Knobs, KnobsUpdate, SandboxConfig, SandboxState};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Sandbox {
    url: String,
    state: SandboxState,
}

async fn sandbox(accounts: Value) -> Sandbox {
    let accounts = Accounts::from_json(&accounts.to_string()).expect("sandbox accounts");
    let knobs = Knobs {
        report_delay_ms: 20,
        ..Knobs::default()
    };
    let state = flomastr::sandbox::new_state(SandboxConfig { accounts, knobs });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = flomastr::sandbox::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Sandbox { url, state }
}

/// An engine whose configuration allows a sandbox, and a tenant of `provider` whose channel
/// points at that sandbox, which reports back to the engine.
async fn engine_and_sandbox(provider: &str, closed: &[&str]) -> (TestEngine, TestTenant, Sandbox) {
    // The tenant's secrets are random per test; register first, then tell the sandbox.
    let sandbox = sandbox(json!({})).await;
    let engine = start_engine_public(|args| allow_sandbox(args, &sandbox.url)).await;
    let slug = format!("{provider}-co");
    let hook = engine.at(&format!("/webhook/{provider}/{slug}"));
    let tenant = engine
        .tenant_with(&slug, provider, json!({"channel_base_url": sandbox.url}))
        .await;
    let accounts = json!({
        "infobip": [{"api_key": "ib-api-key-secret", "sender": tenant.sender, "webhook_url": hook,
                     "webhook_secret": tenant.webhook_secret, "webhook_header": "X-Webhook-Secret"}],
        "meta": [{"access_token": "meta-access-token-secret", "phone_number_id": tenant.sender, "app_secret": tenant.app_secret,
                  "webhook_url": hook, "closed_window": closed}],
        "twilio": [{"account_sid": tenant.account_sid, "auth_token": tenant.auth_token, "sender": tenant.sender,
                    "webhook_url": hook, "closed_window": closed.iter().map(|c| format!("whatsapp:+{c}")).collect::<Vec<_>>()}],
    });
    sandbox
        .state
        .set_accounts(Accounts::from_json(&accounts.to_string()).unwrap());
    (engine, tenant, sandbox)
}

/// Opens the 24-hour window: the contact writes first.
async fn contact_writes(engine: &TestEngine, tenant: &TestTenant, contact: &str) {
    let now = chrono::Utc::now().to_rfc3339();
    assert_eq!(
        engine.seed(tenant, contact, "hola", &now).await.status(),
        200
    );
}

async fn wait_for_status(engine: &TestEngine, tenant: &TestTenant, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view: Value = engine.message(tenant, id).await.json().await.unwrap();
        if view["status"] == want {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "message never reached {want}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn statuses(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn infobip_send_is_idempotent_uses_our_message_id_and_reaches_read() {
    let (engine, tenant, sandbox) = engine_and_sandbox("infobip", &[]).await;
    contact_writes(&engine, &tenant, "447700900001").await;
    let body =
        json!({"to": "447700900001", "message": "Sí, abrimos a las 8", "tenant_id": tenant.slug});
    let first = engine.send(&tenant, Some("reply-1"), body.clone()).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "queued");
    let again: Value = engine
        .send(&tenant, Some("reply-1"), body.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["message_id"], first["message_id"],
        "same key and body: the same message"
    );
    let other = engine
        .send(
            &tenant,
            Some("reply-1"),
            json!({"to": "447700900001", "message": "otra cosa"}),
        )
        .await;
    assert_eq!(other.status(), 409);

    let id = first["message_id"].as_str().unwrap();
    let view = wait_for_status(&engine, &tenant, id, "read").await;
    assert_eq!(
        view["provider_message_id"], id,
        "InfoBip gets our id, so a retry cannot double-send"
    );
    let history = statuses(&view);
    assert_eq!(history.first().map(String::as_str), Some("queued"));
    assert!(
        history.contains(&"accepted".to_owned())
            && history.last().map(String::as_str) == Some("read"),
        "{history:?}"
    );

    let sent = sandbox.state.requests();
    assert_eq!(sent.len(), 1, "one send for two identical requests");
    assert_eq!(sent[0].body["messageId"], id);
    assert_eq!(
        sent[0].body["notifyUrl"],
        engine.at("/webhook/infobip/infobip-co")
    );
    assert_eq!(sent[0].headers["authorization"], "***");
}

#[tokio::test]
async fn meta_and_twilio_sends_reach_read_through_signed_reports() {
    for provider in ["meta", "twilio"] {
        let (engine, tenant, sandbox) = engine_and_sandbox(provider, &[]).await;
        contact_writes(&engine, &tenant, "447700900001").await;
        let sent: Value = engine
            .send(
                &tenant,
                None,
                json!({"to": "+447700900001", "message": "hello"}),
            )
            .await
            .json()
            .await
            .unwrap();
        let view = wait_for_status(
            &engine,
            &tenant,
            sent["message_id"].as_str().unwrap(),
            "read",
        )
        .await;
        assert!(
            view["provider_message_id"].as_str().unwrap().len() > 10,
            "{provider}: {view}"
        );
        assert_eq!(sandbox.state.requests().len(), 1, "{provider}");
    }
}

#[tokio::test]
async fn window_rules_free_text_needs_an_open_window_templates_do_not() {
    let (engine, tenant, _sandbox) = engine_and_sandbox("meta", &["447700900009"]).await;
    let refused = engine
        .send(
            &tenant,
            None,
            json!({"to": "447700900002", "message": "hola"}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "window_closed");
    let template = json!({"to": "447700900002", "template": {"name": "order_ready", "language": "es", "params": ["42"]}});
    let accepted: Value = engine
        .send(&tenant, None, template)
        .await
        .json()
        .await
        .unwrap();
    wait_for_status(
        &engine,
        &tenant,
        accepted["message_id"].as_str().unwrap(),
        "read",
    )
    .await;

    // Our window is open, but the provider says it is closed (131047): the same error.
    contact_writes(&engine, &tenant, "447700900009").await;
    let sent: Value = engine
        .send(
            &tenant,
            None,
            json!({"to": "447700900009", "message": "hola"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let view = wait_for_status(
        &engine,
        &tenant,
        sent["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "window_closed");
}

#[tokio::test]
async fn transient_failures_and_throttling_are_retried_permanent_ones_are_not() {
    let (engine, tenant, sandbox) = engine_and_sandbox("twilio", &[]).await;
    contact_writes(&engine, &tenant, "447700900001").await;
    sandbox
        .state
        .update_knobs(KnobsUpdate {
            fail_next: Some(1),
            throttle_next: Some(1),
            ..Default::default()
        })
        .unwrap();
    let sent: Value = engine
        .send(
            &tenant,
            None,
            json!({"to": "447700900001", "message": "retry me"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let view = wait_for_status(
        &engine,
        &tenant,
        sent["message_id"].as_str().unwrap(),
        "read",
    )
    .await;
    assert_eq!(view["attempts"], 3, "a 5xx, a 429, then success: {view}");
    assert_eq!(statuses(&view).iter().filter(|s| *s == "retry").count(), 2);
    let answered: Vec<u16> = sandbox.state.requests().iter().map(|r| r.status).collect();
    assert_eq!(answered, [500, 429, 201]);

    // A bad recipient is refused by the provider for good: failed with its code, sent once.
    sandbox.state.clear_requests();
    contact_writes(&engine, &tenant, "12").await;
    let bad: Value = engine
        .send(&tenant, None, json!({"to": "12", "message": "x"}))
        .await
        .json()
        .await
        .unwrap();
    let view = wait_for_status(
        &engine,
        &tenant,
        bad["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "21211", "{view}");
    assert_eq!(sandbox.state.requests().len(), 1);
}

#[tokio::test]
async fn shuffled_reports_never_move_a_message_back() {
    let (engine, tenant, sandbox) = engine_and_sandbox("infobip", &[]).await;
    sandbox
        .state
        .update_knobs(KnobsUpdate {
            report_delay_ms: Some(60_000),
            ..Default::default()
        })
        .unwrap();
    contact_writes(&engine, &tenant, "447700900001").await;
    let sent: Value = engine
        .send(&tenant, None, json!({"to": "447700900001", "message": "x"}))
        .await
        .json()
        .await
        .unwrap();
    let id = sent["message_id"].as_str().unwrap().to_owned();
    wait_for_status(&engine, &tenant, &id, "accepted").await;
    let seen = json!({"messageId": id, "from": "447700900001", "to": tenant.sender, "sentAt": "2026-11-25T10:00:00.000+0000", "seenAt": "2026-11-25T10:00:05.000+0000"});
    let delivered = json!({"messageId": id, "to": "447700900001", "sentAt": "2026-11-25T10:00:00.000+0000", "doneAt": "2026-11-25T10:00:03.000+0000",
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}});
    let failed = json!({"messageId": id, "to": "447700900001", "sentAt": "2026-11-25T10:00:00.000+0000", "doneAt": "2026-11-25T10:00:09.000+0000",
        "status": {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED"},
        "error": {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER", "permanent": true}});
    let post = |result: &Value| {
        engine
            .http
            .post(engine.at("/webhook/infobip/infobip-co"))
            .header("x-webhook-secret", &tenant.webhook_secret)
            .json(&json!({"results": [result]}))
            .send()
    };
    for report in [&seen, &delivered, &failed, &delivered] {
        assert_eq!(post(report).await.unwrap().status(), 200);
    }
    let view: Value = engine.message(&tenant, &id).await.json().await.unwrap();
    assert_eq!(
        view["status"], "read",
        "read beats a late delivered and a late failure: {view}"
    );
}

#[tokio::test]
async fn send_input_is_validated_and_tenants_are_isolated() {
    let (engine, tenant, _sandbox) = engine_and_sandbox("infobip", &[]).await;
    let other = engine.tenant("other", "infobip").await;
    contact_writes(&engine, &tenant, "447700900001").await;
    let cases = [
        (json!({"to": "447700900001"}), 400, "message"),
        (json!({"to": "", "message": "x"}), 400, "to"),
        (
            json!({"to": "447700900001", "message": "x".repeat(4097)}),
            400,
            "message",
        ),
        (
            json!({"to": "447700900001", "message": "x", "extra": 1}),
            400,
            "extra",
        ),
        (
            json!({"to": "447700900001", "template": {"name": "t", "language": ""}}),
            400,
            "template.language",
        ),
        (
            json!({"to": "447700900001", "message": "x", "tenant_id": "other"}),
            403,
            "tenant",
        ),
    ];
    for (body, status, field) in cases {
        let response = engine.send(&tenant, None, body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        assert!(
            response.text().await.unwrap().contains(field),
            "{body} should name {field}"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbound_messages")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing written on a 4xx");
    let sent: Value = engine
        .send(
            &tenant,
            None,
            json!({"to": "447700900001", "message": "mine"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = sent["message_id"].as_str().unwrap();
    assert_eq!(
        engine.message(&other, id).await.status(),
        404,
        "tenant B cannot read A's message"
    );
    assert_eq!(engine.message(&tenant, id).await.status(), 200);
    let anonymous = engine
        .http
        .get(engine.at(&format!("/messages/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn new_credentials_take_effect_without_a_restart() {
    let (engine, tenant, sandbox) = engine_and_sandbox("infobip", &[]).await;
    contact_writes(&engine, &tenant, "447700900001").await;
    // The provider rotates the key: the old one stops working.
    let hook = engine.at("/webhook/infobip/infobip-co");
    let rotated = json!({"infobip": [{"api_key": "ib-api-key-rotated", "sender": tenant.sender, "webhook_url": hook,
                                      "webhook_secret": tenant.webhook_secret}]});
    sandbox
        .state
        .set_accounts(Accounts::from_json(&rotated.to_string()).unwrap());
    let stale: Value = engine
        .send(
            &tenant,
            None,
            json!({"to": "447700900001", "message": "old key"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let view = wait_for_status(
        &engine,
        &tenant,
        stale["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "E401", "{view}");

    let mut registration = tenant.registration.clone();
    registration["channel"]["credentials"]["api_key"] = json!("ib-api-key-rotated");
    assert_eq!(
        engine.admin_put(&tenant.slug, &registration).await.status(),
        200
    );
    let fresh: Value = engine
        .send(
            &tenant,
            None,
            json!({"to": "447700900001", "message": "new key"}),
        )
        .await
        .json()
        .await
        .unwrap();
    wait_for_status(
        &engine,
        &tenant,
        fresh["message_id"].as_str().unwrap(),
        "read",
    )
    .await;
    let dump: Vec<String> = sqlx::query_scalar("SELECT c::text FROM channels c")
        .fetch_all(&engine.db.pool)
        .await
        .unwrap();
    assert!(
        dump.iter().all(|row| !row.contains("ib-api-key-rotated")),
        "credentials are sealed at rest"
    );
}
