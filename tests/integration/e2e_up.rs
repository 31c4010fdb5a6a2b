//! End to end, as a new user meets it: `flomastr up` in the background (its own PostgreSQL,
//! engine, operator, sandbox) with the sample tenant's n8n a real pod on the node, served on
//! loopback → an InfoBip webhook → the shipped n8n workflow, run step by step, polls, answers
//! with synthesis, replies and completes → the sandbox receives the send → its delivery report
//! reaches the engine → the message is delivered and the job complete → SIGTERM tears
//! everything down.
//!
//! One node runs on a machine at a time and the test run's is up already: `flomastr up` runs on
//! the test run's API server and node (through `KUBECONFIG`, as against any cluster), with its
//! operator confined to its own Tenant. Started without `KUBECONFIG`, it starts its own.

use crate::common::{KUBECONFIG_VAR, admin_client, eventually, free_port, require_env, within};
use flomastr::tenant::Tenant;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STACK_ENV: &str = "stack.env";

/// Where pods reach the host, and the n8n image the test run imported into the node.
const HOST_IP_VAR: &str = "FLOMASTR_TEST_NODE_HOST_IP";
const N8N_IMAGE_VAR: &str = "FLOMASTR_TEST_IMAGE_N8N";

struct Up {
    child: Child,
    state: PathBuf,
}

impl Up {
    fn start(state: &Path, selector: &str) -> (Up, u16) {
        let engine_port = free_port();
        let log = std::fs::File::create(state.join("up.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flomastr"))
            .arg("up")
            .args(["--root", env!("CARGO_MANIFEST_DIR")])
            .arg("--state-dir")
            .arg(state)
            .args(["--engine-port", &engine_port.to_string()])
            .args(["--sandbox-port", &free_port().to_string()])
            .args(["--operator-port", &free_port().to_string()])
            .args(["--n8n-port", &free_port().to_string()])
            .args(["--node-host-ip", &require_env(HOST_IP_VAR)])
            .args(["--n8n-image", &require_env(N8N_IMAGE_VAR)])
            .args(["--tenant-selector", selector])
            .env("KUBECONFIG", require_env(KUBECONFIG_VAR))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start flomastr up");
        (
            Up {
                child,
                state: state.to_owned(),
            },
            engine_port,
        )
    }

    /// `stack.env` once `up` says the stack is ready.
    fn wait_ready(&mut self, timeout: Duration) -> HashMap<String, String> {
        let deadline = Instant::now() + timeout;
        let path = self.state.join(STACK_ENV);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
                    .collect();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "flomastr up exited ({status}) before ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "flomastr up not ready in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("up.log")).unwrap_or_default()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "flomastr up did not stop");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.terminate();
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn flomastr_up_then_a_message_round_trip_through_the_n8n_workflow() {
    let state = std::env::temp_dir().join(format!("flomastr-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&state).unwrap();
    let selector = format!("flomastr.io/e2e-up={}", crate::common::unique("up"));
    let (mut up, engine_port) = Up::start(&state, &selector);
    let stack = up.wait_ready(Duration::from_secs(600));
    let engine = &stack["FLOMASTR_ENGINE_URL"];
    assert_eq!(engine, &format!("http://127.0.0.1:{engine_port}"));
    let worker_token = read(&stack["FLOMASTR_WORKER_TOKEN_FILE"]);
    let http = reqwest::Client::new();
    let client = admin_client().await;
    let slug = stack["FLOMASTR_TENANT"].clone();
    the_tenants_n8n_is_a_pod_served_on_loopback(&client, &slug, &stack["FLOMASTR_N8N_URL"], &http)
        .await;

    // The tenant's knowledge, so the workflow's synthesis step has something to answer from.
    let ingested = http
        .post(format!("{engine}/routes/knowledge/documents"))
        .bearer_auth(&worker_token)
        .json(&json!({"title": "Opening hours", "text": "ACME Bakery opens every day from 8am to 6pm. Sourdough is baked at 7am."}))
        .send()
        .await
        .unwrap();
    assert!(
        ingested.status().is_success(),
        "{:?}",
        ingested.text().await
    );

    // A customer writes: the InfoBip webhook the sandbox account would post.
    let mut inbound: Value =
        serde_json::from_str(&std::fs::read_to_string(&stack["FLOMASTR_INBOUND_EXAMPLE"]).unwrap())
            .unwrap();
    inbound["results"][0]["messageId"] = json!("e2e-inbound-1");
    inbound["results"][0]["message"]["text"] = json!("When do you open?");
    let webhook = http
        .post(format!(
            "{engine}/webhook/infobip/{}",
            stack["FLOMASTR_TENANT"]
        ))
        .header(
            "x-webhook-secret",
            read(&stack["FLOMASTR_WEBHOOK_SECRET_FILE"]),
        )
        .json(&inbound)
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 200, "{:?}", webhook.text().await);

    // The tenant's n8n (a pod on the node, provisioned headless by the operator: owner, worker
    // credential, the shipped workflow active) takes the job, answers from the knowledge, sends
    // the reply with the job id as its idempotency key and completes the job.
    let sandbox = &stack["FLOMASTR_SANDBOX_URL"];
    let sent = within(
        Duration::from_secs(180),
        "the sandbox receives n8n's reply",
        async || {
            let list: Value = http
                .get(format!("{sandbox}/_sandbox/messages"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            list.as_array()?
                .iter()
                .find(|r| r["body"]["to"] == "447700900001" && r["status"] == 200)
                .cloned()
        },
    )
    .await;
    let answer = sent["body"]["content"]["text"].as_str().unwrap_or_default();
    assert!(
        answer.contains("8am"),
        "answered from the knowledge: {sent}"
    );
    assert_eq!(sent["body"]["from"], stack["FLOMASTR_SENDER"].as_str());

    // The job is complete in the database the stack runs, at its first attempt.
    let pool = flomastr::db::connect(&stack["DATABASE_URL"], 1)
        .await
        .unwrap();
    let (job_id, status, attempts): (String, String, i32) = within(
        Duration::from_secs(60),
        "the job completed",
        async || {
            sqlx::query_as(
                "SELECT id::text, status, attempts FROM jobs
                 WHERE payload->>'message_id' = 'e2e-inbound-1' AND status IN ('completed', 'dead')",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
        },
    )
    .await;
    assert_eq!((status.as_str(), attempts), ("completed", 1));
    let message_id: String =
        sqlx::query_scalar("SELECT id::text FROM outbound_messages WHERE idempotency_key = $1")
            .bind(&job_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let delivered = eventually(
        "the delivery report marks the message delivered",
        || async {
            let message: Value = http
                .get(format!("{engine}/messages/{message_id}"))
                .bearer_auth(&worker_token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            matches!(message["status"].as_str(), Some("delivered" | "read")).then_some(message)
        },
    )
    .await;
    assert_eq!(delivered["to"], "447700900001", "{delivered}");

    // The sample keeps its namespace when deleted (deletionPolicy Retain): it goes by hand, so
    // its n8n does not hold the shared node's memory for the rest of the run.
    remove_sample(&client, &slug).await;

    // Ctrl-C / SIGTERM stops everything: the stack is gone, ports free, state kept.
    let status = up.terminate();
    assert!(status.success(), "up exited with {status}:\n{}", up.log());
    assert!(!state.join(STACK_ENV).exists());
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", engine_port)).is_ok(),
        "the engine's port is free again"
    );
    assert!(
        state.join("admin-token").exists(),
        "secrets kept for the next run"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// The sample tenant's n8n runs as a Ready pod of the node, and `up` serves it on loopback.
async fn the_tenants_n8n_is_a_pod_served_on_loopback(
    client: &kube::Client,
    slug: &str,
    n8n_url: &str,
    http: &reqwest::Client,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &format!("tenant-{slug}"));
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=n8n"))
        .await
        .unwrap();
    let running = list.items.iter().any(|pod| {
        let status = pod.status.as_ref();
        status.and_then(|s| s.phase.as_deref()) == Some("Running")
            && status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    assert!(running, "the tenant's n8n pod is Running and Ready");
    assert!(n8n_url.starts_with("http://127.0.0.1:"), "{n8n_url}");
    let health: Value = http
        .get(format!("{n8n_url}/healthz"))
        .send()
        .await
        .expect("the n8n relay answers")
        .json()
        .await
        .expect("n8n's health is JSON");
    assert_eq!(health["status"], "ok", "{health}");
    let page = http.get(format!("{n8n_url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text().await.unwrap().contains("n8n"),
        "n8n's editor page"
    );
}

/// Deletes the sample Tenant (the operator of `up` finalizes it) and then its namespace.
async fn remove_sample(client: &kube::Client, slug: &str) {
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .delete(slug, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the sample Tenant gone", || async {
        tenants.get_opt(slug).await.ok()?.is_none().then_some(())
    })
    .await;
    Api::<Namespace>::all(client.clone())
        .delete(&format!("tenant-{slug}"), &DeleteParams::default())
        .await
        .unwrap();
}
