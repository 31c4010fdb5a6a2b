//! Categories and quiet hours: utility and marketing held in the tenant's (or the contact's)
//! quiet hours and released when they end, expired past the maximum hold, service replies never
//! held; a contact who opts out while a message waits does not get it.

use crate::engine_harness::{TestEngine, TestTenant};
use crate::policy_harness::{
    call, count, engine_and_sandbox, inbound, tenants, wait_for_sent, wait_for_status,
};
use reqwest::Method;
use serde_json::{Value, json};

/// The database's wall-clock time in `zone`, shifted by `seconds`, as HH:MM:SS.
async fn local_time(engine: &TestEngine, zone: &str, seconds: i32) -> String {
    sqlx::query_scalar(
        "SELECT to_char((now() + make_interval(secs => $2)) AT TIME ZONE $1, 'HH24:MI:SS')",
    )
    .bind(zone)
    .bind(f64::from(seconds))
    .fetch_one(&engine.db.pool)
    .await
    .unwrap()
}

async fn set_policy(engine: &TestEngine, tenant: &TestTenant, policy: Value) {
    let path = format!("/routes/tenants/{}/policy", tenant.slug);
    let (status, body) = call(
        engine,
        Method::PUT,
        &path,
        &tenant.worker_token,
        Some(policy),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn send(engine: &TestEngine, tenant: &TestTenant, body: Value) -> (u16, Value) {
    let response = engine.send(tenant, None, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn template(category: &str) -> Value {
    json!({"to": "447700900301", "category": category,
           "template": {"name": "weekly_offer", "language": "en", "params": ["Ana"]}})
}

fn history(view: &Value) -> Vec<&str> {
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn utility_and_marketing_wait_for_quiet_hours_to_end_service_does_not() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(0).1;
    let zone = "America/Mexico_City";
    // Quiet from an hour ago until 6 s from now, local time in the tenant's zone.
    let quiet = json!({"start": local_time(&engine, zone, -3600).await, "end": local_time(&engine, zone, 6).await});
    set_policy(
        &engine,
        &tenant,
        json!({"time_zone": zone, "quiet_hours": quiet, "max_hold_seconds": 3600}),
    )
    .await;
    assert_eq!(
        inbound(&engine, "infobip", &tenant, "447700900301", "hola").await,
        200
    );

    let (status, reply) = send(
        &engine,
        &tenant,
        json!({"to": "447700900301", "message": "¡Hola!"}),
    )
    .await;
    assert_eq!(
        (status, reply["category"].as_str()),
        (202, Some("service")),
        "{reply}"
    );
    assert!(
        reply.get("held_until").is_none(),
        "service replies are never held: {reply}"
    );

    let (status, promo) = send(&engine, &tenant, template("marketing")).await;
    assert_eq!(status, 202, "{promo}");
    let held_until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(promo["held_until"].clone()).unwrap();
    let (_, update) = send(&engine, &tenant, template("utility")).await;
    assert_eq!(update["held_until"], promo["held_until"], "{update}");

    wait_for_sent(&engine, &tenant, reply["message_id"].as_str().unwrap()).await;
    for held in [&promo, &update] {
        let view = wait_for_sent(&engine, &tenant, held["message_id"].as_str().unwrap()).await;
        assert_eq!(&history(&view)[..2], ["queued", "held"], "{view}");
    }
    // Nothing went out before the quiet hours ended.
    let requests = sandbox.state.requests();
    assert_eq!(requests.len(), 3);
    for request in requests
        .iter()
        .filter(|r| r.body.to_string().contains("weekly_offer"))
    {
        let at: chrono::DateTime<chrono::Utc> = request.received_at.parse().unwrap();
        assert!(at >= held_until, "sent at {at}, quiet until {held_until}");
    }
}

#[tokio::test]
async fn held_sends_expire_the_contacts_zone_wins_and_an_opt_out_meanwhile_stops_them() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(0).1;
    // Quiet for the next hour in UTC; held sends may wait 2 s.
    let quiet = json!({"start": local_time(&engine, "UTC", -60).await, "end": local_time(&engine, "UTC", 3600).await});
    set_policy(
        &engine,
        &tenant,
        json!({"quiet_hours": quiet, "max_hold_seconds": 2}),
    )
    .await;
    let (status, held) = send(&engine, &tenant, template("utility")).await;
    assert_eq!(status, 202, "{held}");
    assert!(held["expires_at"].is_string(), "{held}");
    let view = wait_for_status(
        &engine,
        &tenant,
        held["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "hold_expired", "{view}");

    // A contact in Tokyo is 9 hours away from the quiet window: sent at once.
    let path = format!("/routes/tenants/{}/contacts/447700900302", tenant.slug);
    let (status, _) = call(
        &engine,
        Method::PUT,
        &path,
        &tenant.worker_token,
        Some(json!({"time_zone": "Asia/Tokyo"})),
    )
    .await;
    assert_eq!(status, 200);
    let mut tokyo = template("marketing");
    tokyo["to"] = json!("447700900302");
    let (status, sent) = send(&engine, &tenant, tokyo).await;
    assert!(status == 202 && sent.get("held_until").is_none(), "{sent}");
    wait_for_sent(&engine, &tenant, sent["message_id"].as_str().unwrap()).await;

    // Held for 5 s; the contact writes STOP meanwhile: the message never goes out.
    let quiet = json!({"start": local_time(&engine, "UTC", -60).await, "end": local_time(&engine, "UTC", 5).await});
    set_policy(
        &engine,
        &tenant,
        json!({"quiet_hours": quiet, "max_hold_seconds": 600}),
    )
    .await;
    let (_, waiting) = send(&engine, &tenant, template("marketing")).await;
    assert!(waiting["held_until"].is_string(), "{waiting}");
    assert_eq!(
        inbound(&engine, "infobip", &tenant, "447700900301", "STOP").await,
        200
    );
    let view = wait_for_status(
        &engine,
        &tenant,
        waiting["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "opted_out", "{view}");
    assert_eq!(
        sandbox.state.requests().len(),
        1,
        "only the Tokyo message was sent"
    );
}

#[tokio::test]
async fn bad_policy_and_category_input_is_refused_naming_the_field() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(0).1;
    let path = format!("/routes/tenants/{}/policy", tenant.slug);
    let cases = [
        (json!({"time_zone": "Mars/Olympus"}), "time_zone"),
        (
            json!({"time_zone": "UTC", "quiet_hours": {"start": "25:00", "end": "08:00"}}),
            "quiet_hours.start",
        ),
        (
            json!({"quiet_hours": {"start": "21:00", "end": "21:00"}}),
            "quiet_hours.end",
        ),
        (json!({"quiet_hours": {"start": "21:00"}}), "quiet_hours"),
        (json!({"max_hold_seconds": 0}), "max_hold_seconds"),
        (json!({"marketing_cap": {"max": 0}}), "marketing_cap.max"),
        (
            json!({"marketing_cap": {"max": 2, "period_seconds": -5}}),
            "marketing_cap.period_seconds",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = call(
            &engine,
            Method::PUT,
            &path,
            &tenant.worker_token,
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{field}: {answer}"
        );
    }
    let contact = format!("/routes/tenants/{}/contacts/447700900301", tenant.slug);
    let (status, answer) = call(
        &engine,
        Method::PUT,
        &contact,
        &tenant.worker_token,
        Some(json!({"time_zone": "Europe/Nowhere"})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        count(&engine, "SELECT count(*) FROM send_policies").await,
        0
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM contact_time_zones").await,
        0
    );

    let (status, answer) = send(
        &engine,
        &tenant,
        json!({"to": "447700900301", "message": "x", "category": "promo"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("category"),
        "{answer}"
    );
    // Service is a reply in the window: outside it, refused.
    let (status, answer) = send(&engine, &tenant, template("service")).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("window_closed")),
        "{answer}"
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM outbound_messages").await,
        0
    );
}
