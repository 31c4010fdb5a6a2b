//! Relational Pulse campaigns (`/routes/tenants/{slug}/pulse/campaigns`): an approved template,
//! or each contact's own message from the pulse-content logic, sent to an audience once or
//! weekly in the tenant's time zone, paced, every message through the send policy; lifecycle
//! draft → scheduled → running → paused / completed / cancelled.

pub mod api;
pub mod pause;
pub mod runner;
pub mod segments;
pub mod spec;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Plans a run: its recipients, resolved once from the audience; returns how many.
pub async fn plan(
    tx: &mut PgConnection,
    run: Uuid,
    tenant: Uuid,
    audience: &Value,
) -> Result<u64, sqlx::Error> {
    let kind = audience["kind"].as_str().unwrap_or_default();
    let days = audience["days"]
        .as_i64()
        .and_then(|d| i32::try_from(d).ok())
        .unwrap_or(0);
    let contacts: Vec<String> = audience["contacts"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let planned = sqlx::query(include_str!("sql/plan.sql"))
        .bind(run)
        .bind(tenant)
        .bind(kind)
        .bind(days)
        .bind(&contacts)
        .bind(audience["name"].as_str().unwrap_or_default())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("UPDATE campaign_runs SET planned = $2 WHERE id = $1")
        .bind(run)
        .bind(i32::try_from(planned).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    Ok(planned)
}
