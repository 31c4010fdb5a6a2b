//! `flomastr sandbox`: the stand-ins for the InfoBip, Meta and Twilio send APIs, run in this
//! process on loopback ports and called with reqwest. Reports land on a tiny receiver started by
//! each test. No PostgreSQL or Kubernetes needed.

use crate::common::eventually;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use flomastr::engine::providers::{self, DeliveryStatus, StatusReport, WebhookEvent};
use flomastr::sandbox::{Accounts, Knobs, SandboxConfig};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

const IB_KEY: &str = "ib-api-key-0123456789";
const IB_SENDER: &str = "441134960000";
const IB_SECRET: &str = "ib-webhook-secret-42";
const IB_TEXT: &str = "/whatsapp/1/message/text";
const IB_TEMPLATE: &str = "/whatsapp/1/message/template";

const META_TOKEN: &str = "meta-access-token-0123456789";
const META_PHONE_ID: &str = "106540352242922";
const META_OTHER_PHONE_ID: &str = "106540352242999";
const META_OTHER_TOKEN: &str = "meta-other-token-0123456789";
const META_SECRET: &str = "meta-app-secret-42";
const META_CLOSED: &str = "447700900009";

const TW_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TW_TOKEN: &str = "twilio-auth-token-0123456789abcd";
const TW_SENDER: &str = "whatsapp:+14155238886";
const TW_SERVICE: &str = "MG0123456789abcdef0123456789abcdef";
const TW_CLOSED: &str = "whatsapp:+447700900009";
const TW_CONTENT: &str = "HX0123456789abcdef0123456789abcdef";

fn pending() -> Value {
    json!({"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE",
           "description": "Message sent to next instance"})
}

// ---- harness ----

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Post {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// Stands in for the engine's webhook endpoints: records every request and answers 200.
struct Receiver {
    url: String,
    posts: Arc<Mutex<Vec<Post>>>,
    shutdown: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Receiver {
    async fn start() -> Self {
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let store = posts.clone();
        let app = axum::Router::new().fallback(
            move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
                store.lock().unwrap().push(Post {
                    path: uri.path().to_owned(),
                    query: uri.query().map(str::to_owned),
                    headers,
                    body,
                });
                StatusCode::OK
            },
        );
        let (url, shutdown) = serve(app).await;
        Self {
            url,
            posts,
            shutdown,
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Waits until `count` posts have arrived at `path`, and returns them in arrival order.
    async fn wait_for(&self, path: &str, count: usize) -> Vec<Post> {
        eventually(&format!("{count} posts to {path}"), async || {
            let posts: Vec<Post> = self
                .posts
                .lock()
                .unwrap()
                .iter()
                .filter(|post| post.path == path)
                .cloned()
                .collect();
            (posts.len() >= count).then_some(posts)
        })
        .await
    }

    fn posts_to(&self, path: &str) -> Vec<Post> {
        let posts = self.posts.lock().unwrap();
        posts.iter().filter(|p| p.path == path).cloned().collect()
    }
}

async fn serve(app: axum::Router) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .ok();
    });
    (format!("http://{address}"), shutdown)
}

fn accounts(webhook_base: Option<&str>) -> Value {
    let hook = |path: &str| webhook_base.map(|base| format!("{base}{path}"));
    json!({
        "infobip": [{
            "api_key": IB_KEY, "sender": IB_SENDER,
            "webhook_url": hook("/webhook/infobip/acme"),
            "webhook_secret": IB_SECRET, "webhook_header": "X-Webhook-Secret",
        }],
        "meta": [
            {"access_token": META_TOKEN, "phone_number_id": META_PHONE_ID, "app_secret": META_SECRET,
             "webhook_url": hook("/webhook/meta/acme"), "closed_window": [META_CLOSED]},
            {"access_token": META_OTHER_TOKEN, "phone_number_id": META_OTHER_PHONE_ID,
             "app_secret": "other-secret", "webhook_url": null},
        ],
        "twilio": [{
            "account_sid": TW_SID, "auth_token": TW_TOKEN, "sender": TW_SENDER,
            "webhook_url": null, "closed_window": [TW_CLOSED], "messaging_service_sid": TW_SERVICE,
        }],
    })
}

struct Sandbox {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A sandbox whose accounts post reports under `webhook_base` (none when `None`), with a short
/// report delay so report tests finish quickly.
async fn start_sandbox(webhook_base: Option<&str>) -> Sandbox {
    let accounts = Accounts::from_json(&accounts(webhook_base).to_string()).expect("accounts");
    let config = SandboxConfig {
        accounts,
        knobs: Knobs {
            report_delay_ms: 20,
            ..Knobs::default()
        },
    };
    let state = flomastr::sandbox::new_state(config);
    let (url, shutdown) = serve(flomastr::sandbox::router(state)).await;
    Sandbox {
        url,
        http: reqwest::Client::new(),
        shutdown,
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

impl Sandbox {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn post_json(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut request = self.http.post(self.at(path)).json(body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        answer(request.send().await.unwrap()).await
    }

    async fn infobip(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_json(path, Some(&format!("App {IB_KEY}")), body)
            .await
    }

    async fn meta(&self, body: &Value) -> (u16, Value) {
        let path = format!("/v21.0/{META_PHONE_ID}/messages");
        self.post_json(&path, Some(&format!("Bearer {META_TOKEN}")), body)
            .await
    }

    async fn twilio_as(&self, user: &str, token: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let path = format!("/2010-04-01/Accounts/{TW_SID}/Messages.json");
        let request = self
            .http
            .post(self.at(&path))
            .basic_auth(user, Some(token))
            .form(form);
        answer(request.send().await.unwrap()).await
    }

    async fn twilio(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.twilio_as(TW_SID, TW_TOKEN, form).await
    }

    async fn control(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_json(path, None, body).await
    }

    async fn list(&self, path: &str) -> Vec<Value> {
        let response = self.http.get(self.at(path)).send().await.unwrap();
        response.json().await.unwrap()
    }

    async fn messages(&self) -> Vec<Value> {
        self.list("/_sandbox/messages").await
    }
}

fn ib_text(message_id: &str, to: &str) -> Value {
    json!({"from": IB_SENDER, "to": to, "messageId": message_id, "content": {"text": "Hello"}})
}

fn meta_text(to: &str) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
           "type": "text", "text": {"body": "Hello", "preview_url": false}})
}

fn statuses(events: Vec<WebhookEvent>) -> Vec<StatusReport> {
    events
        .into_iter()
        .map(|event| match event {
            WebhookEvent::Status(report) => report,
            other => panic!("expected a status report, got {other:?}"),
        })
        .collect()
}

fn header<'a>(post: &'a Post, name: &str) -> Option<&'a str> {
    post.headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_infobip_time(text: &str) -> bool {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z").is_ok()
        && text.ends_with("+0000")
        && text.len() == "2026-11-25T10:00:00.000+0000".len()
}

// ---- InfoBip ----

#[tokio::test]
async fn infobip_text_happy_path_and_recording() {
    let sandbox = start_sandbox(None).await;
    let (status, body) = sandbox
        .infobip(IB_TEXT, &ib_text("m-1", "447700900001"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"to": "447700900001", "messageCount": 1, "messageId": "m-1", "status": pending()})
    );

    let without_id = json!({"from": IB_SENDER, "to": "447700900002", "content": {"text": "Hi"}});
    let (status, body) = sandbox.infobip(IB_TEXT, &without_id).await;
    assert_eq!(status, 200);
    let generated = body["messageId"].as_str().unwrap();
    assert!(!generated.is_empty());

    let messages = sandbox.messages().await;
    assert_eq!(messages.len(), 2);
    let first = &messages[0];
    assert_eq!(first["provider"], "infobip");
    assert_eq!(first["path"], IB_TEXT);
    assert_eq!(first["headers"]["authorization"], "***");
    assert_eq!(first["body"], ib_text("m-1", "447700900001"));
    assert_eq!(first["status"], 200);
    assert_eq!(first["message_id"], "m-1");
    assert_eq!(first["duplicate"], false);
    assert!(first["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(messages[1]["message_id"], generated);
    let log = serde_json::to_string(&messages).unwrap();
    assert!(!log.contains(IB_KEY), "the API key must not be recorded");

    let cleared = sandbox
        .http
        .delete(sandbox.at("/_sandbox/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(sandbox.messages().await.is_empty());
}

#[tokio::test]
async fn infobip_template_happy_path() {
    let sandbox = start_sandbox(None).await;
    let message = |id: &str, to: &str| {
        json!({"from": IB_SENDER, "to": to, "messageId": id,
               "content": {"templateName": "order_update", "language": "en",
                           "templateData": {"body": {"placeholders": ["Ana", "42"]}}},
               "callbackData": "order-42"})
    };
    let request = json!({"messages": [message("t-1", "447700900001"), message("t-2", "447700900002")],
                         "bulkId": "bulk-1"});
    let (status, body) = sandbox.infobip(IB_TEMPLATE, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"messages": [
            {"to": "447700900001", "messageCount": 1, "messageId": "t-1", "status": pending()},
            {"to": "447700900002", "messageCount": 1, "messageId": "t-2", "status": pending()},
        ], "bulkId": "bulk-1"})
    );
    let empty_placeholders = json!({"messages": [{"from": IB_SENDER, "to": "447700900003",
        "content": {"templateName": "hello", "language": "en", "templateData": {"body": {"placeholders": []}}}}]});
    let (status, body) = sandbox.infobip(IB_TEMPLATE, &empty_placeholders).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["bulkId"].as_str().is_some_and(|id| !id.is_empty()));
    let messages = sandbox.messages().await;
    assert_eq!(messages[0]["message_ids"], json!(["t-1", "t-2"]));
}

fn infobip_error(code: &str, violations: Value) -> Value {
    let (description, action) = match code {
        "E401" => (
            "Invalid login details",
            "Check the API key in the Authorization header (App <api-key>).",
        ),
        _ => (
            "Request cannot be processed.",
            "Check the syntax, violations and adjust the request.",
        ),
    };
    json!({"errorCode": code, "description": description, "action": action,
           "violations": violations, "resources": []})
}

#[tokio::test]
async fn infobip_auth_failures() {
    let sandbox = start_sandbox(None).await;
    let body = ib_text("a-1", "447700900001");
    let unauthorized = infobip_error("E401", json!([]));
    for authorization in [
        None,
        Some("App wrong-key".to_owned()),
        Some(format!("Basic {IB_KEY}")),
        Some(format!("Bearer {IB_KEY}")),
        Some(IB_KEY.to_owned()),
    ] {
        let (status, answer) = sandbox
            .post_json(IB_TEXT, authorization.as_deref(), &body)
            .await;
        assert_eq!(status, 401, "{authorization:?}");
        assert_eq!(answer, unauthorized, "{authorization:?}");
    }
    assert!(
        sandbox
            .messages()
            .await
            .iter()
            .all(|m| m["message_id"].is_null())
    );
}

#[tokio::test]
async fn infobip_validation_names_the_property() {
    let sandbox = start_sandbox(None).await;
    let cases = [
        (
            IB_TEXT,
            json!({"from": IB_SENDER, "to": "447700900001", "content": {}}),
            json!([{"property": "content.text", "violation": "must not be null"}]),
        ),
        (
            IB_TEXT,
            json!({"from": IB_SENDER, "to": "447700900001", "content": {"text": " "}}),
            json!([{"property": "content.text", "violation": "must not be blank"}]),
        ),
        (
            IB_TEXT,
            json!({"to": "447700900001", "content": {"text": "x"}}),
            json!([{"property": "from", "violation": "must not be null"}]),
        ),
        (
            IB_TEXT,
            json!({"from": "441134969999", "to": "447700900001", "content": {"text": "x"}}),
            json!([{"property": "from", "violation": "is not a sender registered for this account"}]),
        ),
        (
            IB_TEXT,
            json!({"from": IB_SENDER, "content": {"text": "x"}}),
            json!([{"property": "to", "violation": "must not be null"}]),
        ),
        (
            IB_TEXT,
            json!({"from": IB_SENDER, "to": "447700900001", "content": {"text": "x".repeat(4097)}}),
            json!([{"property": "content.text", "violation": "size must be between 1 and 4096"}]),
        ),
        (
            IB_TEMPLATE,
            json!({}),
            json!([{"property": "messages", "violation": "must not be null"}]),
        ),
        (
            IB_TEMPLATE,
            json!({"messages": []}),
            json!([{"property": "messages", "violation": "must not be empty"}]),
        ),
        (
            IB_TEMPLATE,
            json!({"messages": [{"from": IB_SENDER, "to": "447700900001",
            "content": {"templateName": "t", "language": "en", "templateData": {"body": {}}}}]}),
            json!([{"property": "messages[0].content.templateData.body.placeholders", "violation": "must not be null"}]),
        ),
        (
            IB_TEMPLATE,
            json!({"messages": [{"from": IB_SENDER, "to": "447700900001",
            "content": {"templateName": "t", "language": "en", "templateData": {"body": {"placeholders": ["a", ""]}}}}]}),
            json!([{"property": "messages[0].content.templateData.body.placeholders[1]", "violation": "must not be blank"}]),
        ),
        (
            IB_TEMPLATE,
            json!({"messages": [{"from": IB_SENDER, "to": "447700900001",
            "content": {"language": "en", "templateData": {"body": {"placeholders": []}}}}]}),
            json!([{"property": "messages[0].content.templateName", "violation": "must not be null"}]),
        ),
        (
            IB_TEMPLATE,
            json!({"messages": [{"from": IB_SENDER, "to": "447700900001",
            "content": {"templateName": "t", "templateData": {"body": {"placeholders": []}}}}]}),
            json!([{"property": "messages[0].content.language", "violation": "must not be null"}]),
        ),
    ];
    for (path, body, violations) in cases {
        let (status, answer) = sandbox.infobip(path, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer, infobip_error("E400", violations), "{body}");
    }
    let response = sandbox
        .http
        .post(sandbox.at(IB_TEXT))
        .header("authorization", format!("App {IB_KEY}"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, answer) = self::answer(response).await;
    assert_eq!(status, 400);
    assert_eq!(answer["violations"][0]["property"], "body");
    let messages = sandbox.messages().await;
    assert_eq!(messages.last().unwrap()["body"], "{not json");
}

#[tokio::test]
async fn infobip_duplicate_message_id_is_answered_again_but_delivered_once() {
    let receiver = Receiver::start().await;
    let sandbox = start_sandbox(Some(&receiver.url)).await;
    let hook = "/webhook/infobip/acme";
    let (first_status, first) = sandbox
        .infobip(IB_TEXT, &ib_text("dup-1", "447700900001"))
        .await;
    let (second_status, second) = sandbox
        .infobip(IB_TEXT, &ib_text("dup-1", "447700900001"))
        .await;
    assert_eq!((first_status, second_status), (200, 200));
    assert_eq!(first, second, "a duplicate gets the first answer");
    // A later, different message: once its reports are in, a second delivery of dup-1 (had one
    // been scheduled, before this one) would be in too.
    sandbox
        .infobip(IB_TEXT, &ib_text("after-1", "447700900002"))
        .await;
    let posts = eventually("the reports of after-1", async || {
        let posts = receiver.posts_to(hook);
        let seen_after = posts.iter().any(|p| {
            let body: Value = serde_json::from_slice(&p.body).unwrap();
            body["results"][0]["messageId"] == "after-1"
                && body["results"][0].get("seenAt").is_some()
        });
        seen_after.then_some(posts)
    })
    .await;
    let for_dup: Vec<Value> = posts
        .iter()
        .map(|p| serde_json::from_slice::<Value>(&p.body).unwrap())
        .filter(|body| body["results"][0]["messageId"] == "dup-1")
        .collect();
    assert_eq!(
        for_dup.len(),
        2,
        "one delivery report and one seen report: {for_dup:?}"
    );
    assert!(for_dup[0]["results"][0].get("doneAt").is_some());
    assert!(for_dup[1]["results"][0].get("seenAt").is_some());

    let messages = sandbox.messages().await;
    let flags: Vec<(Value, Value)> = messages
        .iter()
        .map(|m| (m["message_id"].clone(), m["duplicate"].clone()))
        .collect();
    assert_eq!(
        flags,
        vec![
            (json!("dup-1"), json!(false)),
            (json!("dup-1"), json!(true)),
            (json!("after-1"), json!(false)),
        ]
    );
}

#[tokio::test]
async fn infobip_reports_arrive_with_the_secret_header_and_parse() {
    let receiver = Receiver::start().await;
    let sandbox = start_sandbox(Some(&receiver.url)).await;
    let mut with_notify = ib_text("r-1", "447700900001");
    with_notify["notifyUrl"] = json!(receiver.at("/notify/r-1?tenant=acme"));
    with_notify["callbackData"] = json!("cb-1");
    assert_eq!(sandbox.infobip(IB_TEXT, &with_notify).await.0, 200);
    assert_eq!(
        sandbox
            .infobip(IB_TEXT, &ib_text("r-2", "447700900002"))
            .await
            .0,
        200
    );

    let notified = receiver.wait_for("/notify/r-1", 2).await;
    let webhooked = receiver.wait_for("/webhook/infobip/acme", 2).await;
    assert_eq!(notified[0].query.as_deref(), Some("tenant=acme"));
    for post in notified.iter().chain(&webhooked) {
        assert_eq!(header(post, "x-webhook-secret"), Some(IB_SECRET));
        assert_eq!(header(post, "content-type"), Some("application/json"));
    }

    let delivery: Value = serde_json::from_slice(&notified[0].body).unwrap();
    let result = &delivery["results"][0];
    assert_eq!(result["messageId"], "r-1");
    assert_eq!(result["to"], "447700900001");
    assert_eq!(result["callbackData"], "cb-1");
    assert_eq!(result["messageCount"], 1);
    assert_eq!(
        result["price"],
        json!({"pricePerMessage": 0, "currency": "EUR"})
    );
    assert_eq!(
        result["status"],
        json!({"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET",
               "description": "Message delivered to handset"})
    );
    assert_eq!(
        result["error"],
        json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR",
               "description": "No Error", "permanent": false})
    );
    assert!(
        is_infobip_time(result["sentAt"].as_str().unwrap()),
        "{result}"
    );
    assert!(
        is_infobip_time(result["doneAt"].as_str().unwrap()),
        "{result}"
    );
    assert!(result.get("bulkId").is_none());

    let seen: Value = serde_json::from_slice(&notified[1].body).unwrap();
    let seen = &seen["results"][0];
    assert_eq!(seen["messageId"], "r-1");
    assert_eq!(seen["from"], "447700900001");
    assert_eq!(seen["to"], IB_SENDER);
    assert!(is_infobip_time(seen["seenAt"].as_str().unwrap()), "{seen}");

    for (posts, id) in [(&notified, "r-1"), (&webhooked, "r-2")] {
        let reports: Vec<StatusReport> = posts
            .iter()
            .flat_map(|p| statuses(providers::infobip::parse(&p.body).expect("parses")))
            .collect();
        let got: Vec<(&str, DeliveryStatus)> = reports
            .iter()
            .map(|r| (r.provider_message_id.as_str(), r.status))
            .collect();
        assert_eq!(
            got,
            vec![(id, DeliveryStatus::Delivered), (id, DeliveryStatus::Read)]
        );
        assert_eq!(reports[0].error_code, None);
    }

    let reports = eventually("four recorded reports", async || {
        let reports = sandbox.list("/_sandbox/reports").await;
        (reports.len() == 4).then_some(reports)
    })
    .await;
    assert!(
        reports
            .iter()
            .all(|r| r["status"] == 200 && r["provider"] == "infobip")
    );
    let r1_urls: Vec<&Value> = reports
        .iter()
        .filter(|r| r["message_id"] == "r-1")
        .map(|r| &r["url"])
        .collect();
    assert_eq!(
        r1_urls,
        vec![&json!(receiver.at("/notify/r-1?tenant=acme")); 2]
    );
    assert!(!serde_json::to_string(&reports).unwrap().contains(IB_SECRET));
}

// ---- Meta ----

#[tokio::test]
async fn meta_happy_path() {
    let sandbox = start_sandbox(None).await;
    let (status, body) = sandbox.meta(&meta_text("+44 7700 900001")).await;
    assert_eq!(status, 200, "{body}");
    let id = body["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wamid.") && id.len() > 20, "{id}");
    assert_eq!(
        body,
        json!({"messaging_product": "whatsapp",
               "contacts": [{"input": "+44 7700 900001", "wa_id": "447700900001"}],
               "messages": [{"id": id}]})
    );
    let template = json!({"messaging_product": "whatsapp", "to": "447700900001", "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}});
    let (status, second) = sandbox.meta(&template).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["messages"][0]["id"], body["messages"][0]["id"]);
    // Meta has no idempotency: the same send twice is two messages.
    let (_, again) = sandbox.meta(&template).await;
    assert_ne!(again["messages"][0]["id"], second["messages"][0]["id"]);

    let messages = sandbox.messages().await;
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["provider"], "meta");
    assert_eq!(
        messages[0]["path"],
        format!("/v21.0/{META_PHONE_ID}/messages")
    );
    assert_eq!(messages[0]["headers"]["authorization"], "***");
    assert_eq!(messages[0]["message_id"], id.as_str());
    assert!(messages.iter().all(|m| m["duplicate"] == false));
}

#[tokio::test]
async fn meta_auth_failures() {
    let sandbox = start_sandbox(None).await;
    let path = format!("/v21.0/{META_PHONE_ID}/messages");
    let unknown_phone = "/v21.0/999999999/messages".to_owned();
    for (path, authorization) in [
        (&path, None),
        (&path, Some("Bearer wrong-token".to_owned())),
        (&path, Some(format!("OAuth {META_TOKEN}"))),
        // A real token, but of another phone number's account.
        (&path, Some(format!("Bearer {META_OTHER_TOKEN}"))),
        (&unknown_phone, Some(format!("Bearer {META_TOKEN}"))),
    ] {
        let (status, mut body) = sandbox
            .post_json(path, authorization.as_deref(), &meta_text("447700900001"))
            .await;
        assert_eq!(status, 401, "{authorization:?}");
        let trace = body["error"]
            .as_object_mut()
            .unwrap()
            .remove("fbtrace_id")
            .unwrap();
        assert!(trace.as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(
            body,
            json!({"error": {"message": "Invalid OAuth access token - Cannot parse access token",
                             "type": "OAuthException", "code": 190}})
        );
    }
}

#[tokio::test]
async fn meta_validation_is_code_100_naming_the_parameter() {
    let sandbox = start_sandbox(None).await;
    let mut long = meta_text("447700900001");
    long["text"]["body"] = json!("é".repeat(4097));
    let cases = [
        (
            json!({"to": "447700900001", "type": "text", "text": {"body": "x"}}),
            "messaging_product",
        ),
        (
            json!({"messaging_product": "sms", "to": "447700900001", "text": {"body": "x"}}),
            "messaging_product",
        ),
        (
            json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}),
            "to",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "call me", "text": {"body": "x"}}),
            "to",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "447700900001", "type": "location"}),
            "type",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "447700900001", "type": "image"}),
            "image",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "447700900001", "type": "text"}),
            "text['body']",
        ),
        (long, "text['body']"),
        (
            json!({"messaging_product": "whatsapp", "to": "447700900001", "type": "template",
                "template": {"language": {"code": "en"}}}),
            "template['name']",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "447700900001", "type": "template",
                "template": {"name": "t", "language": {}}}),
            "template['language']['code']",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "447700900001", "text": {"body": "x"},
                "biz_opaque_callback_data": "x".repeat(513)}),
            "biz_opaque_callback_data",
        ),
    ];
    for (body, parameter) in cases {
        let (status, answer) = sandbox.meta(&body).await;
        assert_eq!(status, 400, "{body}");
        let error = &answer["error"];
        assert_eq!(error["code"], 100, "{answer}");
        assert_eq!(error["type"], "OAuthException");
        assert_eq!(error["message"], "(#100) Invalid parameter");
        assert_eq!(error["error_data"]["messaging_product"], "whatsapp");
        let details = error["error_data"]["details"].as_str().unwrap();
        assert!(
            details.contains(parameter),
            "{details} should name {parameter}"
        );
    }
    // Exactly 4096 characters (of two bytes each) is still fine.
    let mut longest = meta_text("447700900001");
    longest["text"]["body"] = json!("é".repeat(4096));
    assert_eq!(sandbox.meta(&longest).await.0, 200);
    let (status, answer) = sandbox
        .post_json(
            &format!("/21.0/{META_PHONE_ID}/messages"),
            Some(&format!("Bearer {META_TOKEN}")),
            &meta_text("447700900001"),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!(2500))
    );
}

#[tokio::test]
async fn meta_closed_window_refuses_text_but_not_templates() {
    let sandbox = start_sandbox(None).await;
    let (status, mut body) = sandbox.meta(&meta_text(&format!("+{META_CLOSED}"))).await;
    assert_eq!(status, 400);
    body["error"].as_object_mut().unwrap().remove("fbtrace_id");
    assert_eq!(
        body,
        json!({"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
            "code": 131047, "error_data": {"messaging_product": "whatsapp",
            "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}})
    );
    let template = json!({"messaging_product": "whatsapp", "to": META_CLOSED, "type": "template",
        "template": {"name": "reopen", "language": {"code": "en"}}});
    assert_eq!(sandbox.meta(&template).await.0, 200);
    let messages = sandbox.messages().await;
    assert_eq!(messages[0]["status"], 400);
    assert!(messages[0]["message_id"].is_null());
}

#[tokio::test]
async fn meta_statuses_are_signed_and_parse() {
    let receiver = Receiver::start().await;
    let sandbox = start_sandbox(Some(&receiver.url)).await;
    let mut send = meta_text("447700900001");
    send["biz_opaque_callback_data"] = json!("job-42 café");
    let (status, body) = sandbox.meta(&send).await;
    assert_eq!(status, 200);
    let wamid = body["messages"][0]["id"].as_str().unwrap();

    let posts = receiver.wait_for("/webhook/meta/acme", 3).await;
    let mut reports = Vec::new();
    for post in &posts {
        let signature = header(post, "x-hub-signature-256");
        assert_eq!(
            providers::meta::verify_signature(META_SECRET.as_bytes(), signature, &post.body),
            Ok(()),
            "signature over the exact bytes"
        );
        // Meta escapes non-ASCII; the bytes carry the escape, not the raw character.
        let text = std::str::from_utf8(&post.body).unwrap();
        assert!(text.contains(r"caf\u00e9") && text.is_ascii(), "{text}");
        let envelope: Value = serde_json::from_slice(&post.body).unwrap();
        assert_eq!(envelope["object"], "whatsapp_business_account");
        let value = &envelope["entry"][0]["changes"][0]["value"];
        assert_eq!(envelope["entry"][0]["changes"][0]["field"], "messages");
        assert_eq!(value["messaging_product"], "whatsapp");
        assert_eq!(value["metadata"]["phone_number_id"], META_PHONE_ID);
        reports.extend(statuses(
            providers::meta::parse(&post.body).expect("parses"),
        ));
    }
    let got: Vec<DeliveryStatus> = reports.iter().map(|r| r.status).collect();
    assert_eq!(
        got,
        vec![
            DeliveryStatus::Sent,
            DeliveryStatus::Delivered,
            DeliveryStatus::Read
        ]
    );
    for report in &reports {
        assert_eq!(report.provider_message_id, wamid);
        assert_eq!(report.recipient.as_deref(), Some("447700900001"));
        assert_eq!(report.to.as_deref(), Some(META_PHONE_ID));
        assert_eq!(report.raw["biz_opaque_callback_data"], "job-42 café");
        assert!(
            report.raw["timestamp"]
                .as_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_digit())
        );
    }
}

// ---- Twilio ----

#[tokio::test]
async fn twilio_happy_path() {
    let sandbox = start_sandbox(None).await;
    let (status, body) = sandbox
        .twilio(&[
            ("To", "whatsapp:+447700900001"),
            ("From", TW_SENDER),
            ("Body", "Hello there"),
        ])
        .await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    assert!(
        sid.len() == 34 && sid.starts_with("SM") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{sid}"
    );
    let created = body["date_created"].as_str().unwrap().to_owned();
    assert!(
        chrono::DateTime::parse_from_rfc2822(&created).is_ok(),
        "{created}"
    );
    let uri_base = format!("/2010-04-01/Accounts/{TW_SID}/Messages/{sid}");
    assert_eq!(
        body,
        json!({"account_sid": TW_SID, "api_version": "2010-04-01", "body": "Hello there",
               "date_created": created, "date_sent": null, "date_updated": created,
               "direction": "outbound-api", "error_code": null, "error_message": null,
               "from": TW_SENDER, "messaging_service_sid": null, "num_media": "0", "num_segments": "1",
               "price": null, "price_unit": "USD", "sid": sid, "status": "queued",
               "subresource_uris": {"media": format!("{uri_base}/Media.json")},
               "to": "whatsapp:+447700900001", "uri": format!("{uri_base}.json")})
    );
    let (status, body) = sandbox
        .twilio(&[
            ("To", "whatsapp:+447700900001"),
            ("MessagingServiceSid", TW_SERVICE),
            ("ContentSid", TW_CONTENT),
            ("ContentVariables", r#"{"1":"Ana"}"#),
        ])
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["messaging_service_sid"], TW_SERVICE);
    assert_eq!(body["from"], Value::Null);

    let messages = sandbox.messages().await;
    assert_eq!(messages[0]["provider"], "twilio");
    assert_eq!(messages[0]["headers"]["authorization"], "***");
    assert_eq!(
        messages[0]["body"],
        json!({"To": "whatsapp:+447700900001", "From": TW_SENDER, "Body": "Hello there"})
    );
    assert_eq!(messages[0]["status"], 201);
    assert_eq!(messages[0]["message_id"], sid.as_str());
    let log = serde_json::to_string(&messages).unwrap();
    assert!(!log.contains(TW_TOKEN));
}

#[tokio::test]
async fn twilio_auth_failures() {
    let sandbox = start_sandbox(None).await;
    let form = [
        ("To", "whatsapp:+447700900001"),
        ("From", TW_SENDER),
        ("Body", "x"),
    ];
    let expected = json!({"code": 20003, "message": "Authenticate",
                          "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401});
    for (user, token) in [
        (TW_SID, "wrong-token"),
        ("AC99999999999999999999999999999999", TW_TOKEN),
    ] {
        let (status, body) = sandbox.twilio_as(user, token, &form).await;
        assert_eq!((status, &body), (401, &expected), "{user}");
    }
    let path = format!("/2010-04-01/Accounts/{TW_SID}/Messages.json");
    let response = sandbox
        .http
        .post(sandbox.at(&path))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"Twilio API\"")
    );
    assert_eq!(answer(response).await, (401, expected.clone()));
    // Right credentials, but the path names another account.
    let other = "/2010-04-01/Accounts/AC99999999999999999999999999999999/Messages.json";
    let response = sandbox
        .http
        .post(sandbox.at(other))
        .basic_auth(TW_SID, Some(TW_TOKEN))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer(response).await, (401, expected));
}

#[tokio::test]
async fn twilio_validation_errors() {
    let sandbox = start_sandbox(None).await;
    let long = "x".repeat(1601);
    type Case<'a> = (Vec<(&'a str, &'a str)>, u32, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("From", TW_SENDER), ("Body", "x")],
            21604,
            "A 'To' phone number is required.",
        ),
        (
            vec![("To", "+447700900001"), ("From", TW_SENDER), ("Body", "x")],
            21211,
            "Invalid 'To' Phone Number: +447700900001",
        ),
        (
            vec![
                ("To", "whatsapp:447700900001"),
                ("From", TW_SENDER),
                ("Body", "x"),
            ],
            21211,
            "Invalid 'To' Phone Number: whatsapp:447700900001",
        ),
        (
            vec![("To", "whatsapp:+447700900001"), ("Body", "x")],
            21603,
            "A 'From' phone number is required.",
        ),
        (
            vec![
                ("To", "whatsapp:+447700900001"),
                ("From", "whatsapp:+15005550006"),
                ("Body", "x"),
            ],
            63007,
            "Twilio could not find a Channel with the specified From address",
        ),
        (
            vec![
                ("To", "whatsapp:+447700900001"),
                ("MessagingServiceSid", "MG99999999999999999999999999999999"),
                ("Body", "x"),
            ],
            21701,
            "The Messaging Service does not exist",
        ),
        (
            vec![("To", "whatsapp:+447700900001"), ("From", TW_SENDER)],
            21602,
            "Message body is required.",
        ),
        (
            vec![
                ("To", "whatsapp:+447700900001"),
                ("From", TW_SENDER),
                ("Body", ""),
            ],
            21602,
            "Message body is required.",
        ),
        (
            vec![
                ("To", "whatsapp:+447700900001"),
                ("From", TW_SENDER),
                ("Body", &long),
            ],
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ),
        (
            vec![
                ("To", "whatsapp:+447700900001"),
                ("From", TW_SENDER),
                ("ContentSid", "HX123"),
            ],
            21655,
            "The ContentSid is Invalid.",
        ),
        (
            vec![
                ("To", "whatsapp:+447700900001"),
                ("From", TW_SENDER),
                ("Body", "x"),
                ("StatusCallback", "ftp://example.com"),
            ],
            21609,
            "Invalid StatusCallback url",
        ),
    ];
    for (form, code, message) in cases {
        let (status, body) = sandbox.twilio(&form).await;
        assert_eq!(status, 400, "{form:?}");
        assert_eq!(
            body,
            json!({"code": code, "message": message,
                   "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": 400}),
            "{form:?}"
        );
    }
}

#[tokio::test]
async fn twilio_closed_window_is_63016_unless_a_template_is_used() {
    let sandbox = start_sandbox(None).await;
    let (status, body) = sandbox
        .twilio(&[("To", TW_CLOSED), ("From", TW_SENDER), ("Body", "Hi again")])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 63016);
    assert_eq!(
        body["more_info"],
        "https://www.twilio.com/docs/errors/63016"
    );
    assert_eq!(body["status"], 400);
    let media_only = [
        ("To", TW_CLOSED),
        ("From", TW_SENDER),
        ("MediaUrl", "https://example.com/a.jpg"),
    ];
    assert_eq!(sandbox.twilio(&media_only).await.1["code"], 63016);
    let (status, _) = sandbox
        .twilio(&[
            ("To", TW_CLOSED),
            ("From", TW_SENDER),
            ("ContentSid", TW_CONTENT),
        ])
        .await;
    assert_eq!(status, 201);
    let (status, _) = sandbox
        .twilio(&[
            ("To", "whatsapp:+447700900001"),
            ("From", TW_SENDER),
            ("Body", "open window"),
        ])
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn twilio_status_callbacks_are_signed_and_parse() {
    let receiver = Receiver::start().await;
    let sandbox = start_sandbox(Some(&receiver.url)).await;
    let callback = receiver.at("/webhook/twilio/acme?kind=status");
    let (status, body) = sandbox
        .twilio(&[
            ("To", "whatsapp:+447700900001"),
            ("From", TW_SENDER),
            ("Body", "Čest & more"),
            ("StatusCallback", &callback),
        ])
        .await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().unwrap();
    // No StatusCallback and no account webhook_url: no callbacks for this one.
    sandbox
        .twilio(&[
            ("To", "whatsapp:+447700900002"),
            ("From", TW_SENDER),
            ("Body", "quiet"),
        ])
        .await;

    let posts = receiver.wait_for("/webhook/twilio/acme", 3).await;
    let mut reports = Vec::new();
    for post in &posts {
        assert_eq!(post.query.as_deref(), Some("kind=status"));
        assert_eq!(
            header(post, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let params = providers::twilio::parse_form(&post.body).expect("form");
        let signature = header(post, "x-twilio-signature");
        assert_eq!(
            providers::twilio::verify_signature(TW_TOKEN, &callback, &params, signature),
            Ok(())
        );
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("MessageSid"), Some(sid));
        assert_eq!(get("SmsSid"), Some(sid));
        assert_eq!(get("AccountSid"), Some(TW_SID));
        assert_eq!(get("From"), Some(TW_SENDER));
        assert_eq!(get("To"), Some("whatsapp:+447700900001"));
        assert_eq!(get("ApiVersion"), Some("2010-04-01"));
        assert_eq!(get("MessagingServiceSid"), None);
        reports.extend(statuses(providers::twilio::parse(&params).expect("parses")));
    }
    let got: Vec<(&str, DeliveryStatus)> = reports
        .iter()
        .map(|r| (r.provider_message_id.as_str(), r.status))
        .collect();
    assert_eq!(
        got,
        vec![
            (sid, DeliveryStatus::Sent),
            (sid, DeliveryStatus::Delivered),
            (sid, DeliveryStatus::Read)
        ]
    );
    assert_eq!(reports[0].account_id.as_deref(), Some(TW_SID));
    assert_eq!(reports[0].recipient.as_deref(), Some("+447700900001"));
    let recorded = eventually("three recorded callbacks", async || {
        let reports = sandbox.list("/_sandbox/reports").await;
        (reports.len() == 3).then_some(reports)
    })
    .await;
    let kinds: Vec<&Value> = recorded.iter().map(|r| &r["kind"]).collect();
    assert_eq!(kinds, vec!["sent", "delivered", "read"]);
    assert!(
        recorded
            .iter()
            .all(|r| r["status"] == 200 && r["url"] == callback.as_str())
    );
}

// ---- knobs and accounts ----

#[tokio::test]
async fn fail_next_and_throttle_next_are_deterministic() {
    let sandbox = start_sandbox(None).await;
    let set = json!({"fail_next": 1, "throttle_next": 1});
    let ib = || ib_text(&uuid::Uuid::new_v4().to_string(), "447700900001");

    assert_eq!(sandbox.control("/_sandbox/config", &set).await.0, 200);
    let (status, body) = sandbox.infobip(IB_TEXT, &ib()).await;
    assert_eq!((status, body["errorCode"].clone()), (500, json!("E500")));
    assert_eq!(body["violations"], json!([]));
    let (status, body) = sandbox.infobip(IB_TEXT, &ib()).await;
    assert_eq!((status, body["errorCode"].clone()), (429, json!("E429")));
    assert_eq!(sandbox.infobip(IB_TEXT, &ib()).await.0, 200);

    sandbox.control("/_sandbox/config", &set).await;
    let (status, body) = sandbox.meta(&meta_text("447700900001")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (500, json!(131000))
    );
    let (status, body) = sandbox.meta(&meta_text("447700900001")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(130429))
    );
    assert_eq!(sandbox.meta(&meta_text("447700900001")).await.0, 200);

    sandbox.control("/_sandbox/config", &set).await;
    let form = [
        ("To", "whatsapp:+447700900001"),
        ("From", TW_SENDER),
        ("Body", "x"),
    ];
    let (status, body) = sandbox.twilio(&form).await;
    assert_eq!(
        (status, body),
        (
            500,
            json!({"code": 20500, "message": "Internal Server Error",
                     "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500})
        )
    );
    let (status, body) = sandbox.twilio(&form).await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"code": 20429, "message": "Too Many Requests",
                     "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429})
        )
    );
    assert_eq!(sandbox.twilio(&form).await.0, 201);

    let statuses: Vec<Value> = sandbox
        .messages()
        .await
        .iter()
        .map(|m| m["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [500, 429, 200, 500, 400, 200, 500, 429, 201].map(|s| json!(s))
    );
    // Invalid sends do not use up the counters.
    sandbox
        .control("/_sandbox/config", &json!({"fail_next": 1}))
        .await;
    assert_eq!(
        sandbox
            .infobip(IB_TEXT, &json!({"from": IB_SENDER}))
            .await
            .0,
        400
    );
    assert_eq!(sandbox.infobip(IB_TEXT, &ib()).await.0, 500);
}

#[tokio::test]
async fn rates_and_config_validation() {
    let sandbox = start_sandbox(None).await;
    let (status, knobs) = sandbox
        .control("/_sandbox/config", &json!({"failure_rate": 1.0}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        knobs,
        json!({"failure_rate": 1.0, "throttle_rate": 0.0, "report_delay_ms": 20, "fail_next": 0, "throttle_next": 0})
    );
    for _ in 0..3 {
        assert_eq!(sandbox.meta(&meta_text("447700900001")).await.0, 500);
    }
    sandbox
        .control(
            "/_sandbox/config",
            &json!({"failure_rate": 0.0, "throttle_rate": 1.0}),
        )
        .await;
    assert_eq!(
        sandbox
            .infobip(IB_TEXT, &ib_text("rate-1", "447700900001"))
            .await
            .0,
        429
    );
    // Throttled sends are not accepted, so the same messageId goes through afterwards.
    sandbox
        .control("/_sandbox/config", &json!({"throttle_rate": 0.0}))
        .await;
    let (status, body) = sandbox
        .infobip(IB_TEXT, &ib_text("rate-1", "447700900001"))
        .await;
    assert_eq!((status, body["messageId"].clone()), (200, json!("rate-1")));
    assert_eq!(sandbox.messages().await.last().unwrap()["duplicate"], false);

    for bad in [
        json!({"failure_rate": 1.5}),
        json!({"throttle_rate": -0.1}),
        json!({"fail_nxt": 1}),
        json!("x"),
    ] {
        let (status, body) = sandbox.control("/_sandbox/config", &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string());
    }
    let knobs = sandbox
        .http
        .get(sandbox.at("/_sandbox/config"))
        .send()
        .await
        .unwrap();
    let knobs: Value = knobs.json().await.unwrap();
    assert_eq!(knobs["failure_rate"], 0.0);
}

#[tokio::test]
async fn accounts_can_be_replaced_at_runtime() {
    let sandbox = start_sandbox(None).await;
    let new_accounts = json!({"infobip": [{"api_key": "rotated-key", "sender": "441134960001"}]});
    let (status, counts) = sandbox.control("/_sandbox/accounts", &new_accounts).await;
    assert_eq!(
        (status, counts),
        (200, json!({"infobip": 1, "meta": 0, "twilio": 0}))
    );
    assert_eq!(
        sandbox
            .infobip(IB_TEXT, &ib_text("x-1", "447700900001"))
            .await
            .0,
        401
    );
    let body = json!({"from": "441134960001", "to": "447700900001", "content": {"text": "hi"}});
    let (status, _) = sandbox
        .post_json(IB_TEXT, Some("App rotated-key"), &body)
        .await;
    assert_eq!(status, 200);
    assert_eq!(sandbox.meta(&meta_text("447700900001")).await.0, 401);

    let secret_in_error = json!({"infobip": [{"api_key": 1234567, "sender": "1"}]});
    let (status, body) = sandbox
        .control("/_sandbox/accounts", &secret_in_error)
        .await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("infobip[0].api_key") && !error.contains("1234567"),
        "{error}"
    );
    let (status, _) = sandbox
        .control("/_sandbox/accounts", &json!({"whatsapp": []}))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unknown_routes_say_what_is_missing() {
    let sandbox = start_sandbox(None).await;
    let (status, body) = sandbox
        .infobip("/whatsapp/1/message/location", &json!({}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body["error"],
        "the sandbox does not implement POST /whatsapp/1/message/location"
    );
}

// ---- Media and interactive messages ----

#[tokio::test]
async fn media_and_interactive_bodies_are_accepted_in_each_providers_format() {
    let sandbox = start_sandbox(None).await;
    let envelope = |content: Value| json!({"from": IB_SENDER, "to": "447700900001", "messageId": uuid::Uuid::new_v4().to_string(), "content": content});
    for (path, content) in [
        (
            "/whatsapp/1/message/image",
            json!({"mediaUrl": "https://cdn.example.com/a.png", "caption": "x"}),
        ),
        (
            "/whatsapp/1/message/document",
            json!({"mediaUrl": "https://cdn.example.com/a.pdf", "filename": "a.pdf"}),
        ),
        (
            "/whatsapp/1/message/sticker",
            json!({"mediaUrl": "https://cdn.example.com/s.webp"}),
        ),
        (
            "/whatsapp/1/message/interactive/buttons",
            json!({"body": {"text": "?"},
            "action": {"buttons": [{"type": "REPLY", "id": "a", "title": "A"}]}}),
        ),
        (
            "/whatsapp/1/message/interactive/list",
            json!({"body": {"text": "?"},
            "action": {"title": "See", "sections": [{"rows": [{"id": "r", "title": "R"}]}]}}),
        ),
    ] {
        let (status, answer) = sandbox.infobip(path, &envelope(content)).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    for body in [
        json!({"type": "video", "video": {"link": "https://cdn.example.com/v.mp4", "caption": "x"}}),
        json!({"type": "audio", "audio": {"id": "123"}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}),
    ] {
        let mut message = meta_text("447700900001");
        let object = message.as_object_mut().unwrap();
        object.remove("text");
        object.extend(body.as_object().unwrap().clone());
        let (status, answer) = sandbox.meta(&message).await;
        assert_eq!(status, 200, "{message}: {answer}");
    }
    let image = [
        ("To", "whatsapp:+447700900001"),
        ("From", TW_SENDER),
        ("MediaUrl", "https://cdn.example.com/a.png"),
        ("Body", "x"),
    ];
    assert_eq!(sandbox.twilio(&image).await.0, 201);
}

#[tokio::test]
async fn unknown_or_oversized_media_and_interactive_shapes_get_the_providers_error() {
    let sandbox = start_sandbox(None).await;
    let envelope = |content: Value| json!({"from": IB_SENDER, "to": "447700900001", "messageId": uuid::Uuid::new_v4().to_string(), "content": content});
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"type": "REPLY", "id": format!("b{i}"), "title": format!("B{i}")}))
        .collect();
    for (path, content, property) in [
        (
            "/whatsapp/1/message/audio",
            json!({"mediaUrl": "https://cdn.example.com/a.ogg", "caption": "x"}),
            "content.caption",
        ),
        (
            "/whatsapp/1/message/image",
            json!({"mediaUrl": "ftp://cdn.example.com/a.png"}),
            "content.mediaUrl",
        ),
        (
            "/whatsapp/1/message/interactive/buttons",
            json!({"body": {"text": "?"}, "action": {"buttons": four}}),
            "content.action.buttons",
        ),
        (
            "/whatsapp/1/message/interactive/list",
            json!({"body": {"text": "?"}, "header": {"type": "IMAGE", "mediaUrl": "https://cdn.example.com/a.png"},
            "action": {"title": "See", "sections": [{"rows": [{"id": "r", "title": "R"}]}]}}),
            "content.header.type",
        ),
    ] {
        let (status, answer) = sandbox.infobip(path, &envelope(content)).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["errorCode"], "E400");
        let properties: Vec<&str> = answer["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["property"].as_str())
            .collect();
        assert!(properties.contains(&property), "{path}: {answer}");
    }
    for (body, parameter) in [
        (
            json!({"type": "image", "image": {"link": "https://cdn.example.com/a.png", "filename": "a.png"}}),
            "image['filename']",
        ),
        (
            json!({"type": "sticker", "sticker": {"link": "https://cdn.example.com/s.webp", "id": "1"}}),
            "sticker",
        ),
        (
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A title that is too long"}}]}}}),
            "interactive['action']['buttons'][0]['reply']['title']",
        ),
        (
            json!({"type": "interactive", "interactive": {"type": "carousel", "body": {"text": "?"}, "action": {}}}),
            "interactive['type']",
        ),
    ] {
        let mut message = meta_text("447700900001");
        let object = message.as_object_mut().unwrap();
        object.remove("text");
        object.extend(body.as_object().unwrap().clone());
        let (status, answer) = sandbox.meta(&message).await;
        assert_eq!(status, 400, "{message}: {answer}");
        assert_eq!(answer["error"]["code"], 100);
        let details = answer["error"]["error_data"]["details"].as_str().unwrap();
        assert!(
            details.contains(parameter),
            "{details} should name {parameter}"
        );
    }
    let bad_media = [
        ("To", "whatsapp:+447700900001"),
        ("From", TW_SENDER),
        ("MediaUrl", "not a url"),
    ];
    let (status, answer) = sandbox.twilio(&bad_media).await;
    assert_eq!(
        (status, answer["code"].as_u64()),
        (400, Some(21620)),
        "{answer}"
    );
    let bad_variables = [
        ("To", "whatsapp:+447700900001"),
        ("From", TW_SENDER),
        ("ContentSid", TW_CONTENT),
        ("ContentVariables", "[1]"),
    ];
    let (status, answer) = sandbox.twilio(&bad_variables).await;
    assert_eq!(
        (status, answer["code"].as_u64()),
        (400, Some(21656)),
        "{answer}"
    );
    // A media message to a closed window is refused like text.
    let mut closed = meta_text(META_CLOSED);
    closed.as_object_mut().unwrap().remove("text");
    closed["type"] = json!("image");
    closed["image"] = json!({"link": "https://cdn.example.com/a.png"});
    assert_eq!(sandbox.meta(&closed).await.1["error"]["code"], 131047);
}
