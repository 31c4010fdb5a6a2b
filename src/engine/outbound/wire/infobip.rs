//! InfoBip WhatsApp send bodies: `/whatsapp/1/message/{text|template|image|document|audio|video|sticker}`
//! and `/whatsapp/1/message/interactive/{buttons|list}`.

use super::{Stored, list_sections, stored};
use crate::engine::outbound::clients::Outgoing;
use crate::engine::outbound::content::{
    HeaderKind, InteractiveHeader, InteractiveKind, InteractiveRequest, MediaRequest,
    TemplateButton, TemplateButtonKind, TemplateHeader,
};
use crate::engine::tenants::normalize_address;
use serde_json::{Value, json};

/// The API path under `/whatsapp/1/message/` and the body to post there.
pub fn request(from: &str, message: &Outgoing) -> (Vec<&'static str>, Value) {
    let id = message.message_id.to_string();
    let mut one = json!({"from": normalize_address(from), "to": normalize_address(&message.recipient),
                         "messageId": id, "callbackData": id});
    if let Some(url) = &message.callback_url {
        one["notifyUrl"] = json!(url);
    }
    match stored(&message.content) {
        Stored::Text(text) => {
            one["content"] = json!({"text": text});
            if let Some(reply) = &message.reply_to {
                one["context"] = json!({"replyToMessageId": reply});
            }
            (vec!["text"], one)
        }
        Stored::Template(template) => {
            one["content"] = self::template(template);
            (vec!["template"], json!({"messages": [one]}))
        }
        Stored::Media(media) => {
            one["content"] = self::media(&media);
            (vec![media.kind.as_str()], one)
        }
        Stored::Interactive(interactive) => {
            one["content"] = self::interactive(&interactive);
            let path = match interactive.kind {
                InteractiveKind::Button => "buttons",
                InteractiveKind::List => "list",
            };
            (vec!["interactive", path], one)
        }
    }
}

fn media(media: &MediaRequest) -> Value {
    let mut content = json!({"mediaUrl": media.url});
    if let Some(caption) = &media.caption {
        content["caption"] = json!(caption);
    }
    if let Some(filename) = &media.filename {
        content["filename"] = json!(filename);
    }
    content
}

fn template(template: &Value) -> Value {
    let mut data =
        json!({"body": {"placeholders": template.get("params").cloned().unwrap_or(json!([]))}});
    if let Some(header) = template
        .get("header")
        .and_then(|h| serde_json::from_value::<TemplateHeader>(h.clone()).ok())
    {
        data["header"] = template_header(&header);
    }
    let buttons: Vec<TemplateButton> = template
        .get("buttons")
        .and_then(|b| serde_json::from_value(b.clone()).ok())
        .unwrap_or_default();
    if !buttons.is_empty() {
        let buttons: Vec<Value> = buttons
            .iter()
            .map(|button| match button.kind {
                TemplateButtonKind::QuickReply => {
                    json!({"type": "QUICK_REPLY", "parameter": button.payload})
                }
                TemplateButtonKind::Url => json!({"type": "URL", "parameter": button.param}),
            })
            .collect();
        data["buttons"] = json!(buttons);
    }
    json!({"templateName": template["name"], "language": template["language"], "templateData": data})
}

fn upper(kind: HeaderKind) -> &'static str {
    match kind {
        HeaderKind::Text => "TEXT",
        HeaderKind::Image => "IMAGE",
        HeaderKind::Video => "VIDEO",
        HeaderKind::Document => "DOCUMENT",
    }
}

fn template_header(header: &TemplateHeader) -> Value {
    if header.kind == HeaderKind::Text {
        return json!({"type": "TEXT", "placeholder": header.params.first()});
    }
    let mut value = json!({"type": upper(header.kind), "mediaUrl": header.url});
    if let Some(filename) = &header.filename {
        value["filename"] = json!(filename);
    }
    value
}

fn interactive_header(header: &InteractiveHeader) -> Value {
    if header.kind == HeaderKind::Text {
        return json!({"type": "TEXT", "text": header.text});
    }
    let mut value = json!({"type": upper(header.kind), "mediaUrl": header.url});
    if let Some(filename) = &header.filename {
        value["filename"] = json!(filename);
    }
    value
}

fn interactive(message: &InteractiveRequest) -> Value {
    let action = match message.kind {
        InteractiveKind::Button => {
            let buttons: Vec<Value> = message
                .action
                .buttons
                .iter()
                .flatten()
                .map(|b| json!({"type": "REPLY", "id": b.id, "title": b.title}))
                .collect();
            json!({"buttons": buttons})
        }
        InteractiveKind::List => {
            let sections = list_sections(message.action.sections.as_ref());
            json!({"title": message.action.button, "sections": sections})
        }
    };
    let mut content = json!({"body": {"text": message.body.text}, "action": action});
    if let Some(header) = &message.header {
        content["header"] = interactive_header(header);
    }
    if let Some(footer) = &message.footer {
        content["footer"] = json!({"text": footer.text});
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(content: Value) -> Outgoing {
        Outgoing {
            message_id: uuid::Uuid::nil(),
            recipient: "447700900001".into(),
            content,
            reply_to: None,
            callback_url: None,
        }
    }

    #[test]
    fn media_goes_to_its_endpoint() {
        let (path, body) = request(
            "441134960000",
            &outgoing(
                json!({"media": {"type": "document", "url": "https://cdn.example.com/a.pdf",
                                       "caption": "Invoice", "filename": "a.pdf"}}),
            ),
        );
        assert_eq!(path, ["document"]);
        assert_eq!(
            body["content"],
            json!({"mediaUrl": "https://cdn.example.com/a.pdf", "caption": "Invoice", "filename": "a.pdf"})
        );
        assert_eq!(body["from"], "441134960000");
        let (path, body) = request(
            "441134960000",
            &outgoing(
                json!({"media": {"type": "sticker", "url": "https://cdn.example.com/s.webp"}}),
            ),
        );
        assert_eq!(path, ["sticker"]);
        assert_eq!(
            body["content"],
            json!({"mediaUrl": "https://cdn.example.com/s.webp"})
        );
    }

    #[test]
    fn interactive_buttons_and_lists() {
        let (path, body) = request(
            "441134960000",
            &outgoing(json!({"interactive": {"type": "button",
                "header": {"type": "image", "url": "https://cdn.example.com/a.png"}, "body": {"text": "Pick"},
                "action": {"buttons": [{"id": "y", "title": "Yes"}]}}})),
        );
        assert_eq!(path, ["interactive", "buttons"]);
        assert_eq!(
            body["content"],
            json!({"body": {"text": "Pick"}, "header": {"type": "IMAGE", "mediaUrl": "https://cdn.example.com/a.png"},
                   "action": {"buttons": [{"type": "REPLY", "id": "y", "title": "Yes"}]}})
        );
        let (path, body) = request(
            "441134960000",
            &outgoing(
                json!({"interactive": {"type": "list", "body": {"text": "Menu"}, "footer": {"text": "f"},
                "action": {"button": "See", "sections": [{"rows": [{"id": "r", "title": "R"}]}]}}}),
            ),
        );
        assert_eq!(path, ["interactive", "list"]);
        assert_eq!(
            body["content"],
            json!({"body": {"text": "Menu"}, "footer": {"text": "f"},
                   "action": {"title": "See", "sections": [{"rows": [{"id": "r", "title": "R"}]}]}})
        );
    }

    #[test]
    fn templates_with_header_and_buttons() {
        let (path, body) = request(
            "441134960000",
            &outgoing(
                json!({"template": {"name": "order", "language": "en", "params": ["42"],
                "header": {"type": "document", "url": "https://cdn.example.com/a.pdf", "filename": "a.pdf"},
                "buttons": [{"type": "quick_reply", "payload": "stop"}, {"type": "url", "param": "o/42"}]}}),
            ),
        );
        assert_eq!(path, ["template"]);
        assert_eq!(
            body["messages"][0]["content"]["templateData"],
            json!({"body": {"placeholders": ["42"]},
                   "header": {"type": "DOCUMENT", "mediaUrl": "https://cdn.example.com/a.pdf", "filename": "a.pdf"},
                   "buttons": [{"type": "QUICK_REPLY", "parameter": "stop"}, {"type": "URL", "parameter": "o/42"}]})
        );
    }
}
