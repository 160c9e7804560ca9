//! The spill file: where usage records go when they cannot reach the database in time (the
//! queue is full, or the process is stopping while the database is down), and where they are
//! replayed from once it answers again.
//!
//! One JSON record per line, each append flushed to disk before it counts. Replay inserts the
//! lines (rows are keyed by request id, so a replay interrupted half way and run again stores
//! each record once) and only then empties the file. A line that no longer parses is moved to
//! `<spill>.corrupt` rather than dropped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::{StoreError, UsageRecord, UsageStore};

/// The spill file, shared by the writer and the request path (appends are serialised).
#[derive(Debug, Clone)]
pub(crate) struct Spill {
    path: Arc<PathBuf>,
    // Serialises appends and replays: a replay never reads a half-written line.
    lock: Arc<Mutex<()>>,
}

impl Spill {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::new(path.into()),
            lock: Arc::new(Mutex::new(())),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` and flushes them to disk.
    pub(crate) fn append(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for record in records {
            let line = serde_json::to_string(record)
                .map_err(|e| StoreError::Corrupt(format!("cannot encode a usage record: {e}")))?;
            text.push_str(&line);
            text.push('\n');
        }
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    /// True when the file holds records.
    pub(crate) fn has_records(&self) -> bool {
        std::fs::metadata(&*self.path).is_ok_and(|m| m.len() > 0)
    }

    /// Inserts every spilled record into `store` in batches of `batch_size`, then empties the
    /// file. Returns how many records were newly stored: a line already in the database (a
    /// replay cut short after its insert, then run again) is skipped and not counted twice. On
    /// a database error the file is left as it was, to be replayed later.
    pub(crate) fn replay(&self, store: &UsageStore, batch_size: usize) -> Result<u64, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = match OpenOptions::new().read(true).write(true).open(&*self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        // Read and insert a batch at a time, so a large spill never sits in memory whole.
        let batch_size = batch_size.max(1);
        let mut batch = Vec::with_capacity(batch_size);
        let mut corrupt = Vec::new();
        let mut replayed: u64 = 0;
        for line in BufReader::new(&file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<UsageRecord>(&line) {
                Ok(record) => batch.push(record),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable line in the usage spill file; moved aside");
                    corrupt.push(line);
                }
            }
            if batch.len() == batch_size {
                replayed += store.insert_batch(&batch)? as u64;
                batch.clear();
            }
        }
        replayed += store.insert_batch(&batch)? as u64;
        if !corrupt.is_empty() {
            let mut aside = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.corrupt_path())?;
            for line in &corrupt {
                writeln!(aside, "{line}")?;
            }
            aside.sync_data()?;
        }
        empty(&mut file)?;
        Ok(replayed)
    }

    fn corrupt_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".corrupt");
        PathBuf::from(name)
    }
}

fn empty(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatabaseConfig;

    fn record(i: usize) -> UsageRecord {
        crate::fixture::usage_record(&format!("spill-{i}"))
    }

    fn sqlite_store(dir: &tempfile::TempDir) -> UsageStore {
        UsageStore::connect(&DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("u.db").display()),
            ..DatabaseConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn replay_inserts_once_even_when_run_twice_and_empties_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let spill = Spill::new(dir.path().join("spill/usage.jsonl"));
        let records: Vec<UsageRecord> = (0..7).map(record).collect();
        spill.append(&records[..3]).unwrap();
        spill.append(&records[3..]).unwrap();
        assert!(spill.has_records());

        // A crash after inserting but before emptying: the same lines are replayed again.
        let copy = std::fs::read(spill.path()).unwrap();
        assert_eq!(spill.replay(&store, 2).unwrap(), 7);
        std::fs::write(spill.path(), copy).unwrap();
        assert_eq!(
            spill.replay(&store, 2).unwrap(),
            0,
            "nothing new: the replayed count is not inflated"
        );
        assert_eq!(store.count_rows().unwrap(), 7);
        assert!(!spill.has_records());
        assert_eq!(spill.replay(&store, 2).unwrap(), 0);
    }

    #[test]
    fn corrupt_lines_are_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let spill = Spill::new(dir.path().join("usage.jsonl"));
        spill.append(&[record(1)]).unwrap();
        let mut file = OpenOptions::new().append(true).open(spill.path()).unwrap();
        writeln!(file, "{{\"request_id\": \"half a line").unwrap();
        spill.append(&[record(2)]).unwrap();
        assert_eq!(spill.replay(&store, 10).unwrap(), 2);
        let aside = std::fs::read_to_string(spill.corrupt_path()).unwrap();
        assert!(aside.contains("half a line"));
        assert_eq!(store.count_rows().unwrap(), 2);
    }

    #[test]
    fn a_line_spilled_before_client_request_ids_existed_still_replays() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let spill = Spill::new(dir.path().join("usage.jsonl"));
        let mut line = serde_json::to_value(record(1)).unwrap();
        line.as_object_mut()
            .unwrap()
            .remove("client_request_id")
            .unwrap();
        std::fs::write(spill.path(), format!("{line}\n")).unwrap();
        assert_eq!(spill.replay(&store, 10).unwrap(), 1);
        let row = store.find_by_request_id("spill-1").unwrap().unwrap();
        assert_eq!(row.client_request_id, None);
    }

    #[test]
    fn a_line_spilled_before_usage_detail_and_end_users_existed_still_replays() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let spill = Spill::new(dir.path().join("usage.jsonl"));
        let mut line = serde_json::to_value(record(2)).unwrap();
        let fields = line.as_object_mut().unwrap();
        fields.remove("end_user").unwrap();
        let usage = fields["usage"].as_object_mut().unwrap();
        for detail in [
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        ] {
            usage.remove(detail).unwrap();
        }
        std::fs::write(spill.path(), format!("{line}\n")).unwrap();
        assert_eq!(spill.replay(&store, 10).unwrap(), 1);
        let row = store.find_by_request_id("spill-2").unwrap().unwrap();
        assert_eq!(
            (
                row.cached_input_tokens,
                row.cache_write_tokens,
                row.reasoning_tokens
            ),
            (0, 0, 0)
        );
        assert_eq!(row.end_user, None);
    }
}
