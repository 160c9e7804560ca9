//! The one validation of a [`Settings`]: `serve` ([`crate::Application::build`]),
//! `commander check-config` and the tests all go through [`Settings::validate`], so what the
//! check reports and what start-up refuses cannot drift apart.
//!
//! Each crate checks its own section (`usage-store` the database URL, `http-api` the auth and
//! rate-limit sections, `providers` its keys) and hands back typed values; [`crate::bounds`]
//! holds the numeric ranges. What passes is a [`Validated`]: the values the server is built
//! from, durations already as [`Duration`]s.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use core_domain::Budget;
use http_api::{Authenticator, RateLimits};
use providers::{MASKED, ProviderRegistry};

use crate::Settings;

/// One thing wrong with a configuration, naming the key (or section) at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    key: String,
    text: String,
}

impl Problem {
    /// `key` is wrong because of `detail`; shown as `key: detail`.
    pub fn new(key: impl Into<String>, detail: impl fmt::Display) -> Self {
        let key = key.into();
        let text = format!("{key}: {detail}");
        Self { key, text }
    }

    /// A problem from a crate's own error, whose message already names the key.
    fn named_by(key: &str, error: impl fmt::Display) -> Self {
        Self {
            key: key.to_owned(),
            text: error.to_string(),
        }
    }

    /// The key or section at fault, as written in `commander.toml` (e.g. `database.url`).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A configuration that passed [`Settings::validate`], with the typed values built from it.
/// Only `validate` makes one, so holding one is proof the checks ran.
pub struct Validated {
    /// The settings themselves, for the sections handed on as they are.
    pub(crate) settings: Settings,
    /// `server.bind`.
    pub(crate) bind: SocketAddr,
    /// `[auth]`, already checked against the bind address.
    pub(crate) auth: Authenticator,
    /// `[rate_limit]`.
    pub(crate) rate_limits: RateLimits,
    /// `[providers]`.
    pub(crate) providers: ProviderRegistry,
    /// `server.shutdown_grace_seconds`.
    pub(crate) shutdown_grace: Duration,
    /// `server.sse_keep_alive_seconds` (never zero).
    pub(crate) sse_keep_alive: Duration,
    /// `specialists.reload_interval_ms`; `None` when 0 (never reload).
    pub(crate) catalogue_reload: Option<Duration>,
    /// `[[budgets.limits]]`, validated.
    pub(crate) budgets: Vec<Budget>,
    /// `budgets.lease_ms`, or its default (the routing deadline and a minute).
    pub(crate) budget_lease: Duration,
}

impl Validated {
    /// The settings validated.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The listen address (port 0: any free port).
    pub fn bind(&self) -> SocketAddr {
        self.bind
    }

    /// How long in-flight calls get at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// The silence after which a stream gets a keep-alive comment (never zero).
    pub fn sse_keep_alive(&self) -> Duration {
        self.sse_keep_alive
    }

    /// How often the catalogue file is polled for edits; `None`: never.
    pub fn catalogue_reload(&self) -> Option<Duration> {
        self.catalogue_reload
    }

    /// The provider registry, to register providers of one's own over the configured ones.
    pub fn providers_mut(&mut self) -> &mut ProviderRegistry {
        &mut self.providers
    }
}

impl fmt::Debug for Validated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validated")
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Every problem that would stop the server from starting, or the values it starts with.
    /// Reads no file and opens no socket: the catalogue and the database are checked by
    /// opening them.
    pub fn validate(&self) -> Result<Validated, Vec<Problem>> {
        let out_of_range = crate::bounds::out_of_range(self);
        let mut problems = Vec::new();

        let bind = match self.server.bind.parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                problems.push(Problem::new(
                    "server.bind",
                    format_args!(
                        "'{}' is not an address like 127.0.0.1:8000",
                        self.server.bind
                    ),
                ));
                None
            }
        };
        let auth = match Authenticator::from_config(&self.auth) {
            Ok(auth) => match bind.map(|address| auth.check_bind(address)) {
                Some(Err(e)) => {
                    problems.push(Problem::named_by("auth", e));
                    None
                }
                _ => Some(auth),
            },
            Err(e) => {
                problems.push(Problem::named_by("auth", e));
                None
            }
        };
        // Building the limiters allocates `max_buckets` up front: only once that is in range.
        let rate_limit_in_range = !out_of_range
            .iter()
            .any(|problem| problem.key.starts_with("rate_limit."));
        let rate_limits = if rate_limit_in_range {
            RateLimits::from_config(&self.rate_limit, &self.redis)
                .map_err(|e| problems.push(Problem::new(e.key(), e)))
                .ok()
        } else {
            None
        };
        if self.database.backend().is_err() {
            problems.push(Problem::new(
                "database.url",
                format_args!(
                    "'{}' is neither sqlite://PATH nor postgres://...",
                    masked_url(self.database.url.trim())
                ),
            ));
        }
        let providers = ProviderRegistry::from_config(&self.providers)
            .map_err(|e| problems.push(Problem::new("providers", e)))
            .ok();
        problems.extend(
            out_of_range
                .iter()
                .map(|found| Problem::new(found.key.clone(), found.describe())),
        );
        if let Err(e) = self.server.console.validate() {
            problems.push(Problem::new("server.console.session_secret", e));
        }
        let budgets = self.validate_budgets(&mut problems);
        let budget_lease = match self.budgets.lease_ms {
            Some(lease) => {
                if lease.get() <= self.routing.deadline_ms {
                    problems.push(Problem::new(
                        "budgets.lease_ms",
                        format_args!(
                            "{} must be longer than routing.deadline_ms ({}): a reservation \
                             must outlive the longest call, or a call still running could \
                             lose its hold and let others pass the limit",
                            lease.get(),
                            self.routing.deadline_ms
                        ),
                    ));
                }
                Duration::from_millis(lease.get())
            }
            None => Duration::from_millis(self.routing.deadline_ms.saturating_add(60_000)),
        };

        match (bind, auth, rate_limits, providers) {
            (Some(bind), Some(auth), Some(rate_limits), Some(providers)) if problems.is_empty() => {
                let server = &self.server;
                let reload_ms = self.specialists.reload_interval_ms;
                Ok(Validated {
                    settings: self.clone(),
                    bind,
                    auth,
                    rate_limits,
                    providers,
                    shutdown_grace: Duration::from_secs(server.shutdown_grace_seconds),
                    sse_keep_alive: Duration::from_secs(server.sse_keep_alive_seconds),
                    catalogue_reload: (reload_ms > 0).then(|| Duration::from_millis(reload_ms)),
                    budgets,
                    budget_lease,
                })
            }
            _ => Err(problems),
        }
    }

    /// The budgets of `[[budgets.limits]]`, each checked (every field at fault, as
    /// `budgets.limits[i].field`), ids unique, and a `key` budget naming a configured key.
    pub(crate) fn validate_budgets(&self, problems: &mut Vec<Problem>) -> Vec<Budget> {
        let mut budgets: Vec<Budget> = Vec::new();
        for (index, draft) in self.budgets.limits.iter().enumerate() {
            let key = |field: &str| format!("budgets.limits[{index}].{field}");
            match draft.validate() {
                Ok(budget) => {
                    if budgets.iter().any(|b| b.id() == budget.id()) {
                        problems.push(Problem::new(
                            key("id"),
                            format_args!("'{}' is used by another budget", budget.id()),
                        ));
                        continue;
                    }
                    if let core_domain::BudgetScope::Key(name) = budget.scope()
                        && !self.auth.api_keys.iter().any(|k| &k.name == name)
                    {
                        problems.push(Problem::new(
                            key("subject"),
                            format_args!("no API key named '{name}' in auth.api_keys"),
                        ));
                        continue;
                    }
                    budgets.push(budget);
                }
                Err(errors) => problems.extend(
                    errors
                        .errors()
                        .iter()
                        .map(|error| Problem::new(key(&error.field), &error.message)),
                ),
            }
        }
        budgets
    }

    /// The configuration as TOML with every secret (API keys, the JWT secret, a database
    /// password) masked: the one view of the settings meant to be printed or logged.
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        shown.database.url = masked_url(&shown.database.url);
        shown.redis.url = shown.redis.url.as_deref().map(masked_url);
        toml::to_string(&shown)
    }
}

/// `raw` with its password, if any, masked.
fn masked_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some(MASKED));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Application, StartupError};

    fn strings(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    #[tokio::test]
    async fn serve_refuses_every_problem_check_config_reports_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.specialists.path = dir.path().join("missing.json");
        settings.server.bind = "0.0.0.0:0".into();
        settings.database.url = "mysql://root:hunter2@db/commander".into();
        settings.server.shutdown_grace_seconds = u64::MAX;
        let reported = strings(&crate::check::problems(&settings));
        assert_eq!(reported.len(), 3, "{reported:#?}");

        let refused = match Application::build(settings).await {
            Err(StartupError::Invalid(problems)) => problems,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("started with {reported:#?}"),
        };
        assert_eq!(strings(&refused), reported);
        let keys: Vec<&str> = refused.iter().map(Problem::key).collect();
        assert_eq!(
            keys,
            ["auth", "database.url", "server.shutdown_grace_seconds"]
        );
        assert!(!reported.concat().contains("hunter2"), "{reported:#?}");
    }

    #[test]
    fn an_unusable_or_missing_extra_key_is_named_by_position_never_shown() {
        use secrecy::SecretString;
        let mut settings = Settings::default();
        settings.providers.openai.api_keys = vec![
            SecretString::from("sk-fine-1"),
            SecretString::from("sk-pasted\nbroken"),
        ];
        settings.providers.openai_compatible = vec![providers::CompatibleServer {
            base_url: "https://llm.example/v1".into(),
            api_key: None,
            api_keys: Vec::new(),
        }];
        let Err(problems) = settings.validate() else {
            panic!("an unusable key is refused");
        };
        let text = strings(&problems).concat();
        assert!(
            text.contains("providers.openai_compatible[0] must have api_key or api_keys"),
            "{text}"
        );
        settings.providers.openai_compatible.clear();
        let Err(problems) = settings.validate() else {
            panic!("an unusable key is refused");
        };
        let text = strings(&problems).concat();
        assert!(text.contains("providers.openai.api_keys[1]"), "{text}");
        assert!(
            !text.contains("sk-pasted") && !text.contains("sk-fine"),
            "{text}"
        );
        settings.providers.openai.api_keys.pop();
        settings.providers.anthropic.breaker_open_ms = 0;
        let Err(problems) = settings.validate() else {
            panic!("a circuit that never stays open is refused");
        };
        let keys: Vec<&str> = problems.iter().map(Problem::key).collect();
        assert_eq!(keys, ["providers.anthropic.breaker_open_ms"]);
    }

    #[test]
    fn the_redis_store_needs_a_usable_url_and_never_shows_its_password() {
        let mut settings = Settings::default();
        settings.rate_limit.store = http_api::RateLimitStore::Redis;
        let keys = |settings: &Settings| match settings.validate() {
            Err(problems) => (
                problems
                    .iter()
                    .map(|p| p.key().to_owned())
                    .collect::<Vec<_>>(),
                strings(&problems).concat(),
            ),
            Ok(_) => (Vec::new(), String::new()),
        };
        let (missing, text) = keys(&settings);
        assert_eq!(missing, ["redis.url"]);
        assert!(text.contains("required when rate_limit.store"), "{text}");
        settings.redis.url = Some("http://user:hunter2@cache:6379".into());
        let (bad, text) = keys(&settings);
        assert_eq!(bad, ["redis.url"]);
        assert!(!text.contains("hunter2"), "{text}");
        settings.redis.url = Some("redis://user:hunter2@cache:6379/0".into());
        let shown = settings.redacted_toml().unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        // A Redis nobody listens on is not a configuration problem: it is the fallback state.
        settings.redis.url = Some("redis://127.0.0.1:1/0".into());
        assert!(settings.validate().is_ok());
        // The local store does not look at [redis].
        settings.rate_limit.store = http_api::RateLimitStore::Local;
        settings.redis.url = Some("not a url".into());
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn instances_and_the_redis_timeout_have_ranges() {
        let mut settings = Settings::default();
        settings.rate_limit.instances = std::num::NonZeroU32::new(10_001).unwrap();
        settings.redis.timeout_ms = std::num::NonZeroU64::new(60_001).unwrap();
        let Err(problems) = settings.validate() else {
            panic!("out of range");
        };
        let keys: Vec<&str> = problems.iter().map(Problem::key).collect();
        assert_eq!(keys, ["rate_limit.instances", "redis.timeout_ms"]);
    }

    #[test]
    fn validated_settings_carry_durations() {
        let mut settings = Settings::default();
        settings.server.shutdown_grace_seconds = 7;
        settings.server.sse_keep_alive_seconds = 3;
        settings.specialists.reload_interval_ms = 250;
        let validated = settings.validate().unwrap();
        assert_eq!(validated.shutdown_grace, Duration::from_secs(7));
        assert_eq!(validated.sse_keep_alive, Duration::from_secs(3));
        assert_eq!(validated.catalogue_reload, Some(Duration::from_millis(250)));
        assert_eq!(validated.bind, "127.0.0.1:8000".parse().unwrap());

        settings.specialists.reload_interval_ms = 0;
        assert_eq!(settings.validate().unwrap().catalogue_reload, None);
    }

    #[test]
    fn a_keep_alive_of_zero_is_a_problem_not_a_clamp() {
        let mut settings = Settings::default();
        settings.server.sse_keep_alive_seconds = 0;
        let problems = settings.validate().unwrap_err();
        assert_eq!(
            strings(&problems),
            ["server.sse_keep_alive_seconds: 0 is out of range (allowed: 1 to 86400 seconds)"]
        );
    }
}
