//! The tenant's catalog of WhatsApp message templates. Templates are approved by the provider
//! (Meta, InfoBip, Twilio); the tenant's n8n syncs its list here with
//! `PUT /routes/context/templates`, which replaces the whole catalog at once. Pulse content
//! only ever proposes APPROVED templates from it.

use crate::ai::tenant_tx;
use crate::engine::auth::Worker;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;
use uuid::Uuid;

/// Templates in one catalog at most (Meta allows 250 per account, 6000 for verified ones).
pub const MAX_TEMPLATES: usize = 1000;
/// WhatsApp's limit on a template body.
pub const MAX_BODY_CHARS: usize = 1024;
/// WhatsApp's limit on one body parameter (and `POST /messages/send`'s).
pub const MAX_PARAM_CHARS: usize = 1024;
/// Placeholders per body at most (`POST /messages/send` takes at most 50 params).
pub const MAX_PLACEHOLDERS: usize = 50;
const MAX_DESCRIPTION_CHARS: usize = 200;

pub const CATEGORIES: [&str; 3] = ["MARKETING", "UTILITY", "AUTHENTICATION"];
pub const STATUSES: [&str; 5] = ["APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"];

/// Anything between double braces: `{{1}}`, and also what is not allowed (`{{name}}`, `{{0}}`).
static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{([^{}]*)\}\}").expect("valid regex"));

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogIn {
    /// The whole catalog: it replaces what is stored.
    pub templates: Vec<TemplateIn>,
}

/// One template as the provider approved it.
#[derive(Deserialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateIn {
    /// Meta/InfoBip: the template name; Twilio: the Content SID (`HX...`).
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION` (any case).
    pub category: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED` or `DISABLED` (any case).
    pub status: String,
    /// The body with positional placeholders `{{1}}`..`{{n}}`, contiguous from 1; at most 1024
    /// characters.
    pub body: String,
    /// One per placeholder, in order.
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// Ignored (accepted so that a `GET` can be sent back as it is).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub updated_at: Option<Value>,
    /// Ignored: the quality comes from the provider (webhooks, catalog sync).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub quality: Option<Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// What the placeholder stands for, e.g. `customer first name` (at most 200 characters).
    #[serde(default)]
    pub description: String,
    /// A valid value: used when nothing better is known, so it must be sendable (1 to 1024
    /// characters, no new lines or tabs, at most 4 consecutive spaces).
    pub example: String,
}

/// A stored template.
#[derive(Serialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
pub struct Template {
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub body: String,
    pub variables: Vec<Variable>,
    /// The provider's quality rating: GREEN, YELLOW, RED or UNKNOWN.
    pub quality: String,
    pub updated_at: DateTime<Utc>,
}

impl Template {
    pub fn approved(&self) -> bool {
        self.status == "APPROVED"
    }

    /// Placeholders in the body (validated on the way in: `{{1}}`..`{{n}}`).
    pub fn placeholders(&self) -> usize {
        self.variables.len()
    }

    /// The body with `{{i}}` replaced by `params[i - 1]`.
    pub fn render(&self, params: &[String]) -> String {
        PLACEHOLDER
            .replace_all(&self.body, |found: &regex::Captures| {
                found[1]
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| params.get(i.wrapping_sub(1)))
                    .cloned()
                    .unwrap_or_else(|| found[0].to_owned())
            })
            .into_owned()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    language: String,
    category: String,
    status: String,
    body: String,
    variables: Value,
    quality: String,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogOut {
    pub templates: Vec<Template>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogStored {
    /// Templates now in the catalog.
    pub templates: usize,
    /// Of which APPROVED.
    pub approved: usize,
}

/// Why a value cannot be a template parameter (WhatsApp refuses new lines, tabs and more than
/// four consecutive spaces in parameters).
pub fn param_problem(value: &str) -> Option<&'static str> {
    if value.trim().is_empty() {
        Some("must not be empty")
    } else if value.chars().count() > MAX_PARAM_CHARS {
        Some("must be at most 1024 characters")
    } else if value.contains(['\n', '\r', '\t']) {
        Some("must not contain new lines or tabs")
    } else if value.contains("     ") {
        Some("must not contain more than 4 consecutive spaces")
    } else {
        None
    }
}

/// The number of placeholders of a body, or why they are not `{{1}}`..`{{n}}`.
pub fn placeholder_count(body: &str) -> Result<usize, String> {
    let mut seen = BTreeSet::new();
    for found in PLACEHOLDER.captures_iter(body) {
        let inner = &found[1];
        let number = inner
            .parse::<usize>()
            .ok()
            .filter(|n| {
                *n >= 1 && !inner.starts_with('0') && inner.bytes().all(|b| b.is_ascii_digit())
            })
            .ok_or_else(|| {
                format!(
                    "placeholder `{}` is not positional: use {{{{1}}}}, {{{{2}}}}, ...",
                    &found[0]
                )
            })?;
        if number > MAX_PLACEHOLDERS {
            return Err(format!("at most {MAX_PLACEHOLDERS} placeholders"));
        }
        seen.insert(number);
    }
    let count = seen.len();
    if let Some(missing) = (1..=count).find(|n| !seen.contains(n)) {
        return Err(format!(
            "placeholders must be contiguous from {{{{1}}}}: {{{{{missing}}}}} is missing"
        ));
    }
    Ok(count)
}

fn language_ok(language: &str) -> bool {
    (1..=16).contains(&language.len())
        && language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the catalog and normalises category and status to upper case. The error names the
/// field path, e.g. `templates[2].body`.
pub fn validate(templates: &mut [TemplateIn]) -> Result<(), ApiError> {
    if templates.len() > MAX_TEMPLATES {
        return Err(ApiError::invalid_field(
            "templates",
            format!("at most {MAX_TEMPLATES} templates"),
        ));
    }
    let mut keys: HashMap<(String, String), usize> = HashMap::new();
    for (i, t) in templates.iter_mut().enumerate() {
        let at = |field: &str| format!("templates[{i}].{field}");
        if t.name.is_empty()
            || t.name.chars().count() > 512
            || t.name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ApiError::invalid_field(
                &at("name"),
                "must be 1 to 512 characters without spaces",
            ));
        }
        if !language_ok(&t.language) {
            return Err(ApiError::invalid_field(
                &at("language"),
                "must be a language code such as en_US",
            ));
        }
        t.category = t.category.to_ascii_uppercase();
        if !CATEGORIES.contains(&t.category.as_str()) {
            return Err(ApiError::invalid_field(
                &at("category"),
                "must be MARKETING, UTILITY or AUTHENTICATION",
            ));
        }
        t.status = t.status.to_ascii_uppercase();
        if !STATUSES.contains(&t.status.as_str()) {
            return Err(ApiError::invalid_field(
                &at("status"),
                "must be APPROVED, PENDING, REJECTED, PAUSED or DISABLED",
            ));
        }
        if t.body.trim().is_empty() || t.body.chars().count() > MAX_BODY_CHARS {
            return Err(ApiError::invalid_field(
                &at("body"),
                "must be 1 to 1024 characters",
            ));
        }
        let count = placeholder_count(&t.body)
            .map_err(|reason| ApiError::invalid_field(&at("body"), reason))?;
        if t.variables.len() != count {
            return Err(ApiError::invalid_field(
                &at("variables"),
                format!(
                    "the body has {count} placeholders, {} variables are given",
                    t.variables.len()
                ),
            ));
        }
        for (j, variable) in t.variables.iter().enumerate() {
            if variable.description.chars().count() > MAX_DESCRIPTION_CHARS {
                return Err(ApiError::invalid_field(
                    &at(&format!("variables[{j}].description")),
                    "must be at most 200 characters",
                ));
            }
            if let Some(problem) = param_problem(&variable.example) {
                return Err(ApiError::invalid_field(
                    &at(&format!("variables[{j}].example")),
                    problem,
                ));
            }
        }
        if let Some(first) = keys.insert((t.name.clone(), t.language.clone()), i) {
            return Err(ApiError::invalid_field(
                &format!("templates[{i}]"),
                format!("same name and language as templates[{first}]"),
            ));
        }
    }
    Ok(())
}

/// The tenant's catalog, ordered by name and language.
pub async fn load(pool: &PgPool, tenant: Uuid) -> Result<Vec<Template>, sqlx::Error> {
    let mut tx = tenant_tx(pool, tenant).await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, language, category, status, body, variables, quality, updated_at
         FROM message_templates WHERE tenant_id = $1 ORDER BY name, language",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|r| Template {
            name: r.name,
            language: r.language,
            category: r.category,
            status: r.status,
            body: r.body,
            variables: serde_json::from_value(r.variables).unwrap_or_default(),
            quality: r.quality,
            updated_at: r.updated_at,
        })
        .collect())
}

/// Replaces the tenant's catalog in one transaction. Concurrent replacements of one tenant are
/// serialised by an advisory lock (else both would delete, then collide on insert).
async fn replace(pool: &PgPool, tenant: Uuid, templates: &[TemplateIn]) -> Result<(), sqlx::Error> {
    let mut tx = tenant_tx(pool, tenant).await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('message_templates:' || $1::text, 0))",
    )
    .bind(tenant)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM message_templates WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let column = |f: fn(&TemplateIn) -> &str| templates.iter().map(f).collect::<Vec<_>>();
    let variables: Vec<Value> = templates
        .iter()
        .map(|t| serde_json::to_value(&t.variables).unwrap_or_else(|_| Value::Array(Vec::new())))
        .collect();
    sqlx::query(
        "INSERT INTO message_templates (tenant_id, name, language, category, status, body, variables)
         SELECT $1, name, language, category, status, body, variables
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])
             AS t(name, language, category, status, body, variables)",
    )
    .bind(tenant)
    .bind(column(|t| &t.name))
    .bind(column(|t| &t.language))
    .bind(column(|t| &t.category))
    .bind(column(|t| &t.status))
    .bind(column(|t| &t.body))
    .bind(&variables)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[utoipa::path(put, path = "/routes/context/templates", tag = "ai", request_body = CatalogIn,
    security(("worker_token" = [])),
    responses((status = 200, body = CatalogStored, description = "the catalog was replaced"),
              (status = 400, description = "a field is invalid (named); nothing was written"), (status = 401), (status = 403, description = "tenant_suspended"), (status = 413), (status = 503)))]
pub async fn put(
    State(state): State<AppState>,
    worker: Worker,
    JsonBody(mut body): JsonBody<CatalogIn>,
) -> Result<Json<CatalogStored>, ApiError> {
    validate(&mut body.templates)?;
    replace(&state.pool, worker.tenant_id, &body.templates).await?;
    let approved = body
        .templates
        .iter()
        .filter(|t| t.status == "APPROVED")
        .count();
    tracing::info!(tenant = %worker.tenant_slug, templates = body.templates.len(), approved, "template catalog replaced");
    Ok(Json(CatalogStored {
        templates: body.templates.len(),
        approved,
    }))
}

#[utoipa::path(get, path = "/routes/context/templates", tag = "ai",
    security(("worker_token" = [])),
    responses((status = 200, body = CatalogOut), (status = 401), (status = 403, description = "tenant_suspended"), (status = 503)))]
pub async fn get(
    State(state): State<AppState>,
    worker: Worker,
) -> Result<Json<CatalogOut>, ApiError> {
    Ok(Json(CatalogOut {
        templates: load(&state.pool, worker.tenant_id).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(body: &str, examples: &[&str]) -> TemplateIn {
        TemplateIn {
            name: "promo".into(),
            language: "en_US".into(),
            category: "marketing".into(),
            status: "approved".into(),
            body: body.into(),
            variables: examples
                .iter()
                .map(|e| Variable {
                    description: String::new(),
                    example: (*e).into(),
                })
                .collect(),
            updated_at: None,
            quality: None,
        }
    }

    fn problem(templates: &mut [TemplateIn]) -> String {
        validate(templates).unwrap_err().message
    }

    #[test]
    fn placeholders_must_be_positional_and_contiguous() {
        assert_eq!(placeholder_count("Hi {{1}}, {{2}} and {{1}}"), Ok(2));
        assert_eq!(placeholder_count("no variables"), Ok(0));
        assert!(
            placeholder_count("Hi {{2}}")
                .unwrap_err()
                .contains("{{1}} is missing")
        );
        assert!(
            placeholder_count("Hi {{name}}")
                .unwrap_err()
                .contains("not positional")
        );
        assert!(placeholder_count("Hi {{0}}").is_err());
        assert!(placeholder_count("Hi {{01}}").is_err());
        assert!(placeholder_count("Hi {{51}}").is_err());
    }

    #[test]
    fn catalogs_are_checked_field_by_field() {
        let mut ok = [template("Hi {{1}}, 20% off today", &["Ana"])];
        validate(&mut ok).unwrap();
        assert_eq!(
            (ok[0].category.as_str(), ok[0].status.as_str()),
            ("MARKETING", "APPROVED")
        );
        assert!(problem(&mut [template("Hi {{1}}", &[])]).starts_with("templates[0].variables:"));
        assert!(
            problem(&mut [template("Hi {{1}}", &["two\nlines"])])
                .starts_with("templates[0].variables[0].example:")
        );
        assert!(problem(&mut [template(&"x".repeat(1025), &[])]).starts_with("templates[0].body:"));
        let mut bad_status = template("Hi", &[]);
        bad_status.status = "LIVE".into();
        assert!(problem(&mut [bad_status]).starts_with("templates[0].status:"));
        let mut twice = [template("Hi", &[]), template("Hello", &[])];
        assert!(problem(&mut twice).starts_with("templates[1]: same name"));
    }

    #[test]
    fn params_follow_whatsapp_rules_and_render() {
        assert_eq!(param_problem("Ana"), None);
        assert!(param_problem(" ").is_some());
        assert!(param_problem("a\tb").is_some());
        assert!(param_problem("a     b").is_some());
        assert_eq!(param_problem("a    b"), None);
        assert!(param_problem(&"x".repeat(1025)).is_some());
        let t = Template {
            name: "n".into(),
            language: "en".into(),
            category: "UTILITY".into(),
            status: "APPROVED".into(),
            body: "Hi {{1}}, order {{2}} ({{1}})".into(),
            variables: vec![],
            quality: "UNKNOWN".into(),
            updated_at: Utc::now(),
        };
        assert_eq!(
            t.render(&["Ana".into(), "42".into()]),
            "Hi Ana, order 42 (Ana)"
        );
    }
}
