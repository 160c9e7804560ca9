use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::target::validate_target;
use crate::text::{TextKind, first_hidden_char, hidden_char_message};
use crate::{
    ChatMessage, ChatOptions, ModelPricing, PricingDraft, ProviderKind, SpecialistId, Target,
    TargetDraft, ValidationErrors,
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
/// The most fallback targets a specialist may list (each one a whole attempt at a call).
pub const MAX_FALLBACKS: usize = 4;
/// The most aliases a specialist may have.
pub const MAX_ALIASES: usize = 16;
/// The longest alias, in characters.
pub const MAX_ALIAS_CHARS: usize = 128;
const MAX_TEMPERATURE: f64 = 2.0;
/// The most dimensions an embedding specialist may fix.
pub const MAX_EMBEDDING_DIMENSIONS: u32 = 65_536;

/// `n` as a vector length a specialist or a request may ask for (1 to
/// [`MAX_EMBEDDING_DIMENSIONS`]), or what is wrong with it.
pub fn embedding_dimensions(n: i64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_EMBEDDING_DIMENSIONS).contains(n))
        .ok_or_else(|| format!("must be between 1 and {MAX_EMBEDDING_DIMENSIONS}"))
}

/// What a specialist does: answer a conversation, or turn text into vectors. Each door takes
/// one kind only (the chat doors chat, `/v1/embeddings` embeds), so a caller who picks the
/// wrong one hears it instead of getting something else than asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpecialistKind {
    /// A persona answering conversations (every specialist before kinds existed).
    #[default]
    Chat,
    /// A model turning text into vectors: no system prompt, no sampling.
    Embedding,
}

impl SpecialistKind {
    /// The name used in JSON and files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        }
    }

    /// The kind named `name`, as JSON spells it.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Chat, Self::Embedding]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    fn is_chat(&self) -> bool {
        *self == Self::Chat
    }
}

impl std::fmt::Display for SpecialistKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// The instructions sent before every conversation (an embedding specialist has none).
    #[serde(default)]
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
    /// Targets tried in order after the primary one (`provider`, `model`, `base_url`) fails
    /// (default: none). The persona applies to every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<TargetDraft>,
    /// Whether a stream whose upstream dies mid-answer may be continued on the next target
    /// (default: yes).
    #[serde(default = "allowed")]
    pub continue_streams: bool,
    /// Other names a caller may use for it as `model` (Claude Code's `claude-sonnet-4-5`, ...)
    /// (default: none). Unique across the catalogue, ignoring case; the catalogue checks that.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `chat` or `embedding` (default: chat, so a catalogue written before kinds reads as it
    /// always did). Text here, so a wrong one is a field error listed with the rest.
    #[serde(default = "chat_kind", skip_serializing_if = "is_chat_kind")]
    pub kind: String,
    /// The vector length an embedding specialist always asks for, 1 to 65536 (default: the
    /// model's own). Only on embedding specialists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<i64>,
}

fn chat_kind() -> String {
    SpecialistKind::Chat.as_str().to_owned()
}

fn is_chat_kind(kind: &str) -> bool {
    kind == SpecialistKind::Chat.as_str()
}

/// Tools, images and continued streams are allowed unless a specialist turns them off, so a
/// catalogue written before the fields existed keeps working as it did.
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
    /// A chat specialist's draft with every other field at the default a catalogue file gives
    /// it when the field is left out: no description, base URL, pricing, fallbacks or aliases;
    /// tools, images and continued streams allowed; the default temperature and answer length.
    pub fn new(
        name: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
        system_prompt: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            provider: provider.into(),
            model: model.into(),
            base_url: None,
            system_prompt: system_prompt.into(),
            allow_tools: allowed(),
            allow_images: allowed(),
            temperature: default_temperature(),
            max_tokens: default_max_tokens(),
            pricing: None,
            fallbacks: Vec::new(),
            continue_streams: allowed(),
            aliases: Vec::new(),
            kind: chat_kind(),
            dimensions: None,
        }
    }

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

        let primary = validate_target(
            &self.provider,
            &self.model,
            self.base_url.as_deref(),
            &mut errors,
        );

        let kind = SpecialistKind::parse(self.kind.trim()).unwrap_or_else(|| {
            errors.push("kind", "must be 'chat' or 'embedding'");
            SpecialistKind::Chat
        });
        if kind == SpecialistKind::Embedding {
            if !self.system_prompt.trim().is_empty() {
                errors.push(
                    "system_prompt",
                    "must be empty: an embedding specialist has no system prompt",
                );
            }
        } else if self.system_prompt.trim().is_empty() {
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

        let fallbacks = self.validate_fallbacks(primary.as_ref(), &mut errors);
        self.validate_aliases(&mut errors);
        let dimensions = self.validate_embedding(kind, primary.as_ref(), &mut errors);

        match primary {
            Some(primary) if errors.is_empty() => Ok(SpecialistSpec {
                name: name.to_owned(),
                description: self.description.clone(),
                primary,
                system_prompt: match kind {
                    SpecialistKind::Chat => self.system_prompt.clone(),
                    SpecialistKind::Embedding => String::new(),
                },
                allow_tools: self.allow_tools,
                allow_images: self.allow_images,
                temperature: self.temperature,
                max_tokens,
                pricing,
                fallbacks,
                continue_streams: self.continue_streams,
                aliases: self.aliases.clone(),
                kind,
                dimensions,
            }),
            _ => Err(errors),
        }
    }

    /// The fallbacks, each by the primary's rules (errors at `fallbacks[i].model`, ...), at
    /// most [`MAX_FALLBACKS`] of them, none repeating the primary or an earlier fallback. A
    /// fallback that is invalid is left out of the comparison (its own error says why).
    fn validate_fallbacks(
        &self,
        primary: Option<&Target>,
        errors: &mut ValidationErrors,
    ) -> Vec<Target> {
        if self.fallbacks.len() > MAX_FALLBACKS {
            errors.push(
                "fallbacks",
                format!("must list at most {MAX_FALLBACKS} targets"),
            );
        }
        let mut valid: Vec<Target> = Vec::with_capacity(self.fallbacks.len());
        // Index in `self.fallbacks` of each target in `valid`, to name the one repeated.
        let mut positions = Vec::with_capacity(self.fallbacks.len());
        for (index, draft) in self.fallbacks.iter().enumerate() {
            let prefix = format!("fallbacks[{index}]");
            match draft.validate() {
                Err(problems) => errors.extend(problems.with_prefix(&format!("{prefix}."))),
                Ok(target) => {
                    if primary == Some(&target) {
                        errors.push(
                            prefix,
                            "repeats the primary target (provider, model, base_url)",
                        );
                    } else if let Some(earlier) = valid.iter().position(|t| *t == target) {
                        errors.push(prefix, format!("repeats fallbacks[{}]", positions[earlier]));
                    } else {
                        valid.push(target);
                        positions.push(index);
                    }
                }
            }
        }
        valid
    }
}

impl SpecialistDraft {
    /// The aliases: at most [`MAX_ALIASES`], each 1 to [`MAX_ALIAS_CHARS`] of ASCII letters,
    /// digits, `.`, `_`, `-`, `:` and `/` (what model names are made of), none repeating an
    /// earlier one ignoring case. An alias equal to the specialist's own id is refused by the
    /// catalogue, which knows the id.
    fn validate_aliases(&self, errors: &mut ValidationErrors) {
        if self.aliases.len() > MAX_ALIASES {
            errors.push(
                "aliases",
                format!("must list at most {MAX_ALIASES} aliases"),
            );
        }
        for (index, alias) in self.aliases.iter().enumerate() {
            let field = format!("aliases[{index}]");
            if alias.is_empty() || alias.len() > MAX_ALIAS_CHARS {
                errors.push(field, format!("must be 1 to {MAX_ALIAS_CHARS} characters"));
            } else if !alias.chars().all(is_alias_char) {
                errors.push(
                    field,
                    "may hold only ASCII letters, digits, '.', '_', '-', ':' and '/'",
                );
            } else if let Some(earlier) = self.aliases[..index]
                .iter()
                .position(|a| a.eq_ignore_ascii_case(alias))
            {
                errors.push(
                    field,
                    format!("repeats aliases[{earlier}] (aliases are case-insensitive)"),
                );
            }
        }
    }
}

impl SpecialistDraft {
    /// The rules of a kind: an embedding specialist samples nothing (a temperature or
    /// `max_tokens` other than the default is refused, so a mistake is visible rather than
    /// ignored), runs on a provider that embeds (every target: Anthropic offers no
    /// embeddings) and may fix `dimensions`, which a chat specialist may not. Returns the
    /// dimensions, when valid.
    fn validate_embedding(
        &self,
        kind: SpecialistKind,
        primary: Option<&Target>,
        errors: &mut ValidationErrors,
    ) -> Option<u32> {
        let dimensions = match (kind, self.dimensions) {
            (_, None) => None,
            (SpecialistKind::Chat, Some(_)) => {
                errors.push(
                    "dimensions",
                    "only an embedding specialist fixes dimensions",
                );
                None
            }
            (SpecialistKind::Embedding, Some(n)) => embedding_dimensions(n)
                .map_err(|problem| errors.push("dimensions", problem))
                .ok(),
        };
        if kind != SpecialistKind::Embedding {
            return dimensions;
        }
        // Exact comparisons: the defaults are what a draft holds when the field was left out.
        if self.temperature != DEFAULT_TEMPERATURE {
            errors.push(
                "temperature",
                "an embedding specialist samples nothing: leave temperature out",
            );
        }
        if self.max_tokens != i64::from(DEFAULT_MAX_TOKENS) {
            errors.push(
                "max_tokens",
                "an embedding specialist writes no tokens: leave max_tokens out",
            );
        }
        const NO_EMBEDDINGS: &str =
            "Anthropic offers no embeddings: an embedding specialist needs openai, google or mock";
        if primary.is_some_and(|t| !t.provider().embeds()) {
            errors.push("provider", NO_EMBEDDINGS);
        }
        for (index, fallback) in self.fallbacks.iter().enumerate() {
            if fallback
                .validate()
                .is_ok_and(|target| !target.provider().embeds())
            {
                errors.push(format!("fallbacks[{index}].provider"), NO_EMBEDDINGS);
            }
        }
        dimensions
    }
}

fn is_alias_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')
}

/// Why `text` cannot be a field of this `kind`, if it holds a character it may not.
pub(crate) fn hidden_char_problem(text: &str, kind: TextKind) -> Option<String> {
    first_hidden_char(text, kind).map(|(position, c)| hidden_char_message(position, c, kind))
}

/// The validated editable fields of a specialist. Only [`SpecialistDraft::validate`] makes one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecialistSpec {
    name: String,
    description: String,
    /// Written flat (`provider`, `model`, `base_url`) as the file always had them.
    #[serde(flatten)]
    primary: Target,
    system_prompt: String,
    allow_tools: bool,
    allow_images: bool,
    temperature: f64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<ModelPricing>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fallbacks: Vec<Target>,
    continue_streams: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    /// Written only for an embedding specialist, so a chat catalogue's file stays as it was.
    #[serde(skip_serializing_if = "SpecialistKind::is_chat")]
    kind: SpecialistKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
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
            provider: self.spec.primary.provider().as_str().to_owned(),
            model: self.spec.primary.model().to_owned(),
            base_url: self.spec.primary.base_url().map(str::to_owned),
            system_prompt: self.spec.system_prompt.clone(),
            allow_tools: self.spec.allow_tools,
            allow_images: self.spec.allow_images,
            temperature: self.spec.temperature,
            max_tokens: i64::from(self.spec.max_tokens),
            pricing: self.spec.pricing.map(|p| p.to_draft()),
            fallbacks: self.spec.fallbacks.iter().map(Target::to_draft).collect(),
            continue_streams: self.spec.continue_streams,
            aliases: self.spec.aliases.clone(),
            kind: self.spec.kind.as_str().to_owned(),
            dimensions: self.spec.dimensions.map(i64::from),
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
        self.spec.primary.provider()
    }
    /// The upstream model name.
    pub fn model(&self) -> &str {
        self.spec.primary.model()
    }
    /// The OpenAI-compatible server to call instead of the configured one, if any.
    pub fn base_url(&self) -> Option<&str> {
        self.spec.primary.base_url()
    }
    /// The target tried first: [`Self::provider`], [`Self::model`] and [`Self::base_url`].
    pub fn primary(&self) -> &Target {
        &self.spec.primary
    }
    /// The targets tried after the primary one, in order (at most [`MAX_FALLBACKS`], none
    /// equal to the primary or to another).
    pub fn fallbacks(&self) -> &[Target] {
        &self.spec.fallbacks
    }
    /// Every target in the order they are tried: the primary, then the fallbacks.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        std::iter::once(&self.spec.primary).chain(&self.spec.fallbacks)
    }
    /// Whether a stream whose upstream dies after the client got part of the answer may be
    /// continued on the next target.
    pub fn continue_streams(&self) -> bool {
        self.spec.continue_streams
    }
    /// Other names callers may use for it as `model`, as written (compare ignoring case).
    pub fn aliases(&self) -> &[String] {
        &self.spec.aliases
    }
    /// Chat or embedding: which doors may call it.
    pub fn kind(&self) -> SpecialistKind {
        self.spec.kind
    }
    /// The vector length an embedding specialist always asks for, if it fixes one.
    pub fn dimensions(&self) -> Option<u32> {
        self.spec.dimensions
    }
    /// The instructions sent before every conversation (empty for an embedding specialist).
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
            description: "Analyzes financial data".into(),
            temperature: 0.3,
            max_tokens: 2048,
            pricing: Some(PricingDraft {
                input_per_1m: 2.5,
                output_per_1m: 10.0,
                ..PricingDraft::default()
            }),
            ..SpecialistDraft::new(
                "Financial Analyst",
                "openai",
                "gpt-4o",
                "You analyse numbers.",
            )
        }
    }

    #[test]
    fn a_new_draft_has_the_defaults_a_catalogue_file_leaves_out() {
        let read: SpecialistDraft = serde_json::from_str(
            r#"{"name": "N", "provider": "mock", "model": "m", "system_prompt": "P"}"#,
        )
        .unwrap();
        assert_eq!(read, SpecialistDraft::new("N", "mock", "m", "P"));
    }

    fn target(provider: &str, model: &str, base_url: Option<&str>) -> TargetDraft {
        TargetDraft {
            provider: provider.into(),
            model: model.into(),
            base_url: base_url.map(Into::into),
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
        assert_eq!(spec.primary.provider(), ProviderKind::OpenAi);
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
            fallbacks: vec![target("nope", "", None)],
            continue_streams: true,
            aliases: Vec::new(),
            kind: "chat".into(),
            dimensions: None,
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
                "fallbacks[0].provider",
                "fallbacks[0].model",
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
            d.validate().unwrap().primary.base_url(),
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

    #[test]
    fn fallbacks_are_kept_in_order_after_the_primary() {
        let d = SpecialistDraft {
            fallbacks: vec![
                target("anthropic", " claude-sonnet-4 ", None),
                target("openai", "llama3.1:8b", Some("https://llm.example.com/v1/")),
            ],
            ..draft()
        };
        let s = Specialist::new(
            SpecialistId::parse("fa").unwrap(),
            d.validate().unwrap(),
            Utc::now(),
        );
        let targets: Vec<(ProviderKind, &str, Option<&str>)> = s
            .targets()
            .map(|t| (t.provider(), t.model(), t.base_url()))
            .collect();
        assert_eq!(
            targets,
            [
                (ProviderKind::OpenAi, "gpt-4o", None),
                (ProviderKind::Anthropic, "claude-sonnet-4", None),
                (
                    ProviderKind::OpenAi,
                    "llama3.1:8b",
                    Some("https://llm.example.com/v1")
                ),
            ]
        );
        assert_eq!(s.primary().model(), s.model());
        assert_eq!(s.fallbacks().len(), 2);
        assert!(s.continue_streams());
    }

    #[test]
    fn each_fallback_follows_the_primarys_rules_with_its_own_path() {
        let d = SpecialistDraft {
            fallbacks: vec![
                target("mock", "mock-echo", None),
                target("cohere", "command-r", None),
                target("openai", "bad model!", Some("ftp://example.com")),
                target("google", "gemini-2.5-pro", Some("https://llm.example.com")),
                target(
                    "anthropic",
                    &"m".repeat(201),
                    Some("https://x.ai/v\u{200B}1"),
                ),
            ],
            ..draft()
        };
        let errors = d.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "fallbacks",
                "fallbacks[1].provider",
                "fallbacks[2].model",
                "fallbacks[2].base_url",
                "fallbacks[3].base_url",
                "fallbacks[4].model",
                "fallbacks[4].base_url",
            ]
        );
        assert!(errors.errors()[0].message.contains("at most 4"));
        assert!(
            errors.errors()[4]
                .message
                .contains("only supported for the openai provider"),
            "{}",
            errors.errors()[4].message
        );
    }

    #[test]
    fn four_fallbacks_are_allowed_five_are_not() {
        let models = ["a", "b", "c", "d", "e"];
        let mut d = draft();
        d.fallbacks = models[..MAX_FALLBACKS]
            .iter()
            .map(|m| target("mock", m, None))
            .collect();
        assert_eq!(d.validate().unwrap().fallbacks.len(), MAX_FALLBACKS);
        d.fallbacks.push(target("mock", "e", None));
        assert_eq!(fields(&d.validate().unwrap_err()), ["fallbacks"]);
    }

    #[test]
    fn a_fallback_may_not_repeat_the_primary_or_an_earlier_fallback() {
        let d = SpecialistDraft {
            base_url: Some("https://llm.example.com/v1".into()),
            fallbacks: vec![
                // The primary spelled differently: same after trimming and the trailing `/`.
                target("openai", " gpt-4o", Some(" https://llm.example.com/v1/ ")),
                target("mock", "mock-echo", None),
                target("openai", "gpt-4o", None),
                target("mock", "mock-echo ", None),
            ],
            ..draft()
        };
        let errors = d.validate().unwrap_err();
        let found: Vec<(&str, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "fallbacks[0]",
                    "repeats the primary target (provider, model, base_url)"
                ),
                ("fallbacks[3]", "repeats fallbacks[1]"),
            ],
            "the same model without the primary's base URL is another target"
        );
    }

    #[test]
    fn continue_streams_and_fallbacks_default_for_a_catalogue_written_before_them() {
        let old: SpecialistDraft = serde_json::from_value(serde_json::json!({
            "name": "Old", "provider": "mock", "model": "mock-echo", "system_prompt": "Help."
        }))
        .unwrap();
        assert!(old.fallbacks.is_empty() && old.continue_streams);
        let value = serde_json::to_value(&old).unwrap();
        assert!(
            value.get("fallbacks").is_none(),
            "no fallbacks, none written"
        );
        assert_eq!(value["continue_streams"], true);

        let unknown = serde_json::from_value::<SpecialistDraft>(serde_json::json!({
            "name": "Old", "provider": "mock", "model": "mock-echo", "system_prompt": "Help.",
            "fallbacks": [{"provider": "mock", "model": "m", "temperature": 1}]
        }));
        assert!(
            unknown.is_err(),
            "a target has no field of its own beyond the three"
        );
        let missing: TargetDraft =
            serde_json::from_value(serde_json::json!({"provider": "mock"})).unwrap();
        assert_eq!(
            fields(&missing.validate().unwrap_err()),
            ["model"],
            "a missing model is an empty one, reported with the rest"
        );
    }

    #[test]
    fn a_change_to_fallbacks_or_continue_streams_is_a_new_version_and_round_trips() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = specialist(t0);
        let with_fallback = revised(
            &s,
            SpecialistDraft {
                fallbacks: vec![target("anthropic", "claude-sonnet-4", None)],
                ..draft()
            },
            t0,
            100,
        );
        assert_eq!(with_fallback.version(), 2);
        let no_continuation = revised(
            &with_fallback,
            SpecialistDraft {
                continue_streams: false,
                aliases: Vec::new(),
                ..with_fallback.to_draft()
            },
            t0,
            100,
        );
        assert_eq!(no_continuation.version(), 3);
        assert!(!no_continuation.continue_streams());
        assert_eq!(no_continuation.fallbacks(), with_fallback.fallbacks());
        let same = no_continuation.to_draft().validate().unwrap();
        assert_eq!(no_continuation.revise(same, t0, 100), None);
    }

    #[test]
    fn aliases_are_model_names_at_most_sixteen_none_repeated_ignoring_case() {
        let mut d = draft();
        d.aliases = vec![
            "claude-sonnet-4-5".into(),
            "org/Model_v1.2:latest".into(),
            String::new(),
            "has space".into(),
            "ünïcode".into(),
            "x".repeat(MAX_ALIAS_CHARS + 1),
            "CLAUDE-Sonnet-4-5".into(),
        ];
        let errors = d.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "aliases[2]",
                "aliases[3]",
                "aliases[4]",
                "aliases[5]",
                "aliases[6]"
            ]
        );
        assert!(errors.errors()[4].message.contains("repeats aliases[0]"));

        d.aliases = vec!["claude-sonnet-4-5".into(), "x".repeat(MAX_ALIAS_CHARS)];
        let spec = d.validate().unwrap();
        let s = Specialist::new(SpecialistId::parse("s").unwrap(), spec, Utc::now());
        assert_eq!(s.aliases(), d.aliases.as_slice());
        assert_eq!(s.to_draft().aliases, d.aliases, "kept through a draft");

        d.aliases = (0..=MAX_ALIASES).map(|n| format!("a{n}")).collect();
        assert_eq!(fields(&d.validate().unwrap_err()), ["aliases"]);
        d.aliases.pop();
        assert!(d.validate().is_ok());
    }

    #[test]
    fn aliases_default_to_none_and_are_written_only_when_there_are_some() {
        let old: SpecialistDraft = serde_json::from_value(serde_json::json!({
            "name": "Old", "provider": "mock", "model": "mock-echo", "system_prompt": "Help."
        }))
        .unwrap();
        assert!(old.aliases.is_empty());
        let spec = old.validate().unwrap();
        assert!(
            serde_json::to_value(&spec)
                .unwrap()
                .get("aliases")
                .is_none()
        );
        let mut with = old.clone();
        with.aliases = vec!["gpt-4o".into()];
        let value = serde_json::to_value(with.validate().unwrap()).unwrap();
        assert_eq!(value["aliases"], serde_json::json!(["gpt-4o"]));
    }
    fn embedder() -> SpecialistDraft {
        SpecialistDraft {
            kind: "embedding".into(),
            model: "text-embedding-3-small".into(),
            system_prompt: String::new(),
            temperature: DEFAULT_TEMPERATURE,
            max_tokens: i64::from(DEFAULT_MAX_TOKENS),
            pricing: None,
            ..draft()
        }
    }

    #[test]
    fn a_catalogue_written_before_kinds_reads_as_chat_and_writes_no_kind() {
        let old: SpecialistDraft = serde_json::from_value(serde_json::json!({
            "name": "Old", "provider": "mock", "model": "mock-echo", "system_prompt": "Help."
        }))
        .unwrap();
        assert_eq!((old.kind.as_str(), old.dimensions), ("chat", None));
        let spec = old.validate().unwrap();
        let value = serde_json::to_value(&spec).unwrap();
        assert!(value.get("kind").is_none() && value.get("dimensions").is_none());
    }

    #[test]
    fn an_embedding_specialist_has_no_prompt_and_keeps_its_kind_and_dimensions() {
        let written: SpecialistDraft = serde_json::from_value(serde_json::json!({
            "name": "Embed", "provider": "openai", "model": "text-embedding-3-small",
            "kind": "embedding", "dimensions": 256
        }))
        .unwrap();
        let spec = written.validate().unwrap();
        let value = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            (&value["kind"], &value["dimensions"]),
            (&serde_json::json!("embedding"), &serde_json::json!(256))
        );
        let s = Specialist::new(SpecialistId::parse("e").unwrap(), spec.clone(), Utc::now());
        assert_eq!(s.kind(), SpecialistKind::Embedding);
        assert_eq!(s.dimensions(), Some(256));
        assert_eq!(s.system_prompt(), "");
        assert_eq!(
            s.to_draft().validate().unwrap(),
            spec,
            "round trips through a draft"
        );
    }

    #[test]
    fn an_embedding_specialist_refuses_a_prompt_sampling_and_anthropic() {
        let d = SpecialistDraft {
            system_prompt: "Be brief.".into(),
            temperature: 0.2,
            max_tokens: 10,
            provider: "anthropic".into(),
            fallbacks: vec![
                target("google", "gemini-embedding-001", None),
                target("anthropic", "claude-sonnet-4", None),
            ],
            ..embedder()
        };
        let errors = d.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "system_prompt",
                "temperature",
                "max_tokens",
                "provider",
                "fallbacks[1].provider"
            ]
        );
        assert!(
            errors.errors()[3]
                .message
                .contains("Anthropic offers no embeddings")
        );
        for provider in ["openai", "google", "mock"] {
            let d = SpecialistDraft {
                provider: provider.into(),
                ..embedder()
            };
            assert!(d.validate().is_ok(), "{provider} embeds");
        }
    }

    #[test]
    fn dimensions_are_one_to_65536_and_only_on_embedding_specialists() {
        for (dimensions, ok) in [
            (1, true),
            (65_536, true),
            (0, false),
            (65_537, false),
            (-3, false),
        ] {
            let d = SpecialistDraft {
                dimensions: Some(dimensions),
                ..embedder()
            };
            assert_eq!(d.validate().is_ok(), ok, "{dimensions}");
        }
        let chat = SpecialistDraft {
            dimensions: Some(256),
            ..draft()
        };
        assert_eq!(fields(&chat.validate().unwrap_err()), ["dimensions"]);
        let unknown = SpecialistDraft {
            kind: "rerank".into(),
            ..draft()
        };
        assert_eq!(fields(&unknown.validate().unwrap_err()), ["kind"]);
        let chat_without_prompt = SpecialistDraft {
            system_prompt: String::new(),
            ..draft()
        };
        assert_eq!(
            fields(&chat_without_prompt.validate().unwrap_err()),
            ["system_prompt"]
        );
    }
}
