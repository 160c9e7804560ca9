use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for addresses that reach the server itself, its private network or cloud metadata:
/// loopback, private (RFC 1918), carrier-grade NAT, link-local (169.254.0.0/16, where cloud
/// metadata services live), unique-local and link-local IPv6, unspecified and broadcast, and
/// IPv4-mapped forms of all of these.
///
/// Used to keep an admin-settable upstream URL from reaching inside the network (SSRF).
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_ipv4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_ipv4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7 (AWS metadata: fd00:ec2::254)
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xa9fe, 0xa9fe) // NAT64 of 169.254.169.254
        }
    }
}

fn is_internal_ipv4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64.0.0/10 (Alibaba metadata)
        || a == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_public_addresses_are_told_apart() {
        for internal in [
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
            assert!(is_internal_ip(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(!is_internal_ip(public.parse().unwrap()), "{public}");
        }
    }
}
