//! The tenant's n8n: Deployment (with the init container that provisions it), its volume and
//! its Service.

use super::provisioning::{self, CONFIG_MAP, CREDENTIAL_ID, SCRIPT_KEY, WORKFLOW_ID, WORKFLOW_KEY};
use super::{
    ENCRYPTION_KEY, ENCRYPTION_SECRET, OWNER_EMAIL, OWNER_PASSWORD_HASH, OWNER_SECRET,
    WORKER_SECRET, WORKER_TOKEN, meta,
};
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const PORT: i32 = 5678;
/// n8n's volume (also what a backup's `n8n-data.tar` holds).
pub const DATA_PVC: &str = "n8n-data";
/// Annotation on the PVC n8n-data while a restore fills it (value `FILLING`): set in the apply
/// that creates the PVC, removed only once the unpacked archive was verified. n8n never runs
/// on a PVC that carries it.
pub const N8N_DATA_MARK: &str = "flomastr.io/n8n-data";
pub const FILLING: &str = "filling";
/// The user n8n runs as (the image's `node`); the n8n-data Job runs as it too.
pub const N8N_UID: i64 = 1000;
const UID: i64 = N8N_UID;
/// The init container that provisions n8n (and checks its encryption key).
pub const PROVISIONING_CONTAINER: &str = "provision";
/// Pod template annotation: a digest of what the init container imports.
pub const PROVISIONING_DIGEST: &str = "flomastr.io/provisioning-digest";

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

/// The container's environment. The worker token is not in it: the init container hands it to
/// n8n as a credential, so the workflow needs no `$env` and n8n's default of blocking `$env` in
/// nodes (`N8N_BLOCK_ENV_ACCESS_IN_NODE`) stays in force.
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
        // The owner is set at every start from the Secret the operator minted: no setup wizard.
        plain("N8N_INSTANCE_OWNER_MANAGED_BY_ENV", "true"),
        from_secret("N8N_INSTANCE_OWNER_EMAIL", OWNER_SECRET, OWNER_EMAIL),
        from_secret(
            "N8N_INSTANCE_OWNER_PASSWORD_HASH",
            OWNER_SECRET,
            OWNER_PASSWORD_HASH,
        ),
        // Pods have no way out but to the engine: n8n's calls home would only time out.
        plain("N8N_DIAGNOSTICS_ENABLED", "false"),
        plain("N8N_VERSION_NOTIFICATIONS_ENABLED", "false"),
        plain("FLOMASTR_ENGINE_URL", plan.engine_url.clone()),
        plain("FLOMASTR_TENANT", plan.slug.clone()),
    ];
    env.extend(tenant.spec.n8n.extra_env.iter().cloned());
    env
}

const PROVISIONING_DIR: &str = "/etc/flomastr/n8n";
const SCRATCH_DIR: &str = "/run/flomastr";
const HOME: &str = "/home/node/.n8n";

/// The init container's environment: the main one (the same database settings, whatever the
/// tenant put in extraEnv), the worker token, and where provisioning finds its inputs.
fn provisioning_env(tenant: &Tenant, plan: &Plan) -> Vec<EnvVar> {
    let mut env = env(tenant, plan);
    env.extend([
        from_secret("FLOMASTR_WORKER_TOKEN", WORKER_SECRET, WORKER_TOKEN),
        plain(
            "FLOMASTR_WORKFLOW_FILE",
            format!("{PROVISIONING_DIR}/{WORKFLOW_KEY}"),
        ),
        plain("FLOMASTR_WORKFLOW_ID", WORKFLOW_ID),
        plain("FLOMASTR_CREDENTIAL_ID", CREDENTIAL_ID),
        plain("FLOMASTR_SCRATCH_DIR", SCRATCH_DIR),
    ]);
    if let Some(fingerprint) = &plan.encryption_key_fingerprint {
        env.push(plain(
            "FLOMASTR_ENCRYPTION_KEY_FINGERPRINT",
            fingerprint.clone(),
        ));
    }
    env
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        run_as_non_root: Some(true),
        run_as_user: Some(UID),
        ..SecurityContext::default()
    }
}

/// Imports the worker credential and workflow and publishes the workflow, on n8n's own
/// database, before n8n starts (`manifests/n8n/provision.js`).
fn provisioning_container(tenant: &Tenant, plan: &Plan) -> Container {
    Container {
        name: PROVISIONING_CONTAINER.to_owned(),
        image: Some(plan.image.clone()),
        command: Some(vec![
            "node".to_owned(),
            format!("{PROVISIONING_DIR}/{SCRIPT_KEY}"),
        ]),
        env: Some(provisioning_env(tenant, plan)),
        resources: Some(resources(tenant)),
        volume_mounts: Some(vec![
            mount("data", HOME, false),
            mount("provisioning", PROVISIONING_DIR, true),
            mount("scratch", SCRATCH_DIR, false),
        ]),
        security_context: Some(security_context()),
        ..Container::default()
    }
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
        volume_mounts: Some(vec![mount("data", HOME, false)]),
        // n8n writes its home and temp directories: no read-only root filesystem.
        security_context: Some(security_context()),
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
                    annotations: Some(BTreeMap::from([(
                        PROVISIONING_DIGEST.to_owned(),
                        provisioning::digest(plan),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(vec![provisioning_container(tenant, plan)]),
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
                    volumes: Some(volumes()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: DATA_PVC.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        },
        Volume {
            name: "provisioning".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: CONFIG_MAP.to_owned(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        // Holds the worker token in plain text for a moment: memory, never the node's disk.
        Volume {
            name: "scratch".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity("1Mi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

pub fn pvc(tenant: &Tenant, plan: &Plan) -> PersistentVolumeClaim {
    let mut metadata = super::retention::retained_meta(tenant, plan, DATA_PVC, "n8n");
    if plan.n8n_data_filling {
        metadata
            .annotations
            .get_or_insert_default()
            .insert(N8N_DATA_MARK.to_owned(), FILLING.to_owned());
    }
    PersistentVolumeClaim {
        metadata,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::children::fixtures::{plan, tenant};

    fn names(env: &[EnvVar]) -> Vec<&str> {
        env.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn a_volume_being_filled_is_marked_and_n8n_held_at_zero() {
        let mut held = plan();
        let normal = (pvc(&tenant(), &held), deployment(&tenant(), &held));
        assert!(normal.0.metadata.annotations.is_none());
        assert_eq!(normal.1.spec.replicas, Some(1));
        held.hold_for_unfinished_restore();
        let claim = pvc(&tenant(), &held);
        assert_eq!(
            claim.metadata.annotations.unwrap()[N8N_DATA_MARK],
            FILLING,
            "the reconcile's apply keeps the mark the restore set"
        );
        assert_eq!(deployment(&tenant(), &held).spec.replicas, Some(0));
    }

    #[test]
    fn n8n_gets_its_owner_but_neither_the_worker_token_nor_env_access() {
        let pod = deployment(&tenant(), &plan()).spec.template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap();
        let names = names(&env);
        assert!(!names.contains(&"FLOMASTR_WORKER_TOKEN"));
        assert!(!names.contains(&"N8N_BLOCK_ENV_ACCESS_IN_NODE"));
        for owner in [
            "N8N_INSTANCE_OWNER_MANAGED_BY_ENV",
            "N8N_INSTANCE_OWNER_EMAIL",
            "N8N_INSTANCE_OWNER_PASSWORD_HASH",
        ] {
            assert!(names.contains(&owner), "{owner}");
        }
        let hash = env
            .iter()
            .find(|e| e.name == "N8N_INSTANCE_OWNER_PASSWORD_HASH")
            .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
            .unwrap();
        assert_eq!(
            (hash.name.as_str(), hash.key.as_str()),
            (OWNER_SECRET, OWNER_PASSWORD_HASH)
        );
    }

    #[test]
    fn the_provisioning_container_has_the_token_the_inputs_and_the_expected_fingerprint() {
        let mut plan = plan();
        plan.encryption_key_fingerprint = Some("sha256:0123456789abcdef".into());
        let template = deployment(&tenant(), &plan).spec.template;
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_eq!(
            annotations[PROVISIONING_DIGEST],
            provisioning::digest(&plan)
        );
        let pod = template.spec.unwrap();
        let init = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, PROVISIONING_CONTAINER);
        assert_eq!(init.image, pod.containers[0].image);
        let env = init.env.clone().unwrap();
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert!(names(&env).contains(&"FLOMASTR_WORKER_TOKEN"));
        assert_eq!(value("FLOMASTR_WORKFLOW_ID").as_deref(), Some(WORKFLOW_ID));
        assert_eq!(
            value("FLOMASTR_CREDENTIAL_ID").as_deref(),
            Some(CREDENTIAL_ID)
        );
        assert_eq!(
            value("FLOMASTR_ENCRYPTION_KEY_FINGERPRINT").as_deref(),
            Some("sha256:0123456789abcdef")
        );
        // The token is written only to the memory-backed scratch volume.
        let scratch = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "scratch")
            .unwrap();
        assert_eq!(scratch.empty_dir.unwrap().medium.as_deref(), Some("Memory"));
        let security = init.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
    }
}
