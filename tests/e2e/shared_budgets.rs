//! Budgets counted in Redis (`http_api::RedisLedger`): the ledger contract, two instances
//! sharing one budget exactly, a lease left by an instance that died, expiry of old windows'
//! keys, and a Redis that does not answer. Needs the Redis at `COMMANDER_TEST_REDIS_URL`
//! (`.ci/run` starts it); each test has its own key prefix.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use budgets::{Counter, Ledger, LedgerError, ReserveOutcome, Standing};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use core_domain::Usd;
use e2e_support::{TcpProxy, eventually};
use http_api::{RedisConfig, RedisLedger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::shared_limits::{own_prefix, redis_address, redis_url};

fn config(url: String, prefix: &str, timeout_ms: u64) -> RedisConfig {
    RedisConfig {
        url: Some(url),
        timeout_ms: NonZeroU64::new(timeout_ms).unwrap(),
        key_prefix: prefix.to_owned(),
    }
}

/// A ledger of its own (its own connections) on the shared Redis, under `prefix`.
fn instance(prefix: &str) -> RedisLedger {
    RedisLedger::new(&config(redis_url(), prefix, 2_000)).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn counter(
    name: &str,
    limit: u64,
    alert: Option<u64>,
    window_ends: Option<DateTime<Utc>>,
) -> Counter {
    Counter {
        key: name.to_owned(),
        limit: Usd::from_nanos(limit),
        alert: alert.map(Usd::from_nanos),
        window_ends,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_ledger_keeps_the_ledger_contract() {
    let prefix = own_prefix();
    budgets::conformance::check(&instance(&prefix), &prefix).await;
}

/// As on a server worker (a single-threaded runtime): the first calls go through the shared
/// connection, waited for rather than refused, the later ones through the worker's own.
#[tokio::test(flavor = "current_thread")]
async fn the_redis_ledger_keeps_the_ledger_contract_on_a_server_workers_runtime() {
    let prefix = own_prefix();
    let ledger = instance(&prefix);
    budgets::conformance::check(&ledger, &prefix).await;
    let again = format!("{prefix}:again");
    budgets::conformance::check(&ledger, &again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_admit_exactly_what_one_budget_holds() {
    const AMOUNT: u64 = 7_000_000;
    let prefix = own_prefix();
    let ledgers = [Arc::new(instance(&prefix)), Arc::new(instance(&prefix))];
    let budget = [counter("team", 50 * AMOUNT, None, None)];
    for ledger in &ledgers {
        ledger.seed(&budget[0], Usd::ZERO, now()).await.unwrap();
    }
    let lease = now() + TimeDelta::minutes(5);
    let calls: Vec<_> = (0..200)
        .map(|call| {
            let ledger = Arc::clone(&ledgers[call % 2]);
            let budget = budget.clone();
            tokio::spawn(async move {
                let id = format!("call-{call}");
                let outcome = ledger
                    .reserve(&id, &budget, Usd::from_nanos(AMOUNT), lease, now())
                    .await
                    .unwrap();
                (id, call % 2, outcome)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for call in calls {
        let (id, by, outcome) = call.await.unwrap();
        match outcome {
            ReserveOutcome::Admitted(standings) => {
                assert!(
                    standings[0].reserved.nanos() <= 50 * AMOUNT,
                    "{standings:?}"
                );
                admitted.push((id, by));
            }
            ReserveOutcome::Refused { index: 0, standing } => {
                assert!(standing.refuses(Usd::from_nanos(AMOUNT), budget[0].limit));
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((admitted.len(), refused), (50, 150));
    assert!(
        admitted.iter().any(|(_, by)| *by == 0) && admitted.iter().any(|(_, by)| *by == 1),
        "both instances admitted some"
    );

    for (id, by) in &admitted {
        ledgers[*by]
            .settle(id, &budget, Usd::from_nanos(AMOUNT), now())
            .await
            .unwrap();
    }
    for ledger in &ledgers {
        assert_eq!(
            ledger.standings(&budget, now()).await.unwrap(),
            vec![Some(Standing {
                spent: budget[0].limit,
                reserved: Usd::ZERO,
            })]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_an_instance_that_died_expires_for_the_others() {
    let prefix = own_prefix();
    let budget = [counter("team", 100, None, None)];
    let lease_ends = now() + TimeDelta::seconds(30);
    {
        let dying = instance(&prefix);
        dying.seed(&budget[0], Usd::ZERO, now()).await.unwrap();
        let held = dying
            .reserve("lost", &budget, Usd::from_nanos(100), lease_ends, now())
            .await
            .unwrap();
        assert!(matches!(held, ReserveOutcome::Admitted(_)), "{held:?}");
        // Dropped without settling: its process is gone.
    }
    let survivor = instance(&prefix);
    let later_lease = lease_ends + TimeDelta::minutes(5);
    let just_before = lease_ends - TimeDelta::milliseconds(1);
    assert_eq!(
        survivor
            .reserve(
                "next",
                &budget,
                Usd::from_nanos(1),
                later_lease,
                just_before
            )
            .await
            .unwrap(),
        ReserveOutcome::Refused {
            index: 0,
            standing: Standing {
                spent: Usd::ZERO,
                reserved: Usd::from_nanos(100),
            },
        }
    );
    // A lease is over at its end, as in the local ledger.
    assert_eq!(
        survivor
            .reserve("next", &budget, Usd::from_nanos(1), later_lease, lease_ends)
            .await
            .unwrap(),
        ReserveOutcome::Admitted(vec![Standing {
            spent: Usd::ZERO,
            reserved: Usd::from_nanos(1),
        }])
    );
    // The dead instance's settlement, should it come after all, frees nothing more.
    let settled = survivor
        .settle("lost", &budget, Usd::from_nanos(10), lease_ends)
        .await
        .unwrap();
    assert_eq!(
        settled.standings,
        vec![Some(Standing {
            spent: Usd::from_nanos(10),
            reserved: Usd::from_nanos(1),
        })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_told_once_per_window_across_instances() {
    let prefix = own_prefix();
    let (first, second) = (instance(&prefix), instance(&prefix));
    let fresh = counter("fresh", 1_000, Some(50), None);
    // Rebuilt from the usage log already past its alert: told before, not again.
    let rebuilt = counter("rebuilt", 1_000, Some(50), None);
    first
        .seed(&fresh, Usd::from_nanos(40), now())
        .await
        .unwrap();
    first
        .seed(&rebuilt, Usd::from_nanos(60), now())
        .await
        .unwrap();
    let both = [fresh, rebuilt];
    let settled = first
        .settle("a", &both, Usd::from_nanos(5), now())
        .await
        .unwrap();
    assert!(settled.alerted.is_empty(), "{settled:?}");
    // The crossing is told by whichever instance makes it, and by no other after.
    let settled = second
        .settle("b", &both, Usd::from_nanos(5), now())
        .await
        .unwrap();
    assert_eq!(settled.alerted, vec![0]);
    let settled = first
        .settle("c", &both, Usd::from_nanos(5), now())
        .await
        .unwrap();
    assert!(settled.alerted.is_empty(), "{settled:?}");
    assert_eq!(
        settled.standings,
        vec![
            Some(Standing {
                spent: Usd::from_nanos(55),
                reserved: Usd::ZERO,
            }),
            Some(Standing {
                spent: Usd::from_nanos(75),
                reserved: Usd::ZERO,
            }),
        ]
    );
}

/// One command to the shared Redis over RESP, for what the ledger does not show (key expiry);
/// the integer reply.
pub(crate) async fn redis_integer(args: &[&str]) -> i64 {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    let mut stream = tokio::net::TcpStream::connect(redis_address())
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        reply.push(byte[0]);
    }
    let reply = String::from_utf8(reply).unwrap();
    reply
        .strip_prefix(':')
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("{args:?} answered {reply:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_keys_expire_a_day_after_it_ends_on_the_callers_clock_and_a_totals_never() {
    let prefix = own_prefix();
    let ledger = instance(&prefix);
    let day = TimeDelta::days(1);
    // Reckoned on the caller's clock, which says when a window ends (not on Redis's).
    let month = counter("month", 1_000, Some(10), Some(now() + TimeDelta::days(20)));
    // Over by the caller's clock: kept a day from now all the same (it is still being used).
    let over = counter("over", 1_000, Some(10), Some(now() - TimeDelta::days(3)));
    let total = counter("total", 1_000, Some(10), None);
    let all = [month, over, total];
    // Seeded past its alert, so the alert flag exists too; a held reservation makes the rest.
    for counter in &all {
        ledger
            .seed(counter, Usd::from_nanos(20), now())
            .await
            .unwrap();
    }
    let outcome = ledger
        .reserve(
            "r",
            &all,
            Usd::from_nanos(5),
            now() + TimeDelta::minutes(5),
            now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, ReserveOutcome::Admitted(_)),
        "{outcome:?}"
    );

    let expected = [
        ("month", TimeDelta::days(21).num_milliseconds()),
        ("over", day.num_milliseconds()),
    ];
    for part in ["spent", "reserved", "holds", "leases", "alerted"] {
        for (name, ttl) in expected {
            let key = format!("{prefix}:{{budget}}:{name}:{part}");
            let left = redis_integer(&["PTTL", &key]).await;
            assert!(
                ttl - 60_000 < left && left <= ttl,
                "{key}: {left} ms, not {ttl}"
            );
        }
        let key = format!("{prefix}:{{budget}}:total:{part}");
        // -1: the key exists and never expires.
        assert_eq!(redis_integer(&["PTTL", &key]).await, -1, "{key}");
    }
}

/// Every operation, each an error within about `timeout`.
async fn every_operation_fails_promptly(ledger: &RedisLedger, timeout: Duration) {
    let budget = [counter("team", 100, None, None)];
    let lease = now() + TimeDelta::minutes(5);
    let slack = timeout + Duration::from_millis(300);
    let started = Instant::now();
    let outcome: Result<_, LedgerError> = ledger
        .reserve("r", &budget, Usd::from_nanos(1), lease, now())
        .await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        started.elapsed() < slack,
        "reserve took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let outcome = ledger.settle("r", &budget, Usd::from_nanos(1), now()).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        started.elapsed() < slack,
        "settle took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let outcome = ledger.seed(&budget[0], Usd::ZERO, now()).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        started.elapsed() < slack,
        "seed took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let outcome = ledger.standings(&budget, now()).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        started.elapsed() < slack,
        "standings took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_does_not_answer_is_an_error_within_the_timeout() {
    let timeout = Duration::from_millis(200);
    let prefix = own_prefix();

    // Nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let ledger = RedisLedger::new(&config(
        format!("redis://127.0.0.1:{closed_port}"),
        &prefix,
        200,
    ))
    .unwrap();
    ledger.connect();
    every_operation_fails_promptly(&ledger, timeout).await;

    // Something listens and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let ledger =
        RedisLedger::new(&config(format!("redis://{silent_address}"), &prefix, 200)).unwrap();
    every_operation_fails_promptly(&ledger, timeout).await;
    held.abort();

    // Redis answered, then the way to it is cut; and once it is back, the ledger answers again.
    let proxy = TcpProxy::start(redis_address()).await;
    let ledger = RedisLedger::new(&config(
        format!("redis://{}", proxy.address()),
        &prefix,
        200,
    ))
    .unwrap();
    let budget = counter("team", 100, None, None);
    ledger.seed(&budget, Usd::ZERO, now()).await.unwrap();
    proxy.cut();
    every_operation_fails_promptly(&ledger, timeout).await;
    proxy.restore();
    eventually("the ledger answers again", async || {
        ledger
            .standings(std::slice::from_ref(&budget), now())
            .await
            .ok()
    })
    .await;
}
