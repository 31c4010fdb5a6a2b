//! Twilio's form for `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: the content
//! fields (`Body`, `MediaUrl`, `ContentSid` + `ContentVariables`); the caller adds `To`, the
//! sender and `StatusCallback`.

use super::{Stored, stored};
use serde_json::Value;

pub fn content(content: &Value) -> Vec<(&'static str, String)> {
    match stored(content) {
        Stored::Text(text) => vec![("Body", text.as_str().unwrap_or_default().to_owned())],
        // Twilio templates are Content API SIDs; their variables are numbered from 1.
        Stored::Template(template) => {
            let variables: serde_json::Map<String, Value> = template["params"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .enumerate()
                        .map(|(i, v)| ((i + 1).to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                (
                    "ContentSid",
                    template["name"].as_str().unwrap_or_default().to_owned(),
                ),
                ("ContentVariables", Value::Object(variables).to_string()),
            ]
        }
        // WhatsApp takes one attachment; the caption, where there is one, is the Body.
        Stored::Media(media) => {
            let mut form = vec![("MediaUrl", media.url.unwrap_or_default())];
            if let Some(caption) = media.caption {
                form.push(("Body", caption));
            }
            form
        }
        // Refused before it is stored (capabilities); nothing Twilio could send.
        Stored::Interactive(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn media_is_one_media_url_with_the_caption_as_body() {
        assert_eq!(
            content(
                &json!({"media": {"type": "image", "url": "https://cdn.example.com/a.png", "caption": "Look"}})
            ),
            [
                ("MediaUrl", "https://cdn.example.com/a.png".to_owned()),
                ("Body", "Look".to_owned())
            ]
        );
        assert_eq!(content(&json!({"text": "hi"})), [("Body", "hi".to_owned())]);
        assert_eq!(
            content(&json!({"template": {"name": "HX1", "language": "en", "params": ["a"]}})),
            [
                ("ContentSid", "HX1".to_owned()),
                ("ContentVariables", r#"{"1":"a"}"#.to_owned())
            ]
        );
    }
}
