//! `cargo bench -p usage-store --bench writer`: sustained rows per second through the batched
//! writer, into SQLite and into PostgreSQL (`COMMANDER_TEST_POSTGRES_URL`, default the local
//! server; a database is created for the run and dropped after).
//!
//! The queue is made large enough to hold a whole measurement, so what is timed is the writer
//! draining it into the database (hand-off, batching, transactions), not the spill path.

use std::time::{Duration, Instant};

use chrono::Utc;
use core_domain::{EmailHash, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diesel::{Connection, PgConnection, RunQueryDsl};
use usage_store::{DatabaseConfig, UsageRecord, UsageStore, spawn_writer};

fn record(n: u64) -> UsageRecord {
    UsageRecord {
        request_id: RequestId::parse(format!("bench-{n}")).expect("a valid id"),
        client_request_id: None,
        timestamp: Utc::now(),
        user_email_hash: Some(EmailHash::of_email("bench@example.com")),
        specialist_id: SpecialistId::parse("financial_analyst").expect("a valid id"),
        specialist_name: "Financial Analyst".into(),
        provider: ProviderKind::OpenAi,
        model: "gpt-4o".into(),
        usage: TokenUsage::reported(1200, 345),
        cost: Usd::from_nanos(6_450_000),
        pricing_known: true,
        latency: Duration::from_millis(812),
        time_to_first_token: Some(Duration::from_millis(190)),
        error_code: None,
        streamed: true,
        end_user: None,
        api_key: None,
        door: core_domain::Door::ChatCompletions,
        attempts: 1,
        attempt_details: Vec::new(),
    }
}

fn bench_backend(c: &mut Criterion, name: &str, config: DatabaseConfig) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = UsageStore::connect(&config).expect("database reachable");
    let mut next_id = 0u64;
    let mut group = c.benchmark_group("usage writer");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(name, |b| {
        b.iter_custom(|rows| {
            runtime.block_on(async {
                let (sink, writer) = spawn_writer(store.clone(), &config).expect("journal");
                let records: Vec<UsageRecord> = (0..rows)
                    .map(|_| {
                        next_id += 1;
                        record(next_id)
                    })
                    .collect();
                let start = Instant::now();
                for r in records {
                    sink.record(r);
                }
                sink.flush().await.expect("flush");
                let elapsed = start.elapsed();
                writer.shutdown().await;
                assert_eq!(
                    sink.stats().spilled,
                    0,
                    "the bench must not measure spilling"
                );
                elapsed
            })
        })
    });
    group.finish();
}

fn writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = DatabaseConfig {
        queue_capacity: 2_000_000,
        ..DatabaseConfig::default()
    }
    .with_files_in(dir.path());
    bench_backend(
        c,
        "sqlite",
        DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("bench.db").display()),
            ..base.clone()
        },
    );

    let server = std::env::var("COMMANDER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let name = format!("commander_bench_{}", std::process::id());
    let Ok(mut admin) = PgConnection::establish(&format!("{server}/postgres")) else {
        eprintln!("PostgreSQL at {server} not reachable: skipping its benchmark");
        return;
    };
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .expect("create the bench database");
    bench_backend(
        c,
        "postgres",
        DatabaseConfig {
            url: format!("{server}/{name}"),
            ..base
        },
    );
    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin);
}

criterion_group!(benches, writer);
criterion_main!(benches);
