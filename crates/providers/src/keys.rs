//! The keys of one endpoint: which one the next request sends, which are resting after a 429
//! or a refusal, and the circuit breaker of each.
//!
//! Every call picks a key here, so the state is per key behind a small lock of its own (held
//! for a few comparisons, never across an await) and the round-robin start is one atomic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use core_domain::ProviderKind;
use secrecy::SecretString;

use crate::ProviderError;
use crate::upstream_error::MAX_RETRY_AFTER;

/// How long a caller is told to wait while a half-open circuit's probe is still out (its end
/// is not known).
const PROBE_OUT_WAIT: Duration = Duration::from_secs(1);

/// The state of one key's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests go through.
    Closed,
    /// Too many consecutive failures: no request goes through until the open time is over.
    Open,
    /// The open time is over: one probe request goes through; its outcome closes or re-opens.
    HalfOpen,
}

impl BreakerState {
    /// The lower-case name used in `/ready` and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The metric value: 0 closed, 1 half-open, 2 open.
    pub const fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// How one key of one endpoint is doing, for `/ready` and metrics. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHealth {
    /// The provider.
    pub provider: ProviderKind,
    /// The endpoint's base URL.
    pub endpoint: String,
    /// The key's label: its position in the endpoint's merged key list, e.g.
    /// `providers.openai.keys[1]`, or `none` for a keyless endpoint.
    pub key: String,
    /// How much longer the key rests after a 429 or a refusal, if it does.
    pub cooling_for: Option<Duration>,
    /// Its circuit breaker.
    pub breaker: BreakerState,
    /// Failures in a row since the last success.
    pub consecutive_failures: u32,
    /// How many times the key was set to rest since the start.
    pub cooldowns_total: u64,
    /// How many times its circuit opened since the start.
    pub breaker_opened_total: u64,
}

/// How long keys rest and when their circuits open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolPolicy {
    /// Rest after a 401/403, or a 429 without `Retry-After`.
    pub cooldown: Duration,
    /// Consecutive failures that open a circuit; 0 never opens one.
    pub breaker_failures: u32,
    /// How long an open circuit stays open before its probe.
    pub breaker_open: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_out: bool },
}

#[derive(Debug)]
struct KeyState {
    cooling_until: Option<Instant>,
    consecutive_failures: u32,
    breaker: Breaker,
}

#[derive(Debug)]
struct Slot {
    key: Option<SecretString>,
    label: String,
    state: Mutex<KeyState>,
    cooldowns: AtomicU64,
    breaker_opened: AtomicU64,
}

/// The keys of one endpoint (one provider at one base URL), tried in turn.
#[derive(Debug)]
pub(crate) struct KeyPool {
    provider: ProviderKind,
    /// What the keys are configured under (`providers.anthropic`), for errors.
    name: String,
    endpoint: String,
    slots: Vec<Slot>,
    next: AtomicUsize,
    policy: PoolPolicy,
}

/// Why no key of a pool can take a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoUsableKey {
    /// When the first key is expected to be usable again.
    pub retry_after: Duration,
}

/// The right to send one request with one key; records how it went. Dropped without an
/// outcome, it gives back a half-open probe without counting anything.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    pool: &'a KeyPool,
    index: usize,
    probe: bool,
}

impl KeyPool {
    /// A pool over `keys` (merged list order; duplicates are dropped here), or over one
    /// keyless entry when `keys` is empty. `name` is the config prefix of the labels.
    pub(crate) fn new(
        provider: ProviderKind,
        name: &str,
        endpoint: &str,
        keys: Vec<SecretString>,
        policy: PoolPolicy,
    ) -> Self {
        use secrecy::ExposeSecret;
        let mut unique: Vec<SecretString> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique
                .iter()
                .any(|k| k.expose_secret() == key.expose_secret())
            {
                unique.push(key);
            }
        }
        let slot = |key: Option<SecretString>, label: String| Slot {
            key,
            label,
            state: Mutex::new(KeyState {
                cooling_until: None,
                consecutive_failures: 0,
                breaker: Breaker::Closed,
            }),
            cooldowns: AtomicU64::new(0),
            breaker_opened: AtomicU64::new(0),
        };
        let slots = if unique.is_empty() {
            vec![slot(None, "none".to_owned())]
        } else {
            unique
                .into_iter()
                .enumerate()
                .map(|(i, key)| slot(Some(key), format!("{name}.keys[{i}]")))
                .collect()
        };
        Self {
            provider,
            name: name.to_owned(),
            endpoint: endpoint.to_owned(),
            slots,
            next: AtomicUsize::new(0),
            policy,
        }
    }

    /// The endpoint's base URL.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many keys (1 for a keyless endpoint).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the pool has real keys (not the one keyless entry).
    pub(crate) fn has_keys(&self) -> bool {
        self.slots.iter().any(|s| s.key.is_some())
    }

    /// Every key, for redaction.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &SecretString> {
        self.slots.iter().filter_map(|s| s.key.as_ref())
    }

    /// A lease on the next usable key, round-robin: one that is not resting and whose circuit
    /// lets a request through (taking the probe of a half-open one).
    pub(crate) fn pick(&self, now: Instant) -> Result<Lease<'_>, NoUsableKey> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..n {
            let index = start.wrapping_add(offset) % n;
            if let Some(probe) = self.take(index, now) {
                return Ok(Lease {
                    pool: self,
                    index,
                    probe,
                });
            }
        }
        Err(self.unusable(now))
    }

    /// A lease on key `index` whatever its rest or circuit: a call's own retry of the key it
    /// just used, when no other key is usable (what a single key always did).
    pub(crate) fn again(&self, index: usize) -> Lease<'_> {
        Lease {
            pool: self,
            index: index.min(self.slots.len().saturating_sub(1)),
            probe: false,
        }
    }

    /// `Err` when no key could take a request now; takes nothing.
    pub(crate) fn available(&self, now: Instant) -> Result<(), NoUsableKey> {
        let usable = (0..self.slots.len()).any(|i| {
            let state = self.lock(i);
            Self::wait_of(&state, now).is_none()
        });
        if usable {
            Ok(())
        } else {
            Err(self.unusable(now))
        }
    }

    /// [`ProviderError::Unavailable`] when no key could take a request now; takes nothing.
    pub(crate) fn check_available(&self) -> Result<(), ProviderError> {
        self.available(Instant::now())
            .map_err(|none| self.unavailable(&none))
    }

    /// [`ProviderError::Unavailable`] for `none`.
    pub(crate) fn unavailable(&self, none: &NoUsableKey) -> ProviderError {
        let reason = if self.has_keys() {
            format!(
                "every key of {} is cooling down or its circuit is open",
                self.name
            )
        } else {
            format!("the circuit of {} is open", self.endpoint)
        };
        ProviderError::Unavailable {
            provider: self.provider,
            retry_after: none.retry_after,
            reason,
        }
    }

    /// How every key is doing.
    pub(crate) fn health(&self, now: Instant) -> Vec<KeyHealth> {
        self.slots
            .iter()
            .map(|slot| {
                let state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
                let breaker = match state.breaker {
                    Breaker::Closed => BreakerState::Closed,
                    Breaker::Open { until } if until > now => BreakerState::Open,
                    Breaker::Open { .. } | Breaker::HalfOpen { .. } => BreakerState::HalfOpen,
                };
                KeyHealth {
                    provider: self.provider,
                    endpoint: self.endpoint.clone(),
                    key: slot.label.clone(),
                    cooling_for: state
                        .cooling_until
                        .filter(|until| *until > now)
                        .map(|until| until - now),
                    breaker,
                    consecutive_failures: state.consecutive_failures,
                    cooldowns_total: slot.cooldowns.load(Ordering::Relaxed),
                    breaker_opened_total: slot.breaker_opened.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, KeyState> {
        // The state is a few plain values, consistent after any single assignment: a panic
        // elsewhere while it was held leaves nothing half-written worth refusing.
        self.slots[index]
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes key `index` for a request if it can take one: `Some(is_probe)`.
    fn take(&self, index: usize, now: Instant) -> Option<bool> {
        let mut state = self.lock(index);
        if state.cooling_until.is_some_and(|until| until > now) {
            return None;
        }
        match state.breaker {
            Breaker::Closed => Some(false),
            Breaker::Open { until } if until > now => None,
            Breaker::Open { .. } | Breaker::HalfOpen { probe_out: false } => {
                state.breaker = Breaker::HalfOpen { probe_out: true };
                Some(true)
            }
            Breaker::HalfOpen { probe_out: true } => None,
        }
    }

    /// How long until a key in `state` can take a request (`None`: now).
    fn wait_of(state: &KeyState, now: Instant) -> Option<Duration> {
        let cooling = state
            .cooling_until
            .filter(|until| *until > now)
            .map(|until| until - now);
        let breaker = match state.breaker {
            Breaker::Closed | Breaker::HalfOpen { probe_out: false } => None,
            Breaker::Open { until } => (until > now).then(|| until - now),
            Breaker::HalfOpen { probe_out: true } => Some(PROBE_OUT_WAIT),
        };
        match (cooling, breaker) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default().max(b.unwrap_or_default())),
        }
    }

    fn unusable(&self, now: Instant) -> NoUsableKey {
        let retry_after = (0..self.slots.len())
            .filter_map(|i| Self::wait_of(&self.lock(i), now))
            .min()
            .unwrap_or_default();
        NoUsableKey { retry_after }
    }

    /// Sets key `index` to rest for `wait`. A pool of one key never rests it: with no other
    /// key to move to, each call meets the upstream's own 429 or refusal (and its
    /// `Retry-After`), exactly as a single key always did; only its circuit breaker guards it.
    fn rest(&self, index: usize, state: &mut KeyState, now: Instant, wait: Duration) {
        if self.slots.len() == 1 {
            return;
        }
        state.cooling_until = now.checked_add(wait.min(MAX_RETRY_AFTER));
        self.slots[index].cooldowns.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, index: usize, state: &mut KeyState, now: Instant, probe: bool) {
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let threshold = self.policy.breaker_failures;
        let opens = match state.breaker {
            _ if threshold == 0 => false,
            Breaker::HalfOpen { .. } => probe,
            Breaker::Closed => state.consecutive_failures >= threshold,
            Breaker::Open { .. } => false,
        };
        if opens {
            state.breaker = Breaker::Open {
                until: now.checked_add(self.policy.breaker_open).unwrap_or(now),
            };
            self.slots[index]
                .breaker_opened
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                provider = %self.provider,
                endpoint = %self.endpoint,
                key = %self.slots[index].label,
                "circuit opened after consecutive upstream failures"
            );
        }
    }
}

impl Lease<'_> {
    /// The key to send (`None` for a keyless endpoint).
    pub(crate) fn key(&self) -> Option<&SecretString> {
        self.pool.slots[self.index].key.as_ref()
    }

    /// Which key of the pool this is.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The upstream answered with success: the failure count starts over, the circuit closes.
    pub(crate) fn succeeded(mut self) {
        let mut state = self.pool.lock(self.index);
        state.consecutive_failures = 0;
        state.breaker = Breaker::Closed;
        self.probe = false;
    }

    /// A 429: the key rests for `retry_after` (capped at a day), or the pool's cooldown when
    /// the upstream did not say. Not a failure of the circuit.
    pub(crate) fn rate_limited(mut self, retry_after: Option<Duration>, now: Instant) {
        let mut state = self.pool.lock(self.index);
        let wait = retry_after.unwrap_or(self.pool.policy.cooldown);
        self.pool.rest(self.index, &mut state, now, wait);
        if self.probe {
            state.breaker = Breaker::HalfOpen { probe_out: false };
            self.probe = false;
        }
    }

    /// A 401/403: the key rests for the pool's cooldown, and it counts as a failure.
    pub(crate) fn auth_failed(mut self, now: Instant) {
        let mut state = self.pool.lock(self.index);
        let cooldown = self.pool.policy.cooldown;
        self.pool.rest(self.index, &mut state, now, cooldown);
        self.pool.fail(self.index, &mut state, now, self.probe);
        self.probe = false;
    }

    /// No answer, a timeout, a 5xx: a failure of the circuit.
    pub(crate) fn failed(mut self, now: Instant) {
        let mut state = self.pool.lock(self.index);
        self.pool.fail(self.index, &mut state, now, self.probe);
        self.probe = false;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.probe {
            let mut state = self.pool.lock(self.index);
            if state.breaker == (Breaker::HalfOpen { probe_out: true }) {
                state.breaker = Breaker::HalfOpen { probe_out: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn pool(keys: &[&str], breaker_failures: u32) -> KeyPool {
        KeyPool::new(
            ProviderKind::Anthropic,
            "providers.anthropic",
            "http://127.0.0.1:1",
            keys.iter().map(|k| SecretString::from(*k)).collect(),
            PoolPolicy {
                cooldown: Duration::from_secs(60),
                breaker_failures,
                breaker_open: Duration::from_secs(30),
            },
        )
    }

    fn key_of(lease: &Lease<'_>) -> String {
        lease
            .key()
            .map_or("-".into(), |k| k.expose_secret().to_owned())
    }

    #[test]
    fn keys_are_taken_in_turn_and_duplicates_dropped() {
        let pool = pool(&["a", "b", "a", "c"], 5);
        assert_eq!(pool.len(), 3);
        let now = Instant::now();
        let picked: Vec<String> = (0..6).map(|_| key_of(&pool.pick(now).unwrap())).collect();
        assert_eq!(picked, ["a", "b", "c", "a", "b", "c"]);
        let labels: Vec<String> = pool.health(now).into_iter().map(|h| h.key).collect();
        assert_eq!(
            labels,
            [
                "providers.anthropic.keys[0]",
                "providers.anthropic.keys[1]",
                "providers.anthropic.keys[2]"
            ]
        );
    }

    #[test]
    fn a_rate_limited_key_rests_for_retry_after_then_comes_back() {
        let pool = pool(&["a", "b"], 5);
        let now = Instant::now();
        let lease = pool.pick(now).unwrap();
        assert_eq!(key_of(&lease), "a");
        lease.rate_limited(Some(Duration::from_secs(5)), now);
        for _ in 0..3 {
            assert_eq!(key_of(&pool.pick(now).unwrap()), "b");
        }
        let later = now + Duration::from_secs(5);
        let picked: Vec<String> = (0..2).map(|_| key_of(&pool.pick(later).unwrap())).collect();
        assert!(picked.contains(&"a".to_owned()), "{picked:?}");
        let health = pool.health(now);
        assert_eq!(health[0].cooling_for, Some(Duration::from_secs(5)));
        assert_eq!(health[0].cooldowns_total, 1);
        assert_eq!(health[0].breaker, BreakerState::Closed);
    }

    #[test]
    fn all_keys_resting_says_when_the_first_comes_back() {
        let pool = pool(&["a", "b"], 5);
        let now = Instant::now();
        pool.pick(now)
            .unwrap()
            .rate_limited(Some(Duration::from_secs(9)), now);
        pool.pick(now).unwrap().auth_failed(now);
        assert_eq!(
            pool.pick(now).unwrap_err().retry_after,
            Duration::from_secs(9)
        );
        assert!(pool.available(now).is_err());
        let error = pool.unavailable(&pool.pick(now).unwrap_err());
        let text = error.to_string();
        assert!(text.contains("providers.anthropic"), "{text}");
        assert!(!text.contains("\"a\""), "{text}");
        // A Retry-After longer than a day rests a day.
        pool.pick(now + Duration::from_secs(61))
            .unwrap()
            .rate_limited(Some(Duration::from_secs(10 * 24 * 3600)), now);
        assert_eq!(
            pool.health(now)[0].cooling_for,
            Some(Duration::from_secs(24 * 3600))
        );
    }

    #[test]
    fn the_breaker_opens_after_n_failures_probes_once_and_closes_on_success() {
        let pool = pool(&["a"], 3);
        let now = Instant::now();
        for _ in 0..2 {
            pool.pick(now).unwrap().failed(now);
        }
        pool.pick(now).unwrap().succeeded();
        assert_eq!(pool.health(now)[0].consecutive_failures, 0);
        for _ in 0..3 {
            pool.pick(now).unwrap().failed(now);
        }
        assert_eq!(pool.health(now)[0].breaker, BreakerState::Open);
        assert_eq!(
            pool.pick(now).unwrap_err().retry_after,
            Duration::from_secs(30)
        );
        let half = now + Duration::from_secs(30);
        assert_eq!(pool.health(half)[0].breaker, BreakerState::HalfOpen);
        let probe = pool.pick(half).unwrap();
        assert!(pool.pick(half).is_err(), "only one probe at a time");
        assert!(pool.available(half).is_err());
        probe.failed(half);
        assert_eq!(pool.health(half)[0].breaker, BreakerState::Open);
        assert_eq!(pool.health(half)[0].breaker_opened_total, 2);
        let again = half + Duration::from_secs(30);
        let probe = pool.pick(again).unwrap();
        drop(probe);
        // A probe given back without an outcome lets the next caller probe.
        let probe = pool.pick(again).unwrap();
        probe.succeeded();
        assert_eq!(pool.health(again)[0].breaker, BreakerState::Closed);
        assert!(pool.pick(again).is_ok() && pool.pick(again).is_ok());
    }

    #[test]
    fn a_single_key_never_rests_but_its_breaker_still_opens() {
        let pool = pool(&["a"], 2);
        let now = Instant::now();
        pool.pick(now)
            .unwrap()
            .rate_limited(Some(Duration::from_secs(60)), now);
        pool.pick(now).unwrap().auth_failed(now);
        assert_eq!(pool.health(now)[0].cooling_for, None);
        assert_eq!(pool.health(now)[0].cooldowns_total, 0);
        pool.pick(now).unwrap().failed(now);
        assert_eq!(pool.health(now)[0].breaker, BreakerState::Open);
        assert!(pool.pick(now).is_err());
    }

    #[test]
    fn rate_limits_are_no_breaker_failures_and_zero_never_opens() {
        let pool = pool(&["a"], 1);
        let now = Instant::now();
        pool.pick(now)
            .unwrap()
            .rate_limited(Some(Duration::ZERO), now);
        assert_eq!(pool.health(now)[0].breaker, BreakerState::Closed);
        let never = self::pool(&[], 0);
        for _ in 0..100 {
            never.pick(now).unwrap().failed(now);
        }
        let health = never.health(now);
        assert_eq!(
            (health[0].breaker, health[0].key.as_str()),
            (BreakerState::Closed, "none")
        );
        assert!(!never.has_keys());
    }
}
