use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

use crate::lru::LruMap;
use crate::{Clock, Decision, MonotonicClock, Quota, TokenBucket};

/// The fewest buckets a shard holds (unless the whole limiter holds fewer): below this,
/// per-shard LRU would evict callers much earlier than a global LRU would.
pub const MIN_BUCKETS_PER_SHARD: usize = 8;

/// A shard padded to its own cache lines, so that threads working on different shards never
/// contend for the same line.
#[repr(align(128))]
struct Shard(Mutex<LruMap<TokenBucket>>);

/// A token bucket per caller, for any number of callers, in bounded memory.
///
/// Buckets live in `shards` independent shards (a key's shard is chosen by its hash), each a
/// mutex-guarded least-recently-used map, so checks on different keys rarely touch the same
/// lock and there is no global one. At most `max_buckets` buckets exist: when a shard is full,
/// its least recently used bucket is evicted.
///
/// **Trade-off:** an evicted caller starts again with a full bucket. Eviction only reaches
/// callers idle longer than every other caller in their shard, so a caller would have to go
/// quiet for a long while and be replaced by many new callers to benefit; bounding memory
/// against a flood of one-off keys (spoofed IPs) is worth that.
///
/// ```
/// use std::time::Duration;
/// use ratelimit::{Quota, RateLimiter};
///
/// let limiter = RateLimiter::new(Quota::new(60, Duration::from_secs(3600)).unwrap(), 10_000);
/// let decision = limiter.check("user:ada", 1);
/// assert!(decision.allowed);
/// assert_eq!((decision.limit, decision.remaining), (60, 59));
/// assert_eq!(limiter.check("user:grace", 1).remaining, 59, "callers are independent");
/// ```
pub struct RateLimiter<C = MonotonicClock> {
    quota: Quota,
    shards: Box<[Shard]>,
    shard_mask: u64,
    /// Digests keys with a per-process random seed, so callers cannot pick colliding keys.
    hasher: foldhash::quality::RandomState,
    clock: C,
}

impl RateLimiter<MonotonicClock> {
    /// A limiter enforcing `quota` per key for at most `max_buckets` keys.
    ///
    /// Shards: 512 per core, so that threads checking different callers rarely share a shard
    /// (measured on 2 cores: 128 shards gave no scaling from a second thread, 1,024 gave 1.8×),
    /// but never fewer than 8 buckets a shard.
    pub fn new(quota: Quota, max_buckets: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        Self::with_clock(quota, max_buckets, cores * 512, MonotonicClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter reading time from `clock`, with at most `shards` shards (a power of two), and
    /// fewer when needed for each shard to hold [`MIN_BUCKETS_PER_SHARD`] buckets.
    ///
    /// Eviction is least-recently-used within a shard, and each shard needs no coordination
    /// with the others. With keys spread evenly by hash, an idle caller is evicted after
    /// `max_buckets` newer callers *on average*, as under one global LRU list, but the spread
    /// is wider: with few buckets per shard (about 10 with the defaults on 2 cores) some
    /// callers go after a third fewer newcomers and others after a third more.
    pub fn with_clock(quota: Quota, max_buckets: usize, shards: usize, clock: C) -> Self {
        let max_buckets = max_buckets.max(1);
        let mut count = shards.clamp(1, 1 << 16).next_power_of_two();
        while count > 1 && max_buckets / count < MIN_BUCKETS_PER_SHARD {
            count /= 2;
        }
        // The remainder goes one each to the first shards, so the shards hold exactly
        // `max_buckets` between them.
        let (per_shard, remainder) = (max_buckets / count, max_buckets % count);
        let shards = (0..count)
            .map(|i| {
                Shard(Mutex::new(LruMap::new(
                    per_shard + usize::from(i < remainder),
                )))
            })
            .collect();
        Self {
            quota,
            shards,
            shard_mask: count as u64 - 1,
            hasher: foldhash::quality::RandomState::default(),
            clock,
        }
    }

    /// Spends `cost` tokens from `key`'s bucket if it has them, creating a full bucket for a
    /// key not seen (or evicted) before.
    pub fn check(&self, key: &str, cost: u32) -> Decision {
        let digest = self.hasher.hash_one(key);
        // The low bits pick the shard; the map uses the whole digest.
        let index = (digest & self.shard_mask) as usize;
        let now = self.clock.now();
        // A panic while holding a shard cannot leave a bucket half-updated (updates are plain
        // field writes after the arithmetic), so a poisoned lock is still usable.
        let mut shard = self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get_or_insert_with(digest, || TokenBucket::full(self.quota, now))
            .try_spend(cost, now)
    }

    /// The quota every key gets.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// How many buckets exist now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// True when no key has been seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The keys among `candidates` that shard `shard` holds, most recently used first.
    #[cfg(test)]
    fn keys_by_recency<'k>(&self, shard: usize, candidates: &[&'k str]) -> Vec<&'k str> {
        let guard = self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard
            .digests_by_recency()
            .into_iter()
            .filter_map(|d| {
                candidates
                    .iter()
                    .copied()
                    .find(|k| self.hasher.hash_one(k) == d)
            })
            .collect()
    }
}

impl<C> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.quota)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::ManualClock;

    fn limiter(
        capacity: u32,
        window: Duration,
        max_buckets: usize,
        shards: usize,
    ) -> RateLimiter<Arc<ManualClock>> {
        RateLimiter::with_clock(
            Quota::new(capacity, window).unwrap(),
            max_buckets,
            shards,
            Arc::new(ManualClock::default()),
        )
    }

    #[test]
    fn keys_are_isolated() {
        let l = limiter(2, Duration::from_secs(60), 100, 4);
        assert!(l.check("a", 1).allowed);
        assert!(l.check("a", 1).allowed);
        assert!(!l.check("a", 1).allowed);
        let b = l.check("b", 1);
        assert!(b.allowed);
        assert_eq!(b.remaining, 1);
    }

    #[test]
    fn refill_follows_the_injected_clock() {
        let l = limiter(60, Duration::from_secs(3600), 100, 1);
        for _ in 0..60 {
            assert!(l.check("k", 1).allowed);
        }
        let refused = l.check("k", 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(60)));
        l.clock.advance(Duration::from_secs(59));
        assert!(!l.check("k", 1).allowed);
        l.clock.advance(Duration::from_secs(1));
        let allowed = l.check("k", 1);
        assert!(allowed.allowed);
        assert_eq!(allowed.remaining, 0);
        assert_eq!(allowed.reset_after, Duration::from_secs(3600));
    }

    #[test]
    fn eviction_removes_the_least_recently_used_and_it_returns_full() {
        let l = limiter(3, Duration::from_secs(3600), 3, 1);
        for key in ["a", "b", "c"] {
            l.check(key, 3);
        }
        l.check("a", 0); // "a" is now the most recent; "b" the least.
        let all = ["a", "b", "c", "d"];
        assert_eq!(l.keys_by_recency(0, &all), ["a", "c", "b"]);
        l.check("d", 1);
        assert_eq!(l.keys_by_recency(0, &all), ["d", "a", "c"]);
        assert_eq!(l.len(), 3);
        // The survivors kept their state; the evicted caller starts again with a full bucket
        // (evicting the now least recent, "c").
        assert!(!l.check("a", 1).allowed);
        assert_eq!(l.check("b", 1).remaining, 2);
        assert_eq!(l.keys_by_recency(0, &all), ["b", "a", "d"]);
    }

    #[test]
    fn never_more_buckets_than_the_bound() {
        let l = limiter(1, Duration::from_secs(1), 100, 8);
        for i in 0..10_000 {
            l.check(&format!("ip:{i}"), 1);
        }
        assert_eq!(l.len(), 100, "full, and never more than the bound");
        // A bound that does not divide evenly among the shards is still the exact total.
        let uneven = limiter(1, Duration::from_secs(1), 10_000, 1024);
        for i in 0..200_000 {
            uneven.check(&format!("ip:{i}"), 1);
        }
        assert_eq!(uneven.len(), 10_000);
        assert_eq!(l.shard_count(), 8);
        // More shards asked for than the buckets fill: shards shrink so each holds eight.
        assert_eq!(limiter(1, Duration::from_secs(1), 3, 64).shard_count(), 1);
        assert_eq!(
            limiter(1, Duration::from_secs(1), 10_000, 4096).shard_count(),
            1024
        );
    }

    #[test]
    fn eight_threads_on_one_key_get_exactly_capacity_plus_refills() {
        let l = Arc::new(limiter(1000, Duration::from_secs(1000), 10, 4));
        let hammer = |l: &Arc<RateLimiter<Arc<ManualClock>>>| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let l = Arc::clone(l);
                    std::thread::spawn(move || {
                        (0..500).filter(|_| l.check("hot", 1).allowed).count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        };
        // 8 × 500 = 4000 attempts against a full bucket of 1000.
        assert_eq!(hammer(&l), 1000);
        // 250 s at one token a second refills exactly 250.
        l.clock.advance(Duration::from_secs(250));
        assert_eq!(hammer(&l), 250);
    }

    #[test]
    fn refills_while_eight_threads_contend_are_each_spent_exactly_once() {
        use std::sync::Barrier;
        use std::sync::atomic::{AtomicBool, Ordering};

        use std::sync::atomic::AtomicUsize;

        let l = Arc::new(limiter(1000, Duration::from_secs(1000), 10, 4));
        while l.check("hot", 1).allowed {}
        let start = Arc::new(Barrier::new(9));
        let stop = Arc::new(AtomicBool::new(false));
        let allowed = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, start, stop, allowed) = (
                    Arc::clone(&l),
                    Arc::clone(&start),
                    Arc::clone(&stop),
                    Arc::clone(&allowed),
                );
                std::thread::spawn(move || {
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        if l.check("hot", 1).allowed {
                            allowed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        start.wait();
        // 250 refills of one token, landing while the threads are checking.
        for _ in 0..250 {
            l.clock.advance(Duration::from_secs(1));
            std::thread::sleep(Duration::from_micros(200));
        }
        // Every refilled token is taken (bounded wait), and then no more are.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while allowed.load(Ordering::SeqCst) < 250 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(allowed.load(Ordering::SeqCst), 250);
        assert!(!l.check("hot", 1).allowed, "nothing left over");
    }

    proptest! {
        #[test]
        fn allowed_never_exceeds_capacity_plus_refill(
            steps in proptest::collection::vec((0u64..5_000, 0u32..4), 1..200)
        ) {
            let l = limiter(10, Duration::from_secs(10), 4, 1);
            let mut allowed: u64 = 0;
            let mut elapsed_ms: u64 = 0;
            for (advance_ms, cost) in steps {
                l.clock.advance(Duration::from_millis(advance_ms));
                elapsed_ms += advance_ms;
                if l.check("p", cost).allowed {
                    allowed += u64::from(cost);
                }
                // One token per second refills; the bucket starts full with 10.
                prop_assert!(allowed <= 10 + elapsed_ms / 1000);
            }
        }
    }
}
