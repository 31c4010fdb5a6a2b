//! Inbound media and typed content (issue 14 part 3) against the real database and the sandbox:
//! each provider's media is fetched after the commit with the tenant's credentials, stored, and
//! served to that tenant's worker only; a failed, oversized or off-host fetch keeps the message
//! with the media's status; locations, contacts and replies arrive typed for all providers.

use crate::common::{eventually, within};
use crate::engine_harness::{TestEngine, TestTenant, allow_sandbox, start_engine_public};
use crate::policy_harness::{Sandbox, sandbox};
use flomastr::engine::config::EngineArgs;
use flomastr::engine::providers::{meta, twilio};
use flomastr::sandbox::Accounts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

const CUSTOMER: &str = "447700900001";

/// An engine allowed to reach the sandbox, adjusted further by `adjust`.
async fn engine_with(sandbox: &Sandbox, adjust: impl FnOnce(&mut EngineArgs)) -> TestEngine {
    let origin = sandbox.url.clone();
    start_engine_public(move |args| {
        allow_sandbox(args, &origin);
        adjust(args);
    })
    .await
}

/// A tenant of `provider` on the sandbox; `extra` is merged into its registration.
async fn tenant(
    engine: &TestEngine,
    sandbox: &Sandbox,
    slug: &str,
    provider: &str,
    extra: Value,
) -> TestTenant {
    let mut extra = extra;
    extra["channel_base_url"] = json!(sandbox.url);
    engine.tenant_with(slug, provider, extra).await
}

/// The sandbox accounts of `tenants`, with the credentials they registered (InfoBip keys may be
/// overridden to prove a refusal).
fn accounts(tenants: &[(&TestTenant, &str)], infobip_key: &str) -> Accounts {
    let mut infobip = Vec::new();
    let mut meta = Vec::new();
    let mut twilio = Vec::new();
    for (tenant, provider) in tenants {
        match *provider {
            "infobip" => infobip.push(json!({"api_key": infobip_key, "sender": tenant.sender})),
            "meta" => meta.push(json!({"access_token": "meta-access-token-secret",
                "phone_number_id": tenant.sender, "app_secret": tenant.app_secret})),
            _ => twilio.push(
                json!({"account_sid": tenant.account_sid, "auth_token": tenant.auth_token,
                "sender": tenant.sender}),
            ),
        }
    }
    let all = json!({"infobip": infobip, "meta": meta, "twilio": twilio});
    Accounts::from_json(&all.to_string()).unwrap()
}

/// Puts a file in the sandbox for `account`; returns its provider URL (InfoBip, Twilio).
async fn put_media(
    sandbox: &Sandbox,
    id: &str,
    provider: &str,
    account: &str,
    content_type: &str,
    bytes: &[u8],
    fail: Option<u16>,
) -> Option<String> {
    let mut url = format!(
        "{}/_sandbox/media/{id}?provider={provider}&account={}",
        sandbox.url,
        urlencode(account)
    );
    if let Some(status) = fail {
        url.push_str(&format!("&fail={status}"));
    }
    let answer: Value = reqwest::Client::new()
        .put(url)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["url"].as_str().map(str::to_owned)
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)]).unwrap()[2..].to_owned()
}

async fn post_meta(engine: &TestEngine, tenant: &TestTenant, message: Value) -> reqwest::Response {
    let mut message = message;
    message["from"] = json!(CUSTOMER);
    message["timestamp"] = json!(chrono::Utc::now().timestamp().to_string());
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
          "metadata": {"display_phone_number": "15550783881", "phone_number_id": tenant.sender},
          "contacts": [{"profile": {"name": "Ana"}, "wa_id": CUSTOMER}],
          "messages": [message]}}]}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    engine
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
        .unwrap()
}

async fn post_infobip(
    engine: &TestEngine,
    tenant: &TestTenant,
    id: &str,
    message: Value,
) -> reqwest::Response {
    let body = json!({"results": [{"from": CUSTOMER, "to": tenant.sender, "integrationType": "WHATSAPP",
        "receivedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "messageId": id, "message": message, "contact": {"name": "Ana"}}],
        "messageCount": 1, "pendingMessageCount": 0});
    engine
        .http
        .post(engine.at(&format!("/webhook/infobip/{}", tenant.slug)))
        .header("x-webhook-secret", &tenant.webhook_secret)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post_twilio(
    engine: &TestEngine,
    tenant: &TestTenant,
    sid: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("AccountSid", tenant.account_sid.as_str()),
        ("From", &format!("whatsapp:+{CUSTOMER}")),
        ("To", tenant.sender.as_str()),
        ("WaId", CUSTOMER),
        ("ProfileName", "Ana"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let url = engine.at(&format!("/webhook/twilio/{}", tenant.slug));
    let signature = twilio::expected_signature(&tenant.auth_token, &url, &params);
    engine
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(serde_urlencoded::to_string(&params).unwrap())
        .send()
        .await
        .unwrap()
}

/// The next job's payload (completing the job).
async fn next_payload(engine: &TestEngine, tenant: &TestTenant) -> Value {
    let job = engine.next_job(tenant, 5.0).await.expect("a job");
    assert_eq!(engine.complete(tenant, &job).await.status(), 200);
    job["payload"].clone()
}

async fn get_media(engine: &TestEngine, tenant: &TestTenant, path: &str) -> reqwest::Response {
    engine
        .http
        .get(engine.at(path))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap()
}

/// Waits for the media's fetch to end; returns the final answer to the worker.
async fn settled(engine: &TestEngine, tenant: &TestTenant, path: &str) -> reqwest::Response {
    within(
        Duration::from_secs(30),
        "the media fetch to end",
        async || {
            let response = get_media(engine, tenant, path).await;
            (response.status() != 409).then_some(response)
        },
    )
    .await
}

/// The media row's status and error in the database, and the job payload's view of it.
async fn media_state(engine: &TestEngine, id: &str) -> (String, Option<String>, Value) {
    let (status, error, job): (String, Option<String>, Value) = sqlx::query_as(
        "SELECT m.status, m.error, j.payload->'media'->m.position
         FROM media m JOIN jobs j ON j.id = m.job_id WHERE m.id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    (status, error, job)
}

async fn assert_served(
    engine: &TestEngine,
    tenant: &TestTenant,
    entry: &Value,
    bytes: &[u8],
    content_type: &str,
) {
    let path = entry["path"].as_str().expect("a media path");
    let response = settled(engine, tenant, path).await;
    assert_eq!(
        response.status(),
        200,
        "{path}: {:?}",
        response.text().await
    );
    let headers = response.headers().clone();
    let sha = hex::encode(Sha256::digest(bytes));
    assert_eq!(headers["content-type"], content_type);
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
    assert_eq!(headers["x-content-sha256"], sha.as_str());
    assert!(headers["digest"].to_str().unwrap().starts_with("sha-256="));
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes);
    let (status, error, view) = media_state(engine, entry["id"].as_str().unwrap()).await;
    assert_eq!((status.as_str(), error), ("stored", None));
    assert_eq!(view["status"], "stored");
    assert_eq!(view["sha256"], sha.as_str());
    assert_eq!(view["size"], bytes.len());
}

#[tokio::test]
async fn media_of_every_provider_is_fetched_with_the_tenants_credentials_and_served_to_its_worker_only()
 {
    let sandbox = sandbox().await;
    let engine = engine_with(&sandbox, |_| {}).await;
    let meta_co = tenant(&engine, &sandbox, "meta-co", "meta", json!({})).await;
    let infobip_co = tenant(&engine, &sandbox, "infobip-co", "infobip", json!({})).await;
    let twilio_co = tenant(&engine, &sandbox, "twilio-co", "twilio", json!({})).await;
    sandbox.state.set_accounts(accounts(
        &[
            (&meta_co, "meta"),
            (&infobip_co, "infobip"),
            (&twilio_co, "twilio"),
        ],
        "ib-api-key-secret",
    ));
    let jpeg = b"\xff\xd8\xff\xe0 a small jpeg".repeat(50);
    let pdf = b"%PDF-1.7 invoice".to_vec();
    let ogg = b"OggS voice note".to_vec();

    // Meta: media ids resolved with the tenant's token, then downloaded with it.
    for (id, kind, mime, bytes) in [
        ("1479537139650973", "image", "image/jpeg", &jpeg),
        ("2479537139650974", "document", "application/pdf", &pdf),
        ("3479537139650975", "audio", "audio/ogg", &ogg),
        ("4479537139650976", "sticker", "image/webp", &jpeg),
        ("5479537139650977", "video", "video/mp4", &pdf),
    ] {
        put_media(&sandbox, id, "meta", &meta_co.sender, mime, bytes, None).await;
        let mut object = json!({"id": id, "mime_type": mime, "sha256": "provider-hash"});
        if kind == "document" {
            object["filename"] = json!("invoice.pdf");
        }
        if kind == "audio" {
            object["voice"] = json!(true);
        }
        let message = json!({"id": format!("wamid.{id}"), "type": kind, kind: object});
        assert_eq!(
            post_meta(&engine, &meta_co, message.clone()).await.status(),
            200
        );
        // A redelivery makes no second job and no second download.
        assert_eq!(post_meta(&engine, &meta_co, message).await.status(), 200);
        let payload = next_payload(&engine, &meta_co).await;
        let entry = &payload["media"][0];
        assert_eq!(payload["type"], kind);
        assert_eq!(entry["provider_media_id"], id);
        assert_eq!(entry["kind"], if kind == "audio" { "voice" } else { kind });
        assert_served(&engine, &meta_co, entry, bytes, mime).await;
        assert_eq!(sandbox.state.media_downloads(id), 1, "{kind}");
        // Another tenant's worker: 404, as for an unknown id.
        let stranger = get_media(&engine, &infobip_co, entry["path"].as_str().unwrap()).await;
        assert_eq!(stranger.status(), 404);
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 5, "one media row per message, none for redeliveries");

    // InfoBip: the URL with `App <key>`.
    for (id, kind, mime, bytes) in [
        ("ib-img-1", "IMAGE", "image/jpeg", &jpeg),
        ("ib-doc-1", "DOCUMENT", "application/pdf", &pdf),
        ("ib-voice-1", "VOICE", "audio/ogg", &ogg),
    ] {
        let url = put_media(
            &sandbox,
            id,
            "infobip",
            &infobip_co.sender,
            mime,
            bytes,
            None,
        )
        .await
        .unwrap();
        let message = json!({"type": kind, "url": url, "caption": "see"});
        assert_eq!(
            post_infobip(&engine, &infobip_co, &format!("msg-{id}"), message)
                .await
                .status(),
            200
        );
        let payload = next_payload(&engine, &infobip_co).await;
        assert_eq!(payload["media"][0]["provider_url"], url.as_str());
        assert_served(&engine, &infobip_co, &payload["media"][0], bytes, mime).await;
        let stranger = get_media(
            &engine,
            &meta_co,
            payload["media"][0]["path"].as_str().unwrap(),
        )
        .await;
        assert_eq!(stranger.status(), 404);
    }

    // Twilio: Basic auth, a redirect to the CDN; two attachments on one message.
    let first = put_media(
        &sandbox,
        "ME0001",
        "twilio",
        &twilio_co.account_sid,
        "image/jpeg",
        &jpeg,
        None,
    )
    .await
    .unwrap();
    let second = put_media(
        &sandbox,
        "ME0002",
        "twilio",
        &twilio_co.account_sid,
        "application/pdf",
        &pdf,
        None,
    )
    .await
    .unwrap();
    let response = post_twilio(
        &engine,
        &twilio_co,
        "MM00000000000000000000000000000001",
        &[
            ("NumMedia", "2"),
            ("Body", "two files"),
            ("MediaUrl0", &first),
            ("MediaContentType0", "image/jpeg"),
            ("MediaUrl1", &second),
            ("MediaContentType1", "application/pdf"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let payload = next_payload(&engine, &twilio_co).await;
    assert_eq!(payload["type"], "image");
    assert_eq!(payload["media"][0]["caption"], "two files");
    assert_served(
        &engine,
        &twilio_co,
        &payload["media"][0],
        &jpeg,
        "image/jpeg",
    )
    .await;
    assert_served(
        &engine,
        &twilio_co,
        &payload["media"][1],
        &pdf,
        "application/pdf",
    )
    .await;
    assert_eq!(
        get_media(
            &engine,
            &meta_co,
            payload["media"][1]["path"].as_str().unwrap()
        )
        .await
        .status(),
        404
    );

    // Unknown ids and non-ids: 404; no token: 401.
    let unknown = format!("/media/{}", uuid::Uuid::new_v4());
    assert_eq!(get_media(&engine, &meta_co, &unknown).await.status(), 404);
    assert_eq!(
        get_media(&engine, &meta_co, "/media/not-an-id")
            .await
            .status(),
        404
    );
    let anonymous = engine.http.get(engine.at(&unknown)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_message_with_the_media_status() {
    let sandbox = sandbox().await;
    let engine = engine_with(&sandbox, |args| {
        args.media.media_fetch_attempts = 2;
        args.media.media_retry_seconds = 2;
    })
    .await;
    let meta_co = tenant(&engine, &sandbox, "meta-co", "meta", json!({})).await;
    let infobip_co = tenant(&engine, &sandbox, "infobip-co", "infobip", json!({})).await;
    // The sandbox knows another InfoBip key than the tenant's: its downloads are refused.
    sandbox.state.set_accounts(accounts(
        &[(&meta_co, "meta"), (&infobip_co, "infobip")],
        "another-key",
    ));

    // The provider fails: retried once after the backoff (pending meanwhile), then failed.
    put_media(
        &sandbox,
        "6479537139650978",
        "meta",
        &meta_co.sender,
        "image/jpeg",
        b"x",
        Some(500),
    )
    .await;
    let message = json!({"id": "wamid.FAIL", "type": "image",
                         "image": {"id": "6479537139650978", "mime_type": "image/jpeg", "caption": "broken"}});
    assert_eq!(post_meta(&engine, &meta_co, message).await.status(), 200);
    let payload = next_payload(&engine, &meta_co).await;
    assert_eq!(
        payload["message"], "broken",
        "the message is delivered whatever its media"
    );
    let path = payload["media"][0]["path"].as_str().unwrap().to_owned();
    let retrying = within(
        Duration::from_secs(10),
        "a retry to be scheduled",
        async || {
            let response = get_media(&engine, &meta_co, &path).await;
            let body: Value = response.json().await.ok()?;
            body["error"]["details"]["error"]
                .is_string()
                .then_some(body)
        },
    )
    .await;
    assert_eq!(retrying["error"]["code"], "media_pending");
    let pending = get_media(&engine, &meta_co, &path).await;
    assert_eq!(pending.status(), 409);
    assert!(pending.headers().contains_key("retry-after"));
    let failed = settled(&engine, &meta_co, &path).await;
    assert_eq!(failed.status(), 410);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "media_failed");
    assert!(
        body["error"]["details"]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{body}"
    );
    assert_eq!(sandbox.state.media_downloads("6479537139650978"), 2);
    let (status, _, view) = media_state(&engine, payload["media"][0]["id"].as_str().unwrap()).await;
    assert_eq!(status, "failed");
    assert_eq!(view["status"], "failed");
    assert_eq!(view["provider_media_id"], "6479537139650978");

    // Credentials refused: failed at once, not retried; the message is kept.
    let url = put_media(
        &sandbox,
        "ib-denied",
        "infobip",
        &infobip_co.sender,
        "image/png",
        b"png",
        None,
    )
    .await
    .unwrap();
    let response = post_infobip(
        &engine,
        &infobip_co,
        "msg-denied",
        json!({"type": "IMAGE", "url": url}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let payload = next_payload(&engine, &infobip_co).await;
    let failed = settled(
        &engine,
        &infobip_co,
        payload["media"][0]["path"].as_str().unwrap(),
    )
    .await;
    assert_eq!(failed.status(), 410);
    let (status, error, _) =
        media_state(&engine, payload["media"][0]["id"].as_str().unwrap()).await;
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(error.starts_with("credentials_refused"), "{error}");
    assert!(
        !error.contains("another-key") && !error.contains("ib-api-key-secret"),
        "{error}"
    );
}

#[tokio::test]
async fn oversized_and_off_host_media_are_refused_and_the_message_kept() {
    let sandbox = sandbox().await;
    let engine = engine_with(&sandbox, |_| {}).await;
    let small = tenant(
        &engine,
        &sandbox,
        "small",
        "infobip",
        json!({"media_max_bytes": 1000}),
    )
    .await;
    let meta_co = tenant(
        &engine,
        &sandbox,
        "meta-co",
        "meta",
        json!({"media_max_bytes": 1000}),
    )
    .await;
    let twilio_co = tenant(&engine, &sandbox, "twilio-co", "twilio", json!({})).await;
    sandbox.state.set_accounts(accounts(
        &[
            (&small, "infobip"),
            (&meta_co, "meta"),
            (&twilio_co, "twilio"),
        ],
        "ib-api-key-secret",
    ));
    let big = vec![7u8; 5000];

    // Over the tenant's limit: InfoBip's file refused by its length, Meta's by the lookup's size.
    let url = put_media(
        &sandbox,
        "ib-big",
        "infobip",
        &small.sender,
        "video/mp4",
        &big,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        post_infobip(
            &engine,
            &small,
            "msg-big",
            json!({"type": "VIDEO", "url": url})
        )
        .await
        .status(),
        200
    );
    put_media(
        &sandbox,
        "7479537139650979",
        "meta",
        &meta_co.sender,
        "video/mp4",
        &big,
        None,
    )
    .await;
    let message = json!({"id": "wamid.BIG", "type": "video", "video": {"id": "7479537139650979", "mime_type": "video/mp4"}});
    assert_eq!(post_meta(&engine, &meta_co, message).await.status(), 200);
    for tenant in [&small, &meta_co] {
        let payload = next_payload(&engine, tenant).await;
        let refused = settled(
            &engine,
            tenant,
            payload["media"][0]["path"].as_str().unwrap(),
        )
        .await;
        assert_eq!(refused.status(), 410);
        let (status, error, view) =
            media_state(&engine, payload["media"][0]["id"].as_str().unwrap()).await;
        assert_eq!(status, "failed");
        assert!(error.unwrap().starts_with("too_large"));
        assert_eq!(view["status"], "failed");
        assert!(view["error"].as_str().unwrap().contains("1000 bytes"));
    }
    assert_eq!(
        sandbox.state.media_downloads("7479537139650979"),
        0,
        "refused before the download"
    );

    // A limit out of range is refused at registration.
    let mut body = small.registration.clone();
    body["media_max_bytes"] = json!(0);
    assert_eq!(engine.admin_put("small", &body).await.status(), 400);

    // URLs the webhook names off the provider's API host are never fetched: another host
    // name for the same server, another port, user info.
    let port = sandbox.url.rsplit(':').next().unwrap().to_owned();
    let elsewhere = put_media(
        &sandbox,
        "ME0003",
        "twilio",
        &twilio_co.account_sid,
        "image/jpeg",
        b"jpg",
        None,
    )
    .await
    .unwrap();
    let path = elsewhere.split_once(&port).unwrap().1.to_owned();
    let other_port = crate::common::free_port();
    let offs = [
        format!("http://localhost:{port}{path}"),
        format!("http://127.0.0.1:{other_port}{path}"),
        format!("http://user:pw@127.0.0.1:{port}{path}"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    for (index, off) in offs.iter().enumerate() {
        let sid = format!("MM{index:032}");
        let response = post_twilio(
            &engine,
            &twilio_co,
            &sid,
            &[
                ("NumMedia", "1"),
                ("MediaUrl0", off),
                ("MediaContentType0", "image/jpeg"),
            ],
        )
        .await;
        assert_eq!(response.status(), 200);
        let payload = next_payload(&engine, &twilio_co).await;
        let refused = settled(
            &engine,
            &twilio_co,
            payload["media"][0]["path"].as_str().unwrap(),
        )
        .await;
        assert_eq!(refused.status(), 410, "{off}");
        let (_, error, _) = media_state(&engine, payload["media"][0]["id"].as_str().unwrap()).await;
        assert!(
            error.as_deref().unwrap().starts_with("off_provider_host"),
            "{off}: {error:?}"
        );
    }
    assert_eq!(sandbox.state.media_downloads("ME0003"), 0);
}

#[tokio::test]
async fn locations_contacts_and_replies_are_typed_for_every_provider() {
    let sandbox = sandbox().await;
    let engine = engine_with(&sandbox, |_| {}).await;
    let meta_co = tenant(&engine, &sandbox, "meta-co", "meta", json!({})).await;
    let infobip_co = tenant(&engine, &sandbox, "infobip-co", "infobip", json!({})).await;
    let twilio_co = tenant(&engine, &sandbox, "twilio-co", "twilio", json!({})).await;

    let meta_messages = [
        json!({"id": "wamid.L", "type": "location", "location": {"latitude": 45.81, "longitude": 15.98, "name": "Trg", "address": "Zagreb"}}),
        json!({"id": "wamid.C", "type": "contacts", "contacts": [{"name": {"formatted_name": "Ivo Ivić"}, "phones": [{"phone": "+385 91 000", "wa_id": "38591000"}]}]}),
        json!({"id": "wamid.B", "type": "button", "button": {"payload": "YES", "text": "Yes please"}}),
        json!({"id": "wamid.I", "type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "row-2", "title": "Large", "description": "40 cm"}}}),
    ];
    for message in meta_messages {
        assert_eq!(post_meta(&engine, &meta_co, message).await.status(), 200);
    }
    let infobip_messages = [
        json!({"type": "LOCATION", "latitude": 45.81, "longitude": 15.98, "name": "Trg", "address": "Zagreb"}),
        json!({"type": "CONTACT", "contacts": [{"name": {"firstName": "Ivo", "lastName": "Ivić", "formattedName": "Ivo Ivić"}, "phones": [{"phone": "+385 91 000"}]}]}),
        json!({"type": "BUTTON", "text": "Yes please", "payload": "YES"}),
        json!({"type": "INTERACTIVE_LIST_REPLY", "id": "row-2", "title": "Large", "description": "40 cm"}),
    ];
    for (index, message) in infobip_messages.into_iter().enumerate() {
        let response =
            post_infobip(&engine, &infobip_co, &format!("ib-typed-{index}"), message).await;
        assert_eq!(response.status(), 200);
    }
    let twilio_forms: [&[(&str, &str)]; 2] = [
        &[
            ("MessageType", "location"),
            ("Latitude", "45.81"),
            ("Longitude", "15.98"),
            ("Label", "Trg"),
            ("Address", "Zagreb"),
        ],
        &[
            ("MessageType", "button"),
            ("ButtonText", "Yes please"),
            ("ButtonPayload", "YES"),
            ("Body", "Yes please"),
        ],
    ];
    for (index, form) in twilio_forms.iter().enumerate() {
        let sid = format!("SM{index:032}");
        assert_eq!(
            post_twilio(&engine, &twilio_co, &sid, form).await.status(),
            200
        );
    }

    let location =
        json!({"latitude": 45.81, "longitude": 15.98, "name": "Trg", "address": "Zagreb"});
    let button = json!({"type": "button", "title": "Yes please", "payload": "YES"});
    let list =
        json!({"type": "list_reply", "id": "row-2", "title": "Large", "description": "40 cm"});
    for tenant in [&meta_co, &infobip_co] {
        let payloads = [
            next_payload(&engine, tenant).await,
            next_payload(&engine, tenant).await,
            next_payload(&engine, tenant).await,
            next_payload(&engine, tenant).await,
        ];
        assert_eq!(payloads[0]["type"], "location");
        assert_eq!(payloads[0]["location"], location, "{}", tenant.slug);
        assert_eq!(payloads[1]["type"], "contacts");
        assert_eq!(payloads[1]["contacts"][0]["name"], "Ivo Ivić");
        assert_eq!(payloads[1]["contacts"][0]["phones"], json!(["+385 91 000"]));
        assert_eq!(payloads[2]["reply"], button, "{}", tenant.slug);
        assert_eq!(payloads[3]["reply"], list, "{}", tenant.slug);
        assert!(payloads.iter().all(|p| p.get("media").is_none()));
    }
    let place = next_payload(&engine, &twilio_co).await;
    assert_eq!(place["location"], location);
    let tap = next_payload(&engine, &twilio_co).await;
    assert_eq!(tap["reply"], button);
    // Plain text carries none of the typed fields.
    let text = eventually("nothing else queued", async || {
        engine
            .next_job(&twilio_co, 0.0)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(text, ());
}

#[tokio::test]
async fn pending_media_is_fetched_by_the_next_engine_after_a_restart() {
    let sandbox = sandbox().await;
    let engine = engine_with(&sandbox, |args| args.media.media_retry_seconds = 1).await;
    let meta_co = tenant(&engine, &sandbox, "meta-co", "meta", json!({})).await;
    sandbox
        .state
        .set_accounts(accounts(&[(&meta_co, "meta")], "unused"));
    let id = "8479537139650980";
    put_media(
        &sandbox,
        id,
        "meta",
        &meta_co.sender,
        "image/png",
        b"png",
        Some(503),
    )
    .await;
    let message = json!({"id": "wamid.RESTART", "type": "image", "image": {"id": id, "mime_type": "image/png"}});
    assert_eq!(post_meta(&engine, &meta_co, message).await.status(), 200);
    let tried = async || {
        sqlx::query_as::<_, (String, i32)>("SELECT status, attempts FROM media")
            .fetch_one(&engine.db.pool)
            .await
            .ok()
    };
    within(Duration::from_secs(10), "a first, failed try", async || {
        tried().await.filter(|(_, attempts)| *attempts >= 1)
    })
    .await;
    // The engine stops with the download pending; the provider recovers meanwhile.
    engine.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = tried().await.unwrap();
    assert_eq!(status, "pending");
    put_media(
        &sandbox,
        id,
        "meta",
        &meta_co.sender,
        "image/png",
        b"png",
        None,
    )
    .await;

    // Another engine on the same database finds the pending row and fetches it.
    let mut args = crate::engine_harness::args(&engine.db);
    allow_sandbox(&mut args, &sandbox.url);
    args.media.media_retry_seconds = 1;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _next = flomastr::engine::build(&args, shutdown.clone())
        .await
        .expect("the next engine starts");
    within(
        Duration::from_secs(30),
        "the next engine to fetch it",
        async || tried().await.filter(|(status, _)| status == "stored"),
    )
    .await;
    assert_eq!(
        sandbox.state.media_downloads(id),
        1,
        "the recovered file, once"
    );
    shutdown.cancel();
}

/// The job retention deleting a file's row while the provider is still answering its download
/// leaves no object behind: the fetcher puts the file, finds the row gone when it records the
/// download, and deletes the object it just put.
#[tokio::test]
async fn a_file_whose_row_goes_mid_download_leaves_no_object_behind() {
    use crate::backup_store::{ACCESS_KEY, BUCKET, SECRET_KEY, start_s3};
    let s3 = start_s3().await;
    let sandbox = sandbox().await;
    let endpoint = s3.endpoint.clone();
    let engine = engine_with(&sandbox, move |args| {
        args.media.media_s3_bucket = Some(BUCKET.to_owned());
        args.media.media_s3_endpoint = Some(endpoint);
        args.media.media_s3_region = "us-east-1".to_owned();
        args.media.media_s3_access_key_id = Some(ACCESS_KEY.to_owned());
        args.media.media_s3_secret_access_key = Some(SECRET_KEY.to_owned());
    })
    .await;
    let meta_co = tenant(&engine, &sandbox, "meta-co", "meta", json!({})).await;
    sandbox
        .state
        .set_accounts(accounts(&[(&meta_co, "meta")], "unused"));
    // A slow provider: the download answers 1.5 s after it was asked for.
    let provider_id = "8479537139650981";
    let url = format!(
        "{}/_sandbox/media/{provider_id}?provider=meta&account={}&delay_ms=1500",
        sandbox.url,
        urlencode(&meta_co.sender)
    );
    let put = reqwest::Client::new()
        .put(url)
        .header("content-type", "image/png")
        .body(b"slow png".to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let message = json!({"id": "wamid.RACE", "type": "image", "image": {"id": provider_id, "mime_type": "image/png"}});
    assert_eq!(post_meta(&engine, &meta_co, message).await.status(), 200);

    // The download is under way (claimed, not answered yet) when the job goes.
    let (tenant_id, media_id, job_id) = within(
        Duration::from_secs(10),
        "the download to start",
        async || {
            sqlx::query_as::<_, (uuid::Uuid, uuid::Uuid, uuid::Uuid)>(
                "SELECT tenant_id, id, job_id FROM media WHERE attempts >= 1 AND status = 'pending'",
            )
            .fetch_optional(&engine.db.pool)
            .await
            .unwrap()
        },
    )
    .await;
    assert_eq!(
        sandbox.state.media_downloads(provider_id),
        0,
        "not answered yet"
    );
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(job_id)
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the file's row went with its job");

    // The file arrives and is put in the object store anyway...
    let stored = || {
        engine
            .state
            .metrics
            .media_fetches
            .get_or_create(&flomastr::engine::metrics::OutcomeLabels {
                outcome: "stored".into(),
            })
            .get()
    };
    within(Duration::from_secs(10), "the file to be put", async || {
        (stored() >= 1).then_some(())
    })
    .await;
    assert_eq!(sandbox.state.media_downloads(provider_id), 1);
    // ...and deleted again once the fetcher finds its row gone; it stays gone.
    let blobs = &engine.state.settings.media.blobs;
    let key = flomastr::engine::media::blobs::MediaBlobs::key(tenant_id, media_id);
    within(
        Duration::from_secs(10),
        "the object to be deleted",
        async || blobs.object(&key).await.unwrap().is_none().then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        blobs.object(&key).await.unwrap().is_none(),
        "no object left behind"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "and no row came back");
}
