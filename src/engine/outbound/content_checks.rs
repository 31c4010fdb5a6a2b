//! The limits WhatsApp puts on media, interactive messages and template parameters, checked
//! before anything is stored: a violation is a 400 naming the field (`interactive.action.buttons[3]`).
//! The numbers are the strictest of Meta's and InfoBip's (Meta's Cloud API reference; InfoBip's
//! send API: captions 3000 there, 1024 here). What one provider cannot do at all is
//! [`super::capabilities`]' business.

use super::content::{
    HeaderKind, InteractiveHeader, InteractiveKind, InteractiveRequest, MediaRequest,
    TemplateButton, TemplateButtonKind, TemplateHeader,
};
use super::destination::Destinations;
use super::media_url;
use crate::engine::error::ApiError;
use std::collections::HashSet;

pub const CAPTION_MAX: usize = 1024;
pub const FILENAME_MAX: usize = 240;
pub const MEDIA_ID_MAX: usize = 256;
pub const BODY_MAX: usize = 1024;
pub const HEADER_TEXT_MAX: usize = 60;
pub const FOOTER_MAX: usize = 60;
pub const BUTTONS_MAX: usize = 3;
pub const BUTTON_TITLE_MAX: usize = 20;
pub const BUTTON_ID_MAX: usize = 256;
pub const LIST_BUTTON_MAX: usize = 20;
pub const SECTIONS_MAX: usize = 10;
pub const ROWS_MAX: usize = 10;
pub const SECTION_TITLE_MAX: usize = 24;
pub const ROW_ID_MAX: usize = 200;
pub const ROW_TITLE_MAX: usize = 24;
pub const ROW_DESCRIPTION_MAX: usize = 72;
pub const TEMPLATE_BUTTONS_MAX: usize = 10;
pub const TEMPLATE_URL_BUTTONS_MAX: usize = 2;
pub const PAYLOAD_MAX: usize = 128;
pub const URL_PARAM_MAX: usize = 2000;

type Checked = Result<(), ApiError>;

fn invalid(field: impl AsRef<str>, reason: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_field(field.as_ref(), reason)
}

/// A non-blank string of at most `max` characters.
fn text(field: &str, value: &str, max: usize) -> Checked {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(invalid(field, format!("must be 1 to {max} characters")));
    }
    Ok(())
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> Checked {
    value.map_or(Ok(()), |value| text(field, value, max))
}

/// Exactly one of a URL (checked for SSRF) or a provider media id.
fn source(
    prefix: &str,
    url: Option<&str>,
    id: Option<&str>,
    destinations: &Destinations,
) -> Checked {
    match (url, id) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{prefix}.id"),
            "give either url or id, not both",
        )),
        (None, None) => Err(invalid(format!("{prefix}.url"), "url or id is required")),
        (Some(url), None) => media_url::check(url, destinations)
            .map(|_| ())
            .map_err(|error| invalid(format!("{prefix}.url"), error)),
        (None, Some(id)) => {
            let printable = id.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
            if id.is_empty() || id.len() > MEDIA_ID_MAX || !printable {
                return Err(invalid(
                    format!("{prefix}.id"),
                    format!("must be 1 to {MEDIA_ID_MAX} visible ASCII characters without `/`"),
                ));
            }
            Ok(())
        }
    }
}

fn filename(field: &str, value: &str) -> Checked {
    text(field, value, FILENAME_MAX)?;
    if value
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(invalid(field, "must be a file name without a path"));
    }
    Ok(())
}

pub fn media(media: &MediaRequest, destinations: &Destinations) -> Checked {
    source(
        "media",
        media.url.as_deref(),
        media.id.as_deref(),
        destinations,
    )?;
    if let Some(caption) = &media.caption {
        if !media.kind.takes_caption() {
            return Err(invalid(
                "media.caption",
                format!("{} messages have no caption", media.kind.as_str()),
            ));
        }
        text("media.caption", caption, CAPTION_MAX)?;
    }
    if let Some(name) = &media.filename {
        if media.kind != super::content::MediaKind::Document {
            return Err(invalid("media.filename", "only documents have a filename"));
        }
        filename("media.filename", name)?;
    }
    Ok(())
}

pub fn interactive(message: &InteractiveRequest, destinations: &Destinations) -> Checked {
    if let Some(header) = &message.header {
        interactive_header(message.kind, header, destinations)?;
    }
    text("interactive.body.text", &message.body.text, BODY_MAX)?;
    if let Some(footer) = &message.footer {
        text("interactive.footer.text", &footer.text, FOOTER_MAX)?;
    }
    match message.kind {
        InteractiveKind::Button => reply_buttons(message),
        InteractiveKind::List => list(message),
    }
}

fn interactive_header(
    kind: InteractiveKind,
    header: &InteractiveHeader,
    destinations: &Destinations,
) -> Checked {
    if header.kind == HeaderKind::Text {
        let value = header.text.as_deref().unwrap_or_default();
        text("interactive.header.text", value, HEADER_TEXT_MAX)?;
        if header.url.is_some() || header.id.is_some() || header.filename.is_some() {
            return Err(invalid("interactive.header", "a text header has only text"));
        }
        return Ok(());
    }
    if kind == InteractiveKind::List {
        return Err(invalid(
            "interactive.header.type",
            "a list's header can only be text",
        ));
    }
    if header.text.is_some() {
        return Err(invalid(
            "interactive.header.text",
            "a media header has no text",
        ));
    }
    source(
        "interactive.header",
        header.url.as_deref(),
        header.id.as_deref(),
        destinations,
    )?;
    match (&header.filename, header.kind) {
        (Some(name), HeaderKind::Document) => filename("interactive.header.filename", name),
        (Some(_), _) => Err(invalid(
            "interactive.header.filename",
            "only a document header has a filename",
        )),
        (None, _) => Ok(()),
    }
}

fn reply_buttons(message: &InteractiveRequest) -> Checked {
    let action = &message.action;
    if action.button.is_some() || action.sections.is_some() {
        return Err(invalid(
            "interactive.action",
            "reply buttons take `buttons` only (button and sections are for lists)",
        ));
    }
    let buttons = action.buttons.as_deref().unwrap_or_default();
    if buttons.is_empty() {
        return Err(invalid(
            "interactive.action.buttons",
            format!("1 to {BUTTONS_MAX} buttons are required"),
        ));
    }
    if buttons.len() > BUTTONS_MAX {
        return Err(invalid(
            format!("interactive.action.buttons[{BUTTONS_MAX}]"),
            format!("at most {BUTTONS_MAX} reply buttons"),
        ));
    }
    let (mut ids, mut titles) = (HashSet::new(), HashSet::new());
    for (i, button) in buttons.iter().enumerate() {
        let at = format!("interactive.action.buttons[{i}]");
        text(&format!("{at}.id"), &button.id, BUTTON_ID_MAX)?;
        if button.id.trim() != button.id {
            return Err(invalid(
                format!("{at}.id"),
                "must not start or end with spaces",
            ));
        }
        text(&format!("{at}.title"), &button.title, BUTTON_TITLE_MAX)?;
        if !ids.insert(button.id.as_str()) {
            return Err(invalid(format!("{at}.id"), "button ids must be unique"));
        }
        if !titles.insert(button.title.as_str()) {
            return Err(invalid(
                format!("{at}.title"),
                "button titles must be unique",
            ));
        }
    }
    Ok(())
}

fn list(message: &InteractiveRequest) -> Checked {
    let action = &message.action;
    if action.buttons.is_some() {
        return Err(invalid(
            "interactive.action.buttons",
            "a list takes `button` and `sections` (buttons are for reply buttons)",
        ));
    }
    let button = action.button.as_deref().unwrap_or_default();
    text("interactive.action.button", button, LIST_BUTTON_MAX)?;
    let sections = action.sections.as_deref().unwrap_or_default();
    if sections.is_empty() {
        return Err(invalid(
            "interactive.action.sections",
            format!("1 to {SECTIONS_MAX} sections are required"),
        ));
    }
    if sections.len() > SECTIONS_MAX {
        return Err(invalid(
            format!("interactive.action.sections[{SECTIONS_MAX}]"),
            format!("at most {SECTIONS_MAX} sections"),
        ));
    }
    let (mut rows, mut ids) = (0, HashSet::new());
    for (s, section) in sections.iter().enumerate() {
        let at = format!("interactive.action.sections[{s}]");
        match &section.title {
            Some(title) => text(&format!("{at}.title"), title, SECTION_TITLE_MAX)?,
            None if sections.len() > 1 => {
                return Err(invalid(
                    format!("{at}.title"),
                    "is required when there is more than one section",
                ));
            }
            None => {}
        }
        if section.rows.is_empty() {
            return Err(invalid(format!("{at}.rows"), "at least one row"));
        }
        for (r, row) in section.rows.iter().enumerate() {
            let at = format!("{at}.rows[{r}]");
            rows += 1;
            if rows > ROWS_MAX {
                return Err(invalid(
                    at,
                    format!("at most {ROWS_MAX} rows in all sections together"),
                ));
            }
            text(&format!("{at}.id"), &row.id, ROW_ID_MAX)?;
            text(&format!("{at}.title"), &row.title, ROW_TITLE_MAX)?;
            optional_text(
                &format!("{at}.description"),
                row.description.as_deref(),
                ROW_DESCRIPTION_MAX,
            )?;
            if !ids.insert(row.id.as_str()) {
                return Err(invalid(
                    format!("{at}.id"),
                    "row ids must be unique across sections",
                ));
            }
        }
    }
    Ok(())
}

pub fn template_header(header: &TemplateHeader, destinations: &Destinations) -> Checked {
    if header.kind == HeaderKind::Text {
        if header.params.len() != 1 {
            return Err(invalid(
                "template.header.params",
                "a text header takes exactly one value",
            ));
        }
        text(
            "template.header.params[0]",
            &header.params[0],
            HEADER_TEXT_MAX,
        )?;
        if header.url.is_some() || header.id.is_some() || header.filename.is_some() {
            return Err(invalid("template.header", "a text header has only params"));
        }
        return Ok(());
    }
    if !header.params.is_empty() {
        return Err(invalid(
            "template.header.params",
            "a media header has no params",
        ));
    }
    source(
        "template.header",
        header.url.as_deref(),
        header.id.as_deref(),
        destinations,
    )?;
    match (&header.filename, header.kind) {
        (Some(name), HeaderKind::Document) => filename("template.header.filename", name),
        (Some(_), _) => Err(invalid(
            "template.header.filename",
            "only a document header has a filename",
        )),
        (None, _) => Ok(()),
    }
}

pub fn template_buttons(buttons: &[TemplateButton]) -> Checked {
    if buttons.len() > TEMPLATE_BUTTONS_MAX {
        return Err(invalid(
            format!("template.buttons[{TEMPLATE_BUTTONS_MAX}]"),
            format!("a template has at most {TEMPLATE_BUTTONS_MAX} buttons"),
        ));
    }
    let (mut positions, mut urls) = (HashSet::new(), 0);
    for (i, button) in buttons.iter().enumerate() {
        let at = format!("template.buttons[{i}]");
        if button
            .index
            .is_some_and(|index| usize::from(index) >= TEMPLATE_BUTTONS_MAX)
        {
            return Err(invalid(
                format!("{at}.index"),
                format!("must be 0 to {}", TEMPLATE_BUTTONS_MAX - 1),
            ));
        }
        if !positions.insert(button.position(i)) {
            return Err(invalid(
                format!("{at}.index"),
                "two parameters for the same button",
            ));
        }
        match button.kind {
            TemplateButtonKind::QuickReply => {
                if button.param.is_some() {
                    return Err(invalid(
                        format!("{at}.param"),
                        "a quick_reply button takes payload",
                    ));
                }
                let payload = button.payload.as_deref().unwrap_or_default();
                text(&format!("{at}.payload"), payload, PAYLOAD_MAX)?;
            }
            TemplateButtonKind::Url => {
                urls += 1;
                if urls > TEMPLATE_URL_BUTTONS_MAX {
                    return Err(invalid(
                        at,
                        format!("a template has at most {TEMPLATE_URL_BUTTONS_MAX} URL buttons"),
                    ));
                }
                if button.payload.is_some() {
                    return Err(invalid(format!("{at}.payload"), "a url button takes param"));
                }
                let param = button.param.as_deref().unwrap_or_default();
                text(&format!("{at}.param"), param, URL_PARAM_MAX)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn field_of(error: ApiError) -> String {
        error
            .message
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn interactive_error(value: Value) -> Option<String> {
        let message: InteractiveRequest = serde_json::from_value(value).unwrap();
        interactive(&message, &Destinations::default())
            .err()
            .map(field_of)
    }

    fn buttons(n: usize) -> Value {
        let buttons: Vec<Value> = (0..n)
            .map(|i| json!({"id": format!("b{i}"), "title": format!("Option {i}")}))
            .collect();
        json!({"type": "button", "body": {"text": "Pick one"}, "action": {"buttons": buttons}})
    }

    fn list_of(sections: Vec<Value>) -> Value {
        json!({"type": "list", "body": {"text": "Menu"}, "action": {"button": "See", "sections": sections}})
    }

    fn rows(prefix: &str, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": format!("{prefix}{i}"), "title": format!("Row {i}")}))
            .collect()
    }

    #[test]
    fn reply_buttons_within_limits_pass_and_each_violation_names_its_field() {
        assert_eq!(interactive_error(buttons(3)), None);
        assert_eq!(
            interactive_error(buttons(4)).as_deref(),
            Some("interactive.action.buttons[3]")
        );
        assert_eq!(
            interactive_error(buttons(0)).as_deref(),
            Some("interactive.action.buttons")
        );
        let mut long = buttons(2);
        long["action"]["buttons"][1]["title"] = json!("x".repeat(21));
        assert_eq!(
            interactive_error(long).as_deref(),
            Some("interactive.action.buttons[1].title")
        );
        let mut twenty = buttons(1);
        twenty["action"]["buttons"][0]["title"] = json!("é".repeat(20));
        assert_eq!(interactive_error(twenty), None, "characters, not bytes");
        let mut same = buttons(2);
        same["action"]["buttons"][1]["id"] = json!("b0");
        assert_eq!(
            interactive_error(same).as_deref(),
            Some("interactive.action.buttons[1].id")
        );
        let mut same_title = buttons(2);
        same_title["action"]["buttons"][1]["title"] = json!("Option 0");
        assert_eq!(
            interactive_error(same_title).as_deref(),
            Some("interactive.action.buttons[1].title")
        );
        let mut id = buttons(1);
        id["action"]["buttons"][0]["id"] = json!("x".repeat(257));
        assert_eq!(
            interactive_error(id).as_deref(),
            Some("interactive.action.buttons[0].id")
        );
        let mut body = buttons(1);
        body["body"]["text"] = json!("x".repeat(1025));
        assert_eq!(
            interactive_error(body).as_deref(),
            Some("interactive.body.text")
        );
        let mut footer = buttons(1);
        footer["footer"] = json!({"text": "x".repeat(61)});
        assert_eq!(
            interactive_error(footer).as_deref(),
            Some("interactive.footer.text")
        );
        let mut header = buttons(1);
        header["header"] = json!({"type": "text", "text": "x".repeat(61)});
        assert_eq!(
            interactive_error(header).as_deref(),
            Some("interactive.header.text")
        );
        let mut image = buttons(1);
        image["header"] = json!({"type": "image", "url": "https://cdn.example.com/a.png"});
        assert_eq!(interactive_error(image), None);
        let mut private = buttons(1);
        private["header"] = json!({"type": "image", "url": "https://192.168.1.2/a.png"});
        assert_eq!(
            interactive_error(private).as_deref(),
            Some("interactive.header.url")
        );
    }

    #[test]
    fn lists_within_limits_pass_and_each_violation_names_its_field() {
        let fine = list_of(vec![
            json!({"title": "Hot", "rows": rows("h", 5)}),
            json!({"title": "Cold", "rows": rows("c", 5)}),
        ]);
        assert_eq!(interactive_error(fine), None);
        let eleven = list_of(vec![
            json!({"title": "Hot", "rows": rows("h", 6)}),
            json!({"title": "Cold", "rows": rows("c", 5)}),
        ]);
        assert_eq!(
            interactive_error(eleven).as_deref(),
            Some("interactive.action.sections[1].rows[4]")
        );
        let sections: Vec<Value> = (0..11)
            .map(|i| json!({"title": format!("S{i}"), "rows": rows(&format!("s{i}-"), 1)}))
            .collect();
        assert_eq!(
            interactive_error(list_of(sections)).as_deref(),
            Some("interactive.action.sections[10]")
        );
        let untitled = list_of(vec![
            json!({"title": "Hot", "rows": rows("h", 1)}),
            json!({"rows": rows("c", 1)}),
        ]);
        assert_eq!(
            interactive_error(untitled).as_deref(),
            Some("interactive.action.sections[1].title")
        );
        assert_eq!(
            interactive_error(list_of(vec![json!({"rows": rows("h", 1)})])),
            None,
            "one section needs no title"
        );
        let mut row = list_of(vec![json!({"rows": rows("h", 2)})]);
        row["action"]["sections"][0]["rows"][1]["title"] = json!("x".repeat(25));
        assert_eq!(
            interactive_error(row).as_deref(),
            Some("interactive.action.sections[0].rows[1].title")
        );
        let mut description = list_of(vec![json!({"rows": rows("h", 1)})]);
        description["action"]["sections"][0]["rows"][0]["description"] = json!("x".repeat(73));
        assert_eq!(
            interactive_error(description).as_deref(),
            Some("interactive.action.sections[0].rows[0].description")
        );
        let duplicate = list_of(vec![
            json!({"title": "A", "rows": rows("x", 1)}),
            json!({"title": "B", "rows": rows("x", 1)}),
        ]);
        assert_eq!(
            interactive_error(duplicate).as_deref(),
            Some("interactive.action.sections[1].rows[0].id")
        );
        let mut button = list_of(vec![json!({"rows": rows("h", 1)})]);
        button["action"]["button"] = json!("x".repeat(21));
        assert_eq!(
            interactive_error(button).as_deref(),
            Some("interactive.action.button")
        );
        let mut image = list_of(vec![json!({"rows": rows("h", 1)})]);
        image["header"] = json!({"type": "image", "url": "https://cdn.example.com/a.png"});
        assert_eq!(
            interactive_error(image).as_deref(),
            Some("interactive.header.type")
        );
        let mut mixed = list_of(vec![json!({"rows": rows("h", 1)})]);
        mixed["action"]["buttons"] = json!([{"id": "a", "title": "A"}]);
        assert_eq!(
            interactive_error(mixed).as_deref(),
            Some("interactive.action.buttons")
        );
    }

    fn media_error(value: Value) -> Option<String> {
        let request: MediaRequest = serde_json::from_value(value).unwrap();
        media(&request, &Destinations::default())
            .err()
            .map(field_of)
    }

    #[test]
    fn media_needs_one_safe_source_and_captions_only_where_whatsapp_shows_them() {
        let url = "https://cdn.example.com/a.pdf";
        assert_eq!(
            media_error(
                json!({"type": "document", "url": url, "caption": "Invoice", "filename": "invoice.pdf"})
            ),
            None
        );
        assert_eq!(
            media_error(json!({"type": "image", "id": "1013859600285441"})),
            None
        );
        for (value, field) in [
            (json!({"type": "image"}), "media.url"),
            (json!({"type": "image", "url": url, "id": "1"}), "media.id"),
            (
                json!({"type": "image", "url": "http://cdn.example.com/a.png"}),
                "media.url",
            ),
            (
                json!({"type": "image", "url": "https://10.1.1.1/a.png"}),
                "media.url",
            ),
            (json!({"type": "image", "id": "../x"}), "media.id"),
            (
                json!({"type": "audio", "url": url, "caption": "x"}),
                "media.caption",
            ),
            (
                json!({"type": "sticker", "url": url, "caption": "x"}),
                "media.caption",
            ),
            (
                json!({"type": "image", "url": url, "caption": "x".repeat(1025)}),
                "media.caption",
            ),
            (
                json!({"type": "image", "url": url, "filename": "a.png"}),
                "media.filename",
            ),
            (
                json!({"type": "document", "url": url, "filename": "../a.pdf"}),
                "media.filename",
            ),
            (
                json!({"type": "document", "url": url, "filename": "a".repeat(241)}),
                "media.filename",
            ),
        ] {
            assert_eq!(
                media_error(value.clone()).as_deref(),
                Some(field),
                "{value}"
            );
        }
    }

    #[test]
    fn template_headers_and_buttons() {
        let header = |value: Value| {
            let header: TemplateHeader = serde_json::from_value(value).unwrap();
            template_header(&header, &Destinations::default())
                .err()
                .map(field_of)
        };
        assert_eq!(header(json!({"type": "text", "params": ["Ana"]})), None);
        assert_eq!(
            header(
                json!({"type": "document", "url": "https://cdn.example.com/a.pdf", "filename": "a.pdf"})
            ),
            None
        );
        assert_eq!(
            header(json!({"type": "text", "params": ["a", "b"]})).as_deref(),
            Some("template.header.params")
        );
        assert_eq!(
            header(json!({"type": "image", "url": "https://localhost/a.png"})).as_deref(),
            Some("template.header.url")
        );
        assert_eq!(
            header(json!({"type": "video", "url": "https://cdn.example.com/a.mp4", "filename": "a.mp4"}))
                .as_deref(),
            Some("template.header.filename")
        );
        let buttons = |value: Value| {
            let buttons: Vec<TemplateButton> = serde_json::from_value(value).unwrap();
            template_buttons(&buttons).err().map(field_of)
        };
        assert_eq!(
            buttons(
                json!([{"type": "quick_reply", "payload": "yes"}, {"type": "url", "index": 2, "param": "order/42"}])
            ),
            None
        );
        assert_eq!(
            buttons(json!([{"type": "quick_reply"}])).as_deref(),
            Some("template.buttons[0].payload")
        );
        assert_eq!(
            buttons(json!([{"type": "quick_reply", "payload": "x".repeat(129)}])).as_deref(),
            Some("template.buttons[0].payload")
        );
        assert_eq!(
            buttons(json!([{"type": "url", "param": "a"}, {"type": "url", "param": "b"}, {"type": "url", "param": "c"}]))
                .as_deref(),
            Some("template.buttons[2]")
        );
        assert_eq!(
            buttons(json!([{"type": "quick_reply", "payload": "a"}, {"type": "quick_reply", "index": 0, "payload": "b"}]))
                .as_deref(),
            Some("template.buttons[1].index")
        );
        assert_eq!(
            buttons(json!([{"type": "url", "payload": "a"}])).as_deref(),
            Some("template.buttons[0].payload")
        );
    }
}
