//! The chat flow shared by every chat route: validate the request, find the specialist and its
//! provider, call it, price it, and record exactly one usage row whatever happens.

mod input;
mod recorder;
pub(crate) mod send;

pub(crate) use input::ChatRequestBody;
pub(crate) use recorder::{CallRecorder, consumed_on_failure};
