//! The operator process as deployed (`flomastr operator`, its own Kubernetes client) counts the
//! requests it sends to the API server by verb: the writes a Tenant's first reconcile costs are
//! measured, and a Tenant left alone costs no further writes.

use crate::common::{
    KUBECONFIG_VAR, admin_client, eventually, install_tenant_crd, require_env, unique,
};
use crate::engine_harness::{ADMIN_TOKEN, start_engine};
use crate::operator::{
    CREDENTIALS_NAMESPACE, OPERATOR_NAMESPACE, create_tenant, credentials, ensure_namespace,
};
use flomastr::tenant::Tenant;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The operator's count of requests with `verbs` so far.
async fn requests(metrics_url: &str, verbs: &[&str]) -> Option<u64> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.strip_prefix("flomastr_operator_api_requests_total{verb=\""))
            .filter_map(|rest| rest.split_once("\"} "))
            .filter(|(verb, _)| verbs.contains(verb))
            .map(|(_, value)| value.trim().parse::<u64>().unwrap())
            .sum(),
    )
}

const WRITES: &[&str] = &["post", "put", "patch", "delete"];

#[tokio::test]
async fn the_operator_counts_its_api_writes_and_a_settled_tenant_costs_none() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    ensure_namespace(&admin, OPERATOR_NAMESPACE).await;
    ensure_namespace(&admin, CREDENTIALS_NAMESPACE).await;
    let engine = start_engine().await;
    let slug = unique("writes");
    let selector = format!("flomastr.io/writes-test={slug}");
    let metrics_url = format!("http://127.0.0.1:{}/metrics", free_port());
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .arg("operator")
        .env("KUBECONFIG", require_env(KUBECONFIG_VAR))
        .env("FLOMASTR_BASE_DOMAIN", "example.test")
        .env("FLOMASTR_ENGINE_URL", &engine.url)
        .env("FLOMASTR_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("FLOMASTR_NO_LEADER_ELECTION", "true")
        .env("FLOMASTR_CREDENTIALS_NAMESPACE", CREDENTIALS_NAMESPACE)
        .env("FLOMASTR_TENANT_SELECTOR", &selector)
        .env(
            "FLOMASTR_METRICS_LISTEN",
            metrics_url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics"),
        )
        .env(
            "RUST_LOG",
            std::env::var("FLOMASTR_TEST_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let reads = eventually("the operator serves its metrics", async || {
        requests(&metrics_url, &["get"])
            .await
            .filter(|gets| *gets > 0)
    })
    .await;
    assert!(reads >= 1, "the CRD check is a counted read");
    let idle_writes = requests(&metrics_url, WRITES).await.unwrap();

    credentials(&admin, &slug).await;
    create_tenant(&admin, &slug, json!({})).await;
    let tenants: Api<Tenant> = Api::all(admin.clone());
    let labels = json!({"metadata": {"labels": {"flomastr.io/writes-test": slug}}});
    tenants
        .patch(&slug, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();
    eventually("the tenant is registered with the engine", async || {
        let tenant = tenants.get(&slug).await.ok()?;
        tenant
            .status?
            .conditions
            .iter()
            .any(|c| c.type_ == "EngineRegistered" && c.status == "True")
            .then_some(())
    })
    .await;
    let first = settled_writes(&metrics_url).await - idle_writes;
    eprintln!("API writes for one Tenant's first reconciles: {first}");
    assert!(
        first >= 5,
        "a namespace, n8n, secrets and status at least: {first}"
    );

    // Reconciling a settled Tenant again (an annotation touched) writes nothing: every child
    // and the status are as they should be.
    let before = requests(&metrics_url, WRITES).await.unwrap();
    let reads_before = requests(&metrics_url, &["get"]).await.unwrap();
    let nudge = json!({"metadata": {"annotations": {"flomastr.io/nudge": "1"}}});
    tenants
        .patch(&slug, &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
    let again = settled_writes(&metrics_url).await - before;
    let reads = requests(&metrics_url, &["get"]).await.unwrap() - reads_before;
    eprintln!("API writes for a reconcile of the settled Tenant: {again} (reads {reads})");
    assert_eq!(again, 0, "a no-op reconcile writes nothing");
    let _ = operator.start_kill();
    let _ = operator.wait().await;
}

/// The operator's write count once it stops moving (the controller's debounce is 2 s).
async fn settled_writes(metrics_url: &str) -> u64 {
    let mut writes = requests(metrics_url, WRITES).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let now = requests(metrics_url, WRITES).await.unwrap();
        if now == writes {
            return writes;
        }
        writes = now;
    }
}
