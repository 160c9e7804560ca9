//! Spend limits on chat calls: which budgets cover a call, and counting spend against them so
//! that the spent total never passes a limit, however many calls run at once.
//!
//! A call *reserves* its worst-case cost at admission against every budget that covers it
//! ([`Budgets::admit`]) and is refused if spent + reserved + its reservation would pass a limit;
//! when it ends, the reservation is replaced by what it actually cost ([`Budgets::settle`]). A
//! reservation carries a lease, so one held by a process that died expires instead of blocking
//! the budget. The counts live in a [`Ledger`]: [`LocalLedger`] in this process, or a shared one
//! (the HTTP layer's Redis ledger) so several instances share one budget. A count the ledger
//! does not hold yet (a start, a new period, a store that lost its data) is rebuilt from the
//! usage log through a [`SpendSource`] before anything is admitted against it.
//!
//! This crate owns the arithmetic and the rules. It must not know HTTP, Redis, the database or
//! prices: callers hand it amounts ([`core_domain::Usd`]) and implement the two traits.

mod clock;
mod ledger;
mod local;
mod service;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ledger::{
    Counter, Ledger, LedgerError, ReserveOutcome, SettleOutcome, SpendSource, Standing, conformance,
};
pub use local::LocalLedger;
pub use service::{
    Admission, BudgetEntry, BudgetView, Budgets, BudgetsConfig, CallScope, Exceeded, Managed,
    OnStoreError, Refusal, Reservation, SettledBudget,
};
