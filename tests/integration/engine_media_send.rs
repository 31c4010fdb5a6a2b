//! Media the engine keeps, sent by its engine id (issue 14): a worker uploads a file
//! (`POST /media`, raw or multipart) or forwards an inbound one; Meta gets it uploaded to its
//! media endpoint with the sender's token (once per file and sender), InfoBip and Twilio get a
//! signed, expiring public URL of the engine and download it like the real providers do (the
//! sandbox proves the bytes arrive). Oversized uploads, types WhatsApp does not send, another
//! tenant's id and forged or expired links are each a clear 4xx with nothing written; the
//! retention deletes files (objects of the S3-compatible store too).

use crate::backup_store::{ACCESS_KEY, BUCKET, SECRET_KEY, start_s3};
use crate::common::within;
use crate::engine_harness::{TestEngine, TestTenant, allow_sandbox, start_engine_public};
use crate::policy_harness::{
    Sandbox, count, engine_and_sandbox, inbound, sandbox, tenants, wait_for_sent,
};
use flomastr::engine::media::retention;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

const CONTACT: &str = "447700900001";

/// `size` bytes that differ per `seed` (the type is only a label: nothing parses the file).
fn file(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn upload(
    engine: &TestEngine,
    tenant: &TestTenant,
    bytes: &[u8],
    content_type: &str,
    filename: Option<&str>,
) -> reqwest::Response {
    let mut url = engine.at("/media");
    if let Some(name) = filename {
        url = format!("{url}?filename={name}");
    }
    engine
        .http
        .post(url)
        .bearer_auth(&tenant.worker_token)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

/// A `multipart/form-data` upload with the file in the part `file`.
async fn upload_multipart(
    engine: &TestEngine,
    tenant: &TestTenant,
    bytes: &[u8],
    content_type: &str,
    filename: &str,
) -> reqwest::Response {
    let boundary = "test-boundary-7d3f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    engine
        .http
        .post(engine.at("/media"))
        .bearer_auth(&tenant.worker_token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Uploads and returns the engine's media id (asserting the answer describes the file).
async fn uploaded(
    engine: &TestEngine,
    tenant: &TestTenant,
    bytes: &[u8],
    content_type: &str,
) -> String {
    let response = upload(engine, tenant, bytes, content_type, None).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sha256"], sha(bytes));
    assert_eq!(body["size"], bytes.len());
    assert_eq!(body["content_type"], content_type);
    body["id"].as_str().unwrap().to_owned()
}

async fn get_media(engine: &TestEngine, tenant: &TestTenant, id: &str) -> reqwest::Response {
    engine
        .http
        .get(engine.at(&format!("/media/{id}")))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap()
}

/// Sends `body` and returns the path and body the provider received for it.
async fn delivered(
    engine: &TestEngine,
    sandbox: &Sandbox,
    tenant: &TestTenant,
    body: Value,
) -> (String, Value) {
    let response = engine.send(tenant, None, body.clone()).await;
    let status = response.status();
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}: {accepted}");
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let view = wait_for_sent(engine, tenant, &id).await;
    let provider_id = view["provider_message_id"].as_str().unwrap_or_default();
    let request = sandbox
        .state
        .requests()
        .into_iter()
        .find(|r| {
            !r.path.ends_with("/media")
                && (200..300).contains(&r.status)
                && (r.message_id.as_deref() == Some(provider_id)
                    || r.body["biz_opaque_callback_data"] == id.as_str())
        })
        .unwrap_or_else(|| panic!("no accepted request for {id}: {view}"));
    (request.path, request.body)
}

/// Meta media uploads the sandbox received: (Meta's id, what it described).
fn meta_uploads(sandbox: &Sandbox) -> Vec<(String, Value)> {
    sandbox
        .state
        .requests()
        .into_iter()
        .filter(|r| r.provider == "meta" && r.path.ends_with("/media"))
        .map(|r| (r.message_id.unwrap_or_default(), r.body))
        .collect()
}

/// The sandbox's download of `url` (InfoBip / Twilio fetch it after accepting the send).
async fn fetched(sandbox: &Sandbox, url: &str) -> flomastr::sandbox::Fetched {
    let url = url.to_owned();
    within(
        Duration::from_secs(10),
        "the provider downloaded the media",
        async || sandbox.state.fetches().into_iter().find(|f| f.url == url),
    )
    .await
}

/// A refused send: its status and error, and nothing queued.
async fn refused(engine: &TestEngine, tenant: &TestTenant, body: Value) -> (u16, Value) {
    let before = count(engine, "SELECT count(*) FROM outbound_messages").await;
    let response = engine.send(tenant, None, body.clone()).await;
    let status = response.status().as_u16();
    let error: Value = response.json().await.unwrap();
    let after = count(engine, "SELECT count(*) FROM outbound_messages").await;
    assert_eq!(
        before, after,
        "nothing queued on a refusal of {body}: {error}"
    );
    (status, error)
}

#[tokio::test]
async fn uploaded_and_forwarded_media_reach_each_provider_and_the_bytes_arrive() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    for (provider, tenant) in &tenants {
        assert_eq!(
            inbound(&engine, provider, tenant, CONTACT, "hola").await,
            200
        );
    }
    let (ib, meta, tw) = (&tenants[0].1, &tenants[1].1, &tenants[2].1);

    // Meta: uploaded to Meta with the sender's token, then sent by Meta's id.
    let photo = file(3000, 1);
    let response = upload(&engine, meta, &photo, "image/png", Some("owl.png")).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["filename"], "owl.png");
    assert_eq!(body["sha256"], sha(&photo));
    let photo_id = body["id"].as_str().unwrap().to_owned();
    let served = get_media(&engine, meta, &photo_id).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().as_ref(), photo.as_slice());

    let send =
        json!({"to": CONTACT, "media": {"type": "image", "id": photo_id, "caption": "An owl"}});
    let (path, sent) = delivered(&engine, &sandbox, meta, send.clone()).await;
    assert_eq!(path, format!("/v21.0/{}/messages", meta.sender));
    let uploads = meta_uploads(&sandbox);
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let (meta_id, described) = &uploads[0];
    assert_eq!(described["sha256"], sha(&photo));
    assert_eq!(described["type"], "image/png");
    assert_eq!(described["filename"], "owl.png");
    assert_eq!(sent["type"], "image");
    assert_eq!(sent["image"], json!({"id": meta_id, "caption": "An owl"}));
    assert_eq!(sandbox.state.media(meta_id).unwrap().bytes, photo);
    // Sent again: Meta's id is re-used, not uploaded again.
    let (_, again) = delivered(&engine, &sandbox, meta, send).await;
    assert_eq!(again["image"]["id"], meta_id.as_str());
    assert_eq!(meta_uploads(&sandbox).len(), 1);

    // InfoBip: a signed public URL of the engine, downloaded like InfoBip would.
    let pdf = file(5000, 2);
    let response = upload_multipart(&engine, ib, &pdf, "application/pdf", "invoice.pdf").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["filename"], "invoice.pdf");
    assert_eq!(body["content_type"], "application/pdf");
    let pdf_id = body["id"].as_str().unwrap().to_owned();
    let (path, sent) = delivered(
        &engine,
        &sandbox,
        ib,
        json!({"to": CONTACT, "media": {"type": "document", "id": pdf_id, "filename": "invoice.pdf"}}),
    )
    .await;
    assert_eq!(path, "/whatsapp/1/message/document");
    let url = sent["content"]["mediaUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/public/media/{pdf_id}?t=", engine.url)),
        "{url}"
    );
    assert_eq!(sent["content"]["filename"], "invoice.pdf");
    let download = fetched(&sandbox, url).await;
    assert_eq!(download.status, Some(200), "{download:?}");
    assert_eq!(download.sha256, sha(&pdf));
    assert_eq!(download.content_type.as_deref(), Some("application/pdf"));

    // Twilio: the same, as MediaUrl.
    let jpeg = file(4000, 3);
    let jpeg_id = uploaded(&engine, tw, &jpeg, "image/jpeg").await;
    let (_, sent) = delivered(
        &engine,
        &sandbox,
        tw,
        json!({"to": CONTACT, "media": {"type": "image", "id": jpeg_id, "caption": "Look"}}),
    )
    .await;
    let url = sent["MediaUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/public/media/{jpeg_id}?t=", engine.url)),
        "{url}"
    );
    assert_eq!(sent["Body"], "Look");
    let download = fetched(&sandbox, url).await;
    assert_eq!(download.status, Some(200));
    assert_eq!(download.sha256, sha(&jpeg));

    // Forwarding what a customer sent: the tenant's inbound file, by its id.
    let voice = file(2500, 4);
    let forwarded = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO media (tenant_id, id, job_id, position, provider, kind, provider_ref, status,
                            content_type, sha256, size, bytes)
         SELECT j.tenant_id, $1, j.id, 0, 'meta', 'audio', 'wamid.x', 'stored', 'audio/ogg', $2, $3, $4
         FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.slug = $5 LIMIT 1",
    )
    .bind(forwarded)
    .bind(sha(&voice))
    .bind(voice.len() as i64)
    .bind(&voice)
    .bind(&meta.slug)
    .execute(&engine.db.pool)
    .await
    .unwrap();
    let (_, sent) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": CONTACT, "media": {"type": "audio", "id": forwarded.to_string()}}),
    )
    .await;
    let uploads = meta_uploads(&sandbox);
    assert_eq!(uploads.len(), 2);
    assert_eq!(uploads[1].1["sha256"], sha(&voice));
    assert_eq!(sent["audio"], json!({"id": uploads[1].0}));
}

#[tokio::test]
async fn bad_uploads_foreign_ids_and_forged_links_are_refused_with_nothing_written() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let acme = engine
        .tenant_with(
            "acme",
            "meta",
            json!({"channel_base_url": sandbox.url, "media_max_bytes": 1000}),
        )
        .await;
    let bravo = engine
        .tenant_with("bravo", "infobip", json!({"channel_base_url": sandbox.url}))
        .await;
    let media_rows = || count(&engine, "SELECT count(*) FROM media");

    // Oversized: declared, streamed without a length, and in a multipart form.
    let big = file(1001, 5);
    let response = upload(&engine, &acme, &big, "image/png", None).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large", "{error}");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let streamed = engine
        .http
        .post(engine.at("/media"))
        .bearer_auth(&acme.worker_token)
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    let response = upload_multipart(&engine, &acme, &big, "image/png", "big.png").await;
    assert_eq!(response.status(), 413);
    // Types WhatsApp does not send, an empty file, a bad name, no token.
    for content_type in ["image/gif", "text/html", "application/x-msdownload", ""] {
        let response = upload(&engine, &acme, &file(100, 6), content_type, None).await;
        assert_eq!(response.status(), 415, "{content_type}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unsupported_media_type");
    }
    assert_eq!(
        upload(&engine, &acme, &[], "image/png", None)
            .await
            .status(),
        400
    );
    assert_eq!(
        upload(&engine, &acme, &file(10, 1), "image/png", Some("a%2Fb.png"))
            .await
            .status(),
        400
    );
    let anonymous = engine
        .http
        .post(engine.at("/media"))
        .header("content-type", "image/png")
        .body(file(10, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(media_rows().await, 0, "nothing stored by a refused upload");

    // Another tenant's id: 404 naming media.id, like an unknown one; nothing queued.
    let acme_png = uploaded(&engine, &acme, &file(900, 7), "image/png").await;
    let bravo_png = uploaded(&engine, &bravo, &file(800, 8), "image/png").await;
    for id in [acme_png.clone(), uuid::Uuid::new_v4().to_string()] {
        let (status, error) = refused(
            &engine,
            &bravo,
            json!({"to": CONTACT, "media": {"type": "image", "id": id}}),
        )
        .await;
        assert_eq!(status, 404, "{error}");
        assert_eq!(error["error"]["code"], "media_not_found");
        assert_eq!(error["error"]["details"]["field"], "media.id");
    }
    assert_eq!(get_media(&engine, &bravo, &acme_png).await.status(), 404);
    // A type the kind does not take (a PNG is no document, no sticker).
    for kind in ["document", "sticker", "audio"] {
        let (status, error) = refused(
            &engine,
            &acme,
            json!({"to": CONTACT, "media": {"type": kind, "id": acme_png}}),
        )
        .await;
        assert_eq!(status, 400, "{kind}: {error}");
        assert_eq!(error["error"]["details"]["field"], "media.id");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("image/png"),
            "{error}"
        );
    }

    // Signed public links: valid, forged, for another id, expired, missing.
    let public = &engine.state.settings.media.public;
    let id: uuid::Uuid = bravo_png.parse().unwrap();
    let bravo_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = 'bravo'")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let good = public
        .url(bravo_id, id, now + chrono::Duration::hours(1))
        .unwrap();
    let get = |url: String| {
        let http = engine.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let response = get(good.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        file(800, 8).as_slice()
    );
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let other = good.replace(&bravo_png, &acme_png);
    let expired = public
        .url(bravo_id, id, now - chrono::Duration::minutes(1))
        .unwrap();
    // Another tenant named in a link signed for bravo.
    let acme_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = 'acme'")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    let other_tenant = good.replace(&bravo_id.to_string(), &acme_id.to_string());
    let unsigned = good.split('?').next().unwrap().to_owned();
    for (url, code) in [
        (forged, "invalid_signature"),
        (other, "invalid_signature"),
        (expired, "link_expired"),
        (other_tenant, "invalid_signature"),
        (unsigned, "invalid_signature"),
        (
            engine.at("/public/media/not-an-id?exp=1&sig=00"),
            "invalid_signature",
        ),
    ] {
        let response = get(url.clone()).await;
        assert_eq!(response.status(), 403, "{url}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{url}");
    }
    // Deleted by the retention: the link answers 404, the worker too.
    sqlx::query("UPDATE media SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let blobs = &engine.state.settings.media.blobs;
    assert_eq!(
        retention::sweep(&engine.db.pool, blobs, Duration::from_secs(3600))
            .await
            .unwrap(),
        1
    );
    assert_eq!(get(good).await.status(), 404);
    assert_eq!(get_media(&engine, &bravo, &bravo_png).await.status(), 404);
    assert_eq!(media_rows().await, 1, "acme's file stays");
}

#[tokio::test]
async fn without_a_public_url_infobip_and_twilio_cannot_send_stored_media() {
    let sandbox = sandbox().await;
    let origin = sandbox.url.clone();
    let engine =
        crate::engine_harness::start_engine_with(move |args| allow_sandbox(args, &origin)).await;
    let bravo = engine
        .tenant_with("bravo", "infobip", json!({"channel_base_url": sandbox.url}))
        .await;
    let id = uploaded(&engine, &bravo, &file(100, 9), "image/jpeg").await;
    let (status, error) = refused(
        &engine,
        &bravo,
        json!({"to": CONTACT, "media": {"type": "image", "id": id}}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "no_public_url");
    assert_eq!(error["error"]["details"]["field"], "media.id");
}

#[tokio::test]
async fn media_retention_follows_the_tenant_and_defaults_to_the_job_retention() {
    let (engine, _sandbox) = engine_and_sandbox().await;
    let api: Value = engine
        .http
        .get(engine.at("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        api["paths"]["/media"]["post"]["responses"]["413"].is_object(),
        "POST /media documented"
    );
    assert!(api["paths"]["/public/media/{id}"]["get"]["responses"]["403"].is_object());
    assert!(api["components"]["schemas"]["Uploaded"].is_object());
    let short = engine
        .tenant_with("short", "meta", json!({"media_retention_seconds": 60}))
        .await;
    let default = engine.tenant_with("plain", "meta", json!({})).await;
    let view: Value = engine
        .http
        .get(engine.at("/admin/tenants/short"))
        .bearer_auth(crate::engine_harness::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["media_retention_seconds"], 60);
    let mut bad = short.registration.clone();
    bad["media_retention_seconds"] = json!(5);
    let response = engine
        .http
        .put(engine.at("/admin/tenants/short"))
        .bearer_auth(crate::engine_harness::ADMIN_TOKEN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["details"]["field"],
        "media_retention_seconds"
    );

    let response = upload(&engine, &short, &file(10, 1), "image/png", None).await;
    let body: Value = response.json().await.unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let lives = expires - chrono::Utc::now();
    assert!(
        lives > chrono::Duration::seconds(50) && lives <= chrono::Duration::seconds(60),
        "{lives}"
    );
    let response = upload(&engine, &default, &file(10, 1), "image/png", None).await;
    let body: Value = response.json().await.unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let lives = expires - chrono::Utc::now();
    let job_retention = chrono::Duration::from_std(engine.state.settings.retention).unwrap();
    assert!(
        lives > job_retention - chrono::Duration::seconds(10) && lives <= job_retention,
        "the job retention: {lives}"
    );

    // Inbound files by age: the short tenant's two-minute-old file goes, a fresh one stays,
    // the other tenant's old one stays (its retention is the job retention).
    assert_eq!(inbound(&engine, "meta", &short, CONTACT, "hi").await, 200);
    assert_eq!(inbound(&engine, "meta", &default, CONTACT, "hi").await, 200);
    for (slug, age) in [("short", 120), ("short", 0), ("plain", 120)] {
        sqlx::query(
            "INSERT INTO media (tenant_id, id, job_id, position, provider, kind, provider_ref, status,
                                content_type, sha256, size, bytes, created_at)
             SELECT j.tenant_id, gen_random_uuid(), j.id, 0, 'meta', 'image', 'x', 'stored', 'image/png',
                    'ab', 1, '\\x01', now() - make_interval(secs => $2)
             FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.slug = $1 LIMIT 1",
        )
        .bind(slug)
        .bind(age as f64)
        .execute(&engine.db.pool)
        .await
        .unwrap();
    }
    let blobs = &engine.state.settings.media.blobs;
    let deleted = retention::sweep(&engine.db.pool, blobs, Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM media WHERE job_id IS NOT NULL"
        )
        .await,
        2
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM jobs").await,
        2,
        "the jobs stay"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn an_s3_compatible_store_keeps_the_bytes_and_the_retention_deletes_them() {
    let s3 = start_s3().await;
    let sandbox = sandbox().await;
    let origin = sandbox.url.clone();
    let endpoint = s3.endpoint.clone();
    let engine = start_engine_public(move |args| {
        allow_sandbox(args, &origin);
        args.media.media_s3_bucket = Some(BUCKET.to_owned());
        args.media.media_s3_endpoint = Some(endpoint);
        args.media.media_s3_region = "us-east-1".to_owned();
        args.media.media_s3_access_key_id = Some(ACCESS_KEY.to_owned());
        args.media.media_s3_secret_access_key = Some(SECRET_KEY.to_owned());
    })
    .await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    let ib = &tenants[0].1;
    assert_eq!(inbound(&engine, "infobip", ib, CONTACT, "hola").await, 200);

    let video = file(20_000, 10);
    let id = uploaded(&engine, ib, &video, "video/mp4").await;
    let (bytes_null, key): (bool, Option<String>) =
        sqlx::query_as("SELECT bytes IS NULL, object_key FROM media WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    assert!(bytes_null, "the bytes are in the object store, not the row");
    let key = key.unwrap();
    assert!(key.starts_with("media/") && key.ends_with(&id), "{key}");
    let on_disk: Vec<_> = files_under(s3.root.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    assert_eq!(std::fs::read(&on_disk[0]).unwrap(), video);

    let served = get_media(&engine, ib, &id).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), video.as_slice());
    let (_, sent) = delivered(
        &engine,
        &sandbox,
        ib,
        json!({"to": CONTACT, "media": {"type": "video", "id": id}}),
    )
    .await;
    let download = fetched(&sandbox, sent["content"]["mediaUrl"].as_str().unwrap()).await;
    assert_eq!(download.status, Some(200));
    assert_eq!(download.sha256, sha(&video));

    // An inbound file is fetched from the provider into the object store too.
    let photo = file(6000, 11);
    let put: Value = engine
        .http
        .put(format!(
            "{}/_sandbox/media/ib-s3-1?provider=infobip&account={}",
            sandbox.url, ib.sender
        ))
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook = json!({"results": [{"from": CONTACT, "to": ib.sender, "integrationType": "WHATSAPP",
        "receivedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "messageId": "ib-s3-msg", "message": {"type": "IMAGE", "url": put["url"]}}],
        "messageCount": 1, "pendingMessageCount": 0});
    let response = engine
        .http
        .post(engine.at(&format!("/webhook/infobip/{}", ib.slug)))
        .header("x-webhook-secret", &ib.webhook_secret)
        .json(&webhook)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (inbound_id, in_row, inbound_key): (uuid::Uuid, bool, Option<String>) = within(
        Duration::from_secs(30),
        "the inbound file fetched",
        async || {
            sqlx::query_as(
                "SELECT id, bytes IS NOT NULL, object_key FROM media
                 WHERE job_id IS NOT NULL AND status = 'stored'",
            )
            .fetch_optional(&engine.db.pool)
            .await
            .unwrap()
        },
    )
    .await;
    assert!(
        !in_row && inbound_key.is_some(),
        "the fetched bytes are in the object store"
    );
    let served = get_media(&engine, ib, &inbound_id.to_string()).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), photo.as_slice());
    let objects = || {
        files_under(s3.root.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("media"))
            .count()
    };
    assert_eq!(objects(), 2);

    // The retention deletes rows and then their objects.
    sqlx::query("UPDATE media SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let blobs = &engine.state.settings.media.blobs;
    assert_eq!(
        retention::sweep(&engine.db.pool, blobs, Duration::from_secs(3600))
            .await
            .unwrap(),
        1
    );
    assert!(!on_disk[0].exists(), "the object is deleted with its row");
    assert_eq!(get_media(&engine, ib, &id).await.status(), 404);
    assert_eq!(
        objects(),
        1,
        "the inbound file is younger than its retention"
    );
    // Deleting the tenant deletes its objects too.
    let deleted = engine
        .http
        .delete(engine.at(&format!("/admin/tenants/{}", ib.slug)))
        .bearer_auth(crate::engine_harness::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(objects(), 0);
}

/// An interactive message with reply buttons under a media header.
fn buttons_under(header: Value) -> Value {
    json!({"type": "button", "header": header, "body": {"text": "Is this yours?"},
           "action": {"buttons": [{"id": "yes", "title": "Yes"}]}})
}

#[tokio::test]
async fn engine_media_ids_in_interactive_and_template_headers_reach_each_provider() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    for (provider, tenant) in &tenants {
        assert_eq!(
            inbound(&engine, provider, tenant, CONTACT, "hola").await,
            200
        );
    }
    let (ib, meta, tw) = (&tenants[0].1, &tenants[1].1, &tenants[2].1);

    // Meta: the header's file uploaded with the sender's token, sent by Meta's id.
    let photo = file(3000, 21);
    let photo_id = uploaded(&engine, meta, &photo, "image/png").await;
    let (_, sent) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": CONTACT, "interactive": buttons_under(json!({"type": "image", "id": photo_id}))}),
    )
    .await;
    let uploads = meta_uploads(&sandbox);
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].1["sha256"], sha(&photo));
    assert_eq!(
        sent["interactive"]["header"],
        json!({"type": "image", "image": {"id": uploads[0].0}})
    );
    // A template's document header: uploaded once, Meta's id re-used the second time.
    let pdf = file(4000, 22);
    let pdf_id = uploaded(&engine, meta, &pdf, "application/pdf").await;
    let template = json!({"name": "invoice", "language": "en_US", "params": ["42"],
        "header": {"type": "document", "id": pdf_id, "filename": "invoice.pdf"}});
    for _ in 0..2 {
        let (_, sent) = delivered(
            &engine,
            &sandbox,
            meta,
            json!({"to": CONTACT, "template": template}),
        )
        .await;
        let uploads = meta_uploads(&sandbox);
        assert_eq!(uploads.len(), 2, "{uploads:?}");
        assert_eq!(uploads[1].1["sha256"], sha(&pdf));
        assert_eq!(
            sent["template"]["components"][0],
            json!({"type": "header", "parameters": [{"type": "document",
                   "document": {"id": uploads[1].0, "filename": "invoice.pdf"}}]})
        );
    }

    // InfoBip: the headers become signed links of the engine, downloaded like InfoBip would.
    let jpeg = file(2000, 23);
    let jpeg_id = uploaded(&engine, ib, &jpeg, "image/jpeg").await;
    let (path, sent) = delivered(
        &engine,
        &sandbox,
        ib,
        json!({"to": CONTACT, "interactive": buttons_under(json!({"type": "image", "id": jpeg_id}))}),
    )
    .await;
    assert_eq!(path, "/whatsapp/1/message/interactive/buttons");
    assert_eq!(sent["content"]["header"]["type"], "IMAGE");
    let url = sent["content"]["header"]["mediaUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/public/media/{jpeg_id}?t=", engine.url)),
        "{url}"
    );
    let download = fetched(&sandbox, url).await;
    assert_eq!(download.status, Some(200), "{download:?}");
    assert_eq!(download.sha256, sha(&jpeg));
    let ib_pdf = file(2500, 24);
    let ib_pdf_id = uploaded(&engine, ib, &ib_pdf, "application/pdf").await;
    let (path, sent) = delivered(
        &engine,
        &sandbox,
        ib,
        json!({"to": CONTACT, "template": {"name": "invoice", "language": "en", "params": ["42"],
               "header": {"type": "document", "id": ib_pdf_id, "filename": "invoice.pdf"}}}),
    )
    .await;
    assert_eq!(path, "/whatsapp/1/message/template");
    let header = &sent["messages"][0]["content"]["templateData"]["header"];
    assert_eq!(header["type"], "DOCUMENT");
    assert_eq!(header["filename"], "invoice.pdf");
    let download = fetched(&sandbox, header["mediaUrl"].as_str().unwrap()).await;
    assert_eq!(download.status, Some(200));
    assert_eq!(download.sha256, sha(&ib_pdf));

    // Twilio has media headers only inside Content API templates: refused like a URL header.
    let tw_png = uploaded(&engine, tw, &file(100, 25), "image/png").await;
    let (status, error) = refused(
        &engine,
        tw,
        json!({"to": CONTACT, "template": {"name": "HX00000000000000000000000000000001", "language": "en",
               "header": {"type": "image", "id": tw_png}}}),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["details"]["field"], "template.header");

    // Another tenant's file or an unknown id: 404 naming the header's field, like media.id.
    for (tenant, body, field) in [
        (
            ib,
            json!({"to": CONTACT, "interactive": buttons_under(json!({"type": "image", "id": photo_id}))}),
            "interactive.header.id",
        ),
        (
            meta,
            json!({"to": CONTACT, "template": {"name": "invoice", "language": "en",
                   "header": {"type": "image", "id": uuid::Uuid::new_v4()}}}),
            "template.header.id",
        ),
        (
            meta,
            json!({"to": CONTACT, "template": {"name": "invoice", "language": "en",
                   "header": {"type": "image", "id": jpeg_id}}}),
            "template.header.id",
        ),
    ] {
        let (status, error) = refused(&engine, tenant, body.clone()).await;
        assert_eq!(status, 404, "{body}: {error}");
        assert_eq!(error["error"]["code"], "media_not_found");
        assert_eq!(error["error"]["details"]["field"], field);
    }
    // A file the header's type does not take: 400 naming the field and the file's type.
    for (body, field) in [
        (
            json!({"to": CONTACT, "template": {"name": "invoice", "language": "en",
                   "header": {"type": "document", "id": photo_id}}}),
            "template.header.id",
        ),
        (
            json!({"to": CONTACT, "interactive": buttons_under(json!({"type": "video", "id": pdf_id}))}),
            "interactive.header.id",
        ),
    ] {
        let (status, error) = refused(&engine, meta, body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["details"]["field"], field);
    }
}

#[tokio::test]
async fn a_meta_media_id_meta_no_longer_knows_is_uploaded_again_once() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    let meta = &tenants[1].1;
    assert_eq!(inbound(&engine, "meta", meta, CONTACT, "hola").await, 200);
    let photo = file(3000, 31);
    let photo_id = uploaded(&engine, meta, &photo, "image/png").await;
    let send = json!({"to": CONTACT, "media": {"type": "image", "id": photo_id}});
    let (_, sent) = delivered(&engine, &sandbox, meta, send.clone()).await;
    let first = meta_uploads(&sandbox)[0].0.clone();
    assert_eq!(sent["image"]["id"], first.as_str());

    // Meta deletes the file early: the remembered id is refused, the file uploaded again and
    // the message sent with the new id.
    sandbox.state.forget_media(&first);
    let (_, sent) = delivered(&engine, &sandbox, meta, send.clone()).await;
    let uploads = meta_uploads(&sandbox);
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    let second = uploads[1].0.clone();
    assert_ne!(second, first);
    assert_eq!(uploads[1].1["sha256"], sha(&photo));
    assert_eq!(sent["image"]["id"], second.as_str());
    let refusals: Vec<Value> = sandbox
        .state
        .requests()
        .into_iter()
        .filter(|r| r.status == 400 && r.path.ends_with("/messages"))
        .map(|r| r.body)
        .collect();
    assert_eq!(refusals.len(), 1, "one refused send: {refusals:?}");
    assert_eq!(refusals[0]["image"]["id"], first.as_str());
    // The new id is remembered: the next send uploads nothing.
    let (_, sent) = delivered(&engine, &sandbox, meta, send).await;
    assert_eq!(sent["image"]["id"], second.as_str());
    assert_eq!(meta_uploads(&sandbox).len(), 2);

    // A Meta id the worker gave itself (not the engine's) that Meta refuses fails as before.
    sandbox.state.forget_media("1013859600285441");
    let response = engine
        .send(
            meta,
            None,
            json!({"to": CONTACT, "media": {"type": "image", "id": "1013859600285441"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let view = crate::policy_harness::wait_for_status(
        &engine,
        meta,
        accepted["message_id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(view["error_code"], "100", "{view}");
    assert!(
        view["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("media attachment ID"),
        "{view}"
    );
    assert_eq!(meta_uploads(&sandbox).len(), 2);
}

#[tokio::test]
async fn the_job_retention_leaves_no_object_of_its_jobs_files_behind() {
    let s3 = start_s3().await;
    let endpoint = s3.endpoint.clone();
    let engine = crate::engine_harness::start_engine_with(move |args| {
        args.media.media_s3_bucket = Some(BUCKET.to_owned());
        args.media.media_s3_endpoint = Some(endpoint);
        args.media.media_s3_region = "us-east-1".to_owned();
        args.media.media_s3_access_key_id = Some(ACCESS_KEY.to_owned());
        args.media.media_s3_secret_access_key = Some(SECRET_KEY.to_owned());
    })
    .await;
    engine.tenant("acme", "meta").await;
    let tenant: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = 'acme'")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    let blobs = &engine.state.settings.media.blobs;
    // A file in the object store for each of a completed, a dead and a queued job.
    for (seed, status) in [(1u8, "completed"), (2, "dead"), (3, "queued")] {
        let job: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO jobs (tenant_id, payload, status, conversation_key)
             VALUES ($1, '{}', $2, $3) RETURNING id",
        )
        .bind(tenant)
        .bind(status)
        .bind(format!("c{seed}"))
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
        let id = uuid::Uuid::new_v4();
        let placed = blobs.put(tenant, id, &file(1000, seed)).await.unwrap();
        let flomastr::engine::media::blobs::Placement::Object(key) = placed else {
            panic!("the object store keeps the file")
        };
        sqlx::query(
            "INSERT INTO media (tenant_id, id, job_id, position, provider, kind, provider_ref, status,
                                content_type, sha256, size, object_key)
             VALUES ($1, $2, $3, 0, 'meta', 'image', 'x', 'stored', 'image/png', 'ab', 1000, $4)",
        )
        .bind(tenant)
        .bind(id)
        .bind(job)
        .bind(key)
        .execute(&engine.db.pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE jobs SET updated_at = now() - interval '2 hours'")
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let objects = || {
        files_under(s3.root.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&tenant.to_string()))
            .count()
    };
    assert_eq!(objects(), 3);
    // The retention deletes the finished jobs; their files' rows go by the cascade, their
    // objects right after. The queued job's file stays.
    let hour = Duration::from_secs(3600);
    let deleted = flomastr::engine::queue::delete_finished(&engine.db.pool, blobs, hour, hour)
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(count(&engine, "SELECT count(*) FROM media").await, 1);
    assert_eq!(objects(), 1, "no object left without its row");
}
