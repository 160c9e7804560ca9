use core_domain::AccessRole;
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

/// The `[auth]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `disabled` (every caller is `anonymous`, with full access: for local use) or `required`.
    pub mode: AuthMode,
    /// Allow `disabled` on an address other than loopback (only behind a proxy that
    /// authenticates callers itself).
    pub allow_unauthenticated_public: bool,
    /// Static API keys, stored only as their SHA-256.
    pub api_keys: Vec<ApiKeyConfig>,
    /// JSON Web Tokens from an identity provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
}

/// Whether callers must prove who they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials; every caller is `anonymous` and may do everything.
    #[default]
    Disabled,
    /// Every call to a chat or management route needs a valid bearer token or API key.
    Required,
}

/// One static API key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A label for people (shown in logs instead of the key).
    pub name: String,
    /// The owner's email (only its hash reaches the usage log).
    pub email: String,
    /// `user` or `admin`.
    #[serde(default = "default_role")]
    pub role: AccessRole,
    /// The SHA-256 of the key, as 64 hex digits (`commander keys new` prints it).
    pub sha256: String,
}

fn default_role() -> AccessRole {
    AccessRole::User
}

/// The signature algorithm tokens must use: pinned, so a token cannot choose its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256 and the issuer's public key.
    RS256,
    /// ECDSA P-256 with SHA-256 and the issuer's public key.
    ES256,
}

/// `[auth.jwt]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// The only algorithm accepted.
    pub algorithm: JwtAlgorithm,
    /// The HS256 secret.
    #[serde(
        serialize_with = "mask_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret: Option<SecretString>,
    /// The RS256/ES256 public key, PEM.
    pub public_key_pem: Option<String>,
    /// When set, the `iss` claim must equal it.
    pub issuer: Option<String>,
    /// When set, the `aud` claim must contain it.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// The claim holding the caller's email.
    pub email_claim: String,
    /// The claim that makes a caller admin (a string, or a list of strings)...
    pub admin_claim: String,
    /// ...when it holds this value.
    pub admin_value: String,
    /// When not empty, only emails in these domains are let in.
    pub allowed_domains: Vec<String>,
    /// Refuse a token whose `email_verified` claim is present and not true: the identity
    /// provider says the caller has not proven the address is theirs.
    pub require_verified_email: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::RS256,
            secret: None,
            public_key_pem: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            email_claim: "email".to_owned(),
            admin_claim: "role".to_owned(),
            admin_value: "admin".to_owned(),
            allowed_domains: Vec::new(),
            require_verified_email: true,
        }
    }
}

fn mask_optional<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str(providers::MASKED),
        None => serializer.serialize_none(),
    }
}
