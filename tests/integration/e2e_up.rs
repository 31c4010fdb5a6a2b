//! End to end, as a new user meets it: `flomastr up` in the background (its own PostgreSQL, API
//! server, engine, operator, sandbox) → an InfoBip webhook → the shipped n8n workflow, run step by
//! step, polls, answers with synthesis, replies and completes → the sandbox receives the send →
//! its delivery report reaches the engine → the message is delivered and the job complete →
//! SIGTERM tears everything down.

use crate::common::{eventually, free_port};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STACK_ENV: &str = "stack.env";

struct Up {
    child: Child,
    state: PathBuf,
}

impl Up {
    fn start(state: &Path) -> (Up, u16) {
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
            .env_remove("KUBECONFIG")
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
    let (mut up, engine_port) = Up::start(&state);
    let stack = up.wait_ready(Duration::from_secs(600));
    let engine = &stack["FLOMASTR_ENGINE_URL"];
    assert_eq!(engine, &format!("http://127.0.0.1:{engine_port}"));
    let worker_token = read(&stack["FLOMASTR_WORKER_TOKEN_FILE"]);
    let http = reqwest::Client::new();

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

    // The worker's part, as the shipped workflow does it (next job, synthesis, send with the job
    // id as the idempotency key, complete). Here the test is the worker: this `flomastr up` runs
    // no n8n pod; the real n8n runs the workflow in tests/integration/n8n_tenant.rs, and here
    // once `flomastr up` runs on the real node.
    let job: Value = http
        .get(format!("{engine}/queue/next-job?wait=10"))
        .bearer_auth(&worker_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["payload"]["from"], "447700900001");
    assert_eq!(job["payload"]["message"], "When do you open?");
    let synthesis: Value = http
        .post(format!("{engine}/routes/tools/synthesis"))
        .bearer_auth(&worker_token)
        .json(&json!({"question": job["payload"]["message"], "contact": job["payload"]["from"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answer = synthesis["answer"].as_str().unwrap().to_owned();
    assert!(
        answer.contains("8am"),
        "answered from the knowledge: {answer}"
    );
    let reply: Value = http
        .post(format!("{engine}/messages/send"))
        .bearer_auth(&worker_token)
        .header("Idempotency-Key", job["job_id"].as_str().unwrap())
        .json(&json!({"to": job["payload"]["from"], "message": answer, "reply_to": job["payload"]["message_id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message_id = reply["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("send answered {reply}"))
        .to_owned();
    let completed = http
        .post(format!(
            "{engine}/queue/jobs/{}/complete",
            job["job_id"].as_str().unwrap()
        ))
        .bearer_auth(&worker_token)
        .json(&json!({"lease_token": job["lease_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), 200);

    // The provider (sandbox) got the reply, and its delivery report came back.
    let sandbox = &stack["FLOMASTR_SANDBOX_URL"];
    let sent = eventually("the sandbox receives the reply", || async {
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
    })
    .await;
    assert_eq!(sent["body"]["content"]["text"], json!(answer));
    assert_eq!(sent["body"]["from"], stack["FLOMASTR_SENDER"].as_str());
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

    // The job is complete in the database the stack runs.
    let pool = flomastr::db::connect(&stack["DATABASE_URL"], 1)
        .await
        .unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1::uuid")
        .bind(job["job_id"].as_str().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "completed");
    pool.close().await;

    // The queue is empty now: the workflow's next poll ends the loop.
    let next = http
        .get(format!("{engine}/queue/next-job"))
        .bearer_auth(&worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 204);

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
