//! The catalogue kept in the database (`specialists.store = "database"`): the `specialists`
//! crate's store contract met by the usage database's catalogue tables. It lives here because
//! the binary is the one crate that knows both sides (the two crates are of one layer and may
//! not know each other).

use std::sync::Arc;

use core_domain::{SpecialistId, ValidationErrors};
use specialists::{
    BaseUrlPolicy, Catalogue, CatalogueError, CatalogueStore, ImportCounts, StoreChange,
    StoreContents, StoreRevision, StoredSpecialist, catalogue_json, parse_catalogue,
};
use usage_store::{Backend, CatalogueRefusal, CatalogueRow, CatalogueWrite, UsageStore};

use crate::{CatalogueStoreKind, Settings};

/// The configured catalogue as it is, for moving specialists in or out: the file (created with
/// the default catalogue when missing, as a server would), or the database without seeding it.
/// Blocks.
fn configured_catalogue(settings: &Settings) -> Result<Catalogue, String> {
    let policy = BaseUrlPolicy::new(settings.providers.allowed_http_base_urls.clone());
    let opened = match settings.specialists.store {
        CatalogueStoreKind::File => Catalogue::open(&settings.specialists.path, &policy),
        CatalogueStoreKind::Database => {
            let store = UsageStore::connect(&settings.database).map_err(|e| e.to_string())?;
            Catalogue::attach_store(Arc::new(DatabaseCatalogue::new(store)), &policy)
        }
    };
    Ok(opened
        .map_err(|e| e.to_string())?
        .with_max_prompt_history(settings.specialists.max_prompt_history))
}

/// `commander specialists import`: the catalogue file text `text` into the configured store,
/// by id (see [`Catalogue::import`]). Blocks.
pub fn import_specialists(settings: &Settings, text: &str) -> Result<ImportCounts, String> {
    let policy = BaseUrlPolicy::new(settings.providers.allowed_http_base_urls.clone());
    let incoming = parse_catalogue(text, &policy, chrono::Utc::now()).map_err(|e| e.to_string())?;
    configured_catalogue(settings)?
        .import(incoming)
        .map_err(|e| e.to_string())
}

/// `commander specialists export`: the configured catalogue in the file format. Blocks.
pub fn export_specialists(settings: &Settings) -> Result<String, String> {
    catalogue_json(&configured_catalogue(settings)?.list()).map_err(|e| e.to_string())
}

/// The catalogue in the usage database's `specialists` tables.
#[derive(Debug, Clone)]
pub struct DatabaseCatalogue {
    store: UsageStore,
}

impl DatabaseCatalogue {
    /// The catalogue tables of `store`'s database (created by its migrations).
    pub fn new(store: UsageStore) -> Self {
        Self { store }
    }
}

fn failed(error: usage_store::StoreError) -> CatalogueError {
    CatalogueError::Store(error.to_string())
}

fn row(stored: &StoredSpecialist) -> CatalogueRow {
    CatalogueRow {
        id: stored.id.clone(),
        id_key: stored.id_key.clone(),
        name_key: stored.name_key.clone(),
        version: i64::from(stored.version),
        spec: stored.json.clone(),
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    }
}

fn write(change: &StoreChange) -> CatalogueWrite {
    match change {
        StoreChange::Insert(stored) => CatalogueWrite::Insert(row(stored)),
        StoreChange::Update {
            row: stored,
            expected_version,
        } => CatalogueWrite::Update {
            row: row(stored),
            expected_version: i64::from(*expected_version),
        },
        StoreChange::Delete {
            id,
            expected_version,
        } => CatalogueWrite::Delete {
            id_key: id.as_str().to_ascii_lowercase(),
            expected_version: i64::from(*expected_version),
        },
    }
}

/// The change a refusal is about, found by its id key: its id and the version it expected.
fn change_for(changes: &[StoreChange], id_key: &str) -> Option<(SpecialistId, u32)> {
    changes.iter().find_map(|change| {
        let (id, expected) = match change {
            StoreChange::Insert(stored) => (stored.id.as_str(), stored.version),
            StoreChange::Update {
                row,
                expected_version,
            } => (row.id.as_str(), *expected_version),
            StoreChange::Delete {
                id,
                expected_version,
            } => (id.as_str(), *expected_version),
        };
        let id = SpecialistId::parse(id).ok()?;
        (id.as_str().to_ascii_lowercase() == id_key).then_some((id, expected))
    })
}

fn refused(refusal: CatalogueRefusal, changes: &[StoreChange]) -> CatalogueError {
    let key = match &refusal {
        CatalogueRefusal::IdTaken(key)
        | CatalogueRefusal::NameTaken(key)
        | CatalogueRefusal::Missing(key)
        | CatalogueRefusal::VersionMoved { id_key: key, .. } => key.clone(),
    };
    let Some((id, expected)) = change_for(changes, &key) else {
        return CatalogueError::Store(format!("the database refused a change: {refusal:?}"));
    };
    match refusal {
        CatalogueRefusal::IdTaken(_) => CatalogueError::AlreadyExists(id),
        CatalogueRefusal::NameTaken(_) => {
            let mut errors = ValidationErrors::new();
            errors.push(
                "name",
                "the name is taken by another specialist; names are compared ignoring case, \
                 width and compatibility forms",
            );
            CatalogueError::Invalid(errors)
        }
        CatalogueRefusal::Missing(_) => CatalogueError::NotFound(id),
        CatalogueRefusal::VersionMoved { current, .. } => CatalogueError::VersionConflict {
            id,
            current: u32::try_from(current).unwrap_or(u32::MAX),
            expected,
        },
    }
}

impl CatalogueStore for DatabaseCatalogue {
    fn describe(&self) -> String {
        match self.store.backend() {
            Backend::Sqlite => "the SQLite database's specialists table".to_owned(),
            Backend::Postgres => "the PostgreSQL database's specialists table".to_owned(),
        }
    }

    fn revision(&self) -> Result<StoreRevision, CatalogueError> {
        self.store
            .catalogue_revision()
            .map(StoreRevision)
            .map_err(failed)
    }

    fn load(&self) -> Result<StoreContents, CatalogueError> {
        let (revision, rows) = self.store.catalogue_rows().map_err(failed)?;
        Ok(StoreContents {
            revision: StoreRevision(revision),
            specialists: rows.into_iter().map(|row| row.spec).collect(),
        })
    }

    fn apply(&self, changes: &[StoreChange]) -> Result<StoreRevision, CatalogueError> {
        let writes: Vec<CatalogueWrite> = changes.iter().map(write).collect();
        match self.store.catalogue_apply(&writes).map_err(failed)? {
            Ok(revision) => Ok(StoreRevision(revision)),
            Err(refusal) => Err(refused(refusal, changes)),
        }
    }

    fn seed(&self, rows: &[StoredSpecialist]) -> Result<bool, CatalogueError> {
        let rows: Vec<CatalogueRow> = rows.iter().map(row).collect();
        self.store.catalogue_seed(&rows).map_err(failed)
    }
}
