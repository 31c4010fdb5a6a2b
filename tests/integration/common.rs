//! The real test ground: one PostgreSQL server and one kube-apiserver per test run, started by
//! `scripts/test` and handed over through environment variables. Tests never start their own:
//! a missing variable is a failure, never a skip (a skipped suite looks green).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
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

/// A database of its own for one test, migrated to the current schema.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
}

pub async fn fresh_db() -> TestDb {
    let db = empty_db().await;
    flomastr::db::migrate(&db.pool)
        .await
        .expect("migrations apply");
    db
}

/// A new database with nothing in it (not even the migrations).
pub async fn empty_db() -> TestDb {
    let admin_url = require_env(PG_URL_VAR);
    let admin = PgPool::connect(&admin_url)
        .await
        .expect("connect to the test server");
    let name = unique("test").replace('-', "_");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let options = PgConnectOptions::from_str(&admin_url)
        .unwrap()
        .database(&name);
    let url = database_url(&admin_url, &name);
    let pool = PgPool::connect_with(options)
        .await
        .expect("connect to test database");
    TestDb { pool, url }
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
