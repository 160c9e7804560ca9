//! Changing the catalogue: create, replace, delete, duplicate — each validated against the
//! whole catalogue (names unique, base URLs allowed) and written to the file before it is
//! visible.

use std::sync::Arc;

use chrono::Utc;
use core_domain::{
    MAX_NAME_CHARS, Specialist, SpecialistDraft, SpecialistId, TargetDraft, ValidationErrors,
    comparable_name,
};

use crate::{Catalogue, CatalogueError};

impl Catalogue {
    /// Adds a specialist at version 1.
    pub fn create(
        &self,
        id: SpecialistId,
        draft: &SpecialistDraft,
    ) -> Result<Arc<Specialist>, CatalogueError> {
        self.change(|list| {
            refuse_taken_id(list, id.clone())?;
            let spec = self.checked(draft, list, Some(&id), None)?;
            let created = Arc::new(Specialist::new(id, spec, Utc::now()));
            list.push(Arc::clone(&created));
            Ok(created)
        })
    }

    /// Replaces a specialist's editable fields with `edit(current draft)`: the next version,
    /// with a changed system prompt archived (the newest `max_prompt_history` kept). An edit
    /// that changes nothing returns the specialist as it is: same version, same `updated_at`,
    /// no write. With `expected_version`, refuses a change based on an older version.
    pub fn update(
        &self,
        id: &SpecialistId,
        expected_version: Option<u32>,
        edit: impl FnOnce(SpecialistDraft) -> SpecialistDraft,
    ) -> Result<Arc<Specialist>, CatalogueError> {
        self.change(|list| {
            let index = find(list, id, expected_version)?;
            let draft = edit(list[index].to_draft());
            let spec = self.checked(&draft, list, Some(id), Some(id))?;
            let Some(revised) = list[index].revise(spec, Utc::now(), self.max_prompt_history())
            else {
                return Ok(Arc::clone(&list[index]));
            };
            let revised = Arc::new(revised);
            list[index] = Arc::clone(&revised);
            Ok(revised)
        })
    }

    /// Removes a specialist; returns it as it was.
    pub fn delete(
        &self,
        id: &SpecialistId,
        expected_version: Option<u32>,
    ) -> Result<Arc<Specialist>, CatalogueError> {
        self.change(|list| {
            let index = find(list, id, expected_version)?;
            Ok(list.remove(index))
        })
    }

    /// Copies a specialist under `new_id`: name + " (Copy)" (" (Copy 2)", ... when taken),
    /// version 1, no history, no aliases.
    pub fn duplicate(
        &self,
        id: &SpecialistId,
        new_id: SpecialistId,
    ) -> Result<Arc<Specialist>, CatalogueError> {
        self.change(|list| {
            let index = find(list, id, None)?;
            refuse_taken_id(list, new_id.clone())?;
            let mut draft = list[index].to_draft();
            draft.name = copy_name(&draft.name, list);
            // Aliases are unique across the catalogue: the original keeps them.
            draft.aliases.clear();
            let spec = self.checked(&draft, list, Some(&new_id), None)?;
            let copy = Arc::new(Specialist::new(new_id, spec, Utc::now()));
            list.push(Arc::clone(&copy));
            Ok(copy)
        })
    }

    /// Every rule for `draft` joining `list` (in place of `replacing`, if given): its own
    /// fields, the base URL policy, a name no other specialist has, and aliases that are
    /// neither `own_id` nor another specialist's id or alias.
    fn checked(
        &self,
        draft: &SpecialistDraft,
        list: &[Arc<Specialist>],
        own_id: Option<&SpecialistId>,
        replacing: Option<&SpecialistId>,
    ) -> Result<core_domain::SpecialistSpec, CatalogueError> {
        let mut errors = ValidationErrors::new();
        let spec = draft.validate().map_err(|e| errors.extend(e)).ok();
        errors.extend_new_fields(self.problems_among(
            list,
            Some(&draft.name),
            draft.base_url.as_deref(),
            &draft.fallbacks,
            replacing,
        ));
        errors.extend_new_fields(alias_clashes(list, &draft.aliases, own_id, replacing));
        match spec {
            Some(spec) if errors.is_empty() => Ok(spec),
            _ => Err(CatalogueError::Invalid(errors)),
        }
    }

    /// The rules that depend on more than the specialist itself — the base URL policy for
    /// every target and a name no other specialist has — for fields given, checked against the
    /// catalogue as it is now. For listing with a request's other problems when it cannot be
    /// applied anyway ([`Catalogue::new_fields_or_every_problem`]); a change is checked again
    /// under the lock.
    pub(crate) fn problems_with_others(
        &self,
        name: Option<&str>,
        base_url: Option<&str>,
        fallbacks: &[TargetDraft],
        aliases: &[String],
        replacing: Option<&SpecialistId>,
    ) -> ValidationErrors {
        let list = self.snapshot_list();
        let mut errors = self.problems_among(&list, name, base_url, fallbacks, replacing);
        errors.extend_new_fields(alias_clashes(&list, aliases, replacing, replacing));
        errors
    }

    fn problems_among(
        &self,
        list: &[Arc<Specialist>],
        name: Option<&str>,
        base_url: Option<&str>,
        fallbacks: &[TargetDraft],
        replacing: Option<&SpecialistId>,
    ) -> ValidationErrors {
        let mut errors = self.policy().check_targets(
            base_url,
            fallbacks.iter().map(|target| target.base_url.as_deref()),
        );
        if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
            let key = comparable_name(name);
            if let Some(holder) = list
                .iter()
                .find(|s| Some(s.id()) != replacing && comparable_name(s.name()) == key)
            {
                errors.push(
                    "name",
                    format!(
                        "'{name}' is taken by specialist '{}' ('{}'); names are compared \
                         ignoring case, width and compatibility forms",
                        holder.id(),
                        holder.name()
                    ),
                );
            }
        }
        errors
    }
}

/// Each of `aliases` (of the specialist `own_id`, in place of `replacing` if given) that is its
/// own id, another specialist's id, or another specialist's alias, ignoring case: a `model`
/// must name one specialist.
fn alias_clashes(
    list: &[Arc<Specialist>],
    aliases: &[String],
    own_id: Option<&SpecialistId>,
    replacing: Option<&SpecialistId>,
) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    for (index, alias) in aliases.iter().enumerate() {
        let field = format!("aliases[{index}]");
        if own_id.is_some_and(|id| id.as_str().eq_ignore_ascii_case(alias)) {
            errors.push(field, format!("'{alias}' is the specialist's own id"));
            continue;
        }
        let others = list.iter().filter(|s| Some(s.id()) != replacing);
        for other in others {
            if other.id().as_str().eq_ignore_ascii_case(alias) {
                errors.push(
                    field.clone(),
                    format!(
                        "'{alias}' is the id of specialist '{}' ('{}'); aliases are \
                         case-insensitive",
                        other.id(),
                        other.name()
                    ),
                );
                break;
            }
            if other
                .aliases()
                .iter()
                .any(|a| a.eq_ignore_ascii_case(alias))
            {
                errors.push(
                    field.clone(),
                    format!(
                        "'{alias}' is taken by specialist '{}' ('{}'); aliases are \
                         case-insensitive",
                        other.id(),
                        other.name()
                    ),
                );
                break;
            }
        }
    }
    errors
}

/// A new id may not be one that exists already, nor one that differs from it only in case
/// (`DEMO` beside `demo`), nor another specialist's alias (a `model` names one specialist).
fn refuse_taken_id(list: &[Arc<Specialist>], id: SpecialistId) -> Result<(), CatalogueError> {
    let is_alias = |s: &Arc<Specialist>| {
        s.aliases()
            .iter()
            .any(|a| a.eq_ignore_ascii_case(id.as_str()))
    };
    if list
        .iter()
        .any(|s| s.id().matches_ignoring_case(&id) || is_alias(s))
    {
        Err(CatalogueError::AlreadyExists(id))
    } else {
        Ok(())
    }
}

fn find(
    list: &[Arc<Specialist>],
    id: &SpecialistId,
    expected_version: Option<u32>,
) -> Result<usize, CatalogueError> {
    let index = list
        .iter()
        .position(|s| s.id() == id)
        .ok_or_else(|| CatalogueError::NotFound(id.clone()))?;
    let current = list[index].version();
    match expected_version {
        Some(expected) if expected != current => Err(CatalogueError::VersionConflict {
            id: id.clone(),
            current,
            expected,
        }),
        _ => Ok(index),
    }
}

/// "Name (Copy)", or "Name (Copy 2)", ... — the first not taken, shortening the name so the
/// result stays within the length limit.
fn copy_name(name: &str, list: &[Arc<Specialist>]) -> String {
    let taken = |candidate: &str| {
        let key = comparable_name(candidate);
        list.iter().any(|s| comparable_name(s.name()) == key)
    };
    (1..)
        .map(|n| {
            let suffix = if n == 1 {
                " (Copy)".to_owned()
            } else {
                format!(" (Copy {n})")
            };
            let room = MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
            let base: String = name.trim().chars().take(room).collect();
            format!("{}{suffix}", base.trim_end())
        })
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use core_domain::PricingDraft;

    use super::*;
    use crate::BaseUrlPolicy;

    fn draft(name: &str) -> SpecialistDraft {
        SpecialistDraft {
            name: name.into(),
            description: String::new(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            base_url: None,
            system_prompt: "Help.".into(),
            allow_tools: true,
            allow_images: true,
            temperature: 0.5,
            max_tokens: 1000,
            pricing: Some(PricingDraft {
                input_per_1m: 1.0,
                output_per_1m: 2.0,
                ..PricingDraft::default()
            }),
            fallbacks: vec![],
            continue_streams: true,
            aliases: Vec::new(),
            kind: "chat".into(),
            dimensions: None,
        }
    }

    fn id(s: &str) -> SpecialistId {
        SpecialistId::parse(s).unwrap()
    }

    fn on_disk() -> (tempfile::TempDir, Catalogue) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("specialists.json");
        std::fs::write(&path, r#"{"specialists": []}"#).unwrap();
        let catalogue = Catalogue::open(&path, &BaseUrlPolicy::default()).unwrap();
        (dir, catalogue)
    }

    #[test]
    fn create_update_delete_are_written_to_the_file() {
        let (dir, catalogue) = on_disk();
        let path = dir.path().join("specialists.json");
        catalogue.create(id("a"), &draft("Alpha")).unwrap();
        let updated = catalogue
            .update(&id("a"), Some(1), |mut d| {
                d.system_prompt = "Help more.".into();
                d
            })
            .unwrap();
        assert_eq!(updated.version(), 2);
        assert_eq!(updated.prompt_history()[0].system_prompt, "Help.");
        let reopened = Catalogue::open(&path, &BaseUrlPolicy::default()).unwrap();
        assert_eq!(reopened.get(&id("a")).unwrap().version(), 2);

        catalogue.delete(&id("a"), None).unwrap();
        let reopened = Catalogue::open(&path, &BaseUrlPolicy::default()).unwrap();
        assert!(reopened.is_empty());
    }

    #[test]
    fn names_are_unique_case_insensitively_but_a_specialist_may_keep_its_own() {
        let (_dir, catalogue) = on_disk();
        catalogue.create(id("a"), &draft("Alpha")).unwrap();
        let err = catalogue.create(id("b"), &draft("ALPHA")).unwrap_err();
        assert!(matches!(err, CatalogueError::Invalid(_)), "{err}");
        catalogue
            .update(&id("a"), None, |mut d| {
                d.name = "alpha".into();
                d
            })
            .unwrap();
        assert!(matches!(
            catalogue.create(id("a"), &draft("Other")).unwrap_err(),
            CatalogueError::AlreadyExists(_)
        ));
    }

    #[test]
    fn names_are_unique_after_normalisation_and_folding_ids_ignoring_case() {
        let (_dir, catalogue) = on_disk();
        catalogue.create(id("strasse"), &draft("STRASSE")).unwrap();
        catalogue.create(id("demo"), &draft("Demo")).unwrap();
        for look_alike in ["Straße", "ｓｔｒａｓｓｅ", "DEMO", "ＤＥＭＯ"] {
            let Err(CatalogueError::Invalid(errors)) =
                catalogue.create(id("other"), &draft(look_alike))
            else {
                panic!("{look_alike} must be refused as a taken name");
            };
            assert_eq!(errors.errors()[0].field, "name", "{look_alike}");
        }
        let err = catalogue.create(id("DEMO"), &draft("Other")).unwrap_err();
        assert!(matches!(err, CatalogueError::AlreadyExists(_)), "{err}");
        let err = catalogue.duplicate(&id("demo"), id("Demo")).unwrap_err();
        assert!(matches!(err, CatalogueError::AlreadyExists(_)), "{err}");
        assert_eq!(catalogue.len(), 2);
        // A copy's name is free in the same sense.
        catalogue.create(id("copy"), &draft("demo (copy)")).unwrap();
        let copy = catalogue.duplicate(&id("demo"), id("demo2")).unwrap();
        assert_eq!(copy.name(), "Demo (Copy 2)");
    }

    #[test]
    fn an_update_that_changes_nothing_keeps_version_time_and_file() {
        let (dir, catalogue) = on_disk();
        let path = dir.path().join("specialists.json");
        let created = catalogue.create(id("a"), &draft("Alpha")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Remove the file: a write would bring it back.
        std::fs::remove_file(&path).unwrap();
        let same = catalogue.update(&id("a"), Some(1), |d| d).unwrap();
        assert!(Arc::ptr_eq(&same, &created), "the very same specialist");
        let respelled = catalogue
            .update(&id("a"), None, |mut d| {
                d.name = " Alpha ".into();
                d
            })
            .unwrap();
        assert_eq!(respelled.version(), 1);
        assert_eq!(respelled.updated_at(), created.updated_at());
        assert!(!path.exists(), "nothing was written");
        std::fs::write(&path, &text).unwrap();
        // A stale If-Match is still refused, change or not.
        catalogue
            .update(&id("a"), None, |mut d| {
                d.temperature = 0.1;
                d
            })
            .unwrap();
        assert!(matches!(
            catalogue.update(&id("a"), Some(1), |d| d).unwrap_err(),
            CatalogueError::VersionConflict { .. }
        ));
    }

    #[test]
    fn prompt_history_is_bounded_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("specialists.json");
        std::fs::write(&path, r#"{"specialists": []}"#).unwrap();
        let catalogue = Catalogue::open(&path, &BaseUrlPolicy::default())
            .unwrap()
            .with_max_prompt_history(2);
        catalogue.create(id("a"), &draft("Alpha")).unwrap();
        for n in 0..5 {
            catalogue
                .update(&id("a"), None, |mut d| {
                    d.system_prompt = format!("Prompt {n}");
                    d
                })
                .unwrap();
        }
        let reopened = Catalogue::open(&path, &BaseUrlPolicy::default()).unwrap();
        let history = reopened.get(&id("a")).unwrap().prompt_history().to_vec();
        let prompts: Vec<&str> = history.iter().map(|r| r.system_prompt.as_str()).collect();
        assert_eq!(prompts, ["Prompt 2", "Prompt 3"]);
    }

    #[test]
    fn stale_versions_and_unknown_ids_are_refused() {
        let (_dir, catalogue) = on_disk();
        catalogue.create(id("a"), &draft("Alpha")).unwrap();
        let warmer = |mut d: SpecialistDraft| {
            d.temperature += 0.1;
            d
        };
        catalogue.update(&id("a"), Some(1), warmer).unwrap();
        let err = catalogue.update(&id("a"), Some(1), warmer).unwrap_err();
        assert!(
            matches!(
                err,
                CatalogueError::VersionConflict {
                    current: 2,
                    expected: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            catalogue.delete(&id("nope"), None).unwrap_err(),
            CatalogueError::NotFound(_)
        ));
    }

    #[test]
    fn duplicates_get_a_free_copy_name_within_the_limit() {
        let (_dir, catalogue) = on_disk();
        let long = "L".repeat(MAX_NAME_CHARS);
        catalogue.create(id("a"), &draft(&long)).unwrap();
        let first = catalogue.duplicate(&id("a"), id("b")).unwrap();
        assert!(first.name().ends_with(" (Copy)"));
        assert_eq!(first.name().chars().count(), MAX_NAME_CHARS);
        let second = catalogue.duplicate(&id("a"), id("c")).unwrap();
        assert!(second.name().ends_with(" (Copy 2)"), "{}", second.name());
        assert_eq!(second.version(), 1);
        assert!(second.prompt_history().is_empty());
    }

    #[test]
    fn disallowed_base_urls_are_refused() {
        let (_dir, catalogue) = on_disk();
        let mut d = draft("Ssrf");
        d.base_url = Some("https://169.254.169.254/latest".into());
        let Err(CatalogueError::Invalid(errors)) = catalogue.create(id("s"), &d) else {
            panic!("expected a validation error");
        };
        assert_eq!(errors.errors()[0].field, "base_url");
    }

    #[test]
    fn a_fallbacks_disallowed_base_url_is_refused_on_create_and_update() {
        let (_dir, catalogue) = on_disk();
        let internal = core_domain::TargetDraft {
            provider: "openai".into(),
            model: "llama3".into(),
            base_url: Some("https://10.0.0.7/v1".into()),
        };
        let mut d = draft("Ssrf");
        d.fallbacks = vec![internal.clone()];
        let Err(CatalogueError::Invalid(errors)) = catalogue.create(id("s"), &d) else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["fallbacks[0].base_url"]);

        catalogue.create(id("s"), &draft("Ssrf")).unwrap();
        let refused = catalogue.update(&id("s"), None, |mut current| {
            current.fallbacks = vec![internal];
            current
        });
        assert!(
            matches!(&refused, Err(CatalogueError::Invalid(e)) if e.errors()[0].field == "fallbacks[0].base_url"),
            "{refused:?}"
        );
        assert!(catalogue.get(&id("s")).unwrap().fallbacks().is_empty());
    }

    #[test]
    fn an_external_edit_is_picked_up_and_a_bad_one_ignored() {
        let (dir, catalogue) = on_disk();
        let path = dir.path().join("specialists.json");
        assert_eq!(
            catalogue.reload_if_changed().unwrap(),
            crate::Reload::Unchanged
        );
        catalogue.create(id("a"), &draft("Alpha")).unwrap();
        assert_eq!(
            catalogue.reload_if_changed().unwrap(),
            crate::Reload::Unchanged,
            "our own write is not a change"
        );
        std::fs::write(
            &path,
            r#"{"specialists": [{"id": "z", "name": "Zed", "provider": "mock", "model": "m",
                "system_prompt": "p"}]}"#,
        )
        .unwrap();
        assert_eq!(
            catalogue.reload_if_changed().unwrap(),
            crate::Reload::Reloaded(1)
        );
        assert!(catalogue.get(&id("z")).is_some());
        std::fs::write(&path, "{ not json").unwrap();
        assert!(catalogue.reload_if_changed().is_err());
        assert!(
            catalogue.get(&id("z")).is_some(),
            "the last good catalogue is kept"
        );
        assert_eq!(
            catalogue.reload_if_changed().unwrap(),
            crate::Reload::StillInvalid
        );
    }

    #[test]
    fn a_change_right_after_an_outside_edit_keeps_the_edit() {
        let (dir, catalogue) = on_disk();
        let path = dir.path().join("specialists.json");
        catalogue.create(id("a"), &draft("Alpha")).unwrap();
        // Ops deploy a new catalogue; an admin's change lands before the next reload poll.
        let edited = std::fs::read_to_string(&path).unwrap().replacen(
            "\"specialists\": [",
            r#""specialists": [{"id": "ops", "name": "From Ops", "provider": "mock",
                "model": "m", "system_prompt": "p"},"#,
            1,
        );
        std::fs::write(&path, edited).unwrap();
        catalogue.create(id("b"), &draft("Beta")).unwrap();

        let reopened = Catalogue::open(&path, &BaseUrlPolicy::default()).unwrap();
        for kept in ["ops", "a", "b"] {
            assert!(reopened.get(&id(kept)).is_some(), "{kept} lost");
        }
        assert!(catalogue.get(&id("ops")).is_some(), "served at once too");
    }

    #[test]
    fn a_broken_outside_edit_refuses_changes_until_fixed_and_is_not_overwritten() {
        let (dir, catalogue) = on_disk();
        let path = dir.path().join("specialists.json");
        catalogue.create(id("a"), &draft("Alpha")).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, "{ half-written").unwrap();
        let refused = || {
            let err = catalogue.create(id("b"), &draft("Beta")).unwrap_err();
            assert!(
                matches!(err, CatalogueError::EditedFileInvalid { .. }),
                "{err}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ half-written");
            assert!(
                catalogue.get(&id("a")).is_some(),
                "still serving the last good"
            );
        };
        // Before any reload poll has seen it...
        refused();
        assert_eq!(
            catalogue.reload_if_changed().unwrap(),
            crate::Reload::StillInvalid,
            "reported (and logged) once, by the refused change"
        );
        refused();
        // ...and after a poll did.
        std::fs::write(&path, "{ half-written").unwrap();
        std::fs::write(&path, "{ half-written, again").unwrap();
        assert!(catalogue.reload_if_changed().is_err());
        std::fs::write(&path, "{ half-written").unwrap();
        assert!(catalogue.reload_if_changed().is_err());
        refused();
        std::fs::write(&path, good).unwrap();
        catalogue.create(id("b"), &draft("Beta")).unwrap();
        assert_eq!(catalogue.len(), 2);
    }

    fn aliased(name: &str, aliases: &[&str]) -> SpecialistDraft {
        SpecialistDraft {
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            ..draft(name)
        }
    }

    fn invalid_fields(err: CatalogueError) -> Vec<(String, String)> {
        match err {
            CatalogueError::Invalid(errors) => errors
                .errors()
                .iter()
                .map(|e| (e.field.clone(), e.message.clone()))
                .collect(),
            other => panic!("not a validation failure: {other}"),
        }
    }

    #[test]
    fn an_alias_is_unique_across_the_catalogue_ignoring_case_and_never_an_id() {
        let (_dir, catalogue) = on_disk();
        catalogue
            .create(id("sonnet"), &aliased("Sonnet", &["claude-sonnet-4-5"]))
            .unwrap();

        let clash = catalogue
            .create(id("other"), &aliased("Other", &["CLAUDE-SONNET-4-5"]))
            .unwrap_err();
        let found = invalid_fields(clash);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "aliases[0]");
        assert!(found[0].1.contains("'sonnet' ('Sonnet')"), "{}", found[0].1);

        let is_an_id = catalogue
            .create(id("other"), &aliased("Other", &["Sonnet"]))
            .unwrap_err();
        let found = invalid_fields(is_an_id);
        assert_eq!(found[0].0, "aliases[0]");
        assert!(found[0].1.contains("is the id of specialist 'sonnet'"));

        let own = catalogue
            .create(id("other"), &aliased("Other", &["OTHER"]))
            .unwrap_err();
        assert!(invalid_fields(own)[0].1.contains("own id"));

        let taken_id = catalogue
            .create(id("Claude-Sonnet-4-5"), &draft("Third"))
            .unwrap_err();
        assert!(
            matches!(taken_id, CatalogueError::AlreadyExists(_)),
            "a new id may not be an alias: {taken_id}"
        );

        // A specialist may keep (or re-send) its own aliases.
        let kept = catalogue
            .update(&id("sonnet"), None, |mut d| {
                d.temperature = 1.0;
                d
            })
            .unwrap();
        assert_eq!(kept.aliases(), ["claude-sonnet-4-5"]);
    }

    #[test]
    fn resolve_finds_by_id_then_alias_ignoring_case_and_follows_changes() {
        let (_dir, catalogue) = on_disk();
        catalogue
            .create(id("sonnet"), &aliased("Sonnet", &["claude-sonnet-4-5"]))
            .unwrap();
        assert_eq!(catalogue.resolve("sonnet").unwrap().id(), &id("sonnet"));
        assert_eq!(
            catalogue.resolve("Claude-Sonnet-4-5").unwrap().id(),
            &id("sonnet")
        );
        assert!(catalogue.resolve("claude-opus-4").is_none());
        assert!(catalogue.resolve("not an id").is_none());

        catalogue
            .update(&id("sonnet"), None, |mut d| {
                d.aliases = vec!["claude-opus-4".into()];
                d
            })
            .unwrap();
        assert!(
            catalogue.resolve("claude-sonnet-4-5").is_none(),
            "old alias gone"
        );
        assert_eq!(
            catalogue.resolve("claude-opus-4").unwrap().id(),
            &id("sonnet")
        );

        let copy = catalogue.duplicate(&id("sonnet"), id("copy")).unwrap();
        assert!(copy.aliases().is_empty(), "the original keeps its aliases");
    }
}
