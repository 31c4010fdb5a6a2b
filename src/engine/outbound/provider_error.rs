//! What a provider's answer may put into the database, and so into `GET /messages/{id}`: an
//! error code and a description parsed from its body, bounded and stripped of control and
//! formatting characters, and a message id of a sane shape. The raw body is never kept, and only
//! its first [`MAX_BODY_BYTES`] are read, so an endpoint that is not the provider can neither echo
//! its content to the tenant nor exhaust the engine's memory.

use serde_json::Value;

pub const MAX_CODE_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 256;
/// Longest provider message id kept (Meta wamids are about 60 characters, Twilio SIDs 34).
pub const MAX_MESSAGE_ID_CHARS: usize = 128;
/// The providers' answers to a send are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An error code: visible ASCII only, at most [`MAX_CODE_CHARS`]; None when nothing is left.
pub fn code(raw: &str) -> Option<String> {
    let code: String = raw
        .chars()
        .filter(char::is_ascii_graphic)
        .take(MAX_CODE_CHARS)
        .collect();
    (!code.is_empty()).then_some(code)
}

/// A description: control and invisible formatting characters removed, runs of white space
/// made one space, at most [`MAX_DESCRIPTION_CHARS`] characters (cut ones end in `…`).
pub fn description(raw: &str) -> String {
    let words: Vec<String> = raw
        .split(char::is_whitespace)
        .map(|word| word.chars().filter(|c| !is_hidden(*c)).collect::<String>())
        .filter(|word| !word.is_empty())
        .collect();
    let text = words.join(" ");
    if text.chars().count() <= MAX_DESCRIPTION_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Control characters and the invisible ones that reorder or hide text (bidi overrides, zero
/// width characters, the byte order mark).
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// A provider's id of a sent message, when it has a plausible shape.
pub fn message_id(raw: &str) -> Option<String> {
    let plausible = (1..=MAX_MESSAGE_ID_CHARS).contains(&raw.len())
        && raw.chars().all(|c| c.is_ascii_graphic());
    plausible.then(|| raw.to_owned())
}

/// The JSON body of a provider's answer, or Null when it is not JSON or longer than
/// [`MAX_BODY_BYTES`] (reading stops there).
pub async fn read_json(mut response: reqwest::Response) -> Value {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_BODY_BYTES => {
                body.extend_from_slice(&chunk)
            }
            Ok(None) => return serde_json::from_slice(&body).unwrap_or(Value::Null),
            Ok(Some(_)) | Err(_) => return Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_visible_ascii_only_and_are_bounded() {
        assert_eq!(code("E400").as_deref(), Some("E400"));
        assert_eq!(code("BAD_\u{0}REQUEST\n").as_deref(), Some("BAD_REQUEST"));
        assert_eq!(
            code(&"X".repeat(500)).map(|c| c.len()),
            Some(MAX_CODE_CHARS)
        );
        assert_eq!(code(" \t\u{202E}"), None);
    }

    #[test]
    fn descriptions_lose_control_characters_and_are_bounded() {
        assert_eq!(
            description("line one\r\nline\u{0} two\t\u{1b}[31mred\u{202E}"),
            "line one line two [31mred"
        );
        let long = description(&"secret-body ".repeat(1000));
        assert_eq!(long.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(description("ñandú ✓"), "ñandú ✓");
    }

    #[test]
    fn message_ids_must_look_like_ids() {
        assert_eq!(
            message_id("wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA").as_deref(),
            Some("wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA")
        );
        assert_eq!(message_id(""), None);
        assert_eq!(message_id("a b"), None);
        assert_eq!(message_id(&"x".repeat(MAX_MESSAGE_ID_CHARS + 1)), None);
    }
}
