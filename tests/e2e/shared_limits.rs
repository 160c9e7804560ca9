//! Rate limits shared on Redis: several real instances spend one bucket; a Redis that goes away
//! hands over to the fallback policy and back. Needs the Redis at `COMMANDER_TEST_REDIS_URL`
//! (`.ci/run` starts it); each test has its own key prefix, so runs never share a bucket.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};

use e2e_support::{TcpProxy, TestApp, eventually, server_logs};
use http_api::{RateLimitStore, RedisFallback};

/// The shared Redis of the test run.
pub(crate) fn redis_url() -> String {
    std::env::var("COMMANDER_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Where the shared Redis of the test run listens, for a proxy in front of it.
pub(crate) fn redis_address() -> SocketAddr {
    let url = redis_url();
    let host_port = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .unwrap()
        .next()
        .unwrap()
}

/// A key prefix no other test (or run) uses.
pub(crate) fn own_prefix() -> String {
    format!("commander-test:{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn on_redis(
    url: String,
    prefix: String,
    requests: u32,
    fallback: RedisFallback,
    instances: u32,
) -> impl FnOnce(&mut commander::Settings, &std::path::Path) {
    move |settings, _| {
        settings.rate_limit.requests = NonZeroU32::new(requests).unwrap();
        settings.rate_limit.window_seconds = NonZeroU64::new(3600).unwrap();
        settings.rate_limit.store = RateLimitStore::Redis;
        settings.rate_limit.redis_fallback = fallback;
        settings.rate_limit.instances = NonZeroU32::new(instances).unwrap();
        settings.redis.url = Some(url);
        settings.redis.key_prefix = prefix;
        settings.redis.timeout_ms = NonZeroU64::new(200).unwrap();
    }
}

/// What `/ready` says of the rate limiter; a Redis outage never fails it.
pub(crate) async fn rate_limit_state(app: &TestApp) -> String {
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200, "a Redis outage never fails /ready");
    let body: serde_json::Value = response.json().await.unwrap();
    body["rate_limit"].as_str().unwrap().to_owned()
}

pub(crate) async fn wait_for_state(app: &TestApp, wanted: &str) {
    eventually(&format!("rate_limit: {wanted}"), async || {
        (rate_limit_state(app).await == wanted).then_some(())
    })
    .await;
}

pub(crate) fn store_errors(metrics: &std::collections::HashMap<String, f64>) -> f64 {
    metrics
        .get("commander_ratelimit_store_errors_total")
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_spread_over_three_instances_gets_exactly_its_limit() {
    let prefix = own_prefix();
    let mut apps = Vec::new();
    for _ in 0..3 {
        let app = TestApp::spawn_with(on_redis(
            redis_url(),
            prefix.clone(),
            10,
            RedisFallback::Deny,
            3,
        ))
        .await;
        wait_for_state(&app, "redis").await;
        apps.push(app);
    }
    let mut admitted = 0;
    let mut remaining_seen = Vec::new();
    for round in 0..30 {
        let response = apps[round % 3].get("/specialists").await;
        match response.status().as_u16() {
            200 => {
                admitted += 1;
                // The same headers as the local store: k tokens spent take k × 360 s to come
                // back (a second less once a second of refill has passed).
                let remaining: u64 = response.headers()["x-ratelimit-remaining"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let reset: u64 = response.headers()["x-ratelimit-reset"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let full_in = (10 - remaining) * 360;
                assert!((full_in - 1..=full_in).contains(&reset), "reset {reset}");
                assert_eq!(
                    response.headers()["ratelimit"],
                    format!("\"management\";r={remaining};t={reset}").as_str()
                );
                remaining_seen.push(
                    response.headers()["x-ratelimit-remaining"]
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            429 => {
                // Ten per hour: a token comes back every 360 s.
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((359..=360).contains(&retry), "retry-after {retry}");
                assert_eq!(response.headers()["x-ratelimit-limit"], "10");
                assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
                assert_eq!(
                    response.headers()["ratelimit-policy"],
                    "\"management\";q=10;w=3600"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        admitted, 10,
        "three instances together admit exactly the limit"
    );
    // The bucket is one: its remaining count went down across the instances.
    assert_eq!(
        remaining_seen,
        ["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"]
    );
    for app in &apps {
        assert_eq!(store_errors(&app.metrics().await), 0.0);
    }
}

/// A server on Redis through a proxy of the test's own: `before_cut` requests go to Redis,
/// then the proxy is cut and the fallback answers, then it comes back.
struct Outage {
    app: TestApp,
    proxy: TcpProxy,
    prefix: String,
}

impl Outage {
    async fn start(fallback: RedisFallback) -> Self {
        server_logs();
        let proxy = TcpProxy::start(redis_address()).await;
        let prefix = own_prefix();
        let app = TestApp::spawn_with(on_redis(
            format!("redis://{}", proxy.address()),
            prefix.clone(),
            4,
            fallback,
            2,
        ))
        .await;
        wait_for_state(&app, "redis").await;
        Self { app, proxy, prefix }
    }

    fn log_lines(&self, text: &str) -> usize {
        server_logs()
            .text()
            .lines()
            .filter(|line| line.contains(&self.prefix) && line.contains(text))
            .count()
    }

    /// Statuses of `count` requests.
    async fn statuses(&self, count: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        for _ in 0..count {
            statuses.push(self.app.get("/specialists").await.status().as_u16());
        }
        statuses
    }

    /// Cuts Redis off, checks what is common to every policy, and returns the statuses of
    /// `count` requests made meanwhile.
    async fn cut(&self, count: usize) -> Vec<u16> {
        let errors_before = store_errors(&self.app.metrics().await);
        self.proxy.cut();
        let statuses = self.statuses(count).await;
        assert!(
            store_errors(&self.app.metrics().await) >= errors_before + 1.0,
            "the store errors are counted"
        );
        assert_eq!(
            rate_limit_state(&self.app).await,
            "degraded (redis unreachable)"
        );
        assert_eq!(
            self.log_lines("unreachable"),
            1,
            "the outage is logged once"
        );
        statuses
    }

    /// Restores Redis and waits until the shared bucket answers again.
    async fn recover(&self) {
        self.proxy.restore();
        eventually("requests reach Redis again", async || {
            self.app.get("/specialists").await;
            (rate_limit_state(&self.app).await == "redis").then_some(())
        })
        .await;
        assert_eq!(self.log_lines("unreachable"), 1, "still one outage line");
        assert_eq!(self.log_lines("answers again"), 1, "the end is logged once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_local_share_gives_this_instance_its_share_then_recovers() {
    let outage = Outage::start(RedisFallback::LocalShare).await;
    assert_eq!(outage.statuses(1).await, [200]);
    // Four per hour over two instances: two each while Redis is away.
    let statuses = outage.cut(3).await;
    assert_eq!(statuses, [200, 200, 429]);
    outage.recover().await;
    // Back on the shared bucket: 4, of which the one before the cut and the probes in
    // `recover` took some; it runs out at 4 in all, whatever the fallback admitted.
    let after = outage.statuses(4).await;
    assert_eq!(after.last(), Some(&429), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_allow_admits_everything_then_recovers() {
    let outage = Outage::start(RedisFallback::Allow).await;
    let statuses = outage.cut(6).await;
    assert_eq!(statuses, [200; 6], "more than the limit of 4, all admitted");
    outage.recover().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_deny_refuses_everything_then_recovers() {
    let outage = Outage::start(RedisFallback::Deny).await;
    let statuses = outage.cut(2).await;
    assert_eq!(statuses, [429, 429]);
    outage.recover().await;
    assert_eq!(
        outage.statuses(1).await,
        [200],
        "the shared bucket still had tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_redis_refused_is_refused_locally_without_asking_redis() {
    let outage = Outage::start(RedisFallback::Allow).await;
    assert_eq!(outage.statuses(5).await, [200, 200, 200, 200, 429]);
    let errors_before = store_errors(&outage.app.metrics().await);
    outage.proxy.cut();
    // Allow would admit: the 429 comes from the cache of refused callers, with no call.
    let refused = outage.app.get("/specialists").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-ratelimit-limit"], "4");
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(store_errors(&outage.app.metrics().await), errors_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_down_at_start_is_the_fallback_state_not_a_start_failure() {
    // A port nobody listens on: taken, then given back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(on_redis(
        format!("redis://127.0.0.1:{port}"),
        own_prefix(),
        2,
        RedisFallback::LocalShare,
        1,
    ))
    .await;
    assert_eq!(rate_limit_state(&app).await, "degraded (redis unreachable)");
    let statuses = [
        app.get("/specialists").await.status(),
        app.get("/specialists").await.status(),
        app.get("/specialists").await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 429]);
    assert!(store_errors(&app.metrics().await) >= 3.0);
}
