//! The dead-letter file: where records the database refuses for their data (after isolation
//! and repair, see [`UsageStore::insert_isolating`](crate::UsageStore::insert_isolating)) are
//! kept, so ops can read, fix and replay them by hand instead of losing them.
//!
//! One JSON object per line, `{"reason":"...","record":{...}}`, each append flushed to disk
//! before it returns. Unlike the spill file nothing replays it automatically: its records were
//! refused once and would be refused again.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Rejected, StoreError};

/// The dead-letter file (cheap to clone; clones share one lock, so appends never interleave).
#[derive(Debug, Clone)]
pub struct DeadLetters {
    path: Arc<PathBuf>,
    lock: Arc<Mutex<()>>,
}

impl DeadLetters {
    /// The dead-letter file at `path`; nothing is created until the first append.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::new(path.into()),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line per rejected record and syncs the file to disk, then logs each record
    /// at ERROR (request id, reason, file), so a dead-lettered row is never silent. On `Err`
    /// nothing was logged and the records may not be on disk: they are still the caller's.
    pub fn append(&self, rejected: &[Rejected]) -> Result<(), StoreError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for entry in rejected {
            let line = serde_json::to_string(entry).map_err(|e| self.failure(e))?;
            text.push_str(&line);
            text.push('\n');
        }
        {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(dir) = self.path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| self.failure(e))?;
            }
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*self.path)
                .map_err(|e| self.failure(e))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(|e| self.failure(e))?;
        }
        for entry in rejected {
            tracing::error!(
                request_id = %entry.record.request_id.as_str(),
                reason = %entry.reason,
                dead_letter_file = %self.path.display(),
                "usage row refused by the database; moved to the dead-letter file"
            );
        }
        Ok(())
    }

    /// Every record in the file, oldest first (none when the file does not exist). For ops
    /// tools and tests; the writer never reads it.
    pub fn read_all(&self) -> Result<Vec<Rejected>, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let file = match std::fs::File::open(&*self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failure(e)),
        };
        let mut entries = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| self.failure(e))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry = serde_json::from_str(&line).map_err(|e| {
                StoreError::Corrupt(format!(
                    "unreadable line in the dead-letter file {}: {e}",
                    self.path.display()
                ))
            })?;
            entries.push(entry);
        }
        Ok(entries)
    }

    fn failure(&self, cause: impl std::fmt::Display) -> StoreError {
        StoreError::DeadLetter {
            path: self.path.display().to_string(),
            cause: cause.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::usage_record;

    fn rejected(request_id: &str, reason: &str) -> Rejected {
        Rejected {
            reason: reason.into(),
            record: crate::UsageRecord {
                specialist_name: "Nul\u{0}Name".into(),
                ..usage_record(request_id)
            },
        }
    }

    #[test]
    fn appended_records_are_one_json_line_each_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let letters = DeadLetters::new(dir.path().join("nested/dead.jsonl"));
        assert_eq!(letters.read_all().unwrap(), Vec::new());
        let first = [rejected("r1", "too long")];
        // A dead-lettered call of several attempts keeps them.
        let fell_back = Rejected {
            reason: "refused".into(),
            record: crate::fixture::fallback_record("r3"),
        };
        let second = [rejected("r2", "refused"), fell_back];
        letters.append(&first).unwrap();
        letters.append(&[]).unwrap();
        letters.append(&second).unwrap();

        let text = std::fs::read_to_string(letters.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["reason"], "too long");
        assert_eq!(line["record"]["request_id"], "r1");
        assert_eq!(line["record"]["specialist_name"], "Nul\u{0}Name");

        let line: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(
            line["record"]["attempt_details"].as_array().map(Vec::len),
            Some(3)
        );

        let all: Vec<Rejected> = first.into_iter().chain(second).collect();
        assert_eq!(letters.read_all().unwrap(), all);
    }

    #[test]
    fn an_unwritable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // The path is a directory, so it cannot be opened for appending.
        let letters = DeadLetters::new(dir.path());
        let err = letters.append(&[rejected("r1", "refused")]).unwrap_err();
        assert!(
            matches!(&err, StoreError::DeadLetter { path, .. } if path == &dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_line_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let letters = DeadLetters::new(dir.path().join("dead.jsonl"));
        letters.append(&[rejected("r1", "refused")]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(letters.path())
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        assert!(matches!(letters.read_all(), Err(StoreError::Corrupt(_))));
    }
}
