//! Request bodies as raw bytes (signatures are computed over exactly what arrived), with the
//! size limit answered as a JSON 413, and JSON parsing that names the offending field and removes
//! U+0000 from every string (PostgreSQL cannot store it; see [`crate::engine::text`]).

use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use crate::engine::text::strip_nul_escapes;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// The raw body, at most the configured limit.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::payload_too_large(state.settings.body_limit))
            }
            Err(rejection) => Err(ApiError::bad_request("invalid_body", rejection.body_text())),
        }
    }
}

/// Parses JSON; an error names the field (`channel.provider`) and what is wrong with it. Every
/// string in the result, object keys included, is free of U+0000.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = strip_nul_escapes(bytes);
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let reason = if inner.is_syntax() || inner.is_eof() {
            format!("not valid JSON ({inner})")
        } else {
            inner.to_string()
        };
        ApiError::invalid_field(&path, reason)
    })
}

/// A JSON body parsed with [`parse_json`], within the size limit.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        parse_json(&bytes).map(Self)
    }
}
