//! A Tenant's n8n on the real node (`scripts/test` starts it), run by the operator as it runs in
//! a cluster: the real n8n image (the operator's default, imported into the node), provisioned
//! headless (owner from the Secret it minted, the worker credential and the shipped workflow
//! imported and active), polling the engine (in this process, on the host address pods reach)
//! with the token from its credential. Messages go webhook → engine → real n8n → synthesis →
//! send → the provider sandbox → job completed; a blank text fails permanently (no retries) and
//! the next job is taken at once; media without text and over-long texts get a polite reply.
//! Bad input: an image that cannot be pulled and a pod that cannot be scheduled show the reason
//! in N8nReady while nothing else of the tenant is torn down.

use crate::common::{admin_client, install_tenant_crd, require_env, unique, within};
use crate::engine_harness::{TestEngine, allow_sandbox, start_engine_bound};
use crate::operator::{credentials, operator_args, operator_client, sender_for};
use flomastr::operator::backup::target::BackupStore;
use flomastr::operator::context::Context;
use flomastr::operator::metrics::OperatorMetrics;
use flomastr::sandbox::{Accounts, Knobs, SandboxConfig, SandboxState};
use flomastr::tenant::Tenant;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODE_VAR: &str = "FLOMASTR_TEST_NODE";
const HOST_IP_VAR: &str = "FLOMASTR_TEST_NODE_HOST_IP";
const RUN_LABEL: &str = "flomastr.io/test-run";
const CONTACT: &str = "447700900001";

struct Sandbox {
    url: String,
    state: SandboxState,
}

async fn sandbox() -> Sandbox {
    let knobs = Knobs {
        report_delay_ms: 20,
        ..Knobs::default()
    };
    let accounts = Accounts::from_json("{}").unwrap();
    let state = flomastr::sandbox::new_state(SandboxConfig { accounts, knobs });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = flomastr::sandbox::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Sandbox { url, state }
}

/// The engine on the host address pods reach, the provider sandbox, and the operator's
/// controller running under its own ServiceAccount, confined to this test's Tenants.
struct Stack {
    admin: kube::Client,
    engine: TestEngine,
    sandbox: Sandbox,
    run: String,
    controller: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

async fn stack() -> Stack {
    // The figures these tests log (start time, memory) show with `--nocapture`.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    require_env(NODE_VAR);
    let host_ip = require_env(HOST_IP_VAR);
    let sandbox = sandbox().await;
    let engine = start_engine_bound(&host_ip, true, |args| {
        allow_sandbox(args, &sandbox.url);
        // The workflow asks to wait 25 s; the engine's default test maximum is shorter.
        args.max_wait_seconds = 25;
    })
    .await;
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let run = unique("run");
    let mut args = operator_args(&engine);
    args.tenant_selector = Some(format!("{RUN_LABEL}={run}"));
    args.resync_seconds = 30;
    args.backup_key = Some("3c".repeat(32));
    let ctx = Context::watching(
        operator_client(&admin).await,
        args,
        Arc::new(OperatorMetrics::default()),
    )
    .unwrap();
    let controller = tokio::spawn(flomastr::operator::controller(ctx).for_each(|()| async {}));
    Stack {
        admin,
        engine,
        sandbox,
        run,
        controller,
    }
}

impl Stack {
    /// A Tenant of this run whose channel is the sandbox; `n8n` replaces the n8n spec.
    async fn tenant(&self, prefix: &str, n8n: Value) -> String {
        self.tenant_with(prefix, n8n, json!({}), json!({})).await
    }

    /// As [`Self::tenant`], with more spec fields and annotations.
    async fn tenant_with(
        &self,
        prefix: &str,
        n8n: Value,
        more_spec: Value,
        annotations: Value,
    ) -> String {
        let slug = unique(prefix);
        credentials(&self.admin, &slug).await;
        let hook = self.engine.at(&format!("/webhook/infobip/{slug}"));
        // One sandbox account: the last tenant made is the one that sends.
        let accounts = json!({"infobip": [{
            "api_key": "ib-api-key-from-secret", "sender": sender_for(&slug), "webhook_url": hook,
            "webhook_secret": "hook-from-secret", "webhook_header": "X-Webhook-Secret",
        }]});
        self.sandbox
            .state
            .set_accounts(Accounts::from_json(&accounts.to_string()).unwrap());
        let mut tenant = json!({
            "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": slug, "labels": {RUN_LABEL: self.run}, "annotations": annotations},
            "spec": {
                "displayName": "ACME Bakery", "deletionPolicy": "Delete", "n8n": n8n,
                "whatsapp": {"provider": "Infobip", "sender": sender_for(&slug), "providerBaseUrl": self.sandbox.url,
                             "credentialsSecretRef": {"name": format!("{slug}-infobip"),
                                                      "namespace": crate::operator::CREDENTIALS_NAMESPACE}},
            }
        });
        tenant["spec"]
            .as_object_mut()
            .unwrap()
            .extend(more_spec.as_object().unwrap().clone());
        let tenant: Tenant = serde_json::from_value(tenant).unwrap();
        Api::<Tenant>::all(self.admin.clone())
            .create(&PostParams::default(), &tenant)
            .await
            .unwrap();
        slug
    }

    fn tenants(&self) -> Api<Tenant> {
        Api::all(self.admin.clone())
    }

    /// The condition of `kind` once `accept` takes it.
    async fn condition(
        &self,
        slug: &str,
        kind: &str,
        limit: Duration,
        accept: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> bool,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        let tenants = self.tenants();
        let mut last = None;
        within(limit, &format!("{kind} of {slug}"), async || {
            let tenant = tenants.get(slug).await.ok()?;
            let found = tenant
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == kind)?;
            if last.as_ref() != Some(&found) {
                tracing::info!(tenant = slug, kind, status = %found.status, reason = %found.reason, message = %found.message, "condition");
                last = Some(found.clone());
            }
            accept(&found).then_some(found)
        })
        .await
    }

    async fn secret(&self, slug: &str, name: &str, key: &str) -> String {
        let secret = Api::<Secret>::namespaced(self.admin.clone(), &format!("tenant-{slug}"))
            .get(name)
            .await
            .unwrap();
        let bytes = secret.data.unwrap()[key].0.clone();
        String::from_utf8(bytes).unwrap()
    }

    /// An InfoBip webhook with these messages (id, message object) from the test contact.
    async fn inbound(&self, slug: &str, messages: &[(&str, Value)]) {
        let results: Vec<Value> = messages
            .iter()
            .map(|(id, message)| {
                json!({"from": CONTACT, "to": sender_for(slug), "integrationType": "WHATSAPP",
                       "receivedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
                       "messageId": id, "message": message, "contact": {"name": "Ana"}})
            })
            .collect();
        let response = self
            .engine
            .http
            .post(self.engine.at(&format!("/webhook/infobip/{slug}")))
            .header("X-Webhook-Secret", "hook-from-secret")
            .json(&json!({"results": results, "messageCount": results.len(), "pendingMessageCount": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    /// The job of an inbound message once it is finished: (status, attempts, last error, when).
    async fn finished(
        &self,
        message_id: &str,
        limit: Duration,
    ) -> (String, i32, Option<String>, chrono::DateTime<chrono::Utc>) {
        let pool = &self.engine.db.pool;
        within(
            limit,
            &format!("the job of {message_id} finished"),
            async || {
                sqlx::query_as(
                    "SELECT status, attempts, last_error, updated_at FROM jobs
                 WHERE payload->>'message_id' = $1 AND status IN ('completed', 'dead')",
                )
                .bind(message_id)
                .fetch_optional(pool)
                .await
                .unwrap()
            },
        )
        .await
    }

    /// The texts the sandbox was asked to send to the test contact.
    fn sent_texts(&self) -> Vec<String> {
        self.sandbox
            .state
            .requests()
            .iter()
            .filter(|r| r.body["to"] == CONTACT)
            .filter_map(|r| r.body["content"]["text"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The tenant's running n8n pod.
async fn n8n_pod(admin: &kube::Client, slug: &str) -> Pod {
    let pods = Api::<Pod>::namespaced(admin.clone(), &format!("tenant-{slug}"));
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=n8n"))
        .await
        .unwrap();
    list.items
        .into_iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .expect("a running n8n pod")
}

/// Logs in to n8n's REST API as the instance owner; the session cookie to use.
async fn owner_session(http: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let response = http
        .post(format!("{base}/rest/login"))
        .header("browser-id", "flomastr-test")
        .json(&json!({"emailOrLdapLoginId": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("n8n-auth="))
        .map(|v| v.split(';').next().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        status, 200,
        "the owner logs in with the Secret's password: {body}"
    );
    assert_eq!(body["data"]["email"], email, "{body}");
    cookie.expect("n8n sets its session cookie")
}

async fn rest(http: &reqwest::Client, base: &str, cookie: &str, path: &str) -> Value {
    let response = http
        .get(format!("{base}/rest/{path}"))
        .header("browser-id", "flomastr-test")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET /rest/{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_n8n_is_provisioned_headless_and_answers_through_the_shipped_workflow() {
    let stack = stack().await;
    let started = Instant::now();
    let slug = stack
        .tenant("n8n", json!({"replicas": 1, "storage": "1Gi"}))
        .await;
    // What the workflow's synthesis answers from.
    let worker_token = within(Duration::from_secs(60), "the worker token", async || {
        Api::<Secret>::namespaced(stack.admin.clone(), &format!("tenant-{slug}"))
            .get_opt("flomastr-worker")
            .await
            .ok()
            .flatten()
    })
    .await;
    let worker_token = String::from_utf8(
        worker_token.data.unwrap()["FLOMASTR_WORKER_TOKEN"]
            .0
            .clone(),
    )
    .unwrap();
    let registered = within(Duration::from_secs(60), "the engine registration", async || {
        let status = stack
            .engine
            .http
            .post(stack.engine.at("/routes/knowledge/documents"))
            .bearer_auth(&worker_token)
            .json(&json!({"title": "Opening hours", "text": "ACME Bakery opens every day from 8am to 6pm. Sourdough is baked at 7am."}))
            .send()
            .await
            .ok()?
            .status();
        status.is_success().then_some(status)
    })
    .await;
    assert!(registered.is_success());

    let n8n = stack
        .condition(&slug, "N8nReady", Duration::from_secs(600), |c| {
            assert!(
                c.status == "True" || c.reason == "Progressing",
                "n8n failed to come up: {}: {}",
                c.reason,
                c.message
            );
            c.status == "True"
        })
        .await;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "tenant n8n available"
    );
    assert_eq!(n8n.reason, "Available");
    let tenant = stack.tenants().get(&slug).await.unwrap();
    let fingerprint = tenant
        .status
        .as_ref()
        .unwrap()
        .encryption_key_fingerprint
        .clone()
        .expect("the key's fingerprint is recorded");
    let key = stack
        .secret(&slug, "n8n-encryption", "N8N_ENCRYPTION_KEY")
        .await;
    assert_eq!(
        fingerprint,
        flomastr::operator::encryption::fingerprint(&key)
    );

    // Headless: the owner exists with the minted password; the workflow and credential are in.
    let pod = n8n_pod(&stack.admin, &slug).await;
    let base = format!(
        "http://{}:5678",
        pod.status.as_ref().unwrap().pod_ip.as_ref().unwrap()
    );
    let http = reqwest::Client::new();
    let email = stack.secret(&slug, "n8n-owner", "email").await;
    let password = stack.secret(&slug, "n8n-owner", "password").await;
    let cookie = owner_session(&http, &base, &email, &password).await;
    let workflow = rest(&http, &base, &cookie, "workflows/flomastrWorker01").await;
    assert_eq!(workflow["data"]["name"], "flomastr WhatsApp worker");
    assert!(
        workflow["data"]["activeVersionId"].is_string() || workflow["data"]["active"] == true,
        "the shipped workflow is active: {}",
        workflow["data"]
    );
    let credentials = rest(&http, &base, &cookie, "credentials").await;
    assert!(
        credentials["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "flomastrWorkerTk" && c["type"] == "httpHeaderAuth"),
        "{credentials}"
    );
    let env = &pod.spec.as_ref().unwrap().containers[0].env;
    assert!(
        env.iter()
            .flatten()
            .all(|e| e.name != "FLOMASTR_WORKER_TOKEN"),
        "the token reaches n8n only as its credential"
    );

    // The workflow polls with the credential's token: the engine saw the tenant's worker.
    stack
        .condition(&slug, "WorkflowReady", Duration::from_secs(180), |c| {
            c.status == "True"
        })
        .await;

    // A question: taken by the real n8n, answered from the knowledge, sent, completed.
    stack
        .inbound(
            &slug,
            &[("q-1", json!({"type": "TEXT", "text": "When do you open?"}))],
        )
        .await;
    let (status, attempts, _, _) = stack.finished("q-1", Duration::from_secs(120)).await;
    assert_eq!((status.as_str(), attempts), ("completed", 1));
    let answer = within(
        Duration::from_secs(30),
        "the reply at the sandbox",
        async || stack.sent_texts().into_iter().find(|t| t.contains("8am")),
    )
    .await;
    tracing::info!(%answer, "answered");

    // A blank text: synthesis answers 400, the workflow fails the job permanently (no retry, the
    // conversation not blocked) and takes the next job at once; media without text is
    // acknowledged (its engine URL handed to the tenant's logic) and an over-long text gets a
    // polite reply.
    let long = "x".repeat(2001);
    stack
        .inbound(
            &slug,
            &[
                ("blank-1", json!({"type": "TEXT", "text": "   "})),
                (
                    "q-2",
                    json!({"type": "TEXT", "text": "Is sourdough ready at 7am?"}),
                ),
                (
                    "img-1",
                    json!({"type": "IMAGE", "url": "https://example.invalid/cat.jpg"}),
                ),
                ("long-1", json!({"type": "TEXT", "text": long})),
            ],
        )
        .await;
    let (status, attempts, error, failed_at) =
        stack.finished("blank-1", Duration::from_secs(120)).await;
    assert_eq!((status.as_str(), attempts), ("dead", 1), "{error:?}");
    assert!(
        error.as_deref().unwrap_or_default().starts_with("HTTP 400"),
        "{error:?}"
    );
    let (status, _, _, answered_at) = stack.finished("q-2", Duration::from_secs(60)).await;
    assert_eq!(status, "completed");
    let gap = (answered_at - failed_at).to_std().unwrap_or_default();
    assert!(
        gap < Duration::from_secs(20),
        "the next job waited {gap:?} behind the failed one"
    );
    for id in ["img-1", "long-1"] {
        let (status, attempts, error, _) = stack.finished(id, Duration::from_secs(60)).await;
        assert_eq!(
            (status.as_str(), attempts),
            ("completed", 1),
            "{id}: {error:?}"
        );
    }
    let texts = stack.sent_texts();
    assert!(
        texts.iter().any(|t| t.contains("we received your image")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("too long")), "{texts:?}");

    let memory = pod_memory(&pod);
    tracing::info!(
        ?memory,
        seconds = started.elapsed().as_secs_f64(),
        "tenant n8n test done"
    );

    // The encryption key replaced behind n8n's back: the next start refuses it before n8n runs,
    // and N8nReady says so; the recorded fingerprint stays the old key's.
    let ns = format!("tenant-{slug}");
    let secrets = Api::<Secret>::namespaced(stack.admin.clone(), &ns);
    secrets
        .patch(
            "n8n-encryption",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&json!({"stringData": {"N8N_ENCRYPTION_KEY": "another key"}})),
        )
        .await
        .unwrap();
    Api::<Pod>::namespaced(stack.admin.clone(), &ns)
        .delete(
            pod.metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    let refused = stack
        .condition(&slug, "N8nReady", Duration::from_secs(180), |c| {
            c.reason == "EncryptionKeyChanged"
        })
        .await;
    assert!(
        refused.message.contains(&fingerprint),
        "{}",
        refused.message
    );
    let tenant = stack.tenants().get(&slug).await.unwrap();
    assert_eq!(
        tenant.status.unwrap().encryption_key_fingerprint.as_deref(),
        Some(fingerprint.as_str())
    );
    stack
        .tenants()
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
}

/// The pod's memory use in bytes from its cgroup (v1, the node's layout), for the report.
fn pod_memory(pod: &Pod) -> Option<u64> {
    let uid = pod.metadata.uid.as_deref()?.replace('-', "_");
    let wanted = [
        format!("pod{uid}"),
        format!("pod{}", pod.metadata.uid.as_deref()?),
    ];
    let root = std::path::Path::new("/sys/fs/cgroup/memory/kubepods");
    let dir = walk(root, 3).into_iter().find(|d| {
        d.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| wanted.iter().any(|w| w == n))
    })?;
    let text = std::fs::read_to_string(dir.join("memory.usage_in_bytes")).ok()?;
    text.trim().parse().ok()
}

fn walk(root: &std::path::Path, depth: usize) -> Vec<std::path::PathBuf> {
    let mut found = vec![root.to_owned()];
    if depth == 0 {
        return found;
    }
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&entry.path(), depth - 1));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpullable_image_and_an_unschedulable_pod_show_in_n8n_ready_and_nothing_is_torn_down() {
    let stack = stack().await;
    let absent = stack
        .tenant(
            "pull",
            json!({"replicas": 1, "storage": "1Gi", "image": "n8nio/n8n:0.0.0-absent"}),
        )
        .await;
    let huge = stack
        .tenant(
            "sched",
            json!({"replicas": 1, "storage": "1Gi",
                   "resources": {"requests": {"cpu": "64", "memory": "512Mi"}, "limits": {"cpu": "64", "memory": "1Gi"}}}),
        )
        .await;
    let pull = stack
        .condition(&absent, "N8nReady", Duration::from_secs(120), |c| {
            c.reason != "Progressing" && c.status == "False"
        })
        .await;
    assert!(
        ["ErrImagePull", "ImagePullBackOff"].contains(&pull.reason.as_str()),
        "{}: {}",
        pull.reason,
        pull.message
    );
    assert!(
        pull.message.contains("n8nio/n8n:0.0.0-absent") || pull.message.contains("provision"),
        "{}",
        pull.message
    );
    // The scheduler may first name the volume claim being bound; then the CPU no node has.
    let sched = stack
        .condition(&huge, "N8nReady", Duration::from_secs(120), |c| {
            c.reason != "Progressing" && c.status == "False" && c.message.contains("cpu")
        })
        .await;
    assert_eq!(sched.reason, "Unschedulable", "{}", sched.message);
    assert!(sched.message.contains("cpu"), "{}", sched.message);

    // Everything else of both tenants stays: namespace, Deployment, Service, Secrets, the
    // engine registration.
    for slug in [&absent, &huge] {
        let ns = format!("tenant-{slug}");
        assert!(
            Api::<Namespace>::all(stack.admin.clone())
                .get_opt(&ns)
                .await
                .unwrap()
                .is_some()
        );
        let deployment = Api::<Deployment>::namespaced(stack.admin.clone(), &ns)
            .get("n8n")
            .await
            .unwrap();
        assert_eq!(deployment.spec.replicas, Some(1));
        Api::<Service>::namespaced(stack.admin.clone(), &ns)
            .get("n8n")
            .await
            .unwrap();
        for secret in ["n8n-encryption", "flomastr-worker", "n8n-owner"] {
            Api::<Secret>::namespaced(stack.admin.clone(), &ns)
                .get(secret)
                .await
                .unwrap();
        }
        let tenant = stack.tenants().get(slug).await.unwrap();
        let registered = tenant
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "EngineRegistered")
            .unwrap();
        assert_eq!(registered.status, "True", "{}", registered.message);
        stack
            .tenants()
            .delete(slug, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// A TenantRollout to an n8n that cannot start (its image cannot be pulled) on the real node:
/// the canary runs it, is not ready within the timeout, is rolled back to the version it ran,
/// and its n8n answers a customer again; the rollout stops and says why.
#[tokio::test]
async fn a_rollout_to_an_n8n_that_cannot_start_rolls_the_canary_back_and_it_answers_again() {
    use flomastr::tenant::{RolloutPhase, TenantRollout, UpgradeState};
    let stack = stack().await;
    let slug = stack
        .tenant("roll", json!({"replicas": 1, "storage": "1Gi"}))
        .await;
    stack
        .condition(&slug, "WorkflowReady", Duration::from_secs(600), |c| {
            c.status == "True"
        })
        .await;
    let default_image = flomastr::operator::config::DEFAULT_N8N_IMAGE;
    within(Duration::from_secs(60), "status.n8nImage", async || {
        let status = stack.tenants().get(&slug).await.ok()?.status?;
        (status.n8n_image.as_deref() == Some(default_image)).then_some(())
    })
    .await;

    crate::common::install_rollout_crd(&stack.admin).await;
    let engine = &stack.engine;
    let mut args = operator_args(engine);
    args.tenant_selector = Some(format!("{RUN_LABEL}={}", stack.run));
    let ctx = Context::new(
        operator_client(&stack.admin).await,
        args,
        Arc::new(OperatorMetrics::default()),
    )
    .unwrap();
    let rollouts = tokio::spawn(
        flomastr::operator::rollout::controller(ctx)
            .await
            .for_each(|()| async {}),
    );
    let broken = "n8nio/n8n:0.0.0-absent";
    let name = format!("{}-broken", stack.run);
    let rollout: TenantRollout = serde_json::from_value(json!({
        "apiVersion": "flomastr.io/v1alpha1", "kind": "TenantRollout",
        "metadata": {"name": name, "labels": {RUN_LABEL: stack.run}},
        "spec": {"n8nImage": broken, "canary": [slug], "tenantSelector": {RUN_LABEL: stack.run},
                 "readyTimeoutSeconds": 45, "requireBackup": false}
    }))
    .unwrap();
    let api = Api::<TenantRollout>::all(stack.admin.clone());
    api.create(&PostParams::default(), &rollout).await.unwrap();
    let started = Instant::now();
    let mut ran_broken = false;
    let status = within(
        Duration::from_secs(600),
        "the rollout stopped",
        async || {
            let status = api.get(&name).await.ok()?.status?;
            let deployment =
                Api::<Deployment>::namespaced(stack.admin.clone(), &format!("tenant-{slug}"))
                    .get("n8n")
                    .await
                    .ok()?;
            let image = deployment.spec.template.spec?.containers[0].image.clone();
            ran_broken |= image.as_deref() == Some(broken);
            let done = status.phase == Some(RolloutPhase::Stopped)
                && status.tenants.iter().all(|t| !t.state.in_flight());
            done.then_some(status)
        },
    )
    .await;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), message = ?status.message, "rolled back");
    assert!(ran_broken, "the canary's n8n was set to the new image");
    assert_eq!(status.stopped_reason.as_deref(), Some("CanaryFailed"));
    let entry = &status.tenants[0];
    assert_eq!(entry.name, slug);
    assert_eq!(entry.state, UpgradeState::RolledBack, "{entry:?}");
    assert_eq!(entry.reason.as_deref(), Some("NotReadyInTime"));
    assert_eq!(entry.from.as_deref(), Some(default_image));
    assert!(
        !entry.data_touched,
        "the image never started: nothing to restore"
    );
    let message = entry.message.clone().unwrap();
    assert!(
        message.contains("ImagePull") || message.contains("ErrImage"),
        "the pods' reason is kept: {message}"
    );
    let image = Api::<Deployment>::namespaced(stack.admin.clone(), &format!("tenant-{slug}"))
        .get("n8n")
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some(default_image));

    // The rolled-back n8n takes a customer's message again.
    stack
        .condition(&slug, "WorkflowReady", Duration::from_secs(600), |c| {
            c.status == "True"
        })
        .await;
    stack
        .inbound(
            &slug,
            &[(
                "after-rollback",
                json!({"type": "TEXT", "text": "Are you open today?"}),
            )],
        )
        .await;
    let (job, attempts, error, _) = stack
        .finished("after-rollback", Duration::from_secs(180))
        .await;
    assert_eq!((job.as_str(), attempts), ("completed", 1), "{error:?}");
    within(
        Duration::from_secs(30),
        "the reply at the sandbox",
        async || (!stack.sent_texts().is_empty()).then_some(()),
    )
    .await;
    rollouts.abort();
    api.delete(&name, &DeleteParams::default()).await.unwrap();
}

/// `status.backup.lastRequest` or `status.restore` once `field` has an outcome.
async fn outcome(stack: &Stack, slug: &str, pick: fn(&Value) -> Value, limit: Duration) -> Value {
    within(limit, &format!("a backup outcome of {slug}"), async || {
        let tenant = stack.tenants().get(slug).await.ok()?;
        let status = serde_json::to_value(tenant.status?).ok()?;
        let found = pick(&status);
        found["outcome"].is_string().then_some(found)
    })
    .await
}

/// Creates a workflow through n8n's REST API (something only n8n's database holds); its id.
async fn marker_workflow(http: &reqwest::Client, base: &str, cookie: &str) -> String {
    let response = http
        .post(format!("{base}/rest/workflows"))
        .header("browser-id", "flomastr-test")
        .header("cookie", cookie)
        .json(
            &json!({"name": "Restored with its volume", "nodes": [], "connections": {},
                      "settings": {}, "active": false}),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST /rest/workflows: {status} {body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// n8n's REST API on the tenant's running pod, logged in as its owner: (base URL, cookie).
async fn n8n_session(stack: &Stack, slug: &str) -> (reqwest::Client, String, String) {
    let pod = n8n_pod(&stack.admin, slug).await;
    let base = format!(
        "http://{}:5678",
        pod.status.as_ref().unwrap().pod_ip.as_ref().unwrap()
    );
    let http = reqwest::Client::new();
    let email = stack.secret(slug, "n8n-owner", "email").await;
    let password = stack.secret(slug, "n8n-owner", "password").await;
    let cookie = owner_session(&http, &base, &email, &password).await;
    (http, base, cookie)
}

/// The names in a tar.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    tar::Archive::new(bytes)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_tenant_restored_from_its_backup_decrypts_its_credentials_and_answers() {
    let stack = stack().await;
    let s3 = crate::backup_store::start_s3().await;
    let s3_keys = unique("e2e-s3");
    let keys = json!({"AWS_ACCESS_KEY_ID": crate::backup_store::ACCESS_KEY,
                      "AWS_SECRET_ACCESS_KEY": crate::backup_store::SECRET_KEY});
    crate::operator::credentials_with(
        &stack.admin,
        crate::operator::CREDENTIALS_NAMESPACE,
        &s3_keys,
        "backups",
        keys,
    )
    .await;
    let backup = json!({"retention": 5, "target": {"s3": {"endpoint": s3.endpoint, "bucket": crate::backup_store::BUCKET,
        "credentialsSecretRef": {"name": s3_keys, "namespace": crate::operator::CREDENTIALS_NAMESPACE}}}});
    let n8n = json!({"replicas": 1, "storage": "1Gi"});
    let slug = stack
        .tenant_with(
            "n8nbk",
            n8n.clone(),
            json!({"backup": backup, "deletionPolicy": "Snapshot"}),
            json!({}),
        )
        .await;
    let merge = |body: Value| kube::api::Patch::Merge(body);
    let worker_token = within(Duration::from_secs(60), "the worker token", async || {
        Api::<Secret>::namespaced(stack.admin.clone(), &format!("tenant-{slug}"))
            .get_opt("flomastr-worker")
            .await
            .ok()
            .flatten()
    })
    .await;
    let worker_token = String::from_utf8(
        worker_token.data.unwrap()["FLOMASTR_WORKER_TOKEN"]
            .0
            .clone(),
    )
    .unwrap();
    within(Duration::from_secs(60), "the knowledge stored", async || {
        let response = stack.engine.http.post(stack.engine.at("/routes/knowledge/documents"))
            .bearer_auth(&worker_token)
            .json(&json!({"title": "Opening hours", "text": "ACME Bakery opens every day from 8am to 6pm."}))
            .send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    for kind in ["N8nReady", "WorkflowReady"] {
        stack
            .condition(&slug, kind, Duration::from_secs(600), |c| {
                c.status == "True"
            })
            .await;
    }
    let key = stack
        .secret(&slug, "n8n-encryption", "N8N_ENCRYPTION_KEY")
        .await;
    // Something only n8n's own database holds: a workflow made in n8n.
    let (http, base, cookie) = n8n_session(&stack, &slug).await;
    let marker = marker_workflow(&http, &base, &cookie).await;

    // A full backup on request: n8n is stopped for it, its volume copied, n8n started again.
    let patch = json!({"metadata": {"annotations": {"flomastr.io/backup-now": "e2e-1"}}});
    stack
        .tenants()
        .patch(&slug, &kube::api::PatchParams::default(), &merge(patch))
        .await
        .unwrap();
    let request = outcome(
        &stack,
        &slug,
        |s| s["backup"]["lastRequest"].clone(),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(request["outcome"], "Succeeded", "{request}");
    let name = request["backupName"].as_str().unwrap().to_owned();
    let status = serde_json::to_value(stack.tenants().get(&slug).await.unwrap().status).unwrap();
    let last = &status["backup"]["lastBackup"];
    assert!(last["n8nDataBytes"].as_i64().unwrap() > 0, "{last}");
    let store = BackupStore::open(&crate::backup_store::s3_target(&s3.endpoint, "")).unwrap();
    let tar = store
        .read_small(&format!("{name}/n8n-data.tar"), 512 << 20)
        .await
        .unwrap();
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&tar)),
        last["n8nDataSha256"].as_str().unwrap(),
        "the status and the manifest name the archive stored"
    );
    let names = tar_names(&tar);
    assert!(
        names.iter().any(|n| n == "database.sqlite"),
        "n8n's database is in the backup: {names:?}"
    );
    let manifest: Value = serde_json::from_slice(
        &store
            .read_small(&format!("{name}/manifest.json"), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["formatVersion"], 2, "{manifest}");
    stack
        .condition(&slug, "N8nReady", Duration::from_secs(600), |c| {
            c.status == "True"
        })
        .await;

    // The knowledge is lost after the backup, then the Tenant is deleted (Snapshot: another
    // backup first, then everything goes: the namespace with n8n's volume and key).
    sqlx::query(
        "DELETE FROM kb_documents WHERE tenant_id = (SELECT id FROM tenants WHERE slug = $1)",
    )
    .bind(&slug)
    .execute(&stack.engine.db.pool)
    .await
    .unwrap();
    stack
        .tenants()
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    within(Duration::from_secs(600), "the Tenant deleted", async || {
        stack
            .tenants()
            .get_opt(&slug)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    within(
        Duration::from_secs(300),
        "the namespace (n8n's volume, its key) deleted",
        async || {
            Api::<Namespace>::all(stack.admin.clone())
                .get_opt(&format!("tenant-{slug}"))
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;

    // A NEW Tenant restored from the backup taken before the loss.
    let heir = stack
        .tenant_with(
            "n8nrs",
            n8n,
            json!({"backup": backup}),
            json!({"flomastr.io/restore-from": name}),
        )
        .await;
    let restore = outcome(
        &stack,
        &heir,
        |s| s["restore"].clone(),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(restore["outcome"], "Succeeded", "{restore}");
    assert!(
        restore["message"]
            .as_str()
            .unwrap()
            .contains("n8n's volume ("),
        "{restore}"
    );
    assert_eq!(
        stack
            .secret(&heir, "n8n-encryption", "N8N_ENCRYPTION_KEY")
            .await,
        key
    );
    // The filled and verified volume lost its filling mark (n8n never starts on a marked one).
    let claim = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
        stack.admin.clone(),
        &format!("tenant-{heir}"),
    )
    .get("n8n-data")
    .await
    .unwrap();
    assert!(
        !claim
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("flomastr.io/n8n-data"),
        "the restored volume is unmarked"
    );
    // n8n starts on its restored volume with the key its stored credentials were encrypted
    // with, and the workflow polls with its credential.
    for kind in ["N8nReady", "WorkflowReady"] {
        stack
            .condition(&heir, kind, Duration::from_secs(600), |c| {
                c.status == "True"
            })
            .await;
    }
    let (http, base, cookie) = n8n_session(&stack, &heir).await;
    let found = rest(&http, &base, &cookie, &format!("workflows/{marker}")).await;
    assert_eq!(
        found["data"]["name"], "Restored with its volume",
        "the workflow made in n8n before the backup is back"
    );
    stack
        .inbound(
            &heir,
            &[("r-1", json!({"type": "TEXT", "text": "When do you open?"}))],
        )
        .await;
    let (status, attempts, error, _) = stack.finished("r-1", Duration::from_secs(120)).await;
    assert_eq!((status.as_str(), attempts), ("completed", 1), "{error:?}");
    let answer = within(
        Duration::from_secs(30),
        "the reply from the restored knowledge",
        async || stack.sent_texts().into_iter().find(|t| t.contains("8am")),
    )
    .await;
    tracing::info!(%answer, "answered after the restore");
    stack
        .tenants()
        .delete(&heir, &DeleteParams::default())
        .await
        .unwrap();
}
