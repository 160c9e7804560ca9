//! The commander binary's library half: typed settings, and the wiring that turns them into a
//! running [`Application`].
//!
//! `main.rs` only parses the command line, sets up logging and calls into here; the end-to-end
//! tests call the same [`Application::build`] with port 0 and a temporary database, so the
//! server under test is the real one.
#![warn(missing_docs)]

mod application;
pub mod bounds;
mod budget_store;
mod catalogue_store;
pub mod check;
mod report;
mod settings;
mod telemetry;
mod validate;

pub use application::{Application, StartupError};
pub use budget_store::{StoreSpend, budget_report};
pub use catalogue_store::{DatabaseCatalogue, export_specialists, import_specialists};
pub use report::{
    ReportFormat, render as render_report, render_budgets, render_call, render_targets,
};
pub use settings::{
    CatalogueStoreKind, LogFormat, LogSettings, Settings, SpecialistsSettings, load_settings,
};
pub use telemetry::init_logging;
pub use validate::{Problem, Validated};
