//! `FakeUpstream::expect_calls`: checked when the fake is dropped, silent while a test is
//! already failing.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use fake_upstreams::{FakeUpstream, Wire};

/// One plain HTTP/1.1 chat completion to the fake, read to the end of its answer; the status
/// line comes back. Blocking I/O with timeouts, so it runs off the fake's runtime thread.
async fn call(fake: &FakeUpstream) -> String {
    let address = fake
        .base_url()
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/v1"))
        .unwrap()
        .to_owned();
    tokio::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        write!(
            socket,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_met_expectation_drops_quietly() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(2);
    assert_eq!(call(&fake).await, "HTTP/1.1 200 OK");
    assert_eq!(call(&fake).await, "HTTP/1.1 200 OK");
    drop(fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "expected 2 call(s) but received 1")]
async fn too_few_calls_fail_the_test_when_the_fake_is_dropped() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(2);
    call(&fake).await;
    drop(fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "expected 0 call(s) but received 1")]
async fn a_call_that_should_never_have_come_fails_the_test() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(0);
    assert_eq!(call(&fake).await, "HTTP/1.1 200 OK");
    drop(fake);
}

#[test]
fn an_unmet_expectation_does_not_mask_the_tests_own_failure() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeUpstream::start(Wire::OpenAi));
    fake.expect_calls(1);
    // A second panic while unwinding would abort the whole test binary instead of returning.
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let _fake = fake;
        panic!("the test's own failure");
    }));
    let payload = outcome.unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the test's own failure")
    );
}
