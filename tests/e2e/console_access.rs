//! The console's door end to end: signing in with an API key or a JWT, the session cookie and
//! what it refuses (forged, tampered, expired with its token), the forms' anti-forgery tokens,
//! foreign origins, the loopback operator when auth is disabled, administrators-only pages,
//! and the console switched off or misconfigured.

use core_domain::AccessRole;
use e2e_support::{ConsoleBrowser, TestApp};
use http_api::{ApiKeyConfig, AuthMode, JwtAlgorithm, JwtConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::json;

const HS_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const USER_KEY: &str = "cmdr_user_key_for_tests_0000000000000000000000000000000000000000";
const ADMIN_KEY: &str = "cmdr_admin_key_for_tests_000000000000000000000000000000000000000";
const SESSION: &str = "commander_console";
const SIGN_IN: &str = "commander_console_signin";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The two keys every console test signs in with: Ada's (a user) and the operators' (admin).
pub(crate) fn api_keys() -> Vec<ApiKeyConfig> {
    vec![
        ApiKeyConfig {
            name: "ada".into(),
            email: "ada@example.com".into(),
            role: AccessRole::User,
            sha256: sha256_hex(USER_KEY),
        },
        ApiKeyConfig {
            name: "ops".into(),
            email: "root@example.com".into(),
            role: AccessRole::Admin,
            sha256: sha256_hex(ADMIN_KEY),
        },
    ]
}

/// The user's and the administrator's API keys.
pub(crate) const KEYS: (&str, &str) = (USER_KEY, ADMIN_KEY);

/// Auth required: the two keys and HS256 JWTs.
async fn app() -> TestApp {
    TestApp::spawn_with(|settings, _| {
        settings.auth.mode = AuthMode::Required;
        settings.auth.api_keys = api_keys();
        settings.auth.jwt = Some(JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(SecretString::from(HS_SECRET)),
            leeway_seconds: 0,
            ..JwtConfig::default()
        });
    })
    .await
}

fn jwt(email: &str, lifetime_seconds: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u1", "email": email, "iat": now, "exp": now + lifetime_seconds}),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The number after `Max-Age=` in a `Set-Cookie` line.
fn max_age(line: &str) -> i64 {
    line.split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age in {line}"))
}

#[tokio::test]
async fn the_sign_in_page_asks_for_a_credential_and_sets_its_form_token() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let page = browser.get("/console/sign-in").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"credential\""), "{}", page.body);
    assert!(page.body.contains(">Sign in</button>"), "{}", page.body);
    let cookie = page.set_cookie(SIGN_IN).expect("a form token cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert_eq!(page.csrf().as_deref(), browser.cookie(SIGN_IN));
    // Unsigned, a console page sends the browser to sign in and back.
    let page = browser.get("/console/requests?door=messages").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location.as_deref(),
        Some("/console/sign-in?next=/console/requests%3Fdoor%3Dmessages")
    );
}

#[tokio::test]
async fn a_wrong_key_gets_401_and_no_session() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let page = browser.sign_in("cmdr_not_a_key", "/console").await;
    assert_eq!(page.status, 401);
    assert!(page.set_cookie(SESSION).is_none(), "{:?}", page.set_cookies);
    assert!(page.body.contains("aria-invalid=\"true\""), "{}", page.body);
    assert!(
        !page.body.contains("cmdr_not_a_key"),
        "echoed the credential"
    );
    assert_eq!(browser.get("/console/requests").await.status, 303);
}

#[tokio::test]
async fn the_right_key_opens_a_strict_http_only_session_and_goes_to_next() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let page = browser.sign_in(USER_KEY, "/console/requests").await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/console/requests"));
    let cookie = page.set_cookie(SESSION).expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(
        !cookie.contains(USER_KEY) && !cookie.contains(&sha256_hex(USER_KEY)),
        "the cookie must not carry the key: {cookie}"
    );
    // The sign-in form's token is spent.
    assert_eq!(max_age(page.set_cookie(SIGN_IN).unwrap()), 0);
    let requests = browser.get("/console/requests").await;
    assert_eq!(requests.status, 200, "{}", requests.body);
    assert!(requests.body.contains("key ada"), "{}", requests.body);
}

#[tokio::test]
async fn a_forged_or_tampered_session_cookie_is_sent_to_sign_in() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    assert_eq!(browser.sign_in(USER_KEY, "/console").await.status, 303);
    let genuine = browser.cookie(SESSION).unwrap().to_owned();
    let (payload, signature) = genuine.split_once('.').unwrap();
    // Claim to be the administrator's key with Ada's signature.
    let text = String::from_utf8(hex::decode(payload).unwrap()).unwrap();
    assert!(text.contains("\"ada\""), "{text}");
    let forged_payload = hex::encode(text.replace("\"ada\"", "\"ops\""));
    let mut flipped = signature.to_owned();
    flipped.replace_range(..1, if signature.starts_with('0') { "1" } else { "0" });
    for bad in [
        format!("{forged_payload}.{signature}"),
        format!("{payload}.{flipped}"),
        "not-a-session".to_owned(),
        String::new(),
    ] {
        browser.set_cookie(SESSION, &bad);
        let page = browser.get("/console/keys").await;
        assert_eq!(page.status, 303, "{bad}");
        assert_eq!(
            page.location.as_deref(),
            Some("/console/sign-in?next=/console/keys")
        );
    }
    browser.set_cookie(SESSION, &genuine);
    assert_eq!(browser.get("/console/keys").await.status, 200);
}

#[tokio::test]
async fn a_sign_in_without_the_form_cookie_token_is_refused_with_403() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let form = browser.get("/console/sign-in").await;
    let token = form.csrf().unwrap();
    browser.clear_cookies();
    let page = browser
        .post_form(
            "/console/sign-in",
            &[("credential", ADMIN_KEY), ("csrf", &token)],
            None,
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.set_cookie(SESSION).is_none());
    // A token of its own making does not help either.
    browser.set_cookie(SIGN_IN, "aa");
    let page = browser
        .post_form(
            "/console/sign-in",
            &[("credential", ADMIN_KEY), ("csrf", "bb")],
            None,
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.set_cookie(SESSION).is_none());
}

#[tokio::test]
async fn signing_out_needs_the_sessions_token_and_clears_the_cookie() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    assert_eq!(browser.sign_in(ADMIN_KEY, "/console").await.status, 303);
    let page = browser.get("/console/budgets").await;
    let token = page.csrf().expect("the sign-out form's token");
    assert!(page.body.contains("id=\"sign-out\""));
    for wrong in ["", "00112233445566778899aabbccddeeff"] {
        let refused = browser
            .post_form("/console/sign-out", &[("csrf", wrong)], None)
            .await;
        assert_eq!(refused.status, 403, "{wrong:?}");
        assert!(refused.set_cookie(SESSION).is_none());
    }
    let missing = browser.post_form("/console/sign-out", &[], None).await;
    assert!(
        missing.status == 400 || missing.status == 403,
        "{}",
        missing.status
    );
    assert_eq!(
        browser.get("/console/budgets").await.status,
        200,
        "still signed in"
    );
    let page = browser
        .post_form("/console/sign-out", &[("csrf", &token)], None)
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/console/sign-in"));
    assert_eq!(max_age(page.set_cookie(SESSION).unwrap()), 0);
    assert_eq!(browser.get("/console/budgets").await.status, 303);
}

#[tokio::test]
async fn a_jwt_signs_in_and_the_session_ends_with_the_token() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let page = browser
        .sign_in(&jwt("grace@example.com", 120), "/console")
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    // The configured session lasts hours; this one ends with the token.
    let lifetime = max_age(page.set_cookie(SESSION).unwrap());
    assert!((100..=120).contains(&lifetime), "{lifetime}");
    let requests = browser.get("/console/requests").await;
    assert_eq!(requests.status, 200);
    assert!(requests.body.contains("user "), "{}", requests.body);

    // A token that expires within the second gives a session that is gone with it.
    let mut short = ConsoleBrowser::new(&app.base_url);
    let page = short
        .sign_in(&jwt("grace@example.com", 1), "/console")
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(max_age(page.set_cookie(SESSION).unwrap()) <= 1);
    let expired = e2e_support::eventually("the session to end with its token", async || {
        let page = short.get("/console/requests").await;
        (page.status == 303).then_some(page)
    })
    .await;
    assert!(expired.location.unwrap().starts_with("/console/sign-in"));
}

#[tokio::test]
async fn a_post_from_a_foreign_origin_is_refused_with_403() {
    let app = app().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let form = browser.get("/console/sign-in").await;
    let token = form.csrf().unwrap();
    let page = browser
        .post_form(
            "/console/sign-in",
            &[("credential", ADMIN_KEY), ("csrf", &token)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.set_cookie(SESSION).is_none());
    // The same form from the console's own origin signs in.
    let page = browser
        .post_form(
            "/console/sign-in",
            &[("credential", ADMIN_KEY), ("csrf", &token)],
            Some(&app.base_url),
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
}

#[tokio::test]
async fn with_auth_disabled_the_local_operator_needs_no_credential() {
    let app = TestApp::spawn().await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let page = browser.get("/console/health").await;
    assert_eq!(page.status, 303);
    let sign_in = page.location.unwrap();
    let page = browser.get(&sign_in).await;
    assert_eq!(page.status, 303, "straight in, no form: {}", page.body);
    assert_eq!(page.location.as_deref(), Some("/console/health"));
    assert!(page.set_cookie(SESSION).is_some());
    let health = browser.get("/console/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.body.contains("local operator"));
    assert!(!health.body.contains("id=\"sign-out\""), "no sign-out");
}

#[tokio::test]
async fn a_user_gets_403_on_an_administrators_page() {
    let app = app().await;
    let mut user = ConsoleBrowser::new(&app.base_url);
    assert_eq!(user.sign_in(USER_KEY, "/console").await.status, 303);
    let page = user.get("/console/health").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("Administrators only"), "{}", page.body);
    let mut admin = ConsoleBrowser::new(&app.base_url);
    assert_eq!(admin.sign_in(ADMIN_KEY, "/console").await.status, 303);
    assert_eq!(admin.get("/console/health").await.status, 200);
}

#[tokio::test]
async fn the_console_can_be_switched_off() {
    let app = TestApp::spawn_with(|settings, _| settings.server.console.enabled = false).await;
    let mut browser = ConsoleBrowser::new(&app.base_url);
    for path in ["/console/sign-in", "/console/requests", "/console"] {
        assert_eq!(browser.get(path).await.status, 404, "{path}");
    }
}

#[test]
fn a_short_session_secret_is_refused_at_start() {
    let mut settings = commander::Settings::default();
    settings.server.console.session_secret = Some("ab".repeat(16));
    let Err(problems) = settings.validate() else {
        panic!("a 16-byte secret is refused");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.key() == "server.console.session_secret"),
        "{:?}",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    settings.server.console.session_secret = Some("ab".repeat(32));
    assert!(settings.validate().is_ok());
}
