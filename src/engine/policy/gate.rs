//! The policy in front of every send (a worker's reply, a campaign's message), run in the
//! transaction that queues it: consent, quiet hours, the marketing frequency cap and the
//! provider's per-user marketing limit. A refusal writes nothing; an admitted send may be held.

use super::category::Category;
use crate::engine::error::ApiError;
use crate::engine::tenants::normalize_address;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// An opt-out may be confirmed this long after it was made.
pub const CONFIRMATION_HOURS: i32 = 24;

/// A send as the policy sees it.
pub struct Send<'a> {
    pub tenant: Uuid,
    pub contact: &'a str,
    pub category: Category,
    pub opt_out_confirmation: bool,
}

/// An admitted send: when it may go (None: now) and when a held send expires.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub hold_until: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a send is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    OptedOut,
    NotOptedOut,
    /// Over the tenant's cap, or the provider's per-user marketing limit: allowed again then.
    FrequencyCapped {
        allowed_at: DateTime<Utc>,
        provider_limit: bool,
    },
}

impl Refusal {
    /// The reason as campaigns list it.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::NotOptedOut => "not_opted_out",
            Self::FrequencyCapped { .. } => "frequency_capped",
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::OptedOut => ApiError::conflict(
                "opted_out",
                "the contact opted out of this tenant's messages; nothing was queued",
            ),
            Refusal::NotOptedOut => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_opted_out",
                "opt_out_confirmation: the contact has not opted out",
            ),
            Refusal::FrequencyCapped {
                allowed_at,
                provider_limit,
            } => {
                let why = if provider_limit {
                    "the provider limited marketing to this contact (131049)"
                } else {
                    "the contact reached the tenant's marketing cap"
                };
                ApiError::conflict(
                    "frequency_capped",
                    format!("{why}; allowed again at {}", allowed_at.to_rfc3339()),
                )
                .with_details(json!({"allowed_at": allowed_at, "provider_limit": provider_limit}))
            }
        }
    }
}

/// Runs the policy for one send inside `tx`. Marketing sends to one contact are serialised by
/// a transaction lock, so two concurrent sends cannot both slip under the cap.
pub async fn admit(
    tx: &mut PgConnection,
    send: &Send<'_>,
) -> Result<Result<Admitted, Refusal>, sqlx::Error> {
    let contact = normalize_address(send.contact);
    if let Some(refusal) = consent(tx, send.tenant, contact, send.opt_out_confirmation).await? {
        return Ok(Err(refusal));
    }
    if send.category == Category::Marketing {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))")
            .bind(send.tenant)
            .bind(contact)
            .execute(&mut *tx)
            .await?;
        if let Some(refusal) = frequency(tx, send.tenant, contact).await? {
            return Ok(Err(refusal));
        }
    }
    let (hold_until, expires_at): (Option<DateTime<Utc>>, DateTime<Utc>) =
        sqlx::query_as("SELECT hold_until, now() + max_hold FROM flomastr_hold($1, $2, $3, now())")
            .bind(send.tenant)
            .bind(contact)
            .bind(send.category.as_str())
            .fetch_one(&mut *tx)
            .await?;
    Ok(Ok(Admitted {
        hold_until,
        expires_at: hold_until.map(|_| expires_at),
    }))
}

/// Opted out: refused, unless this is the confirmation of a recent opt-out. The consent row is
/// read FOR SHARE, so an opt-out committing meanwhile waits for this send's transaction (and the
/// dispatcher checks again before sending).
async fn consent(
    tx: &mut PgConnection,
    tenant: Uuid,
    contact: &str,
    confirmation: bool,
) -> Result<Option<Refusal>, sqlx::Error> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "SELECT state, updated_at > now() - make_interval(hours => $3) FROM contact_consent
         WHERE tenant_id = $1 AND contact = $2 FOR SHARE",
    )
    .bind(tenant)
    .bind(contact)
    .bind(CONFIRMATION_HOURS)
    .fetch_optional(&mut *tx)
    .await?;
    let opted_out = row.as_ref().is_some_and(|(state, _)| state == "opted_out");
    let recent = row.as_ref().is_some_and(|(_, recent)| *recent);
    Ok(match (opted_out, confirmation) {
        (true, true) if recent => None,
        (true, _) => Some(Refusal::OptedOut),
        (false, true) => Some(Refusal::NotOptedOut),
        (false, false) => None,
    })
}

/// The provider's per-user marketing limit first, then the tenant's cap over the rolling period:
/// with N allowed, the N-th newest marketing message in the period must age out first.
async fn frequency(
    tx: &mut PgConnection,
    tenant: Uuid,
    contact: &str,
) -> Result<Option<Refusal>, sqlx::Error> {
    let limited: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT limited_until FROM contact_marketing_limits
         WHERE tenant_id = $1 AND contact = $2 AND limited_until > now()",
    )
    .bind(tenant)
    .bind(contact)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(allowed_at) = limited {
        return Ok(Some(Refusal::FrequencyCapped {
            allowed_at,
            provider_limit: true,
        }));
    }
    let allowed_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT m.created_at + make_interval(secs => p.marketing_cap_seconds)
         FROM send_policies p
         CROSS JOIN LATERAL (
             SELECT created_at FROM outbound_messages
             WHERE tenant_id = p.tenant_id AND recipient = $2 AND category = 'marketing'
               AND created_at > now() - make_interval(secs => p.marketing_cap_seconds)
               AND NOT (status = 'failed' AND error_code IN ('opted_out', 'hold_expired'))
             ORDER BY created_at DESC
             OFFSET p.marketing_cap - 1 LIMIT 1
         ) m
         WHERE p.tenant_id = $1 AND p.marketing_cap IS NOT NULL",
    )
    .bind(tenant)
    .bind(contact)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(allowed_at.map(|allowed_at| Refusal::FrequencyCapped {
        allowed_at,
        provider_limit: false,
    }))
}
