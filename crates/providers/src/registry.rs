use std::collections::HashMap;
use std::sync::Arc;

use core_domain::{ProviderKind, Specialist};

use std::time::Duration;

use crate::keys::KeyPool;
use crate::transport::{Sleeper, TokioSleeper, Transport};
use crate::{
    AnthropicProvider, ChatProvider, Destination, GoogleProvider, KeyHealth, MockProvider,
    OpenAiProvider, ProviderError, ProvidersConfig, Route,
};

/// The environment variable that holds the API key for `provider` (empty for the mock, which
/// needs none).
pub const fn api_key_env(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::OpenAi => "OPENAI_API_KEY",
        ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
        ProviderKind::Google => "GOOGLE_API_KEY",
        ProviderKind::Mock => "",
    }
}

/// `pool` when it holds a key, or [`ProviderError::NotConfigured`] naming the variable and
/// config key for `provider`.
pub(crate) fn required_pool(
    pool: &KeyPool,
    provider: ProviderKind,
) -> Result<&KeyPool, ProviderError> {
    if pool.has_keys() {
        Ok(pool)
    } else {
        Err(ProviderError::NotConfigured {
            provider,
            env_var: api_key_env(provider),
            config_key: config_key(provider),
        })
    }
}

const fn config_key(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::OpenAi => "providers.openai.api_key",
        ProviderKind::Anthropic => "providers.anthropic.api_key",
        ProviderKind::Google => "providers.google.api_key",
        ProviderKind::Mock => "providers.mock",
    }
}

/// The configured providers, by kind.
#[derive(Default, Clone)]
pub struct ProviderRegistry {
    providers: HashMap<ProviderKind, Arc<dyn ChatProvider>>,
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every provider, sharing one pooled HTTP client. Providers without a key are registered
    /// too (the `openai` provider needs different keys for different base URLs):
    /// [`ProviderRegistry::provider_for`] refuses a specialist whose call would lack its key.
    pub fn from_config(config: &ProvidersConfig) -> Result<Self, ProviderError> {
        Self::from_config_with_sleeper(config, &TokioSleeper)
    }

    /// Like [`ProviderRegistry::from_config`], with calls waiting between retries on `sleeper`
    /// instead of Tokio's timer (a test's, to check the backoff without waiting it out).
    pub fn from_config_with_sleeper(
        config: &ProvidersConfig,
        sleeper: &'static dyn Sleeper,
    ) -> Result<Self, ProviderError> {
        let keyless = config.keyless_compatible_servers();
        if !keyless.is_empty() {
            return Err(ProviderError::Setup {
                message: format!(
                    "{} must have api_key or api_keys (a server that takes no key needs no \
                     entry)",
                    keyless.join(", ")
                ),
            });
        }
        let unusable = config.unusable_keys();
        if !unusable.is_empty() {
            return Err(ProviderError::Setup {
                message: format!(
                    "{} must be printable ASCII without spaces (is there a stray newline or \
                     quote from pasting it?)",
                    unusable.join(", ")
                ),
            });
        }
        let transport = Transport::new(Duration::from_millis(config.connect_timeout_ms))?;
        let mut registry = Self::new();
        registry.register(Arc::new(MockProvider::new(config.mock.clone())));
        registry.register(Arc::new(OpenAiProvider::new(
            config,
            transport.clone(),
            sleeper,
        )));
        registry.register(Arc::new(AnthropicProvider::new(
            config,
            transport.clone(),
            sleeper,
        )));
        registry.register(Arc::new(GoogleProvider::new(config, transport, sleeper)));
        Ok(registry)
    }

    /// Adds (or replaces) the provider for its kind.
    pub fn register(&mut self, provider: Arc<dyn ChatProvider>) {
        self.providers.insert(provider.kind(), provider);
    }

    /// The provider that serves `specialist`, checked to have the credentials a call for it
    /// needs (for `openai`, those its `base_url` routes to), or [`ProviderError::NotConfigured`]
    /// naming the variable to set. Nothing has been sent when this refuses.
    pub fn provider_for(
        &self,
        specialist: &Specialist,
    ) -> Result<Arc<dyn ChatProvider>, ProviderError> {
        self.provider_at(specialist.provider(), specialist.base_url())
    }

    /// A route to `first` (a specialist's own destination), then to `fallbacks`, each with its
    /// provider checked to have the credentials a call there needs, or why not.
    pub fn route(
        &self,
        first: Destination,
        fallbacks: impl IntoIterator<Item = Destination>,
    ) -> Route {
        let with_provider = |destination: Destination| {
            let provider = self.provider_at(destination.provider, destination.base_url.as_deref());
            (destination, provider)
        };
        Route::new(
            with_provider(first),
            fallbacks.into_iter().map(with_provider),
        )
    }

    /// The provider of `kind` for a call to `base_url`, checked to have its credentials.
    fn provider_at(
        &self,
        kind: ProviderKind,
        base_url: Option<&str>,
    ) -> Result<Arc<dyn ChatProvider>, ProviderError> {
        let provider = self
            .providers
            .get(&kind)
            .ok_or(ProviderError::NotConfigured {
                provider: kind,
                env_var: api_key_env(kind),
                config_key: config_key(kind),
            })?;
        provider.check_configured(base_url)?;
        Ok(Arc::clone(provider))
    }

    /// The input tokens `request` would take at `specialist`'s own destination, as its upstream
    /// counts them without asking the model (Anthropic's `count_tokens`): what a token-count
    /// door calls. Refused like a call when the provider lacks credentials
    /// ([`ProviderError::NotConfigured`]), and as [`ProviderError::InvalidRequest`] when its
    /// provider does not count ([`ChatProvider::counts_tokens`] says which).
    pub async fn count_tokens(
        &self,
        specialist: &Specialist,
        request: &crate::ProviderRequest,
    ) -> Result<u32, ProviderError> {
        self.provider_for(specialist)?.count_tokens(request).await
    }

    /// The provider of `kind`, if registered.
    pub fn get(&self, kind: ProviderKind) -> Option<Arc<dyn ChatProvider>> {
        self.providers.get(&kind).cloned()
    }

    /// How every key of every endpoint is doing (configured endpoints, and those called so
    /// far), by provider; never a key itself.
    pub fn key_health(&self) -> Vec<KeyHealth> {
        let mut kinds: Vec<&ProviderKind> = self.providers.keys().collect();
        kinds.sort_by_key(|kind| kind.as_str());
        kinds
            .into_iter()
            .filter_map(|kind| self.providers.get(kind))
            .flat_map(|provider| provider.key_health())
            .collect()
    }

    /// The kinds that are configured.
    pub fn configured(&self) -> impl Iterator<Item = ProviderKind> + '_ {
        self.providers.keys().copied()
    }
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.providers.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use core_domain::{SpecialistDraft, SpecialistId};
    use secrecy::SecretString;

    use super::*;

    fn specialist(provider: &str) -> Specialist {
        specialist_at(provider, None)
    }

    fn specialist_at(provider: &str, base_url: Option<&str>) -> Specialist {
        let spec = SpecialistDraft {
            base_url: base_url.map(str::to_owned),
            temperature: 0.5,
            max_tokens: 100,
            ..SpecialistDraft::new("S", provider, "m", "p")
        }
        .validate()
        .unwrap();
        Specialist::new(SpecialistId::parse("s").unwrap(), spec, Utc::now())
    }

    #[test]
    fn missing_provider_names_the_variable_to_set() {
        let mut registry = ProviderRegistry::new();
        registry.register(Arc::new(MockProvider::default()));
        assert!(registry.provider_for(&specialist("mock")).is_ok());
        let err = registry
            .provider_for(&specialist("anthropic"))
            .err()
            .unwrap();
        assert_eq!(
            err,
            ProviderError::NotConfigured {
                provider: ProviderKind::Anthropic,
                env_var: "ANTHROPIC_API_KEY",
                config_key: "providers.anthropic.api_key",
            }
        );
        assert!(err.to_string().contains("ANTHROPIC_API_KEY"));
    }

    fn not_configured(
        provider: ProviderKind,
        env_var: &'static str,
        config_key: &'static str,
    ) -> Option<ProviderError> {
        Some(ProviderError::NotConfigured {
            provider,
            env_var,
            config_key,
        })
    }

    /// Every provider is registered from configuration, keyed or not; `provider_for` is where
    /// a missing key is found, following the `openai` provider's key routing by base URL.
    #[test]
    fn provider_for_refuses_a_specialist_whose_key_is_missing() {
        let key = || Some(SecretString::from("sk-test"));
        let unkeyed = ProvidersConfig {
            openai_compatible: vec![crate::CompatibleServer::with_key(
                "https://llm.example.com/v1",
                SecretString::from("sk-compatible"),
            )],
            ..ProvidersConfig::default()
        };
        let mut keyed = unkeyed.clone();
        keyed.openai.api_key = key();
        keyed.anthropic.api_key = key();
        keyed.google.api_key = key();
        keyed.xai.api_key = key();
        let xai = Some("https://api.x.ai/v1");
        let cases: [(&str, Option<&str>, Option<ProviderError>); 7] = [
            ("mock", None, None),
            (
                "openai",
                None,
                not_configured(
                    ProviderKind::OpenAi,
                    "OPENAI_API_KEY",
                    "providers.openai.api_key",
                ),
            ),
            (
                "anthropic",
                None,
                not_configured(
                    ProviderKind::Anthropic,
                    "ANTHROPIC_API_KEY",
                    "providers.anthropic.api_key",
                ),
            ),
            (
                "google",
                None,
                not_configured(
                    ProviderKind::Google,
                    "GOOGLE_API_KEY",
                    "providers.google.api_key",
                ),
            ),
            (
                "openai",
                xai,
                not_configured(ProviderKind::OpenAi, "XAI_API_KEY", "providers.xai.api_key"),
            ),
            // A compatible server needs no OpenAI key: it gets its own or none.
            ("openai", Some("https://llm.example.com/v1"), None),
            ("openai", Some("https://other.example.com/v1"), None),
        ];
        let unkeyed = ProviderRegistry::from_config(&unkeyed).unwrap();
        let keyed = ProviderRegistry::from_config(&keyed).unwrap();
        for (provider, base_url, refusal) in cases {
            let specialist = specialist_at(provider, base_url);
            assert_eq!(
                unkeyed.provider_for(&specialist).err(),
                refusal,
                "{provider} at {base_url:?} without keys"
            );
            let served = keyed.provider_for(&specialist);
            assert_eq!(
                served.map(|p| p.kind()).ok(),
                Some(specialist.provider()),
                "{provider} at {base_url:?} with every key"
            );
        }
    }
}
