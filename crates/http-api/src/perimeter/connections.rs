//! Open connections per client (an IPv4 address, an IPv6 /64), so one client cannot hold every socket the server has.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::client_ip::{Cidr, client_network};

/// How many connections each client holds open now (an IPv4 address, an IPv6 /64). Shared by every worker; an address
/// leaves the map when its last connection closes, so the map is bounded by open sockets.
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    /// Keyed by [`client_network`].
    open: DashMap<IpAddr, u32>,
    limit: u32,
    /// Proxies carry many clients over their connections: they are not counted.
    exempt: Vec<Cidr>,
}

impl ConnectionTable {
    pub(crate) fn new(limit: u32, exempt: Vec<Cidr>) -> Self {
        Self {
            open: DashMap::new(),
            limit,
            exempt,
        }
    }

    /// Counts a new connection from `peer` against its client network; `None` for an exempt peer. The slot lives as long
    /// as the connection (actix keeps it in the connection's extensions) and gives the
    /// connection back when dropped.
    pub(crate) fn open(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionSlot> {
        if self.exempt.iter().any(|cidr| cidr.contains(peer)) {
            return None;
        }
        let peer = client_network(peer);
        let mut count = self.open.entry(peer).or_insert(0);
        *count = count.saturating_add(1);
        let over_limit = *count > self.limit;
        drop(count);
        Some(ConnectionSlot {
            table: Arc::clone(self),
            peer,
            over_limit,
        })
    }

    #[cfg(test)]
    fn count(&self, peer: IpAddr) -> u32 {
        self.open.get(&client_network(peer)).map_or(0, |c| *c)
    }
}

/// One counted connection.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    table: Arc<ConnectionTable>,
    peer: IpAddr,
    over_limit: bool,
}

impl ConnectionSlot {
    /// True when the address already held its limit when this connection opened: its
    /// requests are refused and it is closed after the first answer.
    pub(crate) fn is_over_limit(&self) -> bool {
        self.over_limit
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Entry::Occupied(mut entry) = self.table.open.entry(self.peer) {
            let count = entry.get_mut();
            *count = count.saturating_sub(1);
            if *count == 0 {
                entry.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_beyond_the_limit_are_marked_and_closing_one_frees_a_place() {
        let table = Arc::new(ConnectionTable::new(2, Vec::new()));
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let first = table.open(peer).unwrap();
        let second = table.open("::ffff:203.0.113.9".parse().unwrap()).unwrap();
        let third = table.open(peer).unwrap();
        assert!(!first.is_over_limit() && !second.is_over_limit());
        assert!(third.is_over_limit(), "one address, however it is spelled");
        assert!(
            !table
                .open("198.51.100.1".parse().unwrap())
                .unwrap()
                .is_over_limit()
        );
        drop(third);
        drop(first);
        assert!(!table.open(peer).unwrap().is_over_limit());
        drop(second);
        assert_eq!(table.count(peer), 0, "the address leaves the table");
    }

    #[test]
    fn trusted_proxies_are_not_counted() {
        let table = Arc::new(ConnectionTable::new(1, vec!["10.0.0.0/8".parse().unwrap()]));
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(table.open(proxy).is_none());
        assert!(table.open(proxy).is_none());
        assert_eq!(table.count(proxy), 0);
    }

    #[test]
    fn one_ipv6_64_is_one_client() {
        let table = Arc::new(ConnectionTable::new(2, Vec::new()));
        let first = table.open("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let second = table.open("2001:db8:1:2::2".parse().unwrap()).unwrap();
        let third = table
            .open("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap())
            .unwrap();
        assert!(!first.is_over_limit() && !second.is_over_limit());
        assert!(third.is_over_limit(), "another address of the same /64");
        let neighbour = table.open("2001:db8:1:3::1".parse().unwrap()).unwrap();
        assert!(!neighbour.is_over_limit(), "the next /64 is another client");
        drop((first, second, third, neighbour));
        assert_eq!(table.count("2001:db8:1:2::1".parse().unwrap()), 0);
        assert!(table.open.is_empty(), "every network leaves the table");
    }
}
