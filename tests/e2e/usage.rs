//! `GET /usage/summary` and `/ready`, on SQLite and on PostgreSQL.

use e2e_support::{TcpProxy, TestApp, TestDatabase, error_body, eventually, field_of_each};
use serde_json::json;

async fn make_calls(app: &TestApp) {
    for message in ["one", "two", "three"] {
        let response = app.chat("demo", message).await;
        assert_eq!(response.status(), 200);
    }
    let response = app.chat("general", "no key").await;
    assert_eq!(response.status(), 503);
    app.usage_rows().await;
}

async fn check_summary(app: &TestApp) {
    let response = app.usage_summary("?group_by=specialist").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["group_by"], "specialist");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0]["key"], "demo");
    assert_eq!(rows[0]["requests"], 3);
    assert_eq!(rows[0]["successes"], 3);
    assert_eq!(rows[0]["failures"], 0);
    assert!(rows[0]["output_tokens"].as_i64().unwrap() > 0);
    assert!(rows[0]["p95_latency_ms"].as_f64().unwrap() > 0.0);
    assert!(rows[0]["avg_latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[1]["key"], "general");
    assert_eq!(
        (rows[1]["requests"].as_i64(), rows[1]["failures"].as_i64()),
        (Some(1), Some(1))
    );

    let by_provider: serde_json::Value = app
        .usage_summary("?group_by=provider")
        .await
        .json()
        .await
        .unwrap();
    let keys: Vec<&str> = field_of_each(&by_provider["rows"], "key");
    assert_eq!(keys, ["mock", "openai"]);

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let by_day: serde_json::Value = app
        .usage_summary(&format!("?group_by=day&from={today}&to={today}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_day["rows"][0]["key"], today.as_str());
    assert_eq!(by_day["rows"][0]["requests"], 4);

    // A window before any call is empty.
    let empty: serde_json::Value = app
        .usage_summary("?from=2020-01-01&to=2020-01-02")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["rows"], json!([]));
}

#[tokio::test]
async fn summary_on_sqlite() {
    let app = TestApp::spawn().await;
    make_calls(&app).await;
    check_summary(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_on_postgres() {
    let database = TestDatabase::create();
    let url = database.url();
    let app = TestApp::spawn_with(move |settings, _| settings.database.url = url).await;
    make_calls(&app).await;
    check_summary(&app).await;
}

#[tokio::test]
async fn bad_parameters_are_422_with_every_field() {
    let app = TestApp::spawn().await;
    let response = app
        .usage_summary("?group_by=colour&from=yesterday&to=soon")
        .await;
    assert_eq!(response.status(), 422);
    let error = error_body(response).await;
    let mut fields: Vec<&str> = field_of_each(&error["details"], "field");
    fields.sort_unstable();
    assert_eq!(fields, ["from", "group_by", "to"]);

    let response = app.usage_summary("?from=2026-02-01&to=2026-01-01").await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_body(response).await["details"][0]["field"], "from");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_database() {
    let database = TestDatabase::create();
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = database.url_via(proxy.address());
    let app = TestApp::spawn_with(move |settings, _| {
        settings.database.url = url;
        settings.database.connect_timeout_ms = 500;
    })
    .await;
    let ready = |app: &TestApp| {
        let request = app.client.get(app.url("/ready"));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(ready(&app).await.status(), 200);

    proxy.cut();
    let response = ready(&app).await;
    assert_eq!(response.status(), 503);
    assert_eq!(error_body(response).await["code"], "service_unavailable");
    // The process itself is fine.
    assert_eq!(app.get("/health").await.status(), 200);

    // Calls are answered through the outage; their rows wait, and the failed writes show.
    let before = app.metrics().await;
    let metric = |samples: &std::collections::HashMap<String, f64>, name: &str| {
        *samples
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not exposed"))
    };
    for i in 0..3 {
        let answered = app
            .post_json(
                "/chat/send",
                &json!({"specialist_id": "demo", "message": format!("during the outage {i}")}),
            )
            .await;
        assert_eq!(answered.status(), 200);
    }
    let failing = eventually("a failed write to show in the metrics", async || {
        let now = app.metrics().await;
        (metric(&now, "commander_usage_write_errors_total")
            > metric(&before, "commander_usage_write_errors_total"))
        .then_some(now)
    })
    .await;
    assert!(metric(&failing, "commander_usage_queue_depth") >= 1.0);

    proxy.restore();
    eventually("ready again", async || {
        (ready(&app).await.status() == 200).then_some(())
    })
    .await;
    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 3, "every call of the outage logged once");
    let after = app.metrics().await;
    assert_eq!(metric(&after, "commander_usage_queue_depth"), 0.0);
    assert_eq!(
        metric(&after, "commander_usage_rows_written_total")
            - metric(&before, "commander_usage_rows_written_total"),
        3.0
    );
}
