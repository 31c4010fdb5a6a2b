//! The media rows of newly stored jobs, taken from the payloads the ingest writers hold, so the
//! webhook's transaction does not read its jobs back and parse their JSON: one row per
//! `media[]` entry that names the file at the provider. The ids are the payload's (chosen before
//! the commit), so the worker's payload and the rows agree.

use serde_json::Value;
use uuid::Uuid;

/// Columns of the rows to insert, one entry per row.
#[derive(Default)]
pub struct NewMediaRows {
    pub tenant_ids: Vec<Uuid>,
    pub ids: Vec<Uuid>,
    pub job_ids: Vec<Uuid>,
    pub positions: Vec<i32>,
    pub sender_ids: Vec<Option<Uuid>>,
    pub providers: Vec<Option<String>>,
    pub kinds: Vec<Option<String>>,
    pub provider_refs: Vec<String>,
    pub declared_types: Vec<Option<String>>,
}

impl NewMediaRows {
    /// Adds the rows of the new job `job`, whose stored payload is `payload`.
    pub fn add(&mut self, tenant: Uuid, job: Uuid, sender: Option<Uuid>, payload: &Value) {
        let Some(entries) = payload.get("media").and_then(Value::as_array) else {
            return;
        };
        let provider = payload.get("provider").and_then(Value::as_str);
        for (position, entry) in entries.iter().enumerate() {
            let text = |key: &str| entry.get(key).and_then(Value::as_str);
            let id = text("id").and_then(|id| Uuid::parse_str(id).ok());
            let reference = text("provider_media_id").or_else(|| text("provider_url"));
            let (Some(id), Some(reference)) = (id, reference) else {
                continue;
            };
            self.tenant_ids.push(tenant);
            self.ids.push(id);
            self.job_ids.push(job);
            self.positions.push(position as i32);
            self.sender_ids.push(sender);
            self.providers.push(provider.map(str::to_owned));
            self.kinds.push(text("kind").map(str::to_owned));
            self.provider_refs.push(reference.to_owned());
            self.declared_types
                .push(text("mime_type").map(str::to_owned));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_row_per_entry_naming_the_file_at_the_provider() {
        let (tenant, job, sender) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let payload = json!({"provider": "twilio", "media": [
            {"id": first, "kind": "image", "provider_url": "https://api.twilio.com/m/1", "mime_type": "image/png"},
            {"id": Uuid::new_v4(), "kind": "image"},
            {"id": second, "kind": "document", "provider_media_id": "42"},
        ]});
        let mut rows = NewMediaRows::default();
        rows.add(tenant, job, Some(sender), &payload);
        rows.add(tenant, Uuid::new_v4(), None, &json!({"message": "text"}));
        assert_eq!(rows.ids, [first, second]);
        assert_eq!(rows.positions, [0, 2], "positions in the payload's media[]");
        assert_eq!(rows.provider_refs, ["https://api.twilio.com/m/1", "42"]);
        assert_eq!(rows.declared_types, [Some("image/png".to_owned()), None]);
        assert_eq!(
            rows.providers,
            [Some("twilio".to_owned()), Some("twilio".to_owned())]
        );
        assert_eq!(rows.job_ids, [job, job]);
        assert_eq!(rows.sender_ids, [Some(sender), Some(sender)]);
        assert!(!rows.is_empty());
    }
}
