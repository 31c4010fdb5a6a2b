//! Backup targets: archives go from the engine into a directory or a real S3-compatible server
//! (s3s-fs, built by scripts/s3-build, its path in FLOMASTR_S3_SERVER) and restore from there;
//! retention keeps the newest; an unreachable target is a clear error, and nothing is left of a
//! failed upload.

use crate::backup::{contents, fill, references_hold};
use crate::common::require_env;
use crate::engine_harness::{ADMIN_TOKEN, TestEngine, start_engine};
use flomastr::operator::backup::target::{BackupStore, BackupTarget, S3Target};
use flomastr::operator::backup::transfer::{BackupClient, TransferError};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BUCKET: &str = "tenant-backups";
pub const ACCESS_KEY: &str = "flomastr-test-access";
pub const SECRET_KEY: &str = "flomastr-test-secret-key-0123456789";

/// An s3s-fs server on a loopback port of its own, over a temporary directory.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

pub async fn start_s3() -> S3Server {
    let binary = require_env("FLOMASTR_S3_SERVER");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(BUCKET)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = S3Server {
        child: spawn_s3(&binary, port, root.path()),
        endpoint: format!("http://127.0.0.1:{port}"),
        root,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("s3s-fs exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("s3s-fs did not listen on {port}");
}

/// The server process; [`S3Server`]'s drop stops and reaps it.
fn spawn_s3(binary: &str, port: u16, root: &std::path::Path) -> Child {
    Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs starts")
}

pub fn s3_target(endpoint: &str, prefix: &str) -> BackupTarget {
    BackupTarget::S3(S3Target {
        endpoint: Some(endpoint.to_owned()),
        bucket: BUCKET.to_owned(),
        region: "us-east-1".to_owned(),
        access_key_id: ACCESS_KEY.to_owned(),
        secret_access_key: SECRET_KEY.to_owned(),
        prefix: prefix.to_owned(),
    })
}

async fn filled_engine() -> TestEngine {
    let engine = start_engine().await;
    engine.tenant("acme", "meta").await;
    engine.tenant("bravo", "infobip").await;
    fill(&engine, "acme", "acmetag").await;
    fill(&engine, "bravo", "bravotag").await;
    engine
}

/// Backup into `target`, restore from it into a new slug: every table equal.
async fn round_trip(engine: &TestEngine, target: &BackupTarget, into: &str) {
    let store = BackupStore::open(target).unwrap();
    let client = BackupClient::new(&engine.url, ADMIN_TOKEN);
    let before = contents(engine, "acme").await;
    let taken = client.backup(&store, "acme").await.unwrap();
    assert!(taken.size > 1000, "{taken:?}");
    assert!(taken.name.starts_with("acme/acme-"), "{}", taken.name);
    let listed = store.list("acme").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].size),
        (taken.name.as_str(), taken.size)
    );
    let report = client.restore(&store, &taken.name, into).await.unwrap();
    assert_eq!(report["source_slug"], "acme", "{report}");
    assert_eq!(contents(engine, into).await, before);
    references_hold(engine, into).await;
}

#[tokio::test]
async fn an_archive_round_trips_through_a_real_s3_server() {
    let s3 = start_s3().await;
    let engine = filled_engine().await;
    round_trip(
        &engine,
        &s3_target(&s3.endpoint, "prod/flomastr"),
        "acme-from-s3",
    )
    .await;
    // The object is where the prefix says, in the server's own storage.
    let store = BackupStore::open(&s3_target(&s3.endpoint, "")).unwrap();
    let all = store.list("prod/flomastr/acme").await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
}

#[tokio::test]
async fn an_archive_round_trips_through_a_volume_and_retention_keeps_the_newest() {
    let volume = tempfile::tempdir().unwrap();
    let target = BackupTarget::Volume {
        path: volume.path().to_owned(),
    };
    let engine = filled_engine().await;
    round_trip(&engine, &target, "acme-from-volume").await;
    let store = BackupStore::open(&target).unwrap();
    let client = BackupClient::new(&engine.url, ADMIN_TOKEN);
    client.backup(&store, "acme").await.unwrap();
    let newest = client.backup(&store, "acme").await.unwrap();
    client.backup(&store, "bravo").await.unwrap();
    assert_eq!(store.list("acme").await.unwrap().len(), 3);
    let deleted = store.prune("acme", 1).await.unwrap();
    assert_eq!(deleted.len(), 2);
    let kept = store.list("acme").await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].name, newest.name, "retention keeps the newest");
    assert_eq!(
        store.list("bravo").await.unwrap().len(),
        1,
        "another tenant's backups stay"
    );
}

#[tokio::test]
async fn retention_on_s3_keeps_the_newest() {
    let s3 = start_s3().await;
    let engine = filled_engine().await;
    let store = BackupStore::open(&s3_target(&s3.endpoint, "")).unwrap();
    let client = BackupClient::new(&engine.url, ADMIN_TOKEN);
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(client.backup(&store, "acme").await.unwrap().name);
    }
    store.prune("acme", 2).await.unwrap();
    let kept: Vec<String> = store
        .list("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(kept, names[1..]);
}

#[tokio::test]
async fn an_unreachable_target_is_a_clear_error_and_the_tenant_is_untouched() {
    let engine = filled_engine().await;
    let client = BackupClient::new(&engine.url, ADMIN_TOKEN);
    // Nothing listens on the discard port.
    let store = BackupStore::open(&s3_target("http://127.0.0.1:9", "")).unwrap();
    let started = std::time::Instant::now();
    let error = client.backup(&store, "acme").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let TransferError::Target(target) = &error else {
        panic!("not a target error: {error}");
    };
    assert_eq!(target.reason(), "TargetUnreachable", "{error}");
    let text = error.to_string();
    assert!(
        text.contains("127.0.0.1:9") && !text.contains(SECRET_KEY),
        "{text}"
    );

    let missing = BackupStore::open(&BackupTarget::Volume {
        path: "/nonexistent/flomastr-backups".into(),
    });
    let Err(error) = missing else {
        panic!("a missing volume opened")
    };
    assert_eq!(error.reason(), "TargetUnreachable");
    assert!(
        error.to_string().contains("/nonexistent/flomastr-backups"),
        "{error}"
    );

    // A restore from a missing archive names it, and the engine is never called.
    let volume = tempfile::tempdir().unwrap();
    let store = BackupStore::open(&BackupTarget::Volume {
        path: volume.path().to_owned(),
    })
    .unwrap();
    let before = contents(&engine, "acme").await;
    let error = client
        .restore(&store, "acme/none.jsonl", "acme")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TransferError::Target(t) if t.reason() == "BackupNotFound"),
        "{error}"
    );
    assert_eq!(contents(&engine, "acme").await, before);
}

#[tokio::test]
async fn wrong_credentials_are_refused_by_the_real_server() {
    let s3 = start_s3().await;
    let engine = filled_engine().await;
    let BackupTarget::S3(mut wrong) = s3_target(&s3.endpoint, "") else {
        unreachable!()
    };
    wrong.secret_access_key = "not-the-secret".into();
    let store = BackupStore::open(&BackupTarget::S3(wrong)).unwrap();
    let error = BackupClient::new(&engine.url, ADMIN_TOKEN)
        .backup(&store, "acme")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TransferError::Target(t) if t.reason() == "TargetDenied"),
        "{error}"
    );
    assert!(!error.to_string().contains("not-the-secret"));
}

/// `flomastr backup` with the engine's settings and a target.
async fn cli(engine: &TestEngine, target: &[&str], action: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .arg("backup")
        .args(["--engine-url", &engine.url])
        .env("FLOMASTR_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(target)
        .args(action)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_command_line_takes_keeps_lists_and_restores_backups() {
    let s3 = start_s3().await;
    let engine = filled_engine().await;
    let before = contents(&engine, "acme").await;
    let target = [
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-bucket",
        BUCKET,
        "--s3-access-key-id",
        ACCESS_KEY,
        "--s3-secret-access-key",
        SECRET_KEY,
    ];
    let mut names = Vec::new();
    for _ in 0..2 {
        let out = cli(
            &engine,
            &target,
            &["take", "--tenant", "acme", "--keep", "1"],
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let taken: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(taken["size"].as_u64().unwrap() > 1000, "{taken}");
        names.push(taken["name"].as_str().unwrap().to_owned());
    }
    let listed = cli(&engine, &target, &["list", "--tenant", "acme"]).await;
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.lines().count(), 1, "--keep 1: {listed}");
    assert!(listed.contains(&names[1]));
    let restored = cli(
        &engine,
        &target,
        &["restore", "--name", &names[1], "--into", "acme-cli"],
    )
    .await;
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(contents(&engine, "acme-cli").await, before);

    let unreachable = cli(
        &engine,
        &["--volume", "/nonexistent/backups"],
        &["take", "--tenant", "acme"],
    )
    .await;
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("cannot be reached"), "{stderr}");
}
