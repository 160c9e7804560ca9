use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::MockConfig;

/// The `[providers]` section: credentials, endpoints, timeouts and retries for every upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// OpenAI, and the default endpoint of the `openai` provider.
    pub openai: UpstreamConfig,
    /// Anthropic.
    pub anthropic: UpstreamConfig,
    /// Google Gemini.
    pub google: UpstreamConfig,
    /// The key for specialists whose `base_url` is on `api.x.ai` (OpenAI format).
    pub xai: KeyConfig,
    /// Keys for other OpenAI-compatible servers named by specialists' `base_url`s. A server
    /// not listed here gets no `Authorization` header: the OpenAI key is only ever sent to the
    /// configured OpenAI endpoint.
    pub openai_compatible: Vec<CompatibleServer>,
    /// The built-in mock.
    pub mock: MockConfig,
    /// Base URLs a specialist may use even though they are plain http or private (a local
    /// Ollama, a vLLM in the same network), exactly as written.
    pub allowed_http_base_urls: Vec<String>,
    /// How long to wait for a TCP (and TLS) connection to any upstream, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            openai: UpstreamConfig::with_base_url("https://api.openai.com/v1"),
            anthropic: UpstreamConfig::with_base_url("https://api.anthropic.com"),
            google: UpstreamConfig::with_base_url("https://generativelanguage.googleapis.com"),
            xai: KeyConfig::default(),
            openai_compatible: Vec::new(),
            mock: MockConfig::default(),
            allowed_http_base_urls: Vec::new(),
            connect_timeout_ms: 10_000,
        }
    }
}

/// One upstream's credentials, endpoint, deadlines and retries.
///
/// Deadlines: `first_byte_timeout_ms` runs until the response headers arrive (for a whole,
/// non-streamed answer that is most of the generation time, hence the generous default);
/// `idle_timeout_ms` is the longest silence allowed between two chunks of a stream;
/// `total_timeout_ms` bounds the whole call, retries included.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The API key; when absent, the provider's usual environment variable is used.
    pub api_key: Option<SecretString>,
    /// Where the API lives. Trusted as written: ops may point it at a local server.
    pub base_url: String,
    /// Deadline for the response headers, in milliseconds.
    pub first_byte_timeout_ms: u64,
    /// Longest gap between stream chunks, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Deadline for the whole call, in milliseconds.
    pub total_timeout_ms: u64,
    /// Retries after the first attempt (connect errors, 429, 5xx; never once the answer has
    /// started).
    pub max_retries: u32,
    /// First retry delay in milliseconds, doubled per retry, with jitter.
    pub retry_base_delay_ms: u64,
    /// Longest delay between retries, and the longest `Retry-After` honoured (a longer one
    /// fails the call at once with the upstream's rate-limit error).
    pub retry_max_delay_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: String::new(),
            first_byte_timeout_ms: 120_000,
            idle_timeout_ms: 30_000,
            total_timeout_ms: 600_000,
            max_retries: 2,
            retry_base_delay_ms: 250,
            retry_max_delay_ms: 10_000,
        }
    }
}

impl UpstreamConfig {
    fn with_base_url(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            ..Self::default()
        }
    }

    pub(crate) fn limits(&self) -> CallLimits {
        CallLimits {
            first_byte: Duration::from_millis(self.first_byte_timeout_ms),
            idle: Duration::from_millis(self.idle_timeout_ms),
            total: Duration::from_millis(self.total_timeout_ms),
            max_retries: self.max_retries,
            base_delay: Duration::from_millis(self.retry_base_delay_ms),
            max_delay: Duration::from_millis(self.retry_max_delay_ms),
        }
    }
}

/// Deadlines and retry policy for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// Just a key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// The API key; when absent, the usual environment variable is used.
    pub api_key: Option<SecretString>,
}

/// An OpenAI-compatible server and the key to send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatibleServer {
    /// The base URL exactly as specialists name it (compared without a trailing `/`).
    pub base_url: String,
    /// Its key.
    pub api_key: SecretString,
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
        config.openai_compatible.push(CompatibleServer {
            base_url: "https://llm.internal.example/v1".into(),
            api_key: SecretString::from("vllm-secret-key"),
        });
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-live-very-secret"), "{debug}");
        assert!(!debug.contains("vllm-secret-key"), "{debug}");
    }
}
