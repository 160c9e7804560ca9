//! `POST /v1/embeddings` over embedding specialists on OpenAI, Gemini and the mock: the
//! answer in OpenAI's shape (float and base64), dimensions, a fallback from OpenAI to Gemini,
//! the usage row, rate limits and budgets, every refusal, and the chat doors refusing an
//! embedding specialist.

use core_domain::BudgetDraft;
use e2e_support::{TestApp, catalogue, eventually, specialist};
use fake_upstreams::{FAKE_EMBEDDING_DIMENSIONS, FakeUpstream, Reply, Wire, embedding_of};
use secrecy::SecretString;
use serde_json::{Value, json};

/// An embedding specialist `id` on `provider`'s `model`, with `extra` fields.
fn embedder(id: &str, provider: &str, model: &str, extra: Value) -> Value {
    let mut s = specialist(id, provider, model, "", extra);
    s["kind"] = json!("embedding");
    s.as_object_mut().unwrap().remove("system_prompt");
    s
}

/// The two fakes and the app: `small` (OpenAI text-embedding-3-small), `fixed` (the same,
/// fixing 4 dimensions), `gemini` (gemini-embedding-001), `resilient` (OpenAI, falling back to
/// Gemini), `local` (the mock), and `chatty` (a chat specialist on OpenAI).
async fn app_with(
    openai: &FakeUpstream,
    google: &FakeUpstream,
    customize: impl FnOnce(&mut commander::Settings),
) -> TestApp {
    let (openai_url, google_url) = (openai.base_url().to_owned(), google.base_url().to_owned());
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                embedder(
                    "small",
                    "openai",
                    "text-embedding-3-small",
                    json!({"aliases": ["text-embedding-3-small"]}),
                ),
                embedder(
                    "fixed",
                    "openai",
                    "text-embedding-3-small",
                    json!({"dimensions": 4}),
                ),
                embedder("gemini", "google", "gemini-embedding-001", json!({})),
                embedder(
                    "resilient",
                    "openai",
                    "text-embedding-3-large",
                    json!({"fallbacks": [{"provider": "google", "model": "gemini-embedding-001"}]}),
                ),
                embedder("local", "mock", "mock-embed", json!({})),
                specialist("chatty", "openai", "gpt-4o-mini", "Chat.", json!({})),
            ]),
        )
        .unwrap();
        settings.providers.openai.base_url = openai_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
        settings.providers.google.base_url = google_url;
        settings.providers.google.api_key = Some(SecretString::from("google-key"));
        customize(settings);
    })
    .await
}

async fn fakes() -> (FakeUpstream, FakeUpstream) {
    (
        FakeUpstream::start(Wire::OpenAi).await,
        FakeUpstream::start(Wire::Google).await,
    )
}

async fn embed(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/v1/embeddings", &body).await
}

/// The numbers of a float embedding, as `f32`s (the wire carries them in `f32` precision).
fn floats(embedding: &Value) -> Vec<f32> {
    embedding
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A base64 embedding decoded as OpenAI's SDKs decode it: little-endian `f32`s.
fn decoded(embedding: &Value) -> Vec<f32> {
    let text = embedding.as_str().expect("base64 is a string");
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            other => panic!("not base64: {}", other as char),
        }
    };
    let mut bytes = Vec::new();
    for quad in text.as_bytes().chunks(4) {
        let data: Vec<u8> = quad.iter().copied().filter(|c| *c != b'=').collect();
        let n = data
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (value(*c) << (18 - 6 * i)));
        bytes.extend(&n.to_be_bytes()[1..data.len()]);
    }
    assert_eq!(bytes.len() % 4, 0, "whole f32s");
    bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// `GET /usage/calls/{request_id}`, once the row is written.
async fn call_view(app: &TestApp, request_id: &str) -> Value {
    eventually("the call's usage row", async || {
        let response = app.get(&format!("/usage/calls/{request_id}")).await;
        if response.status() == 200 {
            Some(response.json::<Value>().await.unwrap())
        } else {
            None
        }
    })
    .await
}

#[tokio::test]
async fn an_openai_specialist_embeds_a_string_in_floats_and_records_one_row() {
    let (openai, google) = fakes().await;
    openai.push(Reply::text("").usage(50_000, 0));
    google.expect_calls(0);
    let app = app_with(&openai, &google, |_| {}).await;

    let response = embed(
        &app,
        json!({"model": "small", "input": "quarterly revenue"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-commander-served-by"],
        "openai/text-embedding-3-small"
    );
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 50_000, "total_tokens": 50_000})
    );
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(
        (&data[0]["object"], &data[0]["index"]),
        (&json!("embedding"), &json!(0))
    );
    assert_eq!(
        floats(&data[0]["embedding"]),
        embedding_of("quarterly revenue", FAKE_EMBEDDING_DIMENSIONS)
    );
    let sent = &openai.requests()[0];
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(
        sent.body,
        json!({"model": "text-embedding-3-small", "input": ["quarterly revenue"],
            "encoding_format": "float"})
    );

    let row = call_view(&app, &id).await;
    assert_eq!(row["door"], "embeddings");
    assert_eq!(
        (&row["input_tokens"], &row["output_tokens"]),
        (&json!(50_000), &json!(0))
    );
    assert_eq!(row["tokens_estimated"], false);
    assert_eq!(
        (&row["provider"], &row["model"]),
        (&json!("openai"), &json!("text-embedding-3-small"))
    );
    // 50,000 tokens at $0.02 per million.
    let cost = row["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.001).abs() < 1e-12, "{cost}");
    assert_eq!(
        (&row["success"], &row["attempts"]),
        (&json!(true), &json!(1))
    );
    assert_eq!(app.usage_rows().await.len(), 1, "one row per call");
}

#[tokio::test]
async fn a_list_comes_back_in_order_in_base64_by_alias_and_with_dimensions() {
    let (openai, google) = fakes().await;
    let app = app_with(&openai, &google, |_| {}).await;
    let inputs = ["one", "two", "three"];

    let response = embed(
        &app,
        json!({"model": "text-embedding-3-small", "input": inputs,
            "encoding_format": "base64", "dimensions": 16, "user": "end-user-7"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    for (index, text) in inputs.iter().enumerate() {
        let item = &body["data"][index];
        assert_eq!(item["index"], index);
        assert_eq!(
            decoded(&item["embedding"]),
            embedding_of(text, 16),
            "{text}"
        );
    }
    let sent = &openai.requests()[0];
    assert_eq!(
        sent.body["encoding_format"], "float",
        "the upstream always answers floats"
    );
    assert_eq!(sent.body["dimensions"], 16);
    assert_eq!(call_view(&app, &id).await["end_user"], "end-user-7");

    // A specialist that fixes its dimensions sends them unasked, and accepts them restated.
    for body in [
        json!({"model": "fixed", "input": "x"}),
        json!({"model": "fixed", "input": "x", "dimensions": 4}),
    ] {
        let response = embed(&app, body).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            floats(&answer["data"][0]["embedding"]),
            embedding_of("x", 4)
        );
    }
    let sent = openai.requests();
    assert_eq!(
        (&sent[1].body["dimensions"], &sent[2].body["dimensions"]),
        (&json!(4), &json!(4))
    );
}

#[tokio::test]
async fn a_gemini_specialist_embeds_one_and_many_with_estimated_usage() {
    let (openai, google) = fakes().await;
    openai.expect_calls(0);
    let app = app_with(&openai, &google, |_| {}).await;

    let one = embed(
        &app,
        json!({"model": "gemini", "input": "abcdefgh", "dimensions": 3}),
    )
    .await;
    assert_eq!(one.status(), 200);
    let id = request_id(&one);
    let one: Value = one.json().await.unwrap();
    assert_eq!(
        floats(&one["data"][0]["embedding"]),
        embedding_of("abcdefgh", 3)
    );
    assert_eq!(
        one["usage"]["prompt_tokens"], 2,
        "Gemini reports none: estimated"
    );
    assert_eq!(one["model"], "gemini-embedding-001");
    let row = call_view(&app, &id).await;
    assert_eq!(
        (&row["tokens_estimated"], &row["door"]),
        (&json!(true), &json!("embeddings"))
    );

    let many = embed(
        &app,
        json!({"model": "gemini", "input": ["a", "b"], "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(many.status(), 200);
    let many: Value = many.json().await.unwrap();
    assert_eq!(
        decoded(&many["data"][1]["embedding"]),
        embedding_of("b", FAKE_EMBEDDING_DIMENSIONS)
    );
    let paths: Vec<String> = google.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v1beta/models/gemini-embedding-001:embedContent",
            "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        ]
    );
}

#[tokio::test]
async fn the_mock_and_the_default_catalogue_embed_with_no_key() {
    let app = TestApp::spawn().await;
    let response = embed(
        &app,
        json!({"model": "demo-embed", "input": ["hello", "hello"]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let first = floats(&body["data"][0]["embedding"]);
    assert_eq!(first.len(), providers::MOCK_EMBEDDING_DIMENSIONS as usize);
    assert_eq!(
        first,
        floats(&body["data"][1]["embedding"]),
        "deterministic"
    );
    let norm: f32 = first.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert_eq!(body["model"], "mock-embed");
}

#[tokio::test]
async fn a_failing_openai_falls_back_to_gemini_and_the_row_has_both_attempts() {
    let (openai, google) = fakes().await;
    openai.push(Reply::status(500, "embedding backend down"));
    let app = app_with(&openai, &google, |_| {}).await;

    let response = embed(&app, json!({"model": "resilient", "input": ["x", "y"]})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-commander-served-by"],
        "google/gemini-embedding-001"
    );
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "gemini-embedding-001");
    assert_eq!(
        floats(&body["data"][1]["embedding"]),
        embedding_of("y", FAKE_EMBEDDING_DIMENSIONS)
    );
    assert_eq!(openai.request_count(), 1);
    assert_eq!(google.request_count(), 1);
    let row = call_view(&app, &id).await;
    assert_eq!(row["attempts"], 2);
    assert_eq!(row["provider"], "google");
    assert_eq!(row["attempt_details"][0]["provider"], "openai");
}

#[tokio::test]
async fn every_bad_request_is_a_400_in_openai_s_shape_and_calls_nothing() {
    let (openai, google) = fakes().await;
    openai.expect_calls(0);
    google.expect_calls(0);
    let app = app_with(&openai, &google, |_| {}).await;
    let too_many = vec!["x"; 2049];
    let cases = [
        (
            json!({"model": "chatty", "input": "x"}),
            "model",
            "is a chat specialist",
        ),
        (
            json!({"model": "small", "input": ""}),
            "input",
            "must not be empty",
        ),
        (
            json!({"model": "small", "input": []}),
            "input",
            "at least one",
        ),
        (
            json!({"model": "small", "input": ["a", ""]}),
            "input[1]",
            "must not be empty",
        ),
        (
            json!({"model": "small", "input": too_many}),
            "input",
            "at most 2048",
        ),
        (
            json!({"model": "small", "input": [1, 2, 3]}),
            "input",
            "token-id arrays",
        ),
        (
            json!({"model": "small", "input": [[1, 2]]}),
            "input",
            "token-id arrays",
        ),
        (
            json!({"model": "small", "input": "x", "encoding_format": "int8"}),
            "encoding_format",
            "float",
        ),
        (
            json!({"model": "small", "input": "x", "dimensions": 0}),
            "dimensions",
            "between 1",
        ),
        (
            json!({"model": "fixed", "input": "x", "dimensions": 8}),
            "dimensions",
            "always answers 4",
        ),
    ];
    for (body, param, says) in cases {
        let response = embed(&app, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let unknown = embed(&app, json!({"model": "nope", "input": "x"})).await;
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    let extra = embed(
        &app,
        json!({"model": "small", "input": "x", "stream": true}),
    )
    .await;
    assert_eq!(
        extra.status(),
        400,
        "an unknown field is refused, never dropped"
    );
    assert!(
        app.usage_rows().await.is_empty(),
        "a refused request leaves no row"
    );
}

#[tokio::test]
async fn the_chat_doors_refuse_an_embedding_specialist() {
    let (openai, google) = fakes().await;
    openai.expect_calls(0);
    let app = app_with(&openai, &google, |_| {}).await;
    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "model");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'small' is an embedding specialist; use /v1/embeddings"),
        "{message}"
    );

    let native = app.chat("small", "hi").await;
    assert_eq!(native.status(), 400);
    let error: Value = native.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_request");
    assert_eq!(
        error["error"]["details"][0]["field"], "specialist_id",
        "{error}"
    );

    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        let response = app
            .post_json(
                path,
                &json!({"model": "small", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(response.status(), 400, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error", "{path}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("is an embedding specialist"),
            "{path}: {message}"
        );
    }
    assert!(app.usage_rows().await.is_empty());
}

#[tokio::test]
async fn the_model_list_shows_embedding_specialists_with_the_chat_ones() {
    let (openai, google) = fakes().await;
    let app = app_with(&openai, &google, |_| {}).await;
    let list = app.get_json("/v1/models").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in ["small", "gemini", "local", "chatty"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let one = app.get_json("/v1/models/gemini").await;
    assert_eq!(one["id"], "gemini");
    let view = app.get_json("/specialists/fixed").await;
    assert_eq!(
        (&view["kind"], &view["dimensions"]),
        (&json!("embedding"), &json!(4))
    );
    assert_eq!(app.get_json("/specialists/chatty").await["kind"], "chat");
}

#[tokio::test]
async fn rate_limits_and_budgets_apply_to_embeddings() {
    let (openai, google) = fakes().await;
    let app = app_with(&openai, &google, |settings| {
        settings.rate_limit.requests = std::num::NonZeroU32::new(2).unwrap();
        settings.rate_limit.window_seconds = std::num::NonZeroU64::new(3600).unwrap();
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            embed(&app, json!({"model": "local", "input": "x"}))
                .await
                .status(),
            200
        );
    }
    let limited = embed(&app, json!({"model": "local", "input": "x"})).await;
    assert_eq!(limited.status(), 429);
    let error: Value = limited.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");

    let budgeted = app_with(&openai, &google, |settings| {
        settings.budgets.limits = vec![BudgetDraft {
            id: "nothing".into(),
            scope: "global".into(),
            subject: None,
            period: "day".into(),
            limit_usd: 0.0,
            alert_usd: None,
        }];
    })
    .await;
    let before = openai.request_count();
    let refused = embed(&budgeted, json!({"model": "small", "input": "spend"})).await;
    assert_eq!(refused.status(), 429);
    let id = request_id(&refused);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "insufficient_quota", "{error}");
    assert_eq!(openai.request_count(), before, "nothing sent upstream");
    let row = call_view(&budgeted, &id).await;
    assert_eq!(
        (&row["door"], &row["error_code"]),
        (&json!("embeddings"), &json!("budget_exceeded"))
    );
}

#[tokio::test]
async fn embedding_specialists_are_created_patched_and_refused_over_the_api() {
    let app = TestApp::spawn().await;
    let created = app
        .post_json(
            "/specialists",
            &json!({"id": "vectors", "name": "Vectors", "provider": "openai",
                "model": "text-embedding-3-large", "kind": "embedding", "dimensions": 256}),
        )
        .await;
    assert_eq!(created.status(), 201, "no system prompt needed");
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        (&created["kind"], &created["dimensions"]),
        (&json!("embedding"), &json!(256))
    );
    assert_eq!(created["system_prompt"], "");

    let patched: Value = app
        .client
        .patch(app.url("/specialists/vectors"))
        .json(&json!({"dimensions": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        patched.get("dimensions").is_none(),
        "null clears: {patched}"
    );
    assert_eq!(patched["version"], 2);

    let refusals = [
        (json!({"system_prompt": "Be brief."}), "system_prompt"),
        (json!({"temperature": 0.1}), "temperature"),
        (json!({"max_tokens": 10}), "max_tokens"),
        (
            json!({"provider": "anthropic", "model": "claude-3-haiku"}),
            "provider",
        ),
        (
            json!({"fallbacks": [{"provider": "anthropic", "model": "claude-3-haiku"}]}),
            "fallbacks[0].provider",
        ),
        (json!({"dimensions": 70_000}), "dimensions"),
        (json!({"kind": "rerank"}), "kind"),
    ];
    for (change, field) in refusals {
        let response = app
            .client
            .patch(app.url("/specialists/vectors"))
            .json(&change)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{change}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["details"][0]["field"], field, "{error}");
    }
    let chat_with_dimensions = app
        .client
        .patch(app.url("/specialists/demo"))
        .json(&json!({"dimensions": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat_with_dimensions.status(), 422);

    let doc: Value = app.get_json("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    for schema in ["SpecialistView", "SpecialistBody"] {
        let properties = &schemas[schema]["properties"];
        assert!(
            properties["kind"].is_object() && properties["dimensions"].is_object(),
            "{schema}"
        );
    }
    assert!(doc["paths"]["/v1/embeddings"]["post"].is_object());
    assert!(schemas["EmbeddingList"].is_object());
}
