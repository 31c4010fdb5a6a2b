//! End to end as a platform engineer meets it, on the real node: the database prepared by
//! `flomastr migrate --admin-url` (the engine a non-superuser login), `helm install` of
//! `charts/flomastr` with the image built here (the engine and two operator replicas as pods),
//! the provider sandbox as a pod of the same image, `kubectl apply` of a Tenant pointed at it →
//! the Tenant goes Ready with its n8n pod Running, and a customer's message goes the whole way:
//! InfoBip webhook to the engine's Service → the real n8n takes the job → its reply reaches the
//! sandbox → the delivery and seen reports mark it read, the job completed. Then the operator's
//! leader pod is deleted and the standby takes over, `helm upgrade` with a changed value rolls
//! the pods (each time another message is answered), and deleting the Tenant removes its
//! namespace, pods and engine registration.

use crate::chart::{Helm, chart_dir, helm_on_cluster};
use crate::common::{
    KUBECONFIG_VAR, PG_URL_VAR, admin_client, install_tenant_crd, require_env, unique, within,
};
use flomastr::tenant::Tenant;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set by scripts/test once the node is Ready; the images it imported; where pods reach the host.
const NODE_VAR: &str = "FLOMASTR_TEST_NODE";
const HOST_IP_VAR: &str = "FLOMASTR_TEST_NODE_HOST_IP";
const FLOMASTR_IMAGE_VAR: &str = "FLOMASTR_TEST_IMAGE_FLOMASTR";
const N8N_IMAGE_VAR: &str = "FLOMASTR_TEST_IMAGE_N8N";

/// The engine's admin token in the release's Secret (the operator uses it too).
const ADMIN_TOKEN: &str = "e2e-helm-admin-token-0123456789abcdef";
const SANDBOX_PORT: u16 = 9090;
const SENDER: &str = "441134960000";

/// One installation: its namespaces, release, tenant and the secrets they share.
struct Installation {
    client: kube::Client,
    helm: Helm,
    /// The release, and the namespace it is installed in.
    release: String,
    /// The namespace of the tenants' credentials Secrets.
    credentials: String,
    slug: String,
    webhook_secret: String,
}

impl Installation {
    async fn new() -> Self {
        require_env(NODE_VAR);
        let client = admin_client().await;
        install_tenant_crd(&client).await;
        let release = unique("e2eh");
        let installation = Installation {
            client,
            helm: Helm::new(),
            credentials: format!("{release}-cred"),
            slug: unique("helm"),
            webhook_secret: unique("hook"),
            release,
        };
        for name in [&installation.release, &installation.credentials] {
            installation.create_namespace(name).await;
        }
        installation
    }

    async fn create_namespace(&self, name: &str) {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    }

    fn engine_service(&self) -> String {
        format!("{}-flomastr-engine", self.release)
    }

    /// The engine's Service as pods call it.
    fn engine_in_cluster(&self) -> String {
        format!(
            "http://{}.{}.svc.cluster.local:8080",
            self.engine_service(),
            self.release
        )
    }

    fn sandbox_in_cluster(&self) -> String {
        format!(
            "http://sandbox.{}.svc.cluster.local:{SANDBOX_PORT}",
            self.release
        )
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.release)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.release)
    }
}

/// A database with its two logins, made by `flomastr migrate --admin-url` as the README says.
struct Database {
    /// The engine's login as pods reach the server (the host's bridge address).
    engine_url: String,
    nl_query_url: String,
}

fn prepare_database(name: &str) -> Database {
    let admin = require_env(PG_URL_VAR);
    let host_ip = require_env(HOST_IP_VAR);
    let login = |user: &str| {
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_username(user).unwrap();
        url.set_password(Some(&unique("pw"))).unwrap();
        url.set_path(&format!("/{name}"));
        url.to_string()
    };
    let (engine, nl_query) = (login(name), login(&format!("{name}_nlq")));
    let output = Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .args(["migrate", "--admin-url", &admin, "--database-url", &engine])
        .args(["--nl-query-database-url", &nl_query])
        .output()
        .expect("run flomastr migrate");
    assert!(
        output.status.success(),
        "flomastr migrate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let for_pods = |url: &str| url.replacen("@127.0.0.1:", &format!("@{host_ip}:"), 1);
    Database {
        engine_url: for_pods(&engine),
        nl_query_url: for_pods(&nl_query),
    }
}

/// `docker.io/flomastr/flomastr:0.1.0` → (`flomastr/flomastr`, `0.1.0`), as the chart's values
/// name an image.
fn repository_and_tag(reference: &str) -> (String, String) {
    let name = reference.strip_prefix("docker.io/").unwrap_or(reference);
    let (repository, tag) = name.rsplit_once(':').expect("the image has a tag");
    (repository.to_owned(), tag.to_owned())
}

fn master_key() -> String {
    let key: [u8; 32] = rand::random();
    format!(
        "e2e:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
    )
}

/// The chart's values: the image built here, the test database, the sandbox allowed as the
/// InfoBip API, the operator confined to this test's Tenants.
fn values(installation: &Installation, database: &Database, master_key: &str) -> Value {
    let (repository, tag) = repository_and_tag(&require_env(FLOMASTR_IMAGE_VAR));
    json!({
        "baseDomain": "e2e.test",
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "secret": {
            "databaseUrl": database.engine_url,
            "nlQueryDatabaseUrl": database.nl_query_url,
            "adminToken": ADMIN_TOKEN,
            "masterKey": master_key,
        },
        "operator": {
            "replicas": 2,
            "credentialsNamespace": installation.credentials,
            // Other tests share the API server: this operator takes only this test's Tenants.
            "tenantSelector": format!("flomastr.io/e2e={}", installation.release),
            "n8nImage": require_env(N8N_IMAGE_VAR),
            "logFormat": "text",
        },
        "engine": {
            "replicas": 1,
            "providerBaseUrlAllow": [format!("infobip={}", installation.sandbox_in_cluster())],
            // The sandbox's Service address (the API server's service range).
            "providerPrivateNetworks": ["10.96.0.0/16"],
            "logFormat": "text",
            // Two cores run everything here: ask for little, allow much.
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        },
    })
}

impl Installation {
    /// `helm install` or `helm upgrade` with `values`, waiting until every pod is ready.
    fn helm(&self, verb: &str, values: &Value) {
        let values = self.helm.values_file(values);
        let chart = chart_dir();
        let output = self.helm.run_with(
            helm_on_cluster(&self.helm),
            &[
                verb,
                &self.release,
                chart.to_str().unwrap(),
                "--namespace",
                &self.release,
                "--kube-context",
                "admin",
                // The Tenant CRD is the test run's, shared by all tests.
                "--skip-crds",
                "--values",
                &values,
                "--wait",
                "--timeout",
                "300s",
            ],
        );
        assert!(
            output.status.success(),
            "helm {verb}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }

    /// `kubectl apply` of `objects` (JSON is YAML), as a platform engineer applies manifests.
    fn kubectl_apply(&self, objects: &[Value]) {
        let mut child = Command::new("kubectl")
            .args(["--kubeconfig", &require_env(KUBECONFIG_VAR)])
            .args(["--context", "admin", "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut stdin = child.stdin.take().unwrap();
        for object in objects {
            writeln!(stdin, "---\n{object}").unwrap();
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Installation {
    /// `flomastr sandbox` as a pod of the flomastr image behind a Service: the InfoBip account
    /// of the tenant, its reports posted to the engine's Service.
    async fn start_sandbox(&self) {
        let accounts = json!({"infobip": [{
            "api_key": self.api_key(),
            "sender": SENDER,
            "webhook_url": format!("{}/webhook/infobip/{}", self.engine_in_cluster(), self.slug),
            "webhook_secret": self.webhook_secret,
        }]});
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "sandbox", "labels": {"app": "sandbox"}},
            "spec": {"containers": [{
                "name": "sandbox",
                "image": require_env(FLOMASTR_IMAGE_VAR),
                "imagePullPolicy": "Never",
                "args": ["sandbox", "--listen", format!("0.0.0.0:{SANDBOX_PORT}")],
                "env": [{"name": "FLOMASTR_SANDBOX_ACCOUNTS", "value": accounts.to_string()}],
                "readinessProbe": {"httpGet": {"path": "/_sandbox/config", "port": SANDBOX_PORT}, "periodSeconds": 1},
                "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true,
                                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }]},
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "sandbox"},
            "spec": {"selector": {"app": "sandbox"}, "ports": [{"port": SANDBOX_PORT}]},
        }))
        .unwrap();
        self.services()
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
    }

    fn api_key(&self) -> String {
        format!("ib-key-{}", self.release)
    }

    /// The credentials Secret and the Tenant, applied with kubectl.
    fn apply_tenant(&self) {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{}-infobip", self.slug), "namespace": self.credentials,
                         "labels": {"flomastr.io/tenant": self.slug}},
            "stringData": {"apiKey": self.api_key(), "webhookSecret": self.webhook_secret},
        });
        let tenant = json!({
            "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": self.slug, "labels": {"flomastr.io/e2e": self.release}},
            "spec": {
                "displayName": "Helm E2E Bakery", "deletionPolicy": "Delete",
                "n8n": {"replicas": 1, "storage": "1Gi",
                        "resources": {"requests": {"cpu": "100m"}}},
                "whatsapp": {"provider": "Infobip", "sender": SENDER,
                             "providerBaseUrl": self.sandbox_in_cluster(),
                             "credentialsSecretRef": {"name": format!("{}-infobip", self.slug),
                                                      "namespace": self.credentials}},
            },
        });
        self.kubectl_apply(&[secret, tenant]);
    }

    fn tenants(&self) -> Api<Tenant> {
        Api::all(self.client.clone())
    }

    fn tenant_namespace(&self) -> String {
        format!("tenant-{}", self.slug)
    }

    /// Waits until the Tenant is Ready at its current generation; returns its n8n pod.
    async fn tenant_ready(&self, limit: Duration) -> Pod {
        let tenants = self.tenants();
        within(limit, "the Tenant Ready", async || {
            let tenant = tenants.get(&self.slug).await.ok()?;
            let status = tenant.status?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.observed_generation == tenant.metadata.generation).then_some(())
        })
        .await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.tenant_namespace());
        let selector = ListParams::default().labels("app.kubernetes.io/name=n8n");
        within(Duration::from_secs(30), "a Running n8n pod", async || {
            let list = pods.list(&selector).await.ok()?;
            list.items.into_iter().find(|pod| {
                pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && ready_since(pod).is_some()
            })
        })
        .await
    }

    /// The engine as this process reaches it: its Service's cluster IP (kube-proxy routes it).
    async fn engine_from_host(&self) -> String {
        let service = self.services().get(&self.engine_service()).await.unwrap();
        let ip = service.spec.and_then(|s| s.cluster_ip).unwrap();
        format!("http://{ip}:8080")
    }

    /// The engine's admin view of the tenant: its status code (200 registered, 404 not).
    async fn registration(&self, http: &reqwest::Client) -> u16 {
        let engine = self.engine_from_host().await;
        http.get(format!("{engine}/admin/tenants/{}", self.slug))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// The operator pod holding the leader Lease.
    async fn leader(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.release);
        let lease = leases.get_opt("flomastr-operator").await.ok()??;
        let holder = lease.spec?.holder_identity?;
        let pod = self.pods().get_opt(&holder).await.ok()??;
        (pod.metadata.deletion_timestamp.is_none()).then_some(holder)
    }

    /// Changes the Tenant's spec (a new generation) and waits until an operator reconciled it.
    async fn touch_tenant(&self, display_name: &str) {
        let patch = json!({"spec": {"displayName": display_name}});
        self.tenants()
            .patch(
                &self.slug,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
        self.tenant_ready(Duration::from_secs(120)).await;
    }
}

/// When the pod's Ready condition last turned True.
fn ready_since(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    condition.last_transition_time.as_ref().map(|t| t.0)
}

/// Seconds from the pod's creation to its readiness.
fn start_seconds(pod: &Pod) -> i64 {
    let created = pod.metadata.creation_timestamp.as_ref().unwrap().0;
    ready_since(pod).unwrap().as_second() - created.as_second()
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_on_the_node_serves_a_tenant_through_failover_upgrade_and_deletion() {
    let started = Instant::now();
    let installation = Installation::new().await;
    let database_name = installation.release.replace('-', "_");
    let database = prepare_database(&database_name);
    installation.start_sandbox().await;
    let mut values = values(&installation, &database, &master_key());
    installation.helm("install", &values);
    let http = reqwest::Client::new();

    installation.apply_tenant();
    let n8n = installation.tenant_ready(Duration::from_secs(300)).await;
    eprintln!(
        "[e2e_helm] release installed and tenant Ready after {} s; n8n pod started in {} s",
        started.elapsed().as_secs(),
        start_seconds(&n8n)
    );
    assert_eq!(installation.registration(&http).await, 200);
    let db = admin_pool(&database_name).await;
    installation
        .conversation(&http, &db, "When do you open?")
        .await;

    // The leader's pod goes: the standby takes the Lease and reconciles what changes next.
    let leader = within(Duration::from_secs(60), "an operator leader", async || {
        installation.leader().await
    })
    .await;
    installation
        .pods()
        .delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    let successor = within(Duration::from_secs(90), "a new leader", async || {
        installation
            .leader()
            .await
            .filter(|holder| *holder != leader)
    })
    .await;
    installation
        .touch_tenant("Helm E2E Bakery (after failover)")
        .await;
    assert_eq!(installation.registration(&http).await, 200);
    installation
        .conversation(&http, &db, "Are you open on Sunday?")
        .await;

    // An upgrade with a changed value rolls the operator; the tenant is still served.
    values["operator"]["resyncSeconds"] = json!(60);
    installation.helm("upgrade", &values);
    let after_upgrade = within(
        Duration::from_secs(90),
        "a leader after the upgrade",
        async || {
            installation
                .leader()
                .await
                .filter(|holder| *holder != successor)
        },
    )
    .await;
    assert_ne!(after_upgrade, leader);
    installation
        .touch_tenant("Helm E2E Bakery (after upgrade)")
        .await;
    installation
        .conversation(&http, &db, "Do you bake sourdough?")
        .await;

    // Deleting the Tenant takes its namespace, pods and engine registration.
    installation
        .tenants()
        .delete(&installation.slug, &DeleteParams::default())
        .await
        .unwrap();
    let namespaces = Api::<Namespace>::all(installation.client.clone());
    within(
        Duration::from_secs(180),
        "the Tenant and its namespace gone",
        async || {
            let tenant = installation
                .tenants()
                .get_opt(&installation.slug)
                .await
                .ok()?;
            let namespace = namespaces
                .get_opt(&installation.tenant_namespace())
                .await
                .ok()?;
            (tenant.is_none() && namespace.is_none()).then_some(())
        },
    )
    .await;
    assert_eq!(installation.registration(&http).await, 404);
    db.close().await;
    eprintln!("[e2e_helm] whole test {} s", started.elapsed().as_secs());
    installation.uninstall().await;
}

impl Installation {
    async fn uninstall(&self) {
        let output = self.helm.run_with(
            helm_on_cluster(&self.helm),
            &[
                "uninstall",
                &self.release,
                "--namespace",
                &self.release,
                "--kube-context",
                "admin",
            ],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let namespaces = Api::<Namespace>::all(self.client.clone());
        for name in [&self.release, &self.credentials] {
            namespaces
                .delete(name, &DeleteParams::default())
                .await
                .unwrap();
        }
    }
}

/// The customer who writes to the tenant.
const CUSTOMER: &str = "447700900123";

impl Installation {
    /// The sandbox as this process reaches it: its Service's cluster IP.
    async fn sandbox_from_host(&self) -> String {
        let service = self.services().get("sandbox").await.unwrap();
        let ip = service.spec.and_then(|s| s.cluster_ip).unwrap();
        format!("http://{ip}:{SANDBOX_PORT}")
    }

    /// A customer writes `text` (InfoBip's webhook to the engine's Service); the tenant's real
    /// n8n takes the job and replies: the sandbox receives the reply, its delivery and seen
    /// reports mark the message read, and the job is completed.
    async fn conversation(&self, http: &reqwest::Client, db: &sqlx::PgPool, text: &str) {
        let engine = self.engine_from_host().await;
        let webhook = json!({
            "results": [{
                "from": CUSTOMER, "to": SENDER, "integrationType": "WHATSAPP",
                "receivedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string(),
                "messageId": unique("ib-in"),
                "message": {"type": "TEXT", "text": text},
                "contact": {"name": "Ana"},
            }],
            "messageCount": 1, "pendingMessageCount": 0,
        });
        let response = http
            .post(format!("{engine}/webhook/infobip/{}", self.slug))
            .header("x-webhook-secret", &self.webhook_secret)
            .json(&webhook)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let reply = within(
            Duration::from_secs(240),
            &format!("n8n's reply to {text:?} read"),
            async || {
                let row: (String, String, Value) = sqlx::query_as(
                    "SELECT j.status, m.status, m.content FROM jobs j \
                 JOIN outbound_messages m ON m.idempotency_key = j.id::text \
                 WHERE j.payload->>'message' = $1",
                )
                .bind(text)
                .fetch_optional(db)
                .await
                .ok()??;
                (row.0 == "completed" && row.1 == "read").then_some(row.2)
            },
        )
        .await;
        let sandbox = self.sandbox_from_host().await;
        let received: Value = http
            .get(format!("{sandbox}/_sandbox/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sent =
            received.as_array().unwrap().iter().any(|m| {
                m["body"]["to"] == CUSTOMER && m["body"]["content"]["text"] == reply["text"]
            });
        assert!(sent, "the sandbox received {reply}: {received}");
    }
}

/// The administrator's pool on the release's database.
async fn admin_pool(database: &str) -> sqlx::PgPool {
    let mut url = url::Url::parse(&require_env(PG_URL_VAR)).unwrap();
    url.set_path(&format!("/{database}"));
    sqlx::PgPool::connect(url.as_str()).await.unwrap()
}
