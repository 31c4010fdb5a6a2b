//! Leader election on a `coordination.k8s.io` Lease: of several replicas, one reconciles.
//! A replica that loses the lease stops (and is restarted by its Deployment), so two leaders
//! never act at once for longer than the lease allows.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::Duration;

pub const LEASE_NAME: &str = "flomastr-operator";
pub const LEASE_SECONDS: i32 = 15;
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Longest a single Lease call may take. A call to an API server that stopped answering would
/// otherwise outlast the lease: the old leader would still act after another took over (renew),
/// or a stopping replica would hang for its whole grace period (release).
const CALL_TIMEOUT: Duration = RENEW_EVERY;

pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
}

impl LeaderElector {
    pub fn new(client: kube::Client, namespace: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity: identity.to_owned(),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        loop {
            if self.try_acquire_or_renew().await? {
                return Ok(());
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }

    /// Takes the lease if it is free, expired or ours; false if someone else holds it or the
    /// API server did not answer in time.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        tokio::time::timeout(CALL_TIMEOUT, self.attempt())
            .await
            .unwrap_or(Ok(false))
    }

    async fn attempt(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
            renewed.0.as_second() + seconds < now.as_second()
        });
        if holder != self.identity && !expired {
            return Ok(false);
        }
        let acquired = if holder == self.identity {
            spec.acquire_time.map_or(now, |t| t.0)
        } else {
            now
        };
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
        lease.spec = Some(self.spec(acquired, now, transitions));
        // resourceVersion makes this a compare-and-swap: a concurrent taker gets 409.
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the lease up (graceful shutdown), so another replica takes over at once. Bounded:
    /// when the API server is going away too, the lease simply expires.
    pub async fn release(&self) {
        if tokio::time::timeout(CALL_TIMEOUT, self.hand_back())
            .await
            .is_err()
        {
            tracing::warn!("could not release the leader lease in time; it will expire");
        }
    }

    async fn hand_back(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await
            && lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let _ = self
                .api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await;
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}
