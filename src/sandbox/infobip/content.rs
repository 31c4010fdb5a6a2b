//! The bodies of InfoBip's media (`/message/{image|document|audio|video|sticker}`) and
//! interactive (`/message/interactive/{buttons|list}`) endpoints, and a template's header and
//! buttons, checked as InfoBip's API validates them: violations with dotted property paths,
//! unknown properties refused.

use super::{Checker, InfobipAccount, is_http_url, violation};
use serde_json::Value;
use std::collections::HashSet;

pub(super) const MEDIA_KINDS: [&str; 5] = ["image", "document", "audio", "video", "sticker"];
const CAPTION_MAX: usize = 3000;
const ENVELOPE: [&str; 8] = [
    "from",
    "to",
    "messageId",
    "content",
    "callbackData",
    "notifyUrl",
    "entityId",
    "applicationId",
];

impl<'a> Checker<'a> {
    /// Properties of the object at `path` ("" for the root) that are not in `allowed`.
    fn known(&mut self, path: &str, allowed: &[&str]) {
        let object = if path.is_empty() {
            Some(self.root)
        } else {
            self.lookup(path)
        };
        let Some(object) = object else { return };
        let Some(map) = object.as_object() else {
            self.fail(path, "must be an object");
            return;
        };
        let unknown: Vec<String> = map
            .keys()
            .filter(|key| !allowed.contains(&key.as_str()))
            .map(|key| {
                if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                }
            })
            .collect();
        for property in unknown {
            self.fail(&property, "unknown property");
        }
    }

    fn media_url(&mut self, path: &str) {
        if let Some(url) = self.required(path, 2048)
            && !is_http_url(url)
        {
            self.fail(
                path,
                "must be a valid URL starting with https:// or http://",
            );
        }
    }

    /// An array at `path` of `min..=max` items.
    fn items(&mut self, path: &str, min: usize, max: usize) -> &'a [Value] {
        match self.lookup(path) {
            None => {
                self.fail(path, "must not be null");
                &[]
            }
            Some(Value::Array(items)) if (min..=max).contains(&items.len()) => items,
            Some(Value::Array(_)) => {
                self.fail(path, &format!("size must be between {min} and {max}"));
                &[]
            }
            Some(_) => {
                self.fail(path, "must be an array");
                &[]
            }
        }
    }

    fn child<'b>(&self, value: &'b Value, path: &str) -> Checker<'b> {
        Checker::new(value, format!("{}{path}.", self.prefix))
    }
}

pub(super) fn check_media(body: &Value, account: &InfobipAccount, kind: &str) -> Vec<Value> {
    let mut checker = Checker::new(body, String::new());
    checker.envelope(account);
    checker.known("", &ENVELOPE);
    let allowed: &[&str] = match kind {
        "document" => &["mediaUrl", "caption", "filename"],
        "image" | "video" => &["mediaUrl", "caption"],
        _ => &["mediaUrl"],
    };
    if checker.lookup("content").is_none() {
        checker.fail("content", "must not be null");
        return checker.violations;
    }
    checker.known("content", allowed);
    checker.media_url("content.mediaUrl");
    checker.optional("content.caption", CAPTION_MAX);
    checker.optional("content.filename", 240);
    checker.violations
}

fn header(checker: &mut Checker<'_>, media_allowed: bool) {
    let Some(kind) = checker.optional("content.header.type", 16) else {
        if checker.lookup("content.header").is_some() {
            checker.fail("content.header.type", "must not be null");
        }
        return;
    };
    match kind {
        "TEXT" => {
            checker.known("content.header", &["type", "text"]);
            checker.required("content.header.text", 60);
        }
        "IMAGE" | "VIDEO" | "DOCUMENT" if media_allowed => {
            let allowed: &[&str] = if kind == "DOCUMENT" {
                &["type", "mediaUrl", "filename"]
            } else {
                &["type", "mediaUrl"]
            };
            checker.known("content.header", allowed);
            checker.media_url("content.header.mediaUrl");
            checker.optional("content.header.filename", 240);
        }
        _ => checker.fail("content.header.type", "unsupported header type"),
    }
}

fn body_and_footer(checker: &mut Checker<'_>) {
    checker.known("content.body", &["text"]);
    checker.required("content.body.text", 1024);
    checker.known("content.footer", &["text"]);
    if checker.lookup("content.footer").is_some() {
        checker.required("content.footer.text", 60);
    }
}

pub(super) fn check_buttons(body: &Value, account: &InfobipAccount) -> Vec<Value> {
    let mut checker = Checker::new(body, String::new());
    checker.envelope(account);
    checker.known("", &ENVELOPE);
    checker.known("content", &["body", "action", "header", "footer"]);
    body_and_footer(&mut checker);
    header(&mut checker, true);
    checker.known("content.action", &["buttons"]);
    let buttons = checker.items("content.action.buttons", 1, 3);
    let mut ids = HashSet::new();
    for (i, button) in buttons.iter().enumerate() {
        let mut item = checker.child(button, &format!("content.action.buttons[{i}]"));
        item.known("", &["type", "id", "title"]);
        if item.required("type", 16).is_some_and(|t| t != "REPLY") {
            item.fail("type", "must be REPLY");
        }
        if let Some(id) = item.required("id", 256)
            && !ids.insert(id.to_owned())
        {
            item.fail("id", "must be unique");
        }
        item.required("title", 20);
        checker.violations.extend(item.violations);
    }
    checker.violations
}

pub(super) fn check_list(body: &Value, account: &InfobipAccount) -> Vec<Value> {
    let mut checker = Checker::new(body, String::new());
    checker.envelope(account);
    checker.known("", &ENVELOPE);
    checker.known("content", &["body", "action", "header", "footer"]);
    body_and_footer(&mut checker);
    header(&mut checker, false);
    checker.known("content.action", &["title", "sections"]);
    checker.required("content.action.title", 20);
    let sections = checker.items("content.action.sections", 1, 10);
    let (mut rows, mut ids) = (0, HashSet::new());
    for (s, section) in sections.iter().enumerate() {
        let mut item = checker.child(section, &format!("content.action.sections[{s}]"));
        item.known("", &["title", "rows"]);
        if sections.len() > 1 {
            item.required("title", 24);
        } else {
            item.optional("title", 24);
        }
        let section_rows = item.items("rows", 1, 10);
        for (r, row) in section_rows.iter().enumerate() {
            rows += 1;
            let mut entry = item.child(row, &format!("rows[{r}]"));
            entry.known("", &["id", "title", "description"]);
            if let Some(id) = entry.required("id", 200)
                && !ids.insert(id.to_owned())
            {
                entry.fail("id", "must be unique across sections");
            }
            entry.required("title", 24);
            entry.optional("description", 72);
            item.violations.extend(entry.violations);
        }
        checker.violations.extend(item.violations);
    }
    if rows > 10 {
        checker.violations.push(violation(
            "content.action.sections",
            "must have at most 10 rows in total",
        ));
    }
    checker.violations
}

/// `templateData.header` and `templateData.buttons` of one template message.
pub(super) fn check_template_extras(checker: &mut Checker<'_>) {
    checker.known("content.templateData", &["body", "header", "buttons"]);
    if let Some(kind) = checker.optional("content.templateData.header.type", 16) {
        let path = "content.templateData.header";
        match kind {
            "TEXT" => {
                checker.known(path, &["type", "placeholder"]);
                checker.required("content.templateData.header.placeholder", 60);
            }
            "IMAGE" | "VIDEO" => {
                checker.known(path, &["type", "mediaUrl"]);
                checker.media_url("content.templateData.header.mediaUrl");
            }
            "DOCUMENT" => {
                checker.known(path, &["type", "mediaUrl", "filename"]);
                checker.media_url("content.templateData.header.mediaUrl");
                checker.required("content.templateData.header.filename", 240);
            }
            _ => checker.fail(
                "content.templateData.header.type",
                "unsupported header type",
            ),
        }
    }
    if checker.lookup("content.templateData.buttons").is_none() {
        return;
    }
    let buttons = checker.items("content.templateData.buttons", 1, 10);
    for (i, button) in buttons.iter().enumerate() {
        let mut item = checker.child(button, &format!("content.templateData.buttons[{i}]"));
        item.known("", &["type", "parameter"]);
        match item.required("type", 16) {
            Some("QUICK_REPLY") => {
                item.required("parameter", 128);
            }
            Some("URL") => {
                item.required("parameter", 2000);
            }
            Some(_) => item.fail("type", "must be QUICK_REPLY or URL"),
            None => {}
        }
        checker.violations.extend(item.violations);
    }
}
