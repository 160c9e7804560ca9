//! The real binary given numeric settings at the edge of their types: it refuses them by name,
//! before starting anything, instead of panicking (or running with a shutdown that would).
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::{ExitStatus, Stdio};

const U64_MAX: &str = "18446744073709551615";

mod running_commander;

use running_commander::{Running, eventually, server_in};

/// Runs `commander ARGS` in an empty directory with only `env`, and returns how it exited
/// and what it wrote to stderr; fails if it is still running after
/// [`running_commander::EVENTUALLY_WITHIN`] (a server that started although it should not
/// have).
fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = server_in(dir.path())
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let status = eventually(&format!("commander {args:?} with {env:?} to exit"), || {
        child.0.try_wait().unwrap()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn check_config_names_a_shutdown_grace_beyond_its_range_and_exits_1() {
    let (status, stderr) = run(
        &["check-config"],
        &[("COMMANDER__SERVER__SHUTDOWN_GRACE_SECONDS", U64_MAX)],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "server.shutdown_grace_seconds: {U64_MAX} is out of range (allowed: 0 to 86400 seconds)"
        )),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_out_of_range_values_with_a_message_instead_of_a_panic() {
    for (variable, key) in [
        // Started and listened: only the shutdown would have panicked, leaving it running.
        (
            "COMMANDER__SERVER__SHUTDOWN_GRACE_SECONDS",
            "server.shutdown_grace_seconds",
        ),
        // Panicked at start, in Tokio's channel.
        (
            "COMMANDER__DATABASE__QUEUE_CAPACITY",
            "database.queue_capacity",
        ),
    ] {
        let (status, stderr) = run(&["serve"], &[(variable, U64_MAX)]);
        assert_eq!(status.code(), Some(1), "{key}: {stderr}");
        assert!(
            stderr.contains(&format!("{key}: {U64_MAX} is out of range")),
            "{key}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{key}: {stderr}");
    }
}
