//! Which `Host` a request may name while auth is disabled: the defence against DNS rebinding.
//!
//! A web page on `evil.example` can make its own name resolve to 127.0.0.1 and then call the
//! operator's local server "same-origin". The browser still sends `Host: evil.example`, so a
//! server that needs no credentials must answer only to the names it is known by.

use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A host name or IP literal from `server.allowed_hosts`, compared without its port and
/// case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AllowedHost(Host);

/// A host as configured: a name is stored in lower case, so a request's is compared without
/// allocating.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A host as a request names it, borrowed: a name keeps the request's case and has no
/// trailing dot.
#[derive(Debug, Clone, Copy)]
enum HostRef<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

impl HostRef<'_> {
    fn to_owned_lowercase(self) -> Host {
        match self {
            Self::Ip(ip) => Host::Ip(ip),
            Self::Name(name) => Host::Name(name.to_ascii_lowercase()),
        }
    }

    fn is(self, host: &Host) -> bool {
        match (self, host) {
            (Self::Ip(ip), Host::Ip(allowed)) => ip == *allowed,
            (Self::Name(name), Host::Name(allowed)) => name.eq_ignore_ascii_case(allowed),
            _ => false,
        }
    }
}

impl FromStr for AllowedHost {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        parse_authority(raw.trim())
            .map(|host| Self(host.to_owned_lowercase()))
            .ok_or_else(|| {
                format!(
                    "'{raw}' is not a host name or IP address (write it as in a Host header, \
                 e.g. commander.internal or 10.0.0.7, without a scheme or path)"
                )
            })
    }
}

impl TryFrom<String> for AllowedHost {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl From<AllowedHost> for String {
    fn from(host: AllowedHost) -> Self {
        match host.0 {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name,
        }
    }
}

/// The hosts a request may be addressed to: loopback names always, plus the listed ones.
#[derive(Debug, Clone)]
pub(crate) struct HostPolicy {
    allowed: Vec<Host>,
}

impl HostPolicy {
    /// Loopback, `allowed`, and the bind address when it is one specific address (a wildcard
    /// bind has no name of its own: list the names it is reached by).
    pub(crate) fn new(allowed: &[AllowedHost], bind: Option<IpAddr>) -> Self {
        let mut hosts: Vec<Host> = allowed.iter().map(|h| h.0.clone()).collect();
        if let Some(ip) = bind.map(|ip| ip.to_canonical())
            && !ip.is_unspecified()
        {
            hosts.push(Host::Ip(ip));
        }
        Self { allowed: hosts }
    }

    /// True when `authority` (a `Host` header or a request target's authority, port allowed)
    /// names this server.
    pub(crate) fn admits(&self, authority: &str) -> bool {
        match parse_authority(authority) {
            Some(HostRef::Ip(ip)) if ip.is_loopback() => true,
            Some(HostRef::Name(name)) if name.eq_ignore_ascii_case("localhost") => true,
            Some(host) => self.allowed.iter().any(|allowed| host.is(allowed)),
            None => false,
        }
    }
}

/// `host[:port]`, `[v6]` or `[v6]:port` → the host, normalised (no trailing dot, IPv4-mapped
/// IPv6 as IPv4; a name keeps its case). `None` for anything else.
fn parse_authority(raw: &str) -> Option<HostRef<'_>> {
    let (host, port) = match raw.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let ip: std::net::Ipv6Addr = inside.parse().ok()?;
            return port_is_valid(after.strip_prefix(':'), after.is_empty())
                .then_some(HostRef::Ip(IpAddr::V6(ip).to_canonical()));
        }
        None => match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        },
    };
    if !port_is_valid(port, port.is_none()) {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Some(HostRef::Ip(IpAddr::V4(ip)));
    }
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !host.split('.').any(str::is_empty);
    is_name.then_some(HostRef::Name(host))
}

/// A port after `:` is digits that fit a u16 (RFC 3986 allows it empty); no `:` at all is
/// fine when `absent_is_fine`.
fn port_is_valid(port: Option<&str>, absent_is_fine: bool) -> bool {
    match port {
        None => absent_is_fine,
        Some("") => true,
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<u16>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], bind: Option<&str>) -> HostPolicy {
        let allowed: Vec<AllowedHost> = allowed.iter().map(|h| h.parse().unwrap()).collect();
        HostPolicy::new(&allowed, bind.map(|b| b.parse().unwrap()))
    }

    #[test]
    fn loopback_names_are_admitted_with_any_port() {
        let policy = policy(&[], None);
        for host in [
            "localhost",
            "LOCALHOST:8000",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8000",
            "127.9.8.7:1",
            "[::1]",
            "[::1]:8000",
            "[::ffff:127.0.0.1]:80",
            "localhost:",
        ] {
            assert!(policy.admits(host), "{host}");
        }
    }

    #[test]
    fn other_names_and_garbage_are_refused() {
        let policy = policy(&[], None);
        for host in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "evil.localhost",
            "10.0.0.7",
            "[2001:db8::1]",
            "",
            "::1",
            "[::1",
            "localhost:80:80",
            "localhost:99999",
            "localhost:8x",
            "local host",
            "127.0.0.1@evil.example",
        ] {
            assert!(!policy.admits(host), "{host}");
        }
    }

    #[test]
    fn listed_hosts_and_a_specific_bind_address_are_admitted() {
        let policy = policy(
            &["Commander.Internal", "10.0.0.7:8000", "[2001:db8::1]"],
            Some("192.168.1.5"),
        );
        for host in [
            "commander.internal",
            "commander.internal:9000",
            "10.0.0.7",
            "[2001:db8::1]:443",
            "192.168.1.5:8000",
        ] {
            assert!(policy.admits(host), "{host}");
        }
        assert!(!policy.admits("other.internal"));
        assert!(
            policy.admits("COMMANDER.Internal.:80"),
            "any case, trailing dot"
        );
        assert!(!policy.admits("commander.internal.evil"));
        let wildcard = self::policy(&[], Some("0.0.0.0"));
        assert!(!wildcard.admits("0.0.0.0:8000"));
    }

    #[test]
    fn bad_allowed_hosts_are_refused_at_parse_time() {
        for bad in ["http://x.example", "x.example/path", "", "a..b", "[::1"] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad}");
        }
        let round_trip: String = "[::1]:80".parse::<AllowedHost>().unwrap().into();
        assert_eq!(round_trip, "[::1]");
    }
}
