//! The budgets managed over HTTP (`budgets` and `budget_revision`): each budget is the JSON
//! text its caller gave, kept under an id with a version, and every change bumps a revision in
//! its own transaction so that servers sharing the database notice it with one cheap read (on
//! PostgreSQL it is also announced, `NOTIFY commander_budgets`). This module does not parse the
//! definitions: what a budget is belongs to the `budgets` crate.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::catalogue::AnnounceChange;
use crate::schema::{budget_revision, budgets};
use crate::store::with_connection;
use crate::{StoreError, UsageStore};

/// The channel every budget change is announced on (PostgreSQL), the revision as payload.
pub const BUDGETS_CHANNEL: &str = "commander_budgets";

/// One budget as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBudget {
    /// Its id, unique.
    pub id: String,
    /// Its definition: the JSON text it was given, unparsed.
    pub definition: String,
    /// 1 when created, one more at each replacement.
    pub version: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its current version was stored.
    pub updated_at: DateTime<Utc>,
}

/// The table's columns as read.
type BudgetTuple = (String, String, NaiveDateTime, NaiveDateTime, i64);

const COLUMNS: (
    budgets::id,
    budgets::definition,
    budgets::created_at,
    budgets::updated_at,
    budgets::version,
) = (
    budgets::id,
    budgets::definition,
    budgets::created_at,
    budgets::updated_at,
    budgets::version,
);

fn budget_of((id, definition, created_at, updated_at, version): BudgetTuple) -> StoredBudget {
    StoredBudget {
        id,
        definition,
        version,
        created_at: created_at.and_utc(),
        updated_at: updated_at.and_utc(),
    }
}

/// How errors name a budget.
fn named(id: &str) -> String {
    format!("budget '{id}'")
}

/// Now, to the microsecond: what PostgreSQL's TIMESTAMP keeps, so the value a change returns is
/// the value a later read gives on both backends.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Bumps the revision and returns it. First in every change: on PostgreSQL the row lock it
/// takes orders concurrent changes (and keeps two of them from locking rows in opposite
/// orders), on SQLite the write lock does.
macro_rules! bump_revision {
    ($conn:expr) => {{
        diesel::update(budget_revision::table.find(1))
            .set(budget_revision::revision.eq(budget_revision::revision + 1))
            .execute($conn)?;
        budget_revision::table
            .find(1)
            .select(budget_revision::revision)
            .first::<i64>($conn)?
    }};
}

impl UsageStore {
    /// The budgets' revision: bumped by every change. Cheap, for a poll.
    pub fn budget_revision(&self) -> Result<i64, StoreError> {
        Ok(with_connection!(self, |conn| {
            budget_revision::table
                .find(1)
                .select(budget_revision::revision)
                .first::<i64>(conn)?
        }))
    }

    /// Every stored budget (oldest first, then by id) and the revision they are at, read in
    /// one transaction.
    pub fn budget_definitions(&self) -> Result<(i64, Vec<StoredBudget>), StoreError> {
        Ok(with_connection!(self, |conn| {
            conn.transaction::<_, DieselError, _>(|conn| {
                let revision = budget_revision::table
                    .find(1)
                    .select(budget_revision::revision)
                    .first::<i64>(conn)?;
                let rows = budgets::table
                    .order((budgets::created_at, budgets::id))
                    .select(COLUMNS)
                    .load::<BudgetTuple>(conn)?;
                Ok((revision, rows.into_iter().map(budget_of).collect()))
            })?
        }))
    }

    /// Stores a new budget at version 1, or [`StoreError::Exists`] when the id is taken
    /// (also when another server created it a moment before: the database decides).
    pub fn create_budget(&self, id: &str, definition: &str) -> Result<StoredBudget, StoreError> {
        let at = now();
        let stored = StoredBudget {
            id: id.to_owned(),
            definition: definition.to_owned(),
            version: 1,
            created_at: at,
            updated_at: at,
        };
        with_connection!(self, |conn| {
            conn.transaction::<_, StoreError, _>(|conn| {
                let revision = bump_revision!(conn);
                diesel::insert_into(budgets::table)
                    .values((
                        budgets::id.eq(id),
                        budgets::definition.eq(definition),
                        budgets::created_at.eq(at.naive_utc()),
                        budgets::updated_at.eq(at.naive_utc()),
                        budgets::version.eq(1),
                    ))
                    .execute(conn)
                    .map_err(|error| match error {
                        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                            StoreError::Exists(named(id))
                        }
                        error => StoreError::Query(error),
                    })?;
                conn.announce(BUDGETS_CHANNEL, revision)?;
                Ok(())
            })
        })?;
        Ok(stored)
    }

    /// Replaces a budget's definition and bumps its version; with `if_version`, only if it is
    /// still at that version ([`StoreError::VersionMoved`] otherwise). [`StoreError::NotFound`]
    /// when no budget has this id. Returns the budget as now stored.
    pub fn replace_budget(
        &self,
        id: &str,
        definition: &str,
        if_version: Option<i64>,
    ) -> Result<StoredBudget, StoreError> {
        let at = now().naive_utc();
        let row = with_connection!(self, |conn| {
            conn.transaction::<_, StoreError, _>(|conn| {
                let revision = bump_revision!(conn);
                let current = budgets::table
                    .find(id)
                    .select(budgets::version)
                    .first::<i64>(conn)
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound(named(id)))?;
                if let Some(expected) = if_version
                    && expected != current
                {
                    return Err(StoreError::VersionMoved {
                        what: named(id),
                        expected,
                        current,
                    });
                }
                // The revision's lock (taken first by every change) keeps `current` current.
                diesel::update(budgets::table.find(id))
                    .set((
                        budgets::definition.eq(definition),
                        budgets::version.eq(current + 1),
                        budgets::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                let row = budgets::table
                    .find(id)
                    .select(COLUMNS)
                    .first::<BudgetTuple>(conn)?;
                conn.announce(BUDGETS_CHANNEL, revision)?;
                Ok(row)
            })
        })?;
        Ok(budget_of(row))
    }

    /// Removes a budget; false (and nothing changed, the revision included) when no budget has
    /// this id.
    pub fn delete_budget(&self, id: &str) -> Result<bool, StoreError> {
        let outcome = with_connection!(self, |conn| {
            conn.transaction::<_, StoreError, _>(|conn| {
                let revision = bump_revision!(conn);
                let deleted = diesel::delete(budgets::table.find(id)).execute(conn)?;
                if deleted == 0 {
                    // Rolls the revision's bump back: nothing changed.
                    return Err(StoreError::NotFound(named(id)));
                }
                conn.announce(BUDGETS_CHANNEL, revision)?;
                Ok(())
            })
        });
        match outcome {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatabaseConfig;

    const TEAM: &str = r#"{"scope": "global", "period": "month", "limit_usd": 100}"#;
    const TEAM_MORE: &str = r#"{"scope": "global", "period": "month", "limit_usd": 250}"#;

    /// Create, list, replace (with and without a version), delete, and what each refusal
    /// leaves: nothing changed, the revision included.
    fn definitions_change_by_version(store: &UsageStore) {
        assert_eq!(store.budget_definitions().unwrap(), (0, Vec::new()));
        assert_eq!(store.budget_revision().unwrap(), 0);

        let team = store.create_budget("team", TEAM).unwrap();
        assert_eq!((team.id.as_str(), team.version), ("team", 1));
        assert_eq!(team.definition, TEAM);
        assert_eq!(team.created_at, team.updated_at);
        let ada = store.create_budget("ada", "{}").unwrap();
        assert_eq!(store.budget_revision().unwrap(), 2);
        assert_eq!(
            store.budget_definitions().unwrap(),
            (2, vec![team.clone(), ada.clone()]),
            "oldest first, read back as returned"
        );

        let err = store.create_budget("team", "{}").unwrap_err();
        assert!(
            matches!(&err, StoreError::Exists(what) if what == "budget 'team'"),
            "{err:?}"
        );
        assert_eq!(
            store.budget_revision().unwrap(),
            2,
            "a refusal bumps nothing"
        );

        let replaced = store.replace_budget("team", TEAM_MORE, Some(1)).unwrap();
        assert_eq!(replaced.version, 2);
        assert_eq!(replaced.definition, TEAM_MORE);
        assert_eq!(replaced.created_at, team.created_at);
        assert!(replaced.updated_at >= team.updated_at);
        assert_eq!(store.budget_revision().unwrap(), 3);

        let err = store.replace_budget("team", TEAM, Some(1)).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::VersionMoved { what, expected: 1, current: 2 } if what == "budget 'team'"
            ),
            "{err:?}"
        );
        let err = store.replace_budget("nobody", TEAM, None).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound(what) if what == "budget 'nobody'"),
            "{err:?}"
        );
        assert_eq!(store.budget_revision().unwrap(), 3, "refusals bump nothing");
        let (_, stored) = store.budget_definitions().unwrap();
        assert_eq!(
            stored,
            vec![replaced.clone(), ada.clone()],
            "refusals change nothing"
        );

        // Without a version, the replacement applies to whatever is there.
        assert_eq!(store.replace_budget("team", TEAM, None).unwrap().version, 3);
        assert_eq!(store.budget_revision().unwrap(), 4);

        assert!(store.delete_budget("team").unwrap());
        assert!(!store.delete_budget("team").unwrap(), "already gone");
        assert_eq!(store.budget_definitions().unwrap(), (5, vec![ada]));

        // A deleted id can be created afresh, at version 1.
        assert_eq!(store.create_budget("team", TEAM).unwrap().version, 1);
        assert_eq!(store.budget_revision().unwrap(), 6);
    }

    /// Eight threads create one id at once: exactly one succeeds, the others are told it
    /// exists, and the revision counts one change.
    fn concurrent_creates_of_one_id_have_one_winner(store: &UsageStore) {
        let outcomes: Vec<Result<StoredBudget, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let store = store.clone();
                    scope.spawn(move || store.create_budget("shared", &format!("{{\"n\": {i}}}")))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<&StoredBudget> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .filter_map(|o| o.as_ref().err())
                .all(|e| matches!(e, StoreError::Exists(_))),
            "{outcomes:?}"
        );
        let (revision, stored) = store.budget_definitions().unwrap();
        assert_eq!(revision, 1);
        assert_eq!(stored, vec![winners[0].clone()]);
    }

    fn sqlite_store(dir: &tempfile::TempDir) -> UsageStore {
        UsageStore::connect(&DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("budgets.db").display()),
            sqlite_busy_timeout_ms: 5_000,
            ..DatabaseConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn definitions_change_by_version_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        definitions_change_by_version(&sqlite_store(&dir));
    }

    #[test]
    fn concurrent_creates_of_one_id_have_one_winner_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        concurrent_creates_of_one_id_have_one_winner(&sqlite_store(&dir));
    }

    /// PostgreSQL at `COMMANDER_TEST_POSTGRES_URL` (default the local server, trust auth).
    mod postgres {
        use std::time::{Duration, Instant};

        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        use diesel::pg::PgConnection;

        use super::*;
        use crate::test_database::TestDatabase;

        #[test]
        fn definitions_change_by_version_on_postgres() {
            let database = TestDatabase::create();
            definitions_change_by_version(&database.store());
        }

        #[test]
        fn concurrent_creates_of_one_id_have_one_winner_on_postgres() {
            let database = TestDatabase::create();
            concurrent_creates_of_one_id_have_one_winner(&database.store());
        }

        #[test]
        fn each_change_is_announced_with_its_revision() {
            let database = TestDatabase::create();
            let store = database.store();
            let mut listener = PgConnection::establish(&database.url()).unwrap();
            listener
                .batch_execute(&format!("LISTEN {BUDGETS_CHANNEL}"))
                .unwrap();
            store.create_budget("team", TEAM).unwrap();
            store.replace_budget("team", TEAM_MORE, Some(1)).unwrap();
            assert!(store.delete_budget("team").unwrap());
            assert!(!store.delete_budget("team").unwrap());

            let mut heard = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while heard.len() < 3 && Instant::now() < deadline {
                heard.extend(
                    listener
                        .notifications_iter()
                        .map(|n| n.unwrap())
                        .filter(|n| n.channel == BUDGETS_CHANNEL)
                        .map(|n| n.payload),
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(heard, ["1", "2", "3"], "one per change, none for a refusal");
        }
    }
}
