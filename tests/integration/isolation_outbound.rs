//! Tenant isolation on the send path (issue 11, findings 3 and 6): a tenant's provider base URL
//! cannot point the engine at anything the platform did not allow (tricks in the URL, loopback,
//! private and link-local addresses before and after DNS, redirects), a provider's error text is
//! stored bounded, and a tenant whose provider hangs does not delay another tenant's sends.
//! Real engine, real PostgreSQL, local servers on loopback.

use crate::common::eventually;
use crate::engine_harness::{TestEngine, TestTenant, start_engine_with};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flomastr::sandbox::{Accounts, Knobs, SandboxConfig, SandboxState};
use futures::StreamExt as _;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a local HTTP server answers to every request.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
}

/// A request as a local server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// A local server that records every request and answers them all the same.
struct Recorder {
    url: String,
    seen: SeenLog,
}

impl Recorder {
    async fn start(answer: Answer) -> Self {
        let seen: SeenLog = Arc::default();
        let state = (answer, seen.clone());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(Arc::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

async fn record(State(state): State<Arc<(Answer, SeenLog)>>, request: Request) -> Response {
    let (answer, seen) = &*state;
    seen.lock().unwrap().push(Seen {
        path: request.uri().to_string(),
        authorization: request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default().to_owned()),
    });
    let mut headers = HeaderMap::new();
    for (name, value) in &answer.headers {
        headers.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    (answer.status, headers, answer.body.clone()).into_response()
}

fn ok_answer() -> Answer {
    Answer {
        status: StatusCode::OK,
        headers: vec![("content-type", "application/json".to_owned())],
        body: json!({"messageId": "x", "status": {"groupName": "PENDING"}}).to_string(),
    }
}

/// A template send: no 24-hour window needed.
fn template_to(recipient: &str) -> Value {
    json!({"to": recipient, "template": {"name": "order_ready", "language": "en", "params": ["42"]}})
}

async fn send(engine: &TestEngine, tenant: &TestTenant, body: Value) -> String {
    let response = engine.send(tenant, None, body).await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    accepted["message_id"].as_str().unwrap().to_owned()
}

/// The message once it has failed (it must fail, and not after a retry storm).
async fn failed(engine: &TestEngine, tenant: &TestTenant, id: &str) -> Value {
    eventually("the send fails", || async {
        let view: Value = engine.message(tenant, id).await.json().await.unwrap();
        (view["status"] == "failed").then_some(view)
    })
    .await
}

async fn rows(engine: &TestEngine, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

fn registration(provider: &str, base_url: &str) -> Value {
    json!({"display_name": "Mallory", "channel": {"provider": provider, "sender": "441134960000",
           "base_url": base_url, "credentials": {"api_key": "tenant-api-key"}}})
}

#[tokio::test]
async fn base_urls_off_the_allow_list_or_with_url_tricks_are_refused_and_nothing_is_written() {
    let target = Recorder::start(ok_answer()).await;
    let port = target.port();
    let allowed = format!("http://127.0.0.1:{port}");
    let engine = start_engine_with(|args| {
        args.provider_base_url_allow = vec![format!("infobip={allowed}")];
        args.provider_private_networks = vec!["127.0.0.1/32".to_owned()];
    })
    .await;
    let refused = [
        ("infobip", format!("{allowed}/caddy/stop#")),
        ("infobip", format!("{allowed}#")),
        ("infobip", format!("{allowed}/?next=/load")),
        ("infobip", format!("{allowed}/config/")),
        ("infobip", format!("http://admin:pw@127.0.0.1:{port}")),
        (
            "infobip",
            format!("http://api.infobip.com@127.0.0.1:{port}"),
        ),
        ("infobip", format!("http://localhost:{port}")),
        ("infobip", format!("http://127.0.0.1:{}", port ^ 1)),
        ("infobip", format!("http://127.0.0.2:{port}")),
        ("infobip", format!("http://[::1]:{port}")),
        ("infobip", format!("http://[::ffff:127.0.0.1]:{port}")),
        ("infobip", "http://10.0.0.1".to_owned()),
        ("infobip", "http://192.168.1.1:2019".to_owned()),
        ("infobip", "http://169.254.169.254".to_owned()),
        ("infobip", "http://100.64.0.1".to_owned()),
        ("infobip", "http://api.infobip.com".to_owned()),
        ("infobip", "https://api.infobip.com.evil.example".to_owned()),
        ("infobip", "https://x.y.api.infobip.com".to_owned()),
        ("meta", allowed.clone()),
        ("meta", "https://graph.facebook.com/v21.0".to_owned()),
        ("twilio", "https://api.twilio.com:8443".to_owned()),
    ];
    for (provider, url) in &refused {
        let response = engine
            .admin_put("mallory", &registration(provider, url))
            .await;
        assert_eq!(response.status(), 400, "{provider} {url}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_body");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("channel.base_url: "),
            "{provider} {url}: {error}"
        );
    }
    assert_eq!(rows(&engine, "tenants").await, 0, "nothing written");
    assert_eq!(rows(&engine, "channels").await, 0, "nothing written");

    // What is allowed is stored as its origin; a refused update leaves it as it was.
    let created = engine
        .admin_put("mallory", &registration("infobip", &format!("{allowed}/")))
        .await;
    assert_eq!(created.status(), 201);
    let view: Value = created.json().await.unwrap();
    assert_eq!(view["channel"]["base_url"], allowed.as_str());
    let update = engine
        .admin_put(
            "mallory",
            &registration("infobip", &format!("{allowed}/x#")),
        )
        .await;
    assert_eq!(update.status(), 400);
    let stored: String = sqlx::query_scalar("SELECT base_url FROM channels")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, allowed);
    for (provider, url) in [
        ("infobip", "https://abc12.api.infobip.com"),
        ("infobip", "https://api.infobip.com"),
        ("meta", "https://graph.facebook.com/"),
        ("twilio", "https://api.twilio.com"),
    ] {
        // A number of its own: mallory holds 441134960000.
        let mut body = registration(provider, url);
        body["channel"]["sender"] = json!("441134960001");
        let response = engine.admin_put("public", &body).await;
        assert!(response.status().is_success(), "{provider} {url}");
    }
    assert!(target.seen().is_empty(), "nothing reached the target");
}

#[tokio::test]
async fn loopback_destinations_are_refused_after_dns_and_as_literals_without_retries() {
    let target = Recorder::start(ok_answer()).await;
    let port = target.port();
    // The platform allows these origins, but no private network: the address check still holds.
    let engine = start_engine_with(|args| {
        args.provider_base_url_allow = vec![
            format!("infobip=http://localhost:{port}"),
            format!("meta=http://127.0.0.1:{port}"),
        ];
    })
    .await;
    let by_name = engine
        .tenant_with(
            "by-name",
            "infobip",
            json!({"channel_base_url": format!("http://localhost:{port}")}),
        )
        .await;
    let by_literal = engine
        .tenant_with(
            "by-literal",
            "meta",
            json!({"channel_base_url": format!("http://127.0.0.1:{port}")}),
        )
        .await;
    // A URL stored before the allow-list existed is checked again when it is used.
    let legacy = engine
        .tenant_with(
            "legacy",
            "infobip",
            json!({"channel_base_url": format!("http://localhost:{port}")}),
        )
        .await;
    sqlx::query("UPDATE channels SET base_url = $1 WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'legacy')")
        .bind(format!("http://127.0.0.1:{port}/caddy/stop#"))
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let reloaded = engine
        .http
        .get(engine.at("/admin/tenants/legacy"))
        .bearer_auth(crate::engine_harness::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200, "the admin view reloads the tenant");

    for tenant in [&by_name, &by_literal, &legacy] {
        let id = send(&engine, tenant, template_to("447700900001")).await;
        let view = failed(&engine, tenant, &id).await;
        assert_eq!(view["error_code"], "destination_refused", "{view}");
        assert_eq!(
            view["attempts"], 1,
            "a permanent failure, not retried: {view}"
        );
    }
    assert!(
        target.seen().is_empty(),
        "nothing reached loopback: {:?}",
        target.seen()
    );
}

#[tokio::test]
async fn redirects_are_not_followed_so_credentials_stay_with_the_provider() {
    let elsewhere = Recorder::start(ok_answer()).await;
    let redirecting = Recorder::start(Answer {
        status: StatusCode::TEMPORARY_REDIRECT,
        headers: vec![(
            "location",
            format!("{}/whatsapp/1/message/template", elsewhere.url),
        )],
        body: String::new(),
    })
    .await;
    let engine = start_engine_with(|args| {
        args.provider_base_url_allow = vec![format!("infobip={}", redirecting.url)];
        args.provider_private_networks = vec!["127.0.0.1/32".to_owned()];
    })
    .await;
    let tenant = engine
        .tenant_with(
            "redirected",
            "infobip",
            json!({"channel_base_url": redirecting.url}),
        )
        .await;
    let id = send(&engine, &tenant, template_to("447700900001")).await;
    let view = failed(&engine, &tenant, &id).await;
    assert_eq!(view["error_code"], "redirect_refused", "{view}");
    assert_eq!(view["attempts"], 1, "{view}");
    let asked = redirecting.seen();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].path, "/whatsapp/1/message/template");
    assert_eq!(
        asked[0].authorization.as_deref(),
        Some("App ib-api-key-secret")
    );
    assert!(
        elsewhere.seen().is_empty(),
        "the redirect target was called: {:?}",
        elsewhere.seen()
    );
}

#[tokio::test]
async fn a_providers_error_text_is_stored_bounded_and_without_control_characters() {
    let secret = "INTERNAL-ENDPOINT-BODY";
    let description = format!(
        "{}\r\n\u{1b}[2J\u{7}\u{202e}{secret}",
        "The provider says no. ".repeat(400)
    );
    let provider = Recorder::start(Answer {
        status: StatusCode::BAD_REQUEST,
        headers: vec![("content-type", "application/json".to_owned())],
        body:
            json!({"errorCode": format!("E400\n{}", "7".repeat(300)), "description": description})
                .to_string(),
    })
    .await;
    let engine = start_engine_with(|args| {
        args.provider_base_url_allow = vec![format!("infobip={}", provider.url)];
        args.provider_private_networks = vec!["127.0.0.1/32".to_owned()];
    })
    .await;
    let tenant = engine
        .tenant_with(
            "chatty",
            "infobip",
            json!({"channel_base_url": provider.url}),
        )
        .await;
    let id = send(&engine, &tenant, template_to("447700900001")).await;
    let view = failed(&engine, &tenant, &id).await;
    let code = view["error_code"].as_str().unwrap();
    let message = view["error_message"].as_str().unwrap();
    assert!(code.starts_with("E400777") && code.len() <= 64, "{code}");
    assert!(message.starts_with("The provider says no."), "{message}");
    assert!(message.chars().count() <= 256, "{}", message.len());
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert!(!message.contains(secret));
    let history = view["history"].to_string();
    assert!(!history.contains(secret), "{history}");
    assert!(history.len() < 2000, "{history}");
    assert_eq!(provider.seen().len(), 1);
}

/// A server that accepts connections and never answers, holding them open.
struct Hung {
    url: String,
    _connections: Arc<Mutex<Vec<tokio::net::TcpStream>>>,
}

async fn hung_server() -> Hung {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections: Arc<Mutex<Vec<tokio::net::TcpStream>>> = Arc::default();
    let held = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            held.lock().unwrap().push(stream);
        }
    });
    Hung {
        url,
        _connections: connections,
    }
}

async fn sandbox() -> (String, SandboxState) {
    let accounts = Accounts::from_json(
        &json!({"infobip": [{"api_key": "ib-api-key-secret", "sender": "441134960000"}]})
            .to_string(),
    )
    .unwrap();
    let knobs = Knobs {
        report_delay_ms: 3_600_000,
        ..Knobs::default()
    };
    let state = flomastr::sandbox::new_state(SandboxConfig { accounts, knobs });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = flomastr::sandbox::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, state)
}

/// Time from `POST /messages/send` until the sandbox has the message.
async fn delivery_time(
    engine: &TestEngine,
    tenant: &TestTenant,
    sandbox: &SandboxState,
    recipient: &str,
) -> Duration {
    let before = sandbox.requests().len();
    let started = Instant::now();
    send(engine, tenant, template_to(recipient)).await;
    eventually("the sandbox receives the send", || async {
        (sandbox.requests().len() > before).then_some(())
    })
    .await;
    started.elapsed()
}

async fn sending(engine: &TestEngine, slug: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbound_messages m JOIN tenants t ON t.id = m.tenant_id
         WHERE t.slug = $1 AND m.status = 'sending'",
    )
    .bind(slug)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_tenant_whose_provider_hangs_does_not_delay_another_tenants_send() {
    let hung = hung_server().await;
    let (sandbox_url, sandbox) = sandbox().await;
    let engine = start_engine_with(|args| {
        args.provider_base_url_allow = vec![
            format!("infobip={}", hung.url),
            format!("infobip={sandbox_url}"),
        ];
        args.provider_private_networks = vec!["127.0.0.1/32".to_owned()];
        args.tenant_send_concurrency = 16;
    })
    .await;
    let busy = engine
        .tenant_with("busy", "infobip", json!({"channel_base_url": hung.url}))
        .await;
    let quiet = engine
        .tenant_with("quiet", "infobip", json!({"channel_base_url": sandbox_url}))
        .await;

    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(delivery_time(&engine, &quiet, &sandbox, "447700900001").await);
    }
    idle.sort();
    let idle = idle[1];

    let posts = futures::stream::iter(0..400).map(|i| {
        let (engine, busy) = (&engine, &busy);
        async move { send(engine, busy, template_to(&format!("4477009{i:05}"))).await }
    });
    posts.buffer_unordered(16).collect::<Vec<_>>().await;
    // The busy tenant's provider now holds its sends; the rest of its backlog waits.
    eventually("the busy tenant's sends are in flight", || async {
        (sending(&engine, "busy").await >= 16).then_some(())
    })
    .await;

    let loaded = delivery_time(&engine, &quiet, &sandbox, "447700900001").await;
    let bound = (idle * 2).max(idle + Duration::from_secs(1));
    assert!(
        loaded <= bound,
        "the quiet tenant's send took {loaded:?} beside a hung provider (idle {idle:?}, bound {bound:?})"
    );
    let in_flight = sending(&engine, "busy").await;
    assert!(
        in_flight <= 16,
        "the busy tenant holds {in_flight} sends, more than its cap"
    );
}
