//! The console's specialists pages: the catalogue as a table, one specialist's fields, and
//! (administrators only) creating, editing, duplicating and deleting them and rolling a
//! prompt back to an earlier version.
//!
//! Every change goes through the same catalogue calls as the API's `/specialists` handlers
//! (`create`, `update` with the version it was based on, `duplicate`, `delete`), so the
//! console can do nothing the API would refuse, and a change reaches every instance the same
//! way. Forms post, then redirect to a page that says what happened (`?done=`).

mod diff;
mod form;
mod history;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, Scope, web};
use chrono::{DateTime, Utc};
use core_domain::{Specialist, SpecialistId};
use maud::{Markup, html};
use serde::Deserialize;
use specialists::CatalogueError;

use super::units::usd;
use super::{Admin, ConsoleError, Nav, Viewer, check_csrf, csrf_field, error_page, ok, page};
use crate::AppState;

/// Rows on one page of the list: keeps the page small however large the catalogue grows.
const ROWS_PER_PAGE: usize = 200;

/// Adds this page's routes to the console's scope (`/specialists/new` before
/// `/specialists/{id}`, which would otherwise take "new" for an id).
pub(crate) fn routes(scope: Scope) -> Scope {
    scope
        .route("/specialists", web::get().to(list))
        .route("/specialists/new", web::get().to(form::new_form))
        .route("/specialists/new", web::post().to(form::create))
        .route("/specialists/{id}", web::get().to(detail))
        .route("/specialists/{id}/edit", web::get().to(form::edit_form))
        .route("/specialists/{id}/edit", web::post().to(form::save))
        .route("/specialists/{id}/duplicate", web::post().to(duplicate))
        .route("/specialists/{id}/delete", web::get().to(confirm_delete))
        .route("/specialists/{id}/delete", web::post().to(delete))
        .route(
            "/specialists/{id}/history",
            web::get().to(history::versions),
        )
        .route(
            "/specialists/{id}/rollback",
            web::post().to(history::rollback),
        )
}

/// What the page after a change says happened (`?done=`): a fixed sentence per change, so
/// nothing a link carries is echoed into the page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

impl Done {
    fn notice(done: Option<&str>) -> Option<&'static str> {
        Some(match done? {
            "created" => "The specialist was created.",
            "saved" => "Your changes were saved as a new version.",
            "unchanged" => "Nothing was changed, so the version stayed the same.",
            "duplicated" => "This is the copy. It has no aliases; the original keeps them.",
            "deleted" => "The specialist was deleted.",
            "rolled-back" => {
                "The prompt was rolled back: the old prompt is now the newest version."
            }
            _ => return None,
        })
    }
}

fn notice(done: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = Done::notice(done) {
            p.notice role="status" { (text) }
        }
    }
}

/// `?page=` of the list (as text: a page that is not a number shows the first), and the
/// notice after a change.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    page: Option<String>,
    done: Option<String>,
}

/// `GET /console/specialists`: every specialist, sorted by name.
async fn list(
    viewer: Viewer,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let all = state.catalogue.list();
    let pages = all.len().div_ceil(ROWS_PER_PAGE).max(1);
    let page_number = query
        .page
        .as_deref()
        .and_then(|page| page.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let shown = all
        .iter()
        .skip((page_number - 1) * ROWS_PER_PAGE)
        .take(ROWS_PER_PAGE);
    let body = html! {
        (notice(query.done.as_deref()))
        @if viewer.is_admin() {
            p.actions { a.button #new-specialist href="/console/specialists/new" { "New specialist" } }
        }
        table #specialists {
            caption { (all.len()) " specialists" @if pages > 1 { ", page " (page_number) " of " (pages) } }
            thead { tr {
                th scope="col" { "Name" }
                th scope="col" { "Id" }
                th scope="col" { "Kind" }
                th scope="col" { "Provider / model" }
                th scope="col" { "Fallbacks" }
                th scope="col" { "Version" }
                th scope="col" { "Updated" }
            } }
            tbody {
                @for specialist in shown {
                    tr data-specialist=(specialist.id()) {
                        td { a href=(detail_path(specialist.id())) { (specialist.name()) } }
                        td { code { (specialist.id()) } }
                        td { (specialist.kind()) }
                        td { (specialist.provider().as_str()) " / " (specialist.model()) }
                        td.num { (specialist.fallbacks().len()) }
                        td.num { (specialist.version()) }
                        td { (when(specialist.updated_at())) }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page_number > 1 {
                    a href={ "/console/specialists?page=" (page_number - 1) } { "Previous" }
                }
                @if page_number < pages {
                    a href={ "/console/specialists?page=" (page_number + 1) } { "Next" }
                }
            }
        }
    };
    ok(page(Some(&viewer), Nav::Specialists, "Specialists", body))
}

/// `GET /console/specialists/{id}`: every field, and the actions the viewer may take.
async fn detail(
    viewer: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    done: web::Query<Done>,
) -> HttpResponse {
    let Some(specialist) = find(&state, &id) else {
        return not_found(&viewer, &id);
    };
    let s = specialist.as_ref();
    let path = detail_path(s.id());
    let body = html! {
        (notice(done.done.as_deref()))
        div.actions {
            @if viewer.is_admin() {
                a.button #edit href={ (path) "/edit" } { "Edit" }
                form method="post" action={ (path) "/duplicate" } {
                    (csrf_field(&viewer))
                    button.secondary #duplicate type="submit" { "Duplicate" }
                }
                form method="get" action={ (path) "/delete" } {
                    button.danger #delete type="submit" { "Delete…" }
                }
            }
            a #history href={ (path) "/history" } { "Prompt history" }
        }
        dl #specialist-detail.fields {
            (row("Id", html! { code { (s.id()) } }))
            (row("Name", html! { (s.name()) }))
            (row("Description", html! { @if s.description().is_empty() { "—" } @else { (s.description()) } }))
            (row("Kind", html! { (s.kind()) }))
            (row("Provider", html! { (s.provider().as_str()) }))
            (row("Model", html! { (s.model()) }))
            (row("Base URL", html! { (s.base_url().unwrap_or("the provider's configured one")) }))
            @if s.kind() == core_domain::SpecialistKind::Chat {
                (row("Temperature", html! { (s.temperature()) }))
                (row("Max tokens", html! { (s.max_tokens()) }))
            } @else {
                (row("Dimensions", html! { (s.dimensions().map_or_else(|| "the model's own".to_owned(), |d| d.to_string())) }))
            }
            (row("Tools allowed", html! { (yes_no(s.allow_tools())) }))
            (row("Images allowed", html! { (yes_no(s.allow_images())) }))
            (row("Streams continue on a fallback", html! { (yes_no(s.continue_streams())) }))
            (row("Aliases", html! { @if s.aliases().is_empty() { "none" } @else { (s.aliases().join(", ")) } }))
            (row("Pricing (USD per million tokens)", pricing(s)))
            (row("Version", html! { (s.version()) }))
            (row("Created", when(s.created_at())))
            (row("Updated", when(s.updated_at())))
        }
        h2 { "Fallbacks" }
        @if s.fallbacks().is_empty() {
            p { "None: a failed call is not retried elsewhere." }
        } @else {
            table #fallbacks {
                thead { tr {
                    th scope="col" { "Order" }
                    th scope="col" { "Provider" }
                    th scope="col" { "Model" }
                    th scope="col" { "Base URL" }
                } }
                tbody {
                    @for (index, target) in s.fallbacks().iter().enumerate() {
                        tr {
                            td.num { (index + 1) }
                            td { (target.provider().as_str()) }
                            td { (target.model()) }
                            td { (target.base_url().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
        @if s.kind() == core_domain::SpecialistKind::Chat {
            h2 { "System prompt" }
            pre.prompt { (s.system_prompt()) }
        }
    };
    ok(page(Some(&viewer), Nav::Specialists, s.name(), body))
}

fn row(term: &str, value: Markup) -> Markup {
    html! { div { dt { (term) } dd { (value) } } }
}

fn yes_no(allowed: bool) -> &'static str {
    if allowed { "yes" } else { "no" }
}

fn pricing(s: &Specialist) -> Markup {
    html! {
        @match s.pricing() {
            None => "from the price table",
            Some(p) => {
                "input " (usd(p.input_per_1m())) ", output " (usd(p.output_per_1m()))
                @if let Some(cached) = p.cached_input_per_1m() { ", cached input " (usd(cached)) }
                @if let Some(write) = p.cache_write_per_1m() { ", cache write " (usd(write)) }
            }
        }
    }
}

fn when(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M UTC")) } }
}

/// `POST /console/specialists/{id}/duplicate` (administrators): a copy with a new id.
async fn duplicate(
    Admin(viewer): Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, ConsoleError> {
    check_csrf(&viewer, &form.csrf)?;
    let Some(id) = parse_id(&id) else {
        return Ok(not_found(&viewer, &id));
    };
    let catalogue = state.catalogue.clone();
    let copied = change(move || catalogue.duplicate(&id, crate::specialists::fresh_id())).await?;
    Ok(match copied {
        Ok(copy) => super::see_other(&format!("{}?done=duplicated", detail_path(copy.id()))),
        Err(error) => refused(&viewer, &error),
    })
}

/// A form whose only field is the anti-forgery token.
/// A missing token reads as empty, so the form is refused as forged (403).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CsrfOnly {
    csrf: String,
}

/// The delete form: the token and the version the person saw when they confirmed.
/// A missing token reads as empty, so the form is refused as forged (403).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeleteForm {
    csrf: String,
    version: Option<u32>,
}

/// `GET /console/specialists/{id}/delete` (administrators): asks before deleting.
async fn confirm_delete(
    Admin(viewer): Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let Some(specialist) = find(&state, &id) else {
        return not_found(&viewer, &id);
    };
    let path = detail_path(specialist.id());
    let body = html! {
        p {
            "Delete " strong { (specialist.name()) } " (" code { (specialist.id()) } "), version "
            (specialist.version()) "? Callers that name it or one of its aliases will get an \
            error from then on. Its usage records stay."
        }
        div.actions {
            form method="post" action={ (path) "/delete" } {
                (csrf_field(&viewer))
                input type="hidden" name="version" value=(specialist.version());
                button.danger #confirm-delete type="submit" { "Delete for good" }
            }
            a href=(path) { "Keep it" }
        }
    };
    ok(page(
        Some(&viewer),
        Nav::Specialists,
        "Delete specialist",
        body,
    ))
}

/// `POST /console/specialists/{id}/delete` (administrators): deletes the version confirmed.
async fn delete(
    Admin(viewer): Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, ConsoleError> {
    check_csrf(&viewer, &form.csrf)?;
    let Some(id) = parse_id(&id) else {
        return Ok(not_found(&viewer, &id));
    };
    let catalogue = state.catalogue.clone();
    let expected = form.version;
    let deleted = change(move || catalogue.delete(&id, expected)).await?;
    Ok(match deleted {
        Ok(_) => super::see_other("/console/specialists?done=deleted"),
        Err(error) => refused(&viewer, &error),
    })
}

/// The specialist `raw` names, if any.
fn find(state: &AppState, raw: &str) -> Option<Arc<Specialist>> {
    state.catalogue.get(&parse_id(raw)?)
}

/// An id in a path that cannot be an id names no specialist.
fn parse_id(raw: &str) -> Option<SpecialistId> {
    SpecialistId::parse(raw).ok()
}

fn detail_path(id: &SpecialistId) -> String {
    // Ids are slugs or UUIDs: nothing in them needs escaping in a path.
    format!("/console/specialists/{id}")
}

fn not_found(viewer: &Viewer, raw: &str) -> HttpResponse {
    error_page(
        Some(viewer),
        StatusCode::NOT_FOUND,
        "No such specialist",
        &format!("There is no specialist with id '{raw}'. It may have been deleted."),
    )
}

/// Runs a catalogue change on a blocking thread (it writes and syncs a file, or a database).
async fn change<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CatalogueError> + Send + 'static,
) -> Result<Result<T, CatalogueError>, ConsoleError> {
    web::block(work).await.map_err(|e| {
        tracing::error!(error = %e, "console catalogue task failed");
        ConsoleError::Internal(format!("the catalogue task failed: {e}"))
    })
}

/// The page for a change the catalogue refused (other than field problems, which the forms
/// show beside their fields).
fn refused(viewer: &Viewer, error: &CatalogueError) -> HttpResponse {
    let (status, title, message) = match error {
        CatalogueError::NotFound(id) => return not_found(viewer, id.as_str()),
        CatalogueError::VersionConflict { current, .. } => (
            StatusCode::CONFLICT,
            "Changed meanwhile",
            format!(
                "Someone changed this specialist while you were looking (it is at version \
                 {current} now). Open it again, check their change, and repeat yours if it \
                 still applies."
            ),
        ),
        CatalogueError::Invalid(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not accepted",
            format!("The catalogue refused the change: {problems}"),
        ),
        CatalogueError::AlreadyExists(_) | CatalogueError::EditedFileInvalid { .. } => {
            (StatusCode::CONFLICT, "Not changed", error.to_string())
        }
        CatalogueError::Store(_) => {
            tracing::error!(%error, "console: the catalogue store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Catalogue unavailable",
                "The specialist catalogue's database is unavailable; nothing was changed. Try \
                 again shortly; the server log has the details."
                    .to_owned(),
            )
        }
        CatalogueError::Io { .. } | CatalogueError::Malformed(_) => {
            tracing::error!(%error, "console: the specialist catalogue could not be saved");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not saved",
                "The specialist catalogue could not be saved; see the server log.".to_owned(),
            )
        }
    };
    error_page(Some(viewer), status, title, &message)
}
