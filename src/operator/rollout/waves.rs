//! Which tenants a rollout covers, in which wave, and where the rollout stands (pure).

use crate::operator::rollout::view::TenantView;
use crate::tenant::{RolloutPhase, TenantRolloutSpec, TenantUpgrade, UpgradeState};
use std::collections::BTreeSet;

/// Why a rollout's spec cannot be carried out.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

/// Checks what the API server's schema checks too (an older CRD may not) and what only the
/// operator can: that every named canary is a covered Tenant.
pub fn validate(spec: &TenantRolloutSpec, tenants: &[TenantView]) -> Result<(), Invalid> {
    let image = spec.n8n_image.trim();
    if image.is_empty() || image.ends_with(":latest") || image.ends_with(":stable") {
        return Err(Invalid {
            reason: "InvalidImage",
            message: format!(
                "n8nImage {:?} must be an image pinned to a version",
                spec.n8n_image
            ),
        });
    }
    if spec.batch_size < 1 {
        return Err(Invalid {
            reason: "InvalidBatchSize",
            message: format!("batchSize must be at least 1, not {}", spec.batch_size),
        });
    }
    if spec.ready_timeout_seconds < 1 {
        return Err(Invalid {
            reason: "InvalidTimeout",
            message: "readyTimeoutSeconds must be at least 1".into(),
        });
    }
    let covered: BTreeSet<&str> = tenants
        .iter()
        .filter(|t| t.matches(&spec.tenant_selector))
        .map(|t| t.name.as_str())
        .collect();
    let unknown: Vec<&str> = spec
        .canary
        .iter()
        .map(String::as_str)
        .filter(|name| !covered.contains(name))
        .collect();
    if !unknown.is_empty() {
        return Err(Invalid {
            reason: "UnknownCanary",
            message: format!(
                "canary {} is not a Tenant covered by this rollout (check the names and tenantSelector); nothing was changed",
                unknown.join(", ")
            ),
        });
    }
    Ok(())
}

/// The covered tenants in waves: the canaries in wave 0, then the others by name, `batchSize`
/// at a time. Entries of `previous` for a tenant are kept unless they failed or were pending
/// (a new spec retries the failed tenants: that is how a stopped rollout resumes).
pub fn plan(
    spec: &TenantRolloutSpec,
    tenants: &[TenantView],
    previous: &[TenantUpgrade],
) -> Vec<TenantUpgrade> {
    let covered: Vec<&TenantView> = tenants
        .iter()
        .filter(|t| t.matches(&spec.tenant_selector))
        .collect();
    let is_canary = |t: &TenantView| {
        spec.canary.contains(&t.name)
            || (!spec.canary_selector.is_empty() && t.matches(&spec.canary_selector))
    };
    let mut canaries: Vec<&TenantView> = covered.iter().copied().filter(|t| is_canary(t)).collect();
    let mut others: Vec<&TenantView> = covered.iter().copied().filter(|t| !is_canary(t)).collect();
    canaries.sort_by(|a, b| a.name.cmp(&b.name));
    others.sort_by(|a, b| a.name.cmp(&b.name));
    let first_batch = i32::from(!canaries.is_empty());
    let batch = usize::try_from(spec.batch_size.max(1)).unwrap_or(1);
    let waves = canaries
        .iter()
        .map(|t| (t, 0, true))
        .chain(others.iter().enumerate().map(|(i, t)| {
            let wave = first_batch + i32::try_from(i / batch).unwrap_or(i32::MAX);
            (t, wave, false)
        }));
    waves
        .map(|(tenant, wave, canary)| {
            let kept = previous.iter().find(|p| {
                p.name == tenant.name
                    && p.to == spec.n8n_image
                    && !p.state.is_failure()
                    && p.state != UpgradeState::Pending
            });
            match kept {
                Some(entry) => TenantUpgrade {
                    wave,
                    canary,
                    ..entry.clone()
                },
                None => TenantUpgrade::pending(
                    tenant.name.clone(),
                    wave,
                    canary,
                    spec.n8n_image.clone(),
                ),
            }
        })
        .collect()
}

/// The first wave that is not done (`None` when every tenant is).
pub fn current_wave(entries: &[TenantUpgrade]) -> Option<i32> {
    entries
        .iter()
        .filter(|e| !e.state.is_terminal())
        .map(|e| e.wave)
        .min()
}

/// Why the rollout must not start another tenant: a failed canary, or more failures after the
/// canaries than `maxFailures`.
pub fn stop(spec: &TenantRolloutSpec, entries: &[TenantUpgrade]) -> Option<(&'static str, String)> {
    let describe = |e: &TenantUpgrade| {
        format!(
            "{} ({}): {}",
            e.name,
            e.reason.as_deref().unwrap_or("Failed"),
            e.message.as_deref().unwrap_or_default()
        )
    };
    if let Some(canary) = entries.iter().find(|e| e.canary && e.state.is_failure()) {
        return Some(("CanaryFailed", format!("canary {}", describe(canary))));
    }
    let failed: Vec<&TenantUpgrade> = entries
        .iter()
        .filter(|e| !e.canary && e.state.is_failure())
        .collect();
    let allowed = usize::try_from(spec.max_failures.max(0)).unwrap_or(0);
    (failed.len() > allowed).then(|| {
        let list: Vec<String> = failed.iter().map(|e| describe(e)).collect();
        (
            "TooManyFailures",
            format!(
                "{} tenants failed (maxFailures {}): {}",
                failed.len(),
                allowed,
                list.join("; ")
            ),
        )
    })
}

/// The phase, given the entries after this pass.
pub fn phase(spec: &TenantRolloutSpec, entries: &[TenantUpgrade], stopped: bool) -> RolloutPhase {
    if stopped {
        RolloutPhase::Stopped
    } else if entries.iter().all(|e| e.state.is_terminal()) {
        RolloutPhase::Succeeded
    } else if spec.paused {
        RolloutPhase::Paused
    } else if entries.iter().all(|e| e.state == UpgradeState::Pending) {
        RolloutPhase::Pending
    } else {
        RolloutPhase::Progressing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> TenantRolloutSpec {
        let mut body = serde_json::json!({"n8nImage": "n8n:2", "batchSize": 2});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    fn tenants(names: &[&str]) -> Vec<TenantView> {
        names
            .iter()
            .map(|name| TenantView {
                name: (*name).into(),
                ..TenantView::default()
            })
            .collect()
    }

    #[test]
    fn canaries_first_then_batches_by_name() {
        let spec = spec(serde_json::json!({"canary": ["e"]}));
        let entries = plan(&spec, &tenants(&["d", "a", "e", "c", "b"]), &[]);
        let waves: Vec<(&str, i32, bool)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.wave, e.canary))
            .collect();
        assert_eq!(
            waves,
            [
                ("e", 0, true),
                ("a", 1, false),
                ("b", 1, false),
                ("c", 2, false),
                ("d", 2, false)
            ]
        );
        assert_eq!(current_wave(&entries), Some(0));
    }

    #[test]
    fn unknown_canaries_and_bad_numbers_are_refused() {
        let all = tenants(&["a", "b"]);
        let invalid = validate(&spec(serde_json::json!({"canary": ["zz"]})), &all).unwrap_err();
        assert_eq!(invalid.reason, "UnknownCanary");
        assert!(invalid.message.contains("zz"));
        let invalid = validate(&spec(serde_json::json!({"batchSize": 0})), &all).unwrap_err();
        assert_eq!(invalid.reason, "InvalidBatchSize");
        let invalid = validate(&spec(serde_json::json!({"n8nImage": " "})), &all).unwrap_err();
        assert_eq!(invalid.reason, "InvalidImage");
        assert!(validate(&spec(serde_json::json!({"canary": ["a"]})), &all).is_ok());
    }

    #[test]
    fn a_failed_canary_stops_and_a_new_spec_retries_it() {
        let spec1 = spec(serde_json::json!({"canary": ["a"]}));
        let mut entries = plan(&spec1, &tenants(&["a", "b"]), &[]);
        entries[0].state = UpgradeState::RolledBack;
        entries[0].reason = Some("NotReadyInTime".into());
        let (reason, message) = stop(&spec1, &entries).unwrap();
        assert_eq!(reason, "CanaryFailed");
        assert!(message.contains("canary a (NotReadyInTime)"));
        assert_eq!(phase(&spec1, &entries, true), RolloutPhase::Stopped);
        let fixed = spec(serde_json::json!({"canary": ["a"], "n8nImage": "n8n:3"}));
        let replanned = plan(&fixed, &tenants(&["a", "b"]), &entries);
        assert!(
            replanned
                .iter()
                .all(|e| e.state == UpgradeState::Pending && e.to == "n8n:3")
        );
        assert!(stop(&fixed, &replanned).is_none());
    }

    #[test]
    fn failures_after_the_canaries_are_tolerated_up_to_max_failures() {
        let spec1 = spec(serde_json::json!({"maxFailures": 1}));
        let mut entries = plan(&spec1, &tenants(&["a", "b", "c"]), &[]);
        entries[0].state = UpgradeState::Failed;
        assert!(stop(&spec1, &entries).is_none());
        entries[1].state = UpgradeState::RolledBack;
        assert_eq!(stop(&spec1, &entries).unwrap().0, "TooManyFailures");
    }
}
