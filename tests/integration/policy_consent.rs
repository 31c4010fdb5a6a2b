//! Consent: STOP and START through each provider's real inbound webhook, sends to opted-out
//! contacts refused with nothing written, provider opt-out errors, the consent API and imports.

use crate::engine_harness::{ADMIN_TOKEN, TestEngine, TestTenant, start_engine};
use crate::policy_harness::{
    call, count, engine_and_sandbox, inbound, tenants, wait_for_sent, wait_for_status,
};
use reqwest::Method;
use serde_json::{Value, json};

async fn consent(engine: &TestEngine, tenant: &TestTenant, contact: &str) -> Value {
    let path = format!("/routes/tenants/{}/consent/{contact}", tenant.slug);
    let (status, body) = call(engine, Method::GET, &path, &tenant.worker_token, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn send(engine: &TestEngine, tenant: &TestTenant, body: Value) -> (u16, Value) {
    let response = engine.send(tenant, None, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The next job of the tenant, completed.
async fn take_job(engine: &TestEngine, tenant: &TestTenant) -> Value {
    let job = engine.next_job(tenant, 5.0).await.expect("a job");
    assert_eq!(engine.complete(tenant, &job).await.status(), 200);
    job
}

#[tokio::test]
async fn stop_and_start_through_each_providers_webhook_gate_sends() {
    let (engine, sandbox) = engine_and_sandbox().await;
    for (provider, tenant) in tenants(&engine, &sandbox, json!({})).await {
        let contact = "447700900123";
        // A sentence with the word in it is talking to the business, not opting out.
        assert_eq!(
            inbound(&engine, provider, &tenant, contact, "stop please").await,
            200
        );
        let job = take_job(&engine, &tenant).await;
        assert!(job["payload"].get("consent").is_none(), "{provider}: {job}");

        assert_eq!(
            inbound(&engine, provider, &tenant, contact, "  Stop \n").await,
            200
        );
        let job = take_job(&engine, &tenant).await;
        assert_eq!(
            job["payload"]["consent"]["state"], "opted_out",
            "{provider}: {job}"
        );
        let view = consent(&engine, &tenant, contact).await;
        assert_eq!(view["state"], "opted_out", "{provider}: {view}");
        assert_eq!(view["history"][0]["source"], "keyword");
        assert_eq!(view["history"][0]["detail"]["keyword"], "stop");
        assert_eq!(view["history"][0]["detail"]["provider"], provider);

        let before = count(&engine, "SELECT count(*) FROM outbound_messages").await;
        let (status, body) =
            send(&engine, &tenant, json!({"to": contact, "message": "promo"})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("opted_out")),
            "{provider}"
        );
        assert_eq!(
            count(&engine, "SELECT count(*) FROM outbound_messages").await,
            before,
            "refused: nothing queued"
        );

        // The confirmation of the opt-out still goes out (and is sent for real).
        let (status, body) = send(&engine, &tenant,
            json!({"to": contact, "message": "You will get no more messages. Reply START to come back.", "opt_out_confirmation": true})).await;
        assert_eq!(status, 202, "{provider}: {body}");
        wait_for_sent(&engine, &tenant, body["message_id"].as_str().unwrap()).await;

        // START opts back in; the history holds both changes.
        assert_eq!(
            inbound(&engine, provider, &tenant, contact, "START").await,
            200
        );
        let job = take_job(&engine, &tenant).await;
        assert_eq!(job["payload"]["consent"]["state"], "opted_in");
        let view = consent(&engine, &tenant, contact).await;
        assert_eq!(view["state"], "opted_in");
        assert_eq!(view["history"].as_array().unwrap().len(), 2, "{view}");
        let (status, body) = send(
            &engine,
            &tenant,
            json!({"to": contact, "message": "welcome back"}),
        )
        .await;
        assert_eq!(status, 202, "{provider}: {body}");
        // A confirmation to a contact who has not opted out is refused.
        let (status, body) = send(
            &engine,
            &tenant,
            json!({"to": contact, "message": "bye", "opt_out_confirmation": true}),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("not_opted_out"))
        );
    }
}

#[tokio::test]
async fn a_redelivered_stop_is_recorded_once_and_tenant_keywords_count() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    let path = "/routes/tenants/acme/policy";
    let (status, body) = call(
        &engine,
        Method::PUT,
        path,
        &tenant.worker_token,
        Some(json!({"opt_out_keywords": ["BAJA", "стоп"], "opt_in_keywords": ["ALTA"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body = json!({"results": [{"from": "447700900001", "to": tenant.sender, "integrationType": "WHATSAPP",
        "receivedAt": "2026-11-25T10:00:00.000+0000", "messageId": "ib-stop-1", "message": {"type": "TEXT", "text": "СТОП"}}]});
    for _ in 0..2 {
        let response = engine
            .http
            .post(engine.at("/webhook/infobip/acme"))
            .header("x-webhook-secret", &tenant.webhook_secret)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(count(&engine, "SELECT count(*) FROM jobs").await, 1);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM consent_events").await,
        1,
        "a redelivery records nothing"
    );
    assert_eq!(
        consent(&engine, &tenant, "+447700900001").await["state"],
        "opted_out"
    );
    let now = chrono::Utc::now().to_rfc3339();
    assert_eq!(
        engine
            .seed(&tenant, "447700900001", " alta ", &now)
            .await
            .status(),
        200
    );
    assert_eq!(
        consent(&engine, &tenant, "447700900001").await["state"],
        "opted_in"
    );
    assert_eq!(
        engine
            .seed(&tenant, "447700900002", "Baja", &now)
            .await
            .status(),
        200
    );
    assert_eq!(
        consent(&engine, &tenant, "447700900002").await["state"],
        "opted_out"
    );
}

#[tokio::test]
async fn provider_opt_out_errors_opt_the_contact_out() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let extra = json!({"twilio": {"unsubscribed": ["whatsapp:+447700900201"]},
                       "meta": {"stopped_marketing": ["447700900202"]}});
    let all = tenants(&engine, &sandbox, extra).await;
    let twilio = &all[2].1;
    let (status, sent) = send(&engine, twilio,
        json!({"to": "447700900201", "template": {"name": "HXb5b62575e6e4ff6129ad7c8efe1f983e", "language": "en", "params": ["Ana"]}})).await;
    assert_eq!(status, 202, "{sent}");
    let view = wait_for_status(
        &engine,
        twilio,
        sent["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "21610");
    let view = consent(&engine, twilio, "447700900201").await;
    assert_eq!(
        (
            view["state"].as_str(),
            view["history"][0]["source"].as_str()
        ),
        (Some("opted_out"), Some("provider"))
    );
    assert_eq!(view["history"][0]["detail"]["code"], "21610");

    // Meta reports 131050 in the failed status webhook, after accepting the send.
    let meta = &all[1].1;
    let (status, sent) = send(&engine, meta,
        json!({"to": "447700900202", "template": {"name": "weekly_offer", "language": "en", "params": []}})).await;
    assert_eq!(status, 202, "{sent}");
    let view = wait_for_status(
        &engine,
        meta,
        sent["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "131050");
    let view = consent(&engine, meta, "447700900202").await;
    assert_eq!(view["state"], "opted_out", "{view}");
    assert_eq!(view["history"][0]["detail"]["code"], "131050");
    let (status, _) = send(&engine, meta,
        json!({"to": "447700900202", "template": {"name": "weekly_offer", "language": "en", "params": []}})).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn consent_api_sets_reads_imports_and_writes_nothing_on_bad_input() {
    let engine = start_engine().await;
    let acme = engine.tenant("acme", "infobip").await;
    let other = engine.tenant("other", "infobip").await;
    let put = |token: &str, contact: &str, body: Value| {
        let path = format!("/routes/tenants/acme/consent/{contact}");
        let token = token.to_owned();
        let engine = &engine;
        async move { call(engine, Method::PUT, &path, &token, Some(body)).await }
    };
    let (status, view) = put(
        ADMIN_TOKEN,
        "447700900001",
        json!({"state": "opted_out", "reason": "asked by phone"}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["history"][0]["detail"],
        json!({"actor": "admin", "reason": "asked by phone"})
    );
    let (status, view) = put(
        &acme.worker_token,
        "447700900001",
        json!({"state": "opted_in"}),
    )
    .await;
    assert_eq!((status, view["state"].as_str()), (200, Some("opted_in")));
    assert_eq!(view["history"][0]["detail"]["actor"], "worker");
    assert_eq!(view["history"].as_array().unwrap().len(), 2);
    let (status, view) = call(
        &engine,
        Method::GET,
        "/routes/tenants/acme/consent/447700900009",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!((status, view["state"].as_str()), (200, Some("unknown")));

    let (status, body) = call(&engine, Method::POST, "/routes/tenants/acme/consent/import", &acme.worker_token,
        Some(json!({"contacts": ["+447700900010", "whatsapp:+447700900011", "447700900012"], "reason": "old CRM"}))).await;
    assert_eq!(
        (status, body["imported"].as_i64()),
        (200, Some(3)),
        "{body}"
    );
    let (status, _) = send(
        &engine,
        &acme,
        json!({"to": "447700900011", "template": {"name": "t", "language": "en"}}),
    )
    .await;
    assert_eq!(status, 409);

    let events = count(&engine, "SELECT count(*) FROM consent_events").await;
    let refusals = [
        (
            put(
                &acme.worker_token,
                "447700900001",
                json!({"state": "maybe"}),
            )
            .await,
            400,
            "state",
        ),
        (
            put(
                &acme.worker_token,
                "447700900001",
                json!({"state": "opted_out", "colour": 1}),
            )
            .await,
            400,
            "colour",
        ),
        (
            put(
                &acme.worker_token,
                "447700900001",
                json!({"state": "opted_out", "reason": "x".repeat(201)}),
            )
            .await,
            400,
            "reason",
        ),
        (
            put(&acme.worker_token, "a%20b", json!({"state": "opted_out"})).await,
            400,
            "contact",
        ),
        (
            put(
                &other.worker_token,
                "447700900001",
                json!({"state": "opted_out"}),
            )
            .await,
            403,
            "another tenant",
        ),
        (
            put("not-a-token", "447700900001", json!({"state": "opted_out"})).await,
            401,
            "token",
        ),
        (
            call(
                &engine,
                Method::POST,
                "/routes/tenants/acme/consent/import",
                ADMIN_TOKEN,
                Some(json!({"contacts": ["447700900020", "has space"]})),
            )
            .await,
            400,
            "contacts[1]",
        ),
        (
            call(
                &engine,
                Method::POST,
                "/routes/tenants/acme/consent/import",
                ADMIN_TOKEN,
                Some(json!({"contacts": []})),
            )
            .await,
            400,
            "contacts",
        ),
        (
            call(
                &engine,
                Method::PUT,
                "/routes/tenants/acme/policy",
                ADMIN_TOKEN,
                Some(json!({"opt_out_keywords": ["ok", "  "]})),
            )
            .await,
            400,
            "opt_out_keywords[1]",
        ),
        (
            call(
                &engine,
                Method::PUT,
                "/routes/tenants/nobody/policy",
                ADMIN_TOKEN,
                Some(json!({})),
            )
            .await,
            404,
            "unknown tenant",
        ),
    ];
    for ((status, body), want, field) in refusals {
        assert_eq!(status, want, "{field}: {body}");
        if want == 400 {
            assert!(
                body["error"]["message"].as_str().unwrap().contains(field),
                "{field}: {body}"
            );
        }
    }
    assert_eq!(
        count(&engine, "SELECT count(*) FROM consent_events").await,
        events,
        "nothing written"
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM send_policies").await,
        0
    );
}
