//! `GET /openapi.json`: the engine's API as OpenAPI 3.

use crate::engine::{admin, error, health, outbound, queue, webhooks, worker_api};
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "flomastr engine", description = "Durable WhatsApp ingest, tenant job queue and admin API."),
    paths(
        health::root, health::healthz, health::readyz, health::routes_health, health::metrics,
        webhooks::seed, webhooks::infobip, webhooks::meta_verify, webhooks::meta, webhooks::twilio,
        crate::engine::shared_meta::verify, crate::engine::shared_meta::receive,
        worker_api::next_job, worker_api::complete, worker_api::complete_and_next, worker_api::fail, worker_api::heartbeat,
        crate::engine::worker_batch::batch,
        crate::engine::media::api::get, crate::engine::media::upload::upload, crate::engine::media::public::get,
        outbound::api::send, outbound::api::get,
        admin::put_tenant, admin::get_tenant, admin::delete_tenant, admin::release_conversation,
        crate::engine::backup::export::backup, crate::engine::backup::restore::restore,
        crate::ai::knowledge::ingest, crate::ai::knowledge::search, crate::ai::synthesis::synthesize,
        crate::ai::memory::purge, crate::ai::nl_query::nl_query,
        crate::ai::templates::put, crate::ai::templates::get, crate::ai::pulse::pulse_content,
        crate::engine::policy::settings::get, crate::engine::policy::settings::put,
        crate::engine::policy::consent_api::get, crate::engine::policy::consent_api::put,
        crate::engine::policy::consent_api::import,
        crate::engine::policy::contacts::get, crate::engine::policy::contacts::put,
        crate::engine::policy::template_sync::sync,
        crate::engine::campaigns::api::create, crate::engine::campaigns::api::get,
        crate::engine::campaigns::api::action, crate::engine::campaigns::api::recipients,
        crate::engine::campaigns::segments::put, crate::engine::campaigns::segments::get,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, queue::ClaimedJob)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["worker_token", "admin_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The document, built and serialised once: anyone may ask for it, as often as they like.
pub async fn document() -> impl IntoResponse {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_vec(&ApiDoc::openapi())
            .expect("the OpenAPI document serialises")
            .into()
    });
    ([(CONTENT_TYPE, "application/json")], body.clone())
}
