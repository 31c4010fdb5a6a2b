//! Prometheus metrics of the engine (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    pub provider: String,
    /// `new`, `duplicate` or `report`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    pub tenant: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub provider: String,
    /// `unauthenticated`, `malformed`, `misrouted`, `too_large`, ...
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SendLabels {
    pub provider: String,
    /// `accepted`, `retry`, `window_closed`, `failed` or `unknown`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Media fetches: `stored`, `retry` or `failed`.
    pub outcome: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub ingested: Family<IngestLabels, Counter>,
    pub ingest_latency: Family<ProviderLabels, Histogram>,
    pub rejected: Family<RejectLabels, Counter>,
    /// Shared-endpoint changes no tenant owns, dropped (reason `unknown_number`, `unknown_account`, `account_mismatch`).
    pub unowned: Family<RejectLabels, Counter>,
    pub depth: Family<DepthLabels, Gauge>,
    pub pickup_latency: Histogram,
    pub claimed: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub lease_expiries: Counter,
    pub dead_letters: Counter,
    pub retention_deleted: Counter,
    pub sends: Family<SendLabels, Counter>,
    pub media_fetches: Family<OutcomeLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::with_prefix("flomastr")),
            ingested: Family::default(),
            ingest_latency: Family::new_with_constructor(latency_histogram),
            rejected: Family::default(),
            unowned: Family::default(),
            depth: Family::default(),
            pickup_latency: latency_histogram(),
            claimed: Counter::default(),
            completed: Counter::default(),
            failed: Counter::default(),
            lease_expiries: Counter::default(),
            dead_letters: Counter::default(),
            retention_deleted: Counter::default(),
            sends: Family::default(),
            media_fetches: Family::default(),
        };
        metrics.register();
        metrics
    }
}

impl Metrics {
    fn register(&self) {
        let mut r = self.registry.lock().unwrap();
        r.register(
            "media_fetches",
            "Inbound media downloads, by outcome (stored, retry, failed)",
            self.media_fetches.clone(),
        );
        r.register(
            "webhook_events",
            "Webhook events stored, by provider and outcome",
            self.ingested.clone(),
        );
        r.register(
            "webhook_ingest_seconds",
            "Time from a webhook's arrival to its acknowledgement (after commit)",
            self.ingest_latency.clone(),
        );
        r.register(
            "webhook_rejected",
            "Webhooks refused, by provider and reason",
            self.rejected.clone(),
        );
        r.register(
            "webhook_unowned",
            "Changes of a shared webhook for a number or account no tenant holds, dropped, by provider and reason",
            self.unowned.clone(),
        );
        r.register(
            "queue_depth",
            "Jobs by tenant and status",
            self.depth.clone(),
        );
        r.register(
            "queue_pickup_seconds",
            "Time from a job becoming runnable to a worker receiving it",
            self.pickup_latency.clone(),
        );
        r.register(
            "queue_claimed",
            "Jobs handed to workers",
            self.claimed.clone(),
        );
        r.register(
            "queue_completed",
            "Jobs completed by workers",
            self.completed.clone(),
        );
        r.register(
            "queue_failed",
            "Job failures reported by workers",
            self.failed.clone(),
        );
        r.register(
            "queue_lease_expiries",
            "Leases that expired without a heartbeat",
            self.lease_expiries.clone(),
        );
        r.register(
            "queue_dead_letters",
            "Jobs dead-lettered after their last attempt",
            self.dead_letters.clone(),
        );
        r.register(
            "queue_retention_deleted",
            "Finished jobs deleted by retention",
            self.retention_deleted.clone(),
        );
        r.register(
            "outbound_sends",
            "Send attempts to providers, by provider and outcome",
            self.sends.clone(),
        );
    }

    pub fn count_rejected(&self, provider: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                provider: provider.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn count_unowned(&self, provider: &str, reason: &str) {
        self.unowned
            .get_or_create(&RejectLabels {
                provider: provider.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn count_sent(&self, provider: &str, outcome: &str) {
        self.sends
            .get_or_create(&SendLabels {
                provider: provider.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap())
            .expect("writing to a String cannot fail");
        out
    }
}
