//! `PUT|GET /routes/tenants/{slug}/contacts/{contact}`: what the tenant knows about a contact
//! that the policy uses. Today: the contact's own time zone, for quiet hours (the tenant's zone
//! applies to contacts without one).

use super::caller::TenantCaller;
use super::settings::check_time_zone;
use super::valid_contact;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactSettings {
    /// The contact's IANA time zone; null or absent: the tenant's.
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[utoipa::path(put, path = "/routes/tenants/{slug}/contacts/{contact}", tag = "policy", request_body = ContactSettings,
    params(("slug" = String, Path), ("contact" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = ContactSettings), (status = 400, description = "invalid_body naming the field; nothing written"),
              (status = 401), (status = 403), (status = 404)))]
pub async fn put(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String)>,
    JsonBody(body): JsonBody<ContactSettings>,
) -> Result<Json<ContactSettings>, ApiError> {
    let contact = valid_contact("contact", &path.1)?;
    match &body.time_zone {
        Some(zone) => {
            check_time_zone(&state.pool, "time_zone", zone).await?;
            sqlx::query(
                "INSERT INTO contact_time_zones (tenant_id, contact, time_zone) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, contact) DO UPDATE SET time_zone = EXCLUDED.time_zone, updated_at = now()",
            )
            .bind(caller.tenant.id)
            .bind(&contact)
            .bind(zone)
            .execute(&state.pool)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM contact_time_zones WHERE tenant_id = $1 AND contact = $2")
                .bind(caller.tenant.id)
                .bind(&contact)
                .execute(&state.pool)
                .await?;
        }
    }
    Ok(Json(body))
}

#[utoipa::path(get, path = "/routes/tenants/{slug}/contacts/{contact}", tag = "policy",
    params(("slug" = String, Path), ("contact" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = ContactSettings), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String)>,
) -> Result<Json<ContactSettings>, ApiError> {
    let contact = valid_contact("contact", &path.1)?;
    let time_zone: Option<String> = sqlx::query_scalar(
        "SELECT time_zone FROM contact_time_zones WHERE tenant_id = $1 AND contact = $2",
    )
    .bind(caller.tenant.id)
    .bind(&contact)
    .fetch_optional(&state.pool)
    .await?;
    Ok(Json(ContactSettings { time_zone }))
}
