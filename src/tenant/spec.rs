//! The `Tenant` custom resource: the contract between platform engineers and flomastr.
//!
//! Doc comments on every field become `kubectl explain` text, so they are written for users.
//! Validation that the API server can enforce lives here too (schema bounds and CEL rules):
//! a bad Tenant is refused at `kubectl apply`, not discovered later by the operator.

use k8s_openapi::api::core::v1::EnvVar;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::TenantStatus;

/// A business that talks to its customers on WhatsApp through flomastr.
///
/// The operator turns each Tenant into a namespace with an isolated n8n, routes, DNS records and
/// the tenant's registration in the engine. The name of the Tenant is its slug: a DNS-1123 label
/// of at most 40 characters, used in host names and in the namespace `tenant-<slug>`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flomastr.io",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    singular = "tenant",
    shortname = "tn",
    category = "flomastr",
    status = "TenantStatus",
    derive = "PartialEq",
    doc = "A business that talks to its customers on WhatsApp through flomastr. The name is the tenant slug.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase of the tenant"),
    printcolumn(name = "N8n", type_ = "string", json_path = ".status.conditions[?(@.type==\"N8nReady\")].reason", description = "Why the tenant's n8n is or is not ready (N8nReady's reason)"),
    printcolumn(name = "Workflow", type_ = "string", json_path = ".status.conditions[?(@.type==\"WorkflowReady\")].reason", description = "Whether the worker workflow polls the engine (WorkflowReady's reason)"),
    printcolumn(name = "N8n URL", type_ = "string", json_path = ".status.n8nUrl", description = "Public URL of the tenant's n8n"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name (the tenant slug) must be a DNS-1123 label of at most 40 characters: lowercase letters, digits and '-', starting and ending with a letter or digit")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name of the business, shown in dashboards and sent to the engine.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,

    /// When true the tenant is suspended: n8n is scaled to zero, the engine refuses its traffic
    /// and its routes are removed. DNS records, secrets and data are kept, so resuming is instant.
    #[serde(default)]
    pub suspended: bool,

    /// What happens to the tenant's data when the Tenant is deleted (also when the CRD is).
    /// `Retain` (default) keeps the namespace `tenant-<slug>` with n8n's volume and encryption
    /// key, the DNS records and the engine's data (the tenant suspended there); only routes are
    /// removed. `Delete` removes the namespace with everything in it, the DNS records and the
    /// engine registration with all its data. `Snapshot` takes a full backup to `spec.backup.target`
    /// first (n8n's volume, its key, the engine's data) and then deletes as Delete does; while the
    /// backup fails the deletion waits (condition Stalled, reason SnapshotFailed or
    /// SnapshotUnavailable) and nothing is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// When true the API server refuses to delete this Tenant (the chart's
    /// ValidatingAdmissionPolicy `<release>-tenant-deletion-protection`): set it to false first.
    #[serde(default)]
    pub deletion_protection: bool,

    /// The tenant's own n8n: its automation workers.
    #[serde(default)]
    pub n8n: N8nSpec,

    /// The WhatsApp channel: which provider carries the tenant's messages and how to reach it.
    pub whatsapp: WhatsAppSpec,

    /// Host names under which the tenant is reachable. Both default from the operator's base domain.
    #[serde(default)]
    pub routing: RoutingSpec,

    /// DNS records the operator manages for the tenant's hosts.
    #[serde(default)]
    #[x_kube(validation = Rule::new("!self.enabled || has(self.target)").message("dns.target is required when dns.enabled is true"))]
    pub dns: DnsSpec,

    /// AI endpoints for the tenant: models and budget.
    #[serde(default)]
    pub ai: AiSpec,

    /// Resource and traffic limits for the tenant.
    #[serde(default)]
    pub limits: LimitsSpec,

    /// Scheduled backups of the tenant (n8n's encryption key sealed, the Tenant, the engine's
    /// data) to a volume or an S3-compatible bucket. Without it, backups are taken only on
    /// request (annotation `flomastr.io/backup-now`) and need a target here all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
}

/// What happens to the tenant's data when a Tenant is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the namespace (n8n's volume, encryption key), the DNS records and the engine's data
    /// (suspended).
    #[default]
    Retain,
    /// Remove the namespace with everything in it, the DNS records, the routes and the engine
    /// registration, including the tenant's data.
    Delete,
    /// Back the tenant up to `spec.backup.target` first (n8n's volume, its encryption key, the
    /// engine's data); once the backup succeeded, delete as `Delete` does: the backup restores
    /// all of it. While no backup succeeds (no target, target unreachable or full) the deletion
    /// waits with condition Stalled (reason SnapshotFailed or SnapshotUnavailable) and nothing
    /// is deleted.
    Snapshot,
}

/// The tenant's n8n deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct N8nSpec {
    /// Container image, pinned to a version (for example `n8nio/n8n:2.41.1`).
    /// Defaults to the operator's default n8n image.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("!self.endsWith(':latest') && !self.endsWith(':stable')").message("n8n.image must be pinned to a version, not a floating tag"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Number of n8n pods, 0 to 10. 0 stops n8n without suspending the tenant in the engine.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,

    /// CPU and memory for each n8n container.
    #[serde(default)]
    pub resources: ComputeResources,

    /// Size of the persistent volume for n8n's home directory, as a Kubernetes quantity (`1Gi`).
    #[serde(default = "default_storage")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("n8n.storage must be a positive quantity such as 1Gi"))]
    #[schemars(length(max = 32))]
    pub storage: String,

    /// IANA time zone for schedules in the tenant's workflows (`GENERIC_TIMEZONE` and `TZ`).
    #[serde(default = "default_timezone")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub timezone: String,

    /// Extra environment variables for the n8n container. Variables the operator manages
    /// (encryption key, host, engine URL, worker token and the instance owner) cannot be
    /// overridden here.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(e, !(e.name in ['N8N_ENCRYPTION_KEY', 'N8N_HOST', 'N8N_PROTOCOL', 'WEBHOOK_URL', 'FLOMASTR_ENGINE_URL', 'FLOMASTR_WORKER_TOKEN', 'N8N_INSTANCE_OWNER_MANAGED_BY_ENV', 'N8N_INSTANCE_OWNER_EMAIL', 'N8N_INSTANCE_OWNER_PASSWORD_HASH']))").message("n8n.extraEnv must not set variables the operator manages"))]
    pub extra_env: Vec<EnvVar>,
}

impl Default for N8nSpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_replicas(),
            resources: ComputeResources::default(),
            storage: default_storage(),
            timezone: default_timezone(),
            extra_env: Vec::new(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_storage() -> String {
    "1Gi".to_owned()
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// Requests and limits for a container, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// Guaranteed share. Defaults to 200m CPU and 512Mi memory.
    #[serde(default)]
    pub requests: CpuMemory,
    /// Upper bound. Defaults to 1 CPU and 1Gi memory.
    #[serde(default)]
    pub limits: CpuMemory,
}

/// A CPU and memory pair of Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuMemory {
    /// CPU as a quantity (`250m`, `1`).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("must be a quantity such as 250m or 1"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory as a quantity (`512Mi`, `1Gi`).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("must be a quantity such as 512Mi"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// The provider that carries a tenant's WhatsApp traffic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum WhatsAppProvider {
    /// InfoBip WhatsApp API.
    Infobip,
    /// Meta WhatsApp Cloud API (directly, or a BSP that proxies its format).
    Meta,
    /// Twilio Programmable Messaging.
    Twilio,
}

impl WhatsAppProvider {
    /// The lowercase name used in engine URLs (`/webhook/<provider>/<tenant>`) and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Infobip => "infobip",
            Self::Meta => "meta",
            Self::Twilio => "twilio",
        }
    }
}

/// The tenant's WhatsApp channel: its senders (numbers), in one of two forms. `senders` lists
/// one or more; the single-sender fields (`provider`, `sender`, `credentialsSecretRef`, optional
/// `providerBaseUrl`) describe exactly one and mean the same as a `senders` list holding it.
/// Give one form, not both. (Conversion plan: the single-sender fields stay in v1alpha1; a later
/// API version keeps only `senders`, and its conversion maps them to `senders[0]`.)
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.senders) && size(self.senders) > 0) ? !(has(self.provider) || has(self.sender) || has(self.credentialsSecretRef) || has(self.providerBaseUrl)) : (has(self.provider) && has(self.sender) && has(self.credentialsSecretRef))").message("whatsapp: list the senders either in whatsapp.senders or with the single-sender fields provider, sender and credentialsSecretRef (all three), not both"))]
#[x_kube(validation = Rule::new("!has(self.sender) || !has(self.provider) || self.provider != 'Meta' || self.sender.matches('^[0-9]{5,20}$')").message("whatsapp.sender must be the numeric phone-number-id for provider Meta"))]
#[x_kube(validation = Rule::new("!has(self.sender) || !has(self.provider) || self.provider != 'Infobip' || self.sender.matches('^[+]?[0-9]{6,15}$')").message("whatsapp.sender must be the sender number in international format for provider Infobip"))]
#[x_kube(validation = Rule::new("!has(self.sender) || !has(self.provider) || self.provider != 'Twilio' || self.sender.matches('^(whatsapp:)?[+][0-9]{6,15}$') || self.sender.matches('^MG[0-9a-f]{32}$')").message("whatsapp.sender must be whatsapp:+<E.164 number> or a Messaging Service SID (MG...) for provider Twilio"))]
pub struct WhatsAppSpec {
    /// Single-sender form: which provider carries the traffic (Infobip, Meta or Twilio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<WhatsAppProvider>,

    /// Single-sender form: the business sender, as in `senders[].sender`.
    #[schemars(length(min = 1, max = 64))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,

    /// Single-sender form: the provider's API base URL, as in `senders[].providerBaseUrl`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("whatsapp.providerBaseUrl must be an absolute http(s) URL"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_base_url: Option<String>,

    /// Single-sender form: the Secret with the provider credentials, as in
    /// `senders[].credentialsSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// The tenant's senders, 1 to 20, the first being the default for replies to a contact who
    /// has not written yet. Each sender (number) belongs to at most one Tenant: one another
    /// Tenant holds is refused by the engine (condition EngineRegistered False, reason
    /// SenderInUse).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.provider == a.provider && b.sender == a.sender))").message("whatsapp.senders must not list a sender twice"))]
    pub senders: Vec<SenderSpec>,
}

impl WhatsAppSpec {
    /// The tenant's senders, each with the spec path it is written at: `whatsapp.senders[i]`,
    /// or `whatsapp` for the single-sender form (its one sender).
    pub fn senders(&self) -> Vec<(String, SenderSpec)> {
        if !self.senders.is_empty() {
            return self
                .senders
                .iter()
                .enumerate()
                .map(|(i, sender)| (format!("spec.whatsapp.senders[{i}]"), sender.clone()))
                .collect();
        }
        match (&self.provider, &self.sender, &self.credentials_secret_ref) {
            (Some(provider), Some(sender), Some(credentials)) => vec![(
                "spec.whatsapp".to_owned(),
                SenderSpec {
                    provider: *provider,
                    sender: sender.clone(),
                    display_number: None,
                    label: None,
                    provider_base_url: self.provider_base_url.clone(),
                    credentials_secret_ref: credentials.clone(),
                },
            )],
            _ => Vec::new(),
        }
    }
}

/// One WhatsApp sender (number) of the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'Meta' || self.sender.matches('^[0-9]{5,20}$')").message("sender must be the numeric phone-number-id for provider Meta"))]
#[x_kube(validation = Rule::new("self.provider != 'Infobip' || self.sender.matches('^[+]?[0-9]{6,15}$')").message("sender must be the sender number in international format for provider Infobip"))]
#[x_kube(validation = Rule::new("self.provider != 'Twilio' || self.sender.matches('^(whatsapp:)?[+][0-9]{6,15}$') || self.sender.matches('^MG[0-9a-f]{32}$')").message("sender must be whatsapp:+<E.164 number> or a Messaging Service SID (MG...) for provider Twilio"))]
pub struct SenderSpec {
    /// Which provider carries this number: Infobip, Meta or Twilio.
    pub provider: WhatsAppProvider,

    /// The business sender: the number for Infobip (`441134960000`), the phone-number-id for Meta,
    /// `whatsapp:+<number>` or a Messaging Service SID for Twilio. Inbound messages are routed by
    /// it (a platform-shared Meta app's webhook by the phone-number-id), and replies name it.
    #[schemars(length(min = 1, max = 64))]
    pub sender: String,

    /// The number as customers see it (`+44 113 496 0000`), when the sender is not the number
    /// (Meta's phone-number-id). Shown to the tenant's workers with each message.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[0-9 +()-]+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_number: Option<String>,

    /// The tenant's name for the number (`sales`, `support`, `es`), shown to its workers.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[^\x00-\x1f\x7f]+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,

    /// Base URL of the provider's API, for a personal InfoBip base URL, a BSP proxy or a sandbox:
    /// an origin only (`https://host[:port]`, no path, query, fragment or user info) that must be
    /// allowed by the engine's provider allow-list (InfoBip `https://<account>.api.infobip.com`
    /// and `https://api.infobip.com`, Meta `https://graph.facebook.com`, Twilio
    /// `https://api.twilio.com`, plus what the platform adds with `--provider-base-url-allow`);
    /// any other is refused by the engine and the Tenant is not registered. Defaults to the
    /// provider's public API.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("providerBaseUrl must be an absolute http(s) URL"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_base_url: Option<String>,

    /// The Secret holding this number's provider credentials. Keys by provider: Infobip `apiKey`
    /// (+ optional `webhookSecret`), Meta `accessToken` (+ `appSecret` and `verifyToken` when the
    /// tenant has a Meta app of its own, for `/webhook/meta/<tenant>`; without them its webhooks
    /// come through the platform's shared app, and optional `wabaId`, the business account);
    /// Twilio `accountSid`, `authToken`. Several senders may name the same Secret. The operator
    /// reads only Secrets in its credentials namespace (`flomastr-credentials` unless the platform
    /// configures another) labelled `flomastr.io/tenant: <this Tenant's name>`.
    pub credentials_secret_ref: SecretRef,
}

/// A reference to a credentials Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Namespace of the Secret: the operator's credentials namespace (`flomastr-credentials`
    /// unless the platform configures another). Any other namespace is refused
    /// (condition EngineRegistered False, reason CredentialsNamespaceNotAllowed).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
}

/// Host names under which the tenant is reachable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Host of the tenant's n8n. Defaults to `<slug>.n8n.<baseDomain>`.
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n8n_host: Option<String>,

    /// Host of the tenant's frontend, proxied with the header `X-Tenant-Slug: <slug>`.
    /// Defaults to `<slug>.<baseDomain>`.
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend_host: Option<String>,

    /// Ingress class for the tenant's Ingress objects. Defaults to the operator's ingress class.
    #[schemars(length(max = 253))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
}

/// DNS records for the tenant's hosts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.recordType) || !has(self.target) || (self.recordType == 'CNAME') != isIP(self.target)").message("dns.target must be an IP address for A/AAAA records and a host name for CNAME records"))]
pub struct DnsSpec {
    /// Whether the operator manages DNS records for this tenant (through the operator's DNS provider).
    #[serde(default)]
    pub enabled: bool,

    /// What the records point at: the load balancer's IP address (A/AAAA) or host name (CNAME).
    #[schemars(length(min = 1, max = 253))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,

    /// Record type. Defaults to A for an IPv4 target, AAAA for IPv6 and CNAME for a host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_type: Option<DnsRecordType>,

    /// Time to live in seconds, 30 to 86400. Defaults to 300.
    #[schemars(range(min = 30, max = 86400))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i32>,
}

/// A DNS record type the operator can manage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DnsRecordType {
    /// IPv4 address record.
    A,
    /// IPv6 address record.
    AAAA,
    /// Alias to another host name.
    CNAME,
}

/// AI endpoints for the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiSpec {
    /// Chat model name on the engine's OpenAI-compatible endpoint (for example `gpt-4o-mini`).
    /// Without one, synthesis answers extractively from the retrieved sources.
    #[schemars(length(min = 1, max = 128))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_model: Option<String>,

    /// Embedding model for the tenant's knowledge: `local` (all-MiniLM-L6-v2 in the engine) or
    /// a model name on the OpenAI-compatible endpoint. Changing it re-embeds the knowledge.
    #[schemars(length(min = 1, max = 128))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,

    /// Tokens the tenant may spend on external models per calendar month. Unset means no budget.
    #[schemars(range(min = 0))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_token_budget: Option<i64>,

    /// AI calls allowed per minute. Defaults to the engine's setting.
    #[schemars(range(min = 1, max = 100000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<i32>,
}

/// Resource and traffic limits for the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Resource quota for the tenant's namespace. Unset fields are not limited.
    #[serde(default)]
    pub quota: QuotaSpec,

    /// Jobs the tenant's workers may hold at once in the engine (1 to 1000). Defaults to the engine's setting.
    #[schemars(range(min = 1, max = 1000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_jobs: Option<i32>,

    /// Deliveries of a job before it is dead-lettered (1 to 100). Defaults to the engine's setting.
    #[schemars(range(min = 1, max = 100))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_job_attempts: Option<i32>,

    /// Largest media file in bytes (1 to 104857600 = 100 MiB): inbound files fetched from the
    /// provider (larger ones are marked failed, the message is kept) and files workers upload
    /// to send (`POST /media`, 413 above it). Defaults to the engine's `--media-max-bytes`.
    #[schemars(range(min = 1, max = 104857600))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_max_bytes: Option<i64>,

    /// How long the tenant's media files (inbound and uploaded) are kept, in seconds (60 to
    /// 34560000 = 400 days); then the engine deletes them (from its object store too).
    /// Defaults to the engine's job retention.
    #[schemars(range(min = 60, max = 34560000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_retention_seconds: Option<i64>,
}

/// A ResourceQuota for the tenant's namespace, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// Total CPU requests (`requests.cpu`).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("must be a quantity such as 2"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_cpu: Option<String>,
    /// Total memory requests (`requests.memory`).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("must be a quantity such as 4Gi"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_memory: Option<String>,
    /// Total CPU limits (`limits.cpu`).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("must be a quantity such as 4"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_cpu: Option<String>,
    /// Total memory limits (`limits.memory`).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("must be a quantity such as 8Gi"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_memory: Option<String>,
    /// Total storage requested by persistent volume claims (`requests.storage`).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("must be a quantity such as 10Gi"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_storage: Option<String>,
    /// Maximum number of pods.
    #[schemars(range(min = 0, max = 1000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn whatsapp(value: serde_json::Value) -> WhatsAppSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_single_sender_fields_are_one_sender() {
        let reference = json!({"name": "acme-infobip", "namespace": "flomastr-credentials"});
        let single = whatsapp(json!({"provider": "Infobip", "sender": "441134960000",
            "providerBaseUrl": "https://x.api.infobip.com", "credentialsSecretRef": reference}));
        let listed = whatsapp(
            json!({"senders": [{"provider": "Infobip", "sender": "441134960000",
            "providerBaseUrl": "https://x.api.infobip.com", "credentialsSecretRef": reference}]}),
        );
        assert_eq!(single.senders()[0].1, listed.senders()[0].1);
        assert_eq!(single.senders()[0].0, "spec.whatsapp");
        assert_eq!(listed.senders()[0].0, "spec.whatsapp.senders[0]");
        // A Tenant written before senders existed reads back as it was written.
        let written = serde_json::to_value(&single).unwrap();
        assert!(written.get("senders").is_none(), "{written}");
        assert!(whatsapp(json!({})).senders().is_empty());
    }
}

/// Backups of the tenant: when, how many to keep, where.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When to take a backup: a cron expression of five fields (minute hour day-of-month month
    /// day-of-week) in UTC, for example `0 3 * * *` (every day at 03:00 UTC). Omitted: only on
    /// request (annotation `flomastr.io/backup-now`) and before a Snapshot deletion.
    #[schemars(length(min = 9, max = 100), regex(pattern = r"^\S+ \S+ \S+ \S+ \S+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,

    /// How many of the tenant's backups the target keeps: older ones are deleted after each
    /// successful backup.
    #[serde(default = "default_retention")]
    #[schemars(range(min = 1, max = 1000))]
    pub retention: i32,

    /// Where the backups go.
    pub target: BackupTargetSpec,
}

fn default_retention() -> i32 {
    7
}

/// Exactly one of `volume` and `s3`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.volume) != has(self.s3)").message("backup.target: set exactly one of volume and s3"))]
pub struct BackupTargetSpec {
    /// A PersistentVolumeClaim mounted into the operator (the chart's `operator.backup.volumes`)
    /// under `<backup volumes dir>/<claimName>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeBackupTarget>,

    /// An S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3BackupTarget>,
}

/// A directory on a volume the operator has mounted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBackupTarget {
    /// The PersistentVolumeClaim (mounted into the operator by the chart).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub claim_name: String,

    /// Directory inside the volume (relative, no `..`); the volume's root when omitted.
    #[schemars(
        length(max = 512),
        regex(pattern = r"^([A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]*$")
    )]
    #[x_kube(validation = Rule::new("!self.split('/').exists(p, p == '..')").message("backup.target.volume.path must not contain .."))]
    #[serde(default)]
    pub path: String,
}

/// An S3-compatible bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3BackupTarget {
    /// `http(s)://host[:port]` of an S3-compatible server; AWS S3 itself when omitted.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("backup.target.s3.endpoint must be an absolute http(s) URL"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Bucket name.
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,

    /// Region (any value the server accepts; `us-east-1` for most S3-compatible servers).
    #[schemars(length(min = 1, max = 64))]
    #[serde(default = "default_region")]
    pub region: String,

    /// Key prefix inside the bucket (no leading or trailing `/`).
    #[schemars(
        length(max = 512),
        regex(pattern = r"^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$")
    )]
    #[serde(default)]
    pub prefix: String,

    /// The Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, in the operator's
    /// credentials namespace (like the WhatsApp credentials).
    pub credentials_secret_ref: SecretRef,
}

fn default_region() -> String {
    "us-east-1".into()
}
