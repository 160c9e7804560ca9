//! A catalogue kept as rows in a shared store (a database) instead of a file: what such a store
//! must do for [`crate::Catalogue`], stated without naming any database, so that this crate
//! stays free of one. The store enforces what two servers sharing it could otherwise both get
//! past: a change applies only to the version it was based on, ids and names stay unique.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use core_domain::{Specialist, SpecialistId, comparable_name};

use crate::CatalogueError;

/// A number that moves whenever the stored catalogue changes (each applied change bumps it),
/// so a server learns with one cheap read whether its copy is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoreRevision(pub i64);

/// One specialist as a row: the keys the store keeps unique and the specialist as JSON (the
/// catalogue file's form of one entry).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpecialist {
    /// The id as given (`Demo`).
    pub id: String,
    /// The id as compared: lowercase, unique in the store (ids ignore case).
    pub id_key: String,
    /// The name as compared (NFKC, case folded): unique in the store.
    pub name_key: String,
    /// The specialist's version.
    pub version: u32,
    /// The whole specialist as JSON.
    pub json: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its current version was made.
    pub updated_at: DateTime<Utc>,
}

impl StoredSpecialist {
    /// The row for `specialist`.
    pub fn of(specialist: &Specialist) -> Result<Self, CatalogueError> {
        Ok(Self {
            id: specialist.id().as_str().to_owned(),
            id_key: specialist.id().as_str().to_ascii_lowercase(),
            name_key: comparable_name(specialist.name()),
            version: specialist.version(),
            json: serde_json::to_string(specialist)?,
            created_at: specialist.created_at(),
            updated_at: specialist.updated_at(),
        })
    }
}

/// One change for the store to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreChange {
    /// A new specialist: refused with [`CatalogueError::AlreadyExists`] when its id key is
    /// stored, with [`CatalogueError::Invalid`] (field `name`) when its name key is.
    Insert(StoredSpecialist),
    /// A new version of a stored specialist, applied only if the stored one is still at
    /// `expected_version` ([`CatalogueError::VersionConflict`] otherwise).
    Update {
        /// The specialist as it is to be.
        row: StoredSpecialist,
        /// The version the change was based on.
        expected_version: u32,
    },
    /// Removes a specialist, only if it is still at `expected_version`.
    Delete {
        /// The specialist.
        id: SpecialistId,
        /// The version the removal was based on.
        expected_version: u32,
    },
}

/// What a store holds: its revision and every specialist's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreContents {
    /// The revision these rows are at (or newer).
    pub revision: StoreRevision,
    /// Each specialist as JSON.
    pub specialists: Vec<String>,
}

/// Where a catalogue shared by several servers is kept. Every method blocks.
pub trait CatalogueStore: Send + Sync + std::fmt::Debug {
    /// Names the store in logs (no secrets).
    fn describe(&self) -> String;
    /// The current revision: one cheap read.
    fn revision(&self) -> Result<StoreRevision, CatalogueError>;
    /// Everything stored.
    fn load(&self) -> Result<StoreContents, CatalogueError>;
    /// Applies `changes` in one transaction, all or none, bumping the revision once; returns
    /// the revision after. Refusals are the errors [`StoreChange`] names.
    fn apply(&self, changes: &[StoreChange]) -> Result<StoreRevision, CatalogueError>;
    /// Stores `rows` if the store was never seeded nor changed, once however many servers try
    /// at the same time; true when this call did it.
    fn seed(&self, rows: &[StoredSpecialist]) -> Result<bool, CatalogueError>;
}

/// The changes that turn `before` into `after` (specialists not replaced are the same `Arc`).
pub(crate) fn changes_between(
    before: &[Arc<Specialist>],
    after: &[Arc<Specialist>],
) -> Result<Vec<StoreChange>, CatalogueError> {
    // Removals and replacements first: a name they free may be taken by an insert.
    let mut changes = Vec::new();
    for old in before {
        if !after.iter().any(|now| now.id() == old.id()) {
            changes.push(StoreChange::Delete {
                id: old.id().clone(),
                expected_version: old.version(),
            });
        }
    }
    for now in after {
        match before.iter().find(|old| old.id() == now.id()) {
            None => changes.push(StoreChange::Insert(StoredSpecialist::of(now)?)),
            Some(old) if !Arc::ptr_eq(old, now) => changes.push(StoreChange::Update {
                row: StoredSpecialist::of(now)?,
                expected_version: old.version(),
            }),
            Some(_) => {}
        }
    }
    changes.sort_by_key(|change| match change {
        StoreChange::Delete { .. } => 0,
        StoreChange::Update { .. } => 1,
        StoreChange::Insert(_) => 2,
    });
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::{BaseUrlPolicy, Catalogue, Reload};

    /// A store in memory that enforces what a database would: versions, unique keys.
    #[derive(Debug, Default)]
    struct MemoryStore {
        state: Mutex<(i64, bool, BTreeMap<String, StoredSpecialist>)>,
        /// While true, `revision` reports the revision of before: a server that has not yet
        /// seen another's change when it applies its own.
        stale_revision: Mutex<Option<i64>>,
    }

    impl CatalogueStore for MemoryStore {
        fn describe(&self) -> String {
            "memory".to_owned()
        }

        fn revision(&self) -> Result<StoreRevision, CatalogueError> {
            let stale = *self.stale_revision.lock().unwrap();
            Ok(StoreRevision(
                stale.unwrap_or_else(|| self.state.lock().unwrap().0),
            ))
        }

        fn load(&self) -> Result<StoreContents, CatalogueError> {
            let state = self.state.lock().unwrap();
            Ok(StoreContents {
                revision: StoreRevision(state.0),
                specialists: state.2.values().map(|row| row.json.clone()).collect(),
            })
        }

        fn apply(&self, changes: &[StoreChange]) -> Result<StoreRevision, CatalogueError> {
            let mut state = self.state.lock().unwrap();
            let mut rows = state.2.clone();
            for change in changes {
                let (key, expected) = match change {
                    StoreChange::Insert(row) => {
                        if rows.contains_key(&row.id_key) {
                            return Err(CatalogueError::AlreadyExists(
                                SpecialistId::parse(&row.id).unwrap(),
                            ));
                        }
                        rows.insert(row.id_key.clone(), row.clone());
                        continue;
                    }
                    StoreChange::Update {
                        row,
                        expected_version,
                    } => (row.id_key.clone(), *expected_version),
                    StoreChange::Delete {
                        id,
                        expected_version,
                    } => (id.as_str().to_ascii_lowercase(), *expected_version),
                };
                let current = rows.get(&key).map(|row| row.version).unwrap();
                if current != expected {
                    return Err(CatalogueError::VersionConflict {
                        id: SpecialistId::parse(&key).unwrap(),
                        current,
                        expected,
                    });
                }
                match change {
                    StoreChange::Update { row, .. } => {
                        rows.insert(key, row.clone());
                    }
                    _ => {
                        rows.remove(&key);
                    }
                }
            }
            state.0 += 1;
            state.1 = true;
            state.2 = rows;
            Ok(StoreRevision(state.0))
        }

        fn seed(&self, rows: &[StoredSpecialist]) -> Result<bool, CatalogueError> {
            let mut state = self.state.lock().unwrap();
            if state.1 {
                return Ok(false);
            }
            state.0 += 1;
            state.1 = true;
            state.2 = rows
                .iter()
                .map(|row| (row.id_key.clone(), row.clone()))
                .collect();
            Ok(true)
        }
    }

    fn id(s: &str) -> SpecialistId {
        SpecialistId::parse(s).unwrap()
    }

    fn warmer(mut draft: core_domain::SpecialistDraft) -> core_domain::SpecialistDraft {
        draft.temperature = (draft.temperature + 0.1).min(1.0);
        draft
    }

    fn two_servers() -> (Arc<MemoryStore>, Catalogue, Catalogue) {
        let store = Arc::new(MemoryStore::default());
        let policy = BaseUrlPolicy::default();
        let a = Catalogue::open_store(store.clone(), &policy).unwrap();
        let b = Catalogue::open_store(store.clone(), &policy).unwrap();
        (store, a, b)
    }

    #[test]
    fn the_default_catalogue_is_seeded_once_and_not_again_after_changes() {
        let (store, a, b) = two_servers();
        assert_eq!((a.len(), b.len()), (6, 6));
        a.delete(&id("demo"), Some(1)).unwrap();
        let c = Catalogue::open_store(store, &BaseUrlPolicy::default()).unwrap();
        assert_eq!(c.len(), 5, "a deleted default is not seeded again");
    }

    #[test]
    fn a_change_on_one_is_taken_in_by_the_others_poll_and_their_next_change() {
        let (_store, a, b) = two_servers();
        assert_eq!(b.reload_if_changed().unwrap(), Reload::Unchanged);
        a.update(&id("demo"), Some(1), warmer).unwrap();
        assert_eq!(a.reload_if_changed().unwrap(), Reload::Unchanged, "its own");
        assert_eq!(b.reload_if_changed().unwrap(), Reload::Reloaded(6));
        assert_eq!(b.get(&id("demo")).unwrap().version(), 2);
        // Without a poll between, B's next change sees A's first.
        a.update(&id("demo"), Some(2), warmer).unwrap();
        let err = b.update(&id("demo"), Some(2), warmer).unwrap_err();
        assert!(
            matches!(err, CatalogueError::VersionConflict { current: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_change_the_store_refuses_is_not_served_and_the_winner_is() {
        let (store, a, b) = two_servers();
        // B looks before A's change lands, so only the store can refuse B's.
        *store.stale_revision.lock().unwrap() = Some(store.revision().unwrap().0);
        a.update(&id("demo"), Some(1), warmer).unwrap();
        let err = b.update(&id("demo"), Some(1), warmer).unwrap_err();
        assert!(
            matches!(err, CatalogueError::VersionConflict { current: 2, .. }),
            "{err}"
        );
        assert_eq!(
            b.get(&id("demo")).unwrap(),
            a.get(&id("demo")).unwrap(),
            "B serves A's version after the refusal"
        );
    }

    #[test]
    fn an_import_adds_new_ids_revises_changed_ones_and_is_all_or_nothing() {
        let (_store, a, _b) = two_servers();
        let now = Utc::now();
        let mut incoming = crate::parse_catalogue(
            crate::DEFAULT_CATALOGUE_JSON,
            &BaseUrlPolicy::default(),
            now,
        )
        .unwrap();
        let demo = incoming
            .iter_mut()
            .find(|s| s.id().as_str() == "demo")
            .unwrap();
        *demo = demo
            .revise(warmer(demo.to_draft()).validate().unwrap(), now, 10)
            .unwrap();
        let extra = r#"{"specialists": [{"id": "extra", "name": "Extra", "provider": "mock",
            "model": "m", "system_prompt": "p"}]}"#;
        incoming.extend(crate::parse_catalogue(extra, &BaseUrlPolicy::default(), now).unwrap());
        let counts = a.import(incoming).unwrap();
        assert_eq!(
            (counts.created, counts.updated, counts.unchanged),
            (1, 1, 5)
        );
        assert_eq!(a.get(&id("demo")).unwrap().version(), 2);

        let clash = r#"{"specialists": [{"id": "new", "name": "New", "provider": "mock",
            "model": "m", "system_prompt": "p"}, {"id": "other", "name": "DEMO", "provider":
            "mock", "model": "m", "system_prompt": "p"}]}"#;
        let clash = crate::parse_catalogue(clash, &BaseUrlPolicy::default(), now).unwrap();
        let err = a.import(clash).unwrap_err();
        assert!(matches!(err, CatalogueError::Invalid(_)), "{err}");
        assert!(a.get(&id("new")).is_none(), "nothing of a refused import");
        assert_eq!(a.len(), 7);
    }
}
