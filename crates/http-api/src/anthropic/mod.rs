//! The Anthropic Messages front door: `POST /v1/messages` and `POST /v1/messages/count_tokens`,
//! so Anthropic's SDKs and Claude Code (`ANTHROPIC_BASE_URL=http://host:8000`, the key a
//! commander key in `x-api-key` or `Authorization: Bearer`) can talk to a specialist by using
//! its id or one of its aliases as the model.
//!
//! A specialist on Anthropic receives the caller's request as it came (see
//! [`providers::AnthropicNative`]): what the gateway does not change — thinking blocks and their
//! signatures, `cache_control`, block types it does not know — reaches the upstream byte for
//! byte. A specialist on another provider gets the request translated into the chat model;
//! what cannot be translated is a 400 naming the field. `docs/DOORS.md` has the mapping table.

pub(crate) mod count_tokens;
mod error;
pub(crate) mod messages;
mod request;
mod stream;
pub(crate) mod wire;

pub(crate) use count_tokens::count_tokens;
pub(crate) use error::error_response;
pub(crate) use messages::messages;
