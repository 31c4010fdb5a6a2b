//! Meta's per-user marketing limit (error 131049, "not delivered to maintain healthy ecosystem
//! engagement"): Meta caps marketing templates a user gets from all businesses. Retrying at once
//! only burns the number's quality, so the contact is recorded as limited for the documented
//! period (new marketing to them is refused with `frequency_capped` until then) and the message
//! is retried no sooner than the period's end.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

pub const CODE: &str = "131049";
/// Meta: "retry ≥ 24 h later".
pub const PERIOD_HOURS: i64 = 24;
/// Sends of one message that met the limit at most, before it fails for good.
pub const MAX_TRIES: i32 = 3;

/// When a message refused now may be tried again.
pub fn retry_at(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::hours(PERIOD_HOURS)
}

/// Records the limit for these contacts, until `until`.
pub async fn record(
    db: &mut PgConnection,
    tenants: &[Uuid],
    contacts: &[&str],
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if tenants.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT flomastr_marketing_limited($1, $2, $3)")
        .bind(tenants)
        .bind(contacts)
        .bind(until)
        .execute(db)
        .await?;
    Ok(())
}

/// 131049 reported in a `failed` status webhook (Meta accepts the send, then refuses it): the
/// recipient is recorded as limited, and the message is queued again for after the period
/// (at most [`MAX_TRIES`] sends), with a `retry` event saying why. Runs in the ingest
/// transaction, after the report moved the message to `failed`.
pub async fn requeue_reported(
    db: &mut PgConnection,
    tenants: &[Uuid],
    provider_ids: &[&str],
) -> Result<(), sqlx::Error> {
    let until = retry_at(Utc::now());
    let limited: Vec<(Uuid, String)> = sqlx::query_as(
        "WITH hit AS (
             SELECT m.id, m.tenant_id, m.recipient, m.attempts
             FROM UNNEST($1::uuid[], $2::text[]) AS k(tenant_id, provider_message_id)
             JOIN outbound_messages m ON m.tenant_id = k.tenant_id AND m.provider_message_id = k.provider_message_id
             WHERE m.status = 'failed' AND m.error_code = $3
             FOR UPDATE OF m
         ), moved AS (
             UPDATE outbound_messages m
             SET status = 'queued', next_attempt_at = $4, claimed_until = NULL, updated_at = now()
             FROM hit WHERE m.id = hit.id AND hit.attempts < $5
             RETURNING m.id
         ), logged AS (
             INSERT INTO outbound_events (message_id, status, detail)
             SELECT id, 'retry', jsonb_build_object('code', $3::text, 'reason', 'provider_marketing_limit',
                                                    'retry_at', $4::timestamptz)
             FROM moved
         )
         SELECT DISTINCT tenant_id, recipient FROM hit",
    )
    .bind(tenants)
    .bind(provider_ids)
    .bind(CODE)
    .bind(until)
    .bind(MAX_TRIES)
    .fetch_all(&mut *db)
    .await?;
    let tenants: Vec<Uuid> = limited.iter().map(|(t, _)| *t).collect();
    let contacts: Vec<&str> = limited.iter().map(|(_, c)| c.as_str()).collect();
    record(db, &tenants, &contacts, until).await
}
