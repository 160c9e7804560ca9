//! A real browser for the console's end-to-end test: headless Chromium driven through
//! ChromeDriver's W3C WebDriver protocol, spoken over `reqwest`.
//!
//! Only what a test of server-rendered pages needs: navigate, find by CSS selector, click,
//! type (keys included), read text and attributes, run a script that reads the page, and take
//! a screenshot. Every call has a timeout and every wait is bounded, so a browser that hangs
//! fails the test instead of hanging it. The driver runs as a child process on a free
//! 127.0.0.1 port; dropping the [`Browser`] ends the session (closing Chromium) and kills it.
//!
//! ```no_run
//! # async fn example() {
//! let browser = e2e_support::Browser::start().await;
//! browser.goto("http://127.0.0.1:8080/console/sign-in").await;
//! browser.find("#credential").await.send_keys("a key").await;
//! browser.find("#credential").await.send_keys(e2e_support::keys::ENTER).await;
//! # }
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// Where Debian's `chromium` and `chromium-driver` packages put the two programs.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which WebDriver names an element in JSON (fixed by the W3C specification).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Any one WebDriver command; starting a session (launching Chromium) gets longer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const NEW_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Browser::wait_for`] and its kin poll before failing the test.
pub const WAIT_WITHIN: Duration = Duration::from_secs(10);

/// Keys for [`Element::send_keys`] and [`Browser::press`], as the WebDriver specification
/// codes them (characters of Unicode's private use area).
pub mod keys {
    /// The Enter key.
    pub const ENTER: &str = "\u{E007}";
    /// The Tab key.
    pub const TAB: &str = "\u{E004}";
}

/// A headless Chromium session, ended (and its driver killed) on drop.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of the driver.
    driver_url: String,
    driver_port: u16,
    driver: Child,
    session: String,
    /// Set once the session has been deleted, so drop does not delete it again.
    ended: bool,
}

/// An element of the page the browser showed when it was found (a new page makes it stale).
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Starts ChromeDriver on a free port and opens a session of headless Chromium in a
    /// 1280×1000 window. Fails the test, naming the Debian packages to install, when either
    /// program is missing.
    pub async fn start() -> Self {
        for (program, what) in [(CHROMEDRIVER, "ChromeDriver"), (CHROMIUM, "Chromium")] {
            assert!(
                Path::new(program).exists(),
                "{what} ({program}) is needed for the console's browser test: \
                 apt-get install -y chromium chromium-driver"
            );
        }
        let driver_port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER} did not start: {e}"));
        // The driver is on this machine: never through a proxy the environment may name.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("HTTP client for the driver");
        let driver_url = format!("http://127.0.0.1:{driver_port}");
        let mut browser = Self {
            http,
            driver_url,
            driver_port,
            driver,
            session: String::new(),
            ended: true,
        };
        browser.wait_until_driver_ready().await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1280,1000"],
            },
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 10_000},
        }}});
        let response = browser
            .http
            .post(format!("{}/session", browser.driver_url))
            .timeout(NEW_SESSION_TIMEOUT)
            .json(&capabilities)
            .send()
            .await
            .unwrap_or_else(|e| panic!("no answer to the new session: {e}"));
        let value = answer("new session", response).await;
        browser.session = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a session id in {value}"))
            .to_owned();
        browser.ended = false;
        browser
    }

    async fn wait_until_driver_ready(&self) {
        let status = format!("{}/status", self.driver_url);
        crate::eventually_within(WAIT_WITHIN, "ChromeDriver to be ready", async || {
            let response = self.http.get(&status).send().await.ok()?;
            let body: Value = response.json().await.ok()?;
            (body["value"]["ready"] == true).then_some(())
        })
        .await;
    }

    /// Sends one command of this session (`path` relative to `/session/{id}`) and returns its
    /// `value`; a WebDriver error fails the test with the driver's message.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.driver_url, self.session);
        let what = format!("{method} {path}");
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("no answer from the driver to {what}: {e}"));
        answer(&what, response).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// The address of the page shown.
    pub async fn current_url(&self) -> String {
        string_of(self.get("/url").await)
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        string_of(self.get("/title").await)
    }

    /// The page's HTML as the browser holds it now.
    pub async fn page_source(&self) -> String {
        string_of(self.get("/source").await)
    }

    /// Every element matching the CSS `selector`, in document order.
    pub async fn find_all(&self, selector: &str) -> Vec<Element<'_>> {
        let found = self
            .post(
                "/elements",
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        found
            .as_array()
            .unwrap_or_else(|| panic!("a list of elements for {selector}: {found}"))
            .iter()
            .map(|reference| self.element(reference))
            .collect()
    }

    /// The first element matching `selector`; fails the test, with the page's address, when
    /// there is none.
    pub async fn find(&self, selector: &str) -> Element<'_> {
        match self.find_all(selector).await.into_iter().next() {
            Some(element) => element,
            None => panic!(
                "no element matches {selector} on {}",
                self.current_url().await
            ),
        }
    }

    /// The first element matching `selector` once there is one, waiting at most
    /// [`WAIT_WITHIN`] (after a click that loads a new page, say).
    pub async fn wait_for(&self, selector: &str) -> Element<'_> {
        let id = self
            .wait_until(&format!("an element matching {selector}"), async || {
                let first = self.find_all(selector).await.into_iter().next()?;
                Some(first.id)
            })
            .await;
        Element { browser: self, id }
    }

    /// Waits until the page's address satisfies `is_wanted` (at most [`WAIT_WITHIN`]) and
    /// returns it.
    pub async fn wait_for_url(&self, what: &str, is_wanted: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, async || {
            let url = self.current_url().await;
            is_wanted(&url).then_some(url)
        })
        .await
    }

    /// Polls `check` until it gives a value, at most [`WAIT_WITHIN`]; fails the test naming
    /// `what` was awaited and showing the page the browser is on.
    async fn wait_until<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT_WITHIN;
        loop {
            if let Ok(Some(value)) = tokio::time::timeout_at(deadline, check()).await {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let url = self.current_url().await;
                let shown = self
                    .execute(
                        "return document.body ? document.body.innerText : '';",
                        vec![],
                    )
                    .await;
                panic!("timed out after {WAIT_WITHIN:?} waiting for {what}; on {url}:\n{shown}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element that has the keyboard focus.
    pub async fn active_element(&self) -> Element<'_> {
        let reference = self.get("/element/active").await;
        self.element(&reference)
    }

    /// Presses and releases `key` (see [`keys`]) wherever the focus is.
    pub async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
            ]}]}),
        )
        .await;
        self.command(reqwest::Method::DELETE, "/actions", None)
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns what
    /// it returns. For reading the page: the tests never change it this way.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Saves a PNG of the window to `path` (its directory is created).
    pub async fn screenshot(&self, path: &Path) {
        let encoded = string_of(self.get("/screenshot").await);
        let png =
            decode_base64(&encoded).unwrap_or_else(|e| panic!("the screenshot is not base64: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Ends the session (Chromium closes) and stops the driver.
    pub async fn quit(mut self) {
        self.command(reqwest::Method::DELETE, "", None).await;
        self.ended = true;
    }

    fn element(&self, reference: &Value) -> Element<'_> {
        let id = reference[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("an element reference: {reference}"))
            .to_owned();
        Element { browser: self, id }
    }
}

impl Element<'_> {
    fn path(&self, command: &str) -> String {
        format!("/element/{}{command}", self.id)
    }

    /// Clicks it (scrolled into view first, as a person would).
    pub async fn click(&self) {
        self.browser.post(&self.path("/click"), json!({})).await;
    }

    /// Types `text` into it (focusing it first); [`keys`] may be part of `text`.
    pub async fn send_keys(&self, text: &str) {
        self.browser
            .post(&self.path("/value"), json!({"text": text}))
            .await;
    }

    /// Empties a text field.
    pub async fn clear(&self) {
        self.browser.post(&self.path("/clear"), json!({})).await;
    }

    /// Its rendered text, as a reader sees it.
    pub async fn text(&self) -> String {
        string_of(self.browser.get(&self.path("/text")).await)
    }

    /// The value of its attribute `name`, if it has it.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        let value = self
            .browser
            .get(&self.path(&format!("/attribute/{name}")))
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Its DOM property `name` (a field's current `value`, say).
    pub async fn property(&self, name: &str) -> Value {
        self.browser
            .get(&self.path(&format!("/property/{name}")))
            .await
    }

    /// Whether this is the same element as `other`.
    pub fn is(&self, other: &Element<'_>) -> bool {
        self.id == other.id
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing the driver alone would leave Chromium running: end the session first (a
        // test that failed midway never reached `quit`). Blocking, and bounded by timeouts.
        if !self.ended {
            delete_session_blocking(self.driver_port, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` over a plain socket: drop cannot await, and by then the runtime may
/// be shutting down.
fn delete_session_blocking(port: u16, session: &str) {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
    else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // The answer comes once Chromium has closed. The driver keeps the connection open
        // whatever the request says, so read exactly one response.
        read_one_response(&mut stream);
    }
}

/// Reads one HTTP response (headers, then `Content-Length` bytes) from `stream`.
fn read_one_response(stream: &mut impl Read) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(read) => received.extend_from_slice(&chunk[..read]),
        }
        let Some(header_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&received[..header_end]).to_ascii_lowercase();
        let body_length = headers
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if received.len() >= header_end + 4 + body_length {
            return;
        }
    }
}

/// A port nobody listens on now (the OS's pick for a socket bound to port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

/// The `value` of a driver's answer; fails the test with the driver's error otherwise.
async fn answer(what: &str, response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("the driver's answer to {what} is not JSON: {e}"));
    assert!(
        status.is_success(),
        "the driver refused {what} ({status}): {} — {}",
        body["value"]["error"],
        body["value"]["message"]
    );
    body["value"].clone()
}

fn string_of(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => panic!("a string from the driver, not {other}"),
    }
}

/// Where the console test's screenshots go: `console-screenshots/` in the target directory
/// (`CARGO_TARGET_DIR` when set, else the one holding this test binary).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/debug/deps/e2e-HASH
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("console-screenshots")
}

/// Decodes standard base64 (with `=` padding, as WebDriver sends screenshots).
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn sextet(symbol: u8) -> Option<u32> {
        let value = match symbol {
            b'A'..=b'Z' => symbol - b'A',
            b'a'..=b'z' => symbol - b'a' + 26,
            b'0'..=b'9' => symbol - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(value))
    }
    let symbols = text.trim_end_matches('=').as_bytes();
    if !text.len().is_multiple_of(4) || text.len() - symbols.len() > 2 {
        return Err(format!("{} characters is not whole base64", text.len()));
    }
    let mut bytes = Vec::with_capacity(symbols.len() * 3 / 4);
    for group in symbols.chunks(4) {
        let mut bits = 0u32;
        for (index, &symbol) in group.iter().enumerate() {
            let value = sextet(symbol)
                .ok_or_else(|| format!("{:?} is not a base64 character", char::from(symbol)))?;
            bits |= value << (18 - 6 * index);
        }
        let [_, first, second, third] = bits.to_be_bytes();
        // A group of n symbols carries n - 1 whole bytes (4 symbols: 3).
        bytes.extend_from_slice(&[first, second, third][..group.len() - 1]);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_every_padding_length() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode_base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn base64_refuses_what_is_not_base64() {
        assert!(decode_base64("Zg=").is_err());
        assert!(decode_base64("Z===").is_err());
        assert!(decode_base64("Zm9*").is_err());
    }
}
