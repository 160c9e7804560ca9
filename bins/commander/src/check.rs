//! `commander check-config`: everything that would stop the server from starting, found
//! without starting it, and the effective configuration with secrets masked.

use std::net::SocketAddr;

use http_api::{Authenticator, RateLimits};
use providers::{MASKED, ProviderRegistry};
use specialists::{BaseUrlPolicy, parse_catalogue};

use crate::Settings;

/// Every problem with `settings` (empty when the server would start).
pub fn problems(settings: &Settings) -> Vec<String> {
    let out_of_range = crate::bounds::out_of_range(settings);
    let rate_limit_in_range = !out_of_range
        .iter()
        .any(|problem| problem.key.starts_with("rate_limit."));
    let mut problems = Vec::new();
    match settings.server.bind.parse::<SocketAddr>() {
        Err(_) => problems.push(format!(
            "server.bind: '{}' is not an address like 127.0.0.1:8000",
            settings.server.bind
        )),
        Ok(address) => match Authenticator::from_config(&settings.auth) {
            Err(e) => problems.push(e.to_string()),
            Ok(auth) => {
                if let Err(e) = auth.check_bind(address) {
                    problems.push(e.to_string());
                }
            }
        },
    }
    // Building the limiters allocates `max_buckets` up front: only once that is in range.
    if rate_limit_in_range && let Err(e) = RateLimits::from_config(&settings.rate_limit) {
        problems.push(format!("rate_limit: {e}"));
    }
    let url = settings.database.url.trim();
    let sqlite_ok = url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !path.is_empty() && !path.starts_with(":memory:"));
    if !sqlite_ok && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        problems.push(format!(
            "database.url: '{}' is neither sqlite://PATH nor postgres://...",
            masked_url(url)
        ));
    }
    if let Err(e) = ProviderRegistry::from_config(&settings.providers) {
        problems.push(format!("providers: {e}"));
    }
    let policy = BaseUrlPolicy::new(settings.providers.allowed_http_base_urls.clone());
    match std::fs::read_to_string(&settings.specialists.path) {
        Ok(text) => {
            if let Err(e) = parse_catalogue(&text, &policy, chrono::Utc::now()) {
                problems.push(format!("{}: {e}", settings.specialists.path.display()));
            }
        }
        // A missing catalogue is created with the default one at start.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("{}: {e}", settings.specialists.path.display())),
    }
    problems.extend(out_of_range.iter().map(ToString::to_string));
    problems
}

/// The effective configuration as TOML, every secret (API keys, the JWT secret, a database
/// password) replaced by a mask.
pub fn effective_toml(settings: &Settings) -> Result<String, toml::ser::Error> {
    let mut shown = settings.clone();
    shown.database.url = masked_url(&shown.database.url);
    toml::to_string(&shown)
}

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
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn defaults_have_no_problems() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.specialists.path = dir.path().join("missing.json");
        assert_eq!(problems(&settings), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = dir.path().join("specialists.json");
        std::fs::write(&catalogue, "{\"specialists\": [{\"id\": \"x y\"}]}").unwrap();
        let mut settings = Settings::default();
        settings.server.bind = "0.0.0.0:8000".into();
        settings.database.url = "mysql://root:hunter2@db/commander".into();
        settings.specialists.path = catalogue;
        let found = problems(&settings);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].contains("refusing to listen on 0.0.0.0:8000"));
        assert!(found[1].contains("database.url") && !found[1].contains("hunter2"));
        assert!(found[2].contains("specialists.json"));
    }

    #[test]
    fn printed_configuration_masks_secrets() {
        let mut settings = Settings::default();
        settings.providers.anthropic.api_key = Some(SecretString::from("sk-ant-secret-value"));
        settings.database.url = "postgres://commander:s3cr3t@db:5432/commander".into();
        settings.auth.jwt = Some(http_api::JwtConfig {
            secret: Some(SecretString::from("jwt-shared-secret-0123456789abcdef")),
            ..http_api::JwtConfig::default()
        });
        let text = effective_toml(&settings).unwrap();
        for secret in ["sk-ant-secret-value", "s3cr3t", "jwt-shared-secret"] {
            assert!(!text.contains(secret), "{secret} in:\n{text}");
        }
        assert!(
            text.contains("postgres://commander:********@db:5432/commander"),
            "{text}"
        );
        // The printed configuration is itself a valid configuration file.
        let reparsed: Settings = toml::from_str(&text.replace(MASKED, "masked")).unwrap();
        assert_eq!(reparsed.server.bind, settings.server.bind);
    }
}
