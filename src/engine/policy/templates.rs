//! The template catalog's lifecycle as the policy uses it: the providers' status and quality
//! updates applied to the catalog (with a history), and the check every templated send passes:
//! only APPROVED templates go out.

use crate::engine::error::ApiError;
use crate::engine::providers::meta_templates::{TemplateChange, TemplateUpdate};
use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// What the catalog says about one template.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogEntry {
    pub status: String,
    pub category: String,
    pub quality: String,
}

/// A template that is not APPROVED cannot be sent: 422 with its status (and quality).
pub fn not_approved(name: &str, entry: &CatalogEntry) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "template_not_approved",
        format!("template.name: `{name}` is {} in the tenant's catalog; only APPROVED templates are sent", entry.status),
    )
    .with_details(json!({"template_status": entry.status, "quality": entry.quality}))
}

/// The catalog's entry for a template (language compared with `-` and `_` alike), if any.
pub async fn lookup(
    pool: &PgPool,
    tenant: Uuid,
    name: &str,
    language: &str,
) -> Result<Option<CatalogEntry>, sqlx::Error> {
    let mut tx = crate::db::tenant_tx(pool, tenant).await?;
    let entry = sqlx::query_as(
        "SELECT status, category, quality FROM message_templates
         WHERE tenant_id = $1 AND name = $2 AND replace(language, '-', '_') = replace($3, '-', '_')",
    )
    .bind(tenant)
    .bind(name)
    .bind(language)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(entry)
}

/// Applies provider updates to the tenant's catalog and logs each; returns the templates that
/// are now not APPROVED (name, language, status), for the campaigns using them to pause.
/// Templates the catalog does not have are skipped (the next catalog sync brings them).
pub async fn apply(
    pool: &PgPool,
    tenant: Uuid,
    updates: &[TemplateUpdate],
    source: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let mut stopped = Vec::new();
    if updates.is_empty() {
        return Ok(stopped);
    }
    let mut tx = crate::db::tenant_tx(pool, tenant).await?;
    for update in updates {
        let (field, value, reason) = match &update.change {
            TemplateChange::Status { status, reason } => ("status", status, reason.as_deref()),
            TemplateChange::Quality { quality } => ("quality", quality, None),
        };
        let found: Option<(String, String)> = sqlx::query_as(
            "UPDATE message_templates
             SET status = CASE WHEN $4 = 'status' THEN $5 ELSE status END,
                 status_reason = CASE WHEN $4 = 'status' THEN $6 ELSE status_reason END,
                 quality = CASE WHEN $4 = 'quality' THEN $5 ELSE quality END,
                 provider_template_id = COALESCE($7, provider_template_id), updated_at = now()
             WHERE tenant_id = $1 AND name = $2 AND replace(language, '-', '_') = $3
             RETURNING language, status",
        )
        .bind(tenant)
        .bind(&update.name)
        .bind(&update.language)
        .bind(field)
        .bind(value)
        .bind(reason)
        .bind(&update.provider_template_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((language, status)) = found else {
            tracing::info!(template = %update.name, "template update for a template not in the catalog; skipped");
            continue;
        };
        sqlx::query(
            "INSERT INTO template_events (tenant_id, name, language, field, value, reason, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant)
        .bind(&update.name)
        .bind(&language)
        .bind(field)
        .bind(value)
        .bind(reason)
        .bind(source)
        .execute(&mut *tx)
        .await?;
        if status != "APPROVED" {
            stopped.push((update.name.clone(), language, status));
        }
    }
    tx.commit().await?;
    Ok(stopped)
}
