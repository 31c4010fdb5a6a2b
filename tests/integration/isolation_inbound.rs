//! Issue 11 on the inbound path, against the real database: no request can fail another's
//! commit, U+0000 is accepted (and removed) wherever text comes in, forms are bounded before they
//! are decoded, InfoBip HMAC signatures and Twilio's validator rules (ports, repeated keys).

use crate::ai_stub::{Mode, Stub};
use crate::engine_harness::{ADMIN_TOKEN, TestEngine, TestTenant, start_engine, start_engine_with};
use base64::Engine as _;
use chrono::Utc;
use flomastr::engine::ingest::{Ingestor, NewJob, NewReport, Submission};
use flomastr::engine::providers::{DeliveryStatus, Provider, StatusReport, meta, twilio};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Twilio form fields accepted at most (documented in the README).
const MAX_FORM_FIELDS: usize = 256;

/// A dead local port: sends go nowhere, quickly, and never leave the machine.
const NO_PROVIDER: &str = "http://127.0.0.1:9";

async fn tenant_id(engine: &TestEngine, slug: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

async fn job_payload(engine: &TestEngine, dedup_key: &str) -> Value {
    sqlx::query_scalar("SELECT payload FROM jobs WHERE dedup_key = $1")
        .bind(dedup_key)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap_or_else(|e| panic!("job {dedup_key}: {e}"))
}

async fn metrics(engine: &TestEngine) -> String {
    engine.metrics().await
}

fn test_job(tenant_id: Uuid, key: &str, max_attempts: i32) -> NewJob {
    NewJob {
        tenant_id,
        payload: json!({"message": key}),
        conversation_key: "447700900001".to_owned(),
        dedup_key: format!("test:{key}"),
        provider_timestamp: Utc::now(),
        max_attempts,
        consent: None,
        sender_id: None,
        has_media: false,
    }
}

fn jobs(jobs: Vec<NewJob>) -> Submission {
    Submission {
        jobs,
        reports: Vec::new(),
    }
}

/// Transactions that committed these jobs (rows written by one transaction share its xmin).
async fn transactions(engine: &TestEngine, keys: &[&str]) -> i64 {
    let keys: Vec<String> = keys.iter().map(|k| format!("test:{k}")).collect();
    sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM jobs WHERE dedup_key = ANY($1)")
        .bind(&keys)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_the_database_refuses_fails_only_the_refused_request() {
    let engine = start_engine().await;
    engine.tenant("alpha", "infobip").await;
    engine.tenant("bravo", "infobip").await;
    let (alpha, bravo) = (
        tenant_id(&engine, "alpha").await,
        tenant_id(&engine, "bravo").await,
    );
    let committed = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let hook = committed.clone();
    let ingestor = Ingestor::start(
        engine.db.pool.clone(),
        Arc::new(move |tenants: &[Uuid]| hook.lock().unwrap().extend_from_slice(tenants)),
    );
    // Submissions handed over in one poll reach the writer together and share one transaction
    // (this test runs on one thread): checked first, so the case below is a real shared batch.
    let together = [alpha, bravo, bravo]
        .into_iter()
        .enumerate()
        .map(|(i, tenant)| jobs(vec![test_job(tenant, &format!("warm{i}"), 5)]));
    for result in futures::future::join_all(together.map(|s| ingestor.submit(s))).await {
        result.expect("committed");
    }
    assert_eq!(transactions(&engine, &["warm0", "warm1", "warm2"]).await, 1);

    // `jobs.max_attempts` has CHECK (max_attempts >= 1): the database refuses this one whatever
    // any sanitising does. The report and the job with U+0000 are what providers really send.
    let poison = jobs(vec![test_job(bravo, "poison", 0)]);
    let mut with_nul = test_job(alpha, "a\u{0}2", 5);
    with_nul.payload = json!({"te\u{0}xt": "he\u{0}llo", "list": ["\u{0}"]});
    with_nul.conversation_key = "4477\u{0}00900001".to_owned();
    let report = NewReport {
        tenant_id: bravo,
        report: StatusReport {
            provider: Provider::Infobip,
            provider_message_id: "out-\u{0}1".to_owned(),
            status: DeliveryStatus::Delivered,
            provider_status: "DELIVERED\u{0}".to_owned(),
            occurred_at: Utc::now(),
            recipient: Some("4477\u{0}".to_owned()),
            to: None,
            account_id: None,
            error_code: None,
            error_message: Some("no\u{0}ne".to_owned()),
            permanent: false,
            raw: json!({"k\u{0}": "v\u{0}"}),
        },
    };
    let batch = vec![
        jobs(vec![test_job(alpha, "a1", 5)]),
        poison,
        jobs(vec![test_job(bravo, "b1", 5), with_nul]),
        Submission {
            jobs: vec![test_job(bravo, "b2", 5)],
            reports: vec![report],
        },
    ];
    committed.lock().unwrap().clear();
    let results = futures::future::join_all(batch.into_iter().map(|s| ingestor.submit(s))).await;
    let statuses: Vec<Option<u16>> = results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.status.as_u16()))
        .collect();
    assert_eq!(
        statuses,
        [None, Some(500), None, None],
        "only the refused request fails"
    );
    for key in ["test:a1", "test:b1", "test:b2", "test:a2"] {
        job_payload(&engine, key).await;
    }
    let poisoned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE dedup_key = 'test:poison'")
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(poisoned, 0);
    assert_eq!(
        job_payload(&engine, "test:a2").await,
        json!({"text": "hello", "list": [""]})
    );
    let (status, raw): (String, Value) = sqlx::query_as(
        "SELECT provider_status, raw FROM status_reports WHERE provider_message_id = 'out-1'",
    )
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), raw), ("DELIVERED", json!({"k": "v"})));
    let mut told = committed.lock().unwrap().clone();
    told.sort_unstable();
    told.dedup();
    let mut expected = vec![alpha, bravo];
    expected.sort_unstable();
    assert_eq!(
        told, expected,
        "workers are woken for every committed tenant"
    );
}

fn infobip_inbound(sender: &str, id: &str, text: &str, name: &str) -> Value {
    json!({"from": "447700900001", "to": sender, "integrationType": "WHATSAPP",
        "receivedAt": "2026-11-25T10:00:00.000+0000", "messageId": id,
        "message": {"type": "TEXT", "text": text}, "contact": {"name": name}})
}

async fn post_infobip(engine: &TestEngine, tenant: &TestTenant, body: &Value) -> reqwest::Response {
    engine
        .http
        .post(engine.at(&format!("/webhook/infobip/{}", tenant.slug)))
        .header("x-webhook-secret", &tenant.webhook_secret)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post_twilio(
    engine: &TestEngine,
    tenant: &TestTenant,
    body: String,
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = engine
        .http
        .post(engine.at(&format!("/webhook/twilio/{}", tenant.slug)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("x-twilio-signature", signature);
    }
    request.send().await.unwrap()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn twilio_inbound(tenant: &TestTenant, sid: &str, body: &str) -> Vec<(String, String)> {
    pairs(&[
        ("MessageSid", sid),
        ("AccountSid", &tenant.account_sid),
        ("From", "whatsapp:+447700900001"),
        ("To", "whatsapp:+14155238886"),
        ("Body", body),
    ])
}

#[tokio::test]
async fn nul_in_every_webhook_format_is_removed_and_other_tenants_are_unaffected() {
    let engine = start_engine_with(|args| args.public_url = Some("https://e.example".into())).await;
    let infobip = engine.tenant("ib", "infobip").await;
    let bystander = engine.tenant("calm", "infobip").await;
    let meta_tenant = engine.tenant("mt", "meta").await;
    let twilio_tenant = engine.tenant("tw", "twilio").await;

    let mut inbound = infobip_inbound(&infobip.sender, "ib-\u{0}1", "Ho\u{0}la", "A\u{0}na");
    inbound["pri\u{0}ce"] = json!({"currency": "E\u{0}UR"});
    let delivery = json!({"messageId": "out-\u{0}1", "to": "447700900001",
        "sentAt": "2026-11-25T09:59:00.000+0000", "doneAt": "2026-11-25T10:00:03.000+0000",
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_\u{0}HANDSET"},
        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No\u{0} Error", "permanent": false}});
    let poisoned = json!({"results": [inbound, delivery]});

    let meta_body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": meta_tenant.sender},
        "contacts": [{"profile": {"name": "B\u{0}o"}, "wa_id": "447700900002"}],
        "messages": [{"from": "447700900002", "id": "wamid.\u{0}M1", "timestamp": "1764064800", "type": "text", "text": {"body": "hi\u{0}!"}, "ex\u{0}tra": 1}]}}]}]})).unwrap();
    assert!(
        String::from_utf8_lossy(&meta_body).contains("\\u0000"),
        "the NUL travels as JSON escapes, as providers send it"
    );

    let mut form = twilio_inbound(&twilio_tenant, "SM\u{0}T1", "Ho\u{0}la");
    form.push(("ProfileName".into(), "C\u{0}y".into()));
    form.push(("X\u{0}Key".into(), "1".into()));
    let form_body = serde_urlencoded::to_string(&form).unwrap();
    assert!(form_body.contains("%00"));
    let signature = twilio::expected_signature(
        &twilio_tenant.auth_token,
        "https://e.example/webhook/twilio/tw",
        &form,
    );

    let seed = engine.http.post(engine.at("/webhook/inbound"))
        .header("x-webhook-secret", &infobip.webhook_secret)
        .json(&json!({"from": "4477009\u{0}00003", "message": "se\u{0}ed", "tenant_id": "ib", "timestamp": "2026-11-25T10:00:00Z", "message_id": "s\u{0}1"}))
        .send();
    let (engine_ref, bystander_ref) = (&engine, &bystander);
    let good = |i: usize| {
        let body = json!({"results": [infobip_inbound(&bystander_ref.sender, &format!("calm-{i}"), "fine", "Dee")]});
        async move {
            post_infobip(engine_ref, bystander_ref, &body)
                .await
                .status()
                .as_u16()
        }
    };
    let meta_post = engine
        .http
        .post(engine.at("/webhook/meta/mt"))
        .header(
            "x-hub-signature-256",
            meta::sign(meta_tenant.app_secret.as_bytes(), &meta_body),
        )
        .body(meta_body.clone())
        .send();
    let (ib, mt, tw, sd, calm) = tokio::join!(
        post_infobip(&engine, &infobip, &poisoned),
        meta_post,
        post_twilio(&engine, &twilio_tenant, form_body, Some(&signature)),
        seed,
        futures::future::join_all((0..8).map(good)),
    );
    for (what, response) in [
        ("infobip", ib),
        ("meta", mt.unwrap()),
        ("twilio", tw),
        ("seed", sd.unwrap()),
    ] {
        let status = response.status();
        assert_eq!(status, 200, "{what}: {}", response.text().await.unwrap());
    }
    assert_eq!(calm, vec![200; 8]);

    let ib = job_payload(&engine, "infobip:ib-1").await;
    assert_eq!(
        (&ib["message"], &ib["contact"]["name"], &ib["message_id"]),
        (&json!("Hola"), &json!("Ana"), &json!("ib-1"))
    );
    assert_eq!(ib["raw"]["price"], json!({"currency": "EUR"}));
    let status: String = sqlx::query_scalar(
        "SELECT provider_status FROM status_reports WHERE provider_message_id = 'out-1'",
    )
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "DELIVERED_TO_HANDSET");
    let mt = job_payload(&engine, "meta:wamid.M1").await;
    assert_eq!(
        (
            &mt["message"],
            &mt["contact"]["name"],
            &mt["raw"]["message"]["extra"]
        ),
        (&json!("hi!"), &json!("Bo"), &json!(1))
    );
    let tw = job_payload(&engine, "twilio:SMT1").await;
    assert_eq!(
        (&tw["message"], &tw["contact"]["name"], &tw["raw"]["XKey"]),
        (&json!("Hola"), &json!("Cy"), &json!("1"))
    );
    let sd = job_payload(&engine, "seed:s1").await;
    assert_eq!(
        (&sd["message"], &sd["from"]),
        (&json!("seed"), &json!("447700900003"))
    );
    assert_eq!(engine.count_jobs().await, 4 + 8);
}

#[tokio::test]
async fn sends_with_nul_are_accepted_without_it() {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with("snd", "infobip", json!({"channel_base_url": NO_PROVIDER}))
        .await;
    let opened = engine
        .seed(&tenant, "447700900001", "hi", &Utc::now().to_rfc3339())
        .await;
    assert_eq!(opened.status(), 200);
    let text = engine
        .send(
            &tenant,
            Some("k1"),
            json!({"to": "447700900001", "message": "Hel\u{0}lo"}),
        )
        .await;
    assert_eq!(text.status(), 202, "{}", text.text().await.unwrap());
    let template = engine
        .send(
            &tenant,
            None,
            json!({"to": "447700900009",
            "template": {"name": "wel\u{0}come", "language": "en", "params": ["A\u{0}na"]}}),
        )
        .await;
    assert_eq!(template.status(), 202, "{}", template.text().await.unwrap());
    let contents: Vec<Value> =
        sqlx::query_scalar("SELECT content FROM outbound_messages ORDER BY created_at")
            .fetch_all(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(
        contents,
        [
            json!({"text": "Hello"}),
            json!({"template": {"name": "welcome", "language": "en", "params": ["Ana"]}})
        ]
    );
}

#[tokio::test]
async fn knowledge_and_every_ai_field_accept_nul() {
    let stub = Stub::start(Mode::Reply {
        text: "We open at nine\u{0} [S1]".to_owned(),
        usage: true,
    })
    .await;
    let url = stub.url.clone();
    let engine = start_engine_with(move |args| {
        args.openai_base_url = Some(url);
        args.chat_model = Some("stub-model".to_owned());
    })
    .await;
    let tenant = engine
        .tenant_with(
            "ai",
            "infobip",
            json!({"ai": {"data_views": ["inbound_messages"]}, "channel_base_url": NO_PROVIDER}),
        )
        .await;
    let call = |path: &str, body: Value| {
        engine
            .http
            .post(engine.at(path))
            .bearer_auth(&tenant.worker_token)
            .json(&body)
            .send()
    };
    let document = call(
        "/routes/knowledge/documents",
        json!({"title": "Hou\u{0}rs", "text": "We open at nine\u{0} in the morning.", "format": "text"}),
    )
    .await
    .unwrap();
    assert_eq!(document.status(), 201, "{}", document.text().await.unwrap());
    let title: String = sqlx::query_scalar("SELECT title FROM kb_documents")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(title, "Hours");

    let synthesis = call(
        "/routes/tools/synthesis",
        json!({"question": "When do you o\u{0}pen?", "contact": "4477\u{0}00900001"}),
    )
    .await
    .unwrap();
    assert_eq!(
        synthesis.status(),
        200,
        "{}",
        synthesis.text().await.unwrap()
    );
    let (contact, asked, answered): (String, String, String) =
        sqlx::query_as("SELECT contact, user_text, assistant_text FROM ai_memory")
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (contact.as_str(), asked.as_str(), answered.as_str()),
        ("447700900001", "When do you open?", "We open at nine [S1]")
    );

    let catalog = json!({"templates": [{"name": "hel\u{0}lo", "language": "en", "category": "utility",
        "status": "approved", "body": "Hello {{1}}\u{0}!", "variables": [{"description": "na\u{0}me", "example": "A\u{0}na"}]}]});
    let templates = engine
        .http
        .put(engine.at("/routes/context/templates"))
        .bearer_auth(&tenant.worker_token)
        .json(&catalog)
        .send()
        .await
        .unwrap();
    assert_eq!(
        templates.status(),
        200,
        "{}",
        templates.text().await.unwrap()
    );
    let (name, body): (String, String) = sqlx::query_as("SELECT name, body FROM message_templates")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!((name.as_str(), body.as_str()), ("hello", "Hello {{1}}!"));

    let pulse = call(
        "/routes/context/pulse-content",
        json!({"contacts": ["4477\u{0}00900001"], "brief": "Spring\u{0} sale"}),
    )
    .await
    .unwrap();
    assert_eq!(pulse.status(), 200, "{}", pulse.text().await.unwrap());

    stub.set(Mode::Reply {
        text: "SELECT count(*) AS n FROM inbound_messages".to_owned(),
        usage: true,
    });
    let nl = call(
        "/routes/data/nl-query",
        json!({"question": "How many\u{0} messages?"}),
    )
    .await
    .unwrap();
    assert_eq!(nl.status(), 200, "{}", nl.text().await.unwrap());
    let audited: Vec<Value> =
        sqlx::query_scalar("SELECT detail->'question' FROM ai_audit WHERE detail ? 'question'")
            .fetch_all(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(audited, [json!("How many messages?")]);

    // A contact in a path is matched as it was stored: without U+0000.
    let purged = engine
        .http
        .delete(engine.at("/routes/memory/4477%0000900001"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    let purged: Value = purged.json().await.unwrap();
    assert_eq!(purged["exchanges_deleted"], 1);
}

fn inbound_form(tenant: &TestTenant, padding: usize) -> Vec<(String, String)> {
    let mut form = twilio_inbound(tenant, "SM1", "hello");
    form.extend((0..padding).map(|i| (format!("Pad{i}"), String::new())));
    form
}

#[tokio::test]
async fn twilio_forms_are_bounded_and_checked_before_they_are_decoded() {
    let engine = start_engine_with(|args| {
        args.public_url = Some("https://e.example".into());
        args.body_limit = 1024 * 1024;
    })
    .await;
    let tenant = engine.tenant("tw", "twilio").await;
    let url = "https://e.example/webhook/twilio/tw";
    let huge = "a=&".repeat(150_000);
    let well_formed = base64::engine::general_purpose::STANDARD.encode([7u8; 20]);
    assert_eq!(
        post_twilio(&engine, &tenant, huge.clone(), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        post_twilio(&engine, &tenant, huge.clone(), Some("not-base64!"))
            .await
            .status(),
        403
    );
    let refused = post_twilio(&engine, &tenant, huge, Some(&well_formed)).await;
    assert_eq!(refused.status(), 413);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "too_many_fields");

    // The limit is on fields, not on what real webhooks need: 256 pass, 257 do not.
    let at_limit = inbound_form(&tenant, MAX_FORM_FIELDS - 5);
    let signature = twilio::expected_signature(&tenant.auth_token, url, &at_limit);
    let body = serde_urlencoded::to_string(&at_limit).unwrap();
    assert_eq!(
        post_twilio(&engine, &tenant, body, Some(&signature))
            .await
            .status(),
        200
    );
    let over = inbound_form(&tenant, MAX_FORM_FIELDS - 4);
    let signature = twilio::expected_signature(&tenant.auth_token, url, &over);
    let body = serde_urlencoded::to_string(&over).unwrap();
    assert_eq!(
        post_twilio(&engine, &tenant, body, Some(&signature))
            .await
            .status(),
        413
    );
    assert_eq!(engine.count_jobs().await, 1);
    assert!(
        metrics(&engine)
            .await
            .contains(r#"provider="twilio",reason="too_many_fields"} 2"#)
    );
}

#[tokio::test]
async fn seed_webhook_wants_the_secret_before_it_reads_the_body() {
    let engine = start_engine().await;
    engine.tenant("acme", "infobip").await;
    let response = engine
        .http
        .post(engine.at("/webhook/inbound"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let with_secret = engine
        .http
        .post(engine.at("/webhook/inbound"))
        .header("x-webhook-secret", "whatever")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(with_secret.status(), 400);
}

#[tokio::test]
async fn twilio_signatures_validate_as_the_official_validators_do() {
    let engine = start_engine_with(|args| args.public_url = Some("https://e.example".into())).await;
    let tenant = engine.tenant("tw", "twilio").await;
    // Twilio signed the URL with the default port; the engine knows it without (and back).
    let first = twilio_inbound(&tenant, "SM1", "hello");
    let signature = twilio::expected_signature(
        &tenant.auth_token,
        "https://e.example:443/webhook/twilio/tw",
        &first,
    );
    let body = serde_urlencoded::to_string(&first).unwrap();
    assert_eq!(
        post_twilio(&engine, &tenant, body, Some(&signature))
            .await
            .status(),
        200
    );
    // A repeated key with a repeated value: the SDKs sign each distinct value once.
    let mut repeated = twilio_inbound(&tenant, "SM2", "hello");
    for url in ["https://m/b", "https://m/a", "https://m/b"] {
        repeated.push(("MediaUrl".into(), url.into()));
    }
    let distinct: Vec<(String, String)> = repeated[..repeated.len() - 1].to_vec();
    let signature = twilio::expected_signature(
        &tenant.auth_token,
        "https://e.example/webhook/twilio/tw",
        &distinct,
    );
    let body = serde_urlencoded::to_string(&repeated).unwrap();
    assert_eq!(
        post_twilio(&engine, &tenant, body, Some(&signature))
            .await
            .status(),
        200
    );
    // Another port is another URL.
    let third = twilio_inbound(&tenant, "SM3", "hello");
    let signature = twilio::expected_signature(
        &tenant.auth_token,
        "https://e.example:8443/webhook/twilio/tw",
        &third,
    );
    let body = serde_urlencoded::to_string(&third).unwrap();
    assert_eq!(
        post_twilio(&engine, &tenant, body, Some(&signature))
            .await
            .status(),
        403
    );
    assert_eq!(engine.count_jobs().await, 2);
}

/// `openssl dgst -<algorithm> -hmac <key>` over `body`: the lowercase hex digest.
fn openssl_hmac(algorithm: &str, key: &str, body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", &format!("-{algorithm}"), "-hmac", key, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

async fn register_hmac(engine: &TestEngine, slug: &str, credentials: Value) -> TestTenant {
    let tenant = engine.tenant(slug, "infobip").await;
    let mut body = tenant.registration.clone();
    for (key, value) in credentials.as_object().unwrap() {
        body["channel"]["credentials"][key] = value.clone();
    }
    let response = engine.admin_put(slug, &body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    tenant
}

async fn post_signed(
    engine: &TestEngine,
    tenant: &TestTenant,
    body: &[u8],
    headers: &[(&str, &str)],
) -> u16 {
    let mut request = engine
        .http
        .post(engine.at(&format!("/webhook/infobip/{}", tenant.slug)))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn infobip_hmac_signatures_are_required_once_configured() {
    let engine = start_engine().await;
    let tenant = register_hmac(&engine, "hm", json!({"webhook_hmac_secret": "hmac-key-1"})).await;
    let body = serde_json::to_vec(
        &json!({"results": [infobip_inbound(&tenant.sender, "h1", "hi", "Ana")]}),
    )
    .unwrap();
    let hex = openssl_hmac("sha1", "hmac-key-1", &body);
    let secret = tenant.webhook_secret.as_str();
    // The shared secret alone no longer does; a wrong or tampered signature never does.
    assert_eq!(
        post_signed(&engine, &tenant, &body, &[("x-webhook-secret", secret)]).await,
        401
    );
    let wrong = openssl_hmac("sha1", "another-key", &body);
    assert_eq!(
        post_signed(
            &engine,
            &tenant,
            &body,
            &[
                ("x-webhook-secret", secret),
                ("x-hub-signature", &format!("sha1={wrong}"))
            ]
        )
        .await,
        403
    );
    let mut tampered = body.clone();
    tampered[body.len() - 3] = b' ';
    assert_eq!(
        post_signed(
            &engine,
            &tenant,
            &tampered,
            &[("x-hub-signature", &format!("sha1={hex}"))]
        )
        .await,
        403
    );
    assert_eq!(
        post_signed(
            &engine,
            &tenant,
            &body,
            &[("x-hub-signature", &format!("sha256={hex}"))]
        )
        .await,
        403
    );
    assert_eq!(engine.count_jobs().await, 0);
    assert_eq!(
        post_signed(
            &engine,
            &tenant,
            &body,
            &[("X-Hub-Signature", &format!("SHA1={}", hex.to_uppercase()))]
        )
        .await,
        200
    );
    assert_eq!(engine.count_jobs().await, 1);
    let text = metrics(&engine).await;
    for reason in ["unsigned", "bad_signature"] {
        assert!(
            text.contains(&format!(r#"provider="infobip",reason="{reason}"}}"#)),
            "{reason}: {text}"
        );
    }

    // Another algorithm and header; the admin API shows which settings are set, never the key.
    let other = register_hmac(&engine, "hm2", json!({"webhook_hmac_secret": "hmac-key-2",
        "webhook_signature_header": "X-Infobip-Signature", "webhook_signature_algorithm": "sha512"})).await;
    let body =
        serde_json::to_vec(&json!({"results": [infobip_inbound(&other.sender, "h2", "hi", "Bo")]}))
            .unwrap();
    let hex = openssl_hmac("sha512", "hmac-key-2", &body);
    assert_eq!(
        post_signed(
            &engine,
            &other,
            &body,
            &[("x-hub-signature", &format!("sha512={hex}"))]
        )
        .await,
        401
    );
    assert_eq!(
        post_signed(
            &engine,
            &other,
            &body,
            &[("x-infobip-signature", &format!("sha512={hex}"))]
        )
        .await,
        200
    );
    let shown = engine
        .http
        .get(engine.at("/admin/tenants/hm2"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "webhook_hmac_secret",
        "webhook_signature_header",
        "webhook_signature_algorithm",
    ] {
        assert!(shown.contains(name), "{name}: {shown}");
    }
    assert!(!shown.contains("hmac-key-2"));

    // Settings that could never verify anything are refused at registration.
    for (credentials, field) in [
        (
            json!({"webhook_signature_algorithm": "md5"}),
            "webhook_signature_algorithm",
        ),
        (
            json!({"webhook_signature_header": "bad header"}),
            "webhook_signature_header",
        ),
        (json!({"webhook_hmac_secret": ""}), "webhook_hmac_secret"),
    ] {
        let mut body = other.registration.clone();
        for (key, value) in credentials.as_object().unwrap() {
            body["channel"]["credentials"][key] = value.clone();
        }
        let response = engine.admin_put("hm2", &body).await;
        assert_eq!(response.status(), 400, "{credentials}");
        assert!(response.text().await.unwrap().contains(field), "{field}");
    }
}

#[tokio::test]
async fn ids_too_long_to_index_and_names_that_are_no_slug_are_refused_cleanly() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    // Random, so PostgreSQL cannot compress it under its index entry limit (about 2.7 kB).
    let long_id: String = (0..300)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let body = json!({"results": [infobip_inbound(&tenant.sender, &long_id, "hi", "Ana")]});
    let response = post_infobip(&engine, &tenant, &body).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_body", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("message_id")
    );
    assert_eq!(engine.count_jobs().await, 0);
    let release = engine
        .http
        .post(engine.at("/admin/tenants/acme/conversations/4477%0000/release"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"action": "skip"}))
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), 404, "not blocked, and no database error");
    for slug in ["%00", "ac%00me", "UPPER", "-x"] {
        let response = engine
            .http
            .post(engine.at(&format!("/webhook/infobip/{slug}")))
            .header("x-webhook-secret", &tenant.webhook_secret)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{slug}");
    }
}
