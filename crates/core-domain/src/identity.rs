use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DomainError;
use crate::ids::string_newtype;

/// The SHA-256 of a user's email, as 64 lower-case hex digits: the only trace of a user that the
/// usage log keeps.
///
/// The email is trimmed and lower-cased before hashing, so `" Ada@Example.com"` and
/// `"ada@example.com"` are the same user.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailHash(String);

impl EmailHash {
    /// Hashes an email by the rule above.
    pub fn of_email(email: &str) -> Self {
        let normalised = email.trim().to_lowercase();
        Self(hex::encode(Sha256::digest(normalised.as_bytes())))
    }

    /// Accepts an already computed hash (from the database or config).
    pub fn from_hex(hex_digits: impl Into<String>) -> Result<Self, DomainError> {
        let hex_digits = hex_digits.into();
        let valid = hex_digits.len() == 64
            && hex_digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self(hex_digits))
        } else {
            Err(DomainError::InvalidEmailHash)
        }
    }
}

string_newtype!(EmailHash, from_hex);

impl fmt::Debug for EmailHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailHash({})", self.0)
    }
}

/// What an authenticated caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessRole {
    /// Chat, read specialists, read their own usage.
    User,
    /// Everything a user can, plus specialist management and everyone's usage.
    Admin,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIdentity {
    /// No credentials (authentication disabled): every such caller is the same `anonymous` user.
    Anonymous,
    /// A caller proven by a token or an API key.
    Authenticated {
        /// The hash of the caller's email.
        email_hash: EmailHash,
        /// What the caller may do.
        role: AccessRole,
    },
}

impl UserIdentity {
    /// The email hash recorded in usage rows; `None` for the anonymous caller.
    pub fn email_hash(&self) -> Option<&EmailHash> {
        match self {
            Self::Anonymous => None,
            Self::Authenticated { email_hash, .. } => Some(email_hash),
        }
    }

    /// True for an authenticated administrator.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Self::Authenticated {
                role: AccessRole::Admin,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_hash_is_sha256_of_trimmed_lowercase() {
        // Computed independently: `printf %s ada@example.com | sha256sum`.
        let expected = "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72";
        assert_eq!(EmailHash::of_email("ada@example.com").as_str(), expected);
        assert_eq!(
            EmailHash::of_email("  Ada@Example.COM\n").as_str(),
            expected
        );
    }

    #[test]
    fn from_hex_refuses_uppercase_and_wrong_length() {
        let good = EmailHash::of_email("x@y.z");
        assert_eq!(EmailHash::from_hex(good.as_str()).unwrap(), good);
        assert!(EmailHash::from_hex(good.as_str().to_uppercase()).is_err());
        assert!(EmailHash::from_hex("abc").is_err());
    }

    #[test]
    fn anonymous_has_no_hash_and_is_not_admin() {
        assert_eq!(UserIdentity::Anonymous.email_hash(), None);
        assert!(!UserIdentity::Anonymous.is_admin());
        let admin = UserIdentity::Authenticated {
            email_hash: EmailHash::of_email("root@example.com"),
            role: AccessRole::Admin,
        };
        assert!(admin.is_admin());
    }
}
