//! Poison isolation: a batch the database refuses for its data (not for being away) is split
//! until the records that fail alone are found; each is stored in a repaired form when the
//! repair keeps its meaning, or handed back as rejected (for the dead-letter file). One bad
//! record never holds up the records behind it.

use core_domain::RequestId;
use serde::{Deserialize, Serialize};

use crate::{AttemptRecord, StoreError, UsageRecord, UsageStore};

/// What [`UsageStore::insert_isolating`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Isolated {
    /// Rows newly stored, repaired ones included. A record whose request id was already stored
    /// is not counted (as with [`UsageStore::insert_batch`]).
    pub inserted: usize,
    /// The records stored in their [`repair`]ed form rather than as given.
    pub repaired: Vec<RequestId>,
    /// The records the database refused even after repair: not stored, to be kept elsewhere
    /// (see [`crate::DeadLetters`]).
    pub rejected: Vec<Rejected>,
}

/// A record the database refused on its own, with the database's reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// Why it was refused: the database's error for the record (and for its repaired form, if
    /// one was tried).
    pub reason: String,
    /// The record as it was given, unrepaired.
    pub record: UsageRecord,
}

/// `record` with every control character (NUL included) in its free-text fields written out
/// visibly as `\uXXXX` (NUL becomes the six characters `\u0000`), or `None` when there was
/// nothing to escape. The meaning survives: a name that held a NUL reads as one that held a
/// NUL. The identifiers and the email hash are validated to printable ASCII when they are
/// built, so only the specialist's name, the models, the end user, the API key's name and the attempts' base URLs
/// can need it.
pub fn repair(record: &UsageRecord) -> Option<UsageRecord> {
    let specialist_name = escape_controls(&record.specialist_name);
    let model = escape_controls(&record.model);
    let end_user = record.end_user.as_deref().and_then(escape_controls);
    let api_key = record.api_key.as_deref().and_then(escape_controls);
    let attempts: Vec<Option<AttemptRecord>> =
        record.attempt_details.iter().map(repair_attempt).collect();
    if specialist_name.is_none()
        && model.is_none()
        && end_user.is_none()
        && api_key.is_none()
        && attempts.iter().all(Option::is_none)
    {
        return None;
    }
    Some(UsageRecord {
        specialist_name: specialist_name.unwrap_or_else(|| record.specialist_name.clone()),
        model: model.unwrap_or_else(|| record.model.clone()),
        end_user: end_user.or_else(|| record.end_user.clone()),
        api_key: api_key.or_else(|| record.api_key.clone()),
        attempt_details: attempts
            .into_iter()
            .zip(&record.attempt_details)
            .map(|(repaired, original)| repaired.unwrap_or_else(|| original.clone()))
            .collect(),
        ..record.clone()
    })
}

/// `attempt` with its free text escaped, or `None` when it had none to escape.
fn repair_attempt(attempt: &AttemptRecord) -> Option<AttemptRecord> {
    let model = escape_controls(&attempt.model);
    let base_url = attempt.base_url.as_deref().and_then(escape_controls);
    if model.is_none() && base_url.is_none() {
        return None;
    }
    Some(AttemptRecord {
        model: model.unwrap_or_else(|| attempt.model.clone()),
        base_url: base_url.or_else(|| attempt.base_url.clone()),
        ..attempt.clone()
    })
}

/// `text` with its control characters escaped, or `None` when it has none.
fn escape_controls(text: &str) -> Option<String> {
    if !text.chars().any(char::is_control) {
        return None;
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    Some(escaped)
}

/// False for the errors that say the database is busy, away or unable to write right now
/// whatever the rows hold (a lock, a lost connection, a read-only or conflicting transaction):
/// those must fail the batch for a later retry even when a probe happens to succeed, or a good
/// record could be dead-lettered for the database's passing state.
fn may_be_about_the_data(error: &StoreError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        StoreError::Query(Error::DatabaseError(kind, info)) => match kind {
            DatabaseErrorKind::SerializationFailure
            | DatabaseErrorKind::ReadOnlyTransaction
            | DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand => false,
            _ => {
                // SQLite's SQLITE_BUSY / SQLITE_LOCKED and PostgreSQL's deadlock arrive as
                // `Unknown`: only their messages tell them apart.
                let message = info.message();
                ![
                    "database is locked",
                    "database table is locked",
                    "deadlock detected",
                ]
                .iter()
                .any(|transient| message.contains(transient))
            }
        },
        StoreError::Query(_) => true,
        StoreError::UnsupportedUrl(_)
        | StoreError::Connect(_)
        | StoreError::Migration(_)
        | StoreError::Io(_)
        | StoreError::Corrupt(_)
        | StoreError::JournalInUse(_)
        | StoreError::DatabaseReplaced(_)
        | StoreError::DeadLetter { .. } => false,
        // The refusals of the budgets' tables; writing usage rows never gives them, and were
        // one to arrive here, failing the batch for a retry loses nothing.
        StoreError::Exists(_) | StoreError::NotFound(_) | StoreError::VersionMoved { .. } => false,
    }
}

impl UsageStore {
    /// Writes `records` like [`Self::insert_batch`], but a batch refused for its data does not
    /// fail: it is split in halves, recursively, until the records that fail alone are found.
    /// Each of those is stored in its [`repair`]ed form if it has one the database takes
    /// (listed in [`Isolated::repaired`]), else returned in [`Isolated::rejected`]; every other
    /// record is stored.
    ///
    /// Whether a refusal is about the data or the database is decided by the error (a lock, a
    /// lost connection or a read-only database is never the data's fault) and then by
    /// [`Self::probe`] after each failed insert: when the probe fails too, the database is the problem and this
    /// returns `Err` with nothing rejected, so the caller keeps the whole batch and retries it
    /// later. That includes a database lost half way through isolation: the halves already
    /// stored are keyed by request id, so the retry stores each record once.
    ///
    /// Starts with [`Self::check_sound`], so it never writes into a deleted SQLite file.
    pub fn insert_isolating(&self, records: &[UsageRecord]) -> Result<Isolated, StoreError> {
        self.check_sound()?;
        let mut outcome = Isolated::default();
        self.isolate(records, &mut outcome)?;
        Ok(outcome)
    }

    fn isolate(&self, records: &[UsageRecord], outcome: &mut Isolated) -> Result<(), StoreError> {
        let refusal = match self.insert_batch(records) {
            Ok(inserted) => {
                outcome.inserted += inserted;
                return Ok(());
            }
            Err(refusal) if may_be_about_the_data(&refusal) => refusal,
            Err(away) => return Err(away),
        };
        self.probe()?;
        match records {
            [record] => self.store_repaired_or_reject(record, &refusal, outcome),
            _ => {
                let (front, back) = records.split_at(records.len() / 2);
                self.isolate(front, outcome)?;
                self.isolate(back, outcome)
            }
        }
    }

    /// `record` failed alone with `refusal` while the database was fine.
    fn store_repaired_or_reject(
        &self,
        record: &UsageRecord,
        refusal: &StoreError,
        outcome: &mut Isolated,
    ) -> Result<(), StoreError> {
        let Some(repaired) = repair(record) else {
            outcome.rejected.push(Rejected {
                reason: refusal.to_string(),
                record: record.clone(),
            });
            return Ok(());
        };
        match self.insert_batch(std::slice::from_ref(&repaired)) {
            Ok(inserted) => {
                outcome.inserted += inserted;
                outcome.repaired.push(record.request_id.clone());
            }
            Err(away) if !may_be_about_the_data(&away) => return Err(away),
            Err(refused_again) => {
                self.probe()?;
                outcome.rejected.push(Rejected {
                    reason: format!("{refusal}; with control characters escaped: {refused_again}"),
                    record: record.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;

    use super::*;
    use crate::fixture::usage_record;
    use crate::store::Pool;
    use crate::{DatabaseConfig, StoreError};

    fn named(request_id: &str, specialist_name: &str) -> UsageRecord {
        UsageRecord {
            specialist_name: specialist_name.into(),
            ..usage_record(request_id)
        }
    }

    fn sqlite_store(dir: &tempfile::TempDir) -> UsageStore {
        UsageStore::connect(&DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("usage.db").display()),
            ..DatabaseConfig::default()
        })
        .unwrap()
    }

    fn execute(store: &UsageStore, sql: &str) {
        match store.pool() {
            Pool::Sqlite(pool) => pool.get().unwrap().batch_execute(sql).unwrap(),
            Pool::Postgres(pool) => pool.get().unwrap().batch_execute(sql).unwrap(),
        }
    }

    /// SQLite takes any text, so the test database is taught to refuse two kinds of record the
    /// way PostgreSQL refuses a NUL: one named exactly `Poison` (no repair helps) and one whose
    /// name holds an ESC character (escaping it helps).
    fn refuse_poison(store: &UsageStore) {
        execute(
            store,
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON usage_logs \
             WHEN NEW.specialist_name = 'Poison' OR instr(NEW.specialist_name, char(27)) > 0 \
             BEGIN SELECT RAISE(ABORT, 'poisoned specialist name'); END;",
        );
    }

    #[test]
    fn control_characters_in_free_text_are_escaped_visibly() {
        let record = UsageRecord {
            specialist_name: "Nul\u{0}Name".into(),
            model: "gpt\u{1b}[31m-4o\u{7f}".into(),
            end_user: Some("line\nbreak\ttab\u{85}".into()),
            api_key: Some("ci\u{0}runner".into()),
            ..usage_record("r1")
        };
        let repaired = repair(&record).unwrap();
        assert_eq!(repaired.specialist_name, "Nul\\u0000Name");
        assert_eq!(repaired.model, "gpt\\u001b[31m-4o\\u007f");
        assert_eq!(
            repaired.end_user.as_deref(),
            Some("line\\u000abreak\\u0009tab\\u0085")
        );
        assert_eq!(repaired.api_key.as_deref(), Some("ci\\u0000runner"));
        // Everything else is untouched.
        assert_eq!(
            UsageRecord {
                specialist_name: record.specialist_name.clone(),
                model: record.model.clone(),
                end_user: record.end_user.clone(),
                api_key: record.api_key.clone(),
                ..repaired
            },
            record
        );
    }

    #[test]
    fn one_bad_field_is_repaired_and_the_others_kept() {
        let record = UsageRecord {
            end_user: Some("caller\u{0}".into()),
            ..usage_record("r1")
        };
        let repaired = repair(&record).unwrap();
        assert_eq!(repaired.end_user.as_deref(), Some("caller\\u0000"));
        assert_eq!(repaired.specialist_name, record.specialist_name);
        assert_eq!(repaired.model, record.model);
    }

    #[test]
    fn control_characters_in_an_attempt_are_escaped_and_its_other_attempts_kept() {
        let mut record = crate::fixture::fallback_record("fb-1");
        record.attempt_details[2].base_url = Some("http://h\u{0}/v1".into());
        let repaired = repair(&record).unwrap();
        assert_eq!(
            repaired.attempt_details[2].base_url.as_deref(),
            Some("http://h\\u0000/v1")
        );
        assert_eq!(repaired.attempt_details[..2], record.attempt_details[..2]);
        assert_eq!(repaired.model, record.model);
        assert_eq!(repair(&crate::fixture::fallback_record("fb-2")), None);
    }

    #[test]
    fn a_clean_record_needs_no_repair() {
        assert_eq!(repair(&usage_record("r1")), None);
        let unicode = UsageRecord {
            specialist_name: "Analyste financière \\u0000 ✓".into(),
            end_user: Some("ünïcödé user".into()),
            ..usage_record("r2")
        };
        assert_eq!(repair(&unicode), None);
    }

    #[test]
    fn a_clean_batch_is_stored_whole_and_a_replay_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let batch: Vec<UsageRecord> = (0..20).map(|i| usage_record(&format!("r{i}"))).collect();
        let outcome = store.insert_isolating(&batch).unwrap();
        assert_eq!(
            outcome,
            Isolated {
                inserted: 20,
                ..Isolated::default()
            }
        );
        assert_eq!(store.insert_isolating(&batch).unwrap().inserted, 0);
        assert_eq!(store.insert_isolating(&[]).unwrap(), Isolated::default());
        assert_eq!(store.count_rows().unwrap(), 20);
    }

    #[test]
    fn splitting_finds_exactly_the_bad_records_and_stores_all_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        refuse_poison(&store);
        let mut batch: Vec<UsageRecord> = (0..13).map(|i| usage_record(&format!("r{i}"))).collect();
        batch[3] = named("r3", "Poison");
        batch[8] = named("r8", "Esc\u{1b}Name");
        batch[12] = named("r12", "Poison");

        let outcome = store.insert_isolating(&batch).unwrap();

        assert_eq!(outcome.inserted, 11);
        assert_eq!(outcome.repaired, [RequestId::parse("r8").unwrap()]);
        let rejected: Vec<&str> = outcome
            .rejected
            .iter()
            .map(|r| r.record.request_id.as_str())
            .collect();
        assert_eq!(rejected, ["r3", "r12"]);
        for refused in &outcome.rejected {
            assert_eq!(refused.record.specialist_name, "Poison");
            assert!(
                refused.reason.contains("poisoned specialist name"),
                "{}",
                refused.reason
            );
        }
        assert_eq!(store.count_rows().unwrap(), 11);
        assert_eq!(store.find_by_request_id("r3").unwrap(), None);
        assert_eq!(
            store
                .find_by_request_id("r8")
                .unwrap()
                .unwrap()
                .specialist_name,
            "Esc\\u001bName"
        );
        for i in [0, 1, 2, 4, 5, 6, 7, 9, 10, 11] {
            assert!(
                store
                    .find_by_request_id(&format!("r{i}"))
                    .unwrap()
                    .is_some()
            );
        }
    }

    #[test]
    fn a_poisoned_attempt_takes_its_call_aside_and_every_other_call_keeps_its_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        execute(
            &store,
            "CREATE TRIGGER refuse_poison_attempt BEFORE INSERT ON usage_attempts \
             WHEN NEW.model = 'Poison' OR instr(NEW.model, char(27)) > 0 \
             BEGIN SELECT RAISE(ABORT, 'poisoned attempt model'); END;",
        );
        let with_attempt_model = |id: &str, model: &str| {
            let mut record = crate::fixture::fallback_record(id);
            record.attempt_details[1].model = model.into();
            record
        };
        let batch = vec![
            crate::fixture::fallback_record("fb-0"),
            usage_record("r1"),
            with_attempt_model("fb-2", "Poison"),
            with_attempt_model("fb-3", "Esc\u{1b}Model"),
            crate::fixture::fallback_record("fb-4"),
        ];

        let outcome = store.insert_isolating(&batch).unwrap();

        assert_eq!(outcome.inserted, 4);
        assert_eq!(outcome.repaired, [RequestId::parse("fb-3").unwrap()]);
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(
            outcome.rejected[0].record, batch[2],
            "dead-lettered with its attempts"
        );
        assert!(
            outcome.rejected[0]
                .reason
                .contains("poisoned attempt model")
        );
        let call = |id: &str| store.call(&RequestId::parse(id).unwrap()).unwrap();
        assert_eq!(call("fb-2"), None, "neither the row nor any attempt of it");
        for id in ["fb-0", "fb-4"] {
            assert_eq!(call(id).unwrap().attempts, batch[0].attempt_details);
        }
        assert!(call("r1").unwrap().attempts.is_empty());
        let repaired = call("fb-3").unwrap();
        assert_eq!(repaired.attempts.len(), 3);
        assert_eq!(repaired.attempts[1].model, "Esc\\u001bModel");
    }

    #[test]
    fn a_record_refused_even_when_repaired_is_rejected_with_both_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        // Refuses the repaired form too: any name starting with "Bad".
        execute(
            &store,
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON usage_logs \
             WHEN substr(NEW.specialist_name, 1, 3) = 'Bad' \
             BEGIN SELECT RAISE(ABORT, 'bad name'); END;",
        );
        let bad = named("bad", "Bad\u{0}Name");
        let outcome = store
            .insert_isolating(&[usage_record("good"), bad.clone()])
            .unwrap();
        assert_eq!(outcome.inserted, 1);
        assert!(outcome.repaired.is_empty());
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(outcome.rejected[0].record, bad, "kept as given, unrepaired");
        assert_eq!(
            outcome.rejected[0].reason.matches("bad name").count(),
            2,
            "{}",
            outcome.rejected[0].reason
        );
    }

    #[test]
    fn a_missing_table_fails_the_batch_and_rejects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        store.probe().unwrap();
        execute(&store, "DROP TABLE usage_logs;");
        assert!(matches!(store.probe(), Err(StoreError::Query(_))));
        let err = store
            .insert_isolating(&[usage_record("r1"), named("r2", "Poison")])
            .unwrap_err();
        assert!(matches!(err, StoreError::Query(_)), "{err}");
    }

    #[test]
    fn a_locked_database_fails_the_batch_and_rejects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("usage.db").display()),
            ..DatabaseConfig::default()
        };
        // Migrated first with the usual patience: the pool opens its idle connections while
        // the migrations write, and a store that never waits could trip over them.
        drop(UsageStore::connect(&config).unwrap());
        let store = UsageStore::connect(&DatabaseConfig {
            // Refuse at once rather than wait for the lock below.
            sqlite_busy_timeout_ms: 0,
            ..config
        })
        .unwrap();
        let Pool::Sqlite(pool) = store.pool() else {
            unreachable!("a sqlite:// URL")
        };
        // Another writer holds the write lock; reads (the probe) still work under WAL.
        let mut other_writer = pool.get().unwrap();
        other_writer.batch_execute("BEGIN IMMEDIATE;").unwrap();
        store.probe().unwrap();

        let err = store
            .insert_isolating(&[usage_record("r1"), usage_record("r2")])
            .unwrap_err();
        assert!(err.to_string().contains("database is locked"), "{err}");

        other_writer.batch_execute("ROLLBACK;").unwrap();
        drop(other_writer);
        assert_eq!(
            store
                .insert_isolating(&[usage_record("r1")])
                .unwrap()
                .inserted,
            1
        );
    }

    #[diesel::declare_sql_function]
    extern "SQL" {
        fn lose_database_file(name: diesel::sql_types::Text) -> diesel::sql_types::Integer;
    }

    #[test]
    fn a_database_lost_during_isolation_stops_it_and_rejects_nothing() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let store = UsageStore::connect(&DatabaseConfig {
            url: format!("sqlite://{}", path.display()),
            // One connection, so the function registered below is there for every insert.
            pool_size: 1,
            ..DatabaseConfig::default()
        })
        .unwrap();
        let Pool::Sqlite(pool) = store.pool() else {
            unreachable!("a sqlite:// URL")
        };
        // The poisoned record is refused each time; the second time (the first half-batch
        // that holds it, after the whole batch failed and the probe passed) the database file
        // goes too.
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let mut conn = pool.get().unwrap();
        lose_database_file_utils::register_nondeterministic_impl(
            &mut conn,
            move |_name: String| {
                if counted.fetch_add(1, Ordering::SeqCst) == 1 {
                    std::fs::remove_file(&path).unwrap();
                }
                0
            },
        )
        .unwrap();
        conn.batch_execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON usage_logs \
             WHEN NEW.specialist_name = 'Poison' \
             BEGIN SELECT lose_database_file(NEW.specialist_name); \
             SELECT RAISE(ABORT, 'poisoned specialist name'); END;",
        )
        .unwrap();
        drop(conn);

        let batch = [
            usage_record("r0"),
            usage_record("r1"),
            named("r2", "Poison"),
            usage_record("r3"),
        ];
        let err = store.insert_isolating(&batch).unwrap_err();

        assert!(matches!(err, StoreError::DatabaseReplaced(_)), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "stopped at the loss");
    }

    #[test]
    fn a_deleted_file_fails_the_batch_and_rejects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        store.insert_isolating(&[usage_record("r1")]).unwrap();
        std::fs::remove_file(dir.path().join("usage.db")).unwrap();
        let err = store.insert_isolating(&[usage_record("r2")]).unwrap_err();
        assert!(matches!(err, StoreError::DatabaseReplaced(_)), "{err}");
        assert!(matches!(
            store.probe(),
            Err(StoreError::DatabaseReplaced(_))
        ));
    }

    /// PostgreSQL at `COMMANDER_TEST_POSTGRES_URL` (default the local server, trust auth).
    mod postgres {
        use diesel::result::{DatabaseErrorKind, Error as DieselError};

        use super::*;
        use crate::test_database::TestDatabase;

        #[test]
        fn a_nul_in_a_name_is_refused_by_postgres_alone() {
            let database = TestDatabase::create();
            let store = database.store();
            store.check_sound().unwrap();
            let err = store
                .insert_batch(&[named("nul", "Nul\u{0}Name")])
                .unwrap_err();
            // How PostgreSQL's refusal surfaces, for the writer's logs.
            assert!(
                matches!(
                    &err,
                    StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::Unknown, _))
                ),
                "{err:?}"
            );
            store.probe().unwrap();
        }

        #[test]
        fn a_nul_named_record_is_stored_repaired_and_does_not_block_its_batch() {
            let database = TestDatabase::create();
            let store = database.store();
            let mut batch: Vec<UsageRecord> =
                (0..11).map(|i| usage_record(&format!("r{i}"))).collect();
            batch[5] = named("nul", "Nul\u{0}Name");

            let outcome = store.insert_isolating(&batch).unwrap();

            assert_eq!(
                outcome,
                Isolated {
                    inserted: 11,
                    repaired: vec![RequestId::parse("nul").unwrap()],
                    rejected: Vec::new(),
                }
            );
            assert_eq!(store.count_rows().unwrap(), 11);
            let row = store.find_by_request_id("nul").unwrap().unwrap();
            assert_eq!(row.specialist_name, "Nul\\u0000Name");
            // The same batch again (a retry after an unclear failure) stores nothing twice.
            let again = store.insert_isolating(&batch).unwrap();
            assert_eq!(again.inserted, 0);
            assert!(again.rejected.is_empty());
            assert_eq!(store.count_rows().unwrap(), 11);
        }

        #[test]
        fn a_dropped_database_fails_the_batch_and_rejects_nothing() {
            let database = TestDatabase::create();
            let store = database.store();
            store.insert_isolating(&[usage_record("r0")]).unwrap();
            database.drop_now();

            let batch = [usage_record("r1"), named("nul", "Nul\u{0}Name")];
            let err = store.insert_isolating(&batch).unwrap_err();
            assert!(
                matches!(err, StoreError::Connect(_) | StoreError::Query(_)),
                "{err:?}"
            );
            assert!(store.probe().is_err());
        }
    }
}
