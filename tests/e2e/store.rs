//! The usage log on both backends: migrations, every column, batches, reports, outages, the
//! spill file and shutdown. PostgreSQL tests each create and drop a database of their own.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use core_domain::{EmailHash, ErrorCode, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd};
use diesel::{Connection, SqliteConnection, connection::SimpleConnection};
use e2e_support::{TcpProxy, TestDatabase, eventually};
use usage_store::{
    Backend, DatabaseConfig, Durability, GroupBy, Scope, SummaryQuery, TargetQuery, TargetRow,
    UsageRecord, UsageStore, spawn_writer,
};

/// A database to test against, kept alive (and dropped) with the test.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase, tempfile::TempDir),
}

impl Db {
    fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres => {
                Self::Postgres(TestDatabase::create(), tempfile::tempdir().unwrap())
            }
        }
    }

    fn dir(&self) -> &std::path::Path {
        match self {
            Self::Sqlite(dir) | Self::Postgres(_, dir) => dir.path(),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}", dir.path().join("usage.db").display()),
            Self::Postgres(db, _) => db.url(),
        }
    }

    fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url(),
            connect_timeout_ms: 500,
            sqlite_busy_timeout_ms: 50,
            shutdown_timeout_ms: 500,
            flush_interval_ms: 20,
            ..DatabaseConfig::default()
        }
        .with_files_in(self.dir())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn record(id: &str) -> UsageRecord {
    UsageRecord {
        timestamp: at(20, 12),
        ..usage_store::fixture::usage_record(id)
    }
}

on_both_backends!(
    migrations_apply_on_an_empty_database,
    every_column_round_trips,
    batches_are_written_once_however_often_they_are_sent,
    summary_matches_hand_computed_numbers,
    rows_left_at_shutdown_are_applied_exactly_once_after_a_restart,
    shutdown_during_an_outage_is_bounded_and_loses_nothing,
    shutdown_drains_the_queue,
    a_call_of_three_attempts_goes_through_the_writer_and_back,
    a_replayed_batch_stores_each_attempt_once,
    the_by_target_report_counts_every_attempt,
);

async fn migrations_apply_on_an_empty_database(backend: Backend) {
    let db = Db::new(backend);
    let config = db.config();
    let store = blocking(move || UsageStore::connect(&config).unwrap()).await;
    assert_eq!(store.backend(), backend);
    let s = store.clone();
    blocking(move || {
        assert_eq!(s.migrate().unwrap(), 0, "connect applied them all");
        s.check_ready().unwrap();
        assert_eq!(s.count_rows().unwrap(), 0);
    })
    .await;
}

async fn every_column_round_trips(backend: Backend) {
    let db = Db::new(backend);
    let config = db.config();
    let rows = blocking(move || {
        let store = UsageStore::connect(&config).unwrap();
        let mut failed = record("failed-one");
        failed.error_code = Some(ErrorCode::UpstreamTimeout);
        failed.user_email_hash = None;
        failed.time_to_first_token = None;
        failed.usage = TokenUsage::estimated(7, 0);
        failed.pricing_known = false;
        failed.streamed = false;
        let mut full = record("full-one");
        full.client_request_id = Some(RequestId::parse("trace-7").unwrap());
        full.usage = TokenUsage::reported(1200, 345)
            .with_cache(200, 50)
            .with_reasoning(100);
        // Longer than the column: stored cut to its first END_USER_MAX_CHARS characters.
        full.end_user = Some("ü".repeat(usage_store::END_USER_MAX_CHARS + 44));
        store.insert_batch(&[full, failed]).unwrap();
        store.all_rows().unwrap()
    })
    .await;
    assert_eq!(rows.len(), 2);
    let full = &rows[0];
    assert_eq!(full.timestamp, at(20, 12).naive_utc());
    assert_eq!(full.request_id, "full-one");
    assert_eq!(
        full.user_email_hash.as_deref(),
        Some(EmailHash::of_email("ada@example.com").as_str())
    );
    assert_eq!(full.specialist_id, "financial_analyst");
    assert_eq!(full.specialist_name, "Financial Analyst");
    assert_eq!(full.provider, "openai");
    assert_eq!(full.model, "gpt-4o");
    assert_eq!((full.input_tokens, full.output_tokens), (1200, 345));
    assert!(!full.tokens_estimated);
    assert_eq!(full.estimated_cost_usd, 0.00645);
    assert!(full.pricing_known);
    assert_eq!(full.latency_ms, 1234.5);
    assert_eq!(full.ttft_ms, Some(250.0));
    assert!(full.success);
    assert_eq!(full.error_code, None);
    assert!(full.streamed);
    assert_eq!(full.client_request_id.as_deref(), Some("trace-7"));
    assert_eq!(
        (
            full.cached_input_tokens,
            full.cache_write_tokens,
            full.reasoning_tokens
        ),
        (200, 50, 100)
    );
    assert_eq!(
        full.end_user.as_deref(),
        Some("ü".repeat(usage_store::END_USER_MAX_CHARS).as_str())
    );

    let failed = &rows[1];
    assert_eq!(failed.user_email_hash, None);
    assert!(!failed.success);
    assert_eq!(failed.error_code.as_deref(), Some("upstream_timeout"));
    assert!(failed.tokens_estimated && !failed.pricing_known && !failed.streamed);
    assert_eq!(failed.ttft_ms, None);
    assert_eq!(failed.client_request_id, None);
    assert_eq!(
        (
            failed.cached_input_tokens,
            failed.cache_write_tokens,
            failed.reasoning_tokens
        ),
        (0, 0, 0)
    );
    assert_eq!(failed.end_user, None);
}

async fn batches_are_written_once_however_often_they_are_sent(backend: Backend) {
    let db = Db::new(backend);
    let config = db.config();
    blocking(move || {
        let store = UsageStore::connect(&config).unwrap();
        let batch: Vec<UsageRecord> = (0..1200).map(|i| record(&format!("r{i}"))).collect();
        assert_eq!(store.insert_batch(&batch).unwrap(), 1200);
        let mut again = batch;
        again.push(record("new"));
        assert_eq!(store.insert_batch(&again).unwrap(), 1);
        assert_eq!(store.count_rows().unwrap(), 1201);
    })
    .await;
}

async fn summary_matches_hand_computed_numbers(backend: Backend) {
    let db = Db::new(backend);
    let config = db.config();
    let ada = EmailHash::of_email("ada@example.com");
    let grace = EmailHash::of_email("grace@example.com");
    let mut records = Vec::new();
    // "analyst": 20 calls by ada on the 20th, latencies 10..=200 ms, two of them failed.
    for i in 1..=20u32 {
        let mut r = record(&format!("a{i}"));
        r.latency = Duration::from_millis(u64::from(i) * 10);
        r.usage = TokenUsage::reported(100, 10 * i);
        r.cost = Usd::from_nanos(1_000_000); // $0.001
        if i % 10 == 0 {
            r.error_code = Some(ErrorCode::UpstreamError);
        }
        records.push(r);
    }
    // "reviewer": one call by grace on the 21st.
    let mut r = record("b1");
    r.specialist_id = SpecialistId::parse("reviewer").unwrap();
    r.model = "claude-3-haiku".into();
    r.provider = ProviderKind::Anthropic;
    r.user_email_hash = Some(grace.clone());
    r.timestamp = at(21, 9);
    r.latency = Duration::from_millis(7);
    r.usage = TokenUsage::reported(5, 6);
    r.cost = Usd::from_nanos(2_500_000);
    records.push(r);
    // An anonymous call, and one outside the window.
    let mut anonymous = record("c1");
    anonymous.user_email_hash = None;
    anonymous.timestamp = at(21, 10);
    records.push(anonymous);
    let mut late = record("late");
    late.timestamp = at(25, 0);
    records.push(late);

    let s = blocking(move || {
        let store = UsageStore::connect(&config).unwrap();
        store.insert_batch(&records).unwrap();
        store
    })
    .await;
    let query = |group_by, scope| SummaryQuery {
        from: at(20, 0),
        to: at(22, 0),
        group_by,
        scope,
    };

    let store = s.clone();
    let by_specialist = blocking(move || {
        store
            .summary(&query(GroupBy::Specialist, Scope::Everyone))
            .unwrap()
            .rows
    })
    .await;
    assert_eq!(by_specialist.len(), 2);
    let analyst = &by_specialist[0];
    assert_eq!(analyst.key, "financial_analyst");
    assert_eq!(analyst.requests, 21, "20 of ada's and the anonymous one");
    assert_eq!((analyst.successes, analyst.failures), (19, 2));
    assert_eq!(analyst.input_tokens, 21 * 100 + 1100);
    assert_eq!(analyst.output_tokens, 10 * (1..=20).sum::<i64>() + 345);
    assert!((analyst.cost_usd - (20.0 * 0.001 + 0.00645)).abs() < 1e-9);
    // Latencies 10..=200 and 1234.5: mean (2100 + 1234.5) / 21; the 20th of 21 (nearest rank
    // ceil(0.95 × 21) = 20) is 200.
    assert!((analyst.avg_latency_ms - 3334.5 / 21.0).abs() < 1e-9);
    assert_eq!(analyst.p95_latency_ms, 200.0);
    // The median: the 11th of 21 (ceil(0.5 × 21)).
    assert_eq!(analyst.p50_latency_ms, 110.0);
    let reviewer = &by_specialist[1];
    assert_eq!(reviewer.key, "reviewer");
    assert_eq!(
        (
            reviewer.requests,
            reviewer.input_tokens,
            reviewer.output_tokens
        ),
        (1, 5, 6)
    );
    assert_eq!(
        (
            reviewer.avg_latency_ms,
            reviewer.p50_latency_ms,
            reviewer.p95_latency_ms
        ),
        (7.0, 7.0, 7.0)
    );

    let store = s.clone();
    let by_day = blocking(move || {
        store
            .summary(&query(GroupBy::Day, Scope::Everyone))
            .unwrap()
            .rows
    })
    .await;
    let days: Vec<(&str, i64)> = by_day
        .iter()
        .map(|r| (r.key.as_str(), r.requests))
        .collect();
    assert_eq!(days, [("2026-11-20", 20), ("2026-11-21", 2)]);

    let store = s.clone();
    let by_user = blocking(move || {
        store
            .summary(&query(GroupBy::User, Scope::Everyone))
            .unwrap()
            .rows
    })
    .await;
    let mut users: Vec<(String, i64)> = by_user.into_iter().map(|r| (r.key, r.requests)).collect();
    users.sort();
    let mut expected = vec![
        (ada.to_string(), 20),
        (grace.to_string(), 1),
        ("anonymous".to_owned(), 1),
    ];
    expected.sort();
    assert_eq!(users, expected);

    let store = s.clone();
    let grace_only = grace.clone();
    let own = blocking(move || {
        store
            .summary(&query(GroupBy::Provider, Scope::Caller(Some(grace_only))))
            .unwrap()
            .rows
    })
    .await;
    assert_eq!(own.len(), 1);
    assert_eq!((own[0].key.as_str(), own[0].requests), ("anthropic", 1));

    let store = s.clone();
    let anonymous_only = blocking(move || {
        store
            .summary(&query(GroupBy::Model, Scope::Caller(None)))
            .unwrap()
            .rows
    })
    .await;
    assert_eq!(anonymous_only.len(), 1);
    assert_eq!(
        (anonymous_only[0].key.as_str(), anonymous_only[0].requests),
        ("gpt-4o", 1)
    );
}

async fn rows_left_at_shutdown_are_applied_exactly_once_after_a_restart(backend: Backend) {
    for durability in [Durability::Journal, Durability::Memory] {
        let db = Db::new(backend);
        let outage = Outage::start(&db).await;
        let mut config = db.config();
        config.url = outage.url.clone();
        config.queue_capacity = 4;
        config.durability = durability;
        let connect = config.clone();
        let store = blocking(move || UsageStore::connect(&connect).unwrap()).await;

        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        outage.begin().await;
        for i in 0..30 {
            sink.record(record(&format!("left-{i}")));
        }
        // Stop while the database is still down: every row waits in the journal.
        tokio::time::timeout(Duration::from_secs(10), writer.shutdown())
            .await
            .expect("shutdown is bounded by its timeout during an outage");
        let stats = sink.stats();
        if durability == Durability::Memory {
            // Write-behind puts in the journal what the queue could not hold, and at shutdown
            // what it still held: every row.
            assert_eq!(stats.spilled, 30, "{stats:?}");
        } else {
            // Every row was journaled from the start; those the queue of 4 could not hold
            // (how many depends on when the writer took its first batch) waited there only.
            assert!((22..=26).contains(&stats.spilled), "{stats:?}");
        }
        outage.end().await;
        // The process ends, letting go of the journal.
        drop(sink);

        // The next start applies the journal, once.
        for _ in 0..2 {
            let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
            sink.flush().await.unwrap();
            writer.shutdown().await;
        }
        let store = store.clone();
        let rows = blocking(move || store.all_rows().unwrap()).await;
        assert_eq!(rows.len(), 30, "{durability:?}");
        let mut ids: Vec<String> = rows.into_iter().map(|r| r.request_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 30, "{durability:?}: no duplicates");
    }
}

/// A batch the writer is already retrying when shutdown is asked for must not hold shutdown up
/// until the database returns: the writer stops once the shutdown timeout passes, and the
/// rows wait in the journal for the next start.
async fn shutdown_during_an_outage_is_bounded_and_loses_nothing(backend: Backend) {
    for durability in [Durability::Journal, Durability::Memory] {
        let db = Db::new(backend);
        let outage = Outage::start(&db).await;
        let mut config = db.config();
        config.url = outage.url.clone();
        config.durability = durability;
        let connect = config.clone();
        let store = blocking(move || UsageStore::connect(&connect).unwrap()).await;
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        outage.begin().await;
        for i in 0..5 {
            sink.record(record(&format!("stuck-{i}")));
        }
        eventually("the writer to take the batch and retry it", async || {
            (sink.stats().write_errors > 0).then_some(())
        })
        .await;

        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(10), writer.shutdown())
            .await
            .expect("shutdown does not wait for the database to come back");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "shutdown took {:?} with a {} ms timeout",
            started.elapsed(),
            config.shutdown_timeout_ms
        );
        let spilled = if durability == Durability::Memory {
            5
        } else {
            0
        };
        assert_eq!(
            sink.stats().spilled,
            spilled,
            "{durability:?}: {:?}",
            sink.stats()
        );
        outage.end().await;
        drop(sink);

        // Nothing was lost: the next start brings the batch in.
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        sink.flush().await.unwrap();
        writer.shutdown().await;
        let store = store.clone();
        assert_eq!(
            blocking(move || store.count_rows().unwrap()).await,
            5,
            "{durability:?}"
        );
    }
}

async fn shutdown_drains_the_queue(backend: Backend) {
    let db = Db::new(backend);
    let mut config = db.config();
    config.flush_interval_ms = 60_000;
    config.batch_size = 1000;
    let connect = config.clone();
    let store = blocking(move || UsageStore::connect(&connect).unwrap()).await;
    let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
    for i in 0..157 {
        sink.record(record(&format!("drain-{i}")));
    }
    writer.shutdown().await;
    assert_eq!(blocking(move || store.count_rows().unwrap()).await, 157);
    assert_eq!(sink.stats().spilled, 0);
}

async fn a_call_of_three_attempts_goes_through_the_writer_and_back(backend: Backend) {
    let db = Db::new(backend);
    let config = db.config();
    let connect = config.clone();
    let store = blocking(move || UsageStore::connect(&connect).unwrap()).await;
    let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
    let fallback = UsageRecord {
        timestamp: at(20, 12),
        ..usage_store::fixture::fallback_record("fb-1")
    };
    sink.record(fallback.clone());
    sink.record(record("single"));
    sink.flush().await.unwrap();
    writer.shutdown().await;

    let (call, single, missing) = blocking(move || {
        let id = |raw: &str| RequestId::parse(raw).unwrap();
        (
            store.call(&id("fb-1")).unwrap().unwrap(),
            store.call(&id("single")).unwrap().unwrap(),
            store.call(&id("missing")).unwrap(),
        )
    })
    .await;
    assert_eq!(call.attempts, fallback.attempt_details);
    assert_eq!(call.row.attempts, 3);
    assert_eq!(
        (call.row.provider.as_str(), call.row.model.as_str()),
        ("anthropic", "claude-sonnet-4"),
        "the row names the target that served the call"
    );
    assert_eq!((call.row.input_tokens, call.row.output_tokens), (2440, 340));
    assert_eq!(single.row.attempts, 1);
    assert!(single.attempts.is_empty());
    assert_eq!(missing, None);
}

async fn a_replayed_batch_stores_each_attempt_once(backend: Backend) {
    let db = Db::new(backend);
    let config = db.config();
    blocking(move || {
        let store = UsageStore::connect(&config).unwrap();
        let batch = vec![usage_store::fixture::fallback_record("fb-1"), record("r1")];
        assert_eq!(store.insert_batch(&batch).unwrap(), 2);
        // A replay, with a new call of several attempts behind it (on PostgreSQL this takes
        // the path that skips stored ids instead of COPY).
        let mut again = batch.clone();
        again.push(usage_store::fixture::fallback_record("fb-2"));
        assert_eq!(store.insert_batch(&again).unwrap(), 1);
        for id in ["fb-1", "fb-2"] {
            let call = store.call(&RequestId::parse(id).unwrap()).unwrap().unwrap();
            assert_eq!(call.attempts, batch[0].attempt_details, "{id}");
        }
        assert_eq!(store.count_rows().unwrap(), 3);
    })
    .await;
}

async fn the_by_target_report_counts_every_attempt(backend: Backend) {
    let db = Db::new(backend);
    let config = db.config();
    let ada = EmailHash::of_email("ada@example.com");
    let mut records = Vec::new();
    // Two calls served by gpt-4o at once, one failed there at once.
    for (i, code) in [None, None, Some(ErrorCode::UpstreamTimeout)]
        .into_iter()
        .enumerate()
    {
        records.push(UsageRecord {
            error_code: code,
            timestamp: at(20, 12),
            ..record(&format!("single-{i}"))
        });
    }
    // Two calls of three attempts (gpt-4o 429, llama error, claude continued and served).
    for i in 0..2 {
        records.push(UsageRecord {
            timestamp: at(21, 9),
            ..usage_store::fixture::fallback_record(&format!("fb-{i}"))
        });
    }
    // One that never reached an upstream: a call, but no attempt.
    records.push(UsageRecord {
        attempts: 0,
        error_code: Some(ErrorCode::ProviderNotConfigured),
        usage: TokenUsage::reported(0, 0),
        cost: Usd::ZERO,
        timestamp: at(21, 10),
        ..record("unconfigured")
    });
    // Outside the window, and someone else's call.
    records.push(UsageRecord {
        timestamp: at(25, 0),
        ..usage_store::fixture::fallback_record("late")
    });
    records.push(UsageRecord {
        user_email_hash: Some(EmailHash::of_email("grace@example.com")),
        ..record("grace")
    });

    let report = |scope| {
        let config = config.clone();
        let records = records.clone();
        blocking(move || {
            let store = UsageStore::connect(&config).unwrap();
            store.insert_batch(&records).unwrap();
            store
                .targets(&TargetQuery {
                    from: at(20, 0),
                    to: at(22, 0),
                    scope,
                })
                .unwrap()
        })
    };
    let everyone = report(Scope::Everyone).await;
    assert_eq!((everyone.calls, everyone.fallback_calls), (7, 2));
    let target = |provider: &str, model: &str| {
        everyone
            .targets
            .iter()
            .find(|t| t.provider == provider && t.model == model)
            .unwrap_or_else(|| panic!("{provider}/{model} in {:?}", everyone.targets))
            .clone()
    };
    let gpt = target("openai", "gpt-4o");
    // single-0, single-1, single-2, grace, and the first attempt of each fallback.
    assert_eq!(
        (gpt.attempts, gpt.successes, gpt.failures),
        (6, 3, 3),
        "{gpt:?}"
    );
    assert_eq!(
        gpt.failures_by_code.into_iter().collect::<Vec<_>>(),
        [
            ("upstream_rate_limited".to_owned(), 2),
            ("upstream_timeout".to_owned(), 1)
        ]
    );
    assert_eq!((gpt.input_tokens, gpt.output_tokens), (4 * 1200, 4 * 345));
    assert!(
        (gpt.cost_usd - 4.0 * 0.00645).abs() < 1e-9,
        "{}",
        gpt.cost_usd
    );
    let llama = target("openai", "llama-3.1-70b");
    assert_eq!(
        (
            llama.attempts,
            llama.failures,
            llama.output_tokens,
            llama.continuations
        ),
        (2, 2, 80, 0)
    );
    let claude = target("anthropic", "claude-sonnet-4");
    assert_eq!(
        claude,
        TargetRow {
            provider: "anthropic".into(),
            model: "claude-sonnet-4".into(),
            attempts: 2,
            successes: 2,
            failures: 0,
            failures_by_code: Default::default(),
            continuations: 2,
            input_tokens: 2480,
            output_tokens: 600,
            cost_usd: claude.cost_usd,
        }
    );
    assert!((claude.cost_usd - 2.0 * 0.00822).abs() < 1e-9);
    assert_eq!(everyone.targets.len(), 3, "{:?}", everyone.targets);

    let own = report(Scope::Caller(Some(ada))).await;
    assert_eq!((own.calls, own.fallback_calls), (6, 2));
    assert_eq!(
        own.targets.iter().map(|t| t.attempts).sum::<i64>(),
        5 + 4,
        "grace's call left out"
    );
}

/// Makes the database unreachable and reachable again: PostgreSQL through a proxy of our own
/// that is cut (the shared server is never stopped); SQLite by another connection holding the
/// write lock.
struct Outage {
    url: String,
    proxy: Option<TcpProxy>,
    sqlite_path: Option<std::path::PathBuf>,
    lock_release: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Outage {
    async fn start(db: &Db) -> Self {
        match db {
            Db::Postgres(database, _) => {
                let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
                Self {
                    url: database.url_via(proxy.address()),
                    proxy: Some(proxy),
                    sqlite_path: None,
                    lock_release: std::sync::Mutex::new(None),
                }
            }
            Db::Sqlite(dir) => Self {
                url: db.url(),
                proxy: None,
                sqlite_path: Some(dir.path().join("usage.db")),
                lock_release: std::sync::Mutex::new(None),
            },
        }
    }

    async fn begin(&self) {
        if let Some(proxy) = &self.proxy {
            proxy.cut();
        }
        if let Some(path) = self.sqlite_path.clone() {
            let (locked_tx, locked_rx) = std::sync::mpsc::channel();
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                conn.batch_execute("BEGIN EXCLUSIVE").unwrap();
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv();
                conn.batch_execute("COMMIT").unwrap();
            });
            locked_rx.recv().unwrap();
            *self.lock_release.lock().unwrap() = Some(release_tx);
        }
    }

    async fn end(&self) {
        if let Some(proxy) = &self.proxy {
            proxy.restore();
        }
        if let Some(release) = self.lock_release.lock().unwrap().take() {
            release.send(()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_during_a_postgres_outage_all_arrive_exactly_once() {
    outage_loses_nothing(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_while_sqlite_is_locked_all_arrive_exactly_once() {
    outage_loses_nothing(Backend::Sqlite).await;
}

async fn outage_loses_nothing(backend: Backend) {
    let db = Db::new(backend);
    let outage = Outage::start(&db).await;
    let mut config = db.config();
    config.url = outage.url.clone();
    config.queue_capacity = 16;
    config.batch_size = 8;
    let connect = config.clone();
    let store = blocking(move || UsageStore::connect(&connect).unwrap()).await;
    let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();

    for i in 0..10 {
        sink.record(record(&format!("before-{i}")));
    }
    sink.flush().await.unwrap();
    outage.begin().await;
    // More than the queue holds: the overflow is spilled while the writer retries.
    for i in 0..100 {
        sink.record(record(&format!("during-{i}")));
    }
    // The outage ends only once the writer has met it and spilled the overflow, so the
    // recovery below is a real one.
    eventually(
        "the writer to fail a write and spill the overflow",
        async || {
            let during = sink.stats();
            (during.write_errors > 0 && during.spilled > 0).then_some(())
        },
    )
    .await;
    outage.end().await;

    tokio::time::timeout(Duration::from_secs(30), sink.flush())
        .await
        .expect("the writer recovers within 30 s")
        .unwrap();
    writer.shutdown().await;
    let rows = blocking(move || store.all_rows().unwrap()).await;
    assert_eq!(rows.len(), 110, "{:?}", sink.stats());
    let mut ids: Vec<String> = rows.into_iter().map(|r| r.request_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 110, "no duplicates");
    let stats = sink.stats();
    assert_eq!(stats.spilled, stats.replayed, "{stats:?}");
}
