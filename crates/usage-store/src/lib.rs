//! The usage log: one row per chat call, in SQLite or PostgreSQL, kept through crashes and
//! outages without ever making a caller wait for the database.
//!
//! This crate owns the `usage_logs` table (its diesel schema and the embedded migrations for
//! both backends under `migrations/`), the connection pool ([`UsageStore`], backend chosen by the
//! URL), the journal in front of it (a directory of append-only segments: a call's
//! [`CallStart`] before it is made, its row before it is answered; a crash leaves every answered
//! row, and the calls it cut are recorded as `interrupted` at the next start), and the
//! background writer ([`spawn_writer`]) that applies the journal to the database in batches, one
//! transaction each, on blocking threads, checkpointing as it goes.
//!
//! It also keeps the specialist catalogue's tables for `specialists.store = "database"`
//! ([`UsageStore::catalogue_apply`] and its neighbours): rows of JSON with the keys the database
//! keeps unique, version-conditional writes, and a revision counter servers poll; on PostgreSQL
//! every change is also announced (`NOTIFY commander_catalogue`) and
//! [`UsageStore::listen_catalogue`] hears it at once.
//!
//! For budgets it sums what was spent over a window, exactly to the nano-dollar, for everyone
//! or one specialist, user or API key ([`UsageStore::spent`], served by an index each), and
//! keeps the budgets managed over HTTP ([`UsageStore::budget_definitions`] and its
//! neighbours): their JSON under an id and a version, a revision counter bumped by every
//! change, and on PostgreSQL a `NOTIFY commander_budgets`.
//!
//! For a console it answers, in SQL on either backend: [`UsageStore::totals`] and
//! [`UsageStore::series`] (hour or day buckets, split by a [`GroupBy`]) with the same numbers as
//! [`UsageStore::summary`], nearest-rank median and 95th percentile included;
//! [`UsageStore::list_calls`], the calls newest first, filtered and paged by a [`CallCursor`];
//! and [`UsageStore::call_filter_values`], the values those filters can take.
//!
//! A batch the database refuses for its data rather than for being away does not stop the log:
//! [`UsageStore::insert_isolating`] finds the records that fail alone, stores them
//! [`repair`]ed where escaping their control characters is enough, and hands back the rest for
//! the [`DeadLetters`] file. [`UsageStore::check_sound`] notices a SQLite file deleted or
//! replaced under the running store, which would otherwise swallow every later row silently.
//!
//! It is the only crate that knows diesel. It must not depend on HTTP, providers or pricing: it
//! is handed finished [`UsageRecord`]s.
//!
//! # Using it alone
//!
//! Any service that makes LLM calls can keep the same usage log: [`UsageStore::connect`] opens
//! the database and applies the migrations, [`spawn_writer`] starts the background writer on a
//! Tokio runtime, [`UsageSink::record`] queues a row without waiting, and
//! [`UsageStore::summary`] reports on them. The runnable example does all four in a temporary
//! directory: `cargo run -p usage-store --example record_and_report`. The workspace's crates are not published: depend on this one by path (or git), e.g.
//! `usage-store = { path = "../commander/crates/usage-store" }`.
//!
//! ```
//! use usage_store::{DatabaseConfig, UsageStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let config = DatabaseConfig {
//!     url: format!("sqlite://{}", dir.path().join("usage.db").display()),
//!     ..DatabaseConfig::default()
//! };
//! let store = UsageStore::connect(&config).unwrap(); // migrations applied
//! assert_eq!(store.count_rows().unwrap(), 0);
//! ```
#![warn(missing_docs)]

mod budget_defs;
mod call_list;
mod catalogue;
mod config;
mod dead_letter;
mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixture;
mod isolate;
mod journal;
mod listen;
mod record;
mod report;
mod rollup;
mod schema;
mod spend;
mod store;
#[cfg(test)]
mod test_database;
mod writer;

pub use budget_defs::{BUDGETS_CHANNEL, StoredBudget};
pub use call_list::{
    CALL_PAGE_MAX, CallCursor, CallFilter, CallFilterValues, CallListQuery, CallListRow, CallPage,
    FILTER_VALUES_MAX,
};
pub use catalogue::{CatalogueRefusal, CatalogueRow, CatalogueWrite};
pub use config::{DatabaseConfig, Durability, JournalSync};
pub use dead_letter::DeadLetters;
pub use error::StoreError;
pub use isolate::{Isolated, Rejected, repair};
pub use journal::{CallStart, Rates};
pub use listen::CatalogueListener;
pub use record::{
    API_KEY_MAX_CHARS, AttemptRecord, END_USER_MAX_CHARS, StoredCall, StoredUsage, UsageRecord,
};
pub use report::{
    Bucket, DEFAULT_RANGE_DAYS, GroupBy, Overview, OverviewQuery, RangeEnd, Scope, SeriesQuery,
    SeriesRow, Summary, SummaryQuery, SummaryRow, TargetQuery, TargetReport, TargetRow, Totals,
    TotalsQuery, default_range_start, parse_range_bound,
};
pub use rollup::Percentiles;
pub use spend::SpendFilter;
pub use store::{Backend, UsageStore};
pub use writer::{
    CallTicket, Durable, UsageHealth, UsageSink, UsageWriter, WriterStats, spawn_writer,
};
