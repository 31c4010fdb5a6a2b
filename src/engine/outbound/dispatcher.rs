//! The dispatcher: claims due messages (SKIP LOCKED, so several engine replicas share the work)
//! in fair turns between tenants, each tenant capped in sends in flight, paces them, sends them
//! and records the outcome. One per engine process.

use super::clients::{Clients, Outgoing, SendOutcome, SendPolicy};
use super::in_flight::InFlight;
use super::pacing::{Buckets, Rate};
use crate::engine::metrics::Metrics;
use crate::engine::policy::keywords::ConsentState;
use crate::engine::policy::{consent, marketing_limit};
use crate::engine::tenants::{TenantDirectory, TenantState, normalize_address};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Sends in flight at once on one replica, all tenants together.
const IN_FLIGHT: usize = 256;
/// How long a claimed message may stay `sending` before it is considered stuck (crashed sender).
const CLAIM_SECONDS: f64 = 120.0;

#[derive(Clone, Debug)]
pub struct DispatcherSettings {
    pub sender_rate: Rate,
    pub recipient_rate: Rate,
    pub max_attempts: i32,
    pub timeout: Duration,
    pub meta_version: String,
    pub public_url: Option<String>,
    /// Where sends may go.
    pub policy: SendPolicy,
    /// Sends of one tenant in flight at once on one replica.
    pub tenant_concurrency: usize,
    /// Media files the engine keeps (sent by their engine id) and their public URLs.
    pub media: crate::engine::media::settings::MediaSettings,
}

pub struct Dispatcher {
    pool: PgPool,
    tenants: Arc<TenantDirectory>,
    metrics: Arc<Metrics>,
    clients: Clients,
    senders: Buckets,
    recipients: Buckets,
    settings: DispatcherSettings,
    wake: Arc<Notify>,
    in_flight: Arc<InFlight>,
}

#[derive(sqlx::FromRow)]
struct Due {
    id: Uuid,
    tenant_id: Uuid,
    slug: String,
    recipient: String,
    content: Value,
    reply_to: Option<String>,
    attempts: i32,
    /// The sender it goes out from; None (queued before senders existed): the tenant's first.
    sender_id: Option<Uuid>,
    opted_out: bool,
    expires_at: Option<DateTime<Utc>>,
    hold_until: Option<DateTime<Utc>>,
    hold_expires_at: DateTime<Utc>,
}

impl Dispatcher {
    pub fn new(
        pool: PgPool,
        tenants: Arc<TenantDirectory>,
        metrics: Arc<Metrics>,
        settings: DispatcherSettings,
    ) -> Arc<Self> {
        tracing::info!(
            base_urls = ?settings.policy.base_urls.describe(),
            private_networks = ?settings.policy.destinations.describe(),
            tenant_concurrency = settings.tenant_concurrency,
            "provider sends: allowed base URLs and non-public networks"
        );
        let wake = Arc::new(Notify::new());
        Arc::new(Self {
            clients: Clients::new(
                settings.timeout,
                settings.meta_version.clone(),
                &settings.policy,
            ),
            senders: Buckets::new(settings.sender_rate),
            recipients: Buckets::new(settings.recipient_rate),
            in_flight: InFlight::new(IN_FLIGHT, settings.tenant_concurrency, wake.clone()),
            pool,
            tenants,
            metrics,
            settings,
            wake,
        })
    }

    /// The provider clients (the template catalog sync reads through them).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Where sends may connect (also what media URLs given to providers may point to).
    pub fn destinations(&self) -> &super::destination::Destinations {
        &self.settings.policy.destinations
    }

    /// Something was queued: look now rather than at the next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(self.clone().run(shutdown.clone()));
        tokio::spawn(self.clone().recover_stuck(shutdown));
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let claimed = match self.claim_and_start().await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "outbound claim failed; retrying");
                    0
                }
            };
            if claimed == 0 {
                // Woken by new messages and freed slots; other replicas' messages and retries
                // coming due are found by the tick.
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.cancelled() => return,
                }
                self.recipients.prune();
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Claims what this replica has room for and starts sending it; how many were claimed.
    async fn claim_and_start(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let room = self.in_flight.room();
        if room.free == 0 {
            return Ok(0);
        }
        let due: Vec<Due> = sqlx::query_as(include_str!("sql/claim.sql"))
            .bind(i64::try_from(room.free).unwrap_or(i64::MAX))
            .bind(CLAIM_SECONDS)
            .bind(i32::try_from(self.in_flight.tenant_limit()).unwrap_or(i32::MAX))
            .bind(&room.busy_tenants)
            .bind(&room.busy_counts)
            .fetch_all(&self.pool)
            .await?;
        let claimed = due.len();
        for message in due {
            let slot = self.in_flight.start(message.tenant_id);
            let this = self.clone();
            tokio::spawn(async move {
                this.deliver(message).await;
                drop(slot);
            });
        }
        Ok(claimed)
    }

    async fn deliver(&self, message: Due) {
        let tenant = match self.tenants.by_slug(&message.slug).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "outbound: tenant not loadable; will retry");
                return self.reschedule(message.id, Duration::from_secs(5)).await;
            }
        };
        if tenant.state == TenantState::Suspended {
            return self.reschedule(message.id, Duration::from_secs(30)).await;
        }
        if message.opted_out {
            return self
                .finish(
                    message.id,
                    "failed",
                    (
                        "opted_out",
                        "the contact opted out after the message was queued",
                    ),
                )
                .await;
        }
        if let Some(verdict) = quiet_hours(&message, Utc::now()) {
            return match verdict {
                Quiet::Hold { until, expires_at } => self.hold(message.id, until, expires_at).await,
                Quiet::Expired => {
                    self.finish(
                        message.id,
                        "failed",
                        (
                            "hold_expired",
                            "held for quiet hours longer than the tenant's maximum hold",
                        ),
                    )
                    .await
                }
            };
        }
        let channel = match message.sender_id {
            Some(id) => tenant.sender(id).cloned().ok_or((
                "sender_removed",
                "the sender this message was queued for is no longer the tenant's",
            )),
            None => tenant
                .channel
                .clone()
                .ok_or(("no_channel", "the tenant has no WhatsApp channel")),
        };
        let channel = match channel {
            Ok(channel) => channel,
            Err(error) => return self.finish(message.id, "failed", error).await,
        };
        let recipient_key = format!("{}:{}", tenant.id, normalize_address(&message.recipient));
        if let Err(wait) = self.recipients.try_take(&recipient_key) {
            return self.reschedule(message.id, wait).await;
        }
        // Per tenant too: a tenant naming another's sender must not eat into its rate.
        self.senders
            .take(&format!(
                "{}:{}:{}",
                tenant.id,
                channel.provider.as_str(),
                channel.sender
            ))
            .await;
        let outgoing = Outgoing {
            message_id: message.id,
            recipient: message.recipient.clone(),
            content: message.content.clone(),
            reply_to: message.reply_to.clone(),
            callback_url: self.settings.public_url.as_ref().map(|base| {
                format!(
                    "{base}/webhook/{}/{}",
                    channel.provider.as_str(),
                    tenant.slug
                )
            }),
        };
        let outcome = super::stored_media::send(
            &self.pool,
            &self.settings.media,
            &self.clients,
            (tenant.id, &channel),
            &outgoing,
        )
        .await;
        self.record(&message, tenant.id, channel.provider.as_str(), outcome)
            .await;
    }

    async fn record(&self, message: &Due, tenant_id: Uuid, provider: &str, outcome: SendOutcome) {
        let label = match &outcome {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::Retry { .. } => "retry",
            SendOutcome::WindowClosed { .. } => "window_closed",
            SendOutcome::Permanent { .. } => "failed",
            SendOutcome::Unknown { .. } => "unknown",
        };
        self.metrics.count_sent(provider, label);
        match &outcome {
            SendOutcome::Accepted { .. } => {}
            SendOutcome::Retry { code, .. }
            | SendOutcome::WindowClosed { code }
            | SendOutcome::Permanent { code, .. } => {
                self.metrics.count_send_failure(provider, code);
            }
            SendOutcome::Unknown { .. } => self.metrics.count_send_failure(provider, "unknown"),
        }
        let result = match outcome {
            SendOutcome::Accepted {
                provider_message_id,
            } => {
                self.accepted(message.id, tenant_id, provider, &provider_message_id)
                    .await
            }
            SendOutcome::Retry {
                code,
                message: text,
                after,
            } if message.attempts < self.settings.max_attempts => {
                let delay = after.unwrap_or_else(|| backoff(message.attempts));
                self.retry(message.id, &code, &text, delay).await
            }
            SendOutcome::Retry {
                code,
                message: text,
                ..
            } => self.fail(message.id, &code, &text).await,
            SendOutcome::WindowClosed { code } => {
                let text = format!(
                    "outside the 24-hour window free text is refused; send a template (provider code {code})"
                );
                self.fail(message.id, "window_closed", &text).await
            }
            SendOutcome::Permanent {
                code,
                message: text,
            } if code == marketing_limit::CODE => {
                self.marketing_limited(message, tenant_id, &code, &text)
                    .await
            }
            SendOutcome::Permanent {
                code,
                message: text,
            } if consent::is_provider_opt_out(&code) => {
                self.provider_opt_out(message, tenant_id, &code, &text)
                    .await
            }
            SendOutcome::Permanent {
                code,
                message: text,
            } => self.fail(message.id, &code, &text).await,
            SendOutcome::Unknown { message: text } => {
                // Not re-sent: it may have gone out. The worker decides (a new Idempotency-Key sends again).
                self.fail(message.id, "unknown_outcome", &text).await
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, message = %message.id, "could not record a send outcome; the claim will expire and be recovered");
        }
    }

    async fn accepted(
        &self,
        id: Uuid,
        tenant_id: Uuid,
        provider: &str,
        provider_message_id: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Reports about this message being stored now wait, or are seen once committed.
        let key = super::report_lock::key(tenant_id, provider_message_id);
        super::report_lock::lock(&mut tx, vec![key]).await?;
        sqlx::query(
            "UPDATE outbound_messages SET status = 'accepted', provider = $2, provider_message_id = $3,
                    claimed_until = NULL, error_code = NULL, error_message = NULL, updated_at = now()
             WHERE id = $1 AND status = 'sending'",
        )
        .bind(id)
        .bind(provider)
        .bind(provider_message_id)
        .execute(&mut *tx)
        .await?;
        event(
            &mut tx,
            id,
            "accepted",
            json!({"provider_message_id": provider_message_id}),
        )
        .await?;
        // Reports that arrived before this answer was stored.
        sqlx::query("SELECT flomastr_apply_reports($1, $2)")
            .bind(vec![tenant_id])
            .bind(vec![provider_message_id.to_owned()])
            .execute(&mut *tx)
            .await?;
        consent::record_reported_opt_outs(&mut tx, &[tenant_id], &[provider_message_id]).await?;
        tx.commit().await
    }

    /// The provider says the user opted out (Twilio 21610): the message fails with the
    /// provider's code and the contact is opted out, in one transaction.
    async fn provider_opt_out(
        &self,
        message: &Due,
        tenant_id: Uuid,
        code: &str,
        text: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE outbound_messages SET status = 'failed', claimed_until = NULL, error_code = $2,
                    error_message = $3, updated_at = now()
             WHERE id = $1 AND status = 'sending'",
        )
        .bind(message.id)
        .bind(code)
        .bind(text)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 1 {
            event(
                &mut tx,
                message.id,
                "failed",
                json!({"code": code, "message": text}),
            )
            .await?;
            let change = consent::Change {
                tenant_id,
                contact: message.recipient.clone(),
                state: ConsentState::OptedOut,
                source: consent::Source::Provider,
                detail: json!({"code": code, "message_id": message.id}),
            };
            consent::record(&mut tx, &[change]).await?;
        }
        tx.commit().await
    }

    /// Meta's per-user marketing limit answered to the send (131049): the contact is recorded
    /// as limited and the message waits the provider's period (or fails after
    /// [`marketing_limit::MAX_TRIES`] sends).
    async fn marketing_limited(
        &self,
        message: &Due,
        tenant_id: Uuid,
        code: &str,
        text: &str,
    ) -> Result<(), sqlx::Error> {
        if message.attempts >= marketing_limit::MAX_TRIES {
            return self.fail(message.id, code, text).await;
        }
        let until = marketing_limit::retry_at(Utc::now());
        let mut tx = self.pool.begin().await?;
        marketing_limit::record(&mut tx, &[tenant_id], &[message.recipient.as_str()], until)
            .await?;
        let moved = sqlx::query(
            "UPDATE outbound_messages SET status = 'queued', claimed_until = NULL, error_code = $2, error_message = $3,
                    next_attempt_at = $4, updated_at = now()
             WHERE id = $1 AND status = 'sending'",
        )
        .bind(message.id)
        .bind(code)
        .bind(text)
        .bind(until)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 1 {
            let detail =
                json!({"code": code, "reason": "provider_marketing_limit", "retry_at": until});
            event(&mut tx, message.id, "retry", detail).await?;
        }
        self.metrics.count_sent("meta", "marketing_limited");
        tx.commit().await
    }

    async fn retry(
        &self,
        id: Uuid,
        code: &str,
        text: &str,
        delay: Duration,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE outbound_messages SET status = 'queued', claimed_until = NULL, error_code = $2, error_message = $3,
                    next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
             WHERE id = $1 AND status = 'sending'",
        )
        .bind(id)
        .bind(code)
        .bind(text)
        .bind(delay.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        event(
            &mut tx,
            id,
            "retry",
            json!({"code": code, "message": text, "delay_seconds": delay.as_secs_f64()}),
        )
        .await?;
        tx.commit().await
    }

    async fn fail(&self, id: Uuid, code: &str, text: &str) -> Result<(), sqlx::Error> {
        self.finish(id, "failed", (code, text)).await;
        Ok(())
    }

    async fn finish(&self, id: Uuid, status: &str, error: (&str, &str)) {
        let result = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE outbound_messages SET status = $2, claimed_until = NULL, error_code = $3, error_message = $4,
                        updated_at = now()
                 WHERE id = $1 AND status = 'sending'",
            )
            .bind(id)
            .bind(status)
            .bind(error.0)
            .bind(error.1)
            .execute(&mut *tx)
            .await?;
            let detail = json!({"code": error.0, "message": error.1});
            event(&mut tx, id, status, detail).await?;
            tx.commit().await
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, message = %id, "could not record a send outcome");
        }
    }

    /// Back to the queue until the quiet hours end, without counting an attempt.
    async fn hold(&self, id: Uuid, until: DateTime<Utc>, expires_at: DateTime<Utc>) {
        let result = async {
            let mut tx = self.pool.begin().await?;
            let moved = sqlx::query(
                "UPDATE outbound_messages SET status = 'queued', claimed_until = NULL, attempts = attempts - 1,
                        next_attempt_at = $2, expires_at = $3, updated_at = now()
                 WHERE id = $1 AND status = 'sending'",
            )
            .bind(id)
            .bind(until)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 1 {
                let detail = json!({"reason": "quiet_hours", "until": until, "expires_at": expires_at});
                event(&mut tx, id, "held", detail).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, message = %id, "could not hold; the claim will expire and be recovered");
        }
    }

    /// Back to the queue without counting an attempt (pacing, suspension).
    async fn reschedule(&self, id: Uuid, delay: Duration) {
        let result = sqlx::query(
            "UPDATE outbound_messages SET status = 'queued', claimed_until = NULL, attempts = attempts - 1,
                    next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
             WHERE id = $1 AND status = 'sending'",
        )
        .bind(id)
        .bind(delay.as_secs_f64())
        .execute(&self.pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, message = %id, "could not reschedule; the claim will expire and be recovered");
        }
    }

    /// Messages left `sending` by a crashed sender. InfoBip ones are sent again (our messageId
    /// makes that safe); others may have gone out, so they fail as `unknown_outcome`.
    async fn recover_stuck(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(error) = sqlx::query(include_str!("sql/recover_stuck.sql"))
                .execute(&self.pool)
                .await
            {
                tracing::warn!(%error, "recovering stuck sends failed; will retry");
            }
        }
    }
}

async fn event(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    status: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbound_events (message_id, status, detail) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(status)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

enum Quiet {
    Hold {
        until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    Expired,
}

/// What quiet hours say about a claimed message: nothing (send it), hold it until they end, or
/// let it expire (it was held past the tenant's maximum, or would be).
fn quiet_hours(message: &Due, now: DateTime<Utc>) -> Option<Quiet> {
    if message.expires_at.is_some_and(|at| at <= now) {
        return Some(Quiet::Expired);
    }
    let until = message.hold_until?;
    if until > message.hold_expires_at {
        return Some(Quiet::Expired);
    }
    Some(Quiet::Hold {
        until,
        expires_at: message.hold_expires_at,
    })
}

/// 1 s, 2 s, 4 s ... capped at 5 min, with jitter (50-100 %).
fn backoff(attempts: i32) -> Duration {
    let base = 2f64.powi(attempts.clamp(1, 20) - 1).min(300.0);
    Duration::from_secs_f64(base * (0.5 + rand::random::<f64>() * 0.5))
}
