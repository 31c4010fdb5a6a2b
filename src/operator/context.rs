//! What every reconcile shares.

use crate::operator::caddy::CaddyClient;
use crate::operator::child_cache::ChildCache;
use crate::operator::config::{DnsProviderKind, OperatorArgs};
use crate::operator::dns::{DnsManager, digitalocean::DoClient};
use crate::operator::engine_client::EngineClient;
use crate::operator::metrics::OperatorMetrics;
use kube::runtime::events::{Recorder, Reporter};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub struct Context {
    pub client: kube::Client,
    pub config: OperatorArgs,
    pub engine: EngineClient,
    pub caddy: Option<CaddyClient>,
    pub dns: DnsManager,
    pub metrics: Arc<OperatorMetrics>,
    pub recorder: Recorder,
    /// Consecutive failures per tenant, for exponential backoff; cleared on success.
    pub failures: Mutex<HashMap<String, u32>>,
    /// The last registration sent to the engine per tenant (a digest), so a resync that changes
    /// nothing does not rewrite it.
    pub registered: Mutex<HashMap<String, [u8; 32]>>,
    /// What was applied to each child and how the children are now, to skip no-op applies.
    pub children: ChildCache,
    /// Namespaces whose n8n owner Secret is known to exist (minting one costs a bcrypt hash, and
    /// the operator may not read it back to check).
    pub owners: Mutex<HashSet<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub &'static str);

impl Context {
    /// A context without child watches: every reconcile applies every child.
    pub fn new(
        client: kube::Client,
        config: OperatorArgs,
        metrics: Arc<OperatorMetrics>,
    ) -> Result<Arc<Self>, ConfigError> {
        Self::build(client, config, metrics, ChildCache::default())
    }

    /// The running operator's context: children are watched and unchanged ones not re-applied.
    pub fn watching(
        client: kube::Client,
        config: OperatorArgs,
        metrics: Arc<OperatorMetrics>,
    ) -> Result<Arc<Self>, ConfigError> {
        let children = ChildCache::watching(&client);
        Self::build(client, config, metrics, children)
    }

    fn build(
        client: kube::Client,
        config: OperatorArgs,
        metrics: Arc<OperatorMetrics>,
        children: ChildCache,
    ) -> Result<Arc<Self>, ConfigError> {
        let dns = match config.dns_provider {
            DnsProviderKind::None => DnsManager::None,
            DnsProviderKind::ExternalDns => DnsManager::ExternalDns,
            DnsProviderKind::Digitalocean => {
                let token = config.digitalocean_token.as_deref().ok_or(ConfigError(
                    "--dns-provider digitalocean needs DIGITALOCEAN_TOKEN",
                ))?;
                DnsManager::DigitalOcean(DoClient::new(&config.digitalocean_url, token))
            }
        };
        let reporter = Reporter {
            controller: "flomastr-operator".into(),
            instance: config.identity.clone(),
        };
        Ok(Arc::new(Self {
            engine: EngineClient::new(&config.engine_url, &config.engine_admin_token),
            caddy: config
                .caddy_admin_url
                .as_deref()
                .map(|url| CaddyClient::new(url, &config.caddy_server)),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            dns,
            metrics,
            config,
            failures: Mutex::default(),
            registered: Mutex::default(),
            children,
            owners: Mutex::default(),
        }))
    }
}
