//! Authentication end to end: JWTs (HS256, RS256, ES256) and API keys, roles, and identity in
//! usage rows and rate limits.

use std::num::NonZeroU32;

use core_domain::{AccessRole, EmailHash};
use e2e_support::{TestApp, error_body, specialist};
use http_api::{ApiKeyConfig, AuthMode, JwtAlgorithm, JwtConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};

const HS_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const USER_KEY: &str = "cmdr_user_key_for_tests_0000000000000000000000000000000000000000";
const ADMIN_KEY: &str = "cmdr_admin_key_for_tests_000000000000000000000000000000000000000";
const RS_PRIVATE: &str = include_str!("../fixtures/rs256-test-private.pem");
const RS_PUBLIC: &str = include_str!("../fixtures/rs256-test-public.pem");
const ES_PRIVATE: &str = include_str!("../fixtures/es256-test-private.pem");
const ES_PUBLIC: &str = include_str!("../fixtures/es256-test-public.pem");

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(email: &str) -> Value {
    json!({"sub": "u1", "email": email, "exp": now() + 600, "iat": now()})
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The app with auth required: two API keys and JWTs of `algorithm`.
async fn app(algorithm: JwtAlgorithm, allowed_domains: &[&str], requests: u32) -> TestApp {
    let allowed: Vec<String> = allowed_domains.iter().map(|d| (*d).to_owned()).collect();
    TestApp::spawn_with(move |settings, _| {
        settings.auth.mode = AuthMode::Required;
        settings.auth.api_keys = vec![
            ApiKeyConfig {
                name: "ada's laptop".into(),
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
        ];
        settings.auth.jwt = Some(JwtConfig {
            algorithm,
            secret: Some(SecretString::from(HS_SECRET)),
            public_key_pem: match algorithm {
                JwtAlgorithm::HS256 => None,
                JwtAlgorithm::RS256 => Some(RS_PUBLIC.to_owned()),
                JwtAlgorithm::ES256 => Some(ES_PUBLIC.to_owned()),
            },
            leeway_seconds: 5,
            allowed_domains: allowed,
            ..JwtConfig::default()
        });
        settings.rate_limit.requests = NonZeroU32::new(requests).unwrap();
    })
    .await
}

async fn chat_as(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/chat/send"))
        .json(&json!({"specialist_id": "demo", "message": "hi"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Asserts a 401 with the Bearer challenge and a reason containing `why`, which never echoes
/// the credential.
async fn assert_unauthorized(response: reqwest::Response, why: &str, credential: &str) {
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"commander\""),
        "{challenge}"
    );
    let raw = response.text().await.unwrap();
    assert!(
        !credential.is_empty() && !raw.contains(credential),
        "echoed the credential: {raw}"
    );
    let body: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(why), "'{message}' should say '{why}'");
}

#[tokio::test]
async fn valid_hs256_token_is_admitted_and_its_email_hash_is_logged() {
    let app = app(JwtAlgorithm::HS256, &[], 1000).await;
    let token = hs256(&claims("  Ada@Example.COM "));
    let response = chat_as(&app, Some(&token)).await;
    assert_eq!(response.status(), 200);
    let rows = app.usage_rows().await;
    assert_eq!(
        rows[0].user_email_hash.as_deref(),
        Some(EmailHash::of_email("ada@example.com").as_str())
    );
    // Computed independently of our own hashing code.
    assert_eq!(
        rows[0].user_email_hash.as_deref(),
        Some(sha256_hex("ada@example.com").as_str())
    );
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_are_admitted() {
    let rs = app(JwtAlgorithm::RS256, &[], 1000).await;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("grace@example.com"),
        &EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(chat_as(&rs, Some(&token)).await.status(), 200);

    let es = app(JwtAlgorithm::ES256, &[], 1000).await;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("grace@example.com"),
        &EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(chat_as(&es, Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let app = app(JwtAlgorithm::HS256, &[], 1000).await;
    let expired = hs256(&json!({"email": "ada@example.com", "exp": now() - 60}));
    assert_unauthorized(chat_as(&app, Some(&expired)).await, "expired", &expired).await;
    let early = hs256(&json!({"email": "ada@example.com", "exp": now() + 600, "nbf": now() + 300}));
    assert_unauthorized(chat_as(&app, Some(&early)).await, "not valid yet", &early).await;
    // Within the leeway both are fine.
    let just = hs256(&json!({"email": "ada@example.com", "exp": now() - 2, "nbf": now() + 2}));
    assert_eq!(chat_as(&app, Some(&just)).await.status(), 200);
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let app = app(JwtAlgorithm::RS256, &[], 1000).await;
    // Signed with another key.
    let other = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("ada@example.com"),
        &EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_unauthorized(chat_as(&app, Some(&other)).await, "algorithm", &other).await;

    let valid = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("ada@example.com"),
        &EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut parts: Vec<&str> = valid.split('.').collect();
    let tampered_payload =
        b64(&json!({"email": "root@example.com", "exp": now() + 600, "role": "admin"}).to_string());
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");
    assert_unauthorized(chat_as(&app, Some(&tampered)).await, "signature", &tampered).await;

    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims("ada@example.com").to_string())
    );
    assert_unauthorized(chat_as(&app, Some(&none)).await, "malformed", &none).await;

    // The classic confusion: HS256 "signed" with the RS256 public key as the secret.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("ada@example.com"),
        &EncodingKey::from_secret(RS_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_unauthorized(chat_as(&app, Some(&confused)).await, "algorithm", &confused).await;
}

fn b64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn domains_and_missing_email_are_checked() {
    let app = app(JwtAlgorithm::HS256, &["example.com"], 1000).await;
    let outsider = hs256(&claims("mallory@evil.test"));
    let response = chat_as(&app, Some(&outsider)).await;
    assert_eq!(response.status(), 403);
    let error = error_body(response).await;
    assert_eq!(error["code"], "forbidden");
    assert!(error["message"].as_str().unwrap().contains("evil.test"));

    let no_email = hs256(&json!({"sub": "u1", "exp": now() + 600}));
    assert_unauthorized(chat_as(&app, Some(&no_email)).await, "email", &no_email).await;
    assert_eq!(
        chat_as(&app, Some(&hs256(&claims("ada@example.com"))))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn api_keys_right_wrong_and_missing() {
    let app = app(JwtAlgorithm::HS256, &[], 1000).await;
    assert_eq!(chat_as(&app, Some(USER_KEY)).await.status(), 200);
    let wrong = "cmdr_not_a_key_we_know_00000000000000000000000000000000000000000";
    assert_unauthorized(chat_as(&app, Some(wrong)).await, "unknown API key", wrong).await;
    let response = chat_as(&app, None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"commander\""
    );
    assert_eq!(error_body(response).await["code"], "unauthorized");
    let basic = app
        .client
        .post(app.url("/chat/send"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({"specialist_id": "demo", "message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_unauthorized(basic, "Bearer", "dXNlcjpwYXNz").await;
    // Health and readiness need no credentials.
    assert_eq!(app.get("/health").await.status(), 200);
    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1, "refused calls reach no specialist");
    assert_eq!(
        rows[0].user_email_hash.as_deref(),
        Some(EmailHash::of_email("ada@example.com").as_str())
    );
}

#[tokio::test]
async fn users_see_their_own_usage_and_only_admins_see_everyone_s() {
    let app = app(JwtAlgorithm::HS256, &[], 1000).await;
    assert_eq!(chat_as(&app, Some(USER_KEY)).await.status(), 200);
    assert_eq!(chat_as(&app, Some(ADMIN_KEY)).await.status(), 200);
    app.usage_rows().await;

    let get = |key: &'static str, query: &'static str| {
        let request = app
            .client
            .get(app.url(&format!("/usage/summary?group_by=user{query}")))
            .bearer_auth(key);
        async move { request.send().await.unwrap() }
    };
    let own: Value = get(USER_KEY, "").await.json().await.unwrap();
    assert_eq!(own["rows"].as_array().unwrap().len(), 1);
    assert_eq!(
        own["rows"][0]["key"],
        sha256_hex("ada@example.com").as_str()
    );

    let refused = get(USER_KEY, "&scope=all").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(error_body(refused).await["code"], "forbidden");

    let everyone: Value = get(ADMIN_KEY, "").await.json().await.unwrap();
    assert_eq!(everyone["rows"].as_array().unwrap().len(), 2);
    let admin_own: Value = get(ADMIN_KEY, "&scope=own").await.json().await.unwrap();
    assert_eq!(
        admin_own["rows"][0]["key"],
        sha256_hex("root@example.com").as_str()
    );
}

#[tokio::test]
async fn two_users_have_separate_rate_limit_buckets() {
    let app = app(JwtAlgorithm::HS256, &[], 1).await;
    assert_eq!(chat_as(&app, Some(USER_KEY)).await.status(), 200);
    assert_eq!(chat_as(&app, Some(USER_KEY)).await.status(), 429);
    // Same address, another user: a bucket of their own.
    assert_eq!(chat_as(&app, Some(ADMIN_KEY)).await.status(), 200);
    let grace = hs256(&claims("grace@example.com"));
    assert_eq!(chat_as(&app, Some(&grace)).await.status(), 200);
    assert_eq!(chat_as(&app, Some(&grace)).await.status(), 429);
}

/// HS256 with every optional check configured: issuer, audience, a custom email claim and
/// admin from a list claim.
async fn strict_app() -> TestApp {
    TestApp::spawn_with(|settings, _| {
        settings.auth.mode = AuthMode::Required;
        settings.auth.jwt = Some(JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(SecretString::from(HS_SECRET)),
            issuer: Some("https://login.example.com".into()),
            audience: Some("commander".into()),
            email_claim: "upn".into(),
            admin_claim: "groups".into(),
            admin_value: "gateway-admins".into(),
            leeway_seconds: 5,
            ..JwtConfig::default()
        });
    })
    .await
}

fn strict_claims(groups: &[&str]) -> Value {
    json!({"upn": "ada@example.com", "iss": "https://login.example.com", "aud": "commander",
           "exp": now() + 600, "groups": groups})
}

#[tokio::test]
async fn issuer_audience_and_a_required_exp_are_enforced() {
    let app = strict_app().await;
    assert_eq!(
        chat_as(&app, Some(&hs256(&strict_claims(&[]))))
            .await
            .status(),
        200
    );
    let cases = [
        (
            "iss",
            json!("https://evil.example.com"),
            "issuer is not accepted",
        ),
        ("aud", json!("another-service"), "not meant for this server"),
    ];
    for (claim, value, why) in cases {
        let mut claims = strict_claims(&[]);
        claims[claim] = value;
        let token = hs256(&claims);
        assert_unauthorized(chat_as(&app, Some(&token)).await, why, &token).await;
        // Leaving the claim out is no way around the check.
        claims.as_object_mut().unwrap().remove(claim);
        let token = hs256(&claims);
        let absent = format!("({claim}) and one is required");
        assert_unauthorized(chat_as(&app, Some(&token)).await, &absent, &token).await;
    }
    // A token that never expires is not accepted.
    let mut forever = strict_claims(&[]);
    forever.as_object_mut().unwrap().remove("exp");
    let token = hs256(&forever);
    assert_unauthorized(chat_as(&app, Some(&token)).await, "(exp)", &token).await;
    // Signed by someone else with the same algorithm.
    let impostor = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &strict_claims(&["gateway-admins"]),
        &EncodingKey::from_secret(b"another-secret-of-thirty-two-characters!"),
    )
    .unwrap();
    assert_unauthorized(chat_as(&app, Some(&impostor)).await, "signature", &impostor).await;
}

#[tokio::test]
async fn the_configured_email_claim_names_the_caller_and_a_group_claim_makes_an_admin() {
    let app = strict_app().await;
    // The email is in `upn`; a token with only `email` has none where we look.
    let mut wrong_place = strict_claims(&[]);
    wrong_place.as_object_mut().unwrap().remove("upn");
    wrong_place["email"] = json!("ada@example.com");
    let token = hs256(&wrong_place);
    assert_unauthorized(chat_as(&app, Some(&token)).await, "'upn' claim", &token).await;

    let body = specialist(
        "by-token",
        "mock",
        "mock-echo",
        "Hi.",
        json!({"name": "Made by a token"}),
    );
    let create = |token: String| {
        app.client
            .post(app.url("/specialists"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let user = create(hs256(&strict_claims(&["staff"]))).await.unwrap();
    assert_eq!(user.status(), 403);
    assert_eq!(error_body(user).await["code"], "forbidden");
    let admin = create(hs256(&strict_claims(&["staff", "gateway-admins"])))
        .await
        .unwrap();
    assert_eq!(admin.status(), 201);

    // A string claim works as well as a list.
    let mut single = strict_claims(&[]);
    single["groups"] = json!("gateway-admins");
    let listed = app
        .client
        .get(app.url("/usage/summary?scope=all"))
        .bearer_auth(hs256(&single))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    assert_eq!(
        chat_as(&app, Some(&hs256(&strict_claims(&[]))))
            .await
            .status(),
        200
    );
    let rows = app.wait_for_usage_rows(1).await;
    assert_eq!(
        rows[0].user_email_hash.as_deref(),
        Some(sha256_hex("ada@example.com").as_str())
    );
}

#[tokio::test]
async fn refused_credentials_are_rate_limited_by_address() {
    let app = app(JwtAlgorithm::HS256, &[], 2).await;
    let wrong = "cmdr_guessing_000000000000000000000000000000000000000000000000000";
    let first = chat_as(&app, Some(wrong)).await;
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    assert_unauthorized(first, "unknown API key", wrong).await;
    let expired = hs256(&json!({"email": "ada@example.com", "exp": now() - 600}));
    let second = chat_as(&app, Some(&expired)).await;
    assert_eq!(second.headers()["x-ratelimit-remaining"], "0");
    assert_unauthorized(second, "expired", &expired).await;
    // The address has used its two requests: guessing stops here.
    let third = chat_as(&app, None).await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(error_body(third).await["code"], "rate_limited");
    // A caller with good credentials has a bucket of their own.
    assert_eq!(chat_as(&app, Some(USER_KEY)).await.status(), 200);
    assert_eq!(
        app.usage_rows().await.len(),
        1,
        "refused calls reach no specialist"
    );
}

#[tokio::test]
async fn refused_credentials_are_counted_on_management_routes_of_both_doors() {
    // Admission is one step on every guarded route, not only the chat ones: /specialists and
    // /v1/models share the management bucket, and a refusal spends the address's token there.
    let app = app(JwtAlgorithm::HS256, &[], 2).await;
    let wrong = "cmdr_guessing_000000000000000000000000000000000000000000000000000";
    let first = app.get_as("/specialists", wrong).await;
    assert_eq!(first.status(), 401);
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    let policy = first.headers()["ratelimit"].to_str().unwrap();
    assert!(policy.starts_with("\"management\";r=1;"), "{policy}");
    let second = app.get_as("/v1/models", wrong).await;
    assert_eq!(second.status(), 401);
    assert_eq!(second.headers()["x-ratelimit-remaining"], "0");
    let third = app.get("/v1/models").await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let error: Value = third.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    let fourth = app.get("/specialists").await;
    assert_eq!(fourth.status(), 429);
    assert_eq!(error_body(fourth).await["code"], "rate_limited");
    // The chat bucket is another, and a valid key has buckets of its own.
    assert_eq!(chat_as(&app, Some(wrong)).await.status(), 401);
    assert_eq!(app.get_as("/v1/models", USER_KEY).await.status(), 200);
    assert_eq!(app.get_as("/specialists", USER_KEY).await.status(), 200);
}

/// The keys of an OpenAI-shaped error, which OpenAI's SDKs parse.
fn assert_openai_shaped(body: &Value, code: &str) {
    let keys: Vec<&str> = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "{body}");
    for key in ["message", "type", "param", "code"] {
        assert!(keys.contains(&key), "{key} missing: {body}");
    }
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[tokio::test]
async fn each_door_of_the_route_table_answers_errors_in_its_own_shape() {
    let app = app(JwtAlgorithm::HS256, &[], 100).await;
    let completion = json!({"model": "demo", "messages": [{"role": "user", "content": "x"}]});
    // Admission's refusal: OpenAI's shape behind the /v1/ door, the native one elsewhere.
    let openai = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&completion)
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 401);
    assert_openai_shaped(&openai.json().await.unwrap(), "invalid_api_key");
    let native = app.get("/specialists").await;
    assert_eq!(native.status(), 401);
    let error = error_body(native).await;
    assert_eq!(error["code"], "unauthorized");
    assert!(error.get("type").is_none(), "{error}");
    // Paths no endpoint serves take their door's shape: an unknown /v1/ route, a method a /v1/
    // route does not allow.
    let unknown = app.get_as("/v1/audio/speech", USER_KEY).await;
    assert_eq!(unknown.status(), 404);
    assert_openai_shaped(&unknown.json().await.unwrap(), "not_found");
    let wrong_method = app.post_json_as("/v1/models", USER_KEY, &json!({})).await;
    assert_eq!(wrong_method.status(), 405);
    assert_openai_shaped(&wrong_method.json().await.unwrap(), "method_not_allowed");
    let unknown = app.get_as("/embeddings", USER_KEY).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_body(unknown).await["code"], "not_found");
    // So do refusals made before any route is matched (the perimeter's).
    let text = app
        .post_raw("/v1/chat/completions", "text/plain", "hello")
        .await;
    assert_eq!(text.status(), 415);
    assert_openai_shaped(&text.json().await.unwrap(), "unsupported_media_type");
    let text = app.post_raw("/chat/send", "text/plain", "hello").await;
    assert_eq!(text.status(), 415);
    assert_eq!(error_body(text).await["code"], "unsupported_media_type");
}
