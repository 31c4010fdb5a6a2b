//! The operator's Prometheus metrics and its health endpoint.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The Tenant's name (its slug).
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// The HTTP verb, lowercase: `get`, or one of the writes `post`, `put`, `patch`, `delete`.
    pub verb: String,
}

pub struct OperatorMetrics {
    registry: Mutex<Registry>,
    pub reconciles: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
    /// Times this replica became the leader (a standby taking over counts here).
    pub leader_acquisitions: Counter,
    /// Requests to the API server by verb: how many writes a reconcile costs.
    pub api_requests: Family<ApiRequestLabels, Counter>,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::with_prefix("flomastr_operator")),
            reconciles: Counter::default(),
            failures: Family::default(),
            // 10 ms .. ~80 s
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            leader: Gauge::default(),
            leader_acquisitions: Counter::default(),
            api_requests: Family::default(),
        };
        {
            let mut r = metrics.registry.lock().unwrap();
            r.register("reconciles", "Reconciles run", metrics.reconciles.clone());
            r.register(
                "reconcile_failures",
                "Reconciles that failed, by tenant and reason",
                metrics.failures.clone(),
            );
            r.register(
                "reconcile_duration_seconds",
                "Time a reconcile took",
                metrics.duration.clone(),
            );
            r.register(
                "leader",
                "1 while this replica holds the leader lease",
                metrics.leader.clone(),
            );
            r.register(
                "leader_acquisitions",
                "Times this replica acquired the leader lease",
                metrics.leader_acquisitions.clone(),
            );
            r.register(
                "api_requests",
                "Requests to the Kubernetes API server, by HTTP verb (post, put, patch and delete write)",
                metrics.api_requests.clone(),
            );
        }
        metrics
    }
}

impl OperatorMetrics {
    pub fn observe(&self, tenant: &str, took: Duration, failure: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&FailureLabels {
                    tenant: tenant.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// This replica leads from now on.
    pub fn became_leader(&self) {
        self.leader.set(1);
        self.leader_acquisitions.inc();
    }

    /// One request on its way to the API server.
    pub fn api_request(&self, method: &axum::http::Method) {
        use axum::http::Method;
        let verb = match *method {
            Method::GET => "get",
            Method::POST => "post",
            Method::PUT => "put",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "other",
        };
        self.api_requests
            .get_or_create(&ApiRequestLabels {
                verb: verb.to_owned(),
            })
            .inc();
    }

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
    use axum::http::Method;

    #[test]
    fn api_requests_are_counted_by_verb() {
        let metrics = OperatorMetrics::default();
        metrics.api_request(&Method::PATCH);
        metrics.api_request(&Method::PATCH);
        metrics.api_request(&Method::GET);
        metrics.api_request(&Method::OPTIONS);
        let text = metrics.encode();
        assert!(
            text.contains("flomastr_operator_api_requests_total{verb=\"patch\"} 2"),
            "{text}"
        );
        assert!(text.contains("flomastr_operator_api_requests_total{verb=\"get\"} 1"));
        assert!(text.contains("flomastr_operator_api_requests_total{verb=\"other\"} 1"));
    }
}
