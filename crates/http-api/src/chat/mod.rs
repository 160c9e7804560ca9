//! The one call path shared by every chat route: find the specialist and its provider, call it,
//! price it, and record exactly one usage row whatever happens.
//!
//! - `call`: [`prepare_with`] (by way of `prepare_for` for an id) makes a `PreparedCall`, whose `complete()` and `stream()` make the
//!   call and own all of its recording; a route only maps its wire format.
//! - `relay`: carries a stream to the client in the route's `StreamFormat`.
//! - `embed`: the embedding call (`/v1/embeddings`) over the same admission, budgets,
//!   attempts and recorder.
//! - `recorder`: the one usage row, its price and metrics, however the call ends.
//! - `input`: validation of the `/chat/*` body.

mod build;
mod call;
mod embed;
mod input;
mod problems;
mod recorder;
pub(crate) mod relay;
pub(crate) mod send;
pub(crate) mod stream;

pub(crate) use build::{effective_limits, provider_request};
pub(crate) use call::{chat_only, prepare, prepare_with, resolve_model};
pub(crate) use embed::prepare_embedding;
pub(crate) use input::ChatRequestBody;
pub(crate) use problems::Problems;
pub(crate) use recorder::CallRecorder;
