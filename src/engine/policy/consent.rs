//! Consent per tenant and contact: the current state and every change with its source. Changes
//! come from inbound keywords (in the inbound job's transaction), the providers' opt-out errors,
//! the API and imports; all go through [`record`], so the history is complete.

use super::keywords::ConsentState;
use crate::engine::tenants::normalize_address;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An inbound message whose whole text was a keyword.
    Keyword,
    /// A provider refused a send because the user opted out (Twilio 21610, Meta 131050).
    Provider,
    Api,
    Import,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keyword => "keyword",
            Self::Provider => "provider",
            Self::Api => "api",
            Self::Import => "import",
        }
    }
}

/// One change to record.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub tenant_id: Uuid,
    pub contact: String,
    pub state: ConsentState,
    pub source: Source,
    /// Who or what: the keyword and job, the provider code and message, the actor.
    pub detail: Value,
}

/// Provider error codes that mean "this user opted out of the business's messages".
pub fn is_provider_opt_out(code: &str) -> bool {
    // Twilio 21610: "Attempt to send to unsubscribed recipient"; Meta 131050: "user stopped
    // marketing messages" (reported in the send's answer or, later, in its status webhook).
    matches!(code, "21610" | "131050")
}

/// Records changes in order; each contact's current state becomes its last change.
pub async fn record(db: &mut PgConnection, changes: &[Change]) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = changes.iter().map(|c| c.tenant_id).collect();
    let contacts: Vec<&str> = changes
        .iter()
        .map(|c| normalize_address(&c.contact))
        .collect();
    let states: Vec<&str> = changes.iter().map(|c| c.state.as_str()).collect();
    let sources: Vec<&str> = changes.iter().map(|c| c.source.as_str()).collect();
    let details: Vec<&Value> = changes.iter().map(|c| &c.detail).collect();
    sqlx::query("SELECT flomastr_record_consent($1, $2, $3, $4, $5)")
        .bind(&tenants)
        .bind(&contacts)
        .bind(&states)
        .bind(&sources)
        .bind(&details)
        .execute(db)
        .await?;
    Ok(())
}

/// The contact's current state and when it was set; None when it never changed.
pub async fn current(
    db: &mut PgConnection,
    tenant: Uuid,
    contact: &str,
) -> Result<Option<(ConsentState, DateTime<Utc>)>, sqlx::Error> {
    let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT state, updated_at FROM contact_consent WHERE tenant_id = $1 AND contact = $2",
    )
    .bind(tenant)
    .bind(normalize_address(contact))
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|(state, at)| ConsentState::parse(&state).map(|s| (s, at))))
}

/// Records the provider opt-out errors stored for these messages (Meta's 131050 arrives in the
/// `failed` status of the message): the recipient is found through the message. Called with the
/// reports that carry such a code when they are stored, and after a send is acknowledged (the
/// report may have come first, when the message's provider id was not known yet).
pub async fn record_reported_opt_outs(
    db: &mut PgConnection,
    tenants: &[Uuid],
    provider_ids: &[&str],
) -> Result<(), sqlx::Error> {
    let found: Vec<(Uuid, String, Uuid, String)> = sqlx::query_as(
        "SELECT DISTINCT m.tenant_id, m.recipient, m.id, r.error_code
         FROM UNNEST($1::uuid[], $2::text[]) AS k(tenant_id, provider_message_id)
         JOIN outbound_messages m ON m.tenant_id = k.tenant_id AND m.provider_message_id = k.provider_message_id
         JOIN status_reports r ON r.tenant_id = m.tenant_id AND r.provider_message_id = m.provider_message_id
         WHERE r.error_code IN ('21610', '131050')",
    )
    .bind(tenants)
    .bind(provider_ids)
    .fetch_all(&mut *db)
    .await?;
    let changes: Vec<Change> = found
        .into_iter()
        .map(|(tenant_id, contact, message, code)| Change {
            tenant_id,
            contact,
            state: ConsentState::OptedOut,
            source: Source::Provider,
            detail: serde_json::json!({"code": code, "message_id": message}),
        })
        .collect();
    record(db, &changes).await
}
