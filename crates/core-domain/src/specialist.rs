use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::text::{TextKind, first_hidden_char, hidden_char_message};
use crate::{DomainError, SpecialistId, ValidationErrors};

/// The longest specialist name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest specialist description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// The longest system prompt, in characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 4000;
/// The largest `max_tokens` a specialist may ask for.
pub const MAX_MAX_TOKENS: u32 = 128_000;
/// `max_tokens` when a specialist does not say.
pub const DEFAULT_MAX_TOKENS: u32 = 2048;
const DEFAULT_TEMPERATURE: f64 = 0.7;
const MAX_MODEL_CHARS: usize = 200;
const MAX_TEMPERATURE: f64 = 2.0;
/// No real model costs more than this per million tokens; a larger figure is a typo.
const MAX_PRICE_PER_1M: f64 = 10_000.0;

/// The upstream API family a specialist talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions, and every server that speaks it (xAI Grok, vLLM, Ollama, ...).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini.
    Google,
    /// The built-in deterministic provider: no network, no key.
    Mock,
}

impl ProviderKind {
    /// Every provider, in a stable order.
    pub const ALL: [Self; 4] = [Self::OpenAi, Self::Anthropic, Self::Google, Self::Mock];

    /// The lower-case name used in config, JSON and the usage log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Google => "google",
            Self::Mock => "mock",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| DomainError::UnknownProvider(s.to_owned()))
    }
}

/// A price in USD per million tokens, as entered by people (config files, the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PricingDraft {
    /// USD per million input tokens.
    pub input_per_1m: f64,
    /// USD per million output tokens.
    pub output_per_1m: f64,
}

/// A validated price in USD per million tokens: finite and not negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PricingDraft")]
pub struct ModelPricing {
    input_per_1m: f64,
    output_per_1m: f64,
}

impl ModelPricing {
    /// A price, or the errors that make it unusable (reported under `field_prefix`).
    pub fn new(draft: PricingDraft, field_prefix: &str) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        for (name, value) in [
            ("input_per_1m", draft.input_per_1m),
            ("output_per_1m", draft.output_per_1m),
        ] {
            if !value.is_finite() || !(0.0..=MAX_PRICE_PER_1M).contains(&value) {
                errors.push(
                    format!("{field_prefix}{name}"),
                    format!("must be a number of USD between 0 and {MAX_PRICE_PER_1M}"),
                );
            }
        }
        errors.into_result(Self {
            input_per_1m: draft.input_per_1m,
            output_per_1m: draft.output_per_1m,
        })
    }

    /// USD per million input tokens.
    pub fn input_per_1m(&self) -> f64 {
        self.input_per_1m
    }

    /// USD per million output tokens.
    pub fn output_per_1m(&self) -> f64 {
        self.output_per_1m
    }
}

impl TryFrom<PricingDraft> for ModelPricing {
    type Error = ValidationErrors;
    fn try_from(draft: PricingDraft) -> Result<Self, Self::Error> {
        Self::new(draft, "")
    }
}

/// The editable fields of a specialist as a caller or a file supplies them, before validation.
///
/// Types are deliberately loose (`provider` is text, `max_tokens` is signed) so that a wrong
/// value becomes a field error in the full list rather than a parse failure on the first one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialistDraft {
    /// Display name; unique across the catalogue as [`crate::comparable_name`] compares names.
    pub name: String,
    /// What the specialist is for.
    #[serde(default)]
    pub description: String,
    /// `openai`, `anthropic`, `google` or `mock`.
    pub provider: String,
    /// The upstream model name.
    pub model: String,
    /// An OpenAI-compatible server to call instead of the provider's configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The instructions sent before every conversation.
    pub system_prompt: String,
    /// Sampling temperature, 0.0 to 2.0.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// The most tokens an answer may have, 1 to 128000.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: i64,
    /// The specialist's own price, which wins over the price table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingDraft>,
}

fn default_temperature() -> f64 {
    DEFAULT_TEMPERATURE
}

fn default_max_tokens() -> i64 {
    i64::from(DEFAULT_MAX_TOKENS)
}

impl SpecialistDraft {
    /// Checks every intrinsic rule and returns all broken ones at once.
    ///
    /// Rules that depend on deployment policy (which base URLs may be called, name uniqueness)
    /// belong to the catalogue, not here.
    pub fn validate(&self) -> Result<SpecialistSpec, ValidationErrors> {
        let mut errors = ValidationErrors::new();

        let name = self.name.trim();
        if name.is_empty() {
            errors.push("name", "must not be empty");
        } else if let Some(message) = hidden_char_problem(name, TextKind::Label) {
            errors.push("name", message);
        } else if name.chars().count() > MAX_NAME_CHARS {
            errors.push(
                "name",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            );
        }
        if let Some(message) = hidden_char_problem(&self.description, TextKind::Line) {
            errors.push("description", message);
        } else if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            errors.push(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            );
        }

        let provider = match self.provider.parse::<ProviderKind>() {
            Ok(kind) => Some(kind),
            Err(_) => {
                errors.push("provider", "must be one of openai, anthropic, google, mock");
                None
            }
        };

        let model = self.model.trim();
        if model.is_empty() {
            errors.push("model", "must not be empty");
        } else if model.chars().count() > MAX_MODEL_CHARS {
            errors.push(
                "model",
                format!("must be at most {MAX_MODEL_CHARS} characters"),
            );
        } else if !model.chars().all(is_model_char) {
            // Model names end up in URL paths (Gemini's `models/{model}:generateContent`), so
            // nothing that could change the path gets in.
            errors.push(
                "model",
                "may contain only letters, digits and . _ - : / @ +",
            );
        }

        let base_url = match self.base_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => match hidden_char_problem(raw, TextKind::Label)
                .map_or_else(|| check_base_url_shape(raw).map_err(str::to_owned), Err)
            {
                Ok(()) => Some(raw.trim_end_matches('/').to_owned()),
                Err(message) => {
                    errors.push("base_url", message);
                    None
                }
            },
        };
        if base_url.is_some() && provider.is_some_and(|p| p != ProviderKind::OpenAi) {
            errors.push(
                "base_url",
                "is only supported for the openai provider (OpenAI-compatible servers)",
            );
        }

        if self.system_prompt.trim().is_empty() {
            errors.push("system_prompt", "must not be empty");
        } else if let Some(message) = hidden_char_problem(&self.system_prompt, TextKind::Paragraphs)
        {
            errors.push("system_prompt", message);
        } else if self.system_prompt.chars().count() > MAX_SYSTEM_PROMPT_CHARS {
            errors.push(
                "system_prompt",
                format!("must be at most {MAX_SYSTEM_PROMPT_CHARS} characters"),
            );
        }

        if !self.temperature.is_finite() || !(0.0..=MAX_TEMPERATURE).contains(&self.temperature) {
            errors.push("temperature", "must be between 0.0 and 2.0");
        }

        let max_tokens = match u32::try_from(self.max_tokens) {
            Ok(n) if (1..=MAX_MAX_TOKENS).contains(&n) => n,
            _ => {
                errors.push(
                    "max_tokens",
                    format!("must be between 1 and {MAX_MAX_TOKENS}"),
                );
                DEFAULT_MAX_TOKENS
            }
        };

        let pricing = match self.pricing {
            None => None,
            Some(draft) => match ModelPricing::new(draft, "pricing.") {
                Ok(pricing) => Some(pricing),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
        };

        match provider {
            Some(provider) if errors.is_empty() => Ok(SpecialistSpec {
                name: name.to_owned(),
                description: self.description.clone(),
                provider,
                model: model.to_owned(),
                base_url,
                system_prompt: self.system_prompt.clone(),
                temperature: self.temperature,
                max_tokens,
                pricing,
            }),
            _ => Err(errors),
        }
    }
}

/// Why `text` cannot be a field of this `kind`, if it holds a character it may not.
fn hidden_char_problem(text: &str, kind: TextKind) -> Option<String> {
    first_hidden_char(text, kind).map(|(position, c)| hidden_char_message(position, c, kind))
}

fn is_model_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+')
}

/// The shape every base URL must have, whatever the deployment allows: an absolute http(s) URL
/// with a host, no credentials, no query and no fragment.
fn check_base_url_shape(raw: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(raw).map_err(|_| "must be an absolute URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use https (or http where allowed)");
    }
    if url.host().is_none() {
        return Err("must name a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; configure API keys instead");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not contain a query or fragment");
    }
    Ok(())
}

/// The validated editable fields of a specialist. Only [`SpecialistDraft::validate`] makes one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecialistSpec {
    name: String,
    description: String,
    provider: ProviderKind,
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    system_prompt: String,
    temperature: f64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<ModelPricing>,
}

/// A system prompt that was replaced, kept so a change can be understood or undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRevision {
    /// The prompt as it was.
    pub system_prompt: String,
    /// The specialist version that had this prompt.
    pub version: u32,
    /// When it was replaced.
    #[serde(deserialize_with = "deserialize_timestamp")]
    pub replaced_at: DateTime<Utc>,
}

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
    #[serde(default)]
    pub prompt_history: Vec<PromptRevision>,
}

fn first_version() -> i64 {
    1
}

/// An AI persona: provider, model, system prompt, parameters and pricing, with its history.
///
/// Built only from validated parts, so holding one means every rule of
/// [`SpecialistDraft::validate`] holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Specialist {
    id: SpecialistId,
    #[serde(flatten)]
    spec: SpecialistSpec,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: u32,
    prompt_history: Vec<PromptRevision>,
}

impl Specialist {
    /// A new specialist at version 1 with no history.
    pub fn new(id: SpecialistId, spec: SpecialistSpec, now: DateTime<Utc>) -> Self {
        Self {
            id,
            spec,
            created_at: now,
            updated_at: now,
            version: 1,
            prompt_history: Vec::new(),
        }
    }

    /// Validates a stored record, reporting every broken rule. `now` fills missing timestamps.
    pub fn from_record(
        record: SpecialistRecord,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let id = SpecialistId::parse(record.id)
            .map_err(|e| errors.push("id", e.to_string()))
            .ok();
        let version = u32::try_from(record.version)
            .ok()
            .filter(|v| *v >= 1)
            .or_else(|| {
                errors.push("version", "must be a positive integer");
                None
            });
        let spec = record.draft.validate().map_err(|e| errors.extend(e)).ok();
        match (id, version, spec) {
            (Some(id), Some(version), Some(spec)) if errors.is_empty() => {
                let created_at = record.created_at.unwrap_or(now);
                Ok(Self {
                    id,
                    spec,
                    created_at,
                    updated_at: record.updated_at.unwrap_or(created_at),
                    version,
                    prompt_history: record.prompt_history,
                })
            }
            _ => Err(errors),
        }
    }

    /// The next version of this specialist with new fields, or `None` when `spec` is what it
    /// has already (an empty PATCH, a PUT of what `GET` returned): a change that changes nothing
    /// makes no version. A changed system prompt is archived in the prompt history with the
    /// version that had it; the history keeps the newest `max_prompt_history` prompts (0: none).
    pub fn revise(
        &self,
        spec: SpecialistSpec,
        now: DateTime<Utc>,
        max_prompt_history: usize,
    ) -> Option<Self> {
        if spec == self.spec {
            return None;
        }
        let mut prompt_history = self.prompt_history.clone();
        if spec.system_prompt != self.spec.system_prompt {
            prompt_history.push(PromptRevision {
                system_prompt: self.spec.system_prompt.clone(),
                version: self.version,
                replaced_at: now,
            });
        }
        let excess = prompt_history.len().saturating_sub(max_prompt_history);
        prompt_history.drain(..excess);
        Some(Self {
            id: self.id.clone(),
            spec,
            created_at: self.created_at,
            updated_at: now,
            version: self.version.saturating_add(1),
            prompt_history,
        })
    }

    /// The editable fields as a draft (to change some and validate again).
    pub fn to_draft(&self) -> SpecialistDraft {
        SpecialistDraft {
            name: self.spec.name.clone(),
            description: self.spec.description.clone(),
            provider: self.spec.provider.as_str().to_owned(),
            model: self.spec.model.clone(),
            base_url: self.spec.base_url.clone(),
            system_prompt: self.spec.system_prompt.clone(),
            temperature: self.spec.temperature,
            max_tokens: i64::from(self.spec.max_tokens),
            pricing: self.spec.pricing.map(|p| PricingDraft {
                input_per_1m: p.input_per_1m,
                output_per_1m: p.output_per_1m,
            }),
        }
    }

    /// The id.
    pub fn id(&self) -> &SpecialistId {
        &self.id
    }
    /// The display name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// What the specialist is for.
    pub fn description(&self) -> &str {
        &self.spec.description
    }
    /// The upstream API family.
    pub fn provider(&self) -> ProviderKind {
        self.spec.provider
    }
    /// The upstream model name.
    pub fn model(&self) -> &str {
        &self.spec.model
    }
    /// The OpenAI-compatible server to call instead of the configured one, if any.
    pub fn base_url(&self) -> Option<&str> {
        self.spec.base_url.as_deref()
    }
    /// The instructions sent before every conversation.
    pub fn system_prompt(&self) -> &str {
        &self.spec.system_prompt
    }
    /// Sampling temperature.
    pub fn temperature(&self) -> f64 {
        self.spec.temperature
    }
    /// The most tokens an answer may have.
    pub fn max_tokens(&self) -> u32 {
        self.spec.max_tokens
    }
    /// The specialist's own price, if it has one.
    pub fn pricing(&self) -> Option<&ModelPricing> {
        self.spec.pricing.as_ref()
    }
    /// When it was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
    /// Starts at 1, +1 on every update.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// Previous system prompts, oldest first.
    pub fn prompt_history(&self) -> &[PromptRevision] {
        &self.prompt_history
    }
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

    use super::*;

    fn draft() -> SpecialistDraft {
        SpecialistDraft {
            name: "Financial Analyst".into(),
            description: "Analyzes financial data".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            base_url: None,
            system_prompt: "You analyse numbers.".into(),
            temperature: 0.3,
            max_tokens: 2048,
            pricing: Some(PricingDraft {
                input_per_1m: 2.5,
                output_per_1m: 10.0,
            }),
        }
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors().iter().map(|e| e.field.as_str()).collect()
    }

    /// Specialist `fa` made of [`draft`] at `created_at`.
    fn specialist(created_at: DateTime<Utc>) -> Specialist {
        Specialist::new(
            SpecialistId::parse("fa").unwrap(),
            draft().validate().unwrap(),
            created_at,
        )
    }

    /// The version after `s` with `changed` (which must change something).
    fn revised(
        s: &Specialist,
        changed: SpecialistDraft,
        at: DateTime<Utc>,
        max_prompt_history: usize,
    ) -> Specialist {
        s.revise(changed.validate().unwrap(), at, max_prompt_history)
            .unwrap()
    }

    #[test]
    fn valid_draft_passes() {
        let spec = draft().validate().unwrap();
        assert_eq!(spec.provider, ProviderKind::OpenAi);
        assert_eq!(spec.max_tokens, 2048);
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let bad = SpecialistDraft {
            name: " ".into(),
            description: "d".repeat(501),
            provider: "cohere".into(),
            model: "bad model!".into(),
            base_url: Some("ftp://example.com".into()),
            system_prompt: "p".repeat(4001),
            temperature: 2.5,
            max_tokens: 0,
            pricing: Some(PricingDraft {
                input_per_1m: -1.0,
                output_per_1m: f64::NAN,
            }),
        };
        let errors = bad.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "name",
                "description",
                "provider",
                "model",
                "base_url",
                "system_prompt",
                "temperature",
                "max_tokens",
                "pricing.input_per_1m",
                "pricing.output_per_1m",
            ]
        );
    }

    #[test]
    fn hidden_characters_are_refused_in_every_text_field_one_error_each() {
        let bad = SpecialistDraft {
            name: "De\u{200B}mo".into(),
            description: "Looks\u{0}fine".into(),
            model: "gpt-4o\u{202E}".into(),
            base_url: Some("https://api.x.ai/v\n1".into()),
            system_prompt: "Be kind.\u{E0049}\u{E0047}\u{E004E}".into(),
            ..draft()
        };
        let errors = bad.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            ["name", "description", "model", "base_url", "system_prompt"]
        );
        assert!(
            errors.errors()[0].message.contains("U+200B at character 3"),
            "{}",
            errors.errors()[0].message
        );

        let fine = SpecialistDraft {
            name: "Straße ✓".into(),
            description: "👨\u{200D}💻 for developers".into(),
            system_prompt: "Rules:\n\t1. Be brief.\r\n\t2. Be kind.".into(),
            ..draft()
        };
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn limits_are_inclusive() {
        let mut d = draft();
        d.name = "n".repeat(MAX_NAME_CHARS);
        d.description = "d".repeat(MAX_DESCRIPTION_CHARS);
        d.system_prompt = "p".repeat(MAX_SYSTEM_PROMPT_CHARS);
        d.temperature = 2.0;
        d.max_tokens = i64::from(MAX_MAX_TOKENS);
        assert!(d.validate().is_ok());
        d.temperature = 0.0;
        d.max_tokens = 1;
        assert!(d.validate().is_ok());
        d.max_tokens = i64::from(MAX_MAX_TOKENS) + 1;
        assert_eq!(fields(&d.validate().unwrap_err()), ["max_tokens"]);
        d.max_tokens = -5;
        assert_eq!(fields(&d.validate().unwrap_err()), ["max_tokens"]);
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let mut d = draft();
        d.name = "é".repeat(MAX_NAME_CHARS);
        assert!(d.validate().is_ok());
    }

    #[test]
    fn base_url_shape_is_checked_and_trailing_slash_dropped() {
        let mut d = draft();
        d.base_url = Some("https://api.x.ai/v1/".into());
        assert_eq!(
            d.validate().unwrap().base_url.as_deref(),
            Some("https://api.x.ai/v1")
        );
        for bad in [
            "not a url",
            "https://user:pw@api.x.ai/v1",
            "https://api.x.ai/v1?key=1",
            "file:///etc/passwd",
        ] {
            d.base_url = Some(bad.into());
            assert_eq!(fields(&d.validate().unwrap_err()), ["base_url"], "{bad}");
        }
        d.base_url = Some("https://api.x.ai/v1".into());
        d.provider = "anthropic".into();
        assert_eq!(fields(&d.validate().unwrap_err()), ["base_url"]);
    }

    #[test]
    fn model_names_of_real_servers_are_accepted() {
        let mut d = draft();
        for model in [
            "llama3.1:8b",
            "meta-llama/Llama-3-70b",
            "claude-3-5-sonnet@20240620",
        ] {
            d.model = model.into();
            assert!(d.validate().is_ok(), "{model}");
        }
    }

    #[test]
    fn record_with_naive_timestamps_from_the_original_loads() {
        let json = r#"{
            "id": "general", "name": "General Assistant", "description": "",
            "provider": "openai", "model": "gpt-4o", "system_prompt": "Be helpful.",
            "temperature": 0.7, "max_tokens": 2048,
            "pricing": {"input_per_1m": 2.5, "output_per_1m": 10.0},
            "created_at": "2024-01-15T10:30:00.123456", "updated_at": "2024-01-16T08:00:00Z",
            "version": 3, "prompt_history": []
        }"#;
        let record: SpecialistRecord = serde_json::from_str(json).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = Specialist::from_record(record, now).unwrap();
        assert_eq!(s.version(), 3);
        assert_eq!(
            s.created_at(),
            Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap()
                + chrono::Duration::microseconds(123_456)
        );
        assert_eq!(
            s.updated_at(),
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
        let errors = Specialist::from_record(record, Utc::now()).unwrap_err();
        assert_eq!(fields(&errors), ["id", "version", "temperature"]);
    }

    #[test]
    fn revise_bumps_version_and_archives_changed_prompt() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let s = specialist(t0);
        let same_prompt = revised(
            &s,
            SpecialistDraft {
                temperature: 0.1,
                ..draft()
            },
            t1,
            100,
        );
        assert_eq!(same_prompt.version(), 2);
        assert!(same_prompt.prompt_history().is_empty());

        let new_prompt = revised(
            &same_prompt,
            SpecialistDraft {
                system_prompt: "New prompt".into(),
                ..draft()
            },
            t1,
            100,
        );
        assert_eq!(new_prompt.version(), 3);
        assert_eq!(new_prompt.created_at(), t0);
        assert_eq!(
            new_prompt.prompt_history(),
            [PromptRevision {
                system_prompt: "You analyse numbers.".into(),
                version: 2,
                replaced_at: t1,
            }]
        );
    }

    #[test]
    fn a_revision_that_changes_nothing_is_none() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = specialist(t0);
        let same = s.to_draft().validate().unwrap();
        assert_eq!(s.revise(same, Utc::now(), 100), None);
        // Spelled differently, the same after validation (surrounding spaces, a trailing /).
        let mut respelled = s.to_draft();
        respelled.name = format!("  {}  ", respelled.name);
        assert_eq!(
            s.revise(respelled.validate().unwrap(), Utc::now(), 100),
            None
        );
    }

    #[test]
    fn prompt_history_keeps_the_newest_entries_up_to_the_limit() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut s = specialist(t0);
        for n in 1..=5 {
            let changed = SpecialistDraft {
                system_prompt: format!("Prompt {n}"),
                ..draft()
            };
            s = revised(&s, changed, t0, 3);
        }
        let kept: Vec<u32> = s.prompt_history().iter().map(|r| r.version).collect();
        assert_eq!(kept, [3, 4, 5], "the oldest dropped first");
        assert_eq!(s.prompt_history()[2].system_prompt, "Prompt 4");
        assert_eq!(s.version(), 6);

        let changed = SpecialistDraft {
            system_prompt: "Prompt 6".into(),
            ..draft()
        };
        let none_kept = revised(&s, changed, t0, 0);
        assert!(none_kept.prompt_history().is_empty(), "0 keeps no history");
    }

    #[test]
    fn to_draft_round_trips_through_validation() {
        let spec = draft().validate().unwrap();
        let s = Specialist::new(SpecialistId::parse("x").unwrap(), spec.clone(), Utc::now());
        assert_eq!(s.to_draft().validate().unwrap(), spec);
    }

    #[test]
    fn serialises_in_the_original_file_format() {
        let s = specialist(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(value["id"], "fa");
        assert_eq!(value["provider"], "openai");
        assert_eq!(value["pricing"]["input_per_1m"], 2.5);
        assert_eq!(value["version"], 1);
        assert_eq!(value["created_at"], "2026-01-01T00:00:00Z");
        assert!(value.get("base_url").is_none());
        // And reads back as the same specialist.
        let record: SpecialistRecord = serde_json::from_value(value).unwrap();
        assert_eq!(Specialist::from_record(record, Utc::now()).unwrap(), s);
    }
}
