//! DNS records for a tenant's hosts, through the configured provider.

pub mod digitalocean;
pub mod external_dns;

use crate::operator::plan::{DnsPlan, Plan};
use crate::tenant::{DnsRecordStatus, Tenant};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS API is unreachable")]
    Unreachable(#[source] reqwest::Error),
    #[error("the DNS API rate limit is exhausted; retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the DNS API answered {status} to {action}")]
    Refused { action: &'static str, status: u16 },
    #[error("the DNS provider is misconfigured: {0}")]
    Config(&'static str),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

pub enum DnsManager {
    None,
    DigitalOcean(digitalocean::DoClient),
    ExternalDns,
}

impl DnsManager {
    /// Makes the records exist and returns them for the Tenant's status.
    pub async fn ensure(
        &self,
        client: &kube::Client,
        tenant: &Tenant,
        plan: &Plan,
        zone: &str,
    ) -> Result<Vec<DnsRecordStatus>, DnsError> {
        let Some(dns) = &plan.dns else {
            return self.remove(client, plan, zone).await.map(|()| Vec::new());
        };
        match self {
            Self::None => Err(DnsError::Config(
                "spec.dns.enabled is true but the operator has no DNS provider (--dns-provider)",
            )),
            Self::DigitalOcean(api) => api.ensure(zone, dns).await,
            Self::ExternalDns => external_dns::ensure(client, tenant, plan, dns).await,
        }
    }

    /// Removes the tenant's records (deletion with policy Delete, or DNS turned off).
    pub async fn remove(
        &self,
        client: &kube::Client,
        plan: &Plan,
        zone: &str,
    ) -> Result<(), DnsError> {
        match self {
            Self::None => Ok(()),
            Self::DigitalOcean(api) => api.remove(zone, &names(plan, zone)).await,
            Self::ExternalDns => external_dns::remove(client, plan).await,
        }
    }
}

/// The names this tenant's records have (or had), independent of whether DNS is on now.
fn names(plan: &Plan, _zone: &str) -> Vec<String> {
    vec![plan.n8n_host.clone(), plan.frontend_host.clone()]
}

pub fn record_type_name(plan: &DnsPlan) -> &'static str {
    match plan.record_type {
        crate::tenant::DnsRecordType::A => "A",
        crate::tenant::DnsRecordType::AAAA => "AAAA",
        crate::tenant::DnsRecordType::CNAME => "CNAME",
    }
}
