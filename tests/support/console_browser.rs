//! A minimal browser for the console's end-to-end tests: keeps the cookies the server sets
//! (and drops those it expires), never follows redirects (tests look at each one), and sends
//! forms URL-encoded, as a browser would.

use std::collections::BTreeMap;
use std::time::Duration;

/// One answer as the browser saw it.
#[derive(Debug)]
pub struct ConsolePage {
    /// The status code.
    pub status: u16,
    /// `Location`, for redirects.
    pub location: Option<String>,
    /// Every `Set-Cookie` line, as sent.
    pub set_cookies: Vec<String>,
    /// The body as text.
    pub body: String,
}

impl ConsolePage {
    /// The `Set-Cookie` line for cookie `name`, if the answer set or removed it.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .map(String::as_str)
            .find(|line| line.starts_with(&format!("{name}=")))
    }

    /// The value of the first hidden `csrf` field on the page.
    pub fn csrf(&self) -> Option<String> {
        hidden_value(&self.body, "csrf")
    }

    /// How many times `needle` occurs in the body.
    pub fn count(&self, needle: &str) -> usize {
        self.body.matches(needle).count()
    }

    /// The values of attribute `attribute` (e.g. `data-request-id`), in page order.
    pub fn attribute_values(&self, attribute: &str) -> Vec<String> {
        let marker = format!("{attribute}=\"");
        self.body
            .split(&marker)
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect()
    }
}

/// The `value` of the hidden input named `name` in `html`.
fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    html[start..].split('"').next().map(str::to_owned)
}

/// A browser pointed at one server.
pub struct ConsoleBrowser {
    client: reqwest::Client,
    base_url: String,
    cookies: BTreeMap<String, String>,
}

impl ConsoleBrowser {
    /// A browser with no cookies for the server at `base_url`.
    pub fn new(base_url: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            base_url: base_url.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    /// Sets (or replaces) a cookie by hand, as a tampering client would.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// The value of cookie `name`, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> ConsolePage {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header("cookie", self.cookie_header())
        };
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        for line in &set_cookies {
            let pair = line.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if line.contains("Max-Age=0") || value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let body = response.text().await.expect("a body");
        ConsolePage {
            status,
            location,
            set_cookies,
            body,
        }
    }

    /// GETs `path`.
    pub async fn get(&mut self, path: &str) -> ConsolePage {
        let request = self.client.get(format!("{}{path}", self.base_url));
        self.send(request).await
    }

    /// POSTs `fields` URL-encoded to `path`, with `Origin` if given.
    pub async fn post_form(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> ConsolePage {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        self.send(request).await
    }

    /// Signs in with `credential` through the form (GET it, then POST it with its token),
    /// going to `next`; the answer to the POST.
    pub async fn sign_in(&mut self, credential: &str, next: &str) -> ConsolePage {
        let form = self
            .get(&format!("/console/sign-in?next={}", form_encode(next)))
            .await;
        assert_eq!(form.status, 200, "the sign-in form: {}", form.body);
        let token = form.csrf().expect("the sign-in form has a token");
        self.post_form(
            "/console/sign-in",
            &[("credential", credential), ("csrf", &token), ("next", next)],
            None,
        )
        .await
    }
}

/// Percent-encodes `text` for a form or query value.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
