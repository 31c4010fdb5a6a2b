//! A local OpenAI-compatible server for the AI tests: answers chat completions as told and
//! keeps every request it received.

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
    requests: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Stub {
    pub async fn start(mode: Mode) -> Stub {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        let state = (requests.clone(), mode.clone());
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Stub {
            url: format!("http://{address}/v1"),
            requests,
            mode,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

type StubState = (Arc<Mutex<Vec<Value>>>, Arc<Mutex<Mode>>);

async fn complete(State((requests, mode)): State<StubState>, Json(body): Json<Value>) -> Response {
    requests.lock().unwrap().push(body);
    let mode = mode.lock().unwrap().clone();
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
