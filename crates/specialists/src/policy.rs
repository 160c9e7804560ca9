use std::net::IpAddr;

use core_domain::is_internal_ip;
use url::{Host, Url};

/// Which base URLs a specialist may point the server at.
///
/// A specialist's `base_url` makes the server send requests (with an API key) wherever it says,
/// so an admin-settable URL is a server-side request forgery risk. By default only `https` URLs
/// to public hosts are allowed: no loopback, private, link-local (cloud metadata lives at
/// 169.254.169.254), unique-local or unspecified addresses, and no `localhost` or cloud metadata
/// names. URLs listed in `allowed_http_base_urls` (e.g. a local Ollama at
/// `http://127.0.0.1:11434/v1`) are allowed exactly as written.
///
/// Only literal addresses and well-known names are checked here; a public name that resolves to
/// a private address is refused when the provider connects.
#[derive(Debug, Clone, Default)]
pub struct BaseUrlPolicy {
    allowed: Vec<String>,
}

impl BaseUrlPolicy {
    /// A policy that also allows the listed base URLs (compared without a trailing `/`).
    pub fn new(allowed_http_base_urls: impl IntoIterator<Item = String>) -> Self {
        Self {
            allowed: allowed_http_base_urls
                .into_iter()
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    /// `Ok` when the server may call `base_url`; otherwise why not.
    pub fn check(&self, base_url: &str) -> Result<(), String> {
        let normalised = base_url.trim().trim_end_matches('/');
        if self.allowed.iter().any(|a| a == normalised) {
            return Ok(());
        }
        let url = Url::parse(normalised).map_err(|_| "must be an absolute URL".to_owned())?;
        if url.scheme() != "https" {
            return Err(
                "must use https (plain http is allowed only for URLs listed in providers.allowed_http_base_urls)"
                    .to_owned(),
            );
        }
        let forbidden = match url.host() {
            None => return Err("must name a host".to_owned()),
            Some(Host::Ipv4(ip)) => is_internal_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => is_internal_ip(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => is_internal_name(name),
        };
        if forbidden {
            return Err(
                "must not point at a loopback, private, link-local or metadata address \
                 (list it in providers.allowed_http_base_urls to allow it)"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

fn is_internal_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "metadata"
        || name == "metadata.google.internal"
        || name.ends_with(".internal")
        || name.ends_with(".local")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_is_allowed() {
        let policy = BaseUrlPolicy::default();
        assert!(policy.check("https://api.x.ai/v1").is_ok());
        assert!(policy.check("https://8.8.8.8/v1").is_ok());
    }

    #[test]
    fn plain_http_is_refused_unless_listed() {
        let policy = BaseUrlPolicy::default();
        assert!(policy.check("http://api.x.ai/v1").is_err());
        let policy = BaseUrlPolicy::new(["http://127.0.0.1:11434/v1/".to_owned()]);
        assert!(policy.check("http://127.0.0.1:11434/v1").is_ok());
        // Listing one port does not open the host.
        assert!(policy.check("http://127.0.0.1:6379/v1").is_err());
    }

    #[test]
    fn internal_targets_are_refused_even_over_https() {
        let policy = BaseUrlPolicy::default();
        for url in [
            "https://127.0.0.1/v1",
            "https://10.1.2.3/v1",
            "https://172.16.0.1/v1",
            "https://192.168.1.1/v1",
            "https://169.254.169.254/latest/meta-data",
            "https://100.100.100.200/v1",
            "https://0.0.0.0/v1",
            "https://[::1]/v1",
            "https://[fd00:ec2::254]/v1",
            "https://[fe80::1]/v1",
            "https://[::ffff:127.0.0.1]/v1",
            "https://localhost/v1",
            "https://api.localhost/v1",
            "https://metadata.google.internal/computeMetadata/v1",
            "https://printer.local/v1",
            // Decimal and hex spellings of loopback are normalised by the URL parser.
            "https://2130706433/v1",
            "https://0x7f.0.0.1/v1",
        ] {
            assert!(policy.check(url).is_err(), "{url} should be refused");
        }
    }
}
