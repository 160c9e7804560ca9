//! Budgets over HTTP: administrators see every budget and create, change and delete the ones
//! the API manages; anyone sees the budgets that cover them, with what is left.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use budgets::{BudgetEntry, BudgetView, Budgets, Managed};
use chrono::{DateTime, Utc};
use core_domain::{
    AccessRole, Budget, BudgetDraft, BudgetId, BudgetScope, UserIdentity, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use usage_store::UsageStore;
use utoipa::ToSchema;

use crate::openapi::responses::{
    BudgetNotFound, Conflict, Guarded, GuardedChange, InvalidRequest, PayloadTooLarge, Unavailable,
    ValidationFailed,
};
use crate::{ApiCode, ApiError, AppState, RequestContext};

/// A budget and how it stands in its current period.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BudgetStatus {
    /// The budget's id.
    id: String,
    /// `global`, `specialist`, `user` or `key`.
    scope: String,
    /// The specialist id, user email or API key name (absent for `global`).
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    /// `day`, `month` or `total` (calendar periods in UTC).
    period: String,
    /// The most the scope may spend per period, in USD.
    limit_usd: f64,
    /// Spend at which a warning is logged once per period, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_usd: Option<f64>,
    /// `config` (read-only here) or `api`.
    managed_by: &'static str,
    /// When the current period began (absent for `total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    period_start: Option<DateTime<Utc>>,
    /// When the budget resets (absent for `total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    resets_at: Option<DateTime<Utc>>,
    /// Settled spend this period, in USD (absent when the budget store did not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    spent_usd: Option<f64>,
    /// Held by calls under way, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    reserved_usd: Option<f64>,
    /// What new calls may still reserve, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_usd: Option<f64>,
    /// Why the standing is missing: the budget store did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    store_error: Option<String>,
}

impl From<&BudgetView> for BudgetStatus {
    fn from(view: &BudgetView) -> Self {
        let budget = &view.entry.budget;
        let standing = view.standing.as_ref().ok();
        Self {
            id: budget.id().to_string(),
            scope: budget.scope().kind().to_owned(),
            subject: budget.scope().subject().map(str::to_owned),
            period: budget.period().as_str().to_owned(),
            limit_usd: budget.limit().as_dollars(),
            alert_usd: budget.alert().map(core_domain::Usd::as_dollars),
            managed_by: view.entry.managed.as_str(),
            period_start: view.window.start,
            resets_at: view.window.resets_at,
            spent_usd: standing.map(|s| s.spent.as_dollars()),
            reserved_usd: standing.map(|s| s.reserved.as_dollars()),
            remaining_usd: standing.map(|s| s.left(budget.limit()).as_dollars()),
            store_error: view
                .standing
                .as_ref()
                .err()
                .map(|_| "the budget store did not answer".to_owned()),
        }
    }
}

/// Every budget the caller may see.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BudgetList {
    budgets: Vec<BudgetStatus>,
}

/// A budget as a client sends it (the id comes from the body on create, the path on change).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetBody {
    /// Create: required. Change: may be sent, and must match the path.
    id: Option<String>,
    /// `global`, `specialist`, `user` or `key`.
    scope: String,
    /// The specialist id, the user's email or the API key's name (none for `global`).
    subject: Option<String>,
    /// `day`, `month` or `total` (calendar periods in UTC).
    period: String,
    /// The most the scope may spend per period, in USD (0 to 9,000,000; 0 refuses every call).
    limit_usd: f64,
    /// Spend at which a warning is logged once per period, in USD (at most `limit_usd`).
    alert_usd: Option<f64>,
}

impl BudgetBody {
    fn into_draft(self, id: String) -> BudgetDraft {
        BudgetDraft {
            id,
            scope: self.scope,
            subject: self.subject,
            period: self.period,
            limit_usd: self.limit_usd,
            alert_usd: self.alert_usd,
        }
    }
}

/// True when the budget covers calls the caller of `context` may make: a user sees the
/// global and specialist budgets, and their own user and key budgets.
pub(crate) fn visible_to(context: &RequestContext, entry: &BudgetEntry) -> bool {
    visible_to_caller(
        context.role,
        &context.identity,
        context.api_key.as_deref(),
        entry,
    )
}

/// [`visible_to`] for a caller known by parts (the console's signed-in person has no
/// [`RequestContext`]).
pub(crate) fn visible_to_caller(
    role: AccessRole,
    identity: &UserIdentity,
    api_key: Option<&str>,
    entry: &BudgetEntry,
) -> bool {
    if role == AccessRole::Admin {
        return true;
    }
    match entry.budget.scope() {
        BudgetScope::Global | BudgetScope::Specialist(_) => true,
        BudgetScope::User { email_hash, .. } => identity.email_hash() == Some(email_hash),
        BudgetScope::Key(name) => api_key == Some(name.as_str()),
    }
}

/// `GET /budgets`: every budget the caller may see, with its spend this period.
#[utoipa::path(get, path = "/budgets", tag = "budgets",
    responses((status = 200, description = "Administrators: every budget. Others: the budgets that cover them (global, per specialist, their own user and API key), with what is left", body = BudgetList),
        Guarded),
    security((), ("bearer" = [])))]
pub(crate) async fn list(state: web::Data<AppState>, context: RequestContext) -> HttpResponse {
    let views = state
        .budgets
        .views(|entry| visible_to(&context, entry))
        .await;
    HttpResponse::Ok().json(BudgetList {
        budgets: views.iter().map(BudgetStatus::from).collect(),
    })
}

/// `GET /budgets/{id}`.
#[utoipa::path(get, path = "/budgets/{id}", tag = "budgets",
    params(("id" = String, Path, description = "Budget id")),
    responses((status = 200, description = "The budget and its spend this period", body = BudgetStatus),
        (status = 404, response = BudgetNotFound),
        Guarded),
    security((), ("bearer" = [])))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    context: RequestContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let mut views = state
        .budgets
        .views(|entry| entry.budget.id() == &id && visible_to(&context, entry))
        .await;
    let view = views.pop().ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(BudgetStatus::from(&view)))
}

/// `POST /budgets` (administrators): a budget kept in the database, shared by every instance.
#[utoipa::path(post, path = "/budgets", tag = "budgets",
    request_body = BudgetBody,
    responses((status = 201, description = "Created", body = BudgetStatus),
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
    body: web::Json<BudgetBody>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("create budgets")?;
    let mut body = body.into_inner();
    let Some(id) = body.id.take() else {
        let mut details = ValidationErrors::new();
        details.push("id", "required");
        return Err(ApiError::validation(details));
    };
    let budget = body
        .into_draft(id)
        .validate()
        .map_err(ApiError::validation)?
        // Its own count, whatever a budget of this id counted before.
        .with_epoch(context.request_id.as_str());
    if state.budgets.get(budget.id()).is_some() {
        return Err(ApiError::new(
            ApiCode::BudgetExists,
            format!("a budget with id '{}' exists already", budget.id()),
        ));
    }
    let definition = definition_json(&budget)?;
    let id = budget.id().to_string();
    blocking(&state.store, move |store| {
        store.create_budget(&id, &definition).map(|_| ())
    })
    .await?;
    respond_with(&state, budget.id(), HttpResponse::Created()).await
}

/// `PUT /budgets/{id}` (administrators): replaces an API-managed budget. Changing only the
/// limit or alert keeps the period's spend; changing the scope or period starts a new count
/// (rebuilt from the usage log).
#[utoipa::path(put, path = "/budgets/{id}", tag = "budgets",
    params(("id" = String, Path, description = "Budget id")),
    request_body = BudgetBody,
    responses((status = 200, description = "Replaced", body = BudgetStatus),
        (status = 400, response = InvalidRequest),
        (status = 404, response = BudgetNotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
        GuardedChange),
    security((), ("bearer" = [])))]
pub(crate) async fn replace(
    state: web::Data<AppState>,
    context: RequestContext,
    id: web::Path<String>,
    body: web::Json<BudgetBody>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("change budgets")?;
    let id = parse_id(&id)?;
    let mut body = body.into_inner();
    if let Some(sent) = body.id.take()
        && sent != id.as_str()
    {
        let mut details = ValidationErrors::new();
        details.push("id", "must match the id in the path");
        return Err(ApiError::validation(details));
    }
    let budget = body
        .into_draft(id.to_string())
        .validate()
        .map_err(ApiError::validation)?;
    let existing = writable(&state.budgets, &id)?;
    // A new scope or period counts anew; a new limit or alert keeps the count.
    let same_count =
        existing.budget.scope() == budget.scope() && existing.budget.period() == budget.period();
    let epoch = match existing.budget.epoch() {
        Some(epoch) if same_count => epoch.to_owned(),
        _ => context.request_id.to_string(),
    };
    let budget = budget.with_epoch(epoch);
    let definition = definition_json(&budget)?;
    let key = id.to_string();
    blocking(&state.store, move |store| {
        store.replace_budget(&key, &definition, None).map(|_| ())
    })
    .await?;
    respond_with(&state, &id, HttpResponse::Ok()).await
}

/// `DELETE /budgets/{id}` (administrators): an API-managed budget; its spend stays in the usage
/// log.
#[utoipa::path(delete, path = "/budgets/{id}", tag = "budgets",
    params(("id" = String, Path, description = "Budget id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, response = BudgetNotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
        GuardedChange),
    security((), ("bearer" = [])))]
pub(crate) async fn delete(
    state: web::Data<AppState>,
    context: RequestContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    context.require_admin("delete budgets")?;
    let id = parse_id(&id)?;
    writable(&state.budgets, &id)?;
    let key = id.to_string();
    let existed = blocking(&state.store, move |store| store.delete_budget(&key)).await?;
    reload_api_budgets(&state.store, &state.budgets).await?;
    if existed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(&id))
    }
}

/// A budget as the database keeps it: its definition, and the epoch its count starts from (so
/// a budget deleted and made again, or moved to another scope and back, does not take up a
/// count it had before).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredDefinition {
    budget: BudgetDraft,
    epoch: String,
}

/// The budget as stored.
fn definition_json(budget: &Budget) -> Result<String, ApiError> {
    serde_json::to_string(&StoredDefinition {
        budget: budget.to_draft(),
        epoch: budget.epoch().unwrap_or_default().to_owned(),
    })
    .map_err(|e| ApiError::internal(format!("budget not serialisable: {e}")))
}

/// The budget a stored definition describes.
fn parse_definition(definition: &str) -> Result<Budget, String> {
    let stored: StoredDefinition = serde_json::from_str(definition).map_err(|e| e.to_string())?;
    let budget = stored.budget.validate().map_err(|e| e.to_string())?;
    Ok(budget.with_epoch(stored.epoch))
}

/// The API-managed budget `id`, or the refusal to change it: it does not exist (404) or config
/// defines it (409).
fn writable(budgets: &Budgets, id: &BudgetId) -> Result<Arc<BudgetEntry>, ApiError> {
    match budgets.get(id) {
        None => Err(not_found(id)),
        Some(entry) if entry.managed == Managed::Config => Err(ApiError::new(
            ApiCode::BudgetReadOnly,
            format!(
                "the budget '{id}' is defined in the config file ([[budgets.limits]]); change it \
                 there"
            ),
        )),
        Some(entry) => Ok(entry),
    }
}

/// Reloads the API's budgets (so this instance applies its own change at once) and answers
/// with the budget `id` as it stands.
async fn respond_with(
    state: &AppState,
    id: &BudgetId,
    mut response: actix_web::HttpResponseBuilder,
) -> Result<HttpResponse, ApiError> {
    reload_api_budgets(&state.store, &state.budgets).await?;
    let mut views = state.budgets.views(|entry| entry.budget.id() == id).await;
    let view = views.pop().ok_or_else(|| not_found(id))?;
    Ok(response.json(BudgetStatus::from(&view)))
}

/// Runs `work` on the store off the async workers.
async fn blocking<T: Send + 'static>(
    store: &UsageStore,
    work: impl FnOnce(&UsageStore) -> Result<T, usage_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| ApiError::internal(format!("budget store task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Reads the API-managed budgets from the database into `budgets`. A stored definition that no
/// longer validates (edited by hand) is skipped with an error in the log, never fatal.
pub async fn reload_api_budgets(
    store: &UsageStore,
    budgets: &Arc<Budgets>,
) -> Result<(), ApiError> {
    let (_, stored) = blocking(store, UsageStore::budget_definitions).await?;
    let mut api = Vec::with_capacity(stored.len());
    for row in stored {
        match parse_definition(&row.definition) {
            Ok(budget) if budget.id().as_str() == row.id => api.push(budget),
            Ok(_) => {
                tracing::error!(id = %row.id, "stored budget's definition names another id; skipped")
            }
            Err(error) => {
                tracing::error!(id = %row.id, %error, "stored budget is invalid; skipped")
            }
        }
    }
    budgets.replace_api(api);
    Ok(())
}

fn parse_id(raw: &str) -> Result<BudgetId, ApiError> {
    BudgetId::parse(raw).map_err(|e| {
        let mut details = ValidationErrors::new();
        details.push("id", e.to_string());
        ApiError::validation(details)
    })
}

fn not_found(id: &BudgetId) -> ApiError {
    ApiError::new(ApiCode::BudgetNotFound, format!("no budget with id '{id}'"))
}
