//! The request body at the door: a deadline on reading it, for every extractor of every route,
//! and a close for any connection whose body was not received to the end — read or not.
//!
//! actix-web bounds the time to receive a request's head, not its body: a client trickling
//! one byte every few seconds would hold its connection, and the handler waiting on it, for
//! as long as it liked. And when a chunked body's reader is dropped before the body ended
//! (a refusal, a 401, a 404, `GET /health`: anything that never reads it), actix-http drains
//! it, with no timer, for as long as the client keeps trickling. While the reader is alive it
//! instead closes the connection after the response; so an unfinished body is kept alive
//! with its connection ([`AbandonedBody`]) and the connection is closed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};

/// The body as the handler sees it: the client's, failing with a timeout once the deadline
/// passes while more is awaited.
pub(crate) struct DeadlinePayload {
    body: Rc<Body>,
    /// `None`: no deadline (a timeout beyond any representable instant).
    deadline: Option<Instant>,
    /// Made only when the body is not already there, so a fast client costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The client's body, shared by the handler's reader and the middleware's [`BodyWatch`], so
/// it outlives a reader the handler dropped.
#[derive(Default)]
struct Body {
    /// `None` once it was read to the end.
    unread: RefCell<Option<Payload>>,
    expired: Cell<bool>,
}

/// What became of the body by the time the response was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyOutcome {
    /// Received to the end (read or not): the connection may be kept.
    Complete,
    /// Still arriving: the connection must close, or actix-http would drain it untimed.
    Unfinished,
    /// The deadline passed while the handler waited on it: 408, connection closed.
    Expired,
}

/// The middleware's hold on the body. Dropped (response sent, error or panic unwound), it
/// leaves a body that did not end with the connection's [`AbandonedBody`].
pub(crate) struct BodyWatch {
    body: Rc<Body>,
    keeper: Option<AbandonedBody>,
}

/// `now + timeout`, or `None` (no deadline) when that is past any instant the clock can name.
pub(crate) fn deadline_after(now: Instant, timeout: Duration) -> Option<Instant> {
    now.checked_add(timeout)
}

impl BodyWatch {
    /// Puts `payload` behind a reader with `deadline`; `keeper` is the connection's holder.
    pub(crate) fn new(
        payload: Payload,
        deadline: Option<Instant>,
        keeper: Option<AbandonedBody>,
    ) -> (Self, DeadlinePayload) {
        let body = Rc::new(Body {
            unread: RefCell::new(Some(payload)),
            expired: Cell::new(false),
        });
        (
            Self {
                body: Rc::clone(&body),
                keeper,
            },
            DeadlinePayload {
                body,
                deadline,
                timer: None,
            },
        )
    }

    /// What became of the body. Takes what already arrived without waiting for more: a body
    /// that is all there, unread, is complete (as actix-http itself counts it).
    pub(crate) fn outcome(&self) -> BodyOutcome {
        if self.body.expired.get() {
            return BodyOutcome::Expired;
        }
        let mut unread = self.body.unread.borrow_mut();
        let Some(payload) = unread.as_mut() else {
            return BodyOutcome::Complete;
        };
        // Bounded: nothing new arrives while this runs, and actix-http stops buffering a body
        // nobody reads at a fixed size.
        loop {
            match payload.next().now_or_never() {
                Some(Some(Ok(_))) => {}
                Some(None) => {
                    *unread = None;
                    return BodyOutcome::Complete;
                }
                Some(Some(Err(_))) | None => return BodyOutcome::Unfinished,
            }
        }
    }
}

impl Drop for BodyWatch {
    fn drop(&mut self) {
        if let Some(unread) = self.body.unread.borrow_mut().take()
            && let Some(keeper) = &self.keeper
        {
            keeper.keep(unread);
        }
    }
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.body.expired.get() {
            return Poll::Ready(None);
        }
        {
            let mut unread = this.body.unread.borrow_mut();
            let Some(payload) = unread.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(payload).poll_next(cx) {
                Poll::Ready(None) => {
                    *unread = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(item) => return Poll::Ready(item),
                Poll::Pending => {}
            }
        }
        let Some(deadline) = this.deadline else {
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.body.expired.set(true);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Per connection: a request body that did not end before its response, held until the
/// connection closes so actix-http closes it rather than drain the body untimed.
#[derive(Default, Clone)]
pub(crate) struct AbandonedBody(Rc<RefCell<Option<Payload>>>);

impl AbandonedBody {
    fn keep(&self, payload: Payload) {
        *self.0.borrow_mut() = Some(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_past_any_instant_means_no_deadline() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), None);
        assert_eq!(
            deadline_after(now, Duration::from_millis(5)),
            Some(now + Duration::from_millis(5))
        );
    }
}
