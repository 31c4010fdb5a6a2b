//! Operator benchmark: 1,000 Tenants applied at once against a real kube-apiserver + etcd, a
//! running engine and PostgreSQL. Reports the time until every Tenant has all its children and
//! its status written, the operator's peak RSS, and how many objects a no-op resync rewrites.
//!
//! Run with `bench/run-operator` (or `cargo bench --bench operator`); the table goes to stdout
//! and `target/bench/operator.md`.

use base64::Engine as _;
use flomastr::tenant::Tenant;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin-token-0123456789";

fn script(name: &str, verb: &str, dir: &std::path::Path) -> HashMap<String, String> {
    let out = Command::new(format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR")))
        .arg(verb)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

struct Stack {
    dir: std::path::PathBuf,
    children: Vec<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(format!("{}/scripts/apiserver", env!("CARGO_MANIFEST_DIR")))
            .arg("stop")
            .arg(self.dir.join("kube"))
            .output();
        let _ = Command::new(format!("{}/scripts/postgres", env!("CARGO_MANIFEST_DIR")))
            .arg("stop")
            .arg(self.dir.join("pg"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let count: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(count));
}

async fn run(count: usize) {
    let dir = std::env::temp_dir().join(format!("flomastr-opbench-{}", std::process::id()));
    let mut stack = Stack {
        dir: dir.clone(),
        children: Vec::new(),
    };
    let pg = script("postgres", "start", &dir.join("pg"));
    let kube_env = script("apiserver", "start", &dir.join("kube"));
    let kubeconfig = kube_env["FLOMASTR_TEST_KUBECONFIG"].clone();
    let binary = env!("CARGO_BIN_EXE_flomastr");
    let engine_port = free_port();
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    stack.children.push(
        Command::new(binary)
            .arg("engine")
            .env("DATABASE_URL", &pg["FLOMASTR_PG_URL"])
            .env("FLOMASTR_LISTEN", format!("127.0.0.1:{engine_port}"))
            .env("FLOMASTR_ADMIN_TOKEN", ADMIN)
            .env("FLOMASTR_MASTER_KEY", format!("b:{key}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    flomastr::tenant::install_crd(
        &client,
        &<flomastr::tenant::Tenant as kube::CustomResourceExt>::crd(),
        "bench",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["flomastr-system", "flomastr-credentials"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
    }
    // Each tenant's credentials, labelled as its own (the operator uses no other).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "flomastr-credentials");
    futures::stream::iter(0..count)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("t{i:04}-ib"), "labels": {"flomastr.io/tenant": format!("t{i:04}")}},
                    "stringData": {"apiKey": "k", "webhookSecret": "s"}
                }))
                .unwrap();
                secrets.create(&PostParams::default(), &secret).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;

    let metrics_url = format!("http://127.0.0.1:{}/metrics", free_port());
    let operator = Command::new(binary)
        .arg("operator")
        .env("KUBECONFIG", &kubeconfig)
        .env("FLOMASTR_BASE_DOMAIN", "bench.test")
        .env(
            "FLOMASTR_ENGINE_URL",
            format!("http://127.0.0.1:{engine_port}"),
        )
        .env("FLOMASTR_ADMIN_TOKEN", ADMIN)
        .env("FLOMASTR_NO_LEADER_ELECTION", "true")
        .env(
            "FLOMASTR_METRICS_LISTEN",
            metrics_url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics"),
        )
        .env("FLOMASTR_RESYNC_SECONDS", "60")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let operator_pid = operator.id();
    stack.children.push(operator);

    let tenants: Api<Tenant> = Api::all(client.clone());
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let tenants = tenants.clone();
            async move {
                let tenant: Tenant = serde_json::from_value(json!({
                    "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "metadata": {"name": format!("t{i:04}")},
                    "spec": {"displayName": format!("Tenant {i}"),
                             "whatsapp": {"provider": "Infobip", "sender": format!("4411349{i:05}"), "credentialsSecretRef": {"name": format!("t{i:04}-ib"), "namespace": "flomastr-credentials"}}}
                }))
                .unwrap();
                tenants.create(&PostParams::default(), &tenant).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let applied = Instant::now();
    let registered = |list: &[Tenant]| {
        list.iter()
            .filter(|t| {
                t.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "EngineRegistered" && c.status == "True")
                })
            })
            .count()
    };
    // Served from the API server's watch cache, and not too often: polling must not be the load.
    let cached = ListParams::default().match_any();
    loop {
        let list = tenants.list(&cached).await.unwrap().items;
        if registered(&list) >= count || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let converged = started.elapsed();
    let first_writes = api_writes(&metrics_url).await;

    // Mark every n8n available, wait for Ready, then measure what a resync rewrites.
    let deployments: Api<Deployment> = Api::all(client.clone());
    let list = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=flomastr-operator"))
        .await
        .unwrap()
        .items;
    futures::stream::iter(list)
        .map(|d| {
            let client = client.clone();
            async move {
                let api: Api<Deployment> =
                    Api::namespaced(client, d.metadata.namespace.as_deref().unwrap());
                let status =
                    json!({"status": {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1}});
                api.patch_status("n8n", &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let ready = |list: &[Tenant]| {
        list.iter()
            .filter(|t| {
                t.status.as_ref().and_then(|s| s.phase)
                    == Some(flomastr::tenant::TenantPhase::Ready)
            })
            .count()
    };
    let ready_deadline = Instant::now() + Duration::from_secs(300);
    while ready(&tenants.list(&cached).await.unwrap().items) < count
        && Instant::now() < ready_deadline
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let versions = |objects: Vec<(String, String)>| objects.into_iter().collect::<HashMap<_, _>>();
    let snapshot = || async {
        let mut all = Vec::new();
        for t in tenants.list(&ListParams::default()).await.unwrap().items {
            all.push((
                format!("tenant/{}", t.metadata.name.unwrap()),
                t.metadata.resource_version.unwrap(),
            ));
        }
        for d in deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
        {
            all.push((
                format!("deploy/{}", d.metadata.namespace.unwrap()),
                d.metadata.resource_version.unwrap(),
            ));
        }
        for n in namespaces.list(&ListParams::default()).await.unwrap().items {
            all.push((
                format!("ns/{}", n.metadata.name.unwrap()),
                n.metadata.resource_version.unwrap(),
            ));
        }
        versions(all)
    };
    let before = snapshot().await;
    let writes_before = api_writes(&metrics_url).await;
    // More than one resync period (60 s): every Tenant is reconciled again at least once.
    tokio::time::sleep(Duration::from_secs(75)).await;
    let after = snapshot().await;
    let resync_writes = api_writes(&metrics_url).await - writes_before;
    let rewritten = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .count();
    let rss = peak_rss_mib(operator_pid);
    let table = format!(
        "| benchmark | result | target |\n|---|---|---|\n\
         | {count} Tenants applied at once -> every child applied and status written | {:.1} s ({:.1} s to create them) | <= 30 s |\n\
         | operator peak RSS (VmHWM) | {rss:.0} MiB | <= 64 MiB |\n\
         | objects rewritten by a no-op resync ({} Tenants, Deployments, Namespaces watched over 75 s) | {rewritten} | 0 |\n\
         | API writes (post/put/patch/delete) per Tenant until registered, the operator's own count | {:.1} | as few as the design allows |\n\
         | API writes by the operator during the no-op resync (75 s) | {resync_writes:.0} | 0 |\n",
        converged.as_secs_f64(),
        (applied - started).as_secs_f64(),
        before.len(),
        first_writes / count as f64,
    );
    println!("\n{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("operator.md"), table).unwrap();
}

/// The operator's API writes so far: its `flomastr_operator_api_requests_total` for the verbs that
/// write.
async fn api_writes(metrics_url: &str) -> f64 {
    let text = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("flomastr_operator_api_requests_total{verb=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .filter(|(verb, _)| matches!(*verb, "post" | "put" | "patch" | "delete"))
        .map(|(_, value)| value.trim().parse::<f64>().unwrap())
        .sum()
}
