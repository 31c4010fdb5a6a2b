//! Operator-wide settings (flags and environment, set by the Helm chart).

use crate::operator::pod_selector::PodSelector;
use std::time::Duration;

/// Where tenants' credentials Secrets live unless `--credentials-namespace` says otherwise.
pub const DEFAULT_CREDENTIALS_NAMESPACE: &str = "flomastr-credentials";

/// The n8n tenants run unless they pin another: Docker Hub's official image (no registry host,
/// so the cluster's default applies) of the version in `n8n-version`, which the tests run too.
pub const DEFAULT_N8N_IMAGE: &str = "n8nio/n8n:2.41.1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DnsProviderKind {
    /// The operator manages no DNS records.
    None,
    /// Records through the DigitalOcean DNS API v2.
    Digitalocean,
    /// `DNSEndpoint` objects for external-dns to publish.
    ExternalDns,
}

#[derive(clap::Args, Clone)]
pub struct OperatorArgs {
    /// Base domain: tenants get `<slug>.n8n.<base>` and `<slug>.<base>` unless their spec says otherwise.
    #[arg(long, env = "FLOMASTR_BASE_DOMAIN")]
    pub base_domain: String,

    /// Ingress class of the tenants' Ingress objects.
    #[arg(long, env = "FLOMASTR_INGRESS_CLASS")]
    pub ingress_class: Option<String>,

    /// Namespace the ingress controller runs in: the only source allowed to reach n8n.
    #[arg(long, env = "FLOMASTR_INGRESS_NAMESPACE", default_value = "ingress")]
    pub ingress_namespace: String,

    /// Service (`namespace/name:port`) that serves tenants' frontends.
    #[arg(long, env = "FLOMASTR_FRONTEND_SERVICE")]
    pub frontend_service: Option<String>,

    /// Caddy admin API URL; when set, the operator keeps one Caddy route per tenant host.
    #[arg(long, env = "FLOMASTR_CADDY_ADMIN_URL")]
    pub caddy_admin_url: Option<String>,

    /// Caddy HTTP server (under apps.http.servers) that holds the tenant routes.
    #[arg(long, env = "FLOMASTR_CADDY_SERVER", default_value = "srv0")]
    pub caddy_server: String,

    /// Where Caddy reaches a tenant's n8n: `{slug}` and `{namespace}` are replaced.
    #[arg(
        long,
        env = "FLOMASTR_CADDY_N8N_UPSTREAM",
        default_value = "n8n.{namespace}.svc:5678"
    )]
    pub caddy_n8n_upstream: String,

    /// Where Caddy reaches the frontend (the `X-Tenant-Slug` header tells it which tenant).
    #[arg(
        long,
        env = "FLOMASTR_CADDY_FRONTEND_UPSTREAM",
        default_value = "frontend.flomastr-system.svc:80"
    )]
    pub caddy_frontend_upstream: String,

    /// DNS provider.
    #[arg(
        long,
        env = "FLOMASTR_DNS_PROVIDER",
        value_enum,
        default_value = "none"
    )]
    pub dns_provider: DnsProviderKind,

    /// DNS zone the records live in (defaults to the base domain).
    #[arg(long, env = "FLOMASTR_DNS_ZONE")]
    pub dns_zone: Option<String>,

    /// DigitalOcean API token (write scope).
    #[arg(long, env = "DIGITALOCEAN_TOKEN", hide_env_values = true)]
    pub digitalocean_token: Option<String>,

    /// DigitalOcean API base URL.
    #[arg(
        long,
        env = "FLOMASTR_DIGITALOCEAN_URL",
        default_value = "https://api.digitalocean.com"
    )]
    pub digitalocean_url: String,

    /// The engine's admin API URL.
    #[arg(long, env = "FLOMASTR_ENGINE_URL")]
    pub engine_url: String,

    /// The engine's URL as n8n workers reach it (FLOMASTR_ENGINE_URL in n8n). Defaults to --engine-url.
    #[arg(long, env = "FLOMASTR_ENGINE_WORKER_URL")]
    pub engine_worker_url: Option<String>,

    /// The engine's admin token.
    #[arg(long, env = "FLOMASTR_ADMIN_TOKEN", hide_env_values = true)]
    pub engine_admin_token: String,

    /// n8n image for tenants that do not pin one.
    #[arg(long, env = "FLOMASTR_N8N_IMAGE", default_value = DEFAULT_N8N_IMAGE)]
    pub n8n_image: String,

    /// Namespace the operator runs in (its leader-election Lease lives there) and, with the
    /// chart, the engine's namespace: the only namespace n8n may reach the engine in.
    #[arg(long, env = "FLOMASTR_NAMESPACE", default_value = "flomastr-system")]
    pub namespace: String,

    /// The only namespace tenants' credentials Secrets are read from (a Tenant naming another
    /// namespace is refused; the operator's RBAC can read Secrets nowhere else).
    #[arg(
        long,
        env = "FLOMASTR_CREDENTIALS_NAMESPACE",
        default_value = DEFAULT_CREDENTIALS_NAMESPACE
    )]
    pub credentials_namespace: String,

    /// Labels of the engine's pods (`key=value,...`): n8n may reach only these pods.
    #[arg(
        long,
        env = "FLOMASTR_ENGINE_POD_SELECTOR",
        default_value = "app.kubernetes.io/part-of=flomastr,app.kubernetes.io/component=engine"
    )]
    pub engine_pod_selector: PodSelector,

    /// The engine's container port: the only port n8n may reach the engine's pods on.
    #[arg(
        long,
        env = "FLOMASTR_ENGINE_POD_PORT",
        default_value_t = 8080,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub engine_pod_port: u16,

    /// Namespace of the cluster DNS pods, the only DNS servers n8n may query.
    #[arg(
        long,
        env = "FLOMASTR_CLUSTER_DNS_NAMESPACE",
        default_value = "kube-system"
    )]
    pub cluster_dns_namespace: String,

    /// Labels of the cluster DNS pods (`key=value,...`; CoreDNS and kube-dns both carry
    /// `k8s-app=kube-dns`).
    #[arg(
        long,
        env = "FLOMASTR_CLUSTER_DNS_POD_SELECTOR",
        default_value = "k8s-app=kube-dns"
    )]
    pub cluster_dns_pod_selector: PodSelector,

    /// Identity in leader election (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Run without leader election (a single replica).
    #[arg(long, env = "FLOMASTR_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,

    /// Address of the metrics and health endpoint.
    #[arg(long, env = "FLOMASTR_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: std::net::SocketAddr,

    /// Seconds between full resyncs (re-asserting Caddy routes and DNS, healing drift).
    #[arg(long, env = "FLOMASTR_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,

    /// Reconcile only Tenants matching this label selector (sharding, canaries, tests).
    #[arg(long, env = "FLOMASTR_TENANT_SELECTOR")]
    pub tenant_selector: Option<String>,

    /// The platform backup key: 64 hex digits (32 bytes, AES-256-GCM) that seal each tenant's
    /// n8n encryption key in its backups (the chart reads it from the Secret named in
    /// `operator.backup.keySecret`). Without it no backup is taken (BackupKeyMissing).
    #[arg(long, env = "FLOMASTR_BACKUP_KEY", hide_env_values = true)]
    pub backup_key: Option<String>,

    /// Where the chart mounts the backup volumes (`spec.backup.target.volume.claimName`
    /// is the directory under it).
    #[arg(
        long,
        env = "FLOMASTR_BACKUP_VOLUMES_DIR",
        default_value = "/var/lib/flomastr/backups"
    )]
    pub backup_volumes_dir: std::path::PathBuf,

    /// The image of the Job that copies a tenant's n8n volume in and out of its backups
    /// (`flomastr n8n-data`): the operator's own (the chart sets it to the image it runs).
    #[arg(
        long,
        env = "FLOMASTR_BACKUP_IMAGE",
        default_value = concat!("flomastr/flomastr:", env!("CARGO_PKG_VERSION"))
    )]
    pub backup_image: String,

    /// Tenants reconciled at once.
    #[arg(long, env = "FLOMASTR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
}

impl std::fmt::Debug for OperatorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorArgs")
            .field("base_domain", &self.base_domain)
            .field("engine_url", &self.engine_url)
            .field("caddy_admin_url", &self.caddy_admin_url)
            .field("dns_provider", &self.dns_provider)
            .field("credentials_namespace", &self.credentials_namespace)
            .finish_non_exhaustive()
    }
}

impl OperatorArgs {
    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds.max(10))
    }

    pub fn zone(&self) -> &str {
        self.dns_zone.as_deref().unwrap_or(&self.base_domain)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_n8n_image_runs_the_version_the_tests_run() {
        let version = include_str!("../../n8n-version").trim();
        assert_eq!(
            super::DEFAULT_N8N_IMAGE,
            format!("n8nio/n8n:{version}"),
            "n8n-version and the operator's default n8n image must name the same version"
        );
    }
}
