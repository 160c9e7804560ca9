//! The specialist catalogue over HTTP: everyone may read it; administrators may change it.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use core_domain::{
    ErrorCode, PricingDraft, ProviderKind, Specialist, SpecialistId, TargetDraft, ValidationErrors,
};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use specialists::{CatalogueError, SpecialistPatch};
use utoipa::{IntoParams, ToSchema};

use crate::openapi::responses::{
    Conflict, Guarded, GuardedChange, InvalidRequest, PayloadTooLarge, SpecialistChange,
    SpecialistNotFound, Unavailable, ValidationFailed,
};
use crate::views::{PricingView, SpecialistList, SpecialistView, TargetView};
use crate::{ApiCode, ApiError, AppState, RequestContext};

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ListQuery {
    /// Only specialists of this provider.
    provider: Option<String>,
}

/// `GET /specialists[?provider=openai]`: every specialist, sorted by name.
#[utoipa::path(get, path = "/specialists", tag = "specialists", params(ListQuery),
    responses((status = 200, description = "Every specialist, sorted by name", body = SpecialistList),
        (status = 422, response = ValidationFailed),
        Guarded),
    security((), ("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let provider = match query.into_inner().provider.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<ProviderKind>().map_err(|e| {
            let mut details = ValidationErrors::new();
            details.push("provider", e.to_string());
            ApiError::validation(details)
        })?),
    };
    let specialists: Vec<_> = state
        .catalogue
        .list()
        .into_iter()
        .filter(|s| provider.is_none_or(|p| s.provider() == p))
        .collect();
    Ok(HttpResponse::Ok().json(SpecialistList {
        specialists: specialists
            .iter()
            .map(|s| SpecialistView::from(s.as_ref()))
            .collect(),
    }))
}

/// `GET /specialists/{id}`, with its version as the `ETag`.
#[utoipa::path(get, path = "/specialists/{id}", tag = "specialists",
    params(("id" = String, Path, description = "Specialist id")),
    responses((status = 200, description = "The specialist; ETag is its version", body = SpecialistView),
        (status = 404, response = SpecialistNotFound),
        Guarded),
    security((), ("bearer" = [])))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let specialist = state
        .catalogue
        .get(&id)
        .ok_or_else(|| ApiError::from(CatalogueError::NotFound(id)))?;
    Ok(with_etag(HttpResponse::Ok(), &specialist))
}

/// A specialist as a client sends it. Every field is optional here so that missing ones are
/// reported together with every other problem (422), and the read-only fields a client got
/// from `GET` may be sent back unchanged (they are ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecialistBody {
    /// Create only: a slug or UUID (default: a new UUID). Elsewhere it must match the path.
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    /// An OpenAI-compatible server (https unless allowed in config); null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    base_url: Option<Option<String>>,
    system_prompt: Option<String>,
    /// Whether callers may offer tools or send tool calls and results (default: true).
    allow_tools: Option<bool>,
    /// Whether callers may send images (default: true).
    allow_images: Option<bool>,
    temperature: Option<f64>,
    max_tokens: Option<i64>,
    /// USD per million tokens; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<PricingView>)]
    pricing: Option<Option<PricingDraft>>,
    /// Targets tried in order when the one before fails before the client got anything (at
    /// most 4, none repeating another or the primary); a PATCH replaces the whole list, null
    /// removes it (default: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<TargetView>>)]
    fallbacks: Option<Option<Vec<TargetDraft>>>,
    /// Whether a stream whose upstream dies mid-answer continues on the next target
    /// (default: true).
    continue_streams: Option<bool>,
    /// Other names callers may use as `model` on the OpenAI door (`claude-sonnet-4-5`, ...):
    /// at most 16, each 1-128 of ASCII letters, digits, `.` `_` `-` `:` `/`, unique across the
    /// catalogue ignoring case and never another specialist's id; a PATCH replaces the whole
    /// list, null removes it (default: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    aliases: Option<Option<Vec<String>>>,
    /// `chat` or `embedding` (default: chat). An embedding specialist has no system prompt,
    /// leaves temperature and max_tokens out, and is on openai, google or mock (fallbacks
    /// too).
    kind: Option<String>,
    /// Embedding specialists only: the vector length always asked for, 1-65536; null removes
    /// it (default: the model's own).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    dimensions: Option<Option<i64>>,
    #[serde(rename = "version")]
    #[schema(ignore)]
    _version: Option<IgnoredAny>,
    #[serde(rename = "created_at")]
    #[schema(ignore)]
    _created_at: Option<IgnoredAny>,
    #[serde(rename = "updated_at")]
    #[schema(ignore)]
    _updated_at: Option<IgnoredAny>,
    #[serde(rename = "prompt_history")]
    #[schema(ignore)]
    _prompt_history: Option<IgnoredAny>,
}

/// Tells a field sent as `null` (`Some(None)`: remove it) from one not sent (`None`: keep it).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl SpecialistBody {
    /// The editable fields sent, for the catalogue to merge (PATCH) or complete (create, PUT).
    fn into_patch(self) -> SpecialistPatch {
        SpecialistPatch {
            name: self.name,
            description: self.description,
            provider: self.provider,
            model: self.model,
            base_url: self.base_url.into(),
            system_prompt: self.system_prompt,
            allow_tools: self.allow_tools,
            allow_images: self.allow_images,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            pricing: self.pricing.into(),
            fallbacks: self.fallbacks.into(),
            continue_streams: self.continue_streams,
            aliases: self.aliases.into(),
            kind: self.kind,
            dimensions: self.dimensions.into(),
        }
    }
}

/// `POST /specialists` (admin): a new specialist at version 1; `id` is a UUID unless given.
#[utoipa::path(post, path = "/specialists", tag = "specialists", request_body = SpecialistBody,
    responses((status = 201, description = "Created; Location and ETag set", body = SpecialistView),
        (status = 400, response = InvalidRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
        GuardedChange),
    security((), ("bearer" = [])))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<SpecialistBody>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("create specialists")?;
    let mut body = body.into_inner();
    let id = body
        .id
        .take()
        .map_or_else(|| Ok(fresh_id()), SpecialistId::parse)
        .map_err(|e| {
            let mut problem = ValidationErrors::new();
            problem.push("id", e.to_string());
            problem
        });
    let id_problem = id.as_ref().err().cloned().unwrap_or_default();
    let draft = state
        .catalogue
        .new_fields_or_every_problem(body.into_patch(), id_problem, None)
        .map_err(ApiError::validation)?;
    // A bad id was among the problems just reported, so here it parsed.
    let id = id.map_err(ApiError::validation)?;
    // The catalogue checks every rule, its own included, under its lock.
    let catalogue = state.catalogue.clone();
    let created = blocking(move || catalogue.create(id, &draft)).await?;
    Ok(created_response(&created))
}

/// `PUT /specialists/{id}` (admin): replaces every editable field.
#[utoipa::path(put, path = "/specialists/{id}", tag = "specialists", request_body = SpecialistBody,
    params(("id" = String, Path, description = "Specialist id"),
           ("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 200, description = "The next version; the same version when nothing changed", body = SpecialistView),
        SpecialistChange),
    security((), ("bearer" = [])))]
pub(crate) async fn replace(
    state: web::Data<AppState>,
    context: RequestContext,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<SpecialistBody>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("change specialists")?;
    let id = parse_id(&id)?;
    let expected = if_match(&request)?;
    let mut body = body.into_inner();
    let id_problem = body_id_problems(body.id.take(), &id);
    let draft = state
        .catalogue
        .new_fields_or_every_problem(body.into_patch(), id_problem, Some(&id))
        .map_err(ApiError::validation)?;
    let catalogue = state.catalogue.clone();
    let updated = blocking(move || catalogue.update(&id, expected, |_| draft)).await?;
    Ok(with_etag(HttpResponse::Ok(), &updated))
}

/// `PATCH /specialists/{id}` (admin): changes the fields sent; `null` removes `base_url`,
/// `pricing` or `fallbacks`, and a `fallbacks` list replaces the whole old one. The merge is done under the catalogue's lock, on the current version; a merge
/// that changes nothing (`{}`, or the values it has) answers with the specialist as it is.
#[utoipa::path(patch, path = "/specialists/{id}", tag = "specialists", request_body = SpecialistBody,
    params(("id" = String, Path, description = "Specialist id"),
           ("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 200, description = "The next version; the same version when nothing changed", body = SpecialistView),
        SpecialistChange),
    security((), ("bearer" = [])))]
pub(crate) async fn patch(
    state: web::Data<AppState>,
    context: RequestContext,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<SpecialistBody>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("change specialists")?;
    let id = parse_id(&id)?;
    let expected = if_match(&request)?;
    let mut body = body.into_inner();
    check_body_id(body.id.take(), &id)?;
    let patch = body.into_patch();
    let catalogue = state.catalogue.clone();
    let updated =
        blocking(move || catalogue.update(&id, expected, |current| patch.merged_into(current)))
            .await?;
    Ok(with_etag(HttpResponse::Ok(), &updated))
}

/// `DELETE /specialists/{id}` (admin).
#[utoipa::path(delete, path = "/specialists/{id}", tag = "specialists",
    params(("id" = String, Path, description = "Specialist id"),
           ("If-Match" = Option<String>, Header, description = "The version the deletion is based on")),
    responses((status = 204, description = "Deleted"),
        (status = 400, response = InvalidRequest),
        (status = 404, response = SpecialistNotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
        GuardedChange),
    security((), ("bearer" = [])))]
pub(crate) async fn delete(
    state: web::Data<AppState>,
    context: RequestContext,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("delete specialists")?;
    let id = parse_id(&id)?;
    let expected = if_match(&request)?;
    let catalogue = state.catalogue.clone();
    blocking(move || catalogue.delete(&id, expected)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /specialists/{id}/duplicate` (admin): a copy with a new id, version 1.
#[utoipa::path(post, path = "/specialists/{id}/duplicate", tag = "specialists",
    params(("id" = String, Path, description = "Specialist id")),
    responses((status = 201, description = "The copy", body = SpecialistView),
        (status = 404, response = SpecialistNotFound),
        (status = 409, response = Conflict),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
        GuardedChange),
    security((), ("bearer" = [])))]
pub(crate) async fn duplicate(
    state: web::Data<AppState>,
    context: RequestContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("duplicate specialists")?;
    let id = parse_id(&id)?;
    let catalogue = state.catalogue.clone();
    let copy = blocking(move || catalogue.duplicate(&id, fresh_id())).await?;
    Ok(created_response(&copy))
}

/// 201 with `Location` and `ETag`.
fn created_response(specialist: &Specialist) -> HttpResponse {
    let mut response = HttpResponse::Created();
    if let Ok(location) = HeaderValue::from_str(&format!("/specialists/{}", specialist.id())) {
        response.insert_header((header::LOCATION, location));
    }
    with_etag(response, specialist)
}

pub(crate) fn fresh_id() -> SpecialistId {
    SpecialistId::parse(uuid::Uuid::new_v4().to_string())
        .expect("a hyphenated UUID is a valid specialist id")
}

/// An id in a path that cannot be an id names no specialist.
fn parse_id(raw: &str) -> Result<SpecialistId, ApiError> {
    SpecialistId::parse(raw).map_err(|_| {
        ApiError::new(
            ApiCode::SpecialistNotFound,
            format!("no specialist with id '{raw}'"),
        )
    })
}

/// A body may repeat the id of the path (as `GET` returned it), not name another.
fn body_id_problems(body_id: Option<String>, id: &SpecialistId) -> ValidationErrors {
    let mut details = ValidationErrors::new();
    if body_id.is_some_and(|other| other != id.as_str()) {
        details.push("id", "cannot be changed; it must match the path");
    }
    details
}

fn check_body_id(body_id: Option<String>, id: &SpecialistId) -> Result<(), ApiError> {
    let problems = body_id_problems(body_id, id);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(problems))
    }
}

/// The version named by `If-Match` (`3`, `"3"` or `W/"3"`; `*` means any).
fn if_match(request: &HttpRequest) -> Result<Option<u32>, ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u32>()
        .map(Some)
        .map_err(|_| {
            ApiError::new(
                ApiCode::InvalidRequest,
                "If-Match must be the specialist's version, as its ETag gives it (\"3\")",
            )
        })
}

fn with_etag(
    mut response: actix_web::HttpResponseBuilder,
    specialist: &Specialist,
) -> HttpResponse {
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", specialist.version())) {
        response.insert_header((header::ETAG, etag));
    }
    response.json(SpecialistView::from(specialist))
}

/// Runs a catalogue change on a blocking thread (it writes and syncs a file).
async fn blocking<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, CatalogueError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(change)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("catalogue task failed: {e}")))?
        .map_err(ApiError::from)
}
