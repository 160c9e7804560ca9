use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use core_domain::{Specialist, SpecialistId, Target, ValidationErrors, comparable_name};
use serde::Deserialize;

use crate::store::changes_between;
use crate::{
    BaseUrlPolicy, CatalogueError, CatalogueFile, CatalogueStore, DEFAULT_CATALOGUE_JSON,
    SpecialistRecord, StoreRevision, StoredSpecialist, catalogue_json,
};

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
    // Key → the index of the first specialist with it, to name both in the report.
    let mut seen_ids = HashMap::new();
    let mut seen_names = HashMap::new();
    let mut specialists = Vec::with_capacity(file.specialists.len());
    for (index, record) in file.specialists.into_iter().enumerate() {
        let prefix = format!("specialists[{index}].");
        match record.into_specialist(now) {
            Ok(specialist) => {
                let mut problems = policy.check_targets(
                    specialist.base_url(),
                    specialist.fallbacks().iter().map(Target::base_url),
                );
                let id_key = specialist.id().as_str().to_ascii_lowercase();
                if let Some(first) = earlier_holder(&mut seen_ids, id_key, index) {
                    problems.push(
                        "id",
                        format!(
                            "'{}' is used twice: specialists[{first}] has the same id (ids are \
                             case-insensitive)",
                            specialist.id()
                        ),
                    );
                }
                let name_key = comparable_name(specialist.name());
                if let Some(first) = earlier_holder(&mut seen_names, name_key, index) {
                    problems.push(
                        "name",
                        format!(
                            "'{}' is used twice: specialists[{first}] has the same name (names \
                             are compared ignoring case, width and compatibility forms)",
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
    errors.extend(alias_problems(&specialists));
    if errors.is_empty() {
        Ok(specialists)
    } else {
        Err(CatalogueError::Invalid(errors))
    }
}

/// Aliases that clash, at `specialists[i].aliases[j]`: one equal to its own specialist's id,
/// to another specialist's id, or to an earlier specialist's alias (all ignoring case), so a
/// `model` names at most one specialist.
fn alias_problems(specialists: &[Specialist]) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    let ids: HashMap<String, usize> = specialists
        .iter()
        .enumerate()
        .map(|(index, s)| (s.id().as_str().to_ascii_lowercase(), index))
        .collect();
    let mut seen_aliases = HashMap::new();
    for (index, specialist) in specialists.iter().enumerate() {
        for (position, alias) in specialist.aliases().iter().enumerate() {
            let field = format!("specialists[{index}].aliases[{position}]");
            let key = alias.to_ascii_lowercase();
            match ids.get(&key) {
                Some(&holder) if holder == index => {
                    errors.push(field, format!("'{alias}' is the specialist's own id"));
                    continue;
                }
                Some(&holder) => {
                    errors.push(
                        field,
                        format!(
                            "'{alias}' is the id of specialists[{holder}] ('{}'); aliases are \
                             case-insensitive",
                            specialists[holder].id()
                        ),
                    );
                    continue;
                }
                None => {}
            }
            if let Some(first) = earlier_holder(&mut seen_aliases, key, index)
                && first != index
            {
                errors.push(
                    field,
                    format!(
                        "'{alias}' is used twice: specialists[{first}] ('{}') has the same alias \
                         (aliases are case-insensitive)",
                        specialists[first].id()
                    ),
                );
            }
        }
    }
    errors
}

/// The index of the specialist that took `key` first, or `None` (and `index` takes it).
fn earlier_holder(seen: &mut HashMap<String, usize>, key: String, index: usize) -> Option<usize> {
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(index);
            None
        }
    }
}

/// What [`Catalogue::import`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Specialists that were new.
    pub created: usize,
    /// Known specialists that differed: each is at its next version now.
    pub updated: usize,
    /// Known specialists identical to the imported ones.
    pub unchanged: usize,
}

/// Everything `store` holds, validated as a catalogue file would be.
fn load_store(
    store: &dyn CatalogueStore,
    policy: &BaseUrlPolicy,
) -> Result<(StoreRevision, Vec<Specialist>), CatalogueError> {
    let contents = store.load()?;
    let text = format!("{{\"specialists\": [{}]}}", contents.specialists.join(","));
    Ok((
        contents.revision,
        parse_catalogue(&text, policy, Utc::now())?,
    ))
}

/// What [`Catalogue::reload_if_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The file is as we last saw it.
    Unchanged,
    /// The file changed and was loaded: this many specialists now.
    Reloaded(usize),
    /// The file is as we last saw it, and that content could not be used (the last good
    /// catalogue is still served); the problem was reported when it was first seen.
    StillInvalid,
}

fn content_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// One consistent view of the catalogue. Replaced whole, never edited in place, so a reader
/// holding one never sees half an update.
#[derive(Debug, Default)]
struct Snapshot {
    by_id: HashMap<SpecialistId, Arc<Specialist>>,
    by_name: Vec<Arc<Specialist>>,
    /// Each alias, lowercased, to its specialist (the catalogue keeps aliases unique).
    by_alias: HashMap<String, Arc<Specialist>>,
}

impl Snapshot {
    fn new(specialists: Vec<Specialist>) -> Self {
        Self::from_shared(specialists.into_iter().map(Arc::new).collect())
    }

    fn from_shared(mut by_name: Vec<Arc<Specialist>>) -> Self {
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
        let by_alias = by_name
            .iter()
            .flat_map(|s| {
                s.aliases()
                    .iter()
                    .map(|alias| (alias.to_ascii_lowercase(), Arc::clone(s)))
            })
            .collect();
        Self {
            by_id,
            by_name,
            by_alias,
        }
    }
}

/// The specialists a server knows, read by every chat call and changed by administrators.
///
/// Reads take a read lock only long enough to clone an `Arc`; a change builds a new snapshot,
/// writes the file, then swaps the snapshot in. Changes (and reloads from disk) are serialised
/// by one lock, so no update is lost however many arrive at once.
#[derive(Debug)]
pub struct Catalogue {
    current: RwLock<Arc<Snapshot>>,
    file: Option<CatalogueFile>,
    /// The shared store the catalogue is kept in instead of a file, if any.
    store: Option<Arc<dyn CatalogueStore>>,
    policy: BaseUrlPolicy,
    /// Held for the whole read-modify-write of a change or a reload; also remembers the file's
    /// content (or the store's revision) as we last wrote or read it, to notice changes made
    /// by others.
    writer: Mutex<FileSeen>,
    max_prompt_history: usize,
}

/// How many replaced system prompts a specialist keeps unless configured otherwise.
pub const DEFAULT_MAX_PROMPT_HISTORY: usize = 100;

/// The catalogue file's content (or the store's revision) as last seen, and whether it is what
/// we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSeen {
    /// The file's content hash, or the store's revision.
    hash: u64,
    /// False when that content failed to parse (we serve the last good catalogue instead).
    served: bool,
}

impl FileSeen {
    fn revision(revision: StoreRevision) -> Self {
        Self {
            hash: revision.0.cast_unsigned(),
            served: true,
        }
    }

    fn served(text: &str) -> Self {
        Self {
            hash: content_hash(text),
            served: true,
        }
    }
}

impl Catalogue {
    /// Loads the catalogue from `path`, validating every specialist against `policy`.
    ///
    /// When the file does not exist it is created with the default catalogue
    /// ([`DEFAULT_CATALOGUE_JSON`]), so a fresh install answers at once.
    pub fn open(path: impl Into<PathBuf>, policy: &BaseUrlPolicy) -> Result<Self, CatalogueError> {
        let file = CatalogueFile::new(path);
        let now = Utc::now();
        let (specialists, text) = match file.read()? {
            Some(text) => (parse_catalogue(&text, policy, now)?, text),
            None => {
                let specialists = parse_catalogue(DEFAULT_CATALOGUE_JSON, policy, now)?;
                file.write_text(DEFAULT_CATALOGUE_JSON)?;
                tracing::info!(
                    path = %file.path().display(),
                    "no specialist catalogue found; wrote the default one"
                );
                (specialists, DEFAULT_CATALOGUE_JSON.to_owned())
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
            store: None,
            policy: policy.clone(),
            writer: Mutex::new(FileSeen::served(&text)),
            max_prompt_history: DEFAULT_MAX_PROMPT_HISTORY,
        })
    }

    /// Loads the catalogue from a shared `store`, first seeding it with the default catalogue
    /// when it was never seeded nor changed (once, however many servers start together).
    pub fn open_store(
        store: Arc<dyn CatalogueStore>,
        policy: &BaseUrlPolicy,
    ) -> Result<Self, CatalogueError> {
        Self::seed_default(store.as_ref(), policy)?;
        Self::attach_store(store, policy)
    }

    fn seed_default(
        store: &dyn CatalogueStore,
        policy: &BaseUrlPolicy,
    ) -> Result<(), CatalogueError> {
        let defaults = parse_catalogue(DEFAULT_CATALOGUE_JSON, policy, Utc::now())?;
        let rows = defaults
            .iter()
            .map(StoredSpecialist::of)
            .collect::<Result<Vec<_>, _>>()?;
        if store.seed(&rows)? {
            tracing::info!(
                store = %store.describe(),
                "the specialist catalogue store was empty; seeded it with the default catalogue"
            );
        }
        Ok(())
    }

    /// Loads the catalogue from a shared `store` as it is, seeding nothing (for moving a
    /// catalogue in or out: an import into a fresh store then holds exactly what it imported,
    /// and marks the store seeded).
    pub fn attach_store(
        store: Arc<dyn CatalogueStore>,
        policy: &BaseUrlPolicy,
    ) -> Result<Self, CatalogueError> {
        let (revision, specialists) = load_store(store.as_ref(), policy)?;
        tracing::info!(
            store = %store.describe(),
            specialists = specialists.len(),
            "specialist catalogue loaded"
        );
        Ok(Self {
            current: RwLock::new(Arc::new(Snapshot::new(specialists))),
            file: None,
            store: Some(store),
            policy: policy.clone(),
            writer: Mutex::new(FileSeen::revision(revision)),
            max_prompt_history: DEFAULT_MAX_PROMPT_HISTORY,
        })
    }

    /// A catalogue held only in memory (for embedding and tests).
    pub fn in_memory(specialists: Vec<Specialist>, policy: BaseUrlPolicy) -> Self {
        Self {
            current: RwLock::new(Arc::new(Snapshot::new(specialists))),
            file: None,
            store: None,
            policy,
            writer: Mutex::new(FileSeen {
                hash: 0,
                served: true,
            }),
            max_prompt_history: DEFAULT_MAX_PROMPT_HISTORY,
        }
    }

    /// Keeps at most `max` replaced system prompts per specialist (0: none), dropping the
    /// oldest when a change adds one; so the file cannot grow without bound. A file holding
    /// more is trimmed at that specialist's next change, never on load.
    pub fn with_max_prompt_history(mut self, max: usize) -> Self {
        self.max_prompt_history = max;
        self
    }

    pub(crate) fn max_prompt_history(&self) -> usize {
        self.max_prompt_history
    }

    /// The base URL policy changes are checked against.
    pub fn policy(&self) -> &BaseUrlPolicy {
        &self.policy
    }

    /// The specialist with this id, as it is now.
    pub fn get(&self, id: &SpecialistId) -> Option<Arc<Specialist>> {
        self.snapshot().by_id.get(id).cloned()
    }

    /// The specialist a caller's `model` names: the one with that id, else the one with that
    /// alias (ignoring case).
    pub fn resolve(&self, model: &str) -> Option<Arc<Specialist>> {
        let snapshot = self.snapshot();
        if let Ok(id) = SpecialistId::parse(model)
            && let Some(found) = snapshot.by_id.get(&id)
        {
            return Some(Arc::clone(found));
        }
        snapshot.by_alias.get(&model.to_ascii_lowercase()).cloned()
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

    /// Whether the shared store the catalogue is kept in answers (one read of its revision);
    /// `None` when it is kept in a file or in memory. Blocks.
    pub fn check_store(&self) -> Option<Result<(), CatalogueError>> {
        let store = self.store.as_ref()?;
        Some(store.revision().map(|_| ()))
    }

    /// Where the catalogue is kept, for logs: the file's path, the store, or `memory`.
    pub fn source(&self) -> String {
        match (&self.file, &self.store) {
            (Some(file), _) => file.path().display().to_string(),
            (None, Some(store)) => store.describe(),
            (None, None) => "memory".to_owned(),
        }
    }

    /// Adds or replaces specialists by id (`incoming` as a catalogue file holds them): a new
    /// id is stored as it is, a known one whose fields differ becomes its next version, an
    /// identical one is left alone. All or nothing: the resulting catalogue must pass every
    /// rule a catalogue file must (unique ids and names, allowed base URLs).
    pub fn import(&self, incoming: Vec<Specialist>) -> Result<ImportCounts, CatalogueError> {
        self.change(|list| {
            let mut counts = ImportCounts::default();
            for specialist in incoming {
                match list.iter().position(|s| s.id() == specialist.id()) {
                    None => {
                        list.push(Arc::new(specialist));
                        counts.created += 1;
                    }
                    Some(index) => {
                        let spec = specialist
                            .to_draft()
                            .validate()
                            .map_err(CatalogueError::Invalid)?;
                        match list[index].revise(spec, Utc::now(), self.max_prompt_history) {
                            Some(next) => {
                                list[index] = Arc::new(next);
                                counts.updated += 1;
                            }
                            None => counts.unchanged += 1,
                        }
                    }
                }
            }
            parse_catalogue(&catalogue_json(list)?, &self.policy, Utc::now())?;
            Ok(counts)
        })
    }

    pub(crate) fn snapshot_list(&self) -> Vec<Arc<Specialist>> {
        self.snapshot().by_name.clone()
    }

    /// Runs `change` on the current list under the write lock; if it succeeds, writes the file
    /// and swaps the new list in. Readers see the old catalogue or the new one, never a mix.
    ///
    /// An edit of the file made since we last looked is taken in first (not overwritten, as it
    /// would be if it waited for the next reload poll); an edit that does not parse refuses the
    /// change until it is fixed.
    pub(crate) fn change<T>(
        &self,
        change: impl FnOnce(&mut Vec<Arc<Specialist>>) -> Result<T, CatalogueError>,
    ) -> Result<T, CatalogueError> {
        let mut seen = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = &self.file {
            self.take_in_outside_edit(file, &mut seen)?;
        }
        if let Some(store) = &self.store {
            // Someone else's change is taken in first, so the change is checked against it
            // here (the store checks again, atomically, when it applies).
            if store.revision()?.0.cast_unsigned() != seen.hash {
                self.reload_store(store.as_ref(), &mut seen)?;
            }
        }
        let before = self.snapshot_list();
        let mut list = before.clone();
        let outcome = change(&mut list)?;
        let unchanged =
            list.len() == before.len() && list.iter().zip(&before).all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return Ok(outcome);
        }
        if let Some(file) = &self.file {
            *seen = FileSeen::served(&file.write(&list)?);
        }
        if let Some(store) = &self.store {
            let changes = changes_between(&before, &list)?;
            let applied = match store.apply(&changes) {
                Ok(applied) => applied,
                Err(refused) => {
                    // Another server won a race: serve what it stored, so a retry sees it.
                    if let Err(error) = self.reload_store(store.as_ref(), &mut seen) {
                        tracing::warn!(%error, "cannot reload the catalogue after a refused change");
                    }
                    return Err(refused);
                }
            };
            let ours = seen.hash.cast_signed().checked_add(1) == Some(applied.0);
            if !ours {
                // Others changed the store between our look and our change: load it all.
                self.reload_store(store.as_ref(), &mut seen)?;
                return Ok(outcome);
            }
            *seen = FileSeen::revision(applied);
        }
        self.swap(list);
        Ok(outcome)
    }

    fn reload_store(
        &self,
        store: &dyn CatalogueStore,
        seen: &mut FileSeen,
    ) -> Result<usize, CatalogueError> {
        let (revision, specialists) = load_store(store, &self.policy)?;
        let count = specialists.len();
        self.swap(specialists.into_iter().map(Arc::new).collect());
        *seen = FileSeen::revision(revision);
        Ok(count)
    }

    fn take_in_outside_edit(
        &self,
        file: &CatalogueFile,
        seen: &mut FileSeen,
    ) -> Result<(), CatalogueError> {
        // A deleted file is simply written again by the change.
        let Some(text) = file.read()? else {
            return Ok(());
        };
        let hash = content_hash(&text);
        if hash == seen.hash && seen.served {
            return Ok(());
        }
        *seen = FileSeen {
            hash,
            served: false,
        };
        match parse_catalogue(&text, &self.policy, Utc::now()) {
            Ok(specialists) => {
                tracing::info!(
                    path = %file.path().display(),
                    "took in an edit of the catalogue file before applying a change"
                );
                self.swap(specialists.into_iter().map(Arc::new).collect());
                seen.served = true;
                Ok(())
            }
            Err(error) => {
                // Logged here as the reload poll would have, since the poll will now see
                // this content as already known.
                tracing::warn!(
                    path = %file.path().display(),
                    %error,
                    "the catalogue file on disk is invalid; keeping the last good catalogue"
                );
                Err(CatalogueError::EditedFileInvalid {
                    path: file.path().to_path_buf(),
                    reason: error.to_string(),
                })
            }
        }
    }

    fn swap(&self, list: Vec<Arc<Specialist>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(Snapshot::from_shared(list));
    }

    /// Reads the file again if someone else changed it. A file that no longer parses (or is
    /// gone) leaves the current catalogue in place; the error says why.
    pub fn reload_if_changed(&self) -> Result<Reload, CatalogueError> {
        if let Some(store) = &self.store {
            let mut seen = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let revision = store.revision()?.0.cast_unsigned();
            if revision == seen.hash {
                return Ok(if seen.served {
                    Reload::Unchanged
                } else {
                    Reload::StillInvalid
                });
            }
            // Remembered either way, so bad rows are reported once, not on every poll.
            *seen = FileSeen {
                hash: revision,
                served: false,
            };
            return self
                .reload_store(store.as_ref(), &mut seen)
                .map(Reload::Reloaded);
        }
        let Some(file) = &self.file else {
            return Ok(Reload::Unchanged);
        };
        let mut seen = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(text) = file.read()? else {
            return Err(CatalogueError::Io {
                action: "read",
                path: file.path().to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "the file is gone"),
            });
        };
        let hash = content_hash(&text);
        if hash == seen.hash {
            return Ok(if seen.served {
                Reload::Unchanged
            } else {
                Reload::StillInvalid
            });
        }
        // Remember it either way, so a bad file is reported once, not on every poll.
        *seen = FileSeen {
            hash,
            served: false,
        };
        let specialists = parse_catalogue(&text, &self.policy, Utc::now())?;
        let count = specialists.len();
        self.swap(specialists.into_iter().map(Arc::new).collect());
        seen.served = true;
        Ok(Reload::Reloaded(count))
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
    fn default_catalogue_has_the_original_four_demo_and_demo_embed() {
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
                "demo-embed",
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
                  "system_prompt": "p", "base_url": "https://169.254.169.254/v1",
                  "fallbacks": [{{"provider": "openai", "model": "n",
                                  "base_url": "http://127.0.0.1:8080/v1"}}]}}]}}"#,
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
                "specialists[4].fallbacks[0].base_url",
            ]
        );
    }

    #[test]
    fn a_file_with_look_alike_names_or_ids_is_refused_naming_both() {
        let json = format!(
            r#"{{"specialists": [{}, {}, {}, {}]}}"#,
            entry("strasse", "STRASSE"),
            entry("demo", "Demo"),
            entry("other", "Straße"),
            entry("DEMO", "Ｄｅｍｏ２"),
        );
        let CatalogueError::Invalid(errors) =
            parse_catalogue(&json, &BaseUrlPolicy::default(), Utc::now()).unwrap_err()
        else {
            panic!("expected Invalid");
        };
        let found: Vec<(&str, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "specialists[2].name");
        assert!(found[0].1.contains("specialists[0]"), "{}", found[0].1);
        assert_eq!(found[1].0, "specialists[3].id");
        assert!(found[1].1.contains("specialists[1]"), "{}", found[1].1);
    }

    #[test]
    fn a_file_with_hidden_characters_is_refused() {
        let json = format!(r#"{{"specialists": [{}]}}"#, entry("a", r"De\u200bmo"));
        let err = parse_catalogue(&json, &BaseUrlPolicy::default(), Utc::now()).unwrap_err();
        assert_eq!(fields(err), ["specialists[0].name"]);
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
        assert_eq!(catalogue.len(), 6);
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
        let catalogue = Catalogue::in_memory(list, BaseUrlPolicy::default());
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

    #[test]
    fn aliases_that_clash_in_a_file_name_both_specialists() {
        let with = |id: &str, name: &str, aliases: &str| {
            format!(
                r#"{{"id": "{id}", "name": "{name}", "provider": "mock", "model": "m",
                    "system_prompt": "p", "aliases": {aliases}}}"#
            )
        };
        let json = format!(
            r#"{{"specialists": [{}, {}, {}]}}"#,
            with("a", "Alpha", r#"["shared", "A"]"#),
            with("b", "Beta", r#"["SHARED", "c"]"#),
            with("c", "Gamma", "[]"),
        );
        let err = parse_catalogue(&json, &BaseUrlPolicy::default(), Utc::now()).unwrap_err();
        let CatalogueError::Invalid(errors) = err else {
            panic!("not a validation failure: {err}")
        };
        let found: Vec<(&str, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, "specialists[0].aliases[1]");
        assert!(found[0].1.contains("own id"));
        assert_eq!(found[1].0, "specialists[1].aliases[0]");
        assert!(found[1].1.contains("specialists[0] ('a')"));
        assert_eq!(found[2].0, "specialists[1].aliases[1]");
        assert!(found[2].1.contains("specialists[2] ('c')"));

        let fine = format!(
            r#"{{"specialists": [{}, {}]}}"#,
            with("a", "Alpha", r#"["x"]"#),
            with("b", "Beta", r#"["y"]"#),
        );
        let catalogue = Catalogue::in_memory(
            parse_catalogue(&fine, &BaseUrlPolicy::default(), Utc::now()).unwrap(),
            BaseUrlPolicy::default(),
        );
        assert_eq!(catalogue.resolve("Y").unwrap().id().as_str(), "b");
    }
}
