//! How a message's typed content appears in its job's payload: `media[]`, `location`,
//! `contacts[]` and `reply` (README, "Job payload"). Each media file gets its engine id here,
//! before the commit, so the payload the worker reads names `GET /media/{id}` from the start.

use crate::engine::providers::{Content, MediaRef, MediaSource};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The fetch states a payload's media can be in (also the `media.status` column).
pub const PENDING: &str = "pending";
pub const STORED: &str = "stored";
pub const FAILED: &str = "failed";

/// Adds the content's fields to the payload; fields of an empty part are left out.
pub fn add_content(payload: &mut Map<String, Value>, content: Content) {
    if !content.media.is_empty() {
        let media = content.media.into_iter().map(media_entry).collect();
        payload.insert("media".into(), Value::Array(media));
    }
    if let Some(location) = content.location {
        payload.insert("location".into(), json!(location));
    }
    if !content.contacts.is_empty() {
        payload.insert("contacts".into(), json!(content.contacts));
    }
    if let Some(reply) = content.reply {
        payload.insert("reply".into(), json!(reply));
    }
}

/// One `media[]` entry: the engine's id and path, what the provider said about the file, and
/// where it is at the provider (the fetcher reads `provider_media_id`/`provider_url` back).
fn media_entry(media: MediaRef) -> Value {
    let id = Uuid::new_v4();
    let mut entry = Map::with_capacity(10);
    entry.insert("id".into(), json!(id));
    entry.insert("path".into(), json!(format!("/media/{id}")));
    entry.insert("kind".into(), json!(media.kind));
    entry.insert("status".into(), json!(PENDING));
    let mut optional = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            entry.insert(key.into(), Value::String(value));
        }
    };
    optional("mime_type", media.mime_type);
    optional("provider_sha256", media.sha256);
    optional("caption", media.caption);
    optional("filename", media.filename);
    match media.source {
        MediaSource::MetaId(id) => entry.insert("provider_media_id".into(), json!(id)),
        MediaSource::Url(url) => entry.insert("provider_url".into(), json!(url)),
    };
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::providers::{Location, Reply};

    #[test]
    fn media_entries_name_their_engine_path_and_provider_source() {
        let mut payload = Map::new();
        add_content(
            &mut payload,
            Content {
                media: vec![MediaRef {
                    kind: "document".into(),
                    source: MediaSource::MetaId("1234".into()),
                    mime_type: Some("application/pdf".into()),
                    sha256: Some("abc".into()),
                    caption: None,
                    filename: Some("a.pdf".into()),
                }],
                location: Some(Location {
                    latitude: 1.5,
                    longitude: -2.0,
                    name: None,
                    address: None,
                    url: None,
                }),
                contacts: Vec::new(),
                reply: Some(Reply {
                    kind: "list_reply".into(),
                    id: Some("row-1".into()),
                    title: Some("Row".into()),
                    description: None,
                    payload: None,
                }),
            },
        );
        let entry = &payload["media"][0];
        let id = entry["id"].as_str().unwrap();
        assert_eq!(entry["path"], format!("/media/{id}"));
        assert_eq!(entry["status"], "pending");
        assert_eq!(entry["provider_media_id"], "1234");
        assert_eq!(entry["filename"], "a.pdf");
        assert!(entry.get("caption").is_none());
        assert_eq!(
            payload["location"],
            json!({"latitude": 1.5, "longitude": -2.0})
        );
        assert_eq!(
            payload["reply"],
            json!({"type": "list_reply", "id": "row-1", "title": "Row"})
        );
        assert!(payload.get("contacts").is_none());
    }
}
