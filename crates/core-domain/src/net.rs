//! Which IP addresses an admin-settable upstream URL may reach: only globally routable ones.
//!
//! The rule is table-driven, from IANA's special-purpose address registries, so a block is
//! refused because a registry says it is not globally reachable, not because someone thought of
//! it. An IPv6 address that carries an IPv4 address (the transition forms) is judged as the IPv4
//! address it carries: `::ffff:127.0.0.1`, `::127.0.0.1`, `64:ff9b::7f00:1` and `2002:7f00:1::`
//! all reach loopback in the end, and `2002:808:808::` is as public as `8.8.8.8`. An ISATAP
//! address (`<prefix>:0:5efe:a.b.c.d`) must pass twice: its IPv6 prefix and the IPv4 address
//! in its interface identifier.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One block of a special-purpose registry that is not globally reachable.
struct Block<T> {
    network: T,
    prefix_len: u32,
    purpose: SpecialPurpose,
}

/// Why an address is not globally routable: the registry's name for its block and the RFC
/// that set it aside, so a refusal can say more than "no".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialPurpose {
    /// The registry's name for the block ("Loopback", "Benchmarking", ...).
    pub name: &'static str,
    /// The RFC that set it aside.
    pub rfc: &'static str,
}

const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    prefix_len: u32,
    name: &'static str,
    rfc: &'static str,
) -> Block<u32> {
    Block {
        network: Ipv4Addr::new(a, b, c, d).to_bits(),
        prefix_len,
        purpose: SpecialPurpose { name, rfc },
    }
}

const fn v6(
    segments: [u16; 8],
    prefix_len: u32,
    name: &'static str,
    rfc: &'static str,
) -> Block<u128> {
    let [a, b, c, d, e, f, g, h] = segments;
    Block {
        network: Ipv6Addr::new(a, b, c, d, e, f, g, h).to_bits(),
        prefix_len,
        purpose: SpecialPurpose { name, rfc },
    }
}

// Source: IANA "IPv4 Special-Purpose Address Registry" (iana-ipv4-special-registry) and
// "IPv6 Special-Purpose Address Registry" (iana-ipv6-special-registry), as published in 2025
// (the newest entries used: RFC 9602, RFC 9637, RFC 9780). Every entry whose "Globally
// Reachable" column is False is here; so are the entries that are N/A or deprecated, and the
// multicast and reserved ranges of the address-space registries, none of which is a unicast
// server. Entries marked globally reachable that sit inside a refused block (the PCP and TURN
// anycast addresses 192.0.0.9 and .10, AS112, AMT, ORCHIDv2 and DRIP under 2001::/23) stay
// refused with their block: they are infrastructure services, never an LLM endpoint.
// Review this table when IANA adds an entry.

/// IPv4 blocks that are not globally reachable.
#[rustfmt::skip] // One line per registry entry, to read and review like the registry.
const IPV4_NOT_GLOBAL: &[Block<u32>] = &[
    v4(0, 0, 0, 0, 8, "\"This network\"", "RFC 791 §3.2"),
    v4(10, 0, 0, 0, 8, "Private-Use", "RFC 1918"),
    v4(100, 64, 0, 0, 10, "Shared Address Space (carrier-grade NAT)", "RFC 6598"),
    v4(127, 0, 0, 0, 8, "Loopback", "RFC 1122 §3.2.1.3"),
    v4(169, 254, 0, 0, 16, "Link Local (cloud metadata)", "RFC 3927"),
    v4(172, 16, 0, 0, 12, "Private-Use", "RFC 1918"),
    v4(192, 0, 0, 0, 24, "IETF Protocol Assignments", "RFC 6890 §2.1"),
    v4(192, 0, 2, 0, 24, "Documentation (TEST-NET-1)", "RFC 5737"),
    v4(192, 88, 99, 0, 24, "Deprecated 6to4 Relay Anycast", "RFC 7526"),
    v4(192, 168, 0, 0, 16, "Private-Use", "RFC 1918"),
    v4(198, 18, 0, 0, 15, "Benchmarking", "RFC 2544"),
    v4(198, 51, 100, 0, 24, "Documentation (TEST-NET-2)", "RFC 5737"),
    v4(203, 0, 113, 0, 24, "Documentation (TEST-NET-3)", "RFC 5737"),
    v4(224, 0, 0, 0, 4, "Multicast", "RFC 5771"),
    v4(240, 0, 0, 0, 4, "Reserved", "RFC 1112 §4"),
    v4(255, 255, 255, 255, 32, "Limited Broadcast", "RFC 8190, RFC 919 §7"),
];

/// The IPv6 global unicast space (IANA "IPv6 Address Space" registry, RFC 4291): everything
/// outside it — loopback, unspecified, unique-local, link-local, the deprecated site-local
/// fec0::/10 (RFC 3879), multicast, discard-only, dummy and the SRv6 SID block — is never a
/// public server, whether or not the special-purpose registry lists it.
const IPV6_GLOBAL_UNICAST: Block<u128> = v6(
    [0x2000, 0, 0, 0, 0, 0, 0, 0],
    3,
    "outside the IPv6 global unicast space 2000::/3",
    "RFC 4291",
);

/// IPv6 blocks that are not globally reachable. Those outside 2000::/3 are refused by that rule
/// already and listed for completeness; the transition forms that embed an IPv4 address
/// (::ffff:0:0/96, 64:ff9b::/96, 2002::/16, Teredo 2001::/32) are judged by that address first.
#[rustfmt::skip] // One line per registry entry, to read and review like the registry.
const IPV6_NOT_GLOBAL: &[Block<u128>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "Loopback Address", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "Unspecified Address", "RFC 4291"),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "IPv4-IPv6 Translation, local use", "RFC 8215"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "Discard-Only Address Block", "RFC 6666"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "Dummy IPv6 Prefix", "RFC 9780"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF Protocol Assignments", "RFC 2928"),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "Benchmarking", "RFC 5180"),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "Deprecated (previously ORCHID)", "RFC 4843"),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "Documentation", "RFC 3849"),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "Documentation", "RFC 9637"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "Segment Routing (SRv6) SIDs", "RFC 9602"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "Unique-Local (AWS metadata fd00:ec2::254)", "RFC 4193"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "Link-Local Unicast", "RFC 4291"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "Site-Local (deprecated)", "RFC 3879"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "Multicast", "RFC 4291"),
];

impl<T: Copy + Into<u128>> Block<T> {
    /// True when `ip` (an address of the same family, as bits) starts with this block's prefix.
    fn contains(&self, ip: T) -> bool {
        // Widening keeps the value, so the shift is by the family's own width (32 or 128).
        let address_bits = 8 * std::mem::size_of::<T>() as u32;
        // checked_shr: a /0 block (never in the table, but cheap to get right) holds everything.
        (ip.into() ^ self.network.into())
            .checked_shr(address_bits - self.prefix_len)
            .unwrap_or(0)
            == 0
    }
}

/// True for every address that is not globally routable: loopback, private, shared
/// (carrier-grade NAT), link-local (cloud metadata), documentation, benchmarking, reserved,
/// multicast, broadcast, unique-local and site-local IPv6, every IPv6 transition form
/// (IPv4-mapped, IPv4-compatible, SIIT, NAT64, 6to4, Teredo) of such an IPv4 address, and an
/// ISATAP address whose interface identifier carries one.
///
/// Used to keep an admin-settable upstream URL from reaching inside the network (SSRF): by the
/// specialists' base-URL policy for literal addresses and by the providers' resolver for names.
///
/// ```
/// use core_domain::is_internal_ip;
///
/// assert!(is_internal_ip("198.18.0.1".parse().unwrap()));
/// assert!(is_internal_ip("64:ff9b::7f00:1".parse().unwrap())); // NAT64 of 127.0.0.1
/// assert!(!is_internal_ip("2606:4700::1111".parse().unwrap()));
/// ```
pub fn is_internal_ip(ip: IpAddr) -> bool {
    special_purpose(ip).is_some()
}

/// The special-purpose block that keeps `ip` from being globally routable, or `None` for a
/// global address. For an IPv6 transition form it is the block of the IPv4 address carried.
///
/// ```
/// use core_domain::special_purpose;
///
/// let why = special_purpose("2002:c612::1".parse().unwrap());
/// assert_eq!(why.map(|p| p.name), Some("Benchmarking")); // 6to4 of 198.18.0.0
/// ```
pub fn special_purpose(ip: IpAddr) -> Option<SpecialPurpose> {
    match ip {
        IpAddr::V4(v4) => ipv4_special_purpose(v4),
        IpAddr::V6(v6) => ipv6_special_purpose(v6),
    }
}

fn ipv4_special_purpose(ip: Ipv4Addr) -> Option<SpecialPurpose> {
    let bits = ip.to_bits();
    IPV4_NOT_GLOBAL
        .iter()
        .find(|block| block.contains(bits))
        .map(|block| block.purpose)
}

fn ipv6_special_purpose(ip: Ipv6Addr) -> Option<SpecialPurpose> {
    let own = match carried_ipv4(ip) {
        Some(carried) => carried.into_iter().flatten().find_map(ipv4_special_purpose),
        None => {
            let bits = ip.to_bits();
            IPV6_NOT_GLOBAL
                .iter()
                .find(|block| block.contains(bits))
                .map(|block| block.purpose)
                .or_else(|| {
                    (!IPV6_GLOBAL_UNICAST.contains(bits)).then_some(IPV6_GLOBAL_UNICAST.purpose)
                })
        }
    };
    // An ISATAP address has a real IPv6 prefix of its own, so it must pass both: the prefix
    // decides where the packet is routed, and the IPv4 address where an ISATAP host on the
    // prefix's link tunnels it to.
    own.or_else(|| isatap_ipv4(ip).and_then(ipv4_special_purpose))
}

/// The IPv4 address in an ISATAP interface identifier (RFC 5214 §6.1): `0:5efe:a.b.c.d`, with
/// the universal/local and group bits of its first byte in any state (`200:5efe:a.b.c.d` is the
/// "globally unique IPv4" spelling; hosts have been seen to send the others), under any /64.
fn isatap_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    const UNIVERSAL_AND_GROUP_BITS: u16 = 0x0300;
    match ip.segments() {
        [.., marker, 0x5efe, _, _] if marker & !UNIVERSAL_AND_GROUP_BITS == 0 => {
            Some(Ipv4Addr::from_bits(ip.to_bits() as u32))
        }
        _ => None,
    }
}

/// The IPv4 addresses an IPv6 transition form carries (Teredo carries two: its server and its
/// client), or `None` for an address that carries none.
fn carried_ipv4(ip: Ipv6Addr) -> Option<[Option<Ipv4Addr>; 2]> {
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    let s = ip.segments();
    let one = |v4: Ipv4Addr| Some([Some(v4), None]);
    match s {
        // IPv4-compatible ::a.b.c.d (RFC 4291 §2.5.5.1, deprecated); this includes :: and ::1,
        // which carry 0.0.0.0 and 0.0.0.1 and so are refused either way.
        [0, 0, 0, 0, 0, 0, _, _] => one(low32),
        // IPv4-mapped ::ffff:a.b.c.d (RFC 4291 §2.5.5.2).
        [0, 0, 0, 0, 0, 0xffff, _, _] => one(low32),
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT, RFC 2765 §2.1).
        [0, 0, 0, 0, 0xffff, 0, _, _] => one(low32),
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052 §2.1).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => one(low32),
        // 6to4 2002:a.b.c.d::/48 (RFC 3056 §2).
        [0x2002, hi, lo, ..] => one(Ipv4Addr::from_bits((u32::from(hi) << 16) | u32::from(lo))),
        // Teredo 2001:0::/32 (RFC 4380 §4): the server's address in bits 32–63, the client's
        // public address in the last 32 bits with every bit inverted.
        [0x2001, 0, hi, lo, ..] => Some([
            Some(Ipv4Addr::from_bits((u32::from(hi) << 16) | u32::from(lo))),
            Some(Ipv4Addr::from_bits(!(bits as u32))),
        ]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal(text: &str) -> bool {
        is_internal_ip(text.parse().expect(text))
    }

    #[test]
    fn internal_and_public_addresses_are_told_apart() {
        for internal_ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(internal(internal_ip), "{internal_ip}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(!internal(public), "{public}");
        }
    }

    #[test]
    fn the_addresses_the_attack_got_through_are_refused() {
        for (address, why) in [
            ("::127.0.0.1", "IPv4-compatible loopback"),
            ("::ffff:0:7f00:1", "SIIT IPv4-translated loopback"),
            ("64:ff9b::7f00:1", "NAT64 of loopback"),
            ("2002:7f00:1::", "6to4 of loopback"),
            ("fec0::1", "site-local"),
            ("198.18.0.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
        ] {
            assert!(internal(address), "{address} ({why}) must be refused");
        }
    }

    #[test]
    fn every_special_purpose_block_is_refused_at_both_ends() {
        let v4 = IPV4_NOT_GLOBAL.iter().map(|block| {
            let last = block.network | u32::MAX.checked_shr(block.prefix_len).unwrap_or(0);
            let ends = [block.network, last].map(|bits| IpAddr::from(Ipv4Addr::from_bits(bits)));
            (block.purpose, ends)
        });
        let v6 = IPV6_NOT_GLOBAL.iter().map(|block| {
            let last = block.network | u128::MAX.checked_shr(block.prefix_len).unwrap_or(0);
            let ends = [block.network, last].map(|bits| IpAddr::from(Ipv6Addr::from_bits(bits)));
            (block.purpose, ends)
        });
        for (purpose, ends) in v4.chain(v6) {
            for ip in ends {
                assert!(is_internal_ip(ip), "{ip}: {}", purpose.name);
            }
        }
    }

    #[test]
    fn the_neighbours_of_refused_blocks_are_public() {
        for public in [
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "126.255.255.255",
            "128.0.0.0",
            "172.15.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:200::1",
            "2a00:1450:4001::200e",
            "3ffe::1",
        ] {
            assert!(!internal(public), "{public} is public");
        }
    }

    #[test]
    fn transition_forms_are_judged_by_the_ipv4_address_they_carry() {
        // Decision: a transition form of a public IPv4 address is as public as that address
        // (it reaches the same host); of an internal one, as internal.
        for public in [
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "::ffff:0:808:808",
            "64:ff9b::808:808",
            "2002:808:808::",
            "2002:808:808:1::1",
        ] {
            assert!(!internal(public), "{public} carries 8.8.8.8");
        }
        for inner in [
            "::ffff:169.254.169.254",
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.0.0.1",
            "2002:a9fe:a9fe::",
            "2002:c0a8:101::1",
            "64:ff9b:1::808:808", // local-use NAT64: refused whatever it carries
        ] {
            assert!(internal(inner), "{inner}");
        }
    }

    #[test]
    fn isatap_is_judged_by_its_prefix_and_the_ipv4_address_it_carries() {
        // A public prefix (Google's 2001:4860::/32) whose interface identifier names an
        // internal host: the ISATAP router on that link would tunnel to it.
        for inner in [
            "2001:4860:1:2:0:5efe:7f00:1", // loopback, "not globally unique" spelling
            "2001:4860:1:2:200:5efe:a9fe:a9fe", // metadata, universal bit set
            "2001:4860:1:2:100:5efe:a00:1", // private, group bit set
            "2001:4860:1:2:300:5efe:c0a8:101", // private, both bits set
            "2606:4700::5efe:10.1.2.3",    // written with the dotted tail
            "2002:808:808:1:200:5efe:c612:1", // under a public 6to4 prefix: benchmarking
        ] {
            assert!(internal(inner), "{inner}");
        }
        let why = special_purpose("2001:4860:1:2:200:5efe:a9fe:a9fe".parse().unwrap());
        assert_eq!(why.map(|p| p.rfc), Some("RFC 3927"));
        // Public on both counts.
        for public in [
            "2001:4860:1:2:200:5efe:808:808",
            "2001:4860:1:2:0:5efe:101:101",
            // Not ISATAP: other bits of the first byte set, or another marker.
            "2001:4860:1:2:400:5efe:7f00:1",
            "2001:4860:1:2:200:5eff:7f00:1",
        ] {
            assert!(!internal(public), "{public}");
        }
        // An internal prefix stays refused whatever it carries.
        assert!(internal("fe80::200:5efe:808:808"));
        assert!(internal("fd00::200:5efe:808:808"));
    }

    #[test]
    fn teredo_is_judged_by_its_server_and_its_obfuscated_client() {
        // Server 65.54.227.120, client 192.0.2.45 obfuscated (RFC 4380's own example).
        assert!(internal("2001:0:4136:e378:8000:63bf:3fff:fdd2"));
        // Public server, client 8.8.8.8 (obfuscated: f7f7:f7f7).
        assert!(!internal("2001:0:4136:e378::f7f7:f7f7"));
        // Client 127.0.0.1 (obfuscated: 80ff:fffe).
        assert!(internal("2001:0:4136:e378::80ff:fffe"));
        // Server in a private range.
        assert!(internal("2001:0:a00:1::f7f7:f7f7"));
    }
}
