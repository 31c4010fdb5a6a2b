//! The engine's HTTP/1.1 server: the router under hyper, with the limits a public service needs.
//!
//! A slow or idle client cannot hold a connection: a request's head must arrive within the
//! header timeout (counted from the connection's start, or from the first byte of a later
//! request), its body within the body timeout (408), and a connection without a request in
//! progress closes after the idle timeout. Responses take as long as they need, so long polls
//! work. At most `max_connections` are served at once; further ones wait in the listen backlog.
//!
//! HTTP/1.1 only: providers, workers and every proxy in front speak it to their upstreams.

mod body_deadline;
mod clock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use body_deadline::DeadlineBody;
use clock::{BusyGuard, ConnectionClock, WatchedIo};
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::engine::error::ApiError;

/// Limits of the HTTP server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// After shutdown begins, how long in-flight requests may take before their connections
    /// are dropped.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops accepting, lets every
/// connection finish its request in progress (at most the grace period) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ServerSettings,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let connections = TaskTracker::new();
    let abandon = CancellationToken::new();
    while let Some((stream, slot)) = next_connection(&listener, &slots, &shutdown).await {
        connections.spawn(serve_connection(
            stream,
            app.clone(),
            settings.clone(),
            shutdown.clone(),
            abandon.clone(),
            slot,
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(settings.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "requests still in flight after the grace period: dropping their connections"
        );
        abandon.cancel();
        connections.wait().await;
    }
}

/// The next accepted connection with its slot, or None once shutdown began.
async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    // A slot first: while every slot is taken, new connections wait in the kernel's backlog
    // instead of costing memory and a task here.
    let slot = tokio::select! {
        biased;
        () = shutdown.cancelled() => return None,
        slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
    };
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => return Some((stream, slot)),
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of file descriptors or memory: wait for connections to close
                    // rather than spin.
                    tracing::error!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    settings: ServerSettings,
    shutdown: CancellationToken,
    abandon: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    // Small answers go out at once instead of waiting for the peer's delayed ACK.
    stream.set_nodelay(true).ok();
    let clock = Arc::new(ConnectionClock::new());
    let service = RequestService {
        app,
        clock: clock.clone(),
        body_timeout: settings.body_timeout,
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(WatchedIo::new(stream, clock.clone())), service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = clock.expired(settings.header_timeout, settings.idle_timeout) => {
                tracing::debug!("closing a connection that is idle or sends its request too slowly");
                return;
            }
            () = abandon.cancelled() => return,
        }
    }
}

/// One request through the router, with the connection's clock told when it is busy and the
/// body held to its deadline.
#[derive(Clone)]
struct RequestService {
    app: Router,
    clock: Arc<ConnectionClock>,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = BusyGuard::new(self.clock.clone());
        let late = Arc::new(AtomicBool::new(false));
        // A restore's archive may take longer than any request body; only the admin gets
        // that far (its token is checked before the body is read).
        let unbounded = is_restore(request.uri().path());
        let request = request.map(|body| {
            if unbounded || http_body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(DeadlineBody::new(body, self.body_timeout, late.clone()))
            }
        });
        let app = self.app.clone();
        let body_timeout = self.body_timeout;
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            drop(busy);
            if late.load(Ordering::Acquire) {
                return Ok(body_too_slow(body_timeout));
            }
            Ok(response)
        })
    }
}

/// `POST /admin/tenants/{slug}/restore`: its body has no deadline.
fn is_restore(path: &str) -> bool {
    path.strip_prefix("/admin/tenants/")
        .and_then(|rest| rest.strip_suffix("/restore"))
        .is_some_and(|slug| !slug.is_empty() && !slug.contains('/'))
}

/// 408, and the connection closes (the rest of the body is not worth waiting for).
fn body_too_slow(limit: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within {} s",
            limit.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
