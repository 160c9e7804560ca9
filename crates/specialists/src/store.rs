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
