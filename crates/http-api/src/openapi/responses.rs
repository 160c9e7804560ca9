//! The error responses the API document declares once, under `components.responses`, and the
//! handlers' annotations refer to (`response = SpecialistNotFound`).
//!
//! Two families, one per error shape: native (`ErrorEnvelope`, every route outside `/v1`) and
//! OpenAI's (`OpenAiError`, under `/v1`). Besides the answers of a handler, the groups at the
//! end ([`Probe`], [`Open`], [`Guarded`], ...) list what the layers in front of every handler
//! can answer — the perimeter (`perimeter/`), then authentication and the rate limiter — so a
//! route names its group instead of repeating them.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, ToResponse, ToSchema};

use crate::anthropic::wire::AnthropicError;
use crate::openai::wire::OpenAiError;
use crate::views::ErrorEnvelope;

/// A reusable response: its component's name and definition.
type Declared = fn() -> (&'static str, RefOr<Response>);

/// Declares a unit type per reusable response — its name is the component's name, its doc the
/// response's description, its body a reference to the error shape's schema — and `$list`,
/// every one of them, for [`SharedResponses`] to register.
macro_rules! error_responses {
    ($list:ident, $shape:ty: $($(#[doc = $doc:literal])+ $name:ident;)+) => {
        $(
            $(#[doc = $doc])+
            pub(crate) struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (
                        stringify!($name),
                        error_response::<$shape>(concat!($($doc),+).trim()).into(),
                    )
                }
            }
        )+

        /// Every response of this shape.
        const $list: &[Declared] = &[$(<$name as ToResponse<'static>>::response),+];
    };
}

/// A JSON error response of `description` whose body is the schema `Shape`.
fn error_response<Shape: ToSchema>(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(Shape::name())))
                .build(),
        )
        .build()
}

error_responses! { NATIVE, ErrorEnvelope<'static>:
    /// Malformed request (invalid_request): JSON that does not parse or has the wrong types,
    /// or a header the route reads (If-Match) that it cannot read.
    InvalidRequest;
    /// Missing or invalid credentials (unauthorized); see WWW-Authenticate.
    Unauthorized;
    /// Not allowed (forbidden): the caller's e-mail domain is not admitted, or the action
    /// needs an administrator. On a state-changing request (POST, PUT, PATCH, DELETE), also a
    /// web page of a foreign origin (origin_not_allowed).
    Forbidden;
    /// No such specialist (specialist_not_found).
    SpecialistNotFound;
    /// No usage row for that request id, or one that is not the caller's (not_found).
    UsageCallNotFound;
    /// No such budget, or one that does not cover the caller (budget_not_found).
    BudgetNotFound;
    /// A budget covering the call has too little left for the call's worst-case cost
    /// (budget_exceeded): the message names the budget, what is left and when it resets. A
    /// retry cannot help until then: x-should-retry is false. The call is logged with no cost.
    BudgetExceeded;
    /// The change was based on a stale If-Match (version_conflict), the id is taken
    /// (specialist_exists, budget_exists), the catalogue file was edited on disk and is invalid
    /// (catalogue_file_invalid), or the budget is defined in the config file
    /// (budget_read_only).
    Conflict;
    /// The request body did not arrive within the server's body timeout (request_timeout);
    /// the connection is closed.
    RequestTimeout;
    /// The body is over the limit (payload_too_large).
    PayloadTooLarge;
    /// The body is not JSON (unsupported_media_type). Form and text bodies are refused before
    /// routing, on every state-changing request: a web page can send them without a preflight.
    UnsupportedMediaType;
    /// While authentication is disabled, the request names a host this server does not answer
    /// for (host_not_allowed): a defence against DNS rebinding. Use localhost or list the name
    /// in server.allowed_hosts.
    HostNotAllowed;
    /// Validation failed (validation_failed): every field at fault in details.
    ValidationFailed;
    /// Rate limited (rate_limited; see Retry-After), or too many open connections from this
    /// address (too_many_connections; the connection is closed).
    TooManyRequests;
    /// Too many open connections from this address (too_many_connections); the connection is
    /// closed.
    TooManyConnections;
    /// The upstream failed (upstream_error and the other upstream_* codes).
    UpstreamFailed;
    /// The provider is not configured (provider_not_configured), the database (the usage
    /// log's, or the catalogue's with specialists.store = "database") is unreachable
    /// (service_unavailable), or a budget covers the call and its store does not answer
    /// (budget_unavailable).
    Unavailable;
    /// The upstream timed out (upstream_timeout).
    UpstreamTimeout;
}

error_responses! { OPENAI, OpenAiError:
    /// A bad request, as OpenAI answers it (type invalid_request_error; param names the field
    /// at fault): malformed JSON or wrong types (invalid_request), invalid parameters
    /// (validation_failed, which OpenAI's door answers 400 where the native API answers 422;
    /// param names the first), a parameter the specialist's provider cannot honour
    /// (unsupported_parameter), or an upstream refusal of the request
    /// (upstream_invalid_request). A retry cannot help: x-should-retry is false.
    OpenAiInvalidRequest;
    /// Missing or invalid credentials (invalid_api_key, as OpenAI answers); see
    /// WWW-Authenticate.
    OpenAiUnauthorized;
    /// Not allowed (forbidden, of type permission_error): the caller's e-mail domain is not
    /// admitted. On a state-changing request (POST), also a web page of a foreign origin
    /// (origin_not_allowed).
    OpenAiForbidden;
    /// Unknown model (model_not_found): models are specialist ids.
    OpenAiModelNotFound;
    /// The request body did not arrive within the server's body timeout (request_timeout);
    /// the connection is closed.
    OpenAiRequestTimeout;
    /// The body is over the limit (payload_too_large).
    OpenAiPayloadTooLarge;
    /// The body is not JSON (unsupported_media_type). Form and text bodies are refused before
    /// routing, on every state-changing request: a web page can send them without a preflight.
    OpenAiUnsupportedMediaType;
    /// While authentication is disabled, the request names a host this server does not answer
    /// for (host_not_allowed): a defence against DNS rebinding. Use localhost or list the name
    /// in server.allowed_hosts.
    OpenAiHostNotAllowed;
    /// Rate limited (rate_limit_exceeded; see Retry-After), too many open connections from
    /// this address (too_many_connections; the connection is closed), or a budget covering the
    /// call has too little left (type insufficient_quota, code budget_exceeded, as OpenAI
    /// answers a spent quota; x-should-retry is false).
    OpenAiTooManyRequests;
    /// The upstream failed (upstream_error and the other upstream_* codes).
    OpenAiUpstreamFailed;
    /// The provider is not configured (provider_not_configured), or a budget covers the call
    /// and its store does not answer (budget_unavailable).
    OpenAiUnavailable;
    /// The upstream timed out (upstream_timeout).
    OpenAiUpstreamTimeout;
}

error_responses! { ANTHROPIC, AnthropicError:
    /// A bad request, as Anthropic answers it (type invalid_request_error; the message starts
    /// with commander's code and names every field at fault): a body that is not JSON or has
    /// the wrong types (invalid_request), invalid values (validation_failed), what the
    /// specialist's provider cannot take (unsupported_parameter), or an upstream refusal of
    /// the request (upstream_invalid_request). A retry cannot help: x-should-retry is false.
    AnthropicInvalidRequest;
    /// Missing or invalid credentials (authentication_error): a commander key in x-api-key or
    /// Authorization: Bearer; both sent must agree.
    AnthropicUnauthorized;
    /// A budget covering the call has too little left for its worst-case cost
    /// (billing_error); x-should-retry is false.
    AnthropicBillingError;
    /// Not allowed (permission_error): the caller's e-mail domain is not admitted, or a web
    /// page of a foreign origin.
    AnthropicForbidden;
    /// Unknown model (not_found_error): models are specialist ids or their aliases.
    AnthropicModelNotFound;
    /// The request body did not arrive within the server's body timeout; the connection is
    /// closed.
    AnthropicRequestTimeout;
    /// The body is over the limit (request_too_large).
    AnthropicPayloadTooLarge;
    /// The body is a form or text (invalid_request_error), refused before routing.
    AnthropicUnsupportedMediaType;
    /// While authentication is disabled, the request names a host this server does not answer
    /// for: a defence against DNS rebinding.
    AnthropicHostNotAllowed;
    /// Rate limited (rate_limit_error; see Retry-After), by commander or by the upstream.
    AnthropicTooManyRequests;
    /// The upstream failed (api_error).
    AnthropicUpstreamFailed;
    /// The provider is not configured, the upstream is unavailable or the server is shutting
    /// down (overloaded_error).
    AnthropicUnavailable;
    /// The upstream timed out (api_error).
    AnthropicUpstreamTimeout;
}

/// The status and the reusable response of one entry of a group.
type Entry = (u16, Declared);

/// Declares a group of responses that a kind of route shares: each entry becomes a reference
/// to its component, keyed by its status.
macro_rules! response_groups {
    ($($(#[doc = $doc:literal])+ $name:ident = [$(($status:literal, $response:ty)),+ $(,)?];)+) => {$(
        $(#[doc = $doc])+
        pub(crate) struct $name;

        impl $name {
            /// Every entry, for the tests and for registering the components.
            pub(crate) const ENTRIES: &'static [Entry] =
                &[$(($status, <$response as ToResponse<'static>>::response)),+];
        }

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                referenced(Self::ENTRIES)
            }
        }
    )+};
}

fn referenced(entries: &[Entry]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(status, response)| {
            (
                status.to_string(),
                RefOr::Ref(Ref::from_response_name(response().0)),
            )
        })
        .collect()
}

response_groups! {
    /// `/health` and `/ready`: the perimeter, without its Host check (probes come by address).
    Probe = [(408, RequestTimeout), (429, TooManyConnections)];
    /// The other open routes (`/metrics`, `/openapi.json`): the whole perimeter.
    Open = [(408, RequestTimeout), (421, HostNotAllowed), (429, TooManyConnections)];
    /// A native route behind authentication and the rate limiter, read only (GET).
    Guarded = [
        (401, Unauthorized),
        (403, Forbidden),
        (408, RequestTimeout),
        (421, HostNotAllowed),
        (429, TooManyRequests),
    ];
    /// A native state-changing route (POST, PUT, PATCH, DELETE) behind authentication and the
    /// rate limiter: a read-only one's answers, and the refusal of form and text bodies.
    GuardedChange = [
        (401, Unauthorized),
        (403, Forbidden),
        (408, RequestTimeout),
        (415, UnsupportedMediaType),
        (421, HostNotAllowed),
        (429, TooManyRequests),
    ];
    /// An OpenAI-compatible route behind authentication and the rate limiter, read only.
    OpenAiGuarded = [
        (401, OpenAiUnauthorized),
        (403, OpenAiForbidden),
        (408, OpenAiRequestTimeout),
        (421, OpenAiHostNotAllowed),
        (429, OpenAiTooManyRequests),
    ];
    /// A native chat call (`/chat/send`, `/chat/stream`): a guarded change's answers, and what
    /// the call itself can end with before its answer starts.
    ChatCall = [
        (400, InvalidRequest),
        (401, Unauthorized),
        (402, BudgetExceeded),
        (403, Forbidden),
        (404, SpecialistNotFound),
        (408, RequestTimeout),
        (413, PayloadTooLarge),
        (415, UnsupportedMediaType),
        (421, HostNotAllowed),
        (422, ValidationFailed),
        (429, TooManyRequests),
        (502, UpstreamFailed),
        (503, Unavailable),
        (504, UpstreamTimeout),
    ];
    /// `/v1/chat/completions`: the same answers in OpenAI's shape.
    OpenAiChatCall = [
        (400, OpenAiInvalidRequest),
        (401, OpenAiUnauthorized),
        (403, OpenAiForbidden),
        (404, OpenAiModelNotFound),
        (408, OpenAiRequestTimeout),
        (413, OpenAiPayloadTooLarge),
        (415, OpenAiUnsupportedMediaType),
        (421, OpenAiHostNotAllowed),
        (429, OpenAiTooManyRequests),
        (502, OpenAiUpstreamFailed),
        (503, OpenAiUnavailable),
        (504, OpenAiUpstreamTimeout),
    ];
    /// `/v1/messages`: a chat call's answers in Anthropic's shape.
    AnthropicCall = [
        (400, AnthropicInvalidRequest),
        (401, AnthropicUnauthorized),
        (402, AnthropicBillingError),
        (403, AnthropicForbidden),
        (404, AnthropicModelNotFound),
        (408, AnthropicRequestTimeout),
        (413, AnthropicPayloadTooLarge),
        (415, AnthropicUnsupportedMediaType),
        (421, AnthropicHostNotAllowed),
        (429, AnthropicTooManyRequests),
        (502, AnthropicUpstreamFailed),
        (503, AnthropicUnavailable),
        (504, AnthropicUpstreamTimeout),
    ];
    /// `/v1/messages/count_tokens`: no call to pay for, in Anthropic's shape.
    AnthropicCount = [
        (400, AnthropicInvalidRequest),
        (401, AnthropicUnauthorized),
        (403, AnthropicForbidden),
        (404, AnthropicModelNotFound),
        (408, AnthropicRequestTimeout),
        (413, AnthropicPayloadTooLarge),
        (415, AnthropicUnsupportedMediaType),
        (421, AnthropicHostNotAllowed),
        (429, AnthropicTooManyRequests),
        (502, AnthropicUpstreamFailed),
        (503, AnthropicUnavailable),
        (504, AnthropicUpstreamTimeout),
    ];
    /// A change to an existing specialist (PUT, PATCH): a guarded change's answers, the
    /// catalogue's refusals, and its store being unreachable.
    SpecialistChange = [
        (400, InvalidRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, SpecialistNotFound),
        (408, RequestTimeout),
        (409, Conflict),
        (413, PayloadTooLarge),
        (415, UnsupportedMediaType),
        (421, HostNotAllowed),
        (422, ValidationFailed),
        (429, TooManyRequests),
        (503, Unavailable),
    ];
}

/// Registers every reusable response under `components.responses`, where the handlers'
/// references point.
pub(crate) struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for declared in NATIVE.iter().chain(OPENAI).chain(ANTHROPIC) {
            let (name, response) = declared();
            components.responses.insert(name.to_owned(), response);
        }
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::*;

    fn document() -> serde_json::Value {
        serde_json::to_value(crate::ApiDoc::openapi()).unwrap()
    }

    #[test]
    fn every_shared_response_is_declared_once_with_a_description_and_an_error_body() {
        let json = document();
        let declared = json["components"]["responses"].as_object().unwrap();
        assert_eq!(
            declared.len(),
            NATIVE.len() + OPENAI.len() + ANTHROPIC.len(),
            "no name twice"
        );
        for (name, response) in declared {
            let shape = if name.starts_with("OpenAi") {
                "OpenAiError"
            } else if name.starts_with("Anthropic") {
                "AnthropicError"
            } else {
                "ErrorEnvelope"
            };
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty() && !d.starts_with(' ')),
                "{name} has no description"
            );
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{shape}"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_chat_route_refers_to_the_shared_responses_and_lists_the_perimeter_s() {
        let json = document();
        for (path, prefix) in [("/chat/send", ""), ("/v1/chat/completions", "OpenAi")] {
            let responses = json["paths"][path]["post"]["responses"]
                .as_object()
                .unwrap();
            for (status, name) in [
                ("400", "InvalidRequest"),
                ("401", "Unauthorized"),
                ("403", "Forbidden"),
                ("408", "RequestTimeout"),
                ("415", "UnsupportedMediaType"),
                ("421", "HostNotAllowed"),
                ("429", "TooManyRequests"),
                ("502", "UpstreamFailed"),
                ("504", "UpstreamTimeout"),
            ] {
                assert_eq!(
                    responses[status]["$ref"],
                    format!("#/components/responses/{prefix}{name}"),
                    "{path} {status}"
                );
            }
        }
    }

    #[test]
    fn every_route_lists_what_the_perimeter_can_answer() {
        let json = document();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let mut expected = vec!["408", "429"];
                // Probes come by address, whatever Host they name.
                if !["/health", "/ready"].contains(&path.as_str()) {
                    expected.push("421");
                }
                if method != "get" {
                    expected.extend(["403", "415"]);
                }
                for status in expected {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} does not list {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_specialist_change_lists_the_store_being_down() {
        let json = document();
        let mut changes = 0;
        for (path, item) in json["paths"].as_object().unwrap() {
            if !path.starts_with("/specialists") {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                if method == "get" {
                    continue;
                }
                changes += 1;
                assert_eq!(
                    operation["responses"]["503"]["$ref"], "#/components/responses/Unavailable",
                    "{method} {path}"
                );
            }
        }
        assert_eq!(changes, 5, "create, replace, patch, delete, duplicate");
    }

    #[test]
    fn groups_refer_only_to_declared_responses() {
        let declared: Vec<&str> = NATIVE
            .iter()
            .chain(OPENAI)
            .chain(ANTHROPIC)
            .map(|d| d().0)
            .collect();
        for entries in [
            Probe::ENTRIES,
            Open::ENTRIES,
            Guarded::ENTRIES,
            GuardedChange::ENTRIES,
            OpenAiGuarded::ENTRIES,
            ChatCall::ENTRIES,
            OpenAiChatCall::ENTRIES,
            AnthropicCall::ENTRIES,
            AnthropicCount::ENTRIES,
            SpecialistChange::ENTRIES,
        ] {
            for (status, response) in entries {
                let name = response().0;
                assert!(declared.contains(&name), "{status} {name}");
            }
        }
    }
}
