//! The chat flow shared by every chat route: validate the request, find the specialist and its
//! provider, call it, price it, and record exactly one usage row whatever happens.

mod flow;
mod input;
mod recorder;
pub(crate) mod relay;
pub(crate) mod send;
pub(crate) mod stream;

pub(crate) use flow::{PreparedCall, prepare, prepare_for};
pub(crate) use input::ChatRequestBody;
pub(crate) use recorder::CallRecorder;
