//! The embedding call: what a chat call gets — admission, budgets, the router's attempts and
//! fallbacks, one usage row (door `embeddings`, input tokens, output 0), metrics — over
//! [`providers::Router::embed`].

use std::sync::Arc;

use core_domain::{Door, Specialist, SpecialistKind};
use providers::{Destination, EmbeddingRequest, Embeddings, Route, Router};

use super::call::{BudgetCheck, begin_call, open_call, route_for};
use crate::chat::CallRecorder;
use crate::{ApiError, AppState, RequestContext};

/// An embedding call ready to go; [`PreparedEmbedding::embed`] makes it and records it.
pub(crate) struct PreparedEmbedding {
    route: Route,
    router: Router,
    request: EmbeddingRequest,
    recorder: CallRecorder,
    budget_check: Option<BudgetCheck>,
}

/// The vectors, priced.
pub(crate) struct Embedded {
    /// The upstream's vectors and every attempt's usage together.
    pub embeddings: Embeddings,
    /// Where the vectors came from.
    pub served_by: Arc<Destination>,
}

/// Prepares embedding `request` (aimed at `specialist`'s own model) for the caller's
/// `end_user`. A chat specialist is refused (400 at `model`) before anything is recorded.
pub(crate) fn prepare_embedding(
    state: &AppState,
    context: &RequestContext,
    specialist: Arc<Specialist>,
    request: EmbeddingRequest,
    end_user: Option<String>,
) -> Result<PreparedEmbedding, ApiError> {
    tracing::Span::current()
        .record("specialist", specialist.id().as_str())
        .record("provider", specialist.provider().as_str());
    if specialist.kind() != SpecialistKind::Embedding {
        return Err(ApiError::invalid_parameter(
            "model",
            format!(
                "'{}' is a chat specialist; use /v1/chat/completions",
                specialist.id()
            ),
        ));
    }
    let route = route_for(state, &specialist);
    // An embedding writes nothing: its worst case is its input at the input price.
    let (recorder, budget_check) = open_call(
        state,
        context,
        Door::Embeddings,
        &specialist,
        &route,
        (request.input_estimate(), end_user),
        0,
    );
    Ok(PreparedEmbedding {
        route,
        router: state.router,
        request,
        recorder,
        budget_check,
    })
}

impl PreparedEmbedding {
    /// Asks for the vectors. A failure is recorded with what it consumed and returned as the
    /// error to answer with.
    pub(crate) async fn embed(self) -> Result<Embedded, ApiError> {
        let Self {
            route,
            router,
            request,
            recorder,
            budget_check,
        } = self;
        let mut recorder = begin_call(&route, recorder, budget_check, false).await?;
        let estimate = recorder.prompt_estimate();
        let result = router
            .embed(&route, request, estimate, &mut |event| {
                recorder.note_attempt(event);
            })
            .await;
        match result {
            Ok((embeddings, _)) => {
                let settled = recorder.succeeded();
                settled.journaled.durable().await;
                Ok(Embedded {
                    embeddings,
                    served_by: settled.served_by,
                })
            }
            Err(error) => {
                recorder.failed(error.code()).durable().await;
                Err(error.into())
            }
        }
    }
}
