//! The page shell every console page shares: head, navigation, the signed-in person, and the
//! response headers that keep pages private and scripts out.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use maud::{DOCTYPE, Markup, html};

use super::session::Viewer;

/// The console's style sheet, embedded at build time.
pub(crate) const STYLE: &str = include_str!("assets/console.css");

/// The console's pages, in navigation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    /// Spend and usage over time.
    Overview,
    /// The latest calls.
    Requests,
    /// The catalogue.
    Specialists,
    /// Spend limits.
    Budgets,
    /// API keys.
    Keys,
    /// Database, usage lag, rate-limit store, providers.
    Health,
    /// A page outside the navigation (sign-in, errors).
    None,
}

impl Nav {
    const ALL: [(Self, &'static str, &'static str); 6] = [
        (Self::Overview, "Overview", "/console"),
        (Self::Requests, "Requests", "/console/requests"),
        (Self::Specialists, "Specialists", "/console/specialists"),
        (Self::Budgets, "Budgets", "/console/budgets"),
        (Self::Keys, "Keys", "/console/keys"),
        (Self::Health, "Health", "/console/health"),
    ];
}

/// A hidden form field carrying the session's anti-forgery token: every form that changes
/// something includes it.
pub(crate) fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A whole page: `title` in the head and as the heading, `body` under it.
pub(crate) fn page(viewer: Option<&Viewer>, active: Nav, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · commander console" }
                link rel="stylesheet" href={ "/console/assets/console.css?v=" (style_version()) };
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "commander" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Console" {
                            ul {
                                @for (nav, label, href) in Nav::ALL {
                                    li {
                                        @if nav == active {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (viewer.label) @if viewer.is_admin() { " (admin)" } }
                            @if !viewer.local {
                                form method="post" action="/console/sign-out" {
                                    (csrf_field(viewer))
                                    button #sign-out type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A short version of the style sheet for its URL (hashed once per process), so a new build's sheet is fetched anew
/// while browsers may keep one for a long time.
fn style_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(STYLE.as_bytes()))
            .chars()
            .take(12)
            .collect()
    })
}

/// `markup` as an HTML response with `status`.
pub(crate) fn respond(status: StatusCode, markup: Markup) -> HttpResponse {
    let mut response = HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string());
    private_page_headers(response.headers_mut());
    response
}

/// A 200 page.
pub(crate) fn ok(markup: Markup) -> HttpResponse {
    respond(StatusCode::OK, markup)
}

/// "See other": where a form's POST sends the browser next, so a reload does not send the
/// form again.
pub(crate) fn see_other(location: &str) -> HttpResponse {
    let mut response = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish();
    private_page_headers(response.headers_mut());
    response
}

/// Headers on every console page: no caching of private numbers, no framing, and a content
/// policy that allows nothing but our own style sheet (the pages run no script at all, and
/// charts are inline SVG drawn with attributes, not styles).
pub(crate) fn private_page_headers(headers: &mut header::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// An error page: `status`, a heading and what to do.
pub(crate) fn error_page(
    viewer: Option<&Viewer>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> HttpResponse {
    respond(
        status,
        page(
            viewer,
            Nav::None,
            title,
            html! {
                p.error role="alert" { (message) }
                p { a href="/console" { "Back to the overview" } }
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::STYLE;

    /// A colour as the sheet writes it: `#rgb`, `#rrggbb`, or `var(--name)` of a `#` colour
    /// declared in `:root`.
    fn resolve(colour: &str) -> [u8; 3] {
        let colour = colour.trim();
        let hex = match colour.strip_prefix("var(") {
            Some(name) => {
                let name = name.trim_end_matches(')');
                let at = STYLE
                    .find(&format!("{name}:"))
                    .unwrap_or_else(|| panic!("{name} is not declared"));
                let value = &STYLE[at + name.len() + 1..];
                value[..value.find(';').unwrap()].trim().to_owned()
            }
            None => colour.to_owned(),
        };
        let digits = hex.strip_prefix('#').unwrap_or_else(|| panic!("{hex}"));
        let digits: String = if digits.len() == 3 {
            digits.chars().flat_map(|c| [c, c]).collect()
        } else {
            digits.to_owned()
        };
        let byte = |i: usize| u8::from_str_radix(&digits[i..i + 2], 16).unwrap();
        [byte(0), byte(2), byte(4)]
    }

    /// WCAG 2 relative luminance.
    fn luminance([r, g, b]: [u8; 3]) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    }

    fn contrast(text: &str, background: &str) -> f64 {
        let (a, b) = (luminance(resolve(text)), luminance(resolve(background)));
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    /// The value of `property` in a rule's declarations, if it is a colour.
    fn colour_of<'a>(declarations: &'a str, property: &str) -> Option<&'a str> {
        declarations
            .split(';')
            .filter_map(|d| d.split_once(':'))
            .find(|(name, _)| name.trim() == property)
            .map(|(_, value)| value.trim())
            .filter(|value| value.starts_with('#') || value.starts_with("var(--"))
    }

    #[test]
    fn text_in_the_sheet_meets_wcag_aa_contrast() {
        const AA: f64 = 4.5;
        // Every rule that sets both a text and a background colour.
        let mut checked = 0;
        for rule in STYLE.split('}') {
            let Some((selector, declarations)) = rule.split_once('{') else {
                continue;
            };
            if let (Some(text), Some(background)) = (
                colour_of(declarations, "color"),
                colour_of(declarations, "background"),
            ) {
                let ratio = contrast(text, background);
                assert!(
                    ratio >= AA,
                    "{}: {text} on {background} is {ratio:.2}",
                    selector.trim()
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 5,
            "the sheet's coloured rules were found ({checked})"
        );
        // Text colours set alone, on the backgrounds they are shown on.
        for (text, background) in [
            ("var(--fg)", "var(--bg)"),
            ("var(--fg)", "var(--panel)"),
            ("var(--muted)", "var(--bg)"),
            ("var(--muted)", "var(--panel)"),
            ("var(--accent)", "var(--bg)"),
            ("var(--bad)", "var(--bg)"),
            ("var(--bad)", "#fff5f5"),
            ("var(--good)", "var(--bg)"),
            ("#8a4b00", "var(--bg)"),
            ("#fff", "#2f4a6d"),
            ("var(--fg)", "#e6f4ea"),
            ("var(--fg)", "#dafbe1"),
            ("var(--fg)", "#ffebe9"),
        ] {
            for colour in [text, background] {
                assert!(
                    colour.starts_with("var(") || STYLE.contains(colour),
                    "{colour} is no longer in the sheet: update this list"
                );
            }
            let ratio = contrast(text, background);
            assert!(ratio >= AA, "{text} on {background} is {ratio:.2}");
        }
    }
}
