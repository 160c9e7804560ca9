//! `POST /v1/embeddings` in OpenAI's shape, over an embedding specialist.

use actix_web::{HttpResponse, web};
use core_domain::{Specialist, ValidationErrors, embedding_dimensions};
use providers::EmbeddingRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::chat::prepare_embedding;
use crate::chat::send::served_by_header;
use crate::config::ChatLimits;
use crate::openapi::responses::OpenAiChatCall;
use crate::{ApiError, AppState, RequestContext};

/// The most inputs one request may carry (OpenAI's own limit). Each input is bounded by
/// `chat.max_message_chars`, as a chat message is.
pub(crate) const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The most numbers one answer may hold (inputs × dimensions): OpenAI's largest, 2048 inputs
/// of 3072 dimensions. Each bound alone allows 2048 × 65536, a gigabyte of JSON built in a
/// worker (the mock answers any dimensions it is asked for).
const MAX_EMBEDDING_VALUES: u64 = 2048 * 3072;

/// Refuses a request whose answer would hold more than [`MAX_EMBEDDING_VALUES`] numbers.
fn check_answer_size(inputs: usize, dimensions: Option<u32>) -> Result<(), ApiError> {
    let values = u64::try_from(inputs)
        .unwrap_or(u64::MAX)
        .saturating_mul(u64::from(dimensions.unwrap_or(0)));
    if values > MAX_EMBEDDING_VALUES {
        return Err(ApiError::invalid_parameter(
            "dimensions",
            format!(
                "{inputs} inputs of {} dimensions is {values} numbers; one request may ask for \
                 at most {MAX_EMBEDDING_VALUES} (send fewer inputs or fewer dimensions)",
                dimensions.unwrap_or(0)
            ),
        ));
    }
    Ok(())
}

/// An embeddings request, as OpenAI's SDKs send it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingBody {
    /// An embedding specialist's id or one of its aliases.
    model: String,
    /// A string, or a list of 1 to 2048 strings, none empty; each at most
    /// `chat.max_message_chars` characters. Token-id arrays are refused (400 at `input`): send
    /// the text.
    #[serde(default)]
    #[schema(value_type = Object)]
    input: Value,
    /// `float` (default) or `base64`: each vector's little-endian `f32` bytes, base64-encoded,
    /// as OpenAI answers (the official SDKs ask for it by default and decode it).
    encoding_format: Option<String>,
    /// The vector length, 1-65536; must agree with the specialist's own if it fixes one.
    dimensions: Option<i64>,
    /// The caller's id for its end user, recorded on the usage row.
    user: Option<String>,
}

/// How the vectors are written in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

/// A request that passed validation.
#[derive(Debug)]
struct Embedding {
    model: String,
    inputs: Vec<String>,
    encoding: Encoding,
    dimensions: Option<u32>,
    user: Option<String>,
}

impl EmbeddingBody {
    /// The request, or every field at fault (400 in OpenAI's shape).
    fn validate(self, limits: &ChatLimits) -> Result<Embedding, ApiError> {
        let mut errors = ValidationErrors::new();
        let inputs = match self.input {
            Value::String(text) => vec![text],
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => text,
                    _ => String::new(),
                })
                .collect(),
            Value::Array(items) if items.iter().any(|item| item.is_number() || item.is_array()) => {
                errors.push(
                    "input",
                    "token-id arrays are not supported: send the text as a string or a list of \
                     strings",
                );
                Vec::new()
            }
            Value::Null => {
                errors.push("input", "is required");
                Vec::new()
            }
            _ => {
                errors.push("input", "must be a string or a list of strings");
                Vec::new()
            }
        };
        if errors.is_empty() && inputs.is_empty() {
            errors.push("input", "must hold at least one string");
        }
        if inputs.len() > MAX_EMBEDDING_INPUTS {
            errors.push(
                "input",
                format!("must hold at most {MAX_EMBEDDING_INPUTS} strings"),
            );
        } else {
            for (index, text) in inputs.iter().enumerate() {
                let field = if inputs.len() == 1 {
                    "input".to_owned()
                } else {
                    format!("input[{index}]")
                };
                if text.is_empty() {
                    errors.push(field, "must not be empty");
                } else if text.chars().count() > limits.max_message_chars {
                    errors.push(
                        field,
                        format!("must be at most {} characters", limits.max_message_chars),
                    );
                }
            }
        }
        let encoding = match self.encoding_format.as_deref() {
            None | Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some(_) => {
                errors.push("encoding_format", "must be 'float' or 'base64'");
                Encoding::Float
            }
        };
        let dimensions = match self.dimensions {
            None => None,
            Some(n) => embedding_dimensions(n)
                .map_err(|problem| errors.push("dimensions", problem))
                .ok(),
        };
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        Ok(Embedding {
            model: self.model,
            inputs,
            encoding,
            dimensions,
            user: self.user,
        })
    }
}

impl Embedding {
    /// The provider request for `specialist`: its model and base URL, and the dimensions it
    /// fixes, else the caller's; a caller's that contradicts the specialist's is refused.
    fn into_request(
        self,
        specialist: &Specialist,
    ) -> Result<(EmbeddingRequest, Encoding, Option<String>), ApiError> {
        let dimensions = match (specialist.dimensions(), self.dimensions) {
            (Some(fixed), Some(asked)) if fixed != asked => {
                return Err(ApiError::invalid_parameter(
                    "dimensions",
                    format!(
                        "the specialist '{}' always answers {fixed} dimensions, not {asked}",
                        specialist.id()
                    ),
                ));
            }
            (fixed, asked) => fixed.or(asked),
        };
        check_answer_size(self.inputs.len(), dimensions)?;
        Ok((
            EmbeddingRequest {
                model: specialist.model().to_owned(),
                inputs: self.inputs,
                dimensions,
                base_url: specialist.base_url().map(str::to_owned),
                single_attempt: false,
                deadline: None,
            },
            self.encoding,
            self.user,
        ))
    }
}

/// The answer: a list of embeddings in input order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingList {
    /// Always `list`.
    object: &'static str,
    data: Vec<EmbeddingItem>,
    /// The model that answered (after a fallback, the fallback's).
    model: String,
    usage: EmbeddingUsage,
}

/// One input's vector.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingItem {
    /// Always `embedding`.
    object: &'static str,
    /// The input's position in `input`.
    index: usize,
    /// Numbers (`float`), or their little-endian `f32` bytes in base64 (`base64`).
    #[schema(value_type = Object)]
    embedding: Vector,
}

/// A vector as `encoding_format` asked.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

/// What the call consumed: input tokens only (estimated when the upstream reports none,
/// as Gemini does).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

/// `POST /v1/embeddings`: vectors for a string or a list of strings from an embedding
/// specialist, through the same admission, rate limits, budgets, fallbacks, usage row (door
/// `embeddings`) and metrics as a chat call.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingBody,
    responses(
        (status = 200, description = "One embedding per input, in input order", body = EmbeddingList),
        OpenAiChatCall),
    security((), ("bearer" = [])))]
pub(crate) async fn embeddings(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<EmbeddingBody>,
) -> Result<HttpResponse, ApiError> {
    let embedding = body.into_inner().validate(&state.chat_limits)?;
    let model = embedding.model.clone();
    let specialist = crate::chat::resolve_model(&state, &model)?;
    let (request, encoding, user) = embedding.into_request(&specialist)?;
    let answer = prepare_embedding(&state, &context, specialist, request, user)?
        .embed()
        .await?;
    let usage = answer.embeddings.usage;
    Ok(HttpResponse::Ok()
        .insert_header(served_by_header(&answer.served_by))
        .json(EmbeddingList {
            object: "list",
            data: answer
                .embeddings
                .vectors
                .into_iter()
                .enumerate()
                .map(|(index, vector)| EmbeddingItem {
                    object: "embedding",
                    index,
                    embedding: match encoding {
                        Encoding::Float => Vector::Float(vector),
                        Encoding::Base64 => Vector::Base64(base64_of_f32s(&vector)),
                    },
                })
                .collect(),
            model: answer.served_by.model.clone(),
            usage: EmbeddingUsage {
                prompt_tokens: usage.input_tokens,
                total_tokens: usage.input_tokens,
            },
        }))
}

/// `vector`'s little-endian `f32` bytes in standard base64 with padding: what OpenAI sends for
/// `encoding_format: "base64"` and what its SDKs decode (`numpy.frombuffer(..., "float32")`).
fn base64_of_f32s(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n];
        for (position, sextet) in sextets.into_iter().enumerate() {
            // A chunk of k bytes writes k + 1 characters, then `=` padding.
            if position <= chunk.len() {
                out.push(char::from(ALPHABET[(sextet & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use core_domain::MAX_EMBEDDING_DIMENSIONS;
    use serde_json::json;

    use super::*;

    #[test]
    fn base64_is_the_little_endian_f32_bytes_with_padding() {
        assert_eq!(base64_of_f32s(&[]), "");
        // 1.0f32 = 00 00 80 3f.
        assert_eq!(base64_of_f32s(&[1.0]), "AACAPw==");
        // 1.0, -2.0 = 00 00 80 3f 00 00 00 c0.
        assert_eq!(base64_of_f32s(&[1.0, -2.0]), "AACAPwAAAMA=");
        // Three floats: 12 bytes, no padding.
        assert_eq!(base64_of_f32s(&[0.0, 0.0, 0.0]), "AAAAAAAAAAAAAAAA");
    }

    fn body(value: Value) -> Result<Embedding, ApiError> {
        serde_json::from_value::<EmbeddingBody>(value)
            .unwrap()
            .validate(&ChatLimits::default())
    }

    fn field(value: Value) -> String {
        body(value).unwrap_err().first_field().unwrap().to_owned()
    }

    #[test]
    fn input_is_a_string_or_a_list_of_non_empty_strings() {
        let one = body(json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!(
            (one.inputs, one.encoding),
            (vec!["hi".to_owned()], Encoding::Float)
        );
        let list =
            body(json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64"})).unwrap();
        assert_eq!((list.inputs.len(), list.encoding), (2, Encoding::Base64));
        for (bad, at) in [
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m", "input": ""}), "input"),
            (json!({"model": "m", "input": ["a", ""]}), "input[1]"),
            (json!({"model": "m", "input": [1, 2, 3]}), "input"),
            (json!({"model": "m", "input": [[1, 2]]}), "input"),
            (json!({"model": "m", "input": {"text": "x"}}), "input"),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 0}),
                "dimensions",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 65537}),
                "dimensions",
            ),
        ] {
            assert_eq!(field(bad.clone()), at, "{bad}");
        }
        let tokens = body(json!({"model": "m", "input": [1, 2]})).unwrap_err();
        assert!(tokens.message_with_details().contains("token-id arrays"));
        let too_many: Vec<&str> = vec!["x"; MAX_EMBEDDING_INPUTS + 1];
        assert_eq!(field(json!({"model": "m", "input": too_many})), "input");
        let long = "x".repeat(ChatLimits::default().max_message_chars + 1);
        assert_eq!(field(json!({"model": "m", "input": long})), "input");
    }

    #[test]
    fn an_answer_of_more_than_six_million_numbers_is_refused() {
        assert!(check_answer_size(MAX_EMBEDDING_INPUTS, Some(3072)).is_ok());
        assert!(check_answer_size(MAX_EMBEDDING_INPUTS, None).is_ok());
        assert!(check_answer_size(1, Some(MAX_EMBEDDING_DIMENSIONS)).is_ok());
        let refused =
            check_answer_size(MAX_EMBEDDING_INPUTS, Some(MAX_EMBEDDING_DIMENSIONS)).unwrap_err();
        assert_eq!(refused.first_field(), Some("dimensions"));
        assert!(refused.message_with_details().contains("134217728 numbers"));
    }
}
