//! n8n's volume in a full backup (`n8n-data.tar`): n8n is scaled to zero, a Job of the
//! operator's image mounts the volume (`data_job`, which says why this way), and the operator
//! streams the archive between the pod (exec through the API server) and the backup target,
//! hashing it on the way. n8n is scaled back whatever happened.
//!
//! A restore marks the volume it creates (`N8N_DATA_MARK`) in the very apply that creates it,
//! and removes the mark only after the unpacked archive was verified. A restore cut off midway
//! (the Job cannot start, the stream breaks, the Job fails) leaves the mark: the reconcile keeps
//! n8n at zero on a marked volume and tries the restore again, which empties and refills it.

use super::data_job::{self, CONTAINER, Direction, JOB_LABEL};
use super::full::FullBackupError;
use super::manifest::Part;
use super::target::{BackupStore, UploadError};
use crate::operator::children::{self, DATA_PVC, FILLING, N8N_DATA_MARK};
use crate::operator::config::OperatorArgs;
use crate::operator::plan::{MANAGER, Plan, SLUG_LABEL};
use crate::tenant::Tenant;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, AttachParams, ListParams, Patch, PatchParams, PostParams};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// n8n's pods stop within their grace period (60 s); a little more for the kubelet.
const STOP_LIMIT: Duration = Duration::from_secs(150);
/// The Job's pod running (scheduling, binding a new volume, pulling the image).
const START_LIMIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(1);
/// Of the pod's stderr, what an error message shows.
const STDERR_LIMIT: usize = 2048;

fn failed(what: impl std::fmt::Display) -> FullBackupError {
    FullBackupError::N8nData(what.to_string())
}

/// Whether `claim` is the operator's own n8n volume carrying the filling mark: a restore
/// created it and did not finish. Only such a volume is ever emptied and filled again.
pub fn unfinished_restore(claim: &PersistentVolumeClaim) -> bool {
    let meta = &claim.metadata;
    let marked = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(N8N_DATA_MARK))
        .is_some_and(|v| v == FILLING);
    let ours = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/managed-by"))
        .is_some_and(|v| v == MANAGER);
    marked && ours
}

/// Whether the tenant's n8n volume holds a restore that did not finish (read live: a lagging
/// copy could let n8n start on a half-filled volume).
pub async fn filling(client: &kube::Client, plan: &Plan) -> Result<bool, kube::Error> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &plan.namespace);
    Ok(claims
        .get_opt(DATA_PVC)
        .await?
        .is_some_and(|claim| unfinished_restore(&claim)))
}

/// Why there is nothing to back up, or `None` when the volume holds n8n's data: a volume never
/// bound to storage was never written; a half-restored volume holds nothing of n8n's own.
async fn volume_unused(
    client: &kube::Client,
    plan: &Plan,
) -> Result<Option<&'static str>, FullBackupError> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &plan.namespace);
    Ok(match claims.get_opt(DATA_PVC).await? {
        None => Some("the tenant has no n8n volume"),
        Some(claim) if unfinished_restore(&claim) => Some(
            "n8n's volume holds part of a restore that did not finish (the backup it came \
             from still holds it whole)",
        ),
        Some(claim) if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") => {
            Some("n8n's volume was never bound to storage (nothing written yet)")
        }
        Some(_) => None,
    })
}

/// Backs up n8n's volume to `{backup}/n8n-data.tar`; `None` when there is no data to back up.
pub async fn back_up(
    client: &kube::Client,
    config: &OperatorArgs,
    tenant: &Tenant,
    plan: &Plan,
    store: &BackupStore,
    object: &str,
) -> Result<Option<Part>, FullBackupError> {
    if let Some(why) = volume_unused(client, plan).await? {
        tracing::info!(tenant = %plan.slug, why, "no n8n data in this backup");
        return Ok(None);
    }
    let scaled = scale_down(client, plan).await?;
    let outcome = async {
        wait_n8n_stopped(client, plan).await?;
        let pod = start_job(client, config, tenant, plan, Direction::Backup).await?;
        pack_into(client, plan, &pod, store, object).await
    }
    .await;
    if let Some(replicas) = scaled {
        scale(client, plan, replicas).await?;
    }
    outcome.map(Some)
}

/// What a restore did with n8n's volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRestored {
    /// A new volume was filled from the backup (bytes read).
    Filled(u64),
    /// The tenant already has a volume: it is left as it is.
    Kept,
}

/// Fills a new n8n volume from `object` (whose manifest entry is `part`) before n8n starts. An
/// existing volume is never overwritten (`Kept`): delete the PVC `n8n-data` first to restore
/// n8n's data into this Tenant. The one exception is a volume an earlier restore created and
/// did not finish (still marked): it is emptied and filled again.
pub async fn restore(
    client: &kube::Client,
    config: &OperatorArgs,
    tenant: &Tenant,
    plan: &Plan,
    store: &BackupStore,
    object: &str,
    part: &Part,
) -> Result<DataRestored, FullBackupError> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &plan.namespace);
    let live = claims.get_opt(DATA_PVC).await?;
    if live
        .as_ref()
        .is_some_and(|claim| !unfinished_restore(claim))
    {
        return Ok(DataRestored::Kept);
    }
    // A Deployment left without its volume must not start n8n on the new, empty one.
    scale_down(client, plan).await?;
    wait_n8n_stopped(client, plan).await?;
    let mut filling = plan.clone();
    filling.hold_for_unfinished_restore();
    apply_pvc(&claims, tenant, &filling).await?;
    let pod = start_job(client, config, tenant, plan, Direction::Restore).await?;
    let filled = unpack_from(client, plan, &pod, store, object, part).await?;
    // Verified: the mark goes (the PVC as the reconcile applies it), and n8n may start on it.
    let mut done = plan.clone();
    done.n8n_data_filling = false;
    apply_pvc(&claims, tenant, &done).await?;
    Ok(filled)
}

/// The PVC as `plan` has it (with the filling mark, or without: the operator's apply owns the
/// annotation, so leaving it out removes it).
async fn apply_pvc(
    claims: &Api<PersistentVolumeClaim>,
    tenant: &Tenant,
    plan: &Plan,
) -> Result<(), FullBackupError> {
    claims
        .patch(
            DATA_PVC,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(children::pvc(tenant, plan)),
        )
        .await?;
    Ok(())
}

/// Scales n8n to zero; the replicas it had, when it had any.
async fn scale_down(client: &kube::Client, plan: &Plan) -> Result<Option<i32>, FullBackupError> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), &plan.namespace);
    let Some(live) = deployments.get_opt("n8n").await? else {
        return Ok(None);
    };
    let replicas = live.spec.replicas.unwrap_or(1);
    if replicas == 0 {
        return Ok(None);
    }
    scale(client, plan, 0).await?;
    Ok(Some(replicas))
}

/// A merge patch of the replicas only: the next reconcile's apply owns them again.
async fn scale(client: &kube::Client, plan: &Plan, replicas: i32) -> Result<(), FullBackupError> {
    Api::<Deployment>::namespaced(client.clone(), &plan.namespace)
        .patch(
            "n8n",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await?;
    Ok(())
}

async fn wait_n8n_stopped(client: &kube::Client, plan: &Plan) -> Result<(), FullBackupError> {
    let pods = Api::<Pod>::namespaced(client.clone(), &plan.namespace);
    let selector = format!("app.kubernetes.io/name=n8n,{SLUG_LABEL}={}", plan.slug);
    let started = Instant::now();
    loop {
        if pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .is_empty()
        {
            return Ok(());
        }
        if started.elapsed() > STOP_LIMIT {
            return Err(failed(format!(
                "n8n's pods did not stop within {} s",
                STOP_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Creates the Job and waits for its pod to run; the pod's name.
async fn start_job(
    client: &kube::Client,
    config: &OperatorArgs,
    tenant: &Tenant,
    plan: &Plan,
    direction: Direction,
) -> Result<String, FullBackupError> {
    let suffix = chrono::Utc::now().format("%Y%m%dt%H%M%S%3f").to_string();
    let name = data_job::job_name(direction, &suffix);
    let job = data_job::job(tenant, plan, &config.backup_image, direction, &name);
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let jobs = Api::<Job>::namespaced(client.clone(), &plan.namespace);
    let created = jobs.create(&params, &job).await?;
    let job_uid = created.metadata.uid.unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), &plan.namespace);
    let selector = format!("{JOB_LABEL}={name}");
    let started = Instant::now();
    let mut last = String::from("no pod yet");
    while started.elapsed() < START_LIMIT {
        // The Job controller gave up (deadline, pod failures, an admission refusal of its pod).
        if let Some(why) = jobs.get_opt(&name).await?.as_ref().and_then(job_ended) {
            return Err(failed(format!("the Job {name} ended before use: {why}")));
        }
        // Only the pod this Job controls: a pod someone else labelled alike gets nothing.
        let ours = |pod: &Pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.kind == "Job" && o.uid == job_uid)
        };
        for pod in pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(ours)
        {
            let status = pod.status.clone().unwrap_or_default();
            let running = status.container_statuses.iter().flatten().any(|c| {
                c.name == CONTAINER && c.state.as_ref().is_some_and(|s| s.running.is_some())
            });
            if running {
                return Ok(pod.metadata.name.unwrap_or_default());
            }
            last = waiting_reason(&status);
            if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
                return Err(failed(format!("the {name} pod ended before use: {last}")));
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Err(failed(format!(
        "the Job {name} did not start within {} s ({last})",
        START_LIMIT.as_secs()
    )))
}

/// Why the Job ended, when it did (its Failed or Complete condition).
fn job_ended(job: &Job) -> Option<String> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "Complete") && c.status == "True")
        .map(|c| {
            format!(
                "{} ({}: {})",
                c.type_,
                c.reason.as_deref().unwrap_or("no reason"),
                c.message.as_deref().unwrap_or("")
            )
        })
}

fn waiting_reason(status: &k8s_openapi::api::core::v1::PodStatus) -> String {
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .map(|w| {
            format!(
                "{}: {}",
                w.reason.as_deref().unwrap_or("Waiting"),
                w.message.as_deref().unwrap_or("")
            )
        })
        .next();
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| c.message.clone().unwrap_or_default());
    waiting
        .or(unschedulable)
        .unwrap_or_else(|| status.phase.clone().unwrap_or_else(|| "Pending".into()))
}

/// `flomastr n8n-data` running in the Job's pod for `direction`: the process (stdout for a
/// backup, stdin for a restore), its stderr being drained, and its final status.
async fn start(
    client: &kube::Client,
    plan: &Plan,
    pod: &str,
    direction: Direction,
) -> Result<
    (
        kube::api::AttachedProcess,
        tokio::task::JoinHandle<String>,
        impl std::future::Future<
            Output = Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
        >,
    ),
    FullBackupError,
> {
    let restoring = direction == Direction::Restore;
    let params = AttachParams::default()
        .container(CONTAINER)
        .stdin(restoring)
        .stdout(!restoring)
        .stderr(true);
    let mut process = Api::<Pod>::namespaced(client.clone(), &plan.namespace)
        .exec(pod, data_job::exec_command(direction), &params)
        .await?;
    let stderr = drain_stderr(&mut process);
    let status = process.take_status().expect("the status is taken once");
    Ok((process, stderr, status))
}

/// The command's outcome: an error with what it printed on stderr unless it succeeded.
async fn exec_outcome(
    status: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
    stderr: tokio::task::JoinHandle<String>,
    what: &str,
) -> Result<(), FullBackupError> {
    let said = stderr.await.unwrap_or_default();
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(()),
        Some(s) => Err(failed(format!(
            "{what} failed: {} {}",
            s.message.unwrap_or_default(),
            said.trim()
        ))),
        None => Err(failed(format!("{what}: the exec ended without a status"))),
    }
}

fn drain_stderr(process: &mut kube::api::AttachedProcess) -> tokio::task::JoinHandle<String> {
    let stderr = process.stderr();
    tokio::spawn(async move {
        let Some(mut stderr) = stderr else {
            return String::new();
        };
        let mut all = Vec::new();
        let mut chunk = [0u8; 1024];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            if all.len() < STDERR_LIMIT {
                all.extend_from_slice(&chunk[..n]);
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

async fn pack_into(
    client: &kube::Client,
    plan: &Plan,
    pod: &str,
    store: &BackupStore,
    object: &str,
) -> Result<Part, FullBackupError> {
    let (mut process, stderr, status) = start(client, plan, pod, Direction::Backup).await?;
    let stdout = process.stdout().expect("stdout was asked for");
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let hashing = hasher.clone();
    let archive = tokio_util::io::ReaderStream::new(stdout)
        .inspect_ok(move |chunk| hashing.lock().unwrap().update(chunk));
    let uploaded = store.upload(object, archive).await;
    let outcome = exec_outcome(status.await, stderr, "packing n8n's volume").await;
    let size = match (uploaded, outcome) {
        (Ok(size), Ok(())) => size,
        (Err(UploadError::Target(target)), _) => return Err(target.into()),
        (Err(UploadError::Source(reason)), _) => return Err(failed(reason)),
        (Ok(_), Err(error)) => return Err(error),
    };
    let sha256 = hex::encode(hasher.lock().unwrap().clone().finalize());
    Ok(Part {
        name: super::manifest::N8N_PART.to_owned(),
        sha256,
        size,
    })
}

async fn unpack_from(
    client: &kube::Client,
    plan: &Plan,
    pod: &str,
    store: &BackupStore,
    object: &str,
    part: &Part,
) -> Result<DataRestored, FullBackupError> {
    let (mut process, stderr, status) = start(client, plan, pod, Direction::Restore).await?;
    let mut stdin = process.stdin().expect("stdin was asked for");
    let mut archive = std::pin::pin!(store.download(object).await?);
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    let copied = async {
        use tokio::io::AsyncWriteExt;
        while let Some(chunk) = archive.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            stdin
                .write_all(&chunk)
                .await
                .map_err(|e| failed(format!("sending the archive to the pod: {e}")))?;
        }
        stdin
            .shutdown()
            .await
            .map_err(|e| failed(format!("closing the archive to the pod: {e}")))?;
        Ok::<_, FullBackupError>(())
    }
    .await;
    drop(stdin);
    copied?;
    exec_outcome(status.await, stderr, "unpacking n8n's volume").await?;
    if size != part.size || hex::encode(hasher.finalize()) != part.sha256 {
        return Err(FullBackupError::Corrupt(format!(
            "{}: read back with another SHA-256 or size than the manifest's",
            part.name
        )));
    }
    Ok(DataRestored::Filled(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::children::fixtures::{plan, tenant};

    #[test]
    fn only_the_operators_own_marked_volume_is_an_unfinished_restore() {
        let mut filling = plan();
        filling.hold_for_unfinished_restore();
        let marked = children::pvc(&tenant(), &filling);
        assert!(unfinished_restore(&marked));
        assert!(!unfinished_restore(&children::pvc(&tenant(), &plan())));
        let mut foreign = marked.clone();
        foreign
            .metadata
            .labels
            .get_or_insert_default()
            .insert("app.kubernetes.io/managed-by".into(), "someone-else".into());
        assert!(!unfinished_restore(&foreign), "never another's volume");
        let mut other_value = marked;
        other_value
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(N8N_DATA_MARK.into(), "done".into());
        assert!(!unfinished_restore(&other_value));
    }

    #[test]
    fn a_job_that_gave_up_says_why() {
        let job: Job = serde_json::from_value(serde_json::json!({"status": {"conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}}))
        .unwrap();
        let why = job_ended(&job).unwrap();
        assert!(
            why.contains("Failed") && why.contains("backoff limit"),
            "{why}"
        );
        assert_eq!(job_ended(&Job::default()), None);
    }
}
