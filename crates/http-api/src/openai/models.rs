use actix_web::{HttpResponse, web};
use core_domain::Specialist;

use super::wire::{Model, ModelList};
use crate::openapi::responses::{OpenAiGuarded, OpenAiModelNotFound};
use crate::{ApiCode, ApiError, AppState};

/// A specialist as an OpenAI model object.
fn model(specialist: &Specialist) -> Model {
    Model {
        id: specialist.id().to_string(),
        object: "model",
        created: specialist.created_at().timestamp(),
        owned_by: "commander",
    }
}

/// `GET /v1/models`: every specialist, as models.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "Every specialist as a model", body = ModelList),
        OpenAiGuarded),
    security((), ("bearer" = [])))]
pub(crate) async fn list_models(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(ModelList {
        object: "list",
        data: state.catalogue.list().iter().map(|s| model(s)).collect(),
    })
}

/// `GET /v1/models/{id}`.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai",
    params(("id" = String, Path, description = "Specialist id")),
    responses((status = 200, description = "The model", body = Model),
        (status = 404, response = OpenAiModelNotFound),
        OpenAiGuarded),
    security((), ("bearer" = [])))]
pub(crate) async fn get_model(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let missing = || {
        ApiError::new(
            ApiCode::SpecialistNotFound,
            format!("the model '{id}' does not exist: models are specialist ids or their aliases"),
        )
    };
    let specialist = state.catalogue.resolve(id.as_str()).ok_or_else(missing)?;
    Ok(HttpResponse::Ok().json(model(&specialist)))
}
