use core_domain::ProviderKind;
use fake_upstreams::{Reply, Wire};
use log_capture::CapturedLogs;

use crate::*;

#[test]
fn keys_never_appear_in_errors_debug_output_or_logs() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut messages = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            for (wire, kind) in [
                (Wire::OpenAi, ProviderKind::OpenAi),
                (Wire::Anthropic, ProviderKind::Anthropic),
                (Wire::Google, ProviderKind::Google),
            ] {
                let fake = start(wire).await;
                // Upstreams quote (parts of) a rejected key back; and a 500 gets retried, so
                // the retry path logs too.
                fake.push(Reply::status(500, "transient"));
                fake.push(Reply::status(
                    401,
                    format!(
                        "Incorrect API key provided: {OPENAI_KEY} / {ANTHROPIC_KEY} / {GOOGLE_KEY}; \
                         sk-te***cdef"
                    ),
                ));
                let quoted = Reply::status(
                    401,
                    format!("Incorrect API key provided: {OPENAI_KEY} {ANTHROPIC_KEY} {GOOGLE_KEY}"),
                );
                fake.push(quoted);
                let provider = provider(&config_for(&fake), kind);
                messages.push(format!("{provider:?}"));
                let err = provider.complete(&request("m")).await.unwrap_err();
                messages.push(err.to_string());
                messages.push(format!("{err:?}"));
                let err = provider.stream(&request("m")).await.err().unwrap();
                messages.push(err.to_string());
            }
        });
    });

    let logs = logs.text();
    assert!(
        !logs.is_empty(),
        "the calls logged something at trace level"
    );
    for text in messages.iter().chain(std::iter::once(&logs)) {
        for key in [OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, "cdef"] {
            assert!(!text.contains(key), "found {key} in: {text}");
        }
    }
}
