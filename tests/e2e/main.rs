//! End-to-end tests: the real server on port 0, real sockets, a real SQLite file.

mod auth;
mod chat_send;
mod error_hardening;
mod errors;
mod openai;
mod operations;
mod providers;
mod rate_limit;
mod specialists;
mod store;
mod stream;
mod usage;
