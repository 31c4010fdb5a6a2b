//! Checks of `manifests/n8n/weekly-pulse.json`, the workflow that shows a tenant scheduling its
//! weekly Relational Pulse through the campaign API: it parses, every request is a documented
//! engine route for the worker token with the worker credential, and the campaign it posts
//! (its settings put into its body) is one the engine accepts — first by the campaign checks,
//! then by a real engine on the real database.

use crate::engine_harness::start_engine;
use crate::policy_harness::call;
use flomastr::engine::campaigns::spec::{self, CampaignIn};
use flomastr::operator::children::CREDENTIAL_ID;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use utoipa::OpenApi;

const WORKFLOW: &str = include_str!("../../manifests/n8n/weekly-pulse.json");
const ENGINE_URL_PLACEHOLDER: &str = "__FLOMASTR_ENGINE_URL__";

fn workflow() -> Value {
    serde_json::from_str(WORKFLOW).expect("the workflow is JSON")
}

fn node<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    workflow["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// Whether a URL path with n8n expressions (`{{ ... }}`) fits an OpenAPI path template: the
/// same segments, an expression exactly where the template has a parameter.
fn fits(path: &str, template: &str) -> bool {
    let (ours, theirs): (Vec<&str>, Vec<&str>) =
        (path.split('/').collect(), template.split('/').collect());
    ours.len() == theirs.len()
        && ours.iter().zip(&theirs).all(|(o, t)| {
            let expression = o.starts_with("{{") && o.ends_with("}}");
            let parameter = t.starts_with('{') && t.ends_with('}');
            if parameter { expression } else { o == t }
        })
}

/// The settings node's values, by name.
fn settings(workflow: &Value) -> serde_json::Map<String, Value> {
    node(workflow, "Pulse settings")["parameters"]["assignments"]["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a["value"].clone()))
        .collect()
}

/// The body the scheduling node sends, with the settings in place of its expressions (each
/// is `{{ JSON.stringify($json.NAME) }}`, which n8n evaluates to the value as JSON).
fn campaign_body(workflow: &Value) -> Value {
    let settings = settings(workflow);
    let template = node(workflow, "Schedule weekly pulse")["parameters"]["jsonBody"]
        .as_str()
        .unwrap()
        .strip_prefix('=')
        .expect("the body is an expression");
    let mut body = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        body.push_str(&rest[..start]);
        let end = rest[start..].find("}}").unwrap() + start;
        let expression = rest[start + 2..end].trim();
        let name = expression
            .strip_prefix("JSON.stringify($json.")
            .and_then(|e| e.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{expression}: only settings go into the body"));
        body.push_str(&settings[name].to_string());
        rest = &rest[end + 2..];
    }
    body.push_str(rest);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("the body is JSON: {e}\n{body}"))
}

#[test]
fn every_request_is_a_documented_campaign_route_for_the_worker_token() {
    let workflow = workflow();
    let openapi = serde_json::to_value(flomastr::engine::openapi::ApiDoc::openapi()).unwrap();
    let paths = openapi["paths"].as_object().unwrap();
    let requests: Vec<&Value> = workflow["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "n8n-nodes-base.httpRequest")
        .collect();
    assert_eq!(requests.len(), 2);
    for node in requests {
        let name = node["name"].as_str().unwrap();
        let p = &node["parameters"];
        let method = p["method"].as_str().unwrap().to_lowercase();
        let path = p["url"]
            .as_str()
            .unwrap()
            .trim_start_matches('=')
            .strip_prefix(ENGINE_URL_PLACEHOLDER)
            .unwrap_or_else(|| panic!("{name}: every request goes to the engine's URL"));
        assert!(path.starts_with("/routes/tenants/"), "{name}: {path}");
        let documented: Vec<&String> = paths
            .keys()
            .filter(|template| fits(path, template) && paths[*template][&method].is_object())
            .collect();
        assert_eq!(
            documented.len(),
            1,
            "{name}: {method} {path} in /openapi.json: {documented:?}"
        );
        let operation = &paths[documented[0]][&method];
        assert_eq!(
            operation["security"][0]["worker_token"],
            json!([]),
            "{name}"
        );
        assert_eq!(p["authentication"], "genericCredentialType", "{name}");
        assert_eq!(p["genericAuthType"], "httpHeaderAuth", "{name}");
        assert_eq!(
            node["credentials"]["httpHeaderAuth"]["id"], CREDENTIAL_ID,
            "{name}"
        );
        assert_eq!(
            p["options"]["response"]["response"]["neverError"], true,
            "{name}"
        );
    }
    assert!(!WORKFLOW.contains("$env"), "n8n blocks $env by default");
    assert!(
        !WORKFLOW.contains("Authorization"),
        "the token comes from the credential only"
    );
}

#[test]
fn it_imports_inactive_with_unique_ids_and_every_connection_names_a_node() {
    let workflow = workflow();
    assert_eq!(workflow["active"], false);
    assert_ne!(workflow["id"], flomastr::operator::children::WORKFLOW_ID);
    let nodes = workflow["nodes"].as_array().unwrap();
    let ids: HashSet<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let names: HashSet<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!((ids.len(), names.len()), (nodes.len(), nodes.len()));
    for (from, outputs) in workflow["connections"].as_object().unwrap() {
        assert!(names.contains(from.as_str()), "{from}");
        for target in outputs["main"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b.as_array().unwrap())
        {
            assert!(
                names.contains(target["node"].as_str().unwrap()),
                "{from} -> {target}"
            );
        }
    }
    // Both answers of the scheduling request are handled: the campaign read back, or the refusal.
    let branches = &workflow["connections"]["Scheduled?"]["main"];
    assert_eq!(branches[0][0]["node"], "Read the pulse");
    assert_eq!(branches[1][0]["node"], "Refused");
}

#[test]
fn the_campaign_it_posts_is_a_weekly_personalized_pulse_the_checks_accept() {
    let body = campaign_body(&workflow());
    let campaign: CampaignIn = serde_json::from_value(body.clone()).expect("a campaign");
    let valid = spec::validate(&campaign, chrono::Utc::now()).expect("valid");
    assert!(valid.weekly.is_some(), "{body}");
    assert!(
        matches!(valid.content, spec::Checked::Personalized { .. }),
        "{body}"
    );
}

#[tokio::test]
async fn the_engine_schedules_the_campaign_it_posts() {
    let engine = start_engine().await;
    let tenant = engine.tenant("pulse-co", "infobip").await;
    let catalog = json!({"templates": [{"name": "weekly_checkin", "language": "en_US", "category": "MARKETING",
        "status": "APPROVED", "body": "Hi {{1}}, here is this week's news.",
        "variables": [{"description": "customer first name", "example": "friend"}]}]});
    let (status, _) = call(
        &engine,
        Method::PUT,
        "/routes/context/templates",
        &tenant.worker_token,
        Some(catalog),
    )
    .await;
    assert_eq!(status, 200);
    sqlx::query(
        "INSERT INTO contact_windows (tenant_id, contact, last_inbound_at)
         SELECT id, '447700900990', now() - interval '2 days' FROM tenants WHERE slug = 'pulse-co'",
    )
    .execute(&engine.db.pool)
    .await
    .unwrap();
    let (status, created) = call(
        &engine,
        Method::POST,
        "/routes/tenants/pulse-co/pulse/campaigns",
        &tenant.worker_token,
        Some(campaign_body(&workflow())),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["state"].as_str(),
            created["schedule"]["kind"].as_str()
        ),
        (Some("scheduled"), Some("weekly")),
        "{created}"
    );
    assert!(created["next_run_at"].is_string(), "{created}");
}
