//! The catalogue file's record of one specialist, as the original service wrote it.

use std::num::NonZeroU32;

use chrono::{DateTime, NaiveDateTime, Utc};
use core_domain::{PromptRevision, Specialist, SpecialistDraft, SpecialistId, ValidationErrors};
use serde::{Deserialize, Deserializer, Serialize};

/// A specialist as stored in the catalogue file: the draft plus identity and history.
///
/// Timestamps may be written with or without a UTC offset (the original service wrote naive
/// ISO-8601 UTC times); missing ones are filled with the load time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialistRecord {
    /// The specialist's id.
    pub id: String,
    /// Its editable fields.
    #[serde(flatten)]
    pub draft: SpecialistDraft,
    /// When it was created.
    #[serde(default, deserialize_with = "deserialize_optional_timestamp")]
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed.
    #[serde(default, deserialize_with = "deserialize_optional_timestamp")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Starts at 1, +1 on every update.
    #[serde(default = "first_version")]
    pub version: i64,
    /// Previous system prompts, oldest first.
    #[serde(default, deserialize_with = "deserialize_prompt_history")]
    pub prompt_history: Vec<PromptRevision>,
}

fn first_version() -> i64 {
    1
}

impl SpecialistRecord {
    /// Validates the record, reporting every broken rule. `now` fills missing timestamps.
    pub fn into_specialist(self, now: DateTime<Utc>) -> Result<Specialist, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let id = SpecialistId::parse(self.id)
            .map_err(|e| errors.push("id", e.to_string()))
            .ok();
        let version = u32::try_from(self.version)
            .ok()
            .and_then(NonZeroU32::new)
            .or_else(|| {
                errors.push("version", "must be a positive integer");
                None
            });
        let spec = self.draft.validate().map_err(|e| errors.extend(e)).ok();
        match (id, version, spec) {
            (Some(id), Some(version), Some(spec)) if errors.is_empty() => {
                let created_at = self.created_at.unwrap_or(now);
                Ok(Specialist::restore(
                    id,
                    spec,
                    created_at,
                    self.updated_at.unwrap_or(created_at),
                    version,
                    self.prompt_history,
                ))
            }
            _ => Err(errors),
        }
    }
}

/// A [`PromptRevision`] as the file holds it, its timestamp in either spelling.
#[derive(Deserialize)]
struct PromptRevisionRecord {
    system_prompt: String,
    version: u32,
    #[serde(deserialize_with = "deserialize_timestamp")]
    replaced_at: DateTime<Utc>,
}

fn deserialize_prompt_history<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<PromptRevision>, D::Error> {
    let records = Vec::<PromptRevisionRecord>::deserialize(d)?;
    Ok(records
        .into_iter()
        .map(|r| PromptRevision {
            system_prompt: r.system_prompt,
            version: r.version,
            replaced_at: r.replaced_at,
        })
        .collect())
}

fn deserialize_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let raw = String::deserialize(d)?;
    parse_timestamp(&raw).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid timestamp '{raw}': expected ISO-8601, e.g. 2025-01-31T12:00:00Z"
        ))
    })
}

fn deserialize_optional_timestamp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(raw) => parse_timestamp(&raw).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid timestamp '{raw}': expected ISO-8601, e.g. 2025-01-31T12:00:00Z"
            ))
        }),
    }
}

/// RFC 3339, or a naive ISO-8601 time taken as UTC (what Python's `datetime.utcnow()` writes).
fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use core_domain::PricingDraft;
    use serde_json::json;

    use super::*;

    fn draft() -> SpecialistDraft {
        SpecialistDraft {
            name: "Financial Analyst".into(),
            description: "Analyzes financial data".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            base_url: None,
            system_prompt: "You analyse numbers.".into(),
            allow_tools: true,
            allow_images: true,
            temperature: 0.3,
            max_tokens: 2048,
            pricing: Some(PricingDraft {
                input_per_1m: 2.5,
                output_per_1m: 10.0,
                ..PricingDraft::default()
            }),
            fallbacks: vec![],
            continue_streams: true,
            aliases: Vec::new(),
            kind: "chat".into(),
            dimensions: None,
        }
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors().iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn record_with_naive_timestamps_from_the_original_loads() {
        let json = r#"{
            "id": "general", "name": "General Assistant", "description": "",
            "provider": "openai", "model": "gpt-4o", "system_prompt": "Be helpful.",
            "temperature": 0.7, "max_tokens": 2048,
            "pricing": {"input_per_1m": 2.5, "output_per_1m": 10.0},
            "created_at": "2024-01-15T10:30:00.123456", "updated_at": "2024-01-16T08:00:00Z",
            "version": 3, "prompt_history": [
                {"system_prompt": "Be nice.", "version": 2, "replaced_at": "2024-01-16T08:00:00"}
            ]
        }"#;
        let record: SpecialistRecord = serde_json::from_str(json).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = record.into_specialist(now).unwrap();
        assert_eq!(s.version(), 3);
        assert!(
            s.allow_tools() && s.allow_images() && s.continue_streams(),
            "a file written before the fields allows all three"
        );
        assert!(s.fallbacks().is_empty(), "and has no fallbacks");
        assert_eq!(
            s.created_at(),
            Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap()
                + chrono::Duration::microseconds(123_456)
        );
        assert_eq!(
            s.updated_at(),
            Utc.with_ymd_and_hms(2024, 1, 16, 8, 0, 0).unwrap()
        );
        assert_eq!(
            s.prompt_history()[0].replaced_at,
            Utc.with_ymd_and_hms(2024, 1, 16, 8, 0, 0).unwrap()
        );
    }

    #[test]
    fn record_reports_id_and_version_with_field_errors() {
        let record = SpecialistRecord {
            id: "has space".into(),
            draft: SpecialistDraft {
                temperature: -1.0,
                ..draft()
            },
            created_at: None,
            updated_at: None,
            version: 0,
            prompt_history: vec![],
        };
        let errors = record.into_specialist(Utc::now()).unwrap_err();
        assert_eq!(fields(&errors), ["id", "version", "temperature"]);
    }

    #[test]
    fn serialises_in_the_original_file_format() {
        let created = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let first = Specialist::new(
            SpecialistId::parse("fa").unwrap(),
            draft().validate().unwrap(),
            created,
        );
        let new_prompt = SpecialistDraft {
            system_prompt: "New prompt".into(),
            allow_tools: false,
            ..draft()
        };
        let s = first
            .revise(new_prompt.validate().unwrap(), created, 10)
            .unwrap();
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(value["id"], "fa");
        assert_eq!(value["provider"], "openai");
        assert_eq!(value["pricing"]["input_per_1m"], 2.5);
        assert_eq!(value["version"], 2);
        assert_eq!(value["prompt_history"][0]["version"], 1);
        assert_eq!(value["created_at"], "2026-01-01T00:00:00Z");
        assert!(value.get("base_url").is_none());
        assert!(value.get("fallbacks").is_none(), "none, none written");
        assert_eq!(value["continue_streams"], true);
        assert_eq!(
            (&value["allow_tools"], &value["allow_images"]),
            (&json!(false), &json!(true))
        );
        // And reads back as the same specialist.
        let record: SpecialistRecord = serde_json::from_value(value).unwrap();
        assert_eq!(record.into_specialist(Utc::now()).unwrap(), s);
    }

    #[test]
    fn fallbacks_and_continue_streams_are_written_and_read_back() {
        let with_fallbacks = SpecialistDraft {
            fallbacks: vec![
                core_domain::TargetDraft {
                    provider: "anthropic".into(),
                    model: "claude-sonnet-4".into(),
                    base_url: None,
                },
                core_domain::TargetDraft {
                    provider: "openai".into(),
                    model: "llama3.1:8b".into(),
                    base_url: Some("https://llm.example.com/v1/".into()),
                },
            ],
            continue_streams: false,
            aliases: Vec::new(),
            kind: "chat".into(),
            dimensions: None,
            ..draft()
        };
        let s = Specialist::new(
            SpecialistId::parse("fa").unwrap(),
            with_fallbacks.validate().unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        );
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(
            value["fallbacks"],
            json!([
                {"provider": "anthropic", "model": "claude-sonnet-4"},
                {"provider": "openai", "model": "llama3.1:8b", "base_url": "https://llm.example.com/v1"}
            ])
        );
        assert_eq!(value["continue_streams"], false);
        let record: SpecialistRecord = serde_json::from_value(value).unwrap();
        assert_eq!(record.into_specialist(Utc::now()).unwrap(), s);
    }

    #[test]
    fn a_bad_fallback_in_a_record_is_named_by_its_path() {
        let record: SpecialistRecord = serde_json::from_value(json!({
            "id": "fa", "name": "FA", "provider": "openai", "model": "gpt-4o",
            "system_prompt": "Help.",
            "fallbacks": [{"provider": "openai", "model": "gpt-4o"}, {"provider": "x", "model": "m"}]
        }))
        .unwrap();
        let errors = record.into_specialist(Utc::now()).unwrap_err();
        assert_eq!(fields(&errors), ["fallbacks[0]", "fallbacks[1].provider"]);
    }
}
