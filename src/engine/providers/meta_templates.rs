//! Meta's template lifecycle webhooks, on the same endpoint as messages: changes whose `field`
//! is `message_template_status_update` (`value.event`: APPROVED, PAUSED, DISABLED, ...) or
//! `message_template_quality_update` (`value.new_quality_score`: GREEN, YELLOW, RED, UNKNOWN).
//! Pure code; [`super::meta::parse`] skips these changes and this reads only them.

use super::ParseError;
use serde_json::Value;

/// Statuses the catalog knows; REINSTATED (a paused template back in use) is APPROVED again.
pub const STATUSES: [&str; 12] = [
    "APPROVED",
    "PENDING",
    "REJECTED",
    "PAUSED",
    "DISABLED",
    "FLAGGED",
    "IN_APPEAL",
    "LIMIT_EXCEEDED",
    "LOCKED",
    "PENDING_DELETION",
    "DELETED",
    "ARCHIVED",
];
pub const QUALITIES: [&str; 4] = ["GREEN", "YELLOW", "RED", "UNKNOWN"];

/// One template change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateUpdate {
    pub name: String,
    /// As the catalog writes it: `en_US` (Meta's webhooks may say `en-US`).
    pub language: String,
    pub provider_template_id: Option<String>,
    pub change: TemplateChange,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateChange {
    Status {
        status: String,
        reason: Option<String>,
    },
    Quality {
        quality: String,
    },
}

/// Every template change of a Meta webhook body, in order. Events the catalog does not know
/// (e.g. a future status) are skipped rather than refused, so Meta does not retry them for days.
pub fn parse(body: &[u8]) -> Result<Vec<TemplateUpdate>, ParseError> {
    Ok(parse_by_account(body)?
        .into_iter()
        .map(|(_, update)| update)
        .collect())
}

/// Every template change with the business account (the entry's `id`) it belongs to, in order.
pub fn parse_by_account(body: &[u8]) -> Result<Vec<(Option<String>, TemplateUpdate)>, ParseError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|error| ParseError::new("body", format!("is not JSON: {error}")))?;
    let mut updates = Vec::new();
    let entries = root["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (e, entry) in entries.iter().enumerate() {
        let changes = entry["changes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let account = entry["id"].as_str().map(str::to_owned);
        for (c, change) in changes.iter().enumerate() {
            let path = format!("entry[{e}].changes[{c}].value");
            let update = match change["field"].as_str() {
                Some("message_template_status_update") => status(&change["value"], &path)?,
                Some("message_template_quality_update") => quality(&change["value"], &path)?,
                _ => None,
            };
            updates.extend(update.map(|update| (account.clone(), update)));
        }
    }
    Ok(updates)
}

fn status(value: &Value, path: &str) -> Result<Option<TemplateUpdate>, ParseError> {
    // Meta documents quality updates under either field name; the value's shape decides.
    if value.get("new_quality_score").is_some() {
        return quality(value, path);
    }
    let event = text(value, path, "event")?.to_ascii_uppercase();
    let status = if event == "REINSTATED" {
        "APPROVED".to_owned()
    } else {
        event
    };
    if !STATUSES.contains(&status.as_str()) {
        return Ok(None);
    }
    let reason = value["reason"]
        .as_str()
        .filter(|r| !r.is_empty() && *r != "NONE")
        .map(|r| r.chars().take(256).collect());
    template(value, path, TemplateChange::Status { status, reason })
}

fn quality(value: &Value, path: &str) -> Result<Option<TemplateUpdate>, ParseError> {
    let quality = text(value, path, "new_quality_score")?.to_ascii_uppercase();
    if !QUALITIES.contains(&quality.as_str()) {
        return Ok(None);
    }
    template(value, path, TemplateChange::Quality { quality })
}

fn template(
    value: &Value,
    path: &str,
    change: TemplateChange,
) -> Result<Option<TemplateUpdate>, ParseError> {
    let id = match &value["message_template_id"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(Some(TemplateUpdate {
        name: text(value, path, "message_template_name")?.to_owned(),
        language: text(value, path, "message_template_language")?.replace('-', "_"),
        provider_template_id: id.filter(|id| id.len() <= 128),
        change,
    }))
}

fn text<'a>(value: &'a Value, path: &str, field: &str) -> Result<&'a str, ParseError> {
    value[field]
        .as_str()
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or_else(|| ParseError::new(format!("{path}.{field}"), "must be a non-empty string"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(changes: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "time": 1_674_864_290, "changes": changes}]}))
        .unwrap()
    }

    #[test]
    fn status_and_quality_updates_are_read_and_messages_skipped() {
        let updates = parse(&body(json!([
            {"field": "messages", "value": {"messages": []}},
            {"field": "message_template_status_update", "value": {"event": "PAUSED",
                "message_template_id": 806_312_974_732_579_u64, "message_template_name": "weekly_offer",
                "message_template_language": "en-US", "reason": "LOW_QUALITY"}},
            {"field": "message_template_quality_update", "value": {"previous_quality_score": "GREEN",
                "new_quality_score": "RED", "message_template_id": 1, "message_template_name": "weekly_offer",
                "message_template_language": "en_US"}},
            {"field": "message_template_status_update", "value": {"event": "REINSTATED", "reason": "NONE",
                "message_template_name": "weekly_offer", "message_template_language": "en_US"}},
            {"field": "message_template_status_update", "value": {"event": "SOMETHING_NEW",
                "message_template_name": "x", "message_template_language": "en"}}
        ])))
        .unwrap();
        assert_eq!(updates.len(), 3);
        assert_eq!(updates[0].language, "en_US");
        assert_eq!(
            updates[0].provider_template_id.as_deref(),
            Some("806312974732579")
        );
        assert_eq!(
            updates[0].change,
            TemplateChange::Status {
                status: "PAUSED".into(),
                reason: Some("LOW_QUALITY".into())
            }
        );
        assert_eq!(
            updates[1].change,
            TemplateChange::Quality {
                quality: "RED".into()
            }
        );
        assert_eq!(
            updates[2].change,
            TemplateChange::Status {
                status: "APPROVED".into(),
                reason: None
            }
        );
    }

    #[test]
    fn a_template_update_without_its_name_names_the_field() {
        let error = parse(&body(json!([{"field": "message_template_status_update",
            "value": {"event": "PAUSED", "message_template_language": "en"}}])))
        .unwrap_err();
        assert_eq!(
            error.field,
            "entry[0].changes[0].value.message_template_name"
        );
    }
}
