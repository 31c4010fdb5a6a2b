//! `GET|POST /webhook/meta`: the webhook of a Meta app shared by many tenants (a platform that
//! onboards businesses as a Tech Provider has one app, and Meta calls one URL for every business
//! account subscribed to it). The app secret and verify token are platform configuration.
//!
//! Each change is routed by its `metadata.phone_number_id` to the tenant holding that number
//! (and, when the tenant registered its business account, only if the entry's WABA id is that
//! account); template updates, which carry no number, go to the tenants on the entry's account.
//! A body whose changes belong to several tenants is committed in one transaction; changes no
//! tenant holds are counted (`flomastr_webhook_unowned`), logged and dropped, never delivered to
//! someone else: one business's customer is never answered from another business's number.

use crate::engine::body::RawBody;
use crate::engine::error::ApiError;
use crate::engine::ingest::Submission;
use crate::engine::providers::{self, Provider, WebhookEvent};
use crate::engine::senders::{self, Owner};
use crate::engine::state::AppState;
use crate::engine::tenants::{Tenant, normalize_address};
use crate::engine::webhooks::{
    MetaChallenge, WebhookAck, add_event, bad_verify_token, event_id, malformed, observe,
    signature_error, submit, template_updates, tenant_or_404,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

const PROVIDER: &str = "meta";

fn not_configured() -> ApiError {
    ApiError::forbidden(
        "webhook_auth_not_configured",
        "this engine has no shared Meta app configured (FLOMASTR_META_APP_SECRET)",
    )
}

#[utoipa::path(get, path = "/webhook/meta", tag = "webhooks",
    params(("hub.mode" = String, Query), ("hub.verify_token" = String, Query), ("hub.challenge" = String, Query)),
    responses((status = 200, description = "the challenge, as plain text"),
              (status = 403, description = "`bad_verify_token`, or `webhook_auth_not_configured`: no shared app or verify token configured")))]
pub async fn verify(
    State(state): State<AppState>,
    Query(query): Query<MetaChallenge>,
) -> Result<String, ApiError> {
    let app = state
        .settings
        .shared_meta
        .as_ref()
        .ok_or_else(not_configured)?;
    let expected = app.verify_token.as_ref().ok_or_else(not_configured)?;
    query.answer(expected.expose()).ok_or_else(bad_verify_token)
}

#[utoipa::path(post, path = "/webhook/meta", tag = "webhooks",
    params(("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC of the raw body with the shared app's secret>")),
    request_body(content = Object, description = "Meta `{object, entry: [...]}`; changes of many tenants' numbers may be mixed"),
    responses((status = 200, body = WebhookAck, description = "committed; `dropped` counts changes of numbers no tenant holds"),
              (status = 400), (status = 401, description = "not signed"), (status = 403, description = "`bad_signature` (nothing written) or `webhook_auth_not_configured`"),
              (status = 413), (status = 503)))]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookAck>, ApiError> {
    let started = Instant::now();
    let app = state
        .settings
        .shared_meta
        .as_ref()
        .ok_or_else(not_configured)?;
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    providers::meta::verify_signature(app.app_secret.expose().as_bytes(), header, &body)
        .map_err(|e| signature_error(&state, PROVIDER, e))?;
    let events = providers::meta::parse(&body).map_err(|e| malformed(&state, PROVIDER, e))?;
    let updates = providers::meta_templates::parse_by_account(&body)
        .map_err(|e| malformed(&state, PROVIDER, e))?;
    let dropped_updates = route_template_updates(&state, updates).await?;
    let (routed, dropped) = route_events(&state, events).await?;
    let mut submission = Submission::default();
    for routed in routed {
        for (event, sender_id) in routed.events.into_iter().zip(routed.senders) {
            let sender = routed.tenant.sender(sender_id);
            add_event(&mut submission, &routed.tenant, event, sender);
        }
    }
    let mut ack = submit(&state, Provider::Meta, submission).await?;
    ack.dropped = dropped + dropped_updates;
    observe(&state, PROVIDER, started);
    Ok(Json(ack))
}

/// One tenant's share of a body: its events, each with the sender it arrived on.
struct Routed {
    tenant: Arc<Tenant>,
    events: Vec<WebhookEvent>,
    senders: Vec<uuid::Uuid>,
}

/// Splits the events between the tenants holding their numbers, in the order of the body;
/// returns the shares and how many events were dropped.
async fn route_events(
    state: &AppState,
    events: Vec<WebhookEvent>,
) -> Result<(Vec<Routed>, usize), ApiError> {
    let numbers: Vec<&str> = events
        .iter()
        .filter_map(|event| addressed(event).0)
        .map(normalize_address)
        .collect();
    let owners = senders::meta_owners(&state.pool, &numbers).await?;
    let mut shares: Vec<Routed> = Vec::new();
    let mut dropped = 0;
    for event in events {
        let Some(owner) = owner_of(state, &owners, &event) else {
            dropped += 1;
            continue;
        };
        let index = match shares.iter().position(|r| r.tenant.slug == owner.slug) {
            Some(index) => index,
            None => {
                let tenant = tenant_or_404(state, &owner.slug).await?;
                shares.push(Routed {
                    tenant,
                    events: Vec::new(),
                    senders: Vec::new(),
                });
                shares.len() - 1
            }
        };
        shares[index].events.push(event);
        shares[index].senders.push(owner.sender_id);
    }
    Ok((shares, dropped))
}

/// The number (phone-number-id) and business account an event names.
fn addressed(event: &WebhookEvent) -> (Option<&str>, Option<&str>) {
    match event {
        WebhookEvent::Message(m) => (m.to.as_deref(), m.account_id.as_deref()),
        WebhookEvent::Status(s) => (s.to.as_deref(), s.account_id.as_deref()),
    }
}

/// Who holds the event's number, when its business account agrees; else the event is counted
/// and logged as unowned.
fn owner_of<'a>(
    state: &AppState,
    owners: &'a HashMap<String, Owner>,
    event: &WebhookEvent,
) -> Option<&'a Owner> {
    let (number, account) = addressed(event);
    let owner = number.and_then(|number| owners.get(normalize_address(number)));
    let reason = match owner {
        None => "unknown_number",
        Some(owner) => match (&owner.waba_id, account) {
            (Some(registered), Some(account)) if registered != account => "account_mismatch",
            _ => return Some(owner),
        },
    };
    state.metrics.count_unowned(PROVIDER, reason);
    tracing::warn!(
        phone_number_id = number.unwrap_or_default(),
        waba_id = account.unwrap_or_default(),
        event = event_id(event),
        reason,
        "shared Meta webhook: a change for a number no tenant holds was dropped"
    );
    None
}

/// Template updates go to every tenant with a Meta sender on the entry's business account;
/// returns how many no tenant holds (dropped, counted and logged).
async fn route_template_updates(
    state: &AppState,
    updates: Vec<(Option<String>, providers::meta_templates::TemplateUpdate)>,
) -> Result<usize, ApiError> {
    if updates.is_empty() {
        return Ok(0);
    }
    let accounts: Vec<&str> = updates.iter().filter_map(|(a, _)| a.as_deref()).collect();
    let tenants = senders::waba_tenants(&state.pool, &accounts).await?;
    let mut by_slug: Vec<(&str, Vec<providers::meta_templates::TemplateUpdate>)> = Vec::new();
    let mut dropped = 0;
    for (account, update) in &updates {
        let slugs = account.as_ref().and_then(|a| tenants.get(a));
        let Some(slugs) = slugs else {
            dropped += 1;
            state.metrics.count_unowned(PROVIDER, "unknown_account");
            tracing::warn!(waba_id = account.as_deref().unwrap_or_default(), template = %update.name,
                "shared Meta webhook: a template update for an account no tenant holds was dropped");
            continue;
        };
        for slug in slugs {
            match by_slug.iter_mut().find(|share| share.0 == slug.as_str()) {
                Some(share) => share.1.push(update.clone()),
                None => by_slug.push((slug.as_str(), vec![update.clone()])),
            }
        }
    }
    for (slug, updates) in by_slug {
        let tenant = tenant_or_404(state, slug).await?;
        template_updates(state, &tenant, &updates).await?;
    }
    Ok(dropped)
}
