//! Where a specialist's calls go: a provider, a model and, for OpenAI-compatible servers, a
//! base URL. A specialist has one primary target and may list fallbacks tried after it.

use serde::{Deserialize, Serialize};

use crate::specialist::hidden_char_problem;
use crate::text::TextKind;
use crate::{ProviderKind, ValidationErrors};

const MAX_MODEL_CHARS: usize = 200;

/// A target as a caller or a file supplies it, before validation (a fallback of a
/// [`crate::SpecialistDraft`]).
///
/// `provider` is text so an unknown one becomes a field error; a missing `provider` or `model`
/// reads as empty for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDraft {
    /// `openai`, `anthropic`, `google` or `mock`.
    #[serde(default)]
    pub provider: String,
    /// The upstream model name.
    #[serde(default)]
    pub model: String,
    /// An OpenAI-compatible server to call instead of the provider's configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

impl TargetDraft {
    /// Checks every rule of a target and returns all broken ones at once, with the field paths
    /// `provider`, `model` and `base_url` (prefix them for a fallback).
    ///
    /// Rules that depend on deployment policy (which base URLs may be called) belong to the
    /// catalogue, not here.
    pub fn validate(&self) -> Result<Target, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let target = validate_target(
            &self.provider,
            &self.model,
            self.base_url.as_deref(),
            &mut errors,
        );
        match target {
            Some(target) if errors.is_empty() => Ok(target),
            _ => Err(errors),
        }
    }
}

/// The rules of a target, shared by a specialist's primary target (whose fields sit flat in the
/// specialist) and its fallbacks: records every broken one in `errors` and returns the target
/// when the provider at least is known (the caller builds nothing if `errors` is not empty).
pub(crate) fn validate_target(
    provider: &str,
    model: &str,
    base_url: Option<&str>,
    errors: &mut ValidationErrors,
) -> Option<Target> {
    let provider = match provider.parse::<ProviderKind>() {
        Ok(kind) => Some(kind),
        Err(_) => {
            errors.push("provider", "must be one of openai, anthropic, google, mock");
            None
        }
    };

    let model = model.trim();
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

    let base_url = match base_url.map(str::trim) {
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

    provider.map(|provider| Target {
        provider,
        model: model.to_owned(),
        base_url,
    })
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

/// A validated target: a known provider, a model name that is safe in a URL path, and a base
/// URL of the right shape (trimmed, without a trailing `/`) only for `openai`. Two targets are
/// equal when they would call the same model at the same place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    provider: ProviderKind,
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
}

impl Target {
    /// The upstream API family.
    pub fn provider(&self) -> ProviderKind {
        self.provider
    }
    /// The upstream model name.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// The OpenAI-compatible server to call instead of the configured one, if any.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }
    /// The target as a draft (to change it and validate again).
    pub fn to_draft(&self) -> TargetDraft {
        TargetDraft {
            provider: self.provider.as_str().to_owned(),
            model: self.model.clone(),
            base_url: self.base_url.clone(),
        }
    }
}
