//! Who is calling: bearer JWTs and static API keys, verified by the admission step before the
//! handlers; the result lands in the [`RequestContext`](crate::RequestContext).

mod claims;
mod config;
mod keys;
mod verifier;

pub use config::{ApiKeyConfig, AuthConfig, AuthMode, JwtAlgorithm, JwtConfig};
pub use keys::new_api_key;
#[cfg(test)]
pub(crate) use keys::sha256_hex;
pub(crate) use verifier::KeyListing;
pub(crate) use verifier::credential_fingerprint;
pub use verifier::{AuthSetupError, Authenticator};
