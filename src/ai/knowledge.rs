//! The tenant's knowledge base: documents in (chunked by tokens, embedded, stored with their
//! model id), exact per-tenant cosine search out.

use crate::ai::chunk::{self, Format};
use crate::ai::controls;
use crate::ai::embed::EmbedError;
use crate::ai::embed::fair::ReserveError;
use crate::ai::redact::redact;
use crate::ai::settings::{self, TenantAi};
use crate::ai::{AiState, tenant_tx};
use crate::engine::auth::Worker;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::time::Instant;
use uuid::Uuid;

/// Chunks re-embedded per round when the engine's embedding model changed.
const REEMBED_BATCH: i64 = 64;
pub const MAX_K: i64 = 50;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    pub title: String,
    pub text: String,
    /// `text` (default) or `markdown`.
    #[serde(default)]
    pub format: DocFormat,
}

#[derive(Deserialize, Serialize, Clone, Copy, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocFormat {
    #[default]
    Text,
    Markdown,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentOut {
    pub document_id: Uuid,
    pub chunks: i64,
    /// The same text was ingested before: nothing new was stored.
    pub duplicate: bool,
}

#[derive(Deserialize)]
pub struct SearchParams {
    pub q: String,
    #[serde(default)]
    pub k: Option<i64>,
}

/// One retrieved chunk; `score` is the cosine similarity to the query.
#[derive(Serialize, Clone, Debug, sqlx::FromRow, utoipa::ToSchema)]
pub struct Hit {
    pub document_id: Uuid,
    pub title: String,
    pub chunk_index: i32,
    pub content: String,
    pub char_start: i32,
    pub char_end: i32,
    pub score: f64,
}

pub fn embed_failed(error: EmbedError) -> ApiError {
    tracing::error!(%error, "embedding failed");
    ApiError::unavailable("the embedding model is unavailable; see the engine's log")
}

/// The tenant's vectors must come from the engine's embedder.
pub fn check_model(ai: &AiState, settings: &TenantAi) -> Result<(), ApiError> {
    match &settings.embedding_model {
        Some(wanted) if wanted != ai.embedder.model_id() => Err(ApiError::conflict(
            "embedding_model_unavailable",
            format!(
                "the tenant asks for embedding model `{wanted}`, the engine runs `{}`",
                ai.embedder.model_id()
            ),
        )),
        _ => Ok(()),
    }
}

/// Embeds the tenant's texts in its turns at the embedder, redacted first when they leave the
/// process.
pub async fn embed(
    ai: &AiState,
    tenant: Uuid,
    texts: Vec<String>,
) -> Result<Vec<Vector>, ApiError> {
    let texts = if ai.remote_embedder {
        texts.iter().map(|t| redact(t)).collect()
    } else {
        texts
    };
    let vectors = ai
        .embedder
        .embed(tenant, &texts)
        .await
        .map_err(embed_failed)?;
    Ok(vectors.into_iter().map(Vector::from).collect())
}

/// Embeds one search query in the tenant's turns for queries (which never wait behind a
/// document), redacted first when it leaves the process.
pub async fn embed_query(ai: &AiState, tenant: Uuid, query: &str) -> Result<Vector, ApiError> {
    let query = if ai.remote_embedder {
        redact(query)
    } else {
        query.to_owned()
    };
    let vector = ai
        .embedder
        .embed_query(tenant, query)
        .await
        .map_err(embed_failed)?;
    Ok(Vector::from(vector))
}

/// A document's room in the tenant's share of the embedding queue: 413 when it can never fit,
/// 429 while the tenant's other ingests fill it.
fn queue_refused(error: ReserveError) -> ApiError {
    match error {
        ReserveError::TooLarge { texts, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "document_too_large",
            format!(
                "the document makes {texts} chunks; at most {limit} are embedded at once: split it"
            ),
        ),
        ReserveError::Busy { queued, limit } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "embedding_queue_full",
            format!(
                "the tenant's other documents hold {queued} of its {limit} chunks waiting to be embedded; retry when they are stored"
            ),
        ),
    }
}

#[utoipa::path(post, path = "/routes/knowledge/documents", tag = "ai", request_body = DocumentIn,
    security(("worker_token" = [])),
    responses((status = 201, body = DocumentOut, description = "stored"), (status = 200, body = DocumentOut, description = "already stored"),
              (status = 400), (status = 401), (status = 403, description = "tenant_suspended"), (status = 409),
              (status = 413, description = "document_too_large: more chunks than one tenant may queue"),
              (status = 429, description = "rate_limited, budget_exceeded, or embedding_queue_full (the tenant's other ingests fill its queue)"),
              (status = 503)))]
pub async fn ingest(
    State(state): State<AppState>,
    worker: Worker,
    JsonBody(body): JsonBody<DocumentIn>,
) -> Result<(StatusCode, Json<DocumentOut>), ApiError> {
    let started = Instant::now();
    let tenant = worker.tenant_id;
    let result = ingest_inner(&state, tenant, body).await;
    let (outcome, detail) = match &result {
        Ok((_, out)) => (
            "ok",
            json!({"document_id": out.document_id, "chunks": out.chunks, "duplicate": out.duplicate}),
        ),
        Err(e) => (controls::outcome_of(e), json!({})),
    };
    controls::audit(
        &state.pool,
        tenant,
        "knowledge.ingest",
        outcome,
        detail,
        started,
    )
    .await;
    result
}

async fn ingest_inner(
    state: &AppState,
    tenant: Uuid,
    body: DocumentIn,
) -> Result<(StatusCode, Json<DocumentOut>), ApiError> {
    let title = body.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 500 {
        return Err(ApiError::invalid_field(
            "title",
            "must be 1 to 500 characters",
        ));
    }
    if body.text.trim().is_empty() {
        return Err(ApiError::invalid_field("text", "must not be empty"));
    }
    let ai = &state.ai;
    let settings = settings::load(&state.pool, tenant).await?;
    check_model(ai, &settings)?;
    controls::admit(&state.pool, &ai.rate, tenant, &settings).await?;
    let sha: Vec<u8> = Sha256::digest(body.text.as_bytes()).to_vec();
    if let Some(existing) = existing_document(&state.pool, tenant, &sha).await? {
        return Ok((StatusCode::OK, Json(existing)));
    }
    let sizer = ai.sizer().await;
    let format = match body.format {
        DocFormat::Text => Format::Text,
        DocFormat::Markdown => Format::Markdown,
    };
    let text = body.text;
    let chunks = tokio::task::spawn_blocking(move || chunk::split(&sizer, format, &text))
        .await
        .map_err(|_| ApiError::internal())?;
    let _room = ai
        .embedder
        .reserve(tenant, chunks.len())
        .map_err(queue_refused)?;
    let vectors = embed(
        ai,
        tenant,
        chunks.iter().map(|c| c.content.clone()).collect(),
    )
    .await?;
    let mut tx = tenant_tx(&state.pool, tenant).await?;
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO kb_documents (tenant_id, title, format, sha256) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, sha256) DO NOTHING RETURNING id",
    )
    .bind(tenant)
    .bind(&title)
    .bind(match format {
        Format::Text => "text",
        Format::Markdown => "markdown",
    })
    .bind(&sha)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(document_id) = inserted else {
        // A concurrent ingest of the same text won the race.
        tx.rollback().await?;
        let existing = existing_document(&state.pool, tenant, &sha).await?;
        return existing
            .map(|e| (StatusCode::OK, Json(e)))
            .ok_or_else(ApiError::internal);
    };
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    sqlx::query(include_str!("sql/insert_chunks.sql"))
        .bind(tenant)
        .bind(document_id)
        .bind(ai.embedder.model_id())
        .bind(chunks.iter().map(|c| c.content.clone()).collect::<Vec<_>>())
        .bind(
            chunks
                .iter()
                .map(|c| to_i32(c.char_start))
                .collect::<Vec<_>>(),
        )
        .bind(
            chunks
                .iter()
                .map(|c| to_i32(c.char_end))
                .collect::<Vec<_>>(),
        )
        .bind(vectors)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(%tenant, %document_id, chunks = chunks.len(), "knowledge document stored");
    Ok((
        StatusCode::CREATED,
        Json(DocumentOut {
            document_id,
            chunks: chunks.len() as i64,
            duplicate: false,
        }),
    ))
}

async fn existing_document(
    pool: &PgPool,
    tenant: Uuid,
    sha: &[u8],
) -> Result<Option<DocumentOut>, sqlx::Error> {
    let mut tx = tenant_tx(pool, tenant).await?;
    let row: Option<(Uuid, i64)> = sqlx::query_as(
        "SELECT d.id, (SELECT count(*) FROM kb_chunks c WHERE c.document_id = d.id AND c.tenant_id = $1)
         FROM kb_documents d WHERE d.tenant_id = $1 AND d.sha256 = $2",
    )
    .bind(tenant)
    .bind(sha)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|(document_id, chunks)| DocumentOut {
        document_id,
        chunks,
        duplicate: true,
    }))
}

/// Re-embeds the tenant's chunks stored under another model (the engine's model changed), so
/// search compares like with like.
pub async fn reembed_stale(state: &AppState, tenant: Uuid) -> Result<(), ApiError> {
    let model = state.ai.embedder.model_id().to_owned();
    loop {
        let mut tx = tenant_tx(&state.pool, tenant).await?;
        let stale: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, content FROM kb_chunks WHERE tenant_id = $1 AND embedding_model <> $2 ORDER BY id LIMIT $3",
        )
        .bind(tenant)
        .bind(&model)
        .bind(REEMBED_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if stale.is_empty() {
            return Ok(tx.commit().await?);
        }
        let (ids, texts): (Vec<i64>, Vec<String>) = stale.into_iter().unzip();
        let vectors = embed(&state.ai, tenant, texts).await?;
        sqlx::query(
            "UPDATE kb_chunks SET embedding = u.v, embedding_model = $2
             FROM UNNEST($3::bigint[], $4::vector[]) AS u(id, v)
             WHERE kb_chunks.id = u.id AND kb_chunks.tenant_id = $1",
        )
        .bind(tenant)
        .bind(&model)
        .bind(&ids)
        .bind(vectors)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(%tenant, chunks = ids.len(), %model, "re-embedded chunks of a previous model");
    }
}

/// The k chunks of the tenant nearest to `query` (exactly k when the tenant has that many).
pub async fn retrieve(
    state: &AppState,
    tenant: Uuid,
    query: &str,
    k: i64,
) -> Result<Vec<Hit>, ApiError> {
    reembed_stale(state, tenant).await?;
    let vector = embed_query(&state.ai, tenant, query).await?;
    Ok(search_vector(&state.pool, tenant, state.ai.embedder.model_id(), vector, k).await?)
}

/// Exact nearest chunks to a vector, in the tenant's row-level-security scope.
pub async fn search_vector(
    pool: &PgPool,
    tenant: Uuid,
    model: &str,
    vector: Vector,
    k: i64,
) -> Result<Vec<Hit>, sqlx::Error> {
    let mut tx = tenant_tx(pool, tenant).await?;
    let hits = sqlx::query_as(include_str!("sql/search_chunks.sql"))
        .bind(tenant)
        .bind(model)
        .bind(vector)
        .bind(k)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(hits)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SearchOut {
    pub results: Vec<Hit>,
}

#[utoipa::path(get, path = "/routes/knowledge/search", tag = "ai",
    params(("q" = String, Query), ("k" = Option<i64>, Query, description = "1 to 50, default 5")),
    security(("worker_token" = [])),
    responses((status = 200, body = SearchOut), (status = 400), (status = 401), (status = 403, description = "tenant_suspended"), (status = 409), (status = 429), (status = 503)))]
pub async fn search(
    State(state): State<AppState>,
    worker: Worker,
    RawQuery(query): RawQuery,
) -> Result<Json<SearchOut>, ApiError> {
    let started = Instant::now();
    // Parsed here so a bad query string is a JSON error like every other.
    let params: SearchParams = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::invalid_field("query", e))?;
    let tenant = worker.tenant_id;
    let result = search_inner(&state, tenant, &params).await;
    let (outcome, detail) = match &result {
        Ok(out) => ("ok", json!({"results": out.results.len()})),
        Err(e) => (controls::outcome_of(e), json!({})),
    };
    controls::audit(
        &state.pool,
        tenant,
        "knowledge.search",
        outcome,
        detail,
        started,
    )
    .await;
    result
}

async fn search_inner(
    state: &AppState,
    tenant: Uuid,
    params: &SearchParams,
) -> Result<Json<SearchOut>, ApiError> {
    let k = params.k.unwrap_or(5);
    if !(1..=MAX_K).contains(&k) {
        return Err(ApiError::invalid_field("k", "must be between 1 and 50"));
    }
    if params.q.trim().is_empty() || params.q.chars().count() > 2000 {
        return Err(ApiError::invalid_field("q", "must be 1 to 2000 characters"));
    }
    let settings = settings::load(&state.pool, tenant).await?;
    check_model(&state.ai, &settings)?;
    controls::admit(&state.pool, &state.ai.rate, tenant, &settings).await?;
    let results = retrieve(state, tenant, &params.q, k).await?;
    Ok(Json(SearchOut { results }))
}
