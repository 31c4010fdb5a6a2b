//! The operator against the real API server, a running engine and (when installed) real Caddy:
//! the lifecycle, drift, no-op resyncs, suspension, deletion, missing credentials, DNS, RBAC.
//! The operator runs as its own ServiceAccount under `manifests/rbac/operator.yaml` (the chart's
//! RBAC and admission policy) unless a test says why not.

use crate::common::{admin_client, eventually, install_tenant_crd, kube_client, unique};
use crate::engine_harness::{ADMIN_TOKEN, TestEngine, start_engine};
use flomastr::operator::config::{DnsProviderKind, OperatorArgs};
use flomastr::operator::context::Context;
use flomastr::operator::metrics::OperatorMetrics;
use flomastr::operator::reconcile::{error_policy, reconcile};
use flomastr::tenant::{Tenant, TenantPhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The operator's credentials namespace in `manifests/rbac/operator.yaml` and in the tests.
pub const CREDENTIALS_NAMESPACE: &str = "flomastr-credentials";
/// The operator's own namespace (its Lease; the engine's namespace for the NetworkPolicy).
pub const OPERATOR_NAMESPACE: &str = "flomastr-system";

pub fn operator_args(engine: &TestEngine) -> OperatorArgs {
    OperatorArgs {
        base_domain: "example.test".into(),
        ingress_class: Some("caddy".into()),
        ingress_namespace: "ingress".into(),
        frontend_service: Some("flomastr-system/frontend:80".into()),
        caddy_admin_url: None,
        caddy_server: "srv0".into(),
        caddy_n8n_upstream: "n8n.{namespace}.svc:5678".into(),
        caddy_frontend_upstream: "frontend.flomastr-system.svc:80".into(),
        dns_provider: DnsProviderKind::None,
        dns_zone: None,
        digitalocean_token: None,
        digitalocean_url: "http://127.0.0.1:9".into(),
        engine_url: engine.url.clone(),
        engine_worker_url: None,
        engine_admin_token: ADMIN_TOKEN.into(),
        n8n_image: flomastr::operator::config::DEFAULT_N8N_IMAGE.into(),
        namespace: OPERATOR_NAMESPACE.into(),
        credentials_namespace: CREDENTIALS_NAMESPACE.into(),
        engine_pod_selector: "app.kubernetes.io/name=flomastr,app.kubernetes.io/instance=flomastr,app.kubernetes.io/component=engine"
            .parse()
            .unwrap(),
        engine_pod_port: 8080,
        cluster_dns_namespace: "kube-system".into(),
        cluster_dns_pod_selector: "k8s-app=kube-dns".parse().unwrap(),
        identity: None,
        no_leader_election: true,
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        resync_seconds: 300,
        tenant_selector: None,
        concurrency: 4,
        backup_key: None,
        backup_volumes_dir: std::env::temp_dir(),
        backup_image: std::env::var("FLOMASTR_TEST_IMAGE_FLOMASTR")
            .unwrap_or_else(|_| "flomastr/flomastr:test".into()),
    }
}

pub async fn context(client: kube::Client, args: OperatorArgs) -> Arc<Context> {
    Context::new(client, args, Arc::new(OperatorMetrics::default())).unwrap()
}

/// Creates a namespace unless it exists (tests share the fixed ones).
pub async fn ensure_namespace(client: &kube::Client, name: &str) {
    let namespaces = Api::<Namespace>::all(client.clone());
    if namespaces.get_opt(name).await.unwrap().is_some() {
        return;
    }
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("create namespace {name}: {error}"),
    }
}

/// The name of a tenant's credentials Secret in the tests.
pub fn credentials_name(slug: &str) -> String {
    format!("{slug}-infobip")
}

/// A credentials Secret (InfoBip keys) in `namespace`, labelled as tenant `owner`'s.
pub async fn credentials_in(client: &kube::Client, namespace: &str, name: &str, owner: &str) {
    let data = json!({"apiKey": "ib-api-key-from-secret", "webhookSecret": "hook-from-secret"});
    credentials_with(client, namespace, name, owner, data).await;
}

/// A credentials Secret with `data` (its `stringData`) in `namespace`, labelled as `owner`'s.
pub async fn credentials_with(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    owner: &str,
    data: Value,
) {
    ensure_namespace(client, namespace).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"flomastr.io/tenant": owner}},
        "stringData": data
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// The tenant's credentials Secret where the operator reads them, labelled for it.
pub async fn credentials(client: &kube::Client, slug: &str) {
    credentials_in(client, CREDENTIALS_NAMESPACE, &credentials_name(slug), slug).await;
}

/// An InfoBip number of the tenant's own (a number belongs to at most one tenant, and one test
/// often makes several Tenants against one engine), derived from the slug so it stays stable.
pub fn sender_for(slug: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(slug.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 100_000_000;
    format!("4411{n:08}")
}

/// A Tenant naming its credentials Secret in the credentials namespace; `extra` replaces
/// top-level spec fields.
pub async fn create_tenant(client: &kube::Client, slug: &str, extra: Value) -> Tenant {
    let mut body = json!({
        "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "metadata": {"name": slug},
        "spec": {
            "displayName": "ACME Bakery", "deletionPolicy": "Delete",
            // No n8n pod unless a test asks: on the test node each runs a real n8n.
            "n8n": {"replicas": 0, "storage": "2Gi", "timezone": "Europe/Madrid"},
            "whatsapp": {"provider": "Infobip", "sender": sender_for(slug),
                         "credentialsSecretRef": {"name": credentials_name(slug), "namespace": CREDENTIALS_NAMESPACE}},
            "limits": {"quota": {"pods": 5, "requestsCpu": "2"}, "maxConcurrentJobs": 7,
                       "mediaMaxBytes": 2000000, "mediaRetentionSeconds": 86400}
        }
    });
    if let (Some(spec), Some(extra)) = (body["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let tenant: Tenant = serde_json::from_value(body).unwrap();
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap()
}

static OPERATOR_RBAC: OnceCell<()> = OnceCell::const_new();

/// Applies `manifests/rbac/operator.yaml` (the chart's RBAC and admission policy) once per test
/// process and waits until the API server enforces both.
pub async fn install_operator_rbac(admin: &kube::Client) {
    OPERATOR_RBAC
        .get_or_init(|| async {
            ensure_namespace(admin, OPERATOR_NAMESPACE).await;
            ensure_namespace(admin, CREDENTIALS_NAMESPACE).await;
            let rbac = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/manifests/rbac/operator.yaml"
            ))
            .unwrap();
            let discovery = kube::Discovery::new(admin.clone()).run().await.unwrap();
            for document in serde_yaml::Deserializer::from_str(&rbac) {
                let object: kube::api::DynamicObject =
                    serde::Deserialize::deserialize(document).unwrap();
                let gvk =
                    kube::core::GroupVersionKind::try_from(object.types.as_ref().unwrap()).unwrap();
                let (resource, caps) = discovery.resolve_gvk(&gvk).unwrap();
                let api: Api<kube::api::DynamicObject> = match caps.scope {
                    kube::discovery::Scope::Namespaced => Api::namespaced_with(
                        admin.clone(),
                        object.metadata.namespace.as_deref().unwrap(),
                        &resource,
                    ),
                    kube::discovery::Scope::Cluster => Api::all_with(admin.clone(), &resource),
                };
                api.patch(
                    &object.metadata.name.clone().unwrap(),
                    &PatchParams::apply("flomastr-tests").force(),
                    &Patch::Apply(&object),
                )
                .await
                .unwrap();
            }
            // RBAC and admission policies take effect when the API server's caches see them.
            let operator = kube_client("operator").await;
            eventually("the operator's RBAC in force", || async {
                Api::<Tenant>::all(operator.clone())
                    .list(&Default::default())
                    .await
                    .ok()
            })
            .await;
            let probe: Deployment = serde_json::from_value(json!({
                "metadata": {"name": "admission-probe"},
                "spec": {"selector": {"matchLabels": {"app": "probe"}},
                         "template": {"metadata": {"labels": {"app": "probe"}},
                                      "spec": {"containers": [{"name": "probe", "image": "probe"}]}}}
            }))
            .unwrap();
            let deployments = Api::<Deployment>::namespaced(operator.clone(), "default");
            eventually("the operator's admission policy in force", || async {
                let params = PostParams {
                    dry_run: true,
                    ..PostParams::default()
                };
                match deployments.create(&params, &probe).await {
                    Err(kube::Error::Api(status)) if status.message.contains("denied request") => {
                        Some(())
                    }
                    _ => None,
                }
            })
            .await;
        })
        .await;
}

/// The operator's own identity, under the chart's RBAC and admission policy.
pub async fn operator_client(admin: &kube::Client) -> kube::Client {
    install_operator_rbac(admin).await;
    kube_client("operator").await
}

/// One reconcile, as the controller would run it. A Tenant without the finalizer first gets it
/// (that pass only adds it; the controller then reconciles again on the change).
pub async fn reconcile_now(
    client: &kube::Client,
    ctx: &Arc<Context>,
    slug: &str,
) -> Result<Action, String> {
    let api = Api::<Tenant>::all(client.clone());
    let tenant = api.get(slug).await.unwrap();
    let has_finalizer = tenant
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == "flomastr.io/cleanup"));
    let deleting = tenant.metadata.deletion_timestamp.is_some();
    let result = reconcile(Arc::new(tenant), ctx.clone())
        .await
        .map_err(|e| e.to_string());
    if has_finalizer || deleting {
        return result;
    }
    assert_eq!(
        result,
        Ok(Action::await_change()),
        "the first pass adds the finalizer"
    );
    reconcile(Arc::new(api.get(slug).await.unwrap()), ctx.clone())
        .await
        .map_err(|e| e.to_string())
}

async fn resource_versions(client: &kube::Client, slug: &str) -> Vec<String> {
    let ns = format!("tenant-{slug}");
    let rv = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.resource_version.clone().unwrap_or_default()
    };
    vec![
        rv(&Api::<Tenant>::all(client.clone())
            .get(slug)
            .await
            .unwrap()
            .metadata),
        rv(&Api::<Namespace>::all(client.clone())
            .get(&ns)
            .await
            .unwrap()
            .metadata),
        rv(&Api::<Deployment>::namespaced(client.clone(), &ns)
            .get("n8n")
            .await
            .unwrap()
            .metadata),
        rv(&Api::<Service>::namespaced(client.clone(), &ns)
            .get("n8n")
            .await
            .unwrap()
            .metadata),
        rv(
            &Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                .get("n8n-data")
                .await
                .unwrap()
                .metadata,
        ),
        rv(&Api::<Ingress>::namespaced(client.clone(), &ns)
            .get("n8n")
            .await
            .unwrap()
            .metadata),
        rv(&Api::<Secret>::namespaced(client.clone(), &ns)
            .get("n8n-encryption")
            .await
            .unwrap()
            .metadata),
        rv(&Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .get("n8n")
            .await
            .unwrap()
            .metadata),
    ]
}

fn condition<'a>(
    tenant: &'a Tenant,
    kind: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    tenant
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap()
}

#[tokio::test]
async fn full_lifecycle_on_the_real_api_server() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let ctx = context(operator_client(&client).await, operator_args(&engine)).await;
    let slug = unique("acme");
    credentials(&client, &slug).await;
    let ns = format!("tenant-{slug}");
    // An image no node has: the pod never runs (n8n itself runs in the node tests).
    create_tenant(
        &client,
        &slug,
        json!({"n8n": {"replicas": 1, "storage": "2Gi", "timezone": "Europe/Madrid", "image": "n8nio/n8n:0.0.0-absent"}}),
    )
    .await;

    // First pass: children applied, engine registered, waiting for n8n.
    let action = reconcile_now(&client, &ctx, &slug).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(300)),
        "waiting on the Deployment is progress, not an error"
    );
    let tenant = Api::<Tenant>::all(client.clone()).get(&slug).await.unwrap();
    assert!(
        tenant
            .metadata
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&"flomastr.io/cleanup".to_owned())
    );
    assert_eq!(
        tenant.status.as_ref().unwrap().phase,
        Some(TenantPhase::Provisioning)
    );
    assert_eq!(condition(&tenant, "EngineRegistered").status, "True");
    assert_eq!(condition(&tenant, "N8nReady").reason, "Progressing");
    assert_eq!(
        tenant.status.as_ref().unwrap().n8n_url.as_deref(),
        Some(format!("https://{slug}.n8n.example.test").as_str())
    );

    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("n8n")
        .await
        .unwrap();
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Tenant", slug.as_str(), Some(true))
    );
    let pod = deployment.spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("n8nio/n8n:0.0.0-absent"));
    let env: std::collections::HashMap<_, _> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    assert_eq!(
        env["N8N_HOST"].value.as_deref(),
        Some(format!("{slug}.n8n.example.test").as_str())
    );
    assert_eq!(
        env["GENERIC_TIMEZONE"].value.as_deref(),
        Some("Europe/Madrid")
    );
    assert_eq!(
        env["FLOMASTR_ENGINE_URL"].value.as_deref(),
        Some(engine.url.as_str())
    );
    // The workflow needs no `$env`: n8n's default (blocked) stands, and the worker token is
    // not in n8n's environment; only the provisioning container gets it, for the credential.
    assert!(!env.contains_key("N8N_BLOCK_ENV_ACCESS_IN_NODE"));
    assert!(!env.contains_key("FLOMASTR_WORKER_TOKEN"));
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image, container.image);
    let token_ref = init
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "FLOMASTR_WORKER_TOKEN")
        .and_then(|e| e.value_from.as_ref())
        .unwrap();
    assert_eq!(
        token_ref.secret_key_ref.as_ref().unwrap().name,
        "flomastr-worker"
    );
    assert_eq!(
        env["N8N_INSTANCE_OWNER_PASSWORD_HASH"]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "n8n-owner"
    );
    assert_eq!(
        env["N8N_ENCRYPTION_KEY"]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "n8n-encryption"
    );
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_user,
        Some(1000)
    );
    assert_eq!(
        container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz/readiness")
    );
    let quota = Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(client.clone(), &ns)
        .get("tenant-quota")
        .await
        .unwrap();
    assert_eq!(quota.spec.unwrap().hard.unwrap()["pods"].0, "5");
    let ingress = Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("n8n")
        .await
        .unwrap();
    assert_eq!(
        ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(),
        Some(format!("{slug}.n8n.example.test").as_str())
    );
    Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("frontend")
        .await
        .expect("frontend ingress");
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .get("n8n")
        .await
        .expect("network policy");

    // The engine knows the tenant, and the minted worker token works there.
    let token_secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("flomastr-worker")
        .await
        .unwrap();
    let token = String::from_utf8(
        token_secret.data.unwrap()["FLOMASTR_WORKER_TOKEN"]
            .0
            .clone(),
    )
    .unwrap();
    let poll = engine
        .http
        .get(engine.at("/queue/next-job"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        poll.status(),
        204,
        "the worker token registered in the engine is the one in the Secret"
    );
    let view: Value = engine
        .http
        .get(engine.at(&format!("/admin/tenants/{slug}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["channel"]["provider"], "infobip");
    assert_eq!(view["max_concurrency"], 7);
    assert_eq!(view["media_max_bytes"], 2_000_000);
    assert_eq!(view["media_retention_seconds"], 86400);
    assert_eq!(view["webhook_secret_set"], true);

    // Ready once n8n runs as the spec asks: here with no pod (the node's Deployment controller
    // reports only pods that really run; a running n8n is tested on the node).
    Api::<Tenant>::all(client.clone())
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"n8n": {"replicas": 0}}})),
        )
        .await
        .unwrap();
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    let tenant = Api::<Tenant>::all(client.clone()).get(&slug).await.unwrap();
    assert_eq!(
        tenant.status.as_ref().unwrap().phase,
        Some(TenantPhase::Ready)
    );
    assert_eq!(condition(&tenant, "Ready").status, "True");
    let ready_since = condition(&tenant, "Ready").last_transition_time.clone();

    // A no-op resync writes nothing (once the Deployment controller has reported the scale-down:
    // its status writes are not the operator's).
    let n8n = Api::<Deployment>::namespaced(client.clone(), &ns);
    eventually("the Deployment's status settled", || async {
        let deployment = n8n.get("n8n").await.ok()?;
        let status = deployment.status?;
        let settled = status.observed_generation == deployment.metadata.generation
            && status.replicas.unwrap_or(0) == 0
            && status.unavailable_replicas.unwrap_or(0) == 0;
        settled.then_some(())
    })
    .await;
    let before = resource_versions(&client, &slug).await;
    let encryption = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("n8n-encryption")
        .await
        .unwrap()
        .data;
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    assert_eq!(
        resource_versions(&client, &slug).await,
        before,
        "a no-op resync changed resourceVersions"
    );
    assert_eq!(
        Api::<Secret>::namespaced(client.clone(), &ns)
            .get("n8n-encryption")
            .await
            .unwrap()
            .data,
        encryption
    );
    let tenant = Api::<Tenant>::all(client.clone()).get(&slug).await.unwrap();
    assert_eq!(
        condition(&tenant, "Ready").last_transition_time,
        ready_since
    );

    // Drift: a hand-changed image and a deleted Deployment are restored.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let hand = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "n8n", "image": "n8nio/n8n:evil"}]}}}});
    deployments
        .patch(
            "n8n",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(&hand),
        )
        .await
        .unwrap();
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    let image = deployments
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
    assert_eq!(image.as_deref(), Some("n8nio/n8n:0.0.0-absent"));
    deployments
        .delete("n8n", &DeleteParams::default())
        .await
        .unwrap();
    let _ = reconcile_now(&client, &ctx, &slug).await;
    deployments
        .get("n8n")
        .await
        .expect("a deleted Deployment is recreated");
    assert_eq!(
        Api::<Secret>::namespaced(client.clone(), &ns)
            .get("n8n-encryption")
            .await
            .unwrap()
            .data,
        encryption,
        "the key never changes"
    );

    // Suspend: scaled to zero whatever the replicas, suspended in the engine; resume brings
    // them back.
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspended": true, "n8n": {"replicas": 1}}})),
        )
        .await
        .unwrap();
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    assert_eq!(deployments.get("n8n").await.unwrap().spec.replicas, Some(0));
    assert_eq!(
        tenants.get(&slug).await.unwrap().status.unwrap().phase,
        Some(TenantPhase::Suspended)
    );
    let view: Value = engine
        .http
        .get(engine.at(&format!("/admin/tenants/{slug}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "suspended");
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspended": false}})),
        )
        .await
        .unwrap();
    let _ = reconcile_now(&client, &ctx, &slug).await;
    assert_eq!(deployments.get("n8n").await.unwrap().spec.replicas, Some(1));
    let view: Value = engine
        .http
        .get(engine.at(&format!("/admin/tenants/{slug}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "active");

    // Delete (policy Delete): the engine registration goes, then the finalizer, then the Tenant.
    tenants
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    let gone = engine
        .http
        .get(engine.at(&format!("/admin/tenants/{slug}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert!(
        tenants.get_opt(&slug).await.unwrap().is_none(),
        "the finalizer was released"
    );
}

#[tokio::test]
async fn a_missing_credentials_secret_is_a_condition_with_backoff_not_a_crash() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let ctx = context(operator_client(&client).await, operator_args(&engine)).await;
    let slug = unique("nocreds");
    create_tenant(&client, &slug, json!({})).await;
    let error = reconcile_now(&client, &ctx, &slug).await.unwrap_err();
    assert!(error.contains("EngineRegistered"), "{error}");
    let tenant = Api::<Tenant>::all(client.clone()).get(&slug).await.unwrap();
    let registered = condition(&tenant, "EngineRegistered");
    assert_eq!(
        (registered.status.as_str(), registered.reason.as_str()),
        ("False", "CredentialsSecretMissing")
    );
    assert!(
        registered
            .message
            .contains(&format!("{CREDENTIALS_NAMESPACE}/{slug}-infobip")),
        "{}",
        registered.message
    );
    assert_eq!(
        tenant.status.as_ref().unwrap().phase,
        Some(TenantPhase::Degraded)
    );
    // Backoff grows; it never spins.
    let tenant = Arc::new(tenant);
    let fake = flomastr::operator::reconcile::Error::NotReady("x".into());
    let first = error_policy(tenant.clone(), &fake, ctx.clone());
    let second = error_policy(tenant.clone(), &fake, ctx.clone());
    let third = error_policy(tenant, &fake, ctx.clone());
    assert_eq!(
        (first, second, third),
        (
            Action::requeue(Duration::from_secs(1)),
            Action::requeue(Duration::from_secs(2)),
            Action::requeue(Duration::from_secs(4))
        )
    );
}

#[tokio::test]
async fn the_operator_needs_nothing_beyond_its_cluster_role() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let engine = start_engine().await;
    let slug = unique("rbac");
    credentials(&admin, &slug).await;
    // No n8n pod: Ready needs only what the operator does.
    create_tenant(&admin, &slug, json!({"n8n": {"replicas": 0}})).await;
    // The operator's own identity: the ServiceAccount the ClusterRole is bound to.
    let operator = operator_client(&admin).await;
    let ctx = context(operator.clone(), operator_args(&engine)).await;
    reconcile_now(&operator, &ctx, &slug)
        .await
        .expect("a full reconcile under the operator's role");
    reconcile_now(&operator, &ctx, &slug).await.unwrap();
    let tenant = Api::<Tenant>::all(admin.clone()).get(&slug).await.unwrap();
    assert_eq!(tenant.status.unwrap().phase, Some(TenantPhase::Ready));
    // And no more than that: it cannot, for example, read pods' logs, run pods of its own or
    // change RBAC (pods it may only read, to tell why n8n is not ready).
    let tenant_pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(
        operator.clone(),
        &format!("tenant-{slug}"),
    );
    tenant_pods
        .list(&Default::default())
        .await
        .expect("the n8n pods' state is readable");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "intruder"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
    }))
    .unwrap();
    let created = tenant_pods.create(&PostParams::default(), &pod).await;
    assert!(matches!(created, Err(kube::Error::Api(ref s)) if s.code == 403));
    let logs = tenant_pods.logs("n8n-any", &Default::default()).await;
    assert!(matches!(logs, Err(kube::Error::Api(ref s)) if s.code == 403));
    let leases = flomastr::operator::leader::LeaderElector::new(
        operator.clone(),
        OPERATOR_NAMESPACE,
        "test-leader",
    );
    assert!(
        leases.try_acquire_or_renew().await.is_ok(),
        "leader election works under the role"
    );
    Api::<Tenant>::all(admin)
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    reconcile_now(&operator, &ctx, &slug)
        .await
        .expect("cleanup under the operator's role");
}

#[tokio::test]
async fn leader_election_allows_one_leader_and_hands_over_on_release() {
    let client = admin_client().await;
    let namespace = unique("leases");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    let first =
        flomastr::operator::leader::LeaderElector::new(client.clone(), &namespace, "replica-a");
    let second =
        flomastr::operator::leader::LeaderElector::new(client.clone(), &namespace, "replica-b");
    assert!(first.try_acquire_or_renew().await.unwrap());
    assert!(
        !second.try_acquire_or_renew().await.unwrap(),
        "one leader at a time"
    );
    assert!(
        first.try_acquire_or_renew().await.unwrap(),
        "the leader renews"
    );
    first.release().await;
    assert!(
        second.try_acquire_or_renew().await.unwrap(),
        "a released lease is taken over at once"
    );
    assert!(!first.try_acquire_or_renew().await.unwrap());
}

#[tokio::test]
async fn the_running_controller_converges_and_heals_drift_by_itself() {
    use futures::StreamExt;
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let shard = unique("shard");
    let mut args = operator_args(&engine);
    // Only this test's Tenants: other tests reconcile theirs by hand.
    args.tenant_selector = Some(format!("flomastr.io/shard={shard}"));
    // As `flomastr operator` runs it: children watched, unchanged ones not re-applied.
    let operator = operator_client(&client).await;
    let ctx = Context::watching(operator, args, Arc::new(OperatorMetrics::default())).unwrap();
    let controller = tokio::spawn(flomastr::operator::controller(ctx).for_each(|()| async {}));
    let slug = unique("auto");
    credentials(&client, &slug).await;
    let ns = format!("tenant-{slug}");
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": slug, "labels": {"flomastr.io/shard": shard}},
        "spec": {"displayName": "Auto", "n8n": {"replicas": 0},
                 "whatsapp": {"provider": "Infobip", "sender": sender_for(&slug),
                 "credentialsSecretRef": {"name": credentials_name(&slug), "namespace": CREDENTIALS_NAMESPACE}}}
    }))
    .unwrap();
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap();

    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    eventually("the Deployment", || async {
        deployments.get_opt("n8n").await.ok().flatten()
    })
    .await;
    eventually("phase Ready", || async {
        let t = tenants.get(&slug).await.ok()?;
        (t.status?.phase == Some(TenantPhase::Ready)).then_some(())
    })
    .await;
    // A hand edit is undone although the desired object did not change (the watched copy's
    // resourceVersion no longer is the one the last apply returned).
    let edit = json!({"spec": {"template": {"spec": {"containers": [{"name": "n8n", "image": "example.invalid/n8n:hacked"}]}}}});
    deployments
        .patch("n8n", &PatchParams::default(), &Patch::Strategic(&edit))
        .await
        .unwrap();
    eventually("the hand-edited image restored", || async {
        let d = deployments.get_opt("n8n").await.ok().flatten()?;
        let image = d.spec.template.spec?.containers[0].image.clone()?;
        (!image.contains("hacked")).then_some(())
    })
    .await;
    deployments
        .delete("n8n", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted Deployment restored", || async {
        let d = deployments.get_opt("n8n").await.ok().flatten()?;
        d.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;
    tenants
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Tenant deleted after cleanup", || async {
        tenants.get_opt(&slug).await.ok()?.is_none().then_some(())
    })
    .await;
    controller.abort();
}
