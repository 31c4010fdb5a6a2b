//! What is wrong with a tenant's n8n pods, read from their status (pure): image pull failures,
//! crash loops, a pod that cannot be scheduled, containers that will not start, failing
//! probes. The Deployment only says "0 available"; this says why, so `kubectl get tn` does too.

use crate::operator::children::ENCRYPTION_SECRET;
use crate::operator::encryption;
use crate::operator::status::Finding;
use crate::tenant::ConditionType;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

/// Waiting reasons that do not clear up by themselves.
const STUCK: [&str; 9] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreCreateHookError",
];

/// The first trouble found in `pods`, as an N8nReady finding; `None` when they are only on
/// their way up (or fine).
pub fn trouble(pods: &[Pod]) -> Option<Finding> {
    pods.iter().find_map(pod_trouble)
}

fn failed(reason: &str, message: String) -> Finding {
    Finding::failed(ConditionType::N8nReady, reason, message)
}

fn pod_trouble(pod: &Pod) -> Option<Finding> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    if let Some(condition) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some(failed(
            "Unschedulable",
            format!(
                "pod {name} cannot be scheduled: {}",
                condition.message.as_deref().unwrap_or("no node fits")
            ),
        ));
    }
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    init.chain(main)
        .find_map(|container| container_trouble(name, container))
}

/// What the provisioning container says when it refuses or fails (provision.js), as a reason.
const PROVISIONING_REASONS: [&str; 3] = [
    encryption::CHANGED,
    encryption::MISSING,
    "ProvisioningFailed",
];

/// A failed run's own account: the provisioning container's termination message names why.
fn refusal(pod: &str, container: &ContainerStatus) -> Option<Finding> {
    let state = container.state.as_ref();
    let terminated = state
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| container.last_state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code != 0)?;
    let message = terminated.message.as_deref()?.trim();
    let reason = PROVISIONING_REASONS
        .into_iter()
        .find(|r| message.starts_with(&format!("{r}:")))?;
    Some(failed(
        reason,
        format!("pod {pod}, container {}: {message}", container.name),
    ))
}

fn container_trouble(pod: &str, container: &ContainerStatus) -> Option<Finding> {
    if let Some(refusal) = refusal(pod, container) {
        return Some(refusal);
    }
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let mut reason = waiting.reason.as_deref()?;
    if !STUCK.contains(&reason) {
        return None;
    }
    // The Secret or its key is gone: the container cannot even be created.
    if reason == "CreateContainerConfigError"
        && waiting
            .message
            .as_deref()
            .is_some_and(|m| m.contains(ENCRYPTION_SECRET))
    {
        reason = encryption::MISSING;
    }
    let mut message = format!("pod {pod}, container {}: {reason}", container.name);
    if let Some(detail) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let Some(last) = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
    {
        message.push_str(&format!(
            " (last exit code {}{}; restarts {})",
            last.exit_code,
            last.reason
                .as_deref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default(),
            container.restart_count
        ));
    }
    Some(failed(reason, message))
}

/// Pods with a container that started (its startup probe passed) but is not ready: candidates
/// for a failing readiness or liveness probe, which only Events tell. A container still within
/// its startup probe is on its way up, not failing.
pub fn unready_pods(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|statuses| {
                    statuses.iter().any(|c| {
                        !c.ready
                            && c.started == Some(true)
                            && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                })
        })
        .filter_map(|pod| pod.metadata.name.clone())
        .collect()
}

/// Failures of a readiness or liveness probe seen this often are trouble, not a slow start.
const PROBE_FAILURES: i32 = 3;

/// A failing readiness or liveness probe from the pod's Events (reason `Unhealthy`, the
/// kubelet's), the newest. Startup probe failures are a normal part of starting; one that
/// never passes gets the container restarted, which shows as a crash loop.
pub fn probe_failure(pod: &str, events: &[Event]) -> Option<Finding> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Unhealthy"))
        .filter(|e| e.count.unwrap_or(1) >= PROBE_FAILURES)
        .filter(|e| {
            e.message.as_deref().is_some_and(|m| {
                m.starts_with("Readiness probe failed") || m.starts_with("Liveness probe failed")
            })
        })
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
        .map(|event| {
            failed(
                "ProbeFailed",
                format!(
                    "pod {pod}: {} (seen {} times)",
                    event.message.as_deref().unwrap_or("a probe fails"),
                    event.count.unwrap_or(1)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "n8n-abc"}, "status": status})).unwrap()
    }

    fn waiting(name: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"name": name, "ready": false, "restartCount": 3, "image": "i", "imageID": "",
               "state": {"waiting": {"reason": reason, "message": message}},
               "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}})
    }

    #[test]
    fn image_pull_failures_and_crash_loops_name_their_reason_and_container() {
        for reason in [
            "ErrImagePull",
            "ImagePullBackOff",
            "ErrImageNeverPull",
            "CrashLoopBackOff",
        ] {
            let found = trouble(&[pod(json!({
                "initContainerStatuses": [waiting("provision", reason, "back-off")],
            }))])
            .unwrap();
            assert_eq!(found.reason, reason);
            assert!(!found.ok);
            assert!(
                found.message.contains("container provision"),
                "{}",
                found.message
            );
            assert!(
                found.message.contains("last exit code 1, Error"),
                "{}",
                found.message
            );
        }
    }

    #[test]
    fn a_refused_encryption_key_is_named_and_a_missing_secret_too() {
        let mut refused = waiting("provision", "CrashLoopBackOff", "back-off 10s");
        refused["lastState"]["terminated"]["message"] = json!(
            "EncryptionKeyChanged: the Secret n8n-encryption holds a key with fingerprint sha256:1, but ..."
        );
        let found = trouble(&[pod(json!({"initContainerStatuses": [refused]}))]).unwrap();
        assert_eq!(found.reason, "EncryptionKeyChanged");
        assert!(
            found.message.contains("fingerprint sha256:1"),
            "{}",
            found.message
        );
        let missing = waiting(
            "provision",
            "CreateContainerConfigError",
            "secret \"n8n-encryption\" not found",
        );
        let found = trouble(&[pod(json!({"initContainerStatuses": [missing]}))]).unwrap();
        assert_eq!(found.reason, "EncryptionKeyMissing");
        assert!(found.message.contains("not found"), "{}", found.message);
    }

    #[test]
    fn an_unschedulable_pod_says_why() {
        let found = trouble(&[pod(json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}))])
        .unwrap();
        assert_eq!(found.reason, "Unschedulable");
        assert!(found.message.contains("Insufficient cpu"));
    }

    #[test]
    fn pods_on_their_way_up_are_no_trouble() {
        assert_eq!(trouble(&[]), None);
        let starting = pod(json!({
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "initContainerStatuses": [waiting("provision", "PodInitializing", "")],
            "containerStatuses": [{"name": "n8n", "ready": false, "started": false, "restartCount": 0,
                                    "image": "i", "imageID": "", "state": {"running": {}}}],
        }));
        assert_eq!(trouble(std::slice::from_ref(&starting)), None);
        assert!(unready_pods(std::slice::from_ref(&starting)).is_empty());
        let mut started = starting;
        started
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .started = Some(true);
        assert_eq!(unready_pods(&[started]), ["n8n-abc"]);
    }

    #[test]
    fn a_probe_failure_comes_from_the_newest_unhealthy_event() {
        let events: Vec<Event> = serde_json::from_value(json!([
            {"metadata": {"name": "a"}, "involvedObject": {}, "reason": "Pulled", "message": "pulled"},
            {"metadata": {"name": "s"}, "involvedObject": {}, "reason": "Unhealthy", "count": 9,
             "message": "Startup probe failed: connection refused"},
            {"metadata": {"name": "c"}, "involvedObject": {}, "reason": "Unhealthy", "count": 1,
             "message": "Readiness probe failed: once"},
            {"metadata": {"name": "b"}, "involvedObject": {}, "reason": "Unhealthy", "count": 4,
             "lastTimestamp": "2026-01-01T00:00:02Z",
             "message": "Readiness probe failed: HTTP probe failed with statuscode: 503"},
        ]))
        .unwrap();
        let found = probe_failure("n8n-abc", &events).unwrap();
        assert_eq!(found.reason, "ProbeFailed");
        assert!(
            found.message.contains("statuscode: 503"),
            "{}",
            found.message
        );
        assert_eq!(
            probe_failure("n8n-abc", &events[..3]),
            None,
            "starting, or once"
        );
    }
}
