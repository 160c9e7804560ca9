//! A specialist's prompt history: which prompt each version had, as far as the catalogue
//! keeps it, a line diff between two versions, and rolling the prompt back to an older one
//! (which makes a new version, so the rollback itself is in the history).
//!
//! The catalogue archives the prompt a version had whenever a change replaces it
//! (`PromptRevision { system_prompt, version }`), keeping only the newest few. A version
//! without an entry had the prompt of the next archived version after it (or the current
//! prompt), because its change did not touch the prompt. Versions older than the oldest
//! archived entry cannot be told apart from a dropped entry, so they are shown as beyond the
//! kept history rather than guessed.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use core_domain::Specialist;
use maud::{Markup, html};
use serde::Deserialize;

use super::diff::{DiffLine, line_diff};
use super::{change, detail_path, find, not_found, notice, parse_id, refused, when};
use crate::AppState;
use crate::console::{
    Admin, ConsoleError, Nav, Viewer, check_csrf, csrf_field, error_page, ok, page, see_other,
};

/// The most versions listed (and offered to compare): newest first.
const MAX_ROWS: usize = 100;

/// The oldest version whose prompt is known: the oldest archived one, or the current version
/// when nothing is archived.
pub(crate) fn oldest_known(specialist: &Specialist) -> u32 {
    specialist
        .prompt_history()
        .iter()
        .map(|revision| revision.version)
        .filter(|version| *version < specialist.version())
        .min()
        .unwrap_or_else(|| specialist.version())
}

/// The system prompt `version` of `specialist` had, if the history still tells.
pub(crate) fn prompt_of(specialist: &Specialist, version: u32) -> Option<&str> {
    if version > specialist.version() || version < oldest_known(specialist) {
        return None;
    }
    // The first prompt archived at or after `version` is the one it had: the changes in
    // between left the prompt alone.
    let archived = specialist
        .prompt_history()
        .iter()
        .filter(|revision| revision.version >= version && revision.version < specialist.version())
        .min_by_key(|revision| revision.version);
    Some(archived.map_or(specialist.system_prompt(), |revision| {
        revision.system_prompt.as_str()
    }))
}

/// `?from=A&to=B` (as text: a version that is not a number is a message, not a 400), and the
/// notice after a rollback.
#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    done: Option<String>,
}

/// `GET /console/specialists/{id}/history`: the versions, a diff of two, and (for
/// administrators) a rollback button on each older version.
pub(crate) async fn versions(
    viewer: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> HttpResponse {
    let Some(specialist) = find(&state, &id) else {
        return not_found(&viewer, &id);
    };
    let s = specialist.as_ref();
    let current = s.version();
    let oldest = oldest_known(s);
    let listed: Vec<u32> = (oldest..=current).rev().take(MAX_ROWS).collect();
    let path = detail_path(s.id());
    let newest_archived = listed.get(1).copied().unwrap_or(current);
    let from = query.from.as_deref().unwrap_or("");
    let to = query.to.as_deref().unwrap_or("");
    let chosen = |text: &str, default: u32| text.trim().parse::<u32>().unwrap_or(default);
    let body = html! {
        (notice(query.done.as_deref()))
        p {
            "The history keeps system prompts only: other fields are not versioned by the \
            catalogue, so each version below is shown by the prompt it had. Only the newest \
            replaced prompts are kept."
        }
        p { a href=(path) { "Back to " (s.name()) } }
        form #compare.filters method="get" action={ (path) "/history" } {
            label for="compare-from" { "From version"
                select #compare-from name="from" {
                    @for version in &listed {
                        option value=(version) selected[*version == chosen(from, newest_archived)] { (version) }
                    }
                }
            }
            label for="compare-to" { "To version"
                select #compare-to name="to" {
                    @for version in &listed {
                        option value=(version) selected[*version == chosen(to, current)] { (version) }
                    }
                }
            }
            button type="submit" { "Compare prompts" }
        }
        @if query.from.is_some() || query.to.is_some() {
            (comparison(s, from, to))
        }
        table #versions {
            caption { "Versions of " (s.name()) ", newest first" }
            thead { tr {
                th scope="col" { "Version" }
                th scope="col" { "Prompt" }
                th scope="col" { "Prompt replaced" }
                th scope="col" { "Actions" }
            } }
            tbody {
                @for version in &listed {
                    @let prompt = prompt_of(s, *version).unwrap_or_default();
                    tr data-version=(version) {
                        td.num { (version) @if *version == current { " (current)" } }
                        td {
                            (preview(prompt))
                            @if *version != current && prompt == s.system_prompt() { " (same as now)" }
                        }
                        td {
                            @match s.prompt_history().iter().find(|r| r.version == *version) {
                                Some(revision) => (when(revision.replaced_at)),
                                None => @if *version == current { "in use" } @else { "—" },
                            }
                        }
                        td {
                            @if *version != current {
                                div.actions {
                                    a href={ (path) "/history?from=" (version) "&to=" (current) } {
                                        "Compare with now"
                                    }
                                    @if viewer.is_admin() {
                                        form method="post" action={ (path) "/rollback" } {
                                            (csrf_field(&viewer))
                                            input type="hidden" name="version" value=(version);
                                            button.rollback.secondary id={ "rollback-" (version) } type="submit" {
                                                "Roll back to version " (version) "'s prompt"
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if listed.len() < (oldest..=current).count() {
            p { "Only the newest " (MAX_ROWS) " versions are listed." }
        }
        @if oldest > 1 {
            p #beyond {
                @if oldest == 2 { "Version 1 is" } @else { "Versions 1 to " (oldest - 1) " are" }
                " beyond the kept history: their prompts are no longer kept."
            }
        }
    };
    ok(page(
        Some(&viewer),
        Nav::Specialists,
        &format!("History of {}", s.name()),
        body,
    ))
}

/// The first line of a prompt, shortened, and its length.
fn preview(prompt: &str) -> Markup {
    let first = prompt.lines().next().unwrap_or_default();
    let short: String = first.chars().take(80).collect();
    let cut = short.len() < first.len() || prompt.lines().nth(1).is_some();
    html! {
        @if prompt.is_empty() { "(no prompt)" } @else {
            (short) @if cut { "…" } " "
            span.muted { "(" (prompt.chars().count()) " characters)" }
        }
    }
}

/// The diff of the prompts of versions `from` and `to` (as typed), or why there is none.
fn comparison(s: &Specialist, from: &str, to: &str) -> Markup {
    let version = |text: &str| text.trim().parse::<u32>().ok();
    let (Some(from), Some(to)) = (version(from), version(to)) else {
        return html! { p.error role="alert" { "Choose two versions to compare." } };
    };
    let (Some(old), Some(new)) = (prompt_of(s, from), prompt_of(s, to)) else {
        return html! {
            p.error role="alert" {
                "Only versions " (oldest_known(s)) " to " (s.version()) " can be compared: the \
                prompts of other versions are not kept."
            }
        };
    };
    let lines = line_diff(old, new);
    let removed = lines
        .iter()
        .filter(|l| matches!(l, DiffLine::Removed(_)))
        .count();
    let added = lines
        .iter()
        .filter(|l| matches!(l, DiffLine::Added(_)))
        .count();
    html! {
        h2 { "Prompt of version " (from) " → version " (to) }
        p role="status" {
            @if removed == 0 && added == 0 { "The prompts are the same." }
            @else {
                (removed) @if removed == 1 { " line" } @else { " lines" } " removed, "
                (added) " added."
            }
        }
        div #diff.diff {
            @for line in &lines {
                @match line {
                    DiffLine::Same(text) => span { (text) },
                    DiffLine::Removed(text) => del { (text) },
                    DiffLine::Added(text) => ins { (text) },
                }
            }
        }
    }
}

/// The rollback form: the version whose prompt comes back.
/// (Every field defaults to empty: a form without its token is refused as forged, 403, not
/// as unreadable.)
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RollbackForm {
    csrf: String,
    version: String,
}

/// `POST /console/specialists/{id}/rollback` (administrators): a new version whose prompt is
/// the one `version` had (a change of the prompt only, through the catalogue like any edit).
pub(crate) async fn rollback(
    Admin(viewer): Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<RollbackForm>,
) -> Result<HttpResponse, ConsoleError> {
    check_csrf(&viewer, &form.csrf)?;
    let Some(specialist) = find(&state, &id) else {
        return Ok(not_found(&viewer, &id));
    };
    let Ok(version) = form.version.trim().parse::<u32>() else {
        return Err(ConsoleError::BadForm(
            "the rollback form names no version".to_owned(),
        ));
    };
    let Some(prompt) = prompt_of(&specialist, version).map(str::to_owned) else {
        return Ok(error_page(
            Some(&viewer),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not rolled back",
            &format!(
                "Version {version} is beyond the kept history of this specialist: its prompt is \
                 no longer kept. Nothing was changed."
            ),
        ));
    };
    let Some(id) = parse_id(&id) else {
        return Ok(not_found(&viewer, &id));
    };
    let before = specialist.version();
    let catalogue = state.catalogue.clone();
    let rolled = change(move || {
        catalogue.update(&id, None, |mut draft| {
            draft.system_prompt = prompt;
            draft
        })
    })
    .await?;
    Ok(match rolled {
        Ok(updated) if updated.version() == before => see_other(&format!(
            "{}/history?done=unchanged",
            detail_path(updated.id())
        )),
        Ok(updated) => see_other(&format!(
            "{}/history?done=rolled-back&from={}&to={}",
            detail_path(updated.id()),
            updated.version().saturating_sub(1),
            updated.version()
        )),
        Err(error) => refused(&viewer, &error),
    })
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use chrono::Utc;
    use core_domain::{PromptRevision, SpecialistDraft, SpecialistId};

    use super::*;

    fn with_history(version: u32, current: &str, history: &[(u32, &str)]) -> Specialist {
        let draft = SpecialistDraft {
            temperature: 0.7,
            max_tokens: 100,
            ..SpecialistDraft::new("Tax", "mock", "mock-echo", current)
        };
        Specialist::restore(
            SpecialistId::parse("tax").unwrap(),
            draft.validate().unwrap(),
            Utc::now(),
            Utc::now(),
            NonZeroU32::new(version).unwrap(),
            history
                .iter()
                .map(|(version, prompt)| PromptRevision {
                    system_prompt: (*prompt).to_owned(),
                    version: *version,
                    replaced_at: Utc::now(),
                })
                .collect(),
        )
    }

    #[test]
    fn each_version_has_the_prompt_of_the_next_archived_one_or_the_current() {
        // v2 and v5 replaced prompts; v3, v4 changed other fields; v6, v7 have the current.
        let s = with_history(7, "P7", &[(2, "P2"), (5, "P5")]);
        let prompts: Vec<Option<&str>> = (0..=8).map(|v| prompt_of(&s, v)).collect();
        assert_eq!(
            prompts,
            [
                None,
                None,
                Some("P2"),
                Some("P5"),
                Some("P5"),
                Some("P5"),
                Some("P7"),
                Some("P7"),
                None
            ]
        );
        assert_eq!(oldest_known(&s), 2, "version 1 is beyond the kept history");
    }

    #[test]
    fn without_archived_prompts_only_the_current_version_is_known() {
        let s = with_history(3, "Now", &[]);
        assert_eq!(oldest_known(&s), 3);
        assert_eq!(prompt_of(&s, 3), Some("Now"));
        assert_eq!(prompt_of(&s, 2), None);
        let first = with_history(1, "First", &[]);
        assert_eq!(prompt_of(&first, 1), Some("First"));
    }
}
