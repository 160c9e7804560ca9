//! Reading the catalogue over HTTP.

use actix_web::{HttpResponse, web};
use core_domain::{ErrorCode, ProviderKind, SpecialistId, ValidationErrors};
use serde::Deserialize;
use serde_json::json;

use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    provider: Option<String>,
}

/// `GET /specialists[?provider=openai]`: every specialist, sorted by name.
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
    let items: Vec<&core_domain::Specialist> = specialists.iter().map(AsRef::as_ref).collect();
    Ok(HttpResponse::Ok().json(json!({ "specialists": items })))
}

/// `GET /specialists/{id}`.
pub(crate) async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let not_found = || {
        ApiError::new(
            ErrorCode::SpecialistNotFound,
            format!("no specialist with id '{id}'"),
        )
    };
    let parsed = SpecialistId::parse(id.clone()).map_err(|_| not_found())?;
    let specialist = state.catalogue.get(&parsed).ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(specialist.as_ref()))
}
