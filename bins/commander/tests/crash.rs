//! The real binary on a bad day: killed with SIGKILL under load or mid-stream, or robbed of its
//! SQLite file while it runs. The usage journal must leave, after a restart, exactly one row
//! for every call that was answered, and an `interrupted` row for every call the crash cut.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_upstreams::{FakeUpstream, Reply, Wire};
use usage_store::{StoredUsage, UsageStore};

mod running_commander;

use running_commander::{
    LogLines, Running, default_store, eventually, listening_json, server_in, spawn_reading_stdout,
};

/// Starts `commander` in `dir` with JSON logs and `extra_env`; returns it, the address it
/// logged and every log line it prints (filled as it runs).
fn start(dir: &Path, extra_env: &[(&str, &str)]) -> (Running, String, LogLines) {
    let (child, rx) = spawn_reading_stdout(
        server_in(dir)
            .env("COMMANDER__LOG__FORMAT", "json")
            // Load from one address: far past the per-client defaults.
            .env("COMMANDER__RATE_LIMIT__REQUESTS", "1000000")
            .env("COMMANDER__SERVER__MAX_CONNECTIONS_PER_CLIENT", "100000")
            .envs(extra_env.iter().copied()),
    );
    let (address, logs) = listening_json(rx);
    (child, address, logs)
}

/// OpenAI at `fake` with a key and no retries, so each call is one upstream request.
fn openai_at(fake: &FakeUpstream) -> Vec<(&'static str, &str)> {
    vec![
        ("COMMANDER__PROVIDERS__OPENAI__BASE_URL", fake.base_url()),
        ("COMMANDER__PROVIDERS__OPENAI__MAX_RETRIES", "0"),
        ("OPENAI_API_KEY", "sk-test"),
    ]
}

/// Ends `child` with SIGKILL (no shutdown code runs) and waits for it to be gone.
fn kill_hard(mut child: Running) {
    child.0.kill().expect("SIGKILL is delivered");
    child.0.wait().expect("the killed process is reaped");
}

/// Ends `child` with SIGTERM and waits for its graceful exit.
fn stop_gracefully(mut child: Running) {
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = eventually("commander to exit after SIGTERM", || {
        child.0.try_wait().expect("wait")
    });
    assert!(exit.success(), "{exit:?}");
}

/// Every row, keyed by the tag the test sent as `X-Request-Id` (the row's client request
/// id); fails on a tag or a request id stored twice.
fn rows_by_tag(store: &UsageStore) -> HashMap<String, StoredUsage> {
    let rows = store.all_rows().unwrap();
    let mut request_ids = HashSet::new();
    let mut by_tag = HashMap::new();
    for row in rows {
        assert!(
            request_ids.insert(row.request_id.clone()),
            "request id stored twice: {row:?}"
        );
        let tag = row
            .client_request_id
            .clone()
            .unwrap_or_else(|| panic!("every call of the test is tagged: {row:?}"));
        assert!(
            by_tag.insert(tag.clone(), row).is_none(),
            "tag {tag} stored twice"
        );
    }
    by_tag
}

/// The status `curl` got for `args` (`000` when no answer came).
fn curl_status(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "30",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

fn ready_status(address: &str) -> String {
    curl_status(&[&format!("http://{address}/ready")])
}

/// A Prometheus sample of `/metrics` (a counter or gauge without labels).
fn metric(address: &str, name: &str) -> f64 {
    let output = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            &format!("http://{address}/metrics"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .find_map(|line| {
            let (sample, value) = line.rsplit_once(' ')?;
            (sample == name).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} is not exposed: {text}"))
}

/// The kinds of call the load mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    ChatSend,
    ChatStream,
    OpenAiWhole,
    OpenAiStream,
}

impl CallKind {
    const ALL: [Self; 4] = [
        Self::ChatSend,
        Self::ChatStream,
        Self::OpenAiWhole,
        Self::OpenAiStream,
    ];

    fn path_and_body(self) -> (&'static str, &'static str) {
        match self {
            Self::ChatSend => (
                "/chat/send",
                r#"{"specialist_id": "general", "message": "crash me"}"#,
            ),
            Self::ChatStream => (
                "/chat/stream",
                r#"{"specialist_id": "general", "message": "crash me"}"#,
            ),
            Self::OpenAiWhole => (
                "/v1/chat/completions",
                r#"{"model": "general", "messages": [{"role": "user", "content": "crash me"}]}"#,
            ),
            Self::OpenAiStream => (
                "/v1/chat/completions",
                r#"{"model": "general", "stream": true, "messages": [{"role": "user", "content": "crash me"}]}"#,
            ),
        }
    }

    /// True when `body` is the whole answer: for a stream, its final event arrived.
    fn is_complete(self, body: &str) -> bool {
        match self {
            Self::ChatSend | Self::OpenAiWhole => !body.is_empty(),
            Self::ChatStream => body.contains("\"is_final\":true"),
            Self::OpenAiStream => body.contains("data: [DONE]"),
        }
    }
}

/// What the client saw of one call.
#[derive(Debug, Clone)]
struct Outcome {
    tag: String,
    kind: CallKind,
    /// The status line's code, if the response began.
    status: Option<u16>,
    /// The gateway's `X-Request-Id`, if the response began.
    request_id: Option<String>,
    /// The whole answer arrived (curl ended cleanly and the body is complete).
    answered: bool,
}

/// Makes one call tagged `tag` with curl and reports what arrived.
fn call(address: &str, kind: CallKind, tag: &str) -> Outcome {
    let (path, body) = kind.path_and_body();
    let output = Command::new("curl")
        .args(["-s", "-i", "-N", "--max-time", "120"])
        .args(["-H", "content-type: application/json", "-H"])
        .arg(format!("x-request-id: {tag}"))
        .args(["-d", body])
        .arg(format!("http://{address}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok());
    let request_id = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-request-id")
            .then(|| value.trim().to_owned())
    });
    let answered = output.status.success() && status == Some(200) && kind.is_complete(body);
    Outcome {
        tag: tag.to_owned(),
        kind,
        status,
        request_id,
        answered,
    }
}

/// Calls made after the crash are tagged with this prefix.
const AFTER_RESTART: &str = "after-restart";

/// Makes one more call after a restart and waits until its row is in the database: the writer
/// applies the journal in order, so every row an earlier process left is in by then.
fn barrier_call(address: &str, store: &UsageStore) {
    // The mock provider's `demo`: it needs no upstream.
    let status = curl_status(&[
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-request-id: {AFTER_RESTART}"),
        "-d",
        r#"{"specialist_id": "demo", "message": "after the restart"}"#,
        &format!("http://{address}/chat/send"),
    ]);
    assert_eq!(status, "200");
    eventually("the call after the restart to reach the database", || {
        store
            .all_rows()
            .unwrap()
            .iter()
            .any(|row| row.client_request_id.as_deref() == Some(AFTER_RESTART))
            .then_some(())
    });
}

const CLIENTS: usize = 8;
/// Answers to wait for before the crash: the load is well under way.
const ANSWERS_BEFORE_CRASH: usize = 24;
/// Calls held at the upstream when the kill lands, so some calls are surely cut.
const HELD_AT_KILL: usize = 4;

#[test]
fn sigkill_under_concurrent_load_leaves_one_row_per_answered_call_and_interrupted_rows_for_the_cut()
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeUpstream::start(Wire::OpenAi));
    // Slow enough that every client has a call in flight most of the time.
    let quick_enough = Reply::text("one two three four five six seven eight")
        .chunks(8)
        .chunk_delay(Duration::from_millis(20))
        .first_byte_delay(Duration::from_millis(100));
    fake.set_default(quick_enough.clone());
    let dir = tempfile::tempdir().unwrap();
    let env = openai_at(&fake);
    let (child, address, _logs) = start(dir.path(), &env);

    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let crashed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (address, outcomes, crashed) =
                (address.clone(), Arc::clone(&outcomes), Arc::clone(&crashed));
            std::thread::spawn(move || {
                let mut n = 0;
                while !crashed.load(Ordering::SeqCst) {
                    let kind = CallKind::ALL[(client + n) % CallKind::ALL.len()];
                    let outcome = call(&address, kind, &format!("load-{client}-{n}"));
                    outcomes.lock().unwrap().push(outcome);
                    n += 1;
                }
            })
        })
        .collect();
    eventually("the load to be answered a few times over", || {
        let answered = outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.answered)
            .count();
        (answered >= ANSWERS_BEFORE_CRASH).then_some(())
    });
    // From here the upstream holds every new call, so the kill surely cuts some.
    let sent_before_hold = fake.request_count();
    fake.set_default(Reply::text("never sent").first_byte_delay(Duration::from_secs(3600)));
    eventually("calls to be held at the upstream", || {
        (fake.request_count() >= sent_before_hold + HELD_AT_KILL).then_some(())
    });
    crashed.store(true, Ordering::SeqCst);
    kill_hard(child);
    let sent_upstream = fake.request_count();
    for client in clients {
        client.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();

    fake.set_default(quick_enough);
    let (child, address, _logs) = start(dir.path(), &env);
    eventually("/ready after the restart", || {
        (ready_status(&address) == "200").then_some(())
    });
    let store = default_store(dir.path());
    barrier_call(&address, &store);
    stop_gracefully(child);

    let mut rows = rows_by_tag(&store);
    assert!(rows.remove(AFTER_RESTART).is_some());
    for outcome in &outcomes {
        assert!(
            matches!(outcome.status, None | Some(200)),
            "a call is answered or cut, never refused: {outcome:?}"
        );
    }
    let answered: Vec<&Outcome> = outcomes.iter().filter(|o| o.answered).collect();
    for outcome in &answered {
        let row = rows
            .get(&outcome.tag)
            .unwrap_or_else(|| panic!("an answered call has no row: {outcome:?}"));
        assert_eq!(
            Some(&row.request_id),
            outcome.request_id.as_ref(),
            "the row is the answer's"
        );
        assert!(row.success && row.error_code.is_none(), "{row:?}");
        let streamed = matches!(outcome.kind, CallKind::ChatStream | CallKind::OpenAiStream);
        assert_eq!(row.streamed, streamed, "{row:?}");
    }
    let sent: HashSet<&str> = outcomes.iter().map(|o| o.tag.as_str()).collect();
    let mut interrupted = 0;
    for (tag, row) in &rows {
        assert!(sent.contains(tag.as_str()), "a row for no call: {row:?}");
        if row.success {
            // Not answered, yet its row was journaled: the kill came between the row and
            // the answer's last byte.
            continue;
        }
        assert_eq!(
            row.error_code.as_deref(),
            Some("interrupted"),
            "a cut call is interrupted: {row:?}"
        );
        assert!(row.input_tokens > 0, "the prompt is billed: {row:?}");
        assert!(row.tokens_estimated, "{row:?}");
        interrupted += 1;
    }
    assert!(
        interrupted >= HELD_AT_KILL,
        "the calls held at the upstream were cut: {interrupted} interrupted of {} rows",
        rows.len()
    );
    // Each call's `started` record is journaled before its upstream request, so every call
    // the upstream saw has a row (a call journaled but not yet sent has one too).
    assert!(
        rows.len() >= sent_upstream,
        "{} rows for {sent_upstream} calls sent upstream",
        rows.len()
    );
    eprintln!(
        "sent {}, answered {}, rows {} ({interrupted} interrupted), sent upstream {sent_upstream}",
        outcomes.len(),
        answered.len(),
        rows.len()
    );
}

#[test]
fn a_crash_mid_stream_bills_what_was_delivered() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeUpstream::start(Wire::OpenAi));
    // Five words arrive 100 ms apart, then the upstream goes quiet: the client holds part of
    // an answer when the kill lands.
    fake.set_default(
        Reply::text("alpha bravo charlie delta echo foxtrot golf hotel india juliet")
            .chunks(10)
            .chunk_delay(Duration::from_millis(100))
            .stall_after(5),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut env = openai_at(&fake);
    env.push(("COMMANDER__DATABASE__JOURNAL_STREAM_CHECKPOINT_MS", "50"));
    let (child, address, _logs) = start(dir.path(), &env);

    let received = Arc::new(Mutex::new(String::new()));
    let stream = {
        let (address, received) = (address.clone(), Arc::clone(&received));
        std::thread::spawn(move || {
            use std::io::Read;
            let mut curl = Command::new("curl")
                .args(["-s", "-N", "--max-time", "120"])
                .args(["-H", "content-type: application/json"])
                .args(["-H", "x-request-id: cut-mid-stream", "-d"])
                .arg(CallKind::OpenAiStream.path_and_body().1)
                .arg(format!("http://{address}/v1/chat/completions"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("curl runs");
            let mut stdout = curl.stdout.take().expect("piped stdout");
            let mut chunk = [0u8; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut chunk) {
                received
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
            let _ = curl.wait();
        })
    };
    let delivered_text = |body: &str| -> String {
        body.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    eventually("five words to reach the client", || {
        let text = delivered_text(&received.lock().unwrap());
        (text.split_whitespace().count() >= 5).then_some(())
    });
    kill_hard(child);
    stream.join().unwrap();
    let body = received.lock().unwrap().clone();
    assert!(!body.contains("[DONE]"), "the stream was cut: {body}");
    let delivered_chars = delivered_text(&body).chars().count();

    let (child, address, _logs) = start(dir.path(), &env);
    let store = default_store(dir.path());
    barrier_call(&address, &store);
    stop_gracefully(child);

    let row = rows_by_tag(&store)
        .remove("cut-mid-stream")
        .expect("the cut stream has a row");
    assert_eq!(row.error_code.as_deref(), Some("interrupted"), "{row:?}");
    assert!(!row.success && row.streamed, "{row:?}");
    assert!(row.input_tokens > 0, "the prompt is billed: {row:?}");
    // Progress is journaled at most every 50 ms, so the last words may be missing, never more
    // than the client got.
    let most = i64::try_from(delivered_chars.div_ceil(4)).unwrap();
    assert!(
        row.output_tokens > 0 && row.output_tokens <= most,
        "output tokens {} for {delivered_chars} characters delivered: {row:?}",
        row.output_tokens
    );
    assert!(
        row.ttft_ms.is_some_and(|ttft| ttft > 0.0),
        "the time to first token was journaled: {row:?}"
    );
    assert!(row.estimated_cost_usd > 0.0, "priced: {row:?}");
}

#[test]
fn rows_made_after_the_sqlite_file_was_deleted_wait_in_the_journal_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("COMMANDER__DATABASE__SHUTDOWN_TIMEOUT_MS", "500")];
    let (child, address, logs) = start(dir.path(), &env);
    let demo_call = |tag: &str| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "30",
            ])
            .args(["-H", "content-type: application/json", "-H"])
            .arg(format!("x-request-id: {tag}"))
            .args(["-d", r#"{"specialist_id": "demo", "message": "hi"}"#])
            .arg(format!("http://{address}/chat/send"))
            .output()
            .map(|output| String::from_utf8(output.stdout).unwrap())
            .unwrap()
    };
    for i in 0..3 {
        assert_eq!(demo_call(&format!("before-{i}")), "200");
    }
    let written = "commander_usage_rows_written_total";
    eventually("the first calls to be written", || {
        (metric(&address, written) >= 3.0).then_some(())
    });
    assert_eq!(ready_status(&address), "200");

    for suffix in ["", "-wal", "-shm"] {
        let path = dir.path().join(format!("data/commander.db{suffix}"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", path.display()),
        }
    }
    for i in 0..5 {
        assert_eq!(demo_call(&format!("after-delete-{i}")), "200");
    }
    eventually("/ready to notice the deleted file", || {
        (ready_status(&address) == "503").then_some(())
    });
    let deletion_logged = || {
        logs.lock().unwrap().iter().any(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["level"] == "ERROR" && line.contains("was deleted since the store opened it")
        })
    };
    eventually("an ERROR line naming the deletion", || {
        deletion_logged().then_some(())
    });
    assert_eq!(
        metric(&address, written),
        3.0,
        "the five rows were never written anywhere"
    );
    stop_gracefully(child);

    let (child, address, _logs) = start(dir.path(), &env);
    eventually("/ready on the new database", || {
        (ready_status(&address) == "200").then_some(())
    });
    let store = default_store(dir.path());
    barrier_call(&address, &store);
    stop_gracefully(child);
    let rows = rows_by_tag(&store);
    for i in 0..5 {
        let row = rows
            .get(&format!("after-delete-{i}"))
            .unwrap_or_else(|| panic!("after-delete-{i} has no row in {rows:?}"));
        assert!(row.success, "{row:?}");
    }
    // The first three went into the deleted file. The journal's checkpoint is written at most
    // once a second, so the newest of them may be applied again, from the journal, to the new
    // file at the restart (harmless: they are real calls); nothing else may appear.
    assert!(
        rows.keys().all(|tag| tag.starts_with("before-")
            || tag.starts_with("after-delete-")
            || tag == "after-restart"),
        "{:?}",
        rows.keys()
    );
    assert!((6..=8).contains(&rows.len()), "{:?}", rows.keys());
}
