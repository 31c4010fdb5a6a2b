//! Per-tenant AI endpoints: knowledge (RAG over pgvector), synthesis with sources, conversation
//! memory, natural-language data queries; with per-tenant budgets, rate limits, redaction and
//! an audit row for every call.

pub mod chat;
pub mod chunk;
pub mod controls;
pub mod embed;
pub mod knowledge;
pub mod memory;
pub mod nl_query;
pub mod provider;
pub mod pulse;
pub mod redact;
pub mod settings;
pub mod sql_guard;
pub mod suspension;
pub mod synthesis;
pub mod templates;

use crate::ai::chat::ChatClient;
use crate::ai::chunk::Sizer;
use crate::ai::controls::RateLimiter;
use crate::ai::embed::Embedder;
use crate::ai::embed::fair::FairEmbedder;
use crate::ai::embed::minilm::{LocalEmbedder, MiniLm};
use crate::ai::embed::openai::OpenAiEmbedder;
use crate::ai::provider::Provider;
use crate::engine::config::{EmbedderKind, EngineArgs};
use crate::engine::secret::Secret;
use crate::engine::state::AppState;
use axum::Router;
use axum::routing::{delete, get, post, put};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum AiConfigError {
    #[error("the OpenAI-compatible base URL must be an absolute http(s) URL")]
    BaseUrl,
    #[error("--embedder openai needs --openai-base-url")]
    NoEmbeddingServer,
    #[error(transparent)]
    NlQuery(#[from] nl_query::envelope::EnvelopeError),
}

/// The AI layer's share of the engine: one embedder, the chat server (if any), limits.
pub struct AiState {
    /// The embedder, taken in fair turns between tenants.
    pub embedder: FairEmbedder,
    /// `None`: no chat server configured; synthesis answers extractively.
    pub chat: Option<ChatClient>,
    /// The engine-wide chat model; a tenant's own setting wins.
    pub chat_model: Option<String>,
    /// Whether text leaves the process when embedded (then it is redacted first).
    pub remote_embedder: bool,
    pub rate: RateLimiter,
    /// `None`: no query login configured; natural-language queries answer 503.
    pub nl_queries: Option<nl_query::NlQueries>,
    model_dir: Option<PathBuf>,
    sizer: OnceCell<Arc<Sizer>>,
}

impl AiState {
    pub fn from_args(args: &EngineArgs) -> Result<Self, AiConfigError> {
        let timeout = Duration::from_secs(args.ai_timeout_seconds.max(1));
        let provider = match &args.openai_base_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => Some(
                Provider::new(url, args.openai_api_key.clone().map(Secret::new), timeout),
            ),
            Some(_) => return Err(AiConfigError::BaseUrl),
            None => None,
        };
        let embedder: Arc<dyn Embedder> = match args.embedder {
            // Documents' batches and search queries each have `embed_concurrency` slots.
            EmbedderKind::Local => Arc::new(LocalEmbedder::new(
                args.embed_model_dir.clone(),
                args.embed_concurrency.max(1) * 2,
            )),
            EmbedderKind::Openai => Arc::new(OpenAiEmbedder::new(
                provider.clone().ok_or(AiConfigError::NoEmbeddingServer)?,
                &args.openai_embedding_model,
            )),
        };
        Ok(Self {
            embedder: FairEmbedder::new(
                embedder,
                args.embed_concurrency,
                args.embed_batch,
                args.embed_tenant_queue,
            ),
            chat: provider.map(ChatClient::new),
            chat_model: args.chat_model.clone(),
            remote_embedder: args.embedder == EmbedderKind::Openai,
            rate: RateLimiter::default(),
            nl_queries: args
                .nl_query_database_url
                .as_deref()
                .map(|url| {
                    nl_query::NlQueries::new(
                        url,
                        args.nl_query_per_tenant,
                        args.nl_query_connections,
                    )
                })
                .transpose()?,
            model_dir: args.embed_model_dir.clone(),
            sizer: OnceCell::new(),
        })
    }

    /// The chunk sizer: the local model's tokenizer when its files are there, else characters.
    pub async fn sizer(&self) -> Arc<Sizer> {
        let dir = self.model_dir.clone();
        self.sizer
            .get_or_init(|| async move {
                let sizer = tokio::task::spawn_blocking(move || {
                    dir.or_else(embed::minilm::package_model_dir)
                        .and_then(|d| MiniLm::tokenizer(&d, false).ok())
                        .map_or(Sizer::Chars, |t| Sizer::Tokens(Box::new(t)))
                })
                .await
                .unwrap_or(Sizer::Chars);
                Arc::new(sizer)
            })
            .await
            .clone()
    }
}

/// The AI routes, merged into the engine's router; closed to suspended tenants.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/routes/knowledge/documents", post(knowledge::ingest))
        .route("/routes/knowledge/search", get(knowledge::search))
        .route("/routes/tools/synthesis", post(synthesis::synthesize))
        .route("/routes/memory/{contact}", delete(memory::purge))
        .route("/routes/data/nl-query", post(nl_query::nl_query))
        .route(
            "/routes/context/templates",
            put(templates::put).get(templates::get),
        )
        .route("/routes/context/pulse-content", post(pulse::pulse_content))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            suspension::require_active_tenant,
        ))
}

/// Scoped transactions live with the database code, which the engine's template catalog shares.
pub use crate::db::tenant_tx;
