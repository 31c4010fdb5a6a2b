//! What every request handler shares.

use crate::ai::AiState;
use crate::engine::config::Settings;
use crate::engine::depth::QueueDepth;
use crate::engine::health::DatabaseProbe;
use crate::engine::ingest::Ingestor;
use crate::engine::metrics::Metrics;
use crate::engine::outbound::dispatcher::Dispatcher;
use crate::engine::queue::Queue;
use crate::engine::secret::Secret;
use crate::engine::tenants::TenantDirectory;
use crate::engine::worker_seen::WorkerSeen;
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub type AppState = Arc<Engine>;

pub struct Engine {
    pub pool: PgPool,
    /// Whether the database answers (health and readiness), probed at most once a second.
    pub database: DatabaseProbe,
    /// Jobs per tenant and status, counted at most once per refresh period.
    pub depth: QueueDepth,
    /// When each tenant's worker last polled (the operator's WorkflowReady).
    pub worker_seen: WorkerSeen,
    pub settings: Settings,
    pub admin_token: Secret,
    pub tenants: Arc<TenantDirectory>,
    pub ingestor: Ingestor,
    pub queue: Queue,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the engine begins to shut down.
    pub shutdown: CancellationToken,
    /// Embedder, chat server and limits of the AI endpoints.
    pub ai: AiState,
}
