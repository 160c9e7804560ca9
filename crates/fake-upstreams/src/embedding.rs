//! The embedding endpoints: OpenAI's `POST /v1/embeddings`, Gemini's `:embedContent` and
//! `:batchEmbedContents`. A scripted answer's vectors are derived from each input's text
//! ([`embedding_of`]), so a test can compute what it should get back.

use actix_web::HttpRequest;
use serde_json::{Value, json};

use crate::reply::Answer;
use crate::server::Wire;

/// The vector length the fake answers with when the request does not ask for one.
pub const FAKE_EMBEDDING_DIMENSIONS: usize = 8;

/// An embedding request as the fake understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EmbeddingCall {
    pub model: String,
    pub inputs: Vec<String>,
    pub dimensions: Option<usize>,
    /// Gemini's `:batchEmbedContents` (answers `embeddings`, not `embedding`).
    pub batch: bool,
}

/// The vector the fake answers for `text`: `dimensions` multiples of 1/1024 in [-1, 1]
/// (exact as `f32`, so a test compares them exactly), from an FNV-1a hash of the text.
pub fn embedding_of(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (0..dimensions)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let step = i16::try_from((state >> 53) & 0x7ff).unwrap_or(0) - 1024;
            f32::from(step) / 1024.0
        })
        .collect()
}

/// The embedding request `req` makes, if its path is an embedding endpoint of `wire`.
pub(crate) fn embedding_call(wire: Wire, req: &HttpRequest, json: &Value) -> Option<EmbeddingCall> {
    if req.method() != actix_web::http::Method::POST {
        return None;
    }
    let path = req.path();
    let dimensions = |value: &Value| value.as_u64().and_then(|n| usize::try_from(n).ok());
    match wire {
        Wire::OpenAi if path.ends_with("/embeddings") => {
            let inputs = match &json["input"] {
                Value::String(text) => vec![text.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map_or_else(|| item.to_string(), str::to_owned)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some(EmbeddingCall {
                model: json["model"].as_str().unwrap_or_default().to_owned(),
                inputs,
                dimensions: dimensions(&json["dimensions"]),
                batch: false,
            })
        }
        Wire::Google => {
            let rest = path.strip_prefix("/v1beta/models/")?;
            let text = |content: &Value| -> String {
                content["parts"]
                    .as_array()
                    .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
                    .unwrap_or_default()
            };
            if let Some(model) = rest.strip_suffix(":embedContent") {
                return Some(EmbeddingCall {
                    model: model.to_owned(),
                    inputs: vec![text(&json["content"])],
                    dimensions: dimensions(&json["outputDimensionality"]),
                    batch: false,
                });
            }
            let model = rest.strip_suffix(":batchEmbedContents")?;
            let requests = json["requests"].as_array().cloned().unwrap_or_default();
            Some(EmbeddingCall {
                model: model.to_owned(),
                inputs: requests.iter().map(|r| text(&r["content"])).collect(),
                dimensions: requests
                    .first()
                    .and_then(|r| dimensions(&r["outputDimensionality"])),
                batch: true,
            })
        }
        _ => None,
    }
}

/// The wire's answer to `call`: a vector per input; OpenAI's usage is the answer's input
/// tokens (Gemini reports none).
pub(crate) fn render(wire: Wire, call: &EmbeddingCall, answer: &Answer) -> Value {
    let size = call.dimensions.unwrap_or(FAKE_EMBEDDING_DIMENSIONS);
    let vectors = call.inputs.iter().map(|text| embedding_of(text, size));
    match wire {
        Wire::Google if call.batch => json!({
            "embeddings": vectors.map(|values| json!({"values": values})).collect::<Vec<_>>()
        }),
        Wire::Google => json!({
            "embedding": {"values": vectors.into_iter().next().unwrap_or_default()}
        }),
        Wire::OpenAi | Wire::Anthropic => {
            let mut body = json!({
                "object": "list",
                "data": vectors.enumerate().map(|(index, embedding)| json!({
                    "object": "embedding", "index": index, "embedding": embedding
                })).collect::<Vec<_>>(),
                "model": call.model,
            });
            if answer.with_usage {
                body["usage"] = json!({
                    "prompt_tokens": answer.input_tokens,
                    "total_tokens": answer.input_tokens,
                });
            }
            body
        }
    }
}
