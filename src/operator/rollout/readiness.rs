//! Whether a tenant's n8n runs an image, rolled out and ready, and whether a pod of an image
//! ever started (then n8n may have migrated its database) — read from the Deployment and the
//! pods (pure).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// The n8n container's name in the Deployment (children::n8n).
const N8N_CONTAINER: &str = "n8n";

/// The Deployment's template runs `image`, the Deployment controller has seen that template,
/// and every wanted replica is of it and available, with no pod of an older template left.
pub fn rolled_out(deployment: &Deployment, image: &str) -> bool {
    let spec = &deployment.spec;
    let wanted = spec.replicas.unwrap_or(1);
    let runs = spec
        .template
        .spec
        .as_ref()
        .and_then(|pod| pod.containers.iter().find(|c| c.name == N8N_CONTAINER))
        .and_then(|container| container.image.as_deref())
        == Some(image);
    let Some(status) = &deployment.status else {
        return false;
    };
    let seen = match (status.observed_generation, deployment.metadata.generation) {
        (Some(observed), Some(generation)) => observed >= generation,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    runs && seen
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.replicas.unwrap_or(0) <= wanted
}

/// A pod whose n8n container runs `image` started any of its containers (the provisioning init
/// container runs n8n too): the database may be migrated to that version.
pub fn started_with(pods: &[Pod], image: &str) -> bool {
    pods.iter()
        .filter(|pod| runs_image(pod, image))
        .filter_map(|pod| pod.status.as_ref())
        .flat_map(|status| {
            let init = status.init_container_statuses.iter().flatten();
            init.chain(status.container_statuses.iter().flatten())
        })
        .any(started)
}

fn runs_image(pod: &Pod, image: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.containers.iter().find(|c| c.name == N8N_CONTAINER))
        .and_then(|container| container.image.as_deref())
        == Some(image)
}

fn started(container: &ContainerStatus) -> bool {
    let ran = |state: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    };
    container.restart_count > 0
        || ran(container.state.as_ref())
        || ran(container.last_state.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "n8n", "generation": generation},
            "spec": {"replicas": 1, "selector": {},
                     "template": {"spec": {"containers": [{"name": "n8n", "image": image}]}}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn ready_only_when_the_new_template_is_observed_and_available() {
        let ready = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        assert!(rolled_out(&deployment("n8n:2", 2, ready.clone()), "n8n:2"));
        assert!(!rolled_out(&deployment("n8n:2", 2, ready.clone()), "n8n:1"));
        let stale = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        assert!(!rolled_out(&deployment("n8n:2", 2, stale), "n8n:2"));
        let old_pod_left = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1});
        assert!(!rolled_out(&deployment("n8n:2", 2, old_pod_left), "n8n:2"));
        let unavailable = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1});
        assert!(!rolled_out(&deployment("n8n:2", 2, unavailable), "n8n:2"));
    }

    fn pod(image: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "n8n-x"},
            "spec": {"containers": [{"name": "n8n", "image": image}]},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_that_never_started_touched_no_data() {
        let pulling = json!({"containerStatuses": [{"name": "n8n", "image": "n8n:2", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]});
        assert!(!started_with(&[pod("n8n:2", pulling)], "n8n:2"));
        let crashed = json!({"initContainerStatuses": [{"name": "provision", "image": "n8n:2", "imageID": "", "ready": false,
            "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
        assert!(started_with(&[pod("n8n:2", crashed.clone())], "n8n:2"));
        assert!(!started_with(&[pod("n8n:1", crashed)], "n8n:2"));
    }
}
