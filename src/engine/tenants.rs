//! Tenants as the engine knows them: settings, worker tokens, webhook secret and WhatsApp
//! channel, loaded with secrets opened, and cached briefly so the hot path does not query per request.

use crate::engine::crypto::{Keyring, SealError};
use crate::engine::policy::keywords::Keywords;
use crate::engine::providers::Provider;
use crate::engine::providers::infobip::SignatureAlgorithm;
use crate::engine::secret::Secret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a loaded tenant is trusted before it is read again. Changes made through this
/// engine's admin API take effect at once; changes through another replica within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);

/// Slugs remembered at most (webhook URLs carry a slug anyone can make up). Past it, slugs of
/// no tenant are looked up each time (one indexed read) rather than remembered.
const SLUG_CACHE_LIMIT: usize = 10_000;

/// Whether `slug` can name a tenant: a DNS-1123 label of at most 40 characters.
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 40
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantState {
    Active,
    Suspended,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    fn parse(value: &str) -> Self {
        if value == "suspended" {
            Self::Suspended
        } else {
            Self::Active
        }
    }
}

/// The secrets of a WhatsApp channel. Which keys matter depends on the provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSecrets {
    /// InfoBip: API key for sending (`Authorization: App <key>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// InfoBip: secret InfoBip sends in `webhook_header` on every webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    /// InfoBip: header carrying `webhook_secret` (default `X-Webhook-Secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_header: Option<String>,
    /// InfoBip: user name InfoBip presents with HTTP Basic auth on webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_username: Option<String>,
    /// InfoBip: password InfoBip presents with HTTP Basic auth on webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_password: Option<Secret>,
    /// InfoBip: key of the HMAC of each webhook's raw body. When set, every InfoBip webhook must
    /// carry a valid signature, whatever `webhook_secret` or Basic auth say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_hmac_secret: Option<Secret>,
    /// InfoBip: header carrying that signature (default `X-Hub-Signature`), valued
    /// `<algorithm>=<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_signature_header: Option<String>,
    /// InfoBip: `sha1` (default), `sha256` or `sha512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_signature_algorithm: Option<SignatureAlgorithm>,
    /// Meta: access token for sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// Meta: app secret that signs webhooks (`X-Hub-Signature-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<Secret>,
    /// Meta: token echoed in the webhook verification handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<Secret>,
    /// Meta: the WhatsApp Business Account id (digits), whose template catalog the engine syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waba_id: Option<String>,
    /// Twilio: account SID (`AC...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    /// Twilio: primary auth token; it signs webhooks (`X-Twilio-Signature`) and authenticates sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<Secret>,
}

impl ChannelSecrets {
    /// Names of the secrets that are set, for responses that must not show the values.
    pub fn names_set(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        let mut add = |name, set: bool| {
            if set {
                names.push(name);
            }
        };
        add("api_key", self.api_key.is_some());
        add("webhook_secret", self.webhook_secret.is_some());
        add("webhook_header", self.webhook_header.is_some());
        add("basic_username", self.basic_username.is_some());
        add("basic_password", self.basic_password.is_some());
        add("webhook_hmac_secret", self.webhook_hmac_secret.is_some());
        add(
            "webhook_signature_header",
            self.webhook_signature_header.is_some(),
        );
        add(
            "webhook_signature_algorithm",
            self.webhook_signature_algorithm.is_some(),
        );
        add("access_token", self.access_token.is_some());
        add("app_secret", self.app_secret.is_some());
        add("verify_token", self.verify_token.is_some());
        add("waba_id", self.waba_id.is_some());
        add("account_sid", self.account_sid.is_some());
        add("auth_token", self.auth_token.is_some());
        names
    }
}

impl ChannelSecrets {
    /// Refuses settings that could never authenticate a webhook: an empty HMAC key, or a header
    /// name HTTP cannot carry. Returns the field (under `credentials`) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self
            .webhook_hmac_secret
            .as_ref()
            .is_some_and(Secret::is_empty)
        {
            return Err(("webhook_hmac_secret", "must not be empty"));
        }
        if self.waba_id.as_deref().is_some_and(|id| {
            id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit())
        }) {
            return Err(("waba_id", "must be the account's numeric id"));
        }
        let headers = [
            ("webhook_header", &self.webhook_header),
            ("webhook_signature_header", &self.webhook_signature_header),
        ];
        for (field, header) in headers {
            if header
                .as_deref()
                .is_some_and(|name| axum::http::HeaderName::from_bytes(name.as_bytes()).is_err())
            {
                return Err((field, "must be an HTTP header name"));
            }
        }
        Ok(())
    }
}

/// One of a tenant's senders (numbers): the provider that carries it and how to reach it.
#[derive(Clone, Debug)]
pub struct Channel {
    /// The sender's id in the engine (stable across registrations while the sender is listed).
    pub id: Uuid,
    pub provider: Provider,
    pub sender: String,
    pub base_url: Option<String>,
    /// The tenant's name for the number (`sales`, `support`), when it gave one.
    pub label: Option<String>,
    /// The number as customers see it, when it differs from the sender id (Meta).
    pub display_number: Option<String>,
    pub secrets: ChannelSecrets,
}

impl Channel {
    /// Whether an event addressed to `to` belongs to this channel (numbers compared without `+`
    /// and `whatsapp:`, so `+4411...`, `4411...` and `whatsapp:+4411...` are one sender).
    pub fn owns_address(&self, to: &str) -> bool {
        normalize_address(&self.sender) == normalize_address(to)
    }
}

pub fn normalize_address(value: &str) -> &str {
    let value = value.trim();
    let value = value.strip_prefix("whatsapp:").unwrap_or(value);
    value.strip_prefix('+').unwrap_or(value)
}

#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    pub state: TenantState,
    pub max_attempts: i32,
    pub max_concurrency: i32,
    pub webhook_secret: Option<Secret>,
    /// The first sender (what single-channel code uses); `senders[0]` when there is one.
    pub channel: Option<Channel>,
    /// The consent keywords of the tenant's send policy (built-in ones included), loaded with
    /// the tenant so that an inbound message is classified without a read of its own.
    pub keywords: Keywords,
    /// Every sender of the tenant, the first one first.
    pub senders: Vec<Channel>,
}

impl Tenant {
    /// The sender with this id, if it is the tenant's.
    pub fn sender(&self, id: Uuid) -> Option<&Channel> {
        self.senders.iter().find(|s| s.id == id)
    }

    /// The tenant's senders on `provider`, in the tenant's order.
    pub fn senders_of(&self, provider: Provider) -> impl Iterator<Item = &Channel> {
        self.senders.iter().filter(move |s| s.provider == provider)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the secrets of tenant `{slug}` cannot be opened: {source}")]
    Sealed {
        slug: String,
        #[source]
        source: SealError,
    },
    #[error("the secrets of tenant `{0}` are not valid JSON")]
    SecretsFormat(String),
}

/// SHA-256 of a worker token, as stored.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn channel_context(tenant: Uuid) -> String {
    format!("tenant:{tenant}:channel")
}

pub fn webhook_context(tenant: Uuid) -> String {
    format!("tenant:{tenant}:webhook-secret")
}

/// A tenant (or its absence) and when it was read.
type Cached = (Instant, Option<Arc<Tenant>>);

/// Looks tenants up by slug and workers up by token, through a short-lived cache.
pub struct TenantDirectory {
    pool: PgPool,
    keys: Arc<Keyring>,
    by_slug: Mutex<HashMap<String, Cached>>,
    slug_cache_limit: usize,
    /// When expired slugs were last dropped from `by_slug`.
    slugs_swept_at: Mutex<Instant>,
    by_token: Mutex<HashMap<[u8; 32], (Instant, Uuid, String)>>,
}

impl TenantDirectory {
    pub fn new(pool: PgPool, keys: Arc<Keyring>) -> Self {
        Self {
            pool,
            keys,
            by_slug: Mutex::default(),
            slug_cache_limit: SLUG_CACHE_LIMIT,
            slugs_swept_at: Mutex::new(Instant::now()),
            by_token: Mutex::default(),
        }
    }

    /// The same directory remembering at most `limit` slugs.
    pub fn with_slug_cache_limit(self, limit: usize) -> Self {
        Self {
            slug_cache_limit: limit,
            ..self
        }
    }

    /// How many slugs (of tenants or of none) are remembered now.
    pub fn cached_slugs(&self) -> usize {
        self.by_slug.lock().unwrap().len()
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The tenant with this slug, or None.
    pub async fn by_slug(&self, slug: &str) -> Result<Option<Arc<Tenant>>, LoadError> {
        if !is_valid_slug(slug) {
            return Ok(None);
        }
        if let Some((at, tenant)) = self.by_slug.lock().unwrap().get(slug)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(tenant.clone());
        }
        let tenant = self.load(slug).await?.map(Arc::new);
        self.remember(slug, tenant.clone());
        Ok(tenant)
    }

    /// Caches a lookup; when the cache is full, expired entries go (at most once per TTL, so a
    /// flood does not sweep on every request) and a slug of no tenant is not kept.
    fn remember(&self, slug: &str, tenant: Option<Arc<Tenant>>) {
        let mut cache = self.by_slug.lock().unwrap();
        if cache.len() >= self.slug_cache_limit && !cache.contains_key(slug) {
            let mut swept_at = self.slugs_swept_at.lock().unwrap();
            if swept_at.elapsed() >= CACHE_TTL {
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
                *swept_at = Instant::now();
            }
            if cache.len() >= self.slug_cache_limit && tenant.is_none() {
                return;
            }
        }
        cache.insert(slug.to_owned(), (Instant::now(), tenant));
    }

    /// The tenant (id, slug) a worker token belongs to, or None.
    pub async fn by_worker_token(
        &self,
        token: &str,
    ) -> Result<Option<(Uuid, String)>, sqlx::Error> {
        let digest = token_digest(token);
        if let Some((at, id, slug)) = self.by_token.lock().unwrap().get(&digest)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some((*id, slug.clone())));
        }
        let found: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT t.id, t.slug FROM worker_tokens w JOIN tenants t ON t.id = w.tenant_id
             WHERE w.token_sha256 = $1",
        )
        .bind(&digest[..])
        .fetch_optional(&self.pool)
        .await?;
        if let Some((id, slug)) = &found {
            self.by_token
                .lock()
                .unwrap()
                .insert(digest, (Instant::now(), *id, slug.clone()));
        }
        Ok(found)
    }

    /// Forgets everything cached about a tenant (after the admin API changed it).
    pub fn invalidate(&self, slug: &str) {
        self.by_slug.lock().unwrap().remove(slug);
        self.by_token
            .lock()
            .unwrap()
            .retain(|_, (_, _, s)| s != slug);
    }

    async fn load(&self, slug: &str) -> Result<Option<Tenant>, LoadError> {
        let row: Option<TenantRow> = sqlx::query_as(
            "SELECT t.id, t.slug, t.display_name, t.status, t.max_attempts, t.max_concurrency,
                    t.webhook_secret_sealed, t.webhook_secret_key_id,
                    c.id AS channel_id, c.provider, c.sender, c.base_url, c.label, c.display_number,
                    c.secrets_sealed, c.secrets_key_id,
                    p.opt_out_keywords, p.opt_in_keywords
             FROM tenants t LEFT JOIN channels c ON c.tenant_id = t.id AND c.ordinal = 0
                  LEFT JOIN send_policies p ON p.tenant_id = t.id
             WHERE t.slug = $1",
        )
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?;
        let Some(mut tenant) = row.map(|row| row.open(&self.keys)).transpose()? else {
            return Ok(None);
        };
        let more = crate::engine::senders::load_more(&self.pool, &self.keys, &tenant).await?;
        tenant.senders = tenant.channel.iter().cloned().chain(more).collect();
        Ok(Some(tenant))
    }
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: Uuid,
    slug: String,
    display_name: String,
    status: String,
    max_attempts: i32,
    max_concurrency: i32,
    webhook_secret_sealed: Option<Vec<u8>>,
    webhook_secret_key_id: Option<String>,
    #[sqlx(flatten)]
    channel: crate::engine::senders::SenderRow,
    opt_out_keywords: Option<Vec<String>>,
    opt_in_keywords: Option<Vec<String>>,
}

impl TenantRow {
    fn open(self, keys: &Keyring) -> Result<Tenant, LoadError> {
        let sealed_error = |source| LoadError::Sealed {
            slug: self.slug.clone(),
            source,
        };
        let webhook_secret = match (&self.webhook_secret_sealed, &self.webhook_secret_key_id) {
            (Some(sealed), Some(key)) => {
                let plain = keys
                    .open(&webhook_context(self.id), sealed, key)
                    .map_err(sealed_error)?;
                Some(Secret::new(
                    String::from_utf8(plain)
                        .map_err(|_| LoadError::SecretsFormat(self.slug.clone()))?,
                ))
            }
            _ => None,
        };
        let channel = self.channel.open(keys, self.id, &self.slug)?;
        Ok(Tenant {
            id: self.id,
            slug: self.slug,
            display_name: self.display_name,
            state: TenantState::parse(&self.status),
            max_attempts: self.max_attempts,
            max_concurrency: self.max_concurrency,
            webhook_secret,
            channel,
            keywords: Keywords::new(
                self.opt_out_keywords.as_deref().unwrap_or_default(),
                self.opt_in_keywords.as_deref().unwrap_or_default(),
            ),
            senders: Vec::new(),
        })
    }
}

pub fn parse_provider(value: &str) -> Provider {
    match value {
        "meta" => Provider::Meta,
        "twilio" => Provider::Twilio,
        _ => Provider::Infobip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_without_prefixes() {
        let channel = Channel {
            id: Uuid::nil(),
            provider: Provider::Twilio,
            sender: "whatsapp:+14155238886".into(),
            base_url: None,
            label: None,
            display_number: None,
            secrets: ChannelSecrets::default(),
        };
        assert!(channel.owns_address("+14155238886"));
        assert!(channel.owns_address("14155238886"));
        assert!(channel.owns_address("whatsapp:+14155238886"));
        assert!(!channel.owns_address("+14155238887"));
    }

    #[test]
    fn settings_that_cannot_authenticate_are_refused() {
        let with = |secrets: ChannelSecrets| secrets.validate().map_err(|(field, _)| field);
        assert_eq!(with(ChannelSecrets::default()), Ok(()));
        assert_eq!(
            with(ChannelSecrets {
                webhook_hmac_secret: Some(Secret::new("")),
                ..Default::default()
            }),
            Err("webhook_hmac_secret")
        );
        assert_eq!(
            with(ChannelSecrets {
                webhook_signature_header: Some("X Hub".into()),
                ..Default::default()
            }),
            Err("webhook_signature_header")
        );
        assert_eq!(
            with(ChannelSecrets {
                webhook_header: Some(String::new()),
                ..Default::default()
            }),
            Err("webhook_header")
        );
    }

    #[test]
    fn secret_names_never_include_values() {
        let secrets = ChannelSecrets {
            app_secret: Some(Secret::new("s3cr3t")),
            account_sid: Some("AC1".into()),
            ..Default::default()
        };
        assert_eq!(secrets.names_set(), ["app_secret", "account_sid"]);
        assert!(!format!("{secrets:?}").contains("s3cr3t"));
    }
}
