//! The specialist catalogue: which AI personas exist and how they are kept.
//!
//! This crate owns the deployment-dependent rules on top of core-domain's intrinsic ones (which
//! base URLs the server may be pointed at, names unique after Unicode NFKC and case folding,
//! ids ignoring case), the in-memory
//! [`Catalogue`] that chat calls read, what a change sent by a caller means (a
//! [`SpecialistPatch`]: merged for a PATCH; required fields and defaults for a create or a
//! PUT), and the JSON file it is loaded from and written to atomically. The file format is
//! the original service's: `{"specialists": [ ... ]}`.
//!
//! Several servers can share one catalogue kept in a database instead: [`Catalogue::open_store`]
//! over a [`CatalogueStore`] (the contract is here; the database is not), which enforces each
//! change's expected version and the unique ids and names, and whose revision the reload poll
//! reads.
//!
//! It must not depend on HTTP, providers, pricing or the database: it answers "which specialist
//! is this" and nothing about calling one.
//!
//! # Using it alone
//!
//! A service that keeps its own list of personas can load commander's catalogue file with
//! [`Catalogue::open`] (kept on disk, reloaded with [`Catalogue::reload_if_changed`]) or hold
//! one in memory with [`Catalogue::in_memory`], and look specialists up by id. The workspace's crates are not published: depend on this one by path (or git), e.g.
//! `specialists = { path = "../commander/crates/specialists" }`.
//!
//! ```
//! use core_domain::SpecialistId;
//! use specialists::{BaseUrlPolicy, Catalogue, parse_catalogue, DEFAULT_CATALOGUE_JSON};
//!
//! let policy = BaseUrlPolicy::default();
//! let list = parse_catalogue(DEFAULT_CATALOGUE_JSON, &policy, chrono::Utc::now()).unwrap();
//! let list_len = list.len();
//! let catalogue = Catalogue::in_memory(list, policy);
//! let demo = catalogue.get(&SpecialistId::parse("demo").unwrap()).unwrap();
//! assert_eq!(demo.provider().as_str(), "mock");
//! assert_eq!(catalogue.len(), list_len);
//! ```
#![warn(missing_docs)]

mod catalogue;
mod edit;
mod error;
mod file_format;
mod file_store;
mod health;
mod patch;
mod policy;
mod store;

pub use catalogue::{Catalogue, DEFAULT_MAX_PROMPT_HISTORY, ImportCounts, Reload, parse_catalogue};
pub use error::CatalogueError;
pub use file_format::SpecialistRecord;
pub use file_store::{CatalogueFile, DEFAULT_CATALOGUE_JSON, catalogue_json};
pub use health::{FileHealth, HealthChange};
pub use patch::{Clearable, REQUIRED_FIELDS, SpecialistPatch};
pub use policy::BaseUrlPolicy;
pub use store::{CatalogueStore, StoreChange, StoreContents, StoreRevision, StoredSpecialist};
