//! The specialist catalogue's tables (`specialists.store = "database"`): rows of JSON with the
//! keys the database keeps unique, each change applied only to the version it was based on, and
//! a revision counter bumped in the same transaction as every change so that servers sharing
//! the database notice changes with one cheap read. This module knows nothing of what a
//! specialist is: the `specialists` crate computes the rows (the binary joins the two).

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::schema::{catalogue_revision, specialist_versions, specialists};
use crate::store::Pool;
use crate::{StoreError, UsageStore};

/// One specialist as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueRow {
    /// The id as given.
    pub id: String,
    /// The id as compared (unique).
    pub id_key: String,
    /// The name as compared (unique).
    pub name_key: String,
    /// The specialist's version.
    pub version: i64,
    /// The specialist as JSON.
    pub spec: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its current version was made.
    pub updated_at: DateTime<Utc>,
}

/// One change of the catalogue's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogueWrite {
    /// A new row; refused when its id key or name key is taken.
    Insert(CatalogueRow),
    /// Replaces the row of the same id key if it is still at `expected_version`.
    Update {
        /// The row as it is to be.
        row: CatalogueRow,
        /// The version the change was based on.
        expected_version: i64,
    },
    /// Removes the row of this id key if it is still at `expected_version`.
    Delete {
        /// The id key.
        id_key: String,
        /// The version the removal was based on.
        expected_version: i64,
    },
}

/// Why the database refused a set of [`CatalogueWrite`]s (none of them was applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogueRefusal {
    /// An insert's id key is taken.
    IdTaken(String),
    /// This row's name key is taken by another row.
    NameTaken(String),
    /// The row is at another version than the change expected.
    VersionMoved {
        /// The row's id key.
        id_key: String,
        /// Its version now.
        current: i64,
    },
    /// No row has this id key.
    Missing(String),
}

/// Inside a transaction: a refusal rolls it back like a database error does.
enum TxError {
    Db(DieselError),
    Refused(CatalogueRefusal),
}

impl From<DieselError> for TxError {
    fn from(error: DieselError) -> Self {
        Self::Db(error)
    }
}

/// The table's columns as read.
type RowTuple = (
    String,
    String,
    String,
    i64,
    String,
    NaiveDateTime,
    NaiveDateTime,
);

fn row_of((id, id_key, name_key, version, spec, created_at, updated_at): RowTuple) -> CatalogueRow {
    CatalogueRow {
        id,
        id_key,
        name_key,
        version,
        spec,
        created_at: created_at.and_utc(),
        updated_at: updated_at.and_utc(),
    }
}

/// A unique violation on an insert or update of `row`: which key was taken. The constraint (or,
/// on SQLite, the message) names the column.
fn taken(error: DieselError, row: &CatalogueRow) -> TxError {
    match &error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            let names_name = info.constraint_name().unwrap_or_else(|| info.message());
            if names_name.contains("name_key") {
                TxError::Refused(CatalogueRefusal::NameTaken(row.id_key.clone()))
            } else {
                TxError::Refused(CatalogueRefusal::IdTaken(row.id_key.clone()))
            }
        }
        _ => TxError::Db(error),
    }
}

/// Runs `$body` with `$conn` bound to a connection of either backend; the body is compiled once
/// per backend, so diesel checks each query against each dialect.
macro_rules! on_connection {
    ($store:expr, |$conn:ident| $body:expr) => {
        match $store.pool() {
            Pool::Sqlite(pool) => {
                let mut pooled = pool.get()?;
                let $conn: &mut SqliteConnection = &mut pooled;
                $body
            }
            Pool::Postgres(pool) => {
                let mut pooled = pool.get()?;
                let $conn: &mut PgConnection = &mut pooled;
                $body
            }
        }
    };
}

/// The channel every catalogue change is announced on (PostgreSQL), the revision as payload.
pub(crate) const CATALOGUE_CHANNEL: &str = "commander_catalogue";

/// Announcing a change on `channel` inside its transaction, so listeners hear of it only once it
/// commits; the revision is the payload. Shared with the budgets' tables.
pub(crate) trait AnnounceChange {
    fn announce(&mut self, channel: &str, revision: i64) -> Result<(), DieselError>;
}

impl AnnounceChange for SqliteConnection {
    /// SQLite has no notifications: the servers sharing the file poll the revision.
    fn announce(&mut self, _channel: &str, _revision: i64) -> Result<(), DieselError> {
        Ok(())
    }
}

impl AnnounceChange for PgConnection {
    fn announce(&mut self, channel: &str, revision: i64) -> Result<(), DieselError> {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(channel)
            .bind::<diesel::sql_types::Text, _>(revision.to_string())
            .execute(self)?;
        Ok(())
    }
}

/// Bumps the revision (which also marks the catalogue seeded) and returns it. First in every
/// change: on PostgreSQL the row lock it takes orders concurrent changes, on SQLite the write
/// lock does.
macro_rules! bump_revision {
    ($conn:expr) => {{
        diesel::update(catalogue_revision::table.find(1))
            .set((
                catalogue_revision::revision.eq(catalogue_revision::revision + 1),
                catalogue_revision::seeded.eq(true),
            ))
            .execute($conn)?;
        catalogue_revision::table
            .find(1)
            .select(catalogue_revision::revision)
            .first::<i64>($conn)?
    }};
}

/// Inserts `row` into `specialists`; the `execute` result, for the caller to map.
macro_rules! insert_row {
    ($conn:expr, $row:expr) => {
        diesel::insert_into(specialists::table)
            .values((
                specialists::id.eq(&$row.id),
                specialists::id_key.eq(&$row.id_key),
                specialists::name_key.eq(&$row.name_key),
                specialists::version.eq($row.version),
                specialists::spec.eq(&$row.spec),
                specialists::created_at.eq($row.created_at.naive_utc()),
                specialists::updated_at.eq($row.updated_at.naive_utc()),
            ))
            .execute($conn)
    };
}

macro_rules! record_version {
    ($conn:expr, $row:expr, $deleted:expr, $at:expr) => {
        diesel::insert_into(specialist_versions::table)
            .values((
                specialist_versions::id.eq(&$row.0),
                specialist_versions::version.eq($row.1),
                specialist_versions::spec.eq(&$row.2),
                specialist_versions::deleted.eq($deleted),
                specialist_versions::changed_at.eq($at),
            ))
            .execute($conn)?
    };
}

/// The refusal for a row not at `expected`: moved, or gone.
macro_rules! not_at_version {
    ($conn:expr, $id_key:expr) => {{
        let current = specialists::table
            .filter(specialists::id_key.eq($id_key))
            .select(specialists::version)
            .first::<i64>($conn)
            .optional()?;
        match current {
            Some(current) => CatalogueRefusal::VersionMoved {
                id_key: $id_key.to_owned(),
                current,
            },
            None => CatalogueRefusal::Missing($id_key.to_owned()),
        }
    }};
}

fn finish<T>(outcome: Result<T, TxError>) -> Result<Result<T, CatalogueRefusal>, StoreError> {
    match outcome {
        Ok(value) => Ok(Ok(value)),
        Err(TxError::Refused(refusal)) => Ok(Err(refusal)),
        Err(TxError::Db(error)) => Err(StoreError::Query(error)),
    }
}

impl UsageStore {
    /// The catalogue's revision: bumped by every change and by seeding.
    pub fn catalogue_revision(&self) -> Result<i64, StoreError> {
        Ok(on_connection!(self, |conn| {
            catalogue_revision::table
                .find(1)
                .select(catalogue_revision::revision)
                .first::<i64>(conn)?
        }))
    }

    /// Every stored specialist (by id) and the revision they are at, read in one transaction.
    pub fn catalogue_rows(&self) -> Result<(i64, Vec<CatalogueRow>), StoreError> {
        Ok(on_connection!(self, |conn| {
            conn.transaction::<_, DieselError, _>(|conn| {
                let revision = catalogue_revision::table
                    .find(1)
                    .select(catalogue_revision::revision)
                    .first::<i64>(conn)?;
                let rows = specialists::table
                    .order(specialists::id)
                    .load::<RowTuple>(conn)?;
                Ok((revision, rows.into_iter().map(row_of).collect()))
            })?
        }))
    }

    /// Applies `writes` in one transaction, all or none, recording each new version in
    /// `specialist_versions`; returns the revision after them, or why the database refused.
    pub fn catalogue_apply(
        &self,
        writes: &[CatalogueWrite],
    ) -> Result<Result<i64, CatalogueRefusal>, StoreError> {
        let now = Utc::now().naive_utc();
        finish(on_connection!(self, |conn| {
            conn.transaction::<_, TxError, _>(|conn| {
                let revision = bump_revision!(conn);
                for write in writes {
                    match write {
                        CatalogueWrite::Insert(row) => {
                            insert_row!(conn, row).map_err(|e| taken(e, row))?;
                            record_version!(conn, (&row.id, row.version, &row.spec), false, now);
                        }
                        CatalogueWrite::Update {
                            row,
                            expected_version,
                        } => {
                            let updated = diesel::update(
                                specialists::table
                                    .filter(specialists::id_key.eq(&row.id_key))
                                    .filter(specialists::version.eq(expected_version)),
                            )
                            .set((
                                specialists::name_key.eq(&row.name_key),
                                specialists::version.eq(row.version),
                                specialists::spec.eq(&row.spec),
                                specialists::updated_at.eq(row.updated_at.naive_utc()),
                            ))
                            .execute(conn)
                            .map_err(|e| taken(e, row))?;
                            if updated == 0 {
                                return Err(TxError::Refused(not_at_version!(conn, &row.id_key)));
                            }
                            record_version!(conn, (&row.id, row.version, &row.spec), false, now);
                        }
                        CatalogueWrite::Delete {
                            id_key,
                            expected_version,
                        } => {
                            let gone = specialists::table
                                .filter(specialists::id_key.eq(id_key))
                                .filter(specialists::version.eq(expected_version))
                                .select((specialists::id, specialists::version, specialists::spec))
                                .first::<(String, i64, String)>(conn)
                                .optional()?;
                            let Some(gone) = gone else {
                                return Err(TxError::Refused(not_at_version!(conn, id_key)));
                            };
                            diesel::delete(
                                specialists::table
                                    .filter(specialists::id_key.eq(id_key))
                                    .filter(specialists::version.eq(expected_version)),
                            )
                            .execute(conn)?;
                            record_version!(conn, (&gone.0, gone.1, &gone.2), true, now);
                        }
                    }
                }
                conn.announce(CATALOGUE_CHANNEL, revision)?;
                Ok(revision)
            })
        }))
    }

    /// Stores `rows` if the catalogue was never seeded nor changed; true when this call did.
    /// Safe when several servers start at once: the flag is claimed by a conditional update
    /// in the same transaction, so exactly one of them stores the rows.
    pub fn catalogue_seed(&self, rows: &[CatalogueRow]) -> Result<bool, StoreError> {
        let now = Utc::now().naive_utc();
        let seeded = on_connection!(self, |conn| {
            conn.transaction::<_, DieselError, _>(|conn| {
                let claimed = diesel::update(
                    catalogue_revision::table
                        .find(1)
                        .filter(catalogue_revision::seeded.eq(false)),
                )
                .set((
                    catalogue_revision::revision.eq(catalogue_revision::revision + 1),
                    catalogue_revision::seeded.eq(true),
                ))
                .execute(conn)?;
                if claimed == 0 {
                    return Ok(false);
                }
                for row in rows {
                    insert_row!(conn, row)?;
                    record_version!(conn, (&row.id, row.version, &row.spec), false, now);
                }
                let revision = catalogue_revision::table
                    .find(1)
                    .select(catalogue_revision::revision)
                    .first::<i64>(conn)?;
                conn.announce(CATALOGUE_CHANNEL, revision)?;
                Ok(true)
            })?
        });
        Ok(seeded)
    }

    /// How many versions `specialist_versions` holds for this id (removals included).
    pub fn catalogue_history_len(&self, id: &str) -> Result<i64, StoreError> {
        Ok(on_connection!(self, |conn| {
            specialist_versions::table
                .filter(specialist_versions::id.eq(id))
                .count()
                .get_result::<i64>(conn)?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatabaseConfig;

    fn store() -> (tempfile::TempDir, UsageStore) {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("c.db").display()),
            sqlite_busy_timeout_ms: 5_000,
            ..DatabaseConfig::default()
        }
        .with_files_in(dir.path());
        let store = UsageStore::connect(&config).unwrap();
        (dir, store)
    }

    fn row(id: &str, name: &str, version: i64) -> CatalogueRow {
        CatalogueRow {
            id: id.to_owned(),
            id_key: id.to_ascii_lowercase(),
            name_key: name.to_lowercase(),
            version,
            spec: format!(r#"{{"id": "{id}", "v": {version}}}"#),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn update(id: &str, name: &str, expected_version: i64) -> CatalogueWrite {
        CatalogueWrite::Update {
            row: row(id, name, expected_version + 1),
            expected_version,
        }
    }

    #[test]
    fn a_change_applies_only_to_the_version_it_was_based_on() {
        let (_dir, store) = store();
        assert_eq!(store.catalogue_revision().unwrap(), 0);
        let first = store
            .catalogue_apply(&[CatalogueWrite::Insert(row("a", "Alpha", 1))])
            .unwrap()
            .unwrap();
        assert_eq!(first, 1);
        assert_eq!(
            store.catalogue_apply(&[update("a", "Alpha", 1)]).unwrap(),
            Ok(2)
        );
        assert_eq!(
            store.catalogue_apply(&[update("a", "Alpha", 1)]).unwrap(),
            Err(CatalogueRefusal::VersionMoved {
                id_key: "a".to_owned(),
                current: 2
            })
        );
        assert_eq!(
            store
                .catalogue_apply(&[CatalogueWrite::Delete {
                    id_key: "a".to_owned(),
                    expected_version: 1
                }])
                .unwrap(),
            Err(CatalogueRefusal::VersionMoved {
                id_key: "a".to_owned(),
                current: 2
            })
        );
        assert_eq!(
            store.catalogue_revision().unwrap(),
            2,
            "a refusal bumps nothing"
        );
        assert_eq!(
            store
                .catalogue_apply(&[CatalogueWrite::Delete {
                    id_key: "a".to_owned(),
                    expected_version: 2
                }])
                .unwrap(),
            Ok(3)
        );
        assert_eq!(
            store.catalogue_apply(&[update("a", "Alpha", 2)]).unwrap(),
            Err(CatalogueRefusal::Missing("a".to_owned()))
        );
        assert!(store.catalogue_rows().unwrap().1.is_empty());
        assert_eq!(
            store.catalogue_history_len("a").unwrap(),
            3,
            "v1, v2, removal"
        );
    }

    #[test]
    fn ids_and_names_are_unique_and_a_refused_set_applies_nothing() {
        let (_dir, store) = store();
        store
            .catalogue_apply(&[CatalogueWrite::Insert(row("a", "Alpha", 1))])
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .catalogue_apply(&[CatalogueWrite::Insert(row("A", "Other", 1))])
                .unwrap(),
            Err(CatalogueRefusal::IdTaken("a".to_owned()))
        );
        // The first write of the set would succeed alone; the second's name is taken.
        assert_eq!(
            store
                .catalogue_apply(&[
                    CatalogueWrite::Insert(row("b", "Beta", 1)),
                    CatalogueWrite::Insert(row("c", "ALPHA", 1)),
                ])
                .unwrap(),
            Err(CatalogueRefusal::NameTaken("c".to_owned()))
        );
        let (revision, rows) = store.catalogue_rows().unwrap();
        assert_eq!(revision, 1);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(store.catalogue_history_len("b").unwrap(), 0);
    }

    #[test]
    fn seeding_from_several_threads_at_once_seeds_once() {
        let (_dir, store) = store();
        let seeds: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    scope.spawn(move || {
                        store
                            .catalogue_seed(&[row("a", "Alpha", 1), row("b", "Beta", 1)])
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            seeds.iter().filter(|&&seeded| seeded).count(),
            1,
            "{seeds:?}"
        );
        assert_eq!(store.catalogue_rows().unwrap().1.len(), 2);
        assert_eq!(store.catalogue_history_len("a").unwrap(), 1);
    }

    #[test]
    fn a_store_changed_before_it_was_seeded_is_never_seeded() {
        let (_dir, store) = store();
        store
            .catalogue_apply(&[CatalogueWrite::Insert(row("mine", "Mine", 1))])
            .unwrap()
            .unwrap();
        assert!(!store.catalogue_seed(&[row("a", "Alpha", 1)]).unwrap());
        assert_eq!(store.catalogue_rows().unwrap().1.len(), 1);
    }
}
