//! Issue 16, errors and leaks: no outside input may panic a handler, a panic that happens anyway
//! is an answer and a usage row, and error bodies never carry the database's own text.

use std::sync::Arc;

use core_domain::{Completion, ProviderKind, StreamEvent};
use e2e_support::{TcpProxy, TestApp, TestDatabase, error_body, read_sse};
use futures_util::stream;
use providers::{
    ChatProvider, CompletionFuture, EventStream, EventStreamFuture, MockConfig, MockProvider,
    ProviderError, ProviderRequest,
};
use serde_json::json;
use tokio::time::Instant;

#[tokio::test]
async fn usage_bounds_outside_years_1_to_9999_are_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        // Thirty days before this is beyond what chrono can represent: it used to panic.
        ("?to=-262143-01-01", "to"),
        ("?to=+262143-12-31", "to"),
        ("?from=-262143-01-01&to=2026-01-01", "from"),
        ("?from=0000-12-31&to=2026-01-01", "from"),
        ("?to=10000-01-01", "to"),
        ("?to=-0001-01-01T00:00:00Z", "to"),
    ] {
        let response = app.usage_summary(query).await;
        assert_eq!(response.status(), 422, "{query}");
        let error = error_body(response).await;
        assert_eq!(error["code"], "validation_failed", "{query}");
        assert_eq!(error["details"][0]["field"], field, "{query}: {error}");
    }
    // The widest range allowed, and a `to` whose default `from` would fall before year 1.
    for query in [
        "?from=0001-01-01&to=9999-12-31",
        "?to=0001-01-02",
        "?from=9999-12-30&to=9999-12-31T23:59:59Z",
    ] {
        let response = app.usage_summary(query).await;
        assert_eq!(response.status(), 200, "{query}");
    }
    let answered = app.usage_summary("").await;
    assert_eq!(answered.status(), 200, "the server still serves");
}

/// The mock, except that a message containing a cue makes the call panic: `PANIC-NOW` in
/// `complete` or before a stream starts, `PANIC-MIDWAY` after a stream's first delta.
#[derive(Debug)]
struct PanicsOnCue(MockProvider);

fn cue(request: &ProviderRequest) -> Option<&'static str> {
    let last = request.messages.last()?;
    ["PANIC-NOW", "PANIC-MIDWAY"]
        .into_iter()
        .find(|cue| last.text().contains(cue))
}

fn explode<T>(where_: &str) -> T {
    panic!("the test provider was told to panic {where_}")
}

impl ChatProvider for PanicsOnCue {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mock
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        match cue(request) {
            Some(_) => {
                Box::pin(async { explode::<Result<Completion, ProviderError>>("in complete") })
            }
            None => self.0.complete(request),
        }
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        match cue(request) {
            Some("PANIC-MIDWAY") => Box::pin(async {
                let events: EventStream = Box::pin(futures_util::StreamExt::chain(
                    stream::iter([Ok(StreamEvent::TextDelta("the start ".to_owned()))]),
                    stream::once(async { explode("mid-stream") }),
                ));
                Ok(events)
            }),
            Some(_) => Box::pin(async { explode("before the stream") }),
            None => self.0.stream(request),
        }
    }
}

async fn app_with_a_panicking_mock() -> TestApp {
    TestApp::spawn_with_providers(
        |_, _| {},
        |registry| {
            registry.register(Arc::new(PanicsOnCue(MockProvider::new(MockConfig {
                latency_ms: 0,
                chunk_count: 3,
                chunk_delay_ms: 0,
            }))));
        },
    )
    .await
}

#[tokio::test]
async fn a_handler_panic_is_a_500_with_its_request_id_and_an_internal_error_row() {
    let app = app_with_a_panicking_mock().await;
    let calls = [
        (
            "/chat/send",
            json!({"specialist_id": "demo", "message": "PANIC-NOW please"}),
        ),
        (
            "/chat/stream",
            json!({"specialist_id": "demo", "message": "PANIC-NOW please"}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "demo", "messages": [{"role": "user", "content": "PANIC-NOW"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "demo", "stream": true,
                   "messages": [{"role": "user", "content": "PANIC-NOW"}]}),
        ),
    ];
    let mut request_ids = Vec::new();
    for (path, body) in &calls {
        let response = app.post_json(path, body).await;
        assert_eq!(response.status(), 500, "{path}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal_error", "{path}: {body}");
        if path.starts_with("/v1/") {
            assert_eq!(body["error"]["type"], "api_error", "{body}");
        } else {
            assert_eq!(body["error"]["request_id"], request_id.as_str(), "{body}");
        }
        assert!(
            !body.to_string().contains("told to panic"),
            "the panic's text stays in the log: {body}"
        );
        request_ids.push(request_id);
    }

    let rows = app.wait_for_usage_rows(calls.len()).await;
    assert_eq!(rows.len(), calls.len(), "one row per call: {rows:?}");
    for request_id in &request_ids {
        let row = rows
            .iter()
            .find(|row| &row.request_id == request_id)
            .unwrap_or_else(|| panic!("no row for {request_id}: {rows:?}"));
        assert!(!row.success);
        assert_eq!(row.error_code.as_deref(), Some("internal_error"), "{row:?}");
    }

    // The worker that panicked goes on serving, a chat call included.
    let answered = app.chat("demo", "hi").await;
    assert_eq!(answered.status(), 200);
}

#[tokio::test]
async fn a_stream_that_panics_mid_way_ends_with_an_error_event_and_an_internal_error_row() {
    let app = app_with_a_panicking_mock().await;

    let sent = Instant::now();
    let response = app
        .post_json(
            "/chat/stream",
            &json!({"specialist_id": "demo", "message": "PANIC-MIDWAY"}),
        )
        .await;
    let events = read_sse(response, sent).await;
    assert_eq!(events[0].event, "message");
    assert_eq!(events[0].json()["content"], "the start ");
    let last = events.last().unwrap();
    assert_eq!(last.event, "error", "{events:?}");
    assert_eq!(last.json()["code"], "internal_error");

    let sent = Instant::now();
    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "demo", "stream": true,
                    "messages": [{"role": "user", "content": "PANIC-MIDWAY"}]}),
        )
        .await;
    let events = read_sse(response, sent).await;
    let last = events.last().unwrap();
    assert_eq!(last.json()["error"]["code"], "internal_error", "{events:?}");
    assert!(
        events.iter().all(|e| e.data != "[DONE]"),
        "not a whole answer"
    );

    let rows = app.wait_for_usage_rows(2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert!(row.streamed && !row.success);
        assert_eq!(row.error_code.as_deref(), Some("internal_error"), "{row:?}");
        assert!(
            row.output_tokens > 0,
            "the delivered text is counted: {row:?}"
        );
    }
    let answered = app.chat("demo", "hi").await;
    assert_eq!(answered.status(), 200);
}

#[tokio::test]
async fn the_clean_answer_check_fails_a_stream_that_panicked_inside_a_200() {
    // The generated-input test below relies on this: a panic on a stream route is a 200 whose
    // last event is an internal_error, which a status check alone would call clean.
    let app = app_with_a_panicking_mock().await;
    let native = |message: &str| json!({"specialist_id": "demo", "message": message});
    let openai = |message: &str| {
        json!({"model": "demo", "stream": true,
               "messages": [{"role": "user", "content": message}]})
    };
    for (path, body) in [
        ("/chat/stream", native("PANIC-MIDWAY")),
        ("/v1/chat/completions", openai("PANIC-MIDWAY")),
    ] {
        let response = app.post_json(path, &body).await;
        assert_eq!(response.status(), 200, "{path}");
        let verdict = answered_cleanly(response, path).await;
        let complaint = verdict.expect_err("a stream that panicked is not a clean answer");
        assert!(complaint.contains("internal_error"), "{path}: {complaint}");
    }
    // And a whole stream still passes.
    for (path, body) in [
        ("/chat/stream", native("hello")),
        ("/v1/chat/completions", openai("hello")),
    ] {
        let response = app.post_json(path, &body).await;
        assert_eq!(answered_cleanly(response, path).await, Ok(()), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_usage_do_not_tell_clients_where_the_database_is() {
    let database = TestDatabase::create();
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = database.url_via(proxy.address());
    let database_name = url.rsplit('/').next().unwrap().to_owned();
    let port = proxy.address().port().to_string();
    let app = TestApp::spawn_with(move |settings, _| {
        settings.database.url = url;
        settings.database.connect_timeout_ms = 500;
    })
    .await;
    proxy.cut();

    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    let usage = app.usage_summary("?scope=own").await;
    assert_eq!(usage.status(), 503);
    for response in [ready, usage] {
        let error = error_body(response).await;
        assert_eq!(error["code"], "service_unavailable");
        let text = error.to_string();
        for secret in [
            database_name.as_str(),
            port.as_str(),
            "127.0.0.1",
            "postgres",
        ] {
            assert!(
                !text.contains(secret),
                "'{secret}' reached the client: {text}"
            );
        }
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("the usage database is unavailable"),
            "{error}"
        );
    }
}

/// Generated request bodies and query strings for every route that decodes one.
mod generated {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// Field names of every route's body (and of their nested parts), so generated objects
    /// reach past "unknown field" into each field's own checks.
    const KEYS: &[&str] = &[
        "specialist_id",
        "message",
        "conversation_history",
        "role",
        "content",
        "model",
        "messages",
        "stream",
        "stream_options",
        "include_usage",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "name",
        "description",
        "provider",
        "base_url",
        "system_prompt",
        "pricing",
        "input_per_1m",
        "output_per_1m",
        "id",
        "version",
        "type",
        "text",
        "user",
    ];

    /// Strings a route gives meaning to, beside arbitrary ones.
    const WORDS: &[&str] = &[
        "demo",
        "general",
        "user",
        "assistant",
        "system",
        "openai",
        "mock",
        "text",
        "https://example.com/v1",
        "",
    ];

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(WORDS).prop_map(str::to_owned),
            "(?s).{0,24}",
        ]
    }

    /// Any JSON value, a few levels deep.
    pub(super) fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(KEYS).prop_map(str::to_owned),
            1 => "(?s).{0,8}",
        ]
    }

    /// An object of a route's own fields (any values), or any JSON at all.
    pub(super) fn body() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => proptest::collection::vec((key(), json()), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
            1 => json(),
        ]
    }

    /// Bytes that are rarely JSON at all.
    pub(super) fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..48)
    }

    /// `/usage/summary` parameters: dates in and far out of range, and any text.
    pub(super) fn usage_query() -> impl Strategy<Value = Vec<(String, String)>> {
        let value = prop_oneof![
            // Years anywhere, and close to the ends of what chrono can hold.
            (
                prop_oneof![
                    any::<i32>(),
                    -262_150i32..-262_100,
                    262_100i32..262_150,
                    -5i32..10_005
                ],
                0u32..14,
                0u32..33
            )
                .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
            (-300_000i64..300_000, 0u32..14, 0u32..33)
                .prop_map(|(y, m, d)| format!("{y:+05}-{m:02}-{d:02}T00:00:00Z")),
            proptest::sample::select(&["specialist", "day", "user", "own", "all"][..])
                .prop_map(str::to_owned),
            // The ends of chrono's calendar, where date arithmetic overflows.
            proptest::sample::select(
                &[
                    "-262143-01-01",
                    "-262144-12-31",
                    "+262142-12-31",
                    "262142-12-31",
                    "0000-01-01",
                    "9999-12-31",
                ][..]
            )
            .prop_map(str::to_owned),
            "(?s).{0,24}",
        ];
        let name = proptest::sample::select(&["from", "to", "group_by", "scope", "other"][..]);
        proptest::collection::vec((name.prop_map(str::to_owned), value), 0..5)
    }

    /// `GET /specialists` query strings: `provider` (repeated, empty, any case, any text) and
    /// unknown parameters as pairs, or any raw query text.
    pub(super) fn specialists_query() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            proptest::sample::select(&["openai", "anthropic", "google", "mock", "OpenAI", ""][..])
                .prop_map(str::to_owned),
            text(),
        ];
        let name = proptest::sample::select(&["provider", "Provider", "other", ""][..]);
        let pairs = proptest::collection::vec((name, value), 0..4).prop_map(|pairs| {
            pairs
                .iter()
                .map(|(name, value)| format!("{name}={}", percent_encoded(value)))
                .collect::<Vec<_>>()
                .join("&")
        });
        prop_oneof![3 => pairs, 1 => raw_url_text()]
    }

    /// A path segment to put where a route takes an id: any text percent-encoded, or raw URL
    /// text with escapes that decode to anything (NUL, a lone `/`, bytes that are not UTF-8).
    pub(super) fn path_id() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(
                &[
                    "demo", "general", "DEMO", "Demo", "%2e%2e", "%2F", "%00", "%FF", "%C0%AE",
                    "a%", "%zz", "d%65mo",
                ][..]
            )
            .prop_map(str::to_owned),
            text().prop_map(|t| percent_encoded(&t)),
            raw_url_text(),
        ]
    }

    /// An `If-Match` value: versions in every spelling, out of range, and any bytes a header
    /// may carry (visible ASCII, tab, and the obsolete 0x80–0xFF text).
    pub(super) fn if_match() -> impl Strategy<Value = Option<Vec<u8>>> {
        let spelled = proptest::sample::select(
            &[
                "1",
                "\"1\"",
                "W/\"1\"",
                "*",
                "\"4294967296\"",
                "-1",
                "W/",
                "\"\"",
                "W/\"\"",
                "\"1",
                "1\"",
                " \"2\" ",
                "\"1\", \"2\"",
                "W/W/\"1\"",
                "0x1",
                "+1",
                "1e3",
            ][..],
        )
        .prop_map(|v| v.as_bytes().to_vec());
        let any_header_bytes =
            proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..24);
        proptest::option::weighted(0.9, prop_oneof![2 => spelled, 1 => any_header_bytes])
    }

    /// URL text with percent escapes, never a `/`, `?` or `#` of its own.
    fn raw_url_text() -> impl Strategy<Value = String> {
        "([A-Za-z0-9._~!$&'()*+,;=:@%-]|%[0-9A-Fa-f]{2}){0,24}"
    }

    fn percent_encoded(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
}

/// One generated request: status never 500, and every error answer in its route's shape.
async fn answered_cleanly(response: reqwest::Response, what: &str) -> Result<(), String> {
    let status = response.status();
    let path = response.url().path().to_owned();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{what}: the answer broke off: {e}"))?;
    if status == 500 {
        return Err(format!("{what}: 500 {}", String::from_utf8_lossy(&body)));
    }
    if headers.get("x-request-id").is_none() {
        return Err(format!("{what}: no X-Request-Id"));
    }
    if status.is_success() {
        let streamed = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        return match streamed.then(|| internal_error_event(&body)).flatten() {
            Some(event) => Err(format!("{what}: the stream broke inside: {event}")),
            None => Ok(()),
        };
    }
    let error: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{what}: {status} without a JSON body ({e})"))?;
    let shaped = error["error"]["code"].is_string() && error["error"]["message"].is_string();
    let with_id = path.starts_with("/v1/") || error["error"]["request_id"].is_string();
    if shaped && with_id {
        Ok(())
    } else {
        Err(format!("{what}: {status} {error}"))
    }
}

/// The `internal_error` event (`/chat/stream`) or error chunk (`/v1`) in a streamed body: a
/// stream's status is sent before its first event, so a panic inside one comes back as a 200.
fn internal_error_event(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .find(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&data.join("\n")) else {
                return false;
            };
            let named_error = event.lines().any(|line| line.trim_end() == "event: error");
            json["error"]["code"] == "internal_error"
                || (named_error && json["code"] == "internal_error")
        })
        .map(str::to_owned)
}

/// Runs `cases` generated inputs of `strategy` against the running `app` with `send`.
fn check_route<S, F>(
    runtime: &tokio::runtime::Runtime,
    app: &TestApp,
    cases: u32,
    strategy: S,
    send: F,
) where
    S: proptest::strategy::Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(&TestApp, S::Value) -> reqwest::RequestBuilder,
{
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    });
    let outcome = runner.run(&strategy, |input| {
        let what = format!("{input:?}");
        let request = send(app, input);
        runtime
            .block_on(async {
                let response = request
                    .send()
                    .await
                    .map_err(|e| format!("{what}: no answer: {e}"))?;
                answered_cleanly(response, &what).await
            })
            .map_err(proptest::test_runner::TestCaseError::fail)
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// `prefix` + a generated path segment + `suffix` on the app, as a URL.
fn id_url(app: &TestApp, prefix: &str, id: &str, suffix: &str) -> reqwest::Url {
    let url = app.url(&format!("{prefix}{id}{suffix}"));
    // The generated segments are URL text already (escapes included), so this always parses.
    reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn with_if_match(
    request: reqwest::RequestBuilder,
    version: Option<Vec<u8>>,
) -> reqwest::RequestBuilder {
    match version {
        Some(bytes) => {
            let value = reqwest::header::HeaderValue::from_bytes(&bytes)
                .expect("generated from the bytes a header value may hold");
            request.header(reqwest::header::IF_MATCH, value)
        }
        None => request,
    }
}

#[test]
fn generated_bodies_and_queries_never_panic_a_route() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn_with(|settings, _| {
        settings.providers.mock.chunk_delay_ms = 0;
        settings.providers.mock.latency_ms = 0;
    }));
    let json_routes: &[(reqwest::Method, &str)] = &[
        (reqwest::Method::POST, "/chat/send"),
        (reqwest::Method::POST, "/chat/stream"),
        (reqwest::Method::POST, "/v1/chat/completions"),
        (reqwest::Method::POST, "/specialists"),
        (reqwest::Method::PUT, "/specialists/general"),
        (reqwest::Method::PATCH, "/specialists/general"),
    ];
    for (method, path) in json_routes {
        check_route(&runtime, &app, 300, generated::body(), |app, body| {
            app.client
                .request(method.clone(), app.url(path))
                .json(&body)
        });
        check_route(&runtime, &app, 60, generated::bytes(), |app, bytes| {
            app.client
                .request(method.clone(), app.url(path))
                .header("content-type", "application/json")
                .body(bytes)
        });
    }
    check_route(
        &runtime,
        &app,
        400,
        generated::usage_query(),
        |app, query| {
            let url = reqwest::Url::parse_with_params(&app.url("/usage/summary"), &query)
                .expect("a URL with any parameters percent-encoded");
            app.client.get(url)
        },
    );
    check_route(
        &runtime,
        &app,
        300,
        generated::specialists_query(),
        |app, query| app.client.get(app.url(&format!("/specialists?{query}"))),
    );
    for (method, path) in [
        (reqwest::Method::GET, "/specialists/"),
        (reqwest::Method::GET, "/v1/models/"),
    ] {
        check_route(&runtime, &app, 200, generated::path_id(), |app, id| {
            app.client
                .request(method.clone(), id_url(app, path, &id, ""))
        });
    }
    // A generated id, version and body at once: each is checked in turn, so every one of
    // them gets to be the one at fault.
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
        let inputs = (
            proptest::prop_oneof![
                proptest::strategy::Just("general".to_owned()),
                generated::path_id()
            ],
            generated::if_match(),
            generated::body(),
        );
        check_route(&runtime, &app, 300, inputs, |app, (id, version, body)| {
            with_if_match(
                app.client
                    .request(method.clone(), id_url(app, "/specialists/", &id, ""))
                    .json(&body),
                version,
            )
        });
    }
    // Last, as they change the catalogue most: copies, and deletions (of `demo` and
    // `general` too, when a generated id and version name them).
    check_route(&runtime, &app, 150, generated::path_id(), |app, id| {
        app.client
            .post(id_url(app, "/specialists/", &id, "/duplicate"))
    });
    check_route(
        &runtime,
        &app,
        150,
        (generated::path_id(), generated::if_match()),
        |app, (id, version)| {
            with_if_match(
                app.client.delete(id_url(app, "/specialists/", &id, "")),
                version,
            )
        },
    );
    // And the server is still whole.
    runtime.block_on(async move {
        let health = app.get("/health").await;
        assert_eq!(health.status(), 200);
    });
}
