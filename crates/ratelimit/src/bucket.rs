use std::time::Duration;

/// A refused quota: capacity or window of zero, or a window too long to count in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// Capacity must be at least 1.
    #[error("rate limit capacity must be at least 1")]
    ZeroCapacity,
    /// The window must be at least 1 ns and at most about 584 years.
    #[error("rate limit window must be positive and shorter than 500 years")]
    BadWindow,
}

/// How much may be spent: `capacity` tokens, refilled evenly over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    capacity: u32,
    window_nanos: u64,
}

impl Quota {
    /// `capacity` tokens per `window`, refilled continuously (`capacity / window` per second).
    pub fn new(capacity: u32, window: Duration) -> Result<Self, QuotaError> {
        if capacity == 0 {
            return Err(QuotaError::ZeroCapacity);
        }
        let window_nanos = u64::try_from(window.as_nanos()).map_err(|_| QuotaError::BadWindow)?;
        if window_nanos == 0 {
            return Err(QuotaError::BadWindow);
        }
        Ok(Self {
            capacity,
            window_nanos,
        })
    }

    /// The most tokens the bucket holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The time over which `capacity` tokens are refilled.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos)
    }

    /// Credits in one token.
    fn credits_per_token(&self) -> u128 {
        u128::from(self.window_nanos)
    }

    /// Credits in a full bucket.
    fn full(&self) -> u128 {
        u128::from(self.capacity) * u128::from(self.window_nanos)
    }

    /// Nanoseconds for the bucket to regain `credits` (rounded up).
    fn time_to_refill(&self, credits: u128) -> Duration {
        let nanos = credits.div_ceil(u128::from(self.capacity));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The answer to one check: everything the rate-limit headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// True when the tokens were spent.
    pub allowed: bool,
    /// The bucket's capacity.
    pub limit: u32,
    /// Whole tokens left after this check.
    pub remaining: u32,
    /// How long until the bucket is full again.
    pub reset_after: Duration,
    /// When refused: how long until the asked-for tokens are there.
    pub retry_after: Option<Duration>,
}

/// One caller's bucket. Time is passed in (from a [`Clock`](crate::Clock)), never read, so the
/// arithmetic is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    quota: Quota,
    /// Credits in the bucket (one token = `window_nanos` credits), at `updated_at`.
    credits: u128,
    updated_at: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn full(quota: Quota, now: Duration) -> Self {
        Self {
            quota,
            credits: quota.full(),
            updated_at: now,
        }
    }

    /// Refills for the time since the last check, then spends `cost` tokens if they are all
    /// there. A refused check spends nothing. A time earlier than the last check counts as no
    /// time passing.
    pub fn try_spend(&mut self, cost: u32, now: Duration) -> Decision {
        self.refill(now);
        let needed = u128::from(cost) * self.quota.credits_per_token();
        let allowed = needed <= self.credits;
        if allowed {
            self.credits -= needed;
        }
        let retry_after = (!allowed).then(|| {
            if needed > self.quota.full() {
                // More than the bucket can ever hold: it will never be allowed.
                Duration::MAX
            } else {
                self.quota.time_to_refill(needed - self.credits)
            }
        });
        Decision {
            allowed,
            limit: self.quota.capacity,
            remaining: u32::try_from(self.credits / self.quota.credits_per_token())
                .unwrap_or(u32::MAX),
            reset_after: self.quota.time_to_refill(self.quota.full() - self.credits),
            retry_after,
        }
    }

    fn refill(&mut self, now: Duration) {
        if now <= self.updated_at {
            return;
        }
        let elapsed = (now - self.updated_at).as_nanos();
        let gained = elapsed.saturating_mul(u128::from(self.quota.capacity));
        self.credits = self.credits.saturating_add(gained).min(self.quota.full());
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn quota(capacity: u32, window: Duration) -> Quota {
        Quota::new(capacity, window).unwrap()
    }

    #[test]
    fn quota_refuses_zero_capacity_and_window() {
        assert_eq!(Quota::new(0, SECOND), Err(QuotaError::ZeroCapacity));
        assert_eq!(Quota::new(1, Duration::ZERO), Err(QuotaError::BadWindow));
        assert_eq!(Quota::new(1, Duration::MAX), Err(QuotaError::BadWindow));
    }

    #[test]
    fn full_bucket_allows_capacity_then_refuses() {
        let mut bucket = TokenBucket::full(quota(60, Duration::from_secs(3600)), Duration::ZERO);
        for left in (0..60).rev() {
            let d = bucket.try_spend(1, Duration::ZERO);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.limit, 60);
        }
        let refused = bucket.try_spend(1, Duration::ZERO);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // 60 per hour: one token per minute.
        assert_eq!(refused.retry_after, Some(Duration::from_secs(60)));
        assert_eq!(refused.reset_after, Duration::from_secs(3600));
    }

    #[test]
    fn refill_boundary_is_exact_to_the_nanosecond() {
        let mut bucket = TokenBucket::full(quota(1, SECOND), Duration::ZERO);
        assert!(bucket.try_spend(1, Duration::ZERO).allowed);
        let just_before = SECOND - Duration::from_nanos(1);
        let early = bucket.try_spend(1, just_before);
        assert!(!early.allowed);
        assert_eq!(early.retry_after, Some(Duration::from_nanos(1)));
        assert!(bucket.try_spend(1, SECOND).allowed);
    }

    #[test]
    fn refill_never_exceeds_capacity() {
        let mut bucket = TokenBucket::full(quota(3, SECOND), Duration::ZERO);
        let d = bucket.try_spend(0, Duration::from_secs(1_000_000));
        assert_eq!(d.remaining, 3);
        assert_eq!(d.reset_after, Duration::ZERO);
    }

    #[test]
    fn uneven_rates_do_not_drift() {
        // 3 per second is 333_333_333.33.. ns per token: after exactly 1 s, exactly 3 are back.
        let mut bucket = TokenBucket::full(quota(3, SECOND), Duration::ZERO);
        for _ in 0..3 {
            assert!(bucket.try_spend(1, Duration::ZERO).allowed);
        }
        let mut allowed = 0;
        for step in 1..=1000u64 {
            if bucket.try_spend(1, Duration::from_millis(step)).allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3);
    }

    #[test]
    fn refused_check_spends_nothing_and_cost_above_capacity_never_passes() {
        let mut bucket = TokenBucket::full(quota(5, SECOND), Duration::ZERO);
        let d = bucket.try_spend(6, Duration::ZERO);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::MAX));
        assert_eq!(d.remaining, 5);
        assert!(bucket.try_spend(5, Duration::ZERO).allowed);
    }

    #[test]
    fn time_going_backwards_counts_as_no_time() {
        let mut bucket = TokenBucket::full(quota(1, SECOND), Duration::from_secs(10));
        assert!(bucket.try_spend(1, Duration::from_secs(10)).allowed);
        assert!(!bucket.try_spend(1, Duration::from_secs(5)).allowed);
        assert!(bucket.try_spend(1, Duration::from_secs(11)).allowed);
    }
}
