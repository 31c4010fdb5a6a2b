//! A local OpenAI-compatible server for the AI tests: answers chat completions as told,
//! embeds texts (holding batches when told to), and keeps every request it received.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub enum Mode {
    /// A completion with this text; `usage` reported or not, `finish_reason` null.
    Reply { text: String, usage: bool },
    /// This HTTP status with an error body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
}

#[derive(Clone)]
pub struct Stub {
    /// Base URL for `--openai-base-url`.
    pub url: String,
    shared: Shared,
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Value>>>,
    embeddings: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<Mode>>,
    /// `false`: embeddings requests of more than one text wait until it turns `true`.
    embed_open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Stub {
    pub async fn start(mode: Mode) -> Stub {
        let shared = Shared {
            requests: Arc::default(),
            embeddings: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            embed_open: Arc::new(tokio::sync::watch::Sender::new(true)),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/embeddings", post(embed))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Stub {
            url: format!("http://{address}/v1"),
            shared,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Embeddings requests of more than one text are held (`false`) or answered (`true`, the
    /// default); single texts (search queries) always pass.
    pub fn open_embeddings(&self, open: bool) {
        self.shared.embed_open.send_replace(open);
    }

    /// The chat completion requests received.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The embeddings requests received (as they arrived, held or not).
    pub fn embedding_requests(&self) -> Vec<Value> {
        self.shared.embeddings.lock().unwrap().clone()
    }
}

async fn complete(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    shared.requests.lock().unwrap().push(body);
    let mode = shared.mode.lock().unwrap().clone();
    match mode {
        Mode::Reply { text, usage } => {
            let mut answer = json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "stub",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": null}]
            });
            if usage {
                answer["usage"] =
                    json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120});
            }
            Json(answer).into_response()
        }
        Mode::Status(status) => (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": {"message": "stub failure"}})),
        )
            .into_response(),
        Mode::Garbage => (StatusCode::OK, "<html>not json</html>").into_response(),
    }
}

/// Vectors of the asked dimensions, one per input, from the bytes of each text (the same text
/// always gets the same vector).
async fn embed(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    shared.embeddings.lock().unwrap().push(body.clone());
    if body["input"]
        .as_array()
        .is_some_and(|texts| texts.len() > 1)
    {
        let mut open = shared.embed_open.subscribe();
        open.wait_for(|open| *open).await.unwrap();
    }
    let dims = body["dimensions"].as_u64().unwrap_or(384) as usize;
    let data: Vec<Value> = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let bytes = text.as_str().unwrap().as_bytes();
            let vector: Vec<f32> = (0..dims)
                .map(|i| 0.01 + f32::from(bytes.get(i % bytes.len().max(1)).copied().unwrap_or(0)))
                .collect();
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    Json(json!({"object": "list", "data": data, "model": "stub-embed"})).into_response()
}
