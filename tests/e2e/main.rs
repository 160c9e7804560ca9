//! End-to-end tests: the real server on port 0, real sockets, a real SQLite file.

/// Generates a SQLite and a PostgreSQL test from one async body `fn(Backend)` (defined before
/// the modules, so that each of them can use it).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod both {
            $(
                mod $name {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn sqlite() {
                        super::super::$name(usage_store::Backend::Sqlite).await;
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn postgres() {
                        super::super::$name(usage_store::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

mod auth;
mod bad_day;
mod budgets;
mod budgets_shared;
mod catalogue_db;
mod catalogue_hardening;
mod chat_send;
mod console_access;
mod console_browser;
mod console_overview;
mod console_pages;
mod console_specialists;
mod edge_hardening;
mod embeddings;
mod error_hardening;
mod errors;
mod hostile_upstream;
mod instances;
mod messages;
mod openai;
mod operations;
mod protocol;
mod protocol_providers;
mod providers;
mod rate_limit;
mod reasoning;
mod responses;
mod routing;
mod shared_budgets;
mod shared_limits;
mod specialist_allow;
mod specialists;
mod store;
mod stream;
mod unconfigured_provider;
mod usage;
mod usage_calls;
mod usage_detail;
