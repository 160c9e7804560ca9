//! A fixed-capacity map that evicts its least recently used entry: a hash map into a slab of
//! nodes threaded on an intrusive doubly linked list (most recent at the head). Every operation
//! is O(1) and nothing allocates once the slab is full.
//!
//! Keys are 64-bit digests of the caller's key, computed by the limiter with a per-process
//! random seed: comparing and storing a `u64` avoids a pointer chase to the key's text on every
//! lookup (a cache miss per check when there are many callers). Two callers share a bucket only
//! if their digests collide, about one chance in 10⁹ even with 100,000 callers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const NIL: u32 = u32::MAX;

/// The digests are already uniformly distributed: hashing them again would be wasted work.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, digest: u64) {
        self.0 = digest;
    }
}

struct Node<V> {
    digest: u64,
    value: V,
    prev: u32,
    next: u32,
}

pub(crate) struct LruMap<V> {
    index: HashMap<u64, u32, BuildHasherDefault<DigestHasher>>,
    nodes: Vec<Node<V>>,
    head: u32,
    tail: u32,
    capacity: usize,
}

impl<V> LruMap<V> {
    /// A map holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        Self {
            index: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            nodes: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The value for `digest`, marked most recently used; when absent, `make()` is inserted
    /// first, evicting the least recently used entry if the map is full.
    pub(crate) fn get_or_insert_with(&mut self, digest: u64, make: impl FnOnce() -> V) -> &mut V {
        let slot = match self.index.get(&digest) {
            Some(&slot) => {
                if slot != self.head {
                    self.unlink(slot);
                    self.push_front(slot);
                }
                slot
            }
            None => {
                let slot = self.insert(digest, make());
                self.push_front(slot);
                slot
            }
        };
        &mut self.nodes[slot as usize].value
    }

    fn insert(&mut self, digest: u64, value: V) -> u32 {
        if self.nodes.len() < self.capacity {
            let slot = u32::try_from(self.nodes.len()).unwrap_or(NIL);
            self.nodes.push(Node {
                digest,
                value,
                prev: NIL,
                next: NIL,
            });
            self.index.insert(digest, slot);
            return slot;
        }
        // Full: reuse the least recently used node.
        let slot = self.tail;
        self.unlink(slot);
        let node = &mut self.nodes[slot as usize];
        let evicted = std::mem::replace(&mut node.digest, digest);
        node.value = value;
        self.index.remove(&evicted);
        self.index.insert(digest, slot);
        slot
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let node = &self.nodes[slot as usize];
            (node.prev, node.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let node = &mut self.nodes[slot as usize];
            node.prev = NIL;
            node.next = old_head;
        }
        match old_head {
            NIL => self.tail = slot,
            h => self.nodes[h as usize].prev = slot,
        }
        self.head = slot;
    }

    /// Digests from most to least recently used (for tests).
    #[cfg(test)]
    pub(crate) fn digests_by_recency(&self) -> Vec<u64> {
        let mut digests = Vec::with_capacity(self.nodes.len());
        let mut at = self.head;
        while at != NIL {
            let node = &self.nodes[at as usize];
            digests.push(node.digest);
            at = node.next;
        }
        digests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut map = LruMap::new(3);
        for key in [1, 2, 3] {
            *map.get_or_insert_with(key, || 0) += 1;
        }
        assert_eq!(map.digests_by_recency(), [3, 2, 1]);
        // Touching 1 makes 2 the oldest.
        *map.get_or_insert_with(1, || 0) += 1;
        assert_eq!(map.digests_by_recency(), [1, 3, 2]);
        *map.get_or_insert_with(4, || 0) += 1;
        assert_eq!(map.digests_by_recency(), [4, 1, 3]);
        assert_eq!(map.len(), 3);
        // 2 was evicted: it comes back fresh.
        assert_eq!(*map.get_or_insert_with(2, || 100), 100);
        assert_eq!(*map.get_or_insert_with(1, || 100), 2);
    }

    #[test]
    fn a_single_slot_map_always_holds_the_last_key() {
        let mut map = LruMap::new(1);
        map.get_or_insert_with(7, || 1);
        map.get_or_insert_with(8, || 2);
        assert_eq!(map.digests_by_recency(), [8]);
        assert_eq!(*map.get_or_insert_with(8, || 3), 2);
    }

    #[test]
    fn heavy_churn_keeps_index_and_list_consistent() {
        let mut map = LruMap::new(16);
        for i in 0..10_000u64 {
            map.get_or_insert_with((i * 7919) % 37, || i);
            assert!(map.len() <= 16);
            assert_eq!(map.index.len(), map.len());
        }
        let digests = map.digests_by_recency();
        assert_eq!(digests.len(), 16);
        for digest in digests {
            assert!(map.index.contains_key(&digest));
        }
    }
}
