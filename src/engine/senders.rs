//! A tenant's senders (its numbers) as stored in `channels`: one row per sender, the first with
//! ordinal 0. A sender id belongs to at most one tenant across the engine (unique per provider
//! on its address, the id without `whatsapp:` and `+`), so a webhook addressed to a number names
//! exactly one tenant.

use crate::engine::crypto::Keyring;
use crate::engine::providers::Provider;
use crate::engine::tenants::{
    Channel, ChannelSecrets, LoadError, Tenant, channel_context, normalize_address, parse_provider,
};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// Senders a tenant may list.
pub const MAX_SENDERS: usize = 20;

/// A sender's columns as read (nullable: the first sender comes through a LEFT JOIN).
#[derive(sqlx::FromRow, Default)]
pub struct SenderRow {
    channel_id: Option<Uuid>,
    provider: Option<String>,
    sender: Option<String>,
    base_url: Option<String>,
    label: Option<String>,
    display_number: Option<String>,
    secrets_sealed: Option<Vec<u8>>,
    secrets_key_id: Option<String>,
}

impl SenderRow {
    /// The sender with its secrets opened; None when the row is empty (a tenant without senders).
    pub fn open(
        self,
        keys: &Keyring,
        tenant: Uuid,
        slug: &str,
    ) -> Result<Option<Channel>, LoadError> {
        let (Some(id), Some(provider), Some(sender)) =
            (self.channel_id, self.provider, self.sender)
        else {
            return Ok(None);
        };
        let secrets = match (&self.secrets_sealed, &self.secrets_key_id) {
            (Some(sealed), Some(key)) => {
                let plain = keys
                    .open(&channel_context(tenant), sealed, key)
                    .map_err(|source| LoadError::Sealed {
                        slug: slug.to_owned(),
                        source,
                    })?;
                serde_json::from_slice(&plain)
                    .map_err(|_| LoadError::SecretsFormat(slug.to_owned()))?
            }
            _ => ChannelSecrets::default(),
        };
        Ok(Some(Channel {
            id,
            provider: parse_provider(&provider),
            sender,
            base_url: self.base_url,
            label: self.label,
            display_number: self.display_number,
            secrets,
        }))
    }
}

/// The tenant's senders after the first, in order.
pub async fn load_more(
    pool: &PgPool,
    keys: &Keyring,
    tenant: &Tenant,
) -> Result<Vec<Channel>, LoadError> {
    let rows: Vec<SenderRow> = sqlx::query_as(
        "SELECT id AS channel_id, provider, sender, base_url, label, display_number,
                secrets_sealed, secrets_key_id
         FROM channels WHERE tenant_id = $1 AND ordinal > 0 ORDER BY ordinal",
    )
    .bind(tenant.id)
    .fetch_all(pool)
    .await?;
    let mut senders = Vec::with_capacity(rows.len());
    for row in rows {
        senders.extend(row.open(keys, tenant.id, &tenant.slug)?);
    }
    Ok(senders)
}

/// One sender as the admin API stores it.
pub struct NewSender<'a> {
    pub provider: Provider,
    pub sender: &'a str,
    pub base_url: Option<String>,
    pub label: Option<&'a str>,
    pub display_number: Option<&'a str>,
    pub waba_id: Option<&'a str>,
    pub secrets: &'a ChannelSecrets,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// Another tenant holds this sender.
    #[error("sender {provider} {sender} already belongs to another tenant")]
    Taken {
        provider: &'static str,
        sender: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Makes `senders` the tenant's senders, in order: listed ones are inserted or updated (keeping
/// their ids), others removed. A sender another tenant holds is refused; the caller's
/// transaction then writes nothing.
pub async fn replace(
    tx: &mut sqlx::PgConnection,
    keys: &Keyring,
    tenant: Uuid,
    senders: &[NewSender<'_>],
) -> Result<(), ReplaceError> {
    let addresses: Vec<&str> = senders
        .iter()
        .map(|s| normalize_address(s.sender))
        .collect();
    let providers: Vec<&str> = senders.iter().map(|s| s.provider.as_str()).collect();
    sqlx::query(
        "DELETE FROM channels c WHERE c.tenant_id = $1
         AND NOT EXISTS (SELECT 1 FROM UNNEST($2::text[], $3::text[]) AS k(provider, address)
                         WHERE k.provider = c.provider AND k.address = c.address)",
    )
    .bind(tenant)
    .bind(&providers)
    .bind(&addresses)
    .execute(&mut *tx)
    .await?;
    for (ordinal, sender) in senders.iter().enumerate() {
        let plain = serde_json::to_vec(sender.secrets).unwrap_or_default();
        let (sealed, key_id) = keys.seal(&channel_context(tenant), &plain);
        // The update applies only to the tenant's own row: another tenant's sender is not
        // returned, and that is the refusal.
        let stored: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO channels (tenant_id, ordinal, provider, sender, base_url, label, display_number,
                                   waba_id, secrets_sealed, secrets_key_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (provider, address) DO UPDATE SET ordinal = EXCLUDED.ordinal,
                 sender = EXCLUDED.sender, base_url = EXCLUDED.base_url, label = EXCLUDED.label,
                 display_number = EXCLUDED.display_number, waba_id = EXCLUDED.waba_id,
                 secrets_sealed = EXCLUDED.secrets_sealed, secrets_key_id = EXCLUDED.secrets_key_id,
                 updated_at = now()
             WHERE channels.tenant_id = EXCLUDED.tenant_id
             RETURNING id",
        )
        .bind(tenant)
        .bind(i32::try_from(ordinal).unwrap_or(i32::MAX))
        .bind(sender.provider.as_str())
        .bind(sender.sender.trim())
        .bind(&sender.base_url)
        .bind(sender.label)
        .bind(sender.display_number)
        .bind(sender.waba_id)
        .bind(sealed)
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
        if stored.is_none() {
            return Err(ReplaceError::Taken {
                provider: sender.provider.as_str(),
                sender: sender.sender.trim().to_owned(),
            });
        }
    }
    Ok(())
}

/// Who owns a Meta number: the tenant and the sender, and the business account it was
/// registered with (when the tenant gave one).
#[derive(Clone, Debug)]
pub struct Owner {
    pub slug: String,
    pub sender_id: Uuid,
    pub waba_id: Option<String>,
}

/// The owners of these Meta phone-number-ids; ids nobody holds are absent.
pub async fn meta_owners(
    pool: &PgPool,
    phone_number_ids: &[&str],
) -> Result<HashMap<String, Owner>, sqlx::Error> {
    if phone_number_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String, Uuid, Option<String>)> = sqlx::query_as(
        "SELECT c.address, t.slug, c.id, c.waba_id FROM channels c JOIN tenants t ON t.id = c.tenant_id
         WHERE c.provider = 'meta' AND c.address = ANY($1)",
    )
    .bind(phone_number_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(address, slug, sender_id, waba_id)| {
            (
                address,
                Owner {
                    slug,
                    sender_id,
                    waba_id,
                },
            )
        })
        .collect())
}

/// The tenants with a Meta sender on each of these business accounts.
pub async fn waba_tenants(
    pool: &PgPool,
    waba_ids: &[&str],
) -> Result<HashMap<String, Vec<String>>, sqlx::Error> {
    if waba_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT c.waba_id, t.slug FROM channels c JOIN tenants t ON t.id = c.tenant_id
         WHERE c.provider = 'meta' AND c.waba_id = ANY($1) ORDER BY 1, 2",
    )
    .bind(waba_ids)
    .fetch_all(pool)
    .await?;
    let mut by_waba: HashMap<String, Vec<String>> = HashMap::new();
    for (waba, slug) in rows {
        by_waba.entry(waba).or_default().push(slug);
    }
    Ok(by_waba)
}
