//! Conversation memory: one row per exchange (question and answer) per tenant and contact;
//! synthesis reads the last 10. The contact is any key the tenant uses, not only a phone number.

use crate::ai::tenant_tx;
use crate::engine::auth::Worker;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use crate::engine::text::without_nul;
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Exchanges synthesis puts into the prompt.
pub const WINDOW: i64 = 10;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Exchange {
    pub user_text: String,
    pub assistant_text: String,
}

pub fn validate_contact(contact: &str) -> Result<(), ApiError> {
    if contact.trim().is_empty() || contact.chars().count() > 200 {
        return Err(ApiError::invalid_field(
            "contact",
            "must be 1 to 200 characters",
        ));
    }
    Ok(())
}

/// The last `WINDOW` exchanges, oldest first.
pub async fn recent(
    pool: &PgPool,
    tenant: Uuid,
    contact: &str,
) -> Result<Vec<Exchange>, sqlx::Error> {
    let mut tx = tenant_tx(pool, tenant).await?;
    let mut rows: Vec<Exchange> = sqlx::query_as(
        "SELECT user_text, assistant_text FROM ai_memory WHERE tenant_id = $1 AND contact = $2
         ORDER BY turn_no DESC LIMIT $3",
    )
    .bind(tenant)
    .bind(contact)
    .bind(WINDOW)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.reverse();
    Ok(rows)
}

/// Appends an exchange. Concurrent exchanges of one contact are serialised by an advisory lock
/// so turn numbers never collide.
pub async fn append(
    pool: &PgPool,
    tenant: Uuid,
    contact: &str,
    exchange: &Exchange,
    meta: &Value,
) -> Result<(), sqlx::Error> {
    let mut tx = tenant_tx(pool, tenant).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2, 0))")
        .bind(tenant)
        .bind(contact)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO ai_memory (tenant_id, contact, turn_no, user_text, assistant_text, meta)
         SELECT $1, $2, COALESCE(max(turn_no), 0) + 1, $3, $4, $5
         FROM ai_memory WHERE tenant_id = $1 AND contact = $2",
    )
    .bind(tenant)
    .bind(contact)
    .bind(&exchange.user_text)
    .bind(&exchange.assistant_text)
    .bind(meta)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Purged {
    pub contact: String,
    pub exchanges_deleted: u64,
}

#[utoipa::path(delete, path = "/routes/memory/{contact}", tag = "ai", params(("contact" = String, Path)),
    security(("worker_token" = [])), responses((status = 200, body = Purged), (status = 400), (status = 401), (status = 403, description = "tenant_suspended")))]
pub async fn purge(
    State(state): State<AppState>,
    worker: Worker,
    Path(contact): Path<String>,
) -> Result<Json<Purged>, ApiError> {
    // Contacts are stored without U+0000 (PostgreSQL cannot store it): match them the same way.
    let contact = without_nul(&contact).into_owned();
    validate_contact(&contact)?;
    let mut tx = tenant_tx(&state.pool, worker.tenant_id).await?;
    let deleted = sqlx::query("DELETE FROM ai_memory WHERE tenant_id = $1 AND contact = $2")
        .bind(worker.tenant_id)
        .bind(&contact)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    tracing::info!(tenant = %worker.tenant_slug, exchanges = deleted, "conversation memory purged");
    Ok(Json(Purged {
        contact,
        exchanges_deleted: deleted,
    }))
}
