//! Migrations on the real PostgreSQL 16 + pgvector server.

use crate::common::fresh_db;
use serde_json::json;

async fn insert_tenant(pool: &sqlx::PgPool, slug: &str) -> uuid::Uuid {
    sqlx::query_scalar("INSERT INTO tenants (slug, display_name) VALUES ($1, $2) RETURNING id")
        .bind(slug)
        .bind("Test tenant")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_apply_once_and_are_idempotent() {
    let db = fresh_db().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, flomastr::db::MIGRATOR.iter().count());
    flomastr::db::migrate(&db.pool)
        .await
        .expect("running again is a no-op");
}

#[tokio::test]
async fn vector_extension_is_present_and_works() {
    let db = fresh_db().await;
    let version: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_one(&db.pool)
            .await
            .expect("the vector extension is installed by the migrations");
    assert!(!version.is_empty());
    let distance: f64 = sqlx::query_scalar("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!((distance - 1.0).abs() < 1e-9);
}

#[tokio::test]
async fn jobs_table_takes_the_seed_payload_with_queue_defaults() {
    let db = fresh_db().await;
    let tenant = insert_tenant(&db.pool, "acme").await;
    let payload = json!({
        "from": "441134960001", "message": "Hola, ¿tenéis pan sin gluten?",
        "tenant_id": "acme", "timestamp": "2026-11-25T10:00:00Z"
    });
    let (id, status, attempts): (uuid::Uuid, String, i32) = sqlx::query_as(
        "INSERT INTO jobs (tenant_id, payload, conversation_key, dedup_key)
         VALUES ($1, $2, 'acme:441134960001', 'msg-1') RETURNING id, status, attempts",
    )
    .bind(tenant)
    .bind(&payload)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    let (stored, created, updated): (
        serde_json::Value,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as("SELECT payload, created_at, updated_at FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, payload);
    assert!(updated >= created);
}

#[tokio::test]
async fn jobs_table_refuses_what_a_queue_must_never_hold() {
    let db = fresh_db().await;
    let tenant = insert_tenant(&db.pool, "acme").await;
    let insert = |dedup: &'static str, status: &'static str| {
        sqlx::query(
            "INSERT INTO jobs (tenant_id, payload, conversation_key, dedup_key, status)
             VALUES ($1, '{}', 'c', $2, $3)",
        )
        .bind(tenant)
        .bind(dedup)
        .bind(status)
        .execute(&db.pool)
    };
    insert("m1", "queued").await.unwrap();
    let duplicate = insert("m1", "queued").await.unwrap_err();
    assert!(duplicate.to_string().contains("jobs_dedup"), "{duplicate}");
    let unleased = insert("m2", "processing").await.unwrap_err();
    assert!(
        unleased.to_string().contains("check constraint"),
        "{unleased}"
    );
    let unknown = insert("m3", "lost").await.unwrap_err();
    assert!(
        unknown.to_string().contains("check constraint"),
        "{unknown}"
    );
    let orphan = sqlx::query("INSERT INTO jobs (tenant_id, payload, conversation_key) VALUES (gen_random_uuid(), '{}', 'c')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(orphan.to_string().contains("foreign key"), "{orphan}");
}

#[tokio::test]
async fn the_engine_runs_as_an_unprivileged_owner() {
    let db = fresh_db().await;
    let engine = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (role, superuser, bypass): (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&engine)
    .await
    .unwrap();
    assert_eq!(
        (role.as_str(), superuser, bypass),
        (crate::common::ENGINE_ROLE, false, false)
    );
    let foreign: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'ai_views') AND c.relkind IN ('r', 'v')
           AND pg_get_userbyid(c.relowner) <> $1",
    )
    .bind(crate::common::ENGINE_ROLE)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(foreign.is_empty(), "owned by someone else: {foreign:?}");
    // Row-level security binds the owner too: without the tenant setting, nothing is visible.
    let tenant = insert_tenant(&db.pool, "rls").await;
    sqlx::query("INSERT INTO ai_memory (tenant_id, contact, turn_no, user_text, assistant_text) VALUES ($1, 'c', 1, 'u', 'a')")
        .bind(tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM ai_memory")
        .fetch_one(&engine)
        .await
        .unwrap();
    assert_eq!(visible, 0);
}

#[tokio::test]
async fn the_query_login_reads_only_the_views() {
    let db = fresh_db().await;
    let nl = sqlx::PgPool::connect(&db.nl_query_url).await.unwrap();
    let (superuser, settings): (bool, Vec<String>) = sqlx::query_as(
        "SELECT rolsuper, coalesce(rolconfig, '{}') FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&nl)
    .await
    .unwrap();
    assert!(!superuser);
    for expected in [
        "statement_timeout=3s",
        "default_transaction_read_only=on",
        "work_mem=4MB",
    ] {
        assert!(settings.iter().any(|s| s == expected), "{settings:?}");
    }
    let denied = sqlx::query("SELECT 1 FROM public.jobs LIMIT 1")
        .fetch_optional(&nl)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    // Without a scope bound to its connection, the views show nothing.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ai_views.inbound_messages")
        .fetch_one(&nl)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

/// A database where two tenants share a number stops at the senders migration, naming the
/// number, and changes nothing; once each has its own, the migration applies and each tenant's
/// channel becomes its first sender.
#[tokio::test]
async fn the_senders_migration_stops_on_a_number_two_tenants_share() {
    use sqlx::migrate::Migrator;
    use std::borrow::Cow;
    const SENDERS: i64 = 20261204000100;
    let db = crate::common::empty_db().await;
    // Without the advisory lock: a failed run keeps it on its connection until that closes.
    let migrator = |up_to: i64| Migrator {
        migrations: Cow::Owned(
            flomastr::db::MIGRATOR
                .iter()
                .filter(|m| m.version <= up_to)
                .cloned()
                .collect(),
        ),
        ignore_missing: false,
        locking: false,
        no_tx: false,
    };
    migrator(SENDERS - 1).run(&db.pool).await.unwrap();
    for (slug, sender) in [("acme", "441134960000"), ("globex", "+441134960000")] {
        let id = insert_tenant(&db.pool, slug).await;
        sqlx::query(
            "INSERT INTO channels (tenant_id, provider, sender) VALUES ($1, 'infobip', $2)",
        )
        .bind(id)
        .bind(sender)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let error = migrator(SENDERS).run(&db.pool).await.unwrap_err();
    let text = format!("{error:?}");
    assert!(
        text.contains("441134960000") && text.contains("give each its own"),
        "{text}"
    );
    let ordinal: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'channels' AND column_name = 'ordinal'",
    )
    .fetch_optional(&db.pool)
    .await
    .unwrap();
    assert_eq!(ordinal, None, "nothing of the migration was applied");

    sqlx::query("UPDATE channels SET sender = '441134960001' WHERE sender LIKE '+%'")
        .execute(&db.pool)
        .await
        .unwrap();
    migrator(SENDERS).run(&db.pool).await.unwrap();
    let senders: Vec<(String, i32)> =
        sqlx::query_as("SELECT address, ordinal FROM channels ORDER BY address")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        senders,
        [
            ("441134960000".to_owned(), 0),
            ("441134960001".to_owned(), 0)
        ]
    );
}
