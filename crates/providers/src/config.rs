use secrecy::SecretString;
use serde::Deserialize;

use crate::MockConfig;

/// The `[providers]` section: credentials and endpoints for every upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// OpenAI and OpenAI-compatible servers.
    pub openai: UpstreamConfig,
    /// Anthropic.
    pub anthropic: UpstreamConfig,
    /// Google Gemini.
    pub google: UpstreamConfig,
    /// The key for specialists on xAI (`base_url` at `api.x.ai`), which speak the OpenAI format.
    pub xai: XaiConfig,
    /// The built-in mock.
    pub mock: MockConfig,
    /// Base URLs a specialist may use even though they are plain http or private (a local
    /// Ollama, a vLLM in the same network), exactly as written.
    pub allowed_http_base_urls: Vec<String>,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            openai: UpstreamConfig::with_base_url("https://api.openai.com/v1"),
            anthropic: UpstreamConfig::with_base_url("https://api.anthropic.com"),
            google: UpstreamConfig::with_base_url("https://generativelanguage.googleapis.com"),
            xai: XaiConfig::default(),
            mock: MockConfig::default(),
            allowed_http_base_urls: Vec::new(),
        }
    }
}

/// One upstream's credentials and endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The API key; when absent, the provider's usual environment variable is used.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Where the API lives. Trusted as written: ops may point it at a local server.
    pub base_url: String,
}

impl UpstreamConfig {
    fn with_base_url(base_url: &str) -> Self {
        Self {
            api_key: None,
            base_url: base_url.to_owned(),
        }
    }
}

/// Credentials for xAI, used when a specialist's `base_url` is on `api.x.ai`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XaiConfig {
    /// The API key; when absent, `XAI_API_KEY` is used.
    pub api_key: Option<SecretString>,
}

impl ProvidersConfig {
    /// Fills every missing API key from the usual environment variables (`OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY`, `GOOGLE_API_KEY`, `XAI_API_KEY`), read through `lookup` so tests need
    /// not touch the process environment. Empty values count as missing.
    pub fn with_env_keys(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let from_env = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(SecretString::from)
        };
        for (slot, name) in [
            (&mut self.openai.api_key, "OPENAI_API_KEY"),
            (&mut self.anthropic.api_key, "ANTHROPIC_API_KEY"),
            (&mut self.google.api_key, "GOOGLE_API_KEY"),
            (&mut self.xai.api_key, "XAI_API_KEY"),
        ] {
            if slot.is_none() {
                *slot = from_env(name);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn env_fills_only_missing_keys() {
        let mut config = ProvidersConfig::default();
        config.openai.api_key = Some(SecretString::from("from-config"));
        let config = config.with_env_keys(|name| match name {
            "OPENAI_API_KEY" => Some("from-env".into()),
            "ANTHROPIC_API_KEY" => Some("sk-ant".into()),
            "GOOGLE_API_KEY" => Some("   ".into()),
            _ => None,
        });
        assert_eq!(
            config.openai.api_key.unwrap().expose_secret(),
            "from-config"
        );
        assert_eq!(config.anthropic.api_key.unwrap().expose_secret(), "sk-ant");
        assert!(config.google.api_key.is_none());
        assert!(config.xai.api_key.is_none());
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let mut config = ProvidersConfig::default();
        config.openai.api_key = Some(SecretString::from("sk-live-very-secret"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-live-very-secret"), "{debug}");
    }
}
