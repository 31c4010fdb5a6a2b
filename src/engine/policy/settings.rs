//! A tenant's send policy (`GET|PUT /routes/tenants/{slug}/policy`): the keywords that change
//! consent. A PUT replaces the whole policy; a tenant that never set one has the defaults.

use super::caller::TenantCaller;
use super::keywords::{Keywords, MAX_KEYWORD_CHARS, normalize};
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Keywords per list at most.
pub const MAX_KEYWORDS: usize = 50;

/// The policy as set and shown.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendPolicy {
    /// Words that opt a contact out when they are the whole message, in addition to `STOP` and
    /// `UNSUBSCRIBE` (e.g. `BAJA`, `ARRET`, `СТОП`). At most 50 of at most 40 characters.
    #[serde(default)]
    pub opt_out_keywords: Vec<String>,
    /// Words that opt a contact back in, in addition to `START`.
    #[serde(default)]
    pub opt_in_keywords: Vec<String>,
}

impl SendPolicy {
    pub fn keywords(&self) -> Keywords {
        Keywords::new(&self.opt_out_keywords, &self.opt_in_keywords)
    }

    fn validate(&self) -> Result<(), ApiError> {
        for (field, list) in [
            ("opt_out_keywords", &self.opt_out_keywords),
            ("opt_in_keywords", &self.opt_in_keywords),
        ] {
            if list.len() > MAX_KEYWORDS {
                return Err(ApiError::invalid_field(
                    field,
                    format!("at most {MAX_KEYWORDS} keywords"),
                ));
            }
            if let Some(index) = list.iter().position(|k| normalize(k).is_none()) {
                return Err(ApiError::invalid_field(
                    &format!("{field}[{index}]"),
                    format!("must be 1 to {MAX_KEYWORD_CHARS} characters besides white space"),
                ));
            }
        }
        Ok(())
    }
}

/// The tenant's policy, or the defaults.
pub async fn load(db: impl PgExecutor<'_>, tenant: Uuid) -> Result<SendPolicy, sqlx::Error> {
    let row: Option<(Vec<String>, Vec<String>)> = sqlx::query_as(
        "SELECT opt_out_keywords, opt_in_keywords FROM send_policies WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(db)
    .await?;
    Ok(row
        .map(|(opt_out_keywords, opt_in_keywords)| SendPolicy {
            opt_out_keywords,
            opt_in_keywords,
        })
        .unwrap_or_default())
}

#[utoipa::path(get, path = "/routes/tenants/{slug}/policy", tag = "policy",
    params(("slug" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = SendPolicy), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<Json<SendPolicy>, ApiError> {
    Ok(Json(load(&state.pool, caller.tenant.id).await?))
}

#[utoipa::path(put, path = "/routes/tenants/{slug}/policy", tag = "policy", request_body = SendPolicy,
    params(("slug" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = SendPolicy), (status = 400, description = "invalid_body naming the field; nothing written"),
              (status = 401), (status = 403), (status = 404)))]
pub async fn put(
    State(state): State<AppState>,
    caller: TenantCaller,
    JsonBody(policy): JsonBody<SendPolicy>,
) -> Result<Json<SendPolicy>, ApiError> {
    policy.validate()?;
    sqlx::query(
        "INSERT INTO send_policies (tenant_id, opt_out_keywords, opt_in_keywords)
         VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE
         SET opt_out_keywords = EXCLUDED.opt_out_keywords, opt_in_keywords = EXCLUDED.opt_in_keywords,
             updated_at = now()",
    )
    .bind(caller.tenant.id)
    .bind(&policy.opt_out_keywords)
    .bind(&policy.opt_in_keywords)
    .execute(&state.pool)
    .await?;
    tracing::info!(tenant = %caller.tenant.slug, actor = caller.actor.as_str(), "send policy set");
    Ok(Json(policy))
}
