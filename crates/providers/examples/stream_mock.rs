//! Stream an answer from the mock provider, which needs no network and no key:
//!
//! ```sh
//! cargo run -p providers --example stream_mock -- "What is a token bucket?"
//! ```
//!
//! The mock is used through `dyn ChatProvider`, exactly as a real provider would be: swap the
//! constructor for `ProviderRegistry::from_config(..)?.get(kind)` and nothing else changes. It
//! waits 20 ms between chunks here so the stream is visible as a stream.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use core_domain::{ChatMessage, StreamEvent};
use futures_util::StreamExt;
use providers::{ChatProvider, MockConfig, MockProvider, ProviderRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is a token bucket?".to_owned());
    run(question, &mut std::io::stdout().lock()).await
}

async fn run(question: String, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let provider: Arc<dyn ChatProvider> = Arc::new(MockProvider::new(MockConfig {
        chunk_delay_ms: 20,
        ..MockConfig::default()
    }));
    let request = ProviderRequest {
        model: "mock-echo".into(),
        system_prompt: "Answer briefly.".into(),
        messages: vec![ChatMessage::user(question)],
        temperature: 0.3,
        max_tokens: 256,
        base_url: None,
        options: Default::default(),
        single_attempt: false,
        deadline: None,
        anthropic: None,
    };

    let started = Instant::now();
    let mut events = provider.stream(&request).await?;
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::TextDelta(text) => {
                write!(out, "{text}")?;
                out.flush()?;
            }
            // The mock calls no tools; a real model's calls stream their arguments in pieces.
            StreamEvent::ToolCallDelta(call) => {
                if let Some(name) = &call.name {
                    write!(out, "\n[calls {name}] ")?;
                }
                write!(out, "{}", call.arguments)?;
            }
            // Nor does it think; a reasoning model's thinking is not part of its answer.
            StreamEvent::ReasoningDelta(_)
            | StreamEvent::ReasoningSignature(_)
            | StreamEvent::RedactedReasoning(_) => {}
            StreamEvent::Finished {
                usage,
                model,
                finish_reason,
            } => writeln!(
                out,
                "\n[{model}: {} tokens in, {} out, finished: {}, {} ms]",
                usage.input_tokens,
                usage.output_tokens,
                finish_reason.as_str(),
                started.elapsed().as_millis()
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_mock_streams_its_answer_then_the_usage() {
        let mut out = Vec::new();
        super::run("Why is the sky blue?".to_owned(), &mut out)
            .await
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("You said: \"Why is the sky blue?\"."),
            "{out}"
        );
        assert!(out.contains("\n[mock-echo: "), "{out}");
        assert!(out.contains(" out, finished: stop, "), "{out}");
    }
}
