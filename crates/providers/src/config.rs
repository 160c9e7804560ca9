use std::num::NonZeroUsize;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

use crate::{MockConfig, Sleeper};

/// The `[providers]` section: credentials, endpoints, timeouts and retries for every upstream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// OpenAI, and the default endpoint of the `openai` provider.
    #[serde(deserialize_with = "openai_section")]
    pub openai: UpstreamConfig,
    /// Anthropic.
    #[serde(deserialize_with = "anthropic_section")]
    pub anthropic: UpstreamConfig,
    /// Google Gemini.
    #[serde(deserialize_with = "google_section")]
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
    /// The largest single stream event accepted from an upstream, in bytes (default 1 MiB).
    /// A bigger one fails the stream with `upstream_error` "event too large": a real event is
    /// a few hundred bytes, and each one is held whole in memory while it arrives.
    pub max_event_bytes: NonZeroUsize,
    /// The largest non-streamed upstream response body read, success or error, in bytes
    /// (default 16 MiB). A bigger one fails the call with `upstream_error` "response too
    /// large" as soon as the limit is passed, instead of holding it all in memory.
    pub max_response_bytes: NonZeroUsize,
}

impl ProvidersConfig {
    /// Every configured key that an HTTP header could not carry (a pasted key with a newline
    /// or space inside, a non-ASCII character), by its config key. Never the key itself.
    pub fn unusable_keys(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut sections: Vec<(String, &Option<SecretString>, &[SecretString])> = [
            ("openai", &self.openai.api_key, &self.openai.api_keys),
            (
                "anthropic",
                &self.anthropic.api_key,
                &self.anthropic.api_keys,
            ),
            ("google", &self.google.api_key, &self.google.api_keys),
            ("xai", &self.xai.api_key, &self.xai.api_keys),
        ]
        .into_iter()
        .map(|(name, key, list)| (format!("providers.{name}"), key, list.as_slice()))
        .collect();
        for (i, server) in self.openai_compatible.iter().enumerate() {
            sections.push((
                format!("providers.openai_compatible[{i}]"),
                &server.api_key,
                &server.api_keys,
            ));
        }
        let mut keys: Vec<(String, &SecretString)> = Vec::new();
        for (prefix, key, list) in sections {
            if let Some(key) = key {
                keys.push((format!("{prefix}.api_key"), key));
            }
            for (i, key) in list.iter().enumerate() {
                keys.push((format!("{prefix}.api_keys[{i}]"), key));
            }
        }
        keys.into_iter()
            .filter(|(_, key)| {
                let key = key.expose_secret();
                key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// Every `providers.openai_compatible` entry listed without any key, by its config key:
    /// a listed server has at least one (`api_key` or `api_keys`).
    pub fn keyless_compatible_servers(&self) -> Vec<String> {
        self.openai_compatible
            .iter()
            .enumerate()
            .filter(|(_, server)| server.keys().is_empty())
            .map(|(i, _)| format!("providers.openai_compatible[{i}]"))
            .collect()
    }
}

/// `api_key` followed by `api_keys`, as one list (duplicates are dropped by the key pool).
fn merged(api_key: &Option<SecretString>, api_keys: &[SecretString]) -> Vec<SecretString> {
    api_key.iter().chain(api_keys).cloned().collect()
}

const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
const GOOGLE_BASE_URL: &str = "https://generativelanguage.googleapis.com";

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            openai: UpstreamConfig::with_base_url(OPENAI_BASE_URL),
            anthropic: UpstreamConfig::with_base_url(ANTHROPIC_BASE_URL),
            google: UpstreamConfig::with_base_url(GOOGLE_BASE_URL),
            xai: KeyConfig::default(),
            openai_compatible: Vec::new(),
            mock: MockConfig::default(),
            allowed_http_base_urls: Vec::new(),
            connect_timeout_ms: 10_000,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

const DEFAULT_MAX_EVENT_BYTES: NonZeroUsize =
    NonZeroUsize::new(1024 * 1024).expect("1 MiB is not 0");
const DEFAULT_MAX_RESPONSE_BYTES: NonZeroUsize =
    NonZeroUsize::new(16 * 1024 * 1024).expect("16 MiB is not 0");

/// One upstream's credentials, endpoint, deadlines and retries.
///
/// Deadlines: `first_byte_timeout_ms` runs until the response headers arrive (for a whole,
/// non-streamed answer that is most of the generation time, hence the generous default);
/// `idle_timeout_ms` is the longest silence allowed between two chunks of a stream;
/// `total_timeout_ms` bounds the whole call, retries included.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The API key; when absent, the provider's usual environment variable is used.
    #[serde(
        serialize_with = "mask_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key: Option<SecretString>,
    /// More keys for the same endpoint, tried in turn after `api_key`: a key that gets a 429
    /// or a 401/403 rests while the others carry on.
    #[serde(serialize_with = "mask_list", skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<SecretString>,
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
    /// How long a key rests after a 401/403, or a 429 without `Retry-After` (with one, it
    /// rests that long, at most a day), in milliseconds.
    pub cooldown_ms: u64,
    /// Consecutive failures (no connection, a connect or first-byte timeout, a 5xx or 529, a
    /// 401/403) of one key at one base URL that open its circuit; 0 never opens it.
    pub breaker_failures: u32,
    /// How long an open circuit stays open before one probe request may go through, in
    /// milliseconds.
    pub breaker_open_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            api_keys: Vec::new(),
            base_url: String::new(),
            first_byte_timeout_ms: 120_000,
            idle_timeout_ms: 30_000,
            total_timeout_ms: 600_000,
            max_retries: 2,
            retry_base_delay_ms: 250,
            retry_max_delay_ms: 10_000,
            cooldown_ms: 60_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
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

    /// The endpoint's keys: `api_key` (or its environment variable) followed by `api_keys`.
    pub fn keys(&self) -> Vec<SecretString> {
        merged(&self.api_key, &self.api_keys)
    }

    /// How long keys rest and when circuits open, for every endpoint this section governs.
    pub(crate) fn pool_policy(&self) -> crate::keys::PoolPolicy {
        crate::keys::PoolPolicy {
            cooldown: Duration::from_millis(self.cooldown_ms),
            breaker_failures: self.breaker_failures,
            breaker_open: Duration::from_millis(self.breaker_open_ms),
        }
    }

    /// This upstream's deadlines and retries, with the size bounds every upstream shares,
    /// waiting between retries with `sleeper`.
    pub(crate) fn limits(
        &self,
        shared: &ProvidersConfig,
        sleeper: &'static dyn Sleeper,
    ) -> CallLimits {
        CallLimits {
            max_event_bytes: shared.max_event_bytes.get(),
            max_response_bytes: shared.max_response_bytes.get(),
            first_byte: Duration::from_millis(self.first_byte_timeout_ms),
            idle: Duration::from_millis(self.idle_timeout_ms),
            total: Duration::from_millis(self.total_timeout_ms),
            max_retries: self.max_retries,
            base_delay: Duration::from_millis(self.retry_base_delay_ms),
            max_delay: Duration::from_millis(self.retry_max_delay_ms),
            sleeper,
        }
    }
}

/// An `[providers.<name>]` table as written: every key optional. Keys left out keep that
/// provider's own defaults (its base URL above all), which a struct-level default could not
/// know.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamSection {
    api_key: Option<SecretString>,
    api_keys: Option<Vec<SecretString>>,
    base_url: Option<String>,
    first_byte_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    max_retries: Option<u32>,
    retry_base_delay_ms: Option<u64>,
    retry_max_delay_ms: Option<u64>,
    cooldown_ms: Option<u64>,
    breaker_failures: Option<u32>,
    breaker_open_ms: Option<u64>,
}

impl UpstreamSection {
    fn over(self, defaults: UpstreamConfig) -> UpstreamConfig {
        UpstreamConfig {
            api_key: self.api_key.or(defaults.api_key),
            api_keys: self.api_keys.unwrap_or(defaults.api_keys),
            base_url: self.base_url.unwrap_or(defaults.base_url),
            first_byte_timeout_ms: self
                .first_byte_timeout_ms
                .unwrap_or(defaults.first_byte_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(defaults.idle_timeout_ms),
            total_timeout_ms: self.total_timeout_ms.unwrap_or(defaults.total_timeout_ms),
            max_retries: self.max_retries.unwrap_or(defaults.max_retries),
            retry_base_delay_ms: self
                .retry_base_delay_ms
                .unwrap_or(defaults.retry_base_delay_ms),
            retry_max_delay_ms: self
                .retry_max_delay_ms
                .unwrap_or(defaults.retry_max_delay_ms),
            cooldown_ms: self.cooldown_ms.unwrap_or(defaults.cooldown_ms),
            breaker_failures: self.breaker_failures.unwrap_or(defaults.breaker_failures),
            breaker_open_ms: self.breaker_open_ms.unwrap_or(defaults.breaker_open_ms),
        }
    }
}

fn section<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    base_url: &str,
) -> Result<UpstreamConfig, D::Error> {
    UpstreamSection::deserialize(deserializer)
        .map(|s| s.over(UpstreamConfig::with_base_url(base_url)))
}

fn openai_section<'de, D: serde::Deserializer<'de>>(d: D) -> Result<UpstreamConfig, D::Error> {
    section(d, OPENAI_BASE_URL)
}

fn anthropic_section<'de, D: serde::Deserializer<'de>>(d: D) -> Result<UpstreamConfig, D::Error> {
    section(d, ANTHROPIC_BASE_URL)
}

fn google_section<'de, D: serde::Deserializer<'de>>(d: D) -> Result<UpstreamConfig, D::Error> {
    section(d, GOOGLE_BASE_URL)
}

impl CallLimits {
    /// The retries, for a router.
    pub(crate) fn retry_policy(&self) -> crate::RetryPolicy {
        crate::RetryPolicy {
            max_retries: self.max_retries,
            base_delay: self.base_delay,
            max_delay: self.max_delay,
        }
    }
}

/// Deadlines and retry policy for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    pub max_event_bytes: usize,
    pub max_response_bytes: usize,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub sleeper: &'static dyn Sleeper,
}

/// Just a key.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// The API key; when absent, the usual environment variable is used.
    #[serde(
        serialize_with = "mask_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key: Option<SecretString>,
    /// More keys, tried in turn after `api_key`.
    #[serde(serialize_with = "mask_list", skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<SecretString>,
}

impl KeyConfig {
    /// `api_key` (or `XAI_API_KEY`) followed by `api_keys`.
    pub fn keys(&self) -> Vec<SecretString> {
        merged(&self.api_key, &self.api_keys)
    }
}

/// An OpenAI-compatible server and the key to send it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompatibleServer {
    /// The base URL exactly as specialists name it (compared without a trailing `/`).
    pub base_url: String,
    /// Its key. A listed server needs `api_key`, `api_keys` or both.
    #[serde(
        default,
        serialize_with = "mask_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key: Option<SecretString>,
    /// More keys, tried in turn after `api_key`.
    #[serde(
        default,
        serialize_with = "mask_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_keys: Vec<SecretString>,
}

impl CompatibleServer {
    /// A server with one key.
    pub fn with_key(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: Some(api_key),
            api_keys: Vec::new(),
        }
    }

    /// `api_key` followed by `api_keys`.
    pub fn keys(&self) -> Vec<SecretString> {
        merged(&self.api_key, &self.api_keys)
    }
}

/// What a secret looks like when configuration is printed: that it is set, not what it is.
pub const MASKED: &str = "********";

fn mask_list<S: Serializer>(keys: &[SecretString], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(keys.len()))?;
    for _ in keys {
        seq.serialize_element(MASKED)?;
    }
    seq.end()
}

fn mask_optional<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str(MASKED),
        None => serializer.serialize_none(),
    }
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
    fn keys_a_header_cannot_carry_are_named_but_never_shown() {
        let mut config = ProvidersConfig::default();
        config.openai.api_key = Some(SecretString::from("sk-fine-0123"));
        config.anthropic.api_key = Some(SecretString::from("sk-ant-pasted\nwith-newline"));
        config.openai_compatible = vec![CompatibleServer::with_key(
            "http://127.0.0.1:8001/v1",
            SecretString::from("has space"),
        )];
        config.xai.api_key = Some(SecretString::from("xai-ключ"));
        assert_eq!(
            config.unusable_keys(),
            [
                "providers.anthropic.api_key",
                "providers.xai.api_key",
                "providers.openai_compatible[0].api_key"
            ]
        );
        let Err(err) = crate::ProviderRegistry::from_config(&config) else {
            panic!("unusable keys are refused");
        };
        let err = err.to_string();
        assert!(err.contains("providers.anthropic.api_key"), "{err}");
        assert!(
            !err.contains("sk-ant-pasted") && !err.contains("has space"),
            "{err}"
        );
        config.anthropic.api_key = None;
        config.openai_compatible.clear();
        config.xai.api_key = None;
        assert!(crate::ProviderRegistry::from_config(&config).is_ok());
    }

    #[test]
    fn extra_keys_are_parsed_merged_after_api_key_masked_and_checked_by_position() {
        let config: ProvidersConfig = serde_json::from_str(
            r#"{"openai": {"api_key": "sk-one", "api_keys": ["sk-two", "sk-one", "bad key"],
                 "cooldown_ms": 5000, "breaker_failures": 0, "breaker_open_ms": 100},
                "xai": {"api_keys": ["xai-a"]},
                "openai_compatible": [{"base_url": "https://llm.example/v1",
                                       "api_keys": ["vllm-a", "vllm-b"]}]}"#,
        )
        .unwrap();
        let merged: Vec<String> = config
            .openai
            .keys()
            .iter()
            .map(|k| k.expose_secret().to_owned())
            .collect();
        assert_eq!(merged, ["sk-one", "sk-two", "sk-one", "bad key"]);
        assert_eq!(
            (config.openai.cooldown_ms, config.openai.breaker_failures),
            (5000, 0)
        );
        assert_eq!(config.openai.breaker_open_ms, 100);
        assert_eq!(config.anthropic.cooldown_ms, 60_000);
        assert_eq!(config.anthropic.breaker_failures, 5);
        assert_eq!(config.anthropic.breaker_open_ms, 30_000);
        assert_eq!(config.xai.keys().len(), 1);
        assert_eq!(config.openai_compatible[0].keys().len(), 2);
        assert!(config.keyless_compatible_servers().is_empty());
        assert_eq!(config.unusable_keys(), ["providers.openai.api_keys[2]"]);

        let json = serde_json::to_string(&config).unwrap();
        for secret in ["sk-two", "bad key", "xai-a", "vllm-a"] {
            assert!(!json.contains(secret), "{json}");
        }
        assert!(
            json.contains(&format!("\"api_keys\":[\"{MASKED}\",\"{MASKED}\"")),
            "{json}"
        );

        let keyless: ProvidersConfig = serde_json::from_str(
            r#"{"openai_compatible": [{"base_url": "https://a.example/v1", "api_key": "k"},
                                      {"base_url": "https://b.example/v1"}]}"#,
        )
        .unwrap();
        assert_eq!(
            keyless.keyless_compatible_servers(),
            ["providers.openai_compatible[1]"]
        );
        let Err(err) = crate::ProviderRegistry::from_config(&keyless) else {
            panic!("a listed server without a key is refused");
        };
        assert!(
            err.to_string().contains("providers.openai_compatible[1]"),
            "{err}"
        );
    }

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
    fn a_partial_provider_table_keeps_that_provider_s_defaults() {
        let config: ProvidersConfig = serde_json::from_str(
            r#"{"openai": {"api_key": "sk-x"}, "google": {"max_retries": 5}}"#,
        )
        .unwrap();
        assert_eq!(config.openai.base_url, OPENAI_BASE_URL);
        assert_eq!(config.google.base_url, GOOGLE_BASE_URL);
        assert_eq!(config.google.max_retries, 5);
        assert_eq!(config.openai.idle_timeout_ms, 30_000);
        assert!(serde_json::from_str::<ProvidersConfig>(r#"{"openai": {"apikey": "x"}}"#).is_err());
    }

    #[test]
    fn size_bounds_default_to_1_mib_and_16_mib_and_refuse_0() {
        let config = ProvidersConfig::default();
        assert_eq!(config.max_event_bytes.get(), 1024 * 1024);
        assert_eq!(config.max_response_bytes.get(), 16 * 1024 * 1024);
        let config: ProvidersConfig =
            serde_json::from_str(r#"{"max_event_bytes": 4096, "max_response_bytes": 65536}"#)
                .unwrap();
        let limits = config.openai.limits(&config, &crate::TokioSleeper);
        assert_eq!(
            (limits.max_event_bytes, limits.max_response_bytes),
            (4096, 65536)
        );
        for zero in [r#"{"max_event_bytes": 0}"#, r#"{"max_response_bytes": 0}"#] {
            assert!(
                serde_json::from_str::<ProvidersConfig>(zero).is_err(),
                "{zero}"
            );
        }
    }

    #[test]
    fn serialised_config_masks_every_key() {
        let mut config = ProvidersConfig::default();
        config.openai.api_key = Some(SecretString::from("sk-live-very-secret"));
        config.openai_compatible.push(CompatibleServer::with_key(
            "https://llm.example/v1",
            SecretString::from("vllm-secret-key"),
        ));
        let json = serde_json::to_string(&config).unwrap();
        assert!(
            !json.contains("very-secret") && !json.contains("vllm-secret"),
            "{json}"
        );
        assert!(json.contains(MASKED));
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let mut config = ProvidersConfig::default();
        config.openai.api_key = Some(SecretString::from("sk-live-very-secret"));
        config.openai_compatible.push(CompatibleServer::with_key(
            "https://llm.internal.example/v1",
            SecretString::from("vllm-secret-key"),
        ));
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-live-very-secret"), "{debug}");
        assert!(!debug.contains("vllm-secret-key"), "{debug}");
    }
}
