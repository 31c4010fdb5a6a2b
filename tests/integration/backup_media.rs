//! Media files in tenant backups, on a real S3-compatible server (s3s-fs): uploads (files with
//! no job) are archived; files kept in the object store travel in the archive with their bytes,
//! so it restores into an engine with another, empty store, or with none; a restore into a new
//! slug gets objects of its own (deleting the source tenant leaves the copy's files); a restore
//! in place keeps its files; an archive of format 1 (object keys only) still restores.

use crate::backup_store::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, start_s3};
use crate::engine_harness::{ADMIN_TOKEN, TestEngine, TestTenant, start_engine, start_engine_with};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

async fn engine_on(s3: &S3Server) -> TestEngine {
    let endpoint = s3.endpoint.clone();
    start_engine_with(move |args| {
        args.media.media_s3_bucket = Some(BUCKET.to_owned());
        args.media.media_s3_endpoint = Some(endpoint);
        args.media.media_s3_region = "us-east-1".to_owned();
        args.media.media_s3_access_key_id = Some(ACCESS_KEY.to_owned());
        args.media.media_s3_secret_access_key = Some(SECRET_KEY.to_owned());
    })
    .await
}

fn file(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed))
        .collect()
}

async fn upload(engine: &TestEngine, tenant: &TestTenant, bytes: &[u8], kind: &str) -> Uuid {
    let response = engine
        .http
        .post(engine.at("/media?filename=kept.bin"))
        .bearer_auth(&tenant.worker_token)
        .header("content-type", kind)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn tenant_id(engine: &TestEngine, slug: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

/// The tenant's file `id` as the engine serves it: (object key, bytes).
async fn kept(engine: &TestEngine, slug: &str, id: Uuid) -> (Option<String>, Option<Vec<u8>>) {
    let tenant = tenant_id(engine, slug).await;
    let key: Option<String> =
        sqlx::query_scalar("SELECT object_key FROM media WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    let bytes = engine
        .state
        .settings
        .media
        .blobs
        .get(&engine.db.pool, (tenant, id), key.as_deref())
        .await
        .unwrap();
    (key, bytes)
}

async fn backup(engine: &TestEngine, slug: &str) -> String {
    let response = engine
        .http
        .post(engine.at(&format!("/admin/tenants/{slug}/backup")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn restore(engine: &TestEngine, slug: &str, archive: &str) -> Value {
    let response = engine
        .http
        .post(engine.at(&format!("/admin/tenants/{slug}/restore")))
        .bearer_auth(ADMIN_TOKEN)
        .body(archive.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{report}");
    report
}

/// Objects under `media/{tenant}/` on the server's disk.
fn objects_of(s3: &S3Server, tenant: Uuid) -> usize {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path.to_string_lossy().into_owned());
            }
        }
    }
    let mut found = Vec::new();
    walk(s3.root.path(), &mut found);
    found
        .iter()
        .filter(|p| p.contains(&tenant.to_string()) && !p.contains(".s3s"))
        .count()
}

/// The archive with its lines edited and its trailer computed again.
fn rewritten(archive: &str, edit: impl FnOnce(&mut Vec<Value>)) -> String {
    let mut lines: Vec<Value> = archive
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.pop();
    edit(&mut lines);
    let mut body = String::new();
    let mut hasher = Sha256::new();
    let mut rows = std::collections::BTreeMap::<String, u64>::new();
    for table in flomastr::engine::backup::tables::TABLES {
        rows.insert(table.name.to_owned(), 0);
    }
    for (i, line) in lines.iter().enumerate() {
        let text = line.to_string();
        hasher.update(text.as_bytes());
        hasher.update(b"\n");
        body.push_str(&text);
        body.push('\n');
        if i > 0 {
            *rows
                .entry(line["table"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let trailer =
        serde_json::json!({"end": {"rows": rows, "sha256": hex::encode(hasher.finalize())}});
    body.push_str(&trailer.to_string());
    body.push('\n');
    body
}

/// The archive as format 1 wrote it: version 1, object-store files by their key alone.
fn as_format_1(archive: &str) -> String {
    rewritten(archive, |lines| {
        lines[0]["version"] = 1.into();
        for line in &mut lines[1..] {
            if line["table"] == "media" && line["row"]["object_key"].is_string() {
                line["row"]["bytes"] = Value::Null;
            }
        }
    })
}

/// Every media object on the server's disk.
fn all_objects(s3: &S3Server) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path)
                } else {
                    usize::from(path.to_string_lossy().contains("media"))
                }
            })
            .sum()
    }
    walk(s3.root.path())
}

#[tokio::test]
async fn uploads_and_object_store_files_restore_without_the_store_or_tenant_they_came_from() {
    let s3 = start_s3().await;
    let engine = engine_on(&s3).await;
    let acme = engine.tenant("acme", "meta").await;
    let bravo = engine.tenant("bravo", "infobip").await;
    let photo = file(30_000, 1);
    let photo_id = upload(&engine, &acme, &photo, "image/png").await;
    upload(&engine, &bravo, &file(500, 2), "image/png").await;
    let (key, bytes) = kept(&engine, "acme", photo_id).await;
    let acme_id = tenant_id(&engine, "acme").await;
    assert_eq!(key, Some(format!("media/{acme_id}/{photo_id}")));
    assert_eq!(bytes.as_deref(), Some(photo.as_slice()));

    // The upload is in the archive, with its bytes; bravo's is not.
    let archive = backup(&engine, "acme").await;
    let header: Value = serde_json::from_str(archive.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let rows: Vec<Value> = archive
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["table"] == "media")
        .map(|l| l["row"].clone())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], photo_id.to_string());
    assert!(rows[0]["job_id"].is_null());
    assert_eq!(
        rows[0]["bytes"],
        format!("\\x{}", hex::encode(&photo)),
        "the object's bytes are in the archive"
    );

    // In place: the file stays (its object is put again, not deleted as replaced).
    restore(&engine, "acme", &archive).await;
    assert_eq!(kept(&engine, "acme", photo_id).await.1, Some(photo.clone()));

    // Into a new slug beside its source: an object of its own.
    let report = restore(&engine, "acme-copy", &archive).await;
    assert_eq!(report["rows"]["media"], 1, "{report}");
    let copy_id = tenant_id(&engine, "acme-copy").await;
    let (key, bytes) = kept(&engine, "acme-copy", photo_id).await;
    assert_eq!(key, Some(format!("media/{copy_id}/{photo_id}")));
    assert_eq!(bytes.as_deref(), Some(photo.as_slice()));
    assert_eq!(objects_of(&s3, copy_id), 1);

    // Format 1 (keys only): the object is copied under the new tenant's key.
    let old = as_format_1(&archive);
    restore(&engine, "acme-old", &old).await;
    let old_id = tenant_id(&engine, "acme-old").await;
    let (key, bytes) = kept(&engine, "acme-old", photo_id).await;
    assert_eq!(key, Some(format!("media/{old_id}/{photo_id}")));
    assert_eq!(bytes.as_deref(), Some(photo.as_slice()));

    // A restore the schema refuses after the file was put: 400, and nothing of it is left.
    let before = all_objects(&s3);
    let bad = rewritten(&archive, |lines| {
        for line in &mut lines[1..] {
            if line["table"] == "media" {
                line["row"]["status"] = "bogus".into();
            }
        }
    });
    let response = engine
        .http
        .post(engine.at("/admin/tenants/acme-bad/restore"))
        .bearer_auth(ADMIN_TOKEN)
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "backup_corrupt", "{error}");
    assert_eq!(
        all_objects(&s3),
        before,
        "the failed restore's object was removed"
    );

    // The source tenant goes, with its objects: the copies keep theirs.
    let deleted = engine
        .http
        .delete(engine.at("/admin/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(objects_of(&s3, acme_id), 0);
    assert_eq!(
        kept(&engine, "acme-copy", photo_id).await.1,
        Some(photo.clone())
    );
    assert_eq!(
        kept(&engine, "acme-old", photo_id).await.1,
        Some(photo.clone())
    );

    // Another engine with another, empty store; and one with no object store at all.
    let other_s3 = start_s3().await;
    let elsewhere = engine_on(&other_s3).await;
    restore(&elsewhere, "acme", &archive).await;
    let restored_id = tenant_id(&elsewhere, "acme").await;
    assert_eq!(
        kept(&elsewhere, "acme", photo_id).await.1,
        Some(photo.clone())
    );
    assert_eq!(objects_of(&other_s3, restored_id), 1);
    let plain = start_engine().await;
    restore(&plain, "acme", &archive).await;
    let (key, bytes) = kept(&plain, "acme", photo_id).await;
    assert_eq!(key, None, "kept in its row");
    assert_eq!(bytes.as_deref(), Some(photo.as_slice()));
}
