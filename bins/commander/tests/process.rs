//! The real binary as ops run it: started in an empty directory, stopped by a signal.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use usage_store::{DatabaseConfig, UsageStore};

mod running_commander;

use running_commander::{
    LogLines, Running, commander_in, default_database, default_store, eventually, keep_collecting,
    lines_after_exit, lines_until_listening, listening_json, server_in, spawn_reading_stdout,
};

/// Starts `commander` in `dir` with JSON logs and returns it and the address it logged.
fn start(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> (Running, String) {
    let (child, address, _) = start_logged(dir, extra_env);
    (child, address)
}

/// Like [`start`], also returning every log line the process prints (filled as it runs).
fn start_logged(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> (Running, String, LogLines) {
    let (child, rx) = spawn_server(dir, "json", extra_env);
    let (address, logs) = listening_json(rx);
    (child, address, logs)
}

/// Starts `commander` serving in `dir` with `log_format` logs and `extra_env`; returns it and
/// its stdout lines.
fn spawn_server(
    dir: &std::path::Path,
    log_format: &str,
    extra_env: &[(&str, &str)],
) -> (Running, std::sync::mpsc::Receiver<String>) {
    spawn_reading_stdout(
        server_in(dir)
            .env("COMMANDER__LOG__FORMAT", log_format)
            .envs(extra_env.iter().copied()),
    )
}

/// Streams an answer from the `demo` specialist on another thread (curl, unbuffered), tagged
/// with `request_id`.
fn demo_stream_in_background(address: String, request_id: &'static str) -> BackgroundStream {
    stream_in_background(
        address,
        request_id,
        "/chat/stream",
        r#"{"specialist_id": "demo", "message": "keep going"}"#,
    )
}

/// A streamed answer being received on another thread: what has arrived so far can be
/// waited on; joining gives the whole body.
struct BackgroundStream {
    received: Arc<Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<String>,
}

impl BackgroundStream {
    /// Returns once the first SSE event (a `data:` line) has reached the client, so the
    /// stream is under way on the server.
    fn wait_for_first_event(&self) {
        eventually("the stream's first event to reach the client", || {
            let received = self.received.lock().unwrap();
            String::from_utf8_lossy(&received)
                .contains("data: ")
                .then_some(())
        });
    }

    fn join(self) -> std::thread::Result<String> {
        self.thread.join()
    }
}

/// POSTs `body` to `path` on another thread (curl, unbuffered), tagged with `request_id`.
fn stream_in_background(
    address: String,
    request_id: &'static str,
    path: &'static str,
    body: &'static str,
) -> BackgroundStream {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let thread = std::thread::spawn(move || {
        let mut curl = Command::new("curl")
            .args(["-s", "-N", "-H", "content-type: application/json", "-H"])
            .arg(format!("x-request-id: {request_id}"))
            .arg("-d")
            .arg(body)
            .arg(format!("http://{address}{path}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl runs");
        let mut stdout = curl.stdout.take().expect("piped stdout");
        let mut chunk = [0u8; 4096];
        loop {
            match stdout.read(&mut chunk).expect("curl's output reads") {
                0 => break,
                read => sink.lock().unwrap().extend_from_slice(&chunk[..read]),
            }
        }
        curl.wait().expect("curl ends");
        String::from_utf8(sink.lock().unwrap().clone()).unwrap()
    });
    BackgroundStream { received, thread }
}

fn signal(child: &Running, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn wait_for_exit(child: &mut Running) -> std::process::ExitStatus {
    eventually("commander to exit", || child.0.try_wait().expect("wait"))
}

#[test]
fn sigterm_lets_the_in_flight_call_finish_and_its_usage_row_is_written() {
    use fake_upstreams::{FakeUpstream, Reply, Wire};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeUpstream::start(Wire::OpenAi));
    fake.set_default(Reply::text("Finished.").first_byte_delay(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = start(dir.path(), &debug_logs_and_openai_at(&fake));

    let in_flight = std::thread::spawn(move || {
        let output = Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                "-H",
                "content-type: application/json",
                "-H",
                "x-request-id: in-flight-at-sigterm",
                "-d",
                r#"{"specialist_id": "general", "message": "finish me"}"#,
                &format!("http://{address}/chat/send"),
            ])
            .output()
            .expect("curl runs");
        String::from_utf8(output.stdout).unwrap()
    });
    // The upstream has the call: it is in flight inside commander when the signal comes.
    eventually("the upstream to receive the call", || {
        (fake.request_count() == 1).then_some(())
    });
    signal(&child, "TERM");

    let answer = in_flight.join().unwrap();
    assert!(
        answer.ends_with("\n200"),
        "the in-flight call was answered: {answer}"
    );
    assert!(wait_for_exit(&mut child).success());

    // The defaults created the catalogue and the database in the working directory.
    assert!(dir.path().join("config/specialists.json").exists());
    let store = default_store(dir.path());
    let row = store
        .all_rows()
        .unwrap()
        .into_iter()
        .find(|row| row.client_request_id.as_deref() == Some("in-flight-at-sigterm"))
        .expect("the in-flight call's usage row was written before exit");
    assert!(row.success);
    assert!(row.latency_ms >= 1500.0);
}

#[test]
fn sigint_is_graceful_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = start(dir.path(), &[]);
    signal(&child, "INT");
    assert!(wait_for_exit(&mut child).success());
}

#[test]
fn an_invalid_configuration_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = commander_in(dir.path())
        .env("COMMANDER__DATABASE__NO_SUCH_KEY", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(stderr.contains("no_such_key"), "{stderr}");
}

#[test]
fn a_second_server_on_the_same_journal_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = start(dir.path(), &[]);
    let output = server_in(dir.path()).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(stderr.contains("journal_dir"), "{stderr}");
    // The first is unharmed, and once it is gone the journal is free again.
    signal(&first, "TERM");
    assert!(wait_for_exit(&mut first).success());
    let (mut again, _) = start(dir.path(), &[]);
    signal(&again, "TERM");
    assert!(wait_for_exit(&mut again).success());
}

#[test]
fn usage_report_targets_and_usage_call_show_every_attempt() {
    use chrono::{TimeZone, Utc};
    use usage_store::UsageRecord;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    UsageStore::connect(&DatabaseConfig {
        url: url.clone(),
        ..DatabaseConfig::default()
    })
    .unwrap()
    .insert_batch(&[
        UsageRecord {
            timestamp: Utc.with_ymd_and_hms(2026, 11, 10, 12, 0, 0).unwrap(),
            ..usage_store::fixture::fallback_record("fb-1")
        },
        UsageRecord {
            timestamp: Utc.with_ymd_and_hms(2026, 11, 10, 13, 0, 0).unwrap(),
            ..usage_store::fixture::usage_record("single-1")
        },
    ])
    .unwrap();
    let run = |args: &[&str]| {
        commander_in(dir.path())
            .env("COMMANDER__DATABASE__URL", &url)
            .args(args)
            .output()
            .unwrap()
    };

    let targets = run(&[
        "usage",
        "report",
        "--targets",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
    ]);
    assert!(
        targets.status.success(),
        "{}",
        String::from_utf8_lossy(&targets.stderr)
    );
    let table = String::from_utf8(targets.stdout).unwrap();
    assert!(
        table.starts_with("calls: 2, of which needed more than one attempt: 1"),
        "{table}"
    );
    let gpt = table.lines().find(|l| l.contains("gpt-4o")).unwrap();
    assert!(gpt.contains("upstream_rate_limited=1"), "{table}");
    assert!(table.contains("llama-3.1-70b"), "{table}");

    let call = run(&["usage", "call", "fb-1"]);
    assert!(
        call.status.success(),
        "{}",
        String::from_utf8_lossy(&call.stderr)
    );
    let text = String::from_utf8(call.stdout).unwrap();
    assert!(text.contains("claude-sonnet-4"), "{text}");
    assert!(text.contains("http://127.0.0.1:8081/v1"), "{text}");

    let missing = run(&["usage", "call", "nobody"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no usage row for request id 'nobody'")
    );
    let both = run(&["usage", "report", "--targets", "--group-by", "model"]);
    assert!(!both.status.success(), "--targets replaces the grouping");
}

#[test]
fn usage_report_prints_the_summary_as_csv_table_and_markdown() {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use core_domain::{SpecialistId, TokenUsage, Usd};
    use usage_store::UsageRecord;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    let store = UsageStore::connect(&DatabaseConfig {
        url: url.clone(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    let record = |id: &str, specialist: &str, cost_nanos: u64, latency_ms: u64| UsageRecord {
        timestamp: Utc.with_ymd_and_hms(2026, 11, 10, 12, 0, 0).unwrap(),
        specialist_id: SpecialistId::parse(specialist).unwrap(),
        specialist_name: specialist.into(),
        usage: TokenUsage::reported(100, 50),
        cost: Usd::from_nanos(cost_nanos),
        latency: Duration::from_millis(latency_ms),
        ..usage_store::fixture::usage_record(id)
    };
    store
        .insert_batch(&[
            record("r1", "analyst", 750_000, 100),
            record("r2", "analyst", 750_000, 300),
            record("r3", "general", 1_000_000, 50),
        ])
        .unwrap();

    // The report over November as `format`, with `exact_report_calls` as configured: its
    // standard output and error.
    let report = |format: &str, exact_report_calls: &str| {
        let output = commander_in(dir.path())
            .env("COMMANDER__DATABASE__URL", &url)
            .env(
                "COMMANDER__DATABASE__EXACT_REPORT_CALLS",
                exact_report_calls,
            )
            .args([
                "usage",
                "report",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
                "--group-by",
                "specialist",
                "--format",
                format,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        (String::from_utf8(output.stdout).unwrap(), stderr)
    };
    let run = |format: &str| {
        let (stdout, stderr) = report(format, "20000");
        // Three calls: exact percentiles, and no note.
        assert!(!stderr.contains("approximate"));
        stdout
    };

    let csv = run("csv");
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "key,requests,successes,failures,input_tokens,output_tokens,cost_usd,avg_latency_ms,p50_latency_ms,p95_latency_ms",
            "analyst,2,2,0,200,100,0.001500,200.0,100.0,300.0",
            "general,1,1,0,100,50,0.001000,50.0,50.0,50.0",
        ]
    );
    let table = run("table");
    assert!(
        table.lines().last().unwrap().starts_with("TOTAL"),
        "{table}"
    );
    assert!(table.contains("0.002500"), "{table}");
    let markdown = run("markdown");
    assert!(markdown.starts_with("| key | requests |"), "{markdown}");

    // Through the hourly rollup (every report over more than 0 calls): the same counts, tokens
    // and cost, and a note on standard error that the percentiles are approximate, so the CSV
    // on standard output stays one document.
    store.seal_hours(Utc::now(), 100).unwrap();
    let (rolled, rolled_stderr) = report("csv", "0");
    let exact_counts: Vec<String> = csv
        .lines()
        .map(|line| line.split(',').take(8).collect::<Vec<_>>().join(","))
        .collect();
    let rolled_counts: Vec<String> = rolled
        .lines()
        .map(|line| line.split(',').take(8).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(rolled_counts, exact_counts);
    assert!(
        rolled_stderr.contains("p50/p95 are approximate"),
        "{rolled_stderr}"
    );

    let bad = commander_in(dir.path())
        .env("COMMANDER__DATABASE__URL", &url)
        .args(["usage", "report", "--from", "last week"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--from"));
}

#[test]
fn auth_disabled_on_a_public_address_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let output = commander_in(dir.path())
        .env("COMMANDER__SERVER__BIND", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("refusing to listen on 0.0.0.0"), "{stderr}");
    assert!(
        stderr.contains("auth.allow_unauthenticated_public"),
        "{stderr}"
    );

    // `start` binds 127.0.0.1:0 unless told otherwise; here it is told otherwise.
    let (mut child, address) = start(
        dir.path(),
        &[
            ("COMMANDER__SERVER__BIND", "0.0.0.0:0"),
            ("COMMANDER__AUTH__ALLOW_UNAUTHENTICATED_PUBLIC", "true"),
        ],
    );
    assert!(address.starts_with("0.0.0.0:"), "{address}");
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());
}

#[test]
fn auth_required_with_nothing_configured_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = server_in(dir.path())
        .env("COMMANDER__AUTH__MODE", "required")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nobody could call the API"));
}

#[test]
fn tokens_and_keys_never_reach_the_logs() {
    use sha2::Digest;
    let key = "cmdr_e2e_log_check_key_000000000000000000000000000000000000000000";
    let wrong_key = "cmdr_e2e_log_check_wrong_0000000000000000000000000000000000000000";
    let secret = "a-test-secret-that-is-long-enough-for-hs256";
    let jwt = |exp_offset: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"email": "ada@example.com",
                                "exp": chrono::Utc::now().timestamp() + exp_offset}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let (good_jwt, expired_jwt) = (jwt(600), jwt(-600));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("commander.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[auth]
mode = "required"
api_keys = [{{ name = "log-check", email = "ada@example.com", role = "user", sha256 = "{}" }}]
[auth.jwt]
algorithm = "HS256"
secret = "{secret}"
"#,
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        ),
    )
    .unwrap();
    let (mut child, address, logs) = start_logged(
        dir.path(),
        &[
            ("COMMANDER_CONFIG", config.to_str().unwrap()),
            ("RUST_LOG", "trace"),
        ],
    );
    for credential in [key, wrong_key, good_jwt.as_str(), expired_jwt.as_str()] {
        let status = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "content-type: application/json",
                "-H",
                &format!("authorization: Bearer {credential}"),
                "-d",
                r#"{"specialist_id": "demo", "message": "hi"}"#,
                &format!("http://{address}/chat/send"),
            ])
            .output()
            .unwrap();
        let code = String::from_utf8(status.stdout).unwrap();
        assert!(code == "200" || code == "401", "{code}");
    }
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());
    let logs = lines_after_exit(&logs).join("\n");
    assert!(
        logs.contains("request refused") || logs.contains("unauthorized"),
        "the refusals were logged"
    );
    for secret_text in [
        key,
        wrong_key,
        good_jwt.as_str(),
        expired_jwt.as_str(),
        secret,
    ] {
        assert!(
            !logs.contains(secret_text),
            "a credential reached the logs: {secret_text}"
        );
    }
    // Nor the signature part of a token on its own.
    let signature = good_jwt.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        r#"
[server]
bind = "127.0.0.1:9000"
[providers.anthropic]
api_key = "sk-ant-do-not-print-me"
[database]
url = "postgres://commander:do-not-print-either@db.internal:5432/commander"
"#,
    )
    .unwrap();
    let run = |config: &std::path::Path| {
        commander_in(dir.path())
            .args(["check-config", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let output = run(&good);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("configuration OK"));
    assert!(stdout.contains("bind = \"127.0.0.1:9000\""), "{stdout}");
    assert!(stdout.contains("api_key = \"********\""), "{stdout}");
    assert!(!stdout.contains("do-not-print"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nbind = \"0.0.0.0:9000\"\n[database]\nurl = \"mysql://x\"\n[auth.jwt]\nalgorithm = \"HS256\"\n",
    )
    .unwrap();
    let output = run(&bad);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("auth.jwt: HS256 needs auth.jwt.secret"),
        "{stderr}"
    );
    assert!(stderr.contains("database.url"), "{stderr}");

    let unparsable = dir.path().join("unparsable.toml");
    std::fs::write(&unparsable, "[server]\nbind = 8000\nworkerz = 2\n").unwrap();
    let output = run(&unparsable);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("invalid configuration"), "{stderr}");

    let missing = run(&dir.path().join("nope.toml"));
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn every_request_logs_one_line_with_its_id_route_specialist_status_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, logs) = start_logged(dir.path(), &[]);
    let prompt = "a confidential prompt that must stay out of the logs";
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-H",
            "content-type: application/json",
            "-H",
            "x-request-id: trace-me-7",
            "-d",
            &format!(r#"{{"specialist_id": "demo", "message": "{prompt}"}}"#),
            &format!("http://{address}/chat/send"),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());
    let logs = lines_after_exit(&logs);
    let line = logs
        .iter()
        .find(|l| l.contains("request completed") && l.contains("trace-me-7"))
        .unwrap_or_else(|| panic!("no request line in {logs:#?}"));
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    let span = &event["span"];
    assert_eq!(event["level"], "INFO");
    assert_eq!(span["client_request_id"], "trace-me-7");
    assert_eq!(
        span["request_id"].as_str().map(str::len),
        Some(36),
        "our own UUID: {span}"
    );
    assert_eq!(span["route"], "/chat/send");
    assert_eq!(span["method"], "POST");
    assert_eq!(span["specialist"], "demo");
    assert_eq!(span["provider"], "mock");
    assert_eq!(span["status"], 200);
    assert!(span["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        logs.iter().all(|l| !l.contains(prompt)),
        "a prompt reached the logs"
    );
}

#[test]
fn sigterm_during_a_stream_lets_it_finish_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    // Eight chunks, 250 ms apart: a two-second stream.
    let (mut child, address) = start(
        dir.path(),
        &[
            ("COMMANDER__PROVIDERS__MOCK__CHUNK_DELAY_MS", "250"),
            ("COMMANDER__SERVER__SHUTDOWN_GRACE_SECONDS", "10"),
        ],
    );
    let stream = demo_stream_in_background(address, "streaming-at-sigterm");
    stream.wait_for_first_event();
    signal(&child, "TERM");
    let started = std::time::Instant::now();
    let body = stream.join().unwrap();
    assert!(
        body.contains("\"is_final\":true"),
        "the stream was cut short: {body}"
    );
    assert_eq!(body.matches("event: message").count(), 9, "{body}");
    assert!(wait_for_exit(&mut child).success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "finished within the grace period"
    );

    let store = default_store(dir.path());
    let row = store
        .all_rows()
        .unwrap()
        .into_iter()
        .find(|row| row.client_request_id.as_deref() == Some("streaming-at-sigterm"))
        .expect("the stream's usage row was written before exit");
    assert!(row.success && row.streamed);
}

fn commander(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    commander_in(dir).args(args).output().unwrap()
}

#[test]
fn keys_new_prints_a_fresh_key_once_and_a_config_line_that_admits_it() {
    let dir = tempfile::tempdir().unwrap();
    let new_key = || {
        let output = commander(
            dir.path(),
            &[
                "keys",
                "new",
                "--name",
                "ops laptop",
                "--email",
                "Root@Example.com",
                "--role",
                "admin",
            ],
        );
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let indented: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .collect();
        assert_eq!(indented.len(), 2, "the key, then the config line: {stdout}");
        (indented[0].to_owned(), indented[1].to_owned())
    };
    let (key, line) = new_key();
    let (other_key, _) = new_key();
    assert_ne!(key, other_key, "every key is fresh");
    assert!(key.len() >= 40, "{key}");
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    assert!(line.contains(&format!("sha256 = \"{hash}\"")), "{line}");
    assert!(!line.contains(&key), "the config line holds only the hash");
    assert!(line.contains("role = \"admin\""), "{line}");

    // The printed line, pasted into the config as told, admits the key as an admin.
    std::fs::write(
        dir.path().join("commander.toml"),
        format!("[auth]\nmode = \"required\"\napi_keys = [\n  {line}\n]\n"),
    )
    .unwrap();
    let (mut child, address) = start(dir.path(), &[]);
    let create = |key: &str| {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("authorization: Bearer {key}"))
            .args(["-H", "content-type: application/json", "-d"])
            .arg(r#"{"name": "Keyed", "provider": "mock", "model": "mock-echo", "system_prompt": "Hi."}"#)
            .arg(format!("http://{address}/specialists"))
            .output()
            .expect("curl runs");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(create(&other_key), "401", "a key not in the config");
    assert_eq!(create(&key), "201");
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());

    // Bad input is refused with a reason, and prints no key.
    for args in [
        [
            "keys", "new", "--name", "", "--email", "a@b.c", "--role", "user",
        ],
        [
            "keys",
            "new",
            "--name",
            "n",
            "--email",
            "not-an-email",
            "--role",
            "user",
        ],
        [
            "keys", "new", "--name", "n", "--email", "a@b.c", "--role", "root",
        ],
    ] {
        let output = commander(dir.path(), &args);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn migrate_applies_the_migrations_and_exits_without_serving() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = || {
        let output = commander(dir.path(), &["migrate"]);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let store = || UsageStore::connect_without_migrating(&default_database(dir.path())).unwrap();
    // Before: an empty file has every migration pending.
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    assert!(store().check_ready().is_err());
    let shipped = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
    .unwrap()
    .filter(|e| e.as_ref().unwrap().path().join("up.sql").exists())
    .count();
    assert!(shipped >= 2);
    let first = migrate();
    assert!(
        first.starts_with(&format!("{shipped} migration(s) applied")),
        "{first}"
    );
    assert!(store().check_ready().is_ok(), "nothing pending after");
    assert!(store().all_rows().unwrap().is_empty(), "the table exists");
    assert!(
        migrate().starts_with("0 migration(s) applied"),
        "idempotent"
    );
    assert!(
        !dir.path().join("config").exists(),
        "migrate touches the database only (no catalogue written)"
    );

    // A database it cannot reach is a clear failure, not a hang.
    let output = commander_in(dir.path())
        .env(
            "COMMANDER__DATABASE__URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .env("COMMANDER__DATABASE__CONNECT_TIMEOUT_MS", "500")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(!output.stderr.is_empty());
}

#[test]
fn help_documents_every_subcommand_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| {
        let output = commander(dir.path(), args);
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let top = help(&["--help"]);
    for item in [
        "serve",
        "check-config",
        "migrate",
        "usage",
        "keys",
        "--config",
    ] {
        assert!(top.contains(item), "--help lacks {item}: {top}");
    }
    let report = help(&["usage", "report", "--help"]);
    for flag in ["--from", "--to", "--group-by", "--format"] {
        assert!(report.contains(flag), "{report}");
    }
    let keys = help(&["keys", "new", "--help"]);
    for flag in ["--name", "--email", "--role"] {
        assert!(keys.contains(flag), "{keys}");
    }
}

#[test]
fn a_stream_that_outlasts_the_grace_period_ends_with_a_shutdown_event_and_is_still_logged() {
    let dir = tempfile::tempdir().unwrap();
    // Eight chunks, 500 ms apart (four seconds), against a grace period of one second.
    let (mut child, address) = start(
        dir.path(),
        &[
            ("COMMANDER__PROVIDERS__MOCK__CHUNK_DELAY_MS", "500"),
            ("COMMANDER__SERVER__SHUTDOWN_GRACE_SECONDS", "1"),
        ],
    );
    let native = demo_stream_in_background(address.clone(), "cut-at-grace");
    let openai = stream_in_background(
        address,
        "cut-at-grace-v1",
        "/v1/chat/completions",
        r#"{"model": "demo", "stream": true, "messages": [{"role": "user", "content": "keep going"}]}"#,
    );
    native.wait_for_first_event();
    openai.wait_for_first_event();
    let signalled = std::time::Instant::now();
    signal(&child, "TERM");
    let native = native.join().unwrap();
    let openai = openai.join().unwrap();
    assert!(wait_for_exit(&mut child).success());
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "shutdown did not wait for the whole stream: {:?}",
        signalled.elapsed()
    );

    // `/chat/stream`: text, then a final error event saying why it ended.
    assert!(!native.contains("\"is_final\":true"), "{native}");
    assert!(native.contains("event: message"), "it had begun: {native}");
    let last_event = native
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(last_event.starts_with("event: error"), "{native}");
    let data: serde_json::Value = serde_json::from_str(
        last_event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("no data in {last_event:?}")),
    )
    .unwrap();
    assert_eq!(data["code"], "server_shutdown", "{data}");

    // `/v1/chat/completions`: chunks, then an error chunk in OpenAI's shape, and no [DONE].
    assert!(
        openai.contains("chat.completion.chunk"),
        "it had begun: {openai}"
    );
    assert!(!openai.contains("[DONE]"), "{openai}");
    let last_chunk = openai
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap_or_else(|| panic!("no data in {openai:?}"));
    let chunk: serde_json::Value = serde_json::from_str(last_chunk).unwrap();
    assert_eq!(chunk["error"]["code"], "server_shutdown", "{chunk}");

    let store = default_store(dir.path());
    let rows = store.all_rows().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert!(!row.success && row.streamed, "{row:?}");
        assert_eq!(
            row.error_code.as_deref(),
            Some("server_shutdown"),
            "cut by the server, not abandoned by its client"
        );
        assert!(row.output_tokens > 0, "what was delivered is counted");
    }
    let mut tags: Vec<_> = rows
        .iter()
        .filter_map(|r| r.client_request_id.as_deref())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["cut-at-grace", "cut-at-grace-v1"]);
}

#[test]
fn upstream_keys_and_prompts_stay_out_of_the_logs_even_at_trace() {
    use fake_upstreams::{FakeUpstream, Reply, Wire};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeUpstream::start(Wire::OpenAi));
    fake.set_default(Reply::text("An answer.").chunks(3));
    let upstream_key = "sk-upstream-secret-for-the-log-check-0123456789";
    let prompt = "a confidential prompt about the merger";
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, logs) = start_logged(
        dir.path(),
        &[
            ("RUST_LOG", "trace"),
            ("COMMANDER__PROVIDERS__OPENAI__BASE_URL", fake.base_url()),
            ("OPENAI_API_KEY", upstream_key),
        ],
    );
    for (path, body) in [
        (
            "/chat/send",
            format!(r#"{{"specialist_id": "general", "message": "{prompt}"}}"#),
        ),
        (
            "/chat/stream",
            format!(r#"{{"specialist_id": "general", "message": "{prompt}"}}"#),
        ),
        (
            "/v1/chat/completions",
            format!(
                r#"{{"model": "general", "messages": [{{"role": "user", "content": "{prompt}"}}]}}"#
            ),
        ),
        (
            "/v1/chat/completions",
            format!(
                r#"{{"model": "general", "stream": true, "messages": [{{"role": "user", "content": "{prompt}"}}]}}"#
            ),
        ),
    ] {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", "content-type: application/json", "-d", &body])
            .arg(format!("http://{address}{path}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), "200", "{path}");
    }
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());
    assert_eq!(fake.request_count(), 4, "every call went upstream");
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some(format!("Bearer {upstream_key}").as_str()),
        "the key was sent, so it could have been logged"
    );
    let logs = lines_after_exit(&logs).join("\n");
    assert!(logs.contains("\"level\":\"TRACE\""), "trace logging was on");
    assert!(
        !logs.contains(upstream_key),
        "the upstream key reached the logs"
    );
    assert!(!logs.contains(prompt), "a prompt reached the logs");
}

#[test]
fn human_logs_carry_no_colour_codes_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (child, rx) = spawn_reading_stdout(&mut server_in(dir.path()));
    let listening = lines_until_listening(&rx, |line| {
        assert!(
            !line.contains('\u{1b}'),
            "a colour code in a piped log: {line:?}"
        );
        line.contains("commander is listening")
    })
    .pop()
    .expect("the listening line");
    assert!(
        listening.contains(" INFO "),
        "the human format: {listening}"
    );
    assert!(!listening.starts_with('{'), "not JSON: {listening}");
    let mut child = child;
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());
}

#[test]
fn the_worker_count_comes_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, logs) = start_logged(dir.path(), &[("COMMANDER__SERVER__WORKERS", "3")]);
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());
    let logs = lines_after_exit(&logs).join("\n");
    // actix logs the number it starts before we announce that we listen; the lines after
    // show each worker shutting down.
    let shutting_down = logs.matches("shutting down idle worker").count()
        + logs.matches("Worker shutting down").count();
    assert_eq!(shutting_down, 3, "{logs}");
}

#[test]
fn usage_report_refuses_dates_beyond_its_range_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (args, flag) in [
        (["usage", "report", "--to=-262143-01-01"], "--to"),
        (["usage", "report", "--to=+262143-12-31"], "--to"),
        (["usage", "report", "--from=-262143-01-01"], "--from"),
    ] {
        let output = commander(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // A panic exits with 101; a refusal with 1 and one line saying what is wrong.
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("commander: {flag}: ")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Starts `commander` in `dir` with human-format logs; returns it, the address it logged and
/// every line it prints (filled as it runs).
fn start_human(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> (Running, String, LogLines) {
    let (child, rx) = spawn_server(dir, "human", extra_env);
    let seen = lines_until_listening(&rx, |line| line.contains("commander is listening"));
    let listening = seen.last().expect("the listening line").clone();
    let lines = keep_collecting(seen, rx);
    let address = listening
        .split_whitespace()
        .find_map(|word| word.strip_prefix("address="))
        .unwrap_or_else(|| panic!("no address in {listening}"))
        .to_owned();
    (child, address, lines)
}

fn curl_status(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

/// Debug logging, and OpenAI at `fake` with a key and no retries, so each call is one
/// upstream answer.
fn debug_logs_and_openai_at(fake: &fake_upstreams::FakeUpstream) -> [(&'static str, &str); 4] {
    [
        ("RUST_LOG", "debug"),
        ("COMMANDER__PROVIDERS__OPENAI__BASE_URL", fake.base_url()),
        ("COMMANDER__PROVIDERS__OPENAI__MAX_RETRIES", "0"),
        ("OPENAI_API_KEY", "sk-test"),
    ]
}

/// What an attacker wants to appear as a line of its own.
const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO commander::application: FORGED";

#[test]
fn human_logs_keep_newlines_from_paths_and_upstream_bodies_inside_their_line() {
    use fake_upstreams::{FakeUpstream, Reply, Wire};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeUpstream::start(Wire::OpenAi));
    fake.set_default(Reply::status(
        500,
        format!("overloaded\n{FORGED} by the upstream\r\n\u{2028}\u{202e}"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, logs) = start_human(dir.path(), &debug_logs_and_openai_at(&fake));
    let forged_path = format!("{}%20in%20a%20path", FORGED.replace(' ', "%20"));
    for path in [
        format!("/specialists/x%0a{forged_path}"),
        format!("/v1/models/x%0a{forged_path}"),
        format!("/nowhere%0a{forged_path}"),
    ] {
        let status = curl_status(&[&format!("http://{address}{path}")]);
        assert!(status.starts_with('4'), "{path}: {status}");
    }
    for (path, body) in [
        (
            "/chat/send",
            r#"{"specialist_id": "general", "message": "hi"}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model": "general", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#,
        ),
    ] {
        let status = curl_status(&[
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &format!("http://{address}{path}"),
        ]);
        assert_eq!(status, "502", "{path}");
    }
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());
    let logs = lines_after_exit(&logs);
    let all = logs.join("\n");
    assert!(
        all.contains("by the upstream"),
        "the upstream's words were logged: {all}"
    );
    for line in &logs {
        assert!(
            !line.starts_with(FORGED) && !line.starts_with("commander::application"),
            "a forged line: {line:?}"
        );
        assert!(
            !line.contains(['\r', '\u{2028}', '\u{202e}']),
            "a raw control character: {line:?}"
        );
        // Every line is a real event: it starts with the time the logger wrote.
        assert!(
            line.as_bytes().first().is_some_and(u8::is_ascii_digit),
            "not a log line of its own: {line:?}"
        );
    }
}

/// Checks a JSON document for an object that repeats a key (which `serde_json::Value` would
/// silently resolve to the last value).
struct NoRepeatedKeys;

impl<'de> serde::Deserialize<'de> for NoRepeatedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoRepeatedKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoRepeatedKeys {
    type Value = NoRepeatedKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("the key {key:?} repeats")));
            }
            map.next_value::<NoRepeatedKeys>()?;
        }
        Ok(NoRepeatedKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoRepeatedKeys>()?.is_some() {}
        Ok(NoRepeatedKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(NoRepeatedKeys)
    }
}

#[test]
fn json_log_lines_have_one_message_key_and_keep_the_error_text() {
    use fake_upstreams::{FakeUpstream, Reply, Wire};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeUpstream::start(Wire::OpenAi));
    fake.set_default(Reply::status(500, "the upstream is melting"));
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, logs) = start_logged(dir.path(), &debug_logs_and_openai_at(&fake));
    let failed = curl_status(&[
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"specialist_id": "general", "message": "hi"}"#,
        &format!("http://{address}/chat/send"),
    ]);
    assert_eq!(failed, "502");
    let refused = curl_status(&[&format!("http://{address}/specialists/nobody-here")]);
    assert_eq!(refused, "404");
    signal(&child, "TERM");
    assert!(wait_for_exit(&mut child).success());

    let logs = lines_after_exit(&logs);
    for line in &logs {
        if let Err(e) = serde_json::from_str::<NoRepeatedKeys>(line) {
            panic!("{e}: {line}");
        }
    }
    let event = |message: &str| -> serde_json::Value {
        let line = logs
            .iter()
            .find(|l| l.contains(&format!("\"message\":\"{message}\"")))
            .unwrap_or_else(|| panic!("no '{message}' line in {logs:#?}"));
        serde_json::from_str(line).unwrap()
    };
    let assert_logged = |message: &str, code: &str, error_text: &str| {
        let logged = event(message);
        assert_eq!(logged["code"], code);
        assert!(
            logged["error_message"]
                .as_str()
                .is_some_and(|m| m.contains(error_text)),
            "{logged}"
        );
    };
    assert_logged(
        "request failed",
        "upstream_error",
        "the upstream is melting",
    );
    assert_logged("request refused", "specialist_not_found", "nobody-here");
}

#[test]
fn budgets_list_and_usage_report_show_each_budgets_spend_this_period() {
    use chrono::Utc;
    use core_domain::{EmailHash, SpecialistId, TokenUsage, Usd};
    use usage_store::UsageRecord;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    let store = UsageStore::connect(&DatabaseConfig {
        url: url.clone(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    let now = Utc::now();
    let record = |id: &str, specialist: &str, email: &str, cost_nanos: u64| UsageRecord {
        timestamp: now,
        specialist_id: SpecialistId::parse(specialist).unwrap(),
        specialist_name: specialist.into(),
        user_email_hash: Some(EmailHash::of_email(email)),
        usage: TokenUsage::reported(100, 50),
        cost: Usd::from_nanos(cost_nanos),
        ..usage_store::fixture::usage_record(id)
    };
    store
        .insert_batch(&[
            record("b1", "analyst", "ada@example.com", 1_500_000_000),
            record("b2", "analyst", "grace@example.com", 500_000_000),
            record("b3", "general", "ada@example.com", 250_000_000),
            // Long before this month: counted by the total budget only.
            UsageRecord {
                timestamp: now - chrono::TimeDelta::days(400),
                ..record("b4", "analyst", "ada@example.com", 1_000_000_000)
            },
        ])
        .unwrap();
    let config = dir.path().join("commander.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "{url}"

[[budgets.limits]]
id = "analysts-monthly"
scope = "specialist"
subject = "analyst"
period = "month"
limit_usd = 10

[[budgets.limits]]
id = "ada-total"
scope = "user"
subject = "ada@example.com"
period = "total"
limit_usd = 5
"#
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = commander_in(dir.path())
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };

    let csv = run(&["budgets", "list", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "budget,scope,subject,period,limit_usd,spent_usd,remaining_usd,used_pct,resets_at,managed_by"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    let row = |id: &str| {
        lines
            .iter()
            .find(|line| line.starts_with(&format!("{id},")))
            .unwrap_or_else(|| panic!("{id} not listed: {csv}"))
            .split(',')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let monthly = row("analysts-monthly");
    assert_eq!(
        monthly[..8],
        [
            "analysts-monthly",
            "specialist",
            "analyst",
            "month",
            "10.000000",
            "2.000000",
            "8.000000",
            "20.0"
        ]
    );
    assert!(monthly[8].ends_with('Z'), "resets at a date: {csv}");
    assert_eq!(monthly[9], "config");
    // Ada's calls of every time, to any specialist.
    assert_eq!(
        row("ada-total"),
        [
            "ada-total",
            "user",
            "ada@example.com",
            "total",
            "5.000000",
            "2.750000",
            "2.250000",
            "55.0",
            "never",
            "config"
        ]
    );

    let table = run(&["budgets", "list"]);
    for expected in [
        "analysts-monthly",
        "ada-total",
        "2.000000",
        "2.750000",
        "never",
    ] {
        assert!(table.contains(expected), "{expected}: {table}");
    }

    let report = run(&["usage", "report", "--group-by", "specialist"]);
    let budgets = report
        .split_once("Budgets (current periods):")
        .unwrap_or_else(|| panic!("no Budgets section: {report}"))
        .1;
    for expected in ["analysts-monthly", "2.000000", "ada-total", "2.750000"] {
        assert!(budgets.contains(expected), "{expected}: {report}");
    }
}
