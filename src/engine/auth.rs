//! Who is calling: the operator (admin bearer token) or a tenant's worker (worker bearer token,
//! which alone decides the tenant).

use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

/// The bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(&parts.headers)
}

/// The non-empty token of an `Authorization: Bearer` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Proof that the request carries the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("an admin bearer token is required"))?;
        if state.admin_token.matches(token.as_bytes()) {
            Ok(Admin)
        } else {
            Err(ApiError::forbidden(
                "forbidden",
                "the admin token is not valid",
            ))
        }
    }
}

/// A worker of one tenant, identified by its token.
#[derive(Clone, Debug)]
pub struct Worker {
    pub tenant_id: Uuid,
    pub tenant_slug: String,
}

impl FromRequestParts<AppState> for Worker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("a worker bearer token is required"))?;
        let (tenant_id, tenant_slug) = state
            .tenants
            .by_worker_token(token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the worker token is not valid"))?;
        Ok(Worker {
            tenant_id,
            tenant_slug,
        })
    }
}
