//! Console sign-in sessions: a signed, expiring cookie naming who signed in and the
//! anti-forgery token every form of that session must carry.
//!
//! The cookie is `hex(payload) "." hex(HMAC-SHA256(key, payload))`; nothing in it is secret
//! (a key session names the key, not the key itself), only unforgeable. It is `HttpOnly`
//! (no script reads it), `SameSite=Strict` (no other site's page makes the browser send it)
//! and expires with the session. A key session is checked against the configuration on every
//! request, so a key removed from `auth.api_keys` ends its sessions at once.

use std::sync::Arc;

use chrono::Utc;
use core_domain::{AccessRole, EmailHash, UserIdentity};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Authenticator;

/// The cookie holding a signed-in session.
pub(crate) const SESSION_COOKIE: &str = "commander_console";
/// The cookie holding the sign-in form's anti-forgery token (before anyone signed in).
pub(crate) const SIGN_IN_COOKIE: &str = "commander_console_signin";

/// Why a session key could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// `server.console.session_secret` is not 64+ hex digits.
    #[error("server.console.session_secret must be at least 64 hex digits (32 bytes)")]
    BadSecret,
    /// The system gave no random bytes.
    #[error("no random bytes for the console's session key: {0}")]
    NoRandomness(String),
}

/// The key sessions are signed with, and how long they last.
#[derive(Clone)]
pub(crate) struct SessionKeys {
    key: Arc<[u8]>,
    lifetime_seconds: i64,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("lifetime_seconds", &self.lifetime_seconds)
            .finish_non_exhaustive()
    }
}

/// Who a session is for, as written in the cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
pub(crate) enum Principal {
    /// A static API key, by its configured name and fingerprint (re-read from the
    /// configuration on use).
    Key {
        /// `auth.api_keys[].name`.
        n: String,
        /// The key's fingerprint (`auth::key_fingerprint`): a key replaced under the same
        /// name does not inherit the old one's sessions.
        d: String,
    },
    /// A JWT's holder, as verified at sign-in.
    Jwt {
        /// The email hash.
        e: String,
        /// Administrator.
        a: bool,
    },
    /// Auth is disabled: the loopback operator.
    Local,
}

/// The signed content of a session cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Who.
    #[serde(flatten)]
    pub principal: Principal,
    /// Expiry, Unix seconds.
    pub x: i64,
    /// The anti-forgery token of this session's forms.
    pub c: String,
}

/// A signed-in person, as the pages see them.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// Their identity (for usage scope).
    pub identity: UserIdentity,
    /// What they may do.
    pub role: AccessRole,
    /// Shown in the header: the key's name, part of the email hash, or "local".
    pub label: String,
    /// The session's anti-forgery token.
    pub csrf: String,
    /// Whether auth is disabled (no sign-out).
    pub local: bool,
    /// The name of the API key a key session was opened with: what `key` budgets match.
    pub api_key: Option<Arc<str>>,
}

impl Viewer {
    /// True for administrators.
    pub fn is_admin(&self) -> bool {
        self.role == AccessRole::Admin
    }

    /// Whose usage rows this viewer sees: everyone's for administrators, else their own.
    pub fn scope(&self) -> usage_store::Scope {
        if self.is_admin() {
            usage_store::Scope::Everyone
        } else {
            usage_store::Scope::Caller(self.identity.email_hash().cloned())
        }
    }
}

impl SessionKeys {
    /// From the configured secret (hex), or a fresh random key.
    pub(crate) fn new(secret: Option<&str>, minutes: u32) -> Result<Self, SessionKeyError> {
        let key = match secret {
            Some(hex_key) => {
                let bytes = hex::decode(hex_key.trim()).map_err(|_| SessionKeyError::BadSecret)?;
                if bytes.len() < 32 {
                    return Err(SessionKeyError::BadSecret);
                }
                bytes
            }
            None => process_key()?,
        };
        Ok(Self {
            key: Arc::from(key),
            lifetime_seconds: i64::from(minutes.max(1)) * 60,
        })
    }

    /// How long a new session lasts.
    pub(crate) fn lifetime_seconds(&self) -> i64 {
        self.lifetime_seconds
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; the error case cannot happen.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
    }

    /// The cookie value for `session`.
    pub(crate) fn seal(&self, session: &Session) -> String {
        let payload = serde_json::to_vec(session).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        format!(
            "{}.{}",
            hex::encode(&payload),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// The session in `cookie`, if it is ours, intact and not expired.
    pub(crate) fn open(&self, cookie: &str) -> Option<Session> {
        let (payload, signature) = cookie.split_once('.')?;
        // Bounded before decoding: a cookie is at most a few hundred bytes.
        if payload.len() > 4096 {
            return None;
        }
        let payload = hex::decode(payload).ok()?;
        let signature = hex::decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&signature).ok()?;
        let session: Session = serde_json::from_slice(&payload).ok()?;
        (session.x > Utc::now().timestamp()).then_some(session)
    }

    /// A new anti-forgery token.
    pub(crate) fn new_token() -> Result<String, SessionKeyError> {
        random_bytes(16).map(hex::encode)
    }
}

/// One random key for the whole process, so every worker (and every `configure` call) signs
/// with the same one when no secret is configured.
fn process_key() -> Result<Vec<u8>, SessionKeyError> {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if let Some(key) = KEY.get() {
        return Ok(key.clone());
    }
    let fresh = random_bytes(32)?;
    Ok(KEY.get_or_init(|| fresh).clone())
}

fn random_bytes(n: usize) -> Result<Vec<u8>, SessionKeyError> {
    let mut bytes = vec![0; n];
    getrandom::getrandom(&mut bytes).map_err(|e| SessionKeyError::NoRandomness(e.to_string()))?;
    Ok(bytes)
}

/// Who `session` is now: a key session takes the key's current role, and ends when the key is
/// gone from the configuration.
pub(crate) fn viewer_of(session: &Session, auth: &Authenticator) -> Option<Viewer> {
    let mut api_key = None;
    let (identity, role, label, local) = match &session.principal {
        Principal::Key { n, d } => {
            let verified = auth.key_named(n, d)?;
            api_key = verified.api_key;
            (verified.identity, verified.role, format!("key {n}"), false)
        }
        Principal::Jwt { e, a } => {
            if !auth.requires_credentials() || !auth.accepts_jwt() {
                return None;
            }
            let role = if *a {
                AccessRole::Admin
            } else {
                AccessRole::User
            };
            let hash = EmailHash::from_hex(e.as_str()).ok()?;
            let label = format!("user {}", super::units::hash_prefix(e));
            (
                UserIdentity::Authenticated {
                    email_hash: hash,
                    role,
                },
                role,
                label,
                false,
            )
        }
        Principal::Local => {
            if auth.requires_credentials() {
                return None;
            }
            (
                UserIdentity::Anonymous,
                AccessRole::Admin,
                "local operator".to_owned(),
                true,
            )
        }
    };
    Some(Viewer {
        identity,
        role,
        label,
        csrf: session.c.clone(),
        local,
        api_key,
    })
}

/// The value of the cookie `name` the request carries, if it carries exactly one. Two of one
/// name mean someone else set one too (a sibling subdomain can set a cookie for a longer path,
/// which browsers send first): neither is believed, so nobody is fixed into another's session.
pub(crate) fn read_cookie(req: &actix_web::HttpRequest, name: &str) -> Option<String> {
    let mut found = req
        .headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned());
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Two anti-forgery tokens are the same (in time independent of where they differ).
pub(crate) fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys::new(Some(&"ab".repeat(32)), 60).unwrap_or_else(|e| panic!("{e}"))
    }

    fn session(expiry: i64) -> Session {
        Session {
            principal: Principal::Key {
                n: "ops".into(),
                d: "00".into(),
            },
            x: expiry,
            c: "token".into(),
        }
    }

    #[test]
    fn a_sealed_session_opens_with_the_same_key_only() {
        let in_an_hour = Utc::now().timestamp() + 3600;
        let sealed = keys().seal(&session(in_an_hour));
        assert_eq!(keys().open(&sealed), Some(session(in_an_hour)));
        let other = SessionKeys::new(Some(&"cd".repeat(32)), 60).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.open(&sealed), None);
    }

    #[test]
    fn a_changed_payload_or_signature_is_refused() {
        let sealed = keys().seal(&session(Utc::now().timestamp() + 3600));
        let (payload, signature) = sealed
            .split_once('.')
            .unwrap_or_else(|| panic!("two parts"));
        let forged = Session {
            principal: Principal::Local,
            ..session(Utc::now().timestamp() + 3600)
        };
        let forged_payload = hex::encode(serde_json::to_vec(&forged).unwrap_or_default());
        assert_eq!(keys().open(&format!("{forged_payload}.{signature}")), None);
        let mut flipped = signature.to_owned();
        flipped.replace_range(..1, if signature.starts_with('0') { "1" } else { "0" });
        assert_eq!(keys().open(&format!("{payload}.{flipped}")), None);
        for junk in ["", ".", "zz.zz", "abc", &"a".repeat(10_000)] {
            assert_eq!(keys().open(junk), None, "{junk:.20}");
        }
    }

    #[test]
    fn an_expired_session_is_refused() {
        let sealed = keys().seal(&session(Utc::now().timestamp() - 1));
        assert_eq!(keys().open(&sealed), None);
    }

    #[test]
    fn secrets_must_be_32_bytes_of_hex() {
        assert_eq!(
            SessionKeys::new(Some("abcd"), 60).err(),
            Some(SessionKeyError::BadSecret)
        );
        assert_eq!(
            SessionKeys::new(Some(&"zz".repeat(32)), 60).err(),
            Some(SessionKeyError::BadSecret)
        );
        assert!(SessionKeys::new(None, 60).is_ok());
    }

    fn authenticator(keys: &[(&str, &str, AccessRole)]) -> Result<Authenticator, String> {
        let config = crate::AuthConfig {
            mode: crate::AuthMode::Required,
            api_keys: keys
                .iter()
                .map(|(name, key, role)| crate::ApiKeyConfig {
                    name: (*name).to_owned(),
                    email: format!("{name}@example.com"),
                    role: *role,
                    sha256: crate::auth::sha256_hex(key),
                })
                .collect(),
            ..crate::AuthConfig::default()
        };
        Authenticator::from_config(&config).map_err(|e| e.to_string())
    }

    fn key_session(name: &str, key: &str) -> Session {
        Session {
            principal: Principal::Key {
                n: name.to_owned(),
                d: crate::auth::credential_fingerprint(key),
            },
            x: Utc::now().timestamp() + 3600,
            c: "token".into(),
        }
    }

    #[test]
    fn a_key_session_ends_when_its_key_is_replaced_under_the_same_name() {
        let session = key_session("ci", "old-key");
        let before = authenticator(&[("ci", "old-key", AccessRole::Admin)])
            .unwrap_or_else(|e| panic!("{e}"));
        let viewer = viewer_of(&session, &before).unwrap_or_else(|| panic!("the key's session"));
        assert_eq!(viewer.role, AccessRole::Admin);
        let rotated = authenticator(&[("ci", "new-key", AccessRole::Admin)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(viewer_of(&session, &rotated).is_none());
        let removed = authenticator(&[("other", "old-key", AccessRole::Admin)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(viewer_of(&session, &removed).is_none());
    }

    #[test]
    fn a_key_session_takes_the_key_s_current_role() {
        let session = key_session("ci", "key");
        let demoted =
            authenticator(&[("ci", "key", AccessRole::User)]).unwrap_or_else(|e| panic!("{e}"));
        let viewer = viewer_of(&session, &demoted).unwrap_or_else(|| panic!("the key's session"));
        assert_eq!(viewer.role, AccessRole::User);
    }

    #[test]
    fn two_keys_may_not_share_a_name() {
        let refused = authenticator(&[
            ("laptop", "boss-key", AccessRole::Admin),
            ("laptop", "intern-key", AccessRole::User),
        ]);
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("same name")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_jwt_session_ends_when_tokens_are_no_longer_accepted() {
        let session = Session {
            principal: Principal::Jwt {
                e: EmailHash::of_email("ada@example.com").as_str().to_owned(),
                a: true,
            },
            x: Utc::now().timestamp() + 3600,
            c: "token".into(),
        };
        let keys_only =
            authenticator(&[("ci", "key", AccessRole::User)]).unwrap_or_else(|e| panic!("{e}"));
        assert!(viewer_of(&session, &keys_only).is_none());
    }

    #[test]
    fn a_cookie_sent_twice_is_believed_neither_time() {
        let once = actix_web::test::TestRequest::default()
            .insert_header(("cookie", "x=1; commander_console=abc; y=2"))
            .to_http_request();
        assert_eq!(read_cookie(&once, SESSION_COOKIE).as_deref(), Some("abc"));
        let twice = actix_web::test::TestRequest::default()
            .insert_header(("cookie", "commander_console=theirs; commander_console=mine"))
            .to_http_request();
        assert_eq!(read_cookie(&twice, SESSION_COOKIE), None);
        let none = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(read_cookie(&none, SESSION_COOKIE), None);
    }

    #[test]
    fn tokens_match_only_when_equal_and_present() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(!tokens_match("", ""));
    }
}
