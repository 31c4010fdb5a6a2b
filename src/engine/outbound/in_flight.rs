//! Sends in flight on this engine replica, in total and per tenant. A send holds its slot while
//! it waits for the provider, so a provider that hangs would hold every slot it is given: the
//! per-tenant cap keeps that to its own tenant's share, and the claim hands the rest to others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use uuid::Uuid;

pub struct InFlight {
    total_limit: usize,
    tenant_limit: usize,
    counts: Mutex<Counts>,
    /// Told whenever a slot frees, so the claimer can hand it out at once.
    released: Arc<Notify>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_tenant: HashMap<Uuid, usize>,
}

/// What the next claim may take.
pub struct Room {
    /// Free slots of this replica.
    pub free: usize,
    /// Tenants with sends in flight here, and how many each has.
    pub busy_tenants: Vec<Uuid>,
    pub busy_counts: Vec<i32>,
}

impl InFlight {
    pub fn new(total_limit: usize, tenant_limit: usize, released: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            total_limit,
            tenant_limit,
            counts: Mutex::default(),
            released,
        })
    }

    pub fn tenant_limit(&self) -> usize {
        self.tenant_limit
    }

    pub fn room(&self) -> Room {
        let counts = self.counts.lock().unwrap();
        let (busy_tenants, busy_counts) = counts
            .by_tenant
            .iter()
            .map(|(tenant, count)| (*tenant, i32::try_from(*count).unwrap_or(i32::MAX)))
            .unzip();
        Room {
            free: self.total_limit.saturating_sub(counts.total),
            busy_tenants,
            busy_counts,
        }
    }

    /// Takes a slot for one send of `tenant`; it is given back when the returned guard drops.
    pub fn start(self: &Arc<Self>, tenant: Uuid) -> Slot {
        let mut counts = self.counts.lock().unwrap();
        counts.total += 1;
        *counts.by_tenant.entry(tenant).or_default() += 1;
        Slot {
            owner: self.clone(),
            tenant,
        }
    }

    fn release(&self, tenant: Uuid) {
        {
            let mut counts = self.counts.lock().unwrap();
            counts.total -= 1;
            if let Some(count) = counts.by_tenant.get_mut(&tenant) {
                *count -= 1;
                if *count == 0 {
                    counts.by_tenant.remove(&tenant);
                }
            }
        }
        self.released.notify_one();
    }
}

/// One send's slot.
pub struct Slot {
    owner: Arc<InFlight>,
    tenant: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.release(self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_tenant_and_given_back() {
        let in_flight = InFlight::new(3, 2, Arc::new(Notify::new()));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = in_flight.start(a);
        let _second = in_flight.start(a);
        let _third = in_flight.start(b);
        let room = in_flight.room();
        assert_eq!(room.free, 0);
        let mut busy: Vec<(Uuid, i32)> = room
            .busy_tenants
            .into_iter()
            .zip(room.busy_counts)
            .collect();
        busy.sort_by_key(|(_, count)| *count);
        assert_eq!(busy, [(b, 1), (a, 2)]);
        drop(first);
        let room = in_flight.room();
        assert_eq!(room.free, 1);
        assert_eq!(room.busy_counts.iter().sum::<i32>(), 2);
    }
}
