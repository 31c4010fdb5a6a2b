//! Pausing campaigns: by the tenant, or by themselves when their template stops being APPROVED
//! (Meta paused or disabled it). A paused campaign's active run keeps its recipients; resuming
//! continues where it stopped.

use sqlx::PgConnection;
use uuid::Uuid;

/// Pauses the campaign and its active run, with the reason.
pub async fn campaign(tx: &mut PgConnection, id: Uuid, reason: &str) -> Result<bool, sqlx::Error> {
    let paused = sqlx::query(
        "UPDATE campaigns SET state = 'paused', paused_reason = $2, updated_at = now()
         WHERE id = $1 AND state IN ('scheduled', 'running')",
    )
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE campaign_runs SET state = 'paused' WHERE campaign_id = $1 AND state = 'sending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if paused.rows_affected() == 1 {
        tracing::info!(campaign = %id, reason, "campaign paused");
    }
    Ok(paused.rows_affected() == 1)
}

/// Pauses every scheduled or running campaign of the tenant that uses this template.
pub async fn by_template(
    tx: &mut PgConnection,
    tenant: Uuid,
    name: &str,
    language: &str,
    status: &str,
) -> Result<usize, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM campaigns WHERE tenant_id = $1 AND template_name = $2
           AND replace(template_language, '-', '_') = replace($3, '-', '_')
           AND state IN ('scheduled', 'running')
         FOR UPDATE",
    )
    .bind(tenant)
    .bind(name)
    .bind(language)
    .fetch_all(&mut *tx)
    .await?;
    let reason = format!("template {name} is {status}");
    for id in &ids {
        campaign(tx, *id, &reason).await?;
    }
    Ok(ids.len())
}
