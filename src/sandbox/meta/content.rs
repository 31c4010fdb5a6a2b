//! Media, interactive and template component objects, checked as Meta checks them: required
//! parameters, lengths and counts, and no parameter Meta does not know (code 100 naming it).

use super::{Outcome, invalid_parameter, str_at};
use serde_json::Value;
use std::collections::HashSet;

pub(super) const MEDIA_KINDS: [&str; 5] = ["image", "document", "audio", "video", "sticker"];
const CAPTION_MAX: usize = 1024;

type Checked = Result<(), Outcome>;

fn fail<T>(details: String) -> Result<T, Outcome> {
    Err(invalid_parameter(&details))
}

/// Only `allowed` keys in `object` (named `name` in Meta's error).
fn known_keys(object: &Value, name: &str, allowed: &[&str]) -> Checked {
    let Some(map) = object.as_object() else {
        return fail(format!("Param {name} must be a JSON object."));
    };
    match map.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => fail(format!("Param {name}['{key}'] is not a valid parameter.")),
        None => Ok(()),
    }
}

/// A required string of 1 to `max` characters.
fn string(value: Option<&Value>, name: &str, max: usize) -> Result<String, Outcome> {
    match value {
        None | Some(Value::Null) => fail(format!("The parameter {name} is required.")),
        Some(Value::String(text)) if text.trim().is_empty() => {
            fail(format!("Param {name} must not be empty."))
        }
        Some(Value::String(text)) if text.chars().count() > max => fail(format!(
            "Param {name} must be at most {max} characters long."
        )),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => fail(format!("Param {name} must be a string.")),
    }
}

fn optional(value: Option<&Value>, name: &str, max: usize) -> Checked {
    match value {
        None | Some(Value::Null) => Ok(()),
        some => string(some, name, max).map(|_| ()),
    }
}

fn array<'a>(value: Option<&'a Value>, name: &str) -> Result<&'a Vec<Value>, Outcome> {
    match value {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => fail(format!("The parameter {name} is required.")),
        Some(_) => fail(format!("Param {name} must be an array.")),
    }
}

/// `{link}` or `{id}` (one of them), plus the keys `extra` allows.
fn media_object(object: &Value, name: &str, extra: &[&str]) -> Checked {
    let mut allowed = vec!["link", "id"];
    allowed.extend_from_slice(extra);
    known_keys(object, name, &allowed)?;
    match (object.get("link"), object.get("id")) {
        (Some(_), Some(_)) => fail(format!(
            "Param {name} must have either 'link' or 'id', not both."
        )),
        (None, None) => fail(format!(
            "The parameter {name}['link'] or {name}['id'] is required."
        )),
        (Some(link), None) => {
            let link = string(Some(link), &format!("{name}['link']"), 2048)?;
            if link.starts_with("https://") || link.starts_with("http://") {
                Ok(())
            } else {
                fail(format!("Param {name}['link'] must be a valid URL."))
            }
        }
        (None, Some(id)) => string(Some(id), &format!("{name}['id']"), 256).map(|_| ()),
    }
}

/// Every media id of a send (`{kind: {id}}` anywhere in it), named as Meta names parameters
/// (`template['components'][0]['parameters'][0]['image']['id']`).
pub(super) fn media_ids(body: &Value) -> Vec<(String, String)> {
    fn walk(value: &Value, name: &str, found: &mut Vec<(String, String)>) {
        let nested = |key: &str| {
            if name.is_empty() {
                key.to_owned()
            } else {
                format!("{name}['{key}']")
            }
        };
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if MEDIA_KINDS.contains(&key.as_str())
                        && let Some(id) = value.get("id").and_then(Value::as_str)
                    {
                        found.push((format!("{}['id']", nested(key)), id.to_owned()));
                    }
                    walk(value, &nested(key), found);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{name}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(body, "", &mut found);
    found
}

/// `type: image|document|audio|video|sticker` with the object of that name.
pub(super) fn media(body: &Value, kind: &str) -> Checked {
    let Some(object) = str_at(body, &[kind]) else {
        return fail(format!("The parameter {kind} is required."));
    };
    let extra: &[&str] = match kind {
        "document" => &["caption", "filename"],
        "image" | "video" => &["caption"],
        _ => &[],
    };
    media_object(object, kind, extra)?;
    optional(
        object.get("caption"),
        &format!("{kind}['caption']"),
        CAPTION_MAX,
    )?;
    optional(object.get("filename"), &format!("{kind}['filename']"), 240)
}

/// `type: interactive`, reply buttons or a list.
pub(super) fn interactive(body: &Value) -> Checked {
    let Some(interactive) = str_at(body, &["interactive"]) else {
        return fail("The parameter interactive is required.".into());
    };
    known_keys(
        interactive,
        "interactive",
        &["type", "header", "body", "footer", "action"],
    )?;
    let kind = string(interactive.get("type"), "interactive['type']", 32)?;
    if kind != "button" && kind != "list" {
        return fail(format!(
            "Param interactive['type'] must be one of {{button, list}} (the sandbox sends no other), not {kind}."
        ));
    }
    let part = |key: &str, max: usize| -> Checked {
        let Some(value) = interactive.get(key) else {
            return Ok(());
        };
        known_keys(value, &format!("interactive['{key}']"), &["text"])?;
        string(
            value.get("text"),
            &format!("interactive['{key}']['text']"),
            max,
        )
        .map(|_| ())
    };
    if interactive.get("body").is_none() {
        return fail("The parameter interactive['body'] is required.".into());
    }
    part("body", 1024)?;
    part("footer", 60)?;
    if let Some(header) = interactive.get("header") {
        interactive_header(header, &kind)?;
    }
    let Some(action) = interactive.get("action") else {
        return fail("The parameter interactive['action'] is required.".into());
    };
    if kind == "button" {
        reply_buttons(action)
    } else {
        list(action)
    }
}

fn interactive_header(header: &Value, kind: &str) -> Checked {
    let name = "interactive['header']";
    let header_kind = string(header.get("type"), &format!("{name}['type']"), 16)?;
    if header_kind == "text" {
        known_keys(header, name, &["type", "text"])?;
        return string(header.get("text"), &format!("{name}['text']"), 60).map(|_| ());
    }
    if kind == "list" || !["image", "video", "document"].contains(&header_kind.as_str()) {
        return fail(format!(
            "Param {name}['type'] {header_kind} is not valid for a {kind} message."
        ));
    }
    known_keys(header, name, &["type", &header_kind])?;
    let Some(object) = header.get(&header_kind) else {
        return fail(format!(
            "The parameter {name}['{header_kind}'] is required."
        ));
    };
    let extra: &[&str] = if header_kind == "document" {
        &["filename"]
    } else {
        &[]
    };
    media_object(object, &format!("{name}['{header_kind}']"), extra)
}

fn reply_buttons(action: &Value) -> Checked {
    known_keys(action, "interactive['action']", &["buttons"])?;
    let buttons = array(action.get("buttons"), "interactive['action']['buttons']")?;
    if buttons.is_empty() || buttons.len() > 3 {
        return fail("Param interactive['action']['buttons'] must have 1 to 3 buttons.".into());
    }
    let (mut ids, mut titles) = (HashSet::new(), HashSet::new());
    for (i, button) in buttons.iter().enumerate() {
        let name = format!("interactive['action']['buttons'][{i}]");
        known_keys(button, &name, &["type", "reply"])?;
        if string(button.get("type"), &format!("{name}['type']"), 16)? != "reply" {
            return fail(format!("Param {name}['type'] must be 'reply'."));
        }
        let reply = button.get("reply").unwrap_or(&Value::Null);
        known_keys(reply, &format!("{name}['reply']"), &["id", "title"])?;
        let id = string(reply.get("id"), &format!("{name}['reply']['id']"), 256)?;
        let title = string(reply.get("title"), &format!("{name}['reply']['title']"), 20)?;
        if !ids.insert(id) || !titles.insert(title) {
            return fail(format!(
                "Param {name}['reply']: button ids and titles must be unique."
            ));
        }
    }
    Ok(())
}

fn list(action: &Value) -> Checked {
    let name = "interactive['action']";
    known_keys(action, name, &["button", "sections"])?;
    string(action.get("button"), &format!("{name}['button']"), 20)?;
    let sections = array(action.get("sections"), &format!("{name}['sections']"))?;
    if sections.is_empty() || sections.len() > 10 {
        return fail(format!(
            "Param {name}['sections'] must have 1 to 10 sections."
        ));
    }
    let (mut rows, mut ids) = (0, HashSet::new());
    for (s, section) in sections.iter().enumerate() {
        let name = format!("{name}['sections'][{s}]");
        known_keys(section, &name, &["title", "rows"])?;
        if sections.len() > 1 || section.get("title").is_some() {
            string(section.get("title"), &format!("{name}['title']"), 24)?;
        }
        let section_rows = array(section.get("rows"), &format!("{name}['rows']"))?;
        if section_rows.is_empty() {
            return fail(format!("Param {name}['rows'] must not be empty."));
        }
        for (r, row) in section_rows.iter().enumerate() {
            let name = format!("{name}['rows'][{r}]");
            rows += 1;
            if rows > 10 {
                return fail(format!(
                    "Param {name}: a list has at most 10 rows in all sections."
                ));
            }
            known_keys(row, &name, &["id", "title", "description"])?;
            let id = string(row.get("id"), &format!("{name}['id']"), 200)?;
            string(row.get("title"), &format!("{name}['title']"), 24)?;
            optional(
                row.get("description"),
                &format!("{name}['description']"),
                72,
            )?;
            if !ids.insert(id) {
                return fail(format!("Param {name}['id'] must be unique."));
            }
        }
    }
    Ok(())
}

/// `template['components']`: a header, the body and buttons, each with their parameters.
pub(super) fn components(components: &[Value]) -> Checked {
    for (c, component) in components.iter().enumerate() {
        let name = format!("template['components'][{c}]");
        let kind = string(component.get("type"), &format!("{name}['type']"), 16)?;
        match kind.as_str() {
            "header" | "body" => {
                known_keys(component, &name, &["type", "parameters"])?;
                for (p, parameter) in array(
                    component.get("parameters"),
                    &format!("{name}['parameters']"),
                )?
                .iter()
                .enumerate()
                {
                    parameter_object(parameter, &format!("{name}['parameters'][{p}]"))?;
                }
            }
            "button" => button(component, &name)?,
            other => {
                return fail(format!(
                    "Param {name}['type'] must be one of {{header, body, button}}, not {other}."
                ));
            }
        }
    }
    Ok(())
}

fn parameter_object(parameter: &Value, name: &str) -> Checked {
    let kind = string(parameter.get("type"), &format!("{name}['type']"), 16)?;
    match kind.as_str() {
        "text" => {
            known_keys(parameter, name, &["type", "text"])?;
            string(parameter.get("text"), &format!("{name}['text']"), 1024).map(|_| ())
        }
        "image" | "video" | "document" => {
            known_keys(parameter, name, &["type", &kind])?;
            let object = parameter.get(&kind).unwrap_or(&Value::Null);
            let extra: &[&str] = if kind == "document" {
                &["filename"]
            } else {
                &[]
            };
            media_object(object, &format!("{name}['{kind}']"), extra)
        }
        other => fail(format!(
            "Param {name}['type'] {other} is not supported by the sandbox."
        )),
    }
}

fn button(component: &Value, name: &str) -> Checked {
    known_keys(
        component,
        name,
        &["type", "sub_type", "index", "parameters"],
    )?;
    let sub_type = string(
        component.get("sub_type"),
        &format!("{name}['sub_type']"),
        16,
    )?;
    let index = string(component.get("index"), &format!("{name}['index']"), 2)?;
    if !index.bytes().all(|b| b.is_ascii_digit()) {
        return fail(format!(
            "Param {name}['index'] must be a number from 0 to 9."
        ));
    }
    let parameters = array(
        component.get("parameters"),
        &format!("{name}['parameters']"),
    )?;
    let [parameter] = parameters.as_slice() else {
        return fail(format!(
            "Param {name}['parameters'] must have one parameter."
        ));
    };
    let name = format!("{name}['parameters'][0]");
    let (kind, key, max) = match sub_type.as_str() {
        "quick_reply" => ("payload", "payload", 128),
        "url" => ("text", "text", 2000),
        other => {
            return fail(format!(
                "Param {name} sub_type {other} is not supported by the sandbox."
            ));
        }
    };
    known_keys(parameter, &name, &["type", key])?;
    if string(parameter.get("type"), &format!("{name}['type']"), 16)? != kind {
        return fail(format!("Param {name}['type'] must be '{kind}'."));
    }
    string(parameter.get(key), &format!("{name}['{key}']"), max).map(|_| ())
}
