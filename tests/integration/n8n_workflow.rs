//! Runs `manifests/n8n/whatsapp-worker.json` the way n8n runs it, for the node types and the
//! expression forms the workflow uses: schedule trigger, HTTP Request 4.2 (URL, query, headers,
//! JSON body from key/value pairs, full response, error output), IF 2 (number equals), No-op;
//! expressions `{{ $env.NAME }}`, `{{ $json.a.b }}` and `{{ $('Node').item.json.a.b }}`.
//! Anything else in the file fails the test, so the workflow cannot drift into something this
//! check does not cover. The structural test checks every request against `/openapi.json`.

use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub const WORKFLOW: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/manifests/n8n/whatsapp-worker.json"
);

pub struct Workflow {
    nodes: HashMap<String, Value>,
    connections: Value,
}

/// One execution: what each node output, in order.
pub struct Execution {
    pub path: Vec<String>,
    pub outputs: HashMap<String, Value>,
}

impl Workflow {
    pub fn load() -> Workflow {
        let text = std::fs::read_to_string(WORKFLOW).expect("the workflow file exists");
        let document: Value = serde_json::from_str(&text).expect("the workflow is JSON");
        let nodes = document["nodes"]
            .as_array()
            .expect("nodes[]")
            .iter()
            .map(|n| (n["name"].as_str().expect("node name").to_owned(), n.clone()))
            .collect();
        Workflow {
            nodes,
            connections: document["connections"].clone(),
        }
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Value> {
        self.nodes.values()
    }

    pub fn connections(&self) -> &Value {
        &self.connections
    }

    pub fn trigger(&self) -> &str {
        self.nodes
            .values()
            .find(|n| n["type"] == "n8n-nodes-base.scheduleTrigger")
            .and_then(|n| n["name"].as_str())
            .expect("a schedule trigger")
    }

    /// Runs from the trigger until `stop_after` has run once, or the flow ends.
    pub async fn run(&self, env: &HashMap<&str, String>, stop_after: &str) -> Execution {
        let http = reqwest::Client::new();
        let mut execution = Execution {
            path: Vec::new(),
            outputs: HashMap::new(),
        };
        let mut current = Some(self.trigger().to_owned());
        let mut input = json!({});
        while let Some(name) = current {
            assert!(execution.path.len() < 50, "the workflow loops without end");
            let node = &self.nodes[&name];
            let scope = Scope {
                env,
                json: &input,
                outputs: &execution.outputs,
            };
            let (output, branch) = run_node(&http, node, &scope).await;
            execution.path.push(name.clone());
            execution.outputs.insert(name.clone(), output.clone());
            if name == stop_after {
                break;
            }
            current = self.connections[&name]["main"][branch][0]["node"]
                .as_str()
                .map(str::to_owned);
            input = output;
        }
        execution
    }
}

struct Scope<'a> {
    env: &'a HashMap<&'a str, String>,
    json: &'a Value,
    outputs: &'a HashMap<String, Value>,
}

async fn run_node(http: &reqwest::Client, node: &Value, scope: &Scope<'_>) -> (Value, usize) {
    let kind = node["type"].as_str().unwrap();
    match kind {
        "n8n-nodes-base.scheduleTrigger" => (json!({}), 0),
        "n8n-nodes-base.noOp" => (scope.json.clone(), 0),
        "n8n-nodes-base.if" => (scope.json.clone(), if_branch(node, scope)),
        "n8n-nodes-base.httpRequest" => http_request(http, node, scope).await,
        other => panic!("node type {other} is not covered by this check"),
    }
}

fn if_branch(node: &Value, scope: &Scope<'_>) -> usize {
    assert_eq!(node["typeVersion"], 2);
    let conditions = &node["parameters"]["conditions"];
    assert_eq!(conditions["combinator"], "and");
    let all = conditions["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| {
            assert_eq!(
                c["operator"],
                json!({"type": "number", "operation": "equals"})
            );
            let left = evaluate(c["leftValue"].as_str().unwrap(), scope);
            left.as_f64() == c["rightValue"].as_f64()
        });
    if all { 0 } else { 1 }
}

async fn http_request(http: &reqwest::Client, node: &Value, scope: &Scope<'_>) -> (Value, usize) {
    assert_eq!(node["typeVersion"], 4.2);
    let p = &node["parameters"];
    let method: reqwest::Method = p["method"].as_str().unwrap().parse().unwrap();
    let url = text(&evaluate(p["url"].as_str().unwrap(), scope));
    let mut request = http.request(method, &url);
    if p["sendQuery"] == true {
        let query: Vec<(String, String)> = pairs(&p["queryParameters"], scope);
        request = request.query(&query);
    }
    if p["sendHeaders"] == true {
        for (name, value) in pairs(&p["headerParameters"], scope) {
            request = request.header(name, value);
        }
    }
    if p["sendBody"] == true {
        assert_eq!(p["contentType"], "json");
        assert_eq!(p["specifyBody"], "keypair");
        let body: Map<String, Value> = pairs(&p["bodyParameters"], scope)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        request = request.json(&body);
    }
    let response = request.send().await.expect("the engine answers");
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(json!({}));
    if status.is_client_error() || status.is_server_error() {
        let message = format!("{} - {}", status.as_u16(), String::from_utf8_lossy(&bytes));
        assert_eq!(
            node["onError"], "continueErrorOutput",
            "{} failed with {message} and has no error output",
            node["name"]
        );
        return (json!({"error": {"message": message}}), 1);
    }
    if p["options"]["response"]["response"]["fullResponse"] == true {
        (json!({"statusCode": status.as_u16(), "body": body}), 0)
    } else {
        (body, 0)
    }
}

fn pairs(list: &Value, scope: &Scope<'_>) -> Vec<(String, String)> {
    list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let value = &pair["value"];
            let value = match value.as_str() {
                Some(s) => text(&evaluate(s, scope)),
                None => value.to_string(),
            };
            (pair["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// n8n's parameter value: plain text, or `=` followed by a template with `{{ expression }}`s.
/// A template that is one expression keeps the expression's type (as n8n does).
fn evaluate(value: &str, scope: &Scope<'_>) -> Value {
    let Some(template) = value.strip_prefix('=') else {
        return Value::String(value.to_owned());
    };
    let mut out = String::new();
    let mut rest = template;
    let mut only: Option<Value> = None;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed expression") + start;
        let value = expression(rest[start + 2..end].trim(), scope);
        only = (out.is_empty() && rest[end + 2..].is_empty()).then(|| value.clone());
        out.push_str(&text(&value));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    only.unwrap_or(Value::String(out))
}

fn expression(expr: &str, scope: &Scope<'_>) -> Value {
    if let Some(name) = expr.strip_prefix("$env.") {
        let value = scope.env.get(name);
        return Value::String(value.unwrap_or_else(|| panic!("{name} is not set")).clone());
    }
    if let Some(path) = expr.strip_prefix("$json.") {
        return walk(scope.json, path);
    }
    if let Some(rest) = expr.strip_prefix("$('") {
        let (node, path) = rest
            .split_once("').item.json.")
            .expect("$('Node').item.json.path");
        let output = scope
            .outputs
            .get(node)
            .unwrap_or_else(|| panic!("{node} has not run before this expression"));
        return walk(output, path);
    }
    panic!("expression {expr:?} is not covered by this check")
}

fn walk(value: &Value, path: &str) -> Value {
    path.split('.').fold(value, |v, key| &v[key]).clone()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The method and the OpenAPI path template of every HTTP node (`{id}` where the URL has an
/// expression inside the path).
pub fn requests(workflow: &Workflow) -> Vec<(String, String, String)> {
    let mut found: Vec<_> = workflow
        .nodes()
        .filter(|n| n["type"] == "n8n-nodes-base.httpRequest")
        .map(|n| {
            let url = n["parameters"]["url"].as_str().unwrap();
            let path = url
                .strip_prefix("={{ $env.FLOMASTR_ENGINE_URL }}")
                .expect("every request goes to the engine URL from the environment");
            let mut template = String::new();
            let mut rest = path;
            while let Some(start) = rest.find("{{") {
                template.push_str(&rest[..start]);
                template.push_str("{id}");
                rest = &rest[rest.find("}}").unwrap() + 2..];
            }
            template.push_str(rest);
            (
                n["name"].as_str().unwrap().to_owned(),
                n["parameters"]["method"].as_str().unwrap().to_lowercase(),
                template,
            )
        })
        .collect();
    found.sort();
    found
}
