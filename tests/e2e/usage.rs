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
    let p50 = rows[0]["p50_latency_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= rows[0]["p95_latency_ms"].as_f64().unwrap());
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

    // Every call so far came in by the native door.
    let by_door: serde_json::Value = app
        .usage_summary("?group_by=door")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_door["group_by"], "door");
    assert_eq!(
        field_of_each(&by_door["rows"], "key"),
        ["native"],
        "{by_door}"
    );
    assert_eq!(by_door["rows"][0]["requests"], 4);

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

mod calls_and_targets {
    //! `GET /usage/calls/{request_id}` and `GET /usage/targets`, with a user and an
    //! administrator, over rows of one and of several attempts.

    use core_domain::{AccessRole, EmailHash};
    use e2e_support::{TestApp, error_body};
    use http_api::{ApiKeyConfig, AuthMode};
    use usage_store::{DatabaseConfig, UsageRecord, UsageStore};

    const USER_KEY: &str = "cmdr_user_key_for_tests_0000000000000000000000000000000000000000";
    const ADMIN_KEY: &str = "cmdr_admin_key_for_tests_000000000000000000000000000000000000000";

    fn sha256_hex(text: &str) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    fn database_url(dir: &std::path::Path) -> String {
        format!("sqlite://{}", dir.join("calls.db").display())
    }

    /// The app with ada (a user) and an administrator, and three rows written straight into its
    /// database: ada's call of three attempts, ada's call of one, and grace's call of one.
    async fn app() -> TestApp {
        let app = TestApp::spawn_with(|settings, dir| {
            settings.database.url = database_url(dir);
            settings.auth.mode = AuthMode::Required;
            settings.auth.api_keys = vec![
                ApiKeyConfig {
                    name: "ada's laptop".into(),
                    email: "ada@example.com".into(),
                    role: AccessRole::User,
                    sha256: sha256_hex(USER_KEY),
                },
                ApiKeyConfig {
                    name: "ops".into(),
                    email: "root@example.com".into(),
                    role: AccessRole::Admin,
                    sha256: sha256_hex(ADMIN_KEY),
                },
            ];
        })
        .await;
        let url = database_url(&app.dir());
        tokio::task::spawn_blocking(move || {
            let store = UsageStore::connect(&DatabaseConfig {
                url,
                ..DatabaseConfig::default()
            })
            .unwrap();
            let now = chrono::Utc::now();
            store
                .insert_batch(&[
                    UsageRecord {
                        timestamp: now,
                        ..usage_store::fixture::fallback_record("fb-1")
                    },
                    UsageRecord {
                        timestamp: now,
                        ..usage_store::fixture::usage_record("single-1")
                    },
                    UsageRecord {
                        timestamp: now,
                        user_email_hash: Some(EmailHash::of_email("grace@example.com")),
                        ..usage_store::fixture::usage_record("grace-1")
                    },
                ])
                .unwrap();
        })
        .await
        .unwrap();
        app
    }

    #[tokio::test]
    async fn a_call_is_shown_with_its_attempts_to_its_caller_and_to_administrators() {
        let app = app().await;
        for key in [USER_KEY, ADMIN_KEY] {
            let response = app.get_as("/usage/calls/fb-1", key).await;
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["request_id"], "fb-1");
            assert_eq!(body["attempts"], 3);
            assert_eq!(body["provider"], "anthropic");
            assert_eq!(body["success"], true);
            let attempts = body["attempt_details"].as_array().unwrap();
            assert_eq!(attempts.len(), 3, "{body}");
            assert_eq!(attempts[0]["attempt"], 1);
            assert_eq!(attempts[0]["error_code"], "upstream_rate_limited");
            assert_eq!(attempts[0]["success"], false);
            assert_eq!(attempts[1]["base_url"], "http://127.0.0.1:8081/v1");
            assert_eq!(attempts[1]["output_tokens"], 40);
            assert_eq!(attempts[1]["tokens_estimated"], true);
            assert_eq!(attempts[2]["model"], "claude-sonnet-4");
            assert_eq!(attempts[2]["continuation"], true);
            assert_eq!(attempts[2]["success"], true);
            assert_eq!(attempts[2]["latency_ms"], 2500.0);
        }
        let single: serde_json::Value = app
            .get_as("/usage/calls/single-1", USER_KEY)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(single["attempts"], 1);
        assert_eq!(single["attempt_details"], serde_json::json!([]));
        // Grace's call is there for the administrator only.
        assert_eq!(
            app.get_as("/usage/calls/grace-1", ADMIN_KEY).await.status(),
            200
        );
        let hidden = app.get_as("/usage/calls/grace-1", USER_KEY).await;
        assert_eq!(hidden.status(), 404);
        assert_eq!(error_body(hidden).await["code"], "not_found");
    }

    #[tokio::test]
    async fn a_call_shows_the_name_of_the_api_key_it_was_made_with() {
        let app = app().await;
        let response = app
            .post_json_as(
                "/chat/send",
                USER_KEY,
                &serde_json::json!({"specialist_id": "demo", "message": "hi"}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        app.usage_rows().await;
        let view: serde_json::Value = app
            .get_as(&format!("/usage/calls/{id}"), ADMIN_KEY)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(view["api_key"], "ada's laptop", "{view}");
        // A row written without a key (a JWT or anonymous caller) shows none.
        let keyless: serde_json::Value = app
            .get_as("/usage/calls/single-1", ADMIN_KEY)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(keyless["api_key"], serde_json::Value::Null, "{keyless}");
        // And the OpenAPI document says so.
        let doc = app.get_json("/openapi.json").await;
        let field = &doc["components"]["schemas"]["CallView"]["properties"]["api_key"];
        assert!(
            field["description"]
                .as_str()
                .is_some_and(|d| d.contains("API key")),
            "{field}"
        );
    }

    #[tokio::test]
    async fn a_missing_or_impossible_id_is_404_and_no_credentials_401() {
        let app = app().await;
        for path in ["/usage/calls/nobody", "/usage/calls/not%20an%20id"] {
            let response = app.get_as(path, ADMIN_KEY).await;
            assert_eq!(response.status(), 404, "{path}");
            let body = error_body(response).await;
            assert_eq!(body["code"], "not_found", "{path}");
            assert!(
                body["message"].as_str().unwrap().contains("no usage row"),
                "{body}"
            );
        }
        assert_eq!(app.get("/usage/calls/fb-1").await.status(), 401);
        assert_eq!(app.get("/usage/targets").await.status(), 401);
    }

    #[tokio::test]
    async fn targets_count_every_attempt_for_the_caller_or_everyone() {
        let app = app().await;
        let everyone: serde_json::Value = app
            .get_as("/usage/targets", ADMIN_KEY)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(everyone["calls"], 3);
        assert_eq!(everyone["fallback_calls"], 1);
        let targets = everyone["targets"].as_array().unwrap();
        let names: Vec<String> = targets
            .iter()
            .map(|t| {
                format!(
                    "{}/{}",
                    t["provider"].as_str().unwrap(),
                    t["model"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "anthropic/claude-sonnet-4",
                "openai/gpt-4o",
                "openai/llama-3.1-70b"
            ]
        );
        assert_eq!(targets[1]["attempts"], 3);
        assert_eq!(targets[1]["successes"], 2);
        assert_eq!(
            targets[1]["failures_by_code"],
            serde_json::json!({"upstream_rate_limited": 1})
        );
        assert_eq!(targets[0]["continuations"], 1);

        let own: serde_json::Value = app
            .get_as("/usage/targets", USER_KEY)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(own["calls"], 2, "grace's call is not ada's: {own}");
        let all = app.get_as("/usage/targets?scope=all", USER_KEY).await;
        assert_eq!(all.status(), 403);
        let bad = app
            .get_as("/usage/targets?from=2026-02-01&to=2026-01-01", ADMIN_KEY)
            .await;
        assert_eq!(bad.status(), 422);
    }
}
