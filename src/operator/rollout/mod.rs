//! TenantRollouts: a fleet-wide n8n version rolled out in waves. Each pass reads the covered
//! Tenants, moves every tenant with a step in progress one step on (step.rs), starts the next
//! wave when the current one is done and nothing stopped the rollout (waves.rs), writes what
//! the steps ask for on the Tenants (annotations the Tenant reconcile and the operator's
//! backups act on), then the status. The Tenant reconcile stays the only writer of n8n's
//! Deployment: a rollout only chooses the image (`flomastr.io/n8n-image`).

pub mod readiness;
pub mod step;
pub mod view;
pub mod waves;

use crate::operator::context::Context;
use crate::operator::plan::{MANAGER, N8N_IMAGE_ANNOTATION, SLUG_LABEL};
use crate::operator::pod_health;
use crate::tenant::{
    RolloutPhase, Tenant, TenantRollout, TenantRolloutStatus, TenantUpgrade, UpgradeState,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;
use step::{N8nSeen, Write};
use view::TenantView;

/// How soon a rollout with a step in progress looks again (Tenants and pods are not watched
/// by the rollout: a few reads per in-flight tenant every few seconds).
const STEP_RECHECK: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("reading Tenant {name}: {source}")]
    Tenant {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The rollout controller, or nothing when the TenantRollout CRD is not installed (the
/// operator then reconciles Tenants only, as before the CRD existed).
pub async fn controller(ctx: Arc<Context>) -> futures::stream::BoxStream<'static, ()> {
    let api = Api::<TenantRollout>::all(ctx.client.clone());
    if let Err(error) = api.list(&ListParams::default().limit(1)).await {
        tracing::warn!(%error, "TenantRollouts are off: apply crds/tenantrollout.yaml to roll out n8n versions in waves");
        return futures::stream::empty().boxed();
    }
    // A sharded operator (--tenant-selector) handles its own shard's rollouts: those carrying
    // the same labels, over its own Tenants.
    let mut rollouts = watcher::Config::default();
    if let Some(selector) = &ctx.config.tenant_selector {
        rollouts = rollouts.labels(selector);
    }
    Controller::new(api, rollouts)
        .run(reconcile, error_policy, ctx)
        .map(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "rollout controller event");
            }
        })
        .boxed()
}

pub fn error_policy(rollout: Arc<TenantRollout>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(rollout = %rollout.name_any(), %error, "rollout pass failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// One pass over a rollout.
pub async fn reconcile(rollout: Arc<TenantRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let spec = &rollout.spec;
    let previous = rollout.status.clone().unwrap_or_default();
    let tenants = read_tenants(&ctx).await?;
    let views: Vec<TenantView> = tenants.iter().map(TenantView::from_json).collect();
    if let Err(invalid) = waves::validate(spec, &views) {
        let status = TenantRolloutStatus {
            phase: Some(RolloutPhase::Invalid),
            observed_generation: rollout.metadata.generation,
            stopped_reason: Some(invalid.reason.to_owned()),
            message: Some(invalid.message),
            tenants: previous.tenants.clone(),
            ..previous.clone()
        };
        write_status(&ctx, &rollout, &previous, status).await?;
        return Ok(Action::await_change());
    }
    let mut entries = if previous.observed_generation == rollout.metadata.generation
        && previous.phase != Some(RolloutPhase::Invalid)
    {
        previous.tenants.clone()
    } else {
        waves::plan(spec, &views, &previous.tenants)
    };
    let now = chrono::Utc::now();
    for entry in entries.iter_mut().filter(|e| e.state.in_flight()) {
        let Some(tenant) = views.iter().find(|t| t.name == entry.name) else {
            fail_gone(entry, now);
            continue;
        };
        let seen = n8n_seen(&ctx, entry).await;
        let writes = step::advance(spec, entry, tenant, &seen, now);
        apply_writes(&ctx, &entry.name, &writes).await?;
    }
    let mut stopped = waves::stop(spec, &entries);
    if stopped.is_none() && !spec.paused {
        let wave = waves::current_wave(&entries);
        let request_id = format!(
            "rollout-{}-{}",
            rollout.name_any(),
            rollout.metadata.generation.unwrap_or(0)
        );
        for entry in entries
            .iter_mut()
            .filter(|e| Some(e.wave) == wave && e.state == UpgradeState::Pending)
        {
            let Some(tenant) = views.iter().find(|t| t.name == entry.name) else {
                fail_gone(entry, now);
                continue;
            };
            let writes = step::start(spec, entry, tenant, &ctx.config.n8n_image, &request_id, now);
            apply_writes(&ctx, &entry.name, &writes).await?;
        }
        stopped = waves::stop(spec, &entries);
    }
    let in_flight = entries.iter().any(|e| e.state.in_flight());
    let phase = waves::phase(spec, &entries, stopped.is_some());
    let status = TenantRolloutStatus {
        phase: Some(phase),
        observed_generation: rollout.metadata.generation,
        current_wave: waves::current_wave(&entries),
        waves: entries.iter().map(|e| e.wave + 1).max(),
        upgraded: i32::try_from(
            entries
                .iter()
                .filter(|e| e.state == UpgradeState::Upgraded)
                .count(),
        )
        .unwrap_or(i32::MAX),
        stopped_reason: stopped.as_ref().map(|(reason, _)| (*reason).to_owned()),
        message: Some(match &stopped {
            Some((_, message)) if in_flight => format!("{message} (rolling back)"),
            Some((_, message)) => message.clone(),
            None => summary(&entries),
        }),
        tenants: entries,
    };
    write_status(&ctx, &rollout, &previous, status).await?;
    let more = in_flight || (phase == RolloutPhase::Progressing);
    Ok(if more {
        Action::requeue(STEP_RECHECK)
    } else {
        Action::requeue(ctx.config.resync())
    })
}

/// Every Tenant as JSON: the backup fields are read untyped (view.rs).
async fn read_tenants(ctx: &Context) -> Result<Vec<serde_json::Value>, Error> {
    let resource = ApiResource::erase::<Tenant>(&());
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &resource);
    let mut params = ListParams::default();
    if let Some(selector) = &ctx.config.tenant_selector {
        params = params.labels(selector);
    }
    let list = api.list(&params).await?;
    list.items
        .into_iter()
        .map(|object| {
            serde_json::to_value(&object).map_err(|source| Error::Tenant {
                name: object.name_any(),
                source,
            })
        })
        .collect()
}

fn fail_gone(entry: &mut TenantUpgrade, now: chrono::DateTime<chrono::Utc>) {
    entry.state = UpgradeState::Failed;
    entry.reason = Some("TenantGone".into());
    entry.message = Some("the Tenant no longer exists".into());
    entry.since = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
}

/// The tenant's n8n as the step needs it: which image is rolled out and ready, whether a pod of
/// the new image started, and why it is not ready.
async fn n8n_seen(ctx: &Context, entry: &TenantUpgrade) -> N8nSeen {
    let namespace = format!("tenant-{}", entry.name);
    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), &namespace)
        .get_opt("n8n")
        .await
        .ok()
        .flatten();
    let ready_with = deployment.as_ref().and_then(|d| {
        [Some(&entry.to), entry.from.as_ref()]
            .into_iter()
            .flatten()
            .find(|image| readiness::rolled_out(d, image))
            .cloned()
    });
    let selector = format!("app.kubernetes.io/name=n8n,{SLUG_LABEL}={}", entry.name);
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    N8nSeen {
        ready_with,
        new_image_started: readiness::started_with(&pods, &entry.to),
        trouble: pod_health::trouble(&pods).map(|finding| finding.message),
    }
}

/// The annotations the steps ask for, on the Tenant (a merge patch: the Tenant's other
/// annotations and its spec stay as they are).
async fn apply_writes(ctx: &Context, tenant: &str, writes: &[Write]) -> Result<(), Error> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut annotations = serde_json::Map::new();
    for write in writes {
        let (key, value) = match write {
            Write::Image(image) => (N8N_IMAGE_ANNOTATION, image),
            Write::Backup(id) => (step::BACKUP_NOW_ANNOTATION, id),
            Write::Restore(backup) => (step::RESTORE_FROM_ANNOTATION, backup),
        };
        annotations.insert(key.to_owned(), value.clone().into());
    }
    tracing::info!(%tenant, ?writes, "rollout step");
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    Api::<Tenant>::all(ctx.client.clone())
        .patch(
            tenant,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

fn summary(entries: &[TenantUpgrade]) -> String {
    let count = |state: UpgradeState| entries.iter().filter(|e| e.state == state).count();
    format!(
        "{} tenants: {} upgraded, {} in progress, {} pending, {} skipped, {} failed",
        entries.len(),
        count(UpgradeState::Upgraded),
        entries.iter().filter(|e| e.state.in_flight()).count(),
        count(UpgradeState::Pending),
        count(UpgradeState::Skipped),
        entries.iter().filter(|e| e.state.is_failure()).count(),
    )
}

async fn write_status(
    ctx: &Context,
    rollout: &TenantRollout,
    previous: &TenantRolloutStatus,
    status: TenantRolloutStatus,
) -> Result<(), Error> {
    if rollout.status.is_some() && previous == &status {
        return Ok(());
    }
    // Server-side apply: a field this status leaves out (stoppedReason once resumed) is removed.
    let patch = serde_json::json!({
        "apiVersion": "flomastr.io/v1alpha1", "kind": "TenantRollout", "status": status
    });
    Api::<TenantRollout>::all(ctx.client.clone())
        .patch_status(
            &rollout.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}
