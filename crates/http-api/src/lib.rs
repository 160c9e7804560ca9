//! commander's HTTP API on actix-web.
//!
//! This crate owns everything HTTP: routes and their request/response bodies, authentication
//! (bearer JWTs and API keys), rate limiting per caller, the error JSON
//! (`{"error": {"code", "message", "request_id"}}`) and the mapping from every crate's error to
//! a status code (the only place status codes are known), request ids (`X-Request-Id`), and the
//! chat flow that ties a request to a specialist, a provider, a price and a usage record.
//!
//! It depends on every library crate below it and on none above: the binary builds an
//! [`AppState`] and hands it to [`build_server`] with a bound listener. It must not know how
//! configuration is loaded, how providers speak their wire formats, or diesel.
//!
//! # Using it alone
//!
//! A Rust service can serve commander's API without the `commander` binary: build the pieces
//! of an [`AppState`] from the library crates, bind a listener and hand both to
//! [`build_server`] (or mount the routes in an actix `App` of your own with [`configure`]).
//! Here the demo specialist answers from the mock provider, the usage log is SQLite in a
//! temporary directory, and one request goes over a real socket on 127.0.0.1 (with `auth.mode`
//! `disabled`, which only a loopback listener is allowed):
//!
//! ```
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//!
//! use http_api::{
//!     AppState, AuthConfig, Authenticator, LiveCalls, Metrics, RateLimitConfig, RateLimits,
//!     RedisConfig,
//!     ServerConfig, build_server,
//! };
//! use pricing::PriceTable;
//! use providers::{ProviderRegistry, ProvidersConfig, Router, RoutingConfig, TokioSleeper};
//! use specialists::{BaseUrlPolicy, Catalogue, DEFAULT_CATALOGUE_JSON, parse_catalogue};
//! use usage_store::{DatabaseConfig, UsageStore, spawn_writer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let database = DatabaseConfig {
//!     url: format!("sqlite://{}", dir.path().join("usage.db").display()),
//!     ..DatabaseConfig::default()
//! }
//! .with_files_in(dir.path());
//! let store = UsageStore::connect(&database)?;
//! let (usage, writer) = spawn_writer(store.clone(), &database)?;
//! let policy = BaseUrlPolicy::default();
//! let specialists = parse_catalogue(DEFAULT_CATALOGUE_JSON, &policy, chrono::Utc::now())?;
//! let state = AppState {
//!     catalogue: Arc::new(Catalogue::in_memory(specialists, policy)),
//!     providers: Arc::new(ProviderRegistry::from_config(&ProvidersConfig::default())?),
//!     router: Router::new(&RoutingConfig::default(), &TokioSleeper),
//!     prices: Arc::new(PriceTable::builtin()),
//!     metrics: Arc::new(Metrics::new(usage.clone())?),
//!     usage: usage.clone(),
//!     store: store.clone(),
//!     auth: Arc::new(Authenticator::from_config(&AuthConfig::default())?),
//!     rate_limits: Arc::new(RateLimits::from_config(&RateLimitConfig::default(), &RedisConfig::default())?),
//!     chat_limits: Default::default(),
//!     sse_keep_alive: std::time::Duration::from_secs(15),
//!     live_calls: LiveCalls::new(),
//!     budgets: Arc::new(budgets::Budgets::none()),
//! };
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let address = listener.local_addr()?;
//! let config = ServerConfig { workers: 1, ..ServerConfig::default() };
//! let server = build_server(listener, state, &config)?;
//! let handle = server.handle();
//! let serving = tokio::spawn(server);
//!
//! let response = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
//!     let body = r#"{"specialist_id": "demo", "message": "What is 2+2?"}"#;
//!     let mut socket = std::net::TcpStream::connect(address)?;
//!     socket.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
//!     write!(
//!         socket,
//!         "POST /chat/send HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
//!          Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
//!         body.len()
//!     )?;
//!     let mut response = String::new();
//!     socket.read_to_string(&mut response)?;
//!     Ok(response)
//! })
//! .await??;
//! assert!(response.starts_with("HTTP/1.1 200"), "{response}");
//! assert!(response.contains(r#""provider":"mock""#), "{response}");
//!
//! handle.stop(true).await;
//! serving.await??;
//! usage.flush().await?;
//! assert_eq!(store.count_rows()?, 1, "one usage row per chat call");
//! writer.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod admission;
mod anthropic;
mod app;
mod auth;
mod budget_routes;
mod chat;
mod client_ip;
mod config;
mod console;
mod error;
mod health;
mod live_calls;
mod metrics;
mod openai;
mod openapi;
mod panics;
mod perimeter;
mod rate_limit;
mod redis_connection;
mod request_context;
mod request_scope;
mod shared_budgets;
mod shared_limits;
mod specialists;
mod spend;
mod state;
mod usage;
mod views;

pub use app::{build_server, configure, routes};
pub use auth::{
    ApiKeyConfig, AuthConfig, AuthMode, AuthSetupError, Authenticator, JwtAlgorithm, JwtConfig,
    new_api_key,
};
pub use budget_routes::reload_api_budgets;
pub use client_ip::Cidr;
pub use config::{ChatLimits, ServerConfig};
pub use console::{ConsoleConfig, SessionKeyError};
pub use error::{ApiCode, ApiError};
pub use live_calls::LiveCalls;
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use perimeter::AllowedHost;
pub use rate_limit::{GroupLimit, RateLimitConfig, RateLimits, RouteGroup};
pub use request_context::RequestContext;
pub use shared_budgets::RedisLedger;
pub use shared_limits::{RateLimitSetupError, RateLimitStore, RedisConfig, RedisFallback};
pub use spend::{BudgetSettings, OnStoreErrorSetting};
pub use state::AppState;
