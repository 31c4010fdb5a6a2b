//! `POST /routes/tools/synthesis`: question (+ contact) → retrieved chunks → chat model →
//! answer with sources and a retrieval-derived confidence. Without a chat model, or when it is
//! down or talks nonsense, the answer is extractive (the best chunk, with sources): never a 500.

use crate::ai::chat::{ChatClient, Message};
use crate::ai::controls::{self, Tokens};
use crate::ai::knowledge::{self, Hit};
use crate::ai::memory::{self, Exchange};
use crate::ai::redact::redact;
use crate::ai::settings;
use crate::engine::auth::Worker;
use crate::engine::body::JsonBody;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;

/// Chunks given to the model.
const K: i64 = 4;
/// Longest extractive answer, in characters.
const EXTRACT_CHARS: usize = 600;

const SYSTEM_PROMPT: &str = "You answer customers' questions for a business, using only the numbered sources below. \
Cite the sources you used as [S1], [S2], ... If the sources do not contain the answer, say that you do not know. \
Be brief.";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthesisIn {
    pub question: String,
    /// The contact the question comes from: the last 10 exchanges with them are used and
    /// this one is remembered.
    #[serde(default)]
    pub contact: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Source {
    pub document_id: Uuid,
    pub title: String,
    pub chunk_index: i32,
    pub score: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SynthesisOut {
    pub answer: String,
    pub sources: Vec<Source>,
    /// 0 to 1, from retrieval similarity and citations; a relevance score, not calibrated.
    pub confidence: f64,
    /// `generated` (by the chat model) or `extractive` (degraded: the best matching passage).
    pub mode: &'static str,
}

#[utoipa::path(post, path = "/routes/tools/synthesis", tag = "ai", request_body = SynthesisIn,
    security(("worker_token" = [])),
    responses((status = 200, body = SynthesisOut), (status = 400), (status = 401), (status = 403, description = "tenant_suspended"), (status = 409), (status = 429), (status = 503)))]
pub async fn synthesize(
    State(state): State<AppState>,
    worker: Worker,
    JsonBody(body): JsonBody<SynthesisIn>,
) -> Result<Json<SynthesisOut>, ApiError> {
    let started = Instant::now();
    let tenant = worker.tenant_id;
    let result = synthesize_inner(&state, tenant, body).await;
    let (outcome, detail) = match &result {
        Ok(out) => (
            out.mode,
            json!({"sources": out.sources.len(), "confidence": out.confidence}),
        ),
        Err(e) => (controls::outcome_of(e), json!({})),
    };
    controls::audit(&state.pool, tenant, "synthesis", outcome, detail, started).await;
    result.map(Json)
}

async fn synthesize_inner(
    state: &AppState,
    tenant: Uuid,
    body: SynthesisIn,
) -> Result<SynthesisOut, ApiError> {
    let question = body.question.trim().to_owned();
    if question.is_empty() || question.chars().count() > 2000 {
        return Err(ApiError::invalid_field(
            "question",
            "must be 1 to 2000 characters",
        ));
    }
    if let Some(contact) = &body.contact {
        memory::validate_contact(contact)?;
    }
    let settings = settings::load(&state.pool, tenant).await?;
    knowledge::check_model(&state.ai, &settings)?;
    controls::admit(&state.pool, &state.ai.rate, tenant, &settings).await?;
    let hits = knowledge::retrieve(state, tenant, &question, K).await?;
    let history = match &body.contact {
        Some(contact) => memory::recent(&state.pool, tenant, contact).await?,
        None => Vec::new(),
    };
    let model = settings
        .chat_model
        .clone()
        .or_else(|| state.ai.chat_model.clone());
    let generated = match (&state.ai.chat, model) {
        (Some(chat), Some(model)) if !hits.is_empty() => {
            generate(state, tenant, chat, &model, &question, &hits, &history).await
        }
        _ => None,
    };
    let out = match generated {
        Some(answer) => {
            let cited = cited_fraction(&answer, hits.len());
            SynthesisOut {
                confidence: confidence(&hits, cited),
                answer,
                sources: sources(&hits),
                mode: "generated",
            }
        }
        None => extractive(&hits),
    };
    if let Some(contact) = &body.contact {
        let exchange = Exchange {
            user_text: question,
            assistant_text: out.answer.clone(),
        };
        memory::append(
            &state.pool,
            tenant,
            contact,
            &exchange,
            &json!({"mode": out.mode}),
        )
        .await?;
    }
    Ok(out)
}

/// The prompt: instructions with numbered sources, the remembered exchanges, the question.
/// Everything is redacted: it leaves the engine.
fn prompt(question: &str, hits: &[Hit], history: &[Exchange]) -> Vec<Message> {
    let mut system = String::from(SYSTEM_PROMPT);
    for (i, hit) in hits.iter().enumerate() {
        system.push_str(&format!(
            "\n\n[S{}] ({}, part {})\n{}",
            i + 1,
            hit.title,
            hit.chunk_index,
            hit.content
        ));
    }
    let mut messages = vec![Message::system(redact(&system))];
    for exchange in history {
        messages.push(Message::user(redact(&exchange.user_text)));
        messages.push(Message::assistant(redact(&exchange.assistant_text)));
    }
    messages.push(Message::user(redact(question)));
    messages
}

/// Asks the chat model; `None` (and a warning) when it is down or answers nonsense.
async fn generate(
    state: &AppState,
    tenant: Uuid,
    chat: &ChatClient,
    model: &str,
    question: &str,
    hits: &[Hit],
    history: &[Exchange],
) -> Option<String> {
    let messages = prompt(question, hits, history);
    let completion = match chat.complete(model, &messages).await {
        Ok(completion) => completion,
        Err(error) => {
            tracing::warn!(%tenant, %error, "chat model failed; answering extractively");
            return None;
        }
    };
    let tokens = Tokens::of(&messages, &completion);
    if let Err(error) =
        controls::record_usage(&state.pool, tenant, "synthesis", model, tokens).await
    {
        tracing::error!(%tenant, %error, "cannot record AI usage");
    }
    Some(completion.text)
}

fn sources(hits: &[Hit]) -> Vec<Source> {
    hits.iter()
        .map(|h| Source {
            document_id: h.document_id,
            title: h.title.clone(),
            chunk_index: h.chunk_index,
            score: h.score,
        })
        .collect()
}

/// The degraded answer: the best matching passage, cut at a sentence or word boundary.
fn extractive(hits: &[Hit]) -> SynthesisOut {
    let Some(best) = hits.first() else {
        return SynthesisOut {
            answer: "I don't know: the knowledge base has nothing on this yet.".to_owned(),
            sources: Vec::new(),
            confidence: 0.0,
            mode: "extractive",
        };
    };
    SynthesisOut {
        answer: excerpt(&best.content, EXTRACT_CHARS),
        sources: sources(&hits[..1]),
        confidence: confidence(&hits[..1], 1.0) * 0.8,
        mode: "extractive",
    }
}

fn excerpt(text: &str, limit: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let cut: String = text.chars().take(limit).collect();
    let end = cut
        .rfind(". ")
        .map(|i| i + 1)
        .or_else(|| cut.rfind(' '))
        .unwrap_or(cut.len());
    format!("{}…", cut[..end].trim_end())
}

/// Share of the sources the answer cites as [S1]..[Sn].
fn cited_fraction(answer: &str, sources: usize) -> f64 {
    if sources == 0 {
        return 0.0;
    }
    let cited = (1..=sources)
        .filter(|i| answer.contains(&format!("[S{i}]")))
        .count();
    cited as f64 / sources as f64
}

/// `0.5·best + 0.3·mean(top 3) + 0.2·cited`, clamped to 0..1.
fn confidence(hits: &[Hit], cited: f64) -> f64 {
    let Some(best) = hits.first() else {
        return 0.0;
    };
    let top: Vec<f64> = hits.iter().take(3).map(|h| h.score).collect();
    let mean = top.iter().sum::<f64>() / top.len() as f64;
    let value = 0.5 * best.score + 0.3 * mean + 0.2 * cited;
    (value.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(score: f64, content: &str) -> Hit {
        Hit {
            document_id: Uuid::nil(),
            title: "FAQ".into(),
            chunk_index: 0,
            content: content.into(),
            char_start: 0,
            char_end: content.len() as i32,
            score,
        }
    }

    #[test]
    fn confidence_follows_retrieval_and_citations() {
        let hits = [hit(0.9, "a"), hit(0.5, "b"), hit(0.4, "c")];
        assert_eq!(confidence(&hits, 1.0), 0.83);
        assert!(confidence(&hits, 0.0) < confidence(&hits, 1.0));
        assert_eq!(confidence(&[], 1.0), 0.0);
        assert_eq!(cited_fraction("see [S1] and [S3]", 4), 0.5);
    }

    #[test]
    fn extractive_answers_cut_at_a_boundary() {
        let long = "First sentence here. ".repeat(60);
        let out = extractive(&[hit(0.7, &long)]);
        assert_eq!(out.mode, "extractive");
        assert!(out.answer.ends_with(".…") && out.answer.chars().count() <= EXTRACT_CHARS + 1);
        assert_eq!(out.sources.len(), 1);
        assert_eq!(extractive(&[]).confidence, 0.0);
    }

    #[test]
    fn prompts_carry_no_phone_or_email() {
        let history = [Exchange {
            user_text: "I'm +44 7911 123456".into(),
            assistant_text: "ok".into(),
        }];
        let messages = prompt(
            "mail me at a@b.com",
            &[hit(0.5, "call 555-123-4567")],
            &history,
        );
        let all: String = messages.iter().map(|m| m.content.as_str()).collect();
        assert!(!all.contains("a@b.com") && !all.contains("7911") && !all.contains("4567"));
    }
}
