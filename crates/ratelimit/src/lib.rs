//! Rate limiting by token bucket, with time injected so the arithmetic can be tested exactly.
//!
//! This crate owns the [`RateLimiter`] (a bucket per caller key, sharded, least-recently-used
//! eviction past a bound, no global lock), the bucket arithmetic ([`TokenBucket`]: refill, spend, and the [`Decision`]
//! that carries everything a caller needs to answer — allowed or not, limit, remaining, when it
//! is full again, when to retry), the [`Quota`] it enforces, and the [`Clock`] it reads.
//!
//! It must not depend on HTTP, async runtimes or any other commander crate: it is usable on its
//! own by any Rust service.
//!
//! # Using it alone
//!
//! Make one [`RateLimiter`] per quota, share it (it is `Sync`), and call
//! [`RateLimiter::check`] with the caller's key before each unit of work; the [`Decision`] says
//! whether to proceed and carries what the `X-RateLimit-*` and `Retry-After` headers need. The
//! runnable example guards a loop and prints those headers:
//! `cargo run -p ratelimit --example guard_loop`. The workspace's crates are not published: depend on this one by path (or git), e.g.
//! `ratelimit = { path = "../commander/crates/ratelimit" }`.
//!
//! Amounts are exact integers: one token is `window` nanoseconds' worth of "credit", and the
//! bucket refills `capacity` credits per nanosecond, so `capacity` tokens come back per
//! `window` with no rounding drift, however the checks are spaced. The bucket alone, with a
//! [`ManualClock`] for time:
//!
//! ```
//! use std::time::Duration;
//! use ratelimit::{Clock, ManualClock, Quota, TokenBucket};
//!
//! let clock = ManualClock::default();
//! let quota = Quota::new(2, Duration::from_secs(60)).unwrap(); // 2 per minute
//! let mut bucket = TokenBucket::full(quota, clock.now());
//! assert!(bucket.try_spend(1, clock.now()).allowed);
//! assert!(bucket.try_spend(1, clock.now()).allowed);
//! let refused = bucket.try_spend(1, clock.now());
//! assert!(!refused.allowed);
//! assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
//! clock.advance(Duration::from_secs(30));
//! assert!(bucket.try_spend(1, clock.now()).allowed);
//! ```
#![warn(missing_docs)]

mod bucket;
mod clock;
mod limiter;
mod lru;

pub use bucket::{Decision, Quota, QuotaError, TokenBucket};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use limiter::{MIN_BUCKETS_PER_SHARD, RateLimiter};
