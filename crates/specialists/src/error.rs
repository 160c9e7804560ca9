use std::path::PathBuf;

use core_domain::ValidationErrors;

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
    /// The file parsed, but specialists in it break rules; every problem is listed.
    #[error("specialist catalogue has invalid entries: {0}")]
    Invalid(ValidationErrors),
}
