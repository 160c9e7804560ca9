//! Signing in and out: the credential is checked by the API's authenticator, then kept only
//! as a signed session cookie (a key session names the key; the key itself is never stored).

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, SET_COOKIE};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use core_domain::{AccessRole, UserIdentity};
use maud::html;
use serde::Deserialize;

use super::session::{
    Principal, SESSION_COOKIE, SIGN_IN_COOKIE, Session, SessionKeys, read_cookie,
};
use super::{Console, ConsoleError, Nav, Viewer, check_csrf, page, respond, see_other};
use crate::AppState;

/// How long a sign-in form's token is good for.
const SIGN_IN_SECONDS: i64 = 30 * 60;

/// Where to go after signing in (`?next=`).
#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    credential: String,
    csrf: String,
    next: Option<String>,
}

/// The sign-out form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct SignOutForm {
    csrf: String,
}

/// `next` if it is a console page (never another site: `//evil`, `https://...`), else the
/// overview.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if super::is_console_path(path.split('?').next().unwrap_or_default())
                && !path.contains("//")
                && !path.contains('\\')
                && path.chars().all(|c| c.is_ascii_graphic()) =>
        {
            path.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

/// A `Set-Cookie` for a console cookie: HttpOnly, `SameSite=Strict`, only for `/console`,
/// `Secure` when the browser came over HTTPS; `seconds` 0 removes it.
fn cookie(req: &HttpRequest, name: &str, value: &str, seconds: i64) -> HeaderValue {
    let secure = if req.connection_info().scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        seconds.max(0)
    );
    // Names are ours and values hex: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// A new session for `principal`, ending at `expires_at` at the latest.
fn start_session(
    req: &HttpRequest,
    keys: &SessionKeys,
    principal: Principal,
    expires_at: Option<i64>,
    next: &str,
) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now().timestamp();
    let end = expires_at.map_or(now + keys.lifetime_seconds(), |token_end| {
        token_end.min(now + keys.lifetime_seconds())
    });
    let session = Session {
        principal,
        x: end,
        c: SessionKeys::new_token().map_err(|e| ConsoleError::Internal(e.to_string()))?,
    };
    let mut response = see_other(next);
    let headers = response.headers_mut();
    headers.append(
        SET_COOKIE,
        cookie(req, SESSION_COOKIE, &keys.seal(&session), end - now),
    );
    headers.append(SET_COOKIE, cookie(req, SIGN_IN_COOKIE, "", 0));
    Ok(response)
}

/// `GET /console/sign-in`: the form (or, with auth disabled, straight in as the local
/// operator).
pub(crate) async fn form(
    req: HttpRequest,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    query: web::Query<Next>,
) -> Result<HttpResponse, ConsoleError> {
    let next = safe_next(query.next.as_deref());
    if !state.auth.requires_credentials() {
        return start_session(&req, &console.keys, Principal::Local, None, &next);
    }
    let token = SessionKeys::new_token().map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let mut response = sign_in_page(StatusCode::OK, &token, &next, None);
    response.headers_mut().append(
        SET_COOKIE,
        cookie(&req, SIGN_IN_COOKIE, &token, SIGN_IN_SECONDS),
    );
    Ok(response)
}

fn sign_in_page(
    status: StatusCode,
    token: &str,
    next: &str,
    problem: Option<&str>,
) -> HttpResponse {
    respond(
        status,
        page(
            None,
            Nav::None,
            "Sign in",
            html! {
                p { "Sign in with a commander API key or a token from your identity provider." }
                form.sign-in method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="next" value=(next);
                    label for="credential" { "API key or token" }
                    input #credential type="password" name="credential" required
                        autocomplete="current-password" autofocus
                        aria-invalid=[problem.map(|_| "true")]
                        aria-describedby=[problem.map(|_| "credential-error")];
                    @if let Some(problem) = problem {
                        p.field-error #credential-error role="alert" { (problem) }
                    }
                    button type="submit" { "Sign in" }
                }
            },
        ),
    )
}

/// `POST /console/sign-in`: checks the credential as the API would, then opens a session.
pub(crate) async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, ConsoleError> {
    let form = form.into_inner();
    let next = safe_next(form.next.as_deref());
    let issued = read_cookie(&req, SIGN_IN_COOKIE).unwrap_or_default();
    if !super::session::tokens_match(&issued, &form.csrf) {
        // The form did not come from the page this browser was given (or that page is older
        // than half an hour): show a fresh one rather than sign anybody in.
        let token = SessionKeys::new_token().map_err(|e| ConsoleError::Internal(e.to_string()))?;
        let mut response = sign_in_page(
            StatusCode::FORBIDDEN,
            &token,
            &next,
            Some("This form has expired. Enter the credential again."),
        );
        response.headers_mut().append(
            SET_COOKIE,
            cookie(&req, SIGN_IN_COOKIE, &token, SIGN_IN_SECONDS),
        );
        return Ok(response);
    }
    if !state.auth.requires_credentials() {
        return start_session(&req, &console.keys, Principal::Local, None, &next);
    }
    let credential = form.credential.trim();
    let verified = state
        .auth
        .verify(Some(format!("Bearer {credential}").as_bytes()));
    let verified = match verified {
        Ok(verified) => verified,
        Err(refusal) => {
            let mut response = sign_in_page(
                StatusCode::UNAUTHORIZED,
                &form.csrf,
                &next,
                Some(&format!("Not signed in: {}", refusal.message())),
            );
            // The same token stays valid for another try.
            response.headers_mut().append(
                SET_COOKIE,
                cookie(&req, SIGN_IN_COOKIE, &form.csrf, SIGN_IN_SECONDS),
            );
            return Ok(response);
        }
    };
    let principal = match (&verified.api_key, &verified.identity) {
        (Some(name), _) => Principal::Key {
            n: name.to_string(),
            d: crate::auth::credential_fingerprint(credential),
        },
        (None, UserIdentity::Authenticated { email_hash, .. }) => Principal::Jwt {
            e: email_hash.as_str().to_owned(),
            a: verified.role == AccessRole::Admin,
        },
        (None, UserIdentity::Anonymous) => Principal::Local,
    };
    start_session(&req, &console.keys, principal, verified.expires_at, &next)
}

/// `POST /console/sign-out`: ends the session (the cookie is removed).
pub(crate) async fn sign_out(
    req: HttpRequest,
    viewer: Viewer,
    form: web::Form<SignOutForm>,
) -> Result<HttpResponse, ConsoleError> {
    check_csrf(&viewer, &form.csrf)?;
    let mut response = see_other("/console/sign-in");
    response
        .headers_mut()
        .append(SET_COOKIE, cookie(&req, SESSION_COOKIE, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_console() {
        assert_eq!(
            safe_next(Some("/console/requests?door=messages")),
            "/console/requests?door=messages"
        );
        assert_eq!(safe_next(Some("/console")), "/console");
        for foreign in [
            "//evil.example",
            "https://evil.example/console",
            "/consolex",
            "/console//evil",
            "/console/\\evil",
            "/v1/models",
            "/console/a b",
        ] {
            assert_eq!(safe_next(Some(foreign)), "/console", "{foreign}");
        }
        assert_eq!(safe_next(None), "/console");
    }
}
