//! `PUT|GET /routes/tenants/{slug}/pulse/segments/{name}`: saved segments, named contact lists a
//! campaign's audience can name (`{"kind": "segment", "name": ...}`). A PUT replaces the list.

use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::policy::caller::TenantCaller;
use crate::engine::policy::valid_contact;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// Contacts in one segment at most.
pub const MAX_CONTACTS: usize = 100_000;

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// 1 to 100,000 contacts (numbers or provider ids); duplicates count once.
    pub contacts: Vec<String>,
}

/// Lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most 64.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

pub async fn exists(pool: &PgPool, tenant: Uuid, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM campaign_segments WHERE tenant_id = $1 AND name = $2)",
    )
    .bind(tenant)
    .bind(name)
    .fetch_one(pool)
    .await
}

#[utoipa::path(put, path = "/routes/tenants/{slug}/pulse/segments/{name}", tag = "campaigns", request_body = Segment,
    params(("slug" = String, Path), ("name" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = Segment), (status = 400, description = "invalid_body naming the field; nothing written"),
              (status = 401), (status = 403), (status = 404)))]
pub async fn put(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String)>,
    JsonBody(body): JsonBody<Segment>,
) -> Result<Json<Segment>, ApiError> {
    let name = path.1;
    if !valid_name(&name) {
        return Err(ApiError::invalid_field(
            "name",
            "lowercase letters, digits, `-` and `_`, at most 64",
        ));
    }
    if body.contacts.is_empty() || body.contacts.len() > MAX_CONTACTS {
        return Err(ApiError::invalid_field(
            "contacts",
            format!("must hold 1 to {MAX_CONTACTS} contacts"),
        ));
    }
    let mut contacts = body
        .contacts
        .iter()
        .enumerate()
        .map(|(i, c)| valid_contact(&format!("contacts[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    contacts.sort();
    contacts.dedup();
    sqlx::query(
        "INSERT INTO campaign_segments (tenant_id, name, contacts) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, name) DO UPDATE SET contacts = EXCLUDED.contacts, updated_at = now()",
    )
    .bind(caller.tenant.id)
    .bind(&name)
    .bind(&contacts)
    .execute(&state.pool)
    .await?;
    Ok(Json(Segment { contacts }))
}

#[utoipa::path(get, path = "/routes/tenants/{slug}/pulse/segments/{name}", tag = "campaigns",
    params(("slug" = String, Path), ("name" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = Segment), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String)>,
) -> Result<Json<Segment>, ApiError> {
    let contacts: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT contacts FROM campaign_segments WHERE tenant_id = $1 AND name = $2",
    )
    .bind(caller.tenant.id)
    .bind(&path.1)
    .fetch_optional(&state.pool)
    .await?;
    contacts
        .map(|contacts| Json(Segment { contacts }))
        .ok_or_else(|| ApiError::not_found("no such segment"))
}
