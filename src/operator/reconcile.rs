//! The reconcile pipeline: read -> plan (pure) -> build children (pure) -> server-side apply ->
//! external state (engine, Caddy, DNS) -> status. Cleanup runs behind the finalizer.

use crate::operator::backup::n8n_data;
use crate::operator::child_cache::Cached;
use crate::operator::children::{
    self, ENCRYPTION_KEY, ENCRYPTION_SECRET, OWNER_SECRET, WORKER_SECRET, WORKER_TOKEN, retention,
};
use crate::operator::context::Context;
use crate::operator::credentials;
use crate::operator::encryption;
use crate::operator::engine_client::EngineError;
use crate::operator::plan::{MANAGER, Plan, plan};
use crate::operator::registration::{self, secret_value};
use crate::operator::status::{Finding, Observed, compute};
use crate::operator::{backup, deletion, pod_health, workflow_ready};
use crate::tenant::{ConditionType, DeletionPolicy, Tenant, TenantStatus};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const FINALIZER: &str = "flomastr.io/cleanup";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("cleanup: {0}")]
    Cleanup(String),
    #[error("deletion blocked: {0}")]
    DeletionBlocked(String),
}

impl Error {
    /// A short label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Finalizer(_) => "finalizer",
            Self::NotReady(_) => "not_ready",
            Self::Cleanup(_) => "cleanup",
            Self::DeletionBlocked(_) => "deletion_blocked",
        }
    }
}

pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let slug = tenant.name_any();
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            Event::Apply(tenant) => apply(tenant, ctx.clone()).await,
            Event::Cleanup(tenant) => cleanup(tenant, ctx.clone()).await,
        }
    })
    .instrument(tracing::info_span!("reconcile", tenant = %slug))
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe(
        &slug,
        started.elapsed(),
        result.as_ref().err().map(|e| match e {
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            other => other.metric_label(),
        }),
    );
    if result.is_ok() {
        ctx.failures.lock().unwrap().remove(&slug);
    }
    result
}

/// Exponential backoff per tenant: 1 s, 2 s, 4 s ... 5 min; never a crash loop.
pub fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    let slug = tenant.name_any();
    let attempts = {
        let mut failures = ctx.failures.lock().unwrap();
        let n = failures.entry(slug.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    tracing::warn!(tenant = %slug, %error, attempts, "reconcile failed; retrying with backoff");
    Action::requeue(Duration::from_secs(
        2u64.saturating_pow(attempts.saturating_sub(1).min(9))
            .min(300),
    ))
}

async fn apply(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let mut plan = plan(&tenant, &ctx.config);
    let pending = backup::operate::pending_restore(&tenant);
    let failed_before = backup::operate::restore_failed(&tenant);
    // A restore cut off after it created n8n's volume (still marked) is tried again while one
    // is asked for; only a failed restore can have left the mark, the others cost no read.
    let retry =
        if pending.is_none() && failed_before && n8n_data::filling(&ctx.client, &plan).await? {
            backup::operate::requested_restore(&tenant)
        } else {
            None
        };
    let around_a_restore = pending.is_some() || failed_before;
    // A restore comes before the children: the restored n8n key must be in place before the
    // operator would mint one, and recorded before the Deployment that checks it is built.
    let restored = match pending.or(retry) {
        Some(name) => {
            apply_namespace(&tenant, &plan, &ctx, true).await?;
            let (status, fingerprint) = backup::operate::restore(&ctx, &tenant, &name).await;
            if fingerprint.is_some() {
                plan.encryption_key_fingerprint = fingerprint;
            }
            Some(status)
        }
        None => None,
    };
    if n8n_volume_filling(&ctx, &plan, around_a_restore).await? {
        plan.hold_for_unfinished_restore();
    }
    let children = apply_children(&tenant, &mut plan, &ctx).await;
    let (n8n, reported, running) = match &children {
        Ok(()) => n8n_finding(&ctx, &plan).await,
        Err(error) => (
            Finding::failed(ConditionType::N8nReady, "ApplyFailed", error.to_string()),
            None,
            None,
        ),
    };
    // Recorded once: minted here, or (tenants older than the fingerprint) as n8n reported it.
    let fingerprint = plan.encryption_key_fingerprint.clone().or(reported);
    let workflow = workflow_finding(&tenant, &plan, &ctx, &n8n).await;
    // Only the engine knows about the first poll, and it is not watched.
    let waiting_for_workflow = n8n.ok && !workflow.ok && workflow.reason == "Progressing";
    let mut findings = vec![n8n, workflow];
    findings.push(routes_finding(&tenant, &plan, &ctx, children.is_ok()).await);
    let (dns, records) = dns_finding(&tenant, &plan, &ctx).await;
    findings.push(dns);
    findings.push(engine_finding(&tenant, &plan, &ctx).await);
    let running = running.map(|()| plan.image.clone());
    let (backups, backup_due) = backup::operate::backups(&ctx, &tenant, restored).await;
    let observed = Observed {
        backups,
        encryption_key_fingerprint: fingerprint,
        n8n_image: running,
        generation: tenant.metadata.generation,
        suspended: plan.suspended,
        findings: &findings,
        n8n_url: plan.n8n_url.clone(),
        namespace: plan.namespace.clone(),
        dns_records: records,
    };
    write_status(&tenant, &ctx, observed).await?;
    children?;
    if let Some(f) = findings.iter().find(|f| !f.ok && f.reason != "Progressing") {
        return Err(Error::NotReady(format!(
            "{}: {}",
            f.kind.as_str(),
            f.message
        )));
    }
    // Waiting on the Deployment is progress, not failure: its status change wakes us through the
    // owned-object watch, so no early requeue (at scale that would flood the API server). The
    // engine is not watched: while n8n is up but its first poll is awaited, look again soon.
    let resync = backup_due.map_or(ctx.config.resync(), |due| due.min(ctx.config.resync()));
    if waiting_for_workflow {
        return Ok(Action::requeue(WORKFLOW_RECHECK.min(resync)));
    }
    Ok(Action::requeue(resync))
}

/// Whether n8n's volume carries the filling mark (a restore did not finish): n8n must not start
/// on it. Read live around a restore (the mark was just set or removed: a watched copy could
/// lag); otherwise the watched copy answers, and a PVC it has not seen yet is read.
async fn n8n_volume_filling(
    ctx: &Context,
    plan: &Plan,
    around_a_restore: bool,
) -> Result<bool, kube::Error> {
    if !around_a_restore
        && let Some(marked) = ctx.children.pvc_annotated(
            &plan.namespace,
            children::DATA_PVC,
            children::N8N_DATA_MARK,
            children::FILLING,
        )
    {
        return Ok(marked);
    }
    n8n_data::filling(&ctx.client, plan).await
}

/// How soon a reconcile looks again for the worker workflow's first poll.
const WORKFLOW_RECHECK: Duration = Duration::from_secs(15);

/// Server-side apply, skipped when the child is known to be exactly as desired already.
async fn ssa<K>(ctx: &Context, api: Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: Cached + DeserializeOwned + Debug,
{
    let digest = ctx.children.digest(object);
    if ctx.children.unchanged(object, digest) {
        return Ok(());
    }
    let name = object.meta().name.clone().unwrap_or_default();
    let live = api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await?;
    ctx.children.applied(object, digest, &live);
    Ok(())
}

fn namespaced<K>(ctx: &Context, plan: &Plan) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(ctx.client.clone(), &plan.namespace)
}

/// Every Kubernetes child, in dependency order. The plan learns the fingerprint of an
/// encryption key minted here, before the Deployment that checks it is built.
async fn apply_children(
    tenant: &Tenant,
    plan: &mut Plan,
    ctx: &Context,
) -> Result<(), kube::Error> {
    apply_namespace(tenant, plan, ctx, true).await?;
    ssa(
        ctx,
        namespaced(ctx, plan),
        &children::resource_quota(tenant, plan),
    )
    .await?;
    ssa(
        ctx,
        namespaced(ctx, plan),
        &children::limit_range(tenant, plan),
    )
    .await?;
    ssa(
        ctx,
        namespaced(ctx, plan),
        &children::network_policy(
            tenant,
            plan,
            &children::NetworkReach::from_config(&ctx.config),
        ),
    )
    .await?;
    if let Some(minted) = mint_secrets(tenant, plan, ctx).await? {
        plan.encryption_key_fingerprint.get_or_insert(minted);
    }
    mint_owner(tenant, plan, ctx).await?;
    let plan = &*plan;
    ssa(
        ctx,
        namespaced(ctx, plan),
        &children::config_map(tenant, plan),
    )
    .await?;
    ssa(ctx, namespaced(ctx, plan), &children::pvc(tenant, plan)).await?;
    ssa(ctx, namespaced(ctx, plan), &children::service(tenant, plan)).await?;
    ssa(
        ctx,
        namespaced(ctx, plan),
        &children::deployment(tenant, plan),
    )
    .await?;
    ssa(
        ctx,
        namespaced(ctx, plan),
        &children::n8n_ingress(tenant, plan),
    )
    .await?;
    if let Some((external_name, port)) = frontend_target(&ctx.config.frontend_service) {
        ssa(
            ctx,
            namespaced(ctx, plan),
            &children::frontend_service(tenant, plan, &external_name),
        )
        .await?;
        ssa(
            ctx,
            namespaced(ctx, plan),
            &children::frontend_ingress(tenant, plan, "frontend", port),
        )
        .await?;
    }
    Ok(())
}

/// The tenant's namespace, owned by the Tenant only under `deletionPolicy: Delete` (then the
/// garbage collector deletes it after the Tenant). Before it is made owned, the live namespace
/// must be the one the operator created for this tenant. `create: false` (during deletion)
/// changes an existing namespace only.
async fn apply_namespace(
    tenant: &Tenant,
    plan: &Plan,
    ctx: &Context,
    create: bool,
) -> Result<(), kube::Error> {
    let namespace = children::namespace(tenant, plan);
    if ctx
        .children
        .unchanged(&namespace, ctx.children.digest(&namespace))
    {
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api.get_opt(&plan.namespace).await? {
        None if !create => return Ok(()),
        Some(live) if live.metadata.deletion_timestamp.is_some() => return Ok(()),
        Some(live) if namespace.metadata.owner_references.is_some() => {
            retention::may_cascade(&live, tenant)
                .map_err(|refused| kube::Error::Service(refused.into()))?;
        }
        _ => {}
    }
    ssa(ctx, api, &namespace).await
}

/// `namespace/name:port` -> (`name.namespace.svc.cluster.local`, port).
fn frontend_target(spec: &Option<String>) -> Option<(String, i32)> {
    let (service, port) = spec.as_deref()?.split_once(':')?;
    let (namespace, name) = service.split_once('/')?;
    Some((
        format!("{name}.{namespace}.svc.cluster.local"),
        port.parse().ok()?,
    ))
}

/// Mints the n8n encryption key, then the worker token, where they do not exist; never changes
/// an existing one. The operator may create Secrets but read only the worker token: when that
/// exists, both were minted (it comes last), and nothing is created. A lost encryption key alone
/// is not replaced: a new one would silently orphan every credential n8n stored (restore it
/// from the backup instead; n8n does not start without it, which `N8nReady` shows).
/// Returns the fingerprint of an encryption key minted now.
async fn mint_secrets(
    tenant: &Tenant,
    plan: &Plan,
    ctx: &Context,
) -> Result<Option<String>, kube::Error> {
    let api: Api<Secret> = namespaced(ctx, plan);
    if api.get_opt(WORKER_SECRET).await?.is_some() {
        return Ok(None);
    }
    let mut minted = None;
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    for (name, key) in [
        (ENCRYPTION_SECRET, ENCRYPTION_KEY),
        (WORKER_SECRET, WORKER_TOKEN),
    ] {
        let secret = children::minted_secret(tenant, plan, name, key);
        match api.create(&params, &secret).await {
            Ok(_) if name == ENCRYPTION_SECRET => {
                minted = secret
                    .string_data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .map(|value| encryption::fingerprint(value));
            }
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(minted)
}

/// Mints the n8n owner Secret where it does not exist (tenants made before it existed get one
/// too); never changes an existing one. The operator may create it but not read it: a create
/// that finds one (409) is the check, done once per namespace and operator process.
async fn mint_owner(tenant: &Tenant, plan: &Plan, ctx: &Context) -> Result<(), kube::Error> {
    if ctx.owners.lock().unwrap().contains(&plan.namespace) {
        return Ok(());
    }
    let secret = children::owner_secret(tenant, plan).map_err(|error| {
        kube::Error::Service(format!("hashing the n8n owner's password: {error}").into())
    })?;
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match namespaced::<Secret>(ctx, plan)
        .create(&params, &secret)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %plan.namespace, "minted the n8n owner Secret {OWNER_SECRET}")
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error),
    }
    ctx.owners.lock().unwrap().insert(plan.namespace.clone());
    Ok(())
}

/// N8nReady, the encryption key fingerprint n8n's provisioning reported when none is
/// recorded yet, and `Some(())` when n8n rolled out with the planned image and is available.
async fn n8n_finding(ctx: &Context, plan: &Plan) -> (Finding, Option<String>, Option<()>) {
    let kind = ConditionType::N8nReady;
    if plan.n8n_data_filling {
        return (
            Finding::failed(
                kind,
                "N8nDataIncomplete",
                "n8n's volume holds a restore that did not finish (PVC n8n-data is marked \
                 flomastr.io/n8n-data=filling): n8n stays at zero replicas until a restore \
                 fills it; the restore named in flomastr.io/restore-from is tried again (or \
                 delete the PVC n8n-data to start n8n on an empty volume)",
            ),
            None,
            None,
        );
    }
    if plan.suspended {
        return (
            Finding::ok(kind, "ScaledDown", "suspended: n8n is scaled to zero"),
            None,
            None,
        );
    }
    if plan.replicas == 0 {
        return (
            Finding::ok(kind, "ScaledToZero", "spec.n8n.replicas is 0"),
            None,
            None,
        );
    }
    let api: Api<Deployment> = namespaced(ctx, plan);
    let (available, rolled_out) = match api.get_opt("n8n").await {
        Ok(Some(deployment)) => (
            deployment
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0),
            crate::operator::rollout::readiness::rolled_out(&deployment, &plan.image),
        ),
        Ok(None) => (0, false),
        Err(error) => {
            return (
                Finding::failed(kind, "ApiError", error.to_string()),
                None,
                None,
            );
        }
    };
    let ready = available >= plan.replicas;
    // Pods are read only when they can tell something: why n8n is not available, or the
    // key's fingerprint that is not recorded yet.
    let pods = if !ready || plan.encryption_key_fingerprint.is_none() {
        n8n_pods(ctx, plan).await
    } else {
        Vec::new()
    };
    let reported = encryption::reported(&pods, children::PROVISIONING_CONTAINER);
    let counted = format!("{available}/{} pods available", plan.replicas);
    let finding = if ready {
        Finding::ok(kind, "Available", counted)
    } else {
        pod_finding(ctx, plan, &pods)
            .await
            .unwrap_or_else(|| Finding::failed(kind, "Progressing", counted))
    };
    (finding, reported, (ready && rolled_out).then_some(()))
}

async fn n8n_pods(ctx: &Context, plan: &Plan) -> Vec<Pod> {
    let selector = format!(
        "app.kubernetes.io/name=n8n,{}={}",
        crate::operator::plan::SLUG_LABEL,
        plan.slug
    );
    match namespaced::<Pod>(ctx, plan)
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(error) => {
            tracing::debug!(%error, "cannot list the n8n pods");
            Vec::new()
        }
    }
}

/// Why the n8n pods are not available, when their status or a probe's Events say so.
async fn pod_finding(ctx: &Context, plan: &Plan, pods: &[Pod]) -> Option<Finding> {
    if let Some(trouble) = pod_health::trouble(pods) {
        return Some(trouble);
    }
    let events: Api<CoreEvent> = namespaced(ctx, plan);
    for pod in pod_health::unready_pods(pods) {
        let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
        if let Ok(list) = events.list(&params).await
            && let Some(failure) = pod_health::probe_failure(&pod, &list.items)
        {
            return Some(failure);
        }
    }
    None
}

async fn workflow_finding(tenant: &Tenant, plan: &Plan, ctx: &Context, n8n: &Finding) -> Finding {
    let now = chrono::Utc::now();
    let wanted = !plan.suspended && plan.replicas > 0;
    let available = n8n.ok && n8n.reason == "Available";
    let n8n_available_since = available.then(|| {
        tenant
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "N8nReady" && c.status == "True")
            })
            .and_then(|c| chrono::DateTime::from_timestamp(c.last_transition_time.0.as_second(), 0))
            .unwrap_or(now)
    });
    let last_poll = if available {
        match ctx.engine.tenant(tenant.slug()).await {
            Ok(seen) => Ok(seen.and_then(|s| s.last_worker_seen_at)),
            Err(error) => Err(error.to_string()),
        }
    } else {
        Ok(None)
    };
    workflow_ready::finding(&workflow_ready::Seen {
        n8n_wanted: wanted,
        n8n_available_since,
        last_poll,
        now,
    })
}

async fn routes_finding(
    tenant: &Tenant,
    plan: &Plan,
    ctx: &Context,
    ingress_applied: bool,
) -> Finding {
    let kind = ConditionType::RoutesReady;
    if !ingress_applied {
        return Finding::failed(
            kind,
            "ApplyFailed",
            "the Ingress objects could not be applied",
        );
    }
    let Some(caddy) = &ctx.caddy else {
        return Finding::ok(
            kind,
            "IngressApplied",
            format!("Ingress for {} and {}", plan.n8n_host, plan.frontend_host),
        );
    };
    let slug = tenant.slug();
    let routes = [
        (
            format!("tenant-{slug}-n8n"),
            plan.n8n_host.clone(),
            ctx.config
                .caddy_n8n_upstream
                .replace("{slug}", slug)
                .replace("{namespace}", &plan.namespace),
        ),
        (
            format!("tenant-{slug}"),
            plan.frontend_host.clone(),
            ctx.config
                .caddy_frontend_upstream
                .replace("{slug}", slug)
                .replace("{namespace}", &plan.namespace),
        ),
    ];
    for (id, host, upstream) in routes {
        let result = if plan.suspended {
            caddy.remove(&id).await
        } else {
            caddy
                .upsert(
                    &id,
                    &crate::operator::caddy::route(&id, &host, &upstream, slug),
                )
                .await
        };
        if let Err(error) = result {
            return Finding::failed(kind, "CaddyError", error.to_string());
        }
    }
    if plan.suspended {
        Finding::ok(
            kind,
            "Suspended",
            "the tenant's Caddy routes are removed while it is suspended",
        )
    } else {
        Finding::ok(
            kind,
            "Routed",
            format!(
                "Caddy routes for {} and {}",
                plan.n8n_host, plan.frontend_host
            ),
        )
    }
}

async fn dns_finding(
    tenant: &Tenant,
    plan: &Plan,
    ctx: &Context,
) -> (Finding, Vec<crate::tenant::DnsRecordStatus>) {
    let kind = ConditionType::DnsReady;
    if plan.dns.is_none() && matches!(ctx.dns, crate::operator::dns::DnsManager::None) {
        return (
            Finding::ok(kind, "Disabled", "spec.dns.enabled is false"),
            Vec::new(),
        );
    }
    match ctx
        .dns
        .ensure(&ctx.client, tenant, plan, ctx.config.zone())
        .await
    {
        Ok(records) if records.is_empty() => (
            Finding::ok(kind, "Disabled", "spec.dns.enabled is false"),
            records,
        ),
        Ok(records) => (
            Finding::ok(kind, "RecordsSynced", format!("{} records", records.len())),
            records,
        ),
        Err(error) => {
            let previous = tenant
                .status
                .as_ref()
                .map(|s| s.dns_records.clone())
                .unwrap_or_default();
            (
                Finding::failed(kind, "DnsError", error.to_string()),
                previous,
            )
        }
    }
}

async fn engine_finding(tenant: &Tenant, plan: &Plan, ctx: &Context) -> Finding {
    let kind = ConditionType::EngineRegistered;
    let credentials = match credentials::fetch_all(
        &ctx.client,
        tenant,
        &ctx.config.credentials_namespace,
    )
    .await
    {
        Ok(secrets) => secrets,
        Err(finding) => return finding,
    };
    let token = match namespaced::<Secret>(ctx, plan).get_opt(WORKER_SECRET).await {
        Ok(Some(secret)) => secret_value(&secret, WORKER_TOKEN).unwrap_or_default(),
        Ok(None) => {
            return Finding::failed(
                kind,
                "Progressing",
                "the worker token Secret is being created",
            );
        }
        Err(error) => return Finding::failed(kind, "ApiError", error.to_string()),
    };
    let registration = match registration::build(tenant, &credentials, &token) {
        Ok(registration) => registration,
        Err(missing) => {
            return Finding::failed(
                kind,
                "CredentialsIncomplete",
                format!(
                    "the Secret named in {}.credentialsSecretRef has no `{}`, which provider {:?} needs",
                    missing.field, missing.key, missing.provider
                ),
            );
        }
    };
    let digest = registration::digest(&registration);
    let slug = tenant.slug().to_owned();
    if ctx.registered.lock().unwrap().get(&slug) == Some(&digest) {
        return Finding::ok(
            kind,
            "Registered",
            format!("registered in the engine as {registration}"),
        );
    }
    match ctx.engine.register(&slug, &registration).await {
        Ok(()) => {
            ctx.registered.lock().unwrap().insert(slug, digest);
            publish(
                ctx,
                tenant,
                EventType::Normal,
                "Registered",
                &format!("registered in the engine as {registration}"),
            )
            .await;
            Finding::ok(
                kind,
                "Registered",
                format!("registered in the engine as {registration}"),
            )
        }
        Err(EngineError::Refused { code, message, .. }) if code == "sender_in_use" => {
            Finding::failed(kind, "SenderInUse", message)
        }
        Err(error) => Finding::failed(kind, "EngineError", error.to_string()),
    }
}

async fn write_status(
    tenant: &Tenant,
    ctx: &Context,
    observed: Observed<'_>,
) -> Result<(), kube::Error> {
    let status = compute(
        tenant.status.as_ref(),
        observed,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    if tenant.status.as_ref() == Some(&status) {
        return Ok(()); // a no-op resync writes nothing
    }
    publish_transitions(ctx, tenant, tenant.status.as_ref(), &status).await;
    let patch = serde_json::json!({"apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "status": status});
    Api::<Tenant>::all(ctx.client.clone())
        .patch_status(
            tenant.slug(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Kubernetes Events for conditions that turned False, so `kubectl describe` tells what to fix.
async fn publish_transitions(
    ctx: &Context,
    tenant: &Tenant,
    before: Option<&TenantStatus>,
    after: &TenantStatus,
) {
    for condition in after
        .conditions
        .iter()
        .filter(|c| c.status == "False" && c.type_ != "Ready")
    {
        let was = before.and_then(|b| b.conditions.iter().find(|p| p.type_ == condition.type_));
        if was.is_none_or(|p| p.status != "False" || p.reason != condition.reason)
            && condition.reason != "Progressing"
        {
            publish(
                ctx,
                tenant,
                EventType::Warning,
                &condition.reason,
                &condition.message,
            )
            .await;
        }
    }
}

pub(crate) async fn publish(
    ctx: &Context,
    tenant: &Tenant,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &tenant.object_ref(&())).await {
        tracing::debug!(%error, "could not publish an event");
    }
}

/// Deletion: with policy Delete remove DNS records, Caddy routes and the engine registration
/// (and its data), and leave the namespace to the garbage collector; with Retain remove the
/// routes, suspend the tenant in the engine and keep the namespace. With Snapshot a full backup
/// (n8n's volume, its key, the engine's data) is taken first (nothing is touched and the Tenant
/// stays while it fails), then as Delete.
async fn cleanup(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(blocked) = deletion::snapshot(&ctx, &tenant).await {
        deletion::hold(&ctx, &tenant, &blocked).await;
        return Err(Error::DeletionBlocked(blocked.message));
    }
    let tenant = Arc::new(deletion::after_snapshot(&tenant));
    let plan = plan(&tenant, &ctx.config);
    let slug = tenant.slug().to_owned();
    // The namespace's owner as the policy now says, before the finalizer goes: the garbage
    // collector acts on it as soon as the Tenant is gone.
    apply_namespace(&tenant, &plan, &ctx, false)
        .await
        .map_err(|e| Error::Cleanup(e.to_string()))?;
    if let Some(caddy) = &ctx.caddy {
        for id in [format!("tenant-{slug}-n8n"), format!("tenant-{slug}")] {
            caddy
                .remove(&id)
                .await
                .map_err(|e| Error::Cleanup(e.to_string()))?;
        }
    }
    match tenant.spec.deletion_policy {
        DeletionPolicy::Delete => {
            ctx.dns
                .remove(&ctx.client, &plan, ctx.config.zone())
                .await
                .map_err(|e| Error::Cleanup(e.to_string()))?;
            ctx.engine
                .delete(&slug)
                .await
                .map_err(|e| Error::Cleanup(e.to_string()))?;
        }
        // Snapshot was turned into Delete above, once its backup was taken.
        DeletionPolicy::Retain | DeletionPolicy::Snapshot => {
            let mut suspended = (*tenant).clone();
            suspended.spec.suspended = true;
            let finding = engine_finding(&suspended, &plan, &ctx).await;
            if !finding.ok && finding.reason == "EngineError" {
                return Err(Error::Cleanup(finding.message));
            }
        }
    }
    ctx.registered.lock().unwrap().remove(&slug);
    ctx.children.forget_namespace(&plan.namespace);
    publish(
        &ctx,
        &tenant,
        EventType::Normal,
        "CleanedUp",
        &format!(
            "external state cleaned up (deletionPolicy {:?})",
            tenant.spec.deletion_policy
        ),
    )
    .await;
    Ok(Action::await_change())
}
