//! Inbound webhooks of all four formats against the real database: authenticated, every element
//! read, one job per message however often it is delivered, nothing written on a refusal.

use crate::engine_harness::{TestEngine, TestTenant, start_engine, start_engine_with};
use base64::Engine as _;
use flomastr::engine::providers::{meta, twilio};
use serde_json::{Value, json};

fn infobip_payload(sender: &str) -> Value {
    json!({
        "results": [
            {"from": "447700900001", "to": sender, "integrationType": "WHATSAPP", "receivedAt": "2026-11-25T10:00:00.000+0000",
             "messageId": "ib-1", "message": {"type": "TEXT", "text": "Hola"}, "contact": {"name": "Ana"}, "price": {"pricePerMessage": 0, "currency": "EUR"}},
            {"from": "447700900002", "to": sender, "integrationType": "WHATSAPP", "receivedAt": "2026-11-25T10:00:01.500+00:00",
             "messageId": "ib-2", "message": {"type": "IMAGE", "url": "https://example.invalid/m/1", "caption": "mira"}},
            {"from": "447700900001", "to": sender, "integrationType": "WHATSAPP", "receivedAt": "2026-11-25T10:00:02.000+0000",
             "messageId": "ib-3", "message": {"type": "INTERACTIVE_BUTTON_REPLY", "id": "yes", "title": "Sí"}},
            {"bulkId": "b1", "messageId": "out-1", "to": "447700900001", "sentAt": "2026-11-25T09:59:00.000+0000", "doneAt": "2026-11-25T10:00:03.000+0000",
             "messageCount": 1, "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset"},
             "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}},
            {"messageId": "out-1", "from": "447700900001", "to": sender, "sentAt": "2026-11-25T09:59:00.000+0000", "seenAt": "2026-11-25T10:00:04.000+0000"}
        ],
        "messageCount": 5, "pendingMessageCount": 0
    })
}

async fn post_infobip(
    engine: &TestEngine,
    tenant: &TestTenant,
    body: &Value,
    secret: Option<&str>,
) -> reqwest::Response {
    let mut request = engine
        .http
        .post(engine.at(&format!("/webhook/infobip/{}", tenant.slug)))
        .json(body);
    if let Some(secret) = secret {
        request = request.header("x-webhook-secret", secret);
    }
    request.send().await.unwrap()
}

async fn reports(engine: &TestEngine) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM status_reports")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn infobip_every_result_is_stored_and_redelivery_makes_no_second_job() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    let payload = infobip_payload(&tenant.sender);
    let response = post_infobip(&engine, &tenant, &payload, Some(&tenant.webhook_secret)).await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(
        (ack["queued"].as_u64(), ack["reports"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(engine.count_jobs().await, 3);
    assert_eq!(reports(&engine).await, 2);

    let again: Value = post_infobip(&engine, &tenant, &payload, Some(&tenant.webhook_secret))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["queued"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(
        again["job_ids"], ack["job_ids"],
        "a redelivery answers with the same jobs"
    );
    assert_eq!(engine.count_jobs().await, 3);
    assert_eq!(reports(&engine).await, 2);

    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM jobs WHERE dedup_key = 'infobip:ib-2'")
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(payload["tenant_id"], "acme");
    assert_eq!(payload["from"], "447700900002");
    assert_eq!(payload["message"], "mira");
    assert_eq!(payload["timestamp"], "2026-11-25T10:00:01.500Z");
    assert_eq!(payload["raw"]["messageId"], "ib-2");
}

#[tokio::test]
async fn infobip_authentication_by_header_or_basic_and_nothing_written_on_refusal() {
    let engine = start_engine().await;
    let tenant = engine.tenant_with("acme", "infobip", json!({})).await;
    let payload = infobip_payload(&tenant.sender);
    assert_eq!(
        post_infobip(&engine, &tenant, &payload, None)
            .await
            .status(),
        401
    );
    assert_eq!(
        post_infobip(&engine, &tenant, &payload, Some("wrong-secret"))
            .await
            .status(),
        403
    );
    assert_eq!(engine.count_jobs().await, 0);

    // Basic auth configured instead (on a number of its own: a number belongs to one tenant).
    let basic_sender = engine.free_sender("infobip").await;
    let basic = json!({"channel": {"provider": "infobip", "sender": basic_sender,
        "credentials": {"basic_username": "infobip", "basic_password": "pa55-w0rd"}}});
    let other = engine.tenant_with("basic", "infobip", basic).await;
    let url = engine.at(&format!("/webhook/infobip/{}", other.slug));
    let payload = infobip_payload(&basic_sender);
    let wrong = engine
        .http
        .post(&url)
        .basic_auth("infobip", Some("nope"))
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let right = engine
        .http
        .post(&url)
        .basic_auth("infobip", Some("pa55-w0rd"))
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(engine.count_jobs().await, 3);
}

#[tokio::test]
async fn refusals_have_the_right_status_and_write_nothing() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    let secret = Some(tenant.webhook_secret.as_str());
    let url = engine.at("/webhook/infobip/acme");
    // Malformed: not JSON, wrong shape, a missing field deep inside.
    let not_json = engine
        .http
        .post(&url)
        .header("x-webhook-secret", &tenant.webhook_secret)
        .body("{results:")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let mut missing_id = infobip_payload(&tenant.sender);
    missing_id["results"][2]
        .as_object_mut()
        .unwrap()
        .remove("messageId");
    let response = post_infobip(&engine, &tenant, &missing_id, secret).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("results[2].messageId"),
        "{error}"
    );
    // Oversized (the test engine's limit is 64 KiB).
    let mut huge = infobip_payload(&tenant.sender);
    huge["results"][0]["message"]["text"] = json!("x".repeat(70 * 1024));
    assert_eq!(
        post_infobip(&engine, &tenant, &huge, secret).await.status(),
        413
    );
    // Unknown tenant; a tenant without this provider.
    let unknown = engine
        .http
        .post(engine.at("/webhook/infobip/nobody"))
        .header("x-webhook-secret", "x")
        .json(&json!({"results": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let meta_tenant = engine.tenant("metaco", "meta").await;
    assert_eq!(
        post_infobip(
            &engine,
            &meta_tenant,
            &json!({"results": []}),
            Some(&meta_tenant.webhook_secret)
        )
        .await
        .status(),
        404
    );
    // Cross-tenant: a payload addressed to another sender, posted with this tenant's secret.
    let foreign = infobip_payload("15550001111");
    assert_eq!(
        post_infobip(&engine, &tenant, &foreign, secret)
            .await
            .status(),
        403
    );
    assert_eq!(engine.count_jobs().await, 0);
    assert_eq!(reports(&engine).await, 0);
}

#[tokio::test]
async fn seed_webhook_needs_the_secret_parses_both_offsets_and_dedups() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    let url = engine.at("/webhook/inbound");
    let body = json!({"from": "447700900001", "message": "hola", "tenant_id": "acme", "timestamp": "2026-11-25T10:00:00+0000"});
    assert_eq!(
        engine
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        engine
            .http
            .post(&url)
            .header("x-webhook-secret", "bad")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let mut unknown = body.clone();
    unknown["tenant_id"] = json!("nobody");
    assert_eq!(
        engine
            .http
            .post(&url)
            .header("x-webhook-secret", "x")
            .json(&unknown)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let mut bad_time = body.clone();
    bad_time["timestamp"] = json!("yesterday");
    let response = engine
        .http
        .post(&url)
        .header("x-webhook-secret", &tenant.webhook_secret)
        .json(&bad_time)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("timestamp"));
    let missing = json!({"from": "1", "tenant_id": "acme", "timestamp": "2026-11-25T10:00:00Z"});
    let response = engine
        .http
        .post(&url)
        .header("x-webhook-secret", &tenant.webhook_secret)
        .json(&missing)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("message"));
    assert_eq!(engine.count_jobs().await, 0);

    let first: Value = engine
        .seed(&tenant, "447700900001", "hola", "2026-11-25T10:00:00+0000")
        .await
        .json()
        .await
        .unwrap();
    let same: Value = engine
        .seed(&tenant, "447700900001", "hola", "2026-11-25T10:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["job_ids"], same["job_ids"],
        "+0000 and Z are the same instant: one message"
    );
    assert_eq!(same["duplicates"], 1);
    let by_bearer = engine.http.post(&url).bearer_auth(&tenant.webhook_secret)
        .json(&json!({"from": "447700900001", "message": "otra", "tenant_id": "acme", "timestamp": 1764064800}))
        .send().await.unwrap();
    assert_eq!(by_bearer.status(), 200);
    assert_eq!(engine.count_jobs().await, 2);
}

fn meta_payload(phone_number_id: &str) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "WABA1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
                "contacts": [{"profile": {"name": "Ana"}, "wa_id": "447700900001"}],
                "messages": [
                    {"from": "447700900001", "id": "wamid.A1", "timestamp": "1764064800", "type": "text", "text": {"body": "¿Abrís mañana?"}},
                    {"from": "447700900001", "id": "wamid.A2", "timestamp": "1764064801", "type": "reaction", "reaction": {"message_id": "wamid.A1", "emoji": "👍"}}
                ]}}]},
            {"id": "WABA1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
                "contacts": [{"profile": {"name": "Bo", "username": "bo.bakes"}, "user_id": "CO.10471234"}],
                "messages": [{"from_user_id": "CO.10471234", "id": "wamid.B1", "timestamp": "1764064802", "type": "text", "text": {"body": "hi"}}],
                "statuses": [{"id": "wamid.OUT1", "status": "read", "timestamp": "1764064803", "recipient_user_id": "CO.10471234"}]
            }}]}
        ]
    })
}

#[tokio::test]
async fn meta_verification_signature_every_entry_and_username_users() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "meta").await;
    let verify = |token: &str| {
        engine.http.get(engine.at(&format!("/webhook/meta/acme?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"))).send()
    };
    let ok = verify("verify-me").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(verify("wrong").await.unwrap().status(), 403);

    let body = serde_json::to_vec(&meta_payload(&tenant.sender)).unwrap();
    let url = engine.at("/webhook/meta/acme");
    let unsigned = engine
        .http
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let forged = engine
        .http
        .post(&url)
        .header("x-hub-signature-256", meta::sign(b"not-the-secret", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(engine.count_jobs().await, 0);

    let signed = engine
        .http
        .post(&url)
        .header(
            "x-hub-signature-256",
            meta::sign(tenant.app_secret.as_bytes(), &body),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    assert_eq!(engine.count_jobs().await, 3);
    assert_eq!(reports(&engine).await, 1);
    let conversation: String =
        sqlx::query_scalar("SELECT conversation_key FROM jobs WHERE dedup_key = 'meta:wamid.B1'")
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(
        conversation, "CO.10471234",
        "a username-only user still has a stable conversation"
    );

    // One byte changed after signing: refused.
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] = b' ';
    let response = engine
        .http
        .post(&url)
        .header(
            "x-hub-signature-256",
            meta::sign(tenant.app_secret.as_bytes(), &body),
        )
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Signed correctly but for another phone number: cross-tenant, refused.
    let foreign = serde_json::to_vec(&meta_payload("999999999999")).unwrap();
    let response = engine
        .http
        .post(&url)
        .header(
            "x-hub-signature-256",
            meta::sign(tenant.app_secret.as_bytes(), &foreign),
        )
        .body(foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(engine.count_jobs().await, 3);
}

#[tokio::test]
async fn twilio_signature_over_the_public_url_and_form() {
    let engine =
        start_engine_with(|args| args.public_url = Some("https://engine.example.com".into())).await;
    let tenant = engine.tenant("acme", "twilio").await;
    let params: Vec<(String, String)> = [
        ("SmsMessageSid", "SM11111111111111111111111111111111"),
        ("NumMedia", "0"),
        ("ProfileName", "Ana"),
        ("SmsSid", "SM11111111111111111111111111111111"),
        ("WaId", "447700900001"),
        ("SmsStatus", "received"),
        ("Body", "Hola & adiós"),
        ("To", "whatsapp:+14155238886"),
        ("NumSegments", "1"),
        ("MessageSid", "SM11111111111111111111111111111111"),
        ("AccountSid", tenant.account_sid.as_str()),
        ("From", "whatsapp:+447700900001"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let form = serde_urlencoded::to_string(&params).unwrap();
    let public = "https://engine.example.com/webhook/twilio/acme";
    let post = |signature: Option<String>| {
        let mut request = engine
            .http
            .post(engine.at("/webhook/twilio/acme"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    let wrong_url = twilio::expected_signature(
        &tenant.auth_token,
        "http://127.0.0.1/webhook/twilio/acme",
        &params,
    );
    assert_eq!(post(Some(wrong_url)).await.unwrap().status(), 403);
    let garbage = base64::engine::general_purpose::STANDARD.encode([0u8; 20]);
    assert_eq!(post(Some(garbage)).await.unwrap().status(), 403);
    assert_eq!(engine.count_jobs().await, 0);
    let response = post(Some(twilio::expected_signature(
        &tenant.auth_token,
        public,
        &params,
    )))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/xml");
    assert!(response.text().await.unwrap().contains("<Response/>"));
    let payload: Value = sqlx::query_scalar("SELECT payload FROM jobs")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(payload["message"], "Hola & adiós");
    assert_eq!(payload["from"], "+447700900001");
}
