//! Test support for commander's end-to-end tests: the real server, built by the same
//! `Application::build` as the binary, on port 0 with a temporary SQLite database and catalogue.
//!
//! ```no_run
//! # async fn example() {
//! let app = e2e_support::TestApp::spawn().await;
//! let response = app
//!     .post_json("/chat/send", &serde_json::json!({"specialist_id": "demo", "message": "hi"}))
//!     .await;
//! assert_eq!(response.status(), 200);
//! assert_eq!(app.usage_rows().await.len(), 1);
//! # }
//! ```

mod console_browser;
mod postgres;
mod server_logs;
mod specialist_json;
mod tcp_proxy;

pub use console_browser::{ConsoleBrowser, ConsolePage, form_encode};
pub use postgres::{TestDatabase, server_url};
pub use server_logs::server_logs;
pub use specialist_json::{catalogue, one_per_provider, specialist};
pub use tcp_proxy::TcpProxy;

use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use commander::{Application, Settings};
use tempfile::TempDir;
use usage_store::{StoredUsage, UsageSink, UsageStore};

/// A running commander on 127.0.0.1 with its own database and catalogue, stopped on drop.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// A client with a timeout, so a hung server fails the test instead of hanging it.
    pub client: reqwest::Client,
    store: UsageStore,
    usage: UsageSink,
    handle: ServerHandle,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    dir: TempDir,
}

impl TestApp {
    /// The server on its defaults (demo specialist on the mock, no provider keys).
    pub async fn spawn() -> Self {
        Self::spawn_with(|_, _| {}).await
    }

    /// The server with settings adjusted by `customize` before it is built.
    pub async fn spawn_with(customize: impl FnOnce(&mut Settings, &std::path::Path)) -> Self {
        Self::spawn_with_providers(customize, |_| {}).await
    }

    /// Like [`TestApp::spawn_with`], with providers of the test's own registered over the
    /// configured ones.
    pub async fn spawn_with_providers(
        customize: impl FnOnce(&mut Settings, &std::path::Path),
        providers: impl FnOnce(&mut providers::ProviderRegistry),
    ) -> Self {
        // reqwest is built without a default TLS provider; install one for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut settings = Settings::default();
        settings.server.bind = "127.0.0.1:0".to_owned();
        settings.server.workers = 1;
        settings.server.shutdown_grace_seconds = 5;
        settings.database.url = format!("sqlite://{}", dir.path().join("usage.db").display());
        settings.database.flush_interval_ms = 20;
        settings.database = std::mem::take(&mut settings.database).with_files_in(dir.path());
        settings.specialists.path = dir.path().join("specialists.json");
        // Tests make many calls from one address; the rate-limit tests set their own limits.
        settings.rate_limit.requests = std::num::NonZeroU32::new(1_000_000).expect("non-zero");
        // Likewise many connections (200 concurrent streams); the cap's own tests set theirs.
        settings.server.max_connections_per_client =
            std::num::NonZeroU32::new(100_000).expect("non-zero");
        customize(&mut settings, dir.path());

        let app = Application::build_with_providers(settings, providers)
            .await
            .expect("application builds");
        let base_url = format!("http://{}", app.address());
        let store = app.store();
        let usage = app.usage();
        let handle = app.handle();
        let running = Some(tokio::spawn(app.run_until_stopped()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Self {
            base_url,
            client,
            store,
            usage,
            handle,
            running,
            dir,
        }
    }

    /// Stops the server gracefully and waits until it has written every usage record, as a
    /// restart does (its temporary directory goes with it).
    pub async fn shut_down(mut self) {
        self.handle.stop(true).await;
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(20), running)
                .await
                .expect("the server stops within 20 s")
                .expect("server task")
                .expect("the server ran and stopped cleanly");
        }
    }

    /// The server's database (for checking its rows).
    pub fn store(&self) -> UsageStore {
        self.store.clone()
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The test's temporary directory (database, catalogue).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// GETs `path` with no credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        sent(self.client.get(self.url(path))).await
    }

    /// GETs `path` with no credentials and reads the answer as JSON, whatever its status.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON body")
    }

    /// GETs `path` with one extra header (a spoofed Host, an Origin, ...).
    pub async fn get_with_header(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        sent(self.client.get(self.url(path)).header(name, value)).await
    }

    /// GETs `path` with `token` as the bearer credential.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        sent(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    /// GETs `/usage/summary` with `query` (empty, or starting with `?`).
    pub async fn usage_summary(&self, query: &str) -> reqwest::Response {
        self.get(&format!("/usage/summary{query}")).await
    }

    /// Sends `message` to `specialist_id` on `/chat/send`.
    pub async fn chat(&self, specialist_id: &str, message: &str) -> reqwest::Response {
        self.post_json(
            "/chat/send",
            &serde_json::json!({"specialist_id": specialist_id, "message": message}),
        )
        .await
    }

    /// POSTs `body` as JSON.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        sent(self.client.post(self.url(path)).json(body)).await
    }

    /// POSTs `body` as JSON with `token` as the bearer credential.
    pub async fn post_json_as(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        sent(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// POSTs raw bytes with the given content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        sent(
            self.client
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// PUTs `body` as JSON with no credentials.
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        sent(self.client.put(self.url(path)).json(body)).await
    }

    /// DELETEs `path` with no credentials.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        sent(self.client.delete(self.url(path))).await
    }

    /// Every usage row, after waiting for every record handed to the writer so far.
    pub async fn usage_rows(&self) -> Vec<StoredUsage> {
        self.usage.flush().await.expect("usage writer flushes");
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.all_rows())
            .await
            .expect("query task")
            .expect("rows load")
    }

    /// The samples `/metrics` exposes now: `name{labels}` -> value. Checks that the endpoint
    /// answers Prometheus text and is not rate limited.
    pub async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(
            response.headers().get("x-ratelimit-limit").is_none(),
            "metrics are not limited"
        );
        response
            .text()
            .await
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Usage rows once at least `count` exist (for records written after the response, such
    /// as a disconnected client's), waiting at most [`EVENTUALLY_WITHIN`].
    pub async fn wait_for_usage_rows(&self, count: usize) -> Vec<StoredUsage> {
        eventually(&format!("{count} usage rows"), async || {
            let rows = self.usage_rows().await;
            (rows.len() >= count).then_some(rows)
        })
        .await
    }
}

/// How long [`eventually`] waits: far beyond what a healthy run needs, so only a real hang
/// (or a condition that never comes) trips it.
pub const EVENTUALLY_WITHIN: Duration = Duration::from_secs(10);

/// Runs `check` every 20 ms until it returns `Some`, and returns that value; fails the test,
/// naming `what` was awaited, once [`EVENTUALLY_WITHIN`] has passed (a check that hangs
/// included).
pub async fn eventually<T>(what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    eventually_within(EVENTUALLY_WITHIN, what, check).await
}

async fn eventually_within<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let checked = tokio::time::timeout_at(deadline, check()).await;
        if let Ok(Some(value)) = checked {
            return value;
        }
        assert!(
            checked.is_ok() && tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_value_the_check_gives() {
        let mut calls = 0;
        let value = eventually("the third call", async || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        })
        .await;
        assert_eq!(value, 30);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a condition that never holds")]
    async fn eventually_fails_naming_what_never_came() {
        eventually_within(
            Duration::from_millis(50),
            "a condition that never holds",
            async || None::<()>,
        )
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a check that hangs")]
    async fn eventually_fails_when_the_check_itself_hangs() {
        eventually_within(
            Duration::from_millis(50),
            "a check that hangs",
            async || std::future::pending::<Option<()>>().await,
        )
        .await;
    }
}

/// Sends `request`; only a transport failure (the server gone) fails here, any status is the
/// caller's to check.
async fn sent(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("request sent")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends its command when called; the returned future only awaits completion.
        drop(self.handle.stop(false));
    }
}

/// One server-sent event as a client saw it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `event:` name (`message` when absent).
    pub event: String,
    /// The `data:` payload.
    pub data: String,
    /// When it arrived, measured from when the request was sent.
    pub at: Duration,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.data))
    }
}

/// Reads a whole `text/event-stream` response with a real SSE parser, each event stamped with
/// its arrival time since `sent`. Gives up after 30 s.
pub async fn read_sse(response: reqwest::Response, sent: tokio::time::Instant) -> Vec<SseEvent> {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    assert_eq!(response.status(), 200, "a stream starts with 200");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut events = response.bytes_stream().eventsource();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Some(event) = tokio::time::timeout_at(deadline, events.next())
        .await
        .expect("the stream ends within 30 s")
    {
        let event = event.expect("well-formed SSE");
        seen.push(SseEvent {
            event: event.event,
            data: event.data,
            at: sent.elapsed(),
        });
    }
    seen
}

/// The error body's `error` object, checked for the shape every error must have.
pub async fn error_body(response: reqwest::Response) -> serde_json::Value {
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("every response has X-Request-Id")
        .to_str()
        .expect("ASCII request id")
        .to_owned();
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    let error = body["error"].clone();
    assert!(error["code"].is_string(), "error.code missing: {body}");
    assert!(
        error["message"].is_string(),
        "error.message missing: {body}"
    );
    assert_eq!(error["request_id"], request_id.as_str(), "{body}");
    error
}

/// The string `field` of every object in the JSON array `items`, in order.
pub fn field_of_each<'a>(items: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("an array: {items}"))
        .iter()
        .map(|item| {
            item[field]
                .as_str()
                .unwrap_or_else(|| panic!("a string {field}: {item}"))
        })
        .collect()
}
