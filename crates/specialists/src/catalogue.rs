use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use core_domain::{Specialist, SpecialistId, SpecialistRecord, ValidationErrors};
use serde::Deserialize;

use crate::{BaseUrlPolicy, CatalogueError, CatalogueFile, DEFAULT_CATALOGUE_JSON};

#[derive(Deserialize)]
struct FileFormat {
    specialists: Vec<SpecialistRecord>,
}

/// Parses and validates a catalogue file's text, reporting every problem at once with its path
/// (`specialists[3].temperature`). `now` fills timestamps the file leaves out.
pub fn parse_catalogue(
    json: &str,
    policy: &BaseUrlPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<Specialist>, CatalogueError> {
    let file: FileFormat = serde_json::from_str(json)?;
    let mut errors = ValidationErrors::new();
    let mut seen_ids = HashSet::new();
    let mut seen_names = HashSet::new();
    let mut specialists = Vec::with_capacity(file.specialists.len());
    for (index, record) in file.specialists.into_iter().enumerate() {
        let prefix = format!("specialists[{index}].");
        match Specialist::from_record(record, now) {
            Ok(specialist) => {
                let mut problems = ValidationErrors::new();
                if let Some(url) = specialist.base_url()
                    && let Err(reason) = policy.check(url)
                {
                    problems.push("base_url", reason);
                }
                if !seen_ids.insert(specialist.id().clone()) {
                    problems.push("id", format!("'{}' is used twice", specialist.id()));
                }
                if !seen_names.insert(specialist.name().to_lowercase()) {
                    problems.push(
                        "name",
                        format!(
                            "'{}' is used twice (names are case-insensitive)",
                            specialist.name()
                        ),
                    );
                }
                errors.extend(problems.with_prefix(&prefix));
                specialists.push(specialist);
            }
            Err(problems) => errors.extend(problems.with_prefix(&prefix)),
        }
    }
    if errors.is_empty() {
        Ok(specialists)
    } else {
        Err(CatalogueError::Invalid(errors))
    }
}

/// One consistent view of the catalogue. Replaced whole, never edited in place, so a reader
/// holding one never sees half an update.
#[derive(Debug, Default)]
struct Snapshot {
    by_id: HashMap<SpecialistId, Arc<Specialist>>,
    by_name: Vec<Arc<Specialist>>,
}

impl Snapshot {
    fn new(specialists: Vec<Specialist>) -> Self {
        let mut by_name: Vec<Arc<Specialist>> = specialists.into_iter().map(Arc::new).collect();
        by_name.sort_by(|a, b| {
            a.name()
                .to_lowercase()
                .cmp(&b.name().to_lowercase())
                .then_with(|| a.id().cmp(b.id()))
        });
        let by_id = by_name
            .iter()
            .map(|s| (s.id().clone(), Arc::clone(s)))
            .collect();
        Self { by_id, by_name }
    }
}

/// The specialists a server knows, read by every chat call.
///
/// Reads take a read lock only long enough to clone an `Arc`; a change swaps in a new snapshot.
#[derive(Debug)]
pub struct Catalogue {
    current: RwLock<Arc<Snapshot>>,
    file: Option<CatalogueFile>,
}

impl Catalogue {
    /// Loads the catalogue from `path`, validating every specialist against `policy`.
    ///
    /// When the file does not exist it is created with the default catalogue
    /// ([`DEFAULT_CATALOGUE_JSON`]), so a fresh install answers at once.
    pub fn open(path: impl Into<PathBuf>, policy: &BaseUrlPolicy) -> Result<Self, CatalogueError> {
        let file = CatalogueFile::new(path);
        let now = Utc::now();
        let specialists = match file.read()? {
            Some(text) => parse_catalogue(&text, policy, now)?,
            None => {
                let specialists = parse_catalogue(DEFAULT_CATALOGUE_JSON, policy, now)?;
                file.write_text(DEFAULT_CATALOGUE_JSON)?;
                tracing::info!(
                    path = %file.path().display(),
                    "no specialist catalogue found; wrote the default one"
                );
                specialists
            }
        };
        tracing::info!(
            path = %file.path().display(),
            specialists = specialists.len(),
            "specialist catalogue loaded"
        );
        Ok(Self {
            current: RwLock::new(Arc::new(Snapshot::new(specialists))),
            file: Some(file),
        })
    }

    /// A catalogue held only in memory (for embedding and tests).
    pub fn in_memory(specialists: Vec<Specialist>) -> Self {
        Self {
            current: RwLock::new(Arc::new(Snapshot::new(specialists))),
            file: None,
        }
    }

    /// The specialist with this id, as it is now.
    pub fn get(&self, id: &SpecialistId) -> Option<Arc<Specialist>> {
        self.snapshot().by_id.get(id).cloned()
    }

    /// Every specialist, sorted by name (case-insensitively).
    pub fn list(&self) -> Vec<Arc<Specialist>> {
        self.snapshot().by_name.clone()
    }

    /// How many specialists there are.
    pub fn len(&self) -> usize {
        self.snapshot().by_name.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file the catalogue is kept in, if any.
    pub fn file(&self) -> Option<&CatalogueFile> {
        self.file.as_ref()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a writer panicked after swapping in a complete snapshot or
        // before touching it; the snapshot itself is always whole.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(err: CatalogueError) -> Vec<String> {
        match err {
            CatalogueError::Invalid(e) => e.errors().iter().map(|e| e.field.clone()).collect(),
            other => panic!("expected Invalid, got {other}"),
        }
    }

    fn entry(id: &str, name: &str) -> String {
        format!(
            r#"{{"id": "{id}", "name": "{name}", "provider": "mock", "model": "m",
                "system_prompt": "p"}}"#
        )
    }

    #[test]
    fn default_catalogue_has_the_original_four_and_demo() {
        let list = parse_catalogue(
            DEFAULT_CATALOGUE_JSON,
            &BaseUrlPolicy::default(),
            Utc::now(),
        )
        .unwrap();
        let mut ids: Vec<&str> = list.iter().map(|s| s.id().as_str()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                "code_reviewer",
                "demo",
                "financial_analyst",
                "general",
                "grok_analyst"
            ]
        );
        let grok = list
            .iter()
            .find(|s| s.id().as_str() == "grok_analyst")
            .unwrap();
        assert_eq!(grok.base_url(), Some("https://api.x.ai/v1"));
        assert_eq!(grok.model(), "grok-2");
        assert!(
            list.iter()
                .all(|s| s.version() == 1 && s.prompt_history().is_empty())
        );
    }

    #[test]
    fn all_problems_are_reported_with_their_paths() {
        let json = format!(
            r#"{{"specialists": [{}, {}, {}, {{"id": "bad id", "name": "", "provider": "x",
                "model": "m", "system_prompt": "p", "temperature": 9}},
                {{"id": "ssrf", "name": "S", "provider": "openai", "model": "m",
                  "system_prompt": "p", "base_url": "https://169.254.169.254/v1"}}]}}"#,
            entry("a", "Alpha"),
            entry("a", "Beta"),
            entry("c", "ALPHA"),
        );
        let err = parse_catalogue(&json, &BaseUrlPolicy::default(), Utc::now()).unwrap_err();
        assert_eq!(
            fields(err),
            [
                "specialists[1].id",
                "specialists[2].name",
                "specialists[3].id",
                "specialists[3].name",
                "specialists[3].provider",
                "specialists[3].temperature",
                "specialists[4].base_url",
            ]
        );
    }

    #[test]
    fn wrong_shape_is_malformed() {
        let err = parse_catalogue("[1, 2]", &BaseUrlPolicy::default(), Utc::now()).unwrap_err();
        assert!(matches!(err, CatalogueError::Malformed(_)), "{err}");
    }

    #[test]
    fn open_writes_the_default_when_missing_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/specialists.json");
        let catalogue = Catalogue::open(&path, &BaseUrlPolicy::default()).unwrap();
        assert_eq!(catalogue.len(), 5);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            DEFAULT_CATALOGUE_JSON
        );

        let again = Catalogue::open(&path, &BaseUrlPolicy::default()).unwrap();
        let demo = SpecialistId::parse("demo").unwrap();
        assert_eq!(again.get(&demo).unwrap().name(), "Demo");
    }

    #[test]
    fn open_refuses_an_invalid_file_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("specialists.json");
        std::fs::write(&path, "{\"specialists\": [{\"id\": 1}]}").unwrap();
        assert!(Catalogue::open(&path, &BaseUrlPolicy::default()).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"specialists\": [{\"id\": 1}]}"
        );
    }

    #[test]
    fn list_is_sorted_by_name_case_insensitively() {
        let json = format!(
            r#"{{"specialists": [{}, {}, {}]}}"#,
            entry("z", "zeta"),
            entry("a", "Beta"),
            entry("m", "alpha")
        );
        let list = parse_catalogue(&json, &BaseUrlPolicy::default(), Utc::now()).unwrap();
        let catalogue = Catalogue::in_memory(list);
        let names: Vec<String> = catalogue
            .list()
            .iter()
            .map(|s| s.name().to_owned())
            .collect();
        assert_eq!(names, ["alpha", "Beta", "zeta"]);
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = CatalogueFile::new(dir.path().join("s.json"));
        let list = parse_catalogue(
            DEFAULT_CATALOGUE_JSON,
            &BaseUrlPolicy::default(),
            Utc::now(),
        )
        .unwrap();
        let arcs: Vec<Arc<Specialist>> = list.iter().cloned().map(Arc::new).collect();
        file.write(&arcs).unwrap();
        let text = file.read().unwrap().unwrap();
        let back = parse_catalogue(&text, &BaseUrlPolicy::default(), Utc::now()).unwrap();
        assert_eq!(back, list);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
