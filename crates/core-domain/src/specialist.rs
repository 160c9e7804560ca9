use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::text::{TextKind, first_hidden_char, hidden_char_message};
use crate::{
    ChatMessage, ChatOptions, ModelPricing, PricingDraft, ProviderKind, SpecialistId,
    ValidationErrors,
};

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
/// `temperature` when a specialist does not say.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
const MAX_MODEL_CHARS: usize = 200;
const MAX_TEMPERATURE: f64 = 2.0;

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
    /// Whether callers may offer it tools or send tool calls and results (default: yes).
    #[serde(default = "allowed")]
    pub allow_tools: bool,
    /// Whether callers may send it images (default: yes).
    #[serde(default = "allowed")]
    pub allow_images: bool,
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

/// Tools and images are allowed unless a specialist turns them off, so a catalogue written
/// before the fields existed keeps working as it did.
fn allowed() -> bool {
    true
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
                allow_tools: self.allow_tools,
                allow_images: self.allow_images,
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
    allow_tools: bool,
    allow_images: bool,
    temperature: f64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<ModelPricing>,
}

/// Something a request asks of a specialist that the specialist turned off
/// ([`Specialist::first_not_allowed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAllowed {
    /// The caller's parameter, as the OpenAI door spells it (`tools` or `messages`).
    pub param: &'static str,
    /// What the specialist does not allow, completing "the specialist does not allow ...".
    pub what: &'static str,
}

/// A system prompt that was replaced, kept so a change can be understood or undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptRevision {
    /// The prompt as it was.
    pub system_prompt: String,
    /// The specialist version that had this prompt.
    pub version: u32,
    /// When it was replaced.
    pub replaced_at: DateTime<Utc>,
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
    /// A specialist as it was kept (a catalogue file, a database): its validated fields with the
    /// identity, timestamps, version and prompt history it had.
    pub fn restore(
        id: SpecialistId,
        spec: SpecialistSpec,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        version: NonZeroU32,
        prompt_history: Vec<PromptRevision>,
    ) -> Self {
        Self {
            id,
            spec,
            created_at,
            updated_at,
            version: version.get(),
            prompt_history,
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
            allow_tools: self.spec.allow_tools,
            allow_images: self.spec.allow_images,
            temperature: self.spec.temperature,
            max_tokens: i64::from(self.spec.max_tokens),
            pricing: self.spec.pricing.map(|p| p.to_draft()),
        }
    }

    /// The first thing in a request (its `options` and `messages`) that this specialist does
    /// not allow, if any: tools on offer or a tool choice (`tools`), tool calls or results in
    /// the conversation, or an image (`messages`). Checked before the provider's own check so a
    /// specialist's choice is what the caller hears about.
    pub fn first_not_allowed(
        &self,
        options: &ChatOptions,
        messages: &[ChatMessage],
    ) -> Option<NotAllowed> {
        if !self.spec.allow_tools {
            // Any tool parameter counts, `tool_choice: "none"` too: a caller relying on tools
            // should hear that this specialist has none rather than get an answer without them.
            if !options.tools.is_empty()
                || options.tool_choice.is_some()
                || options.parallel_tool_calls.is_some()
            {
                return Some(NotAllowed {
                    param: "tools",
                    what: "tools",
                });
            }
            if messages
                .iter()
                .any(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some())
            {
                return Some(NotAllowed {
                    param: "messages",
                    what: "tool calls or tool results in messages",
                });
            }
        }
        if !self.spec.allow_images && messages.iter().any(ChatMessage::has_images) {
            return Some(NotAllowed {
                param: "messages",
                what: "images in messages",
            });
        }
        None
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
    /// Whether callers may offer it tools or send tool calls and results.
    pub fn allow_tools(&self) -> bool {
        self.spec.allow_tools
    }
    /// Whether callers may send it images.
    pub fn allow_images(&self) -> bool {
        self.spec.allow_images
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
            allow_tools: true,
            allow_images: true,
            temperature: 0.3,
            max_tokens: 2048,
            pricing: Some(PricingDraft {
                input_per_1m: 2.5,
                output_per_1m: 10.0,
                ..PricingDraft::default()
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
            allow_tools: false,
            allow_images: true,
            temperature: 2.5,
            max_tokens: 0,
            pricing: Some(PricingDraft {
                input_per_1m: -1.0,
                output_per_1m: f64::NAN,
                ..PricingDraft::default()
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
    fn tools_and_images_are_allowed_unless_turned_off() {
        let written_before_the_fields: SpecialistDraft =
            serde_json::from_value(serde_json::json!({
                "name": "Old", "provider": "mock", "model": "mock-echo", "system_prompt": "Help."
            }))
            .unwrap();
        assert!(written_before_the_fields.allow_tools && written_before_the_fields.allow_images);
        let spec = written_before_the_fields.validate().unwrap();
        assert!(spec.allow_tools && spec.allow_images);

        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = specialist(t0);
        let no_tools = revised(
            &s,
            SpecialistDraft {
                allow_tools: false,
                ..draft()
            },
            t0,
            100,
        );
        assert_eq!(no_tools.version(), 2, "turning tools off is a change");
        assert!(!no_tools.allow_tools() && no_tools.allow_images());
        assert!(!no_tools.to_draft().allow_tools, "kept by to_draft");
    }

    #[test]
    fn a_specialist_refuses_what_it_turned_off_and_only_that() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let with = |allow_tools, allow_images| {
            revised(
                &specialist(t0),
                SpecialistDraft {
                    allow_tools,
                    allow_images,
                    ..draft()
                },
                t0,
                100,
            )
        };
        let tool = crate::ToolDefinition {
            name: "lookup".into(),
            description: None,
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
        };
        let offering_tools = ChatOptions {
            tools: vec![tool],
            ..ChatOptions::default()
        };
        let choosing_none = ChatOptions {
            tool_choice: Some(crate::ToolChoice::None),
            ..ChatOptions::default()
        };
        let plain = [ChatMessage::user("hi")];
        let tool_result = [ChatMessage::tool_result("call_1", "42")];
        let image = [ChatMessage {
            content: vec![crate::ContentPart::Image {
                source: crate::ImageSource::Url("https://example.com/a.png".into()),
                detail: None,
            }],
            ..ChatMessage::user("")
        }];
        let none = ChatOptions::default();
        let param = |s: &Specialist, o: &ChatOptions, m: &[ChatMessage]| {
            s.first_not_allowed(o, m).map(|n| n.param)
        };

        let open = specialist(t0);
        for (options, messages) in [
            (&offering_tools, &plain[..]),
            (&none, &tool_result[..]),
            (&none, &image[..]),
        ] {
            assert_eq!(param(&open, options, messages), None, "allowed by default");
        }
        let no_tools = with(false, true);
        assert_eq!(param(&no_tools, &offering_tools, &plain), Some("tools"));
        assert_eq!(param(&no_tools, &choosing_none, &plain), Some("tools"));
        assert_eq!(param(&no_tools, &none, &tool_result), Some("messages"));
        assert_eq!(param(&no_tools, &none, &image), None);
        assert_eq!(param(&no_tools, &none, &plain), None);
        let no_images = with(true, false);
        assert_eq!(param(&no_images, &none, &image), Some("messages"));
        assert_eq!(param(&no_images, &offering_tools, &tool_result), None);
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
}
