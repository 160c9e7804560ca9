//! `GET /usage/calls`: the call list, newest first, filtered and paged, on SQLite and on
//! PostgreSQL; a user sees only their own calls, and every bad parameter is named.

use chrono::{TimeZone, Utc};
use core_domain::{AccessRole, Door, EmailHash, ErrorCode};
use e2e_support::{TestApp, TestDatabase, error_body, field_of_each};
use http_api::{ApiKeyConfig, AuthMode};
use serde_json::Value;
use usage_store::UsageRecord;

const USER_KEY: &str = "cmdr_user_key_for_tests_0000000000000000000000000000000000000000";
const ADMIN_KEY: &str = "cmdr_admin_key_for_tests_000000000000000000000000000000000000000";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A server with ada (a user) and root (an administrator), on `database_url` or a SQLite
/// file of its own.
async fn app(database_url: Option<String>) -> TestApp {
    TestApp::spawn_with(move |settings, _| {
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
        if let Some(url) = database_url {
            settings.database.url = url;
        }
    })
    .await
}

/// Nine calls a second apart: ada's, root's and anonymous ones in turn, every third failed,
/// doors in turn; `call-8` is the newest.
fn calls() -> Vec<UsageRecord> {
    (0..9u32)
        .map(|i| UsageRecord {
            timestamp: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, i).unwrap(),
            user_email_hash: match i % 3 {
                0 => Some(EmailHash::of_email("ada@example.com")),
                1 => Some(EmailHash::of_email("root@example.com")),
                _ => None,
            },
            error_code: (i % 3 == 2).then_some(ErrorCode::UpstreamTimeout),
            door: Door::ALL[i as usize % 5],
            ..usage_store::fixture::usage_record(&format!("call-{i}"))
        })
        .collect()
}

async fn get(app: &TestApp, query: &str, key: &str) -> reqwest::Response {
    app.get_as(&format!("/usage/calls{query}"), key).await
}

async fn page(app: &TestApp, query: &str, key: &str) -> Value {
    let response = get(app, query, key).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

async fn check_call_list(app: &TestApp) {
    let store = app.store();
    tokio::task::spawn_blocking(move || store.insert_batch(&calls()).unwrap())
        .await
        .unwrap();

    // An administrator sees every call, newest first, with the columns a table shows.
    let all = page(app, "", ADMIN_KEY).await;
    assert_eq!(
        field_of_each(&all["calls"], "request_id"),
        [
            "call-8", "call-7", "call-6", "call-5", "call-4", "call-3", "call-2", "call-1",
            "call-0"
        ]
    );
    assert_eq!(all["next"], Value::Null);
    let newest = &all["calls"][0];
    assert_eq!(newest["timestamp"], "2026-11-20T12:00:08Z");
    assert_eq!(newest["door"], "responses");
    assert_eq!(newest["success"], false);
    assert_eq!(newest["error_code"], "upstream_timeout");
    assert_eq!(newest["user_email_hash"], Value::Null);
    assert_eq!(newest["specialist_id"], "financial_analyst");
    assert_eq!(newest["input_tokens"], 1200);

    // Pages of four, followed by their cursors, hold the same calls once each.
    let mut paged = Vec::new();
    let mut query = "?limit=4".to_owned();
    loop {
        let body = page(app, &query, ADMIN_KEY).await;
        paged.extend(
            field_of_each(&body["calls"], "request_id")
                .into_iter()
                .map(str::to_owned),
        );
        match body["next"].as_str() {
            // A cursor is URL-safe as it is: an RFC 3339 time in UTC, `~`, a request id.
            Some(next) => query = format!("?limit=4&before={next}"),
            None => break,
        }
    }
    assert_eq!(paged, field_of_each(&all["calls"], "request_id"));

    // Filters.
    let failed = page(app, "?status=failure", ADMIN_KEY).await;
    assert_eq!(
        field_of_each(&failed["calls"], "request_id"),
        ["call-8", "call-5", "call-2"]
    );
    let door = page(app, "?door=native&status=success", ADMIN_KEY).await;
    // call-5 came in by the native door too, but failed.
    assert_eq!(field_of_each(&door["calls"], "request_id"), ["call-0"]);
    let anonymous = page(
        app,
        "?user=anonymous&error_code=upstream_timeout",
        ADMIN_KEY,
    )
    .await;
    assert_eq!(anonymous["calls"].as_array().unwrap().len(), 3);

    // A user sees only their own calls, and may not ask for everyone's.
    let own = page(app, "", USER_KEY).await;
    assert_eq!(
        field_of_each(&own["calls"], "request_id"),
        ["call-6", "call-3", "call-0"]
    );
    let someone_else = page(
        app,
        &format!("?user={}", sha256_hex("root@example.com")),
        USER_KEY,
    )
    .await;
    assert_eq!(someone_else["calls"], serde_json::json!([]));
    let refused = get(app, "?scope=all", USER_KEY).await;
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn calls_are_listed_filtered_and_paged_on_sqlite() {
    let app = app(None).await;
    check_call_list(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_listed_filtered_and_paged_on_postgres() {
    let database = TestDatabase::create();
    let app = app(Some(database.url())).await;
    check_call_list(&app).await;
}

#[tokio::test]
async fn every_bad_parameter_is_named() {
    let app = app(None).await;
    let response = get(
        &app,
        "?status=maybe&door=side&streamed=yes&limit=0&before=junk&user=bob\
         &error_code=gremlins&specialist=no%20way",
        ADMIN_KEY,
    )
    .await;
    assert_eq!(response.status(), 422);
    let error = error_body(response).await;
    assert_eq!(error["code"], "validation_failed");
    let mut fields: Vec<&str> = field_of_each(&error["details"], "field");
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "before",
            "door",
            "error_code",
            "limit",
            "specialist",
            "status",
            "streamed",
            "user"
        ]
    );
    for (query, field) in [
        ("?limit=201", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=ten", "limit"),
        ("?before=2026-11-20T12:00:00Z~", "before"),
        ("?before=2026-11-20T12:00:00Z", "before"),
    ] {
        let response = get(&app, query, ADMIN_KEY).await;
        assert_eq!(response.status(), 422, "{query}");
        assert_eq!(
            error_body(response).await["details"][0]["field"],
            field,
            "{query}"
        );
    }
    assert_eq!(get(&app, "?limit=200", ADMIN_KEY).await.status(), 200);
    assert_eq!(get(&app, "", "not-a-key").await.status(), 401);
}
