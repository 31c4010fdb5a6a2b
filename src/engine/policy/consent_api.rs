//! `/routes/tenants/{slug}/consent/...`: read and set a contact's consent, and import an existing
//! opt-out list. Admin token or the tenant's worker token; every change is recorded with the actor.

use super::caller::TenantCaller;
use super::consent::{self, Change, Source};
use super::keywords::ConsentState;
use super::valid_contact;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Contacts per import request at most (a larger list is sent in several requests).
pub const MAX_IMPORT: usize = 10_000;
/// History entries shown.
const HISTORY: i64 = 100;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentSet {
    /// `opted_in` or `opted_out`.
    pub state: String,
    /// Why, kept in the history (at most 200 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentImport {
    /// The contacts (numbers or provider user ids), 1 to 10,000.
    pub contacts: Vec<String>,
    /// `opted_out` (default) or `opted_in`.
    #[serde(default)]
    pub state: Option<String>,
    /// Kept in the history of every contact (at most 200 characters), e.g. the list's origin.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    pub imported: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    pub contact: String,
    /// `opted_in`, `opted_out`, or `unknown` (never changed: sends are allowed).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The last 100 changes, newest first.
    pub history: Vec<ConsentEvent>,
}

#[derive(Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ConsentEvent {
    pub state: String,
    /// `keyword`, `provider`, `api` or `import`.
    pub source: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/routes/tenants/{slug}/consent/{contact}", tag = "policy",
    params(("slug" = String, Path), ("contact" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = ConsentView), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String)>,
) -> Result<Json<ConsentView>, ApiError> {
    let contact = valid_contact("contact", &path.1)?;
    Ok(Json(view(&state, &caller, &contact).await?))
}

#[utoipa::path(put, path = "/routes/tenants/{slug}/consent/{contact}", tag = "policy", request_body = ConsentSet,
    params(("slug" = String, Path), ("contact" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = ConsentView), (status = 400, description = "invalid_body naming the field; nothing written"),
              (status = 401), (status = 403), (status = 404)))]
pub async fn put(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(path): Path<(String, String)>,
    JsonBody(body): JsonBody<ConsentSet>,
) -> Result<Json<ConsentView>, ApiError> {
    let contact = valid_contact("contact", &path.1)?;
    let new_state = parse_state("state", &body.state)?;
    let reason = valid_reason(body.reason.as_deref())?;
    let change = Change {
        tenant_id: caller.tenant.id,
        contact: contact.clone(),
        state: new_state,
        source: Source::Api,
        detail: json!({"actor": caller.actor.as_str(), "reason": reason}),
    };
    let mut tx = state.pool.begin().await?;
    consent::record(&mut tx, &[change]).await?;
    tx.commit().await?;
    Ok(Json(view(&state, &caller, &contact).await?))
}

#[utoipa::path(post, path = "/routes/tenants/{slug}/consent/import", tag = "policy", request_body = ConsentImport,
    params(("slug" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = ImportResult),
              (status = 400, description = "invalid_body naming the field (e.g. `contacts[17]`); nothing written"),
              (status = 401), (status = 403), (status = 404), (status = 413)))]
pub async fn import(
    State(state): State<AppState>,
    caller: TenantCaller,
    JsonBody(body): JsonBody<ConsentImport>,
) -> Result<Json<ImportResult>, ApiError> {
    if body.contacts.is_empty() || body.contacts.len() > MAX_IMPORT {
        return Err(ApiError::invalid_field(
            "contacts",
            format!("must hold 1 to {MAX_IMPORT} contacts"),
        ));
    }
    let new_state = match &body.state {
        Some(value) => parse_state("state", value)?,
        None => ConsentState::OptedOut,
    };
    let reason = valid_reason(body.reason.as_deref())?;
    let mut changes = Vec::with_capacity(body.contacts.len());
    for (index, contact) in body.contacts.iter().enumerate() {
        changes.push(Change {
            tenant_id: caller.tenant.id,
            contact: valid_contact(&format!("contacts[{index}]"), contact)?,
            state: new_state,
            source: Source::Import,
            detail: json!({"actor": caller.actor.as_str(), "reason": reason}),
        });
    }
    let mut tx = state.pool.begin().await?;
    consent::record(&mut tx, &changes).await?;
    tx.commit().await?;
    tracing::info!(tenant = %caller.tenant.slug, contacts = changes.len(), state = new_state.as_str(), "consent list imported");
    Ok(Json(ImportResult {
        imported: changes.len(),
    }))
}

async fn view(
    state: &AppState,
    caller: &TenantCaller,
    contact: &str,
) -> Result<ConsentView, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let current = consent::current(&mut conn, caller.tenant.id, contact).await?;
    let history: Vec<ConsentEvent> = sqlx::query_as(
        "SELECT state, source, detail, occurred_at AS at FROM consent_events
         WHERE tenant_id = $1 AND contact = $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(caller.tenant.id)
    .bind(contact)
    .bind(HISTORY)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ConsentView {
        contact: contact.to_owned(),
        state: current.map_or("unknown", |(s, _)| s.as_str()).to_owned(),
        updated_at: current.map(|(_, at)| at),
        history,
    })
}

fn parse_state(field: &str, value: &str) -> Result<ConsentState, ApiError> {
    ConsentState::parse(value)
        .ok_or_else(|| ApiError::invalid_field(field, "must be `opted_in` or `opted_out`"))
}

fn valid_reason(reason: Option<&str>) -> Result<Option<&str>, ApiError> {
    match reason {
        Some(text) if text.chars().count() > 200 => {
            Err(ApiError::invalid_field("reason", "at most 200 characters"))
        }
        other => Ok(other),
    }
}
