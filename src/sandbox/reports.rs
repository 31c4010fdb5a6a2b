//! Reports posted back to the engine after a send: delivery/seen (InfoBip), statuses (Meta),
//! status callbacks (Twilio).
//!
//! Each accepted send gets one task that waits the report delay before each of its reports and
//! posts them one after the other, so one message's reports arrive in order. Every report is
//! built when it is due, so its timestamps are the times it claims. Nothing is retried: what the
//! engine answered is recorded for `GET /_sandbox/reports`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::state::{ReportRecord, SandboxState};

/// A report body, exactly as it goes on the wire.
pub(crate) enum Payload {
    /// Already serialised: Meta signs these exact bytes.
    Json(Vec<u8>),
    /// Form pairs, encoded when sent (Twilio signs the decoded pairs).
    Form(Vec<(String, String)>),
}

/// One report ready to post.
pub(crate) struct Report {
    pub provider: &'static str,
    pub kind: &'static str,
    pub message_id: String,
    pub url: String,
    /// Secret or signature headers; not recorded.
    pub headers: Vec<(String, String)>,
    pub payload: Payload,
}

/// Builds a report at the time it is due.
pub(crate) type Step = Box<dyn FnOnce(DateTime<Utc>) -> Report + Send>;

/// Posts `steps` in order in the background, each after the report delay current at that time.
pub(crate) fn schedule(state: &SandboxState, steps: Vec<Step>) {
    if steps.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        for step in steps {
            tokio::time::sleep(state.report_delay()).await;
            let report = step(Utc::now());
            deliver(&state, report).await;
        }
    });
}

async fn deliver(state: &SandboxState, report: Report) {
    let mut request = state.http().post(&report.url);
    for (name, value) in &report.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let (request, body) = match &report.payload {
        Payload::Json(bytes) => (
            request
                .header("content-type", "application/json")
                .body(bytes.clone()),
            serde_json::from_slice(bytes).unwrap_or(Value::Null),
        ),
        Payload::Form(pairs) => (request.form(pairs), form_object(pairs)),
    };
    let (status, error) = match request.send().await {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(error) => (None, Some(error.to_string())),
    };
    tracing::info!(
        provider = report.provider,
        kind = report.kind,
        message_id = %report.message_id,
        status = ?status,
        "report posted"
    );
    state.record_report(ReportRecord {
        provider: report.provider,
        kind: report.kind,
        message_id: report.message_id,
        url: report.url,
        status,
        error,
        body,
        sent_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
}

/// Form pairs as one JSON object; a repeated name becomes an array of its values, in order.
pub(crate) fn form_object(pairs: &[(String, String)]) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in pairs {
        let value = Value::String(value.clone());
        match object.get_mut(name) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                object.insert(name.clone(), value);
            }
        }
    }
    Value::Object(object)
}
