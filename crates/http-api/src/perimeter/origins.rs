//! Cross-site request forgery: a state-changing request a web page made a browser send.
//!
//! Browsers send "simple" cross-site requests (a form's POST, a `fetch` without custom
//! headers) without asking the server first, so CORS alone never stops them from acting: it
//! only hides the answer. Browsers do say who sent them (`Origin`, `Sec-Fetch-Site`), and
//! only the CORS-safelisted content types can be sent that way.

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName};

use crate::{ApiCode, ApiError};

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The body types a page may send cross-site without a preflight (the CORS-safelisted
/// `Content-Type` values).
const SIMPLE_BODY_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// The origins browsers may act from.
#[derive(Debug, Clone)]
pub(crate) struct OriginPolicy {
    /// `server.cors_allowed_origins`, lower case, without a trailing slash.
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub(crate) fn new(cors_allowed_origins: &[String]) -> Self {
        Self {
            allowed: cors_allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// The refusal for a state-changing request a browser sent from a page we do not trust,
    /// or with a body type a page can send without a preflight; `None` for everything else
    /// (including any request without `Origin`: curl, SDKs and servers send none).
    /// `forms_welcome` is for the console's own forms, which carry an anti-forgery token
    /// and a `SameSite=Strict` session instead: only the origin checks apply to them.
    pub(crate) fn refusal(
        &self,
        method: &Method,
        headers: &HeaderMap,
        forms_welcome: bool,
    ) -> Option<ApiError> {
        if !is_state_changing(method) {
            return None;
        }
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or(""));
        let trusted = origin.is_some_and(|origin| self.trusts(origin, headers));
        if let Some(origin) = origin
            && !trusted
        {
            return Some(ApiError::new(
                ApiCode::OriginNotAllowed,
                format!(
                    "requests that change state are not accepted from the web origin '{}'; \
                     list it in server.cors_allowed_origins to allow it",
                    printable(origin)
                ),
            ));
        }
        // A browser that left out Origin still says where the request came from.
        let cross_site = headers
            .get(SEC_FETCH_SITE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site && !trusted {
            return Some(ApiError::new(
                ApiCode::OriginNotAllowed,
                "requests that change state are not accepted from another site",
            ));
        }
        if forms_welcome {
            return None;
        }
        let form_like = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                SIMPLE_BODY_TYPES
                    .iter()
                    .any(|simple| essence.eq_ignore_ascii_case(simple))
            });
        form_like.then(|| {
            ApiError::new(
                ApiCode::UnsupportedMediaType,
                "requests that change state take Content-Type: application/json (or no body); \
                 form and text bodies are refused because any web page can send them",
            )
        })
    }

    /// A listed origin, or the server's own (the `Origin`'s host and port are the `Host` the
    /// request was sent to: a page served by this very server, which serves none but may sit
    /// behind a proxy that serves the front end on the same origin).
    fn trusts(&self, origin: &str, headers: &HeaderMap) -> bool {
        let origin = origin.trim_end_matches('/');
        if self
            .allowed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let authority = strip_prefix_ignoring_case(origin, "https://")
            .or_else(|| strip_prefix_ignoring_case(origin, "http://"));
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        matches!((authority, host), (Some(a), Some(h)) if !a.is_empty() && a.eq_ignore_ascii_case(h))
    }
}

/// `text` after `prefix`, the prefix compared ignoring ASCII case.
fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// Methods that change something (GET, HEAD and OPTIONS never do here).
pub(crate) fn is_state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// An origin as shown in a message: short and without control characters.
fn printable(origin: &str) -> String {
    origin
        .chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn code(
        policy: &OriginPolicy,
        method: Method,
        pairs: &[(&'static str, &'static str)],
    ) -> Option<ApiCode> {
        policy
            .refusal(&method, &headers(pairs), false)
            .map(|e| e.code())
    }

    /// What `policy` says to a POST from `origin` to a server addressed as `localhost:8000`.
    fn code_from_origin_to_localhost(
        policy: &OriginPolicy,
        origin: &'static str,
    ) -> Option<ApiCode> {
        let pairs = [("origin", origin), ("host", "localhost:8000")];
        code(policy, Method::POST, &pairs)
    }

    #[test]
    fn foreign_and_null_origins_are_refused_on_state_changing_methods_only() {
        let policy = OriginPolicy::new(&["https://Portal.example/".to_owned()]);
        let refused = Some(ApiCode::OriginNotAllowed);
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                code(
                    &policy,
                    method.clone(),
                    &[("origin", "https://evil.example")]
                ),
                refused
            );
            assert_eq!(code(&policy, method, &[("origin", "null")]), refused);
        }
        assert_eq!(
            code(&policy, Method::GET, &[("origin", "https://evil.example")]),
            None
        );
        assert_eq!(
            code(
                &policy,
                Method::POST,
                &[("origin", "https://portal.example")]
            ),
            None
        );
        assert_eq!(
            code(&policy, Method::POST, &[]),
            None,
            "no Origin: not a browser"
        );
    }

    #[test]
    fn console_forms_pass_the_body_check_but_not_the_origin_check() {
        let policy = OriginPolicy::new(&[]);
        let form = headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "http://localhost:8000"),
            ("host", "localhost:8000"),
        ]);
        assert_eq!(
            policy
                .refusal(&Method::POST, &form, false)
                .map(|e| e.code()),
            Some(ApiCode::UnsupportedMediaType)
        );
        assert_eq!(
            policy.refusal(&Method::POST, &form, true).map(|e| e.code()),
            None
        );
        let foreign = headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "https://evil.example"),
            ("host", "localhost:8000"),
        ]);
        assert_eq!(
            policy
                .refusal(&Method::POST, &foreign, true)
                .map(|e| e.code()),
            Some(ApiCode::OriginNotAllowed)
        );
    }

    #[test]
    fn the_server_s_own_origin_is_trusted() {
        let policy = OriginPolicy::new(&[]);
        assert_eq!(
            code_from_origin_to_localhost(&policy, "http://localhost:8000"),
            None
        );
        assert_eq!(
            code_from_origin_to_localhost(&policy, "http://localhost:3000"),
            Some(ApiCode::OriginNotAllowed),
            "another port is another origin"
        );
    }

    #[test]
    fn cross_site_fetch_metadata_without_a_trusted_origin_is_refused() {
        let policy = OriginPolicy::new(&["https://portal.example".to_owned()]);
        assert_eq!(
            code(&policy, Method::POST, &[("sec-fetch-site", "cross-site")]),
            Some(ApiCode::OriginNotAllowed)
        );
        let listed = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://portal.example"),
        ];
        assert_eq!(code(&policy, Method::POST, &listed), None);
        assert_eq!(
            code(&policy, Method::POST, &[("sec-fetch-site", "same-origin")]),
            None
        );
    }

    #[test]
    fn body_types_a_page_can_send_without_a_preflight_are_refused() {
        let policy = OriginPolicy::new(&[]);
        for content_type in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "Text/Plain;charset=UTF-8",
        ] {
            let pairs = [("content-type", content_type)];
            assert_eq!(
                code(&policy, Method::POST, &pairs),
                Some(ApiCode::UnsupportedMediaType),
                "{content_type}"
            );
            assert_eq!(code(&policy, Method::GET, &pairs), None);
        }
        assert_eq!(
            code(
                &policy,
                Method::POST,
                &[("content-type", "application/json")]
            ),
            None
        );
    }

    #[test]
    fn origins_and_body_types_match_whatever_their_case() {
        let policy = OriginPolicy::new(&["https://Portal.example/".to_owned()]);
        for origin in ["HTTPS://PORTAL.EXAMPLE", "https://portal.example/"] {
            assert_eq!(code(&policy, Method::POST, &[("origin", origin)]), None);
        }
        assert_eq!(
            code_from_origin_to_localhost(&policy, "HTTP://LocalHost:8000/"),
            None
        );
        assert_eq!(
            code_from_origin_to_localhost(&policy, "httpx://localhost:8000"),
            Some(ApiCode::OriginNotAllowed),
            "not a scheme"
        );
        assert_eq!(
            code(
                &policy,
                Method::POST,
                &[("content-type", " MULTIPART/Form-Data ; boundary=x")]
            ),
            Some(ApiCode::UnsupportedMediaType)
        );
        let mut non_ascii = HeaderMap::new();
        for name in [header::ORIGIN, header::HOST] {
            non_ascii.insert(name, HeaderValue::from_bytes("hé".as_bytes()).unwrap());
        }
        assert_eq!(
            policy
                .refusal(&Method::POST, &non_ascii, false)
                .map(|error| error.code()),
            Some(ApiCode::OriginNotAllowed),
            "an origin that is not ASCII text is refused"
        );
    }
}
