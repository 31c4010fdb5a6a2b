//! What the operator may not do, on the real API server: its ServiceAccount under the chart's
//! RBAC and admission policy (`manifests/rbac/operator.yaml`) reads no Secret outside its
//! credentials namespace and writes nothing outside the tenant namespaces it created, and a
//! Tenant cannot make it hand the engine a Secret that is not that tenant's.

use crate::common::{admin_client, install_tenant_crd, unique};
use crate::engine_harness::{ADMIN_TOKEN, TestEngine, start_engine};
use crate::operator::{
    CREDENTIALS_NAMESPACE, context, create_tenant, credentials, credentials_in, credentials_name,
    ensure_namespace, operator_args, operator_client, reconcile_now,
};
use flomastr::operator::backup::data_job::{self, Direction};
use flomastr::operator::children::{NetworkReach, network_policy};
use flomastr::operator::plan::plan;
use flomastr::tenant::Tenant;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, AttachParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The status code and message of a refused request.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// Refused by the admission policy (not by RBAC, not for being malformed).
fn denied_by_policy<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    let (code, message) = refusal(result, what);
    assert_eq!(code, 403, "{what}: {message}");
    assert!(
        message.contains("ValidatingAdmissionPolicy") && message.contains("denied request"),
        "{what}: refused, but not by the admission policy: {message}"
    );
}

/// A Tenant with its credentials, reconciled by `ctx` until its namespace and children exist.
async fn provisioned(
    admin: &kube::Client,
    ctx: &std::sync::Arc<flomastr::operator::context::Context>,
) -> String {
    let slug = unique("priv");
    credentials(admin, &slug).await;
    create_tenant(admin, &slug, json!({})).await;
    reconcile_now(admin, ctx, &slug)
        .await
        .expect("a full reconcile under the operator's RBAC and admission policy");
    slug
}

fn deployment(pod: Value) -> Deployment {
    let mut spec = json!({"containers": [{"name": "app", "image": "example.invalid/app:1"}]});
    spec.as_object_mut()
        .unwrap()
        .extend(pod.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": {"name": unique("probe")},
        "spec": {"selector": {"matchLabels": {"app": "probe"}},
                 "template": {"metadata": {"labels": {"app": "probe"}}, "spec": spec}}
    }))
    .unwrap()
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

fn labels_patch(labels: Value) -> Patch<Value> {
    Patch::Merge(json!({"metadata": {"labels": labels}}))
}

async fn engine_knows(engine: &TestEngine, slug: &str) -> u16 {
    engine
        .http
        .get(engine.at(&format!("/admin/tenants/{slug}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn engine_registered(tenant: &Tenant) -> (String, String, String) {
    let condition = tenant
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "EngineRegistered")
        .unwrap();
    (
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    )
}

#[tokio::test]
async fn the_operator_reads_no_secret_outside_its_credentials_namespace() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let engine = start_engine().await;
    let operator = operator_client(&admin).await;
    let ctx = context(operator.clone(), operator_args(&engine)).await;
    let slug = provisioned(&admin, &ctx).await;

    let elsewhere = unique("elsewhere");
    let name = unique("secret");
    for namespace in ["kube-system", elsewhere.as_str()] {
        credentials_in(&admin, namespace, &name, &slug).await;
        let (code, message) = refusal(
            Api::<Secret>::namespaced(operator.clone(), namespace)
                .get(&name)
                .await,
            namespace,
        );
        assert_eq!(code, 403, "reading a Secret in {namespace}: {message}");
    }
    let (code, _) = refusal(
        Api::<Secret>::all(operator.clone())
            .list(&ListParams::default())
            .await,
        "listing Secrets",
    );
    assert_eq!(code, 403, "no listing of Secrets anywhere");
    let tenant_secrets = Api::<Secret>::namespaced(operator.clone(), &format!("tenant-{slug}"));
    tenant_secrets
        .get("n8n-encryption")
        .await
        .expect("the n8n key, which backups hold sealed, is readable by name");
    let (code, _) = refusal(tenant_secrets.get("n8n-owner").await, "the n8n owner");
    assert_eq!(code, 403, "the n8n owner's password is not readable");
    tenant_secrets
        .get("flomastr-worker")
        .await
        .expect("the worker token, whose hash the engine gets, is readable by name");
    Api::<Secret>::namespaced(operator, CREDENTIALS_NAMESPACE)
        .get(&credentials_name(&slug))
        .await
        .expect("credentials are readable in the credentials namespace");
}

#[tokio::test]
async fn the_admission_policy_keeps_the_operators_writes_in_its_tenant_namespaces() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let engine = start_engine().await;
    let operator = operator_client(&admin).await;
    let ctx = context(operator.clone(), operator_args(&engine)).await;
    let slug = provisioned(&admin, &ctx).await;
    let tenant_namespace = format!("tenant-{slug}");
    let outside = unique("not-a-tenant");
    ensure_namespace(&admin, &outside).await;

    // Deployments: nowhere but in a tenant namespace, and there only harmless ones.
    for namespace in [outside.as_str(), "default", "kube-system"] {
        denied_by_policy(
            Api::<Deployment>::namespaced(operator.clone(), namespace)
                .create(&dry_run(), &deployment(json!({})))
                .await,
            &format!("a Deployment in {namespace}"),
        );
    }
    let in_tenant = Api::<Deployment>::namespaced(operator.clone(), &tenant_namespace);
    in_tenant
        .create(&dry_run(), &deployment(json!({})))
        .await
        .expect("a plain Deployment in the tenant namespace is allowed");
    for (what, pod) in [
        (
            "another ServiceAccount",
            json!({"serviceAccountName": "admin"}),
        ),
        (
            "the deprecated serviceAccount field",
            json!({"serviceAccount": "admin"}),
        ),
        ("host network", json!({"hostNetwork": true})),
        ("host PID", json!({"hostPID": true})),
        (
            "a hostPath volume",
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        ),
        (
            "a privileged container",
            json!({"containers": [{"name": "app", "image": "example.invalid/app:1", "securityContext": {"privileged": true}}]}),
        ),
        (
            "a privileged init container",
            json!({"initContainers": [{"name": "init", "image": "example.invalid/app:1", "securityContext": {"privileged": true}}]}),
        ),
    ] {
        denied_by_policy(
            in_tenant.create(&dry_run(), &deployment(pod)).await,
            &format!("a Deployment with {what}"),
        );
    }
    // The operator's own n8n Deployment cannot be turned into one either.
    denied_by_policy(
        in_tenant
            .patch(
                "n8n",
                &PatchParams {
                    dry_run: true,
                    ..PatchParams::default()
                },
                &Patch::Strategic(
                    json!({"spec": {"template": {"spec": {"serviceAccountName": "admin"}}}}),
                ),
            )
            .await,
        "switching n8n to another ServiceAccount",
    );

    // Namespaces: only its own, and never weaker Pod Security.
    let namespaces = Api::<Namespace>::all(operator.clone());
    let patch_dry_run = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    for (namespace, labels) in [
        (
            tenant_namespace.as_str(),
            json!({"pod-security.kubernetes.io/enforce": "privileged"}),
        ),
        (
            tenant_namespace.as_str(),
            json!({"pod-security.kubernetes.io/warn": "privileged"}),
        ),
        (
            tenant_namespace.as_str(),
            json!({"pod-security.kubernetes.io/enforce": null}),
        ),
        (
            "kube-system",
            json!({"pod-security.kubernetes.io/enforce": "privileged"}),
        ),
        (
            "default",
            json!({"app.kubernetes.io/managed-by": "flomastr-operator", "flomastr.io/tenant": "x"}),
        ),
        (
            outside.as_str(),
            json!({"pod-security.kubernetes.io/enforce": "restricted"}),
        ),
    ] {
        denied_by_policy(
            namespaces
                .patch(namespace, &patch_dry_run, &labels_patch(labels.clone()))
                .await,
            &format!("labelling {namespace} {labels}"),
        );
    }
    namespaces
        .patch(
            &tenant_namespace,
            &patch_dry_run,
            &labels_patch(json!({"pod-security.kubernetes.io/warn": "restricted"})),
        )
        .await
        .expect("restricted Pod Security labels on its own namespace are allowed");
    let namespace = |name: &str, labels: Value| -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    };
    let tenant_labels = |slug: &str| {
        json!({"app.kubernetes.io/managed-by": "flomastr-operator", "flomastr.io/tenant": slug,
               "pod-security.kubernetes.io/enforce": "restricted"})
    };
    denied_by_policy(
        namespaces
            .create(
                &dry_run(),
                &namespace(&unique("kube-x"), tenant_labels("x")),
            )
            .await,
        "a namespace not named tenant-<slug>",
    );
    let fresh = unique("new");
    namespaces
        .create(
            &dry_run(),
            &namespace(&format!("tenant-{fresh}"), tenant_labels(&fresh)),
        )
        .await
        .expect("a new tenant namespace is allowed");
    // A tenant-<slug> namespace the operator did not create is not adopted.
    let foreign = unique("foreign");
    ensure_namespace(&admin, &format!("tenant-{foreign}")).await;
    denied_by_policy(
        namespaces
            .patch(
                &format!("tenant-{foreign}"),
                &patch_dry_run,
                &labels_patch(tenant_labels(&foreign)),
            )
            .await,
        "adopting a tenant-<slug> namespace someone else created",
    );

    // Secrets: Opaque, in tenant namespaces.
    let token_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "flomastr-worker-2",
                     "annotations": {"kubernetes.io/service-account.name": "default"}},
        "type": "kubernetes.io/service-account-token"
    }))
    .unwrap();
    denied_by_policy(
        Api::<Secret>::namespaced(operator.clone(), &tenant_namespace)
            .create(&dry_run(), &token_secret)
            .await,
        "a ServiceAccount token Secret",
    );
    let opaque: Secret = serde_json::from_value(
        json!({"metadata": {"name": unique("s")}, "stringData": {"k": "v"}}),
    )
    .unwrap();
    for namespace in ["kube-system", outside.as_str()] {
        denied_by_policy(
            Api::<Secret>::namespaced(operator.clone(), namespace)
                .create(&dry_run(), &opaque)
                .await,
            &format!("a Secret in {namespace}"),
        );
    }
}

#[tokio::test]
async fn credentials_in_another_namespace_are_refused_and_never_read() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let engine = start_engine().await;
    let slug = unique("reach");
    // Valid credentials, labelled for this very tenant, but outside the credentials namespace.
    let elsewhere = unique("other-team");
    credentials_in(&admin, &elsewhere, &credentials_name(&slug), &slug).await;
    create_tenant(
        &admin,
        &slug,
        json!({"whatsapp": {"provider": "Infobip", "sender": "441134960000",
               "credentialsSecretRef": {"name": credentials_name(&slug), "namespace": elsewhere}}}),
    )
    .await;
    let tenants = Api::<Tenant>::all(admin.clone());
    // With the cluster admin's rights nothing but the operator's own rule stops the read; as its
    // ServiceAccount it must not even try (RBAC would answer 403: CredentialsUnreadable).
    for client in [admin.clone(), operator_client(&admin).await] {
        let ctx = context(client, operator_args(&engine)).await;
        let error = reconcile_now(&admin, &ctx, &slug).await.unwrap_err();
        assert!(error.contains("EngineRegistered"), "{error}");
        let (status, reason, message) = engine_registered(&tenants.get(&slug).await.unwrap());
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "CredentialsNamespaceNotAllowed"),
            "{message}"
        );
        assert!(
            message.contains(&elsewhere) && message.contains(CREDENTIALS_NAMESPACE),
            "{message}"
        );
        assert_eq!(
            engine_knows(&engine, &slug).await,
            404,
            "the engine never got the Secret"
        );
    }
}

#[tokio::test]
async fn a_credentials_secret_labelled_for_another_tenant_is_not_used() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let engine = start_engine().await;
    let ctx = context(operator_client(&admin).await, operator_args(&engine)).await;
    let victim = unique("victim");
    credentials(&admin, &victim).await;
    let unlabelled = unique("unlabelled");
    Api::<Secret>::namespaced(admin.clone(), CREDENTIALS_NAMESPACE)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": unlabelled},
                "stringData": {"apiKey": "some-key"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    for secret in [credentials_name(&victim), unlabelled] {
        let attacker = unique("attacker");
        create_tenant(
            &admin,
            &attacker,
            json!({"whatsapp": {"provider": "Infobip", "sender": "441134960000",
                   "credentialsSecretRef": {"name": secret, "namespace": CREDENTIALS_NAMESPACE}}}),
        )
        .await;
        let error = reconcile_now(&admin, &ctx, &attacker).await.unwrap_err();
        assert!(error.contains("EngineRegistered"), "{error}");
        let tenant = Api::<Tenant>::all(admin.clone())
            .get(&attacker)
            .await
            .unwrap();
        let (status, reason, message) = engine_registered(&tenant);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "CredentialsNotForTenant"),
            "{secret}: {message}"
        );
        assert!(
            message.contains(&format!("flomastr.io/tenant: {attacker}")),
            "{message}"
        );
        assert_eq!(
            engine_knows(&engine, &attacker).await,
            404,
            "{secret} was not handed to the engine"
        );
    }
}

#[tokio::test]
async fn the_applied_network_policy_is_the_built_one_and_reaches_only_dns_the_engine_and_the_web() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let engine = start_engine().await;
    let args = operator_args(&engine);
    let ctx = context(operator_client(&admin).await, args.clone()).await;
    let slug = provisioned(&admin, &ctx).await;
    let tenant = Api::<Tenant>::all(admin.clone()).get(&slug).await.unwrap();
    let built = network_policy(
        &tenant,
        &plan(&tenant, &args),
        &NetworkReach::from_config(&args),
    );
    let live = Api::<NetworkPolicy>::namespaced(admin.clone(), &format!("tenant-{slug}"))
        .get("n8n")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&live.spec).unwrap(),
        serde_json::to_value(&built.spec).unwrap(),
        "the API server holds the policy as built (nothing dropped or defaulted away)"
    );

    let live: Value = serde_json::to_value(live.spec.unwrap()).unwrap();
    let egress = live["egress"].as_array().unwrap();
    for rule in egress {
        assert!(
            rule["to"].as_array().is_some_and(|to| !to.is_empty())
                && rule["ports"].as_array().is_some_and(|p| !p.is_empty()),
            "every egress rule names peers and ports: {rule}"
        );
    }
    let engine_rule = egress
        .iter()
        .find(|rule| {
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                == "flomastr-system"
        })
        .expect("a rule for the engine's namespace");
    assert_eq!(
        engine_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "engine",
        "only the engine's pods there, not the operator's"
    );
    assert_eq!(
        engine_rule["ports"],
        json!([{"port": 8080, "protocol": "TCP"}])
    );
    let dns_rule = egress
        .iter()
        .find(|rule| {
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                == "kube-system"
        })
        .expect("a rule for the cluster DNS");
    assert_eq!(
        dns_rule["to"][0]["podSelector"]["matchLabels"],
        json!({"k8s-app": "kube-dns"})
    );
    let web = egress
        .iter()
        .find(|rule| rule["to"][0]["ipBlock"].is_object())
        .expect("a rule for the public web");
    assert_eq!(web["ports"], json!([{"port": 443, "protocol": "TCP"}]));
    let v4 = &web["to"][0]["ipBlock"];
    assert_eq!(v4["cidr"], "0.0.0.0/0");
    for range in [
        "100.64.0.0/10",
        "169.254.0.0/16",
        "10.0.0.0/8",
        "127.0.0.0/8",
    ] {
        assert!(
            v4["except"].as_array().unwrap().iter().any(|e| e == range),
            "{range} is excluded: {v4}"
        );
    }
}

fn job(pod: Value) -> Job {
    let mut spec = json!({"restartPolicy": "Never",
                          "containers": [{"name": "app", "image": "example.invalid/app:1"}]});
    spec.as_object_mut()
        .unwrap()
        .extend(pod.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": {"name": unique("probe")},
        "spec": {"template": {"spec": spec}}
    }))
    .unwrap()
}

/// An exec by the operator, its connection dropped: only whether it was let through counts.
async fn exec_as(
    operator: &kube::Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
) -> Result<(), kube::Error> {
    let params = AttachParams::default()
        .container(data_job::CONTAINER)
        .stdout(true)
        .stderr(true);
    Api::<Pod>::namespaced(operator.clone(), namespace)
        .exec(pod, command, &params)
        .await
        .map(drop)
}

#[tokio::test]
async fn n8n_data_jobs_keep_the_pod_rules_and_exec_reaches_only_them() {
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    let engine = start_engine().await;
    let operator = operator_client(&admin).await;
    let ctx = context(operator.clone(), operator_args(&engine)).await;
    let slug = provisioned(&admin, &ctx).await;
    let tenant_namespace = format!("tenant-{slug}");
    let tenant = Api::<Tenant>::all(admin.clone()).get(&slug).await.unwrap();
    let plan = plan(&tenant, &ctx.config);

    // The n8n-data Job the operator builds is allowed in the tenant's namespace (Pod Security
    // restricted included); Jobs elsewhere or with host access are not.
    let jobs = Api::<Job>::namespaced(operator.clone(), &tenant_namespace);
    for direction in [Direction::Backup, Direction::Restore] {
        let name = data_job::job_name(direction, "probe");
        jobs.create(
            &dry_run(),
            &data_job::job(&tenant, &plan, "flomastr/flomastr:test", direction, &name),
        )
        .await
        .unwrap_or_else(|e| panic!("its {direction:?} Job is allowed: {e}"));
    }
    for namespace in ["kube-system", "default"] {
        denied_by_policy(
            Api::<Job>::namespaced(operator.clone(), namespace)
                .create(&dry_run(), &job(json!({})))
                .await,
            &format!("a Job in {namespace}"),
        );
    }
    for (what, pod) in [
        (
            "another ServiceAccount",
            json!({"serviceAccountName": "admin"}),
        ),
        ("host PID", json!({"hostPID": true})),
        (
            "a hostPath volume",
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        ),
        (
            "a privileged container",
            json!({"containers": [{"name": "app", "image": "example.invalid/app:1", "securityContext": {"privileged": true}}]}),
        ),
    ] {
        denied_by_policy(
            jobs.create(&dry_run(), &job(pod)).await,
            &format!("a Job with {what}"),
        );
    }

    // Exec (which RBAC cannot confine to the Jobs' generated pod names): refused by admission
    // before any pod is looked up, unless it is `flomastr n8n-data pack|unpack` in an n8n-data
    // Job's pod of a tenant namespace.
    let pack = data_job::exec_command(Direction::Backup);
    let shell: Vec<String> = ["/bin/sh", "-c", "cat /etc/passwd"]
        .map(str::to_owned)
        .to_vec();
    for (namespace, pod, command, what) in [
        (
            "kube-system",
            "n8n-backup-x",
            pack.clone(),
            "outside tenant namespaces",
        ),
        (
            tenant_namespace.as_str(),
            "n8n-5d9f-abcde",
            pack.clone(),
            "into n8n itself",
        ),
        (
            tenant_namespace.as_str(),
            "n8n-backup-x",
            shell,
            "of another command",
        ),
    ] {
        denied_by_policy(
            exec_as(&operator, namespace, pod, command).await,
            &format!("an exec {what}"),
        );
    }
    let (code, message) = refusal(
        exec_as(&operator, &tenant_namespace, "n8n-backup-none", pack).await,
        "the allowed exec into a pod that does not exist",
    );
    assert_eq!(code, 404, "let through, then not found: {message}");
}
