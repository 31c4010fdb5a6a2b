//! TenantRollouts on the real API server (and a real engine on PostgreSQL): the canaries first,
//! batches of `batchSize`, the status per tenant, a failing canary stopping the rollout and
//! rolled back, a fixed spec resuming it, and bad rollouts refused with a clear reason.
//!
//! The test plays the Deployment controller — a Deployment whose n8n image is `BROKEN` never
//! becomes available, any other does — while the operator's own reconciles (Tenant and rollout,
//! under the operator's RBAC and admission policy) do the rest. With the real node (whose
//! Deployment controller would overwrite the played status) these tests step aside: there
//! `n8n_tenant::a_rollout_to_an_n8n_that_cannot_start_…` rolls a real n8n back, and
//! `scripts/test` runs these again on an API server of their own without the node.

use crate::common::{admin_client, install_rollout_crd, install_tenant_crd, unique};
use crate::engine_harness::start_engine;
use crate::operator::{context, create_tenant, credentials, operator_args, operator_client};
use flomastr::operator::backup::target::BackupStore;
use flomastr::operator::config::DEFAULT_N8N_IMAGE;
use flomastr::operator::context::Context;
use flomastr::tenant::{RolloutPhase, Tenant, TenantRollout, TenantRolloutStatus, UpgradeState};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const GOOD: &str = "n8nio/n8n:9.9.1-test";
const FIXED: &str = "n8nio/n8n:9.9.2-test";
const BROKEN: &str = "n8nio/n8n:0.0.0-broken";
const RUN_LABEL: &str = "flomastr.io/rollout-test";

struct Fleet {
    admin: kube::Client,
    ctx: Arc<Context>,
    slugs: Vec<String>,
    run: String,
    _engine: crate::engine_harness::TestEngine,
}

/// Tenants named `<run>-<name>` for each of `names`, each with one n8n replica and the run's
/// label (the rollouts of this test cover only them), reconciled once and running the default.
/// `None` (the test steps aside) when a real Deployment controller runs (the node tier).
async fn fleet(names: &[&str]) -> Option<Fleet> {
    fleet_with(names, |_| json!({}), None).await
}

/// As `fleet`, each Tenant's spec extended with `extra(name)`, the operator holding the
/// platform backup key `backup_key`.
async fn fleet_with(
    names: &[&str],
    extra: impl Fn(&str) -> Value,
    backup_key: Option<&str>,
) -> Option<Fleet> {
    if std::env::var_os("FLOMASTR_TEST_NODE").is_some() {
        eprintln!(
            "a real Deployment controller runs (FLOMASTR_TEST_NODE): this test needs the API server alone (scripts/test runs it again on one)"
        );
        return None;
    }
    let admin = admin_client().await;
    install_tenant_crd(&admin).await;
    install_rollout_crd(&admin).await;
    let engine = start_engine().await;
    let mut args = operator_args(&engine);
    args.backup_key = backup_key.map(str::to_owned);
    let ctx = context(operator_client(&admin).await, args).await;
    let run = unique("ro");
    let mut slugs = Vec::new();
    for name in names {
        let slug = format!("{run}-{name}");
        credentials(&admin, &slug).await;
        let mut spec = json!({"n8n": {"replicas": 1, "storage": "1Gi"}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra(name).as_object().unwrap().clone());
        create_tenant(&admin, &slug, spec).await;
        Api::<Tenant>::all(admin.clone())
            .patch(
                &slug,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {RUN_LABEL: run}}})),
            )
            .await
            .unwrap();
        slugs.push(slug);
    }
    let fleet = Fleet {
        admin,
        ctx,
        slugs,
        run,
        _engine: engine,
    };
    fleet.tenants_step().await;
    fleet.tenants_step().await;
    for slug in &fleet.slugs {
        assert_eq!(fleet.image(slug).await, DEFAULT_N8N_IMAGE);
        assert_eq!(
            fleet.recorded(slug).await.as_deref(),
            Some(DEFAULT_N8N_IMAGE)
        );
    }
    Some(fleet)
}

impl Fleet {
    fn slug(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    /// The Tenant reconciles (applying the image a rollout chose), then the Deployment
    /// controller's part: the Deployment's status as a kubelet would make it.
    async fn tenants_step(&self) {
        for slug in &self.slugs {
            let _ = crate::operator::reconcile_now(&self.admin, &self.ctx, slug).await;
            self.kubelet(slug).await;
        }
        for slug in &self.slugs {
            let _ = crate::operator::reconcile_now(&self.admin, &self.ctx, slug).await;
        }
    }

    async fn kubelet(&self, slug: &str) {
        let deployments =
            Api::<Deployment>::namespaced(self.admin.clone(), &format!("tenant-{slug}"));
        let deployment = deployments.get("n8n").await.unwrap();
        let image = deployment.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap();
        let available = i32::from(image != BROKEN);
        let status = json!({"status": {
            "observedGeneration": deployment.metadata.generation, "replicas": 1,
            "updatedReplicas": 1, "readyReplicas": available, "availableReplicas": available,
            "unavailableReplicas": 1 - available
        }});
        deployments
            .patch_status("n8n", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    async fn image(&self, slug: &str) -> String {
        Api::<Deployment>::namespaced(self.admin.clone(), &format!("tenant-{slug}"))
            .get("n8n")
            .await
            .unwrap()
            .spec
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .clone()
            .unwrap()
    }

    /// The Tenant's `status.n8nImage`.
    async fn recorded(&self, slug: &str) -> Option<String> {
        Api::<Tenant>::all(self.admin.clone())
            .get(slug)
            .await
            .unwrap()
            .status
            .and_then(|s| s.n8n_image)
    }

    async fn create_rollout(&self, name: &str, spec: Value) -> Result<TenantRollout, kube::Error> {
        let mut spec = spec;
        spec["tenantSelector"] = json!({RUN_LABEL: self.run});
        let rollout: TenantRollout = serde_json::from_value(json!({
            "apiVersion": "flomastr.io/v1alpha1", "kind": "TenantRollout",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        Api::<TenantRollout>::all(self.admin.clone())
            .create(&PostParams::default(), &rollout)
            .await
    }

    /// One rollout pass, as the controller runs it; the status after it.
    async fn rollout_pass(&self, name: &str) -> TenantRolloutStatus {
        let api = Api::<TenantRollout>::all(self.admin.clone());
        let rollout = api.get(name).await.unwrap();
        flomastr::operator::rollout::reconcile(Arc::new(rollout), self.ctx.clone())
            .await
            .unwrap();
        api.get(name).await.unwrap().status.unwrap()
    }

    /// Rollout passes and the tenants' reconciles until the rollout's phase is `until`; every
    /// status seen on the way.
    async fn drive(&self, name: &str, until: RolloutPhase) -> Vec<TenantRolloutStatus> {
        let mut seen = Vec::new();
        for _ in 0..60 {
            let status = self.rollout_pass(name).await;
            let done =
                status.phase == Some(until) && status.tenants.iter().all(|t| !t.state.in_flight());
            seen.push(status);
            if done {
                return seen;
            }
            self.tenants_step().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("rollout {name} never reached {until:?}: {:#?}", seen.last());
    }
}

fn state_of(status: &TenantRolloutStatus, slug: &str) -> UpgradeState {
    status
        .tenants
        .iter()
        .find(|t| t.name == slug)
        .unwrap()
        .state
}

#[tokio::test]
async fn a_rollout_upgrades_the_canary_first_then_batches_and_reports_each_tenant() {
    let Some(fleet) = fleet(&["canary", "a", "b", "c", "d"]).await else {
        return;
    };
    let name = format!("{}-waves", fleet.run);
    let canary = fleet.slug("canary");
    fleet
        .create_rollout(
            &name,
            json!({"n8nImage": GOOD, "canary": [canary], "batchSize": 2,
                   "readyTimeoutSeconds": 60, "requireBackup": false}),
        )
        .await
        .unwrap();
    let seen = fleet.drive(&name, RolloutPhase::Succeeded).await;

    let first = &seen[0];
    assert_eq!(first.phase, Some(RolloutPhase::Progressing));
    assert_eq!(first.current_wave, Some(0));
    assert_eq!(
        first.waves,
        Some(3),
        "the canary's wave, then 4 tenants 2 at a time"
    );
    assert_eq!(state_of(first, &canary), UpgradeState::Upgrading);
    for status in &seen {
        let started: Vec<_> = status
            .tenants
            .iter()
            .filter(|t| t.state != UpgradeState::Pending && !t.canary)
            .collect();
        if !started.is_empty() {
            assert_eq!(
                state_of(status, &canary),
                UpgradeState::Upgraded,
                "no tenant starts before the canary is upgraded"
            );
        }
        let in_flight = status
            .tenants
            .iter()
            .filter(|t| t.state.in_flight())
            .count();
        assert!(in_flight <= 2, "at most batchSize at once: {status:#?}");
        let waves: std::collections::BTreeSet<i32> = status
            .tenants
            .iter()
            .filter(|t| t.state.in_flight())
            .map(|t| t.wave)
            .collect();
        assert!(waves.len() <= 1, "one wave at a time: {status:#?}");
    }
    let last = seen.last().unwrap();
    assert_eq!(last.upgraded, 5);
    assert_eq!(last.stopped_reason, None);
    let waves: Vec<(String, i32)> = last
        .tenants
        .iter()
        .map(|t| (t.name.clone(), t.wave))
        .collect();
    assert_eq!(
        waves,
        [
            (canary.clone(), 0),
            (fleet.slug("a"), 1),
            (fleet.slug("b"), 1),
            (fleet.slug("c"), 2),
            (fleet.slug("d"), 2)
        ]
    );
    for entry in &last.tenants {
        assert_eq!(entry.state, UpgradeState::Upgraded, "{entry:?}");
        assert_eq!(entry.from.as_deref(), Some(DEFAULT_N8N_IMAGE));
        assert_eq!(entry.to, GOOD);
    }
    for slug in &fleet.slugs {
        assert_eq!(fleet.image(slug).await, GOOD);
        assert_eq!(fleet.recorded(slug).await.as_deref(), Some(GOOD));
    }
}

#[tokio::test]
async fn a_failing_canary_stops_the_rollout_is_rolled_back_and_a_fixed_spec_resumes() {
    let Some(fleet) = fleet(&["canary", "a", "b"]).await else {
        return;
    };
    let name = format!("{}-broken", fleet.run);
    let canary = fleet.slug("canary");
    fleet
        .create_rollout(
            &name,
            json!({"n8nImage": BROKEN, "canary": [canary], "batchSize": 5,
                   "readyTimeoutSeconds": 2, "requireBackup": false}),
        )
        .await
        .unwrap();
    let seen = fleet.drive(&name, RolloutPhase::Stopped).await;
    assert!(
        seen.iter()
            .any(|s| state_of(s, &canary) == UpgradeState::Upgrading),
        "the canary ran the new image first"
    );
    let stopped = seen.last().unwrap();
    assert_eq!(stopped.stopped_reason.as_deref(), Some("CanaryFailed"));
    let message = stopped.message.clone().unwrap();
    assert!(
        message.contains(&canary) && message.contains("not ready within 2s"),
        "{message}"
    );
    let entry = stopped.tenants.iter().find(|t| t.name == canary).unwrap();
    assert_eq!(entry.state, UpgradeState::RolledBack);
    assert_eq!(entry.reason.as_deref(), Some("NotReadyInTime"));
    assert!(entry.message.as_deref().unwrap().contains("rolled back to"));
    assert_eq!(fleet.image(&canary).await, DEFAULT_N8N_IMAGE, "rolled back");
    assert_eq!(
        fleet.recorded(&canary).await.as_deref(),
        Some(DEFAULT_N8N_IMAGE)
    );
    for other in ["a", "b"] {
        let slug = fleet.slug(other);
        assert_eq!(state_of(stopped, &slug), UpgradeState::Pending);
        assert_eq!(fleet.image(&slug).await, DEFAULT_N8N_IMAGE, "never touched");
    }
    // Stopped stays stopped: more passes start no one.
    fleet.tenants_step().await;
    let again = fleet.rollout_pass(&name).await;
    assert_eq!(again.phase, Some(RolloutPhase::Stopped));
    assert_eq!(state_of(&again, &fleet.slug("a")), UpgradeState::Pending);

    // The fix: a version that starts. The rollout resumes, the canary first again.
    Api::<TenantRollout>::all(fleet.admin.clone())
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"n8nImage": FIXED}})),
        )
        .await
        .unwrap();
    let resumed = fleet.drive(&name, RolloutPhase::Succeeded).await;
    assert_eq!(state_of(&resumed[0], &canary), UpgradeState::Upgrading);
    assert_eq!(
        state_of(&resumed[0], &fleet.slug("a")),
        UpgradeState::Pending
    );
    let last = resumed.last().unwrap();
    assert_eq!(last.upgraded, 3);
    assert_eq!(last.stopped_reason, None);
    for slug in &fleet.slugs {
        assert_eq!(fleet.image(slug).await, FIXED);
    }
}

#[tokio::test]
async fn bad_rollouts_are_refused_with_a_clear_reason_and_touch_no_tenant() {
    let Some(fleet) = fleet(&["solo"]).await else {
        return;
    };
    let solo = fleet.slug("solo");
    for (case, spec, expected) in [
        ("empty image", json!({"n8nImage": ""}), "n8nImage"),
        (
            "floating tag",
            json!({"n8nImage": "n8nio/n8n:latest"}),
            "pinned",
        ),
        ("no tag", json!({"n8nImage": "n8nio/n8n"}), "pinned"),
        (
            "batch 0",
            json!({"n8nImage": GOOD, "batchSize": 0}),
            "batchSize",
        ),
        (
            "timeout 0",
            json!({"n8nImage": GOOD, "readyTimeoutSeconds": 0}),
            "readyTimeoutSeconds",
        ),
    ] {
        let name = format!("{}-bad-{}", fleet.run, case.replace(' ', "-"));
        match fleet.create_rollout(&name, spec).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{case}: {status:?}");
                assert!(
                    status.message.contains(expected),
                    "{case}: {}",
                    status.message
                );
            }
            other => panic!("{case}: accepted: {other:?}"),
        }
    }

    let unknown = format!("{}-unknown", fleet.run);
    fleet
        .create_rollout(
            &unknown,
            json!({"n8nImage": GOOD, "canary": ["no-such-tenant"], "requireBackup": false}),
        )
        .await
        .unwrap();
    let status = fleet.rollout_pass(&unknown).await;
    assert_eq!(status.phase, Some(RolloutPhase::Invalid));
    assert_eq!(status.stopped_reason.as_deref(), Some("UnknownCanary"));
    assert!(status.message.unwrap().contains("no-such-tenant"));
    assert!(status.tenants.is_empty());
    fleet.tenants_step().await;
    assert_eq!(fleet.image(&solo).await, DEFAULT_N8N_IMAGE);

    // Backups required (the default) but the Tenant has none: it fails before n8n is touched.
    let unbacked = format!("{}-unbacked", fleet.run);
    fleet
        .create_rollout(&unbacked, json!({"n8nImage": GOOD, "canary": [solo]}))
        .await
        .unwrap();
    let status = fleet.rollout_pass(&unbacked).await;
    assert_eq!(status.phase, Some(RolloutPhase::Stopped));
    assert_eq!(status.stopped_reason.as_deref(), Some("CanaryFailed"));
    let entry = &status.tenants[0];
    assert_eq!(entry.state, UpgradeState::Failed);
    assert_eq!(entry.reason.as_deref(), Some("NoBackupConfigured"));
    assert!(entry.message.as_deref().unwrap().contains("spec.backup"));
    fleet.tenants_step().await;
    assert_eq!(fleet.image(&solo).await, DEFAULT_N8N_IMAGE);
    let tenant = Api::<Tenant>::all(fleet.admin.clone())
        .get(&solo)
        .await
        .unwrap();
    let annotations = tenant.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("flomastr.io/n8n-image")
            && !annotations.contains_key("flomastr.io/backup-now"),
        "{annotations:?}"
    );
}

/// `requireBackup: true` against the real backup controller (the Tenant reconcile takes each
/// backup into a real S3-compatible server): no tenant is given the new image before its own
/// backup succeeded, and a tenant whose backup fails is not upgraded and stops the rollout.
#[tokio::test]
async fn a_wave_waits_for_each_tenants_backup_and_a_failed_backup_stops_it() {
    use crate::backup_store::{ACCESS_KEY, BUCKET, SECRET_KEY, s3_target, start_s3};
    use crate::operator::{CREDENTIALS_NAMESPACE, credentials_with};
    let s3 = start_s3().await;
    let admin = admin_client().await;
    let keys = unique("ro-s3");
    let data = json!({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY});
    credentials_with(&admin, CREDENTIALS_NAMESPACE, &keys, "backups", data).await;
    let prefix = unique("ro-backups");
    let backup = |endpoint: &str| {
        json!({"backup": {"target": {"s3": {"endpoint": endpoint, "bucket": BUCKET,
            "prefix": prefix, "credentialsSecretRef": {"name": keys, "namespace": CREDENTIALS_NAMESPACE}}}}})
    };
    // `b`'s target does not answer: its backup fails.
    let Some(fleet) = fleet_with(
        &["canary", "a", "b"],
        |name| match name {
            "b" => backup("http://127.0.0.1:9"),
            _ => backup(&s3.endpoint),
        },
        Some("6b".repeat(32).as_str()),
    )
    .await
    else {
        return;
    };
    let name = format!("{}-backed", fleet.run);
    let canary = fleet.slug("canary");
    fleet
        .create_rollout(
            &name,
            json!({"n8nImage": GOOD, "canary": [canary], "batchSize": 2,
                   "readyTimeoutSeconds": 60, "requireBackup": true}),
        )
        .await
        .unwrap();
    let request = format!("rollout-{name}-1");
    let store = BackupStore::open(&s3_target(&s3.endpoint, &prefix)).unwrap();
    let tenants = Api::<Tenant>::all(fleet.admin.clone());
    let mut seen = Vec::new();
    let mut stopped = None;
    for _ in 0..60 {
        let status = fleet.rollout_pass(&name).await;
        // Whoever the rollout gave the new image to had its backup taken first, and that
        // backup is in the target.
        for slug in &fleet.slugs {
            let tenant = tenants.get(slug).await.unwrap();
            let chosen = tenant
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("flomastr.io/n8n-image"))
                .cloned();
            let entry = status.tenants.iter().find(|t| &t.name == slug).unwrap();
            if chosen.as_deref() != Some(GOOD) {
                continue;
            }
            let last =
                serde_json::to_value(tenant.status.unwrap()).unwrap()["backup"]["lastRequest"]
                    .clone();
            assert_eq!(last["id"], request.as_str(), "{slug}: {last}");
            assert_eq!(last["outcome"], "Succeeded", "{slug}: {last}");
            let backup = entry
                .backup_name
                .clone()
                .expect("the entry names its backup");
            assert_eq!(last["backupName"], backup.as_str());
            let listed = flomastr::operator::backup::full::list_tenant_backups(&store, slug)
                .await
                .unwrap();
            assert!(listed.contains(&backup), "{backup} in {listed:?}");
        }
        let done = status.phase == Some(RolloutPhase::Stopped)
            && status.tenants.iter().all(|t| !t.state.in_flight());
        seen.push(status.clone());
        if done {
            stopped = Some(status);
            break;
        }
        fleet.tenants_step().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stopped = stopped.unwrap_or_else(|| panic!("never stopped: {:#?}", seen.last()));

    // Each tenant waited in BackingUp (n8n untouched) before it was upgraded.
    for slug in [&canary, &fleet.slug("a"), &fleet.slug("b")] {
        let waited = seen
            .iter()
            .position(|s| state_of(s, slug) == UpgradeState::BackingUp)
            .unwrap_or_else(|| panic!("{slug} never backed up first"));
        assert!(
            seen[..waited]
                .iter()
                .all(|s| state_of(s, slug) == UpgradeState::Pending),
            "{slug}: a backup is the first step"
        );
    }
    assert_eq!(state_of(&stopped, &canary), UpgradeState::Upgraded);
    assert_eq!(state_of(&stopped, &fleet.slug("a")), UpgradeState::Upgraded);
    let b = fleet.slug("b");
    let entry = stopped.tenants.iter().find(|t| t.name == b).unwrap();
    assert_eq!(entry.state, UpgradeState::Failed, "{entry:?}");
    assert_eq!(entry.reason.as_deref(), Some("BackupFailed"));
    let why = entry.message.clone().unwrap();
    assert!(
        why.contains("TargetUnreachable") && why.contains("n8n was not changed"),
        "{why}"
    );
    assert_eq!(stopped.stopped_reason.as_deref(), Some("TooManyFailures"));
    assert!(stopped.message.clone().unwrap().contains(&b), "{stopped:?}");
    fleet.tenants_step().await;
    assert_eq!(fleet.image(&b).await, DEFAULT_N8N_IMAGE, "never upgraded");
    assert_eq!(fleet.image(&canary).await, GOOD);
    let annotations = tenants
        .get(&b)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("flomastr.io/n8n-image"),
        "{annotations:?}"
    );
}
