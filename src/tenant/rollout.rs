//! The `TenantRollout` custom resource: a fleet-wide n8n version rolled out to tenants in waves.
//!
//! Like the Tenant, every doc comment is `kubectl explain` text and what the API server can check
//! (bounds, a pinned image) is checked at `kubectl apply`. What only the operator can check (that
//! the canaries exist) is reported in the status with phase `Invalid`.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A fleet-wide n8n version, rolled out to tenants in waves: the canaries first, then batches;
/// each tenant is backed up, upgraded, and rolled back when the new n8n is not ready in time.
// Clippy reads the printcolumns' repeated `type_ = "string"` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flomastr.io",
    version = "v1alpha1",
    kind = "TenantRollout",
    plural = "tenantrollouts",
    singular = "tenantrollout",
    shortname = "tro",
    category = "flomastr",
    status = "TenantRolloutStatus",
    derive = "PartialEq",
    doc = "A fleet-wide n8n version rolled out to tenants in waves (canaries first, then batches), with a backup before and a rollback after a failed upgrade.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the rollout is"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.n8nImage",
        description = "The n8n image rolled out"
    ),
    printcolumn(
        name = "Wave",
        type_ = "integer",
        json_path = ".status.currentWave",
        description = "The wave in progress (0 = the canaries)"
    ),
    printcolumn(
        name = "Upgraded",
        type_ = "integer",
        json_path = ".status.upgraded",
        description = "Tenants that run the image"
    ),
    printcolumn(
        name = "Stopped",
        type_ = "string",
        json_path = ".status.stoppedReason",
        description = "Why the rollout stopped"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantRolloutSpec {
    /// The n8n image every covered tenant moves to, pinned to a version (for example
    /// `n8nio/n8n:2.41.1` or an `@sha256:` digest). Tenants that set `spec.n8n.image` pin their
    /// own version and are skipped.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^[^\\\\s@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[a-f0-9]{64})$') && !self.endsWith(':latest') && !self.endsWith(':stable')").message("n8nImage must be an image pinned to a version (name:tag or name@sha256:digest), not a floating tag"))]
    pub n8n_image: String,

    /// Labels a Tenant must carry to be covered; empty covers every Tenant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenant_selector: BTreeMap<String, String>,

    /// Tenants (by name) upgraded first, in a wave of their own; a failure among them stops the
    /// rollout. Each must exist and be covered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub canary: Vec<String>,

    /// Labels that make a covered Tenant a canary as well.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub canary_selector: BTreeMap<String, String>,

    /// How many tenants a wave after the canaries upgrades at once (1 to 1000).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: i32,

    /// Seconds a tenant's new n8n has to roll out and become ready before it is rolled back.
    /// 1 to 86400.
    #[serde(default = "default_ready_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub ready_timeout_seconds: i64,

    /// Seconds the rollback to the previous version has to be ready again (n8n restarts, and
    /// a restore may run first) before the tenant is Failed with RollbackNotReady. 1 to 86400.
    #[serde(default = "default_rollback_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub rollback_timeout_seconds: i64,

    /// Seconds a tenant's backup before its upgrade may take (60 to 86400).
    #[serde(default = "default_backup_timeout")]
    #[schemars(range(min = 60, max = 86400))]
    pub backup_timeout_seconds: i64,

    /// Failed tenants after the canaries the rollout tolerates before it stops (0: the first
    /// failure stops it). A failed canary always stops it.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub max_failures: i32,

    /// Take a backup of each tenant before its upgrade (default true). A covered Tenant without
    /// `spec.backup` then fails with reason NoBackupConfigured, which stops the rollout.
    #[serde(default = "default_true")]
    pub require_backup: bool,

    /// When true no further tenant starts its upgrade; those in progress finish (or roll back).
    #[serde(default)]
    pub paused: bool,
}

fn default_batch_size() -> i32 {
    5
}

fn default_ready_timeout() -> i64 {
    600
}

fn default_rollback_timeout() -> i64 {
    900
}

fn default_backup_timeout() -> i64 {
    1800
}

fn default_true() -> bool {
    true
}

/// What the operator reports about a rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantRolloutStatus {
    /// Pending, Progressing, Paused, Stopped, Succeeded or Invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,

    /// The `metadata.generation` this status is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The wave in progress: 0 is the canaries' (when there are canaries), then one per batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<i32>,

    /// How many waves this rollout has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waves: Option<i32>,

    /// Tenants that run the image.
    #[serde(default)]
    pub upgraded: i32,

    /// Why the rollout stopped (or is Invalid): a short reason such as CanaryFailed,
    /// TooManyFailures, UnknownCanary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,

    /// What happened, for people: which tenant failed and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Each covered tenant: its wave, the version it comes from and goes to, and where it is.
    #[serde(default)]
    pub tenants: Vec<TenantUpgrade>,
}

/// Where a rollout is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// Nothing started yet.
    Pending,
    /// Tenants are being upgraded.
    Progressing,
    /// `spec.paused`: no further tenant starts.
    Paused,
    /// A failure stopped it (stoppedReason, message); fix the spec (a new n8nImage) to resume.
    Stopped,
    /// Every covered tenant runs the image (or was skipped).
    Succeeded,
    /// The spec cannot be carried out (stoppedReason, message); nothing was changed.
    Invalid,
}

/// One tenant in a rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUpgrade {
    /// The Tenant's name.
    pub name: String,
    /// Its wave (0 = the canaries, when there are canaries).
    pub wave: i32,
    /// Whether it is a canary.
    #[serde(default)]
    pub canary: bool,
    /// The n8n image it ran before (where a rollback returns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The n8n image it moves to.
    pub to: String,
    /// Where its upgrade is.
    pub state: UpgradeState,
    /// Why it is in this state (a short reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current step started (RFC 3339): the timeouts count from here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The backup request made before the upgrade (`flomastr.io/backup-now`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_request: Option<String>,
    /// The backup taken before the upgrade (restored when the new n8n may have migrated data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// True once a pod of the new image started: n8n may have migrated its database, so a
    /// rollback restores the backup.
    #[serde(default)]
    pub data_touched: bool,
}

impl TenantUpgrade {
    /// A tenant whose upgrade to `to` has not started.
    pub fn pending(name: String, wave: i32, canary: bool, to: String) -> Self {
        Self {
            name,
            wave,
            canary,
            from: None,
            to,
            state: UpgradeState::Pending,
            reason: None,
            message: None,
            since: None,
            backup_request: None,
            backup_name: None,
            data_touched: false,
        }
    }
}

/// Where one tenant's upgrade is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UpgradeState {
    /// Waits for its wave.
    Pending,
    /// Not upgraded by this rollout (reason: Pinned, Suspended).
    Skipped,
    /// Its backup was requested; the upgrade starts when it succeeded.
    BackingUp,
    /// Runs the new image; waits until n8n is rolled out and ready.
    Upgrading,
    /// The new image was not ready in time: returning to `from`.
    RollingBack,
    /// Runs the new image, ready.
    Upgraded,
    /// Back on `from` and ready after a failed upgrade.
    RolledBack,
    /// Could not be upgraded nor rolled back (reason says why).
    Failed,
}

impl UpgradeState {
    /// The tenant is done with this rollout.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Skipped | Self::Upgraded | Self::RolledBack | Self::Failed
        )
    }

    /// The tenant's upgrade failed (it counts against the rollout).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::RolledBack | Self::Failed)
    }

    /// A step is in progress for the tenant.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::BackingUp | Self::Upgrading | Self::RollingBack)
    }
}
