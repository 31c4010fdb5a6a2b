//! What a tenant asks for when it creates a campaign, and the checks that run before anything
//! is written: every refusal is a 4xx naming the field.

use crate::engine::error::ApiError;
use crate::engine::policy::valid_contact;
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

/// Contacts in an explicit audience at most (larger audiences: `recent`).
pub const MAX_LIST: usize = 10_000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignIn {
    /// For people, 1 to 200 characters.
    pub name: String,
    pub audience: Audience,
    pub content: Content,
    /// Absent: a draft, started with `POST .../runs`.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// IANA zone of a weekly schedule; default: the tenant's policy zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub pacing: Pacing,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Audience {
    /// Every contact with an inbound message in the last `days` days (1 to 365), when the run starts.
    Recent { days: i32 },
    /// These contacts (1 to 10,000).
    List { contacts: Vec<String> },
    /// A saved segment (`PUT .../pulse/segments/{name}`), read when each run starts.
    Segment { name: String },
}

/// Exactly one of `template` and `personalized`.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// One APPROVED template of the tenant's catalog for every contact, with its body parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<CampaignTemplate>,
    /// Each contact's own message, chosen when its batch is sent by the pulse-content logic
    /// (`POST /routes/context/pulse-content`): an APPROVED template with parameters from the
    /// contact's history, or free text while the contact's 24-hour window is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personalized: Option<Personalized>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Personalized {
    /// The campaign's goal, 1 to 2000 characters.
    pub brief: String,
    /// Only templates of this language (`en` matches `en_US`; an exact match wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// What a campaign sends, once checked.
pub enum Checked<'a> {
    Template(&'a CampaignTemplate),
    Personalized {
        brief: &'a str,
        language: Option<&'a str>,
    },
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignTemplate {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub params: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// Once, at this instant (RFC 3339, in the future).
    Once { at: DateTime<Utc> },
    /// Every week on `weekday` (`monday`..`sunday`) at local `time` (`HH:MM`) in the time zone.
    Weekly { weekday: String, time: String },
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pacing {
    /// Messages queued per minute (1 to 60000; default 600).
    pub per_minute: i32,
}

impl Default for Pacing {
    fn default() -> Self {
        Self { per_minute: 600 }
    }
}

/// A weekly schedule as stored: PostgreSQL's day number (0 = Sunday) and the local time.
pub struct Weekly {
    pub day: i16,
    pub time: NaiveTime,
}

/// A campaign's checked input: the audience list normalised, the weekly schedule parsed and
/// the content.
pub struct Valid<'a> {
    pub contacts: Vec<String>,
    pub weekly: Option<Weekly>,
    pub content: Checked<'a>,
}

/// Checks everything that needs no database.
pub fn validate(campaign: &CampaignIn, now: DateTime<Utc>) -> Result<Valid<'_>, ApiError> {
    if campaign.name.trim().is_empty() || campaign.name.chars().count() > 200 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 200 characters",
        ));
    }
    let contacts = match &campaign.audience {
        Audience::Recent { days } if !(1..=365).contains(days) => {
            return Err(ApiError::invalid_field("audience.days", "must be 1 to 365"));
        }
        Audience::Recent { .. } => Vec::new(),
        Audience::List { contacts } if contacts.is_empty() || contacts.len() > MAX_LIST => {
            return Err(ApiError::invalid_field(
                "audience.contacts",
                format!("must hold 1 to {MAX_LIST} contacts (an empty audience sends nothing)"),
            ));
        }
        Audience::Segment { name } if !super::segments::valid_name(name) => {
            return Err(ApiError::invalid_field(
                "audience.name",
                "must be a segment name: lowercase letters, digits, `-` and `_`, at most 64",
            ));
        }
        Audience::Segment { .. } => Vec::new(),
        Audience::List { contacts } => contacts
            .iter()
            .enumerate()
            .map(|(i, c)| valid_contact(&format!("audience.contacts[{i}]"), c))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let content = content(&campaign.content)?;
    if !(1..=60_000).contains(&campaign.pacing.per_minute) {
        return Err(ApiError::invalid_field(
            "pacing.per_minute",
            "must be 1 to 60000",
        ));
    }
    let weekly = match &campaign.schedule {
        Some(Schedule::Once { at }) if *at <= now => {
            return Err(ApiError::invalid_field("schedule.at", "is in the past"));
        }
        Some(Schedule::Weekly { weekday, time }) => Some(Weekly {
            day: weekday_number(weekday).ok_or_else(|| {
                ApiError::invalid_field("schedule.weekday", "must be monday to sunday")
            })?,
            time: NaiveTime::parse_from_str(time, "%H:%M").map_err(|_| {
                ApiError::invalid_field("schedule.time", "must be a local time HH:MM")
            })?,
        }),
        _ => None,
    };
    Ok(Valid {
        contacts,
        weekly,
        content,
    })
}

fn content(content: &Content) -> Result<Checked<'_>, ApiError> {
    match (&content.template, &content.personalized) {
        (Some(template), None) => {
            if template.name.is_empty() || template.name.len() > 512 {
                return Err(ApiError::invalid_field(
                    "content.template.name",
                    "must be 1 to 512 characters",
                ));
            }
            if let Some(index) = template
                .params
                .iter()
                .position(|p| crate::ai::templates::param_problem(p).is_some())
            {
                return Err(ApiError::invalid_field(
                    &format!("content.template.params[{index}]"),
                    "must be 1 to 1024 characters without new lines, tabs or 5 spaces in a row",
                ));
            }
            Ok(Checked::Template(template))
        }
        (None, Some(personalized)) => {
            let brief = personalized.brief.trim();
            if brief.is_empty() || brief.chars().count() > crate::ai::pulse::MAX_BRIEF_CHARS {
                return Err(ApiError::invalid_field(
                    "content.personalized.brief",
                    "must be 1 to 2000 characters",
                ));
            }
            let language = personalized.language.as_deref();
            if language.is_some_and(|l| !crate::ai::pulse::valid_language(l)) {
                return Err(ApiError::invalid_field(
                    "content.personalized.language",
                    "must be a language code such as en or en_US",
                ));
            }
            Ok(Checked::Personalized { brief, language })
        }
        _ => Err(ApiError::invalid_field(
            "content",
            "must hold either `template` (one template for everyone) or `personalized` (each contact's own message)",
        )),
    }
}

/// Weekday names in PostgreSQL's `dow` order (0 = Sunday).
pub const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// PostgreSQL's `dow`: 0 = Sunday.
fn weekday_number(name: &str) -> Option<i16> {
    WEEKDAYS
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .and_then(|i| i16::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(audience: Audience, schedule: Option<Schedule>) -> CampaignIn {
        CampaignIn {
            name: "weekly pulse".into(),
            audience,
            content: Content {
                template: Some(CampaignTemplate {
                    name: "weekly_offer".into(),
                    language: "en_US".into(),
                    params: vec!["Ana".into()],
                }),
                personalized: None,
            },
            schedule,
            time_zone: None,
            pacing: Pacing::default(),
        }
    }

    fn field(result: Result<Valid<'_>, ApiError>) -> String {
        result.err().map(|e| e.message).unwrap_or_default()
    }

    #[test]
    fn each_refusal_names_its_field() {
        let now = Utc::now();
        let past = Some(Schedule::Once {
            at: now - chrono::Duration::minutes(1),
        });
        assert!(
            field(validate(&campaign(Audience::Recent { days: 7 }, past), now))
                .starts_with("schedule.at")
        );
        assert!(
            field(validate(
                &campaign(Audience::List { contacts: vec![] }, None),
                now
            ))
            .starts_with("audience.contacts")
        );
        assert!(
            field(validate(
                &campaign(
                    Audience::List {
                        contacts: vec!["1".into(), "a b".into()]
                    },
                    None
                ),
                now
            ))
            .starts_with("audience.contacts[1]")
        );
        let weekly = Some(Schedule::Weekly {
            weekday: "someday".into(),
            time: "10:00".into(),
        });
        assert!(
            field(validate(
                &campaign(Audience::Recent { days: 7 }, weekly),
                now
            ))
            .starts_with("schedule.weekday")
        );
        assert!(
            field(validate(&campaign(Audience::Recent { days: 0 }, None), now))
                .starts_with("audience.days")
        );
    }

    #[test]
    fn content_is_one_template_or_personalized_never_both_or_neither() {
        let now = Utc::now();
        let mut both = campaign(Audience::Recent { days: 7 }, None);
        both.content.personalized = Some(Personalized {
            brief: "spring sale".into(),
            language: None,
        });
        assert!(field(validate(&both, now)).starts_with("content:"));
        let mut neither = campaign(Audience::Recent { days: 7 }, None);
        neither.content.template = None;
        assert!(field(validate(&neither, now)).starts_with("content:"));
        let mut personalized = both;
        personalized.content.template = None;
        assert!(matches!(
            validate(&personalized, now).unwrap().content,
            Checked::Personalized {
                brief: "spring sale",
                language: None
            }
        ));
        personalized.content.personalized = Some(Personalized {
            brief: "  ".into(),
            language: None,
        });
        assert!(field(validate(&personalized, now)).starts_with("content.personalized.brief"));
        personalized.content.personalized = Some(Personalized {
            brief: "sale".into(),
            language: Some("en US".into()),
        });
        assert!(field(validate(&personalized, now)).starts_with("content.personalized.language"));
    }

    #[test]
    fn weekly_schedules_use_postgres_day_numbers() {
        let weekly = Some(Schedule::Weekly {
            weekday: "Monday".into(),
            time: "09:30".into(),
        });
        let input = campaign(Audience::Recent { days: 7 }, weekly);
        let parsed = validate(&input, Utc::now()).unwrap().weekly.unwrap();
        assert_eq!(
            (parsed.day, parsed.time.to_string()),
            (1, "09:30:00".to_owned())
        );
    }
}
