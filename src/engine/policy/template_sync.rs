//! `POST /routes/tenants/{slug}/templates/sync`: the tenant's catalog brought up to date from its
//! provider's template API (InfoBip, Meta): new templates added, status, quality and category of
//! known ones updated, each change logged (`template_events`, source `sync`); campaigns using a
//! template that stopped being APPROVED pause. Templates the provider no longer lists stay (the
//! tenant's `PUT /routes/context/templates` replaces the whole catalog).

use super::caller::TenantCaller;
use crate::ai::templates::{MAX_BODY_CHARS, placeholder_count};
use crate::engine::error::ApiError;
use crate::engine::outbound::template_api::{FetchError, ProviderTemplate};
use crate::engine::providers::meta_templates::{QUALITIES, STATUSES};
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Serialize, utoipa::ToSchema)]
pub struct SyncResult {
    /// Templates the provider listed that the catalog can hold.
    pub templates: usize,
    /// Added or changed (status, quality or category), with their state now.
    pub changed: Vec<ChangedTemplate>,
    /// Listed by the provider but not storable (unknown status or category, no text body).
    pub skipped: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangedTemplate {
    pub name: String,
    pub language: String,
    pub status: String,
    pub quality: String,
}

#[utoipa::path(post, path = "/routes/tenants/{slug}/templates/sync", tag = "policy",
    params(("slug" = String, Path)), security(("worker_token" = []), ("admin_token" = [])),
    responses((status = 200, body = SyncResult), (status = 401), (status = 403), (status = 404),
              (status = 422, description = "no_channel, unsupported_provider, or channel_incomplete naming the credential"),
              (status = 502, description = "provider_error: the provider's template API refused or failed")))]
pub async fn sync(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<Json<SyncResult>, ApiError> {
    let channel = caller.tenant.channel.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_channel",
            "the tenant has no WhatsApp channel",
        )
    })?;
    let listed = state
        .dispatcher
        .clients()
        .fetch_templates(channel)
        .await
        .map_err(fetch_error)?;
    let total = listed.len();
    let storable: Vec<ProviderTemplate> = listed.into_iter().filter_map(storable).collect();
    let skipped = total - storable.len();
    let changed = store(&state, caller.tenant.id, &storable).await?;
    tracing::info!(tenant = %caller.tenant.slug, templates = storable.len(), changed = changed.len(), "template catalog synced");
    Ok(Json(SyncResult {
        templates: storable.len(),
        changed,
        skipped,
    }))
}

fn fetch_error(error: FetchError) -> ApiError {
    match error {
        FetchError::Unsupported(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_provider",
            error.to_string(),
        ),
        FetchError::Missing(field) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "channel_incomplete",
            format!("channel.credentials.{field}: required to read the provider's templates"),
        ),
        other => ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", other.to_string()),
    }
}

/// The template as the catalog stores it, when it can (catalog rules: known status and
/// category, a text body of at most 1024 characters with positional placeholders).
fn storable(mut template: ProviderTemplate) -> Option<ProviderTemplate> {
    template.language = template.language.replace('-', "_");
    let known = STATUSES.contains(&template.status.as_str())
        && crate::ai::templates::CATEGORIES.contains(&template.category.as_str());
    let body_ok = !template.body.trim().is_empty()
        && template.body.chars().count() <= MAX_BODY_CHARS
        && placeholder_count(&template.body).is_ok();
    let names_ok =
        (1..=512).contains(&template.name.len()) && (1..=16).contains(&template.language.len());
    if !(known && body_ok && names_ok) {
        return None;
    }
    template.quality = template.quality.filter(|q| QUALITIES.contains(&q.as_str()));
    template.id = template.id.filter(|id| id.len() <= 128);
    Some(template)
}

#[derive(sqlx::FromRow)]
struct Existing {
    name: String,
    language: String,
    status: String,
    quality: String,
    category: String,
}

async fn store(
    state: &AppState,
    tenant: Uuid,
    templates: &[ProviderTemplate],
) -> Result<Vec<ChangedTemplate>, ApiError> {
    let mut tx = crate::db::tenant_tx(&state.pool, tenant).await?;
    let existing: Vec<Existing> = sqlx::query_as(
        "SELECT name, language, status, quality, category FROM message_templates WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    let existing: HashMap<(String, String), Existing> = existing
        .into_iter()
        .map(|e| ((e.name.clone(), e.language.replace('-', "_")), e))
        .collect();
    let mut changed = Vec::new();
    let mut stopped = Vec::new();
    for template in templates {
        let quality = template
            .quality
            .clone()
            .unwrap_or_else(|| "UNKNOWN".to_owned());
        let before = existing.get(&(template.name.clone(), template.language.clone()));
        let same = before.is_some_and(|b| {
            b.status == template.status && b.quality == quality && b.category == template.category
        });
        if same {
            continue;
        }
        let variables: Vec<serde_json::Value> = (0..placeholder_count(&template.body).unwrap_or(0))
            .map(|_| json!({"description": "", "example": "-"}))
            .collect();
        sqlx::query(
            "INSERT INTO message_templates (tenant_id, name, language, category, status, body, variables, quality, provider_template_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, name, language) DO UPDATE
             SET category = EXCLUDED.category, status = EXCLUDED.status, quality = EXCLUDED.quality,
                 provider_template_id = COALESCE(EXCLUDED.provider_template_id, message_templates.provider_template_id),
                 variables = CASE WHEN message_templates.body = EXCLUDED.body THEN message_templates.variables ELSE EXCLUDED.variables END,
                 body = EXCLUDED.body, updated_at = now()",
        )
        .bind(tenant)
        .bind(&template.name)
        .bind(before.map_or(template.language.as_str(), |b| b.language.as_str()))
        .bind(&template.category)
        .bind(&template.status)
        .bind(&template.body)
        .bind(json!(variables))
        .bind(&quality)
        .bind(&template.id)
        .execute(&mut *tx)
        .await?;
        for (field, value, was) in [
            ("status", &template.status, before.map(|b| &b.status)),
            ("quality", &quality, before.map(|b| &b.quality)),
        ] {
            if was == Some(value) {
                continue;
            }
            sqlx::query(
                "INSERT INTO template_events (tenant_id, name, language, field, value, source) VALUES ($1, $2, $3, $4, $5, 'sync')",
            )
            .bind(tenant)
            .bind(&template.name)
            .bind(&template.language)
            .bind(field)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        if template.status != "APPROVED" {
            stopped.push(template);
        }
        changed.push(ChangedTemplate {
            name: template.name.clone(),
            language: template.language.clone(),
            status: template.status.clone(),
            quality,
        });
    }
    for template in stopped {
        crate::engine::campaigns::pause::by_template(
            &mut tx,
            tenant,
            &template.name,
            &template.language,
            &template.status,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}
