//! The operator: a kube-rs Controller that reconciles Tenants into namespaces, n8n, routes, DNS
//! records and the tenant's registration in the engine.

pub mod backup;
pub mod caddy;
pub mod child_cache;
pub mod children;
pub mod config;
pub mod context;
pub mod credentials;
pub mod deletion;
pub mod dns;
pub mod encryption;
pub mod engine_client;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod pod_health;
pub mod pod_selector;
pub mod reconcile;
pub mod registration;
pub mod rollout;
pub mod status;
pub mod workflow_ready;

use crate::operator::config::OperatorArgs;
use crate::operator::context::Context;
use crate::operator::metrics::OperatorMetrics;
use crate::tenant::Tenant;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("the Tenant CRD is not installed (apply crds/tenant.yaml): {0}")]
    CrdMissing(#[source] kube::Error),
    #[error(transparent)]
    Config(#[from] context::ConfigError),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the leader lease; stopping so another replica takes over")]
    LostLeadership,
}

/// The controller over Tenants and the children it owns, ready to run with `ctx`.
pub fn controller(ctx: Arc<Context>) -> impl futures::Stream<Item = ()> + Send {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=flomastr-operator");
    let resync = ctx.config.resync();
    let ticks = futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(resync).await;
        Some(((), ()))
    });
    let mut tenants = watcher::Config::default().any_semantic();
    if let Some(selector) = &ctx.config.tenant_selector {
        tenants = tenants.labels(selector);
    }
    // The Controller keeps every Tenant in memory: it keeps them without what reconciling never
    // reads (the API server's field managers, kubectl's copy of the last applied spec).
    let (store, writer) = reflector::store();
    let tenants = reflector::reflector(
        writer,
        watcher(Api::<Tenant>::all(client.clone()), tenants).modify(slim_tenant),
    )
    .applied_objects();
    // Children only wake their Tenant (through `owning_tenant`, not `Controller::owns`): their
    // metadata is all that takes, so their specs are never sent or decoded.
    Controller::for_stream(tenants, store)
        .watches_stream(children::<Deployment>(&client, &owned), owning_tenant)
        .watches_stream(children::<Service>(&client, &owned), owning_tenant)
        .watches_stream(children::<ConfigMap>(&client, &owned), owning_tenant)
        .watches_stream(children::<Ingress>(&client, &owned), owning_tenant)
        // n8n's volume is not owned by the Tenant (it outlives it unless deletionPolicy is
        // Delete: children::retention): its label names the tenant.
        .watches_stream(
            children::<PersistentVolumeClaim>(&client, &owned),
            tenant_by_label,
        )
        // A tenant's n8n pod that fails to pull, crash-loops or cannot be scheduled changes no
        // Deployment status for minutes: its own changes wake the Tenant, so N8nReady says why
        // within one reconcile.
        .watches_stream(
            children::<Pod>(
                &client,
                &watcher::Config::default()
                    .labels(&format!("app.kubernetes.io/name=n8n,{}", plan::SLUG_LABEL)),
            ),
            tenant_by_label,
        )
        // Re-asserts Caddy routes and DNS records that changed outside Kubernetes.
        .reconcile_all_on(ticks)
        // A burst of child events (a reconcile creates a dozen children) becomes one reconcile.
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(ctx.config.concurrency)
                .debounce(std::time::Duration::from_secs(2)),
        )
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .map(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
}

/// Changes of one kind of child, metadata only.
fn children<K>(
    client: &kube::Client,
    config: &watcher::Config,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    watcher(
        Api::<PartialObjectMeta<K>>::all(client.clone()),
        config.clone(),
    )
    .touched_objects()
}

/// Drops from a watched Tenant what reconciling never reads.
fn slim_tenant(tenant: &mut Tenant) {
    tenant.metadata.managed_fields = None;
    if let Some(annotations) = tenant.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The Tenant a volume or pod names in its slug label.
fn tenant_by_label<K: kube::Resource>(child: K) -> Option<ObjectRef<Tenant>> {
    child
        .meta()
        .labels
        .as_ref()?
        .get(plan::SLUG_LABEL)
        .map(|slug| ObjectRef::new(slug))
}

/// The Tenant that owns a namespaced child, referred to as the Tenant itself is (cluster-scoped,
/// no namespace). `Controller::owns` names the owner within the child's namespace: a reference
/// the controller takes for another object than the Tenant's own, so two reconciles of one
/// Tenant could run at once (seen: a backup that scales n8n down woke a second reconcile, which
/// scaled it up again and took the same backup twice).
fn owning_tenant<K: kube::Resource>(child: K) -> Option<ObjectRef<Tenant>> {
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|owner| {
            owner.kind == <Tenant as kube::Resource>::kind(&())
                && owner.api_version == <Tenant as kube::Resource>::api_version(&())
        })
        .map(|owner| ObjectRef::new(&owner.name))
}

/// Runs `flomastr operator` until SIGINT/SIGTERM or until it loses the leader lease.
pub async fn run(config: OperatorArgs) -> Result<(), OperatorError> {
    let metrics = Arc::new(OperatorMetrics::default());
    let client = counted_client(metrics.clone()).await?;
    // Fail fast and clearly when the CRD is missing.
    Api::<Tenant>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .map_err(OperatorError::CrdMissing)?;
    serve_metrics(config.metrics_listen, metrics.clone()).await?;
    let identity = config
        .identity
        .clone()
        .unwrap_or_else(|| format!("flomastr-operator-{}", uuid::Uuid::new_v4().simple()));
    let elector = leader::LeaderElector::new(client.clone(), &config.namespace, &identity);
    if !config.no_leader_election {
        tracing::info!(%identity, "waiting for the leader lease");
        elector.acquire().await?;
        tracing::info!(%identity, "leading");
    }
    metrics.became_leader();
    let no_election = config.no_leader_election;
    let ctx = Context::watching(client, config, metrics)?;
    let rollouts = rollout::controller(ctx.clone()).await;
    let work = futures::stream::select(controller(ctx), rollouts).for_each(|()| async {});
    let keep_lease = async {
        if no_election {
            return std::future::pending::<Result<(), OperatorError>>().await;
        }
        loop {
            tokio::time::sleep(leader::RENEW_EVERY).await;
            if !elector.try_acquire_or_renew().await.unwrap_or(false) {
                return Err(OperatorError::LostLeadership);
            }
        }
    };
    let result = tokio::select! {
        () = work => Ok(()),
        lost = keep_lease => lost,
        () = shutdown_signal() => Ok(()),
    };
    if !no_election {
        elector.release().await;
    }
    result
}

/// The client of `KUBECONFIG` or the in-cluster account, counting each request by verb: the
/// writes a reconcile costs are what bounds how fast a fleet of Tenants comes up.
async fn counted_client(metrics: Arc<OperatorMetrics>) -> Result<kube::Client, OperatorError> {
    let config = kube::Config::infer()
        .await
        .map_err(|error| OperatorError::Kube(kube::Error::InferConfig(error)))?;
    let counting = tower::util::MapRequestLayer::new(
        move |request: axum::http::Request<kube::client::Body>| {
            metrics.api_request(request.method());
            tracing::trace!(method = %request.method(), path = request.uri().path(), "API request");
            request
        },
    );
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&counting)
        .build())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

async fn serve_metrics(
    address: std::net::SocketAddr,
    metrics: Arc<OperatorMetrics>,
) -> Result<(), OperatorError> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { metrics.encode() }))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| OperatorError::Metrics { address, source })?;
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok(())
}

#[cfg(test)]
mod owner_tests {
    use super::*;
    use crate::operator::children::fixtures::{plan, tenant};

    #[test]
    fn a_child_wakes_its_tenant_by_the_tenants_own_cluster_scoped_reference() {
        let deployment = children::deployment(&tenant(), &plan());
        assert_eq!(
            deployment.metadata.namespace.as_deref(),
            Some("tenant-acme")
        );
        let woken = owning_tenant(deployment).unwrap();
        assert_eq!(woken, ObjectRef::<Tenant>::new("acme"));
        assert_eq!(
            woken.namespace, None,
            "the same slot as the Tenant's own events"
        );
        let mut orphan = children::service(&tenant(), &plan());
        orphan.metadata.owner_references = None;
        assert_eq!(owning_tenant(orphan), None);
    }
}
