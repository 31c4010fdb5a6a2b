//! Each provider's wire format for what the engine stores: text, templates (with header and
//! button parameters), media and interactive messages. Pure functions from the stored content to
//! the request body, so the exact bodies are unit-tested here and checked again by the sandbox.

pub mod infobip;
pub mod meta;
pub mod twilio;

use super::content::{InteractiveRequest, ListSection, MediaRequest};
use serde_json::{Value, json};

/// What a stored message's content is.
pub enum Stored<'a> {
    Text(&'a Value),
    Template(&'a Value),
    Media(MediaRequest),
    Interactive(InteractiveRequest),
}

/// Reads the stored content; text first, since most sends are text. Media and interactive
/// content was checked before it was stored, so it parses; if it somehow does not, it is sent
/// as (empty) text and the provider refuses it visibly.
pub fn stored(content: &Value) -> Stored<'_> {
    if let Some(text) = content.get("text") {
        return Stored::Text(text);
    }
    if let Some(template) = content.get("template") {
        return Stored::Template(template);
    }
    if let Some(media) = content
        .get("media")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
    {
        return Stored::Media(media);
    }
    if let Some(interactive) = content
        .get("interactive")
        .and_then(|i| serde_json::from_value(i.clone()).ok())
    {
        return Stored::Interactive(interactive);
    }
    Stored::Text(&Value::Null)
}

/// A list message's sections as Meta and InfoBip both take them: `{title?, rows: [{id, title,
/// description?}]}`.
pub(super) fn list_sections(sections: Option<&Vec<ListSection>>) -> Vec<Value> {
    sections
        .into_iter()
        .flatten()
        .map(|section| {
            let rows: Vec<Value> = section
                .rows
                .iter()
                .map(|row| {
                    let mut value = json!({"id": row.id, "title": row.title});
                    if let Some(description) = &row.description {
                        value["description"] = json!(description);
                    }
                    value
                })
                .collect();
            let mut value = json!({"rows": rows});
            if let Some(title) = &section.title {
                value["title"] = json!(title);
            }
            value
        })
        .collect()
}
