//! Tenant backups of the engine's data: an archive restores every table of the tenant, into
//! the same slug or a new one; a bad archive (corrupt, cut short, another format, version or
//! schema) is refused with nothing of the live tenant touched; an archive of one tenant holds
//! none of another's rows; only the admin may take or restore one.

use crate::engine_harness::{ADMIN_TOKEN, TestEngine, TestTenant, start_engine};
use flomastr::engine::backup::tables::{NOT_ARCHIVED, TABLES};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Rows in every archived table for the tenant, each value marked with `tag`.
pub async fn fill(engine: &TestEngine, slug: &str, tag: &str) {
    let (tenant, sender): (Uuid, Uuid) = sqlx::query_as(
        "SELECT t.id, c.id FROM tenants t JOIN channels c ON c.tenant_id = t.id WHERE t.slug = $1",
    )
    .bind(slug)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    let statements = [
        "INSERT INTO jobs (tenant_id, payload, status, conversation_key, dedup_key, lease_token, lease_expires_at) VALUES
           ('{t}', '{\"message\": \"{g} hello\"}', 'queued', '{g}-c1', '{g}-d1', NULL, NULL),
           ('{t}', '{\"message\": \"{g} later\"}', 'queued', '{g}-c1', '{g}-d2', NULL, NULL),
           ('{t}', '{\"message\": \"{g} held\"}', 'processing', '{g}-c3', '{g}-d3', gen_random_uuid(), now() + interval '1 hour'),
           ('{t}', '{\"message\": \"{g} done\"}', 'completed', '{g}-c1', '{g}-d4', NULL, NULL),
           ('{t}', '{\"message\": \"{g} poison\"}', 'dead', '{g}-c2', '{g}-d5', NULL, NULL)",
        "INSERT INTO media (tenant_id, id, job_id, position, sender_id, provider, kind, provider_ref, status, content_type, size, bytes)
           SELECT tenant_id, gen_random_uuid(), id, 0, '{s}', 'meta', 'image', '{g}-media', 'stored', 'image/png', 3, '\\x010203'
           FROM jobs WHERE tenant_id = '{t}' AND status = 'queued'",
        "INSERT INTO media (tenant_id, id, status, content_type, sha256, size, bytes, filename, expires_at)
           VALUES ('{t}', gen_random_uuid(), 'stored', 'application/pdf', 'ab', 3, '\\x0a0b0c', '{g}-upload.pdf', now() + interval '1 day'),
                  ('{t}', gen_random_uuid(), 'stored', 'application/pdf', 'ab', 3, '\\x0a0b0c', '{g}-expired.pdf', now() - interval '1 second')",
        "INSERT INTO blocked_conversations (tenant_id, conversation_key, job_id)
           SELECT tenant_id, conversation_key, id FROM jobs WHERE tenant_id = '{t}' AND status = 'dead'",
        "INSERT INTO status_reports (tenant_id, provider, provider_message_id, status, provider_status, occurred_at, raw)
           VALUES ('{t}', 'meta', '{g}-wamid', 'delivered', 'DELIVERED', now(), '{\"tag\": \"{g}\"}')",
        "INSERT INTO outbound_messages (tenant_id, idempotency_key, request_sha256, recipient, content, status, provider_message_id, sender_id, category)
           VALUES ('{t}', '{g}-k1', sha256('{g}'::bytea), '15550001', '{\"text\": \"{g} out\"}', 'delivered', '{g}-wamid', '{s}', 'service'),
                  ('{t}', '{g}-k2', sha256('{g}2'::bytea), '15550002', '{\"text\": \"{g} promo\"}', 'read', '{g}-wamid2', NULL, 'marketing')",
        "INSERT INTO outbound_events (message_id, status, detail)
           SELECT id, s, '{\"tag\": \"{g}\"}' FROM outbound_messages, unnest(ARRAY['queued', 'sent']) AS s WHERE tenant_id = '{t}'",
        "INSERT INTO contact_windows (tenant_id, contact, last_inbound_at, last_sender_id) VALUES ('{t}', '15550001', now(), '{s}')",
        "INSERT INTO kb_documents (tenant_id, title, format, sha256) VALUES ('{t}', '{g} doc', 'text', sha256('{g} doc'::bytea))",
        "INSERT INTO kb_chunks (tenant_id, document_id, chunk_index, content, char_start, char_end, embedding_model, embedding)
           SELECT '{t}', d.id, i, '{g} chunk ' || i, i * 10, i * 10 + 9, 'minilm',
                  (SELECT array_agg(((k * 7 + i) % 11 / 3.0 + 0.1)::real) FROM generate_series(1, 384) AS k)::vector
           FROM kb_documents d, generate_series(0, 2) AS i WHERE d.tenant_id = '{t}'",
        "INSERT INTO ai_memory (tenant_id, contact, turn_no, user_text, assistant_text, meta)
           VALUES ('{t}', '15550001', 1, '{g} q', '{g} a', '{\"tag\": \"{g}\"}'), ('{t}', '15550001', 2, '{g} q2', '{g} a2', '{}')",
        "INSERT INTO ai_usage (tenant_id, endpoint, model, prompt_tokens, completion_tokens) VALUES ('{t}', 'synthesis', '{g}-model', 10, 5)",
        "INSERT INTO ai_audit (tenant_id, endpoint, outcome, detail) VALUES ('{t}', 'synthesis', 'ok', '{\"tag\": \"{g}\"}')",
        "INSERT INTO message_templates (tenant_id, name, language, category, status, body, variables)
           VALUES ('{t}', '{g}_welcome', 'en', 'UTILITY', 'APPROVED', 'Hello {{1}} from {g}', '[{\"description\": \"name\"}]')",
        "INSERT INTO template_events (tenant_id, name, language, field, value, source) VALUES ('{t}', '{g}_welcome', 'en', 'status', 'APPROVED', 'sync')",
        "INSERT INTO send_policies (tenant_id, opt_out_keywords, opt_in_keywords, time_zone, quiet_start, quiet_end, marketing_cap)
           VALUES ('{t}', ARRAY['BAJA', '{g}'], ARRAY['ALTO'], 'Europe/Madrid', '21:00', '08:00', 3)",
        "INSERT INTO contact_time_zones (tenant_id, contact, time_zone) VALUES ('{t}', '15550001', 'Europe/Madrid')",
        "INSERT INTO contact_marketing_limits (tenant_id, contact, limited_until) VALUES ('{t}', '15550002', now() + interval '1 day')",
        "SELECT flomastr_record_consent(ARRAY['{t}', '{t}', '{t}']::uuid[], ARRAY['15550002', '15550002', '15550003'],
           ARRAY['opted_out', 'opted_in', 'opted_out'], ARRAY['api', 'keyword', 'import'], ARRAY['{\"tag\": \"{g}\"}', '{}', '{}']::jsonb[])",
        "INSERT INTO campaign_segments (tenant_id, name, contacts) VALUES ('{t}', 'vip', ARRAY['15550001', '{g}'])",
        "INSERT INTO campaigns (tenant_id, name, state, audience, template_name, template_language, category, time_zone, per_minute, paused_reason)
           VALUES ('{t}', '{g} campaign', 'paused', '{\"kind\": \"list\", \"contacts\": [\"15550001\"]}', '{g}_welcome', 'en', 'utility', 'UTC', 60, 'test')",
        "INSERT INTO campaign_runs (campaign_id, tenant_id, scheduled_for, state, planned)
           SELECT id, tenant_id, now(), 'paused', 2 FROM campaigns WHERE tenant_id = '{t}'",
        "INSERT INTO campaign_recipients (run_id, contact, state, message_id)
           SELECT r.id, m.recipient, 'queued', m.id FROM campaign_runs r JOIN outbound_messages m ON m.tenant_id = r.tenant_id
           WHERE r.tenant_id = '{t}'",
    ];
    for statement in statements {
        let sql = statement
            .replace("{t}", &tenant.to_string())
            .replace("{s}", &sender.to_string())
            .replace("{g}", tag);
        sqlx::query(&sql)
            .execute(&engine.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Id columns: derived anew when a restore cannot keep them, so compared through what they
/// refer to (the checks in `references_hold`) rather than by value.
const IDS: &[&str] = &[
    "id",
    "seq",
    "tenant_id",
    "job_id",
    "message_id",
    "document_id",
    "campaign_id",
    "run_id",
    "sender_id",
    "last_sender_id",
    "event_id",
];

/// Every archived table's rows of the tenant, ids left out, in the archive's order.
pub async fn contents(engine: &TestEngine, slug: &str) -> BTreeMap<&'static str, Vec<Value>> {
    let tenant = tenant_id(engine, slug).await;
    let mut all = BTreeMap::new();
    for table in TABLES {
        let rows: Vec<String> = sqlx::query_scalar(table.export)
            .bind(tenant)
            .fetch_all(&engine.db.pool)
            .await
            .unwrap();
        let mut rows: Vec<Value> = rows
            .iter()
            .map(|row| {
                let mut row: Value = serde_json::from_str(row).unwrap();
                for id in IDS {
                    row.as_object_mut().unwrap().remove(*id);
                }
                row
            })
            .collect();
        // Rows created together are ordered by id, which a restore may derive anew: compare
        // as sets (conversation order is checked in `references_hold`).
        rows.sort_by_key(|row| row.to_string());
        all.insert(table.name, rows);
    }
    all
}

async fn tenant_id(engine: &TestEngine, slug: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

/// References between restored rows point at rows of the same tenant.
pub async fn references_hold(engine: &TestEngine, slug: &str) {
    let tenant = tenant_id(engine, slug).await;
    let dangling: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM blocked_conversations b WHERE b.tenant_id = $1
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = b.job_id AND j.tenant_id = $1 AND j.status = 'dead'))
              + (SELECT count(*) FROM campaign_recipients c JOIN campaign_runs r ON r.id = c.run_id WHERE r.tenant_id = $1
                   AND NOT EXISTS (SELECT 1 FROM outbound_messages m WHERE m.id = c.message_id AND m.tenant_id = $1))
              + (SELECT count(*) FROM campaign_runs r WHERE r.tenant_id = $1
                   AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = r.campaign_id AND c.tenant_id = $1))
              + (SELECT count(*) FROM contact_consent c WHERE c.tenant_id = $1
                   AND NOT EXISTS (SELECT 1 FROM consent_events e WHERE e.id = c.event_id AND e.tenant_id = $1
                                     AND e.contact = c.contact AND e.state = c.state))
              + (SELECT count(*) FROM outbound_messages m WHERE m.tenant_id = $1 AND m.sender_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM channels s WHERE s.id = m.sender_id AND s.tenant_id = $1))
              + (SELECT count(*) FROM media m WHERE m.tenant_id = $1 AND m.job_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = m.job_id AND j.tenant_id = $1))
              + (SELECT count(*) FROM contact_windows w WHERE w.tenant_id = $1 AND w.last_sender_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM channels s WHERE s.id = w.last_sender_id AND s.tenant_id = $1))",
    )
    .bind(tenant)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(
        dangling, 0,
        "restored references of `{slug}` point elsewhere"
    );
    let conversation: Vec<String> = sqlx::query_scalar(
        "SELECT payload ->> 'message' FROM jobs WHERE tenant_id = $1 AND conversation_key LIKE '%-c1'
         ORDER BY provider_timestamp, seq",
    )
    .bind(tenant)
    .fetch_all(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(
        conversation,
        ["acmetag hello", "acmetag later"],
        "conversation order"
    );
}

async fn backup(engine: &TestEngine, slug: &str) -> Vec<u8> {
    let response = engine
        .http
        .post(engine.at(&format!("/admin/tenants/{slug}/backup")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

async fn restore(engine: &TestEngine, slug: &str, archive: Vec<u8>) -> (u16, Value) {
    let response = engine
        .http
        .post(engine.at(&format!("/admin/tenants/{slug}/restore")))
        .bearer_auth(ADMIN_TOKEN)
        .body(archive)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn two_filled_tenants() -> (TestEngine, TestTenant, TestTenant) {
    let engine = start_engine().await;
    let acme = engine.tenant("acme", "meta").await;
    let bravo = engine.tenant("bravo", "infobip").await;
    fill(&engine, "acme", "acmetag").await;
    fill(&engine, "bravo", "bravotag").await;
    (engine, acme, bravo)
}

#[tokio::test]
async fn every_table_of_the_tenant_is_archived_or_left_out_on_purpose() {
    let engine = start_engine().await;
    let with_tenant: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY 1",
    )
    .fetch_all(&engine.db.pool)
    .await
    .unwrap();
    let archived: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    let left_out: Vec<&str> = NOT_ARCHIVED.iter().map(|(t, _)| *t).collect();
    for table in &with_tenant {
        assert!(
            archived.contains(&table.as_str()) || left_out.contains(&table.as_str()),
            "table `{table}` holds tenant rows: archive it (src/engine/backup/tables.rs) or say why not"
        );
    }
    // Tables owned through a parent row (no tenant_id of their own).
    assert!(archived.contains(&"outbound_events") && archived.contains(&"campaign_recipients"));
}

#[tokio::test]
async fn backup_restores_every_row_in_place_and_holds_only_its_tenant() {
    let (engine, acme, _bravo) = two_filled_tenants().await;
    let before = contents(&engine, "acme").await;
    for (table, rows) in &before {
        assert!(!rows.is_empty(), "the fixture leaves `{table}` empty");
    }
    assert_eq!(before["jobs"].len(), 4, "completed jobs are not archived");
    let bravo_before = contents(&engine, "bravo").await;
    let archive = backup(&engine, "acme").await;

    let text = String::from_utf8(archive.clone()).unwrap();
    assert!(
        !text.contains("bravotag"),
        "tenant A's archive holds B's rows"
    );
    for secret in [
        "meta-access-token-secret",
        &acme.app_secret,
        &acme.webhook_secret,
        "ib-api-key-secret",
    ] {
        assert!(!text.contains(secret), "the archive holds a credential");
    }
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], "flomastr-tenant-backup");
    assert_eq!(header["tenant"]["slug"], "acme");
    let trailer: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(trailer["end"]["rows"]["kb_chunks"], 3);
    assert_eq!(
        trailer["end"]["rows"]["media"], 3,
        "the queued jobs' files and the upload not yet expired"
    );
    assert!(text.contains("acmetag-upload.pdf") && !text.contains("acmetag-expired.pdf"));

    // The tenant's data changes and goes: the restore brings back the archive's, and only it.
    sqlx::query("DELETE FROM tenants WHERE slug = 'acme'")
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let (status, report) = restore(&engine, "acme", archive.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], true);
    assert_eq!(report["ids_kept"], true, "restored under its own id");
    assert_eq!(contents(&engine, "acme").await, before);

    // The operator registers it again (new senders); a second restore over the live data maps
    // its senders by address and replaces what changed since.
    let registered = engine.admin_put("acme", &acme.registration).await;
    assert!(registered.status().is_success());
    sqlx::query("INSERT INTO jobs (tenant_id, payload, conversation_key) SELECT id, '{}', 'new' FROM tenants WHERE slug = 'acme'")
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let (status, report) = restore(&engine, "acme", archive).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], false);
    assert_eq!(contents(&engine, "acme").await, before);
    references_hold(&engine, "acme").await;
    let mapped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbound_messages m JOIN channels c ON c.id = m.sender_id WHERE c.sender = $1",
    )
    .bind(&acme.sender)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(
        mapped, 1,
        "the message sent from the sender keeps its sender"
    );
    assert_eq!(
        contents(&engine, "bravo").await,
        bravo_before,
        "another tenant was touched"
    );
}

#[tokio::test]
async fn a_backup_restores_into_a_new_slug_beside_its_tenant() {
    let (engine, _acme, _bravo) = two_filled_tenants().await;
    let acme_before = contents(&engine, "acme").await;
    let archive = backup(&engine, "acme").await;
    let (status, report) = restore(&engine, "acme-copy", archive.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["created"].clone(), report["ids_kept"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(report["source_slug"], "acme");
    assert_eq!(contents(&engine, "acme-copy").await, acme_before);
    assert_eq!(
        contents(&engine, "acme").await,
        acme_before,
        "the source changed"
    );
    references_hold(&engine, "acme-copy").await;
    // Restoring the same archive again gives the same result (ids derive from the tenant's).
    let (status, _) = restore(&engine, "acme-copy", archive).await;
    assert_eq!(status, 200);
    assert_eq!(contents(&engine, "acme-copy").await, acme_before);
    // The copy's archive holds the copy's rows.
    let copy = String::from_utf8(backup(&engine, "acme-copy").await).unwrap();
    let header: Value = serde_json::from_str(copy.lines().next().unwrap()).unwrap();
    assert_eq!(header["tenant"]["slug"], "acme-copy");
}

#[tokio::test]
async fn bad_archives_are_refused_with_nothing_touched() {
    let (engine, _acme, _bravo) = two_filled_tenants().await;
    let archive = backup(&engine, "acme").await;
    // The live tenant moves on after the backup: a refused restore must leave it so.
    sqlx::query("DELETE FROM message_templates WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'acme')")
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let live = contents(&engine, "acme").await;
    let text = String::from_utf8(archive.clone()).unwrap();

    let mut flipped = archive.clone();
    let at = text.find("acmetag hello").unwrap();
    flipped[at] = b'X';
    let other_schema = text.replacen("\"schema_version\":", "\"schema_version\":1", 1);
    let other_version = text.replacen("\"version\":2", "\"version\":9", 1);
    let mut tar = tar::Builder::new(Vec::new());
    let mut entry = tar::Header::new_gnu();
    entry.set_size(3);
    entry.set_cksum();
    tar.append_data(&mut entry, "dump.sql", &b"abc"[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    // Well-formed and checksummed, but refused by the schema: a status no tenant can have, and
    // a job whose status is unknown.
    let bad_status = reseal(&text.replacen("\"status\":\"active\"", "\"status\":\"bogus\"", 1));
    let bad_job = reseal(&text.replacen("\"status\": \"queued\"", "\"status\": \"lost\"", 1));
    assert_ne!(
        bad_job, archive,
        "the fixture's job status is where the test expects it"
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a tenant status the schema refuses",
            bad_status,
            400,
            "backup_corrupt",
        ),
        (
            "a job status the schema refuses",
            bad_job,
            400,
            "backup_corrupt",
        ),
        ("a flipped byte", flipped, 400, "backup_corrupt"),
        (
            "cut in half",
            archive[..archive.len() / 2].to_vec(),
            400,
            "backup_truncated",
        ),
        (
            "without its trailer",
            text.as_bytes()[..text.rfind("{\"end\"").unwrap()].to_vec(),
            400,
            "backup_truncated",
        ),
        ("empty", Vec::new(), 400, "backup_format"),
        ("a tar archive", tar, 400, "backup_format"),
        (
            "another format version",
            other_version.into_bytes(),
            400,
            "backup_version",
        ),
        (
            "another engine schema",
            other_schema.into_bytes(),
            409,
            "backup_schema_mismatch",
        ),
    ];
    for (what, bytes, want, code) in cases {
        for target in ["acme", "ghost"] {
            let (status, body) = restore(&engine, target, bytes.clone()).await;
            assert_eq!(
                (status, body["error"]["code"].as_str().unwrap()),
                (want, code),
                "{what}: {body}"
            );
            assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        }
        assert_eq!(
            contents(&engine, "acme").await,
            live,
            "{what} touched the live tenant"
        );
        let ghost: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE slug = 'ghost'")
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
        assert_eq!(ghost, 0, "{what} created a tenant");
    }
}

#[tokio::test]
async fn backup_and_restore_need_the_admin_token() {
    let (engine, acme, _bravo) = two_filled_tenants().await;
    let archive = backup(&engine, "acme").await;
    let live = contents(&engine, "acme").await;
    for path in ["backup", "restore"] {
        let url = engine.at(&format!("/admin/tenants/acme/{path}"));
        let none = engine
            .http
            .post(&url)
            .body(archive.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401, "{path} without a token");
        for token in ["not-the-admin-token", acme.worker_token.as_str()] {
            let wrong = engine
                .http
                .post(&url)
                .bearer_auth(token)
                .body(archive.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 403, "{path} with another token");
        }
    }
    assert_eq!(contents(&engine, "acme").await, live);
    let missing = engine
        .http
        .post(engine.at("/admin/tenants/nobody/backup"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_restore_may_take_longer_than_the_body_timeout() {
    let engine = crate::engine_harness::start_engine_with(|args| {
        args.server.body_timeout_seconds = 1;
    })
    .await;
    engine.tenant("acme", "meta").await;
    fill(&engine, "acme", "acmetag").await;
    let before = contents(&engine, "acme").await;
    let archive = backup(&engine, "acme").await;
    // Three parts, 0.8 s apart: the whole body takes longer than the 1 s body timeout.
    let parts: Vec<Vec<u8>> = archive
        .chunks(archive.len() / 3 + 1)
        .map(<[u8]>::to_vec)
        .collect();
    let slow = futures::stream::iter(parts).then(|part| async move {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        Ok::<_, std::io::Error>(part)
    });
    let response = engine
        .http
        .post(engine.at("/admin/tenants/acme-slow/restore"))
        .bearer_auth(ADMIN_TOKEN)
        .body(reqwest::Body::wrap_stream(slow))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(contents(&engine, "acme-slow").await, before);
}

#[tokio::test]
async fn a_backup_is_one_snapshot_whatever_changes_while_it_streams() {
    let engine = start_engine().await;
    engine.tenant("acme", "meta").await;
    fill(&engine, "acme", "acmetag").await;
    // Some 20 MB of chunks: the stream stalls in them while the client does not read.
    sqlx::query(
        "INSERT INTO kb_chunks (tenant_id, document_id, chunk_index, content, char_start, char_end, embedding_model, embedding)
         SELECT d.tenant_id, d.id, 100 + i, 'bulk ' || i, 0, 1, 'minilm', array_fill(0.123456789::real, ARRAY[384])::vector
         FROM kb_documents d JOIN tenants t ON t.id = d.tenant_id, generate_series(1, 5000) AS i WHERE t.slug = 'acme'",
    )
    .execute(&engine.db.pool)
    .await
    .unwrap();
    let mut response = engine
        .http
        .post(engine.at("/admin/tenants/acme/backup"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let mut archive = response.chunk().await.unwrap().unwrap().to_vec();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Changes to tables the stream has not reached yet, committed while it is held.
    for change in [
        "DELETE FROM message_templates WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'acme')",
        "INSERT INTO campaign_segments (tenant_id, name, contacts) SELECT id, 'late-segment', ARRAY['1'] FROM tenants WHERE slug = 'acme'",
    ] {
        sqlx::query(change).execute(&engine.db.pool).await.unwrap();
    }
    while let Some(chunk) = response.chunk().await.unwrap() {
        archive.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(archive).unwrap();
    assert!(
        text.contains("acmetag_welcome"),
        "a row deleted after the backup began is missing"
    );
    assert!(
        !text.contains("late-segment"),
        "a row added after the backup began is in it"
    );
    let trailer: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(trailer["end"]["rows"]["kb_chunks"], 5003);
}

/// The archive with its trailer's checksum computed again (a well-formed archive of edited data).
fn reseal(text: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<&str> = text.lines().collect();
    let trailer = lines.pop().unwrap();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    let mut trailer: Value = serde_json::from_str(trailer).unwrap();
    trailer["end"]["sha256"] = json!(hex::encode(hasher.finalize()));
    let mut out = lines.join("\n");
    out.push('\n');
    out.push_str(&trailer.to_string());
    out.push('\n');
    out.into_bytes()
}
