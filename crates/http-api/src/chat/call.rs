//! The one call path: a chat call prepared once, then made whole or streamed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web_lab::sse::{self, Sse};
use budgets::{BudgetEntry, Budgets, CallScope};
use core_domain::{
    Completion, Door, NotAllowed, RequestId, Specialist, SpecialistId, SpecialistKind, Target, Usd,
    ValidationErrors,
};
use futures_util::Stream;
use pricing::CostEstimate;
use providers::{Destination, ProviderRequest, Route, Router};

use crate::chat::relay::{self, StreamFormat};
use crate::chat::{CallRecorder, ChatRequestBody};
use crate::{ApiCode, ApiError, AppState, Metrics, RequestContext, spend};

/// A chat call ready to go: its specialist (as it is now), provider, request, and the recorder
/// that will write its one usage row. [`PreparedCall::complete`] or [`PreparedCall::stream`]
/// makes the call and does all of its recording (price, metrics, usage row, the live-call
/// guard), so a route only maps its wire format.
pub(crate) struct PreparedCall {
    specialist: Arc<Specialist>,
    /// Where the call may go, in order, each destination with its provider or why it cannot
    /// be called (not configured): a call none of whose destinations can be called is refused,
    /// and recorded, when it is made.
    route: Route,
    router: Router,
    request: ProviderRequest,
    recorder: CallRecorder,
    /// The budgets to reserve the call's worst case in, when any covers it.
    budget_check: Option<BudgetCheck>,
}

/// What admission against budgets needs, kept from preparation.
pub(super) struct BudgetCheck {
    budgets: Arc<Budgets>,
    metrics: Arc<Metrics>,
    /// The call's request id: its reservation's id.
    request_id: RequestId,
    /// The budgets that cover the call.
    covering: Vec<Arc<BudgetEntry>>,
    /// The call's worst-case cost.
    amount: Usd,
}

/// Opens a prepared call: a route none of whose destinations can be called ends it (refused,
/// with its row); so does a budget refusal; else the recorder holds any reservation and has
/// journaled the call's start. Every kind of call (whole, streamed, embedding) opens this way.
pub(super) async fn begin_call(
    route: &Route,
    recorder: CallRecorder,
    budget_check: Option<BudgetCheck>,
    streamed: bool,
) -> Result<CallRecorder, ApiError> {
    if let Some(error) = route.uncallable() {
        return Err(recorder.refused(error, streamed).await);
    }
    let recorder = match budget_check {
        Some(check) => check.admit(recorder, streamed).await?,
        None => recorder,
    };
    Ok(recorder.begin(streamed).await)
}

impl BudgetCheck {
    /// Reserves the worst case (handing the reservation to `recorder`, which settles it), or
    /// ends the call with the refusal as its row and returns the error to answer with.
    async fn admit(self, recorder: CallRecorder, streamed: bool) -> Result<CallRecorder, ApiError> {
        match spend::admit(
            &self.budgets,
            &self.metrics,
            self.request_id.as_str(),
            self.covering,
            self.amount,
        )
        .await
        {
            Ok(reservation) => Ok(recorder.holding(reservation.map(|r| (self.budgets, r)))),
            Err(refusal) => Err(recorder.refused_before_call(refusal, streamed).await),
        }
    }
}

/// A whole answer, priced.
pub(crate) struct Answer {
    /// The specialist that answered, as it was when the call was prepared.
    pub specialist: Arc<Specialist>,
    /// The upstream's answer.
    pub completion: Completion,
    /// What it cost, every attempt together.
    pub cost: CostEstimate,
    /// Where the answer came from.
    pub served_by: Arc<Destination>,
    /// From the request's arrival to the answer.
    pub latency: Duration,
}

/// The specialist `model` names, by id or alias: how every door that takes a `model` finds
/// its specialist (the 404 is the same text on each).
pub(crate) fn resolve_model(state: &AppState, model: &str) -> Result<Arc<Specialist>, ApiError> {
    state.catalogue.resolve(model).ok_or_else(|| {
        ApiError::new(
            ApiCode::SpecialistNotFound,
            format!(
                "the model '{model}' does not exist: models are specialist ids or their aliases"
            ),
        )
    })
}

/// `/chat/*`: validates the body, then [`prepare_for`].
pub(crate) fn prepare(
    state: &AppState,
    context: &RequestContext,
    body: ChatRequestBody,
) -> Result<PreparedCall, ApiError> {
    let input = body.validate(&state.chat_limits)?;
    prepare_for(
        state,
        context,
        Door::Native,
        &input.specialist_id,
        |specialist| ProviderRequest::for_specialist(specialist, input.history, input.message),
    )
}

/// Finds the specialist and its provider and builds the request with `build`. Refusals before
/// the call (404, a parameter the provider cannot honour) leave no usage row; from then on,
/// every outcome does.
pub(crate) fn prepare_for(
    state: &AppState,
    context: &RequestContext,
    door: Door,
    specialist_id: &SpecialistId,
    build: impl FnOnce(&Specialist) -> ProviderRequest,
) -> Result<PreparedCall, ApiError> {
    let specialist = state.catalogue.get(specialist_id).ok_or_else(|| {
        ApiError::new(
            ApiCode::SpecialistNotFound,
            format!("no specialist with id '{specialist_id}'"),
        )
    })?;
    prepare_with(state, context, door, specialist, build)
}

/// The refusal of an embedding specialist on a chat door (`door`'s name for the field), or
/// `Ok` for a chat specialist.
pub(crate) fn chat_only(specialist: &Specialist, door: Door) -> Result<(), ApiError> {
    if specialist.kind() == SpecialistKind::Chat {
        return Ok(());
    }
    let param = if door == Door::Native {
        "specialist_id"
    } else {
        "model"
    };
    Err(ApiError::invalid_parameter(
        param,
        format!(
            "'{}' is an embedding specialist; use /v1/embeddings",
            specialist.id()
        ),
    ))
}

/// [`prepare_for`] a specialist already found (the `/v1` doors find it by id or alias), for a
/// call that came in by `door` (recorded on its usage row).
pub(crate) fn prepare_with(
    state: &AppState,
    context: &RequestContext,
    door: Door,
    specialist: Arc<Specialist>,
    build: impl FnOnce(&Specialist) -> ProviderRequest,
) -> Result<PreparedCall, ApiError> {
    tracing::Span::current()
        .record("specialist", specialist.id().as_str())
        .record("provider", specialist.provider().as_str());
    // Every chat door refuses an embedding specialist, before anything is recorded.
    chat_only(&specialist, door)?;
    let request = build(&specialist);
    // What the specialist turned off is refused first, whatever its provider could do.
    if let Some(not_allowed) = specialist.first_not_allowed(&request.options, &request.messages) {
        return Err(not_allowed_by(&specialist, not_allowed));
    }
    let mut route = route_for(state, &specialist);
    // What the specialist's own provider cannot honour is refused before anything is called or
    // recorded, like any invalid request; a fallback that cannot honour it is left out.
    if let Ok(provider) = route.primary_provider() {
        provider.check_request(&request)?;
    }
    if !specialist.fallbacks().is_empty() {
        route = route.retain_fallbacks(|provider, destination| {
            let mut aimed = request.clone();
            aimed.model.clone_from(&destination.model);
            aimed.base_url.clone_from(&destination.base_url);
            provider.check_request(&aimed).is_ok()
        });
    }
    let (recorder, budget_check) = open_call(
        state,
        context,
        door,
        &specialist,
        &route,
        (request.prompt_estimate(), request.options.user.clone()),
        request.max_tokens,
    );
    Ok(PreparedCall {
        specialist,
        route,
        router: state.router,
        request,
        recorder,
        budget_check,
    })
}

/// The recorder of a call about to be made along `route` (its prompt estimate and end user
/// in `prompt`), and the budget check it must pass: its worst case is the prompt at every
/// destination's input price and `max_output_tokens` at its output price. Shared by chat and
/// embedding calls.
pub(super) fn open_call(
    state: &AppState,
    context: &RequestContext,
    door: Door,
    specialist: &Arc<Specialist>,
    route: &Route,
    prompt: (u32, Option<String>),
    max_output_tokens: u32,
) -> (CallRecorder, Option<BudgetCheck>) {
    let covering = state.budgets.covering(CallScope {
        specialist: specialist.id(),
        user: context.identity.email_hash(),
        api_key: context.api_key.as_deref(),
    });
    let recorder = CallRecorder::start(state, specialist, context, door, prompt, route);
    let budget_check = (!covering.is_empty()).then(|| BudgetCheck {
        budgets: Arc::clone(&state.budgets),
        metrics: Arc::clone(&state.metrics),
        request_id: context.request_id.clone(),
        covering,
        amount: spend::worst_case(
            &state.prices,
            specialist,
            route,
            recorder.prompt_estimate(),
            max_output_tokens,
        ),
    });
    (recorder, budget_check)
}

/// Where a call to `specialist` may go: its own provider and model, then its fallbacks.
pub(super) fn route_for(state: &AppState, specialist: &Specialist) -> Route {
    let destination = |target: &Target| Destination {
        provider: target.provider(),
        model: target.model().to_owned(),
        base_url: target.base_url().map(str::to_owned),
    };
    state.providers.route(
        destination(specialist.primary()),
        specialist.fallbacks().iter().map(destination),
    )
}

/// The 400 `unsupported_parameter` for a request asking `specialist` for what it turned off,
/// naming the parameter.
fn not_allowed_by(specialist: &Specialist, not_allowed: NotAllowed) -> ApiError {
    let mut details = ValidationErrors::new();
    details.push(
        not_allowed.param,
        format!(
            "the specialist '{}' does not allow {}",
            specialist.id(),
            not_allowed.what
        ),
    );
    ApiError::unsupported(details)
}

impl PreparedCall {
    /// The specialist called, as it was when the call was prepared.
    pub(crate) fn specialist(&self) -> &Arc<Specialist> {
        &self.specialist
    }

    /// The estimate of the prompt's tokens the call was opened with (what a door reports
    /// before the upstream's count arrives).
    pub(crate) fn prompt_estimate(&self) -> u32 {
        self.recorder.prompt_estimate()
    }

    /// Asks for the whole answer. A failure is recorded with what it consumed and returned as
    /// the error to answer with.
    pub(crate) async fn complete(self) -> Result<Answer, ApiError> {
        let Self {
            specialist,
            route,
            router,
            request,
            recorder,
            budget_check,
        } = self;
        let mut recorder = begin_call(&route, recorder, budget_check, false).await?;
        let prompt_estimate = recorder.prompt_estimate();
        let result = router
            .complete(&route, request, prompt_estimate, &mut |event| {
                recorder.note_attempt(event);
            })
            .await;
        match result {
            Ok((completion, _)) => {
                let settled = recorder.succeeded();
                settled.journaled.durable().await;
                Ok(Answer {
                    specialist,
                    completion,
                    cost: settled.cost,
                    served_by: settled.served_by,
                    latency: settled.latency,
                })
            }
            Err(error) => {
                recorder.failed(error.code()).durable().await;
                Err(error.into())
            }
        }
    }

    /// Asks for the answer as a stream, written by `format` (see [`relay::relay`]), with where
    /// it started from.
    pub(crate) async fn stream<F: StreamFormat>(
        self,
        state: &AppState,
        format: F,
    ) -> Result<
        (
            Sse<impl Stream<Item = Result<sse::Event, Infallible>> + use<F>>,
            Arc<Destination>,
        ),
        ApiError,
    > {
        let Self {
            specialist,
            route,
            router,
            request,
            recorder,
            budget_check,
        } = self;
        let recorder = begin_call(&route, recorder, budget_check, true).await?;
        let events = router.stream(
            &route,
            request,
            recorder.prompt_estimate(),
            specialist.continue_streams(),
        );
        relay::relay(state, events, route, recorder, format).await
    }
}
