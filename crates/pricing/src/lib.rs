//! Model prices and cost estimates.
//!
//! This crate owns the built-in price table (USD per million input and output tokens for the
//! models commander ships with), overrides from configuration, and the precedence rule for the
//! cost of one call: a specialist's own pricing, else the table (overrides first), else zero
//! reported as unpriced. Costs are exact integer nano-dollars ([`Usd`](core_domain::Usd)).
//!
//! It must not depend on anything but `core-domain`: no I/O, no HTTP, no database.
//!
//! # Using it alone
//!
//! To price LLM calls in another service, build a [`PriceTable`] (the built-in one, or
//! [`PriceTable::with_overrides`] with your own prices) and ask it for an estimate per call.
//! The workspace's crates are not published: depend on this one by path (or git), e.g.
//! `pricing = { path = "../commander/crates/pricing" }`.
//!
//! ```
//! use core_domain::TokenUsage;
//! use pricing::{PriceSource, PriceTable};
//!
//! let table = PriceTable::builtin();
//! // gpt-4o: $2.50 per 1M input tokens, $10 per 1M output tokens.
//! let estimate = table.estimate(None, "gpt-4o", &TokenUsage::reported(1_000_000, 100_000));
//! assert_eq!(estimate.cost.as_dollars(), 3.5);
//! assert_eq!(estimate.source, PriceSource::Table);
//!
//! // Dated snapshots are priced as their model.
//! let snapshot = table.estimate(None, "gpt-4o-2024-08-06", &TokenUsage::reported(1_000_000, 0));
//! assert_eq!(snapshot.cost.as_dollars(), 2.5);
//!
//! let unknown = table.estimate(None, "my-own-model", &TokenUsage::reported(10, 10));
//! assert!(!unknown.pricing_known);
//! ```
#![warn(missing_docs)]

mod table;

pub use table::{CostEstimate, Price, PriceSource, PriceTable};
