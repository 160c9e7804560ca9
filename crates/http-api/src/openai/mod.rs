//! The OpenAI-compatible front door: `/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`
//! (embedding specialists) and `/v1/models`, so any OpenAI
//! SDK (base URL `http://host:8000/v1`, API key = a commander key or token) can talk to a
//! specialist by using its id as the model.

pub(crate) mod completions;
pub(crate) mod embeddings;
mod error;
pub(crate) mod models;
mod request;
pub(crate) mod responses;
mod responses_request;
pub(crate) mod responses_wire;
pub(crate) mod wire;

pub(crate) use completions::completions;
pub(crate) use embeddings::embeddings;
pub(crate) use error::{error_body, error_response};
pub(crate) use models::{get_model, list_models};
pub(crate) use responses::responses;
