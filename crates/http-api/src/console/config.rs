//! The `[server.console]` section.

use serde::{Deserialize, Serialize, Serializer};

/// The web console's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve `/console` (on by default; off answers 404 there).
    pub enabled: bool,
    /// How long a console sign-in lasts, in minutes (a JWT's own expiry ends it sooner).
    pub session_minutes: u32,
    /// The key that signs session cookies, as at least 64 hex digits (32 bytes). Unset: a
    /// random key each start, so sessions end with the process and are not shared between
    /// instances; set the same key on every instance behind one address.
    #[serde(serialize_with = "mask", skip_serializing_if = "Option::is_none")]
    pub session_secret: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_minutes: 8 * 60,
            session_secret: None,
        }
    }
}

impl ConsoleConfig {
    /// Refuses a session secret that is not 32+ bytes of hex (checked at start).
    pub fn validate(&self) -> Result<(), super::SessionKeyError> {
        super::SessionKeys::new(self.session_secret.as_deref(), self.session_minutes).map(|_| ())
    }
}

fn mask<S: Serializer>(secret: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("[REDACTED]"),
        None => serializer.serialize_none(),
    }
}
