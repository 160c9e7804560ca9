//! Who is calling: bearer JWTs and static API keys, checked before the rate limiter and the
//! handlers; the result lands in the [`RequestContext`](crate::RequestContext).

mod claims;
mod config;
mod keys;
mod middleware;
mod verifier;

pub use config::{ApiKeyConfig, AuthConfig, AuthMode, JwtAlgorithm, JwtConfig};
pub use keys::new_api_key;
pub(crate) use middleware::{Refused, authenticate};
pub use verifier::{AuthSetupError, Authenticator};
