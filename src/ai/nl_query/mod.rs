//! `POST /routes/data/nl-query`: question → SQL from the chat model → checked (one SELECT over
//! the tenant's declared views, allow-listed functions, bounded size: `sql_guard`) → run where
//! Postgres enforces the rest on its own (`envelope`: a login that reads only the views, on a
//! connection bound to the tenant, read-only, time- and size-limited), a few at a time per tenant
//! (`admission`).

pub mod admission;
pub mod envelope;

use crate::ai::chat::Message;
use crate::ai::controls::{self, Tokens};
use crate::ai::redact::redact;
use crate::ai::settings;
use crate::ai::sql_guard;
use crate::engine::auth::Worker;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use admission::Admission;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use envelope::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Instant;
use uuid::Uuid;

pub use envelope::ROW_LIMIT;

/// Natural-language queries of this engine: where they run and how many at once.
pub struct NlQueries {
    pub envelope: Envelope,
    admission: Admission,
}

impl NlQueries {
    pub fn new(database_url: &str, per_tenant: usize, total: usize) -> Result<Self, EnvelopeError> {
        Ok(Self {
            envelope: Envelope::new(database_url)?,
            admission: Admission::new(per_tenant, total),
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NlQueryIn {
    pub question: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NlQueryOut {
    /// The SQL that ran (before the row-limit wrapper).
    pub sql: String,
    pub rows: Vec<Value>,
    pub row_count: usize,
    /// More rows may exist than the 200 returned.
    pub truncated: bool,
}

#[utoipa::path(post, path = "/routes/data/nl-query", tag = "ai", request_body = NlQueryIn,
    security(("worker_token" = [])),
    responses((status = 200, body = NlQueryOut), (status = 400, description = "invalid body, or the SQL was refused"),
              (status = 401), (status = 403, description = "no data views declared"),
              (status = 422, description = "the query failed in the database, ran longer than 3 s (`query_timeout`) or returned more than 1 MiB (`result_too_large`)"),
              (status = 429, description = "rate limit, budget, or too many queries running (`too_many_queries`)"),
              (status = 503, description = "no chat model, or no query login configured (`nl_query_not_configured`)")))]
pub async fn nl_query(
    State(state): State<AppState>,
    worker: Worker,
    JsonBody(body): JsonBody<NlQueryIn>,
) -> Result<Json<NlQueryOut>, ApiError> {
    let started = Instant::now();
    let tenant = worker.tenant_id;
    let mut sql_seen = None;
    let result = run(&state, tenant, &body.question, &mut sql_seen).await;
    let (outcome, mut detail) = match &result {
        Ok(out) => ("ok", json!({"rows": out.row_count})),
        Err(e) => (controls::outcome_of(e), json!({"reason": e.message})),
    };
    detail["question"] = json!(body.question);
    detail["sql"] = json!(sql_seen);
    controls::audit(&state.pool, tenant, "nl_query", outcome, detail, started).await;
    result.map(Json)
}

async fn run(
    state: &AppState,
    tenant: Uuid,
    question: &str,
    sql_seen: &mut Option<String>,
) -> Result<NlQueryOut, ApiError> {
    let question = question.trim();
    if question.is_empty() || question.chars().count() > 2000 {
        return Err(ApiError::invalid_field(
            "question",
            "must be 1 to 2000 characters",
        ));
    }
    let Some(queries) = &state.ai.nl_queries else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "nl_query_not_configured",
            "natural-language queries need a login of their own; the engine has none configured",
        ));
    };
    let settings = settings::load(&state.pool, tenant).await?;
    if settings.data_views.is_empty() {
        return Err(ApiError::forbidden(
            "no_data_views",
            "the tenant has declared no data views for queries",
        ));
    }
    let model = settings
        .chat_model
        .clone()
        .or_else(|| state.ai.chat_model.clone());
    let (Some(chat), Some(model)) = (&state.ai.chat, model) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_chat_model",
            "no chat model is configured to write the query",
        ));
    };
    controls::admit(&state.pool, &state.ai.rate, tenant, &settings).await?;
    let messages = vec![
        Message::system(schema_prompt(state, &settings.data_views).await?),
        Message::user(redact(question)),
    ];
    let completion = chat.complete(&model, &messages).await.map_err(|error| {
        tracing::warn!(%tenant, %error, "chat model failed writing a query");
        ApiError::unavailable("the chat model is unavailable; retry later")
    })?;
    let tokens = Tokens::of(&messages, &completion);
    controls::record_usage(&state.pool, tenant, "nl_query", &model, tokens).await?;
    let sql = extract_sql(&completion.text);
    *sql_seen = Some(sql.clone());
    sql_guard::check(&sql, &settings.data_views)
        .map_err(|refusal| ApiError::bad_request("query_refused", refusal.to_string()))?;
    let _turn = queries.admission.enter(tenant).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_queries",
            "too many natural-language queries are running; retry shortly",
        )
    })?;
    let rows = queries
        .envelope
        .run(&state.pool, tenant, &sql)
        .await
        .map_err(envelope_error)?;
    Ok(NlQueryOut {
        sql,
        row_count: rows.len(),
        truncated: rows.len() >= ROW_LIMIT,
        rows,
    })
}

/// The views and their columns, as the model's only schema (no sample rows: no data in prompts).
async fn schema_prompt(state: &AppState, views: &[String]) -> Result<String, ApiError> {
    let columns: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text,
                obj_description(format('ai_views.%I', c.table_name)::regclass, 'pg_class')
         FROM information_schema.columns c
         WHERE c.table_schema = 'ai_views' AND c.table_name = ANY($1)
         ORDER BY c.table_name, c.ordinal_position",
    )
    .bind(views)
    .fetch_all(&state.pool)
    .await?;
    let mut prompt = String::from(
        "Write one PostgreSQL SELECT statement that answers the question, using only these views \
         of schema ai_views. Answer with the SQL only, no explanation.\n",
    );
    let mut current = "";
    for (view, column, kind, comment) in &columns {
        if view != current {
            prompt.push_str(&format!(
                "\nview ai_views.{view}: {}\n",
                comment.as_deref().unwrap_or("")
            ));
            current = view;
        }
        prompt.push_str(&format!("  {column} {kind}\n"));
    }
    Ok(prompt)
}

/// The SQL inside the model's answer: fences and a trailing semicolon removed.
pub fn extract_sql(answer: &str) -> String {
    let text = answer.trim();
    let text = match text.find("```") {
        Some(start) => {
            let rest = &text[start + 3..];
            let rest = rest
                .strip_prefix("sql")
                .or_else(|| rest.strip_prefix("SQL"))
                .unwrap_or(rest);
            rest.split("```").next().unwrap_or(rest)
        }
        None => text,
    };
    text.trim().trim_end_matches(';').trim().to_owned()
}

fn envelope_error(error: EnvelopeError) -> ApiError {
    let unprocessable =
        |code, message: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
    match error {
        EnvelopeError::Timeout => {
            unprocessable("query_timeout", "the query ran longer than 3 seconds")
        }
        EnvelopeError::TooLarge => unprocessable(
            "result_too_large",
            "the result is larger than 1 MiB (or a row larger than 64 KiB); ask for less",
        ),
        EnvelopeError::Query(error) => {
            tracing::info!(%error, "natural-language query failed in the database");
            unprocessable("query_failed", "the query failed in the database")
        }
        EnvelopeError::Engine(error) => ApiError::from(error),
        other => {
            tracing::error!(error = %other, "natural-language query database unavailable");
            ApiError::unavailable("the query database is unavailable; retry shortly")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::extract_sql;

    #[test]
    fn sql_is_taken_out_of_fences() {
        assert_eq!(extract_sql("```sql\nSELECT 1;\n```"), "SELECT 1");
        assert_eq!(extract_sql("Here:\n```\nSELECT 2\n```\nDone."), "SELECT 2");
        assert_eq!(extract_sql(" SELECT 3; "), "SELECT 3");
    }
}
