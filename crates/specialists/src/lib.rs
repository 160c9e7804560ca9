//! The specialist catalogue: which AI personas exist and how they are kept.
//!
//! This crate owns the deployment-dependent rules on top of core-domain's intrinsic ones (which
//! base URLs the server may be pointed at, names unique after Unicode NFKC and case folding,
//! ids ignoring case), the in-memory
//! [`Catalogue`] that chat calls read, and the JSON file it is loaded from and written to
//! atomically. The file format is the original service's: `{"specialists": [ ... ]}`.
//!
//! It must not depend on HTTP, providers, pricing or the database: it answers "which specialist
//! is this" and nothing about calling one.
//!
//! ```
//! use core_domain::SpecialistId;
//! use specialists::{BaseUrlPolicy, parse_catalogue, DEFAULT_CATALOGUE_JSON};
//!
//! let list = parse_catalogue(DEFAULT_CATALOGUE_JSON, &BaseUrlPolicy::default(), chrono::Utc::now())
//!     .unwrap();
//! let demo = list.iter().find(|s| s.id().as_str() == "demo").unwrap();
//! assert_eq!(demo.provider().as_str(), "mock");
//! ```
#![warn(missing_docs)]

mod catalogue;
mod edit;
mod error;
mod file_store;
mod health;
mod policy;

pub use catalogue::{Catalogue, DEFAULT_MAX_PROMPT_HISTORY, Reload, parse_catalogue};
pub use error::CatalogueError;
pub use file_store::{CatalogueFile, DEFAULT_CATALOGUE_JSON};
pub use health::{FileHealth, HealthChange};
pub use policy::BaseUrlPolicy;
