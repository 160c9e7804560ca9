//! The catalogue in the database (`specialists.store = "database"`) on both backends: the API
//! over it, and several servers sharing one database — a change made through one is served by
//! the others after their poll, and the database, not any one server, decides every race.
//! PostgreSQL tests each create and drop a database of their own.

use commander::CatalogueStoreKind;
use e2e_support::{TestApp, TestDatabase, error_body, eventually, field_of_each};
use serde_json::{Value, json};
use usage_store::Backend;

/// A database several servers share, kept alive (and dropped) with the test.
enum SharedDb {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl SharedDb {
    fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres => Self::Postgres(TestDatabase::create()),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}", dir.path().join("shared.db").display()),
            Self::Postgres(db) => db.url(),
        }
    }

    /// A server (with its own journal and files) keeping its catalogue in this database,
    /// polling it every 50 ms.
    async fn server(&self) -> TestApp {
        let url = self.url();
        TestApp::spawn_with(move |settings, _| {
            settings.database.url = url;
            settings.database.sqlite_busy_timeout_ms = 5_000;
            settings.specialists.store = CatalogueStoreKind::Database;
            settings.specialists.reload_interval_ms = 50;
        })
        .await
    }
}

fn tax_advisor(id: &str) -> Value {
    json!({
        "id": id,
        "name": format!("Tax Advisor {id}"),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "system_prompt": "You explain tax rules plainly.",
        "temperature": 0.2,
        "max_tokens": 1000
    })
}

pub(crate) async fn patch(
    app: &TestApp,
    id: &str,
    if_match: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/specialists/{id}")))
        .header("if-match", if_match)
        .json(body)
        .send()
        .await
        .unwrap()
}

on_both_backends!(
    the_api_creates_changes_and_removes_specialists_in_the_database,
    a_change_on_one_server_is_served_by_the_other_after_the_poll,
    a_stale_if_match_on_another_server_is_409,
    of_two_servers_changing_the_same_version_exactly_one_wins,
    two_servers_starting_together_seed_the_default_catalogue_once,
    a_name_taken_on_another_server_is_refused_by_the_database,
);

async fn the_api_creates_changes_and_removes_specialists_in_the_database(backend: Backend) {
    let db = SharedDb::new(backend);
    let app = db.server().await;
    let list = app.get_json("/specialists").await;
    assert_eq!(
        field_of_each(&list["specialists"], "id").len(),
        6,
        "seeded: {list}"
    );
    assert_eq!(app.get_json("/ready").await["catalogue_store"], "ok");

    let created = app
        .client
        .post(app.url("/specialists"))
        .json(&tax_advisor("tax"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let again = app
        .client
        .post(app.url("/specialists"))
        .json(&tax_advisor("TAX"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    let changed = patch(&app, "tax", "\"1\"", &json!({"system_prompt": "Be brief."})).await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["version"], 2);
    assert_eq!(
        changed["prompt_history"][0]["system_prompt"],
        "You explain tax rules plainly."
    );

    // A server started afresh on the database serves what the first one stored.
    let fresh = db.server().await;
    let stored = fresh.get_json("/specialists/tax").await;
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["system_prompt"], "Be brief.");

    let removed = app
        .client
        .delete(app.url("/specialists/tax"))
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert!(removed.status().is_success(), "{}", removed.status());
    assert_eq!(app.get("/specialists/tax").await.status(), 404);
    let store = app.store();
    let history = tokio::task::spawn_blocking(move || store.catalogue_history_len("tax"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history, 3, "version 1, version 2, the removal");
}

async fn a_change_on_one_server_is_served_by_the_other_after_the_poll(backend: Backend) {
    let db = SharedDb::new(backend);
    let (a, b) = (db.server().await, db.server().await);
    assert_eq!(b.get("/specialists/shared").await.status(), 404);
    let created = a
        .client
        .post(a.url("/specialists"))
        .json(&tax_advisor("shared"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    eventually("the other server to serve the new specialist", async || {
        (b.get("/specialists/shared").await.status() == 200).then_some(())
    })
    .await;
    // And a chat through the other server uses it (the mock answers for any specialist on it).
    let changed = patch(&a, "shared", "\"1\"", &json!({"temperature": 0.7})).await;
    assert_eq!(changed.status(), 200);
    eventually("the other server to serve version 2", async || {
        let served = b.get_json("/specialists/shared").await;
        (served["version"] == 2 && served["temperature"] == 0.7).then_some(())
    })
    .await;
}

async fn a_stale_if_match_on_another_server_is_409(backend: Backend) {
    let db = SharedDb::new(backend);
    // B has not polled since A's change: it learns that version 1 is gone from the database.
    let (a, b) = (db.server().await, db.server().await);
    let ok = patch(&a, "general", "\"1\"", &json!({"temperature": 0.1})).await;
    assert_eq!(ok.status(), 200);
    let stale = patch(&b, "general", "\"1\"", &json!({"temperature": 0.9})).await;
    assert_eq!(stale.status(), 409);
    let error = error_body(stale).await;
    assert_eq!(error["code"], "version_conflict");
    assert!(
        error["message"].as_str().unwrap().contains("version 2"),
        "{error}"
    );
    let served = b.get_json("/specialists/general").await;
    assert_eq!(
        served["temperature"], 0.1,
        "B now serves the winner's version"
    );
}

async fn of_two_servers_changing_the_same_version_exactly_one_wins(backend: Backend) {
    let db = SharedDb::new(backend);
    let (a, b) = (db.server().await, db.server().await);
    for round in 1..=5_u32 {
        let version = format!("\"{round}\"");
        let temperature = f64::from(round) / 10.0;
        let (body_a, body_b) = (
            json!({"temperature": temperature}),
            json!({"temperature": temperature + 0.05}),
        );
        let (from_a, from_b) = tokio::join!(
            patch(&a, "demo", &version, &body_a),
            patch(&b, "demo", &version, &body_b),
        );
        let mut statuses = [from_a.status().as_u16(), from_b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}");
    }
    let store = a.store();
    let history = tokio::task::spawn_blocking(move || store.catalogue_history_len("demo"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history, 6, "the seed and one winner per round");
    eventually("both servers to serve version 6", async || {
        let (one, other) = (
            a.get_json("/specialists/demo").await,
            b.get_json("/specialists/demo").await,
        );
        (one["version"] == 6 && other == one).then_some(())
    })
    .await;
}

async fn two_servers_starting_together_seed_the_default_catalogue_once(backend: Backend) {
    let db = SharedDb::new(backend);
    let (a, b) = tokio::join!(db.server(), db.server());
    for app in [&a, &b] {
        let list = app.get_json("/specialists").await;
        assert_eq!(field_of_each(&list["specialists"], "id").len(), 6);
    }
    let store = a.store();
    let histories = tokio::task::spawn_blocking(move || {
        [
            "code_reviewer",
            "demo",
            "demo-embed",
            "financial_analyst",
            "general",
            "grok_analyst",
        ]
        .map(|id| store.catalogue_history_len(id).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(histories, [1; 6], "each default stored once");
}

async fn a_name_taken_on_another_server_is_refused_by_the_database(backend: Backend) {
    let db = SharedDb::new(backend);
    let (a, b) = (db.server().await, db.server().await);
    let mut first = tax_advisor("first");
    first["name"] = json!("Straße");
    let mut second = tax_advisor("second");
    // The same name after case folding; B has not polled, so only the database can tell.
    second["name"] = json!("STRASSE");
    let (from_a, from_b) = tokio::join!(
        a.client.post(a.url("/specialists")).json(&first).send(),
        b.client.post(b.url("/specialists")).json(&second).send(),
    );
    let mut statuses = [
        from_a.unwrap().status().as_u16(),
        from_b.unwrap().status().as_u16(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 422]);
}

/// The database goes away under a running server: it keeps serving the catalogue it loaded,
/// refuses changes with 503 (it cannot know whether another server changed them), and takes
/// changes again once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_away_reads_are_served_and_changes_are_503() {
    let db = TestDatabase::create();
    let proxy = e2e_support::TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = db.url_via(proxy.address());
    let app = TestApp::spawn_with(move |settings, _| {
        settings.database.url = url;
        settings.database.connect_timeout_ms = 300;
        settings.specialists.store = CatalogueStoreKind::Database;
        settings.specialists.reload_interval_ms = 50;
    })
    .await;
    proxy.cut();
    assert_eq!(app.get("/specialists/demo").await.status(), 200);
    let refused = patch(&app, "demo", "\"1\"", &json!({"temperature": 0.3})).await;
    assert_eq!(refused.status(), 503);
    let error = error_body(refused).await;
    assert_eq!(error["code"], "service_unavailable");
    assert!(
        !error["message"].as_str().unwrap().contains("127.0.0.1"),
        "no database address for the client: {error}"
    );
    proxy.restore();
    eventually(
        "a change to be taken once the database is back",
        async || {
            let status = patch(&app, "demo", "\"1\"", &json!({"temperature": 0.3}))
                .await
                .status();
            (status == 200).then_some(())
        },
    )
    .await;
    assert_eq!(app.get_json("/specialists/demo").await["version"], 2);
}

/// A server on `db` whose poll (60 s) is far too slow to matter: whatever reaches it within
/// seconds came through `LISTEN/NOTIFY`.
async fn server_listening_only(db: &TestDatabase) -> TestApp {
    let url = db.url();
    TestApp::spawn_with(move |settings, _| {
        settings.database.url = url;
        settings.specialists.store = CatalogueStoreKind::Database;
        settings.specialists.reload_interval_ms = 60_000;
    })
    .await
}

/// How long `b` takes to serve specialist `id` at `version`; fails past 5 s.
async fn time_until_served(b: &TestApp, id: &str, version: u64) -> std::time::Duration {
    let started = std::time::Instant::now();
    let cap = std::time::Duration::from_secs(5);
    loop {
        let response = b.get(&format!("/specialists/{id}")).await;
        if response.status() == 200 {
            let served: Value = response.json().await.unwrap();
            if served["version"] == version {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < cap,
            "{id} v{version} not served by the other server within {cap:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The backends listening on `db`'s catalogue channel (the servers' listeners).
fn listening_pids(db: &TestDatabase) -> Vec<i32> {
    use diesel::{Connection, PgConnection, RunQueryDsl, sql_types::Integer};
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let mut conn = PgConnection::establish(&db.url()).unwrap();
    diesel::sql_query(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%' ORDER BY pid",
    )
    .load::<Pid>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|row| row.pid)
    .collect()
}

fn terminate(db: &TestDatabase, pids: &[i32]) {
    use diesel::{Connection, PgConnection, RunQueryDsl, sql_types::Integer};
    let mut conn = PgConnection::establish(&db.url()).unwrap();
    for &pid in pids {
        diesel::sql_query("SELECT pg_terminate_backend($1)")
            .bind::<Integer, _>(pid)
            .execute(&mut conn)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_change_reaches_the_other_server_within_a_second_and_after_a_cut() {
    let db = TestDatabase::create();
    let (a, b) = (
        server_listening_only(&db).await,
        server_listening_only(&db).await,
    );
    let before = eventually("both servers to listen", async || {
        let pids = listening_pids(&db);
        (pids.len() == 2).then_some(pids)
    })
    .await;

    let created = a
        .client
        .post(a.url("/specialists"))
        .json(&tax_advisor("heard"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let took = time_until_served(&b, "heard", 1).await;
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");

    // Cut both listeners: each reconnects by itself, and later changes arrive again.
    terminate(&db, &before);
    eventually("both listeners to reconnect", async || {
        let pids = listening_pids(&db);
        (pids.len() == 2 && pids.iter().all(|pid| !before.contains(pid))).then_some(())
    })
    .await;
    let changed = patch(&a, "heard", "\"1\"", &json!({"temperature": 0.7})).await;
    assert_eq!(changed.status(), 200);
    let took = time_until_served(&b, "heard", 2).await;
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
}
