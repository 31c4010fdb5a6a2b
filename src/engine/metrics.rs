//! Prometheus metrics of the engine (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::Mutex;

/// Distinct provider codes the send failures are counted by; later new codes count as `other`
/// (a provider answering with ever new codes must not grow the metrics without bound).
const MAX_SEND_FAILURE_CODES: usize = 100;
/// Longest provider code kept as a label; a longer one (or one with other characters than
/// letters, digits, `_`, `-`, `.`) counts as `invalid`.
const MAX_CODE_LEN: usize = 32;

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
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SendFailureLabels {
    pub provider: String,
    /// The provider's error code (`131047`, `63016`, `BAD_REQUEST`), or the engine's own for a
    /// send that got no answer (`connect`, `transport`, `unknown`, ...).
    pub code: String,
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
    /// Seconds the oldest runnable queued job of each tenant waits (0: none waits).
    pub oldest_job_age: Family<TenantLabels, Gauge>,
    pub pickup_latency: Histogram,
    pub claimed: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub lease_expiries: Counter,
    pub dead_letters: Counter,
    pub retention_deleted: Counter,
    pub sends: Family<SendLabels, Counter>,
    pub send_failures: Family<SendFailureLabels, Counter>,
    send_failure_codes: Mutex<HashSet<String>>,
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
            oldest_job_age: Family::default(),
            pickup_latency: latency_histogram(),
            claimed: Counter::default(),
            completed: Counter::default(),
            failed: Counter::default(),
            lease_expiries: Counter::default(),
            dead_letters: Counter::default(),
            retention_deleted: Counter::default(),
            sends: Family::default(),
            send_failures: Family::default(),
            send_failure_codes: Mutex::default(),
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
            "queue_oldest_job_age_seconds",
            "Seconds the oldest runnable queued job of each tenant has waited (0: none waits)",
            self.oldest_job_age.clone(),
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
        r.register(
            "outbound_send_failures",
            "Sends that did not succeed, by provider and the provider's error code",
            self.send_failures.clone(),
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

    /// A send that did not succeed, by the provider's code (bounded: see [`MAX_SEND_FAILURE_CODES`]).
    pub fn count_send_failure(&self, provider: &str, code: &str) {
        let code = self.bounded_code(code);
        self.send_failures
            .get_or_create(&SendFailureLabels {
                provider: provider.to_owned(),
                code,
            })
            .inc();
    }

    fn bounded_code(&self, code: &str) -> String {
        let well_formed = !code.is_empty()
            && code.len() <= MAX_CODE_LEN
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !well_formed {
            return "invalid".to_owned();
        }
        let mut seen = self.send_failure_codes.lock().unwrap();
        if seen.contains(code) || seen.len() < MAX_SEND_FAILURE_CODES {
            seen.insert(code.to_owned());
            code.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap())
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(metrics: &Metrics, code: &str) -> u64 {
        metrics
            .send_failures
            .get_or_create(&SendFailureLabels {
                provider: "meta".into(),
                code: code.into(),
            })
            .get()
    }

    #[test]
    fn send_failure_codes_are_bounded() {
        let metrics = Metrics::default();
        metrics.count_send_failure("meta", "131047");
        metrics.count_send_failure("meta", "bad code with spaces");
        metrics.count_send_failure("meta", &"9".repeat(MAX_CODE_LEN + 1));
        metrics.count_send_failure("meta", "");
        assert_eq!(failures(&metrics, "131047"), 1);
        assert_eq!(failures(&metrics, "invalid"), 3);
        for n in 0..MAX_SEND_FAILURE_CODES * 2 {
            metrics.count_send_failure("meta", &format!("c{n}"));
        }
        // 131047 took one of the places: the codes after the last place count as `other`.
        assert_eq!(
            failures(&metrics, "other"),
            MAX_SEND_FAILURE_CODES as u64 + 1
        );
        metrics.count_send_failure("meta", "131047");
        assert_eq!(
            failures(&metrics, "131047"),
            2,
            "a known code keeps its label"
        );
        let text = metrics.encode();
        let series = text
            .lines()
            .filter(|line| line.starts_with("flomastr_outbound_send_failures_total{"))
            .count();
        assert!(series <= MAX_SEND_FAILURE_CODES + 2, "{series} series");
    }
}
