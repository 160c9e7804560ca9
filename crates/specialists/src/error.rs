use std::path::PathBuf;

use core_domain::{SpecialistId, ValidationErrors};

/// What can go wrong loading or saving the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The file could not be read or written.
    #[error("cannot {action} specialist catalogue {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The catalogue file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not the JSON shape `{"specialists": [...]}`.
    #[error("specialist catalogue is not valid JSON of the form {{\"specialists\": [...]}}: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The file (or a change) breaks rules; every problem is listed.
    #[error("invalid specialist: {0}")]
    Invalid(ValidationErrors),
    /// No specialist has this id.
    #[error("no specialist with id '{0}'")]
    NotFound(SpecialistId),
    /// A specialist with this id (or one differing only in case) exists already.
    #[error("a specialist with id '{0}' exists already (ids are case-insensitive)")]
    AlreadyExists(SpecialistId),
    /// Someone edited the catalogue file and it no longer parses: a change now would
    /// overwrite their edit, so it is refused until the file is fixed.
    #[error(
        "the specialist catalogue {path} was edited on disk and is invalid ({reason}); fix or \
         restore the file, then apply the change again"
    )]
    EditedFileInvalid {
        /// The catalogue file.
        path: PathBuf,
        /// Why it does not parse.
        reason: String,
    },
    /// The change was based on an older version.
    #[error(
        "specialist '{id}' is at version {current}, not {expected}: reload it and apply the change again"
    )]
    VersionConflict {
        /// The specialist.
        id: SpecialistId,
        /// Its version now.
        current: u32,
        /// The version the change was based on.
        expected: u32,
    },
    /// The catalogue's database store failed (unreachable, or a query failed).
    #[error("the specialist catalogue store failed: {0}")]
    Store(String),
}
