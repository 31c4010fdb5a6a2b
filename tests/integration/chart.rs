//! The Helm chart `charts/flomastr` with a real helm (built by `scripts/helm-build`, found
//! through `FLOMASTR_HELM`) and the real API server: lint, rendering, the values schema, the CRD
//! and RBAC rules being those of `crds/` and `manifests/rbac/operator.yaml`, hardened pods,
//! settings the binary understands, every object accepted by the API server (server-side dry
//! run), and generated secrets that survive an upgrade.

use crate::common::{KUBECONFIG_VAR, admin_client, install_tenant_crd, require_env, unique};
use crate::operator::ensure_namespace;
use clap::{Args, FromArgMatches};
use flomastr::engine::config::EngineArgs;
use flomastr::operator::config::{DnsProviderKind, OperatorArgs};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::runtime::wait::{await_condition, conditions};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tokio::sync::OnceCell;

pub const HELM_VAR: &str = "FLOMASTR_HELM";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FIELD_MANAGER: &str = "flomastr-chart-tests";

pub fn chart_dir() -> PathBuf {
    Path::new(ROOT).join("charts/flomastr")
}

/// The helm binary, with its cache, config and data directories in a temporary directory of
/// its own (tests never read or write the user's helm settings).
pub struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    pub fn new() -> Self {
        let bin = std::env::var(HELM_VAR).unwrap_or_else(|_| {
            panic!(
                "{HELM_VAR} is not set: run the tests through scripts/test, which builds helm \
                 (scripts/helm-build) and exports {HELM_VAR}"
            )
        });
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "{HELM_VAR}={} is not a file: build helm with scripts/helm-build",
            bin.display()
        );
        Helm {
            bin,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        for (var, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            command.env(var, self.home.path().join(dir));
        }
        command.env_remove("KUBECONFIG");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(self.command(), args)
    }

    pub fn run_with(&self, mut command: Command, args: &[&str]) -> Output {
        command
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("run {} {args:?}: {error}", self.bin.display()))
    }

    /// Writes values to a file of their own (JSON is YAML) and returns its path.
    pub fn values_file(&self, values: &Value) -> String {
        let path = self.home.path().join(format!("{}.yaml", unique("values")));
        std::fs::write(&path, serde_json::to_vec_pretty(values).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// `helm template` of the chart: the rendered documents, or helm's error output.
    pub fn template(
        &self,
        release: &str,
        namespace: &str,
        values: &Value,
        extra: &[&str],
    ) -> Result<Vec<Value>, String> {
        let values = self.values_file(values);
        let chart = chart_dir();
        let mut args = vec![
            "template",
            release,
            chart.to_str().unwrap(),
            "--namespace",
            namespace,
            "--values",
            &values,
        ];
        args.extend_from_slice(extra);
        let output = self.run(&args);
        if output.status.success() {
            Ok(documents(&String::from_utf8(output.stdout).unwrap()))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    pub fn render(&self, release: &str, namespace: &str, values: &Value) -> Vec<Value> {
        self.template(release, namespace, values, &[])
            .unwrap_or_else(|error| panic!("helm template fails: {error}"))
    }
}

/// The non-empty documents of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).expect("rendered YAML parses"))
        .filter(|document| !document.is_null())
        .collect()
}

/// The values a real installation needs at least.
pub fn minimal_values() -> Value {
    json!({
        "baseDomain": "example.com",
        "secret": {"databaseUrl": "postgres://flomastr:secret@postgres.db.svc:5432/flomastr"},
    })
}

/// Every optional part on: an existing Secret, HPA, Ingress, ServiceMonitors, DigitalOcean DNS,
/// Caddy, an OpenAI-compatible server, custom keys and scheduling.
fn everything_values() -> Value {
    json!({
        "baseDomain": "example.com",
        "commonLabels": {"team": "platform"},
        "image": {"tag": "0.1.0-test", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "pull-secret"}],
        "secret": {
            "existingSecret": "flomastr-secrets",
            "keys": {"databaseUrl": "DATABASE_URL", "adminToken": "ADMIN_TOKEN", "masterKey": "MASTER_KEY"},
        },
        "operator": {
            "replicas": 3,
            "ingressClass": "caddy",
            "frontendService": "web/frontend:80",
            "credentialsNamespace": "whatsapp-credentials",
            "clusterDns": {"namespace": "dns", "podSelector": "app=coredns"},
            "caddy": {
                "adminUrl": "http://caddy-admin.caddy.svc:2019",
                "server": "srv1",
                "n8nUpstream": "n8n.{namespace}.svc.cluster.local:5678",
                "frontendUpstream": "frontend.web.svc:80",
            },
            "dns": {
                "provider": "digitalocean",
                "zone": "example.com",
                "digitalocean": {"tokenSecret": {"name": "do-token", "key": "token"}},
            },
            "engineWorkerUrl": "http://engine.internal:8080",
            "n8nImage": "n8nio/n8n:1.116.2",
            "resyncSeconds": 120,
            "tenantSelector": "shard=a",
            "concurrency": 8,
            "metricsPort": 9191,
            "logFormat": "text",
            "logLevel": "flomastr=debug,info",
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
            "podAnnotations": {"example.com/note": "operator"},
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "control", "effect": "NoSchedule"}],
            "topologySpreadConstraints": [{
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
            }],
        },
        "engine": {
            "port": 8081,
            "migrate": false,
            "bodyLimit": 2097152,
            "deadRetentionSeconds": 5184000,
            "senderRate": 20.5,
            "metricsPort": 9292,
            "maxConnections": 1000,
            "headerTimeoutSeconds": 5,
            "bodyTimeoutSeconds": 20,
            "idleTimeoutSeconds": 90,
            "depthRefreshSeconds": 30,
            "tenantSendConcurrency": 8,
            "providerBaseUrlAllow": ["infobip=https://ib-proxy.internal.example", "meta=http://graph-proxy.svc:8080"],
            "providerPrivateNetworks": ["10.96.0.0/12"],
            "ai": {
                "embedder": "openai",
                "embedModelDir": "/models/minilm",
                "openaiBaseUrl": "http://ollama.ai.svc:11434/v1",
                "openaiApiKeySecret": {"name": "openai", "key": "api-key"},
                "chatModel": "llama3.1",
                "openaiEmbeddingModel": "all-minilm",
            },
            "service": {"port": 80, "annotations": {"example.com/note": "engine"}},
            "ingress": {
                "enabled": true,
                "className": "nginx",
                "annotations": {"example.com/proxy-body-size": "2m"},
                "hosts": ["engine.example.com", "hooks.example.com"],
                "tls": [{"secretName": "engine-tls", "hosts": ["engine.example.com", "hooks.example.com"]}],
            },
            "autoscaling": {
                "enabled": true,
                "minReplicas": 2,
                "maxReplicas": 6,
                "targetCPUUtilizationPercentage": 70,
                "targetMemoryUtilizationPercentage": 80,
            },
            "podDisruptionBudget": {"minAvailable": "50%"},
            "serviceAccount": {"annotations": {"example.com/role": "engine"}},
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "engine"}},
                },
            }]}},
        },
        "serviceMonitor": {"enabled": true, "interval": "15s", "scrapeTimeout": "10s", "labels": {"release": "prometheus"}},
    })
}

/// Every variant the tests render: (what, values).
fn variants() -> Vec<(&'static str, Value)> {
    let mut generated_secret_without_pdbs = minimal_values();
    generated_secret_without_pdbs["secret"]["adminToken"] =
        json!("an-admin-token-of-32-characters!");
    generated_secret_without_pdbs["secret"]["masterKey"] = json!(
        "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,k1:HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo="
    );
    generated_secret_without_pdbs["operator"] = json!({
        "replicas": 1,
        "leaderElection": false,
        "dns": {"provider": "external-dns"},
        "podDisruptionBudget": {"enabled": false},
        "serviceAccount": {"name": "custom-operator"},
        "admissionPolicy": {"enabled": false},
    });
    generated_secret_without_pdbs["tenantDeletionProtection"] = json!({"enabled": false});
    generated_secret_without_pdbs["engine"] = json!({"podDisruptionBudget": {"enabled": false}, "publicUrl": "https://hooks.example.org"});
    vec![
        ("minimal values", minimal_values()),
        ("everything enabled", everything_values()),
        ("explicit secrets, no PDBs", generated_secret_without_pdbs),
    ]
}

fn kind_and_name(object: &Value) -> (String, String) {
    (
        object["kind"].as_str().unwrap_or_default().to_owned(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn of_kind<T: DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter(|object| object["kind"] == kind)
        .map(|object| {
            serde_json::from_value(object.clone())
                .unwrap_or_else(|error| panic!("the rendered {kind} is a valid {kind}: {error}"))
        })
        .collect()
}

fn one_of_kind<T: DeserializeOwned>(objects: &[Value], kind: &str) -> T {
    let mut all = of_kind::<T>(objects, kind);
    assert_eq!(all.len(), 1, "exactly one {kind} is rendered");
    all.pop().unwrap()
}

/// Kinds the chart renders without a namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CustomResourceDefinition",
];

/// The tenants' NetworkPolicy lets n8n reach exactly this release's engine pods on the engine's
/// container port: the operator's settings select the engine's pods and not the operator's.
fn assert_engine_reach(deployments: &[Deployment], args: &OperatorArgs, namespace: &str) {
    let pod_labels = |component: &str| {
        deployment(deployments, component)
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|meta| meta.labels.clone())
            .unwrap()
    };
    let selects = |labels: &BTreeMap<String, String>| {
        args.engine_pod_selector
            .labels()
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    };
    assert!(
        selects(&pod_labels("engine")),
        "the engine's pods are selected"
    );
    assert!(
        !selects(&pod_labels("operator")),
        "the operator's pods are not"
    );
    let engine = container(deployment(deployments, "engine"));
    assert_eq!(
        i32::from(args.engine_pod_port),
        engine.ports.as_ref().unwrap()[0].container_port
    );
    assert_eq!(args.namespace, namespace, "the engine's namespace");
}

fn deployment<'a>(deployments: &'a [Deployment], component: &str) -> &'a Deployment {
    deployments
        .iter()
        .find(|deployment| {
            deployment.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"] == component
        })
        .unwrap_or_else(|| panic!("a {component} Deployment is rendered"))
}

fn container(deployment: &Deployment) -> &Container {
    let pod = deployment.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container per pod");
    &pod.containers[0]
}

/// A container's environment as the binary would see it: literal values, and a placeholder for
/// values that come from Secrets or the downward API (at least 16 characters, like a token).
fn environment(container: &Container) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .map(|var| {
            let value = match (&var.value, &var.value_from) {
                (Some(value), None) => value.clone(),
                (None, Some(_)) => "placeholder-value-0123456789".to_owned(),
                _ => panic!("{} has a value or a source, not both", var.name),
            };
            (var.name.clone(), value)
        })
        .collect()
}

fn env_value<'a>(
    container: &'a Container,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
    container.env.iter().flatten().find(|var| var.name == name)
}

fn literal(container: &Container, name: &str) -> Option<String> {
    env_value(container, name).and_then(|var| var.value.clone())
}

/// (Secret name, key) an environment variable comes from.
fn secret_ref(container: &Container, name: &str) -> (String, String) {
    let selector = env_value(container, name)
        .and_then(|var| var.value_from.as_ref())
        .and_then(|source| source.secret_key_ref.as_ref())
        .unwrap_or_else(|| panic!("{name} comes from a Secret"));
    (selector.name.clone(), selector.key.clone())
}

/// Parses `flomastr <program>` settings from a rendered environment exactly as clap would, by
/// turning each variable into the flag that reads it. Variables the program does not know are
/// an error: a typo in the chart would otherwise be ignored silently.
fn parse_settings<T: Args + FromArgMatches>(
    program: &'static str,
    env: &[(String, String)],
    ignored: &[&str],
) -> Result<T, String> {
    let command = T::augment_args(clap::Command::new(program).no_binary_name(true));
    let mut argv = Vec::new();
    for (name, value) in env {
        if ignored.contains(&name.as_str()) {
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()))
            .ok_or_else(|| format!("{name} is no setting of `flomastr {program}`"))?;
        let long = arg.get_long().expect("every setting has a flag");
        if arg.get_action().takes_values() {
            argv.push(format!("--{long}={value}"));
        } else if value == "true" {
            argv.push(format!("--{long}"));
        }
    }
    let matches = command
        .try_get_matches_from(argv)
        .map_err(|error| error.to_string())?;
    T::from_arg_matches(&matches).map_err(|error| error.to_string())
}

/// The environment variables every program reads (global options and logging).
const GLOBAL_ENV: &[&str] = &["FLOMASTR_LOG_FORMAT", "RUST_LOG"];

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "flomastr");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn chart_crd_is_byte_identical_to_the_generated_one() {
    for file in ["tenant.yaml", "tenantrollout.yaml"] {
        let generated = std::fs::read(Path::new(ROOT).join("crds").join(file)).unwrap();
        let in_chart = std::fs::read(chart_dir().join("crds").join(file)).unwrap();
        assert!(
            generated == in_chart,
            "charts/flomastr/crds/{file} differs from crds/{file}: cp crds/{file} charts/flomastr/crds/"
        );
    }
}

#[test]
fn helm_lint_strict_passes() {
    let helm = Helm::new();
    let chart = chart_dir();
    for (what, values) in variants() {
        let values = helm.values_file(&values);
        let output = helm.run(&[
            "lint",
            chart.to_str().unwrap(),
            "--strict",
            "--values",
            &values,
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("0 chart(s) failed"),
            "helm lint --strict with {what} fails:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn minimal_values_render_the_default_objects() {
    let helm = Helm::new();
    let objects = helm.render("flomastr", "flomastr-system", &minimal_values());
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|object| kind_and_name(object).0)
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Deployment",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Secret",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
        ]
    );
    // Names come from the release; a release named like the chart is not repeated.
    let names: Vec<(String, String)> = objects.iter().map(kind_and_name).collect();
    for expected in [
        ("Deployment", "flomastr-operator"),
        ("Deployment", "flomastr-engine"),
        ("Service", "flomastr-engine"),
        ("Service", "flomastr-operator-metrics"),
        ("Service", "flomastr-engine-metrics"),
        ("Secret", "flomastr"),
        ("Role", "flomastr-operator-leader"),
        ("Role", "flomastr-operator-credentials"),
        ("ValidatingAdmissionPolicy", "flomastr-operator"),
        (
            "ValidatingAdmissionPolicy",
            "flomastr-tenant-deletion-protection",
        ),
    ] {
        assert!(
            names.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} is rendered: {names:?}"
        );
    }
    // Every object carries the chart's labels; namespaced ones name the release namespace.
    for object in &objects {
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "flomastr", "{object}");
        assert_eq!(labels["app.kubernetes.io/instance"], "flomastr");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION")
        );
        let (kind, name) = kind_and_name(object);
        if CLUSTER_SCOPED.contains(&kind.as_str()) {
            assert!(object["metadata"]["namespace"].is_null(), "{object}");
        } else if name.ends_with("-credentials") {
            // The credentials Role and its binding live where the credentials are.
            assert_eq!(
                object["metadata"]["namespace"], "flomastr-credentials",
                "{object}"
            );
        } else {
            assert_eq!(
                object["metadata"]["namespace"], "flomastr-system",
                "{object}"
            );
        }
    }

    let deployments: Vec<Deployment> = of_kind(&objects, "Deployment");
    let operator = deployment(&deployments, "operator");
    assert_eq!(operator.spec.replicas, Some(2));
    let image = format!("flomastr/flomastr:{}", env!("CARGO_PKG_VERSION"));
    let operator_container = container(operator);
    assert_eq!(operator_container.image.as_deref(), Some(image.as_str()));
    assert_eq!(operator_container.args, Some(vec!["operator".to_owned()]));
    // Leader election: the release namespace and the pod's own name.
    assert_eq!(
        literal(operator_container, "FLOMASTR_NAMESPACE").as_deref(),
        Some("flomastr-system")
    );
    let pod_name = env_value(operator_container, "POD_NAME")
        .and_then(|var| var.value_from.as_ref())
        .and_then(|source| source.field_ref.as_ref())
        .expect("POD_NAME comes from the downward API");
    assert_eq!(pod_name.field_path, "metadata.name");
    assert_eq!(
        literal(operator_container, "FLOMASTR_ENGINE_URL").as_deref(),
        Some("http://flomastr-engine.flomastr-system.svc:8080")
    );
    assert_eq!(
        secret_ref(operator_container, "FLOMASTR_ADMIN_TOKEN"),
        ("flomastr".to_owned(), "admin-token".to_owned())
    );
    let operator_args: OperatorArgs =
        parse_settings("operator", &environment(operator_container), GLOBAL_ENV).unwrap();
    assert_eq!(operator_args.base_domain, "example.com");
    assert_eq!(operator_args.dns_provider, DnsProviderKind::None);
    assert_eq!(operator_args.metrics_listen.port(), 9090);
    assert!(!operator_args.no_leader_election);
    assert_eq!(operator_args.credentials_namespace, "flomastr-credentials");
    assert_eq!(operator_args.cluster_dns_namespace, "kube-system");
    assert_eq!(
        operator_args.cluster_dns_pod_selector.to_string(),
        "k8s-app=kube-dns"
    );
    assert_engine_reach(&deployments, &operator_args, "flomastr-system");
    let probe = operator_container.liveness_probe.as_ref().unwrap();
    let get = probe.http_get.as_ref().unwrap();
    assert_eq!(get.path.as_deref(), Some("/healthz"));

    let engine = deployment(&deployments, "engine");
    assert_eq!(engine.spec.replicas, Some(2));
    let engine_container = container(engine);
    assert_eq!(engine_container.args, Some(vec!["engine".to_owned()]));
    for (var, key) in [
        ("DATABASE_URL", "database-url"),
        ("FLOMASTR_ADMIN_TOKEN", "admin-token"),
        ("FLOMASTR_MASTER_KEY", "master-key"),
    ] {
        assert_eq!(
            secret_ref(engine_container, var),
            ("flomastr".to_owned(), key.to_owned())
        );
    }
    let engine_args: EngineArgs =
        parse_settings("engine", &environment(engine_container), GLOBAL_ENV).unwrap();
    assert_eq!(engine_args.listen.port(), 8080);
    assert_eq!(engine_args.body_limit, 1024 * 1024);
    assert_eq!(engine_args.dead_retention_seconds, 30 * 24 * 3600);
    assert!(!engine_args.no_migrate);
    engine_args
        .settings()
        .expect("the engine accepts the chart's settings");
    // Probes on the cheap endpoints, never on `/`: readiness asks the database (cached),
    // liveness and startup only that the process answers.
    for (probe, path) in [
        (&engine_container.readiness_probe, "/readyz"),
        (&engine_container.liveness_probe, "/healthz"),
        (&engine_container.startup_probe, "/healthz"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
    }
    let ports = engine_container.ports.as_ref().unwrap();
    assert_eq!(ports[0].container_port, 8080);
    assert_eq!(
        (ports[1].name.as_deref(), ports[1].container_port),
        (Some("metrics"), 9090)
    );
    // /metrics has a port of its own, off the API port tenants' pods may reach.
    assert_eq!(
        engine_args.server.metrics_listen,
        Some("0.0.0.0:9090".parse().unwrap())
    );
    assert_eq!(
        engine_args.server,
        flomastr::engine::config::ServerArgs {
            metrics_listen: engine_args.server.metrics_listen,
            ..Default::default()
        },
        "the chart's server limits are the engine's defaults"
    );

    // The generated Secret: the database URL given, a token and a master key made up.
    let secret: Secret = one_of_kind(&objects, "Secret");
    let data = secret.data.unwrap();
    assert_eq!(
        data["database-url"].0,
        b"postgres://flomastr:secret@postgres.db.svc:5432/flomastr"
    );
    assert!(data["admin-token"].0.len() >= 16);
    let master_key = String::from_utf8(data["master-key"].0.clone()).unwrap();
    let (id, key) = master_key.split_once(':').unwrap();
    assert_eq!(id, "k1");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn everything_enabled_renders_hpa_ingress_service_monitors_and_the_existing_secret() {
    let helm = Helm::new();
    let objects = helm.render("prod", "flomastr", &everything_values());
    let names: Vec<(String, String)> = objects.iter().map(kind_and_name).collect();
    assert!(
        !names.iter().any(|(kind, _)| kind == "Secret"),
        "no Secret with existingSecret"
    );
    for expected in [
        ("HorizontalPodAutoscaler", "prod-flomastr-engine"),
        ("Ingress", "prod-flomastr-engine"),
        ("ServiceMonitor", "prod-flomastr-engine"),
        ("ServiceMonitor", "prod-flomastr-operator"),
        ("PodDisruptionBudget", "prod-flomastr-engine"),
    ] {
        assert!(
            names.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} is rendered: {names:?}"
        );
    }
    for object in &objects {
        assert_eq!(object["metadata"]["labels"]["team"], "platform", "{object}");
    }
    let deployments: Vec<Deployment> = of_kind(&objects, "Deployment");
    let engine = deployment(&deployments, "engine");
    assert_eq!(
        engine.spec.replicas, None,
        "the HPA owns the engine's replicas"
    );
    let engine_container = container(engine);
    assert_eq!(
        engine_container.image.as_deref(),
        Some("flomastr/flomastr:0.1.0-test")
    );
    for (var, key) in [
        ("DATABASE_URL", "DATABASE_URL"),
        ("FLOMASTR_ADMIN_TOKEN", "ADMIN_TOKEN"),
        ("FLOMASTR_MASTER_KEY", "MASTER_KEY"),
    ] {
        assert_eq!(
            secret_ref(engine_container, var),
            ("flomastr-secrets".to_owned(), key.to_owned())
        );
    }
    assert_eq!(
        secret_ref(engine_container, "FLOMASTR_OPENAI_API_KEY"),
        ("openai".to_owned(), "api-key".to_owned())
    );
    let engine_args: EngineArgs =
        parse_settings("engine", &environment(engine_container), GLOBAL_ENV).unwrap();
    assert_eq!(engine_args.listen.port(), 8081);
    assert!(engine_args.no_migrate);
    assert_eq!(engine_args.body_limit, 2097152);
    assert_eq!(engine_args.dead_retention_seconds, 5184000);
    assert_eq!(engine_args.sender_rate, 20.5);
    // The public URL defaults to the first Ingress host (Twilio signs it).
    assert_eq!(
        engine_args.public_url.as_deref(),
        Some("https://engine.example.com")
    );
    assert_eq!(engine_args.chat_model.as_deref(), Some("llama3.1"));
    assert_eq!(
        engine_args.server,
        flomastr::engine::config::ServerArgs {
            header_timeout_seconds: 5,
            body_timeout_seconds: 20,
            idle_timeout_seconds: 90,
            max_connections: 1000,
            metrics_listen: Some("0.0.0.0:9292".parse().unwrap()),
            depth_refresh_seconds: 30,
        }
    );
    assert_eq!(engine_args.tenant_send_concurrency, 8);
    assert_eq!(
        engine_args.provider_base_url_allow,
        [
            "infobip=https://ib-proxy.internal.example",
            "meta=http://graph-proxy.svc:8080"
        ]
    );
    assert_eq!(engine_args.provider_private_networks, ["10.96.0.0/12"]);
    engine_args.settings().unwrap();

    let operator_container = container(deployment(&deployments, "operator"));
    assert_eq!(
        secret_ref(operator_container, "FLOMASTR_ADMIN_TOKEN"),
        ("flomastr-secrets".to_owned(), "ADMIN_TOKEN".to_owned())
    );
    assert_eq!(
        secret_ref(operator_container, "DIGITALOCEAN_TOKEN"),
        ("do-token".to_owned(), "token".to_owned())
    );
    let operator_args: OperatorArgs = parse_settings(
        "operator",
        &environment(operator_container),
        &["FLOMASTR_LOG_FORMAT", "RUST_LOG", "TZ"],
    )
    .unwrap();
    assert_eq!(operator_args.dns_provider, DnsProviderKind::Digitalocean);
    assert_eq!(
        operator_args.engine_url,
        "http://prod-flomastr-engine.flomastr.svc:80"
    );
    assert_eq!(operator_args.caddy_server, "srv1");
    assert_eq!(operator_args.tenant_selector.as_deref(), Some("shard=a"));
    assert_eq!(operator_args.concurrency, 8);
    assert_eq!(operator_args.metrics_listen.port(), 9191);
    assert_eq!(operator_args.credentials_namespace, "whatsapp-credentials");
    assert_eq!(operator_args.cluster_dns_namespace, "dns");
    assert_eq!(
        operator_args.cluster_dns_pod_selector.to_string(),
        "app=coredns"
    );
    assert_engine_reach(&deployments, &operator_args, "flomastr");
    assert_eq!(literal(operator_container, "TZ").as_deref(), Some("UTC"));
    assert_eq!(
        literal(operator_container, "FLOMASTR_LOG_FORMAT").as_deref(),
        Some("text")
    );
}

/// The engine's Ingress routes what providers and workers call, nothing else: not the admin
/// API, `/metrics`, the probes or `/`. The ServiceMonitor scrapes the metrics port.
#[test]
fn the_engine_ingress_routes_only_public_paths_and_metrics_stay_on_their_port() {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::Ingress;
    let helm = Helm::new();
    let objects = helm.render("prod", "flomastr", &everything_values());
    let ingress: Ingress = one_of_kind(&objects, "Ingress");
    let rules = ingress.spec.unwrap().rules.unwrap();
    assert_eq!(rules.len(), 2, "one rule per host");
    for rule in rules {
        let paths: Vec<(String, String)> = rule
            .http
            .unwrap()
            .paths
            .into_iter()
            .map(|path| {
                let backend = path.backend.service.unwrap();
                assert_eq!(backend.name, "prod-flomastr-engine");
                assert_eq!(backend.port.unwrap().name.as_deref(), Some("http"));
                (path.path.unwrap(), path.path_type)
            })
            .collect();
        // Kubernetes path matching: Exact is the whole path, Prefix whole `/` elements.
        let routed = |request: &str| {
            paths.iter().any(|(path, kind)| match kind.as_str() {
                "Exact" => request == path,
                "Prefix" => {
                    let path = path.trim_end_matches('/');
                    path.is_empty() || request == path || request.starts_with(&format!("{path}/"))
                }
                other => panic!("unexpected pathType {other}"),
            })
        };
        for public in [
            "/webhook/infobip/acme",
            "/webhook/meta/acme",
            "/webhook/inbound",
            "/queue/next-job",
            "/queue/jobs/1/complete",
            "/messages/send",
            "/media",
            "/media/0b0e6c1e-5d4f-4a51-9d1b-2f0c3f1f7a11",
            "/public/media/0b0e6c1e-5d4f-4a51-9d1b-2f0c3f1f7a11",
            "/routes/health",
            "/routes/tools/synthesis",
            "/openapi.json",
        ] {
            assert!(routed(public), "{public} is routed: {paths:?}");
        }
        for internal in [
            "/",
            "/admin/tenants/acme",
            "/metrics",
            "/healthz",
            "/readyz",
            "/openapi.json/x",
            "/webhooks",
            "/public",
            "/mediax",
        ] {
            assert!(!routed(internal), "{internal} is not routed: {paths:?}");
        }
    }
    let services: Vec<Service> = of_kind(&objects, "Service");
    let metrics = services
        .iter()
        .find(|service| service.metadata.name.as_deref() == Some("prod-flomastr-engine-metrics"))
        .expect("the engine's metrics Service");
    let spec = metrics.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("metrics"), 9292));
    let api = services
        .iter()
        .find(|service| service.metadata.name.as_deref() == Some("prod-flomastr-engine"))
        .unwrap();
    assert!(
        api.spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .all(|port| port.name.as_deref() == Some("http")),
        "the API Service does not carry metrics"
    );
    let monitor = objects
        .iter()
        .find(|object| {
            object["kind"] == "ServiceMonitor"
                && object["metadata"]["name"] == "prod-flomastr-engine"
        })
        .unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn leader_election_can_be_switched_off_for_a_single_replica() {
    let helm = Helm::new();
    let (_, values) = variants().pop().unwrap();
    let objects = helm.render("single", "flomastr-system", &values);
    let deployments: Vec<Deployment> = of_kind(&objects, "Deployment");
    let operator = container(deployment(&deployments, "operator"));
    let args: OperatorArgs =
        parse_settings("operator", &environment(operator), GLOBAL_ENV).unwrap();
    assert!(args.no_leader_election);
    assert_eq!(args.dns_provider, DnsProviderKind::ExternalDns);
    assert!(
        !objects
            .iter()
            .any(|object| object["kind"] == "PodDisruptionBudget")
    );
    let engine = container(deployment(&deployments, "engine"));
    let engine_args: EngineArgs =
        parse_settings("engine", &environment(engine), GLOBAL_ENV).unwrap();
    assert_eq!(
        engine_args.public_url.as_deref(),
        Some("https://hooks.example.org")
    );
    // Several replicas without leader election would all reconcile: refused.
    let mut values = values;
    values["operator"]["replicas"] = json!(2);
    let error = helm
        .template("single", "flomastr-system", &values, &[])
        .expect_err("two replicas without leader election are refused");
    assert!(error.contains("operator.leaderElection"), "{error}");
}

#[test]
fn values_that_break_the_schema_are_refused_naming_the_field() {
    let helm = Helm::new();
    let cases: Vec<(&str, Value, &str)> = {
        let without_domain = json!({"secret": {"databaseUrl": "postgres://db/flomastr"}});
        let mut replicas_two = minimal_values();
        replicas_two["operator"] = json!({"replicas": "two"});
        let mut unknown_key = minimal_values();
        unknown_key["replica"] = json!(3);
        let mut bad_provider = minimal_values();
        bad_provider["operator"] = json!({"dns": {"provider": "route53"}});
        let mut do_without_token = minimal_values();
        do_without_token["operator"] = json!({"dns": {"provider": "digitalocean"}});
        let mut short_token = minimal_values();
        short_token["secret"]["adminToken"] = json!("short");
        let mut bad_master_key = minimal_values();
        bad_master_key["secret"]["masterKey"] = json!("no-id-here");
        let mut unknown_engine_key = minimal_values();
        unknown_engine_key["engine"] = json!({"replicaCount": 3});
        let mut trailing_slash = minimal_values();
        trailing_slash["engine"] = json!({"publicUrl": "https://engine.example.com/"});
        let mut ingress_without_hosts = minimal_values();
        ingress_without_hosts["engine"] = json!({"ingress": {"enabled": true}});
        let mut base_url_with_path = minimal_values();
        base_url_with_path["engine"] =
            json!({"providerBaseUrlAllow": ["infobip=https://ib-proxy.example/x"]});
        let mut bad_pull_policy = minimal_values();
        bad_pull_policy["image"] = json!({"pullPolicy": "Sometimes"});
        let mut bad_credentials_namespace = minimal_values();
        bad_credentials_namespace["operator"] = json!({"credentialsNamespace": "Team Secrets"});
        let mut set_based_dns_selector = minimal_values();
        set_based_dns_selector["operator"] =
            json!({"clusterDns": {"podSelector": "k8s-app in (kube-dns)"}});
        vec![
            ("missing baseDomain", without_domain, "baseDomain"),
            (
                "bad baseDomain",
                json!({"baseDomain": "Not A Domain", "secret": {"databaseUrl": "postgres://db/x"}}),
                "baseDomain",
            ),
            (
                "no database URL",
                json!({"baseDomain": "example.com"}),
                "databaseUrl",
            ),
            ("replicas \"two\"", replicas_two, "/operator/replicas"),
            ("unknown top-level key", unknown_key, "replica"),
            ("unknown engine key", unknown_engine_key, "replicaCount"),
            (
                "unknown DNS provider",
                bad_provider,
                "/operator/dns/provider",
            ),
            (
                "DigitalOcean without a token Secret",
                do_without_token,
                "tokenSecret",
            ),
            ("short admin token", short_token, "/secret/adminToken"),
            (
                "master key without an id",
                bad_master_key,
                "/secret/masterKey",
            ),
            (
                "public URL with a trailing slash",
                trailing_slash,
                "/engine/publicUrl",
            ),
            (
                "Ingress without hosts",
                ingress_without_hosts,
                "/engine/ingress/hosts",
            ),
            (
                "allowed base URL with a path",
                base_url_with_path,
                "/engine/providerBaseUrlAllow/0",
            ),
            ("bad pull policy", bad_pull_policy, "/image/pullPolicy"),
            (
                "a credentials namespace that is no namespace name",
                bad_credentials_namespace,
                "/operator/credentialsNamespace",
            ),
            (
                "a set-based cluster DNS selector",
                set_based_dns_selector,
                "/operator/clusterDns/podSelector",
            ),
        ]
    };
    for (what, values, field) in cases {
        let error = helm
            .template("flomastr", "flomastr-system", &values, &[])
            .err()
            .unwrap_or_else(|| panic!("helm renders values with {what}"));
        assert!(
            error.contains("values don't meet the specifications of the schema"),
            "{what}: refused, but not by the schema: {error}"
        );
        assert!(
            error.contains(field),
            "{what}: the error names {field}: {error}"
        );
    }
}

/// The documents of `manifests/rbac/operator.yaml`.
fn rbac_manifest() -> Vec<Value> {
    documents(
        &std::fs::read_to_string(Path::new(ROOT).join("manifests/rbac/operator.yaml")).unwrap(),
    )
}

/// The object of `kind` whose name ends with `suffix`.
fn named<T: DeserializeOwned>(objects: &[Value], kind: &str, suffix: &str) -> T {
    let object = objects
        .iter()
        .find(|object| {
            object["kind"] == kind
                && object["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| name.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("a {kind} named *{suffix} is rendered"));
    serde_json::from_value(object.clone()).unwrap()
}

#[test]
fn chart_rbac_and_admission_policy_equal_manifests_rbac_operator_yaml() {
    let manifest = rbac_manifest();
    let expected_cluster_role: ClusterRole = one_of_kind(&manifest, "ClusterRole");
    let expected_leader: Role = named(&manifest, "Role", "-leader");
    let expected_credentials: Role = named(&manifest, "Role", "-credentials");
    let expected_policy: Value = one_of_kind(&manifest, "ValidatingAdmissionPolicy");
    let helm = Helm::new();
    for (what, values) in variants() {
        let objects = helm.render("rbac", "ops", &values);
        let cluster_role: ClusterRole = one_of_kind(&objects, "ClusterRole");
        let leader: Role = named(&objects, "Role", "-leader");
        let credentials: Role = named(&objects, "Role", "-credentials");
        let rules = |rules: Option<Vec<PolicyRule>>| rules.expect("rules");
        assert_eq!(
            rules(cluster_role.rules),
            rules(expected_cluster_role.rules.clone()),
            "{what}: the chart's ClusterRole rules differ from manifests/rbac/operator.yaml"
        );
        assert_eq!(
            rules(leader.rules.clone()),
            rules(expected_leader.rules.clone()),
            "{what}: the chart's Lease Role rules differ from manifests/rbac/operator.yaml"
        );
        assert_eq!(leader.metadata.namespace.as_deref(), Some("ops"));
        assert_eq!(
            rules(credentials.rules.clone()),
            rules(expected_credentials.rules.clone()),
            "{what}: the chart's credentials Role rules differ from manifests/rbac/operator.yaml"
        );
        let credentials_namespace = values["operator"]["credentialsNamespace"]
            .as_str()
            .unwrap_or("flomastr-credentials");
        assert_eq!(
            credentials.metadata.namespace.as_deref(),
            Some(credentials_namespace),
            "{what}: the credentials Role is where the operator reads credentials"
        );

        // The bindings tie those roles to the operator's ServiceAccount, which its pods use.
        let deployments: Vec<Deployment> = of_kind(&objects, "Deployment");
        let operator = deployment(&deployments, "operator");
        let account = operator
            .spec
            .template
            .spec
            .clone()
            .unwrap()
            .service_account_name
            .unwrap();
        let args: OperatorArgs = parse_settings(
            "operator",
            &environment(container(operator)),
            &["TZ", "RUST_LOG", "FLOMASTR_LOG_FORMAT"],
        )
        .unwrap();
        assert_eq!(args.credentials_namespace, credentials_namespace, "{what}");
        let cluster_binding: ClusterRoleBinding = one_of_kind(&objects, "ClusterRoleBinding");
        assert_eq!(cluster_binding.role_ref.kind, "ClusterRole");
        assert_eq!(
            Some(&cluster_binding.role_ref.name),
            cluster_role.metadata.name.as_ref()
        );
        let leader_binding: RoleBinding = named(&objects, "RoleBinding", "-leader");
        let credentials_binding: RoleBinding = named(&objects, "RoleBinding", "-credentials");
        for (binding, role, namespace) in [
            (&leader_binding, &leader, "ops"),
            (&credentials_binding, &credentials, credentials_namespace),
        ] {
            assert_eq!(binding.role_ref.kind, "Role");
            assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
            assert_eq!(binding.metadata.namespace.as_deref(), Some(namespace));
        }
        for subjects in [
            cluster_binding.subjects,
            leader_binding.subjects,
            credentials_binding.subjects,
        ] {
            let subjects = subjects.unwrap();
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0].kind, "ServiceAccount");
            assert_eq!(subjects[0].name, account);
            assert_eq!(subjects[0].namespace.as_deref(), Some("ops"));
        }

        // The admission policy: the manifest's, for this release's ServiceAccount and namespace.
        // (The Tenants' deletion protection is a policy of its own: tests/integration/deletion_safety.rs.)
        let operators = |kind: &str| -> Vec<Value> {
            of_kind::<Value>(&objects, kind)
                .into_iter()
                .filter(|o| {
                    !o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .ends_with("-tenant-deletion-protection")
                })
                .collect()
        };
        let policies = operators("ValidatingAdmissionPolicy");
        let bindings = operators("ValidatingAdmissionPolicyBinding");
        if values["operator"]["admissionPolicy"]["enabled"] == false {
            assert!(policies.is_empty() && bindings.is_empty(), "{what}");
            continue;
        }
        let expected_spec = serde_json::to_string(&expected_policy["spec"])
            .unwrap()
            .replace(
                "system:serviceaccount:flomastr-system:flomastr-operator",
                &format!("system:serviceaccount:ops:{account}"),
            )
            .replace("'flomastr-system'", "'ops'");
        assert_eq!(
            policies[0]["spec"],
            serde_json::from_str::<Value>(&expected_spec).unwrap(),
            "{what}: the chart's admission policy differs from manifests/rbac/operator.yaml"
        );
        assert_eq!(bindings.len(), 1);
        assert_eq!(
            bindings[0]["spec"],
            json!({"policyName": policies[0]["metadata"]["name"], "validationActions": ["Deny"]}),
            "{what}"
        );
    }
}

#[test]
fn every_container_is_hardened() {
    let helm = Helm::new();
    for (what, values) in variants() {
        let objects = helm.render("hardened", "flomastr-system", &values);
        let deployments: Vec<Deployment> = of_kind(&objects, "Deployment");
        assert_eq!(deployments.len(), 2, "{what}");
        for deployment in &deployments {
            let name = deployment.metadata.name.clone().unwrap();
            let pod = deployment.spec.template.spec.as_ref().unwrap();
            let pod_security = pod
                .security_context
                .as_ref()
                .expect("a pod security context");
            assert_eq!(pod_security.run_as_non_root, Some(true), "{what}: {name}");
            assert_eq!(pod_security.run_as_user, Some(65532), "{what}: {name}");
            assert_eq!(
                pod_security
                    .seccomp_profile
                    .as_ref()
                    .map(|p| p.type_.as_str()),
                Some("RuntimeDefault"),
                "{what}: {name}"
            );
            let containers = pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten());
            for container in containers {
                let at = format!("{what}: {name}/{}", container.name);
                let security = container
                    .security_context
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: a security context"));
                assert_eq!(security.run_as_non_root, Some(true), "{at}");
                assert_eq!(security.run_as_user, Some(65532), "{at}");
                assert_eq!(security.read_only_root_filesystem, Some(true), "{at}");
                assert_eq!(security.allow_privilege_escalation, Some(false), "{at}");
                assert_ne!(security.privileged, Some(true), "{at}");
                let capabilities = security.capabilities.as_ref().expect("capabilities");
                assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]), "{at}");
                assert!(capabilities.add.as_ref().is_none_or(Vec::is_empty), "{at}");
                assert_eq!(
                    security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                    Some("RuntimeDefault"),
                    "{at}"
                );
                let resources = container.resources.as_ref().expect("resources");
                for (kind, quantities) in [
                    ("requests", &resources.requests),
                    ("limits", &resources.limits),
                ] {
                    let quantities = quantities
                        .as_ref()
                        .unwrap_or_else(|| panic!("{at}: {kind}"));
                    assert!(
                        quantities.contains_key("cpu") && quantities.contains_key("memory"),
                        "{at}: cpu and memory {kind}"
                    );
                }
                assert!(container.liveness_probe.is_some(), "{at}: a liveness probe");
                assert!(
                    container.readiness_probe.is_some(),
                    "{at}: a readiness probe"
                );
            }
            if name.ends_with("-engine") {
                assert_eq!(
                    pod.automount_service_account_token,
                    Some(false),
                    "{what}: the engine has no use for an API token"
                );
            }
        }
        // The engine's ServiceAccount does not mount a token either.
        for account in objects
            .iter()
            .filter(|object| object["kind"] == "ServiceAccount")
        {
            if account["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-engine")
            {
                assert_eq!(account["automountServiceAccountToken"], false, "{what}");
            }
        }
    }
}

static SERVICE_MONITOR_CRD: OnceCell<()> = OnceCell::const_new();

/// The test API server has no Prometheus Operator: a minimal ServiceMonitor CRD (any spec
/// accepted) lets the dry run check everything but the ServiceMonitor's own schema.
async fn install_service_monitor_crd(client: &kube::Client) {
    SERVICE_MONITOR_CRD
        .get_or_init(|| async {
            let crd: CustomResourceDefinition = serde_json::from_value(json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "names": {
                        "kind": "ServiceMonitor",
                        "listKind": "ServiceMonitorList",
                        "plural": "servicemonitors",
                        "singular": "servicemonitor",
                    },
                    "scope": "Namespaced",
                    "versions": [{
                        "name": "v1",
                        "served": true,
                        "storage": true,
                        "schema": {"openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {
                                "type": "object",
                                "required": ["selector", "endpoints"],
                                "x-kubernetes-preserve-unknown-fields": true,
                            }},
                        }},
                    }],
                },
            }))
            .unwrap();
            let name = crd.metadata.name.clone().unwrap();
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            crds.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("the API server accepts the ServiceMonitor CRD");
            let established = await_condition(crds, &name, conditions::is_crd_established());
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .expect("ServiceMonitor CRD established within 30 s")
                .expect("watch the CRD");
        })
        .await;
}

async fn create_namespace(client: &kube::Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .expect("create the release namespace");
}

/// Server-side apply of one object as a dry run, with strict field validation (an unknown or
/// misspelt field is an error, not silently dropped).
async fn dry_run_apply(client: &kube::Client, object: &Value) -> Result<(), String> {
    let object: DynamicObject =
        serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let gvk = GroupVersionKind::try_from(object.types.as_ref().ok_or("no apiVersion/kind")?)
        .map_err(|e| e.to_string())?;
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("the API server does not serve {gvk:?}: {e}"))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object
                .metadata
                .namespace
                .as_deref()
                .ok_or("a namespaced object without metadata.namespace")?,
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = object.metadata.name.clone().ok_or("no metadata.name")?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER)
            .force()
            .dry_run()
            .validation_strict(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
    .map_err(|error| error.to_string())
}

#[tokio::test]
async fn the_api_server_accepts_every_rendered_object_in_a_dry_run() {
    let client = admin_client().await;
    install_service_monitor_crd(&client).await;
    let helm = Helm::new();
    for (what, values) in variants() {
        let namespace = unique("chart");
        create_namespace(&client, &namespace).await;
        // The credentials Role goes where the credentials are: that namespace must exist.
        let credentials = values["operator"]["credentialsNamespace"]
            .as_str()
            .unwrap_or("flomastr-credentials");
        ensure_namespace(&client, credentials).await;
        let objects = helm
            .template("flomastr", &namespace, &values, &["--include-crds"])
            .unwrap_or_else(|error| panic!("helm template with {what}: {error}"));
        assert!(
            objects
                .iter()
                .any(|object| object["kind"] == "CustomResourceDefinition"),
            "--include-crds renders the Tenant CRD"
        );
        let mut failures = Vec::new();
        for object in &objects {
            if let Err(error) = dry_run_apply(&client, object).await {
                failures.push(format!("{:?}: {error}", kind_and_name(object)));
            }
        }
        assert!(
            failures.is_empty(),
            "{what}: the API server refuses rendered objects:\n{}",
            failures.join("\n")
        );
    }
}

/// A `helm` command against the test API server's `admin` context.
pub fn helm_on_cluster(helm: &Helm) -> Command {
    let mut command = helm.command();
    command.env("KUBECONFIG", require_env(KUBECONFIG_VAR));
    command
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect()
}

#[tokio::test]
async fn helm_install_and_upgrade_keep_the_generated_admin_token_and_master_key() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let helm = Helm::new();
    let namespace = unique("chart-install");
    create_namespace(&client, &namespace).await;
    ensure_namespace(&client, "flomastr-credentials").await;
    let release = unique("rel");
    let chart = chart_dir();
    let install = |values: &Value, verb: &'static str| {
        let values = helm.values_file(values);
        let output = helm.run_with(
            helm_on_cluster(&helm),
            &[
                verb,
                &release,
                chart.to_str().unwrap(),
                "--namespace",
                &namespace,
                "--kube-context",
                "admin",
                // The Tenant CRD is the test run's (install_tenant_crd), shared by all tests.
                "--skip-crds",
                "--values",
                &values,
            ],
        );
        assert!(
            output.status.success(),
            "helm {verb}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    // The image the chart names is on the test node: its operator runs, and must take no
    // other test's Tenants.
    let mut values = minimal_values();
    values["operator"] = json!({"tenantSelector": format!("flomastr.io/chart-test={release}")});
    let notes = install(&values, "install");
    let secret_name = format!("{release}-flomastr");
    assert!(
        notes.contains(&format!("get secret {secret_name}")),
        "NOTES tell where the admin token lives:\n{notes}"
    );
    assert!(notes.contains("manifests/examples/"), "{notes}");
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    let first = secret_data(&secrets.get(&secret_name).await.unwrap());

    let mut changed = values.clone();
    changed["secret"]["databaseUrl"] =
        json!("postgres://flomastr:other@postgres.db.svc:5432/flomastr");
    install(&changed, "upgrade");
    let second = secret_data(&secrets.get(&secret_name).await.unwrap());
    assert_eq!(
        second["database-url"],
        b"postgres://flomastr:other@postgres.db.svc:5432/flomastr"
    );
    assert_eq!(
        second["admin-token"], first["admin-token"],
        "the admin token survives an upgrade"
    );
    assert_eq!(
        second["master-key"], first["master-key"],
        "the master key survives an upgrade"
    );

    let deployments = Api::<Deployment>::namespaced(client.clone(), &namespace);
    assert!(
        deployments
            .get_opt(&format!("{release}-flomastr-operator"))
            .await
            .unwrap()
            .is_some()
    );

    // Uninstalling keeps the Secret: the master key opens the data in the database.
    let output = helm.run_with(
        helm_on_cluster(&helm),
        &[
            "uninstall",
            &release,
            "--namespace",
            &namespace,
            "--kube-context",
            "admin",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        secret_data(&secrets.get(&secret_name).await.unwrap())["master-key"],
        first["master-key"]
    );
    assert!(
        deployments
            .get_opt(&format!("{release}-flomastr-operator"))
            .await
            .unwrap()
            .is_none()
    );
}
