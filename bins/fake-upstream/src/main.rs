//! `fake-upstream`: a fast fake LLM server for load tests, answering every chat completion with
//! the same text (whole, or streamed in chunks with usage and `[DONE]`); or, with
//! `--conversational`, a scripted model that calls offered tools and answers JSON schemas, for
//! client compatibility tests.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use fake_upstreams::{FakeUpstream, Reply, Wire, conversational};

/// A fake upstream: fixed answers at near-zero cost per request, or a scripted model.
#[derive(Debug, Parser)]
#[command(name = "fake-upstream", version, about)]
struct Cli {
    /// Address to listen on (port 0: a free one, printed at start).
    #[arg(long, default_value = "127.0.0.1:9100")]
    bind: String,
    /// The wire format to speak.
    #[arg(long, value_enum, default_value_t = WireArg::Openai)]
    wire: WireArg,
    /// Answer as a scripted model (tool calls, JSON schema instances, echo) instead of the
    /// fixed text.
    #[arg(long)]
    conversational: bool,
    /// The answer's text.
    #[arg(long, default_value = "The quick brown fox jumps over the lazy dog.")]
    text: String,
    /// Chunks per streamed answer.
    #[arg(long, default_value_t = 8)]
    chunks: usize,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

/// `--wire` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum WireArg {
    /// OpenAI Chat Completions.
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini.
    Google,
}

impl From<WireArg> for Wire {
    fn from(wire: WireArg) -> Self {
        match wire {
            WireArg::Openai => Wire::OpenAi,
            WireArg::Anthropic => Wire::Anthropic,
            WireArg::Google => Wire::Google,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let fake = if cli.conversational {
        conversational::start(&cli.bind, cli.wire.into(), cli.workers)?
    } else {
        let reply = Reply::text(&cli.text)
            .chunks(cli.chunks)
            .chunk_delay(Duration::from_millis(cli.chunk_delay_ms));
        FakeUpstream::start_with(&cli.bind, cli.wire.into(), reply, false, cli.workers)?
    };
    println!("fake-upstream listening: {}", fake.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
