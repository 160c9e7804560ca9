//! The shared vocabulary of commander: the words every other crate speaks.
//!
//! This crate owns identifiers ([`SpecialistId`], [`RequestId`]), the [`Specialist`] persona and
//! the intrinsic rules that make one valid, chat messages and their [`Role`]s, token usage,
//! [`Completion`]s and [`StreamEvent`]s, money ([`Usd`]), caller identity ([`UserIdentity`] with
//! the SHA-256 [`EmailHash`] rule) and the closed set of [`ErrorCode`]s a failed chat call ends
//! with (stored in its usage row, and reported by the API).
//!
//! It must stay pure: no async runtime, no I/O (files, network, clock reads other than the
//! caller-supplied timestamps), no HTTP status codes and no database types. Everything above it
//! (`specialists`, `providers`, `pricing`, `ratelimit`, `usage-store`, `http-api`) depends on it;
//! it depends on none of them.
//!
//! # Using it alone
//!
//! Any Rust service that wants commander's rules for ids, identity, usage or money without the
//! rest can take just this crate. The workspace's crates are not published: depend on this one by path (or git), e.g.
//! `core-domain = { path = "../commander/crates/core-domain" }`.
//!
//! ```
//! use core_domain::{EmailHash, SpecialistId};
//!
//! let id = SpecialistId::parse("financial_analyst").unwrap();
//! assert_eq!(id.as_str(), "financial_analyst");
//! // Emails are hashed after trimming and lower-casing, so both spellings are one user.
//! assert_eq!(EmailHash::of_email(" Ada@Example.com "), EmailHash::of_email("ada@example.com"));
//! ```
#![warn(missing_docs)]

mod budget;
mod chat;
mod door;
mod error;
mod identity;
mod ids;
mod money;
mod net;
mod pricing;
mod provider;
mod specialist;
mod target;
mod text;
mod usage;
mod validation;

pub use budget::{
    Budget, BudgetDraft, BudgetId, BudgetPeriod, BudgetScope, MAX_BUDGET_USD, MAX_KEY_NAME_CHARS,
    PeriodWindow,
};
pub use chat::{
    ChatMessage, ChatOptions, ContentPart, ImageDetail, ImageSource, JsonSchemaFormat,
    ReasoningEffort, ResponseFormat, Role, ToolCall, ToolChoice, ToolDefinition,
};
pub use door::Door;
pub use error::{DomainError, ErrorCode};
pub use identity::{AccessRole, EmailHash, UserIdentity};
pub use ids::{RequestId, SpecialistId};
pub use money::Usd;
pub use net::{SpecialPurpose, is_internal_ip, special_purpose};
pub use pricing::{ModelPricing, PricingDraft};
pub use provider::ProviderKind;
pub use specialist::{
    DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, MAX_ALIAS_CHARS, MAX_ALIASES, MAX_DESCRIPTION_CHARS,
    MAX_EMBEDDING_DIMENSIONS, MAX_FALLBACKS, MAX_MAX_TOKENS, MAX_NAME_CHARS,
    MAX_SYSTEM_PROMPT_CHARS, NotAllowed, PromptRevision, Specialist, SpecialistDraft,
    SpecialistKind, SpecialistSpec, embedding_dimensions,
};
pub use target::{Target, TargetDraft};
pub use text::comparable_name;
pub use usage::{
    Completion, FinishReason, StreamEvent, TokenUsage, ToolCallDelta, estimate_prompt_tokens,
    estimate_text_tokens,
};
pub use validation::{FieldError, ValidationErrors};
