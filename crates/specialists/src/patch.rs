//! What a caller's change to a specialist means. A PATCH writes the fields it sends over the
//! current ones; a create or a PUT is a whole new set of fields, in which the required ones must
//! be sent and the others take their defaults. Both start from a [`SpecialistPatch`], so the
//! HTTP layer only maps JSON to one.

use core_domain::{
    PricingDraft, SpecialistDraft, SpecialistId, SpecialistKind, TargetDraft, ValidationErrors,
};

use crate::Catalogue;

/// The fields a create or a PUT must send (`system_prompt` only for a chat specialist);
/// every other editable field has a default.
pub const REQUIRED_FIELDS: [&str; 4] = ["name", "provider", "model", "system_prompt"];

/// A field that may be left alone, removed or set: for the optional fields (`base_url`,
/// `pricing`, `fallbacks`), where "not sent" and "sent as null" mean different things.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Clearable<T> {
    /// Not sent: keep what is there.
    #[default]
    Keep,
    /// Sent as `null`: remove it.
    Clear,
    /// Sent with a value.
    Set(T),
}

impl<T> Clearable<T> {
    /// The field after the change, given what it was.
    pub fn applied_to(self, current: Option<T>) -> Option<T> {
        match self {
            Self::Keep => current,
            Self::Clear => None,
            Self::Set(value) => Some(value),
        }
    }
}

/// Serde's spelling of the same three cases: `None` not sent, `Some(None)` null,
/// `Some(Some(value))` a value.
impl<T> From<Option<Option<T>>> for Clearable<T> {
    fn from(sent: Option<Option<T>>) -> Self {
        match sent {
            None => Self::Keep,
            Some(None) => Self::Clear,
            Some(Some(value)) => Self::Set(value),
        }
    }
}

/// The editable fields of a specialist as a caller sent them, each one optional.
///
/// Types are as loose as [`SpecialistDraft`]'s, so a wrong value is a field error listed with
/// every other one when the result is validated.
///
/// ```
/// use specialists::SpecialistPatch;
///
/// let fields = SpecialistPatch {
///     name: Some("Tax".into()),
///     provider: Some("mock".into()),
///     model: Some("mock-echo".into()),
///     system_prompt: Some("Explain tax rules plainly.".into()),
///     ..SpecialistPatch::default()
/// }
/// .into_new_fields()
/// .unwrap();
/// assert_eq!(fields.temperature, core_domain::DEFAULT_TEMPERATURE);
///
/// let warmer = SpecialistPatch { temperature: Some(1.2), ..SpecialistPatch::default() };
/// let changed = warmer.merged_into(fields.clone());
/// assert_eq!((changed.temperature, changed.name), (1.2, fields.name));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialistPatch {
    /// Display name (required for a create or a PUT).
    pub name: Option<String>,
    /// What the specialist is for (default: empty).
    pub description: Option<String>,
    /// `openai`, `anthropic`, `google` or `mock` (required for a create or a PUT).
    pub provider: Option<String>,
    /// The upstream model name (required for a create or a PUT).
    pub model: Option<String>,
    /// An OpenAI-compatible server to call instead of the provider's configured one (default:
    /// none).
    pub base_url: Clearable<String>,
    /// The instructions sent before every conversation (required for a create or a PUT).
    pub system_prompt: Option<String>,
    /// Whether callers may use tools (default: yes).
    pub allow_tools: Option<bool>,
    /// Whether callers may send images (default: yes).
    pub allow_images: Option<bool>,
    /// Sampling temperature (default: [`core_domain::DEFAULT_TEMPERATURE`]).
    pub temperature: Option<f64>,
    /// The most tokens an answer may have (default: [`core_domain::DEFAULT_MAX_TOKENS`]).
    pub max_tokens: Option<i64>,
    /// The specialist's own price (default: none, the price table's).
    pub pricing: Clearable<PricingDraft>,
    /// The targets tried after the primary one; a new list replaces the whole old one, and
    /// clearing it leaves none (default: none).
    pub fallbacks: Clearable<Vec<TargetDraft>>,
    /// Whether a stream cut mid-answer may continue on the next target (default: yes).
    pub continue_streams: Option<bool>,
    /// Other names callers may use as `model`; a new list replaces the whole old one, and
    /// clearing it leaves none (default: none).
    pub aliases: Clearable<Vec<String>>,
    /// `chat` or `embedding` (default: chat).
    pub kind: Option<String>,
    /// The vector length an embedding specialist always asks for; clearing it leaves the
    /// model's own (default: none).
    pub dimensions: Clearable<i64>,
}

impl SpecialistPatch {
    /// A PATCH: the fields sent, written over `current`; the others stay as they are.
    pub fn merged_into(self, mut current: SpecialistDraft) -> SpecialistDraft {
        let set = |slot: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(&mut current.name, self.name);
        set(&mut current.description, self.description);
        set(&mut current.provider, self.provider);
        set(&mut current.model, self.model);
        set(&mut current.system_prompt, self.system_prompt);
        current.base_url = self.base_url.applied_to(current.base_url);
        if let Some(allow_tools) = self.allow_tools {
            current.allow_tools = allow_tools;
        }
        if let Some(allow_images) = self.allow_images {
            current.allow_images = allow_images;
        }
        if let Some(temperature) = self.temperature {
            current.temperature = temperature;
        }
        if let Some(max_tokens) = self.max_tokens {
            current.max_tokens = max_tokens;
        }
        current.pricing = self.pricing.applied_to(current.pricing);
        current.fallbacks = self
            .fallbacks
            .applied_to(Some(current.fallbacks))
            .unwrap_or_default();
        if let Some(continue_streams) = self.continue_streams {
            current.continue_streams = continue_streams;
        }
        current.aliases = self
            .aliases
            .applied_to(Some(current.aliases))
            .unwrap_or_default();
        if let Some(kind) = self.kind {
            current.kind = kind;
        }
        current.dimensions = self.dimensions.applied_to(current.dimensions);
        current
    }

    /// A create or a PUT: the fields sent over the defaults. When a required field is missing,
    /// the answer names each missing one ("is required") together with every problem of the
    /// fields that were sent; the result is not validated otherwise (the catalogue does that
    /// when it applies it).
    pub fn into_new_fields(self) -> Result<SpecialistDraft, ValidationErrors> {
        let mut missing = ValidationErrors::new();
        // An embedding specialist has no system prompt: only a chat one must send it.
        let embedding =
            self.kind.as_deref().map(str::trim) == Some(SpecialistKind::Embedding.as_str());
        for (field, is_sent) in REQUIRED_FIELDS.into_iter().zip([
            self.name.is_some(),
            self.provider.is_some(),
            self.model.is_some(),
            self.system_prompt.is_some() || embedding,
        ]) {
            if !is_sent {
                missing.push(field, "is required");
            }
        }
        // Before anything is sent: the required fields empty, the others at their defaults.
        let fields = self.merged_into(SpecialistDraft::new("", "", "", ""));
        if missing.is_empty() {
            return Ok(fields);
        }
        // A missing field is also an empty one: "is required" is the reason given for it.
        // A field that was sent keeps every reason it breaks a rule.
        if let Err(others) = fields.validate() {
            for error in others.errors() {
                if !missing.errors().iter().any(|m| m.field == error.field) {
                    missing.push(error.field.clone(), error.message.clone());
                }
            }
        }
        Err(missing)
    }
}

impl Catalogue {
    /// The fields of a create, or of a PUT replacing `replacing`, ready for [`Catalogue::create`]
    /// or [`Catalogue::update`]; or, when they cannot be applied, every problem at once:
    /// `earlier_problems` (a bad id, found by the caller), the fields' own, and the rules that
    /// need the rest of the catalogue (a taken name, the base URL policy). Fields returned here
    /// are checked again under the catalogue's lock when they are applied.
    pub fn new_fields_or_every_problem(
        &self,
        patch: SpecialistPatch,
        mut earlier_problems: ValidationErrors,
        replacing: Option<&SpecialistId>,
    ) -> Result<SpecialistDraft, ValidationErrors> {
        let (name, base_url, fallbacks, aliases) = (
            patch.name.clone(),
            patch.base_url.clone(),
            patch.fallbacks.clone(),
            patch.aliases.clone(),
        );
        match patch.into_new_fields() {
            Ok(fields) if earlier_problems.is_empty() => return Ok(fields),
            Ok(fields) => {
                if let Err(more) = fields.validate() {
                    earlier_problems.extend(more);
                }
            }
            Err(more) => earlier_problems.extend(more),
        }
        let base_url = base_url.applied_to(None);
        let fallbacks = fallbacks.applied_to(None).unwrap_or_default();
        let aliases = aliases.applied_to(None).unwrap_or_default();
        earlier_problems.extend_new_fields(self.problems_with_others(
            name.as_deref(),
            base_url.as_deref(),
            &fallbacks,
            &aliases,
            replacing,
        ));
        Err(earlier_problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BaseUrlPolicy;
    use core_domain::{DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE};

    fn complete() -> SpecialistPatch {
        SpecialistPatch {
            name: Some("Tax".into()),
            provider: Some("openai".into()),
            model: Some("gpt-4o".into()),
            system_prompt: Some("Explain tax rules plainly.".into()),
            ..SpecialistPatch::default()
        }
    }

    fn current() -> SpecialistDraft {
        SpecialistDraft {
            name: "Current".into(),
            description: "As it is.".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            base_url: Some("https://llm.example.com/v1".into()),
            system_prompt: "Help.".into(),
            allow_tools: true,
            allow_images: false,
            temperature: 0.2,
            max_tokens: 100,
            pricing: Some(PricingDraft {
                input_per_1m: 1.0,
                output_per_1m: 2.0,
                ..PricingDraft::default()
            }),
            fallbacks: vec![fallback("anthropic", "claude-sonnet-4")],
            continue_streams: true,
            aliases: Vec::new(),
            kind: "chat".into(),
            dimensions: None,
        }
    }

    fn fallback(provider: &str, model: &str) -> TargetDraft {
        TargetDraft {
            provider: provider.into(),
            model: model.into(),
            base_url: None,
        }
    }

    fn fields(errors: &ValidationErrors) -> Vec<(&str, &str)> {
        errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect()
    }

    #[test]
    fn a_patch_changes_the_fields_sent_and_keeps_the_rest() {
        assert_eq!(SpecialistPatch::default().merged_into(current()), current());
        let patch = SpecialistPatch {
            name: Some("Renamed".into()),
            temperature: Some(1.5),
            ..SpecialistPatch::default()
        };
        let merged = patch.merged_into(current());
        assert_eq!(merged.name, "Renamed");
        assert_eq!(merged.temperature, 1.5);
        assert_eq!(
            SpecialistDraft {
                name: "Current".into(),
                temperature: 0.2,
                ..merged
            },
            current(),
            "nothing else changed"
        );
    }

    #[test]
    fn a_patch_turns_tools_or_images_on_or_off_and_leaves_the_other() {
        let no_tools = SpecialistPatch {
            allow_tools: Some(false),
            ..SpecialistPatch::default()
        }
        .merged_into(current());
        assert_eq!(
            (no_tools.allow_tools, no_tools.allow_images),
            (false, false)
        );
        let images = SpecialistPatch {
            allow_images: Some(true),
            ..SpecialistPatch::default()
        }
        .merged_into(current());
        assert_eq!((images.allow_tools, images.allow_images), (true, true));
        let created = SpecialistPatch {
            allow_images: Some(false),
            ..complete()
        }
        .into_new_fields()
        .unwrap();
        assert_eq!((created.allow_tools, created.allow_images), (true, false));
    }

    #[test]
    fn null_removes_base_url_and_pricing_a_value_sets_them() {
        let cleared = SpecialistPatch {
            base_url: Clearable::Clear,
            pricing: Clearable::Clear,
            ..SpecialistPatch::default()
        }
        .merged_into(current());
        assert_eq!((cleared.base_url, cleared.pricing), (None, None));
        let price = PricingDraft {
            input_per_1m: 3.0,
            output_per_1m: 4.0,
            ..PricingDraft::default()
        };
        let set = SpecialistPatch {
            base_url: Clearable::Set("https://other.example.com".into()),
            pricing: Clearable::Set(price),
            ..SpecialistPatch::default()
        }
        .merged_into(current());
        assert_eq!(set.base_url.as_deref(), Some("https://other.example.com"));
        assert_eq!(set.pricing, Some(price));
        assert_eq!(Clearable::from(None::<Option<u8>>), Clearable::Keep);
        assert_eq!(Clearable::from(Some(None::<u8>)), Clearable::Clear);
        assert_eq!(Clearable::from(Some(Some(7))), Clearable::Set(7));
    }

    #[test]
    fn a_patch_replaces_the_whole_fallback_list_null_clears_it() {
        let kept = SpecialistPatch {
            continue_streams: Some(false),
            ..SpecialistPatch::default()
        }
        .merged_into(current());
        assert_eq!(kept.fallbacks, current().fallbacks, "not sent: kept");
        assert!(!kept.continue_streams);
        let replaced = SpecialistPatch {
            fallbacks: Clearable::Set(vec![fallback("mock", "mock-echo"), fallback("google", "g")]),
            ..SpecialistPatch::default()
        }
        .merged_into(current());
        assert_eq!(
            replaced.fallbacks,
            [fallback("mock", "mock-echo"), fallback("google", "g")],
            "the list sent, not appended to the old one"
        );
        assert!(replaced.continue_streams, "not sent: kept");
        let cleared = SpecialistPatch {
            fallbacks: Clearable::Clear,
            ..SpecialistPatch::default()
        }
        .merged_into(current());
        assert!(cleared.fallbacks.is_empty());
    }

    #[test]
    fn new_fields_take_the_defaults_for_what_was_not_sent() {
        let fields = complete().into_new_fields().unwrap();
        assert_eq!(fields.temperature, DEFAULT_TEMPERATURE);
        assert_eq!(fields.max_tokens, i64::from(DEFAULT_MAX_TOKENS));
        assert_eq!(fields.description, "");
        assert_eq!((fields.base_url, fields.pricing), (None, None));
        assert!(
            fields.allow_tools && fields.allow_images && fields.continue_streams,
            "allowed unless turned off"
        );
        assert!(fields.fallbacks.is_empty());
        // Null for an optional field is the same as leaving it out.
        let nulls = SpecialistPatch {
            base_url: Clearable::Clear,
            pricing: Clearable::Clear,
            fallbacks: Clearable::Clear,
            ..complete()
        };
        assert_eq!(nulls.into_new_fields(), complete().into_new_fields());
    }

    #[test]
    fn an_embedding_specialist_needs_no_system_prompt_and_a_patch_sets_its_dimensions() {
        let embedder = SpecialistPatch {
            name: Some("Embed".into()),
            provider: Some("mock".into()),
            model: Some("mock-embed".into()),
            kind: Some("embedding".into()),
            dimensions: Clearable::Set(16),
            ..SpecialistPatch::default()
        }
        .into_new_fields()
        .unwrap();
        assert_eq!(
            (embedder.kind.as_str(), embedder.dimensions),
            ("embedding", Some(16))
        );
        assert!(embedder.validate().is_ok());
        let cleared = SpecialistPatch {
            dimensions: Clearable::Clear,
            ..SpecialistPatch::default()
        }
        .merged_into(embedder.clone());
        assert_eq!(cleared.dimensions, None);
        let kept = SpecialistPatch::default().merged_into(embedder);
        assert_eq!(
            (kept.kind.as_str(), kept.dimensions),
            ("embedding", Some(16))
        );

        let chat = SpecialistPatch {
            name: Some("Chat".into()),
            provider: Some("mock".into()),
            model: Some("mock-echo".into()),
            ..SpecialistPatch::default()
        }
        .into_new_fields()
        .unwrap_err();
        assert_eq!(fields(&chat), [("system_prompt", "is required")]);
    }

    #[test]
    fn each_missing_required_field_is_named_with_the_other_problems() {
        let errors = SpecialistPatch::default().into_new_fields().unwrap_err();
        assert_eq!(
            fields(&errors),
            REQUIRED_FIELDS.map(|field| (field, "is required"))
        );
        let errors = SpecialistPatch {
            name: Some("Tax".into()),
            provider: Some("nope".into()),
            temperature: Some(9.0),
            ..SpecialistPatch::default()
        }
        .into_new_fields()
        .unwrap_err();
        let named: Vec<&str> = fields(&errors)
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            named,
            ["model", "system_prompt", "provider", "temperature"],
            "a missing field once, as required; a bad one for its own reason"
        );
    }

    #[test]
    fn complete_fields_are_not_validated_until_they_are_applied() {
        let out_of_range = SpecialistPatch {
            temperature: Some(9.0),
            ..complete()
        };
        let fields = out_of_range.into_new_fields().unwrap();
        assert_eq!(
            fields.validate().unwrap_err().errors()[0].field,
            "temperature"
        );
    }

    #[test]
    fn the_catalogue_lists_every_problem_of_fields_that_cannot_be_applied() {
        let catalogue = Catalogue::in_memory(Vec::new(), BaseUrlPolicy::default());
        catalogue
            .create(
                SpecialistId::parse("tax").unwrap(),
                &complete().into_new_fields().unwrap(),
            )
            .unwrap();
        // Nothing wrong that a look at the fields shows: the catalogue decides under its lock.
        assert!(
            catalogue
                .new_fields_or_every_problem(complete(), ValidationErrors::new(), None)
                .is_ok()
        );
        let mut bad_id = ValidationErrors::new();
        bad_id.push("id", "must be a slug or a UUID");
        let errors = catalogue
            .new_fields_or_every_problem(
                SpecialistPatch {
                    name: Some("TAX".into()),
                    model: None,
                    base_url: Clearable::Set("https://169.254.169.254/v1".into()),
                    fallbacks: Clearable::Set(vec![
                        fallback("anthropic", ""),
                        TargetDraft {
                            base_url: Some("http://10.0.0.1/v1".into()),
                            ..fallback("openai", "llama3")
                        },
                    ]),
                    ..complete()
                },
                bad_id,
                None,
            )
            .unwrap_err();
        let named: Vec<&str> = fields(&errors)
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            named,
            [
                "id",
                "model",
                "fallbacks[0].model",
                "base_url",
                "fallbacks[1].base_url",
                "name"
            ]
        );
        // The specialist a PUT replaces may keep its own name.
        let errors = catalogue
            .new_fields_or_every_problem(
                SpecialistPatch {
                    model: None,
                    ..complete()
                },
                ValidationErrors::new(),
                Some(&SpecialistId::parse("tax").unwrap()),
            )
            .unwrap_err();
        assert_eq!(fields(&errors), [("model", "is required")]);
    }
}
