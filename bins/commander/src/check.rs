//! `commander check-config`: everything that would stop the server from starting, found
//! without starting it (printed with [`Settings::redacted_toml`]).

use specialists::{BaseUrlPolicy, parse_catalogue};

use crate::Settings;
use crate::validate::Problem;

/// Every problem with `settings` (empty when the server would start): those of
/// [`Settings::validate`], and the catalogue file's, which start-up finds by loading it (a
/// catalogue kept in the database is checked when the server opens it).
pub fn problems(settings: &Settings) -> Vec<Problem> {
    let mut problems = settings.validate().err().unwrap_or_default();
    if settings.specialists.store == crate::CatalogueStoreKind::Database {
        return problems;
    }
    let path = &settings.specialists.path;
    let policy = BaseUrlPolicy::new(settings.providers.allowed_http_base_urls.clone());
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Err(e) = parse_catalogue(&text, &policy, chrono::Utc::now()) {
                problems.push(Problem::new(path.display().to_string(), e));
            }
        }
        // A missing catalogue is created with the default one at start.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(Problem::new(path.display().to_string(), e)),
    }
    problems
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use providers::MASKED;

    use super::*;

    #[test]
    fn defaults_have_no_problems() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.specialists.path = dir.path().join("missing.json");
        assert_eq!(problems(&settings), Vec::<Problem>::new());
    }

    #[test]
    fn a_catalogue_kept_in_the_database_does_not_check_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = dir.path().join("specialists.json");
        std::fs::write(&catalogue, "{ not json").unwrap();
        let mut settings = Settings::default();
        settings.specialists.path = catalogue;
        assert_eq!(
            problems(&settings).len(),
            1,
            "the file is checked by default"
        );
        settings.specialists.store = crate::CatalogueStoreKind::Database;
        assert_eq!(problems(&settings), Vec::<Problem>::new());
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
        let found: Vec<String> = problems(&settings)
            .iter()
            .map(ToString::to_string)
            .collect();
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
        let text = settings.redacted_toml().unwrap();
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
