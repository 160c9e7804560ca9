//! The JSON bodies the API answers with, as their own types: the HTTP contract stays put when
//! a domain type changes, and each is described in the OpenAPI document.

use chrono::{DateTime, Utc};
use core_domain::{FieldError, PromptRevision, Specialist, Target};
use serde::Serialize;
use usage_store::SummaryRow;
use utoipa::ToSchema;

/// A specialist, in the catalogue file's format.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SpecialistView {
    /// Slug or UUID.
    id: String,
    name: String,
    description: String,
    /// `openai`, `anthropic`, `google` or `mock`.
    provider: String,
    model: String,
    /// An OpenAI-compatible server to call instead of the configured one.
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    system_prompt: String,
    /// Whether callers may offer tools or send tool calls and results; when false, a request
    /// that does is refused (400 `unsupported_parameter`).
    allow_tools: bool,
    /// Whether callers may send images; when false, a request with one is refused.
    allow_images: bool,
    temperature: f64,
    max_tokens: u32,
    /// The specialist's own price, which wins over the price table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<PricingView>,
    /// Targets tried in order after `provider`/`model`/`base_url` fails before the client got
    /// anything; each priced by its own model. Empty when there are none.
    fallbacks: Vec<TargetView>,
    /// Whether a stream whose upstream dies mid-answer continues on the next target, the text
    /// already sent given to it as the start of its answer.
    continue_streams: bool,
    /// Other names callers may use as `model` on the OpenAI door. Empty when there are none.
    aliases: Vec<String>,
    /// `chat` (the chat doors) or `embedding` (`/v1/embeddings` only).
    kind: String,
    /// The vector length an embedding specialist always asks for; absent: the model's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Starts at 1, +1 on every change; also the `ETag`.
    version: u32,
    /// Previous system prompts, oldest first.
    prompt_history: Vec<PromptRevisionView>,
}

/// Where a specialist's calls may go: a provider and model, and for `openai` an
/// OpenAI-compatible server.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TargetView {
    /// `openai`, `anthropic`, `google` or `mock`.
    provider: String,
    model: String,
    /// An OpenAI-compatible server to call instead of the configured one (`openai` only;
    /// https unless allowed in config).
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
}

impl From<&Target> for TargetView {
    fn from(t: &Target) -> Self {
        Self {
            provider: t.provider().as_str().to_owned(),
            model: t.model().to_owned(),
            base_url: t.base_url().map(str::to_owned),
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PricingView {
    input_per_1m: f64,
    output_per_1m: f64,
    /// USD per million cache-read input tokens; absent: the input price.
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_input_per_1m: Option<f64>,
    /// USD per million cache-write input tokens; absent: the input price.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_per_1m: Option<f64>,
}

/// A system prompt that was replaced.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PromptRevisionView {
    system_prompt: String,
    /// The version that had this prompt.
    version: u32,
    replaced_at: DateTime<Utc>,
}

impl From<&PromptRevision> for PromptRevisionView {
    fn from(r: &PromptRevision) -> Self {
        Self {
            system_prompt: r.system_prompt.clone(),
            version: r.version,
            replaced_at: r.replaced_at,
        }
    }
}

impl From<&Specialist> for SpecialistView {
    fn from(s: &Specialist) -> Self {
        Self {
            id: s.id().to_string(),
            name: s.name().to_owned(),
            description: s.description().to_owned(),
            provider: s.provider().as_str().to_owned(),
            model: s.model().to_owned(),
            base_url: s.base_url().map(str::to_owned),
            system_prompt: s.system_prompt().to_owned(),
            allow_tools: s.allow_tools(),
            allow_images: s.allow_images(),
            temperature: s.temperature(),
            max_tokens: s.max_tokens(),
            pricing: s.pricing().map(|p| PricingView {
                input_per_1m: p.input_per_1m(),
                output_per_1m: p.output_per_1m(),
                cached_input_per_1m: p.cached_input_per_1m(),
                cache_write_per_1m: p.cache_write_per_1m(),
            }),
            fallbacks: s.fallbacks().iter().map(Into::into).collect(),
            continue_streams: s.continue_streams(),
            aliases: s.aliases().to_vec(),
            kind: s.kind().as_str().to_owned(),
            dimensions: s.dimensions(),
            created_at: s.created_at(),
            updated_at: s.updated_at(),
            version: s.version(),
            prompt_history: s.prompt_history().iter().map(Into::into).collect(),
        }
    }
}

/// `GET /specialists`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SpecialistList {
    /// Sorted by name.
    pub specialists: Vec<SpecialistView>,
}

/// One group of a usage summary.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SummaryRowView {
    /// The group's key (a specialist id, model, provider, user email hash or day).
    key: String,
    requests: i64,
    successes: i64,
    failures: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
    avg_latency_ms: f64,
    /// Nearest-rank median.
    p50_latency_ms: f64,
    /// Nearest-rank 95th percentile.
    p95_latency_ms: f64,
}

impl From<SummaryRow> for SummaryRowView {
    fn from(r: SummaryRow) -> Self {
        Self {
            key: r.key,
            requests: r.requests,
            successes: r.successes,
            failures: r.failures,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
            avg_latency_ms: r.avg_latency_ms,
            p50_latency_ms: r.p50_latency_ms,
            p95_latency_ms: r.p95_latency_ms,
        }
    }
}

/// The error body of every route outside `/v1`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// Machine-readable: `invalid_request`, `validation_failed`, `unauthorized`, `forbidden`,
    /// `specialist_not_found`, `rate_limited`, `provider_not_configured`, `upstream_error`, ...
    #[schema(value_type = String)]
    pub code: crate::ApiCode,
    pub message: &'a str,
    /// For `validation_failed`: every field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldErrorView>>)]
    pub details: Option<&'a [FieldError]>,
    /// The request's id (also in `X-Request-Id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

/// One rule a field broke.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FieldErrorView {
    /// The field's path (`name`, `pricing.input_per_1m`, `conversation_history[2].role`).
    field: String,
    message: String,
}

/// `GET /health` and `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
    /// `/ready` only: the usage database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
}
