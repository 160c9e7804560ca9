//! Counting chat calls whose usage row is not yet with the usage writer, so that shutdown can
//! wait for them.
//!
//! A stream cut short by the shutdown grace period is dropped on its worker thread when that
//! thread tears down its connections, which can be after the server future has returned. Its
//! row is written by that drop; the usage writer must not drain and stop before it arrives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Chat calls in progress (from the moment a call reaches a specialist until its usage row is
/// handed to the usage sink). Cheap to clone; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct LiveCalls(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    count: AtomicUsize,
    idle: Notify,
    /// From when a call still running was cut short by shutdown (the end of the grace period).
    cut_from: OnceLock<Instant>,
    /// Wakes the streams when shutdown begins, so they can end themselves before the cut.
    shutdown_begun: Notify,
}

/// How long before the end of the grace period streams end themselves with a final error
/// event: the server drops every connection at that end, and the event must be written first.
const STREAM_END_MARGIN: Duration = Duration::from_millis(250);

impl LiveCalls {
    /// No calls yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a call until the returned guard is dropped.
    pub(crate) fn enter(&self) -> LiveCall {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        LiveCall(self.clone())
    }

    /// Notes that shutdown began and in-flight calls have `grace` to finish: a call dropped
    /// after that was cut short by the server, not abandoned by its client.
    pub fn shutting_down(&self, grace: Duration) {
        // A grace period beyond the clock's range (a configured u64::MAX) never runs out.
        if let Some(cut) = Instant::now().checked_add(grace) {
            let _ = self.0.cut_from.set(cut);
        }
        self.0.shutdown_begun.notify_waiters();
    }

    /// Resolves when a stream still running must end itself, telling its client why: a moment
    /// before a shutdown's grace period runs out. Pending until shutdown begins.
    pub(crate) async fn streams_must_end(self) {
        loop {
            let begun = self.0.shutdown_begun.notified();
            tokio::pin!(begun);
            // Registered before the check, so a shutdown beginning in between still wakes us.
            begun.as_mut().enable();
            if let Some(cut) = self.0.cut_from.get() {
                let end_at = cut.checked_sub(STREAM_END_MARGIN).unwrap_or(*cut);
                tokio::time::sleep_until(end_at.into()).await;
                return;
            }
            begun.await;
        }
    }

    /// True once the grace period of a shutdown has run out.
    pub(crate) fn past_grace(&self) -> bool {
        self.0
            .cut_from
            .get()
            .is_some_and(|cut| Instant::now() >= *cut)
    }

    /// How many calls have not handed in their row yet.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::SeqCst)
    }

    /// Waits until no call is in progress, at most `timeout` (which may be `Duration::MAX`);
    /// true when none is.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        // No deadline when `timeout` is beyond what an `Instant` can hold: wait for good.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a call ending in between still wakes us.
            notified.as_mut().enable();
            if self.count() == 0 {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return self.count() == 0;
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// One call in progress; dropping it ends the call.
#[derive(Debug)]
pub(crate) struct LiveCall(LiveCalls);

impl LiveCall {
    /// True when the server's shutdown grace period has run out (see
    /// [`LiveCalls::shutting_down`]).
    pub(crate) fn cut_by_shutdown(&self) -> bool {
        self.0.past_grace()
    }
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        if self.0.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_call_and_gives_up_at_the_timeout() {
        let calls = LiveCalls::new();
        assert!(calls.wait_idle(Duration::from_millis(1)).await);
        let first = calls.enter();
        let second = calls.enter();
        assert_eq!(calls.count(), 2);
        assert!(!calls.wait_idle(Duration::from_millis(20)).await);

        let waiter = tokio::spawn({
            let calls = calls.clone();
            async move { calls.wait_idle(Duration::from_secs(10)).await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one call is still in progress");
        // Ended on another thread, as a worker tearing down its connections would.
        std::thread::spawn(move || drop(second)).join().unwrap();
        assert!(waiter.await.unwrap());
        assert_eq!(calls.count(), 0);
    }

    #[tokio::test]
    async fn streams_are_told_to_end_a_margin_before_the_grace_period_runs_out() {
        let calls = LiveCalls::new();
        let waiting = tokio::spawn(calls.clone().streams_must_end());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no shutdown, no end");
        calls.shutting_down(STREAM_END_MARGIN);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when shutdown begins, and its time is now")
            .unwrap();

        let endless = LiveCalls::new();
        let call = endless.enter();
        endless.shutting_down(Duration::MAX);
        assert!(
            !call.cut_by_shutdown(),
            "an endless grace period never runs out"
        );

        let patient = LiveCalls::new();
        patient.shutting_down(Duration::from_secs(3600));
        let waiting = tokio::spawn(patient.clone().streams_must_end());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "an hour of grace left");
        waiting.abort();
    }

    #[test]
    fn calls_are_cut_by_shutdown_only_once_its_grace_has_run_out() {
        let calls = LiveCalls::new();
        let call = calls.enter();
        assert!(!call.cut_by_shutdown(), "no shutdown yet");
        calls.shutting_down(Duration::from_secs(3600));
        assert!(!call.cut_by_shutdown(), "within the grace period");
        let other = LiveCalls::new();
        let late = other.enter();
        other.shutting_down(Duration::ZERO);
        assert!(late.cut_by_shutdown());
    }

    #[tokio::test]
    async fn a_grace_or_timeout_beyond_any_instant_means_never_instead_of_a_panic() {
        let calls = LiveCalls::new();
        let call = calls.enter();
        // server.shutdown_grace_seconds = u64::MAX, as a library user could pass it.
        calls.shutting_down(Duration::from_secs(u64::MAX));
        assert!(
            !call.cut_by_shutdown(),
            "a grace without end never runs out"
        );
        let waiter = tokio::spawn({
            let calls = calls.clone();
            async move { calls.wait_idle(Duration::MAX).await }
        });
        std::thread::spawn(move || drop(call)).join().unwrap();
        assert!(waiter.await.unwrap());
    }
}
