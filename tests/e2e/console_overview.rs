//! The console's overview page (`/console`) end to end: its totals and split table are the
//! numbers `/usage/summary` reports, a user sees only their own calls, bad ranges are a 400
//! page, and the page stays light with many keys and a long range.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use core_domain::{AccessRole, EmailHash, SpecialistId};
use e2e_support::{TestApp, TestDatabase};
use http_api::{ApiKeyConfig, AuthMode};
use serde_json::{Value, json};
use usage_store::Backend;
use usage_store::fixture::usage_record;

const USER_KEY: &str = "cmdr_console_user_key_00000000000000000000000000000000000000000";
const ADMIN_KEY: &str = "cmdr_console_admin_key_0000000000000000000000000000000000000000";

/// A client that shows redirects instead of following them (the session cookie comes on one).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `name=value` of the `Set-Cookie` naming `name`.
fn cookie_named(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", response.headers()))
        .to_owned()
}

/// With auth disabled: the local operator's session, as the sign-in page hands it out.
async fn local_session(app: &TestApp) -> String {
    let response = browser()
        .get(app.url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    cookie_named(&response, "commander_console")
}

/// With auth required: signs in with `key` through the form, as a browser would.
async fn key_session(app: &TestApp, key: &str) -> String {
    let client = browser();
    let form = client
        .get(app.url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let issued = cookie_named(&form, "commander_console_signin");
    let token = issued.split_once('=').unwrap().1.to_owned();
    let signed_in = client
        .post(app.url("/console/sign-in"))
        .header("cookie", &issued)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&next=%2Fconsole&credential={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.text().await);
    cookie_named(&signed_in, "commander_console")
}

/// The overview at `query` (empty or starting with `?`) with `session`.
async fn overview(app: &TestApp, session: &str, query: &str) -> reqwest::Response {
    browser()
        .get(app.url(&format!("/console{query}")))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
}

/// The text of the element starting right after `marker` (and its opening tag's end).
fn text_after<'a>(page: &'a str, marker: &str) -> &'a str {
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page"));
    let rest = &page[at + marker.len()..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    &rest[..rest.find('<').unwrap()]
}

/// The value of the totals' `metric`.
fn metric<'a>(page: &'a str, metric: &str) -> &'a str {
    let at = page
        .find(&format!("data-metric=\"{metric}\""))
        .unwrap_or_else(|| panic!("no {metric} metric"));
    text_after(&page[at..], "<dd")
}

/// The split table's row for `key`: column -> text.
fn split_row(page: &str, key: &str) -> HashMap<String, String> {
    let table = &page[page.find("<table id=\"split\"").expect("table#split")..];
    let start = table
        .find(&format!("<tr data-key=\"{key}\""))
        .unwrap_or_else(|| panic!("no row for {key}"));
    let row = &table[start..start + table[start..].find("</tr>").unwrap()];
    row.match_indices("data-col=\"")
        .map(|(at, marker)| {
            let rest = &row[at + marker.len()..];
            let column = rest[..rest.find('"').unwrap()].to_owned();
            (column, text_after(rest, "").to_owned())
        })
        .collect()
}

fn split_keys(page: &str) -> usize {
    page.matches("<tr data-key=").count()
}

/// What the page shows for a summary row's numbers (the same rounding).
fn expected_cells(row: &Value) -> HashMap<String, String> {
    let int = |name: &str| row[name].as_i64().unwrap().to_string();
    let ms = |name: &str| format!("{:.0} ms", row[name].as_f64().unwrap());
    HashMap::from([
        ("requests".to_owned(), int("requests")),
        ("failures".to_owned(), int("failures")),
        ("input_tokens".to_owned(), int("input_tokens")),
        ("output_tokens".to_owned(), int("output_tokens")),
        (
            "cost_usd".to_owned(),
            format!("${:.6}", row["cost_usd"].as_f64().unwrap()),
        ),
        ("avg_latency_ms".to_owned(), ms("avg_latency_ms")),
        ("p50_latency_ms".to_owned(), ms("p50_latency_ms")),
        ("p95_latency_ms".to_owned(), ms("p95_latency_ms")),
    ])
}

/// The app on `backend` (its PostgreSQL database lives as long as the returned guard).
async fn app_on(backend: Backend) -> (TestApp, Option<TestDatabase>) {
    match backend {
        Backend::Sqlite => (TestApp::spawn().await, None),
        Backend::Postgres => {
            let database = TestDatabase::create();
            let url = database.url();
            let app = TestApp::spawn_with(move |settings, _| settings.database.url = url).await;
            (app, Some(database))
        }
    }
}

on_both_backends!(
    the_overview_shows_the_summary_numbers,
    through_the_rollup_the_overview_and_the_summary_still_agree
);

async fn the_overview_shows_the_summary_numbers(backend: Backend) {
    let (app, _database) = app_on(backend).await;
    for message in ["one", "two", "three"] {
        assert_eq!(app.chat("demo", message).await.status(), 200);
    }
    // No provider key for `general`: a failed call.
    assert_eq!(app.chat("general", "no key").await.status(), 503);
    app.usage_rows().await;
    let session = local_session(&app).await;

    let response = overview(&app, &session, "").await;
    assert_eq!(response.status(), 200);
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        timing.starts_with("db;dur=") && timing.contains(", render;dur="),
        "{timing}"
    );
    let page = response.text().await.unwrap();
    assert_eq!(metric(&page, "requests"), "4");
    assert_eq!(metric(&page, "error_rate"), "25.0%");
    assert!(
        page.contains("Everyone's usage"),
        "the local operator is an administrator"
    );
    for chart in [
        "chart-requests",
        "chart-cost",
        "chart-error-rate",
        "chart-p95",
    ] {
        assert!(page.contains(&format!("<figure id=\"{chart}\"")), "{chart}");
    }
    assert_eq!(page.matches("<ul class=\"legend\">").count(), 4);
    assert_eq!(page.matches("<svg viewBox").count(), 4);
    assert!(!page.contains("style=") && !page.contains("<script"));

    for (split, group_by) in [("", "specialist"), ("&split=provider", "provider")] {
        let page = overview(&app, &session, &format!("?range=30d{split}"))
            .await
            .text()
            .await
            .unwrap();
        let summary: Value = app
            .usage_summary(&format!("?group_by={group_by}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(summary["latency_percentiles"], "exact", "four calls: exact");
        assert!(!page.contains("percentiles-note"));
        let rows = summary["rows"].as_array().unwrap();
        assert_eq!(split_keys(&page), rows.len(), "{group_by}");
        let tokens: i64 = rows
            .iter()
            .map(|r| r["input_tokens"].as_i64().unwrap() + r["output_tokens"].as_i64().unwrap())
            .sum();
        assert!(metric(&page, "tokens").starts_with(&tokens.to_string()));
        for row in rows {
            let shown = split_row(&page, row["key"].as_str().unwrap());
            for (column, expected) in expected_cells(row) {
                assert_eq!(
                    shown[&column], expected,
                    "{group_by} {} {column}",
                    row["key"]
                );
            }
        }
    }
}

/// With `exact_report_calls = 0`, reports read the rollup: hours the server sealed, and the
/// current hour's calls from the log. The overview still shows `/usage/summary`'s numbers,
/// both say their percentiles are approximate, and the server sealed the finished hours on
/// its own.
async fn through_the_rollup_the_overview_and_the_summary_still_agree(backend: Backend) {
    let database = (backend == Backend::Postgres).then(TestDatabase::create);
    let postgres_url = database.as_ref().map(TestDatabase::url);
    // Three calls an hour over the last three days, from three hours ago back, written before
    // the server starts: its sealer finds the hours waiting.
    let now = Utc::now();
    let past: Vec<_> = (3..75u64)
        .flat_map(|hours_ago| {
            (0..3).map(move |i| {
                let mut record = usage_record(&format!("past{hours_ago}x{i}"));
                record.specialist_id =
                    SpecialistId::parse(["analyst", "reviewer", "demo"][i]).unwrap();
                record.latency = Duration::from_millis(100 + 37 * hours_ago + 500 * i as u64);
                record.timestamp = now - TimeDelta::hours(hours_ago as i64);
                record
            })
        })
        .collect();
    let app = TestApp::spawn_with(move |settings, _| {
        if let Some(url) = postgres_url {
            settings.database.url = url;
        }
        settings.database.exact_report_calls = 0;
        let store = usage_store::UsageStore::connect(&settings.database).unwrap();
        store.insert_batch(&past).unwrap();
        assert!(store.rollup_backlog(now - TimeDelta::hours(2)).unwrap() >= 72);
    })
    .await;
    let store = app.store();
    let mut backlog = u64::MAX;
    for _ in 0..200 {
        let store = store.clone();
        backlog = tokio::task::spawn_blocking(move || {
            store.rollup_backlog(Utc::now() - TimeDelta::hours(2))
        })
        .await
        .unwrap()
        .unwrap();
        if backlog == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backlog, 0, "the server seals finished hours by itself");
    // This hour's calls come from the log.
    for message in ["one", "two"] {
        assert_eq!(app.chat("demo", message).await.status(), 200);
    }
    app.usage_rows().await;
    let session = local_session(&app).await;

    let page = overview(&app, &session, "?range=7d")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"percentiles-note\""), "the page says so");
    let from = (Utc::now() - TimeDelta::days(6)).date_naive();
    let summary: Value = app
        .usage_summary(&format!("?group_by=specialist&from={from}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["latency_percentiles"], "approximate");
    let rows = summary["rows"].as_array().unwrap();
    let requests: i64 = rows.iter().map(|r| r["requests"].as_i64().unwrap()).sum();
    assert_eq!(requests, 72 * 3 + 2);
    assert_eq!(metric(&page, "requests"), requests.to_string());
    assert_eq!(split_keys(&page), rows.len());
    for row in rows {
        let shown = split_row(&page, row["key"].as_str().unwrap());
        for (column, expected) in expected_cells(row) {
            assert_eq!(shown[&column], expected, "{} {column}", row["key"]);
        }
    }
    drop(database);
}

async fn app_with_two_keys() -> TestApp {
    fn sha256_hex(text: &str) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }
    TestApp::spawn_with(|settings, _| {
        settings.auth.mode = AuthMode::Required;
        settings.auth.api_keys = vec![
            ApiKeyConfig {
                name: "ada".into(),
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
    .await
}

#[tokio::test]
async fn a_user_sees_only_their_own_calls() {
    let app = app_with_two_keys().await;
    let call = json!({"specialist_id": "demo", "message": "hello"});
    for key in [USER_KEY, USER_KEY, ADMIN_KEY] {
        assert_eq!(
            app.post_json_as("/chat/send", key, &call).await.status(),
            200
        );
    }
    app.usage_rows().await;

    let user = key_session(&app, USER_KEY).await;
    let page = overview(&app, &user, "?split=user")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&page, "requests"), "2");
    assert!(page.contains("Your own usage only."));
    assert_eq!(split_keys(&page), 1, "only the user's own row");

    let admin = key_session(&app, ADMIN_KEY).await;
    let page = overview(&app, &admin, "?split=user")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&page, "requests"), "3");
    assert_eq!(split_keys(&page), 2);

    let anonymous = browser().get(app.url("/console")).send().await.unwrap();
    let status = anonymous.status();
    assert_eq!(
        status,
        303,
        "to the sign-in page: {:?}",
        anonymous.text().await
    );
}

#[tokio::test]
async fn bad_ranges_are_a_400_page_with_the_problem_beside_the_field() {
    let app = TestApp::spawn().await;
    let session = local_session(&app).await;
    let empty = overview(&app, &session, "").await;
    assert_eq!(empty.status(), 200, "no calls yet is not a problem");
    let page = empty.text().await.unwrap();
    assert_eq!(metric(&page, "requests"), "0");
    assert!(page.contains("No calls in this range."));
    assert!(!page.contains("NaN"));

    for (query, field) in [
        (
            "?range=custom&from=%3Cscript%3Ealert(1)&to=2026-01-01",
            "from",
        ),
        ("?range=24h&range=7d", "range"),
        ("?range=custom&from=2026-02-01&to=2026-01-01", "from"),
        ("?range=custom&from=2020-01-01&to=2026-01-01", "from"),
        ("?range=custom&from=yesterday&to=2026-01-01", "from"),
        ("?range=custom&from=2026-01-01", "to"),
        ("?split=colour", "split"),
        ("?bucket=minute", "bucket"),
        ("?range=forever", "range"),
    ] {
        let response = overview(&app, &session, query).await;
        assert_eq!(response.status(), 400, "{query}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains(&format!("<span class=\"field-error\" id=\"error-{field}\"")),
            "{query}: {page}"
        );
        assert!(
            page.contains(&format!("aria-describedby=\"error-{field}\"")),
            "{query}"
        );
        assert!(page.contains("aria-invalid=\"true\""), "{query}");
        assert!(
            page.contains("id=\"form-errors\" role=\"alert\""),
            "{query}"
        );
        assert!(
            !page.contains("id=\"totals\""),
            "no figures for a bad range"
        );
        assert!(!page.contains("<script"), "what was typed is escaped");
    }
}

/// Rows written straight to the store: `keys` specialists named `{prefix}_N` (each called by
/// its own user), one call each
/// per day for `days` days back from now.
async fn seed(app: &TestApp, prefix: &'static str, keys: usize, days: i64) {
    let now = Utc::now();
    let records: Vec<_> = (0..keys)
        .flat_map(|key| {
            (0..days).map(move |day| {
                let mut record = usage_record(&format!("{prefix}{key}x{day}"));
                record.specialist_id = SpecialistId::parse(format!("{prefix}_{key}")).unwrap();
                record.user_email_hash =
                    Some(EmailHash::of_email(&format!("{prefix}{key}@example.com")));
                record.timestamp = now - TimeDelta::days(day) - TimeDelta::minutes(1);
                record
            })
        })
        .collect();
    let store = app.store();
    tokio::task::spawn_blocking(move || store.insert_batch(&records).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_page_stays_under_200_kb_with_many_keys_and_a_long_range() {
    const LIMIT: usize = 200 * 1024;
    let app = TestApp::spawn().await;
    let session = local_session(&app).await;
    let style = browser()
        .get(app.url("/console/assets/console.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .len();

    // 500 keys over the last 30 days.
    seed(&app, "many", 500, 2).await;
    let response = overview(&app, &session, "?range=30d").await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert_eq!(split_keys(&page), 100, "the busiest 100 keys");
    assert_eq!(metric(&page, "requests"), "1000");
    assert!(page.len() + style < LIMIT, "{} bytes", page.len() + style);
    // Users are keyed by their 64-digit email hashes: the longest keys.
    let page = overview(&app, &session, "?range=30d&split=user")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(split_keys(&page), 100);
    assert!(
        page.len() + style < LIMIT,
        "{} bytes by user",
        page.len() + style
    );

    // Eight keys every day for 400 days, by day.
    seed(&app, "long", 8, 400).await;
    let today = Utc::now().date_naive();
    let from = today - TimeDelta::days(399);
    let response = overview(
        &app,
        &session,
        &format!("?range=custom&from={from}&to={today}"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains(&format!("<th scope=\"row\">{from}</th>")),
        "the first day is a bucket"
    );
    assert!(page.len() + style < LIMIT, "{} bytes", page.len() + style);
}
