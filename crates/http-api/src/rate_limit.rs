//! Rate limits: one token bucket per caller and route group, headers on every limited response,
//! 429 with `Retry-After` when the bucket is empty. The admission step (`admission.rs`) counts
//! each request here.

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use core_domain::UserIdentity;
use prometheus::IntCounter;
use ratelimit::{Decision, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::client_ip::{Cidr, client_ip, client_network};
use crate::shared_limits::SharedStore;
use crate::{ApiCode, ApiError, RateLimitSetupError, RateLimitStore, RedisConfig, RedisFallback};

/// The `[rate_limit]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per window for each caller (the bucket's capacity).
    pub requests: NonZeroU32,
    /// The window over which `requests` are refilled, in seconds.
    pub window_seconds: NonZeroU64,
    /// The most callers remembered per route group; beyond it the least recently seen is
    /// forgotten (and starts again with a full bucket).
    pub max_buckets: usize,
    /// Proxies whose `X-Forwarded-For` is believed (CIDR ranges or addresses).
    pub trusted_proxies: Vec<Cidr>,
    /// Overrides for chat routes (`/chat/*`, `/v1/*`).
    pub chat: Option<GroupLimit>,
    /// Overrides for management routes (`/specialists`, `/usage`).
    pub management: Option<GroupLimit>,
    /// Where the buckets live: this process (`local`) or Redis (`redis`, shared by every
    /// instance; needs `[redis] url`).
    pub store: RateLimitStore,
    /// With `store = "redis"`: what answers while Redis does not.
    pub redis_fallback: RedisFallback,
    /// How many instances share the limits: `redis_fallback = "local_share"` gives each
    /// instance the limit divided by it (at least 1).
    pub instances: NonZeroU32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests: NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
            window_seconds: NonZeroU64::new(3600).unwrap_or(NonZeroU64::MIN),
            max_buckets: 10_000,
            trusted_proxies: Vec::new(),
            chat: None,
            management: None,
            store: RateLimitStore::Local,
            redis_fallback: RedisFallback::LocalShare,
            instances: NonZeroU32::MIN,
        }
    }
}

/// A route group's own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLimit {
    /// Requests per window.
    pub requests: NonZeroU32,
    /// The window, in seconds.
    pub window_seconds: NonZeroU64,
}

/// Which limit a route counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// Chat calls.
    Chat,
    /// Specialist management and usage reports.
    Management,
}

impl RouteGroup {
    /// The group's name in headers, messages and metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Management => "management",
        }
    }
}

/// The limiters of a running server.
#[derive(Debug)]
pub struct RateLimits {
    /// Each group's local limiter: the whole quota with the local store; with the Redis store,
    /// the fallback's share of it.
    chat: RateLimiter,
    management: RateLimiter,
    chat_quota: Quota,
    management_quota: Quota,
    /// The Redis store, when `store = "redis"`.
    shared: Option<SharedStore>,
    /// Each group's `RateLimit-Policy` header, which never changes: made once, not per request.
    chat_policy: HeaderValue,
    management_policy: HeaderValue,
    trusted_proxies: Vec<Cidr>,
}

impl RateLimits {
    /// Limiters for `config`, on Redis (`redis`) when `config.store` says so. Opens no
    /// connection: [`RateLimits::connect`] starts that.
    pub fn from_config(
        config: &RateLimitConfig,
        redis: &RedisConfig,
    ) -> Result<Self, RateLimitSetupError> {
        let quota = |group: Option<GroupLimit>, share: u32| {
            let (requests, window) = group.map_or((config.requests, config.window_seconds), |g| {
                (g.requests, g.window_seconds)
            });
            Quota::new(
                (requests.get() / share).max(1),
                Duration::from_secs(window.get()),
            )
        };
        let (chat, management) = (quota(config.chat, 1)?, quota(config.management, 1)?);
        let (shared, share) = match config.store {
            RateLimitStore::Local => (None, 1),
            RateLimitStore::Redis => (
                Some(SharedStore::new(
                    redis,
                    config.redis_fallback,
                    chat,
                    management,
                    config.max_buckets,
                )?),
                config.instances.get(),
            ),
        };
        Ok(Self {
            chat: RateLimiter::new(quota(config.chat, share)?, config.max_buckets),
            management: RateLimiter::new(quota(config.management, share)?, config.max_buckets),
            chat_quota: chat,
            management_quota: management,
            shared,
            chat_policy: policy_header(RouteGroup::Chat, chat),
            management_policy: policy_header(RouteGroup::Management, management),
            trusted_proxies: config.trusted_proxies.clone(),
        })
    }

    /// Starts connecting to Redis in the background (no-op with the local store). Call it
    /// inside the Tokio runtime the server runs on; a Redis that is down is not an error: the
    /// fallback answers and the connection is retried.
    pub fn connect(&self) {
        if let Some(shared) = &self.shared {
            shared.connect();
        }
    }

    /// For `/ready`: `local`, `redis`, or `degraded (redis unreachable)`.
    pub(crate) fn store_state(&self) -> &'static str {
        match &self.shared {
            None => "local",
            Some(shared) if shared.is_degraded() => "degraded (redis unreachable)",
            Some(_) => "redis",
        }
    }

    /// The proxies whose `X-Forwarded-For` is believed.
    pub(crate) fn trusted_proxies(&self) -> &[Cidr] {
        &self.trusted_proxies
    }

    fn limiter(&self, group: RouteGroup) -> &RateLimiter {
        match group {
            RouteGroup::Chat => &self.chat,
            RouteGroup::Management => &self.management,
        }
    }

    fn policy(&self, group: RouteGroup) -> &HeaderValue {
        match group {
            RouteGroup::Chat => &self.chat_policy,
            RouteGroup::Management => &self.management_policy,
        }
    }
}

/// `RateLimit-Policy` for `group` (draft-ietf-httpapi-ratelimit-headers): its name, quota and
/// window in seconds.
fn policy_header(group: RouteGroup, quota: Quota) -> HeaderValue {
    let value = format!(
        "\"{}\";q={};w={}",
        group.name(),
        quota.capacity(),
        quota.window().as_secs()
    );
    // Made of a fixed name and two numbers: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// One request counted against a bucket: the limiter's decision and all its answer needs.
#[derive(Debug)]
pub(crate) struct Counted {
    group: RouteGroup,
    quota: Quota,
    policy: HeaderValue,
    decision: Decision,
}

impl RateLimits {
    /// Counts one request of `caller` (a [`caller_key`]) against `group`'s bucket; a failed
    /// call to Redis counts in `store_errors`. With the local store nothing is awaited.
    pub(crate) async fn count(
        &self,
        group: RouteGroup,
        caller: &str,
        store_errors: &IntCounter,
    ) -> Counted {
        let limiter = self.limiter(group);
        let decision = match &self.shared {
            None => limiter.check(caller, 1),
            Some(shared) => shared.check(group, caller, limiter, store_errors).await,
        };
        Counted {
            group,
            quota: match group {
                RouteGroup::Chat => self.chat_quota,
                RouteGroup::Management => self.management_quota,
            },
            policy: self.policy(group).clone(),
            decision,
        }
    }
}

impl Counted {
    /// True when the bucket had a token for the request.
    pub(crate) fn is_allowed(&self) -> bool {
        self.decision.allowed
    }

    /// The 429 for a request the bucket had no token for, with `Retry-After`.
    pub(crate) fn refusal(&self) -> ApiError {
        let wait = self.decision.retry_after.unwrap_or(Duration::ZERO);
        ApiError::new(
            ApiCode::RateLimited,
            format!(
                "rate limit exceeded: {} requests per {} s for {} routes; retry in {} s",
                self.quota.capacity(),
                self.quota.window().as_secs(),
                self.group.name(),
                whole_seconds(wait)
            ),
        )
        .with_retry_after(wait)
    }

    /// `X-RateLimit-Limit/-Remaining/-Reset` (reset: seconds until the bucket is full), and the
    /// IETF draft's `RateLimit-Policy` and `RateLimit` fields beside them.
    pub(crate) fn add_headers(&self, headers: &mut HeaderMap) {
        let decision = &self.decision;
        let reset = whole_seconds(decision.reset_after);
        let name = HeaderName::from_static;
        headers.insert(name("x-ratelimit-limit"), HeaderValue::from(decision.limit));
        headers.insert(
            name("x-ratelimit-remaining"),
            HeaderValue::from(decision.remaining),
        );
        headers.insert(name("x-ratelimit-reset"), HeaderValue::from(reset));
        headers.insert(name("ratelimit-policy"), self.policy.clone());
        let state = format!(
            "\"{}\";r={};t={reset}",
            self.group.name(),
            decision.remaining
        );
        if let Ok(value) = HeaderValue::from_str(&state) {
            headers.insert(name("ratelimit"), value);
        }
    }
}

/// The bucket a request counts against: the user its credentials proved (`verified`), else the
/// client's address (an IPv6 client's /64: see [`client_network`]).
pub(crate) fn caller_key(
    verified: Option<&UserIdentity>,
    req: &ServiceRequest,
    trusted: &[Cidr],
) -> String {
    if let Some(UserIdentity::Authenticated { email_hash, .. }) = verified {
        return format!("user:{email_hash}");
    }
    match req.peer_addr() {
        Some(peer) => {
            // Several X-Forwarded-For lines are one list in order (RFC 9110 §5.3): a proxy
            // that adds its own line instead of appending must still have the last word.
            // Bytes that are not text (a client may send any) become U+FFFD, an unreadable
            // hop: the hops our proxies appended to its right are still read, so a client
            // cannot fall back to the proxy's own bucket by sending garbage.
            let mut forwarded = String::new();
            for value in req.headers().get_all("x-forwarded-for") {
                if !forwarded.is_empty() {
                    forwarded.push(',');
                }
                forwarded.push_str(&String::from_utf8_lossy(value.as_bytes()));
            }
            let forwarded = (!forwarded.is_empty()).then_some(forwarded.as_str());
            match client_network(client_ip(peer.ip(), forwarded, trusted)) {
                IpAddr::V6(network) => format!("ip:{network}/64"),
                IpAddr::V4(address) => format!("ip:{address}"),
            }
        }
        None => "ip:unknown".to_owned(),
    }
}

/// Seconds, rounded up so a client never comes back too early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sixty_an_hour_for_ten_thousand_callers_in_both_groups() {
        let config = RateLimitConfig::default();
        assert_eq!(config.max_buckets, 10_000);
        let limits = RateLimits::from_config(&config, &RedisConfig::default()).unwrap();
        for group in [RouteGroup::Chat, RouteGroup::Management] {
            let quota = limits.limiter(group).quota();
            assert_eq!(quota.capacity(), 60, "{group:?}");
            assert_eq!(quota.window(), Duration::from_secs(3600), "{group:?}");
        }
    }

    #[test]
    fn each_group_may_have_its_own_limit() {
        let config = RateLimitConfig {
            chat: Some(GroupLimit {
                requests: NonZeroU32::new(5).unwrap(),
                window_seconds: NonZeroU64::new(60).unwrap(),
            }),
            ..RateLimitConfig::default()
        };
        let limits = RateLimits::from_config(&config, &RedisConfig::default()).unwrap();
        let chat = limits.limiter(RouteGroup::Chat).quota();
        assert_eq!(
            (chat.capacity(), chat.window()),
            (5, Duration::from_secs(60))
        );
        let management = limits.limiter(RouteGroup::Management).quota();
        assert_eq!(management.capacity(), 60, "the default still applies");
        // Each group counts separately: spending the chat bucket leaves management's full.
        for _ in 0..5 {
            assert!(limits.limiter(RouteGroup::Chat).check("ip:1", 1).allowed);
        }
        assert!(!limits.limiter(RouteGroup::Chat).check("ip:1", 1).allowed);
        assert!(
            limits
                .limiter(RouteGroup::Management)
                .check("ip:1", 1)
                .allowed
        );
    }
}
