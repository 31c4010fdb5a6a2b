//! What the operator reports back on a Tenant.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::DnsRecordType;

/// Observed state of a Tenant, written by the operator through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// Lifecycle phase: Pending, Provisioning, Ready, Suspended, Degraded or Terminating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<TenantPhase>,

    /// The `metadata.generation` the operator last reconciled; status older than the spec
    /// has a smaller value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Detailed state: Ready, N8nReady, WorkflowReady, RoutesReady, DnsReady and
    /// EngineRegistered, each with a reason and a message telling what to fix when it is False;
    /// and, after the kstatus conventions GitOps tools read, Reconciling (True while the
    /// operator is making progress) and Stalled (True while a failure needs fixing). Each
    /// carries the observedGeneration it was computed for.
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// Public URL of the tenant's n8n.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n8n_url: Option<String>,

    /// Namespace holding the tenant's workloads (`tenant-<slug>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// DNS records the operator created and owns for this tenant.
    #[serde(default)]
    pub dns_records: Vec<DnsRecordStatus>,

    /// Fingerprint of the n8n encryption key (`sha256:` and the first 16 hex digits of the
    /// SHA-256 of the key; never the key). Recorded once: a Secret `n8n-encryption` holding
    /// another key, or none, is reported in N8nReady and n8n is not started with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_fingerprint: Option<String>,

    /// The n8n image the tenant runs: recorded when n8n rolled out with it and every replica is
    /// available (a TenantRollout reads it as the version to return to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n8n_image: Option<String>,
    /// Backups of the tenant (`spec.backup`, annotation `flomastr.io/backup-now`): the last
    /// one taken, when the next is due and the outcome of the last request. Condition
    /// BackupReady tells whether the last attempt succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,

    /// The outcome of the last restore asked for with annotation `flomastr.io/restore-from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
}

/// Backups of a tenant as the operator last saw them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The last backup that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,
    /// When the next scheduled backup is due (RFC 3339, UTC); none without a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_backup_at: Option<String>,
    /// The outcome of the last `flomastr.io/backup-now` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<BackupRequestStatus>,
}

/// A backup taken.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastBackup {
    /// The backup's name, to restore it by (`flomastr.io/restore-from`): `<slug>/<time>`.
    pub name: String,
    /// Bytes written to the target (all parts).
    pub size_bytes: i64,
    /// How long it took, in seconds.
    pub duration_seconds: f64,
    /// When it was started (RFC 3339, UTC).
    pub time: String,
    /// n8n's volume in it (`n8n-data.tar`): its size in bytes; absent when the volume held
    /// nothing yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n8n_data_bytes: Option<i64>,
    /// The SHA-256 (hex) of `n8n-data.tar`, as the manifest lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n8n_data_sha256: Option<String>,
}

/// The outcome of a `flomastr.io/backup-now` request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRequestStatus {
    /// The annotation's value.
    pub id: String,
    /// `Succeeded` or `Failed`.
    pub outcome: String,
    /// Why (`Succeeded`, or the failure: TargetUnreachable, TargetFull, TargetDenied,
    /// TargetMisconfigured, TargetFailed, EngineFailed, NoTarget, BackupKeyMissing...).
    pub reason: String,
    /// What happened, for people.
    pub message: String,
    /// The backup taken, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
}

/// The outcome of a `flomastr.io/restore-from` request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The backup restored (the annotation's value).
    pub from: String,
    /// `Succeeded` or `Failed`.
    pub outcome: String,
    /// Why (`Succeeded`, or BackupNotFound, BackupCorrupt, BackupVersion, BackupKeyWrong,
    /// a target's reason, EngineRefused...).
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

/// Lifecycle phase of a Tenant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TenantPhase {
    /// Accepted, nothing reconciled yet.
    Pending,
    /// Children are being created or are not ready yet.
    Provisioning,
    /// Every condition is True: the tenant serves traffic.
    Ready,
    /// `spec.suspended` is true and the suspension is in effect.
    Suspended,
    /// Something the tenant needs failed; the conditions say what.
    Degraded,
    /// The Tenant is being deleted and its external state cleaned up.
    Terminating,
}

/// A DNS record owned by a Tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecordStatus {
    /// Fully qualified record name.
    pub name: String,
    /// Record type.
    pub record_type: DnsRecordType,
    /// Record data (address or host name).
    pub target: String,
    /// Provider that holds the record: `digitalocean` or `external-dns`.
    pub provider: String,
    /// Provider's record id, when it has one (a hint only: records are always re-listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The condition types a Tenant reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    Ready,
    N8nReady,
    WorkflowReady,
    RoutesReady,
    DnsReady,
    EngineRegistered,
    /// Whether the last backup attempt succeeded (only with `spec.backup`); never affects Ready.
    BackupReady,
    /// kstatus: True while the operator works towards the spec (nothing failed, something pending).
    Reconciling,
    /// kstatus: True while a failure keeps the tenant from becoming ready until someone acts.
    Stalled,
}

impl ConditionType {
    pub const ALL: [ConditionType; 8] = [
        Self::Ready,
        Self::N8nReady,
        Self::WorkflowReady,
        Self::RoutesReady,
        Self::DnsReady,
        Self::EngineRegistered,
        Self::Reconciling,
        Self::Stalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::N8nReady => "N8nReady",
            Self::WorkflowReady => "WorkflowReady",
            Self::RoutesReady => "RoutesReady",
            Self::DnsReady => "DnsReady",
            Self::EngineRegistered => "EngineRegistered",
            Self::BackupReady => "BackupReady",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }
}
