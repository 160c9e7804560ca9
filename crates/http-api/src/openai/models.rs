use actix_web::{HttpResponse, web};
use core_domain::{ErrorCode, Specialist, SpecialistId};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

/// A specialist as an OpenAI model object.
fn model(specialist: &Specialist) -> Value {
    json!({
        "id": specialist.id().as_str(),
        "object": "model",
        "created": specialist.created_at().timestamp(),
        "owned_by": "commander",
    })
}

/// `GET /v1/models`: every specialist, as models.
pub(crate) async fn list_models(state: web::Data<AppState>) -> HttpResponse {
    let data: Vec<Value> = state.catalogue.list().iter().map(|s| model(s)).collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`.
pub(crate) async fn get_model(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let missing = || {
        ApiError::new(
            ErrorCode::SpecialistNotFound,
            format!("the model '{id}' does not exist: models are specialist ids"),
        )
    };
    let parsed = SpecialistId::parse(id.as_str()).map_err(|_| missing())?;
    let specialist = state.catalogue.get(&parsed).ok_or_else(missing)?;
    Ok(HttpResponse::Ok().json(model(&specialist)))
}
