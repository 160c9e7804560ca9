//! Embeddings against the fake OpenAI and Gemini: the requests sent, the vectors read back in
//! order, and every hostile answer ending as a clean error.

use core_domain::{ProviderKind, TokenUsage};
use fake_upstreams::{FAKE_EMBEDDING_DIMENSIONS, Reply, Wire, embedding_of};
use providers::{
    AttemptEvent, Destination, EmbeddingRequest, ProviderError, Route, Router, RoutingConfig,
    TokioSleeper,
};
use serde_json::json;

use crate::*;

fn embedding(model: &str, inputs: &[&str], dimensions: Option<u32>) -> EmbeddingRequest {
    EmbeddingRequest {
        model: model.to_owned(),
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        dimensions,
        base_url: None,
        single_attempt: false,
        deadline: None,
    }
}

#[tokio::test]
async fn openai_embeddings_ask_for_floats_and_come_back_in_order_with_usage() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::text("").usage(9, 0));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);

    let answer = provider
        .embed(&embedding(
            "text-embedding-3-small",
            &["alpha", "beta"],
            Some(4),
        ))
        .await
        .unwrap();
    assert_eq!(
        answer.vectors,
        [embedding_of("alpha", 4), embedding_of("beta", 4)]
    );
    assert_eq!(answer.usage, TokenUsage::reported(9, 0));
    assert_eq!(answer.model, "text-embedding-3-small");

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(
        sent.body,
        json!({"model": "text-embedding-3-small", "input": ["alpha", "beta"],
            "encoding_format": "float", "dimensions": 4})
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
}

#[tokio::test]
async fn openai_embeddings_without_usage_are_estimated_and_flagged() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::text("").without_usage());
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let answer = provider
        .embed(&embedding("m", &["abcdefgh"], None))
        .await
        .unwrap();
    assert_eq!(answer.usage, TokenUsage::estimated(2, 0));
    assert_eq!(answer.vectors[0].len(), FAKE_EMBEDDING_DIMENSIONS);
    assert!(fake.requests()[0].body.get("dimensions").is_none());
}

#[tokio::test]
async fn gemini_embeds_one_input_with_embed_content_and_several_with_a_batch() {
    let fake = start(Wire::Google).await;
    let provider = provider(&config_for(&fake), ProviderKind::Google);

    let one = provider
        .embed(&embedding("gemini-embedding-001", &["solo"], Some(3)))
        .await
        .unwrap();
    assert_eq!(one.vectors, [embedding_of("solo", 3)]);
    assert_eq!(
        one.usage,
        TokenUsage::estimated(1, 0),
        "Gemini reports no tokens"
    );

    let many = provider
        .embed(&embedding(
            "gemini-embedding-001",
            &["a", "bb", "ccc"],
            None,
        ))
        .await
        .unwrap();
    let expected: Vec<Vec<f32>> = ["a", "bb", "ccc"]
        .iter()
        .map(|t| embedding_of(t, FAKE_EMBEDDING_DIMENSIONS))
        .collect();
    assert_eq!(many.vectors, expected);

    let sent = fake.requests();
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-embedding-001:embedContent"
    );
    assert_eq!(
        sent[0].body,
        json!({"model": "models/gemini-embedding-001",
            "content": {"parts": [{"text": "solo"}]}, "outputDimensionality": 3})
    );
    assert_eq!(sent[0].header("x-goog-api-key"), Some(GOOGLE_KEY));
    assert_eq!(sent[0].query, "", "the key never travels in the URL");
    assert_eq!(
        sent[1].path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(sent[1].body["requests"].as_array().unwrap().len(), 3);
    assert_eq!(
        sent[1].body["requests"][2],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "ccc"}]}})
    );
}

#[tokio::test]
async fn hostile_embedding_answers_are_clean_errors() {
    let cases: [(Wire, Reply, &str); 8] = [
        (
            Wire::OpenAi,
            Reply::status(
                200,
                json!({"data": [{"index": 0, "embedding": [1.0]}]}).to_string(),
            ),
            "1 vector(s) for 2 input(s)",
        ),
        (
            Wire::OpenAi,
            Reply::status(
                200,
                json!({"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1]}],
                    "usage": {"prompt_tokens": 5}})
                .to_string(),
            ),
            "malformed response",
        ),
        (
            Wire::OpenAi,
            Reply::status(
                200,
                r#"{"data": [{"index": 0, "embedding": [1e300]}, {"index": 1, "embedding": [1]}]}"#,
            ),
            "out of range",
        ),
        (
            Wire::OpenAi,
            Reply::status(
                200,
                json!({"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [1]}]})
                    .to_string(),
            ),
            "indexes",
        ),
        (Wire::OpenAi, Reply::malformed(), "malformed response"),
        (
            Wire::Google,
            Reply::status(200, json!({"embeddings": [{"values": [0.5]}]}).to_string()),
            "1 vector(s) for 2 input(s)",
        ),
        (
            Wire::Google,
            Reply::status(200, json!({"embeddings": "nope"}).to_string()),
            "malformed response",
        ),
        (
            Wire::Google,
            Reply::status(
                200,
                json!({"embeddings": [{"values": [0.5]}, {"values": [0.5, 0.5]}]}).to_string(),
            ),
            "one length",
        ),
    ];
    for (wire, reply, reason) in cases {
        let fake = start(wire).await;
        fake.push(reply);
        let kind = match wire {
            Wire::Google => ProviderKind::Google,
            _ => ProviderKind::OpenAi,
        };
        let provider = provider(&config_for(&fake), kind);
        let error = provider
            .embed(&embedding("m", &["one", "two"], None))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::BadResponse { .. }),
            "{wire:?}: {error:?}"
        );
        assert!(error.to_string().contains(reason), "{wire:?}: {error}");
    }
}

#[tokio::test]
async fn an_oversized_embedding_body_is_cut_at_the_response_limit() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::oversized(200, 4 * 1024 * 1024));
    let mut config = config_for(&fake);
    config.max_response_bytes = std::num::NonZeroUsize::new(64 * 1024).unwrap();
    let provider = provider(&config, ProviderKind::OpenAi);
    let error = provider
        .embed(&embedding("m", &["x"], None))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("too large"), "{error}");
}

#[tokio::test]
async fn upstream_errors_keep_their_class_and_anthropic_embeds_nothing() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::status(400, "input too long"));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let error = provider
        .embed(&embedding("m", &["x"], None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::InvalidRequest { status: 400, .. }),
        "{error:?}"
    );

    let anthropic = start(Wire::Anthropic).await;
    anthropic.expect_calls(0);
    let provider = super::provider(&config_for(&anthropic), ProviderKind::Anthropic);
    let error = provider
        .embed(&embedding("claude", &["x"], None))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("offers no embeddings"),
        "{error}"
    );
}

#[tokio::test]
async fn the_router_falls_back_from_a_failing_openai_to_gemini_and_reports_both_attempts() {
    let openai = start(Wire::OpenAi).await;
    openai.set_default(Reply::status(500, "down"));
    let google = start(Wire::Google).await;
    let mut config = config_for(&openai);
    config.google.base_url = google.base_url().to_owned();
    let registry = ProviderRegistry::from_config(&config).unwrap();
    let route = Route::new(
        (
            Destination {
                provider: ProviderKind::OpenAi,
                model: "text-embedding-3-small".into(),
                base_url: None,
            },
            Ok(registry.get(ProviderKind::OpenAi).unwrap()),
        ),
        [(
            Destination {
                provider: ProviderKind::Google,
                model: "gemini-embedding-001".into(),
                base_url: None,
            },
            Ok(registry.get(ProviderKind::Google).unwrap()),
        )],
    );
    let router = Router::new(&RoutingConfig::default(), &TokioSleeper);
    let request = embedding("text-embedding-3-small", &["fall", "back"], None);
    let estimate = request.input_estimate();
    let mut events = Vec::new();
    let (answer, served_by) = router
        .embed(&route, request, estimate, &mut |event| events.push(event))
        .await
        .unwrap();
    assert_eq!(served_by.provider, ProviderKind::Google);
    assert_eq!(
        answer.vectors[1],
        embedding_of("back", FAKE_EMBEDDING_DIMENSIONS)
    );
    let ended: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AttemptEvent::Ended(report) => Some((report.destination.provider, report.error)),
            AttemptEvent::Started(_) => None,
        })
        .collect();
    assert_eq!(ended.len(), 2);
    assert_eq!(ended[0].0, ProviderKind::OpenAi);
    assert!(ended[0].1.is_some());
    assert_eq!(ended[1], (ProviderKind::Google, None));
    assert_eq!(
        google.requests()[0].path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
}
