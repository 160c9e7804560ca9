//! A rate limiter guarding a loop of work, printing the headers an HTTP service would send with
//! each decision:
//!
//! ```sh
//! cargo run -p ratelimit --example guard_loop
//! ```
//!
//! Two callers share a limiter of 3 calls per 10 seconds. Time is a [`ManualClock`] moved by
//! hand, so the run is instant and prints the same every time; a service would use
//! [`RateLimiter::new`], which reads the monotonic clock.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use ratelimit::{Clock, Decision, ManualClock, Quota, RateLimiter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(&mut std::io::stdout().lock())
}

fn run(out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let quota = Quota::new(3, Duration::from_secs(10))?;
    let clock = Arc::new(ManualClock::default());
    let limiter = RateLimiter::with_clock(quota, 1_000, 16, Arc::clone(&clock));

    for (second, caller) in [
        (0, "ada"),
        (1, "ada"),
        (1, "grace"),
        (2, "ada"),
        (2, "ada"),
        (6, "ada"),
    ] {
        let now = Duration::from_secs(second);
        clock.advance(now.saturating_sub(clock.now()));
        let decision = limiter.check(caller, 1);
        let verdict = if decision.allowed {
            "200 OK"
        } else {
            "429 Too Many Requests"
        };
        writeln!(out, "t={second}s {caller}: {verdict}")?;
        for (name, value) in headers(&decision) {
            writeln!(out, "    {name}: {value}")?;
        }
    }
    Ok(())
}

/// The conventional `X-RateLimit-*` headers, plus `Retry-After` on a refusal. Seconds are
/// rounded up so a client that obeys them never comes back too early.
fn headers(decision: &Decision) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("X-RateLimit-Limit", decision.limit.to_string()),
        ("X-RateLimit-Remaining", decision.remaining.to_string()),
        (
            "X-RateLimit-Reset",
            whole_seconds(decision.reset_after).to_string(),
        ),
    ];
    if let Some(retry_after) = decision.retry_after {
        headers.push(("Retry-After", whole_seconds(retry_after).to_string()));
    }
    headers
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fourth_call_within_two_seconds_is_refused_until_a_token_refills() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let refusal = "t=2s ada: 429 Too Many Requests\n    X-RateLimit-Limit: 3\n    \
                       X-RateLimit-Remaining: 0\n    X-RateLimit-Reset: 8\n    Retry-After: 2\n";
        assert!(out.contains(refusal), "{out}");
        assert!(
            out.contains(
                "t=1s grace: 200 OK\n    X-RateLimit-Limit: 3\n    X-RateLimit-Remaining: 2\n"
            ),
            "{out}"
        );
        assert!(out.contains("t=6s ada: 200 OK\n"), "{out}");
    }
}
