//! Who is on the other end: the peer address, or — only when the peer is a proxy we trust —
//! the client that proxy names in `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// True when `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("'{raw}' is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{raw}' has a prefix length outside 0..={max}"))?,
        };
        // `::ffff:10.0.0.0/104` is the IPv4 range `10.0.0.0/8`: addresses are matched in
        // their canonical (IPv4) spelling.
        let (network, prefix) = match network {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (network, prefix),
            },
            _ => (network, prefix),
        };
        Ok(Self { network, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> Self {
        format!("{}/{}", cidr.network, cidr.prefix)
    }
}

/// The client's address. `X-Forwarded-For` is read only when `peer` is a trusted proxy; then
/// its hops are walked from the right (the hop our proxy appended) past every trusted proxy,
/// and the first untrusted hop is the client. Hops to the left of it were written by the
/// client and could say anything, so they are never believed.
///
/// Addresses come back canonical (an IPv4-mapped IPv6 address as its IPv4 address), so one
/// client has one spelling whichever way a socket or a proxy wrote it.
pub(crate) fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // A hop we cannot read ends what we can vouch for: the last address we trust.
            None => break,
        }
    }
    client
}

/// The network one client is counted by, for the per-client caps (open connections, the
/// rate limit of callers without credentials): its IPv4 address, or the /64 its IPv6 address
/// is in. One IPv6 host is given a whole /64 and may use any address in it (SLAAC, temporary
/// addresses: RFC 4291 §2.5.4, RFC 8981), so counting each address would give it 2^64 caps.
pub(crate) fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) & IPV6_CLIENT_MASK)),
        ip => ip,
    }
}

/// The first 64 bits: the subnet prefix of an IPv6 unicast address.
const IPV6_CLIENT_MASK: u128 = !(u64::MAX as u128);

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let private = cidrs(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
        assert!(private[0].contains(ip("10.200.3.4")));
        assert!(!private[0].contains(ip("11.0.0.1")));
        assert!(private[1].contains(ip("192.168.1.7")));
        assert!(!private[1].contains(ip("192.168.1.8")));
        assert!(private[2].contains(ip("fd12::1")));
        assert!(private[0].contains(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    /// Asserts the client found for each `(peer, X-Forwarded-For, client)` behind `trusted`.
    fn assert_clients(trusted: &[Cidr], cases: &[(&str, Option<&str>, &str)]) {
        for &(peer, forwarded_for, client) in cases {
            assert_eq!(
                client_ip(ip(peer), forwarded_for, trusted),
                ip(client),
                "peer {peer}, X-Forwarded-For {forwarded_for:?}"
            );
        }
    }

    #[test]
    fn ipv4_mapped_spellings_are_one_address() {
        let trusted = cidrs(&["::ffff:10.0.0.0/104"]);
        assert_eq!(String::from(trusted[0]), "10.0.0.0/8");
        assert!(trusted[0].contains(ip("10.1.2.3")));
        assert_clients(
            &trusted,
            &[
                ("::ffff:10.0.0.1", Some("::ffff:9.9.9.9"), "9.9.9.9"),
                ("10.0.0.1", Some("[::ffff:9.9.9.9]:443"), "9.9.9.9"),
            ],
        );
        assert_clients(&[], &[("::ffff:203.0.113.9", None, "203.0.113.9")]);
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let untrusted_peer = [("203.0.113.9", Some("1.2.3.4"), "203.0.113.9")];
        assert_clients(&cidrs(&["10.0.0.0/8"]), &untrusted_peer);
        assert_clients(&[], &untrusted_peer);
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        // The client claims to be 6.6.6.6; the first proxy saw 198.51.100.7; a second
        // trusted proxy (10.0.0.2) passed it on to our peer 10.0.0.1.
        assert_clients(
            &cidrs(&["10.0.0.0/8"]),
            &[
                (
                    "10.0.0.1",
                    Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
                    "198.51.100.7",
                ),
                ("10.0.0.1", Some("198.51.100.7:5123"), "198.51.100.7"),
                ("10.0.0.1", Some("[2001:db8::5]:443"), "2001:db8::5"),
            ],
        );
    }

    #[test]
    fn all_trusted_or_unreadable_hops_stop_at_what_we_can_vouch_for() {
        assert_clients(
            &cidrs(&["10.0.0.0/8"]),
            &[
                ("10.0.0.1", Some("10.0.0.3, 10.0.0.2"), "10.0.0.3"),
                ("10.0.0.1", Some("garbage"), "10.0.0.1"),
                ("10.0.0.1", Some("1.1.1.1, unknown"), "10.0.0.1"),
                ("10.0.0.1", None, "10.0.0.1"),
            ],
        );
    }

    #[test]
    fn one_ipv6_client_is_its_64_and_one_ipv4_client_its_address() {
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_network(ip("::ffff:9.9.9.9")), ip("9.9.9.9"));
        assert_ne!(client_network(ip("9.9.9.9")), client_network(ip("9.9.9.8")));
    }
}
