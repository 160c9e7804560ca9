//! Three real instances behind one imagined load balancer, sharing what a deployment shares:
//! one PostgreSQL database as both the usage log and the catalogue, and Redis as the
//! rate-limit store. Each keeps its own journal and files. Needs the PostgreSQL of
//! `COMMANDER_TEST_POSTGRES_URL` and the Redis of `COMMANDER_TEST_REDIS_URL` (`.ci/run` starts
//! both); each test has its own database and Redis key prefix.

use std::collections::HashSet;

use commander::CatalogueStoreKind;
use e2e_support::{
    TcpProxy, TestApp, TestDatabase, error_body, eventually, server_logs, specialist,
};
use http_api::RedisFallback;
use serde_json::json;

use crate::catalogue_db::patch;
use crate::shared_limits::{
    on_redis, own_prefix, rate_limit_state, redis_address, redis_url, store_errors, wait_for_state,
};

/// Three servers on one PostgreSQL database (usage log and catalogue, polled every 50 ms) and
/// one Redis bucket of `requests` per hour under `prefix`; the database is dropped with this.
struct Cluster {
    apps: [TestApp; 3],
    prefix: String,
    _database: TestDatabase,
}

impl Cluster {
    async fn start(requests: u32) -> Self {
        Self::start_on(redis_url(), requests, RedisFallback::Deny).await
    }

    /// Three servers that reach Redis at `redis` (a proxy of the test's own, to cut it) and
    /// fall back per `fallback` while it is away.
    async fn start_on(redis: String, requests: u32, fallback: RedisFallback) -> Self {
        let database = TestDatabase::create();
        let prefix = own_prefix();
        let mut apps = Vec::new();
        for _ in 0..3 {
            let url = database.url();
            let on_redis = on_redis(redis.clone(), prefix.clone(), requests, fallback, 3);
            let app = TestApp::spawn_with(move |settings, dir| {
                on_redis(settings, dir);
                settings.database.url = url;
                settings.specialists.store = CatalogueStoreKind::Database;
                settings.specialists.reload_interval_ms = 50;
            })
            .await;
            wait_for_state(&app, "redis").await;
            apps.push(app);
        }
        let Ok(apps) = <[TestApp; 3]>::try_from(apps) else {
            unreachable!("three were started")
        };
        Self {
            apps,
            prefix,
            _database: database,
        }
    }

    /// Statuses of `count` requests of one caller, round robin over the three.
    async fn round_robin(&self, count: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        for round in 0..count {
            let response = self.apps[round % 3].get("/specialists").await;
            statuses.push(response.status().as_u16());
        }
        statuses
    }

    /// Log lines of this cluster's servers that contain `text`.
    fn log_lines(&self, text: &str) -> usize {
        server_logs()
            .text()
            .lines()
            .filter(|line| line.contains(&self.prefix) && line.contains(text))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_round_robin_over_three_instances_gets_exactly_its_limit() {
    let cluster = Cluster::start(10).await;
    let mut statuses = Vec::new();
    for round in 0..30 {
        let response = cluster.apps[round % 3].get("/specialists").await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        10,
        "three instances together admit exactly the limit: {statuses:?}"
    );
    assert!(
        statuses[10..].iter().all(|&s| s == 429),
        "once spent, every instance refuses: {statuses:?}"
    );
    for app in &cluster.apps {
        assert_eq!(store_errors(&app.metrics().await), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_change_and_usage_rows_are_shared_by_three_instances() {
    let cluster = Cluster::start(1_000_000).await;
    let [one, two, three] = &cluster.apps;

    // (b) Created on instance 1, served by 2 and 3 after their poll.
    let created = one
        .post_json(
            "/specialists",
            &specialist("shared", "mock", "m", "Answer briefly.", json!({})),
        )
        .await;
    assert_eq!(created.status(), 201);
    for other in [two, three] {
        eventually(
            "the other instances to serve the new specialist",
            async || (other.get("/specialists/shared").await.status() == 200).then_some(()),
        )
        .await;
    }

    // (c) Changed on 2; 3 still sends version 1 and the database refuses it.
    let changed = patch(two, "shared", "\"1\"", &json!({"temperature": 0.4})).await;
    assert_eq!(changed.status(), 200);
    let stale = patch(three, "shared", "\"1\"", &json!({"temperature": 0.9})).await;
    assert_eq!(stale.status(), 409);
    assert_eq!(error_body(stale).await["code"], "version_conflict");
    for app in &cluster.apps {
        eventually("every instance to serve version 2", async || {
            let served = app.get_json("/specialists/shared").await;
            (served["version"] == 2 && served["temperature"] == 0.4).then_some(())
        })
        .await;
    }

    // (d) N calls spread over the three land in the one log exactly once each.
    const CALLS: usize = 30;
    let mut answered_ids = HashSet::new();
    for call in 0..CALLS {
        let response = cluster.apps[call % 3]
            .chat("shared", &format!("call {call}"))
            .await;
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(answered_ids.insert(id), "request ids are distinct");
    }
    // Every writer flushes its journal into the shared database before the log is read.
    let mut rows = Vec::new();
    for app in &cluster.apps {
        rows = app.usage_rows().await;
    }
    let shared: Vec<_> = rows
        .iter()
        .filter(|r| r.specialist_id == "shared")
        .collect();
    assert_eq!(shared.len(), CALLS, "none lost, none doubled");
    let stored_ids: HashSet<String> = shared.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(stored_ids, answered_ids);
    // Each instance read the same log.
    for app in &cluster.apps {
        assert_eq!(app.usage_rows().await.len(), rows.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_under_three_instances_each_admits_its_share_then_all_share_again() {
    server_logs();
    let proxy = TcpProxy::start(redis_address()).await;
    let cluster = Cluster::start_on(
        format!("redis://{}", proxy.address()),
        9,
        RedisFallback::LocalShare,
    )
    .await;
    let mut errors_before = Vec::new();
    for app in &cluster.apps {
        errors_before.push(store_errors(&app.metrics().await));
    }

    proxy.cut();
    // Nine per hour over three instances: three each while Redis is away, nine in all.
    let statuses = cluster.round_robin(12).await;
    for (instance, app) in cluster.apps.iter().enumerate() {
        let seen: Vec<u16> = statuses.iter().skip(instance).step_by(3).copied().collect();
        assert_eq!(
            seen,
            [200, 200, 200, 429],
            "instance {instance}: {statuses:?}"
        );
        assert!(
            store_errors(&app.metrics().await) >= errors_before[instance] + 1.0,
            "instance {instance} counts its store errors"
        );
        wait_for_state(app, "degraded (redis unreachable)").await;
    }
    assert_eq!(
        cluster.log_lines("unreachable"),
        3,
        "each instance logs the outage once"
    );

    proxy.restore();
    // Local shares are spent, so a probe admitted here was admitted by the shared bucket.
    let mut admitted_by_probes = 0;
    for app in &cluster.apps {
        eventually("the instance reaches Redis again", async || {
            if app.get("/specialists").await.status() == 200 {
                admitted_by_probes += 1;
            }
            (rate_limit_state(app).await == "redis").then_some(())
        })
        .await;
    }
    assert_eq!(
        cluster.log_lines("answers again"),
        3,
        "each logs the end once"
    );
    assert!(
        (1..=9).contains(&admitted_by_probes),
        "the shared bucket answered: {admitted_by_probes}"
    );
    // The shared bucket, untouched by the fallback, holds nine tokens less the probes' and
    // counts across the three again.
    let after = cluster.round_robin(12).await;
    let left = 9 - admitted_by_probes;
    assert!(
        after[..left].iter().all(|&s| s == 200) && after[left..].iter().all(|&s| s == 429),
        "{left} left in the shared bucket: {after:?}"
    );
}
