//! The Tenant CRD on the real API server: apply, round trip, status subresource, validation,
//! printer columns through kubectl, and RBAC being enforced.

use crate::common::{
    KUBECONFIG_VAR, admin_client, install_tenant_crd, kube_client, require_env, unique,
};
use flomastr::tenant::{DeletionPolicy, Tenant, TenantPhase, TenantStatus, WhatsAppProvider};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, Status};
use serde_json::{Value, json};

/// The sample Tenant of `manifests/examples/`, renamed so tests never collide.
pub fn sample_tenant(name: &str) -> Tenant {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/examples/tenant-infobip.yaml"
    );
    let text = std::fs::read_to_string(path).expect("sample exists");
    let mut tenant: Tenant = text
        .split("\n---")
        .map(|doc| serde_yaml::from_str::<Value>(doc).expect("sample document parses"))
        .find(|doc| doc["kind"] == "Tenant")
        .map(|doc| serde_json::from_value(doc).expect("sample Tenant matches the Rust type"))
        .expect("sample has a Tenant");
    tenant.metadata.name = Some(name.to_owned());
    tenant
}

fn whole_seconds_now() -> k8s_openapi::jiff::Timestamp {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    k8s_openapi::jiff::Timestamp::from_second(now).unwrap()
}

fn sample_json(name: &str) -> Value {
    serde_json::to_value(sample_tenant(name)).unwrap()
}

async fn create_raw(client: &kube::Client, body: Value) -> Result<DynamicObject, kube::Error> {
    let resource = ApiResource::erase::<Tenant>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &object).await
}

fn rejection(result: Result<DynamicObject, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        Err(other) => panic!("expected an API rejection, got {other}"),
        Ok(object) => panic!(
            "the API server accepted an invalid Tenant: {:?}",
            object.metadata.name
        ),
    }
}

#[tokio::test]
async fn sample_tenant_round_trips_and_status_goes_through_the_subresource() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let tenants: Api<Tenant> = Api::all(client.clone());
    let name = unique("acme");

    let created = tenants
        .create(&PostParams::default(), &sample_tenant(&name))
        .await
        .unwrap();
    assert_eq!(
        created.spec,
        sample_tenant(&name).spec,
        "spec survives the round trip"
    );
    let read = tenants.get(&name).await.unwrap();
    assert_eq!(read.spec.whatsapp.provider, Some(WhatsAppProvider::Infobip));
    assert_eq!(read.spec.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(read.slug(), name);
    assert!(read.status.is_none());

    let status = TenantStatus {
        phase: Some(TenantPhase::Ready),
        observed_generation: read.meta().generation,
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "AllChildrenReady".into(),
            message: "every child is ready".into(),
            // The API server keeps whole seconds.
            last_transition_time: Time(whole_seconds_now()),
            observed_generation: read.meta().generation,
        }],
        n8n_url: Some("https://acme.n8n.example.com".into()),
        namespace: Some(format!("tenant-{name}")),
        dns_records: vec![],
        encryption_key_fingerprint: Some("sha256:0123456789abcdef".into()),
        n8n_image: Some("n8nio/n8n:1.0.0".into()),
        backup: None,
        restore: None,
    };
    let patch = json!({"apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "status": status});
    tenants
        .patch_status(
            &name,
            &PatchParams::apply("flomastr-tests").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("status written through the subresource");
    let with_status = tenants.get(&name).await.unwrap();
    assert_eq!(with_status.status.as_ref(), Some(&status));

    // A write to the main resource cannot change status: that is what the subresource is for.
    let mut tampered = with_status.clone();
    tampered.status.as_mut().unwrap().phase = Some(TenantPhase::Degraded);
    tampered.spec.suspended = true;
    let replaced = tenants
        .replace(&name, &PostParams::default(), &tampered)
        .await
        .unwrap();
    assert!(replaced.spec.suspended);
    assert_eq!(replaced.status.unwrap().phase, Some(TenantPhase::Ready));

    tenants.delete(&name, &Default::default()).await.unwrap();
}

#[tokio::test]
async fn defaults_are_filled_by_the_api_server() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let name = unique("minimal");
    let body = json!({
        "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "displayName": "Minimal",
            "whatsapp": {"provider": "Meta", "sender": "106540352242922",
                         "credentialsSecretRef": {"name": "m", "namespace": "flomastr-system"}}
        }
    });
    create_raw(&client, body)
        .await
        .expect("a minimal Tenant is valid");
    let tenant = Api::<Tenant>::all(client).get(&name).await.unwrap();
    assert_eq!(tenant.spec.n8n.replicas, 1);
    assert_eq!(tenant.spec.n8n.storage, "1Gi");
    assert_eq!(tenant.spec.n8n.timezone, "UTC");
    assert!(!tenant.spec.suspended);
    assert_eq!(tenant.spec.deletion_policy, DeletionPolicy::Retain);
}

/// Each case: a change to the sample, and the field the API server's message must name.
#[tokio::test]
async fn invalid_tenants_are_rejected_naming_the_field() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    type Mutate = fn(&mut Value);
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "uppercase slug",
            |t| t["metadata"]["name"] = json!("Bad_Slug"),
            "metadata.name",
        ),
        (
            "dotted slug",
            |t| t["metadata"]["name"] = json!("acme.bakery"),
            "metadata.name",
        ),
        (
            "slug over 40",
            |t| t["metadata"]["name"] = json!("a".repeat(41)),
            "metadata.name",
        ),
        (
            "replicas 99",
            |t| t["spec"]["n8n"]["replicas"] = json!(99),
            "spec.n8n.replicas",
        ),
        (
            "replicas -1",
            |t| t["spec"]["n8n"]["replicas"] = json!(-1),
            "spec.n8n.replicas",
        ),
        (
            "unknown provider",
            |t| t["spec"]["whatsapp"]["provider"] = json!("Telegram"),
            "spec.whatsapp.provider",
        ),
        (
            "storage not a quantity",
            |t| t["spec"]["n8n"]["storage"] = json!("lots"),
            "spec.n8n.storage",
        ),
        (
            "zero storage",
            |t| t["spec"]["n8n"]["storage"] = json!("0Gi"),
            "spec.n8n.storage",
        ),
        (
            "floating image tag",
            |t| t["spec"]["n8n"]["image"] = json!("n8nio/n8n:latest"),
            "spec.n8n.image",
        ),
        (
            "cpu not a quantity",
            |t| t["spec"]["n8n"]["resources"]["limits"]["cpu"] = json!("fast"),
            "spec.n8n.resources.limits.cpu",
        ),
        (
            "media limit of zero",
            |t| t["spec"]["limits"] = json!({"mediaMaxBytes": 0}),
            "spec.limits.mediaMaxBytes",
        ),
        (
            "media limit above 100 MiB",
            |t| t["spec"]["limits"] = json!({"mediaMaxBytes": 104_857_601}),
            "spec.limits.mediaMaxBytes",
        ),
        (
            "media retention under a minute",
            |t| t["spec"]["limits"] = json!({"mediaRetentionSeconds": 5}),
            "spec.limits.mediaRetentionSeconds",
        ),
        (
            "unknown deletion policy",
            |t| t["spec"]["deletionPolicy"] = json!("Orphan"),
            "spec.deletionPolicy",
        ),
        (
            "dns without target",
            |t| t["spec"]["dns"] = json!({"enabled": true}),
            "spec.dns",
        ),
        (
            "A record to a host name",
            |t| {
                t["spec"]["dns"] =
                    json!({"enabled": true, "target": "lb.example.com", "recordType": "A"})
            },
            "spec.dns",
        ),
        (
            "Meta sender not an id",
            |t| {
                t["spec"]["whatsapp"]["provider"] = json!("Meta");
                t["spec"]["whatsapp"]["sender"] = json!("+441134960000");
            },
            "spec.whatsapp",
        ),
        (
            "Twilio sender without +",
            |t| {
                t["spec"]["whatsapp"]["provider"] = json!("Twilio");
                t["spec"]["whatsapp"]["sender"] = json!("whatsapp:441134960000");
            },
            "spec.whatsapp",
        ),
        (
            "base URL not a URL",
            |t| t["spec"]["whatsapp"]["providerBaseUrl"] = json!("ftp://x"),
            "spec.whatsapp.providerBaseUrl",
        ),
        (
            "managed env var",
            |t| {
                t["spec"]["n8n"]["extraEnv"] = json!([{"name": "N8N_ENCRYPTION_KEY", "value": "x"}])
            },
            "spec.n8n.extraEnv",
        ),
        (
            "bad host",
            |t| t["spec"]["routing"]["n8nHost"] = json!("Not A Host"),
            "spec.routing.n8nHost",
        ),
        (
            "missing whatsapp",
            |t| {
                t["spec"].as_object_mut().unwrap().remove("whatsapp");
            },
            "spec.whatsapp",
        ),
        (
            "negative budget",
            |t| t["spec"]["ai"]["monthlyTokenBudget"] = json!(-5),
            "spec.ai.monthlyTokenBudget",
        ),
    ];
    let mut failures = Vec::new();
    for (what, mutate, field) in cases {
        let mut body = sample_json(&unique("invalid"));
        mutate(&mut body);
        let status = rejection(create_raw(&client, body).await);
        if status.code != 422 || !status.message.contains(field) {
            failures.push(format!(
                "{what}: expected 422 naming {field}, got {} {}",
                status.code, status.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn kubectl_shows_printer_columns_short_name_and_field_docs() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let name = unique("columns");
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .create(&PostParams::default(), &sample_tenant(&name))
        .await
        .unwrap();
    let condition = |kind: &str, status: &str, reason: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": "m",
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    let patch = json!({"status": {"phase": "Provisioning", "n8nUrl": "https://columns.n8n.example.com",
        "conditions": [condition("Ready", "False", "NotReady"),
                       condition("N8nReady", "False", "ImagePullBackOff"),
                       condition("WorkflowReady", "False", "Progressing")]}});
    tenants
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let kubeconfig = require_env(KUBECONFIG_VAR);
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl is installed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = kubectl(&["get", "tn", &name]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "N8N", "WORKFLOW", "N8N URL", "AGE"],
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains(&name)
            && row.contains("Provisioning")
            && row.contains("ImagePullBackOff")
            && row.contains("Progressing")
            && row.contains("https://columns.n8n.example.com"),
        "{row}"
    );

    let explain = kubectl(&["explain", "tenants.spec.n8n.replicas"]);
    assert!(explain.contains("Number of n8n pods"), "{explain}");
    let explain = kubectl(&["explain", "tenants.spec.limits.mediaMaxBytes"]);
    assert!(explain.contains("Largest media file in bytes"), "{explain}");
    let explain = kubectl(&["explain", "tenants.spec.limits.mediaRetentionSeconds"]);
    assert!(
        explain.contains("How long the tenant's media files"),
        "{explain}"
    );
}

#[tokio::test]
async fn rbac_is_enforced_for_users_without_bindings() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let outsider: Api<Tenant> = Api::all(kube_client("unprivileged").await);
    match outsider.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{}", status.message),
        other => panic!("an unbound user must be forbidden, got {other:?}"),
    }
    let name = unique("forbidden");
    let result = outsider
        .create(&PostParams::default(), &sample_tenant(&name))
        .await;
    assert!(
        matches!(result, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{result:?}"
    );
}
