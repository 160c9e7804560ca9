//! Resilient routing end to end (issue 20): one test per failure, each against real fake
//! upstreams over sockets — the specialist `resilient` on OpenAI's `gpt-4o`, falling back to
//! Anthropic's `claude-3-sonnet` — asserting the answer, the usage row, its attempt rows
//! (`GET /usage/calls/{request_id}`) and the routing metrics.

use std::collections::HashMap;
use std::time::Duration;

use e2e_support::{SseEvent, TestApp, catalogue, error_body, read_sse, specialist};
use fake_upstreams::{FakeUpstream, RecordedRequest, Reply, Wire};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use usage_store::StoredUsage;

const SPECIALIST: &str = "resilient";
const PRIMARY: (&str, &str) = ("openai", "gpt-4o");
const FALLBACK: (&str, &str) = ("anthropic", "claude-3-sonnet");
const QUESTION: &str = "How did Q3 go?";

/// The fallback as the specialist lists it.
fn anthropic_fallback() -> Value {
    json!([{"provider": FALLBACK.0, "model": FALLBACK.1}])
}

/// Both fakes and the server pointed at them.
struct Rig {
    openai: FakeUpstream,
    anthropic: FakeUpstream,
    app: TestApp,
}

impl Rig {
    /// `resilient` with `fields` (its `fallbacks`, `continue_streams`...) over OpenAI at
    /// `openai_url` (the fake's unless given) and the Anthropic fake; both providers answer
    /// headers within 5 s, back off 1 ms, and do not retry unless `customize` says so.
    async fn start(
        fields: Value,
        openai_url: Option<String>,
        customize: impl FnOnce(&mut commander::Settings) + Send + 'static,
    ) -> Self {
        let openai = FakeUpstream::start(Wire::OpenAi).await;
        let anthropic = FakeUpstream::start(Wire::Anthropic).await;
        let openai_url = openai_url.unwrap_or_else(|| openai.base_url().to_owned());
        let anthropic_url = anthropic.base_url().to_owned();
        let app = TestApp::spawn_with(move |settings, dir| {
            std::fs::write(
                dir.join("specialists.json"),
                catalogue([specialist(
                    SPECIALIST, PRIMARY.0, PRIMARY.1, "Analyse.", fields,
                )]),
            )
            .unwrap();
            let providers = &mut settings.providers;
            for (upstream, url, key) in [
                (&mut providers.openai, openai_url, "openai-key-1"),
                (&mut providers.anthropic, anthropic_url, "anthropic-key-1"),
            ] {
                upstream.base_url = url;
                upstream.api_key = Some(SecretString::from(key));
                upstream.retry_base_delay_ms = 1;
                upstream.max_retries = 0;
                upstream.first_byte_timeout_ms = 5_000;
                upstream.idle_timeout_ms = 5_000;
            }
            customize(settings);
        })
        .await;
        Self {
            openai,
            anthropic,
            app,
        }
    }

    /// The usual rig: Anthropic as the one fallback, nothing else changed.
    async fn with_fallback() -> Self {
        Self::start(json!({"fallbacks": anthropic_fallback()}), None, |_| {}).await
    }

    /// `POST /chat/send`, with the elapsed time.
    async fn send(&self) -> (reqwest::Response, Duration) {
        let began = Instant::now();
        let response = self.app.chat(SPECIALIST, QUESTION).await;
        (response, began.elapsed())
    }

    /// `POST /v1/chat/completions`, whole or streamed.
    async fn completions(&self, stream: bool) -> reqwest::Response {
        self.app
            .post_json(
                "/v1/chat/completions",
                &json!({"model": SPECIALIST, "stream": stream,
                        "messages": [{"role": "user", "content": QUESTION}]}),
            )
            .await
    }

    /// `POST /chat/stream`.
    async fn chat_stream(&self) -> reqwest::Response {
        self.app
            .post_json(
                "/chat/stream",
                &json!({"specialist_id": SPECIALIST, "message": QUESTION}),
            )
            .await
    }

    /// The one usage row of `request_id`, and its `GET /usage/calls` view.
    async fn call(&self, request_id: &str) -> (StoredUsage, Value) {
        let rows = self.app.usage_rows().await;
        let mut matching = rows.iter().filter(|row| row.request_id == request_id);
        let row = matching
            .next()
            .unwrap_or_else(|| panic!("no row for {request_id} in {rows:?}"))
            .clone();
        assert!(matching.next().is_none(), "one row per call: {rows:?}");
        let response = self.app.get(&format!("/usage/calls/{request_id}")).await;
        assert_eq!(response.status(), 200, "GET /usage/calls/{request_id}");
        let view: Value = response.json().await.unwrap();
        assert_eq!(view["attempts"], row.attempts, "{view}");
        (row, view)
    }
}

/// The gateway's id for the call that got `response`.
fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The `X-Commander-Served-By` header.
fn served_by(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-commander-served-by")
        .expect("every answer says what served it")
        .to_str()
        .unwrap()
        .to_owned()
}

/// One attempt row as `GET /usage/calls` shows it: `provider/model`, its error code (`ok` when
/// it served), and whether it continued a stream.
fn attempt_summary(view: &Value) -> Vec<(String, String, bool)> {
    view["attempt_details"]
        .as_array()
        .unwrap_or_else(|| panic!("attempt_details is a list: {view}"))
        .iter()
        .map(|a| {
            (
                format!(
                    "{}/{}",
                    a["provider"].as_str().unwrap(),
                    a["model"].as_str().unwrap()
                ),
                a["error_code"].as_str().unwrap_or("ok").to_owned(),
                a["continuation"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// `(target, outcome, continuation)` the way [`attempt_summary`] gives them.
fn attempt(target: (&str, &str), outcome: &str, continuation: bool) -> (String, String, bool) {
    (
        format!("{}/{}", target.0, target.1),
        outcome.to_owned(),
        continuation,
    )
}

/// Checks the row's money: the sum of its attempts' costs, and more than nothing when
/// `consumed`.
fn assert_cost_is_the_attempts_sum(row: &StoredUsage, view: &Value, consumed: bool) {
    let attempts = view["attempt_details"].as_array().unwrap();
    if !attempts.is_empty() {
        let sum: f64 = attempts
            .iter()
            .map(|a| a["cost_usd"].as_f64().unwrap())
            .sum();
        assert!(
            (row.estimated_cost_usd - sum).abs() < 1e-12,
            "row cost {} is the attempts' {sum}: {view}",
            row.estimated_cost_usd
        );
        let (input, output) = attempts.iter().fold((0, 0), |(i, o), a| {
            (
                i + a["input_tokens"].as_i64().unwrap(),
                o + a["output_tokens"].as_i64().unwrap(),
            )
        });
        assert_eq!(
            (row.input_tokens, row.output_tokens),
            (input, output),
            "the row's tokens are its attempts': {view}"
        );
    }
    assert_eq!(row.estimated_cost_usd > 0.0, consumed, "{row:?}");
}

/// The samples of `name` whose labels include every one of `labels`, summed.
fn sample(metrics: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|(key, _)| {
            let Some(rest) = key.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
                return false;
            };
            labels
                .iter()
                .all(|(label, value)| rest.contains(&format!("{label}=\"{value}\"")))
        })
        .map(|(_, value)| value)
        .sum()
}

/// How the routing counters moved between two scrapes.
struct Moved {
    before: HashMap<String, f64>,
    after: HashMap<String, f64>,
}

impl Moved {
    async fn since(app: &TestApp, before: HashMap<String, f64>) -> Self {
        Self {
            before,
            after: app.metrics().await,
        }
    }

    fn by(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample(&self.after, name, labels) - sample(&self.before, name, labels)
    }

    /// Attempts on `target` with `outcome`.
    fn attempts(&self, target: (&str, &str), outcome: &str) -> f64 {
        self.by(
            "commander_upstream_attempts_total",
            &[
                ("specialist", SPECIALIST),
                ("provider", target.0),
                ("model", target.1),
                ("outcome", outcome),
            ],
        )
    }

    /// Every attempt, whatever its target and outcome.
    fn all_attempts(&self) -> f64 {
        self.by(
            "commander_upstream_attempts_total",
            &[("specialist", SPECIALIST)],
        )
    }

    /// Fallbacks to `target` (`None`: to anywhere).
    fn fallbacks(&self, target: Option<(&str, &str)>) -> f64 {
        self.to("commander_fallbacks_total", target)
    }

    /// Continuations on `target` (`None`: anywhere).
    fn continuations(&self, target: Option<(&str, &str)>) -> f64 {
        self.to("commander_stream_continuations_total", target)
    }

    fn to(&self, name: &str, target: Option<(&str, &str)>) -> f64 {
        match target {
            Some((provider, model)) => self.by(
                name,
                &[
                    ("specialist", SPECIALIST),
                    ("provider", provider),
                    ("model", model),
                ],
            ),
            None => self.by(name, &[("specialist", SPECIALIST)]),
        }
    }
}

/// The label the key pool gives the `n`th OpenAI key.
fn openai_key(n: usize) -> String {
    format!("providers.openai.keys[{n}]")
}

/// A key gauge or counter of the OpenAI provider's `n`th key, as scraped now.
async fn openai_key_sample(app: &TestApp, name: &str, n: usize) -> f64 {
    let key = openai_key(n);
    let metrics = app.metrics().await;
    let found = sample(&metrics, name, &[("provider", "openai"), ("key", &key)]);
    assert!(
        metrics
            .keys()
            .any(|k| k.starts_with(name) && k.contains(&format!("key=\"{key}\""))),
        "{name} has a sample for {key}: {metrics:?}"
    );
    found
}

/// What a streamed answer delivered, read from either door's events.
#[derive(Debug, Default)]
struct Delivered {
    text: String,
    /// Final chunks (`is_final` on `/chat/stream`, a `finish_reason` on `/v1`).
    finals: usize,
    /// `[DONE]` markers (`/v1` only).
    done: usize,
    /// Error payloads: `event: error` data on `/chat/stream`, `{"error": ...}` chunks on `/v1`.
    errors: Vec<Value>,
    /// The last final chunk.
    final_chunk: Option<Value>,
}

impl Delivered {
    fn native(events: &[SseEvent]) -> Self {
        let mut seen = Self::default();
        for event in events {
            match event.event.as_str() {
                "message" => {
                    let chunk = event.json();
                    seen.text.push_str(chunk["content"].as_str().unwrap());
                    if chunk["is_final"] == true {
                        seen.finals += 1;
                        seen.final_chunk = Some(chunk);
                    }
                }
                "error" => seen.errors.push(event.json()),
                other => panic!("an unexpected event {other}: {event:?}"),
            }
        }
        seen
    }

    fn openai(events: &[SseEvent]) -> Self {
        let mut seen = Self::default();
        for event in events {
            if event.data == "[DONE]" {
                seen.done += 1;
                continue;
            }
            let chunk = event.json();
            if chunk.get("error").is_some() {
                seen.errors.push(chunk["error"].clone());
                continue;
            }
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            if let Some(text) = choice["delta"]["content"].as_str() {
                seen.text.push_str(text);
            }
            if !choice["finish_reason"].is_null() {
                seen.finals += 1;
                seen.final_chunk = Some(chunk.clone());
            }
        }
        seen
    }
}

/// `text` in `count` pieces the way the fake streams it (nearly equal, on characters).
fn pieces(text: &str, count: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(count).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The text of a recorded Anthropic request's last message, and its role.
fn last_message(request: &RecordedRequest) -> (String, String) {
    let last = request.body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .unwrap_or_else(|| panic!("messages: {}", request.body))
        .clone();
    let text = match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<String>(),
        other => panic!("content: {other}"),
    };
    (last["role"].as_str().unwrap().to_owned(), text)
}

/// A port nothing listens on: bound, then released.
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}

/// The fallback's answer.
const FALLBACK_TEXT: &str = "Anthropic says Q3 was fine.";

/// Checks a whole answer the fallback served on `/chat/send`, its row, attempts and metrics:
/// one failed attempt on the primary with `primary_outcome`, then the fallback.
async fn assert_served_by_fallback(
    rig: &Rig,
    response: reqwest::Response,
    before: HashMap<String, f64>,
    primary_outcome: &str,
) -> (StoredUsage, Value) {
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&response), "anthropic/claude-3-sonnet");
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"], FALLBACK_TEXT, "{body}");
    assert_eq!(body["provider"], FALLBACK.0, "{body}");
    assert_eq!(body["model"], FALLBACK.1, "{body}");

    let (row, view) = rig.call(&id).await;
    assert!(row.success, "{row:?}");
    assert_eq!(row.error_code, None);
    assert_eq!((row.provider.as_str(), row.model.as_str()), FALLBACK);
    assert_eq!(row.attempts, 2);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, primary_outcome, false),
            attempt(FALLBACK, "ok", false)
        ]
    );
    let served = &view["attempt_details"][1];
    assert_eq!(
        (
            served["input_tokens"].as_i64(),
            served["output_tokens"].as_i64()
        ),
        (Some(10), Some(5)),
        "the fallback's own counts: {view}"
    );
    assert_cost_is_the_attempts_sum(&row, &view, true);

    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, primary_outcome), 1.0);
    assert_eq!(moved.attempts(FALLBACK, "ok"), 1.0);
    assert_eq!(moved.all_attempts(), 2.0);
    assert_eq!(moved.fallbacks(Some(FALLBACK)), 1.0);
    assert_eq!(moved.fallbacks(None), 1.0);
    assert_eq!(moved.continuations(None), 0.0);
    (row, view)
}

#[tokio::test]
async fn a_refused_connection_on_the_primary_falls_back() {
    let rig = Rig::start(
        json!({"fallbacks": anthropic_fallback()}),
        Some(refused_url()),
        |_| {},
    )
    .await;
    rig.anthropic.push(Reply::text(FALLBACK_TEXT));
    let before = rig.app.metrics().await;
    let (response, _) = rig.send().await;
    let (_, view) = assert_served_by_fallback(&rig, response, before, "upstream_error").await;
    let refused = &view["attempt_details"][0];
    assert_eq!(
        (
            refused["input_tokens"].as_i64(),
            refused["cost_usd"].as_f64()
        ),
        (Some(0), Some(0.0)),
        "nothing reached a model: {view}"
    );
    assert_eq!(rig.openai.request_count(), 0);
    assert_eq!(rig.anthropic.request_count(), 1);
}

#[tokio::test]
async fn a_500_on_the_primary_falls_back() {
    let rig = Rig::with_fallback().await;
    rig.openai.push(Reply::status(500, "boom"));
    rig.anthropic.push(Reply::text(FALLBACK_TEXT));
    let before = rig.app.metrics().await;
    let (response, _) = rig.send().await;
    assert_served_by_fallback(&rig, response, before, "upstream_error").await;
    assert_eq!(rig.openai.request_count(), 1);
}

#[tokio::test]
async fn a_429_without_retry_after_falls_back_at_once() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        // Were it retried on the primary, the backoff alone would show.
        s.providers.openai.max_retries = 2;
        s.providers.openai.retry_base_delay_ms = 3_000;
    })
    .await;
    rig.openai.push(Reply::status(429, "slow down"));
    rig.anthropic.push(Reply::text(FALLBACK_TEXT));
    let before = rig.app.metrics().await;
    let (response, elapsed) = rig.send().await;
    assert_served_by_fallback(&rig, response, before, "upstream_rate_limited").await;
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(rig.openai.request_count(), 1);
}

#[tokio::test]
async fn a_429_with_a_long_retry_after_on_the_primary_falls_back_at_once() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.max_retries = 2;
    })
    .await;
    rig.openai
        .push(Reply::status(429, "slow down").retry_after("3600"));
    rig.anthropic.push(Reply::text(FALLBACK_TEXT));
    let before = rig.app.metrics().await;
    let (response, elapsed) = rig.send().await;
    assert_served_by_fallback(&rig, response, before, "upstream_rate_limited").await;
    assert!(
        elapsed < Duration::from_secs(5),
        "an hour not waited: {elapsed:?}"
    );
    assert_eq!(rig.openai.request_count(), 1);
}

#[tokio::test]
async fn a_key_asked_to_wait_an_hour_rests_that_long_while_the_next_key_answers() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.api_keys = vec![SecretString::from("openai-key-2")];
    })
    .await;
    rig.openai
        .push(Reply::status(429, "slow down").retry_after("3600"));
    rig.openai.set_default(Reply::text("Answered."));
    let before = rig.app.metrics().await;
    let (first, elapsed) = rig.send().await;
    assert_eq!(first.status(), 200);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let (second, _) = rig.send().await;
    assert_eq!(second.status(), 200);

    let (row, view) = rig.call(&request_id(&first)).await;
    assert_eq!(row.attempts, 2);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, "upstream_rate_limited", false),
            attempt(PRIMARY, "ok", false)
        ]
    );
    let (row, _) = rig.call(&request_id(&second)).await;
    assert_eq!(row.attempts, 1, "the resting key is not tried again");
    let keys: Vec<_> = rig
        .openai
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "Bearer openai-key-1",
            "Bearer openai-key-2",
            "Bearer openai-key-2"
        ]
    );
    assert_eq!(rig.anthropic.request_count(), 0);

    // The key rests for the hour the upstream asked for, not the default minute.
    let cooling = "commander_upstream_key_cooling_seconds";
    let resting = openai_key_sample(&rig.app, cooling, 0).await;
    assert!((3_500.0..=3_600.0).contains(&resting), "{resting}");
    assert_eq!(openai_key_sample(&rig.app, cooling, 1).await, 0.0);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_rate_limited"), 1.0);
    assert_eq!(moved.attempts(PRIMARY, "ok"), 2.0);
    assert_eq!(moved.fallbacks(None), 0.0);
}

#[tokio::test]
async fn a_single_destination_429_with_a_short_retry_after_is_retried_after_it() {
    let rig = Rig::start(json!({}), None, |s| s.providers.openai.max_retries = 1).await;
    rig.openai
        .push(Reply::status(429, "slow down").retry_after("1"));
    rig.openai.push(Reply::text("Retried and fine."));
    let before = rig.app.metrics().await;
    let (response, elapsed) = rig.send().await;
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&response), "openai/gpt-4o");
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"], "Retried and fine.");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "waited the second it was asked to: {elapsed:?}"
    );

    let (row, view) = rig.call(&id).await;
    assert!(row.success);
    assert_eq!(row.attempts, 2);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, "upstream_rate_limited", false),
            attempt(PRIMARY, "ok", false)
        ]
    );
    assert_cost_is_the_attempts_sum(&row, &view, true);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_rate_limited"), 1.0);
    assert_eq!(moved.attempts(PRIMARY, "ok"), 1.0);
    assert_eq!(moved.fallbacks(None), 0.0, "a retry is no fallback");
    assert_eq!(rig.openai.request_count(), 2);
    assert_eq!(rig.anthropic.request_count(), 0);
}

#[tokio::test]
async fn headers_that_never_come_fall_back_after_the_first_byte_timeout() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.first_byte_timeout_ms = 300;
    })
    .await;
    rig.openai
        .push(Reply::text("Too late.").first_byte_delay(Duration::from_millis(1_500)));
    rig.anthropic.push(Reply::text(FALLBACK_TEXT));
    let before = rig.app.metrics().await;
    let (response, elapsed) = rig.send().await;
    let (_, view) = assert_served_by_fallback(&rig, response, before, "upstream_timeout").await;
    assert!(elapsed < Duration::from_millis(1_400), "{elapsed:?}");
    // The request reached the model, which may have read (and billed) the prompt.
    let timed_out = &view["attempt_details"][0];
    assert!(timed_out["input_tokens"].as_i64().unwrap() > 0, "{view}");
    assert_eq!(timed_out["tokens_estimated"], true, "{view}");
    assert!(timed_out["cost_usd"].as_f64().unwrap() > 0.0, "{view}");
}

/// The primary's answer, cut after two of its four chunks: the client has "Q3 sales were
/// good. " (20 characters, ending in a space) when the primary dies.
const PRIMARY_TEXT: &str = "Q3 sales were good. Europe led the gains";
/// The continuation starts with the space a model adds after "good." — the space the client
/// already has, so it is not repeated.
const CONTINUATION: &str = " Europe held up best.";
const CONTINUED_ANSWER: &str = "Q3 sales were good. Europe held up best.";

/// The two doors' streams.
#[derive(Debug, Clone, Copy)]
enum Door {
    Native,
    OpenAi,
}

impl Door {
    async fn stream(self, rig: &Rig) -> (Delivered, String, String) {
        let sent = Instant::now();
        let response = match self {
            Self::Native => rig.chat_stream().await,
            Self::OpenAi => rig.completions(true).await,
        };
        let id = request_id(&response);
        let header = served_by(&response);
        let events = read_sse(response, sent).await;
        let delivered = match self {
            Self::Native => Delivered::native(&events),
            Self::OpenAi => Delivered::openai(&events),
        };
        (delivered, id, header)
    }
}

/// Checks a stream the primary began with the first two chunks of [`PRIMARY_TEXT`], broken
/// with `outcome`, that Anthropic continued.
async fn assert_continued(rig: &Rig, door: Door, outcome: &str) {
    let prefix: String = pieces(PRIMARY_TEXT, 4)[..2].concat();
    assert_eq!(
        prefix, "Q3 sales were good. ",
        "the fake's chunks as planned"
    );
    let anthropic_before = rig.anthropic.request_count();
    let before = rig.app.metrics().await;
    let (delivered, id, header) = door.stream(rig).await;
    assert_eq!(delivered.text, CONTINUED_ANSWER, "{door:?}: {delivered:?}");
    assert!(delivered.text.starts_with(&prefix));
    assert_eq!(delivered.finals, 1, "{door:?}: one end: {delivered:?}");
    assert!(delivered.errors.is_empty(), "{door:?}: {delivered:?}");
    if let Door::OpenAi = door {
        assert_eq!(delivered.done, 1, "{delivered:?}");
    }
    assert_eq!(header, "openai/gpt-4o", "the primary began the answer");

    let requests = rig.anthropic.requests();
    assert_eq!(requests.len(), anthropic_before + 1);
    let continuation = requests.last().unwrap();
    assert_eq!(
        last_message(continuation),
        ("assistant".to_owned(), prefix.trim_end().to_owned()),
        "the prefill is the text so far, trailing whitespace trimmed"
    );
    assert_eq!(
        continuation.body["system"], "Analyse.",
        "the persona goes along"
    );

    let (row, view) = rig.call(&id).await;
    assert!(row.success, "{row:?}");
    assert!(row.streamed);
    assert_eq!((row.provider.as_str(), row.model.as_str()), FALLBACK);
    assert_eq!(row.attempts, 2);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, outcome, false),
            attempt(FALLBACK, "ok", true)
        ]
    );
    let cut = &view["attempt_details"][0];
    assert!(
        cut["output_tokens"].as_i64().unwrap() > 0,
        "the text the primary streamed was billed: {view}"
    );
    assert_cost_is_the_attempts_sum(&row, &view, true);
    assert!(
        cut["cost_usd"].as_f64().unwrap() > 0.0,
        "the cut attempt has a cost of its own: {view}"
    );
    if let Door::Native = door {
        // The client is told what the row says: every attempt's tokens and cost together.
        let last = delivered.final_chunk.as_ref().unwrap();
        assert_eq!(last["input_tokens"], row.input_tokens, "{last}");
        assert_eq!(last["output_tokens"], row.output_tokens, "{last}");
        let told = last["estimated_cost_usd"].as_f64().unwrap();
        assert!(
            (told - row.estimated_cost_usd).abs() < 1e-12,
            "{last} {row:?}"
        );
    }

    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, outcome), 1.0, "{door:?}");
    assert_eq!(moved.attempts(FALLBACK, "ok"), 1.0, "{door:?}");
    assert_eq!(moved.all_attempts(), 2.0, "{door:?}");
    assert_eq!(moved.continuations(Some(FALLBACK)), 1.0, "{door:?}");
    assert_eq!(
        moved.fallbacks(None),
        0.0,
        "a continuation is counted as one"
    );
}

#[tokio::test]
async fn a_stream_cut_after_two_chunks_is_continued_on_the_fallback_on_both_doors() {
    let rig = Rig::with_fallback().await;
    for door in [Door::Native, Door::OpenAi] {
        rig.openai
            .push(Reply::text(PRIMARY_TEXT).chunks(4).drop_after(2));
        rig.anthropic.push(Reply::text(CONTINUATION).chunks(3));
        assert_continued(&rig, door, "upstream_error").await;
    }
}

#[tokio::test]
async fn a_stream_that_stalls_is_continued_on_the_fallback() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.idle_timeout_ms = 300;
    })
    .await;
    for door in [Door::Native, Door::OpenAi] {
        rig.openai
            .push(Reply::text(PRIMARY_TEXT).chunks(4).stall_after(2));
        rig.anthropic.push(Reply::text(CONTINUATION).chunks(3));
        assert_continued(&rig, door, "upstream_timeout").await;
    }
}

/// Checks a stream cut after two chunks that nothing continued: the text so far, then an
/// error event, no clean end, and a failed row of one attempt.
async fn assert_cut_honestly(rig: &Rig, door: Door) {
    rig.openai
        .push(Reply::text(PRIMARY_TEXT).chunks(4).drop_after(2));
    let before = rig.app.metrics().await;
    let (delivered, id, _) = door.stream(rig).await;
    assert_eq!(delivered.text, "Q3 sales were good. ", "{door:?}");
    assert_eq!(
        delivered.finals, 0,
        "{door:?}: never a clean end: {delivered:?}"
    );
    assert_eq!(delivered.done, 0, "{door:?}: {delivered:?}");
    assert_eq!(delivered.errors.len(), 1, "{door:?}: {delivered:?}");
    assert_eq!(delivered.errors[0]["code"], "upstream_error", "{door:?}");

    let (row, view) = rig.call(&id).await;
    assert!(!row.success);
    assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
    assert_eq!((row.provider.as_str(), row.model.as_str()), PRIMARY);
    assert_eq!(row.attempts, 1);
    assert_eq!(view["attempt_details"], json!([]), "one attempt is the row");
    assert!(
        row.output_tokens > 0,
        "the streamed text was billed: {row:?}"
    );
    assert_cost_is_the_attempts_sum(&row, &view, true);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_error"), 1.0);
    assert_eq!(moved.all_attempts(), 1.0);
    assert_eq!(moved.continuations(None), 0.0);
    assert_eq!(moved.fallbacks(None), 0.0);
}

#[tokio::test]
async fn with_continue_streams_off_a_cut_stream_ends_with_an_error_event() {
    let rig = Rig::start(
        json!({"fallbacks": anthropic_fallback(), "continue_streams": false}),
        None,
        |_| {},
    )
    .await;
    for door in [Door::Native, Door::OpenAi] {
        assert_cut_honestly(&rig, door).await;
    }
    assert_eq!(rig.anthropic.request_count(), 0);
}

#[tokio::test]
async fn a_cut_stream_whose_only_fallback_cannot_continue_ends_with_an_error_event() {
    // OpenAI has no assistant prefill: it cannot continue an answer.
    let rig = Rig::start(
        json!({"fallbacks": [{"provider": "openai", "model": "gpt-4o-mini"}]}),
        None,
        |_| {},
    )
    .await;
    for door in [Door::Native, Door::OpenAi] {
        assert_cut_honestly(&rig, door).await;
    }
    assert_eq!(rig.openai.request_count(), 2, "no request to gpt-4o-mini");
}

#[tokio::test]
async fn a_key_refused_with_401_moves_to_the_next_key() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.api_keys = vec![SecretString::from("openai-key-2")];
    })
    .await;
    rig.openai.push(Reply::status(401, "invalid api key"));
    rig.openai.push(Reply::text("The second key works."));
    let before = rig.app.metrics().await;
    let (response, _) = rig.send().await;
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&response), "openai/gpt-4o");
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"], "The second key works.");

    let keys: Vec<_> = rig
        .openai
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(keys, ["Bearer openai-key-1", "Bearer openai-key-2"]);
    assert_eq!(
        rig.anthropic.request_count(),
        0,
        "another key, not a fallback"
    );

    let (row, view) = rig.call(&id).await;
    assert!(row.success);
    assert_eq!((row.provider.as_str(), row.model.as_str()), PRIMARY);
    assert_eq!(row.attempts, 2);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, "upstream_auth_failed", false),
            attempt(PRIMARY, "ok", false)
        ]
    );
    assert_cost_is_the_attempts_sum(&row, &view, true);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_auth_failed"), 1.0);
    assert_eq!(moved.attempts(PRIMARY, "ok"), 1.0);
    assert_eq!(moved.fallbacks(None), 0.0);
    // The refused key rests for `cooldown_ms` (a minute by default), the other does not.
    let app = &rig.app;
    let cooling = "commander_upstream_key_cooling_seconds";
    let refused = openai_key_sample(app, cooling, 0).await;
    assert!((50.0..=60.0).contains(&refused), "{refused}");
    assert_eq!(openai_key_sample(app, cooling, 1).await, 0.0);
    let cooldowns = "commander_upstream_key_cooldowns_total";
    assert_eq!(openai_key_sample(app, cooldowns, 0).await, 1.0);
    assert_eq!(
        sample(&app.metrics().await, cooldowns, &[("key", &openai_key(1))]),
        0.0
    );
}

#[tokio::test]
async fn an_open_circuit_passes_the_primary_over_without_an_attempt() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.breaker_failures = 2;
        s.providers.openai.breaker_open_ms = 60_000;
    })
    .await;
    rig.openai.set_default(Reply::status(500, "down"));
    rig.anthropic.set_default(Reply::text(FALLBACK_TEXT));
    let breaker = "commander_upstream_breaker_state";
    for _ in 0..2 {
        assert_eq!(openai_key_sample(&rig.app, breaker, 0).await, 0.0, "closed");
        let (response, _) = rig.send().await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(openai_key_sample(&rig.app, breaker, 0).await, 2.0, "open");
    assert_eq!(
        openai_key_sample(&rig.app, "commander_upstream_breaker_opened_total", 0).await,
        1.0
    );

    let before = rig.app.metrics().await;
    let (response, _) = rig.send().await;
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&response), "anthropic/claude-3-sonnet");
    let id = request_id(&response);
    assert_eq!(
        rig.openai.request_count(),
        2,
        "no request through an open circuit"
    );
    assert_eq!(rig.anthropic.request_count(), 3);
    let (row, view) = rig.call(&id).await;
    assert!(row.success);
    assert_eq!((row.provider.as_str(), row.model.as_str()), FALLBACK);
    assert_eq!(row.attempts, 1, "passing over is no attempt");
    assert_cost_is_the_attempts_sum(&row, &view, true);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(FALLBACK, "ok"), 1.0);
    assert_eq!(moved.all_attempts(), 1.0);
    assert_eq!(
        moved.fallbacks(Some(FALLBACK)),
        1.0,
        "served past the primary is a fallback"
    );
}

#[tokio::test]
async fn when_every_target_fails_the_caller_gets_the_last_failure_and_one_row() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        // The last target is retried once: three attempts, the default maximum.
        s.providers.anthropic.max_retries = 1;
    })
    .await;
    rig.openai.push(Reply::status(500, "down"));
    rig.anthropic.push(Reply::status(529, "overloaded"));
    rig.anthropic.push(Reply::status(503, "still down"));
    let before = rig.app.metrics().await;
    let (response, elapsed) = rig.send().await;
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(response.status(), 502);
    let id = request_id(&response);
    let error = error_body(response).await;
    assert_eq!(error["code"], "upstream_error", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("503"),
        "the last failure's: {error}"
    );
    assert_eq!(rig.openai.request_count(), 1);
    assert_eq!(rig.anthropic.request_count(), 2);

    let rows = rig.app.usage_rows().await;
    assert_eq!(rows.len(), 1, "one call, one row: {rows:?}");
    let (row, view) = rig.call(&id).await;
    assert!(!row.success);
    assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
    assert_eq!(
        (row.provider.as_str(), row.model.as_str()),
        FALLBACK,
        "the row names the last target tried"
    );
    assert_eq!(row.attempts, 3);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, "upstream_error", false),
            attempt(FALLBACK, "upstream_error", false),
            attempt(FALLBACK, "upstream_error", false)
        ]
    );
    assert_cost_is_the_attempts_sum(&row, &view, false);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_error"), 1.0);
    assert_eq!(moved.attempts(FALLBACK, "upstream_error"), 2.0);
    assert_eq!(moved.all_attempts(), 3.0);
    assert_eq!(
        moved.fallbacks(Some(FALLBACK)),
        1.0,
        "the retry is no fallback"
    );
}

#[tokio::test]
async fn a_400_from_the_primary_is_not_asked_elsewhere() {
    let rig = Rig::with_fallback().await;
    rig.openai.push(Reply::status(400, "bad parameter"));
    let before = rig.app.metrics().await;
    let (response, _) = rig.send().await;
    assert_eq!(response.status(), 400);
    let id = request_id(&response);
    let error = error_body(response).await;
    assert_eq!(error["code"], "upstream_invalid_request", "{error}");
    assert_eq!(rig.openai.request_count(), 1);
    assert_eq!(
        rig.anthropic.request_count(),
        0,
        "no fallback for our own mistake"
    );

    let (row, view) = rig.call(&id).await;
    assert_eq!(row.error_code.as_deref(), Some("upstream_invalid_request"));
    assert_eq!((row.provider.as_str(), row.model.as_str()), PRIMARY);
    assert_eq!(row.attempts, 1);
    assert_cost_is_the_attempts_sum(&row, &view, false);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_invalid_request"), 1.0);
    assert_eq!(moved.all_attempts(), 1.0);
    assert_eq!(moved.fallbacks(None), 0.0);
}

#[tokio::test]
async fn a_fallback_served_answer_names_what_served_it_on_every_route() {
    // Five failures in a row would open the primary's circuit and spare the later calls
    // their first attempt; this test is about the names, not the breaker.
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.breaker_failures = 0;
    })
    .await;
    rig.openai.set_default(Reply::status(503, "down"));
    rig.anthropic.set_default(Reply::text(FALLBACK_TEXT));

    let (response, _) = rig.send().await;
    assert_eq!(served_by(&response), "anthropic/claude-3-sonnet");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (&body["provider"], &body["model"]),
        (&json!(FALLBACK.0), &json!(FALLBACK.1))
    );

    let response = rig.completions(false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&response), "anthropic/claude-3-sonnet");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], FALLBACK.1, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], FALLBACK_TEXT);

    for door in [Door::Native, Door::OpenAi] {
        let (delivered, _, header) = door.stream(&rig).await;
        assert_eq!(header, "anthropic/claude-3-sonnet", "{door:?}");
        assert_eq!(delivered.text, FALLBACK_TEXT, "{door:?}");
        assert_eq!(delivered.finals, 1, "{door:?}");
    }
    let sent = Instant::now();
    let events = read_sse(rig.completions(true).await, sent).await;
    for chunk in events.iter().filter(|e| e.data != "[DONE]") {
        assert_eq!(chunk.json()["model"], FALLBACK.1, "{}", chunk.data);
    }

    let rows = rig.app.usage_rows().await;
    assert_eq!(rows.len(), 5);
    for row in &rows {
        assert_eq!((row.provider.as_str(), row.model.as_str()), FALLBACK);
        assert_eq!(row.attempts, 2);
    }
}

#[tokio::test]
async fn a_continuation_that_fails_to_start_ends_the_stream_with_an_error_event() {
    let rig = Rig::with_fallback().await;
    rig.openai
        .push(Reply::text(PRIMARY_TEXT).chunks(4).drop_after(2));
    rig.anthropic.push(Reply::status(500, "down too"));
    let before = rig.app.metrics().await;
    let (delivered, id, _) = Door::Native.stream(&rig).await;
    assert_eq!(delivered.text, "Q3 sales were good. ");
    assert_eq!(delivered.finals, 0, "never a clean end: {delivered:?}");
    assert_eq!(delivered.errors.len(), 1, "{delivered:?}");
    assert_eq!(delivered.errors[0]["code"], "upstream_error");
    assert_eq!(rig.anthropic.request_count(), 1);

    let (row, view) = rig.call(&id).await;
    assert!(!row.success);
    assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
    assert_eq!((row.provider.as_str(), row.model.as_str()), FALLBACK);
    assert_eq!(row.attempts, 2);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, "upstream_error", false),
            attempt(FALLBACK, "upstream_error", true)
        ]
    );
    assert!(
        row.output_tokens > 0,
        "the delivered text was billed: {row:?}"
    );
    assert_cost_is_the_attempts_sum(&row, &view, true);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_error"), 1.0);
    assert_eq!(moved.attempts(FALLBACK, "upstream_error"), 1.0);
    assert_eq!(moved.continuations(Some(FALLBACK)), 1.0);
    assert_eq!(moved.fallbacks(None), 0.0);
}

#[tokio::test]
async fn a_stream_silent_before_its_first_text_falls_back_rather_than_continues() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.providers.openai.idle_timeout_ms = 300;
    })
    .await;
    rig.openai
        .push(Reply::text("Too slow to start.").first_chunk_delay(Duration::from_millis(1_500)));
    rig.anthropic.push(Reply::text(FALLBACK_TEXT));
    let before = rig.app.metrics().await;
    let (delivered, id, header) = Door::Native.stream(&rig).await;
    assert_eq!(delivered.text, FALLBACK_TEXT);
    assert_eq!(delivered.finals, 1);
    assert!(delivered.errors.is_empty(), "{delivered:?}");
    assert_eq!(header, "anthropic/claude-3-sonnet");
    let continuation = rig.anthropic.requests().pop().unwrap();
    assert_eq!(last_message(&continuation).0, "user", "nothing to prefill");

    let (row, view) = rig.call(&id).await;
    assert!(row.success);
    assert_eq!(row.attempts, 2);
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, "upstream_timeout", false),
            attempt(FALLBACK, "ok", false)
        ]
    );
    assert_cost_is_the_attempts_sum(&row, &view, true);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.fallbacks(Some(FALLBACK)), 1.0);
    assert_eq!(moved.continuations(None), 0.0);
}

#[tokio::test]
async fn the_call_deadline_bounds_every_attempt_and_wait() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.routing.deadline_ms = 400;
    })
    .await;
    rig.openai
        .push(Reply::text("Too late.").first_byte_delay(Duration::from_millis(1_500)));
    rig.anthropic.push(Reply::text(FALLBACK_TEXT));
    let before = rig.app.metrics().await;
    let (response, elapsed) = rig.send().await;
    assert!(elapsed < Duration::from_millis(1_400), "{elapsed:?}");
    assert_eq!(response.status(), 504);
    let id = request_id(&response);
    assert_eq!(error_body(response).await["code"], "upstream_timeout");
    assert_eq!(rig.anthropic.request_count(), 0, "no time was left for it");

    let (row, view) = rig.call(&id).await;
    assert_eq!(row.error_code.as_deref(), Some("upstream_timeout"));
    assert_eq!((row.provider.as_str(), row.model.as_str()), PRIMARY);
    assert_eq!(row.attempts, 1);
    assert_cost_is_the_attempts_sum(&row, &view, true);
    let moved = Moved::since(&rig.app, before).await;
    assert_eq!(moved.attempts(PRIMARY, "upstream_timeout"), 1.0);
    assert_eq!(moved.all_attempts(), 1.0);
}

#[tokio::test]
async fn max_attempts_of_one_leaves_the_fallback_untried() {
    let rig = Rig::start(json!({"fallbacks": anthropic_fallback()}), None, |s| {
        s.routing.max_attempts = 1;
    })
    .await;
    rig.openai.push(Reply::status(500, "down"));
    let (response, _) = rig.send().await;
    assert_eq!(response.status(), 502);
    let id = request_id(&response);
    assert_eq!(error_body(response).await["code"], "upstream_error");
    assert_eq!(rig.anthropic.request_count(), 0);
    let (row, _) = rig.call(&id).await;
    assert_eq!(row.attempts, 1);
    assert_eq!((row.provider.as_str(), row.model.as_str()), PRIMARY);
}

#[tokio::test]
async fn a_fallback_on_a_server_of_its_own_gets_its_own_url_and_never_the_openai_key() {
    let local = FakeUpstream::start(Wire::OpenAi).await;
    let local_url = local.base_url().to_owned();
    let allowed = local_url.clone();
    let rig = Rig::start(
        json!({"fallbacks": [{"provider": "openai", "model": "llama-3.1-70b", "base_url": local_url}]}),
        None,
        move |s| s.providers.allowed_http_base_urls = vec![allowed],
    )
    .await;
    rig.openai.push(Reply::status(502, "bad gateway"));
    local.push(Reply::text("Local model says fine."));
    let (response, _) = rig.send().await;
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&response), "openai/llama-3.1-70b");
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"], "Local model says fine.");
    assert_eq!(body["model"], "llama-3.1-70b");

    let sent = local.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["model"], "llama-3.1-70b");
    assert_eq!(
        sent[0].header("authorization"),
        None,
        "the OpenAI key stays home"
    );
    assert_eq!(rig.anthropic.request_count(), 0);

    let (row, view) = rig.call(&id).await;
    assert_eq!(
        (row.provider.as_str(), row.model.as_str()),
        ("openai", "llama-3.1-70b")
    );
    assert_eq!(row.attempts, 2);
    assert_eq!(
        view["attempt_details"][0]["base_url"],
        Value::Null,
        "{view}"
    );
    assert_eq!(
        view["attempt_details"][1]["base_url"],
        local_url.as_str(),
        "{view}"
    );
    assert_eq!(
        attempt_summary(&view),
        [
            attempt(PRIMARY, "upstream_error", false),
            attempt(("openai", "llama-3.1-70b"), "ok", false)
        ]
    );
}

#[tokio::test]
async fn gemini_503_and_anthropic_529_on_the_primary_fall_back() {
    // (primary wire, its provider and model, its overload status, the fallback's wire, the
    // fallback's provider and model)
    let cases = [
        (
            Wire::Google,
            ("google", "gemini-2.0-flash"),
            503,
            Wire::Anthropic,
            FALLBACK,
        ),
        (Wire::Anthropic, FALLBACK, 529, Wire::OpenAi, PRIMARY),
    ];
    for (primary_wire, primary, status, fallback_wire, fallback) in cases {
        let primary_fake = FakeUpstream::start(primary_wire).await;
        let fallback_fake = FakeUpstream::start(fallback_wire).await;
        primary_fake.push(Reply::status(status, "overloaded"));
        fallback_fake.push(Reply::text(FALLBACK_TEXT));
        let urls = [primary_fake.base_url(), fallback_fake.base_url()].map(str::to_owned);
        let app = TestApp::spawn_with(move |settings, dir| {
            std::fs::write(
                dir.join("specialists.json"),
                catalogue([specialist(
                    SPECIALIST,
                    primary.0,
                    primary.1,
                    "Analyse.",
                    json!({"fallbacks": [{"provider": fallback.0, "model": fallback.1}]}),
                )]),
            )
            .unwrap();
            for ((wire, url), key) in [primary_wire, fallback_wire]
                .into_iter()
                .zip(urls)
                .zip(["key-a", "key-b"])
            {
                let upstream = match wire {
                    Wire::OpenAi => &mut settings.providers.openai,
                    Wire::Anthropic => &mut settings.providers.anthropic,
                    Wire::Google => &mut settings.providers.google,
                };
                upstream.base_url = url;
                upstream.api_key = Some(SecretString::from(key));
                upstream.max_retries = 0;
            }
        })
        .await;
        let before = app.metrics().await;
        let response = app.chat(SPECIALIST, QUESTION).await;
        assert_eq!(response.status(), 200, "{primary:?} {status}");
        assert_eq!(
            served_by(&response),
            format!("{}/{}", fallback.0, fallback.1)
        );
        let id = request_id(&response);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["content"], FALLBACK_TEXT);
        assert_eq!(primary_fake.request_count(), 1);

        app.usage_rows().await;
        let view = app.get_json(&format!("/usage/calls/{id}")).await;
        assert_eq!(view["attempts"], 2, "{view}");
        assert_eq!(
            attempt_summary(&view),
            [
                attempt(primary, "upstream_error", false),
                attempt(fallback, "ok", false)
            ],
            "{status}"
        );
        let moved = Moved::since(&app, before).await;
        assert_eq!(moved.attempts(primary, "upstream_error"), 1.0);
        assert_eq!(moved.fallbacks(Some(fallback)), 1.0);
    }
}
