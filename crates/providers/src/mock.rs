use std::time::Duration;

use core_domain::{
    Completion, FinishReason, ProviderKind, Role, StreamEvent, TokenUsage, estimate_prompt_tokens,
    estimate_text_tokens,
};
use futures_util::{FutureExt, StreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::{
    ChatProvider, CompletionFuture, EmbeddingFuture, EmbeddingRequest, Embeddings, EventStream,
    EventStreamFuture, ProviderRequest,
};

/// How the mock behaves: for demos, front-end work and load tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// Delay before the answer (or the first chunk of a stream), in milliseconds.
    pub latency_ms: u64,
    /// How many text chunks a streamed answer is cut into.
    pub chunk_count: u32,
    /// Delay between streamed chunks, in milliseconds.
    pub chunk_delay_ms: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            chunk_count: 8,
            chunk_delay_ms: 0,
        }
    }
}

/// A provider that answers without a network or a key, deterministically: the same request
/// always gets the same answer, streamed or not.
///
/// Its token counts are honest for what it returns: input tokens are the estimate of the prompt
/// it was given and output tokens the estimate of the text it sends (by
/// [`estimate_text_tokens`]), and an answer longer than `max_tokens` is cut there with finish
/// reason `length`, as a real model would.
#[derive(Debug, Clone, Default)]
pub struct MockProvider {
    config: MockConfig,
}

impl MockProvider {
    /// A mock with this behaviour.
    pub fn new(config: MockConfig) -> Self {
        Self { config }
    }

    fn answer(request: &ProviderRequest) -> Completion {
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(core_domain::ChatMessage::text)
            .unwrap_or_default();
        let question = question.trim();
        let full = format!(
            "You said: \"{question}\". This reply comes from commander's built-in mock provider \
             (model {}): no upstream model was called, and the same message always gets the \
             same answer.",
            request.model
        );
        let max_chars = usize::try_from(request.max_tokens)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        let (content, finish_reason) = match full.char_indices().nth(max_chars) {
            Some((cut, _)) => (full[..cut].to_owned(), FinishReason::Length),
            None => (full, FinishReason::Stop),
        };
        let usage = TokenUsage::reported(
            estimate_prompt_tokens(&request.system_prompt, &request.messages),
            estimate_text_tokens(&content),
        );
        Completion {
            tool_calls: Vec::new(),
            logprobs: None,
            content,
            usage,
            finish_reason,
            model: request.model.clone(),
            wire_content: None,
        }
    }

    async fn wait(millis: u64) {
        if millis > 0 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }
}

/// The length of the mock's vectors when the request does not ask for one.
pub const MOCK_EMBEDDING_DIMENSIONS: u32 = 8;

/// A unit vector of `dimensions` numbers derived from `text` alone: the same text always gets
/// the same vector (FNV-1a of the text seeds a splitmix64 sequence), different texts almost
/// never do.
fn mock_vector(text: &str, dimensions: u32) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // The top 24 bits, as an f32 holds them exactly, spread over [-1, 1).
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| f64::from(u32::try_from(next() >> 40).unwrap_or(0)) / f64::from(1_u32 << 23) - 1.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    // Every value is in [-1, 1]: nothing is lost but precision.
    raw.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

/// `text` cut into at most `count` pieces of nearly equal length, on character boundaries.
fn split_into_chunks(text: &str, count: u32) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let count = usize::try_from(count.max(1))
        .unwrap_or(1)
        .min(chars.len().max(1));
    let size = chars.len().div_ceil(count).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

impl ChatProvider for MockProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mock
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        async move {
            Self::wait(self.config.latency_ms).await;
            Ok(Self::answer(request))
        }
        .boxed()
    }

    /// Deterministic unit vectors derived from each text (`dimensions` honoured, else
    /// [`MOCK_EMBEDDING_DIMENSIONS`]); the usage is the inputs' estimate, as reported.
    fn embed<'a>(&'a self, request: &'a EmbeddingRequest) -> EmbeddingFuture<'a> {
        async move {
            Self::wait(self.config.latency_ms).await;
            let dimensions = request.dimensions.unwrap_or(MOCK_EMBEDDING_DIMENSIONS);
            Ok(Embeddings {
                vectors: request
                    .inputs
                    .iter()
                    .map(|text| mock_vector(text, dimensions))
                    .collect(),
                usage: TokenUsage::reported(request.input_estimate(), 0),
                model: request.model.clone(),
            })
        }
        .boxed()
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        async move {
            Self::wait(self.config.latency_ms).await;
            let Completion {
                content,
                usage,
                finish_reason,
                model,
                ..
            } = Self::answer(request);
            let delay = self.config.chunk_delay_ms;
            let deltas = split_into_chunks(&content, self.config.chunk_count)
                .into_iter()
                .enumerate()
                .map(move |(i, chunk)| (i, StreamEvent::TextDelta(chunk)));
            let events = stream::iter(deltas)
                .then(move |(i, event)| async move {
                    if i > 0 {
                        Self::wait(delay).await;
                    }
                    Ok(event)
                })
                .chain(stream::once(async move {
                    Ok(StreamEvent::Finished {
                        usage,
                        finish_reason,
                        model,
                    })
                }));
            Ok(Box::pin(events) as EventStream)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use core_domain::ChatMessage;

    use super::*;

    fn request(message: &str, max_tokens: u32) -> ProviderRequest {
        ProviderRequest {
            model: "mock-echo".into(),
            system_prompt: "Be brief.".into(),
            messages: vec![
                ChatMessage::user("earlier"),
                ChatMessage::assistant("reply"),
                ChatMessage::user(message),
            ],
            temperature: 0.0,
            max_tokens,
            base_url: None,
            options: Default::default(),
            single_attempt: false,
            deadline: None,
            anthropic: None,
        }
    }

    async fn collect(provider: &MockProvider, request: &ProviderRequest) -> Vec<StreamEvent> {
        let stream = provider.stream(request).await.unwrap();
        stream.map(Result::unwrap).collect().await
    }

    #[tokio::test]
    async fn answer_is_deterministic_and_quotes_the_last_user_message() {
        let provider = MockProvider::default();
        let a = provider
            .complete(&request("What is 2+2?", 512))
            .await
            .unwrap();
        let b = provider
            .complete(&request("What is 2+2?", 512))
            .await
            .unwrap();
        assert_eq!(a, b);
        assert!(
            a.content.starts_with("You said: \"What is 2+2?\"."),
            "{}",
            a.content
        );
        assert_eq!(a.finish_reason, FinishReason::Stop);
        assert_eq!(a.model, "mock-echo");
    }

    #[tokio::test]
    async fn token_counts_describe_what_was_sent_and_returned() {
        let provider = MockProvider::default();
        let req = request("hello", 512);
        let answer = provider.complete(&req).await.unwrap();
        assert_eq!(
            answer.usage,
            TokenUsage::reported(
                estimate_prompt_tokens("Be brief.", &req.messages),
                estimate_text_tokens(&answer.content)
            )
        );
        assert!(answer.usage.output_tokens > 10);
    }

    #[tokio::test]
    async fn answer_is_cut_at_max_tokens_with_length() {
        let provider = MockProvider::default();
        let answer = provider.complete(&request("hello", 5)).await.unwrap();
        assert_eq!(answer.content.chars().count(), 20);
        assert_eq!(answer.usage.output_tokens, 5);
        assert_eq!(answer.finish_reason, FinishReason::Length);
    }

    #[tokio::test]
    async fn stream_concatenates_to_the_whole_answer_in_the_configured_chunks() {
        let provider = MockProvider::new(MockConfig {
            chunk_count: 5,
            ..MockConfig::default()
        });
        let req = request("stream me", 512);
        let whole = provider.complete(&req).await.unwrap();
        let events = collect(&provider, &req).await;
        assert_eq!(events.len(), 6);
        let mut text = String::new();
        for event in &events[..5] {
            match event {
                StreamEvent::TextDelta(delta) => text.push_str(delta),
                other => panic!("expected a delta, got {other:?}"),
            }
        }
        assert_eq!(text, whole.content);
        assert_eq!(
            events[5],
            StreamEvent::Finished {
                usage: whole.usage,
                finish_reason: FinishReason::Stop,
                model: "mock-echo".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_chunk_delay_are_honoured() {
        let provider = MockProvider::new(MockConfig {
            latency_ms: 300,
            chunk_count: 4,
            chunk_delay_ms: 100,
        });
        let start = tokio::time::Instant::now();
        provider.complete(&request("x", 512)).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(300));

        let start = tokio::time::Instant::now();
        let events = collect(&provider, &request("x", 512)).await;
        assert_eq!(events.len(), 5);
        // 300 ms before the first chunk, then 100 ms before each of the other three.
        assert_eq!(start.elapsed(), Duration::from_millis(600));
    }

    #[test]
    fn chunks_respect_character_boundaries() {
        assert_eq!(split_into_chunks("ééé", 2), ["éé", "é"]);
        assert_eq!(split_into_chunks("ab", 8), ["a", "b"]);
        assert_eq!(split_into_chunks("", 3), Vec::<String>::new());
        assert_eq!(split_into_chunks("abc", 0), ["abc"]);
    }

    #[tokio::test]
    async fn mock_vectors_are_unit_length_deterministic_and_sized_as_asked() {
        let provider = MockProvider::default();
        let mut request = EmbeddingRequest {
            model: "mock-embed".into(),
            inputs: vec!["hello".into(), "world".into(), "hello".into()],
            dimensions: None,
            base_url: None,
            single_attempt: false,
            deadline: None,
        };
        let answer = provider.embed(&request).await.unwrap();
        assert_eq!(answer.vectors.len(), 3);
        assert_eq!(
            answer.vectors[0], answer.vectors[2],
            "same text, same vector"
        );
        assert_ne!(answer.vectors[0], answer.vectors[1]);
        for vector in &answer.vectors {
            assert_eq!(vector.len(), MOCK_EMBEDDING_DIMENSIONS as usize);
            let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
        assert_eq!(answer.usage, TokenUsage::reported(6, 0));
        request.dimensions = Some(1024);
        let wide = provider.embed(&request).await.unwrap();
        assert!(wide.vectors.iter().all(|v| v.len() == 1024));
    }
}
