//! Text the engine stores must fit PostgreSQL: `text` and `jsonb` cannot hold U+0000 (in jsonb
//! not even in object keys), and one such character used to fail a whole group commit. U+0000 is
//! therefore removed from every text the engine stores: from JSON request bodies before they are
//! parsed, and from every string of what webhooks hand the ingestor. Signatures are always checked
//! over the original bytes first.

use serde_json::Value;
use std::borrow::Cow;

/// The only way JSON text can carry U+0000: raw control characters are not valid JSON.
const NUL_ESCAPE: &[u8] = b"\\u0000";

/// Removes U+0000 from `text`, in place; no work when there is none (the usual case).
pub fn strip_nul(text: &mut String) {
    if text.contains('\0') {
        text.retain(|c| c != '\0');
    }
}

/// `text` without U+0000.
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
}

/// Removes U+0000 from every string and object key of `value`. Two keys that differ only by
/// U+0000 become one: the later one wins, as with a repeated key in JSON text.
pub fn strip_nul_json(value: &mut Value) {
    match value {
        Value::String(text) => strip_nul(text),
        Value::Array(items) => items.iter_mut().for_each(strip_nul_json),
        Value::Object(map) if map.keys().any(|key| key.contains('\0')) => {
            for (mut key, mut item) in std::mem::take(map) {
                strip_nul(&mut key);
                strip_nul_json(&mut item);
                map.insert(key, item);
            }
        }
        Value::Object(map) => map.values_mut().for_each(strip_nul_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// JSON text with every `\u0000` escape inside a string (keys included) removed, so the parsed
/// value holds no U+0000. Borrows the input when there is nothing to remove (the usual case).
/// Anything else is left alone: invalid JSON stays invalid and is refused by the parser.
pub fn strip_nul_escapes(json: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memmem::find(json, NUL_ESCAPE).is_none() {
        return Cow::Borrowed(json);
    }
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut index = 0;
    while index < json.len() {
        let byte = json[index];
        let step = match (in_string, byte) {
            (true, b'\\') if json[index..].starts_with(NUL_ESCAPE) => {
                index += NUL_ESCAPE.len();
                continue;
            }
            // Any other escape is copied whole, so an escaped quote or backslash is not mistaken
            // for the end of the string or the start of an escape.
            (true, b'\\') => 2,
            (true, b'"') | (false, b'"') => {
                in_string = !in_string;
                1
            }
            _ => 1,
        };
        let end = (index + step).min(json.len());
        out.extend_from_slice(&json[index..end]);
        index = end;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn strings_lose_only_nul() {
        let mut text = "a\0b\0\0c".to_owned();
        strip_nul(&mut text);
        assert_eq!(text, "abc");
        assert!(matches!(without_nul("plain"), Cow::Borrowed("plain")));
        assert_eq!(without_nul("\0x\0"), "x");
    }

    #[test]
    fn json_values_lose_nul_in_strings_and_keys() {
        let mut value = json!({"te\u{0}xt": "he\u{0}llo", "list": ["\u{0}", 1, null, {"k\u{0}": "v\u{0}"}], "n": 1.5});
        strip_nul_json(&mut value);
        assert_eq!(
            value,
            json!({"text": "hello", "list": ["", 1, null, {"k": "v"}], "n": 1.5})
        );
    }

    #[test]
    fn escapes_are_removed_only_inside_strings() {
        let strip = |text: &str| {
            String::from_utf8(strip_nul_escapes(text.as_bytes()).into_owned()).unwrap()
        };
        assert_eq!(strip(r#"{"a\u0000b": "x\u0000y"}"#), r#"{"ab": "xy"}"#);
        // An escaped backslash followed by `u0000` is text, not an escape.
        assert_eq!(strip(r#"{"a": "\\u0000"}"#), r#"{"a": "\\u0000"}"#);
        assert_eq!(strip(r#"{"a": "\"\u0000\\\u0000"}"#), r#"{"a": "\"\\"}"#);
        assert_eq!(strip(r#"["\u00001", "\u0041"]"#), r#"["1", "\u0041"]"#);
        assert!(matches!(
            strip_nul_escapes(br#"{"a": "b"}"#),
            Cow::Borrowed(_)
        ));
    }

    proptest! {
        /// Stripping the escapes from JSON text parses to the same value as stripping U+0000
        /// from the parsed value.
        #[test]
        fn text_and_value_stripping_agree(strings in prop::collection::vec("[a\\\\\"\u{0}\u{1}é]{0,8}", 0..6)) {
            let original = json!({
                "items": strings.clone(),
                "keyed": strings.iter().map(|s| (s.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
            });
            let text = serde_json::to_vec(&original).unwrap();
            let parsed: Value = serde_json::from_slice(&strip_nul_escapes(&text)).unwrap();
            let mut expected = original;
            strip_nul_json(&mut expected);
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = strip_nul_escapes(&bytes);
        }
    }
}
