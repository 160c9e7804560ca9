use std::net::SocketAddr;
use std::sync::Arc;

use core_domain::{AccessRole, EmailHash, UserIdentity};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::claims::Claims;
use super::keys::{constant_time_eq, sha256};
use super::{AuthConfig, AuthMode, JwtAlgorithm, JwtConfig};
use crate::{ApiCode, ApiError};

/// Why the auth configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// An API key entry is unusable.
    #[error("auth.api_keys[{index}] ({name}): {problem}")]
    BadApiKey {
        /// Its position.
        index: usize,
        /// Its name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The JWT settings are unusable.
    #[error("auth.jwt: {0}")]
    BadJwt(String),
    /// Auth is required but nothing could ever pass it.
    #[error(
        "auth.mode = \"required\" but no auth.api_keys or [auth.jwt] are configured: nobody could call the API"
    )]
    NothingAccepted,
    /// Auth is disabled on an address others can reach.
    #[error(
        "refusing to listen on {0} with auth disabled: anyone who can reach it could spend your \
         provider credits. Set auth.mode = \"required\" (with auth.api_keys or [auth.jwt]), or \
         set auth.allow_unauthenticated_public = true if a proxy in front authenticates callers"
    )]
    PublicWithoutAuth(SocketAddr),
}

/// A caller whose credentials passed: who, and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub identity: UserIdentity,
    pub role: AccessRole,
    /// The name of the static API key presented, if the caller used one (for key budgets and
    /// the usage row).
    pub api_key: Option<Arc<str>>,
    /// When the credential stops being valid (a JWT's `exp`, Unix seconds); `None` for keys.
    pub expires_at: Option<i64>,
}

/// A configured API key as people may see it: its name, role and owner's email hash, never
/// its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyListing {
    /// `auth.api_keys[].name`.
    pub name: Arc<str>,
    /// What its holder may do.
    pub role: AccessRole,
    /// SHA-256 of the owner's email.
    pub email_hash: EmailHash,
}

/// What a console session keeps of the key it was opened with: 16 bytes of a hash of the
/// key's SHA-256, enough to tell keys apart, useless for finding the key.
pub(crate) fn key_fingerprint(digest: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"commander console session\0");
    hasher.update(digest);
    hex::encode(hasher.finalize().get(..16).unwrap_or_default())
}

/// [`key_fingerprint`] of the key `credential` is.
pub(crate) fn credential_fingerprint(credential: &str) -> String {
    key_fingerprint(&sha256(credential))
}

struct KnownKey {
    digest: [u8; 32],
    identity: UserIdentity,
    role: AccessRole,
    name: Arc<str>,
}

struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    email_claim: String,
    admin_claim: String,
    admin_value: String,
    allowed_domains: Vec<String>,
    require_verified_email: bool,
}

/// Checks credentials against the configuration. Needs no database (so auth keeps working when
/// the database does not) and never logs or echoes a credential.
pub struct Authenticator {
    mode: AuthMode,
    allow_public: bool,
    keys: Vec<KnownKey>,
    jwt: Option<JwtVerifier>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("api_keys", &self.keys.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

impl Authenticator {
    /// Validates the configuration (every key hash, the JWT key material).
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        let keys = config
            .api_keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let bad = |problem: &str| AuthSetupError::BadApiKey {
                    index,
                    name: key.name.clone(),
                    problem: problem.to_owned(),
                };
                let digest: [u8; 32] = hex::decode(key.sha256.trim())
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| {
                        bad("sha256 must be 64 hex digits (see `commander keys new`)")
                    })?;
                if !key.email.contains('@') {
                    return Err(bad("email must be an email address"));
                }
                if config.api_keys[..index]
                    .iter()
                    .any(|other| other.name == key.name)
                {
                    // Usage rows, key budgets and console sessions name keys: two keys of one
                    // name would share them.
                    return Err(bad("another key has the same name; names must be unique"));
                }
                Ok(KnownKey {
                    digest,
                    identity: UserIdentity::Authenticated {
                        email_hash: EmailHash::of_email(&key.email),
                        role: key.role,
                    },
                    role: key.role,
                    name: Arc::from(key.name.as_str()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let jwt = config.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        if config.mode == AuthMode::Required && keys.is_empty() && jwt.is_none() {
            return Err(AuthSetupError::NothingAccepted);
        }
        Ok(Self {
            mode: config.mode,
            allow_public: config.allow_unauthenticated_public,
            keys,
            jwt,
        })
    }

    /// Refuses auth disabled on an address that is not loopback, unless explicitly allowed.
    pub fn check_bind(&self, address: SocketAddr) -> Result<(), AuthSetupError> {
        if self.mode == AuthMode::Disabled && !address.ip().is_loopback() && !self.allow_public {
            return Err(AuthSetupError::PublicWithoutAuth(address));
        }
        Ok(())
    }

    /// True when JSON Web Tokens are accepted (`[auth.jwt]` is configured).
    pub(crate) fn accepts_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// True when callers must present credentials (`auth.mode = "required"`).
    pub fn requires_credentials(&self) -> bool {
        self.mode == AuthMode::Required
    }

    /// Who sent `authorization` (the header's value, if any), or the 401/403 refusing it.
    /// Only verifies: the admission step decides what a refusal costs and when it is answered.
    pub(crate) fn verify(&self, authorization: Option<&[u8]>) -> Result<Verified, ApiError> {
        if self.mode == AuthMode::Disabled {
            return Ok(Verified {
                identity: UserIdentity::Anonymous,
                role: AccessRole::Admin,
                api_key: None,
                expires_at: None,
            });
        }
        let Some(header) = authorization else {
            return Err(unauthorized(
                "missing credentials: send Authorization: Bearer <token or API key>",
                false,
            ));
        };
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized(
                    "the Authorization header must be: Bearer <token or API key>",
                    true,
                )
            })?;
        // JWTs are three dot-separated parts; API keys have no dots.
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            match &self.jwt {
                Some(jwt) => jwt.verify(token),
                None => Err(unauthorized("JSON Web Tokens are not accepted here", true)),
            }
        } else {
            self.api_key(token)
        }
    }

    /// Who sent the request's credentials: `Authorization: Bearer`, or a key in `x-api-key`
    /// (what Anthropic's SDKs and Claude Code send), on every route. A request carrying both
    /// must name the same credential in each: two that disagree are refused rather than one
    /// of them picked.
    pub(crate) fn verify_request(
        &self,
        authorization: Option<&[u8]>,
        x_api_key: Option<&[u8]>,
    ) -> Result<Verified, ApiError> {
        let Some(key) = x_api_key.filter(|_| self.mode != AuthMode::Disabled) else {
            return self.verify(authorization);
        };
        let key = std::str::from_utf8(key)
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("the x-api-key header is empty or not text", true))?;
        if let Some(authorization) = authorization {
            let verified = self.verify(Some(authorization))?;
            let bearer = std::str::from_utf8(authorization)
                .ok()
                .and_then(|h| h.split_once(' '))
                .map(|(_, token)| token.trim());
            if bearer != Some(key) {
                return Err(unauthorized(
                    "x-api-key and Authorization carry different credentials: send one",
                    true,
                ));
            }
            return Ok(verified);
        }
        self.verify(Some(format!("Bearer {key}").as_bytes()))
    }

    fn api_key(&self, token: &str) -> Result<Verified, ApiError> {
        let digest = sha256(token);
        // Compare against every key, always, so timing says nothing about which one matched.
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.digest, &digest) && found.is_none() {
                found = Some(key);
            }
        }
        found
            .map(|key| Verified {
                identity: key.identity.clone(),
                role: key.role,
                api_key: Some(Arc::clone(&key.name)),
                expires_at: None,
            })
            .ok_or_else(|| unauthorized("unknown API key", true))
    }

    /// Every configured API key, in configuration order, without its digest (for the
    /// console's key list).
    pub(crate) fn key_listings(&self) -> Vec<KeyListing> {
        self.keys
            .iter()
            .filter_map(|key| {
                Some(KeyListing {
                    name: Arc::clone(&key.name),
                    role: key.role,
                    email_hash: key.identity.email_hash()?.clone(),
                })
            })
            .collect()
    }

    /// The configured key named `name` whose [`key_fingerprint`] is `fingerprint`, as its
    /// holder is verified: console sessions keep the name and the fingerprint of the key they
    /// were opened with, never the key, so a key replaced under the same name (rotated after a
    /// leak) ends the sessions the old one opened.
    pub(crate) fn key_named(&self, name: &str, fingerprint: &str) -> Option<Verified> {
        self.keys
            .iter()
            .find(|key| &*key.name == name && key_fingerprint(&key.digest) == fingerprint)
            .map(|key| Verified {
                identity: key.identity.clone(),
                role: key.role,
                api_key: Some(Arc::clone(&key.name)),
                expires_at: None,
            })
    }
}

impl JwtVerifier {
    fn new(config: &JwtConfig) -> Result<Self, AuthSetupError> {
        let (algorithm, key) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = config.secret.as_ref().ok_or_else(|| {
                    AuthSetupError::BadJwt("HS256 needs auth.jwt.secret".to_owned())
                })?;
                if secret.expose_secret().len() < 32 {
                    return Err(AuthSetupError::BadJwt(
                        "the HS256 secret must be at least 32 characters".to_owned(),
                    ));
                }
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                )
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                let pem = config.public_key_pem.as_deref().ok_or_else(|| {
                    AuthSetupError::BadJwt(format!(
                        "{:?} needs auth.jwt.public_key_pem",
                        config.algorithm
                    ))
                })?;
                let bad_pem = |e: jsonwebtoken::errors::Error| {
                    AuthSetupError::BadJwt(format!("public_key_pem is not a usable key: {e}"))
                };
                if config.algorithm == JwtAlgorithm::RS256 {
                    (
                        Algorithm::RS256,
                        DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad_pem)?,
                    )
                } else {
                    (
                        Algorithm::ES256,
                        DecodingKey::from_ec_pem(pem.as_bytes()).map_err(bad_pem)?,
                    )
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has them: a configured
        // issuer or audience must also be a required claim, or leaving it out gets around it.
        let mut required = vec!["exp"];
        match &config.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            email_claim: config.email_claim.clone(),
            admin_claim: config.admin_claim.clone(),
            admin_value: config.admin_value.clone(),
            allowed_domains: config
                .allowed_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            require_verified_email: config.require_verified_email,
        })
    }

    fn verify(&self, token: &str) -> Result<Verified, ApiError> {
        // The signature is checked before the claims are read.
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| unauthorized(token_problem(e.kind()), true))?
            .claims;
        if claims.repeats_a_name {
            return Err(unauthorized(
                "the token's claims repeat a name, so they could be read two ways",
                true,
            ));
        }
        let claims = claims.map;
        // Identity providers that let anyone register an address say whether it was proven;
        // Cognito writes the flag as a string.
        let verified = match claims.get("email_verified") {
            None | Some(Value::Bool(true)) => true,
            Some(Value::String(flag)) => flag == "true",
            Some(_) => false,
        };
        if self.require_verified_email && !verified {
            return Err(unauthorized(
                "the token's email is not verified (email_verified is not true)",
                true,
            ));
        }
        let email = claims
            .get(&self.email_claim)
            .and_then(Value::as_str)
            .filter(|e| e.contains('@'))
            .ok_or_else(|| {
                unauthorized(
                    &format!("the token has no email in its '{}' claim", self.email_claim),
                    true,
                )
            })?;
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !self.allowed_domains.is_empty() && !self.allowed_domains.contains(&domain) {
            return Err(ApiError::new(
                ApiCode::Forbidden,
                format!("accounts of the domain '{domain}' are not allowed here"),
            ));
        }
        let is_admin = match claims.get(&self.admin_claim) {
            Some(Value::String(value)) => *value == self.admin_value,
            Some(Value::Array(values)) => values
                .iter()
                .any(|v| v.as_str() == Some(self.admin_value.as_str())),
            _ => false,
        };
        let role = if is_admin {
            AccessRole::Admin
        } else {
            AccessRole::User
        };
        Ok(Verified {
            identity: UserIdentity::Authenticated {
                email_hash: EmailHash::of_email(email),
                role,
            },
            role,
            api_key: None,
            expires_at: claims.get("exp").and_then(|exp| {
                exp.as_i64()
                    .or_else(|| exp.as_f64().filter(|e| e.is_finite()).map(|e| e as i64))
            }),
        })
    }
}

/// Why a token was refused, in words that help without helping an attacker.
fn token_problem(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidSignature => "the token's signature is invalid",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "the token is signed with an algorithm this server does not accept"
        }
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
        ErrorKind::InvalidAudience => "the token is not meant for this server",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => "the token has no issuer (iss) and one is required",
            "aud" => "the token has no audience (aud) and one is required",
            _ => "the token has no expiry (exp) and one is required",
        },
        _ => "the token is malformed",
    }
}

/// A 401 that tells the client how to authenticate. The message never contains the token.
fn unauthorized(reason: &str, invalid_token: bool) -> ApiError {
    let challenge = if invalid_token {
        "Bearer realm=\"commander\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"commander\""
    };
    ApiError::new(ApiCode::Unauthorized, reason).with_header("www-authenticate", challenge)
}
