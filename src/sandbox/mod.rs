//! `flomastr sandbox`: local stand-ins for the InfoBip, Meta and Twilio WhatsApp send APIs.
//!
//! The real APIs cannot be reached from development machines and CI, so the engine's provider
//! clients are tested against this server instead. It checks requests the way the providers do
//! (credentials, required fields, sender, the 24 h window), answers with their exact response and
//! error shapes, posts their delivery reports back (signed like the providers sign them), and can
//! inject 5xx and throttling errors. `/_sandbox/*` lets tests inspect and steer it.

mod fetches;
pub use fetches::Fetched;
mod infobip;
mod media;
mod meta;
mod reports;
pub mod state;
pub mod templates;
mod twilio;
mod uploads;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use state::{
    Accounts, AccountsError, Fault, InfobipAccount, Knobs, KnobsUpdate, MetaAccount,
    RecordedRequest, ReportRecord, SandboxConfig, SandboxMedia, SandboxState, TwilioAccount,
};

/// Settings of `flomastr sandbox`.
#[derive(clap::Args, Clone)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "FLOMASTR_SANDBOX_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub listen: SocketAddr,

    /// Wait before each delivery report / status posted back (milliseconds).
    #[arg(long, env = "FLOMASTR_SANDBOX_REPORT_DELAY_MS", default_value_t = 200)]
    pub report_delay_ms: u64,

    /// Fraction of sends answered with the provider's 5xx error (0.0 to 1.0).
    #[arg(long, env = "FLOMASTR_SANDBOX_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub failure_rate: f64,

    /// Fraction of sends answered with the provider's throttling error (0.0 to 1.0).
    #[arg(long, env = "FLOMASTR_SANDBOX_THROTTLE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub throttle_rate: f64,

    /// The accounts: a JSON file path, or the JSON itself (starting with `{`).
    #[arg(long, env = "FLOMASTR_SANDBOX_ACCOUNTS", hide_env_values = true)]
    pub accounts: Option<String>,
}

impl std::fmt::Debug for SandboxArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Inline accounts JSON holds secrets: never printed.
        f.debug_struct("SandboxArgs")
            .field("listen", &self.listen)
            .field("report_delay_ms", &self.report_delay_ms)
            .field("failure_rate", &self.failure_rate)
            .field("throttle_rate", &self.throttle_rate)
            .finish_non_exhaustive()
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    state::check_rate(value)
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read the accounts file {path}: {source}")]
    AccountsFile {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

impl SandboxConfig {
    /// The configuration `flomastr sandbox` starts with.
    pub fn from_args(args: &SandboxArgs) -> Result<Self, SandboxError> {
        let accounts = match args.accounts.as_deref() {
            None => Accounts::default(),
            Some(text) if text.trim_start().starts_with('{') => Accounts::from_json(text)?,
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SandboxError::AccountsFile {
                        path: path.to_owned(),
                        source,
                    })?;
                Accounts::from_json(&text)?
            }
        };
        let knobs = Knobs {
            failure_rate: args.failure_rate,
            throttle_rate: args.throttle_rate,
            report_delay_ms: args.report_delay_ms,
            ..Knobs::default()
        };
        Ok(Self { accounts, knobs })
    }
}

/// A sandbox ready to serve. Reports are posted with a 10 s timeout, so a hung engine endpoint
/// cannot pile up tasks forever.
pub fn new_state(config: SandboxConfig) -> SandboxState {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    SandboxState::new(config, http)
}

/// Runs the sandbox until SIGINT or SIGTERM.
pub async fn run(args: SandboxArgs) -> Result<(), SandboxError> {
    let config = SandboxConfig::from_args(&args)?;
    let counts = config.accounts.counts();
    let state = new_state(config);
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| SandboxError::Listen {
            address: args.listen,
            source,
        })?;
    tracing::info!(address = %args.listen, accounts = %counts, "sandbox listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(wait_for_signal())
        .await
        .map_err(SandboxError::Serve)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Without a SIGTERM handler Ctrl-C still works; not worth failing the start over.
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The provider APIs and the `/_sandbox` control routes.
pub fn router(state: SandboxState) -> Router {
    Router::new()
        .merge(infobip::routes())
        .merge(meta::routes())
        .merge(twilio::routes())
        .merge(templates::routes())
        .merge(media::routes())
        .merge(uploads::routes())
        .merge(fetches::routes())
        .route(
            "/_sandbox/messages",
            get(list_requests).delete(clear_requests),
        )
        .route("/_sandbox/reports", get(list_reports).delete(clear_reports))
        .route("/_sandbox/config", get(show_knobs).post(update_knobs))
        .route("/_sandbox/accounts", post(replace_accounts))
        .route("/_sandbox/reset", post(reset))
        .fallback(unknown_route)
        .with_state(state)
}

/// What a provider handler decided, before it is recorded and sent.
pub(crate) struct Outcome {
    pub status: StatusCode,
    pub body: Value,
    pub message_ids: Vec<String>,
    pub duplicate: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Outcome {
    pub fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            message_ids: Vec::new(),
            duplicate: false,
            headers: Vec::new(),
        }
    }

    pub fn accepted(status: StatusCode, body: Value, message_ids: Vec<String>) -> Self {
        Self {
            message_ids,
            ..Self::new(status, body)
        }
    }
}

/// The request as the log shows it.
pub(crate) struct Received<'a> {
    pub provider: &'static str,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: Value,
}

/// Records the request with its answer, then sends the answer.
pub(crate) fn finish(state: &SandboxState, received: Received<'_>, outcome: Outcome) -> Response {
    let path = received
        .uri
        .path_and_query()
        .map_or_else(|| received.uri.path().to_owned(), |p| p.as_str().to_owned());
    tracing::info!(
        provider = received.provider,
        path = %received.uri.path(),
        status = outcome.status.as_u16(),
        message_id = outcome.message_ids.first().map(String::as_str),
        duplicate = outcome.duplicate,
        "send"
    );
    if outcome.status.is_success() && matches!(received.provider, "infobip" | "twilio") {
        fetches::download_media(state, received.provider, &received.body);
    }
    state.record_request(RecordedRequest {
        provider: received.provider,
        path,
        headers: state::recorded_headers(received.headers),
        body: received.body,
        status: outcome.status.as_u16(),
        message_id: outcome.message_ids.first().cloned(),
        message_ids: outcome.message_ids.clone(),
        duplicate: outcome.duplicate,
        received_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    let mut response = (outcome.status, axum::Json(outcome.body)).into_response();
    response.headers_mut().extend(outcome.headers);
    response
}

/// The body as JSON when it is JSON, else as text (so the log shows what arrived).
pub(crate) fn json_or_text(body: &[u8]) -> (Option<Value>, Value) {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => (Some(value.clone()), value),
        Err(_) => (
            None,
            Value::String(String::from_utf8_lossy(body).into_owned()),
        ),
    }
}

fn control_error(message: impl Into<String>) -> Response {
    let body = json!({ "error": message.into() });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

async fn list_requests(State(state): State<SandboxState>) -> Response {
    axum::Json(state.requests()).into_response()
}

async fn clear_requests(State(state): State<SandboxState>) -> StatusCode {
    state.clear_requests();
    StatusCode::NO_CONTENT
}

async fn list_reports(State(state): State<SandboxState>) -> Response {
    axum::Json(state.reports()).into_response()
}

async fn clear_reports(State(state): State<SandboxState>) -> StatusCode {
    state.clear_reports();
    StatusCode::NO_CONTENT
}

async fn show_knobs(State(state): State<SandboxState>) -> Response {
    axum::Json(state.knobs()).into_response()
}

async fn update_knobs(State(state): State<SandboxState>, body: Bytes) -> Response {
    let update: KnobsUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => return control_error(format!("invalid config: {error}")),
    };
    match state.update_knobs(update) {
        Ok(knobs) => axum::Json(knobs).into_response(),
        Err(error) => control_error(error),
    }
}

async fn replace_accounts(State(state): State<SandboxState>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    match Accounts::from_json(&text) {
        Ok(accounts) => {
            let counts = accounts.counts();
            state.set_accounts(accounts);
            tracing::info!(accounts = %counts, "accounts replaced");
            axum::Json(counts).into_response()
        }
        Err(error) => control_error(error.0),
    }
}

/// Clears both logs and the InfoBip message-id memory; accounts and knobs stay.
async fn reset(State(state): State<SandboxState>) -> StatusCode {
    state.clear_requests();
    state.clear_reports();
    state.clear_fetches();
    state.forget_message_ids();
    StatusCode::NO_CONTENT
}

/// Other provider endpoints (media, interactive, ...) are not simulated: say so clearly rather
/// than letting a client guess from an empty 404.
pub(crate) async fn unknown_route(method: Method, uri: Uri) -> Response {
    tracing::warn!(%method, path = %uri.path(), "request to a route the sandbox does not have");
    let message = format!("the sandbox does not implement {method} {}", uri.path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}
