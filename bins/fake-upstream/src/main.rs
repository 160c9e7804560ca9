//! `fake-upstream`: a fast OpenAI-compatible server for load tests, answering every chat
//! completion with the same text (whole, or streamed in chunks with usage and `[DONE]`).

use std::time::Duration;

use clap::Parser;
use fake_upstreams::{FakeUpstream, Reply, Wire};

/// A fake OpenAI-compatible upstream: fixed answers, near-zero cost per request.
#[derive(Debug, Parser)]
#[command(name = "fake-upstream", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    bind: String,
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let reply = Reply::text(&cli.text)
        .chunks(cli.chunks)
        .chunk_delay(Duration::from_millis(cli.chunk_delay_ms));
    let fake = FakeUpstream::start_with(&cli.bind, Wire::OpenAi, reply, false, cli.workers)?;
    println!("fake-upstream listening: {}", fake.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
