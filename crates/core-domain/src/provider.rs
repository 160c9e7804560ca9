use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

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

    /// True when the family turns text into vectors (Anthropic has no embeddings API).
    pub const fn embeds(self) -> bool {
        !matches!(self, Self::Anthropic)
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
