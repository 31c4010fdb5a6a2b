//! What `flomastr up` does on Kubernetes: the CRD, the operator's namespaces, the sample tenant,
//! waiting for it to be Ready (its n8n a real pod), and reading back what the operator minted.

use crate::operator::children::{WORKER_SECRET, WORKER_TOKEN};
use crate::operator::config::DEFAULT_CREDENTIALS_NAMESPACE;
use crate::tenant::Tenant;
use crate::up::UpError;
use crate::up::progress::Step;
use crate::up::sample::Sample;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, CustomResourceExt};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const FIELD_MANAGER: &str = "flomastr-up";
pub const OPERATOR_NAMESPACE: &str = "flomastr-system";
/// The Secret in a tenant namespace with the n8n owner's `email` and `password`.
const N8N_OWNER_SECRET: &str = "n8n-owner";

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

/// The tenant's n8n owner login, once the operator has minted it (Secret `n8n-owner` in the
/// tenant namespace): its email and password. `None` while there is no such Secret.
pub async fn n8n_owner(client: &Client, slug: &str) -> Result<Option<(String, String)>, UpError> {
    let secret = Api::<Secret>::namespaced(client.clone(), &format!("tenant-{slug}"))
        .get_opt(N8N_OWNER_SECRET)
        .await?;
    let Some(mut data) = secret.and_then(|s| s.data) else {
        return Ok(None);
    };
    let mut take = |key: &str| {
        data.remove(key)
            .and_then(|bytes| String::from_utf8(bytes.0).ok())
    };
    Ok(take("email").zip(take("password")))
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}
