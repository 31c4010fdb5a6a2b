//! A suspended tenant has no AI access: every AI route answers 403 `tenant_suspended` before
//! its handler reads the body, calls a model or touches the tenant's data — the same answer
//! its workers get from `GET /queue/next-job`. Applied to the AI router as a whole, so a route
//! added later is covered too.

use crate::engine::auth::Worker;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use crate::engine::tenants::TenantState;
use crate::engine::webhooks::tenant_or_404;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Lets the request through only for a worker of an active tenant (401 without a valid token,
/// as the handlers themselves would answer).
pub async fn require_active_tenant(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let worker = match Worker::from_request_parts(&mut parts, &state).await {
        Ok(worker) => worker,
        Err(rejection) => return rejection.into_response(),
    };
    match tenant_or_404(&state, &worker.tenant_slug).await {
        Ok(tenant) if tenant.state == TenantState::Suspended => ApiError::forbidden(
            "tenant_suspended",
            "the tenant is suspended; its AI endpoints are closed until it is resumed",
        )
        .into_response(),
        Ok(_) => next.run(Request::from_parts(parts, body)).await,
        Err(error) => error.into_response(),
    }
}
