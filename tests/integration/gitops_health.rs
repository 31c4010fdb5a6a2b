//! GitOps health on the real API server with the operator running: the Tenant's kstatus
//! conditions (Ready, Reconciling, Stalled, each with its observedGeneration) as `kubectl wait`
//! reads them, and the shipped Argo CD health check (`manifests/argocd/tenant-health.lua`) run
//! by a Lua 5.1 interpreter (Argo CD's dialect) against the Tenants read back from the server.

use crate::common::{admin_client, install_tenant_crd, kubectl, unique, within};
use crate::engine_harness::start_engine;
use crate::operator::{
    CREDENTIALS_NAMESPACE, credentials, credentials_name, operator_args, operator_client,
};
use flomastr::operator::context::Context;
use flomastr::operator::metrics::OperatorMetrics;
use flomastr::tenant::Tenant;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const HEALTH_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/manifests/argocd/tenant-health.lua"
);

/// `value` as a Lua table constructor, as Argo CD hands a resource to a health check.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A Lua string literal: every byte outside printable ASCII (and the quote and backslash)
/// as a decimal escape, which Lua 5.1 reads back byte for byte.
fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for byte in s.bytes() {
        if byte.is_ascii_graphic() && byte != b'"' && byte != b'\\' || byte == b' ' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("\\{byte:03}"));
        }
    }
    out.push('"');
    out
}

/// The health check's verdict on `object`: (status, message).
fn argo_health(object: &Value) -> (String, String) {
    let script = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_literal(object),
        lua_string(HEALTH_CHECK)
    );
    let out = Command::new("lua5.1")
        .arg("-e")
        .arg(&script)
        .output()
        .expect("lua5.1 is installed (scripts/system-deps installs it)");
    assert!(
        out.status.success(),
        "the health check runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_owned(), message.to_owned())
}

async fn wait_for(condition: &str, slug: &str, timeout: &str) -> Result<(), String> {
    let (out, said) = kubectl(&[
        "wait",
        &format!("--for=condition={condition}"),
        &format!("tenant/{slug}"),
        &format!("--timeout={timeout}"),
    ])
    .await;
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

async fn read(tenants: &Api<Tenant>, slug: &str) -> Value {
    serde_json::to_value(tenants.get(slug).await.unwrap()).unwrap()
}

fn condition<'a>(tenant: &'a Value, kind: &str) -> &'a Value {
    tenant["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("a {kind} condition in {tenant}"))
}

fn tenant(slug: &str, shard: Option<&str>, extra: Value) -> Tenant {
    let mut body = json!({
        "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": slug, "labels": {}},
        "spec": {"displayName": "GitOps", "deletionPolicy": "Delete", "n8n": {"replicas": 0},
                 "whatsapp": {"provider": "Infobip", "sender": crate::operator::sender_for(slug),
                 "credentialsSecretRef": {"name": credentials_name(slug), "namespace": CREDENTIALS_NAMESPACE}}}
    });
    if let Some(shard) = shard {
        body["metadata"]["labels"]["flomastr.io/shard"] = json!(shard);
    }
    if let (Some(spec), Some(extra)) = (body["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(body).unwrap()
}

fn start_operator(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(flomastr::operator::controller(ctx).for_each(|()| async {}))
}

#[tokio::test]
async fn kubectl_wait_and_the_argo_cd_health_check_read_the_kstatus_conditions() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let shard = unique("shard");
    let mut args = operator_args(&engine);
    // Only this test's Tenants: other tests reconcile theirs by hand.
    args.tenant_selector = Some(format!("flomastr.io/shard={shard}"));
    let operator = operator_client(&client).await;
    let context = || {
        Context::watching(
            operator.clone(),
            args.clone(),
            Arc::new(OperatorMetrics::default()),
        )
        .unwrap()
    };
    let mut controller = start_operator(context());

    let ready = unique("healthy");
    let stalled = unique("stalled");
    let paused = unique("paused");
    let unwatched = unique("unwatched");
    for slug in [&ready, &paused, &unwatched] {
        credentials(&client, slug).await;
    }
    // `stalled` names a credentials Secret that does not exist.
    let tenants: Api<Tenant> = Api::all(client.clone());
    for object in [
        tenant(&ready, Some(&shard), json!({})),
        tenant(&stalled, Some(&shard), json!({})),
        tenant(&paused, Some(&shard), json!({"suspended": true})),
        tenant(&unwatched, None, json!({})),
    ] {
        tenants
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }

    wait_for("Ready", &ready, "90s")
        .await
        .expect("kubectl wait --for=condition=Ready");
    wait_for("Stalled", &stalled, "90s")
        .await
        .expect("kubectl wait --for=condition=Stalled");
    wait_for("Reconciling=false", &paused, "90s")
        .await
        .expect("the suspended tenant settles");

    let healthy = read(&tenants, &ready).await;
    let generation = &healthy["metadata"]["generation"];
    assert_eq!(&healthy["status"]["observedGeneration"], generation);
    for (kind, status) in [
        ("Ready", "True"),
        ("Reconciling", "False"),
        ("Stalled", "False"),
    ] {
        let c = condition(&healthy, kind);
        assert_eq!(c["status"], status, "{kind}: {c}");
        assert_eq!(&c["observedGeneration"], generation, "{kind}: {c}");
    }
    assert_eq!(argo_health(&healthy).0, "Healthy");

    let failing = read(&tenants, &stalled).await;
    let c = condition(&failing, "Stalled");
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!("True"), &json!("CredentialsSecretMissing"))
    );
    assert_eq!(condition(&failing, "Ready")["status"], "False");
    assert_eq!(condition(&failing, "Reconciling")["status"], "False");
    let (status, message) = argo_health(&failing);
    assert_eq!(status, "Degraded");
    assert!(
        message.starts_with("CredentialsSecretMissing: EngineRegistered:"),
        "{message}"
    );

    let suspended = read(&tenants, &paused).await;
    assert_eq!(condition(&suspended, "Ready")["reason"], "Suspended");
    assert_eq!(argo_health(&suspended).0, "Suspended");

    // No operator looks at it: no status yet.
    let (status, message) = argo_health(&read(&tenants, &unwatched).await);
    assert_eq!(status, "Progressing");
    assert!(
        message.contains("Waiting for the flomastr operator"),
        "{message}"
    );

    // A spec change the operator has not seen: the Ready condition describes an older
    // generation, so neither kubectl wait nor the health check takes it as ready.
    controller.abort();
    tenants
        .patch(
            &ready,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "GitOps, renamed"}})),
        )
        .await
        .unwrap();
    let stale = read(&tenants, &ready).await;
    assert_ne!(&stale["metadata"]["generation"], generation);
    assert_eq!(
        condition(&stale, "Ready")["status"],
        "True",
        "still the old verdict"
    );
    let (status, message) = argo_health(&stale);
    assert_eq!(status, "Progressing");
    assert!(message.contains("reconcile generation"), "{message}");
    let refused = wait_for("Ready", &ready, "3s")
        .await
        .expect_err("a Ready of an older generation");
    assert!(refused.contains("timed out"), "{refused}");

    // A fix un-stalls: the missing Secret created, the tenant becomes ready.
    credentials(&client, &stalled).await;
    controller = start_operator(context());
    wait_for("Ready", &ready, "90s")
        .await
        .expect("Ready again for the new generation");
    assert_eq!(argo_health(&read(&tenants, &ready).await).0, "Healthy");
    wait_for("Ready", &stalled, "120s")
        .await
        .expect("ready once the credentials exist");
    assert_eq!(
        condition(&read(&tenants, &stalled).await, "Stalled")["status"],
        "False"
    );

    for slug in [&ready, &stalled, &paused, &unwatched] {
        tenants
            .delete(slug, &DeleteParams::default())
            .await
            .unwrap();
    }
    within(Duration::from_secs(60), "the Tenants deleted", async || {
        for slug in [&ready, &stalled, &paused] {
            tenants.get_opt(slug).await.ok()?.is_none().then_some(())?;
        }
        Some(())
    })
    .await;
    controller.abort();
}

#[test]
fn the_health_check_reads_literal_objects_like_argo_cd_hands_them() {
    // Strings with quotes, backslashes and non-ASCII survive the trip into Lua.
    let object = json!({"metadata": {"name": "x", "generation": 1},
        "spec": {"suspended": false},
        "status": {"observedGeneration": 1, "conditions": [
            {"type": "Stalled", "status": "True", "reason": "ApplyFailed", "observedGeneration": 1,
             "message": "quota \"tenant\" \\ exceeded – café"}]}});
    let (status, message) = argo_health(&object);
    assert_eq!(status, "Degraded");
    assert_eq!(message, "ApplyFailed: quota \"tenant\" \\ exceeded – café");
    // A Stalled of an older generation is not read as current.
    let mut older = object.clone();
    older["metadata"]["generation"] = json!(2);
    older["status"]["observedGeneration"] = json!(2);
    assert_eq!(argo_health(&older).0, "Progressing");
}
