//! Who may use `/routes/tenants/{slug}/...`: the platform admin (admin token), or a worker of
//! that very tenant (its worker token). A worker naming another tenant's slug gets 403, the same
//! answer whether that tenant exists or not.

use crate::engine::auth::bearer;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use crate::engine::tenants::Tenant;
use crate::engine::webhooks::tenant_or_404;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use std::collections::HashMap;
use std::sync::Arc;

/// Who called, recorded beside what they changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Admin,
    Worker,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Worker => "worker",
        }
    }
}

/// The tenant of the path, and who is acting on it.
pub struct TenantCaller {
    pub tenant: Arc<Tenant>,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("an admin or worker bearer token is required"))?
            .to_owned();
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid_field("slug", "missing from the path"))?;
        let slug = params.get("slug").cloned().unwrap_or_default();
        let actor = if state.admin_token.matches(token.as_bytes()) {
            Actor::Admin
        } else {
            let (_, worker_slug) = state
                .tenants
                .by_worker_token(&token)
                .await?
                .ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
            if worker_slug != slug {
                return Err(ApiError::forbidden(
                    "wrong_tenant",
                    "this worker token belongs to another tenant",
                ));
            }
            Actor::Worker
        };
        let tenant = tenant_or_404(state, &slug).await?;
        Ok(Self { tenant, actor })
    }
}
