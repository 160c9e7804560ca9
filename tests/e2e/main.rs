//! End-to-end tests: the real server on port 0, real sockets, a real SQLite file.

mod auth;
mod bad_day;
mod catalogue_db;
mod catalogue_hardening;
mod chat_send;
mod edge_hardening;
mod error_hardening;
mod errors;
mod hostile_upstream;
mod instances;
mod openai;
mod operations;
mod protocol;
mod protocol_providers;
mod providers;
mod rate_limit;
mod routing;
mod shared_limits;
mod specialist_allow;
mod specialists;
mod store;
mod stream;
mod unconfigured_provider;
mod usage;
mod usage_detail;
