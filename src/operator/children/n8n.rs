//! The tenant's n8n: Deployment, its volume and its Service.

use super::{ENCRYPTION_KEY, ENCRYPTION_SECRET, WORKER_SECRET, WORKER_TOKEN, meta};
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const PORT: i32 = 5678;
const DATA_PVC: &str = "n8n-data";
const UID: i64 = 1000;

fn selector(plan: &Plan) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "n8n".to_owned()),
        ("flomastr.io/tenant".to_owned(), plan.slug.clone()),
    ])
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

const BLOCK_ENV_ACCESS: &str = "N8N_BLOCK_ENV_ACCESS_IN_NODE";

fn env(tenant: &Tenant, plan: &Plan) -> Vec<EnvVar> {
    let timezone = tenant.spec.n8n.timezone.clone();
    let mut env = vec![
        plain("N8N_HOST", plan.n8n_host.clone()),
        plain("N8N_PORT", PORT.to_string()),
        plain("N8N_PROTOCOL", "https"),
        plain("N8N_EDITOR_BASE_URL", plan.n8n_url.clone()),
        plain("WEBHOOK_URL", format!("{}/", plan.n8n_url)),
        plain("N8N_PROXY_HOPS", "1"),
        plain("GENERIC_TIMEZONE", timezone.clone()),
        plain("TZ", timezone),
        from_secret("N8N_ENCRYPTION_KEY", ENCRYPTION_SECRET, ENCRYPTION_KEY),
        plain("FLOMASTR_ENGINE_URL", plan.engine_url.clone()),
        from_secret("FLOMASTR_WORKER_TOKEN", WORKER_SECRET, WORKER_TOKEN),
        plain("FLOMASTR_TENANT", plan.slug.clone()),
    ];
    // The worker workflow (manifests/n8n/whatsapp-worker.json) reads the engine URL and the
    // worker token with `$env`, which n8n 2.x blocks by default. A tenant may set it to `true`
    // in `n8n.extraEnv` and keep the token in an n8n credential instead.
    let extra = &tenant.spec.n8n.extra_env;
    if !extra.iter().any(|e| e.name == BLOCK_ENV_ACCESS) {
        env.push(plain(BLOCK_ENV_ACCESS, "false"));
    }
    env.extend(extra.iter().cloned());
    env
}

fn resources(tenant: &Tenant) -> ResourceRequirements {
    let r = &tenant.spec.n8n.resources;
    let pair =
        |cpu: &Option<String>, memory: &Option<String>, default_cpu: &str, default_memory: &str| {
            BTreeMap::from([
                (
                    "cpu".to_owned(),
                    Quantity(cpu.clone().unwrap_or_else(|| default_cpu.to_owned())),
                ),
                (
                    "memory".to_owned(),
                    Quantity(memory.clone().unwrap_or_else(|| default_memory.to_owned())),
                ),
            ])
        };
    ResourceRequirements {
        requests: Some(pair(&r.requests.cpu, &r.requests.memory, "200m", "512Mi")),
        limits: Some(pair(&r.limits.cpu, &r.limits.memory, "1", "1Gi")),
        ..ResourceRequirements::default()
    }
}

fn probe(path: &str, initial_delay: i32, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(PORT),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn container(tenant: &Tenant, plan: &Plan) -> Container {
    Container {
        name: "n8n".to_owned(),
        image: Some(plan.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: PORT,
            ..ContainerPort::default()
        }]),
        env: Some(env(tenant, plan)),
        resources: Some(resources(tenant)),
        startup_probe: Some(probe("/healthz", 0, 10, 5, 30)),
        liveness_probe: Some(probe("/healthz", 30, 20, 5, 6)),
        readiness_probe: Some(probe("/healthz/readiness", 10, 10, 3, 6)),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: "/home/node/.n8n".to_owned(),
            ..VolumeMount::default()
        }]),
        // n8n writes its home and temp directories: no read-only root filesystem.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

pub fn deployment(tenant: &Tenant, plan: &Plan) -> Deployment {
    let labels = selector(plan);
    Deployment {
        metadata: meta(tenant, plan, "n8n", "n8n", true),
        spec: DeploymentSpec {
            replicas: Some(plan.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            // One volume, one main process: never two pods on it at once.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(tenant, plan)],
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(60),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(UID),
                        run_as_group: Some(UID),
                        fs_group: Some(UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(vec![Volume {
                        name: "data".to_owned(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: DATA_PVC.to_owned(),
                            read_only: None,
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

pub fn pvc(tenant: &Tenant, plan: &Plan) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(tenant, plan, DATA_PVC, "n8n", true),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(tenant.spec.n8n.storage.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

pub fn service(tenant: &Tenant, plan: &Plan) -> Service {
    Service {
        metadata: meta(tenant, plan, "n8n", "n8n", true),
        spec: Some(ServiceSpec {
            selector: Some(selector(plan)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: PORT,
                target_port: Some(IntOrString::Int(PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
