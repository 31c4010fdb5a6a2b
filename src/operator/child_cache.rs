//! What the operator last applied to each child, and a watch-fed copy of the children as they
//! are: together they let a reconcile skip a server-side apply that would change nothing.
//!
//! A Tenant is reconciled several times while its children come up (every child created wakes
//! it), and each pass used to re-apply a dozen objects. A no-op apply still costs the API server
//! a full merge and admission. Here an apply is skipped when the desired object is the one
//! applied last time *and* the watched copy still has the resourceVersion that apply returned —
//! any change by someone else (an edit, a deletion) bumps or removes it, and the next reconcile
//! applies again. Without a warm cache (tests, just after start) everything is applied.

use crate::operator::children::N8N_DATA_MARK;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Service,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Watched copies of the children, by kind (label-filtered to the operator's own objects).
#[derive(Default)]
pub struct ChildCache {
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    quotas: Option<Store<PartialObjectMeta<ResourceQuota>>>,
    limit_ranges: Option<Store<PartialObjectMeta<LimitRange>>>,
    network_policies: Option<Store<PartialObjectMeta<NetworkPolicy>>>,
    pvcs: Option<Store<PartialObjectMeta<PersistentVolumeClaim>>>,
    config_maps: Option<Store<PartialObjectMeta<ConfigMap>>>,
    services: Option<Store<PartialObjectMeta<Service>>>,
    deployments: Option<Store<PartialObjectMeta<Deployment>>>,
    ingresses: Option<Store<PartialObjectMeta<Ingress>>>,
    /// (kind, namespace, name) -> (digest of the desired object, resourceVersion after the apply).
    applied: Mutex<HashMap<String, ([u8; 32], String)>>,
}

/// A child kind whose watched copies the cache keeps.
pub trait Cached: Resource<DynamicType = ()> + Clone + Serialize + Sized + 'static {
    fn store(cache: &ChildCache) -> Option<&Store<PartialObjectMeta<Self>>>;
}

macro_rules! cached {
    ($kind:ty, $field:ident) => {
        impl Cached for $kind {
            fn store(cache: &ChildCache) -> Option<&Store<PartialObjectMeta<Self>>> {
                cache.$field.as_ref()
            }
        }
    };
}
cached!(Namespace, namespaces);
cached!(ResourceQuota, quotas);
cached!(LimitRange, limit_ranges);
cached!(NetworkPolicy, network_policies);
cached!(PersistentVolumeClaim, pvcs);
cached!(ConfigMap, config_maps);
cached!(Service, services);
cached!(Deployment, deployments);
cached!(Ingress, ingresses);

impl ChildCache {
    /// Starts one label-filtered watch per child kind, feeding the stores, until the runtime ends.
    pub fn watching(client: &Client) -> Self {
        Self {
            namespaces: Some(watch(client)),
            quotas: Some(watch(client)),
            limit_ranges: Some(watch(client)),
            network_policies: Some(watch(client)),
            pvcs: Some(watch(client)),
            config_maps: Some(watch(client)),
            services: Some(watch(client)),
            deployments: Some(watch(client)),
            ingresses: Some(watch(client)),
            applied: Mutex::default(),
        }
    }

    /// The digest to hand to [`Self::unchanged`] and [`Self::applied`]; `None` without watches
    /// (then nothing is ever skipped, and nothing is serialised for it).
    pub fn digest<K: Cached>(&self, desired: &K) -> Option<[u8; 32]> {
        K::store(self)?;
        let bytes = serde_json::to_vec(desired).unwrap_or_default();
        Some(Sha256::digest(bytes).into())
    }

    /// Whether applying `desired` (whose digest is `digest`) would change nothing we know of.
    pub fn unchanged<K: Cached>(&self, desired: &K, digest: Option<[u8; 32]>) -> bool {
        let (Some(store), Some(digest)) = (K::store(self), digest) else {
            return false;
        };
        let applied = self.applied.lock().unwrap().get(&key(desired)).cloned();
        let Some((applied_digest, version)) = applied else {
            return false;
        };
        applied_digest == digest
            && store
                .get(&object_ref(desired))
                .and_then(|live| live.meta().resource_version.clone())
                .is_some_and(|live| live == version)
    }

    /// Records what was applied and the resourceVersion the API server answered with.
    pub fn applied<K: Cached>(&self, desired: &K, digest: Option<[u8; 32]>, live: &K) {
        if let (Some(digest), Some(version)) = (digest, live.meta().resource_version.clone()) {
            self.applied
                .lock()
                .unwrap()
                .insert(key(desired), (digest, version));
        }
    }

    /// Whether the watched PVC `namespace/name` has annotation `key` = `value`; `None` when the
    /// watch has not seen it (or there is no watch). Only `N8N_DATA_MARK` is kept in the copy.
    pub fn pvc_annotated(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Option<bool> {
        let live = self
            .pvcs
            .as_ref()?
            .get(&ObjectRef::new(name).within(namespace))?;
        Some(
            live.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .is_some_and(|v| v == value),
        )
    }

    /// Forgets a tenant's children (after its cleanup): nothing of a gone tenant is kept.
    pub fn forget_namespace(&self, namespace: &str) {
        self.applied.lock().unwrap().retain(|key, _| {
            let mut parts = key.splitn(3, '/');
            let (kind, ns, name) = (parts.next(), parts.next(), parts.next());
            !(ns == Some(namespace) || (kind == Some("Namespace") && name == Some(namespace)))
        });
    }
}

/// A metadata-only watch (names and resourceVersions are all a skip needs), slimmed further
/// before it is stored: thousands of tenants' children must fit in a few MiB.
fn watch<K>(client: &Client) -> Store<PartialObjectMeta<K>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    K: serde::de::DeserializeOwned,
{
    use futures::StreamExt;
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default()
        .labels("app.kubernetes.io/managed-by=flomastr-operator")
        .any_semantic();
    let api: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    let events = watcher(api, config).modify(|object| {
        let meta = &mut object.metadata;
        meta.managed_fields = None;
        // The one annotation a reconcile reads from the watched copy (n8n's volume half
        // restored); a PVC without it costs nothing.
        meta.annotations = meta
            .annotations
            .take()
            .map(|all| {
                all.into_iter()
                    .filter(|(key, _)| key == N8N_DATA_MARK)
                    .collect::<std::collections::BTreeMap<_, _>>()
            })
            .filter(|kept| !kept.is_empty());
        meta.labels = None;
        meta.owner_references = None;
        meta.finalizers = None;
    });
    let stream = reflector::reflector(writer, events)
        .default_backoff()
        .touched_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader
}

fn object_ref<K: Cached>(object: &K) -> ObjectRef<PartialObjectMeta<K>> {
    let meta = object.meta();
    let reference = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match meta.namespace.as_deref() {
        Some(namespace) => reference.within(namespace),
        None => reference,
    }
}

fn key<K: Cached>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}
