//! How many natural-language queries run at once: a few per tenant, a few more in all. Over the
//! limit a request is refused at once (429) rather than queued: queries are cheap to retry and a
//! queue would let one tenant's backlog delay another's.

use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

pub struct Admission {
    per_tenant: usize,
    total: usize,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    total: usize,
    by_tenant: HashMap<Uuid, usize>,
}

/// A query's place; given back when dropped.
pub struct Turn<'a> {
    admission: &'a Admission,
    tenant: Uuid,
}

impl Admission {
    pub fn new(per_tenant: usize, total: usize) -> Self {
        Self {
            per_tenant: per_tenant.max(1),
            total: total.max(1),
            running: Mutex::default(),
        }
    }

    /// A turn for `tenant`, or `None` when the tenant or the engine is at its limit.
    pub fn enter(&self, tenant: Uuid) -> Option<Turn<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mine = running.by_tenant.get(&tenant).copied().unwrap_or(0);
        if mine >= self.per_tenant || running.total >= self.total {
            return None;
        }
        running.total += 1;
        running.by_tenant.insert(tenant, mine + 1);
        Some(Turn {
            admission: self,
            tenant,
        })
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut running = self
            .admission
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.total -= 1;
        if let Some(count) = running.by_tenant.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                running.by_tenant.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_tenant_and_the_total_and_gives_turns_back() {
        let admission = Admission::new(2, 3);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let a1 = admission.enter(a).unwrap();
        let _a2 = admission.enter(a).unwrap();
        assert!(admission.enter(a).is_none(), "a third for one tenant");
        let _b1 = admission.enter(b).unwrap();
        assert!(admission.enter(b).is_none(), "over the total");
        drop(a1);
        assert!(admission.enter(b).is_some());
    }
}
