//! What the tenant's n8n is provisioned with before it starts: the shipped worker workflow
//! (pointed at the engine) and the script that imports it, in one ConfigMap that the n8n pod's
//! init container mounts (see `n8n.rs`).

use super::meta;
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const CONFIG_MAP: &str = "n8n-provisioning";
pub const WORKFLOW_KEY: &str = "whatsapp-worker.json";
pub const SCRIPT_KEY: &str = "provision.js";
/// The shipped workflow's id (its top-level `id`): importing a new version replaces the old.
pub const WORKFLOW_ID: &str = "flomastrWorker01";
/// The id of the n8n credential that holds the worker token (the workflow's HTTP nodes use it).
pub const CREDENTIAL_ID: &str = "flomastrWorkerTk";
/// Stands for the engine's URL in the shipped workflow; replaced per tenant.
const ENGINE_URL_PLACEHOLDER: &str = "__FLOMASTR_ENGINE_URL__";

const WORKFLOW: &str = include_str!("../../../manifests/n8n/whatsapp-worker.json");
const SCRIPT: &str = include_str!("../../../manifests/n8n/provision.js");

/// The shipped workflow with the engine's URL in place of the placeholder. The replacement is
/// made in the parsed strings, so no URL can change the JSON's structure.
pub fn workflow(engine_url: &str) -> String {
    let mut document: Value =
        serde_json::from_str(WORKFLOW).expect("the shipped workflow is JSON (a unit test checks)");
    let base = engine_url.trim_end_matches('/');
    replace_strings(&mut document, &|s: &str| {
        s.replace(ENGINE_URL_PLACEHOLDER, base)
    });
    serde_json::to_string_pretty(&document).expect("a JSON value serialises")
}

fn replace_strings(value: &mut Value, replace: &dyn Fn(&str) -> String) {
    match value {
        Value::String(s) => *s = replace(s),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_strings(item, replace)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| replace_strings(item, replace)),
        _ => {}
    }
}

pub fn config_map(tenant: &Tenant, plan: &Plan) -> ConfigMap {
    ConfigMap {
        metadata: meta(tenant, plan, CONFIG_MAP, "n8n", true),
        data: Some(BTreeMap::from([
            (WORKFLOW_KEY.to_owned(), workflow(&plan.engine_url)),
            (SCRIPT_KEY.to_owned(), SCRIPT.to_owned()),
        ])),
        ..ConfigMap::default()
    }
}

/// A digest of what provisioning imports, put on the pod template so that a new shipped
/// workflow (an operator upgrade) or a moved engine restarts n8n, which imports it again.
pub fn digest(plan: &Plan) -> String {
    let mut hash = Sha256::new();
    hash.update(workflow(&plan.engine_url));
    hash.update([0]);
    hash.update(SCRIPT);
    hex::encode(&hash.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::children::fixtures::{plan, tenant};

    #[test]
    fn the_workflow_points_at_the_engine_and_has_its_fixed_id() {
        let text = workflow("http://engine.flomastr-system.svc:8080/");
        assert!(!text.contains(ENGINE_URL_PLACEHOLDER));
        let document: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(document["id"], WORKFLOW_ID);
        let next = document["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "Next job")
            .unwrap();
        assert_eq!(
            next["parameters"]["url"],
            "http://engine.flomastr-system.svc:8080/queue/next-job"
        );
    }

    #[test]
    fn a_url_cannot_change_the_json_structure() {
        let text = workflow("http://x\"},\"active\":true,\"y\":{\"");
        let document: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(document["active"], false);
    }

    #[test]
    fn the_config_map_carries_the_workflow_and_the_script_and_its_digest_follows_them() {
        let (tenant, plan) = (tenant(), plan());
        let data = config_map(&tenant, &plan).data.unwrap();
        assert!(data[SCRIPT_KEY].contains("publish:workflow"));
        assert!(data[WORKFLOW_KEY].contains(&plan.engine_url));
        let mut moved = plan.clone();
        moved.engine_url = "http://elsewhere:8080".into();
        assert_ne!(digest(&plan), digest(&moved));
        assert_eq!(digest(&plan), digest(&plan.clone()));
    }
}
