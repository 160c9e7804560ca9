use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use core_domain::ModelPricing;
use http_api::{AuthConfig, BudgetSettings, RateLimitConfig, RedisConfig, ServerConfig};
use providers::{ProvidersConfig, RoutingConfig};
use serde::{Deserialize, Serialize};
use usage_store::DatabaseConfig;

/// The whole configuration: built-in defaults < `commander.toml` (or `--config PATH`) <
/// `COMMANDER__SECTION__KEY` environment variables. Unknown keys are errors, so a typo is
/// caught at start instead of silently ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[server]`
    pub server: ServerConfig,
    /// `[database]`
    pub database: DatabaseConfig,
    /// `[providers]`
    pub providers: ProvidersConfig,
    /// `[routing]`: attempts and deadline of one call over its destinations.
    pub routing: RoutingConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[rate_limit]`
    pub rate_limit: RateLimitConfig,
    /// `[redis]`: the shared rate-limit store (`rate_limit.store = "redis"`).
    pub redis: RedisConfig,
    /// `[pricing]`: per-model price overrides, `"model" = { input_per_1m, output_per_1m }`.
    pub pricing: HashMap<String, ModelPricing>,
    /// `[specialists]`
    pub specialists: SpecialistsSettings,
    /// `[budgets]`: spend limits (`[[budgets.limits]]`) and how they are counted.
    pub budgets: BudgetSettings,
    /// `[log]`
    pub log: LogSettings,
}

/// `[specialists]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpecialistsSettings {
    /// Where the catalogue is kept: `file` (default, at `path`) or `database` (the
    /// `[database]` one, shared by every server using it).
    pub store: CatalogueStoreKind,
    /// The catalogue file; created with the default catalogue when missing.
    pub path: PathBuf,
    /// How often the file (or the database) is checked for changes made elsewhere, in
    /// milliseconds (0: never).
    pub reload_interval_ms: u64,
    /// How many replaced system prompts each specialist keeps in its `prompt_history`, newest
    /// first kept (0: none); bounds the file however often a prompt is edited.
    pub max_prompt_history: usize,
}

impl Default for SpecialistsSettings {
    fn default() -> Self {
        Self {
            store: CatalogueStoreKind::File,
            path: PathBuf::from("config/specialists.json"),
            reload_interval_ms: 2_000,
            max_prompt_history: specialists::DEFAULT_MAX_PROMPT_HISTORY,
        }
    }
}

/// Where the specialist catalogue is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogueStoreKind {
    /// The JSON file at `specialists.path`.
    #[default]
    File,
    /// The `[database]` database's `specialists` tables.
    Database,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `human` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,http_api=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The file read when no `--config` is given, if it exists.
const DEFAULT_CONFIG_FILE: &str = "commander.toml";

/// Loads settings: defaults, then the file (`path`, which must exist, or `commander.toml` in the
/// working directory if present), then `COMMANDER__*` variables from `env`, then API keys from
/// the providers' usual variables.
pub fn load_settings(
    path: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Settings, config::ConfigError> {
    let file = match path {
        Some(path) => File::from(path).format(FileFormat::Toml).required(true),
        None => File::new(DEFAULT_CONFIG_FILE, FileFormat::Toml).required(false),
    };
    let environment = Environment::with_prefix("COMMANDER")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("server.cors_allowed_origins")
        .with_list_parse_key("server.allowed_hosts")
        .with_list_parse_key("providers.allowed_http_base_urls")
        .with_list_parse_key("providers.openai.api_keys")
        .with_list_parse_key("providers.anthropic.api_keys")
        .with_list_parse_key("providers.google.api_keys")
        .with_list_parse_key("providers.xai.api_keys")
        .with_list_parse_key("rate_limit.trusted_proxies")
        .with_list_parse_key("auth.jwt.allowed_domains")
        .source(Some(env.clone()));
    let settings: Settings = Config::builder()
        .add_source(file)
        .add_source(environment)
        .build()?
        .try_deserialize()?;
    Ok(Settings {
        providers: settings
            .providers
            .with_env_keys(|name| env.get(name).cloned()),
        ..settings
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file_and_no_env() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(load_settings(Some(&missing), &env(&[])).is_err());
        let settings = Settings::default();
        assert_eq!(settings.server.bind, "127.0.0.1:8000");
        assert_eq!(settings.database.url, "sqlite://data/commander.db");
        assert_eq!(
            settings.specialists.path,
            PathBuf::from("config/specialists.json")
        );
    }

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commander.toml");
        std::fs::write(
            &path,
            r#"
            [server]
            bind = "0.0.0.0:9000"
            max_body_bytes = 2048
            [database]
            url = "sqlite://from-file.db"
            batch_size = 64
            [pricing]
            "llama3.1:8b" = { input_per_1m = 0.1, output_per_1m = 0.2 }
            "my-claude" = { input_per_1m = 3, output_per_1m = 15, cached_input_per_1m = 0.3, cache_write_per_1m = 3.75 }
            "#,
        )
        .unwrap();
        let settings = load_settings(
            Some(&path),
            &env(&[
                ("COMMANDER__DATABASE__URL", "postgres://localhost/commander"),
                (
                    "COMMANDER__SERVER__CORS_ALLOWED_ORIGINS",
                    "https://a.example,https://b.example",
                ),
                ("COMMANDER__PROVIDERS__OPENAI__API_KEY", "sk-test"),
                ("COMMANDER__RATE_LIMIT__STORE", "redis"),
                ("COMMANDER__RATE_LIMIT__REDIS_FALLBACK", "deny"),
                ("COMMANDER__RATE_LIMIT__INSTANCES", "3"),
                ("COMMANDER__REDIS__URL", "redis://127.0.0.1:6379/2"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.rate_limit.store, http_api::RateLimitStore::Redis);
        assert_eq!(
            settings.rate_limit.redis_fallback,
            http_api::RedisFallback::Deny
        );
        assert_eq!(settings.rate_limit.instances.get(), 3);
        assert_eq!(
            settings.redis.url.as_deref(),
            Some("redis://127.0.0.1:6379/2")
        );
        assert_eq!(settings.server.bind, "0.0.0.0:9000");
        assert_eq!(settings.server.max_body_bytes, 2048);
        assert_eq!(settings.database.url, "postgres://localhost/commander");
        assert_eq!(settings.database.batch_size, 64);
        assert_eq!(
            settings.server.cors_allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(
            settings.providers.openai.api_key.unwrap().expose_secret(),
            "sk-test"
        );
        // A key alone does not blank the provider's other settings.
        assert_eq!(
            settings.providers.openai.base_url,
            "https://api.openai.com/v1"
        );
        assert_eq!(settings.pricing["llama3.1:8b"].output_per_1m(), 0.2);
        assert_eq!(settings.pricing["llama3.1:8b"].cached_input_per_1m(), None);
        assert_eq!(
            settings.pricing["my-claude"].cached_input_per_1m(),
            Some(0.3)
        );
        assert_eq!(
            settings.pricing["my-claude"].cache_write_per_1m(),
            Some(3.75)
        );
    }

    #[test]
    fn every_list_of_plain_values_can_be_set_from_the_environment() {
        let settings = load_settings(
            None,
            &env(&[
                (
                    "COMMANDER__SERVER__CORS_ALLOWED_ORIGINS",
                    "https://a.example",
                ),
                (
                    "COMMANDER__SERVER__ALLOWED_HOSTS",
                    "commander.internal,10.0.0.7",
                ),
                (
                    "COMMANDER__PROVIDERS__ALLOWED_HTTP_BASE_URLS",
                    "http://127.0.0.1:11434/v1,http://10.0.0.5:8000/v1",
                ),
                (
                    "COMMANDER__PROVIDERS__ANTHROPIC__API_KEYS",
                    "sk-ant-a,sk-ant-b",
                ),
                ("COMMANDER__PROVIDERS__XAI__API_KEYS", "xai-a"),
                (
                    "COMMANDER__RATE_LIMIT__TRUSTED_PROXIES",
                    "10.0.0.0/8,192.168.1.1/32",
                ),
                (
                    "COMMANDER__AUTH__JWT__ALLOWED_DOMAINS",
                    "example.com,example.org",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.cors_allowed_origins, ["https://a.example"]);
        let allowed_hosts: Vec<String> = settings
            .server
            .allowed_hosts
            .iter()
            .cloned()
            .map(String::from)
            .collect();
        assert_eq!(allowed_hosts, ["commander.internal", "10.0.0.7"]);
        assert_eq!(settings.providers.allowed_http_base_urls.len(), 2);
        let anthropic: Vec<&str> = settings
            .providers
            .anthropic
            .api_keys
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        assert_eq!(anthropic, ["sk-ant-a", "sk-ant-b"]);
        assert_eq!(settings.providers.xai.api_keys.len(), 1);
        assert_eq!(settings.rate_limit.trusted_proxies.len(), 2);
        assert_eq!(
            settings.auth.jwt.unwrap().allowed_domains,
            ["example.com", "example.org"]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commander.toml");
        std::fs::write(&path, "[database]\nurll = \"x\"\n").unwrap();
        let err = load_settings(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");

        std::fs::write(
            &path,
            "[pricing]\n\"m\" = { input_per_1m = -1, output_per_1m = 1 }\n",
        )
        .unwrap();
        let err = load_settings(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("input_per_1m"), "{err}");
    }

    #[test]
    fn the_catalogue_store_is_file_or_database_and_nothing_else() {
        assert_eq!(
            load_settings(None, &env(&[])).unwrap().specialists.store,
            CatalogueStoreKind::File
        );
        let database = load_settings(None, &env(&[("COMMANDER__SPECIALISTS__STORE", "database")]));
        assert_eq!(
            database.unwrap().specialists.store,
            CatalogueStoreKind::Database
        );
        let err = load_settings(None, &env(&[("COMMANDER__SPECIALISTS__STORE", "redis")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("redis") && err.contains("specialists.store"),
            "{err}"
        );
    }
}
