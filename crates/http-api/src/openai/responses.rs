//! `POST /v1/responses`: OpenAI's Responses API over a specialist, stateless. The request is
//! mapped onto the rich chat model (`responses_request.rs`) and goes through the one call
//! path; the answer is a Response object, or with `stream: true` Responses' typed events.

use std::time::Duration;

use actix_web::{Either, HttpResponse, Responder, web};
use actix_web_lab::sse;
use core_domain::{Door, ErrorCode, FinishReason, TokenUsage, ToolCallDelta};
use pricing::CostEstimate;
use serde_json::{Value, json};

use super::responses_request::ResponsesRequest;
use super::responses_wire::{OutputItem, OutputText, ResponseObject, ResponseStatus};
use crate::chat::prepare_with;
use crate::chat::relay::StreamFormat;
use crate::chat::send::served_by_header;
use crate::openapi::responses::OpenAiChatCall;
use crate::{ApiCode, ApiError, AppState, RequestContext};

/// `POST /v1/responses`: a `response` object, or with `stream: true` a stream of typed
/// events (`response.created` ... `response.completed`). Stateless: `previous_response_id`,
/// `store: true`, `background`, `conversation` and stored prompts are refused (400).
#[utoipa::path(post, path = "/v1/responses", tag = "openai", request_body = ResponsesRequest,
    responses(
        (status = 200, description = "A response object; with stream: true, text/event-stream of typed response.* events",
            content((ResponseObject = "application/json"), (ResponseObject = "text/event-stream"))),
        OpenAiChatCall),
    security((), ("bearer" = [])))]
pub(crate) async fn responses(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<ResponsesRequest>,
) -> Result<Either<HttpResponse, impl Responder>, ApiError> {
    let call = body.into_inner().validate(&state.chat_limits)?;
    let model = call.model.clone();
    let specialist = crate::chat::resolve_model(&state, &model)?;
    if let Some(refusal) = call.not_allowed_by(&specialist) {
        return Err(refusal);
    }
    let streamed = call.stream;
    let echo = call.echo(&specialist);
    let prepared = prepare_with(
        &state,
        &context,
        Door::Responses,
        specialist,
        |specialist| call.into_request(specialist),
    )
    .map_err(naming_input)?;
    let request_id = context.request_id.as_str().to_owned();
    let response = ResponseObject::new(
        format!("resp_{request_id}"),
        chrono::Utc::now().timestamp(),
        model,
        echo,
    );

    if streamed {
        let format = ResponseEvents {
            response,
            request_id,
            sequence: 0,
            open_message: None,
            calls: Vec::new(),
        };
        let (events, served_by) = prepared
            .stream(&state, format)
            .await
            .map_err(naming_input)?;
        return Ok(Either::Right(
            actix_web::Responder::customize(events).insert_header(served_by_header(&served_by)),
        ));
    }

    let answer = prepared.complete().await.map_err(naming_input)?;
    let served_by = answer.served_by;
    let answer = answer.completion;
    let mut response = response;
    response.model.clone_from(&served_by.model);
    response.finish(&answer.finish_reason, &answer.usage);
    let status = response.status.of_item();
    if !answer.content.is_empty() || answer.tool_calls.is_empty() {
        response.output.push(OutputItem::Message {
            id: format!("msg_{request_id}"),
            status,
            role: "assistant",
            content: vec![OutputText::new(answer.content)],
        });
    }
    for (index, call) in answer.tool_calls.into_iter().enumerate() {
        response.output.push(OutputItem::FunctionCall {
            id: format!("fc_{request_id}_{index}"),
            call_id: call.id,
            name: call.name,
            arguments: call.arguments,
            status,
        });
    }
    Ok(Either::Left(
        HttpResponse::Ok()
            .insert_header(served_by_header(&served_by))
            .json(response),
    ))
}

/// `error` naming this door's field: what a provider cannot map in the conversation (Gemini:
/// images by URL, a result without its call) it refuses as `messages`, the chat model's name,
/// which this door calls `input`.
fn naming_input(error: ApiError) -> ApiError {
    if error.code() != ApiCode::UnsupportedParameter || error.first_field() != Some("messages") {
        return error;
    }
    // A provider's refusal is one field, its message the refusal's.
    let mut details = core_domain::ValidationErrors::new();
    details.push(
        "input",
        error.message().replace(" in messages", " in input"),
    );
    ApiError::unsupported(details)
}

/// Responses' streaming format: every event typed (`event:` and `type`) and numbered from 0;
/// a message item opened at the first text and closed before a function call item opens or
/// at the end; a function call item per tool call, closed at the end; then
/// `response.completed` (or `.incomplete`, or `.failed`) with the whole response.
struct ResponseEvents {
    /// The response so far: its output grows with the stream.
    response: ResponseObject,
    request_id: String,
    /// The next event's `sequence_number`.
    sequence: u64,
    /// The output index of the message item receiving text, while one is open.
    open_message: Option<usize>,
    /// Each tool call of the answer (by the upstream's index) and its output index.
    calls: Vec<(u32, usize)>,
}

impl ResponseEvents {
    /// `body` (which has its `type`) as an event, numbered.
    fn event(&mut self, mut body: Value) -> sse::Event {
        body["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        let kind = body["type"].as_str().unwrap_or("error").to_owned();
        match sse::Data::new_json(&body) {
            Ok(data) => data.event(kind).into(),
            Err(e) => {
                sse::Data::new(format!("{{\"error\": \"cannot encode an event: {e}\"}}")).into()
            }
        }
    }

    /// An event carrying the whole response as it stands.
    fn response_event(&mut self, kind: &str) -> sse::Event {
        let response = serde_json::to_value(&self.response).unwrap_or(Value::Null);
        self.event(json!({"type": kind, "response": response}))
    }

    /// Opens a message item for text, when none is open: its events.
    fn open_message(&mut self) -> Vec<sse::Event> {
        if self.open_message.is_some() {
            return Vec::new();
        }
        let index = self.response.output.len();
        let id = match index {
            0 => format!("msg_{}", self.request_id),
            n => format!("msg_{}_{n}", self.request_id),
        };
        let item = OutputItem::Message {
            id: id.clone(),
            status: "in_progress",
            role: "assistant",
            content: Vec::new(),
        };
        let added = json!({"type": "response.output_item.added", "output_index": index,
                           "item": item});
        self.response.output.push(item);
        if let Some(OutputItem::Message { content, .. }) = self.response.output.last_mut() {
            content.push(OutputText::new(String::new()));
        }
        self.open_message = Some(index);
        vec![
            self.event(added),
            self.event(json!({"type": "response.content_part.added", "item_id": id,
                "output_index": index, "content_index": 0,
                "part": OutputText::new(String::new())})),
        ]
    }

    /// Closes the open message item, if any: its events.
    fn close_message(&mut self, status: &'static str) -> Vec<sse::Event> {
        let Some(index) = self.open_message.take() else {
            return Vec::new();
        };
        let Some(item) = self.response.output.get_mut(index) else {
            return Vec::new();
        };
        item.set_status(status);
        let item = item.clone();
        let OutputItem::Message { id, content, .. } = &item else {
            return Vec::new();
        };
        let part = content
            .first()
            .cloned()
            .unwrap_or_else(|| OutputText::new(String::new()));
        vec![
            self.event(json!({"type": "response.output_text.done", "item_id": id,
                "output_index": index, "content_index": 0, "text": part.text, "logprobs": []})),
            self.event(json!({"type": "response.content_part.done", "item_id": id,
                "output_index": index, "content_index": 0, "part": part})),
            self.event(
                json!({"type": "response.output_item.done", "output_index": index,
                "item": item}),
            ),
        ]
    }

    /// Closes every item still open, with `status`: their events.
    fn close_all(&mut self, status: &'static str) -> Vec<sse::Event> {
        let mut events = self.close_message(status);
        for (_, index) in std::mem::take(&mut self.calls) {
            let Some(item) = self.response.output.get_mut(index) else {
                continue;
            };
            item.set_status(status);
            let item = item.clone();
            if let OutputItem::FunctionCall {
                id,
                name,
                arguments,
                ..
            } = &item
            {
                events.push(
                    self.event(json!({"type": "response.function_call_arguments.done",
                    "item_id": id, "output_index": index, "name": name,
                    "arguments": arguments})),
                );
            }
            events.push(self.event(json!({"type": "response.output_item.done",
                "output_index": index, "item": item})));
        }
        events
    }
}

impl StreamFormat for ResponseEvents {
    fn served_by(&mut self, destination: &providers::Destination) {
        if self.response.model != destination.model {
            self.response.model.clone_from(&destination.model);
        }
    }

    fn opening(&mut self) -> Vec<sse::Event> {
        vec![
            self.response_event("response.created"),
            self.response_event("response.in_progress"),
        ]
    }

    fn delta(&mut self, text: &str) -> sse::Event {
        let index = match self.open_message {
            Some(index) => index,
            // Only `text` opens the message (with its events); the relay always calls it.
            None => {
                let _unannounced = self.open_message();
                self.open_message.unwrap_or_default()
            }
        };
        let mut item_id = String::new();
        if let Some(OutputItem::Message { id, content, .. }) = self.response.output.get_mut(index) {
            item_id.clone_from(id);
            if let Some(part) = content.first_mut() {
                part.text.push_str(text);
            }
        }
        self.event(
            json!({"type": "response.output_text.delta", "item_id": item_id,
            "output_index": index, "content_index": 0, "delta": text, "logprobs": []}),
        )
    }

    fn text(&mut self, text: &str) -> Vec<sse::Event> {
        let mut events = self.open_message();
        events.push(self.delta(text));
        events
    }

    fn tool_call(&mut self, delta: &ToolCallDelta) -> Vec<sse::Event> {
        let mut events = Vec::new();
        let index = match self.calls.iter().find(|(call, _)| *call == delta.index) {
            Some((_, index)) => *index,
            None => {
                events.extend(self.close_message("completed"));
                let index = self.response.output.len();
                let item = OutputItem::FunctionCall {
                    id: format!("fc_{}_{}", self.request_id, delta.index),
                    call_id: delta
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("call_{}", delta.index)),
                    name: delta.name.clone().unwrap_or_default(),
                    arguments: String::new(),
                    status: "in_progress",
                };
                events.push(self.event(json!({"type": "response.output_item.added",
                    "output_index": index, "item": item})));
                self.response.output.push(item);
                self.calls.push((delta.index, index));
                index
            }
        };
        if delta.arguments.is_empty() {
            return events;
        }
        let mut item_id = String::new();
        if let Some(OutputItem::FunctionCall { id, arguments, .. }) =
            self.response.output.get_mut(index)
        {
            item_id.clone_from(id);
            arguments.push_str(&delta.arguments);
        }
        events.push(
            self.event(json!({"type": "response.function_call_arguments.delta",
            "item_id": item_id, "output_index": index, "delta": delta.arguments})),
        );
        events
    }

    fn finished(
        &mut self,
        usage: &TokenUsage,
        finish_reason: &FinishReason,
        _cost: &CostEstimate,
        _latency: Duration,
    ) -> Vec<sse::Event> {
        self.response.finish(finish_reason, usage);
        let status = self.response.status;
        // An answer without text or calls (cut while the model was still reasoning, withheld
        // by a filter) is still one empty message, as the whole Response has it.
        let mut events = if self.response.output.is_empty() {
            self.open_message()
        } else {
            Vec::new()
        };
        events.extend(self.close_all(status.of_item()));
        events.push(self.response_event(match status {
            ResponseStatus::Incomplete => "response.incomplete",
            _ => "response.completed",
        }));
        events
    }

    fn failed(&mut self, code: ErrorCode, message: &str) -> Vec<sse::Event> {
        self.response.fail(code, message);
        self.open_message = None;
        self.calls.clear();
        for item in &mut self.response.output {
            if let OutputItem::Message { status, .. } | OutputItem::FunctionCall { status, .. } =
                item
                && *status == "in_progress"
            {
                *status = "incomplete";
            }
        }
        vec![self.response_event("response.failed")]
    }
}
