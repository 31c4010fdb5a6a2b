//! One lock per (tenant, provider message id), taken by the two transactions that meet on a
//! message's reports: the ingest storing a report, and the dispatcher storing the provider's
//! answer to the send (its provider id). Without it, a report arriving while the answer is being
//! stored is seen by neither (each transaction reads before the other commits) and the message
//! stays behind its reports. With it, the second waits for the first and then sees its rows.

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

/// The advisory lock key of a message's reports.
pub fn key(tenant: Uuid, provider_message_id: &str) -> i64 {
    let digest = Sha256::digest(format!("report/{tenant}/{provider_message_id}"));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes the keys' locks until the transaction ends, in ascending order (so two transactions
/// taking several never deadlock). The function scan evaluates the array in order.
pub async fn lock(tx: &mut PgConnection, mut keys: Vec<i64>) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    sqlx::query("SELECT count(pg_advisory_xact_lock(k)) FROM UNNEST($1::bigint[]) AS u(k)")
        .bind(&keys)
        .execute(tx)
        .await?;
    Ok(())
}
