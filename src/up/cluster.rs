//! What `flomastr up` does on Kubernetes: the CRD, the operator's namespace, the sample tenant,
//! waiting for it to be Ready, and — on the local API server, which has no nodes — standing in for
//! the kubelet so the tenant's n8n Deployment reports itself available.

use crate::operator::children::{WORKER_SECRET, WORKER_TOKEN};
use crate::operator::config::DEFAULT_CREDENTIALS_NAMESPACE;
use crate::tenant::Tenant;
use crate::up::UpError;
use crate::up::progress::Step;
use crate::up::sample::Sample;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, CustomResourceExt};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const FIELD_MANAGER: &str = "flomastr-up";
pub const OPERATOR_NAMESPACE: &str = "flomastr-system";

/// A client for the local API server's kubeconfig, or for `KUBECONFIG` / in-cluster.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, UpError> {
    let Some(path) = kubeconfig else {
        return Ok(Client::try_default().await?);
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(kube::Error::from)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kube::Error::from)?;
    Ok(Client::try_from(config)?)
}

/// The Tenant CRD (from this binary, so it always matches the operator), the namespace the
/// operator keeps its Lease in and the one it reads the credentials Secrets in.
pub async fn install(client: &Client) -> Result<(), UpError> {
    crate::tenant::install_crd(
        client,
        &Tenant::crd(),
        FIELD_MANAGER,
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| UpError::NotReady {
        what: "the Tenant CRD".into(),
        detail: e.to_string(),
    })?;
    for name in [OPERATOR_NAMESPACE, DEFAULT_CREDENTIALS_NAMESPACE] {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        Api::<Namespace>::all(client.clone())
            .patch(name, &apply(), &Patch::Apply(&namespace))
            .await?;
    }
    Ok(())
}

/// Applies the sample's Secret and Tenant.
pub async fn apply_sample(client: &Client, sample: &Sample) -> Result<(), UpError> {
    let namespace = sample
        .secret
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(OPERATOR_NAMESPACE);
    let name = sample.secret.metadata.name.as_deref().unwrap_or_default();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(name, &apply(), &Patch::Apply(&sample.secret))
        .await?;
    Api::<Tenant>::all(client.clone())
        .patch(sample.slug(), &apply(), &Patch::Apply(&sample.tenant))
        .await?;
    Ok(())
}

/// Waits until the tenant's Ready condition is True; the step shows the conditions not yet met.
pub async fn wait_ready(
    client: &Client,
    slug: &str,
    step: &Step,
    timeout: Duration,
) -> Result<(), UpError> {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting_on = String::from("no status yet");
    loop {
        if let Some(status) = tenants.get_opt(slug).await?.and_then(|t| t.status) {
            let pending: Vec<String> = status
                .conditions
                .iter()
                .filter(|c| c.status != "True" && c.type_ != "Ready")
                .map(|c| format!("{}: {}", c.type_, c.message))
                .collect();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Ok(());
            }
            waiting_on = if pending.is_empty() {
                "Ready".into()
            } else {
                pending.join("; ")
            };
            step.detail(&waiting_on);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(UpError::NotReady {
                what: format!("Tenant {slug}"),
                detail: format!("not Ready within {} s: {waiting_on}", timeout.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The worker token the operator minted for the tenant's n8n.
pub async fn worker_token(client: &Client, slug: &str) -> Result<String, UpError> {
    let secret = Api::<Secret>::namespaced(client.clone(), &format!("tenant-{slug}"))
        .get(WORKER_SECRET)
        .await?;
    secret
        .data
        .and_then(|mut data| data.remove(WORKER_TOKEN))
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .ok_or_else(|| UpError::NotReady {
            what: format!("Secret tenant-{slug}/{WORKER_SECRET}"),
            detail: format!("has no {WORKER_TOKEN}"),
        })
}

/// The local API server runs no pods. Until `stop` fires, marks every tenant's n8n Deployment
/// available with as many replicas as it asks for — what a kubelet and the Deployment
/// controller would report once n8n started — so the tenant's status tells the truth about
/// everything else (engine registration, routes, DNS).
pub async fn stand_in_for_kubelet(client: Client, stop: tokio_util::sync::CancellationToken) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let selector = ListParams::default().labels("app.kubernetes.io/managed-by=flomastr-operator");
    loop {
        if let Ok(list) = deployments.list(&selector).await {
            for deployment in list {
                mark_available(&client, &deployment).await;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn mark_available(client: &Client, deployment: &Deployment) {
    let (Some(namespace), Some(name)) = (
        deployment.metadata.namespace.as_deref(),
        deployment.metadata.name.as_deref(),
    ) else {
        return;
    };
    let wanted = deployment.spec.replicas.unwrap_or(1);
    let status = deployment.status.as_ref();
    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
    let observed = status.and_then(|s| s.observed_generation);
    if available == wanted && observed == deployment.metadata.generation {
        return;
    }
    let patch = json!({"status": {
        "observedGeneration": deployment.metadata.generation,
        "replicas": wanted, "updatedReplicas": wanted,
        "readyReplicas": wanted, "availableReplicas": wanted,
    }});
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    if let Err(error) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(%error, namespace, name, "could not mark the Deployment available");
    }
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}
