//! Turning a provider's SSE events into the normalised [`StreamEvent`]s: text deltas in order,
//! then exactly one `Finished` with usage (the upstream's, or an estimate flagged as such) — or,
//! when the stream fails, one [`StreamFailure`] with the usage so far.

use std::collections::VecDeque;

use core_domain::{FinishReason, StreamEvent, TokenUsage, ToolCallDelta};
use futures_util::{Stream, StreamExt, stream};

use crate::sse::SseEvent as Event;
use crate::upstream_error::scrub;
use crate::{EventStream, ProviderError, StreamFailure};

/// What one SSE event meant.
pub(crate) enum Step {
    /// Nothing to pass on (a ping, a block boundary, metadata recorded in the tally).
    Nothing,
    /// The next piece of the answer.
    Text(String),
    /// Several pieces of the answer in order — text deltas and tool-call deltas — for a wire
    /// whose one event can carry more than one (Gemini sends whole function calls, several at
    /// once). Never `Finished`: the end is the tally's to report.
    Events(Vec<StreamEvent>),
    /// The next piece of a tool call.
    ToolCall(ToolCallDelta),
    /// The wire format's explicit end of the answer.
    Done,
}

/// What has been learned about the answer so far.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub model: String,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    /// Of the input, tokens read from the upstream's prompt cache (0 until reported).
    pub cached_input_tokens: u32,
    /// Of the input, tokens written to the upstream's prompt cache (0 until reported).
    pub cache_write_tokens: u32,
    /// Of the output, tokens spent reasoning (0 until reported).
    pub reasoning_tokens: u32,
    pub finish: Option<FinishReason>,
    text_chars: usize,
    prompt_estimate: u32,
}

impl Tally {
    pub(crate) fn new(model: &str, prompt_estimate: u32) -> Self {
        Self {
            model: model.to_owned(),
            prompt_estimate,
            ..Self::default()
        }
    }

    /// The usage to report: the upstream's counts, with any missing part estimated (the prompt
    /// from its text, the answer from the text streamed) and then flagged.
    pub(crate) fn usage(&self) -> TokenUsage {
        let output_estimate = u32::try_from(self.text_chars.div_ceil(4)).unwrap_or(u32::MAX);
        let counts = match (self.input_tokens, self.output_tokens) {
            (Some(input), Some(output)) => TokenUsage::reported(input, output),
            (input, output) => TokenUsage::estimated(
                input.unwrap_or(self.prompt_estimate),
                output.unwrap_or(output_estimate),
            ),
        };
        // The cache and reasoning detail is the upstream's own word even when another count
        // had to be estimated.
        counts
            .with_cache(self.cached_input_tokens, self.cache_write_tokens)
            .with_reasoning(self.reasoning_tokens)
    }

    /// True while nothing of an answer has come: no text or tool call, no finish reason, no
    /// usage. A stream that ends like this was no answer, even if it ended properly.
    fn is_nothing_yet(&self) -> bool {
        self.text_chars == 0
            && self.finish.is_none()
            && self.input_tokens.is_none()
            && self.output_tokens.is_none()
    }

    fn finished(self) -> StreamEvent {
        StreamEvent::Finished {
            usage: self.usage(),
            finish_reason: self.finish.clone().unwrap_or(FinishReason::Stop),
            model: self.model,
        }
    }
}

/// Drives `events` through `interpret` into a normalised stream. An upstream that ends without
/// its end marker counts as finished only if it already gave a finish reason (Gemini ends that
/// way); otherwise the answer is incomplete and the stream ends with an error. One that gives
/// its end marker before anything of an answer ends with [`ProviderError::BadResponse`].
pub(crate) fn normalise<S, F>(events: S, tally: Tally, interpret: F) -> EventStream
where
    S: Stream<Item = Result<Event, ProviderError>> + Send + 'static,
    F: FnMut(&Event, &mut Tally) -> Result<Step, ProviderError> + Send + 'static,
{
    // Events interpreted but not yet passed on, when one upstream event meant several.
    let pending: VecDeque<StreamEvent> = VecDeque::new();
    let state = Some((Box::pin(events), tally, interpret, pending));
    Box::pin(stream::unfold(state, |state| async move {
        let (mut events, mut tally, mut interpret, mut pending) = state?;
        // A failure says what was consumed by then, and ends the stream.
        let fail = |tally: Tally, error| {
            Some((
                Err(StreamFailure {
                    error,
                    usage_so_far: tally.usage(),
                }),
                None,
            ))
        };
        loop {
            if let Some(event) = pending.pop_front() {
                // What the answer said so far, for the estimate should the upstream not count.
                match &event {
                    StreamEvent::TextDelta(text) if text.is_empty() => continue,
                    StreamEvent::TextDelta(text) => tally.text_chars += text.chars().count(),
                    StreamEvent::ToolCallDelta(delta) => {
                        tally.text_chars += delta.arguments.chars().count();
                    }
                    // Thinking is output the upstream bills; signatures and redacted data are
                    // opaque tokens of no countable length.
                    StreamEvent::ReasoningDelta(text) => tally.text_chars += text.chars().count(),
                    StreamEvent::ReasoningSignature(_)
                    | StreamEvent::RedactedReasoning(_)
                    | StreamEvent::Finished { .. } => {}
                }
                return Some((Ok(event), Some((events, tally, interpret, pending))));
            }
            match events.next().await {
                Some(Ok(event)) => match interpret(&event, &mut tally) {
                    Ok(Step::Nothing) => continue,
                    Ok(Step::Text(text)) if text.is_empty() => continue,
                    Ok(Step::Text(text)) => {
                        tally.text_chars += text.chars().count();
                        return Some((
                            Ok(StreamEvent::TextDelta(text)),
                            Some((events, tally, interpret, pending)),
                        ));
                    }
                    Ok(Step::Events(interpreted)) => {
                        pending.extend(interpreted);
                        continue;
                    }
                    Ok(Step::ToolCall(delta)) => {
                        pending.push_back(StreamEvent::ToolCallDelta(delta));
                        continue;
                    }
                    // An OpenAI stream whose every chunk had `choices: []` ends this way.
                    Ok(Step::Done) if tally.is_nothing_yet() => {
                        return fail(
                            tally,
                            ProviderError::BadResponse {
                                message: "the stream ended without any answer".to_owned(),
                                usage: None,
                            },
                        );
                    }
                    Ok(Step::Done) => return Some((Ok(tally.finished()), None)),
                    Err(e) => return fail(tally, e),
                },
                Some(Err(e)) => return fail(tally, e),
                None if tally.finish.is_some() => return Some((Ok(tally.finished()), None)),
                None => {
                    return fail(
                        tally,
                        ProviderError::Upstream {
                            status: None,
                            message: "the stream ended before the answer was complete".to_owned(),
                        },
                    );
                }
            }
        }
    }))
}

/// Parses an event's JSON data, or reports it as malformed. The failure carries no usage: the
/// stream's [`Tally`] knows what was consumed by then.
pub(crate) fn parse_data<T: serde::de::DeserializeOwned>(
    event: &Event,
) -> Result<T, ProviderError> {
    serde_json::from_str(&event.data).map_err(|e| ProviderError::BadResponse {
        // serde quotes a wrongly typed string whole, so the message is bounded.
        message: scrub(
            &format!("malformed stream event from the upstream: {e}"),
            &[],
        ),
        usage: None,
    })
}

#[cfg(test)]
mod tests {
    use core_domain::ErrorCode;

    use super::*;

    fn data(text: &str) -> Event {
        Event {
            event: "message".to_owned(),
            data: text.to_owned(),
            id: String::new(),
        }
    }

    /// Reads `data` events: `end` is the end marker, `stop` a finish reason, `{...}` JSON that
    /// must parse, anything else text.
    async fn run(events: &[&str]) -> Vec<Result<StreamEvent, StreamFailure>> {
        let events: Vec<Result<Event, ProviderError>> =
            events.iter().map(|e| Ok(data(e))).collect();
        let normalised =
            normalise(
                stream::iter(events),
                Tally::new("m", 42),
                |event, tally| match event.data.as_str() {
                    "end" => Ok(Step::Done),
                    "stop" => {
                        tally.finish = Some(FinishReason::Stop);
                        Ok(Step::Nothing)
                    }
                    "empty" => Ok(Step::Nothing),
                    json if json.starts_with('{') => {
                        parse_data::<serde_json::Value>(event).map(|_| Step::Nothing)
                    }
                    text => Ok(Step::Text(text.to_owned())),
                },
            );
        normalised.collect().await
    }

    #[tokio::test]
    async fn an_end_marker_before_any_answer_is_a_bad_response_billed_for_the_prompt() {
        let got = run(&["empty", "empty", "end"]).await;
        let [Err(failure)] = got.as_slice() else {
            panic!("one failure: {got:?}");
        };
        assert_eq!(failure.error.code(), ErrorCode::UpstreamBadResponse);
        assert_eq!(failure.usage_so_far, TokenUsage::estimated(42, 0));
    }

    #[tokio::test]
    async fn an_end_marker_after_text_or_a_finish_reason_finishes() {
        for events in [&["hello", "end"][..], &["stop", "end"][..]] {
            let got = run(events).await;
            assert!(
                matches!(got.last(), Some(Ok(StreamEvent::Finished { .. }))),
                "{events:?}: {got:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_malformed_event_is_a_bad_response_billed_for_what_was_streamed() {
        let got = run(&["one two three four", "{oops", "end"]).await;
        let [Ok(StreamEvent::TextDelta(_)), Err(failure)] = got.as_slice() else {
            panic!("text then a failure: {got:?}");
        };
        assert_eq!(failure.error.code(), ErrorCode::UpstreamBadResponse);
        // 18 characters streamed: 5 tokens at four characters to a token.
        assert_eq!(failure.usage_so_far, TokenUsage::estimated(42, 5));
    }
}
