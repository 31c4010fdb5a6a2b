//! The real node of the test ground (`scripts/node`, started by `scripts/test`): pods of the
//! images built here run under containerd and runc, reach PostgreSQL on the host, find each
//! other through Services (kube-proxy) by their cluster DNS names (CoreDNS), talk to the API
//! server with their ServiceAccount token, and a missing image fails at once (no registry). The
//! node runs a cluster's controllers: a Deployment makes pods, a claim gets a volume, a deleted
//! namespace takes everything in it.

use crate::common::{self, require_env, unique, within};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

/// The node's name; set by scripts/test once the node is Ready.
const NODE_VAR: &str = "FLOMASTR_TEST_NODE";
/// Where pods reach the host (PostgreSQL, the API server).
const HOST_IP_VAR: &str = "FLOMASTR_TEST_NODE_HOST_IP";
/// The images scripts/test imported into the node (fully qualified references).
const FLOMASTR_IMAGE_VAR: &str = "FLOMASTR_TEST_IMAGE_FLOMASTR";
const N8N_IMAGE_VAR: &str = "FLOMASTR_TEST_IMAGE_N8N";

/// A namespace of its own for one test, on a client of the admin context.
struct TestNamespace {
    client: kube::Client,
    name: String,
}

impl TestNamespace {
    async fn new(prefix: &str) -> Self {
        require_env(NODE_VAR);
        let client = common::admin_client().await;
        let name = unique(prefix);
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        // Pods need the namespace's default ServiceAccount (the controller manager makes it).
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        within(
            Duration::from_secs(30),
            "the default ServiceAccount",
            async || accounts.get_opt("default").await.ok().flatten(),
        )
        .await;
        TestNamespace { client, name }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    async fn create_pod(&self, spec: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(spec).expect("a valid Pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("the API server accepts the pod")
    }

    async fn create_service(&self, spec: serde_json::Value) {
        let service: Service = serde_json::from_value(spec).expect("a valid Service");
        Api::<Service>::namespaced(self.client.clone(), &self.name)
            .create(&PostParams::default(), &service)
            .await
            .expect("the API server accepts the Service");
    }

    /// Waits until the pod's containers are Ready.
    async fn ready(&self, name: &str, limit: Duration) -> Pod {
        let pods = self.pods();
        within(limit, &format!("pod {name} to be Ready"), async || {
            let pod = pods.get(name).await.ok()?;
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() == Some("Failed") {
                panic!("pod {name} failed: {:?}\n{}", status, self.logs(name).await);
            }
            let ready = status
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(pod)
        })
        .await
    }

    /// Waits until a run-once pod ends, and asserts it succeeded (showing its log if not).
    async fn succeeds(&self, name: &str, limit: Duration) -> String {
        let pods = self.pods();
        let phase = within(limit, &format!("pod {name} to finish"), async || {
            let pod = pods.get(name).await.ok()?;
            let phase = pod.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        })
        .await;
        let logs = self.logs(name).await;
        assert_eq!(phase, "Succeeded", "pod {name} failed; its log:\n{logs}");
        logs
    }

    async fn logs(&self, name: &str) -> String {
        self.pods()
            .logs(name, &LogParams::default())
            .await
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Deletes the test's namespace: the namespace controller removes what is in it.
    async fn delete(&self) {
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("delete the test namespace");
    }
}

/// A pod that runs a Node.js script once (the n8n image has Node; the flomastr image has no
/// shell or client tools by design).
fn node_script_pod(name: &str, script: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "script",
                "image": require_env(N8N_IMAGE_VAR),
                "imagePullPolicy": "Never",
                "command": ["node", "-e", script],
            }],
        },
    })
}

#[tokio::test]
async fn the_flomastr_image_runs_the_engine_against_postgres_behind_a_service() {
    let ns = TestNamespace::new("node-engine").await;
    let db = common::fresh_db().await;
    // The same server, at the address pods reach the host on.
    let host_ip = require_env(HOST_IP_VAR);
    let database_url = db.url.replacen("@127.0.0.1:", &format!("@{host_ip}:"), 1);
    assert_ne!(
        database_url, db.url,
        "the test database URL names 127.0.0.1"
    );
    let master_key = format!(
        "node-test:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
    );

    ns.create_pod(json!({
        "metadata": {"name": "engine", "labels": {"app": "engine"}},
        "spec": {
            "containers": [{
                "name": "engine",
                "image": require_env(FLOMASTR_IMAGE_VAR),
                "imagePullPolicy": "Never",
                "args": ["engine"],
                "env": [
                    {"name": "DATABASE_URL", "value": database_url},
                    {"name": "FLOMASTR_ADMIN_TOKEN", "value": "node-test-admin-token-0123456789"},
                    {"name": "FLOMASTR_MASTER_KEY", "value": master_key},
                    {"name": "FLOMASTR_LISTEN", "value": "0.0.0.0:8080"},
                ],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                // What the chart runs it with: no root, nothing writable.
                "securityContext": {
                    "runAsNonRoot": true,
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }))
    .await;
    ns.create_service(json!({
        "metadata": {"name": "engine"},
        "spec": {"selector": {"app": "engine"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .await;
    let engine = ns.ready("engine", Duration::from_secs(120)).await;
    let user = engine.spec.unwrap().containers[0]
        .security_context
        .clone()
        .unwrap();
    assert_eq!(user.run_as_non_root, Some(true));

    // Another pod reaches it through the Service's cluster DNS name (CoreDNS → ClusterIP →
    // kube-proxy's DNAT to the engine pod) and gets the engine's health with the queue in it.
    // The endpoint reaches kube-proxy's rules a moment after the pod is Ready (the EndpointSlice
    // controller, then kube-proxy's sync; seconds on a loaded machine): until then a connection
    // is refused, and the client tries again, as any client of a new Service would.
    let url = format!("http://engine.{}.svc.cluster.local/", ns.name);
    let script = format!(
        "const get = (left) => fetch({url:?}).catch(e => {{ if (left > 0) {{ return new Promise(ok => setTimeout(ok, 500)).then(() => get(left - 1)); }} throw e; }}); \
         get(60).then(async r => {{ const body = await r.text(); console.log(r.status, body); \
         process.exit(r.status === 200 && JSON.parse(body).status === 'ok' ? 0 : 1); }}, e => {{ console.error(e); process.exit(2); }})"
    );
    ns.create_pod(node_script_pod("client", &script)).await;
    let logs = ns.succeeds("client", Duration::from_secs(90)).await;
    assert!(logs.starts_with("200 "), "{logs}");
    ns.delete().await;
}

#[tokio::test]
async fn pods_resolve_cluster_names_and_reach_the_api_server_with_their_service_account() {
    let ns = TestNamespace::new("node-dns").await;
    // The short name through the pod's search path, the full name, and the API server behind
    // the `kubernetes` Service with the ServiceAccount token and CA the kubelet mounted.
    let script = r#"
const dns = require('dns').promises, fs = require('fs'), https = require('https');
const dir = '/var/run/secrets/kubernetes.io/serviceaccount';
(async () => {
  const full = await dns.lookup('kubernetes.default.svc.cluster.local');
  const short = await dns.lookup('kubernetes.default');
  console.log('resolved', full.address, short.address);
  if (full.address !== '10.96.0.1' || short.address !== full.address) process.exit(1);
  const missing = await dns.lookup('no-such-service.default.svc.cluster.local').then(() => 'found', e => e.code);
  console.log('missing', missing);
  if (missing !== 'ENOTFOUND') process.exit(1);
  const options = { host: 'kubernetes.default.svc', path: '/version', ca: fs.readFileSync(dir + '/ca.crt'),
                    headers: { Authorization: 'Bearer ' + fs.readFileSync(dir + '/token', 'utf8') } };
  https.get(options, res => {
    let body = ''; res.on('data', d => body += d);
    res.on('end', () => { console.log('version', res.statusCode, JSON.parse(body).gitVersion); process.exit(res.statusCode === 200 ? 0 : 1); });
  }).on('error', e => { console.error(e); process.exit(2); });
})().catch(e => { console.error(e); process.exit(2); });
"#;
    ns.create_pod(node_script_pod("dns", script)).await;
    let logs = ns.succeeds("dns", Duration::from_secs(90)).await;
    assert!(logs.contains("resolved 10.96.0.1 10.96.0.1"), "{logs}");
    assert!(logs.contains("version 200 v1.37"), "{logs}");
    ns.delete().await;
}

#[tokio::test]
async fn an_image_that_is_not_on_the_node_fails_to_pull_at_once() {
    let ns = TestNamespace::new("node-pull").await;
    ns.create_pod(json!({
        "metadata": {"name": "missing"},
        "spec": {"containers": [{"name": "app", "image": "flomastr/no-such-image:0.0.0", "imagePullPolicy": "IfNotPresent"}]},
    }))
    .await;
    let pods = ns.pods();
    // Nothing outside the machine answers, so the pull fails fast rather than hanging.
    let reason = within(
        Duration::from_secs(60),
        "an image pull failure",
        async || {
            let pod = pods.get("missing").await.ok()?;
            let waiting = pod
                .status?
                .container_statuses?
                .first()?
                .state
                .clone()?
                .waiting?;
            waiting
                .reason
                .filter(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
        },
    )
    .await;
    assert!(["ErrImagePull", "ImagePullBackOff"].contains(&reason.as_str()));
    ns.delete().await;
}

#[tokio::test]
async fn the_n8n_image_starts_and_answers_its_health_check() {
    let ns = TestNamespace::new("node-n8n").await;
    let started = Instant::now();
    ns.create_pod(json!({
        "metadata": {"name": "n8n"},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true},
            "containers": [{
                "name": "n8n",
                "image": require_env(N8N_IMAGE_VAR),
                "imagePullPolicy": "Never",
                "env": [
                    {"name": "N8N_PORT", "value": "5678"},
                    {"name": "N8N_DIAGNOSTICS_ENABLED", "value": "false"},
                    {"name": "N8N_VERSION_NOTIFICATIONS_ENABLED", "value": "false"},
                    {"name": "N8N_HIRING_BANNER_ENABLED", "value": "false"},
                ],
                "ports": [{"containerPort": 5678}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 5678}, "periodSeconds": 1},
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))
    .await;
    // n8n migrates its SQLite database on first start (about 20 s on an idle machine).
    let pod = ns.ready("n8n", Duration::from_secs(240)).await;
    let ip = pod.status.unwrap().pod_ip.expect("the pod has an address");
    let health: serde_json::Value = reqwest::get(format!("http://{ip}:5678/healthz"))
        .await
        .expect("the host reaches the pod")
        .json()
        .await
        .expect("n8n answers /healthz with JSON");
    assert_eq!(health["status"], "ok", "{health}");
    let logs = ns.logs("n8n").await;
    assert!(
        !logs.contains("EMFILE"),
        "n8n ran out of file descriptors:\n{logs}"
    );
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "n8n pod ready");
    ns.delete().await;
}

#[tokio::test]
async fn a_deployment_runs_a_non_root_pod_on_a_provisioned_volume_and_goes_with_its_namespace() {
    let ns = TestNamespace::new("node-workload").await;
    // A claim of the node's default StorageClass, used by a Deployment's pod that runs as n8n
    // does (uid 1000, fsGroup 1000): the Deployment and ReplicaSet controllers make the pod,
    // the scheduler places it, the provisioner makes its volume, the pod writes to it.
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ns.client.clone(), &ns.name);
    claims.create(&PostParams::default(), &claim).await.unwrap();
    let script = "const fs = require('fs'); fs.writeFileSync('/data/proof', 'written by ' + process.getuid()); \
                  process.on('SIGTERM', () => process.exit(0)); \
                  require('http').createServer((q, r) => r.end(fs.readFileSync('/data/proof'))).listen(8080);";
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "writer"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "writer"}},
            "template": {
                "metadata": {"labels": {"app": "writer"}},
                "spec": {
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": true},
                    "containers": [{
                        "name": "writer",
                        "image": require_env(N8N_IMAGE_VAR),
                        "imagePullPolicy": "Never",
                        "command": ["node", "-e", script],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                },
            },
        },
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(ns.client.clone(), &ns.name);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    within(
        Duration::from_secs(120),
        "the Deployment's pod available",
        async || {
            let status = deployments.get("writer").await.ok()?.status?;
            (status.available_replicas == Some(1)).then_some(())
        },
    )
    .await;

    let volume_name = claims
        .get("data")
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name
        .expect("the claim is bound");
    let volumes: Api<PersistentVolume> = Api::all(ns.client.clone());
    let volume = volumes.get(&volume_name).await.unwrap();
    let path = volume
        .spec
        .as_ref()
        .and_then(|s| s.local.as_ref())
        .map(|l| l.path.clone())
        .expect("a local volume");
    let written =
        std::fs::read_to_string(format!("{path}/proof")).expect("the pod's file on the node");
    assert_eq!(written, "written by 1000");

    // The namespace controller deletes the Deployment, the garbage collector its ReplicaSet and
    // pod; the released volume's directory goes with it.
    ns.delete().await;
    within(
        Duration::from_secs(120),
        "the namespace and the volume gone",
        async || {
            let namespace = Api::<Namespace>::all(ns.client.clone())
                .get_opt(&ns.name)
                .await
                .ok()?;
            let volume = volumes.get_opt(&volume_name).await.ok()?;
            (namespace.is_none() && volume.is_none()).then_some(())
        },
    )
    .await;
    assert!(
        !std::path::Path::new(&path).exists(),
        "the volume's directory is removed"
    );
}
