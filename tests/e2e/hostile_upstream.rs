//! Upstreams that misbehave on purpose (issue 16): absurd `Retry-After` values, a 401 that
//! quotes our key back upper-cased, a stream event and a body too large to hold. Every call
//! must end in a proper error response and its usage row, on every provider and chat route.

use e2e_support::{TestApp, catalogue, error_body, one_per_provider, read_sse, server_logs};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use secrecy::SecretString;
use serde_json::{Value, json};

// Only the OpenAI key has a prefix the redaction knows (`sk-`): the other two are found only
// because the configured secret itself is matched in any letter case, so the 401 test below
// depends on that, not on the key-shaped-word fallback.
const OPENAI_KEY: &str = "sk-hostile-OpenAI-key-5f0c2e9a";
const ANTHROPIC_KEY: &str = "hostile-Anthropic-key-8d41b7";
const GOOGLE_KEY: &str = "Hostile_Google_key_3c9e77aa";

/// One fake per provider and the server pointed at all three.
struct Upstreams {
    openai: FakeUpstream,
    anthropic: FakeUpstream,
    google: FakeUpstream,
    app: TestApp,
}

impl Upstreams {
    async fn start(customize: impl FnOnce(&mut providers::ProvidersConfig)) -> Self {
        let openai = FakeUpstream::start(Wire::OpenAi).await;
        let anthropic = FakeUpstream::start(Wire::Anthropic).await;
        let google = FakeUpstream::start(Wire::Google).await;
        let urls = [openai.base_url(), anthropic.base_url(), google.base_url()].map(str::to_owned);
        let app = TestApp::spawn_with(move |settings, dir| {
            std::fs::write(dir.join("specialists.json"), catalogue(one_per_provider())).unwrap();
            let providers = &mut settings.providers;
            for (upstream, url, key) in [
                (&mut providers.openai, &urls[0], OPENAI_KEY),
                (&mut providers.anthropic, &urls[1], ANTHROPIC_KEY),
                (&mut providers.google, &urls[2], GOOGLE_KEY),
            ] {
                upstream.base_url = url.clone();
                upstream.api_key = Some(SecretString::from(key));
                upstream.retry_base_delay_ms = 1;
                upstream.first_byte_timeout_ms = 5_000;
            }
            customize(providers);
        })
        .await;
        Self {
            openai,
            anthropic,
            google,
            app,
        }
    }

    /// Each provider's fake, its specialist and its name.
    fn each(&self) -> [(&FakeUpstream, &'static str, &'static str); 3] {
        [
            (&self.openai, "analyst", "openai"),
            (&self.anthropic, "reviewer", "anthropic"),
            (&self.google, "gemini", "google"),
        ]
    }
}

/// The four ways to ask for an answer.
#[derive(Debug, Clone, Copy)]
enum Route {
    Send,
    Stream,
    Completions,
    CompletionsStream,
}

const ROUTES: [Route; 4] = [
    Route::Send,
    Route::Stream,
    Route::Completions,
    Route::CompletionsStream,
];

impl Route {
    async fn ask(self, app: &TestApp, specialist: &str) -> reqwest::Response {
        let native = json!({"specialist_id": specialist, "message": "How did Q3 go?"});
        let openai = |stream: bool| {
            json!({"model": specialist, "stream": stream,
                   "messages": [{"role": "user", "content": "How did Q3 go?"}]})
        };
        let (path, body) = match self {
            Self::Send => ("/chat/send", native),
            Self::Stream => ("/chat/stream", native),
            Self::Completions => ("/v1/chat/completions", openai(false)),
            Self::CompletionsStream => ("/v1/chat/completions", openai(true)),
        };
        app.client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{self:?} for {specialist} got no response: {e}"))
    }

    /// The error's `code` and `message`, from the route's error shape.
    async fn error(self, response: reqwest::Response) -> (String, String) {
        let error = match self {
            Self::Send | Self::Stream => error_body(response).await,
            Self::Completions | Self::CompletionsStream => {
                let body: Value = response.json().await.expect("an OpenAI error object");
                body["error"].clone()
            }
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (text(&error["code"]), text(&error["message"]))
    }
}

#[tokio::test]
async fn retry_after_1e20_is_a_429_with_a_sane_retry_after_on_every_provider_and_route() {
    let upstreams = Upstreams::start(|_| {}).await;
    for (fake, _, _) in upstreams.each() {
        fake.set_default(Reply::status(429, "slow down").retry_after("1e20"));
    }
    let mut calls = 0;
    for (_, specialist, _) in upstreams.each() {
        for route in ROUTES {
            let response = route.ask(&upstreams.app, specialist).await;
            calls += 1;
            assert_eq!(response.status(), 429, "{route:?} {specialist}");
            assert_eq!(
                response.headers()["retry-after"],
                "86400",
                "capped at a day: {route:?} {specialist}"
            );
            let (code, _) = route.error(response).await;
            assert_eq!(code, "upstream_rate_limited", "{route:?} {specialist}");
        }
    }
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), calls, "one row per call");
    for row in &rows {
        assert!(!row.success);
        assert_eq!(
            row.error_code.as_deref(),
            Some("upstream_rate_limited"),
            "{} {}",
            row.provider,
            row.streamed
        );
    }
}

#[tokio::test]
async fn every_absurd_retry_after_form_is_capped_or_ignored() {
    let upstreams = Upstreams::start(|p| p.openai.max_retries = 0).await;
    let cases = [
        ("retry-after-ms", "1e20", Some("86400")),
        ("retry-after", "99999999999999999999999999", Some("86400")),
        (
            "retry-after",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            Some("86400"),
        ),
        ("retry-after", "inf", None),
        ("retry-after", "NaN", None),
        ("retry-after", "-5", None),
    ];
    for (header, value, _) in cases {
        upstreams
            .openai
            .push(Reply::status(429, "slow down").header(header, value));
    }
    for (header, value, expected) in cases {
        let response = Route::Send.ask(&upstreams.app, "analyst").await;
        assert_eq!(response.status(), 429, "{header}: {value}");
        let sent = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(sent.as_deref(), expected, "{header}: {value}");
        assert_eq!(error_body(response).await["code"], "upstream_rate_limited");
    }
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), cases.len());
    assert!(
        rows.iter()
            .all(|r| r.error_code.as_deref() == Some("upstream_rate_limited"))
    );
}

#[tokio::test]
async fn an_upstream_401_quoting_the_key_upper_cased_reaches_neither_client_nor_log() {
    let logs = server_logs();
    let upstreams = Upstreams::start(|_| {}).await;
    for (fake, _, _) in upstreams.each() {
        fake.set_default(Reply::echo_key_upper_cased());
    }
    let mut bodies = String::new();
    for (_, specialist, provider) in upstreams.each() {
        for route in ROUTES {
            let response = route.ask(&upstreams.app, specialist).await;
            assert_eq!(response.status(), 502, "{route:?} {specialist}");
            let body = response.text().await.unwrap();
            bodies.push_str(&body);
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"]["code"], "upstream_auth_failed", "{body}");
            assert_eq!(
                error["error"]["message"],
                format!(
                    "the upstream refused the configured credentials for {provider} (HTTP 401); \
                     the server log has the upstream's message"
                ),
                "a fixed message, none of the upstream's words: {body}"
            );
        }
    }
    // The fakes really did quote the keys.
    assert!(
        upstreams.openai.request_count() > 0
            && upstreams.anthropic.request_count() > 0
            && upstreams.google.request_count() > 0
    );
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), 12);
    assert!(
        rows.iter()
            .all(|r| r.error_code.as_deref() == Some("upstream_auth_failed"))
    );

    let logs = logs.text().to_lowercase();
    assert!(
        logs.contains("the upstream refused the configured credentials")
            && logs.contains("incorrect api key provided: [redacted]"),
        "the upstream's words, redacted, are in the log"
    );
    let bodies = bodies.to_lowercase();
    for key in [OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY] {
        let key = key.to_lowercase();
        assert!(!bodies.contains(&key), "{key} reached a client");
        assert!(!logs.contains(&key), "{key} reached the log");
    }
}

#[tokio::test]
async fn a_stream_that_starts_with_a_byte_order_mark_is_answered() {
    // The SSE format allows a leading BOM; the decoder used before sliced into it and panicked.
    let upstreams = Upstreams::start(|_| {}).await;
    for (fake, specialist, _) in upstreams.each() {
        for route in [Route::Stream, Route::CompletionsStream] {
            fake.push(Reply::text("Revenue grew.").byte_order_mark());
            let response = route.ask(&upstreams.app, specialist).await;
            let events = read_sse(response, tokio::time::Instant::now()).await;
            let text: String = events
                .iter()
                .filter(|e| e.data != "[DONE]")
                .map(|e| {
                    let json = e.json();
                    let content = match route {
                        Route::Stream => &json["content"],
                        _ => &json["choices"][0]["delta"]["content"],
                    };
                    content.as_str().unwrap_or_default().to_owned()
                })
                .collect();
            assert_eq!(text, "Revenue grew.", "{route:?} {specialist}");
        }
    }
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.success));
}

#[tokio::test]
async fn a_stream_event_over_max_event_bytes_fails_the_call_with_upstream_error() {
    let upstreams = Upstreams::start(|_| {}).await;
    let two_mib = 2 * 1024 * 1024;
    let mut calls = 0;
    for (fake, specialist, _) in upstreams.each() {
        for route in [Route::Stream, Route::CompletionsStream] {
            fake.push(Reply::oversized(200, two_mib));
            let response = route.ask(&upstreams.app, specialist).await;
            calls += 1;
            assert_eq!(response.status(), 502, "{route:?} {specialist}");
            let (code, message) = route.error(response).await;
            assert_eq!(code, "upstream_error");
            assert!(message.contains("event too large"), "{message}");
        }
    }
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), calls);
    assert!(
        rows.iter()
            .all(|r| r.streamed && r.error_code.as_deref() == Some("upstream_error"))
    );
}

#[tokio::test]
async fn an_event_over_max_event_bytes_mid_stream_ends_it_with_an_error_event_and_a_row() {
    let upstreams = Upstreams::start(|_| {}).await;
    let mut calls = 0;
    for (fake, specialist, _) in upstreams.each() {
        for route in [Route::Stream, Route::CompletionsStream] {
            fake.push(
                Reply::text("one two three four")
                    .chunks(4)
                    .oversized_event_after(2, 2 * 1024 * 1024),
            );
            let response = route.ask(&upstreams.app, specialist).await;
            calls += 1;
            let events = read_sse(response, tokio::time::Instant::now()).await;
            let last = events.last().expect("events before the failure");
            let (code, message) = match route {
                Route::Stream => {
                    assert_eq!(last.event, "error", "{route:?} {specialist}");
                    (last.json()["code"].clone(), last.json()["message"].clone())
                }
                _ => (
                    last.json()["error"]["code"].clone(),
                    last.json()["error"]["message"].clone(),
                ),
            };
            assert_eq!(code, "upstream_error", "{route:?} {specialist}");
            let message = message.as_str().unwrap_or_default();
            assert!(message.contains("event too large"), "{message}");
        }
    }
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), calls);
    for row in &rows {
        assert!(row.streamed && !row.success);
        assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
        assert!(row.output_tokens > 0, "the text delivered is charged");
    }
}

#[tokio::test]
async fn a_body_over_max_response_bytes_is_abandoned_with_upstream_error() {
    let one_mib = 1024 * 1024;
    let hundred_mib = 100 * one_mib;
    let upstreams = Upstreams::start(|p| {
        p.max_response_bytes = std::num::NonZeroUsize::new(one_mib).unwrap();
        p.openai.max_retries = 0;
    })
    .await;
    let fake = &upstreams.openai;
    // A success body and an error body, on both whole-answer routes.
    let cases = [
        (Route::Send, 200),
        (Route::Completions, 200),
        (Route::Send, 500),
    ];
    for (route, status) in cases {
        fake.push(Reply::oversized(status, hundred_mib));
        let response = route.ask(&upstreams.app, "analyst").await;
        assert_eq!(response.status(), 502, "{route:?} {status}");
        let (code, message) = route.error(response).await;
        assert_eq!(code, "upstream_error");
        assert!(message.contains("response too large"), "{message}");
    }
    // Each body was read only until it passed the limit, then the connection was dropped.
    assert!(
        fake.wait_for_streams_closed(cases.len(), std::time::Duration::from_secs(10))
            .await
    );
    let sent = fake.padding_bytes_sent();
    assert!(
        sent < cases.len() * 20 * one_mib,
        "{sent} bytes of 3 × 100 MiB were sent"
    );
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), cases.len());
    assert!(
        rows.iter()
            .all(|r| !r.success && r.error_code.as_deref() == Some("upstream_error"))
    );
    // After a 200 the model did the work, so its prompt is billed; a 500 proves it did none.
    for (row, (route, status)) in rows.iter().zip(cases) {
        let billed = if status == 200 {
            i64::from(prompt_estimate("analyst"))
        } else {
            0
        };
        assert_eq!(row.input_tokens, billed, "{route:?} {status}");
    }
}

/// What the server estimates for the prompt every [`Route`] sends to `specialist`.
fn prompt_estimate(specialist: &str) -> u32 {
    let system_prompt = match specialist {
        "analyst" => "Analyse.",
        "reviewer" => "Review.",
        _ => "Help.",
    };
    core_domain::estimate_prompt_tokens(
        system_prompt,
        &[core_domain::ChatMessage::user("How did Q3 go?")],
    )
}

/// Each provider's 200 that parses but carries no answer.
fn no_answer(provider: &str) -> Reply {
    let body = match provider {
        "openai" => json!({"model": "gpt-4o", "choices": []}),
        "anthropic" => json!({"type": "message", "stop_reason": "end_turn"}),
        _ => json!({"modelVersion": "gemini-2.0-flash"}),
    };
    Reply::status(200, body.to_string())
}

#[tokio::test]
async fn an_unusable_200_is_a_502_upstream_bad_response_billed_for_the_prompt() {
    let upstreams = Upstreams::start(|_| {}).await;
    let mut calls = Vec::new();
    for (fake, specialist, provider) in upstreams.each() {
        for (what, reply) in [
            ("malformed", Reply::malformed()),
            ("no answer", no_answer(provider)),
        ] {
            for route in [Route::Send, Route::Completions] {
                fake.push(reply.clone());
                let response = route.ask(&upstreams.app, specialist).await;
                calls.push((provider, specialist));
                assert_eq!(response.status(), 502, "{what} {route:?} {specialist}");
                if let Route::Completions = route {
                    let body: Value = response.json().await.unwrap();
                    assert_eq!(body["error"]["type"], "api_error", "{what} {specialist}");
                    assert_eq!(body["error"]["code"], "upstream_bad_response");
                    continue;
                }
                let (code, message) = route.error(response).await;
                assert_eq!(
                    code, "upstream_bad_response",
                    "{what} {route:?} {specialist}"
                );
                assert!(
                    message.contains("unusable"),
                    "{what} {specialist}: {message}"
                );
            }
        }
        assert_eq!(fake.request_count(), 4, "{specialist}: never retried");
    }
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), calls.len(), "one row per call");
    for row in &rows {
        let specialist = row.specialist_id.as_str();
        let what = format!("{} {specialist}", row.provider);
        assert!(!row.success, "{what}");
        assert!(!row.streamed, "{what}");
        assert_eq!(
            row.error_code.as_deref(),
            Some("upstream_bad_response"),
            "{what}"
        );
        let estimate = prompt_estimate(specialist);
        assert!(estimate > 0);
        assert_eq!(row.input_tokens, i64::from(estimate), "{what}");
        assert_eq!(row.output_tokens, 0, "{what}");
        assert!(row.tokens_estimated, "{what}");
        assert!(row.pricing_known, "{what}");
        assert!(row.estimated_cost_usd > 0.0, "{what}");
    }
    let metrics = upstreams.app.metrics().await;
    for provider in ["openai", "anthropic", "google"] {
        let key = format!(
            "commander_upstream_errors_total{{code=\"upstream_bad_response\",provider=\"{provider}\"}}"
        );
        assert_eq!(metrics.get(&key), Some(&4.0), "{key}");
    }
}

#[tokio::test]
async fn a_malformed_stream_is_a_502_upstream_bad_response_billed_for_the_prompt() {
    let upstreams = Upstreams::start(|_| {}).await;
    let mut calls = 0;
    for (fake, specialist, _) in upstreams.each() {
        for route in [Route::Stream, Route::CompletionsStream] {
            fake.push(Reply::malformed());
            let response = route.ask(&upstreams.app, specialist).await;
            calls += 1;
            assert_eq!(response.status(), 502, "{route:?} {specialist}");
            let (code, _) = route.error(response).await;
            assert_eq!(code, "upstream_bad_response", "{route:?} {specialist}");
        }
    }
    let rows = upstreams.app.usage_rows().await;
    assert_eq!(rows.len(), calls);
    for row in &rows {
        let what = format!("{} streamed", row.provider);
        assert!(row.streamed, "{what}");
        assert_eq!(
            row.error_code.as_deref(),
            Some("upstream_bad_response"),
            "{what}"
        );
        assert_eq!(
            row.input_tokens,
            i64::from(prompt_estimate(&row.specialist_id)),
            "{what}"
        );
        assert!(row.tokens_estimated, "{what}");
        assert!(row.estimated_cost_usd > 0.0, "{what}");
    }
}
