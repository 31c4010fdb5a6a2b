//! A tenant's AI settings (registered through the admin API's `ai` object).

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

/// The `ai` object of `PUT /admin/tenants/{slug}`. Absent fields take the engine's defaults.
#[derive(
    Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, utoipa::ToSchema, sqlx::FromRow,
)]
#[serde(deny_unknown_fields)]
pub struct TenantAi {
    /// Chat model on the engine's OpenAI-compatible server (e.g. `gpt-4o-mini`, `llama3.1`).
    #[serde(default)]
    pub chat_model: Option<String>,
    /// Embedding model the tenant's vectors must come from; must be the engine's embedder.
    #[serde(default)]
    pub embedding_model: Option<String>,
    /// Tokens per calendar month (UTC); absent: no budget.
    #[serde(default)]
    pub monthly_token_budget: Option<i64>,
    /// AI calls per minute; absent: the engine's default.
    #[serde(default)]
    pub requests_per_minute: Option<i32>,
    /// Views of schema `ai_views` that natural-language queries may read.
    #[serde(default)]
    pub data_views: Vec<String>,
}

impl TenantAi {
    /// Checks the settings; `Err((field, reason))`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let name_ok = |n: &Option<String>| n.as_ref().is_none_or(|n| (1..=200).contains(&n.len()));
        if !name_ok(&self.chat_model) {
            return Err(("ai.chat_model", "must be 1 to 200 characters"));
        }
        if !name_ok(&self.embedding_model) {
            return Err(("ai.embedding_model", "must be 1 to 200 characters"));
        }
        if self.monthly_token_budget.is_some_and(|b| b < 0) {
            return Err(("ai.monthly_token_budget", "must not be negative"));
        }
        if self
            .requests_per_minute
            .is_some_and(|r| !(1..=100_000).contains(&r))
        {
            return Err(("ai.requests_per_minute", "must be between 1 and 100000"));
        }
        let view_ok = |v: &String| {
            (1..=63).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !self.data_views.iter().all(view_ok) {
            return Err(("ai.data_views", "must be names of views in schema ai_views"));
        }
        Ok(())
    }
}

/// Replaces the tenant's AI settings (none given: the row goes, defaults apply). Returns the
/// declared views that do not exist in `ai_views`, in which case nothing should be committed.
pub async fn store(
    tx: &mut PgConnection,
    tenant: Uuid,
    ai: Option<&TenantAi>,
) -> Result<Vec<String>, sqlx::Error> {
    let Some(ai) = ai else {
        sqlx::query("DELETE FROM tenant_ai_settings WHERE tenant_id = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        return Ok(Vec::new());
    };
    let unknown: Vec<String> = sqlx::query_scalar(
        "SELECT v FROM UNNEST($1::text[]) AS v
         WHERE NOT EXISTS (SELECT 1 FROM pg_views WHERE schemaname = 'ai_views' AND viewname = v)",
    )
    .bind(&ai.data_views)
    .fetch_all(&mut *tx)
    .await?;
    if !unknown.is_empty() {
        return Ok(unknown);
    }
    sqlx::query(
        "INSERT INTO tenant_ai_settings (tenant_id, chat_model, embedding_model, monthly_token_budget, requests_per_minute, data_views)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id) DO UPDATE SET chat_model = EXCLUDED.chat_model,
             embedding_model = EXCLUDED.embedding_model, monthly_token_budget = EXCLUDED.monthly_token_budget,
             requests_per_minute = EXCLUDED.requests_per_minute, data_views = EXCLUDED.data_views, updated_at = now()",
    )
    .bind(tenant)
    .bind(&ai.chat_model)
    .bind(&ai.embedding_model)
    .bind(ai.monthly_token_budget)
    .bind(ai.requests_per_minute)
    .bind(&ai.data_views)
    .execute(&mut *tx)
    .await?;
    Ok(Vec::new())
}

/// The tenant's settings, or the defaults.
pub async fn load(pool: &sqlx::PgPool, tenant: Uuid) -> Result<TenantAi, sqlx::Error> {
    let row: Option<TenantAi> = sqlx::query_as(
        "SELECT chat_model, embedding_model, monthly_token_budget, requests_per_minute, data_views
         FROM tenant_ai_settings WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    Ok(row.unwrap_or_default())
}
