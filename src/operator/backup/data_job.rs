//! The Job that moves n8n's volume in and out of a backup (pure builders; `n8n_data` runs it).
//!
//! Why a Job with n8n scaled to zero, and not a copy while n8n runs: n8n keeps its SQLite
//! database, its binary data and its config in the one volume, and writes them while it runs.
//! With n8n stopped (the Deployment's Recreate strategy and its grace period let it close the
//! database), the files are at rest: a plain copy is consistent and restores as it was, for
//! every file, with no tool inside the n8n image (which has no shell). Messages do not wait on
//! n8n meanwhile: they queue in the engine and n8n takes them when it is back.
//!
//! The pod runs the operator's own image (`flomastr n8n-data`) as n8n's user, with a read-only
//! root filesystem, no privileges, no ServiceAccount token and, for a backup, the volume
//! mounted read-only; it is bounded in time, and its TTL removes it after it finished, so the
//! operator needs no right to delete anything.

use crate::operator::children::{DATA_PVC, N8N_UID, meta};
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The operator's image has its binary here (Dockerfile, scripts/image).
pub const BINARY: &str = "/usr/local/bin/flomastr";
/// The one container of the Job's pod.
pub const CONTAINER: &str = "n8n-data";
/// Where the pod mounts n8n's volume.
pub const DATA_DIR: &str = "/var/lib/n8n";
const SCRATCH_DIR: &str = "/run/flomastr";
/// Written by a pack or unpack when it ended: the held main process then exits.
const DONE: &str = "/run/flomastr/done";
/// The longest a Job may live (image pull, the copy, a stalled exec).
pub const DEADLINE_SECONDS: i64 = 1800;
/// How long a finished Job stays for `kubectl describe` before its TTL removes it.
const TTL_SECONDS: i32 = 600;
/// Its label, for finding its pod.
pub const JOB_LABEL: &str = "flomastr.io/n8n-data-job";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read n8n's volume into a backup (mounted read-only).
    Backup,
    /// Fill a new volume from a backup.
    Restore,
}

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
        }
    }
}

/// The Job's name: `n8n-backup-<suffix>` or `n8n-restore-<suffix>`.
pub fn job_name(direction: Direction, suffix: &str) -> String {
    format!("n8n-{}-{suffix}", direction.verb())
}

/// The command the operator runs in the pod (through exec): the archive goes to its stdout,
/// or comes from its stdin.
pub fn exec_command(direction: Direction) -> Vec<String> {
    let action = match direction {
        Direction::Backup => "pack",
        Direction::Restore => "unpack",
    };
    [
        BINARY, "n8n-data", action, "--dir", DATA_DIR, "--done", DONE,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(N8N_UID),
        ..SecurityContext::default()
    }
}

fn resources() -> ResourceRequirements {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(quantities("50m", "32Mi")),
        limits: Some(quantities("500m", "128Mi")),
        ..ResourceRequirements::default()
    }
}

fn volumes(direction: Direction) -> Vec<Volume> {
    vec![
        Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: DATA_PVC.to_owned(),
                read_only: (direction == Direction::Backup).then_some(true),
            }),
            ..Volume::default()
        },
        Volume {
            name: "scratch".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity("1Mi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// The Job that holds n8n's volume for one backup or restore.
pub fn job(tenant: &Tenant, plan: &Plan, image: &str, direction: Direction, name: &str) -> Job {
    let mut labels = plan.labels("n8n-data");
    labels.insert(JOB_LABEL.to_owned(), name.to_owned());
    let mut metadata = meta(tenant, plan, name, "n8n-data", true);
    metadata.labels = Some(labels.clone());
    let limit = DEADLINE_SECONDS.to_string();
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(
            [
                BINARY,
                "n8n-data",
                "hold",
                "--done",
                DONE,
                "--limit-seconds",
                limit.as_str(),
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        resources: Some(resources()),
        security_context: Some(security_context()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_owned(),
                mount_path: DATA_DIR.to_owned(),
                read_only: (direction == Direction::Backup).then_some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "scratch".to_owned(),
                mount_path: SCRATCH_DIR.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(TTL_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(N8N_UID),
                        run_as_group: Some(N8N_UID),
                        fs_group: Some(N8N_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(volumes(direction)),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::children::fixtures::{plan, tenant};

    fn pod(direction: Direction) -> PodSpec {
        job(
            &tenant(),
            &plan(),
            "flomastr/flomastr:1",
            direction,
            "n8n-x-1",
        )
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
    }

    #[test]
    fn a_backup_job_reads_n8ns_volume_read_only_as_n8ns_user_and_is_bounded() {
        let job = job(
            &tenant(),
            &plan(),
            "flomastr/flomastr:1",
            Direction::Backup,
            &job_name(Direction::Backup, "20261203t081500"),
        );
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("n8n-backup-20261203t081500")
        );
        assert_eq!(job.metadata.namespace.as_deref(), Some("tenant-acme"));
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(DEADLINE_SECONDS));
        assert!(spec.ttl_seconds_after_finished.is_some());
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_ne!(
            labels["app.kubernetes.io/name"], "n8n",
            "n8n's Service and selector never pick this pod"
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.service_account_name, None);
        let security = pod.security_context.unwrap();
        assert_eq!(
            (security.run_as_user, security.fs_group),
            (Some(N8N_UID), Some(N8N_UID))
        );
        let container = &pod.containers[0];
        let context = container.security_context.clone().unwrap();
        assert_eq!(context.read_only_root_filesystem, Some(true));
        assert_eq!(context.allow_privilege_escalation, Some(false));
        assert_eq!(context.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        let data = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().claim_name,
            DATA_PVC
        );
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().read_only,
            Some(true)
        );
        assert_eq!(
            container.volume_mounts.as_ref().unwrap()[0].read_only,
            Some(true)
        );
        assert!(container.resources.as_ref().unwrap().limits.is_some());
    }

    #[test]
    fn a_restore_job_writes_the_volume_and_the_commands_name_the_same_paths() {
        let pod = pod(Direction::Restore);
        let data = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().read_only,
            None
        );
        let command = pod.containers[0].command.clone().unwrap();
        assert_eq!(command[..3], [BINARY, "n8n-data", "hold"]);
        let unpack = exec_command(Direction::Restore);
        assert_eq!(unpack[..3], [BINARY, "n8n-data", "unpack"]);
        assert_eq!(exec_command(Direction::Backup)[2], "pack");
        let done = |c: &[String]| c[c.iter().position(|a| a == "--done").unwrap() + 1].clone();
        assert_eq!(
            done(&command),
            done(&unpack),
            "the hold waits for what unpack writes"
        );
        let dir = unpack[unpack.iter().position(|a| a == "--dir").unwrap() + 1].clone();
        assert_eq!(
            pod.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path,
            dir
        );
    }
}
