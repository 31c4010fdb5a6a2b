//! Campaigns: bad input refused naming the field with nothing written, a run through the send
//! policy with counts by outcome, a template status webhook pausing a running campaign, and a
//! 5,000-contact campaign sending exactly one message per eligible contact while its engines
//! are killed with SIGKILL and two replicas share the work.

use crate::common::{eventually, free_port, fresh_db, within};
use crate::engine_harness::{ADMIN_TOKEN, TestEngine, TestTenant, args, sha256_hex};
use crate::policy_harness::{Sandbox, call, count, engine_and_sandbox, sandbox, tenants};
use flomastr::engine::providers::meta;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn catalog() -> Value {
    json!({"templates": [
        {"name": "weekly_offer", "language": "en_US", "category": "MARKETING", "status": "APPROVED",
         "body": "Hi {{1}}, this week: 20% off.", "variables": [{"description": "first name", "example": "Ana"}]},
        {"name": "draft_offer", "language": "en_US", "category": "MARKETING", "status": "PENDING",
         "body": "Soon.", "variables": []},
    ]})
}

async fn put_catalog(http: &reqwest::Client, base: &str, token: &str) {
    let response = http
        .put(format!("{base}/routes/context/templates"))
        .bearer_auth(token)
        .json(&catalog())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn campaign(audience: Value, per_minute: i32) -> Value {
    json!({"name": "weekly pulse", "audience": audience, "pacing": {"per_minute": per_minute},
           "content": {"template": {"name": "weekly_offer", "language": "en_US", "params": ["friend"]}}})
}

fn path(tenant: &TestTenant, rest: &str) -> String {
    format!("/routes/tenants/{}/pulse/campaigns{rest}", tenant.slug)
}

async fn contacts_wrote(pool: &sqlx::PgPool, slug: &str, contacts: &[String]) {
    sqlx::query(
        "INSERT INTO contact_windows (tenant_id, contact, last_inbound_at)
         SELECT t.id, c, now() - interval '1 day' FROM tenants t, UNNEST($2::text[]) AS c WHERE t.slug = $1",
    )
    .bind(slug)
    .bind(contacts)
    .execute(pool)
    .await
    .unwrap();
}

async fn wait_for_state(engine: &TestEngine, tenant: &TestTenant, id: &str, want: &str) -> Value {
    within(
        Duration::from_secs(60),
        &format!("the campaign {want}"),
        async || {
            let (_, view) = call(
                engine,
                Method::GET,
                &path(tenant, &format!("/{id}")),
                &tenant.worker_token,
                None,
            )
            .await;
            (view["state"] == want).then_some(view)
        },
    )
    .await
}

#[tokio::test]
async fn bad_campaign_input_is_refused_naming_the_field_and_nothing_is_written() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(0).1;
    put_catalog(&engine.http, &engine.url, &tenant.worker_token).await;
    let list = json!({"kind": "list", "contacts": ["447700900701"]});
    let mut unknown = campaign(list.clone(), 60);
    unknown["content"]["template"]["name"] = json!("no_such_template");
    let mut pending = campaign(list.clone(), 60);
    pending["content"]["template"]["name"] = json!("draft_offer");
    let mut past = campaign(list.clone(), 60);
    past["schedule"] = json!({"kind": "once", "at": "2020-01-01T00:00:00Z"});
    let mut zone = campaign(list.clone(), 60);
    zone["time_zone"] = json!("Atlantis/Capital");
    let mut weekday = campaign(list.clone(), 60);
    weekday["schedule"] = json!({"kind": "weekly", "weekday": "caturday", "time": "10:00"});
    let cases = [
        (unknown, 422, "unknown_template", "content.template.name"),
        (pending, 422, "template_not_approved", "template.name"),
        (
            campaign(json!({"kind": "list", "contacts": []}), 60),
            400,
            "invalid_body",
            "audience.contacts",
        ),
        (
            campaign(json!({"kind": "recent", "days": 30}), 60),
            422,
            "empty_audience",
            "audience",
        ),
        (past, 400, "invalid_body", "schedule.at"),
        (zone, 400, "invalid_body", "time_zone"),
        (weekday, 400, "invalid_body", "schedule.weekday"),
        (
            campaign(list.clone(), 0),
            400,
            "invalid_body",
            "pacing.per_minute",
        ),
        (
            json!({"name": "x"}),
            400,
            "invalid_body",
            "body: missing field `audience`",
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, answer) = call(
            &engine,
            Method::POST,
            &path(&tenant, ""),
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

    // Overlapping runs of one campaign: the second is refused while the first is active.
    let (status, draft) = call(
        &engine,
        Method::POST,
        &path(&tenant, ""),
        &tenant.worker_token,
        Some(campaign(
            json!({"kind": "list", "contacts": ["447700900701", "447700900702"]}),
            1,
        )),
    )
    .await;
    assert_eq!(
        (status, draft["state"].as_str()),
        (201, Some("draft")),
        "{draft}"
    );
    let id = draft["id"].as_str().unwrap();
    let (status, running) = call(
        &engine,
        Method::POST,
        &path(&tenant, &format!("/{id}/runs")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(
        (status, running["state"].as_str()),
        (200, Some("running")),
        "{running}"
    );
    let (status, again) = call(
        &engine,
        Method::POST,
        &path(&tenant, &format!("/{id}/runs")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("run_in_progress")),
        "{again}"
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM campaign_runs").await,
        1
    );
    let (status, _) = call(
        &engine,
        Method::POST,
        &path(&tenant, &format!("/{id}/cancel")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_campaign_runs_through_the_policy_and_counts_every_outcome() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(0).1;
    put_catalog(&engine.http, &engine.url, &tenant.worker_token).await;
    let contacts: Vec<String> = (1..=6).map(|i| format!("44770090080{i}")).collect();
    let (status, _) = call(
        &engine,
        Method::POST,
        &format!("/routes/tenants/{}/consent/import", tenant.slug),
        &tenant.worker_token,
        Some(json!({"contacts": [contacts[0]]})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &engine,
        Method::PUT,
        &format!("/routes/tenants/{}/policy", tenant.slug),
        &tenant.worker_token,
        Some(json!({"marketing_cap": {"max": 1, "period_seconds": 86400}})),
    )
    .await;
    assert_eq!(status, 200);
    // This contact already had this week's promotion.
    let promo = json!({"to": contacts[1], "category": "marketing", "template": {"name": "weekly_offer", "language": "en_US", "params": ["Ana"]}});
    assert_eq!(engine.send(&tenant, None, promo).await.status(), 202);

    let mut body = campaign(json!({"kind": "list", "contacts": contacts}), 600);
    let at = chrono::Utc::now() + chrono::Duration::seconds(1);
    body["schedule"] = json!({"kind": "once", "at": at});
    let (status, created) = call(
        &engine,
        Method::POST,
        &path(&tenant, ""),
        &tenant.worker_token,
        Some(body),
    )
    .await;
    assert_eq!(
        (status, created["state"].as_str()),
        (201, Some("scheduled")),
        "{created}"
    );
    let id = created["id"].as_str().unwrap();
    let done = wait_for_state(&engine, &tenant, id, "completed").await;
    let run = &done["runs"][0];
    assert_eq!(run["planned"], 6, "{done}");
    assert_eq!(
        run["counts"]["skipped"],
        json!({"opted_out": 1, "frequency_capped": 1}),
        "{done}"
    );
    let run_id = run["id"].as_str().unwrap();
    // Four campaign messages plus the earlier promotion reach the provider, one each.
    eventually("every campaign message sent", async || {
        (sandbox.state.requests().len() == 5).then_some(())
    })
    .await;
    let (_, view) = call(
        &engine,
        Method::GET,
        &path(&tenant, &format!("/{id}")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(view["runs"][0]["counts"]["pending"], 0);
    let sent = ["accepted", "sent", "delivered", "read"];
    let page = path(&tenant, &format!("/{id}/runs/{run_id}/recipients?limit=3"));
    let listed = eventually("the provider's answers recorded", async || {
        let (status, listed) = call(&engine, Method::GET, &page, &tenant.worker_token, None).await;
        assert_eq!(status, 200);
        sent.contains(&listed[2]["status"].as_str().unwrap_or_default())
            .then_some(listed)
    })
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["contact"], contacts[0].as_str());
    assert_eq!(
        (listed[0]["state"].as_str(), listed[0]["reason"].as_str()),
        (Some("skipped"), Some("opted_out"))
    );
    let after = listed[2]["contact"].as_str().unwrap();
    let (_, rest) = call(
        &engine,
        Method::GET,
        &path(
            &tenant,
            &format!("/{id}/runs/{run_id}/recipients?after={after}"),
        ),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(rest.as_array().unwrap().len(), 3);
    assert_eq!(sandbox.state.requests().len(), 5, "nothing more went out");
}

#[tokio::test]
async fn a_saved_segment_is_an_audience() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(0).1;
    put_catalog(&engine.http, &engine.url, &tenant.worker_token).await;
    let segment = format!("/routes/tenants/{}/pulse/segments/vip", tenant.slug);
    let (status, answer) = call(
        &engine,
        Method::PUT,
        &segment,
        &tenant.worker_token,
        Some(
            json!({"contacts": ["447700900901", "+447700900902", "whatsapp:+447700900901", "a b"]}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("contacts[3]")
    );
    let (status, saved) = call(
        &engine,
        Method::PUT,
        &segment,
        &tenant.worker_token,
        Some(json!({"contacts": ["447700900901", "+447700900902", "whatsapp:+447700900901"]})),
    )
    .await;
    assert_eq!(
        (status, saved["contacts"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{saved}"
    );
    let (status, created) = call(
        &engine,
        Method::POST,
        &path(&tenant, ""),
        &tenant.worker_token,
        Some(campaign(json!({"kind": "segment", "name": "vip"}), 600)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, _) = call(
        &engine,
        Method::POST,
        &path(&tenant, &format!("/{id}/runs")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let done = wait_for_state(&engine, &tenant, id, "completed").await;
    assert_eq!(done["runs"][0]["planned"], 2, "{done}");
}

#[tokio::test]
async fn a_paused_template_pauses_its_running_campaign() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenant = tenants(&engine, &sandbox, json!({})).await.remove(1).1;
    put_catalog(&engine.http, &engine.url, &tenant.worker_token).await;
    let contacts: Vec<String> = (0..100).map(|i| format!("4477009{i:05}")).collect();
    contacts_wrote(&engine.db.pool, &tenant.slug, &contacts).await;
    let (status, draft) = call(
        &engine,
        Method::POST,
        &path(&tenant, ""),
        &tenant.worker_token,
        Some(campaign(json!({"kind": "recent", "days": 30}), 600)),
    )
    .await;
    assert_eq!(status, 201, "{draft}");
    let id = draft["id"].as_str().unwrap();
    let (status, _) = call(
        &engine,
        Method::POST,
        &path(&tenant, &format!("/{id}/runs")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let webhook = |event: &str| {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
            "field": "message_template_status_update", "value": {"event": event, "message_template_id": 7,
            "message_template_name": "weekly_offer", "message_template_language": "en_US", "reason": "LOW_QUALITY"}}]}]});
        let bytes = serde_json::to_vec(&body).unwrap();
        engine
            .http
            .post(engine.at(&format!("/webhook/meta/{}", tenant.slug)))
            .header(
                "x-hub-signature-256",
                meta::sign(tenant.app_secret.as_bytes(), &bytes),
            )
            .body(bytes)
            .send()
    };
    assert_eq!(webhook("PAUSED").await.unwrap().status(), 200);
    let paused = wait_for_state(&engine, &tenant, id, "paused").await;
    assert_eq!(paused["paused_reason"], "template weekly_offer is PAUSED");
    assert_eq!(paused["runs"][0]["state"], "paused");
    let pending = paused["runs"][0]["counts"]["pending"].as_i64().unwrap();
    assert!(pending > 0, "paused before the run ended: {paused}");
    let (status, refused) = call(
        &engine,
        Method::POST,
        &path(&tenant, &format!("/{id}/resume")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("template_not_approved")),
        "{refused}"
    );

    assert_eq!(webhook("REINSTATED").await.unwrap().status(), 200);
    let (status, resumed) = call(
        &engine,
        Method::POST,
        &path(&tenant, &format!("/{id}/resume")),
        &tenant.worker_token,
        None,
    )
    .await;
    assert_eq!(
        (status, resumed["state"].as_str()),
        (200, Some("running")),
        "{resumed}"
    );
    let done = wait_for_state(&engine, &tenant, id, "completed").await;
    let counts = &done["runs"][0]["counts"];
    assert_eq!(
        (
            counts["pending"].as_i64(),
            done["runs"][0]["planned"].as_i64()
        ),
        (Some(0), Some(100)),
        "{done}"
    );
    let messages = count(
        &engine,
        "SELECT count(DISTINCT recipient) FROM outbound_messages",
    )
    .await;
    assert_eq!(messages, 100);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM outbound_messages").await,
        100,
        "one message per contact"
    );
}

/// An engine process, killed when dropped (also when the test fails half-way).
struct Replica(Child);

impl Replica {
    fn kill(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An engine replica as its own process (so it can be killed with SIGKILL).
fn engine_process(db_url: &str, master_key: &str, port: u16, sandbox: &Sandbox) -> Replica {
    let child = Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .arg("engine")
        .env("DATABASE_URL", db_url)
        .env("FLOMASTR_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOMASTR_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("FLOMASTR_MASTER_KEY", master_key)
        .env(
            "FLOMASTR_PROVIDER_BASE_URL_ALLOW",
            format!("infobip={}", sandbox.url),
        )
        .env("FLOMASTR_PROVIDER_PRIVATE_NETWORKS", "127.0.0.1/32")
        .env("FLOMASTR_SENDER_RATE", "2000")
        .env("FLOMASTR_SENDER_BURST", "2000")
        .env("FLOMASTR_DB_CONNECTIONS", "8")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the engine binary");
    Replica(child)
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    within(
        Duration::from_secs(30),
        &format!("the engine at {base}"),
        async || {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        },
    )
    .await;
}

async fn queued(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM campaign_recipients WHERE state <> 'pending'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn five_thousand_contacts_one_message_each_through_kill_9_and_two_replicas() {
    let db = fresh_db().await;
    let master_key = args(&db).master_key;
    let sandbox = sandbox().await;
    let http = reqwest::Client::new();
    let ports = [free_port(), free_port()];
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut a = engine_process(&db.url, &master_key, ports[0], &sandbox);
    wait_up(&http, &bases[0]).await;
    let mut b = engine_process(&db.url, &master_key, ports[1], &sandbox);
    wait_up(&http, &bases[1]).await;

    let token = "worker-pulse";
    let registered = http
        .put(format!("{}/admin/tenants/pulse", bases[0]))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"display_name": "Pulse", "worker_token_sha256": [sha256_hex(token)],
            "channel": {"provider": "infobip", "sender": "441134960000", "base_url": sandbox.url,
                        "credentials": {"api_key": "ib-key", "webhook_secret": "hook"}}}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        registered.status().is_success(),
        "{}",
        registered.text().await.unwrap()
    );
    let accounts = json!({"infobip": [{"api_key": "ib-key", "sender": "441134960000"}]});
    sandbox
        .state
        .set_accounts(flomastr::sandbox::Accounts::from_json(&accounts.to_string()).unwrap());
    put_catalog(&http, &bases[0], token).await;
    let contacts: Vec<String> = (0..5000).map(|i| format!("4477{i:08}")).collect();
    contacts_wrote(&db.pool, "pulse", &contacts).await;
    let opted_out: Vec<&String> = contacts.iter().step_by(50).collect();
    let imported = http
        .post(format!("{}/routes/tenants/pulse/consent/import", bases[1]))
        .bearer_auth(token)
        .json(&json!({"contacts": opted_out}))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);

    let created: Value = http
        .post(format!("{}/routes/tenants/pulse/pulse/campaigns", bases[0]))
        .bearer_auth(token)
        .json(&campaign(json!({"kind": "recent", "days": 7}), 12_000))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("created").to_owned();
    let started = http
        .post(format!(
            "{}/routes/tenants/pulse/pulse/campaigns/{id}/runs",
            bases[1]
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);

    // Kill replica A twice mid-run, each time once more of the run has been through the policy.
    for at_least in [800, 2500] {
        eventually("progress", async || {
            (queued(&db.pool).await >= at_least).then_some(())
        })
        .await;
        a.kill();
        a = engine_process(&db.url, &master_key, ports[0], &sandbox);
        wait_up(&http, &bases[0]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let view: Value = http
            .get(format!(
                "{}/routes/tenants/pulse/pulse/campaigns/{id}",
                bases[1]
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbound_messages WHERE status IN ('accepted', 'sent', 'delivered', 'read')")
            .fetch_one(&db.pool).await.unwrap();
        if view["state"] == "completed" && sent == 4900 {
            assert_eq!(
                view["runs"][0]["counts"]["skipped"],
                json!({"opted_out": 100}),
                "{view}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not done: {view}, {sent} sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.kill();
    b.kill();

    let per_contact: Vec<(String, i64)> =
        sqlx::query_as("SELECT recipient, count(*) FROM outbound_messages GROUP BY recipient")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(per_contact.len(), 4900);
    assert!(
        per_contact.iter().all(|(_, n)| *n == 1),
        "one message per contact per run"
    );
    let opted: HashSet<&str> = opted_out.iter().map(|c| c.as_str()).collect();
    assert!(per_contact.iter().all(|(c, _)| !opted.contains(c.as_str())));
    // The provider saw one message id per contact (a resend after a crash reuses our id).
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for request in sandbox.state.requests().iter().filter(|r| r.status == 200) {
        let to = request.body["messages"][0]["to"]
            .as_str()
            .or(request.body["to"].as_str())
            .unwrap_or_default()
            .to_owned();
        ids.entry(to)
            .or_default()
            .insert(request.message_id.clone().unwrap_or_default());
    }
    assert_eq!(ids.len(), 4900);
    assert!(
        ids.values().all(|set| set.len() == 1),
        "a contact got two different messages"
    );
}
