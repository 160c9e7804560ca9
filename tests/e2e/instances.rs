//! Three real instances behind one imagined load balancer, sharing what a deployment shares:
//! one PostgreSQL database as both the usage log and the catalogue, and Redis as the
//! rate-limit store. Each keeps its own journal and files. Needs the PostgreSQL of
//! `COMMANDER_TEST_POSTGRES_URL` and the Redis of `COMMANDER_TEST_REDIS_URL` (`.ci/run` starts
//! both); each test has its own database and Redis key prefix.

use std::collections::HashSet;

use commander::CatalogueStoreKind;
use e2e_support::{TestApp, TestDatabase, error_body, eventually, specialist};
use http_api::RedisFallback;
use serde_json::json;

use crate::catalogue_db::patch;
use crate::shared_limits::{on_redis, own_prefix, redis_url, store_errors, wait_for_state};

/// Three servers on one PostgreSQL database (usage log and catalogue, polled every 50 ms) and
/// one Redis bucket of `requests` per hour; the database is dropped with this.
struct Cluster {
    apps: [TestApp; 3],
    _database: TestDatabase,
}

impl Cluster {
    async fn start(requests: u32) -> Self {
        let database = TestDatabase::create();
        let prefix = own_prefix();
        let mut apps = Vec::new();
        for _ in 0..3 {
            let url = database.url();
            let on_redis = on_redis(
                redis_url(),
                prefix.clone(),
                requests,
                RedisFallback::Deny,
                3,
            );
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
            _database: database,
        }
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
