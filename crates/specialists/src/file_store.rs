use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use core_domain::Specialist;
use serde::Serialize;

use crate::CatalogueError;

/// The catalogue commander ships with: the original service's four specialists and `demo` on
/// the mock provider. Written to the catalogue path on first start when no file exists.
pub const DEFAULT_CATALOGUE_JSON: &str = include_str!("../../../config/specialists.json");

/// The JSON file a catalogue lives in.
#[derive(Debug, Clone)]
pub struct CatalogueFile {
    path: PathBuf,
}

#[derive(Serialize)]
struct FileFormat<'a> {
    specialists: Vec<&'a Specialist>,
}

/// `specialists` in the catalogue file's format (`{"specialists": [...]}`, pretty, with a final
/// newline): what a file is written with and what `commander specialists export` prints.
pub fn catalogue_json(specialists: &[Arc<Specialist>]) -> Result<String, CatalogueError> {
    let specialists = specialists.iter().map(Arc::as_ref).collect();
    let mut text = serde_json::to_string_pretty(&FileFormat { specialists })?;
    text.push('\n');
    Ok(text)
}

impl CatalogueFile {
    /// The file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text, or `None` when there is no file.
    pub fn read(&self) -> Result<Option<String>, CatalogueError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.io_error("read", source)),
        }
    }

    /// Replaces the file's content with `specialists`, atomically: readers (and a crash) see the
    /// old file or the new one, never a mix. Returns the text written.
    pub fn write(&self, specialists: &[Arc<Specialist>]) -> Result<String, CatalogueError> {
        let text = catalogue_json(specialists)?;
        self.write_text(&text)?;
        Ok(text)
    }

    /// Writes `text` with the same atomic guarantee: a temporary file in the same directory,
    /// flushed to disk, renamed over the old one, and the directory flushed so the rename
    /// survives a power cut.
    pub(crate) fn write_text(&self, text: &str) -> Result<(), CatalogueError> {
        let dir = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&dir)?;
            let mut tmp = tempfile::Builder::new()
                .prefix(".specialists-")
                .suffix(".tmp")
                .tempfile_in(&dir)?;
            tmp.write_all(text.as_bytes())?;
            tmp.as_file().sync_all()?;
            tmp.persist(&self.path).map_err(|e| e.error)?;
            fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|source| self.io_error("write", source))
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> CatalogueError {
        CatalogueError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}
