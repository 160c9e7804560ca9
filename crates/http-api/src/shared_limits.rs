//! The Redis store for rate limits: one bucket per caller and route group shared by every
//! instance, spent by one atomic Lua script per check. The local limiter stays in front of it
//! as a cache of refused callers, and takes over (per `rate_limit.redis_fallback`) while Redis
//! does not answer.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use prometheus::IntCounter;
use ratelimit::{Decision, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RouteGroup;
use crate::redis_connection::Connector;

/// The `[redis]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`; required when `rate_limit.store = "redis"`.
    pub url: Option<String>,
    /// The longest one call to Redis may take before the fallback answers, in milliseconds.
    pub timeout_ms: NonZeroU64,
    /// What every key starts with (rate limits `PREFIX:GROUP:CALLER-DIGEST`, budgets
    /// `PREFIX:{budget}:COUNTER:…`), so several deployments can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: NonZeroU64::new(100).unwrap_or(NonZeroU64::MIN),
            key_prefix: "commander:rl".to_owned(),
        }
    }
}

/// Where the buckets live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStore {
    /// In this process: each instance counts alone.
    #[default]
    Local,
    /// In Redis (`[redis] url`): every instance spends from the same buckets.
    Redis,
}

/// What the Redis store does while Redis does not answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFallback {
    /// A local bucket with the limit divided by `rate_limit.instances` (at least 1).
    #[default]
    LocalShare,
    /// Admit every request.
    Allow,
    /// Refuse every request (429, retry in a second).
    Deny,
}

impl RedisFallback {
    fn name(self) -> &'static str {
        match self {
            Self::LocalShare => "local_share",
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Why the rate limits cannot be set up from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitSetupError {
    /// A group's quota is not a quota.
    #[error(transparent)]
    Quota(#[from] ratelimit::QuotaError),
    /// `rate_limit.store = "redis"` without `redis.url`.
    #[error("is required when rate_limit.store = \"redis\"")]
    MissingRedisUrl,
    /// `redis.url` does not parse (the URL itself is not repeated: it may hold a password).
    #[error("is not a Redis URL like redis://127.0.0.1:6379/0: {0}")]
    BadRedisUrl(String),
    /// A bucket whose credits Redis's Lua (double-precision numbers) cannot count exactly.
    #[error(
        "{requests} requests per {window_seconds} s is too large a bucket for the redis store \
         (requests × window_seconds must stay below 2^53)"
    )]
    BucketTooLarge {
        /// The group's requests.
        requests: u32,
        /// The group's window.
        window_seconds: u64,
    },
}

impl RateLimitSetupError {
    /// The configuration key the problem is about.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Quota(_) | Self::BucketTooLarge { .. } => "rate_limit",
            Self::MissingRedisUrl | Self::BadRedisUrl(_) => "redis.url",
        }
    }
}

/// The token bucket of `ratelimit::TokenBucket`, in Redis: the same exact integer credits
/// (one token = `window` credits, `capacity` credits back per time unit), time read from Redis
/// so instances with skewed clocks agree. Lua numbers are doubles: every value stays an integer
/// below 2^53 (checked when the store is built), and divisions are corrected to be exact.
const BUCKET_SCRIPT: &str = r"
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local unit = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local function div_floor(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end
local function div_ceil(a, b)
  local q = div_floor(a, b)
  if q * b < a then q = q + 1 end
  return q
end
local time = redis.call('TIME')
local now = div_floor(tonumber(time[1]) * 1000000 + tonumber(time[2]), unit)
local full = capacity * window
local saved = redis.call('HMGET', KEYS[1], 'credits', 'at')
local credits = tonumber(saved[1])
local at = tonumber(saved[2])
if credits == nil or at == nil then
  credits = full
  at = now
end
if now > at then
  credits = math.min(full, credits + (now - at) * capacity)
  at = now
end
local needed = cost * window
local allowed = 0
local retry = -1
if needed <= credits then
  credits = credits - needed
  allowed = 1
elseif needed > full then
  retry = -2
else
  retry = div_ceil(needed - credits, capacity)
end
redis.call('HSET', KEYS[1], 'credits', string.format('%.0f', credits), 'at', string.format('%.0f', at))
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, div_floor(credits, window), div_ceil(full - credits, capacity), retry}
";

/// The largest integer a double holds exactly.
const EXACT_IN_DOUBLE: u128 = 1 << 53;

/// One group's bucket as the script counts it.
#[derive(Debug, Clone, Copy)]
struct ScriptQuota {
    capacity: u32,
    /// The window in `unit_micros` units.
    window_units: u64,
    /// The time unit, in microseconds: the finest of 1 µs, 1 ms, 1 s that keeps the bucket's
    /// credits exact in a double.
    unit_micros: u64,
    /// Keys expire one window after their last check (a bucket is full by then anyway).
    ttl_ms: u64,
}

impl ScriptQuota {
    fn new(quota: Quota) -> Result<Self, RateLimitSetupError> {
        let window_micros = u64::try_from(quota.window().as_micros()).unwrap_or(u64::MAX);
        let capacity = quota.capacity();
        [1, 1_000, 1_000_000]
            .into_iter()
            .find(|unit| {
                u128::from(capacity) * u128::from(window_micros / unit) < EXACT_IN_DOUBLE
                    && window_micros / unit > 0
            })
            .map(|unit_micros| Self {
                capacity,
                window_units: window_micros / unit_micros,
                unit_micros,
                ttl_ms: (window_micros / 1_000).max(1),
            })
            .ok_or(RateLimitSetupError::BucketTooLarge {
                requests: capacity,
                window_seconds: quota.window().as_secs(),
            })
    }

    fn duration(&self, units: i64) -> Duration {
        Duration::from_micros(
            u64::try_from(units)
                .unwrap_or(0)
                .saturating_mul(self.unit_micros),
        )
    }
}

/// A refusal Redis gave, remembered until its retry time.
#[derive(Debug, Clone, Copy)]
struct Refused {
    until: Instant,
    full_at: Instant,
    limit: u32,
}

/// The Redis store of a running server.
pub(crate) struct SharedStore {
    connector: Arc<Connector>,
    script: redis::Script,
    key_prefix: String,
    fallback: RedisFallback,
    chat: ScriptQuota,
    management: ScriptQuota,
    /// Callers Redis refused, by group then caller key, until their retry time.
    refused_chat: DashMap<String, Refused>,
    refused_management: DashMap<String, Refused>,
    max_refused: usize,
    /// True from a failed call until the next that succeeds: the outage is logged once.
    unreachable: AtomicBool,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("key_prefix", &self.key_prefix)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// A store on `config.url` for the two groups' quotas; connects on first use.
    pub(crate) fn new(
        config: &RedisConfig,
        fallback: RedisFallback,
        chat: Quota,
        management: Quota,
        max_refused: usize,
    ) -> Result<Self, RateLimitSetupError> {
        Ok(Self {
            connector: Connector::new(config)?,
            script: redis::Script::new(BUCKET_SCRIPT),
            key_prefix: config.key_prefix.clone(),
            fallback,
            chat: ScriptQuota::new(chat)?,
            management: ScriptQuota::new(management)?,
            refused_chat: DashMap::new(),
            refused_management: DashMap::new(),
            max_refused: max_refused.max(1),
            unreachable: AtomicBool::new(false),
        })
    }

    /// Starts connecting now (needs a Tokio runtime), so the first request finds Redis ready.
    pub(crate) fn connect(&self) {
        self.connector.connect_in_background();
    }

    /// True while Redis does not answer (or has not been reached yet).
    pub(crate) fn is_degraded(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed) || !self.connector.is_connected()
    }

    fn refused(&self, group: RouteGroup) -> &DashMap<String, Refused> {
        match group {
            RouteGroup::Chat => &self.refused_chat,
            RouteGroup::Management => &self.refused_management,
        }
    }

    fn quota(&self, group: RouteGroup) -> ScriptQuota {
        match group {
            RouteGroup::Chat => self.chat,
            RouteGroup::Management => self.management,
        }
    }

    /// Spends one token of `caller`'s shared bucket in `group`; `local` answers per the
    /// fallback policy while Redis does not.
    pub(crate) async fn check(
        &self,
        group: RouteGroup,
        caller: &str,
        local: &RateLimiter,
        store_errors: &IntCounter,
    ) -> Decision {
        let now = Instant::now();
        let refused = self.refused(group);
        let cached = refused.get(caller).map(|entry| *entry);
        if let Some(hit) = cached {
            if hit.until > now {
                return Decision {
                    allowed: false,
                    limit: hit.limit,
                    remaining: 0,
                    reset_after: hit.full_at.saturating_duration_since(now),
                    retry_after: Some(hit.until - now),
                };
            }
            refused.remove_if(caller, |_, entry| entry.until <= now);
        }
        let quota = self.quota(group);
        match self.ask(group, caller, quota).await {
            Ok(decision) => {
                if self.unreachable.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        key_prefix = %self.key_prefix,
                        "the rate-limit store (Redis) answers again: limits are shared again"
                    );
                }
                if let Some(wait) = decision.retry_after.filter(|_| !decision.allowed) {
                    self.remember_refusal(refused, caller, now, wait, &decision);
                }
                decision
            }
            Err(problem) => {
                store_errors.inc();
                if !self.unreachable.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        %problem,
                        key_prefix = %self.key_prefix,
                        fallback = self.fallback.name(),
                        "the rate-limit store (Redis) is unreachable: limits are not shared \
                         until it answers"
                    );
                }
                self.fall_back(caller, quota, local)
            }
        }
    }

    fn remember_refusal(
        &self,
        refused: &DashMap<String, Refused>,
        caller: &str,
        now: Instant,
        wait: Duration,
        decision: &Decision,
    ) {
        let (Some(until), Some(full_at)) =
            (now.checked_add(wait), now.checked_add(decision.reset_after))
        else {
            // Never allowed (more than the bucket holds): nothing worth remembering.
            return;
        };
        if refused.len() >= self.max_refused {
            refused.retain(|_, entry| entry.until > now);
            if refused.len() >= self.max_refused {
                return;
            }
        }
        refused.insert(
            caller.to_owned(),
            Refused {
                until,
                full_at,
                limit: decision.limit,
            },
        );
    }

    async fn ask(
        &self,
        group: RouteGroup,
        caller: &str,
        quota: ScriptQuota,
    ) -> Result<Decision, String> {
        let Some(mut connection) = self.connector.connection() else {
            return Err("not connected".to_owned());
        };
        let key = format!(
            "{}:{}:{}",
            self.key_prefix,
            group.name(),
            hex::encode(&Sha256::digest(caller.as_bytes())[..16])
        );
        let mut invocation = self.script.key(key);
        invocation
            .arg(quota.capacity)
            .arg(quota.window_units)
            .arg(1)
            .arg(quota.unit_micros)
            .arg(quota.ttl_ms);
        let timeout = self.connector.timeout();
        let reply: (i64, i64, i64, i64) =
            tokio::time::timeout(timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| format!("no answer within {timeout:?}"))?
                .map_err(|e| e.to_string())?;
        let (allowed, remaining, reset, retry) = reply;
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.capacity,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_after: quota.duration(reset),
            retry_after: match retry {
                -1 => None,
                -2 => Some(Duration::MAX),
                units => Some(quota.duration(units)),
            },
        })
    }

    fn fall_back(&self, caller: &str, quota: ScriptQuota, local: &RateLimiter) -> Decision {
        match self.fallback {
            RedisFallback::LocalShare => local.check(caller, 1),
            RedisFallback::Allow => Decision {
                allowed: true,
                limit: quota.capacity,
                remaining: quota.capacity,
                reset_after: Duration::ZERO,
                retry_after: None,
            },
            RedisFallback::Deny => Decision {
                allowed: false,
                limit: quota.capacity,
                remaining: 0,
                reset_after: Duration::from_secs(1),
                retry_after: Some(Duration::from_secs(1)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(requests: u32, seconds: u64) -> Quota {
        Quota::new(requests, Duration::from_secs(seconds)).unwrap()
    }

    #[test]
    fn the_finest_exact_unit_is_chosen_and_a_bucket_too_large_is_refused() {
        let fine = ScriptQuota::new(quota(60, 3600)).unwrap();
        assert_eq!((fine.unit_micros, fine.window_units), (1, 3_600_000_000));
        assert_eq!(fine.ttl_ms, 3_600_000);
        // 3.6e16 credits in microseconds is past 2^53 (about 9.0e15); in milliseconds not.
        let coarse = ScriptQuota::new(quota(10_000_000, 3600)).unwrap();
        assert_eq!(
            (coarse.unit_micros, coarse.window_units),
            (1_000, 3_600_000)
        );
        let seconds = ScriptQuota::new(quota(u32::MAX, 3600)).unwrap();
        assert_eq!(
            (seconds.unit_micros, seconds.window_units),
            (1_000_000, 3600)
        );
        assert_eq!(
            ScriptQuota::new(quota(u32::MAX, 365 * 86_400)).unwrap_err(),
            RateLimitSetupError::BucketTooLarge {
                requests: u32::MAX,
                window_seconds: 365 * 86_400
            }
        );
    }

    #[test]
    fn a_missing_or_bad_url_is_a_problem_with_redis_url() {
        let build = |url: Option<&str>| {
            let config = RedisConfig {
                url: url.map(str::to_owned),
                ..RedisConfig::default()
            };
            SharedStore::new(
                &config,
                RedisFallback::default(),
                quota(1, 1),
                quota(1, 1),
                10,
            )
        };
        let missing = build(None).unwrap_err();
        assert_eq!(missing, RateLimitSetupError::MissingRedisUrl);
        assert_eq!(missing.key(), "redis.url");
        assert_eq!(
            build(Some("  ")).unwrap_err(),
            RateLimitSetupError::MissingRedisUrl
        );
        let bad = build(Some("http://secret@example")).unwrap_err();
        assert!(
            matches!(bad, RateLimitSetupError::BadRedisUrl(_)),
            "{bad:?}"
        );
        assert!(!bad.to_string().contains("secret"), "{bad}");
        assert!(
            build(Some("redis://127.0.0.1:1/0")).is_ok(),
            "not connected at build"
        );
    }
}
