//! Ask one question of any provider from the command line:
//!
//! ```sh
//! OPENAI_API_KEY=sk-... cargo run -p providers --example ask -- openai gpt-4o-mini "Why is the sky blue?"
//! ```
//!
//! The answer is streamed to stdout as it arrives, then the token usage is printed. The key is
//! read from the provider's variable (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GOOGLE_API_KEY`);
//! `mock` needs none and no network:
//!
//! ```sh
//! cargo run -p providers --example ask -- mock mock-echo "Why is the sky blue?"
//! ```

use std::io::Write;

use core_domain::{ChatMessage, ProviderKind, StreamEvent};
use futures_util::StreamExt;
use providers::{ProviderRegistry, ProviderRequest, ProvidersConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [provider, model, question] = args.as_slice() else {
        eprintln!("usage: ask <openai|anthropic|google|mock> <model> <question>");
        std::process::exit(2);
    };
    let kind: ProviderKind = provider.parse()?;
    let config = ProvidersConfig::default().with_env_keys(|name| std::env::var(name).ok());
    let registry = ProviderRegistry::from_config(&config)?;
    let provider = registry.get(kind).ok_or("provider not registered")?;
    let request = ProviderRequest {
        model: model.clone(),
        system_prompt: "Answer briefly.".into(),
        messages: vec![ChatMessage::user(question.clone())],
        temperature: 0.3,
        max_tokens: 512,
        base_url: None,
        options: Default::default(),
        single_attempt: false,
        deadline: None,
        anthropic: None,
    };
    let mut events = provider.stream(&request).await?;
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::TextDelta(text) => {
                print!("{text}");
                std::io::stdout().flush()?;
            }
            StreamEvent::ToolCallDelta(call) => {
                if let Some(name) = &call.name {
                    print!("\n[calls {name}] ");
                }
                print!("{}", call.arguments);
            }
            // The model's thinking is not part of the answer printed here.
            StreamEvent::ReasoningDelta(_)
            | StreamEvent::ReasoningSignature(_)
            | StreamEvent::RedactedReasoning(_) => {}
            StreamEvent::Finished { usage, model, .. } => println!(
                "\n[{model}: {} tokens in, {} out{}]",
                usage.input_tokens,
                usage.output_tokens,
                if usage.is_estimated {
                    ", estimated"
                } else {
                    ""
                }
            ),
        }
    }
    Ok(())
}
