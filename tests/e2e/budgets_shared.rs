//! Budgets on real servers counting in Redis (`rate_limit.store = "redis"`): two instances on
//! one PostgreSQL usage log share one budget exactly; a Redis that does not answer refuses
//! covered calls (or lets them through with `budgets.on_store_error = "allow"`); a Redis that
//! lost its data rebuilds the count from the usage log; a reservation left by an instance that
//! died blocks until its lease ends. Needs the PostgreSQL of `COMMANDER_TEST_POSTGRES_URL` and
//! the Redis of `COMMANDER_TEST_REDIS_URL` (`.ci/run` starts both); each test has its own
//! database and key prefix, and Redis is only ever cut through a proxy of the test's own.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use budgets::{Counter, Ledger, ReserveOutcome};
use chrono::Utc;
use core_domain::{BudgetDraft, ChatMessage, Usd};
use e2e_support::{TcpProxy, TestApp, TestDatabase, catalogue, error_body, eventually, specialist};
use http_api::{OnStoreErrorSetting, RateLimitStore, RedisConfig, RedisLedger};
use serde_json::json;

use crate::shared_budgets::redis_integer;
use crate::shared_limits::{own_prefix, redis_address, redis_url};

/// The specialist the budget covers; its calls cost exactly their prompt (no output price), so
/// a call's worst case is what it costs and the number admitted is exact.
const METERED: &str = "metered";
/// A specialist no budget covers.
const FREE: &str = "free";
const SYSTEM_PROMPT: &str = "Count.";
const MESSAGE: &str = "hello";
/// USD per million input tokens: a thousandth of a dollar per token.
const INPUT_PER_1M: f64 = 1000.0;
const BUDGET: &str = "metered-total";

/// What one call to [`METERED`] with [`MESSAGE`] costs: the mock reports the prompt estimate
/// as its input tokens.
fn call_cost() -> Usd {
    let tokens = core_domain::estimate_prompt_tokens(SYSTEM_PROMPT, &[ChatMessage::user(MESSAGE)]);
    Usd::from_nanos(u64::from(tokens) * 1_000_000)
}

fn usd(amount: Usd) -> f64 {
    amount.as_dollars()
}

/// How long a Redis command may take before it counts as an outage: shorter where the test
/// cuts Redis (so the cut is seen quickly), generous elsewhere. A loaded CI machine running
/// debug builds was seen taking over 200 ms to answer, and a covered call then (rightly)
/// got 503 `budget_unavailable`.
const REDIS_CUT_TIMEOUT_MS: u64 = 1_000;
/// Where nothing listens: the timeout only bounds how long each failure takes.
const REDIS_ABSENT_TIMEOUT_MS: u64 = 200;
const REDIS_UP_TIMEOUT_MS: u64 = 5_000;

/// Settings of one instance: the usage log in `database`, budgets and rate limits in Redis at
/// `redis` (commands timing out after `redis_timeout_ms`) under `prefix`, one `total` budget of
/// `limit` on [`METERED`].
fn instance_settings(
    database: String,
    (redis, redis_timeout_ms): (String, u64),
    prefix: String,
    limit: Usd,
    on_store_error: OnStoreErrorSetting,
) -> impl FnOnce(&mut commander::Settings, &std::path::Path) {
    move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                specialist(
                    METERED,
                    "mock",
                    "mock-echo",
                    SYSTEM_PROMPT,
                    json!({"pricing": {"input_per_1m": INPUT_PER_1M, "output_per_1m": 0.0}}),
                ),
                specialist(FREE, "mock", "mock-echo", SYSTEM_PROMPT, json!({})),
            ]),
        )
        .unwrap();
        settings.database.url = database;
        settings.rate_limit.store = RateLimitStore::Redis;
        settings.rate_limit.requests = NonZeroU32::new(1_000_000).unwrap();
        settings.redis.url = Some(redis);
        settings.redis.key_prefix = prefix;
        settings.redis.timeout_ms = NonZeroU64::new(redis_timeout_ms).unwrap();
        settings.budgets.store_timeout_ms = NonZeroU64::new(redis_timeout_ms).unwrap();
        settings.budgets.on_store_error = on_store_error;
        settings.budgets.limits = vec![BudgetDraft {
            id: BUDGET.to_owned(),
            scope: "specialist".to_owned(),
            subject: Some(METERED.to_owned()),
            period: "total".to_owned(),
            limit_usd: usd(limit),
            alert_usd: None,
        }];
    }
}

/// The budget as `GET /budgets` shows it.
async fn shown(app: &TestApp) -> serde_json::Value {
    let list = app.get_json("/budgets").await;
    list["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == BUDGET)
        .unwrap_or_else(|| panic!("{BUDGET} not listed: {list}"))
        .clone()
}

/// The budget's settled spend once nothing is reserved any more (settlement in Redis happens
/// after the answer).
async fn settled_spend(app: &TestApp) -> f64 {
    eventually("the reservations to be settled", async || {
        let budget = shown(app).await;
        (budget["reserved_usd"] == 0.0).then(|| budget["spent_usd"].as_f64().unwrap())
    })
    .await
}

fn metric(app_metrics: &std::collections::HashMap<String, f64>, name: &str) -> f64 {
    app_metrics.get(name).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget_exactly_under_200_concurrent_calls() {
    const CALLS: usize = 200;
    const FITS: u64 = 50;
    let cost = call_cost();
    // Fifty calls and half of another.
    let limit = Usd::from_nanos(cost.nanos() * FITS + cost.nanos() / 2);
    let database = TestDatabase::create();
    let prefix = own_prefix();
    let mut apps = Vec::new();
    for _ in 0..2 {
        apps.push(
            TestApp::spawn_with(instance_settings(
                database.url(),
                (redis_url(), REDIS_UP_TIMEOUT_MS),
                prefix.clone(),
                limit,
                OnStoreErrorSetting::Deny,
            ))
            .await,
        );
    }

    // Half through the native door, half through the OpenAI one, on both instances.
    let openai_door = |call: usize| call % 4 >= 2;
    let calls: Vec<_> = (0..CALLS)
        .map(|call| {
            let client = apps[call % 2].client.clone();
            let request = if openai_door(call) {
                client.post(apps[call % 2].url("/v1/chat/completions")).json(
                    &json!({"model": METERED, "messages": [{"role": "user", "content": MESSAGE}]}),
                )
            } else {
                client
                    .post(apps[call % 2].url("/chat/send"))
                    .json(&json!({"specialist_id": METERED, "message": MESSAGE}))
            };
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                request
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("after {:?}: {e:?}", started.elapsed()))
            })
        })
        .collect();
    let (mut answered, mut refused) = ([0u64; 2], 0u64);
    for (call, handle) in calls.into_iter().enumerate() {
        let response = handle.await.unwrap();
        match response.status().as_u16() {
            200 => answered[call % 2] += 1,
            402 if !openai_door(call) => {
                let error = error_body(response).await;
                assert_eq!(error["code"], "budget_exceeded", "{error}");
                let message = error["message"].as_str().unwrap();
                assert!(message.contains(BUDGET), "names the budget: {message}");
                assert!(message.contains("never resets"), "{message}");
                refused += 1;
            }
            // What OpenAI answers for a spent quota, marked not to be retried.
            429 if openai_door(call) => {
                assert_eq!(response.headers()["x-should-retry"], "false");
                let body: serde_json::Value = response.json().await.unwrap();
                let error = &body["error"];
                assert_eq!(error["type"], "insufficient_quota", "{body}");
                assert_eq!(error["code"], "budget_exceeded", "{body}");
                assert!(
                    error["message"].as_str().unwrap().contains(BUDGET),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("call {call}: {other} {}", response.text().await.unwrap()),
        }
    }
    let total_answered = answered[0] + answered[1];
    assert_eq!(total_answered + refused, CALLS as u64);
    // Each call reserves exactly what it costs, so exactly the calls that fit are answered.
    assert_eq!(total_answered, FITS, "answered by each: {answered:?}");
    assert!(
        answered.iter().all(|&n| n > 0),
        "both instances answered some: {answered:?}"
    );

    // Both instances see the one count, within the limit.
    let spent = [settled_spend(&apps[0]).await, settled_spend(&apps[1]).await];
    assert_eq!(spent[0], spent[1], "the instances agree");
    assert!(spent[0] <= usd(limit), "{spent:?} > {limit:?}");
    assert_eq!(spent[0], usd(Usd::from_nanos(cost.nanos() * FITS)));

    // The usage log says the same: every call a row, the refusals at no cost.
    apps[0].usage_rows().await;
    let rows = apps[1].usage_rows().await;
    assert_eq!(rows.len(), CALLS);
    let charged: f64 = rows.iter().map(|r| r.estimated_cost_usd).sum();
    assert!(
        (charged - spent[0]).abs() < 1e-9,
        "usage log {charged} != {spent:?}"
    );
    let refusals: Vec<_> = rows
        .iter()
        .filter(|r| r.error_code.as_deref() == Some("budget_exceeded"))
        .collect();
    assert_eq!(refusals.len() as u64, refused);
    assert!(
        refusals
            .iter()
            .all(|r| !r.success && r.estimated_cost_usd == 0.0)
    );
    let refused_counted: f64 = {
        let mut sum = 0.0;
        for app in &apps {
            sum += metric(
                &app.metrics().await,
                &format!("commander_budget_refusals_total{{budget=\"{BUDGET}\"}}"),
            );
        }
        sum
    };
    assert_eq!(refused_counted, refused as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_refuses_covered_calls_and_lets_the_others_through() {
    let database = TestDatabase::create();
    let proxy = TcpProxy::start(redis_address()).await;
    let app = TestApp::spawn_with(instance_settings(
        database.url(),
        (format!("redis://{}", proxy.address()), REDIS_CUT_TIMEOUT_MS),
        own_prefix(),
        Usd::from_nanos(1_000_000_000),
        OnStoreErrorSetting::Deny,
    ))
    .await;
    assert_eq!(app.chat(METERED, MESSAGE).await.status(), 200);

    proxy.cut();
    let refused = app.chat(METERED, MESSAGE).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let refused_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(error_body(refused).await["code"], "budget_unavailable");
    // No budget covers it: the budget store is not asked.
    assert_eq!(app.chat(FREE, MESSAGE).await.status(), 200);
    assert!(
        metric(&app.metrics().await, "commander_budget_store_errors_total") > 0.0,
        "the store errors are counted"
    );

    let rows = app.usage_rows().await;
    let row = rows
        .iter()
        .find(|r| r.request_id == refused_id)
        .expect("the refusal is logged");
    assert_eq!(row.error_code.as_deref(), Some("budget_unavailable"));
    assert_eq!(row.estimated_cost_usd, 0.0);
    assert!(!row.success);

    // Once Redis is back, covered calls are admitted again.
    proxy.restore();
    eventually("covered calls admitted again", async || {
        (app.chat(METERED, MESSAGE).await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_with_on_store_error_allow_lets_covered_calls_through() {
    let database = TestDatabase::create();
    // A port nobody listens on: taken, then given back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(instance_settings(
        database.url(),
        (format!("redis://127.0.0.1:{port}"), REDIS_ABSENT_TIMEOUT_MS),
        own_prefix(),
        Usd::from_nanos(1_000_000_000),
        OnStoreErrorSetting::Allow,
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(app.chat(METERED, MESSAGE).await.status(), 200);
    }
    assert!(metric(&app.metrics().await, "commander_budget_store_errors_total") >= 3.0);
    // Unreserved, but their spend reaches the usage log.
    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.success && r.estimated_cost_usd > 0.0));
}

/// Deletes every key under `prefix`; how many there were.
async fn delete_keys(prefix: &str) -> i64 {
    redis_integer(&[
        "EVAL",
        "local n = 0 for _, key in ipairs(redis.call('KEYS', ARGV[1])) do \
         n = n + redis.call('DEL', key) end return n",
        "0",
        &format!("{prefix}:*"),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_rebuilds_the_count_from_the_usage_log() {
    let database = TestDatabase::create();
    let prefix = own_prefix();
    let cost = call_cost();
    // Room for five calls, not six.
    let limit = Usd::from_nanos(cost.nanos() * 5 + cost.nanos() / 2);
    let app = TestApp::spawn_with(instance_settings(
        database.url(),
        (redis_url(), REDIS_UP_TIMEOUT_MS),
        prefix.clone(),
        limit,
        OnStoreErrorSetting::Deny,
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(app.chat(METERED, MESSAGE).await.status(), 200);
    }
    let before = settled_spend(&app).await;
    assert_eq!(before, usd(Usd::from_nanos(cost.nanos() * 3)));
    // The calls are in the usage log before Redis forgets them.
    app.usage_rows().await;

    assert!(delete_keys(&prefix).await > 0, "the budget's keys existed");
    // The next call finds no count, rebuilds it from the usage log and is counted on top.
    assert_eq!(app.chat(METERED, MESSAGE).await.status(), 200);
    assert_eq!(
        settled_spend(&app).await,
        usd(Usd::from_nanos(cost.nanos() * 4))
    );
    // Not reset: one more fits, then the budget is spent.
    assert_eq!(app.chat(METERED, MESSAGE).await.status(), 200);
    assert_eq!(app.chat(METERED, MESSAGE).await.status(), 402);

    // A read alone rebuilds it too, at what it was.
    let before = settled_spend(&app).await;
    app.usage_rows().await;
    assert!(delete_keys(&prefix).await > 0);
    assert_eq!(shown(&app).await["spent_usd"], before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_left_by_a_dead_instance_blocks_until_its_lease_ends() {
    const LEASE: Duration = Duration::from_secs(2);
    let database = TestDatabase::create();
    let prefix = own_prefix();
    let cost = call_cost();
    let limit = Usd::from_nanos(cost.nanos() * 10);
    let app = TestApp::spawn_with(instance_settings(
        database.url(),
        (redis_url(), REDIS_UP_TIMEOUT_MS),
        prefix.clone(),
        limit,
        OnStoreErrorSetting::Deny,
    ))
    .await;
    // Counted (and so seeded) by the server first.
    assert_eq!(app.chat(METERED, MESSAGE).await.status(), 200);
    settled_spend(&app).await;

    // Another instance, on the same Redis, reserves what is left and dies without settling.
    let budget = BudgetDraft {
        id: BUDGET.to_owned(),
        scope: "specialist".to_owned(),
        subject: Some(METERED.to_owned()),
        period: "total".to_owned(),
        limit_usd: usd(limit),
        alert_usd: None,
    }
    .validate()
    .unwrap();
    let now = Utc::now();
    let window = budget.period().window(now);
    let counter = Counter {
        key: format!("{}:{}", budget.counter_name(), window.key),
        limit: budget.limit(),
        alert: budget.alert(),
        window_ends: window.resets_at,
    };
    let lease_ends = now + chrono::TimeDelta::from_std(LEASE).unwrap();
    {
        let dying = RedisLedger::new(&RedisConfig {
            url: Some(redis_url()),
            timeout_ms: NonZeroU64::new(2_000).unwrap(),
            key_prefix: prefix.clone(),
        })
        .unwrap();
        let held = dying
            .reserve(
                "dead-instance-call",
                std::slice::from_ref(&counter),
                Usd::from_nanos(cost.nanos() * 9),
                lease_ends,
                now,
            )
            .await
            .unwrap();
        assert!(matches!(held, ReserveOutcome::Admitted(_)), "{held:?}");
    }
    let reserved = shown(&app).await["reserved_usd"].as_f64().unwrap();
    assert_eq!(reserved, usd(Usd::from_nanos(cost.nanos() * 9)));

    let blocked = app.chat(METERED, MESSAGE).await;
    assert_eq!(blocked.status(), 402);
    assert_eq!(error_body(blocked).await["code"], "budget_exceeded");

    // Once the lease is over, the budget is free again.
    let wait = (lease_ends - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(app.chat(METERED, MESSAGE).await.status(), 200);
    assert_eq!(
        settled_spend(&app).await,
        usd(Usd::from_nanos(cost.nanos() * 2))
    );
}
