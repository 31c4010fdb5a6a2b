//! Many numbers per tenant and one Meta app shared by all tenants (issue 14 parts 1 and 2),
//! against the real database: each change of a shared webhook reaches exactly the tenant holding
//! its number, in one commit; what nobody holds is dropped and counted; a forged body writes
//! nothing; a sender belongs to one tenant; replies go out from the number the contact wrote to.

use crate::common::within;
use crate::engine_harness::{
    TestEngine, TestTenant, allow_sandbox, sha256_hex, start_engine_public, start_engine_with,
};
use crate::policy_harness::{Sandbox, sandbox};
use flomastr::engine::config::EngineArgs;
use flomastr::engine::providers::meta;
use flomastr::sandbox::Accounts;
use serde_json::{Value, json};
use std::time::Duration;

const APP_SECRET: &str = "shared-app-secret-0123456789";
const VERIFY_TOKEN: &str = "shared-verify-token-0123456789";
/// The sandbox's (and Meta's documentation) business account id.
const WABA: &str = "102290129340398";

fn shared_app(args: &mut EngineArgs) {
    args.meta_app_secret = Some(APP_SECRET.to_owned());
    args.meta_verify_token = Some(VERIFY_TOKEN.to_owned());
}

/// A tenant registered with `senders` (admin API form); its worker token is `worker-<slug>`.
async fn tenant_with_senders(engine: &TestEngine, slug: &str, senders: Value) -> TestTenant {
    let worker_token = format!("worker-{slug}");
    let body = json!({"display_name": slug, "worker_token_sha256": [sha256_hex(&worker_token)],
                      "senders": senders});
    let response = engine.admin_put(slug, &body).await;
    assert!(
        response.status().is_success(),
        "{slug}: {}",
        response.text().await.unwrap()
    );
    TestTenant {
        slug: slug.to_owned(),
        worker_token,
        webhook_secret: String::new(),
        sender: String::new(),
        app_secret: String::new(),
        auth_token: String::new(),
        account_sid: String::new(),
        registration: body,
    }
}

/// The tenant's senders as the admin API shows them.
async fn senders_of(engine: &TestEngine, slug: &str) -> Vec<Value> {
    let view: Value = engine.admin_get(slug).await.json().await.unwrap();
    view["senders"].as_array().cloned().unwrap_or_default()
}

fn meta_sender(number: &str, label: &str) -> Value {
    json!({"provider": "meta", "sender": number, "label": label,
           "credentials": {"access_token": format!("token-{number}"), "waba_id": WABA}})
}

/// One change of a Meta body: text messages `(id, from, text)` to `phone_number_id`.
fn change(phone_number_id: &str, messages: &[(&str, &str, &str)]) -> Value {
    let now = chrono::Utc::now().timestamp().to_string();
    json!({"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "contacts": messages.iter().map(|(_, from, _)| json!({"profile": {"name": "Ana"}, "wa_id": from})).collect::<Vec<_>>(),
        "messages": messages.iter().map(|(id, from, text)| json!(
            {"from": from, "id": id, "timestamp": now, "type": "text", "text": {"body": text}})).collect::<Vec<_>>()
    }})
}

fn body(entries: Vec<(&str, Vec<Value>)>) -> Vec<u8> {
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|(waba, changes)| json!({"id": waba, "changes": changes}))
        .collect();
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": entries})).unwrap()
}

async fn post_shared(engine: &TestEngine, body: &[u8], secret: Option<&str>) -> reqwest::Response {
    let mut request = engine
        .http
        .post(engine.at("/webhook/meta"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(secret) = secret {
        request = request.header("x-hub-signature-256", meta::sign(secret.as_bytes(), body));
    }
    request.send().await.unwrap()
}

/// Every job the tenant's worker gets now, completed as it goes.
async fn drain(engine: &TestEngine, tenant: &TestTenant) -> Vec<Value> {
    let mut jobs = Vec::new();
    while let Some(job) = engine.next_job(tenant, 0.0).await {
        assert_eq!(engine.complete(tenant, &job).await.status(), 200);
        jobs.push(job);
    }
    jobs
}

fn message_ids(jobs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = jobs
        .iter()
        .map(|j| j["payload"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn metric(engine: &TestEngine, line_start: &str) -> Option<f64> {
    let text = engine.metrics().await;
    text.lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_shared_meta_app_splits_a_mixed_body_between_tenants_in_one_commit() {
    let engine = start_engine_with(shared_app).await;
    let acme = tenant_with_senders(
        &engine,
        "acme",
        json!([meta_sender("106540352240001", "main")]),
    )
    .await;
    let globex = tenant_with_senders(
        &engine,
        "globex",
        json!([
            meta_sender("106540352240002", "sales"),
            meta_sender("106540352240003", "support")
        ]),
    )
    .await;

    // The verification handshake, with the platform's verify token only.
    let verify = |token: &str| {
        engine
            .http
            .get(engine.at(&format!(
                "/webhook/meta?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=8812"
            )))
            .send()
    };
    let ok = verify(VERIFY_TOKEN).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "8812");
    assert_eq!(verify("token-106540352240001").await.unwrap().status(), 403);

    let mixed = body(vec![
        (
            WABA,
            vec![
                change(
                    "106540352240001",
                    &[
                        ("wamid.acme1", "447700900001", "hola"),
                        ("wamid.acme2", "447700900002", "¿abrís?"),
                    ],
                ),
                change(
                    "106540352240002",
                    &[("wamid.globex1", "447700900003", "prices?")],
                ),
            ],
        ),
        (
            WABA,
            vec![
                change(
                    "106540352240003",
                    &[("wamid.globex2", "447700900001", "broken")],
                ),
                change(
                    "106540352249999",
                    &[("wamid.nobody", "447700900004", "who?")],
                ),
            ],
        ),
    ]);

    // Forged and unsigned bodies write nothing.
    let forged = post_shared(&engine, &mixed, Some("not-the-app-secret-0123456789")).await;
    assert_eq!(forged.status(), 403);
    assert_eq!(post_shared(&engine, &mixed, None).await.status(), 401);
    assert_eq!(engine.count_jobs().await, 0);

    let response = post_shared(&engine, &mixed, Some(APP_SECRET)).await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(
        (ack["queued"].as_u64(), ack["dropped"].as_u64()),
        (Some(4), Some(1)),
        "{ack}"
    );
    // Both tenants' jobs were written by one transaction.
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM jobs")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(transactions, 1);

    let acme_jobs = drain(&engine, &acme).await;
    assert_eq!(message_ids(&acme_jobs), ["wamid.acme1", "wamid.acme2"]);
    let globex_jobs = drain(&engine, &globex).await;
    assert_eq!(
        message_ids(&globex_jobs),
        ["wamid.globex1", "wamid.globex2"]
    );
    // Each job says which of the tenant's numbers it arrived on.
    let globex_senders = senders_of(&engine, "globex").await;
    for job in &globex_jobs {
        let sender = &job["payload"]["sender"];
        let expected = if job["payload"]["message_id"] == "wamid.globex1" {
            0
        } else {
            1
        };
        assert_eq!(sender["id"], globex_senders[expected]["id"], "{job}");
        assert_eq!(sender["label"], globex_senders[expected]["label"]);
        assert_eq!(sender["provider"], "meta");
    }
    assert_eq!(
        metric(
            &engine,
            "flomastr_webhook_unowned_total{provider=\"meta\",reason=\"unknown_number\"}"
        )
        .await,
        Some(1.0)
    );

    // A redelivery stores nothing twice; a change whose account is not the number's is dropped.
    let again: Value = post_shared(&engine, &mixed, Some(APP_SECRET))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["queued"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(4))
    );
    let wrong_account = body(vec![(
        "999999999",
        vec![change(
            "106540352240001",
            &[("wamid.spoof", "447700900001", "hi")],
        )],
    )]);
    let ack: Value = post_shared(&engine, &wrong_account, Some(APP_SECRET))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (ack["queued"].as_u64(), ack["dropped"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(
        metric(
            &engine,
            "flomastr_webhook_unowned_total{provider=\"meta\",reason=\"account_mismatch\"}"
        )
        .await,
        Some(1.0)
    );
    assert_eq!(engine.count_jobs().await, 4);

    // The per-tenant path of a tenant with its own app keeps working beside it.
    let own = engine.tenant("initech", "meta").await;
    let own_body = body(vec![(
        "WABA1",
        vec![change(&own.sender, &[("wamid.own1", "447700900001", "hi")])],
    )]);
    let response = engine
        .http
        .post(engine.at("/webhook/meta/initech"))
        .header(
            "x-hub-signature-256",
            meta::sign(own.app_secret.as_bytes(), &own_body),
        )
        .body(own_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(message_ids(&drain(&engine, &own).await), ["wamid.own1"]);
}

#[tokio::test]
async fn without_a_shared_app_the_shared_endpoint_refuses_and_stores_nothing() {
    let engine = start_engine_with(|_| {}).await;
    tenant_with_senders(
        &engine,
        "acme",
        json!([meta_sender("106540352240001", "main")]),
    )
    .await;
    let mixed = body(vec![(
        WABA,
        vec![change(
            "106540352240001",
            &[("wamid.a", "447700900001", "hola")],
        )],
    )]);
    let response = post_shared(&engine, &mixed, Some(APP_SECRET)).await;
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "webhook_auth_not_configured");
    let verify = engine
        .http
        .get(engine.at("/webhook/meta?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 403);
    assert_eq!(engine.count_jobs().await, 0);
}

#[tokio::test]
async fn a_sender_belongs_to_one_tenant_and_bad_sender_lists_are_refused() {
    let engine = start_engine_with(|_| {}).await;
    let infobip = |number: &str| json!({"provider": "infobip", "sender": number, "credentials": {"api_key": "k"}});
    tenant_with_senders(
        &engine,
        "acme",
        json!([
            infobip("441134960000"),
            meta_sender("106540352240001", "meta")
        ]),
    )
    .await;
    let ids: Vec<Value> = senders_of(&engine, "acme")
        .await
        .iter()
        .map(|s| s["id"].clone())
        .collect();

    // The same number, however written, claimed by another tenant: 409 naming it, nothing written.
    for claim in [
        json!({"display_name": "Globex", "senders": [infobip("+441134960000")]}),
        json!({"display_name": "Globex", "channel": {"provider": "meta", "sender": "106540352240001", "credentials": {}}}),
    ] {
        let response = engine.admin_put("globex", &claim).await;
        assert_eq!(response.status(), 409, "{claim}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "sender_in_use");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("441134960000") || message.contains("106540352240001"),
            "{message}"
        );
        assert!(
            !message.contains("acme"),
            "another tenant's name is not shown: {message}"
        );
    }
    let globex = engine.admin_get("globex").await;
    assert_eq!(
        globex.status(),
        404,
        "the refused registration wrote nothing"
    );

    // Registering again (reordered) keeps the senders and their ids.
    tenant_with_senders(
        &engine,
        "acme",
        json!([
            meta_sender("106540352240001", "meta"),
            infobip("441134960000")
        ]),
    )
    .await;
    let again: Vec<Value> = senders_of(&engine, "acme")
        .await
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(again, [ids[1].clone(), ids[0].clone()]);

    // Bad lists, each a 400 naming the field, nothing written.
    let refused = [
        (
            json!({"display_name": "A", "senders": [infobip("441134960000"), infobip("+441134960000")]}),
            "senders[1].sender",
        ),
        (
            json!({"display_name": "A", "senders": [infobip("441134960000")], "channel": infobip("441134960000")}),
            "senders",
        ),
        (
            json!({"display_name": "A", "senders": (0..21).map(|i| infobip(&format!("4411349600{i:02}"))).collect::<Vec<_>>()}),
            "senders",
        ),
        (
            json!({"display_name": "A", "senders": [{"provider": "infobip", "sender": "441134960000", "label": "a\u{7}b"}]}),
            "senders[0].label",
        ),
        (
            json!({"display_name": "A", "senders": [{"provider": "meta", "sender": "106540352240001", "display_number": "call me"}]}),
            "senders[0].display_number",
        ),
    ];
    for (body, field) in refused {
        let response = engine.admin_put("acme", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{field}: {error}"
        );
    }
    assert_eq!(senders_of(&engine, "acme").await.len(), 2);

    // A number acme gives up can be claimed by another tenant.
    tenant_with_senders(
        &engine,
        "acme",
        json!([meta_sender("106540352240001", "meta")]),
    )
    .await;
    tenant_with_senders(&engine, "globex", json!([infobip("441134960000")])).await;
}

/// Registers the sandbox accounts of the multi-number tenant and of a bystander.
fn sandbox_accounts(engine: &TestEngine, sandbox: &Sandbox, ib: &str, phone_id: &str) {
    let accounts = json!({
        "infobip": [{"api_key": "ib-key-multi", "sender": ib, "webhook_url": engine.at("/webhook/infobip/multi"),
                     "webhook_secret": "hook-multi-0123456789"},
                    {"api_key": "ib-key-other", "sender": "441134960099"}],
        "meta": [{"access_token": "meta-token-multi", "phone_number_id": phone_id, "app_secret": APP_SECRET,
                  "webhook_url": engine.at("/webhook/meta")}],
    });
    sandbox
        .state
        .set_accounts(Accounts::from_json(&accounts.to_string()).unwrap());
}

/// What the sandbox was asked to send to `to`, as (provider, from).
fn sent_to(sandbox: &Sandbox, to: &str) -> Vec<(String, String)> {
    sandbox
        .state
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| match r.provider {
            "infobip" if r.body["to"] == to => {
                Some(("infobip".into(), r.body["from"].as_str()?.to_owned()))
            }
            "meta" if r.body["to"] == to => {
                Some(("meta".into(), r.path.split('/').nth(2)?.to_owned()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_tenant_with_infobip_and_meta_numbers_receives_on_both_and_replies_from_the_right_one() {
    let sandbox = sandbox().await;
    let engine = start_engine_public(|args| {
        allow_sandbox(args, &sandbox.url);
        shared_app(args);
    })
    .await;
    let (ib, phone_id) = ("441134960001", "106540352240007");
    let multi = tenant_with_senders(&engine, "multi", json!([
        {"provider": "infobip", "sender": ib, "base_url": sandbox.url, "label": "sales",
         "credentials": {"api_key": "ib-key-multi", "webhook_secret": "hook-multi-0123456789"}},
        {"provider": "meta", "sender": phone_id, "base_url": sandbox.url, "label": "support",
         "display_number": "+1 555 078 3881", "credentials": {"access_token": "meta-token-multi"}},
    ])).await;
    let other = tenant_with_senders(&engine, "other", json!([
        {"provider": "infobip", "sender": "441134960099", "base_url": sandbox.url, "credentials": {"api_key": "ib-key-other"}},
    ])).await;
    sandbox_accounts(&engine, &sandbox, ib, phone_id);
    let senders = senders_of(&engine, "multi").await;

    // Ana writes to the InfoBip number, Bo to the Meta number (through the shared app).
    let infobip_inbound = json!({"results": [{"from": "447700900001", "to": ib, "integrationType": "WHATSAPP",
        "receivedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "messageId": "ib-in-1", "message": {"type": "TEXT", "text": "hola"}}]});
    let response = engine
        .http
        .post(engine.at("/webhook/infobip/multi"))
        .header("x-webhook-secret", "hook-multi-0123456789")
        .json(&infobip_inbound)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let meta_inbound = body(vec![(
        WABA,
        vec![change(phone_id, &[("wamid.bo1", "447700900002", "help")])],
    )]);
    assert_eq!(
        post_shared(&engine, &meta_inbound, Some(APP_SECRET))
            .await
            .status(),
        200
    );
    let jobs = drain(&engine, &multi).await;
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let (provider, index) = match job["payload"]["from"].as_str() {
            Some("447700900001") => ("infobip", 0),
            _ => ("meta", 1),
        };
        assert_eq!(job["payload"]["sender"]["provider"], provider, "{job}");
        assert_eq!(
            job["payload"]["sender"]["id"], senders[index]["id"],
            "{job}"
        );
    }
    assert_eq!(
        jobs.iter()
            .find(|j| j["payload"]["sender"]["provider"] == "meta")
            .unwrap()["payload"]["sender"]["display_number"],
        "+1 555 078 3881"
    );

    // Replies without a sender go out from the number each contact wrote to.
    for to in ["447700900001", "447700900002"] {
        let response = engine
            .send(&multi, None, json!({"to": to, "message": "on it"}))
            .await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    }
    within(
        Duration::from_secs(20),
        "both replies reach the sandbox",
        || async {
            (sent_to(&sandbox, "447700900001").len() == 1
                && sent_to(&sandbox, "447700900002").len() == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        sent_to(&sandbox, "447700900001"),
        [("infobip".to_owned(), ib.to_owned())]
    );
    assert_eq!(
        sent_to(&sandbox, "447700900002"),
        [("meta".to_owned(), phone_id.to_owned())]
    );

    // A sender named explicitly (by id or by number) is used.
    let by_id =
        json!({"to": "447700900001", "message": "from support", "sender": senders[1]["id"]});
    let accepted: Value = engine.send(&multi, None, by_id).await.json().await.unwrap();
    let view: Value = engine
        .message(&multi, accepted["message_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["sender"], senders[1]["id"], "{view}");
    let by_number =
        json!({"to": "447700900002", "message": "from sales", "sender": format!("+{ib}")});
    assert_eq!(engine.send(&multi, None, by_number).await.status(), 202);
    within(
        Duration::from_secs(20),
        "the named senders send",
        || async {
            (sent_to(&sandbox, "447700900001").len() == 2
                && sent_to(&sandbox, "447700900002").len() == 2)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        sent_to(&sandbox, "447700900001")[1],
        ("meta".to_owned(), phone_id.to_owned())
    );
    assert_eq!(
        sent_to(&sandbox, "447700900002")[1],
        ("infobip".to_owned(), ib.to_owned())
    );

    // Another tenant's sender, or one nobody has: 403, nothing queued.
    let queued = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbound_messages")
            .fetch_one(&engine.db.pool)
            .await
            .unwrap()
    };
    let before = queued().await;
    let other_id = senders_of(&engine, "other").await[0]["id"].clone();
    for sender in [other_id, json!("441134960099"), json!("not-a-sender")] {
        let response = engine
            .send(
                &multi,
                Some("k-foreign"),
                json!({"to": "447700900001", "message": "x", "sender": sender}),
            )
            .await;
        assert_eq!(response.status(), 403, "{sender}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "wrong_sender");
    }
    assert_eq!(queued().await, before);
    // The other tenant's own sends are untouched by all this.
    let response = engine
        .send(
            &other,
            None,
            json!({"to": "447700900009", "template": {"name": "hello", "language": "en_US"}}),
        )
        .await;
    assert_eq!(response.status(), 202);

    // Meta's reports about the reply come back through the shared app and move it forward.
    let reply: Value = sqlx::query_scalar::<_, String>(
        "SELECT id::text FROM outbound_messages WHERE recipient = '447700900002' ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&engine.db.pool)
    .await
    .map(Value::String)
    .unwrap();
    within(
        Duration::from_secs(20),
        "Meta's delivery report is applied",
        || async {
            let view: Value = engine
                .message(&multi, reply.as_str().unwrap())
                .await
                .json()
                .await
                .ok()?;
            matches!(view["status"].as_str(), Some("delivered" | "read")).then_some(())
        },
    )
    .await;
}
