//! Full tenant backups driven by the Tenant (`spec.backup`, annotations `flomastr.io/backup-now`
//! and `flomastr.io/restore-from`) on the real API server, a running engine on PostgreSQL and a
//! real S3-compatible server: status, retention, schedule, restore into a new Tenant (the n8n
//! key and the engine's data come back), a Snapshot deletion, and bad input (unreachable
//! target, unknown backup, corrupted part, future format, wrong platform key) with nothing of
//! the live tenant touched.

use crate::backup::{contents, fill};
use crate::backup_store::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, s3_target, start_s3};
use crate::common::{admin_client, install_tenant_crd, unique};
use crate::engine_harness::{TestEngine, start_engine};
use crate::operator::{
    CREDENTIALS_NAMESPACE, context, create_tenant, credentials, credentials_with, operator_args,
    operator_client, reconcile_now,
};
use bytes::Bytes;
use flomastr::operator::backup::target::BackupStore;
use flomastr::tenant::Tenant;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

const BACKUP_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn backup_spec(endpoint: &str, prefix: &str, s3_secret: &str) -> Value {
    json!({"backup": {"retention": 2, "target": {"s3": {
        "endpoint": endpoint, "bucket": BUCKET, "prefix": prefix,
        "credentialsSecretRef": {"name": s3_secret, "namespace": CREDENTIALS_NAMESPACE}}}}})
}

struct Setup {
    client: kube::Client,
    engine: TestEngine,
    s3: S3Server,
    operator: kube::Client,
    s3_secret: String,
    prefix: String,
}

async fn setup() -> Setup {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let operator = operator_client(&client).await;
    let s3 = start_s3().await;
    let s3_secret = unique("s3-keys");
    let data = json!({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY});
    credentials_with(&client, CREDENTIALS_NAMESPACE, &s3_secret, "backups", data).await;
    Setup {
        client,
        engine: start_engine().await,
        s3,
        operator,
        s3_secret,
        prefix: unique("fleet"),
    }
}

impl Setup {
    async fn ctx(&self, key: &str) -> std::sync::Arc<flomastr::operator::context::Context> {
        let mut args = operator_args(&self.engine);
        args.backup_key = Some(key.to_owned());
        context(self.operator.clone(), args).await
    }

    async fn tenant(&self, slug: &str, extra: Value) -> Tenant {
        credentials(&self.client, slug).await;
        let mut spec = backup_spec(&self.s3.endpoint, &self.prefix, &self.s3_secret);
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        create_tenant(&self.client, slug, spec).await
    }

    fn store(&self) -> BackupStore {
        BackupStore::open(&s3_target(&self.s3.endpoint, &self.prefix)).unwrap()
    }
}

async fn annotate(client: &kube::Client, slug: &str, key: &str, value: &str) {
    Api::<Tenant>::all(client.clone())
        .patch(
            slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

async fn tenant_status(client: &kube::Client, slug: &str) -> Value {
    let tenant = Api::<Tenant>::all(client.clone()).get(slug).await.unwrap();
    serde_json::to_value(tenant.status.unwrap()).unwrap()
}

fn condition(status: &Value, kind: &str) -> (String, String) {
    let found = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {status}"));
    (
        found["status"].as_str().unwrap().to_owned(),
        found["reason"].as_str().unwrap().to_owned(),
    )
}

async fn n8n_key(client: &kube::Client, slug: &str) -> Option<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), &format!("tenant-{slug}"))
        .get_opt("n8n-encryption")
        .await
        .unwrap()?;
    let bytes = &secret.data.unwrap()["N8N_ENCRYPTION_KEY"].0;
    Some(String::from_utf8(bytes.clone()).unwrap())
}

async fn resource_version(client: &kube::Client, slug: &str) -> String {
    Api::<Tenant>::all(client.clone())
        .get(slug)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

/// Asks for a backup by annotation and returns `status.backup.lastRequest`.
async fn backup_now(
    s: &Setup,
    ctx: &std::sync::Arc<flomastr::operator::context::Context>,
    slug: &str,
    id: &str,
) -> Value {
    annotate(&s.client, slug, "flomastr.io/backup-now", id).await;
    let _ = reconcile_now(&s.client, ctx, slug).await;
    let status = tenant_status(&s.client, slug).await;
    let request = status["backup"]["lastRequest"].clone();
    assert_eq!(request["id"], id, "{status}");
    request
}

async fn restore_from(
    s: &Setup,
    ctx: &std::sync::Arc<flomastr::operator::context::Context>,
    slug: &str,
    name: &str,
) -> Value {
    annotate(&s.client, slug, "flomastr.io/restore-from", name).await;
    let _ = reconcile_now(&s.client, ctx, slug).await;
    let status = tenant_status(&s.client, slug).await;
    assert_eq!(status["restore"]["from"], name, "{status}");
    status["restore"].clone()
}

#[tokio::test]
async fn a_backup_by_annotation_restores_into_a_new_tenant_with_its_key_and_data() {
    let s = setup().await;
    let ctx = s.ctx(BACKUP_KEY).await;
    let source = unique("bk-src");
    s.tenant(&source, json!({})).await;
    reconcile_now(&s.client, &ctx, &source).await.unwrap();
    let status = tenant_status(&s.client, &source).await;
    assert_eq!(
        condition(&status, "BackupReady"),
        ("True".into(), "Scheduled".into())
    );
    fill(&s.engine, &source, "bk").await;
    let data = contents(&s.engine, &source).await;

    let request = backup_now(&s, &ctx, &source, "req-1").await;
    assert_eq!(request["outcome"], "Succeeded", "{request}");
    let name = request["backupName"].as_str().unwrap().to_owned();
    let status = tenant_status(&s.client, &source).await;
    assert_eq!(status["backup"]["lastBackup"]["name"], name.as_str());
    assert!(
        status["backup"]["lastBackup"]["sizeBytes"]
            .as_i64()
            .unwrap()
            > 1000
    );
    assert_eq!(
        condition(&status, "BackupReady"),
        ("True".into(), "Succeeded".into())
    );

    // The parts, and the n8n key nowhere in clear.
    let store = s.store();
    let objects: Vec<String> = store
        .list(&source)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    for part in [
        "manifest.json",
        "engine.jsonl",
        "tenant.yaml",
        "n8n-encryption-key.sealed",
    ] {
        assert!(
            objects.contains(&format!("{name}/{part}")),
            "{part} in {objects:?}"
        );
    }
    let key = n8n_key(&s.client, &source).await.unwrap();
    for object in &objects {
        let body = store.read_small(object, 64 << 20).await.unwrap();
        assert!(
            !body.windows(key.len()).any(|w| w == key.as_bytes()),
            "key in {object}"
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("ib-api-key-from-secret"),
            "credential in {object}"
        );
    }
    let tenant_yaml = String::from_utf8(
        store
            .read_small(&format!("{name}/tenant.yaml"), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        tenant_yaml.contains("credentialsSecretRef"),
        "{tenant_yaml}"
    );

    // A settled tenant: the same request again writes nothing.
    let before = resource_version(&s.client, &source).await;
    reconcile_now(&s.client, &ctx, &source).await.unwrap();
    assert_eq!(
        resource_version(&s.client, &source).await,
        before,
        "a no-op reconcile wrote"
    );

    // Retention 2: the oldest goes.
    for id in ["req-2", "req-3"] {
        assert_eq!(
            backup_now(&s, &ctx, &source, id).await["outcome"],
            "Succeeded"
        );
    }
    let kept = flomastr::operator::backup::full::list_tenant_backups(&store, &source)
        .await
        .unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(!kept.contains(&name), "the oldest was pruned");
    let name = kept[1].clone();

    // Restore into a new Tenant: the key first, then the engine's rows.
    let copy = unique("bk-copy");
    s.tenant(&copy, json!({})).await;
    annotate(&s.client, &copy, "flomastr.io/restore-from", &name).await;
    reconcile_now(&s.client, &ctx, &copy).await.unwrap();
    let restored = tenant_status(&s.client, &copy).await;
    assert_eq!(restored["restore"]["outcome"], "Succeeded", "{restored}");
    assert_eq!(
        n8n_key(&s.client, &copy).await.unwrap(),
        key,
        "the same n8n key"
    );
    assert_eq!(
        restored["encryptionKeyFingerprint"], status["encryptionKeyFingerprint"],
        "the restored key is the recorded one"
    );
    assert_eq!(contents(&s.engine, &copy).await, data);
    let before = resource_version(&s.client, &copy).await;
    reconcile_now(&s.client, &ctx, &copy).await.unwrap();
    assert_eq!(
        resource_version(&s.client, &copy).await,
        before,
        "restored once"
    );
}

#[tokio::test]
async fn bad_backups_and_targets_are_clear_statuses_and_touch_nothing() {
    let s = setup().await;
    let ctx = s.ctx(BACKUP_KEY).await;
    let source = unique("bk-bad");
    s.tenant(&source, json!({})).await;
    reconcile_now(&s.client, &ctx, &source).await.unwrap();
    fill(&s.engine, &source, "bad").await;
    let good = backup_now(&s, &ctx, &source, "r1").await["backupName"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = s.store();
    let copy_to = |to: String, part: &'static str, edit: fn(Vec<u8>) -> Vec<u8>| {
        let (store, good) = (&store, &good);
        async move {
            for p in [
                "manifest.json",
                "engine.jsonl",
                "tenant.yaml",
                "n8n-encryption-key.sealed",
            ] {
                let body = store
                    .read_small(&format!("{good}/{p}"), 64 << 20)
                    .await
                    .unwrap();
                let body = if p == part { edit(body) } else { body };
                store
                    .put(&format!("{to}/{p}"), Bytes::from(body))
                    .await
                    .unwrap();
            }
            to
        }
    };
    let corrupt = copy_to(
        format!("{source}/20200101T000000.000Z"),
        "engine.jsonl",
        |mut b| {
            let at = b.len() / 2;
            b[at] ^= 1;
            b
        },
    )
    .await;
    let future = copy_to(
        format!("{source}/20200101T000001.000Z"),
        "manifest.json",
        |b| {
            let mut m: Value = serde_json::from_slice(&b).unwrap();
            m["formatVersion"] = json!(flomastr::operator::backup::manifest::FORMAT_VERSION + 1);
            serde_json::to_vec(&m).unwrap()
        },
    )
    .await;

    // A live tenant whose restores all fail keeps its own key and data.
    let live = unique("bk-live");
    s.tenant(&live, json!({})).await;
    reconcile_now(&s.client, &ctx, &live).await.unwrap();
    let key = n8n_key(&s.client, &live).await.unwrap();
    let data = contents(&s.engine, &live).await;
    let cases = [
        (corrupt, "BackupCorrupt"),
        (future, "BackupVersion"),
        (format!("{source}/20200101T000002.000Z"), "BackupNotFound"),
        ("../etc/passwd".to_owned(), "BackupNotFound"),
    ];
    for (name, reason) in cases {
        let restore = restore_from(&s, &ctx, &live, &name).await;
        assert_eq!(
            (restore["outcome"].as_str(), restore["reason"].as_str()),
            (Some("Failed"), Some(reason)),
            "{name}: {restore}"
        );
        assert!(restore["message"].as_str().unwrap().len() > 10);
    }
    // Another platform key: refused before anything is written.
    let other = s.ctx(&"17".repeat(32)).await;
    let restore = restore_from(&s, &other, &live, &good).await;
    assert_eq!(restore["reason"], "BackupKeyWrong", "{restore}");
    // The live key differs from the backup's: refused, not overwritten (a copy of the good
    // backup under another name: each annotation value is acted on once).
    let same = copy_to(format!("{source}/20200101T000003.000Z"), "none", |b| b).await;
    let restore = restore_from(&s, &ctx, &live, &same).await;
    assert_eq!(restore["reason"], "KeyDiffers", "{restore}");
    assert_eq!(
        n8n_key(&s.client, &live).await.unwrap(),
        key,
        "the live key was changed"
    );
    assert_eq!(
        contents(&s.engine, &live).await,
        data,
        "the live data was changed"
    );

    // A backup of format 1 (before n8n's volume was in backups) still restores.
    let older = copy_to(
        format!("{source}/20200101T000004.000Z"),
        "manifest.json",
        |b| {
            let mut m: Value = serde_json::from_slice(&b).unwrap();
            m["formatVersion"] = json!(1);
            serde_json::to_vec(&m).unwrap()
        },
    )
    .await;
    let heir = unique("bk-old");
    s.tenant(&heir, json!({})).await;
    let restore = restore_from(&s, &ctx, &heir, &older).await;
    assert_eq!(restore["outcome"], "Succeeded", "{restore}");
    assert!(
        restore["message"]
            .as_str()
            .unwrap()
            .contains("no n8n volume"),
        "{restore}"
    );

    // n8n's volume altered after it was backed up: refused before anything is restored, also
    // into a new Tenant (no key from the backup, no volume Job).
    let altered = copy_to(
        format!("{source}/20200101T000005.000Z"),
        "manifest.json",
        |b| {
            let mut m: Value = serde_json::from_slice(&b).unwrap();
            m["parts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "n8n-data.tar", "sha256": "00".repeat(32), "size": 10240}));
            serde_json::to_vec(&m).unwrap()
        },
    )
    .await;
    store
        .put(
            &format!("{altered}/n8n-data.tar"),
            Bytes::from(vec![0u8; 10240]),
        )
        .await
        .unwrap();
    let fresh = unique("bk-alt");
    s.tenant(&fresh, json!({})).await;
    let restore = restore_from(&s, &ctx, &fresh, &altered).await;
    assert_eq!(restore["reason"], "BackupCorrupt", "{restore}");
    assert!(
        restore["message"]
            .as_str()
            .unwrap()
            .contains("n8n-data.tar"),
        "{restore}"
    );
    assert_ne!(
        n8n_key(&s.client, &fresh).await,
        n8n_key(&s.client, &source).await,
        "the backup's key was not restored"
    );
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(
        s.client.clone(),
        &format!("tenant-{fresh}"),
    )
    .list(&Default::default())
    .await
    .unwrap();
    assert!(jobs.items.is_empty(), "no n8n-data Job was started");

    // An unreachable target: the request fails with a reason, BackupReady says why.
    let dead = unique("bk-dead");
    credentials(&s.client, &dead).await;
    create_tenant(
        &s.client,
        &dead,
        backup_spec("http://127.0.0.1:9", "x", &s.s3_secret),
    )
    .await;
    reconcile_now(&s.client, &ctx, &dead).await.unwrap();
    let request = backup_now(&s, &ctx, &dead, "r1").await;
    assert_eq!(
        (request["outcome"].as_str(), request["reason"].as_str()),
        (Some("Failed"), Some("TargetUnreachable")),
        "{request}"
    );
    let st = tenant_status(&s.client, &dead).await;
    assert_eq!(
        condition(&st, "BackupReady"),
        ("False".into(), "TargetUnreachable".into())
    );
    assert_eq!(
        condition(&st, "Ready").0,
        "True",
        "a backup target does not make the tenant unready"
    );
    // Without a platform key.
    let keyless = context(s.operator.clone(), operator_args(&s.engine)).await;
    let request = backup_now(&s, &keyless, &source, "r2").await;
    assert_eq!(request["reason"], "BackupKeyMissing", "{request}");
}

#[tokio::test]
async fn a_schedule_takes_backups_when_due_and_a_snapshot_deletion_waits_for_one() {
    let s = setup().await;
    let ctx = s.ctx(BACKUP_KEY).await;
    let slug = unique("bk-cron");
    s.tenant(&slug, json!({"deletionPolicy": "Snapshot"})).await;
    let tenants = Api::<Tenant>::all(s.client.clone());
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"backup": {"schedule": "0 3 * * *"}}})),
        )
        .await
        .unwrap();
    reconcile_now(&s.client, &ctx, &slug).await.unwrap();
    let st = tenant_status(&s.client, &slug).await;
    let next = st["backup"]["nextBackupAt"].as_str().unwrap().to_owned();
    assert!(next.ends_with("T03:00:00Z"), "{next}");
    assert!(
        st["backup"]["lastBackup"].is_null(),
        "nothing before it is due"
    );
    // Due: the time passed.
    let patch = json!({"apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant",
                       "status": {"backup": {"nextBackupAt": "2020-01-01T03:00:00Z"}}});
    tenants
        .patch_status(&slug, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    reconcile_now(&s.client, &ctx, &slug).await.unwrap();
    let st = tenant_status(&s.client, &slug).await;
    assert!(st["backup"]["lastBackup"]["name"].is_string(), "{st}");
    assert_eq!(
        st["backup"]["nextBackupAt"],
        next.as_str(),
        "the next one after now"
    );
    // An invalid schedule is a reason, not a crash.
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"backup": {"schedule": "61 3 * * *"}}})),
        )
        .await
        .unwrap();
    reconcile_now(&s.client, &ctx, &slug).await.unwrap();
    assert_eq!(
        condition(&tenant_status(&s.client, &slug).await, "BackupReady"),
        ("False".into(), "InvalidSchedule".into())
    );

    // Snapshot deletion with an unreachable target: held, nothing deleted.
    let good_target = backup_spec(&s.s3.endpoint, &s.prefix, &s.s3_secret);
    let mut dead_target = backup_spec("http://127.0.0.1:9", "x", &s.s3_secret);
    dead_target["backup"]["schedule"] = Value::Null;
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": dead_target})),
        )
        .await
        .unwrap();
    let before = flomastr::operator::backup::full::list_tenant_backups(&s.store(), &slug)
        .await
        .unwrap();
    tenants
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    let held = reconcile_now(&s.client, &ctx, &slug).await.unwrap_err();
    assert!(held.contains("deletion blocked"), "{held}");
    let st = tenant_status(&s.client, &slug).await;
    assert_eq!(
        condition(&st, "Stalled"),
        ("True".into(), "SnapshotFailed".into())
    );
    assert!(n8n_key(&s.client, &slug).await.is_some());
    // A reachable target: the backup is taken, then the deletion proceeds.
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": good_target})),
        )
        .await
        .unwrap();
    reconcile_now(&s.client, &ctx, &slug).await.unwrap();
    assert!(
        tenants.get_opt(&slug).await.unwrap().is_none(),
        "the Tenant is gone"
    );
    let after = flomastr::operator::backup::full::list_tenant_backups(&s.store(), &slug)
        .await
        .unwrap();
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    // Then it deletes as Delete: the namespace (n8n's volume and key in it) is the Tenant's
    // to take along (the garbage collector, absent here, removes it).
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(s.client.clone())
        .get(&format!("tenant-{slug}"))
        .await
        .unwrap();
    assert!(
        namespace
            .metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|o| o.kind == "Tenant" && o.name == slug),
        "after its backup, a Snapshot deletion takes the namespace along"
    );
}

#[tokio::test]
async fn the_api_server_refuses_a_backup_spec_that_cannot_work() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let s3 = json!({"bucket": "tenant-backups", "credentialsSecretRef": {"name": "k", "namespace": CREDENTIALS_NAMESPACE}});
    let cases = [
        (json!({"target": {}}), "set exactly one of volume and s3"),
        (
            json!({"target": {"s3": s3, "volume": {"claimName": "b"}}}),
            "set exactly one of volume and s3",
        ),
        (
            json!({"target": {"volume": {"claimName": "b", "path": "a/../../etc"}}}),
            "must not contain ..",
        ),
        (
            json!({"schedule": "daily", "target": {"s3": s3}}),
            "schedule",
        ),
        (json!({"retention": 0, "target": {"s3": s3}}), "retention"),
        (
            json!({"target": {"s3": {"bucket": "tenant-backups", "endpoint": "ftp://x",
            "credentialsSecretRef": {"name": "k", "namespace": CREDENTIALS_NAMESPACE}}}}),
            "endpoint",
        ),
    ];
    for (backup, message) in cases {
        let slug = unique("bk-spec");
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "metadata": {"name": slug},
            "spec": {"displayName": "x", "backup": backup,
                     "whatsapp": {"provider": "Infobip", "sender": "441234567890",
                                  "credentialsSecretRef": {"name": "c", "namespace": CREDENTIALS_NAMESPACE}}}
        }))
        .unwrap();
        let refused = Api::<Tenant>::all(client.clone())
            .create(&Default::default(), &tenant)
            .await
            .expect_err(&format!("{backup} was accepted"));
        assert!(refused.to_string().contains(message), "{backup}: {refused}");
    }
}

/// A tmpfs of one page mounted under the operator's backup volumes directory: a volume target
/// that really runs out of space. Unmounted when dropped.
struct TinyVolume {
    claim: String,
    mount: std::path::PathBuf,
}

impl TinyVolume {
    fn mount(root: &std::path::Path) -> Self {
        let claim = unique("full-volume");
        let mount = root.join(&claim);
        std::fs::create_dir_all(&mount).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs"])
            .arg(&mount)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        std::fs::create_dir(mount.join("tenants")).unwrap();
        Self { claim, mount }
    }

    /// Every file under the volume, relative.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, into: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, into);
                } else {
                    into.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.mount, &self.mount, &mut files);
        files
    }
}

impl Drop for TinyVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}

#[tokio::test]
async fn a_full_volume_target_is_target_full_and_touches_nothing_of_the_tenant() {
    let s = setup().await;
    let mut args = operator_args(&s.engine);
    args.backup_key = Some(BACKUP_KEY.to_owned());
    let volume = TinyVolume::mount(&args.backup_volumes_dir);
    let ctx = context(s.operator.clone(), args).await;
    let slug = unique("bk-full");
    credentials(&s.client, &slug).await;
    create_tenant(
        &s.client,
        &slug,
        json!({"backup": {"target": {"volume": {"claimName": volume.claim, "path": "tenants"}}}}),
    )
    .await;
    reconcile_now(&s.client, &ctx, &slug).await.unwrap();
    fill(&s.engine, &slug, "full").await;
    let key = n8n_key(&s.client, &slug).await.unwrap();
    let data = contents(&s.engine, &slug).await;

    let request = backup_now(&s, &ctx, &slug, "r-full").await;
    assert_eq!(
        (request["outcome"].as_str(), request["reason"].as_str()),
        (Some("Failed"), Some("TargetFull")),
        "{request}"
    );
    assert!(
        request["message"].as_str().unwrap().contains("is full"),
        "{request}"
    );
    let status = tenant_status(&s.client, &slug).await;
    assert_eq!(
        condition(&status, "BackupReady"),
        ("False".into(), "TargetFull".into())
    );
    assert_eq!(condition(&status, "Ready").0, "True", "{status}");
    assert!(status["backup"]["lastBackup"].is_null(), "{status}");
    assert_eq!(
        volume.files(),
        Vec::<String>::new(),
        "a failed backup leaves no part behind"
    );
    assert_eq!(n8n_key(&s.client, &slug).await.unwrap(), key);
    assert_eq!(contents(&s.engine, &slug).await, data);
}

/// `good` copied to `{slug}/20200101T000009.000Z` with an `n8n-data.tar` part (an empty tar:
/// a restore Job would unpack nothing), its SHA-256 and size in the manifest as a backup of
/// format 2 has them. Nothing unpacks it here: no kubelet runs the Job.
async fn with_n8n_data(store: &BackupStore, good: &str, slug: &str) -> String {
    use sha2::{Digest, Sha256};
    let to = format!("{slug}/20200101T000009.000Z");
    let archive = vec![0u8; 10240];
    for part in [
        "manifest.json",
        "engine.jsonl",
        "tenant.yaml",
        "n8n-encryption-key.sealed",
    ] {
        let mut body = store
            .read_small(&format!("{good}/{part}"), 64 << 20)
            .await
            .unwrap();
        if part == "manifest.json" {
            let mut manifest: Value = serde_json::from_slice(&body).unwrap();
            manifest["parts"].as_array_mut().unwrap().push(json!({
                "name": "n8n-data.tar", "size": archive.len(),
                "sha256": hex::encode(Sha256::digest(&archive))
            }));
            body = serde_json::to_vec(&manifest).unwrap();
        }
        store
            .put(&format!("{to}/{part}"), Bytes::from(body))
            .await
            .unwrap();
    }
    store
        .put(&format!("{to}/n8n-data.tar"), Bytes::from(archive))
        .await
        .unwrap();
    to
}

/// The restore Jobs of `namespace` not in `seen`, waited for (up to 30 s).
async fn new_restore_job(client: &kube::Client, namespace: &str, seen: &[String]) -> String {
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), namespace);
    for _ in 0..300 {
        let found = jobs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .find(|name| name.starts_with("n8n-restore-") && !seen.contains(name));
        if let Some(name) = found {
            return name;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no new restore Job in {namespace} (seen {seen:?})");
}

/// The Job controller's verdict, written as it writes it (no controller runs here).
async fn fail_job(client: &kube::Client, namespace: &str, name: &str) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = |kind: &str| {
        json!({"type": kind, "status": "True", "reason": "DeadlineExceeded",
               "message": "Job was active longer than specified deadline",
               "lastProbeTime": now, "lastTransitionTime": now})
    };
    let status = json!({"status": {
        "startTime": now, "failed": 1, "active": 0, "ready": 0,
        "conditions": [condition("FailureTarget"), condition("Failed")]
    }});
    Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The PVC n8n-data's filling mark and the n8n Deployment's replicas.
async fn volume_and_n8n(client: &kube::Client, namespace: &str) -> (Option<String>, Option<i32>) {
    let claim = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
        client.clone(),
        namespace,
    )
    .get("n8n-data")
    .await
    .unwrap();
    let mark = claim
        .metadata
        .annotations
        .unwrap_or_default()
        .get("flomastr.io/n8n-data")
        .cloned();
    let replicas =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), namespace)
            .get_opt("n8n")
            .await
            .unwrap()
            .and_then(|d| d.spec.replicas);
    (mark, replicas)
}

/// Runs one reconcile of `slug` while a restore Job (not in `seen`) is started, checks the
/// volume's mark and n8n while the Job runs, then fails the Job; the Job's name.
async fn restore_cut_off(
    s: &Setup,
    ctx: &std::sync::Arc<flomastr::operator::context::Context>,
    slug: &str,
    seen: &[String],
) -> String {
    let namespace = format!("tenant-{slug}");
    let reconcile = {
        let (client, ctx, slug) = (s.client.clone(), ctx.clone(), slug.to_owned());
        tokio::spawn(async move { reconcile_now(&client, &ctx, &slug).await })
    };
    let job = new_restore_job(&s.client, &namespace, seen).await;
    let (mark, replicas) = volume_and_n8n(&s.client, &namespace).await;
    assert_eq!(
        mark.as_deref(),
        Some("filling"),
        "marked from the apply that created it"
    );
    assert!(
        replicas.is_none_or(|r| r == 0),
        "no n8n while its volume fills: {replicas:?}"
    );
    fail_job(&s.client, &namespace, &job).await;
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), reconcile)
        .await
        .expect("the restore gives up once its Job failed")
        .unwrap();
    assert!(outcome.is_err(), "n8n is not ready: {outcome:?}");
    job
}

#[tokio::test]
async fn a_restore_cut_off_midway_never_gives_n8n_its_half_filled_volume_and_is_tried_again() {
    let s = setup().await;
    let ctx = s.ctx(BACKUP_KEY).await;
    let source = unique("bk-mid");
    s.tenant(&source, json!({})).await;
    reconcile_now(&s.client, &ctx, &source).await.unwrap();
    let good = backup_now(&s, &ctx, &source, "r1").await["backupName"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = s.store();
    let with_data = with_n8n_data(&store, &good, &source).await;

    // A new tenant restored from it: the Job gives up after the volume was created.
    let heir = unique("bk-heir");
    let namespace = format!("tenant-{heir}");
    s.tenant(&heir, json!({"n8n": {"replicas": 1, "storage": "1Gi"}}))
        .await;
    annotate(&s.client, &heir, "flomastr.io/restore-from", &with_data).await;
    let first = restore_cut_off(&s, &ctx, &heir, &[]).await;
    let status = tenant_status(&s.client, &heir).await;
    assert_eq!(status["restore"]["outcome"], "Failed", "{status}");
    assert_eq!(status["restore"]["reason"], "N8nDataFailed", "{status}");
    let message = status["restore"]["message"].as_str().unwrap();
    assert!(
        message.contains(&first) && message.contains("DeadlineExceeded"),
        "{message}"
    );
    assert_eq!(
        condition(&status, "N8nReady"),
        ("False".into(), "N8nDataIncomplete".into())
    );
    assert_eq!(
        volume_and_n8n(&s.client, &namespace).await,
        (Some("filling".into()), Some(0)),
        "the half-filled volume keeps its mark and n8n stays at zero"
    );

    // The next reconcile tries the restore again (the same annotation value) on the same
    // volume, still marked and without n8n while it runs; cut off again, nothing changes.
    let second = restore_cut_off(&s, &ctx, &heir, std::slice::from_ref(&first)).await;
    assert_ne!(first, second);
    let status = tenant_status(&s.client, &heir).await;
    assert!(
        status["restore"]["message"]
            .as_str()
            .unwrap()
            .contains(&second),
        "{status}"
    );
    assert_eq!(
        volume_and_n8n(&s.client, &namespace).await,
        (Some("filling".into()), Some(0))
    );

    // A backup without n8n's volume cannot fill it: refused, nothing else restored.
    let refused = restore_from(&s, &ctx, &heir, &good).await;
    assert_eq!(refused["reason"], "N8nDataFailed", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("no n8n volume to fill it with"),
        "{refused}"
    );
    assert_eq!(
        volume_and_n8n(&s.client, &namespace).await,
        (Some("filling".into()), Some(0))
    );

    // Once the mark is gone (what the restore's last apply does after the unpacked archive was
    // verified; a real kubelet runs that in n8n_tenant::a_deleted_tenant_restored_…), n8n
    // starts and no restore runs again.
    let claims = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
        s.client.clone(),
        &namespace,
    );
    claims
        .patch(
            "n8n-data",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"flomastr.io/n8n-data": null}}})),
        )
        .await
        .unwrap();
    let _ = reconcile_now(&s.client, &ctx, &heir).await;
    assert_eq!(
        volume_and_n8n(&s.client, &namespace).await,
        (None, Some(1)),
        "n8n scaled up on the unmarked volume"
    );
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(s.client.clone(), &namespace)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 2, "no third restore");
}
