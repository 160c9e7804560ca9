//! The usage log on a bad day, through the API: a database that stops taking rows makes the
//! server unready once rows lag, and a row PostgreSQL refuses for its content (a NUL) is
//! stored escaped without holding up the rows around it, across a crash too.

use std::time::Duration;

use diesel::{Connection, SqliteConnection, connection::SimpleConnection};
use e2e_support::{TestApp, TestDatabase, error_body, eventually};
use serde_json::json;
use usage_store::{DatabaseConfig, StoredUsage, UsageRecord, UsageStore, spawn_writer};

/// An OpenAI-shaped call to the mock's `demo` with `user` as the end-user id.
async fn call_as(app: &TestApp, user: &str) {
    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "demo", "user": user,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 200, "{user:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_makes_the_server_unready_and_loses_no_row() {
    let app = TestApp::spawn_with(|settings, dir| {
        // A file where the journal's directory should be: no segment can be created.
        let blocked = dir.join("not-a-directory");
        std::fs::write(&blocked, "x").unwrap();
        settings.database.journal_dir = blocked.display().to_string();
    })
    .await;
    let answered = app.chat("demo", "hi").await;
    assert_eq!(answered.status(), 200, "calls are still answered");
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 503);
    let message = error_body(response).await["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.starts_with("journal: failing"), "{message}");
    assert!(app.metrics().await["commander_usage_journal_errors_total"] >= 1.0);
    assert_eq!(app.usage_rows().await.len(), 1, "the row waited in memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_usage_lags_and_200_once_the_database_takes_rows_again() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.database.ready_max_lag_ms = 200;
    })
    .await;
    assert_eq!(app.get("/ready").await.status(), 200);
    let path = app.dir().join("usage.db");
    let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    // The table gone: every batch fails as if the database were away, and is retried.
    other
        .batch_execute("ALTER TABLE usage_logs RENAME TO hidden")
        .unwrap();

    let answered = app.chat("demo", "hi").await;
    assert_eq!(answered.status(), 200, "calls are answered while rows wait");
    let message = eventually("/ready to report the lag", async || {
        let response = app.get("/ready").await;
        if response.status() != 503 {
            return None;
        }
        let error = error_body(response).await;
        error["message"].as_str().map(str::to_owned)
    })
    .await;
    assert!(message.starts_with("usage: lagging"), "{message}");
    let lag = app.metrics().await["commander_usage_lag_seconds"];
    assert!(lag > 0.0, "the lag is exposed: {lag}");

    other
        .batch_execute("ALTER TABLE hidden RENAME TO usage_logs")
        .unwrap();
    eventually("/ready once the row is written", async || {
        (app.get("/ready").await.status() == 200).then_some(())
    })
    .await;
    assert_eq!(app.usage_rows().await.len(), 1);
    assert_eq!(app.metrics().await["commander_usage_lag_seconds"], 0.0);
}

/// The specialist's catalogue refuses control characters in names (a NUL included), so the
/// way a NUL reaches a row through the API is the caller's own `user` id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_from_the_caller_is_stored_escaped_on_postgres_between_good_rows() {
    let database = TestDatabase::create();
    let url = database.url();
    let app = TestApp::spawn_with(move |settings, _| {
        settings.database.url = url;
    })
    .await;
    call_as(&app, "good-before").await;
    call_as(&app, "caller\u{0}").await;
    call_as(&app, "good-after").await;

    let rows = app.usage_rows().await;
    let mut users: Vec<&str> = rows.iter().filter_map(|r| r.end_user.as_deref()).collect();
    users.sort_unstable();
    assert_eq!(users, ["caller\\u0000", "good-after", "good-before"]);
    assert!(rows.iter().all(|r| r.success), "{rows:?}");
    let metrics = app.metrics().await;
    assert_eq!(metrics["commander_usage_repaired_total"], 1.0);
    assert_eq!(metrics["commander_usage_dead_lettered_total"], 0.0);
}

fn named(id: &str, name: &str) -> UsageRecord {
    UsageRecord {
        specialist_name: name.into(),
        ..usage_store::fixture::usage_record(id)
    }
}

/// Good, NUL and good rows journaled by a process that dies before its batch is written: the
/// next start applies all three, the NUL one escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_row_left_by_a_crash_is_applied_escaped_with_its_neighbours_at_the_next_start() {
    let database = TestDatabase::create();
    let files = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        url: database.url(),
        flush_interval_ms: 20,
        ..DatabaseConfig::default()
    }
    .with_files_in(files.path());
    let connect = config.clone();
    let store = tokio::task::spawn_blocking(move || UsageStore::connect(&connect).unwrap())
        .await
        .unwrap();

    journal_then_crash(
        &store,
        &config,
        vec![
            named("good-1", "Good"),
            named("nul-1", "Nul\u{0}Name"),
            named("good-2", "Good"),
        ],
    );
    let check = store.clone();
    let count = tokio::task::spawn_blocking(move || check.count_rows().unwrap())
        .await
        .unwrap();
    assert_eq!(count, 0);

    let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
    tokio::time::timeout(Duration::from_secs(30), sink.flush())
        .await
        .expect("the journal is applied")
        .unwrap();
    let stats = sink.stats();
    writer.shutdown().await;
    let rows: Vec<StoredUsage> = tokio::task::spawn_blocking(move || store.all_rows().unwrap())
        .await
        .unwrap();
    let mut found: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.request_id.as_str(), r.specialist_name.as_str()))
        .collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            ("good-1", "Good"),
            ("good-2", "Good"),
            ("nul-1", "Nul\\u0000Name")
        ]
    );
    assert_eq!((stats.replayed, stats.repaired), (3, 1), "{stats:?}");
    assert_eq!(stats.dead_lettered, 0);
}

/// Journals `records` in a writer of its own runtime, which then dies before any batch is
/// written (no batch fills, no flush comes due): what a SIGKILL leaves.
fn journal_then_crash(store: &UsageStore, config: &DatabaseConfig, records: Vec<UsageRecord>) {
    let config = DatabaseConfig {
        flush_interval_ms: DatabaseConfig::MAX_WAIT_MS,
        batch_size: 1_000,
        ..config.clone()
    };
    let store = store.clone();
    let written = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (sink, writer) = runtime.block_on(async {
            let (sink, writer) = spawn_writer(store, &config).unwrap();
            for record in records {
                sink.record(record);
            }
            (sink, writer)
        });
        // The writer's task dies with its runtime (dropping the handle first would ask it to
        // drain), and with it the journal's lock, as with a process's end.
        drop(runtime);
        drop(writer);
        sink.stats().rows_written
    })
    .join()
    .unwrap();
    assert_eq!(written, 0, "the crash came before the batch");
}

/// A power cut (or a full disk) can leave a segment holding nothing but the torn start of its
/// first line. The next segment is numbered from the same line, so it has the same name; its
/// lines must not be glued to the fragment, or the rows they hold are unreadable after a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_journaled_after_a_torn_first_line_survive_a_crash() {
    let files = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        url: format!("sqlite://{}", files.path().join("usage.db").display()),
        flush_interval_ms: 20,
        ..DatabaseConfig::default()
    }
    .with_files_in(files.path());
    let journal = std::path::Path::new(&config.journal_dir);
    std::fs::create_dir_all(journal).unwrap();
    std::fs::write(
        journal.join(format!("journal-{:020}.log", 1)),
        "{\"finished\":{\"request_",
    )
    .unwrap();
    let connect = config.clone();
    let store = tokio::task::spawn_blocking(move || UsageStore::connect(&connect).unwrap())
        .await
        .unwrap();

    journal_then_crash(&store, &config, vec![named("after-torn", "Good")]);

    let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
    tokio::time::timeout(Duration::from_secs(30), sink.flush())
        .await
        .expect("the journal is applied")
        .unwrap();
    writer.shutdown().await;
    let rows = tokio::task::spawn_blocking(move || store.all_rows().unwrap())
        .await
        .unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["after-torn"]);
}
