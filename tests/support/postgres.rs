//! A PostgreSQL database of the test's own, created on the machine's server and dropped after.

use diesel::{Connection, PgConnection, RunQueryDsl};

/// The server tests use: `COMMANDER_TEST_POSTGRES_URL`, else the local one with trust auth.
pub fn server_url() -> String {
    std::env::var("COMMANDER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A uniquely named database, dropped (with any connections still open) when this is dropped.
pub struct TestDatabase {
    name: String,
    server: String,
}

impl TestDatabase {
    /// Creates `commander_test_<random>`.
    pub fn create() -> Self {
        let server = server_url().trim_end_matches('/').to_owned();
        let name = format!("commander_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&format!("{server}/postgres"))
            .unwrap_or_else(|e| panic!("PostgreSQL at {server} is needed for this test: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create the test database");
        Self { name, server }
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// The database's URL as reached through `address` (a proxy) instead of the server.
    pub fn url_via(&self, address: std::net::SocketAddr) -> String {
        let scheme_end = self.server.find("://").map_or(0, |i| i + 3);
        let host_start = self.server[scheme_end..]
            .find('@')
            .map_or(scheme_end, |i| scheme_end + i + 1);
        format!("{}{address}/{}", &self.server[..host_start], self.name)
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
