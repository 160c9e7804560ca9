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
#![warn(missing_docs)]

mod app;
mod auth;
mod chat;
mod client_ip;
mod config;
mod context;
mod error;
mod health;
mod live_calls;
mod metrics;
mod openai;
mod openapi;
mod panics;
mod perimeter;
mod rate_limit;
mod specialists;
mod state;
mod usage;
mod views;

pub use app::{build_server, configure, routes};
pub use auth::{
    ApiKeyConfig, AuthConfig, AuthMode, AuthSetupError, Authenticator, JwtAlgorithm, JwtConfig,
    new_api_key,
};
pub use client_ip::Cidr;
pub use config::{ChatLimits, ServerConfig};
pub use context::RequestContext;
pub use error::ApiError;
pub use live_calls::LiveCalls;
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use perimeter::AllowedHost;
pub use rate_limit::{GroupLimit, RateLimitConfig, RateLimits, RouteGroup};
pub use state::AppState;
