//! PostgreSQL for this crate's tests: a database of the test's own on the server at
//! `COMMANDER_TEST_POSTGRES_URL` (default the local server, trust auth), dropped afterwards.

use std::sync::atomic::{AtomicU64, Ordering};

use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::{DatabaseConfig, UsageStore};

/// A database of the test's own, dropped (with its connections) when this is dropped.
pub(crate) struct TestDatabase {
    server: String,
    name: String,
}

impl TestDatabase {
    pub(crate) fn create() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = std::env::var("COMMANDER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "commander_test_store_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let database = Self { server, name };
        database.admin(&format!("CREATE DATABASE {}", database.name));
        database
    }

    pub(crate) fn admin(&self, sql: &str) {
        let mut admin = PgConnection::establish(&format!("{}/postgres", self.server))
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {} is needed for this test: {e}", self.server)
            });
        diesel::sql_query(sql).execute(&mut admin).unwrap();
    }

    /// The database's URL.
    pub(crate) fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub(crate) fn store(&self) -> UsageStore {
        UsageStore::connect(&DatabaseConfig {
            url: self.url(),
            connect_timeout_ms: 2_000,
            ..DatabaseConfig::default()
        })
        .unwrap()
    }

    pub(crate) fn drop_now(&self) {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", self.server)) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// Runs `test` against a fresh store on each backend: a SQLite file, then a PostgreSQL
/// database of its own; a failure names the backend.
pub(crate) fn on_both_backends(test: impl Fn(&UsageStore)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = UsageStore::connect(&DatabaseConfig {
        url: format!("sqlite://{}", dir.path().join("usage.db").display()),
        ..DatabaseConfig::default()
    })
    .unwrap();
    test(&sqlite);
    let database = TestDatabase::create();
    test(&database.store());
}
