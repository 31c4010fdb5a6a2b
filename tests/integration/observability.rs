//! Dashboards and alerts: the rules of `charts/flomastr/files/alerts.yaml` checked and
//! unit-tested by the real `promtool` (every alert firing and not firing), the Grafana
//! dashboard's queries parsed by the same PromQL parser, every metric the alerts and the
//! dashboard name being one a running engine (scraped) or the operator really exposes, and the
//! chart's PrometheusRule and dashboard ConfigMap rendered by the real helm.

use crate::chart::{Helm, chart_dir, minimal_values};
use crate::common::eventually;
use crate::engine_harness::start_engine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// promtool (Debian's `prometheus` package, installed by scripts/system-deps); another one
/// through this variable.
const PROMTOOL_VAR: &str = "FLOMASTR_PROMTOOL";

fn promtool(args: &[&str]) -> Output {
    let bin = std::env::var(PROMTOOL_VAR).unwrap_or_else(|_| "promtool".to_owned());
    Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("run {bin} {args:?}: {error} (scripts/system-deps installs promtool)")
        })
}

fn succeeded(output: &Output) -> bool {
    output.status.success()
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn alerts_file() -> PathBuf {
    chart_dir().join("files/alerts.yaml")
}

fn alerts_test_file() -> PathBuf {
    chart_dir().join("tests/alerts-test.yaml")
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(chart_dir().join("dashboards/flomastr.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

fn yaml_file(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn alert_rules() -> Vec<Value> {
    yaml_file(&alerts_file())["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .collect()
}

fn alert_names() -> BTreeSet<String> {
    alert_rules()
        .iter()
        .map(|rule| rule["alert"].as_str().unwrap().to_owned())
        .collect()
}

/// A copy of the rules and their unit tests, side by side as in the chart, with `edit` applied
/// to the rules.
fn rules_copy(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    let rules = std::fs::read_to_string(alerts_file()).unwrap();
    std::fs::write(dir.path().join("files/alerts.yaml"), edit(&rules)).unwrap();
    std::fs::copy(
        alerts_test_file(),
        dir.path().join("tests/alerts-test.yaml"),
    )
    .unwrap();
    dir
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", alerts_file().to_str().unwrap()]);
    assert!(succeeded(&checked), "{}", printed(&checked));
    let tested = promtool(&["test", "rules", alerts_test_file().to_str().unwrap()]);
    assert!(succeeded(&tested), "{}", printed(&tested));

    // The checker and the tests can fail: a query that does not parse, and a threshold that
    // no longer fires when the tests say it must.
    let broken = rules_copy(|rules| {
        rules.replacen(
            "flomastr_queue_oldest_job_age_seconds) > 300",
            "flomastr_queue_oldest_job_age_seconds) >",
            1,
        )
    });
    let refused = promtool(&[
        "check",
        "rules",
        broken.path().join("files/alerts.yaml").to_str().unwrap(),
    ]);
    assert!(!succeeded(&refused), "a broken query passes the check");
    let lenient = rules_copy(|rules| rules.replacen("> 300", "> 3000", 1));
    let failed = promtool(&[
        "test",
        "rules",
        lenient
            .path()
            .join("tests/alerts-test.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        !succeeded(&failed) && printed(&failed).contains("FlomastrTenantJobsWaiting"),
        "the unit tests do not notice a wrong threshold: {}",
        printed(&failed)
    );
}

#[test]
fn every_alert_has_a_runbook_and_a_firing_and_a_quiet_unit_test() {
    let readme = std::fs::read_to_string(chart_dir().join("../../README.md")).unwrap();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let anchor = format!("README.md#{}", name.to_lowercase());
        assert_eq!(
            rule["annotations"]["runbook_url"],
            anchor.as_str(),
            "{name}"
        );
        assert!(
            readme.contains(&format!("\n### {name}\n")),
            "the README has no runbook section for {name}"
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation].is_string(),
                "{name} {annotation}"
            );
        }
        assert!(rule["labels"]["severity"].is_string(), "{name} severity");
    }
    let tests = yaml_file(&alerts_test_file());
    let checks: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_array().unwrap())
        .collect();
    for name in alert_names() {
        let of_alert = || {
            checks
                .iter()
                .filter(|check| check["alertname"] == name.as_str())
        };
        assert!(
            of_alert().any(|check| !check["exp_alerts"].as_array().unwrap().is_empty()),
            "no unit test sees {name} fire"
        );
        assert!(
            of_alert().any(|check| check["exp_alerts"].as_array().unwrap().is_empty()),
            "no unit test sees {name} stay quiet"
        );
    }
}

/// The queries of the dashboard's panels and template variables.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            queries.push((
                format!("{} {}", panel["title"], target["refId"]),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    queries
}

/// Grafana's variables replaced by what Grafana puts there, so promtool can parse the query.
fn as_promql(query: &str) -> String {
    query
        .replace("$__rate_interval", "2m")
        .replace("$namespace", ".*")
        .replace("$tenant", ".*")
}

/// `label_values(selector, label)` is Grafana's: its selector is the PromQL.
fn variable_selector(query: &str) -> &str {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(query);
    inner
        .rsplit_once(',')
        .map_or(inner, |(selector, _)| selector)
}

#[test]
fn the_dashboard_is_well_formed_and_its_queries_parse() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "flomastr");
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels {
        let grid = &panel["gridPos"];
        let right = grid["x"].as_i64().unwrap() + grid["w"].as_i64().unwrap();
        assert!(
            right <= 24,
            "panel {} is wider than the grid",
            panel["title"]
        );
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }
    // Every query through promtool's parser, as recording rules of a rules file.
    let rules: Vec<Value> = dashboard_queries(&dashboard)
        .iter()
        .enumerate()
        .map(|(n, (_, query))| {
            let expr = if query.starts_with("label_values(") {
                variable_selector(query).to_owned()
            } else {
                as_promql(query)
            };
            json!({"record": format!("dashboard:query_{n}"), "expr": as_promql(&expr)})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    let groups = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, serde_json::to_vec(&groups).unwrap()).unwrap();
    let checked = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(succeeded(&checked), "{}", printed(&checked));
}

/// The names of the samples an exposition has (`_total` of counters, `_bucket`, `_sum` and
/// `_count` of histograms), families without samples yet included.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (family, kind) = declaration.split_once(' ').unwrap();
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{family}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            names.insert(name.to_owned());
        }
    }
    names
}

/// The `flomastr_…` metric names a query reads.
fn metric_names(query: &str) -> BTreeSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("flomastr_"))
        .map(str::to_owned)
        .collect()
}

fn family(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// Labels every series gets from the scrape (the ServiceMonitor's target), and histograms' `le`.
const TARGET_LABELS: [&str; 3] = ["namespace", "pod", "le"];

/// The label names of each sample name an exposition has.
fn label_names(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = line.split_once(['{', ' ']).unwrap();
        let names = labels.entry(name.to_owned()).or_default();
        if line.as_bytes()[name.len()] == b'{' {
            let inside = &rest[..rest.find('}').unwrap()];
            for pair in inside.split(',').filter(|p| !p.is_empty()) {
                names.insert(pair.split_once('=').unwrap().0.to_owned());
            }
        }
    }
    labels
}

/// The label names a query groups by (`by (a, b)`) and selects on right after a metric name.
fn query_labels(query: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut grouped = BTreeSet::new();
    for (at, _) in query.match_indices("by (") {
        let rest = &query[at + 4..];
        for label in rest[..rest.find(')').unwrap()].split(',') {
            grouped.insert(label.trim().to_owned());
        }
    }
    let mut selected = Vec::new();
    for name in metric_names(query) {
        for (at, _) in query.match_indices(&format!("{name}{{")) {
            let rest = &query[at + name.len() + 1..];
            for matcher in rest[..rest.find('}').unwrap()].split(',') {
                let label = matcher.split(['=', '!']).next().unwrap().trim();
                selected.push((name.clone(), label.to_owned()));
            }
        }
    }
    (grouped, selected)
}

/// The metrics of a running engine that saw a little of everything: a tenant's message waiting,
/// a refused webhook, a send that failed.
async fn busy_engine_metrics() -> String {
    let engine = start_engine().await;
    let tenant = engine
        .tenant_with(
            "obs-all",
            "infobip",
            json!({"channel_base_url": "http://127.0.0.1:9"}),
        )
        .await;
    let stored = engine
        .seed(&tenant, "447700900001", "hello", "2026-01-01T00:00:00Z")
        .await;
    assert!(stored.status().is_success(), "{}", stored.status());
    let refused = engine
        .http
        .post(engine.at("/webhook/inbound"))
        .header("x-webhook-secret", "not-the-secret")
        .json(&json!({"from": "447700900001", "message": "hi", "tenant_id": "obs-all", "timestamp": "2026-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let sent = engine
        .send(&tenant, None, json!({"to": "447700900003", "template": {"name": "order_ready", "language": "en", "params": ["42"]}}))
        .await;
    assert_eq!(sent.status(), 202);
    // Changes of the shared Meta app for a number nobody holds need that app configured: this
    // counter is touched directly (its family shows once it has a series).
    engine.state.metrics.count_unowned("meta", "unknown_number");
    // Likewise a media download (tests/integration/engine_media.rs drives real ones).
    engine
        .state
        .metrics
        .media_fetches
        .get_or_create(&flomastr::engine::metrics::OutcomeLabels {
            outcome: "stored".into(),
        })
        .inc();
    eventually("the send failure shows", || async {
        let metrics = engine.metrics().await;
        metrics
            .contains("flomastr_outbound_send_failures_total{")
            .then_some(metrics)
    })
    .await
}

#[tokio::test]
async fn the_alerts_and_the_dashboard_read_only_metrics_the_programs_expose() {
    let scraped = busy_engine_metrics().await;
    let operator = flomastr::operator::metrics::OperatorMetrics::default();
    operator.observe("acme", Duration::from_millis(5), Some("kube"));
    operator.api_request(&axum::http::Method::PATCH);
    let operator = operator.encode();
    let exposed: BTreeSet<String> = exposed_names(&scraped)
        .into_iter()
        .chain(exposed_names(&operator))
        .collect();
    let mut labels = label_names(&scraped);
    labels.extend(label_names(&operator));
    assert!(
        exposed.contains("flomastr_queue_oldest_job_age_seconds"),
        "{scraped}"
    );
    assert!(
        exposed.contains("flomastr_operator_leader_acquisitions_total"),
        "{operator}"
    );

    let mut queries: Vec<(String, String)> = dashboard_queries(&dashboard())
        .into_iter()
        .map(|(place, query)| (format!("dashboard panel {place}"), query))
        .collect();
    for rule in alert_rules() {
        queries.push((
            format!("alert {}", rule["alert"]),
            rule["expr"].as_str().unwrap().to_owned(),
        ));
    }
    let mut read = BTreeSet::new();
    for (place, query) in &queries {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "{place} reads no flomastr metric: {query}"
        );
        for name in &names {
            assert!(
                exposed.contains(name),
                "{place} reads {name}, which nothing exposes"
            );
            read.insert(family(name).to_owned());
        }
        // Grouping and selecting only by labels those metrics have.
        let known: BTreeSet<&str> = names
            .iter()
            .flat_map(|name| labels.get(name).into_iter().flatten())
            .map(String::as_str)
            .chain(TARGET_LABELS)
            .collect();
        let (grouped, selected) = query_labels(query);
        for label in &grouped {
            assert!(
                known.contains(label.as_str()),
                "{place} groups by {label}, which none of {names:?} has"
            );
        }
        for (name, label) in &selected {
            let has = labels.get(name).is_some_and(|l| l.contains(label))
                || TARGET_LABELS.contains(&label.as_str());
            assert!(
                has,
                "{place} selects {name} by {label}, which it does not have"
            );
        }
    }
    // And the other way: every metric is on the dashboard.
    let families: BTreeSet<&str> = exposed
        .iter()
        .filter(|name| name.starts_with("flomastr_"))
        .map(|name| family(name))
        .collect();
    for name in families {
        assert!(read.contains(name), "{name} is on no dashboard panel");
    }
    // The checks can fail: a name nothing exposes, a label a metric does not have.
    assert!(!exposed.contains("flomastr_queue_oldest_job_age"));
    let (grouped, _) = query_labels("sum by (tenant) (rate(flomastr_queue_claimed_total[5m]))");
    assert!(!labels["flomastr_queue_claimed_total"].contains(grouped.first().unwrap()));
}

fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|value| value.trim().parse().unwrap())
    })
}

#[tokio::test]
async fn the_engine_reports_the_oldest_runnable_job_per_tenant_and_send_failure_codes() {
    let engine = crate::engine_harness::start_engine_with(|args| {
        args.server.depth_refresh_seconds = 1;
    })
    .await;
    let stuck = engine.tenant("obs-stuck", "meta").await;
    let later = engine.tenant("obs-later", "twilio").await;
    let held = engine
        .tenant_with("obs-held", "infobip", json!({"status": "suspended"}))
        .await;
    for (tenant, from) in [
        (&stuck, "447700900001"),
        (&later, "447700900002"),
        (&held, "447700900004"),
    ] {
        let response = engine
            .seed(tenant, from, "hello", "2026-01-01T00:00:00Z")
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    // obs-stuck's job became runnable ten minutes ago and nobody took it; obs-later's runs
    // only in an hour: it waits for nothing yet; obs-held is suspended: its messages are held
    // on purpose, however old.
    let backdated =
        "created_at = now() - interval '10 minutes', run_after = now() - interval '10 minutes'";
    for (slug, shift) in [
        ("obs-stuck", backdated),
        ("obs-later", "run_after = now() + interval '1 hour'"),
        ("obs-held", backdated),
    ] {
        sqlx::query(&format!(
            "UPDATE jobs SET {shift} WHERE tenant_id = (SELECT id FROM tenants WHERE slug = $1)"
        ))
        .bind(slug)
        .execute(&engine.db.pool)
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let metrics = engine.metrics().await;
    let age = |tenant: &str| {
        sample(
            &metrics,
            &format!("flomastr_queue_oldest_job_age_seconds{{tenant=\"{tenant}\"}}"),
        )
    };
    let stuck_age = age("obs-stuck").unwrap_or_else(|| panic!("{metrics}"));
    assert!((600.0..700.0).contains(&stuck_age), "{stuck_age}");
    assert_eq!(age("obs-later"), Some(0.0), "{metrics}");
    assert_eq!(age("obs-held"), Some(0.0), "{metrics}");
    assert!(
        metrics.contains("flomastr_queue_depth{tenant=\"obs-held\",status=\"queued\"} 1"),
        "the held job is still counted: {metrics}"
    );

    // Once the worker takes the job, nothing of obs-stuck waits any more.
    assert!(engine.next_job(&stuck, 1.0).await.is_some());
    let recovered = eventually("the age drops to 0", || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let metrics = engine.metrics().await;
        (sample(
            &metrics,
            "flomastr_queue_oldest_job_age_seconds{tenant=\"obs-stuck\"}",
        ) == Some(0.0))
        .then_some(metrics)
    })
    .await;
    assert!(
        recovered.contains("flomastr_queue_depth{tenant=\"obs-stuck\",status=\"processing\"} 1")
    );

    // A send the engine refuses to let out (no private network is allowed) is counted by its code.
    let sender = engine
        .tenant_with(
            "obs-sender",
            "infobip",
            json!({"channel_base_url": "http://127.0.0.1:9"}),
        )
        .await;
    let response = engine
        .send(
            &sender,
            None,
            json!({"to": "447700900003", "template": {"name": "order_ready", "language": "en", "params": ["42"]}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    eventually("the send failure is counted", || async {
        let metrics = engine.metrics().await;
        sample(
            &metrics,
            "flomastr_outbound_send_failures_total{provider=\"infobip\",code=\"destination_refused\"}",
        )
        .filter(|count| *count == 1.0)
    })
    .await;
}

fn rendered<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_chart_ships_the_rules_and_the_dashboard_when_asked() {
    let helm = Helm::new();
    let off = helm.render("obs", "flomastr", &minimal_values());
    assert!(
        rendered(&off, "PrometheusRule").is_empty(),
        "off by default"
    );
    assert!(
        !off.iter()
            .any(|d| d["metadata"]["labels"]["grafana_dashboard"].is_string()),
        "no dashboard by default"
    );

    let mut values = minimal_values();
    values["prometheusRule"] = json!({
        "enabled": true,
        "labels": {"release": "kube-prometheus-stack"},
        "runbookUrl": "https://git.example.com/ops/flomastr/blob/v0.1.0/README.md",
    });
    values["grafanaDashboard"] = json!({
        "enabled": true,
        "namespace": "monitoring",
        "annotations": {"grafana_folder": "flomastr"},
    });
    let on = helm.render("obs", "flomastr", &values);

    let rules = rendered(&on, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let rule = rules[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "flomastr");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    // The same groups as the file promtool checks, runbooks pointing at the README given.
    let mut expected = yaml_file(&alerts_file());
    for group in expected["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            let anchor = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .replace(
                    "README.md",
                    "https://git.example.com/ops/flomastr/blob/v0.1.0/README.md",
                );
            rule["annotations"]["runbook_url"] = json!(anchor);
        }
    }
    assert_eq!(rule["spec"], expected);
    assert_eq!(
        rule["spec"]["groups"][0]["rules"][0]["annotations"]["runbook_url"],
        "https://git.example.com/ops/flomastr/blob/v0.1.0/README.md#flomastrtenantjobswaiting"
    );

    let maps: Vec<&Value> = rendered(&on, "ConfigMap")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(maps.len(), 1);
    let map = maps[0];
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "flomastr");
    let shipped: Value =
        serde_json::from_str(map["data"]["flomastr.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        shipped,
        dashboard(),
        "the ConfigMap carries the dashboard file"
    );

    // A runbook URL that is not one is refused by the values schema.
    let mut bad = values.clone();
    bad["prometheusRule"]["runbookUrl"] = json!("javascript:alert(1)");
    let refused = helm
        .template("obs", "flomastr", &bad, &[])
        .expect_err("a bad runbookUrl renders");
    assert!(refused.contains("runbookUrl"), "{refused}");
}
