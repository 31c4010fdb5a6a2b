//! An engine per test, in this process, on a loopback port, over a fresh database.

use crate::common::{TestDb, fresh_db};
use base64::Engine as _;
use flomastr::engine::config::EngineArgs;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

pub struct TestEngine {
    pub url: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    /// The engine's state, for tests that watch its internals.
    pub state: flomastr::engine::state::AppState,
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The master key every test engine seals secrets with.
pub fn master_key() -> String {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    format!("test-key:{key}")
}

/// The engine's settings for a test database: its own login, and the query login.
pub fn args(db: &TestDb) -> EngineArgs {
    EngineArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        nl_query_database_url: Some(db.nl_query_url.clone()),
        nl_query_per_tenant: 2,
        nl_query_connections: 8,
        admin_token: ADMIN_TOKEN.to_owned(),
        master_key: master_key(),
        no_migrate: false,
        body_limit: 64 * 1024,
        lease_seconds: 30,
        max_wait_seconds: 10,
        retention_seconds: 3600,
        dead_retention_seconds: 3600,
        public_url: None,
        db_connections: 8,
        shutdown_grace_seconds: 5,
        sender_rate: 80.0,
        sender_burst: 80.0,
        recipient_burst: 10.0,
        recipient_interval_ms: 6000,
        send_timeout_seconds: 5,
        max_send_attempts: 8,
        // The AI tests' dead provider (tests/integration/ai_pulse.rs): allowed as a base URL, but
        // no private network is, so its sends end at once as `destination_refused`. Tests with a
        // sandbox allow its origin and 127.0.0.1/32 themselves (`allow_sandbox`).
        provider_base_url_allow: vec!["infobip=http://127.0.0.1:9".to_owned()],
        provider_private_networks: Vec::new(),
        tenant_send_concurrency: 16,
        meta_api_version: "v21.0".to_owned(),
        meta_app_secret: None,
        meta_verify_token: None,
        embedder: flomastr::engine::config::EmbedderKind::Local,
        embed_model_dir: None,
        embed_concurrency: 1,
        embed_batch: 16,
        embed_tenant_queue: 4096,
        openai_base_url: None,
        openai_api_key: None,
        chat_model: None,
        openai_embedding_model: "text-embedding-3-small".to_owned(),
        ai_timeout_seconds: 10,
        server: Default::default(),
        media: Default::default(),
    }
}

/// Lets every provider's channels use `origin` (a local sandbox) and sends reach loopback.
pub fn allow_sandbox(args: &mut EngineArgs, origin: &str) {
    for provider in ["infobip", "meta", "twilio"] {
        args.provider_base_url_allow
            .push(format!("{provider}={origin}"));
    }
    args.provider_private_networks
        .push("127.0.0.1/32".to_owned());
}

pub async fn start_engine() -> TestEngine {
    start_engine_with(|_| {}).await
}

pub async fn start_engine_with(adjust: impl FnOnce(&mut EngineArgs)) -> TestEngine {
    start_engine_on(false, adjust).await
}

/// An engine that knows its own URL as its public URL, so providers' reports find their way back.
pub async fn start_engine_public(adjust: impl FnOnce(&mut EngineArgs)) -> TestEngine {
    start_engine_on(true, adjust).await
}

async fn start_engine_on(public: bool, adjust: impl FnOnce(&mut EngineArgs)) -> TestEngine {
    start_engine_bound("127.0.0.1", public, adjust).await
}

/// An engine listening on `address` (pods on the test node reach the host on its bridge
/// address, not on loopback), on a port of its own.
pub async fn start_engine_bound(
    address: &str,
    public: bool,
    adjust: impl FnOnce(&mut EngineArgs),
) -> TestEngine {
    let db = fresh_db().await;
    let mut args = args(&db);
    let listener = tokio::net::TcpListener::bind((address, 0)).await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    if public {
        args.public_url = Some(format!("http://{address}"));
    }
    adjust(&mut args);
    let shutdown = CancellationToken::new();
    let state = flomastr::engine::build(&args, shutdown.clone())
        .await
        .expect("engine starts");
    let settings = state.settings.server.clone();
    let app = flomastr::engine::router(state.clone());
    tokio::spawn(flomastr::engine::server::serve(
        listener,
        app,
        settings,
        shutdown.clone(),
    ));
    TestEngine {
        url: format!("http://{address}"),
        db,
        http: reqwest::Client::new(),
        shutdown,
        state,
    }
}

/// A tenant's credentials as a test knows them.
#[derive(Clone)]
pub struct TestTenant {
    pub slug: String,
    pub worker_token: String,
    pub webhook_secret: String,
    pub sender: String,
    pub app_secret: String,
    pub auth_token: String,
    pub account_sid: String,
    /// The body it was registered with (PUT it again, changed, to update the tenant).
    pub registration: Value,
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

impl TestEngine {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn admin_put(&self, slug: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.at(&format!("/admin/tenants/{slug}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `GET /admin/tenants/{slug}` with the admin token.
    pub async fn admin_get(&self, slug: &str) -> reqwest::Response {
        self.http
            .get(self.at(&format!("/admin/tenants/{slug}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Registers a tenant with a channel of `provider` ("infobip", "meta" or "twilio").
    pub async fn tenant(&self, slug: &str, provider: &str) -> TestTenant {
        self.tenant_with(slug, provider, json!({})).await
    }

    /// A sender of `provider` no tenant of this engine holds yet (a sender belongs to one
    /// tenant): the provider's documentation number for the first, numbers beside it after.
    pub async fn free_sender(&self, provider: &str) -> String {
        let taken: i64 = sqlx::query_scalar("SELECT count(*) FROM channels WHERE provider = $1")
            .bind(provider)
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
        match (provider, taken) {
            ("meta", 0) => "106540352242922".to_owned(),
            ("meta", n) => format!("1065403522{:05}", 42922 + n),
            ("twilio", 0) => "whatsapp:+14155238886".to_owned(),
            ("twilio", n) => format!("whatsapp:+1415523{:04}", 8886 + n),
            (_, 0) => "441134960000".to_owned(),
            (_, n) => format!("4411349{:05}", 60000 + n),
        }
    }

    pub async fn tenant_with(&self, slug: &str, provider: &str, extra: Value) -> TestTenant {
        let t = TestTenant {
            slug: slug.to_owned(),
            worker_token: format!("worker-{slug}-{}", uuid::Uuid::new_v4()),
            webhook_secret: format!("hook-{}", uuid::Uuid::new_v4()),
            sender: self.free_sender(provider).await,
            app_secret: format!("app-{}", uuid::Uuid::new_v4()),
            auth_token: format!("auth-{}", uuid::Uuid::new_v4().simple()),
            account_sid: "AC00000000000000000000000000000001".to_owned(),
            registration: Value::Null,
        };
        let mut body = json!({
            "display_name": format!("Tenant {slug}"),
            "worker_token_sha256": [sha256_hex(&t.worker_token)],
            "webhook_secret": t.webhook_secret,
            "channel": {
                "provider": provider,
                "sender": t.sender,
                "credentials": {
                    "api_key": "ib-api-key-secret",
                    "webhook_secret": t.webhook_secret,
                    "app_secret": t.app_secret,
                    "verify_token": "verify-me",
                    "access_token": "meta-access-token-secret",
                    "account_sid": t.account_sid,
                    "auth_token": t.auth_token,
                }
            }
        });
        if let Some(base_url) = extra.get("channel_base_url") {
            body["channel"]["base_url"] = base_url.clone();
        }
        if let (Some(target), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra.iter().filter(|(k, _)| *k != "channel_base_url") {
                target.insert(k.clone(), v.clone());
            }
        }
        let response = self.admin_put(slug, &body).await;
        assert!(
            response.status().is_success(),
            "tenant registration: {}",
            response.text().await.unwrap()
        );
        TestTenant {
            registration: body,
            ..t
        }
    }

    /// The seed's inbound webhook.
    pub async fn seed(
        &self,
        tenant: &TestTenant,
        from: &str,
        message: &str,
        timestamp: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.at("/webhook/inbound"))
            .header("x-webhook-secret", &tenant.webhook_secret)
            .json(&json!({"from": from, "message": message, "tenant_id": tenant.slug, "timestamp": timestamp}))
            .send()
            .await
            .unwrap()
    }

    /// The engine's id of a registered tenant.
    pub async fn tenant_uuid(&self, tenant: &TestTenant) -> uuid::Uuid {
        sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
            .bind(&tenant.slug)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub async fn next_job(&self, tenant: &TestTenant, wait: f64) -> Option<Value> {
        let response = self
            .http
            .get(self.at(&format!("/queue/next-job?wait={wait}")))
            .bearer_auth(&tenant.worker_token)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => Some(response.json().await.unwrap()),
            204 => None,
            other => panic!(
                "next-job answered {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }

    pub async fn job_call(
        &self,
        tenant: &TestTenant,
        job: &Value,
        action: &str,
        body: Value,
    ) -> reqwest::Response {
        let id = job["job_id"].as_str().unwrap();
        self.http
            .post(self.at(&format!("/queue/jobs/{id}/{action}")))
            .bearer_auth(&tenant.worker_token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn complete(&self, tenant: &TestTenant, job: &Value) -> reqwest::Response {
        self.job_call(
            tenant,
            job,
            "complete",
            json!({"lease_token": job["lease_token"]}),
        )
        .await
    }

    pub async fn send(
        &self,
        tenant: &TestTenant,
        key: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.at("/messages/send"))
            .bearer_auth(&tenant.worker_token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    pub async fn message(&self, tenant: &TestTenant, id: &str) -> reqwest::Response {
        self.http
            .get(self.at(&format!("/messages/{id}")))
            .bearer_auth(&tenant.worker_token)
            .send()
            .await
            .unwrap()
    }

    pub async fn count_jobs(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}
