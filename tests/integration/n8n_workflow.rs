//! Checks of `manifests/n8n/whatsapp-worker.json` as a document: every request is an engine
//! worker route with the worker credential, nothing reads `$env`, the loop goes back to the
//! queue after every job, and the ids the operator's provisioning relies on are there. The
//! workflow itself runs in the real n8n on the test node (tests/integration/n8n_tenant.rs).

use flomastr::operator::children::{CREDENTIAL_ID, WORKFLOW_ID};
use serde_json::{Value, json};
use std::collections::HashSet;
use utoipa::OpenApi;

const WORKFLOW: &str = include_str!("../../manifests/n8n/whatsapp-worker.json");
const ENGINE_URL_PLACEHOLDER: &str = "__FLOMASTR_ENGINE_URL__";

fn workflow() -> Value {
    serde_json::from_str(WORKFLOW).expect("the workflow is JSON")
}

fn nodes(workflow: &Value) -> Vec<&Value> {
    workflow["nodes"].as_array().unwrap().iter().collect()
}

fn http_nodes(workflow: &Value) -> Vec<&Value> {
    nodes(workflow)
        .into_iter()
        .filter(|n| n["type"] == "n8n-nodes-base.httpRequest")
        .collect()
}

/// The OpenAPI path template of a node's URL (`{id}` where the URL has an expression).
fn path_template(url: &str) -> String {
    let path = url
        .trim_start_matches('=')
        .strip_prefix(ENGINE_URL_PLACEHOLDER)
        .unwrap_or_else(|| panic!("{url}: every request goes to the engine's URL"));
    let mut template = String::new();
    let mut rest = path;
    while let Some(start) = rest.find("{{") {
        template.push_str(&rest[..start]);
        template.push_str("{id}");
        rest = &rest[rest.find("}}").unwrap() + 2..];
    }
    template.push_str(rest);
    template
}

fn targets<'a>(workflow: &'a Value, from: &str) -> Vec<Vec<&'a str>> {
    workflow["connections"][from]["main"]
        .as_array()
        .map(|branches| {
            branches
                .iter()
                .map(|branch| {
                    branch
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["node"].as_str().unwrap())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_request_is_an_engine_worker_route_with_the_worker_credential() {
    let workflow = workflow();
    let openapi = serde_json::to_value(flomastr::engine::openapi::ApiDoc::openapi()).unwrap();
    let requests = http_nodes(&workflow);
    assert_eq!(requests.len(), 6);
    for node in requests {
        let name = node["name"].as_str().unwrap();
        let p = &node["parameters"];
        let method = p["method"].as_str().unwrap().to_lowercase();
        let path = path_template(p["url"].as_str().unwrap());
        let operation = &openapi["paths"][&path][&method];
        assert!(
            operation.is_object(),
            "{name}: {method} {path} is not in /openapi.json"
        );
        assert_eq!(
            operation["security"][0]["worker_token"],
            json!([]),
            "{name}: {method} {path} is a worker route"
        );
        assert_eq!(p["authentication"], "genericCredentialType", "{name}");
        assert_eq!(p["genericAuthType"], "httpHeaderAuth", "{name}");
        assert_eq!(
            node["credentials"]["httpHeaderAuth"]["id"], CREDENTIAL_ID,
            "{name}"
        );
        assert!(
            !p["headerParameters"].to_string().contains("Authorization"),
            "{name}: the token comes from the credential only"
        );
        // Errors are answers to branch on, not exceptions that end the loop.
        assert_eq!(
            p["options"]["response"]["response"]["neverError"], true,
            "{name}"
        );
    }
    assert!(
        !WORKFLOW.contains("$env"),
        "n8n blocks $env by default; the workflow needs none"
    );
}

#[test]
fn the_operator_imports_it_by_its_fixed_id_inactive_and_activates_it_itself() {
    let workflow = workflow();
    assert_eq!(workflow["id"], WORKFLOW_ID);
    assert_eq!(workflow["active"], false);
    let ids: HashSet<&str> = nodes(&workflow)
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), nodes(&workflow).len(), "node ids are unique");
}

#[test]
fn every_job_ends_completed_or_failed_and_the_loop_goes_on_at_once() {
    let workflow = workflow();
    let names: HashSet<&str> = nodes(&workflow)
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    for (from, _) in workflow["connections"].as_object().unwrap() {
        assert!(names.contains(from.as_str()), "{from}");
        for target in targets(&workflow, from).into_iter().flatten() {
            assert!(names.contains(target), "{from} -> {target}");
        }
    }
    // After a job, the next one is taken at once, whether it completed or failed.
    assert_eq!(targets(&workflow, "Complete job"), [vec!["Next job"]]);
    assert_eq!(targets(&workflow, "Fail job"), [vec!["Next job"]]);
    // Every step of a job has both its outcomes wired: nothing ends the execution mid-job.
    for node in nodes(&workflow) {
        let name = node["name"].as_str().unwrap();
        if [
            "Every 30 seconds",
            "Next job",
            "Queue empty",
            "Complete job",
            "Fail job",
        ]
        .contains(&name)
        {
            continue;
        }
        let branches = targets(&workflow, name);
        assert_eq!(branches.len(), 2, "{name}: {branches:?}");
        assert!(
            branches.iter().all(|b| b.len() == 1),
            "{name}: {branches:?}"
        );
    }
    // Complete and fail hand the lease back; a failure says whether a retry can help.
    let complete = nodes(&workflow)
        .into_iter()
        .find(|n| n["name"] == "Complete job")
        .unwrap();
    assert!(
        complete["parameters"]["bodyParameters"]
            .to_string()
            .contains("lease_token")
    );
    let fail = nodes(&workflow)
        .into_iter()
        .find(|n| n["name"] == "Fail job")
        .unwrap();
    let body = fail["parameters"]["bodyParameters"].to_string();
    for field in ["lease_token", "error", "permanent"] {
        assert!(body.contains(&format!("\"{field}\"")), "{body}");
    }
    // Both replies are idempotent per job.
    for name in ["Reply", "Reply: cannot answer"] {
        let reply = nodes(&workflow)
            .into_iter()
            .find(|n| n["name"] == name)
            .unwrap();
        assert!(
            reply["parameters"]["headerParameters"]
                .to_string()
                .contains("Idempotency-Key"),
            "{name}"
        );
    }
}

#[test]
fn replies_go_out_from_the_number_written_to_and_media_reach_the_tenants_logic() {
    let workflow = workflow();
    let node = |name: &str| {
        nodes(&workflow)
            .into_iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    for name in ["Reply", "Reply: cannot answer"] {
        let body = node(name)["parameters"]["jsonBody"]
            .as_str()
            .unwrap()
            .to_owned();
        for field in ["\"to\"", "\"message\"", "\"reply_to\"", "\"sender\""] {
            assert!(body.contains(field), "{name}: {body}");
        }
        // The sender the job arrived on; null (the engine's default) for jobs without one.
        assert!(body.contains("payload.sender || {}).id || null"), "{name}");
    }
    // A media message goes through the node that hands its engine URL to the tenant's logic,
    // then on the usual path (a caption is answered like a text).
    assert_eq!(targets(&workflow, "Got a job?")[0], vec!["Media?"]);
    assert_eq!(
        targets(&workflow, "Media?"),
        [vec!["Media for your logic"], vec!["Text to answer?"]]
    );
    assert_eq!(
        targets(&workflow, "Media for your logic"),
        [vec!["Text to answer?"], vec!["Fail job"]]
    );
    let media = node("Media for your logic");
    let url = media["parameters"]["assignments"]["assignments"][0].clone();
    assert_eq!(url["name"], "media_url");
    assert_eq!(
        path_template(url["value"].as_str().unwrap()),
        "/media/{id}",
        "the engine's worker route"
    );
    let openapi = serde_json::to_value(flomastr::engine::openapi::ApiDoc::openapi()).unwrap();
    assert_eq!(
        openapi["paths"]["/media/{id}"]["get"]["security"][0]["worker_token"],
        json!([])
    );
}
