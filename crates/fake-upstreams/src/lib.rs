//! Fake upstream LLM servers for tests and benchmarks: OpenAI Chat Completions, Anthropic
//! Messages and Google Gemini, each speaking its real wire format (JSON and SSE) on a real
//! socket on 127.0.0.1, and the embedding endpoints of OpenAI (`/v1/embeddings`) and Gemini
//! (`:embedContent`, `:batchEmbedContents`), whose vectors are [`embedding_of`] each input.
//!
//! Every fake answers from a script: queue [`Reply`]s with [`FakeUpstream::push`] (one is used
//! per request, in order) or set the one used when the queue is empty. A reply can be a whole
//! answer (text, usage, chunking, delays, finish reason), an HTTP error (with `Retry-After`),
//! malformed JSON, or a stream that drops its connection, stalls, or sends an error event part
//! way — or something hostile: an endless body or event ([`Reply::oversized`]), a 401 quoting
//! the key back upper-cased ([`Reply::echo_key_upper_cased`]), absurd `Retry-After` values
//! ([`Reply::retry_after`] takes any text). Every request is recorded (method, path, headers,
//! JSON body) so tests can check exactly what was sent, and closed streams are counted so tests
//! can see a cancelled call reach the upstream. A test that cares how many calls arrive says so
//! with [`FakeUpstream::expect_calls`], checked when the fake is dropped.
//!
//! ```
//! use fake_upstreams::{FakeUpstream, Reply, Wire};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fake = FakeUpstream::start(Wire::OpenAi).await;
//! fake.push(Reply::status(429, "slow down"));
//! fake.expect_calls(0);
//! // Point the client under test at `fake.base_url()`, call it, then check `fake.requests()`.
//! assert!(fake.base_url().starts_with("http://127.0.0.1:"));
//! # }
//! ```
//!
//! This crate depends on no commander crate: it knows only the wire formats. The standalone
//! load-test server `bins/fake-upstream` is a thin binary over it.
#![warn(missing_docs)]

pub mod conversational;
mod embedding;
mod render;
mod reply;
mod server;

pub use embedding::{FAKE_EMBEDDING_DIMENSIONS, embedding_of};
pub use reply::{FakeToolCall, Finish, Reply};
pub use server::{FakeUpstream, RecordedRequest, Wire};
