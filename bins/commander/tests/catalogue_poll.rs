//! The catalogue reload poll as ops see it in the log of the real binary: a file that goes
//! missing is one ERROR, not one per poll, and its return is one INFO.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Mutex;

mod running_commander;

use running_commander::{
    LogLines, Running, eventually, keep_collecting, server_in, spawn_reading_stdout,
};

/// Starts `commander` in `dir` with JSON logs at debug level for the binary, polling the
/// catalogue every 20 ms; every log line lands in the returned list as it is printed.
fn start(dir: &std::path::Path) -> (Running, LogLines) {
    let (child, lines) = spawn_reading_stdout(
        server_in(dir)
            .env("COMMANDER__LOG__FORMAT", "json")
            .env("COMMANDER__LOG__LEVEL", "info,commander=debug")
            .env("COMMANDER__SPECIALISTS__RELOAD_INTERVAL_MS", "20"),
    );
    (child, keep_collecting(Vec::new(), lines))
}

/// The log lines at `level` whose message contains `text`.
fn count(logs: &Mutex<Vec<String>>, level: &str, text: &str) -> usize {
    logs.lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["level"] == level && event.to_string().contains(text))
        .count()
}

#[test]
fn a_missing_catalogue_file_is_one_error_and_its_return_one_info() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, logs) = start(dir.path());
    eventually("the server to listen", || {
        (count(&logs, "INFO", "commander is listening") == 1).then_some(())
    });
    let path = dir.path().join("config/specialists.json");
    let text = std::fs::read_to_string(&path).unwrap();

    std::fs::remove_file(&path).unwrap();
    // Many polls see the file missing: each says so at debug level only.
    eventually("ten polls of the missing file", || {
        (count(&logs, "DEBUG", "still unusable") >= 10).then_some(())
    });
    assert_eq!(
        count(&logs, "ERROR", "cannot be used"),
        1,
        "one ERROR for the whole outage: {:#?}",
        logs.lock().unwrap()
    );

    std::fs::write(&path, text).unwrap();
    eventually("the file's return to be logged", || {
        (count(&logs, "INFO", "usable again") == 1).then_some(())
    });
    assert_eq!(count(&logs, "ERROR", "cannot be used"), 1);
}
