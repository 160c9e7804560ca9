//! The real `commander` binary started by a test: its command line, a guard that ends it with
//! the test, and its stdout read line by line.
// Each test crate includes this module and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A started commander, killed if a test ends without it exiting, so no process outlives a
/// failed test.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Every line a commander printed so far, filled on as it prints more.
pub type LogLines = Arc<Mutex<Vec<String>>>;

/// `commander` run in `dir` with nothing of the test's environment.
pub fn commander_in(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commander"));
    command.current_dir(dir).env_clear();
    command
}

/// Like [`commander_in`], serving on a free port of 127.0.0.1.
pub fn server_in(dir: &Path) -> Command {
    let mut command = commander_in(dir);
    command.env("COMMANDER__SERVER__BIND", "127.0.0.1:0");
    command
}

/// Spawns `command` with stdout piped (stderr goes to the test's) and returns it with its
/// stdout lines, read on a thread so the child never blocks on a full pipe.
pub fn spawn_reading_stdout(command: &mut Command) -> (Running, mpsc::Receiver<String>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("commander starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Running(child), rx)
}

/// A list that starts with `seen` and gets every later line of `lines` as it arrives.
pub fn keep_collecting(seen: Vec<String>, lines: mpsc::Receiver<String>) -> LogLines {
    let collected = Arc::new(Mutex::new(seen));
    let sink = Arc::clone(&collected);
    std::thread::spawn(move || {
        while let Ok(line) = lines.recv() {
            sink.lock().unwrap().push(line);
        }
    });
    collected
}

/// How long [`eventually`] waits: far beyond what a healthy run needs (a debug binary starting
/// on a loaded machine included), so only a real hang trips it.
pub const EVENTUALLY_WITHIN: Duration = Duration::from_secs(30);

/// Runs `check` every 20 ms until it returns `Some`, and returns that value; fails the test,
/// naming `what` was awaited, once [`EVENTUALLY_WITHIN`] has passed.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + EVENTUALLY_WITHIN;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {EVENTUALLY_WITHIN:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line the process printed, once it has exited: waits for the collector thread to read
/// its output to the end (the thread holds the other reference to `logs` until then), so a test
/// never reads the list while the last lines are still on their way.
pub fn lines_after_exit(logs: &LogLines) -> Vec<String> {
    eventually(
        "the log collector to read the exited process's output to its end",
        || (Arc::strong_count(logs) == 1).then_some(()),
    );
    logs.lock().unwrap().clone()
}

/// The lines of `lines` up to and including the first for which `is_listening` holds, which
/// must come within 30 s.
pub fn lines_until_listening(
    lines: &mpsc::Receiver<String>,
    mut is_listening: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(remaining)
            .expect("commander logs that it is listening within 30 s");
        let listening = is_listening(&line);
        seen.push(line);
        if listening {
            return seen;
        }
    }
}

/// Waits for a JSON-logging commander's "listening" line on `lines`; returns the address it
/// logged and every log line, filled on as it prints more.
pub fn listening_json(lines: mpsc::Receiver<String>) -> (String, LogLines) {
    let json = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
    };
    let listening = lines_until_listening(&lines, |line| {
        json(line)["message"] == "commander is listening"
    })
    .pop()
    .expect("the listening line");
    let address = json(&listening)["address"]
        .as_str()
        .expect("address field")
        .to_owned();
    (address, keep_collecting(vec![listening], lines))
}

/// The usage database of a commander started in `dir` on its defaults.
pub fn default_database(dir: &std::path::Path) -> usage_store::DatabaseConfig {
    usage_store::DatabaseConfig {
        url: format!("sqlite://{}", dir.join("data/commander.db").display()),
        ..usage_store::DatabaseConfig::default()
    }
}

/// That database, opened (and migrated) for checking its rows.
pub fn default_store(dir: &std::path::Path) -> usage_store::UsageStore {
    usage_store::UsageStore::connect(&default_database(dir))
        .expect("the default usage database opens")
}
