//! A deadline on reading the request body, for every extractor of every route.
//!
//! actix-web bounds the time to receive a request's head, not its body: a client trickling
//! one byte every few seconds would hold its connection, and the handler waiting on it, for
//! as long as it liked.

use std::cell::Cell;
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
    inner: Payload,
    deadline: Instant,
    /// Made only when the body is not already there, so a fast client costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    expired: Rc<Cell<bool>>,
}

impl DeadlinePayload {
    /// `inner` with `deadline`, and the flag that says whether it expired.
    pub(crate) fn new(inner: Payload, deadline: Instant) -> (Self, Rc<Cell<bool>>) {
        let expired = Rc::new(Cell::new(false));
        (
            Self {
                inner,
                deadline,
                timer: None,
                expired: Rc::clone(&expired),
            },
            expired,
        )
    }
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired.set(true);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
