//! The real test ground: one PostgreSQL server and one kube-apiserver per test run, started by
//! `scripts/test` and handed over through environment variables. Tests never start their own:
//! a missing variable is a failure, never a skip (a skipped suite looks green).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use sha2::Digest;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::OnceCell;

pub const PG_URL_VAR: &str = "FLOMASTR_PG_URL";
pub const KUBECONFIG_VAR: &str = "FLOMASTR_TEST_KUBECONFIG";

pub fn require_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts PostgreSQL and the API server")
    })
}

/// A short random suffix so names never collide between tests or runs.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

/// The logins every test database is set up for, as in production: the engine's own (owner of
/// the database, not a superuser) and the natural-language query login.
pub const ENGINE_ROLE: &str = "flomastr_test_engine";
pub const NL_QUERY_ROLE: &str = "flomastr_test_nlq";

/// A database of its own for one test.
pub struct TestDb {
    /// The administrator (a superuser) on this database: for what a test arranges or inspects
    /// behind the engine's back. The engine itself never gets this login.
    pub pool: PgPool,
    /// The engine's login on this database (what `DATABASE_URL` is in production).
    pub url: String,
    /// The natural-language query login on this database.
    pub nl_query_url: String,
    /// The administrator's URL of this database.
    pub admin_url: String,
}

/// A new database set up by `flomastr migrate --admin-url`'s privileged steps and migrated by
/// the engine's login.
pub async fn fresh_db() -> TestDb {
    let db = empty_db().await;
    let engine = PgPool::connect(&db.url)
        .await
        .expect("the engine's login connects");
    flomastr::db::migrate(&engine)
        .await
        .expect("migrations apply as the engine's login");
    engine.close().await;
    db
}

/// A database with the privileged set-up done and no migrations yet.
pub async fn empty_db() -> TestDb {
    let admin_url = require_env(PG_URL_VAR);
    let name = unique("test").replace('-', "_");
    let url = login_url(&admin_url, ENGINE_ROLE, &name);
    let nl_query_url = login_url(&admin_url, NL_QUERY_ROLE, &name);
    let plan = flomastr::db::bootstrap::Plan::from_urls(&url, Some(&nl_query_url)).unwrap();
    let mut server = PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test server");
    ROLES_READY
        .get_or_init(|| async {
            flomastr::db::bootstrap::ensure_roles(&mut server, &plan)
                .await
                .expect("the test logins are set up");
        })
        .await;
    flomastr::db::bootstrap::ensure_database(&mut server, &plan)
        .await
        .expect("create test database");
    server.close().await.ok();
    let options = PgConnectOptions::from_str(&admin_url)
        .unwrap()
        .database(&name);
    let mut conn = PgConnection::connect_with(&options).await.unwrap();
    flomastr::db::bootstrap::prepare_database(&mut conn, &plan)
        .await
        .expect("prepare test database");
    conn.close().await.ok();
    let pool = PgPool::connect_with(options)
        .await
        .expect("connect to test database");
    TestDb {
        pool,
        url,
        nl_query_url,
        admin_url: database_url(&admin_url, &name),
    }
}

static ROLES_READY: OnceCell<()> = OnceCell::const_new();

/// `role`'s URL for `database` on the test server. Passwords are derived from the
/// administrator's, so every process of a run agrees on them.
fn login_url(admin_url: &str, role: &str, database: &str) -> String {
    let password = hex::encode(&sha2::Sha256::digest(format!("{admin_url}\n{role}"))[..16]);
    let mut url = url::Url::parse(admin_url).expect("the test server URL parses");
    url.set_username(role).unwrap();
    url.set_password(Some(&password)).unwrap();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// The admin URL with its database path replaced.
fn database_url(admin_url: &str, database: &str) -> String {
    let (base, _) = admin_url.rsplit_once('/').expect("URL has a path");
    format!("{base}/{database}")
}

/// A client of the shared test API server, for one of the kubeconfig's contexts:
/// `admin`, `unprivileged` or `operator`.
pub async fn kube_client(context: &str) -> kube::Client {
    let path = require_env(KUBECONFIG_VAR);
    let kubeconfig = Kubeconfig::read_from(&path).expect("read the test kubeconfig");
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("kubeconfig is valid");
    kube::Client::try_from(config).expect("build a client")
}

pub async fn admin_client() -> kube::Client {
    kube_client("admin").await
}

static CRD_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Server-side applies `crds/tenant.yaml` (once per test process) and waits until it is Established.
pub async fn install_tenant_crd(client: &kube::Client) {
    CRD_INSTALLED
        .get_or_init(|| async {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/tenant.yaml");
            let yaml = std::fs::read_to_string(path).expect("crds/tenant.yaml exists");
            let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("CRD parses");
            flomastr::tenant::install_crd(client, &crd, "flomastr-tests", Duration::from_secs(30))
                .await
                .expect("the API server accepts and establishes the CRD");
        })
        .await;
}

static ROLLOUT_CRD_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Server-side applies `crds/tenantrollout.yaml` (once per test process), Established.
pub async fn install_rollout_crd(client: &kube::Client) {
    ROLLOUT_CRD_INSTALLED
        .get_or_init(|| async {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/tenantrollout.yaml");
            let yaml = std::fs::read_to_string(path).expect("crds/tenantrollout.yaml exists");
            let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("CRD parses");
            flomastr::tenant::install_crd(client, &crd, "flomastr-tests", Duration::from_secs(30))
                .await
                .expect("the API server accepts and establishes the rollout CRD");
        })
        .await;
}

/// Polls `check` every 250 ms until it yields, for at most `limit` (pods and n8n take seconds
/// to minutes on the test node).
pub async fn within<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `check` until it yields, for at most 30 s.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `kubectl` against the shared test API server as its admin, awaited (a controller running on
/// the test's runtime goes on meanwhile): the output, and stdout with stderr as one text.
pub async fn kubectl(args: &[&str]) -> (std::process::Output, String) {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(require_env(KUBECONFIG_VAR))
        .args(args)
        .output()
        .await
        .expect("kubectl is installed (scripts/system-deps installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}
