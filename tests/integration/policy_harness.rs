//! What the send-policy tests share: an engine and a sandbox that know each other, tenants of
//! each provider pointed at the sandbox, and signed inbound webhooks of each provider's format.

use crate::common::within;
use crate::engine_harness::{TestEngine, TestTenant, allow_sandbox, start_engine_public};
use flomastr::engine::providers::{meta, twilio};
use flomastr::sandbox::{Accounts, Knobs, SandboxConfig, SandboxState};
use serde_json::{Value, json};
use std::time::Duration;

pub struct Sandbox {
    pub url: String,
    pub state: SandboxState,
}

pub async fn sandbox() -> Sandbox {
    let knobs = Knobs {
        report_delay_ms: 20,
        ..Knobs::default()
    };
    let config = SandboxConfig {
        accounts: Accounts::default(),
        knobs,
    };
    let state = flomastr::sandbox::new_state(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = flomastr::sandbox::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Sandbox { url, state }
}

/// An engine (its own URL as public URL, so reports and Twilio signatures work) and a sandbox.
pub async fn engine_and_sandbox() -> (TestEngine, Sandbox) {
    let sandbox = sandbox().await;
    let engine = start_engine_public(|args| allow_sandbox(args, &sandbox.url)).await;
    (engine, sandbox)
}

/// Tenants `{provider}-co` of each provider, pointed at the sandbox, whose accounts there carry
/// `extra` (per provider: `{"meta": {"stopped_marketing": [...]}, ...}`).
pub async fn tenants(
    engine: &TestEngine,
    sandbox: &Sandbox,
    extra: Value,
) -> Vec<(&'static str, TestTenant)> {
    let mut tenants = Vec::new();
    for provider in ["infobip", "meta", "twilio"] {
        let slug = format!("{provider}-co");
        let tenant = engine
            .tenant_with(&slug, provider, json!({"channel_base_url": sandbox.url}))
            .await;
        tenants.push((provider, tenant));
    }
    let account = |provider: &str, mut base: Value| {
        if let (Some(target), Some(more)) = (base.as_object_mut(), extra[provider].as_object()) {
            target.extend(more.clone());
        }
        base
    };
    let hook = |provider: &str| engine.at(&format!("/webhook/{provider}/{provider}-co"));
    let (ib, mt, tw) = (&tenants[0].1, &tenants[1].1, &tenants[2].1);
    let accounts = json!({
        "infobip": [account("infobip", json!({"api_key": "ib-api-key-secret", "sender": ib.sender,
            "webhook_url": hook("infobip"), "webhook_secret": ib.webhook_secret, "webhook_header": "X-Webhook-Secret"}))],
        "meta": [account("meta", json!({"access_token": "meta-access-token-secret", "phone_number_id": mt.sender,
            "app_secret": mt.app_secret, "webhook_url": hook("meta")}))],
        "twilio": [account("twilio", json!({"account_sid": tw.account_sid, "auth_token": tw.auth_token,
            "sender": tw.sender, "webhook_url": hook("twilio")}))],
    });
    sandbox
        .state
        .set_accounts(Accounts::from_json(&accounts.to_string()).unwrap());
    tenants
}

/// A customer's text message through the provider's own inbound webhook, signed as the
/// provider signs it; returns the answer's status.
pub async fn inbound(
    engine: &TestEngine,
    provider: &str,
    tenant: &TestTenant,
    from: &str,
    text: &str,
) -> u16 {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let path = format!("/webhook/{provider}/{}", tenant.slug);
    let request = match provider {
        "infobip" => engine
            .http
            .post(engine.at(&path))
            .header("x-webhook-secret", &tenant.webhook_secret)
            .json(&json!({"results": [{"from": from, "to": tenant.sender, "integrationType": "WHATSAPP",
                "receivedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
                "messageId": id, "message": {"type": "TEXT", "text": text}}],
                "messageCount": 1, "pendingMessageCount": 0})),
        "meta" => {
            let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{
                "field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": tenant.sender},
                "contacts": [{"profile": {"name": "Ana"}, "wa_id": from}],
                "messages": [{"from": from, "id": format!("wamid.{id}"), "type": "text",
                    "timestamp": chrono::Utc::now().timestamp().to_string(), "text": {"body": text}}]}}]}]});
            let bytes = serde_json::to_vec(&body).unwrap();
            engine
                .http
                .post(engine.at(&path))
                .header("content-type", "application/json")
                .header(
                    "x-hub-signature-256",
                    meta::sign(tenant.app_secret.as_bytes(), &bytes),
                )
                .body(bytes)
        }
        _ => {
            let params: Vec<(String, String)> = [
                ("MessageSid", format!("SM{id}")),
                ("AccountSid", tenant.account_sid.clone()),
                ("From", format!("whatsapp:+{from}")),
                ("To", tenant.sender.clone()),
                ("Body", text.to_owned()),
                ("NumMedia", "0".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let signature = twilio::expected_signature(&tenant.auth_token, &engine.at(&path), &params);
            engine
                .http
                .post(engine.at(&path))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", signature)
                .body(serde_urlencoded::to_string(&params).unwrap())
        }
    };
    request.send().await.unwrap().status().as_u16()
}

/// A call to a `/routes/tenants/{slug}/...` path with a token.
pub async fn call(
    engine: &TestEngine,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = engine
        .http
        .request(method, engine.at(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls a message until the provider took it (accepted, or a report beyond): what the policy
/// tests need, without waiting on the last of the sandbox's reports.
pub async fn wait_for_sent(engine: &TestEngine, tenant: &TestTenant, id: &str) -> Value {
    within(Duration::from_secs(20), "the message sent", async || {
        let view: Value = engine.message(tenant, id).await.json().await.unwrap();
        ["accepted", "sent", "delivered", "read"]
            .contains(&view["status"].as_str().unwrap_or_default())
            .then_some(view)
    })
    .await
}

/// Polls a message until it reaches `want`.
pub async fn wait_for_status(
    engine: &TestEngine,
    tenant: &TestTenant,
    id: &str,
    want: &str,
) -> Value {
    within(
        Duration::from_secs(20),
        &format!("the message {want}"),
        async || {
            let view: Value = engine.message(tenant, id).await.json().await.unwrap();
            (view["status"] == want).then_some(view)
        },
    )
    .await
}

pub async fn count(engine: &TestEngine, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}
