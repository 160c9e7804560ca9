//! The specialist form (new and edit): every editable field of a `SpecialistDraft` as text,
//! turned into the same `SpecialistPatch` the API builds from JSON, and every problem —
//! a number that is not one, or a rule the catalogue enforces — shown beside its field.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use core_domain::{
    DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, MAX_FALLBACKS, PricingDraft, ProviderKind,
    SpecialistDraft, SpecialistId, SpecialistKind, TargetDraft, ValidationErrors,
};
use maud::{Markup, html};
use specialists::{CatalogueError, SpecialistPatch};

use super::{change, detail_path, find, not_found, refused};
use crate::AppState;
use crate::console::{Admin, ConsoleError, Nav, Viewer, check_csrf, csrf_field, page, respond};

/// The pricing fields, as the form names them and as validation names them.
const PRICES: [(&str, &str, &str); 4] = [
    ("pricing_input_per_1m", "pricing.input_per_1m", "Input"),
    ("pricing_output_per_1m", "pricing.output_per_1m", "Output"),
    (
        "pricing_cached_input_per_1m",
        "pricing.cached_input_per_1m",
        "Cached input",
    ),
    (
        "pricing_cache_write_per_1m",
        "pricing.cache_write_per_1m",
        "Cache write",
    ),
];

/// The form as the browser sent it: every value as text, so that a mistyped number comes
/// back beside its field with the rest of the input rather than as a refused request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SpecialistForm {
    values: BTreeMap<String, String>,
}

/// The form turned into a patch, with the problems found reading it and, for each fallback in
/// the patch, the form row it came from (blank rows are skipped, so the two can differ).
#[derive(Debug)]
pub(crate) struct ReadForm {
    pub patch: SpecialistPatch,
    pub problems: ValidationErrors,
    pub fallback_rows: Vec<usize>,
}

impl SpecialistForm {
    /// The submitted pairs (a repeated name keeps its last value). Browsers send a
    /// textarea's line breaks as CRLF; the catalogue keeps LF, so an unchanged prompt saves as
    /// unchanged and is shown again as it was typed.
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(name, value)| (name, value.replace("\r\n", "\n")))
                .collect(),
        }
    }

    /// An empty form with the defaults a new specialist gets.
    fn blank() -> Self {
        let mut form = Self::default();
        form.set("kind", SpecialistKind::Chat.as_str());
        form.set("provider", ProviderKind::OpenAi.as_str());
        form.set("temperature", &DEFAULT_TEMPERATURE.to_string());
        form.set("max_tokens", &DEFAULT_MAX_TOKENS.to_string());
        for flag in ["allow_tools", "allow_images", "continue_streams"] {
            form.set(flag, "on");
        }
        form
    }

    /// A form holding `draft` (a specialist as it is), based on `version`.
    pub(crate) fn of(draft: &SpecialistDraft, version: u32) -> Self {
        let mut form = Self::default();
        form.set("version", &version.to_string());
        form.set("name", &draft.name);
        form.set("description", &draft.description);
        form.set("kind", &draft.kind);
        form.set("provider", &draft.provider);
        form.set("model", &draft.model);
        form.set("base_url", draft.base_url.as_deref().unwrap_or_default());
        form.set("system_prompt", &draft.system_prompt);
        form.set("temperature", &draft.temperature.to_string());
        form.set("max_tokens", &draft.max_tokens.to_string());
        for (flag, on) in [
            ("allow_tools", draft.allow_tools),
            ("allow_images", draft.allow_images),
            ("continue_streams", draft.continue_streams),
        ] {
            if on {
                form.set(flag, "on");
            }
        }
        form.set("aliases", &draft.aliases.join(", "));
        if let Some(dimensions) = draft.dimensions {
            form.set("dimensions", &dimensions.to_string());
        }
        if let Some(price) = draft.pricing {
            let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            form.set(PRICES[0].0, &price.input_per_1m.to_string());
            form.set(PRICES[1].0, &price.output_per_1m.to_string());
            form.set(PRICES[2].0, &optional(price.cached_input_per_1m));
            form.set(PRICES[3].0, &optional(price.cache_write_per_1m));
        }
        for (row, target) in draft.fallbacks.iter().enumerate() {
            form.set(&fallback_field(row, "provider"), &target.provider);
            form.set(&fallback_field(row, "model"), &target.model);
            form.set(
                &fallback_field(row, "base_url"),
                target.base_url.as_deref().unwrap_or_default(),
            );
        }
        form
    }

    fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_owned(), value.to_owned());
    }

    fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    fn is_checked(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Every editable field, as a replacement of them all (what a PUT sends): blank optional
    /// fields remove the value, blank numbers take the defaults, and text that is not a
    /// number is a problem of its field.
    pub(crate) fn read(&self) -> ReadForm {
        let mut problems = ValidationErrors::new();
        let text = |name: &str| Some(self.value(name).to_owned());
        let optional = |name: &str| match self.value(name).trim() {
            "" => None,
            value => Some(value.to_owned()),
        };
        let temperature = number::<f64>(self.value("temperature"), "temperature", &mut problems);
        let max_tokens = number::<i64>(self.value("max_tokens"), "max_tokens", &mut problems);
        let dimensions = number::<i64>(self.value("dimensions"), "dimensions", &mut problems);
        let pricing = self.pricing(&mut problems);
        let mut fallbacks = Vec::new();
        let mut fallback_rows = Vec::new();
        for row in 0..MAX_FALLBACKS {
            let [provider, model, base_url] =
                ["provider", "model", "base_url"].map(|part| optional(&fallback_field(row, part)));
            if provider.is_none() && model.is_none() && base_url.is_none() {
                continue;
            }
            fallbacks.push(TargetDraft {
                provider: provider.unwrap_or_default(),
                model: model.unwrap_or_default(),
                base_url,
            });
            fallback_rows.push(row);
        }
        let aliases: Vec<String> = self
            .value("aliases")
            .split(',')
            .map(str::trim)
            .filter(|alias| !alias.is_empty())
            .map(str::to_owned)
            .collect();
        let patch = SpecialistPatch {
            name: text("name"),
            description: text("description"),
            provider: text("provider"),
            model: text("model"),
            base_url: Some(optional("base_url")).into(),
            system_prompt: text("system_prompt"),
            allow_tools: Some(self.is_checked("allow_tools")),
            allow_images: Some(self.is_checked("allow_images")),
            temperature,
            max_tokens,
            pricing: Some(pricing).into(),
            fallbacks: Some(Some(fallbacks)).into(),
            continue_streams: Some(self.is_checked("continue_streams")),
            aliases: Some(Some(aliases)).into(),
            kind: text("kind"),
            dimensions: Some(dimensions).into(),
        };
        ReadForm {
            patch,
            problems,
            fallback_rows,
        }
    }

    /// The price, if any price field is filled in: input and output are then required.
    fn pricing(&self, problems: &mut ValidationErrors) -> Option<PricingDraft> {
        if PRICES
            .iter()
            .all(|(name, ..)| self.value(name).trim().is_empty())
        {
            return None;
        }
        let [input, output, cached, write] =
            PRICES.map(|(name, field, _)| number::<f64>(self.value(name), field, problems));
        for (value, field) in [(input, PRICES[0].1), (output, PRICES[1].1)] {
            if value.is_none() && !problems.errors().iter().any(|e| e.field == field) {
                problems.push(field, "is required when a price is given");
            }
        }
        Some(PricingDraft {
            input_per_1m: input?,
            output_per_1m: output?,
            cached_input_per_1m: cached,
            cache_write_per_1m: write,
        })
    }
}

fn fallback_field(row: usize, part: &str) -> String {
    format!("fallback_{row}_{part}")
}

/// `text` as a number: `None` when blank (the default applies), or when it is not a number
/// (a problem of `field`, in words a person can act on).
fn number<T: std::str::FromStr>(
    text: &str,
    field: &str,
    problems: &mut ValidationErrors,
) -> Option<T> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let parsed = text.parse::<T>().ok();
    if parsed.is_none() {
        problems.push(field, format!("'{text}' is not a number"));
    }
    parsed
}

/// Problems placed on the form: beside the field each concerns, and all in a list at the top.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    beside: BTreeMap<String, Vec<String>>,
    listed: Vec<(String, String)>,
}

impl Problems {
    /// `errors` (named as validation names fields) placed on the form's fields.
    pub(crate) fn of(errors: &ValidationErrors, fallback_rows: &[usize]) -> Self {
        let mut problems = Self::default();
        for error in errors.errors() {
            let (field, message) = form_field(&error.field, &error.message, fallback_rows);
            problems.add(field, message);
        }
        problems
    }

    fn add(&mut self, field: String, message: String) {
        self.beside
            .entry(field.clone())
            .or_default()
            .push(message.clone());
        self.listed.push((field, message));
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    fn on(&self, field: &str) -> Option<String> {
        self.beside.get(field).map(|messages| messages.join(" "))
    }
}

/// The form field a validation problem belongs beside, and its message as shown there:
/// `pricing.input_per_1m` is `pricing_input_per_1m`, `fallbacks[0].model` the model of the
/// form row that fallback came from, `aliases[2]` the aliases field ("alias 3: ...").
fn form_field(field: &str, message: &str, fallback_rows: &[usize]) -> (String, String) {
    if let Some(price) = field.strip_prefix("pricing.") {
        return (format!("pricing_{price}"), message.to_owned());
    }
    if let Some(rest) = field.strip_prefix("aliases[") {
        let number = rest
            .trim_end_matches(']')
            .parse::<usize>()
            .map_or_else(|_| rest.to_owned(), |n| (n + 1).to_string());
        return ("aliases".to_owned(), format!("alias {number}: {message}"));
    }
    if let Some(rest) = field.strip_prefix("fallbacks[") {
        let (index, part) = rest.split_once(']').unwrap_or((rest, ""));
        let row = index
            .parse::<usize>()
            .ok()
            .and_then(|i| fallback_rows.get(i).copied());
        if let Some(row) = row {
            let part = part.strip_prefix('.').unwrap_or("provider");
            let part = if part.is_empty() { "provider" } else { part };
            return (fallback_field(row, part), message.to_owned());
        }
        return ("fallbacks".to_owned(), message.to_owned());
    }
    (field.to_owned(), message.to_owned())
}

/// What the person reads as the name of a form field (in the list of problems).
fn label_of(field: &str) -> String {
    let known = [
        ("id", "Id"),
        ("name", "Name"),
        ("description", "Description"),
        ("kind", "Kind"),
        ("provider", "Provider"),
        ("model", "Model"),
        ("base_url", "Base URL"),
        ("system_prompt", "System prompt"),
        ("temperature", "Temperature"),
        ("max_tokens", "Max tokens"),
        ("dimensions", "Dimensions"),
        ("aliases", "Aliases"),
        ("fallbacks", "Fallbacks"),
    ];
    if let Some((_, label)) = known.iter().find(|(name, _)| *name == field) {
        return (*label).to_owned();
    }
    if let Some((_, _, label)) = PRICES.iter().find(|(name, ..)| *name == field) {
        return format!("{label} price");
    }
    if let Some(rest) = field.strip_prefix("fallback_")
        && let Some((row, part)) = rest.split_once('_')
    {
        let row = row.parse::<usize>().map_or(0, |r| r + 1);
        return format!("Fallback {row} {}", part.replace('_', " "));
    }
    field.to_owned()
}

/// Whether the form makes a new specialist or edits one.
#[derive(Debug, Clone, Copy)]
enum Purpose<'a> {
    New,
    Edit { id: &'a SpecialistId, name: &'a str },
}

/// The form page: `form`'s values, `problems` beside their fields and listed at the top,
/// `banner` (a conflict) above everything.
fn form_page(
    viewer: &Viewer,
    purpose: Purpose<'_>,
    form: &SpecialistForm,
    problems: &Problems,
    banner: Option<Markup>,
) -> Markup {
    let (title, action) = match purpose {
        Purpose::New => (
            "New specialist".to_owned(),
            "/console/specialists/new".to_owned(),
        ),
        Purpose::Edit { id, name } => (format!("Edit {name}"), format!("{}/edit", detail_path(id))),
    };
    let field =
        |name: &str, label: &str, hint: Option<&str>| text_field(form, problems, name, label, hint);
    let body = html! {
        @if let Some(banner) = banner { (banner) }
        @if !problems.is_empty() {
            div #form-errors.form-errors role="alert" tabindex="-1" {
                h2 { "Not saved: " (problems.listed.len()) " problem" @if problems.listed.len() != 1 { "s" } }
                ul {
                    @for (field, message) in &problems.listed {
                        li { a href={ "#field-" (field) } { (label_of(field)) } ": " (message) }
                    }
                }
            }
        }
        form #specialist-form method="post" action=(action) novalidate {
            (csrf_field(viewer))
            @if let Purpose::Edit { .. } = purpose {
                input type="hidden" name="version" value=(form.value("version"));
            }
            @if let Purpose::New = purpose {
                (field("id", "Id", Some("Optional: a slug (letters, digits, '-', '_') or a UUID. Left blank, a new UUID.")))
            }
            (field("name", "Name", None))
            (field("description", "Description", None))
            (select_field(form, problems, "kind", "Kind", &["chat", "embedding"], None))
            (select_field(form, problems, "provider", "Provider", &provider_names(), None))
            (field("model", "Model", None))
            (field("base_url", "Base URL", Some("Optional: an OpenAI-compatible server instead of the provider's configured one.")))
            (prompt_field(form, problems))
            (field("temperature", "Temperature", Some("0.0 to 2.0 (chat only).")))
            (field("max_tokens", "Max tokens", Some("1 to 128000 (chat only).")))
            (field("dimensions", "Dimensions", Some("Embedding only, optional: the vector length always asked for.")))
            (checkbox(form, "allow_tools", "Callers may offer tools"))
            (checkbox(form, "allow_images", "Callers may send images"))
            (checkbox(form, "continue_streams", "A stream whose upstream dies continues on the next fallback"))
            (field("aliases", "Aliases", Some("Comma separated: other names callers may use as model.")))
            fieldset.pricing {
                legend { "Pricing, USD per million tokens (optional; blank uses the price table)" }
                @for (name, _, label) in PRICES {
                    (field(name, label, None))
                }
            }
            fieldset.fallbacks aria-describedby=[problems.on("fallbacks").map(|_| "error-fallbacks")] {
                legend { "Fallbacks, tried in order when a call fails (leave a row blank for none)" }
                @if let Some(message) = problems.on("fallbacks") {
                    p.field-error #error-fallbacks { (message) }
                }
                @for row in 0..MAX_FALLBACKS {
                    fieldset.fallback {
                        legend { "Fallback " (row + 1) }
                        (select_field(form, problems, &fallback_field(row, "provider"), "Provider", &provider_names(), Some("none")))
                        (field(&fallback_field(row, "model"), "Model", None))
                        (field(&fallback_field(row, "base_url"), "Base URL", None))
                    }
                }
            }
            div.actions {
                button #save type="submit" { "Save" }
                @match purpose {
                    Purpose::New => a href="/console/specialists" { "Cancel" },
                    Purpose::Edit { id, .. } => a href=(detail_path(id)) { "Cancel" },
                }
            }
        }
    };
    page(Some(viewer), Nav::Specialists, &title, body)
}

fn provider_names() -> Vec<&'static str> {
    ProviderKind::ALL.iter().map(|p| p.as_str()).collect()
}

/// `aria-describedby` for a field: its hint and its problem, whichever it has.
fn described_by(name: &str, hint: bool, problem: bool) -> Option<String> {
    let ids: Vec<String> = [
        hint.then(|| format!("hint-{name}")),
        problem.then(|| format!("error-{name}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!ids.is_empty()).then(|| ids.join(" "))
}

fn text_field(
    form: &SpecialistForm,
    problems: &Problems,
    name: &str,
    label: &str,
    hint: Option<&str>,
) -> Markup {
    let problem = problems.on(name);
    html! {
        div.field {
            label for={ "field-" (name) } { (label) }
            @if let Some(hint) = hint { span.hint id={ "hint-" (name) } { (hint) } }
            input type="text" id={ "field-" (name) } name=(name) value=(form.value(name))
                aria-invalid=[problem.as_ref().map(|_| "true")]
                aria-describedby=[described_by(name, hint.is_some(), problem.is_some())];
            @if let Some(problem) = &problem {
                p.field-error id={ "error-" (name) } { (problem) }
            }
        }
    }
}

fn select_field(
    form: &SpecialistForm,
    problems: &Problems,
    name: &str,
    label: &str,
    options: &[&str],
    blank: Option<&str>,
) -> Markup {
    let problem = problems.on(name);
    let chosen = form.value(name);
    // A value not among the options (sent by hand) is kept, so the problem beside it makes sense.
    let unknown = !chosen.is_empty() && !options.contains(&chosen);
    html! {
        div.field {
            label for={ "field-" (name) } { (label) }
            select id={ "field-" (name) } name=(name)
                aria-invalid=[problem.as_ref().map(|_| "true")]
                aria-describedby=[described_by(name, false, problem.is_some())] {
                @if let Some(blank) = blank {
                    option value="" selected[chosen.is_empty()] { (blank) }
                }
                @for option in options {
                    option value=(option) selected[*option == chosen] { (option) }
                }
                @if unknown {
                    option value=(chosen) selected { (chosen) }
                }
            }
            @if let Some(problem) = &problem {
                p.field-error id={ "error-" (name) } { (problem) }
            }
        }
    }
}

fn prompt_field(form: &SpecialistForm, problems: &Problems) -> Markup {
    let name = "system_prompt";
    let problem = problems.on(name);
    html! {
        div.field {
            label for="field-system_prompt" { "System prompt" }
            span.hint #hint-system_prompt { "Sent before every conversation (chat only; an embedding specialist has none)." }
            // The parser drops one line break right after <textarea>: this one, so a prompt
            // that starts with a blank line keeps it.
            textarea #field-system_prompt name=(name) rows="12"
                aria-invalid=[problem.as_ref().map(|_| "true")]
                aria-describedby=[described_by(name, true, problem.is_some())] {
                "\n" (form.value(name))
            }
            @if let Some(problem) = &problem {
                p.field-error #error-system_prompt { (problem) }
            }
        }
    }
}

fn checkbox(form: &SpecialistForm, name: &str, label: &str) -> Markup {
    html! {
        div.field.check {
            label for={ "field-" (name) } {
                input type="checkbox" id={ "field-" (name) } name=(name) value="on" checked[form.is_checked(name)];
                " " (label)
            }
        }
    }
}

/// `GET /console/specialists/new` (administrators).
pub(crate) async fn new_form(Admin(viewer): Admin) -> HttpResponse {
    crate::console::ok(form_page(
        &viewer,
        Purpose::New,
        &SpecialistForm::blank(),
        &Problems::default(),
        None,
    ))
}

/// `POST /console/specialists/new` (administrators): creates the specialist at version 1, or
/// shows the form again with every problem.
pub(crate) async fn create(
    Admin(viewer): Admin,
    state: web::Data<AppState>,
    pairs: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, ConsoleError> {
    let form = SpecialistForm::from_pairs(pairs.into_inner());
    check_csrf(&viewer, form.value("csrf"))?;
    let ReadForm {
        patch,
        mut problems,
        fallback_rows,
    } = form.read();
    let id = match form.value("id").trim() {
        "" => Some(crate::specialists::fresh_id()),
        raw => SpecialistId::parse(raw)
            .map_err(|e| problems.push("id", e.to_string()))
            .ok(),
    };
    let refuse = |errors: &ValidationErrors| {
        respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(
                &viewer,
                Purpose::New,
                &form,
                &Problems::of(errors, &fallback_rows),
                None,
            ),
        )
    };
    let draft = match state
        .catalogue
        .new_fields_or_every_problem(patch, problems, None)
    {
        Ok(draft) => draft,
        Err(problems) => return Ok(refuse(&problems)),
    };
    // Without problems the id parsed (a bad one was among the problems).
    let Some(id) = id else {
        return Ok(refuse(&ValidationErrors::new()));
    };
    let catalogue = state.catalogue.clone();
    Ok(match change(move || catalogue.create(id, &draft)).await? {
        Ok(created) => {
            super::super::see_other(&format!("{}?done=created", detail_path(created.id())))
        }
        Err(CatalogueError::Invalid(problems)) => refuse(&problems),
        Err(CatalogueError::AlreadyExists(id)) => {
            let mut problems = ValidationErrors::new();
            problems.push(
                "id",
                format!("a specialist with id '{id}' exists already (ids are case-insensitive)"),
            );
            refuse(&problems)
        }
        Err(error) => refused(&viewer, &error),
    })
}

/// `GET /console/specialists/{id}/edit` (administrators): the form holding the specialist as
/// it is, based on its version.
pub(crate) async fn edit_form(
    Admin(viewer): Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let Some(specialist) = find(&state, &id) else {
        return not_found(&viewer, &id);
    };
    let form = SpecialistForm::of(&specialist.to_draft(), specialist.version());
    crate::console::ok(form_page(
        &viewer,
        Purpose::Edit {
            id: specialist.id(),
            name: specialist.name(),
        },
        &form,
        &Problems::default(),
        None,
    ))
}

/// `POST /console/specialists/{id}/edit` (administrators): replaces every editable field if
/// the specialist is still at the version the form was based on.
pub(crate) async fn save(
    Admin(viewer): Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    pairs: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, ConsoleError> {
    let mut form = SpecialistForm::from_pairs(pairs.into_inner());
    check_csrf(&viewer, form.value("csrf"))?;
    let Some(specialist) = find(&state, &id) else {
        return Ok(not_found(&viewer, &id));
    };
    let Ok(based_on) = form.value("version").trim().parse::<u32>() else {
        return Err(ConsoleError::BadForm(
            "the form does not say which version it was based on; open the edit page again"
                .to_owned(),
        ));
    };
    let ReadForm {
        patch,
        problems,
        fallback_rows,
    } = form.read();
    let (own_id, name) = (specialist.id().clone(), specialist.name().to_owned());
    let draft = match state
        .catalogue
        .new_fields_or_every_problem(patch, problems, Some(&own_id))
    {
        Ok(draft) => draft,
        Err(problems) => {
            return Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                form_page(
                    &viewer,
                    Purpose::Edit {
                        id: &own_id,
                        name: &name,
                    },
                    &form,
                    &Problems::of(&problems, &fallback_rows),
                    None,
                ),
            ));
        }
    };
    let catalogue = state.catalogue.clone();
    let target = own_id.clone();
    let saved = change(move || catalogue.update(&target, Some(based_on), |_| draft)).await?;
    let purpose = Purpose::Edit {
        id: &own_id,
        name: &name,
    };
    Ok(match saved {
        Ok(updated) => {
            let done = if updated.version() == based_on {
                "unchanged"
            } else {
                "saved"
            };
            super::super::see_other(&format!("{}?done={done}", detail_path(updated.id())))
        }
        Err(CatalogueError::Invalid(problems)) => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(
                &viewer,
                purpose,
                &form,
                &Problems::of(&problems, &fallback_rows),
                None,
            ),
        ),
        Err(CatalogueError::VersionConflict { current, .. }) => {
            // The input is kept; saving again is now based on their version, on purpose.
            form.set("version", &current.to_string());
            let banner = html! {
                div #conflict.form-errors role="alert" {
                    h2 { "Someone else changed this specialist" }
                    p {
                        "Version " (current) " was saved after you opened this form (which was \
                        based on version " (based_on) "). Nothing of yours was saved. Your input is \
                        below: saving again replaces their version with yours. Or "
                        a href=(detail_path(&own_id)) target="_blank" { "look at version " (current) }
                        " first."
                    }
                }
            };
            respond(
                StatusCode::CONFLICT,
                form_page(&viewer, purpose, &form, &Problems::default(), Some(banner)),
            )
        }
        Err(error) => refused(&viewer, &error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(pairs: &[(&str, &str)]) -> SpecialistForm {
        SpecialistForm::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors().iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_complete_form_reads_as_every_field_of_a_draft() {
        let form = submitted(&[
            ("name", "Tax"),
            ("description", "Answers tax questions"),
            ("kind", "chat"),
            ("provider", "openai"),
            ("model", "gpt-4o"),
            ("base_url", ""),
            ("system_prompt", "Line one.\r\nLine two."),
            ("temperature", "0.2"),
            ("max_tokens", "900"),
            ("allow_tools", "on"),
            ("aliases", " tax-gpt , ,tax:v1"),
            ("pricing_input_per_1m", "1.5"),
            ("pricing_output_per_1m", "2"),
            ("fallback_1_provider", "anthropic"),
            ("fallback_1_model", "claude-sonnet-4"),
        ]);
        let read = form.read();
        assert!(read.problems.is_empty(), "{}", read.problems);
        assert_eq!(read.fallback_rows, [1]);
        let draft = read.patch.into_new_fields().unwrap();
        assert_eq!(draft.system_prompt, "Line one.\nLine two.");
        assert_eq!((draft.temperature, draft.max_tokens), (0.2, 900));
        assert_eq!(
            (
                draft.allow_tools,
                draft.allow_images,
                draft.continue_streams
            ),
            (true, false, false),
            "an unticked box is off"
        );
        assert_eq!(draft.aliases, ["tax-gpt", "tax:v1"]);
        assert_eq!(draft.base_url, None);
        assert_eq!(
            draft.pricing,
            Some(PricingDraft {
                input_per_1m: 1.5,
                output_per_1m: 2.0,
                ..PricingDraft::default()
            })
        );
        assert_eq!(draft.fallbacks.len(), 1);
        assert_eq!(draft.fallbacks[0].model, "claude-sonnet-4");
        assert!(draft.validate().is_ok());
    }

    #[test]
    fn a_specialist_s_form_reads_back_as_the_same_draft() {
        let draft = SpecialistDraft {
            name: "Tax".into(),
            description: "Plain.".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            base_url: Some("https://llm.example.com/v1".into()),
            system_prompt: "Help.\n\nBe brief.".into(),
            allow_tools: false,
            allow_images: true,
            temperature: 0.35,
            max_tokens: 4000,
            pricing: Some(PricingDraft {
                input_per_1m: 0.15,
                output_per_1m: 0.6,
                cached_input_per_1m: Some(0.075),
                cache_write_per_1m: None,
            }),
            fallbacks: vec![TargetDraft {
                provider: "mock".into(),
                model: "mock-echo".into(),
                base_url: None,
            }],
            continue_streams: true,
            aliases: vec!["a".into(), "b/c".into()],
            kind: "chat".into(),
            dimensions: None,
        };
        let read = SpecialistForm::of(&draft, 3).read();
        assert!(read.problems.is_empty(), "{}", read.problems);
        assert_eq!(read.patch.into_new_fields().unwrap(), draft);

        let embedder = SpecialistDraft {
            kind: "embedding".into(),
            system_prompt: String::new(),
            temperature: DEFAULT_TEMPERATURE,
            max_tokens: i64::from(DEFAULT_MAX_TOKENS),
            dimensions: Some(16),
            provider: "mock".into(),
            model: "mock-embed".into(),
            base_url: None,
            fallbacks: Vec::new(),
            ..draft
        };
        let read = SpecialistForm::of(&embedder, 1).read();
        let fields = read.patch.into_new_fields().unwrap();
        assert_eq!(fields, embedder);
        let problems = fields.validate().err().map(|e| e.to_string());
        assert_eq!(problems, None, "saved unchanged, it passes as it did");
    }

    #[test]
    fn text_that_is_not_a_number_is_a_problem_of_its_own_field() {
        let form = submitted(&[
            ("temperature", "abc"),
            ("max_tokens", "12.5"),
            ("dimensions", "many"),
            ("pricing_output_per_1m", "x"),
        ]);
        let read = form.read();
        assert_eq!(
            fields(&read.problems),
            [
                "temperature",
                "max_tokens",
                "dimensions",
                "pricing.output_per_1m",
                "pricing.input_per_1m"
            ]
        );
        assert_eq!(read.problems.errors()[0].message, "'abc' is not a number");
        let placed = Problems::of(&read.problems, &read.fallback_rows);
        assert_eq!(
            placed.on("temperature").as_deref(),
            Some("'abc' is not a number")
        );
        assert_eq!(
            placed.on("pricing_input_per_1m").as_deref(),
            Some("is required when a price is given")
        );
    }

    #[test]
    fn problems_are_placed_beside_the_form_field_they_concern() {
        let mut errors = ValidationErrors::new();
        errors.push("name", "must not be empty");
        errors.push(
            "pricing.input_per_1m",
            "must be a number of USD between 0 and 10000",
        );
        errors.push("fallbacks[0].model", "is required");
        errors.push("fallbacks[1]", "repeats fallbacks[0]");
        errors.push(
            "aliases[1]",
            "repeats aliases[0] (aliases are case-insensitive)",
        );
        errors.push("fallbacks", "must list at most 4 targets");
        // Rows 1 and 3 were filled in, rows 0 and 2 left blank.
        let placed = Problems::of(&errors, &[1, 3]);
        assert_eq!(placed.on("name").as_deref(), Some("must not be empty"));
        assert!(placed.on("pricing_input_per_1m").is_some());
        assert_eq!(
            placed.on("fallback_1_model").as_deref(),
            Some("is required")
        );
        assert_eq!(
            placed.on("fallback_3_provider").as_deref(),
            Some("repeats fallbacks[0]")
        );
        assert_eq!(
            placed.on("aliases").as_deref(),
            Some("alias 2: repeats aliases[0] (aliases are case-insensitive)")
        );
        assert!(placed.on("fallbacks").is_some());
        assert_eq!(placed.listed.len(), 6);
        assert_eq!(label_of("fallback_3_base_url"), "Fallback 4 base url");
        assert_eq!(label_of("pricing_input_per_1m"), "Input price");
    }

    #[test]
    fn a_form_with_a_bad_number_is_shown_again_with_the_number_beside_its_field() {
        let form = submitted(&[("name", "Tax"), ("temperature", "abc")]);
        let read = form.read();
        let viewer = Viewer {
            identity: core_domain::UserIdentity::Anonymous,
            role: core_domain::AccessRole::Admin,
            label: "local operator".into(),
            csrf: "token".into(),
            local: true,
            api_key: None,
        };
        let html = form_page(
            &viewer,
            Purpose::New,
            &form,
            &Problems::of(&read.problems, &read.fallback_rows),
            None,
        )
        .into_string();
        assert!(
            html.contains(r#"id="error-temperature">'abc' is not a number</p>"#),
            "{html}"
        );
        assert!(html.contains(r#"name="temperature" value="abc" aria-invalid="true" aria-describedby="hint-temperature error-temperature""#), "{html}");
        assert!(html.contains(r#"id="form-errors""#));
        assert!(html.contains(r#"name="name" value="Tax""#), "input kept");
    }
}
