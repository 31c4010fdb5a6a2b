//! Template lifecycle: Meta's status and quality webhooks update the catalog, sends of templates
//! that are not APPROVED are refused with the status, and the catalog's category is the default
//! category of a templated send.

use crate::engine_harness::{TestEngine, TestTenant};
use crate::policy_harness::{count, engine_and_sandbox, tenants};
use flomastr::engine::providers::meta;
use serde_json::{Value, json};

async fn put_catalog(engine: &TestEngine, tenant: &TestTenant) {
    let catalog = json!({"templates": [
        {"name": "weekly_offer", "language": "en_US", "category": "MARKETING", "status": "APPROVED",
         "body": "Hi {{1}}, this week: 20% off.", "variables": [{"description": "first name", "example": "Ana"}]},
        {"name": "new_menu", "language": "en_US", "category": "MARKETING", "status": "PENDING",
         "body": "Our new menu is out.", "variables": []},
    ]});
    let response = engine
        .http
        .put(engine.at("/routes/context/templates"))
        .bearer_auth(&tenant.worker_token)
        .json(&catalog)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn template_webhook(engine: &TestEngine, tenant: &TestTenant, field: &str, value: Value) {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "time": chrono::Utc::now().timestamp(), "changes": [{"field": field, "value": value}]}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let response = engine
        .http
        .post(engine.at(&format!("/webhook/meta/{}", tenant.slug)))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            meta::sign(tenant.app_secret.as_bytes(), &bytes),
        )
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn catalog_entry(engine: &TestEngine, tenant: &TestTenant, name: &str) -> Value {
    let catalog: Value = engine
        .http
        .get(engine.at("/routes/context/templates"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    catalog["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

async fn send(engine: &TestEngine, tenant: &TestTenant, name: &str) -> (u16, Value) {
    let body = json!({"to": "447700900601", "template": {"name": name, "language": "en_US", "params": if name == "weekly_offer" { json!(["Ana"]) } else { json!([]) }}});
    let response = engine.send(tenant, None, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn status_webhooks_update_the_catalog_and_gate_templated_sends() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(1).1;
    put_catalog(&engine, &tenant).await;

    let (status, refused) = send(&engine, &tenant, "new_menu").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("template_not_approved")),
        "{refused}"
    );
    assert_eq!(refused["error"]["details"]["template_status"], "PENDING");
    assert_eq!(
        count(&engine, "SELECT count(*) FROM outbound_messages").await,
        0,
        "nothing written"
    );

    let (status, sent) = send(&engine, &tenant, "weekly_offer").await;
    assert_eq!(
        (status, sent["category"].as_str()),
        (202, Some("marketing")),
        "the catalog's category: {sent}"
    );

    let id = 806_312_974_732_579_u64;
    template_webhook(&engine, &tenant, "message_template_status_update", json!({"event": "PAUSED",
        "message_template_id": id, "message_template_name": "weekly_offer", "message_template_language": "en-US",
        "reason": "LOW_QUALITY"})).await;
    template_webhook(&engine, &tenant, "message_template_quality_update", json!({"previous_quality_score": "GREEN",
        "new_quality_score": "RED", "message_template_id": id, "message_template_name": "weekly_offer",
        "message_template_language": "en_US"})).await;
    let entry = catalog_entry(&engine, &tenant, "weekly_offer").await;
    assert_eq!(
        (entry["status"].as_str(), entry["quality"].as_str()),
        (Some("PAUSED"), Some("RED")),
        "{entry}"
    );
    let (status, refused) = send(&engine, &tenant, "weekly_offer").await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["error"]["details"],
        json!({"template_status": "PAUSED", "quality": "RED"})
    );
    let events: Vec<(String, String, Option<String>)> = {
        let mut tx =
            flomastr::db::tenant_tx(&engine.db.pool, engine_tenant_id(&engine, &tenant).await)
                .await
                .unwrap();
        sqlx::query_as("SELECT field, value, reason FROM template_events ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .unwrap()
    };
    assert_eq!(
        events,
        [
            ("status".into(), "PAUSED".into(), Some("LOW_QUALITY".into())),
            ("quality".into(), "RED".into(), None)
        ]
    );

    // Reinstated: approved again, sendable again.
    template_webhook(&engine, &tenant, "message_template_status_update", json!({"event": "REINSTATED",
        "message_template_id": id, "message_template_name": "weekly_offer", "message_template_language": "en_US"})).await;
    assert_eq!(send(&engine, &tenant, "weekly_offer").await.0, 202);
    // A malformed template update is refused naming the field, and changes nothing.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "message_template_status_update", "value": {"event": "DISABLED", "message_template_language": "en_US"}}]}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let response = engine
        .http
        .post(engine.at(&format!("/webhook/meta/{}", tenant.slug)))
        .header(
            "x-hub-signature-256",
            meta::sign(tenant.app_secret.as_bytes(), &bytes),
        )
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("message_template_name")
    );
    assert_eq!(
        catalog_entry(&engine, &tenant, "weekly_offer").await["status"],
        "APPROVED"
    );
}

async fn engine_tenant_id(engine: &TestEngine, tenant: &TestTenant) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(&tenant.slug)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

fn meta_account(
    tenant: &TestTenant,
    engine: &TestEngine,
    templates: Value,
) -> flomastr::sandbox::Accounts {
    let accounts = json!({"meta": [{"access_token": "meta-access-token-secret", "phone_number_id": tenant.sender,
        "app_secret": tenant.app_secret, "webhook_url": engine.at(&format!("/webhook/meta/{}", tenant.slug)),
        "templates": templates}]});
    flomastr::sandbox::Accounts::from_json(&accounts.to_string()).unwrap()
}

async fn sync(engine: &TestEngine, tenant: &TestTenant) -> (u16, Value) {
    let path = format!("/routes/tenants/{}/templates/sync", tenant.slug);
    crate::policy_harness::call(
        engine,
        reqwest::Method::POST,
        &path,
        &tenant.worker_token,
        None,
    )
    .await
}

#[tokio::test]
async fn the_catalog_syncs_from_the_providers_template_apis() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let all = tenants(&engine, &sandbox, json!({"infobip": {"templates": [
        {"name": "cita", "language": "es", "category": "UTILITY", "status": "APPROVED", "body": "Su cita es el {{1}}."}]}})).await;
    let (infobip, meta_tenant, twilio) = (&all[0].1, &all[1].1, &all[2].1);
    let (status, body) = sync(&engine, meta_tenant).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("channel_incomplete")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("channel.credentials.waba_id")
    );
    let (status, body) = sync(&engine, twilio).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unsupported_provider")),
        "{body}"
    );

    let (status, body) = sync(&engine, infobip).await;
    assert_eq!(
        (status, body["templates"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(
        catalog_entry(&engine, infobip, "cita").await["status"],
        "APPROVED"
    );

    let mut registration = meta_tenant.registration.clone();
    registration["channel"]["credentials"]["waba_id"] = json!("102290129340398");
    assert!(
        engine
            .admin_put(&meta_tenant.slug, &registration)
            .await
            .status()
            .is_success()
    );
    let listed = json!([
        {"name": "weekly_offer", "language": "en_US", "category": "MARKETING", "status": "APPROVED", "body": "Hi {{1}}!", "quality": "GREEN"},
        {"name": "old_promo", "language": "en_US", "category": "MARKETING", "status": "PAUSED", "body": "Old."},
        {"name": "image_only", "language": "en_US", "category": "MARKETING", "status": "APPROVED", "body": ""}]);
    sandbox
        .state
        .set_accounts(meta_account(meta_tenant, &engine, listed));
    let (status, body) = crate::common::eventually("the new credentials", async || {
        let (status, body) = sync(&engine, meta_tenant).await;
        (status != 422).then_some((status, body))
    })
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["templates"].as_i64(), body["skipped"].as_i64()),
        (Some(2), Some(1)),
        "{body}"
    );
    let entry = catalog_entry(&engine, meta_tenant, "weekly_offer").await;
    assert_eq!(
        (entry["status"].as_str(), entry["quality"].as_str()),
        (Some("APPROVED"), Some("GREEN"))
    );
    let (status, refused) = send(&engine, meta_tenant, "old_promo").await;
    assert_eq!(
        (
            status,
            refused["error"]["details"]["template_status"].as_str()
        ),
        (422, Some("PAUSED"))
    );

    // Meta paused it since: the next sync says so, and only what changed is reported.
    let listed = json!([
        {"name": "weekly_offer", "language": "en_US", "category": "MARKETING", "status": "PAUSED", "body": "Hi {{1}}!", "quality": "RED"},
        {"name": "old_promo", "language": "en_US", "category": "MARKETING", "status": "PAUSED", "body": "Old."}]);
    sandbox
        .state
        .set_accounts(meta_account(meta_tenant, &engine, listed));
    let (status, body) = sync(&engine, meta_tenant).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["changed"],
        json!([{"name": "weekly_offer", "language": "en_US", "status": "PAUSED", "quality": "RED"}])
    );
    assert_eq!(send(&engine, meta_tenant, "weekly_offer").await.0, 422);
}
