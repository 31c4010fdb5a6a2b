//! Embeddings from an OpenAI-compatible server: `POST {base}/embeddings`. Asks for 384
//! dimensions (the column's) and refuses anything else rather than storing a wrong vector.

use super::{DIMS, EmbedError, Embedder, normalize};
use crate::ai::provider::Provider;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

pub struct OpenAiEmbedder {
    provider: Provider,
    model: String,
    model_id: String,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    pub fn new(provider: Provider, model: &str) -> Self {
        Self {
            provider,
            model: model.to_owned(),
            model_id: format!("openai:{model}@{DIMS}"),
        }
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = json!({"model": self.model, "input": texts, "dimensions": DIMS});
        let answer = self
            .provider
            .post("embeddings", &body)
            .await
            .map_err(|e| EmbedError::Remote(e.to_string()))?;
        let mut response: Response = serde_json::from_value(answer)
            .map_err(|e| EmbedError::Remote(format!("malformed answer: {e}")))?;
        if response.data.len() != texts.len() {
            return Err(EmbedError::Remote(format!(
                "{} vectors for {} texts",
                response.data.len(),
                texts.len()
            )));
        }
        // Servers may answer out of order; `index` says where each belongs.
        response
            .data
            .sort_by_key(|item| item.index.unwrap_or(usize::MAX));
        response
            .data
            .into_iter()
            .map(|item| {
                let mut v = item.embedding;
                if v.len() != DIMS {
                    return Err(EmbedError::Dimensions {
                        got: v.len(),
                        want: DIMS,
                    });
                }
                normalize(&mut v);
                Ok(v)
            })
            .collect()
    }
}

impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dims(&self) -> usize {
        DIMS
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(self.call(texts))
    }
}
