//! The engine: an axum service that takes WhatsApp traffic into a durable PostgreSQL job queue
//! for each tenant's n8n workers.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod body;
pub mod campaigns;
pub mod config;
pub mod crypto;
pub mod depth;
pub mod error;
pub mod health;
pub mod ingest;
pub mod ingest_activity;
pub mod media;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod policy;
pub mod providers;
pub mod queue;
pub mod recent;
pub mod secret;
pub mod senders;
pub mod server;
pub mod shared_meta;
pub mod state;
pub mod tenants;
pub mod text;
pub mod webhooks;
pub mod worker_api;
pub mod worker_batch;
pub mod worker_seen;

use crate::engine::config::EngineArgs;
use crate::engine::crypto::Keyring;
use crate::engine::depth::QueueDepth;
use crate::engine::error::ApiError;
use crate::engine::health::DatabaseProbe;
use crate::engine::ingest::Ingestor;
use crate::engine::metrics::Metrics;
use crate::engine::outbound::dispatcher::Dispatcher;
use crate::engine::queue::Queue;
use crate::engine::secret::Secret;
use crate::engine::state::{AppState, Engine};
use crate::engine::tenants::TenantDirectory;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Keys(#[from] crypto::KeyError),
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ai(#[from] crate::ai::AiConfigError),
}

/// All routes, for a given state (tests build the app with it too). `/metrics` is among them
/// unless it has an address of its own ([`metrics_router`]).
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.body_limit;
    let mut routes = Router::new();
    if state.settings.metrics_listen.is_none() {
        routes = routes.route("/metrics", get(health::metrics));
    }
    routes
        .route("/", get(health::root))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/routes/health", get(health::routes_health))
        .route("/openapi.json", get(openapi::document))
        .route("/webhook/inbound", post(webhooks::seed))
        .route("/webhook/infobip/{tenant}", post(webhooks::infobip))
        .route(
            "/webhook/meta",
            get(shared_meta::verify).post(shared_meta::receive),
        )
        .route(
            "/webhook/meta/{tenant}",
            get(webhooks::meta_verify).post(webhooks::meta),
        )
        .route("/webhook/twilio/{tenant}", post(webhooks::twilio))
        .route("/queue/next-job", get(worker_api::next_job))
        .route("/queue/jobs/{id}/complete", post(worker_api::complete))
        .route(
            "/queue/jobs/{id}/complete-and-next",
            post(worker_api::complete_and_next),
        )
        .route("/queue/batch", post(worker_batch::batch))
        .route("/queue/jobs/{id}/fail", post(worker_api::fail))
        .route("/queue/jobs/{id}/heartbeat", post(worker_api::heartbeat))
        .route("/media/{id}", get(media::api::get))
        // The tenant's media limit, not the body limit, bounds an upload (checked as it arrives).
        .route(
            "/media",
            post(media::upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/public/media/{id}", get(media::public::get))
        .route("/messages/send", post(outbound::api::send))
        .route("/messages/{id}", get(outbound::api::get))
        .route(
            "/admin/tenants/{slug}",
            put(admin::put_tenant)
                .get(admin::get_tenant)
                .delete(admin::delete_tenant),
        )
        .route("/admin/tenants/{slug}/backup", post(backup::export::backup))
        .route(
            "/admin/tenants/{slug}/restore",
            post(backup::restore::restore),
        )
        .route(
            "/admin/tenants/{slug}/conversations/{conversation}/release",
            post(admin::release_conversation),
        )
        .route(
            "/routes/tenants/{slug}/policy",
            get(policy::settings::get).put(policy::settings::put),
        )
        .route(
            "/routes/tenants/{slug}/consent/import",
            post(policy::consent_api::import),
        )
        .route(
            "/routes/tenants/{slug}/consent/{contact}",
            get(policy::consent_api::get).put(policy::consent_api::put),
        )
        .route(
            "/routes/tenants/{slug}/templates/sync",
            post(policy::template_sync::sync),
        )
        .route(
            "/routes/tenants/{slug}/contacts/{contact}",
            get(policy::contacts::get).put(policy::contacts::put),
        )
        .route(
            "/routes/tenants/{slug}/pulse/campaigns",
            post(campaigns::api::create),
        )
        .route(
            "/routes/tenants/{slug}/pulse/segments/{name}",
            get(campaigns::segments::get).put(campaigns::segments::put),
        )
        .route(
            "/routes/tenants/{slug}/pulse/campaigns/{id}",
            get(campaigns::api::get),
        )
        .route(
            "/routes/tenants/{slug}/pulse/campaigns/{id}/{action}",
            post(campaigns::api::action),
        )
        .route(
            "/routes/tenants/{slug}/pulse/campaigns/{id}/runs/{run}/recipients",
            get(campaigns::api::recipients),
        )
        .merge(crate::ai::routes(&state))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `/metrics` alone, for the address of `--metrics-listen`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

/// Builds the engine's state and starts its background tasks.
pub async fn build(args: &EngineArgs, shutdown: CancellationToken) -> Result<AppState, StartError> {
    let settings = args.settings()?;
    let ai = crate::ai::AiState::from_args(args)?;
    let keys = Arc::new(Keyring::parse(&args.master_key)?);
    let pool = crate::db::connect(&args.database_url, args.db_connections).await?;
    if !args.no_migrate {
        crate::db::migrate(&pool).await?;
    }
    crate::db::warn_if_privileged(&pool).await;
    crate::db::autovacuum::warn_if_slow(&pool).await;
    if let Some(queries) = &ai.nl_queries {
        queries
            .envelope
            .verify_login(&pool)
            .await
            .map_err(crate::ai::AiConfigError::from)?;
    }
    let metrics = Arc::new(Metrics::default());
    let queue = Queue::new(
        pool.clone(),
        settings.lease,
        metrics.clone(),
        shutdown.clone(),
    );
    let waker = queue.clone();
    let (media_announcer, media_inbox) = media::fetcher::channel();
    let ingestor = Ingestor::start_with_media(
        pool.clone(),
        Arc::new(move |tenants: &[uuid::Uuid]| waker.wake(tenants)),
        media_announcer.hook(),
    );
    queue::spawn_maintenance(
        queue.clone(),
        settings.media.blobs.clone(),
        (settings.retention, settings.dead_retention),
        shutdown.clone(),
    );
    let tenants = Arc::new(TenantDirectory::new(pool.clone(), keys));
    let dispatcher = Dispatcher::new(
        pool.clone(),
        tenants.clone(),
        metrics.clone(),
        settings.dispatch.clone(),
    );
    dispatcher.spawn(shutdown.clone());
    let policy = &settings.dispatch.policy;
    media::fetcher::spawn(
        media_inbox,
        pool.clone(),
        media::fetcher::FetcherParts {
            tenants: tenants.clone(),
            downloader: media::download::Downloader::new(
                settings.media.timeout,
                settings.dispatch.meta_version.clone(),
                policy.base_urls.clone(),
                policy.destinations.clone(),
            ),
            settings: settings.media.clone(),
            metrics: metrics.clone(),
            ingest: ingestor.activity(),
        },
        shutdown.clone(),
    );
    media::retention::spawn(
        pool.clone(),
        settings.media.blobs.clone(),
        settings.retention,
        shutdown.clone(),
    );
    let state = Arc::new(Engine {
        database: DatabaseProbe::new(pool.clone()),
        depth: QueueDepth::new(pool.clone(), settings.depth_refresh),
        worker_seen: crate::engine::worker_seen::WorkerSeen::new(pool.clone()),
        tenants,
        dispatcher,
        admin_token: Secret::new(args.admin_token.clone()),
        pool,
        settings,
        ingestor,
        queue,
        metrics,
        shutdown: shutdown.clone(),
        ai,
    });
    // Personalized campaigns use the AI state (the pulse-content logic): the runner gets it all.
    campaigns::runner::Runner::spawn(state.clone(), shutdown);
    Ok(state)
}

/// Runs `flomastr engine` until SIGINT/SIGTERM; then stops accepting, answers waiting workers
/// with 204, finishes in-flight requests (at most the grace period) and exits.
pub async fn run(args: EngineArgs) -> Result<(), StartError> {
    let shutdown = CancellationToken::new();
    let state = build(&args, shutdown.clone()).await?;
    let listener = bind(args.listen).await?;
    let metrics_listener = match state.settings.metrics_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    tracing::info!(address = %args.listen, metrics = ?state.settings.metrics_listen, "engine listening");
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        signal.cancel();
    });
    let settings = state.settings.server.clone();
    let metrics = metrics_listener.map(|listener| {
        tokio::spawn(server::serve(
            listener,
            metrics_router(state.clone()),
            settings.clone(),
            shutdown.clone(),
        ))
    });
    server::serve(listener, router(state), settings, shutdown).await;
    if let Some(metrics) = metrics {
        metrics.await.ok();
    }
    Ok(())
}

async fn bind(address: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler cannot fail");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.ok();
}
