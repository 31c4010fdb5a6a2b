//! Knowledge ingest and search: dedup, exact per-tenant search that never returns fewer than k
//! and never crosses tenants, row-level security as the backstop, re-embedding on model change.

use crate::common::unique;
use crate::engine_harness::{TestEngine, TestTenant, start_engine};
use flomastr::ai::embed::minilm::MODEL_ID;
use serde_json::{Value, json};

pub async fn ingest(
    engine: &TestEngine,
    tenant: &TestTenant,
    title: &str,
    text: &str,
    format: &str,
) -> reqwest::Response {
    engine
        .http
        .post(engine.at("/routes/knowledge/documents"))
        .bearer_auth(&tenant.worker_token)
        .json(&json!({"title": title, "text": text, "format": format}))
        .send()
        .await
        .unwrap()
}

pub async fn search(engine: &TestEngine, tenant: &TestTenant, q: &str, k: u32) -> Vec<Value> {
    let response = engine
        .http
        .get(engine.at("/routes/knowledge/search"))
        .query(&[("q", q), ("k", &k.to_string())])
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn ai_ingest_dedups_and_search_finds_the_right_document() {
    let engine = start_engine().await;
    let tenant = engine.tenant(&unique("kb"), "infobip").await;
    let hours =
        "Our shop opens at 9 in the morning and closes at 6 in the evening, Monday to Saturday.";
    let first = ingest(&engine, &tenant, "Opening hours", hours, "text").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = ingest(&engine, &tenant, "Hours (copy)", hours, "text").await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["document_id"], first["document_id"]);
    assert_eq!(again["duplicate"], true);
    let refunds = "# Refunds\n\nRefunds are paid back to the card within five business days.\n\n## Exchanges\n\nExchanges are free.";
    assert_eq!(
        ingest(&engine, &tenant, "Refunds", refunds, "markdown")
            .await
            .status(),
        201
    );
    let long = "Delivery takes two days. ".repeat(300);
    let delivery = ingest(&engine, &tenant, "Delivery", &long, "text").await;
    let delivery: Value = delivery.json().await.unwrap();
    assert!(
        delivery["chunks"].as_i64().unwrap() > 1,
        "a long text is chunked: {delivery}"
    );

    let hits = search(&engine, &tenant, "when do you close?", 2).await;
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["title"], "Opening hours");
    assert!(hits[0]["score"].as_f64().unwrap() > hits[1]["score"].as_f64().unwrap());
    let bad = engine
        .http
        .get(engine.at("/routes/knowledge/search?q=x&k=0"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_body"
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ai_audit WHERE endpoint LIKE 'knowledge.%'")
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    assert!(audited >= 6);
}

/// Chunks with random unit vectors stored straight into the table: a big tenant without
/// spending minutes on real embeddings.
async fn bulk_chunks(engine: &TestEngine, slug: &str, count: i32) {
    sqlx::query(
        "WITH t AS (SELECT id FROM tenants WHERE slug = $1),
              d AS (INSERT INTO kb_documents (tenant_id, title, format, sha256)
                    SELECT id, 'bulk', 'text', sha256(convert_to($1, 'UTF8')) FROM t RETURNING id, tenant_id)
         INSERT INTO kb_chunks (tenant_id, document_id, chunk_index, content, char_start, char_end, embedding_model, embedding)
         SELECT d.tenant_id, d.id, i, 'bulk chunk ' || i, 0, 10, $2,
                (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE i >= 0)::vector
         FROM d, generate_series(0, $3 - 1) AS i",
    )
    .bind(slug)
    .bind(MODEL_ID)
    .bind(count)
    .execute(&engine.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn ai_search_gives_a_tiny_tenant_its_k_beside_a_big_one() {
    let engine = start_engine().await;
    let big = engine.tenant(&unique("big"), "infobip").await;
    let tiny = engine.tenant(&unique("tiny"), "infobip").await;
    bulk_chunks(&engine, &big.slug, 5000).await;
    for (title, text) in [
        ("a", "Parking is free behind the store."),
        ("b", "We accept cards and cash."),
        ("c", "Gift cards never expire."),
    ] {
        assert_eq!(
            ingest(&engine, &tiny, title, text, "text").await.status(),
            201
        );
    }
    let hits = search(&engine, &tiny, "bulk chunk", 3).await;
    assert_eq!(hits.len(), 3, "the tiny tenant gets all of its k");
    assert!(hits.iter().all(|h| h["title"] != "bulk"));
    // Asking for more than it has gives what it has, never the big tenant's rows.
    assert_eq!(search(&engine, &tiny, "bulk chunk", 10).await.len(), 3);
    assert_eq!(search(&engine, &big, "parking", 7).await.len(), 7);
}

#[tokio::test]
async fn ai_search_never_crosses_tenants_and_rls_backs_it_up() {
    let engine = start_engine().await;
    let a = engine.tenant(&unique("ta"), "infobip").await;
    let b = engine.tenant(&unique("tb"), "infobip").await;
    let secret = "The vault code of tenant A is 4471 and its supplier is Acme Widgets.";
    assert_eq!(
        ingest(&engine, &a, "Secrets", secret, "text")
            .await
            .status(),
        201
    );
    assert_eq!(
        ingest(
            &engine,
            &b,
            "Menu",
            "Tenant B sells coffee and croissants.",
            "text"
        )
        .await
        .status(),
        201
    );
    let hits = search(&engine, &b, secret, 50).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["title"], "Menu");

    // The backstop: a role without BYPASSRLS sees only the tenant set in app.tenant_id, even
    // when its query forgets the tenant filter.
    let role = unique("rls").replace('-', "_");
    let pool = &engine.db.pool;
    sqlx::query(&format!("CREATE ROLE {role} NOLOGIN"))
        .execute(pool)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON kb_chunks, kb_documents TO {role}"
    ))
    .execute(pool)
    .await
    .unwrap();
    let b_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(&b.slug)
        .fetch_one(pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(b_id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(&format!("SET LOCAL ROLE {role}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let visible: Vec<String> = sqlx::query_scalar("SELECT content FROM kb_chunks")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        visible,
        vec!["Tenant B sells coffee and croissants.".to_owned()]
    );
    sqlx::query("SELECT set_config('app.tenant_id', '', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM kb_documents")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(none, 0, "no tenant set: no rows");
    tx.rollback().await.unwrap();
    sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn ai_chunks_of_another_model_are_re_embedded() {
    let engine = start_engine().await;
    let tenant = engine.tenant(&unique("re"), "infobip").await;
    assert_eq!(
        ingest(&engine, &tenant, "Hours", "We open at nine.", "text")
            .await
            .status(),
        201
    );
    sqlx::query("UPDATE kb_chunks SET embedding_model = 'old-model@1'")
        .execute(&engine.db.pool)
        .await
        .unwrap();
    let hits = search(&engine, &tenant, "opening time", 1).await;
    assert_eq!(hits.len(), 1);
    let models: Vec<String> = sqlx::query_scalar("SELECT DISTINCT embedding_model FROM kb_chunks")
        .fetch_all(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(models, vec![MODEL_ID.to_owned()]);
    // A tenant pinned to another model is told so instead of getting incomparable vectors.
    let mut registration = tenant.registration.clone();
    registration["ai"] = json!({"embedding_model": "text-embedding-3-small"});
    assert!(
        engine
            .admin_put(&tenant.slug, &registration)
            .await
            .status()
            .is_success()
    );
    let response = engine
        .http
        .get(engine.at("/routes/knowledge/search?q=hours"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
}
