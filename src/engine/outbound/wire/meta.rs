//! Meta Cloud API message objects (`POST /{version}/{phone-number-id}/messages`).

use super::{Stored, list_sections, stored};
use crate::engine::outbound::clients::Outgoing;
use crate::engine::outbound::content::{
    HeaderKind, InteractiveHeader, InteractiveKind, InteractiveRequest, MediaRequest,
    TemplateButtonKind, TemplateHeader,
};
use crate::engine::tenants::normalize_address;
use serde_json::{Map, Value, json};

pub fn body(message: &Outgoing) -> Value {
    let to = normalize_address(&message.recipient);
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                          "biz_opaque_callback_data": message.message_id.to_string()});
    match stored(&message.content) {
        Stored::Text(text) => {
            body["type"] = json!("text");
            body["text"] = json!({"body": text, "preview_url": false});
        }
        Stored::Template(template) => {
            body["type"] = json!("template");
            body["template"] = self::template(template);
        }
        Stored::Media(media) => {
            body["type"] = json!(media.kind.as_str());
            body[media.kind.as_str()] = self::media(&media);
        }
        Stored::Interactive(interactive) => {
            body["type"] = json!("interactive");
            body["interactive"] = self::interactive(&interactive);
        }
    }
    if let Some(reply) = &message.reply_to {
        body["context"] = json!({"message_id": reply});
    }
    body
}

/// `{link}` or `{id}`, plus the extra fields given.
fn media_object(url: Option<&str>, id: Option<&str>, extra: &[(&str, Option<&str>)]) -> Value {
    let mut object = Map::new();
    match (url, id) {
        (Some(url), _) => object.insert("link".into(), json!(url)),
        (None, Some(id)) => object.insert("id".into(), json!(id)),
        (None, None) => None,
    };
    for (key, value) in extra {
        if let Some(value) = value {
            object.insert((*key).to_owned(), json!(value));
        }
    }
    Value::Object(object)
}

fn media(media: &MediaRequest) -> Value {
    media_object(
        media.url.as_deref(),
        media.id.as_deref(),
        &[
            ("caption", media.caption.as_deref()),
            ("filename", media.filename.as_deref()),
        ],
    )
}

fn template(template: &Value) -> Value {
    let parameters: Vec<Value> = template["params"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|v| json!({"type": "text", "text": v}))
                .collect()
        })
        .unwrap_or_default();
    let mut components = Vec::new();
    if let Some(header) = template
        .get("header")
        .and_then(|h| serde_json::from_value::<TemplateHeader>(h.clone()).ok())
    {
        components.push(json!({"type": "header", "parameters": [template_header(&header)]}));
    }
    components.push(json!({"type": "body", "parameters": parameters}));
    let buttons: Vec<crate::engine::outbound::content::TemplateButton> = template
        .get("buttons")
        .and_then(|b| serde_json::from_value(b.clone()).ok())
        .unwrap_or_default();
    for (i, button) in buttons.iter().enumerate() {
        let (sub_type, parameter) = match button.kind {
            TemplateButtonKind::QuickReply => (
                "quick_reply",
                json!({"type": "payload", "payload": button.payload}),
            ),
            TemplateButtonKind::Url => ("url", json!({"type": "text", "text": button.param})),
        };
        components.push(json!({"type": "button", "sub_type": sub_type,
                               "index": button.position(i).to_string(), "parameters": [parameter]}));
    }
    json!({"name": template["name"], "language": {"code": template["language"]}, "components": components})
}

fn template_header(header: &TemplateHeader) -> Value {
    if header.kind == HeaderKind::Text {
        return json!({"type": "text", "text": header.params.first()});
    }
    let kind = header.kind.as_str();
    let object = media_object(
        header.url.as_deref(),
        header.id.as_deref(),
        &[("filename", header.filename.as_deref())],
    );
    json!({"type": kind, kind: object})
}

fn interactive_header(header: &InteractiveHeader) -> Value {
    if header.kind == HeaderKind::Text {
        return json!({"type": "text", "text": header.text});
    }
    let kind = header.kind.as_str();
    let object = media_object(
        header.url.as_deref(),
        header.id.as_deref(),
        &[("filename", header.filename.as_deref())],
    );
    json!({"type": kind, kind: object})
}

fn interactive(message: &InteractiveRequest) -> Value {
    let action = match message.kind {
        InteractiveKind::Button => {
            let buttons: Vec<Value> = message
                .action
                .buttons
                .iter()
                .flatten()
                .map(|b| json!({"type": "reply", "reply": {"id": b.id, "title": b.title}}))
                .collect();
            json!({"buttons": buttons})
        }
        InteractiveKind::List => {
            let sections = list_sections(message.action.sections.as_ref());
            json!({"button": message.action.button, "sections": sections})
        }
    };
    let kind = match message.kind {
        InteractiveKind::Button => "button",
        InteractiveKind::List => "list",
    };
    let mut value = json!({"type": kind, "body": {"text": message.body.text}, "action": action});
    if let Some(header) = &message.header {
        value["header"] = interactive_header(header);
    }
    if let Some(footer) = &message.footer {
        value["footer"] = json!({"text": footer.text});
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(content: Value) -> Outgoing {
        Outgoing {
            message_id: uuid::Uuid::nil(),
            recipient: "+447700900001".into(),
            content,
            reply_to: None,
            callback_url: None,
        }
    }

    #[test]
    fn text_and_plain_templates_are_as_before() {
        let text = body(&outgoing(json!({"text": "hi"})));
        assert_eq!(text["type"], "text");
        assert_eq!(text["text"], json!({"body": "hi", "preview_url": false}));
        let template = body(&outgoing(
            json!({"template": {"name": "t", "language": "es", "params": ["1"]}}),
        ));
        assert_eq!(
            template["template"],
            json!({"name": "t", "language": {"code": "es"},
                   "components": [{"type": "body", "parameters": [{"type": "text", "text": "1"}]}]})
        );
    }

    #[test]
    fn media_by_link_or_id() {
        let document = body(&outgoing(json!({"media": {"type": "document",
            "url": "https://cdn.example.com/a.pdf", "caption": "Invoice", "filename": "a.pdf"}})));
        assert_eq!(document["type"], "document");
        assert_eq!(
            document["document"],
            json!({"link": "https://cdn.example.com/a.pdf", "caption": "Invoice", "filename": "a.pdf"})
        );
        let sticker = body(&outgoing(
            json!({"media": {"type": "sticker", "id": "123"}}),
        ));
        assert_eq!(sticker["sticker"], json!({"id": "123"}));
    }

    #[test]
    fn templates_with_media_header_and_buttons() {
        let sent = body(&outgoing(
            json!({"template": {"name": "order", "language": "en_US", "params": ["42"],
            "header": {"type": "image", "url": "https://cdn.example.com/a.png"},
            "buttons": [{"type": "quick_reply", "payload": "stop"}, {"type": "url", "index": 2, "param": "o/42"}]}}),
        ));
        assert_eq!(
            sent["template"]["components"],
            json!([
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/a.png"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "42"}]},
                {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "stop"}]},
                {"type": "button", "sub_type": "url", "index": "2", "parameters": [{"type": "text", "text": "o/42"}]},
            ])
        );
    }

    #[test]
    fn interactive_buttons_and_lists() {
        let buttons = body(&outgoing(json!({"interactive": {"type": "button",
            "header": {"type": "text", "text": "Hi"}, "body": {"text": "Pick"}, "footer": {"text": "f"},
            "action": {"buttons": [{"id": "y", "title": "Yes"}]}}})));
        assert_eq!(
            buttons["interactive"],
            json!({"type": "button", "header": {"type": "text", "text": "Hi"}, "body": {"text": "Pick"},
                   "footer": {"text": "f"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}})
        );
        let list = body(&outgoing(
            json!({"interactive": {"type": "list", "body": {"text": "Menu"},
            "action": {"button": "See", "sections": [{"title": "S", "rows": [{"id": "r", "title": "R", "description": "d"}]}]}}}),
        ));
        assert_eq!(
            list["interactive"],
            json!({"type": "list", "body": {"text": "Menu"},
                   "action": {"button": "See", "sections": [{"title": "S", "rows": [{"id": "r", "title": "R", "description": "d"}]}]}})
        );
    }
}
