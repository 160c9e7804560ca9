//! A deadline on reading the request body, for every extractor of every route.
//!
//! actix-web bounds the time to receive a request's head, not its body: a client trickling
//! one byte every few seconds would hold its connection, and the handler waiting on it, for
//! as long as it liked.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// The request body, failing with a timeout once `deadline` passes while more is awaited.
pub(crate) struct DeadlinePayload {
    /// `None` once the deadline passed: the body then sits in `state.unread`.
    inner: Option<Payload>,
    deadline: Instant,
    /// Made only when the body is not already there, so a fast client costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    state: Rc<Deadline>,
}

/// What the middleware learns from the payload once the handler is done with it.
#[derive(Default)]
pub(crate) struct Deadline {
    expired: Cell<bool>,
    /// The body a client was too slow to send, kept from being dropped (see
    /// [`AbandonedBody`]).
    unread: RefCell<Option<Payload>>,
}

impl Deadline {
    /// True when the deadline passed before the body was read.
    pub(crate) fn expired(&self) -> bool {
        self.expired.get()
    }

    /// The body the client was too slow to send, if the deadline passed.
    pub(crate) fn take_unread(&self) -> Option<Payload> {
        self.unread.borrow_mut().take()
    }
}

impl DeadlinePayload {
    /// `inner` with `deadline`, and what the middleware reads afterwards.
    pub(crate) fn new(inner: Payload, deadline: Instant) -> (Self, Rc<Deadline>) {
        let state = Rc::new(Deadline::default());
        (
            Self {
                inner: Some(inner),
                deadline,
                timer: None,
                state: Rc::clone(&state),
            },
            state,
        )
    }
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(item) = Pin::new(inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.state.expired.set(true);
                *this.state.unread.borrow_mut() = this.inner.take();
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Per connection: the body of a request whose deadline passed, held until the connection
/// closes. actix-http drains a chunked body whose reader was dropped, for as long as the client
/// keeps trickling it, before it would close the connection; while the reader is alive it
/// instead closes the connection after the 408.
#[derive(Default)]
pub(crate) struct AbandonedBody(RefCell<Option<Payload>>);

impl AbandonedBody {
    pub(crate) fn keep(&self, payload: Payload) {
        *self.0.borrow_mut() = Some(payload);
    }
}
