use std::net::IpAddr;

use core_domain::{SpecialPurpose, ValidationErrors, special_purpose};
use url::{Host, Url};

/// Which base URLs a specialist may point the server at.
///
/// A specialist's `base_url` makes the server send requests (with an API key) wherever it says,
/// so an admin-settable URL is a server-side request forgery risk. By default only `https` URLs
/// to public hosts are allowed: a literal address must be globally routable by IANA's
/// special-purpose registries ([`core_domain::is_internal_ip`]: no loopback, private,
/// link-local — cloud metadata lives at 169.254.169.254 —, shared, benchmarking, reserved or
/// unique-local address, nor an IPv6 transition form of one), and no `localhost` or cloud
/// metadata names. Every spelling of an address is judged as the address: the URL parser turns
/// `2130706433`, `0x7f.1` and `0177.0.0.1` into `127.0.0.1` and `[::127.0.0.1]` into `[::7f00:1]`
/// before the check sees the host. URLs listed in `allowed_http_base_urls` (e.g. a local Ollama at
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
        let refusal = match url.host() {
            None => return Err("must name a host".to_owned()),
            Some(Host::Ipv4(ip)) => special_purpose(IpAddr::V4(ip)).map(|p| describe(ip, p)),
            Some(Host::Ipv6(ip)) => special_purpose(IpAddr::V6(ip)).map(|p| describe(ip, p)),
            Some(Host::Domain(name)) => {
                is_internal_name(name).then(|| format!("{name} is a local or cloud metadata name"))
            }
        };
        if let Some(why) = refusal {
            return Err(format!(
                "must not point at an address that is not globally routable ({why}); list it \
                 in providers.allowed_http_base_urls to allow it"
            ));
        }
        Ok(())
    }

    /// Every base URL of a specialist's targets that this policy refuses, by field path:
    /// `base_url` for the primary target, `fallbacks[i].base_url` for the fallbacks. Targets
    /// without one (or with a blank one) call the provider's configured server and pass.
    pub fn check_targets<'a>(
        &self,
        primary_base_url: Option<&'a str>,
        fallback_base_urls: impl IntoIterator<Item = Option<&'a str>>,
    ) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        let fields = std::iter::once("base_url".to_owned())
            .chain((0..).map(|index| format!("fallbacks[{index}].base_url")));
        let urls = std::iter::once(primary_base_url).chain(fallback_base_urls);
        for (field, url) in fields.zip(urls) {
            if let Some(url) = url.map(str::trim).filter(|u| !u.is_empty())
                && let Err(reason) = self.check(url)
            {
                errors.push(field, reason);
            }
        }
        errors
    }
}

fn describe(ip: impl std::fmt::Display, purpose: SpecialPurpose) -> String {
    format!("{ip}: {}, {}", purpose.name, purpose.rfc)
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
    fn every_targets_base_url_is_checked_under_its_own_field() {
        let policy = BaseUrlPolicy::new(["http://127.0.0.1:11434/v1".to_owned()]);
        let errors = policy.check_targets(
            Some("http://api.x.ai/v1"),
            [
                None,
                Some("https://169.254.169.254/v1"),
                Some("  "),
                Some("http://127.0.0.1:11434/v1/"),
                Some("https://api.x.ai/v1"),
                Some("http://127.0.0.1:6379/v1"),
            ],
        );
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["base_url", "fallbacks[1].base_url", "fallbacks[5].base_url"]
        );
        assert!(errors.errors()[1].message.contains("not globally routable"));
        assert!(
            policy
                .check_targets(None, [Some("https://api.x.ai/v1"), None])
                .is_empty()
        );
    }

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
            // IDNA maps full-width letters and upper case before the name is compared.
            "https://ｌｏｃａｌｈｏｓｔ/v1",
            "https://LOCALHOST./v1",
            // Decimal and hex spellings of loopback are normalised by the URL parser.
            "https://2130706433/v1",
            "https://0x7f.0.0.1/v1",
        ] {
            assert!(policy.check(url).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn the_literals_the_attack_got_through_are_refused() {
        let policy = BaseUrlPolicy::default();
        for url in [
            "https://[::127.0.0.1]/v1",
            "https://[::ffff:0:7f00:1]/v1",
            "https://[64:ff9b::7f00:1]/v1",
            "https://[2002:7f00:1::]/v1",
            "https://[fec0::1]/v1",
            "https://198.18.0.1/v1",
            "https://240.0.0.1/v1",
            // And the other spellings of the same hosts.
            "https://[0:0:0:0:0:0:127.0.0.1]/v1",
            "https://[::FFFF:0:127.0.0.1]/v1",
            "https://[64:ff9b::127.0.0.1]/v1",
            "https://0xc6.0x12.0.1/v1",
            "https://3323068417/v1",
            "https://0360.0.0.1/v1",
            "https://0x7f.1/v1",
            "https://127.1/v1",
            "https://127.0.0.1./v1",
            "https://[::ffff:7f00:1]/v1",
            "https://%31%32%37.0.0.1/v1",
            // ISATAP under a public prefix, carrying loopback and the metadata address.
            "https://[2001:4860:1:2:0:5efe:127.0.0.1]/v1",
            "https://[2001:4860:1:2:200:5efe:a9fe:a9fe]/v1",
        ] {
            let refusal = policy.check(url).expect_err(url);
            assert!(
                refusal.contains("not globally routable"),
                "{url}: {refusal}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_block_and_its_rfc() {
        let policy = BaseUrlPolicy::default();
        let refusal = policy.check("https://198.18.0.1/v1").unwrap_err();
        assert!(
            refusal.contains("198.18.0.1: Benchmarking, RFC 2544"),
            "{refusal}"
        );
        let refusal = policy.check("https://[64:ff9b::7f00:1]/v1").unwrap_err();
        assert!(refusal.contains("Loopback"), "{refusal}");
        let refusal = policy.check("https://[fec0::1]/v1").unwrap_err();
        assert!(refusal.contains("Site-Local"), "{refusal}");
        let refusal = policy.check("https://[ff02::1]/v1").unwrap_err();
        assert!(refusal.contains("Multicast"), "{refusal}");
    }

    #[test]
    fn public_addresses_and_their_transition_forms_still_pass() {
        let policy = BaseUrlPolicy::default();
        for url in [
            "https://8.8.8.8/v1",
            "https://[2606:4700::1111]/v1",
            // Decision: a transition form reaches the IPv4 host it carries, so it is judged
            // as that host (documented on core_domain::is_internal_ip).
            "https://[2002:0808:0808::]/v1",
            "https://[::ffff:8.8.8.8]/v1",
            "https://[64:ff9b::8.8.8.8]/v1",
            "https://[2001:4860:1:2:200:5efe:8.8.8.8]/v1",
        ] {
            assert_eq!(policy.check(url), Ok(()), "{url}");
        }
    }

    mod generated {
        //! Thousands of generated base URLs: none may panic the check, and every spelling of
        //! an address that is not globally routable is refused.

        use std::net::{Ipv4Addr, Ipv6Addr};

        use proptest::prelude::*;

        use super::BaseUrlPolicy;

        /// IPv4 blocks that must be refused, written down here independently of the table in
        /// core-domain so the two check each other.
        const REFUSED_V4: &[(u32, u32)] = &[
            (0x0000_0000, 8),  // this network
            (0x0a00_0000, 8),  // private
            (0x6440_0000, 10), // shared / CGNAT
            (0x7f00_0000, 8),  // loopback
            (0xa9fe_0000, 16), // link-local, metadata
            (0xac10_0000, 12), // private
            (0xc000_0000, 24), // IETF protocol assignments
            (0xc000_0200, 24), // TEST-NET-1
            (0xc058_6300, 24), // 6to4 relay anycast
            (0xc0a8_0000, 16), // private
            (0xc612_0000, 15), // benchmarking
            (0xc633_6400, 24), // TEST-NET-2
            (0xcb00_7100, 24), // TEST-NET-3
            (0xe000_0000, 4),  // multicast
            (0xf000_0000, 4),  // reserved, broadcast
        ];

        fn refused_v4() -> impl Strategy<Value = Ipv4Addr> {
            (0..REFUSED_V4.len(), any::<u32>()).prop_map(|(i, host)| {
                let (network, len) = REFUSED_V4[i];
                Ipv4Addr::from_bits(network | (host >> len))
            })
        }

        /// Every way a URL can spell this IPv4 host: dotted, one decimal, hex and octal
        /// numbers, the short `a.b` and `a.b.c` forms, and the IPv6 forms that carry it.
        fn spellings(ip: Ipv4Addr) -> Vec<String> {
            let bits = ip.to_bits();
            let [a, b, c, d] = ip.octets();
            let v6 = |addr: Ipv6Addr| format!("[{addr}]");
            let halves = ((bits >> 16) as u16, bits as u16);
            vec![
                ip.to_string(),
                bits.to_string(),
                format!("0x{bits:x}"),
                format!("0{bits:o}"),
                format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
                format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
                format!("{a}.{}", bits & 0x00ff_ffff),
                format!("0x{a:x}.{b}.{}", bits & 0xffff),
                v6(ip.to_ipv6_mapped()),
                v6(ip.to_ipv6_compatible()),
                format!("[::ffff:0:{ip}]"),
                format!("[64:ff9b::{ip}]"),
                v6(Ipv6Addr::new(0x2002, halves.0, halves.1, 0, 0, 0, 0, 1)),
                format!("[::FFFF:{:X}:{:X}]", halves.0, halves.1),
                // ISATAP under a public prefix: judged as the address it carries.
                format!("[2001:4860:1:2:200:5efe:{ip}]"),
                format!("[2606:4700::5efe:{:x}:{:x}]", halves.0, halves.1),
            ]
        }

        fn url_text() -> impl Strategy<Value = String> {
            let scheme = prop_oneof!["https", "http", "HTTPS", "ftp", "", "https:/", "file"];
            let host = prop_oneof![
                any::<u32>().prop_map(|b| Ipv4Addr::from_bits(b).to_string()),
                any::<u32>().prop_map(|b| b.to_string()),
                any::<u128>().prop_map(|b| format!("[{}]", Ipv6Addr::from_bits(b))),
                "[0-9a-fA-FxX.:\\[\\]%]{0,40}",
                "[a-z0-9.-]{0,30}",
                any::<String>(),
            ];
            let port = prop_oneof![
                Just(String::new()),
                any::<u32>().prop_map(|p| format!(":{p}"))
            ];
            let path = prop_oneof![Just(String::new()), "/[ -~]{0,20}", any::<String>()];
            (scheme, host, port, path).prop_map(|(s, h, p, rest)| format!("{s}://{h}{p}{rest}"))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            #[test]
            fn no_input_panics_the_check(url in url_text(), raw in any::<String>()) {
                let policy = BaseUrlPolicy::new(["http://127.0.0.1:11434/v1".to_owned()]);
                let _ = policy.check(&url);
                let _ = policy.check(&raw);
            }

            #[test]
            fn every_spelling_of_an_internal_ipv4_address_is_refused(ip in refused_v4()) {
                let policy = BaseUrlPolicy::default();
                for host in spellings(ip) {
                    let url = format!("https://{host}/v1");
                    prop_assert!(policy.check(&url).is_err(), "{} allowed for {}", url, ip);
                }
            }

            #[test]
            fn every_spelling_of_an_address_gets_the_same_answer(bits in any::<u32>()) {
                let policy = BaseUrlPolicy::default();
                let ip = Ipv4Addr::from_bits(bits);
                let dotted = policy.check(&format!("https://{ip}/v1")).is_ok();
                for host in spellings(ip) {
                    let url = format!("https://{host}/v1");
                    prop_assert_eq!(policy.check(&url).is_ok(), dotted, "{} vs {}", url, ip);
                }
            }

            #[test]
            fn ipv6_outside_global_unicast_is_refused(bits in any::<u128>()) {
                // Outside 2000::/3 only the IPv4-carrying forms can be public; the rest never.
                let ip = Ipv6Addr::from_bits(bits);
                let s = ip.segments();
                let carries_v4 = s[..5] == [0; 5] || s[..6] == [0, 0, 0, 0, 0xffff, 0]
                    || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
                prop_assume!(bits >> 125 != 0b001 && !carries_v4);
                let url = format!("https://[{ip}]/v1");
                prop_assert!(BaseUrlPolicy::default().check(&url).is_err(), "{}", url);
            }
        }
    }
}
