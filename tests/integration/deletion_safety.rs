//! Deletion safety on the real API server: the chart's deletion protection refuses `kubectl
//! delete`; `deletionPolicy: Snapshot` holds a deletion while backups are not available; and
//! deleting the Tenant CRD (which deletes every Tenant) and recreating it leaves the tenant's
//! namespace, n8n's volume and its encryption key in place, with the real garbage collector
//! and namespace controller running (kube-controller-manager on a control plane of the test's
//! own: deleting the shared API server's CRD would delete every other test's Tenants).

use crate::chart::{Helm, minimal_values};
use crate::common::{admin_client, install_tenant_crd, kubectl, unique, within};
use crate::engine_harness::start_engine;
use crate::operator::{
    CREDENTIALS_NAMESPACE, OPERATOR_NAMESPACE, context, create_tenant, credentials, credentials_in,
    credentials_name, ensure_namespace, operator_args, operator_client, reconcile_now,
};
use flomastr::operator::context::Context;
use flomastr::operator::metrics::OperatorMetrics;
use flomastr::tenant::{Tenant, TenantPhase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

const RELEASE: &str = "flomastr-deletion-tests";
const CRD_NAME: &str = "tenants.flomastr.io";

static PROTECTION: OnceCell<()> = OnceCell::const_new();

/// The chart's deletion-protection policy and binding (rendered by helm, as `helm install`
/// would create them), applied once per test process.
async fn install_deletion_protection(admin: &kube::Client) {
    PROTECTION
        .get_or_init(|| async {
            let objects = Helm::new().render(RELEASE, "flomastr-system", &minimal_values());
            let protection: Vec<&Value> = objects
                .iter()
                .filter(|o| {
                    o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("-tenant-deletion-protection"))
                })
                .collect();
            assert_eq!(
                protection.len(),
                2,
                "the policy and its binding are rendered"
            );
            for object in protection {
                let object: DynamicObject = serde_json::from_value(object.clone()).unwrap();
                let gvk = GroupVersionKind::try_from(object.types.as_ref().unwrap()).unwrap();
                let resource = ApiResource::from_gvk(&gvk);
                Api::<DynamicObject>::all_with(admin.clone(), &resource)
                    .patch(
                        &object.name_any(),
                        &PatchParams::apply("flomastr-tests").force(),
                        &Patch::Apply(&object),
                    )
                    .await
                    .unwrap();
            }
        })
        .await;
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn deletion_protection_refuses_kubectl_delete_until_it_is_switched_off() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    install_deletion_protection(&client).await;
    let slug = unique("protected");
    create_tenant(&client, &slug, json!({"deletionProtection": true})).await;
    let refusal = format!(
        "Tenant {slug} has spec.deletionProtection: true; set it to false before deleting it"
    );
    // Admission policies take effect once the API server's caches see them: a server-side dry
    // run shows when, without deleting anything.
    within(
        Duration::from_secs(30),
        "the deletion protection in force",
        async || {
            let (_, said) = kubectl(&["delete", "tenant", &slug, "--dry-run=server"]).await;
            said.contains(&refusal).then_some(())
        },
    )
    .await;

    let (out, said) = kubectl(&["delete", "tenant", &slug]).await;
    assert!(!out.status.success(), "kubectl delete is refused");
    assert!(
        said.contains("Forbidden") && said.contains(&refusal),
        "kubectl says why: {said}"
    );
    let tenants: Api<Tenant> = Api::all(client.clone());
    match tenants.delete(&slug, &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert!(status.message.contains(&refusal), "{}", status.message);
        }
        other => panic!("the API refuses the deletion too: {other:?}"),
    }
    let kept = tenants.get(&slug).await.unwrap();
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "nothing started"
    );

    // Bad input: the field is a boolean, and the policy one of three words; both refused by
    // the CRD's schema naming the field, nothing written.
    let raw: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<Tenant>(&()));
    for (field, value) in [
        ("deletionProtection", json!("yes")),
        ("deletionPolicy", json!("Archive")),
    ] {
        let name = unique("badpolicy");
        let mut tenant = serde_json::to_value(crate::tenant_crd::sample_tenant(&name)).unwrap();
        tenant["spec"][field] = value;
        let tenant: DynamicObject = serde_json::from_value(tenant).unwrap();
        match raw.create(&PostParams::default(), &tenant).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{field}");
                assert!(
                    status.message.contains(&format!("spec.{field}")),
                    "{field}: {}",
                    status.message
                );
            }
            other => panic!("{field}: refused, got {other:?}"),
        }
        assert!(tenants.get_opt(&name).await.unwrap().is_none());
    }

    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionProtection": false}})),
        )
        .await
        .unwrap();
    let (out, said) = kubectl(&["delete", "tenant", &slug, "--wait=false"]).await;
    assert!(out.status.success(), "allowed once switched off: {said}");
    assert!(tenants.get_opt(&slug).await.unwrap().is_none());
}

#[test]
fn the_deletion_protection_can_be_switched_off_in_the_chart() {
    let mut values = minimal_values();
    values["tenantDeletionProtection"] = json!({"enabled": false});
    let objects = Helm::new().render(RELEASE, "flomastr-system", &values);
    assert!(
        !objects.iter().any(|o| o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-tenant-deletion-protection"))),
        "no deletion protection rendered when switched off"
    );
}

fn condition<'a>(
    tenant: &'a Tenant,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    tenant
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
}

#[tokio::test]
async fn a_snapshot_policy_holds_the_deletion_until_backups_exist_or_the_policy_changes() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let ctx = context(operator_client(&client).await, operator_args(&engine)).await;
    let slug = unique("snap");
    credentials(&client, &slug).await;
    create_tenant(&client, &slug, json!({"deletionPolicy": "Snapshot"})).await;
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    let ns = format!("tenant-{slug}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let key_before = secrets.get("n8n-encryption").await.unwrap();

    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    let held = reconcile_now(&client, &ctx, &slug).await.unwrap_err();
    assert!(held.contains("has no spec.backup.target"), "{held}");
    let tenant = tenants.get(&slug).await.unwrap();
    assert!(tenant.metadata.deletion_timestamp.is_some());
    assert!(
        tenant
            .finalizers()
            .iter()
            .any(|f| f == "flomastr.io/cleanup"),
        "the finalizer holds the Tenant"
    );
    let stalled = condition(&tenant, "Stalled").expect("a Stalled condition");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "SnapshotUnavailable")
    );
    assert!(stalled.message.contains("Retain"), "{}", stalled.message);
    assert_eq!(stalled.observed_generation, tenant.metadata.generation);
    assert_eq!(
        condition(&tenant, "Ready").unwrap().reason,
        "DeletionBlocked"
    );
    assert_eq!(
        tenant.status.as_ref().unwrap().phase,
        Some(TenantPhase::Terminating)
    );
    // Nothing of the live tenant was touched: its namespace and key are as they were, and it
    // is still registered in the engine.
    let namespace = namespaces.get(&ns).await.unwrap();
    assert!(namespace.metadata.deletion_timestamp.is_none());
    assert_eq!(
        secrets.get("n8n-encryption").await.unwrap().metadata.uid,
        key_before.metadata.uid
    );
    assert!(
        ctx.engine.tenant(&slug).await.unwrap().is_some(),
        "still registered in the engine"
    );

    // Retain lets the deletion proceed and keeps the data.
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}})),
        )
        .await
        .unwrap();
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    assert!(tenants.get_opt(&slug).await.unwrap().is_none(), "deleted");
    let namespace = namespaces.get(&ns).await.unwrap();
    assert_eq!(
        namespace.metadata.owner_references, None,
        "retained: owned by nobody"
    );
    let key = secrets.get("n8n-encryption").await.unwrap();
    assert_eq!(key.metadata.uid, key_before.metadata.uid);
    assert_eq!(key.metadata.owner_references, None);
}

/// A kube-apiserver + etcd + kube-controller-manager (garbage collector and namespace
/// controllers) of this test's own, stopped when dropped.
struct PrivateControlPlane {
    dir: tempfile::TempDir,
    kubeconfig: String,
}

impl PrivateControlPlane {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flomastr-gc-")
            .tempdir()
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/apiserver");
        let out = Command::new(script)
            .arg("start")
            .arg(dir.path())
            .env("FLOMASTR_APISERVER_GC", "1")
            .output()
            .expect("run scripts/apiserver");
        let plane = Self {
            kubeconfig: dir.path().join("kubeconfig").to_str().unwrap().to_owned(),
            dir,
        };
        assert!(
            out.status.success(),
            "scripts/apiserver start: {}",
            text(&out)
        );
        plane
    }

    async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for PrivateControlPlane {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/apiserver");
        let _ = Command::new(script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

async fn install_crd(client: &kube::Client) {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/tenant.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
    flomastr::tenant::install_crd(client, &crd, "flomastr-tests", Duration::from_secs(60))
        .await
        .unwrap();
}

/// The running controller over every Tenant of `client`'s cluster, until aborted.
fn run_operator(
    client: &kube::Client,
    args: flomastr::operator::config::OperatorArgs,
) -> tokio::task::JoinHandle<()> {
    let ctx =
        Context::watching(client.clone(), args, Arc::new(OperatorMetrics::default())).unwrap();
    tokio::spawn(flomastr::operator::controller(ctx).for_each(|()| async {}))
}

async fn ready(tenants: &Api<Tenant>, slug: &str) {
    within(
        Duration::from_secs(60),
        &format!("Tenant {slug} Ready"),
        async || {
            let tenant = tenants.get_opt(slug).await.ok()??;
            (tenant.status?.phase == Some(TenantPhase::Ready)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_and_recreating_the_crd_keeps_the_tenant_namespace_volume_and_key() {
    let plane = PrivateControlPlane::start();
    let client = plane.client().await;
    install_crd(&client).await;
    let engine = start_engine().await;
    for namespace in [CREDENTIALS_NAMESPACE, OPERATOR_NAMESPACE] {
        ensure_namespace(&client, namespace).await;
    }
    let (kept, removed) = (unique("kept"), unique("removed"));
    for slug in [&kept, &removed] {
        credentials_in(
            &client,
            CREDENTIALS_NAMESPACE,
            &credentials_name(slug),
            slug,
        )
        .await;
    }
    let operator = run_operator(&client, operator_args(&engine));
    let tenants: Api<Tenant> = Api::all(client.clone());
    // The default policy (Retain, which the CRD fills in when it is left out), and Delete beside it: what Delete removes is what the
    // garbage collector would have taken from every tenant before.
    create_tenant(&client, &kept, json!({"deletionPolicy": "Retain"})).await;
    create_tenant(&client, &removed, json!({"deletionPolicy": "Delete"})).await;
    ready(&tenants, &kept).await;
    ready(&tenants, &removed).await;

    let ns = format!("tenant-{kept}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let volumes: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let namespace = namespaces.get(&ns).await.unwrap();
    let volume = volumes.get("n8n-data").await.unwrap();
    let key = secrets.get("n8n-encryption").await.unwrap();
    assert!(
        deployments.get_opt("n8n").await.unwrap().is_some(),
        "n8n's Deployment (owned by the Tenant) exists"
    );
    for (what, owners) in [
        ("namespace", &namespace.metadata.owner_references),
        ("volume", &volume.metadata.owner_references),
        ("key", &key.metadata.owner_references),
    ] {
        assert_eq!(
            owners, &None,
            "{what}: nothing for the garbage collector to follow"
        );
    }

    // Losing the CRD deletes every Tenant; the operator's cleanup lets each go.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete(CRD_NAME, &DeleteParams::default())
        .await
        .unwrap();
    within(
        Duration::from_secs(120),
        "the CRD and its Tenants gone",
        async || crds.get_opt(CRD_NAME).await.ok()?.is_none().then_some(()),
    )
    .await;
    operator.abort();
    // The garbage collector acted on the Tenants' deletion: the Deployment they owned is gone,
    // and the Delete tenant's namespace with it.
    within(
        Duration::from_secs(120),
        "the garbage collector's cascade",
        async || {
            let deployment = deployments.get_opt("n8n").await.ok()?;
            let gone = namespaces
                .get_opt(&format!("tenant-{removed}"))
                .await
                .ok()?
                .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
            (deployment.is_none() && gone).then_some(())
        },
    )
    .await;
    let after = namespaces.get(&ns).await.unwrap();
    assert_eq!(
        after.metadata.uid, namespace.metadata.uid,
        "the same namespace"
    );
    assert!(
        after.metadata.deletion_timestamp.is_none(),
        "not being deleted"
    );
    let after = volumes.get("n8n-data").await.unwrap();
    assert_eq!(after.metadata.uid, volume.metadata.uid, "the same volume");
    assert!(after.metadata.deletion_timestamp.is_none());
    let after = secrets.get("n8n-encryption").await.unwrap();
    assert_eq!(after.metadata.uid, key.metadata.uid, "the same key Secret");
    assert_eq!(after.data, key.data, "the same key");

    // Recreated, the Tenant takes its namespace back: the key is not minted anew.
    install_crd(&client).await;
    let operator = run_operator(&client, operator_args(&engine));
    create_tenant(&client, &kept, json!({"deletionPolicy": "Retain"})).await;
    ready(&tenants, &kept).await;
    let after = secrets.get("n8n-encryption").await.unwrap();
    assert_eq!(after.metadata.uid, key.metadata.uid);
    assert_eq!(after.data, key.data);
    assert_eq!(
        namespaces.get(&ns).await.unwrap().metadata.uid,
        namespace.metadata.uid
    );
    let tenant = tenants.get(&kept).await.unwrap();
    assert_eq!(
        tenant.status.unwrap().namespace.as_deref(),
        Some(ns.as_str())
    );
    operator.abort();
    drop(plane);
}
