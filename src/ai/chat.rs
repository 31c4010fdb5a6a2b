//! Chat completions from an OpenAI-compatible server: `POST {base}/chat/completions`, parsed
//! leniently (missing `usage`, `finish_reason` null or "", extra fields are all fine).

use crate::ai::provider::{Provider, ProviderError};
use crate::engine::text::without_nul;
use serde::Deserialize;
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system",
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user",
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant",
            content: content.into(),
        }
    }
}

/// What the model said and what it cost; `usage` is `None` when the server did not report it.
#[derive(Debug)]
pub struct Completion {
    pub text: String,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: i64,
    #[serde(default)]
    pub completion_tokens: i64,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Clone)]
pub struct ChatClient {
    provider: Provider,
}

impl ChatClient {
    pub fn new(provider: Provider) -> Self {
        Self { provider }
    }

    /// One completion, temperature 0 (answers should follow the sources, not vary).
    pub async fn complete(
        &self,
        model: &str,
        messages: &[Message],
    ) -> Result<Completion, ProviderError> {
        let messages: Vec<_> = messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let body = json!({"model": model, "messages": messages, "temperature": 0});
        let answer = self.provider.post("chat/completions", &body).await?;
        parse(answer)
    }
}

fn parse(answer: serde_json::Value) -> Result<Completion, ProviderError> {
    let response: Response =
        serde_json::from_value(answer).map_err(|e| ProviderError::Malformed(e.to_string()))?;
    let text = response
        .choices
        .into_iter()
        .find_map(|c| c.message.and_then(|m| m.content))
        // Answers end up stored (memory, audit), and PostgreSQL cannot store U+0000.
        .map(|t| without_nul(&t).trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ProviderError::Malformed("no message content in the answer".into()))?;
    Ok(Completion {
        text,
        usage: response.usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parsing_accepts_compatible_servers() {
        let ollama = json!({"choices": [{"message": {"role": "assistant", "content": " hi "}, "finish_reason": null}]});
        let parsed = parse(ollama).unwrap();
        assert_eq!(parsed.text, "hi");
        assert!(parsed.usage.is_none());
        let odd = json!({"choices": [{"message": {"content": "x"}, "finish_reason": ""}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "service_tier": "on_demand"}, "extra": 1});
        assert_eq!(parse(odd).unwrap().usage.unwrap().prompt_tokens, 3);
        assert!(parse(json!({"choices": []})).is_err());
        let nul = json!({"choices": [{"message": {"content": "\u{0} a\u{0}b "}}]});
        assert_eq!(parse(nul).unwrap().text, "ab");
        assert!(parse(json!("garbage")).is_err());
    }
}
