//! The front edge against hostile callers (issue 16): DNS rebinding (Host), cross-site request
//! forgery (Origin, form bodies), slow bodies and connection floods, JWT claim tricks, request
//! ids that leak volume, address spellings that split rate-limit buckets, and HEAD.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use core_domain::AccessRole;
use e2e_support::{TestApp, error_body, eventually};
use http_api::{ApiKeyConfig, AuthMode, Cidr, JwtAlgorithm, JwtConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const HS_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const ADMIN_KEY: &str = "cmdr_admin_key_for_edge_tests_00000000000000000000000000000000000";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn port(app: &TestApp) -> u16 {
    app.base_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("base URL ends in the port")
}

/// Auth required: one admin API key and HS256 JWTs.
fn auth_required(settings: &mut commander::Settings) {
    settings.auth.mode = AuthMode::Required;
    settings.auth.api_keys = vec![ApiKeyConfig {
        name: "ops".into(),
        email: "root@example.com".into(),
        role: AccessRole::Admin,
        sha256: sha256_hex(ADMIN_KEY),
    }];
    settings.auth.jwt = Some(JwtConfig {
        algorithm: JwtAlgorithm::HS256,
        secret: Some(SecretString::from(HS_SECRET)),
        ..JwtConfig::default()
    });
}

async fn specialist_count(app: &TestApp) -> usize {
    let list: Value = app.get_json("/specialists").await;
    list.as_array()
        .or_else(|| list["specialists"].as_array())
        .map(Vec::len)
        .unwrap_or_else(|| panic!("a list of specialists: {list}"))
}

// --- A raw HTTP/1.1 client, for what reqwest will not send or hides ---

/// One response read off a raw connection.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_code(&self) -> String {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("error body is JSON ({e}): {}", self.body));
        let request_id = self.header("x-request-id").expect("X-Request-Id");
        assert_eq!(body["error"]["request_id"], request_id, "{}", self.body);
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Reads one response (Content-Length or chunked body), within 5 s.
async fn read_response(reader: &mut BufReader<TcpStream>) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("name: value");
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(length) = find("content-length") {
            body.resize(length.parse().expect("a length"), 0);
            reader.read_exact(&mut body).await.expect("the body");
        } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await.expect("chunk size");
                let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).await.expect("chunk");
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        RawResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("a response within 5 s")
}

/// True when the server closes the connection (EOF) within 5 s.
async fn closed_by_server(reader: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await,
        Ok(Ok(0))
    )
}

async fn connect(app: &TestApp) -> BufReader<TcpStream> {
    BufReader::new(
        TcpStream::connect(("127.0.0.1", port(app)))
            .await
            .expect("connects"),
    )
}

async fn send(reader: &mut BufReader<TcpStream>, request: &str) {
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .expect("request written");
}

async fn get_health(reader: &mut BufReader<TcpStream>) -> RawResponse {
    send(reader, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    read_response(reader).await
}

// --- Item 4: DNS rebinding while auth is disabled ---

#[tokio::test]
async fn a_foreign_host_is_refused_with_421_while_auth_is_disabled() {
    let app = TestApp::spawn().await;
    let evil = format!("evil.example:{}", port(&app));
    let response = app.get_with_header("/specialists", "host", &evil).await;
    assert_eq!(response.status(), 421);
    assert_eq!(error_body(response).await["code"], "host_not_allowed");

    let chat = app
        .client
        .post(app.url("/chat/send"))
        .header("host", &evil)
        .json(&json!({"specialist_id": "demo", "message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 421);
    let deleted = app
        .client
        .delete(app.url("/specialists/demo"))
        .header("host", &evil)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 421);
    assert_eq!(
        app.get("/specialists/demo").await.status(),
        200,
        "the specialist is still there"
    );
    assert!(app.usage_rows().await.is_empty(), "no call was made");
    // The OpenAI-compatible routes refuse in their own shape.
    let models = app.get_with_header("/v1/models", "host", &evil).await;
    assert_eq!(models.status(), 421);
    let body: Value = models.json().await.unwrap();
    assert_eq!(body["error"]["code"], "host_not_allowed");
}

#[tokio::test]
async fn loopback_names_listed_hosts_and_probes_are_admitted() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.allowed_hosts = vec!["commander.internal".parse().unwrap()];
    })
    .await;
    let port = port(&app);
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.3.2.1".to_owned(),
        format!("[::1]:{port}"),
        format!("Commander.Internal:{port}"),
    ] {
        let response = app.get_with_header("/specialists", "host", &host).await;
        assert_eq!(response.status(), 200, "{host}");
    }
    // Probes call by address, whatever the Host; they say only "up" and change nothing.
    for path in ["/health", "/ready"] {
        let response = app.get_with_header(path, "host", "10.1.2.3:8000").await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = app
        .get_with_header("/metrics", "host", "evil.example")
        .await;
    assert_eq!(metrics.status(), 421, "metrics are not a probe");
}

#[tokio::test]
async fn a_missing_host_or_a_foreign_absolute_target_is_refused() {
    let app = TestApp::spawn().await;
    // HTTP/1.0 may leave out Host.
    let mut connection = connect(&app).await;
    send(&mut connection, "GET /specialists HTTP/1.0\r\n\r\n").await;
    let response = read_response(&mut connection).await;
    assert_eq!(response.status, 421);
    assert_eq!(response.error_code(), "host_not_allowed");

    // The authority of an absolute-form target counts as much as the Host header.
    let mut connection = connect(&app).await;
    send(
        &mut connection,
        "GET http://evil.example/specialists HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let response = read_response(&mut connection).await;
    assert_eq!(response.status, 421);
    assert_eq!(response.error_code(), "host_not_allowed");

    // HTTP/1.1 without a Host, or with two, never reaches a route: actix-http refuses it
    // while parsing (400, before any middleware could give it our error body).
    for request in [
        "GET /specialists HTTP/1.1\r\n\r\n",
        "GET /specialists HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
    ] {
        let mut connection = connect(&app).await;
        send(&mut connection, request).await;
        assert_eq!(
            read_response(&mut connection).await.status,
            400,
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn with_auth_required_the_host_is_not_checked() {
    let app = TestApp::spawn_with(|settings, _| auth_required(settings)).await;
    let response = app
        .client
        .get(app.url("/specialists"))
        .header("host", "api.example.com")
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

// --- Item 5: cross-site request forgery ---

#[tokio::test]
async fn a_cross_site_form_post_cannot_duplicate_a_specialist() {
    let app = TestApp::spawn().await;
    let before = specialist_count(&app).await;
    let forged = |origin: Option<&'static str>, content_type: Option<&'static str>| {
        let mut request = app.client.post(app.url("/specialists/demo/duplicate"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let form = Some("application/x-www-form-urlencoded");
    let response = forged(Some("https://evil.example"), form).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(error_body(response).await["code"], "origin_not_allowed");
    // A sandboxed page or a file sends `Origin: null`: foreign too.
    let response = forged(Some("null"), None).await.unwrap();
    assert_eq!(response.status(), 403);
    // Even without an Origin, a body a page could send without asking is refused.
    for content_type in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ] {
        let response = forged(None, Some(content_type)).await.unwrap();
        assert_eq!(response.status(), 415, "{content_type}");
        assert_eq!(error_body(response).await["code"], "unsupported_media_type");
    }
    let response = app
        .client
        .post(app.url("/specialists/demo/duplicate"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(specialist_count(&app).await, before, "nothing was created");

    // Scripts and SDKs send no Origin: they still work.
    assert_eq!(forged(None, None).await.unwrap().status(), 201);
    assert_eq!(specialist_count(&app).await, before + 1);
}

#[tokio::test]
async fn listed_origins_and_the_server_s_own_may_change_state() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.cors_allowed_origins = vec!["https://portal.example.com".into()];
    })
    .await;
    let chat = |origin: String| {
        app.client
            .post(app.url("/chat/send"))
            .header("origin", origin)
            .json(&json!({"specialist_id": "demo", "message": "hi"}))
            .send()
    };
    let listed = chat("https://portal.example.com".into()).await.unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://portal.example.com"
    );
    let own = chat(format!("http://127.0.0.1:{}", port(&app)))
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let foreign = chat("https://portal.example.com.evil.example".into())
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        app.usage_rows().await.len(),
        2,
        "the refused call made no call"
    );
    // Reading is not refused (CORS keeps the answer from a foreign page).
    let read = app
        .get_with_header("/specialists", "origin", "https://evil.example")
        .await;
    assert_eq!(read.status(), 200);
}

// --- Item 9: slow bodies and connection floods ---

#[tokio::test]
async fn a_body_trickled_past_the_deadline_gets_408_and_the_connection_closes() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.client_body_timeout_ms = NonZeroU64::new(300).unwrap();
    })
    .await;
    for path in ["/chat/send", "/specialists", "/v1/chat/completions"] {
        let mut connection = connect(&app).await;
        send(
            &mut connection,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{\"specialist_id\""
            ),
        )
        .await;
        let response = read_response(&mut connection).await;
        assert_eq!(response.status, 408, "{path}: {}", response.body);
        if path.starts_with("/v1") {
            let body: Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(body["error"]["code"], "request_timeout", "{path}");
        } else {
            assert_eq!(response.error_code(), "request_timeout", "{path}");
        }
        assert!(closed_by_server(&mut connection).await, "{path}: closed");
    }
    // A chunked body is held to the same deadline, and its connection is not kept for draining.
    let mut connection = connect(&app).await;
    send(
        &mut connection,
        "PUT /specialists/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
    )
    .await;
    let response = read_response(&mut connection).await;
    assert_eq!(response.status, 408, "{}", response.body);
    assert_eq!(response.error_code(), "request_timeout");
    assert!(closed_by_server(&mut connection).await, "chunked: closed");
    assert!(app.usage_rows().await.is_empty());
    // A body that arrives in time is unaffected.
    let ok = app.chat("demo", "hi").await;
    assert_eq!(ok.status(), 200);
}

/// Sends a request head with a chunked body that starts and never ends (the client trickles on
/// as slowly as it likes); returns the response and whether the server then closed the
/// connection within 5 s (rather than drain the body for ever).
async fn unended_chunked_body(app: &TestApp, head: &str) -> (RawResponse, bool) {
    let mut connection = connect(app).await;
    send(
        &mut connection,
        &format!("{head}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n"),
    )
    .await;
    let response = read_response(&mut connection).await;
    // One more byte, as a trickling client would send, after the answer.
    let _ = connection.get_mut().write_all(b"1\r\n \r\n").await;
    (response, closed_by_server(&mut connection).await)
}

#[tokio::test]
async fn a_body_nobody_reads_cannot_hold_its_connection_open() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.client_body_timeout_ms = NonZeroU64::new(300).unwrap();
    })
    .await;
    let specialists = specialist_count(&app).await;
    // Answered without reading the body: a GET route, a route that takes no body, an unknown
    // path, and requests the door refuses (foreign Host, cross-site form).
    for (head, status) in [
        ("GET /health HTTP/1.1\r\nHost: 127.0.0.1", 200),
        ("GET /specialists HTTP/1.1\r\nHost: 127.0.0.1", 200),
        (
            "DELETE /specialists/nobody HTTP/1.1\r\nHost: 127.0.0.1",
            404,
        ),
        ("POST /nowhere HTTP/1.1\r\nHost: 127.0.0.1", 404),
        (
            "POST /specialists/demo/duplicate HTTP/1.1\r\nHost: evil.example",
            421,
        ),
        (
            "POST /specialists/demo/duplicate HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Origin: https://evil.example",
            403,
        ),
    ] {
        let (response, closed) = unended_chunked_body(&app, head).await;
        assert_eq!(response.status, status, "{head}: {}", response.body);
        assert!(closed, "{head}: the connection was kept to drain the body");
    }
    assert_eq!(
        specialist_count(&app).await,
        specialists,
        "nothing was duplicated"
    );

    // A chunked body read to its end leaves the connection open for the next request.
    let body = r#"{"specialist_id":"demo","message":"hi"}"#;
    let mut connection = connect(&app).await;
    send(
        &mut connection,
        &format!(
            "POST /chat/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        ),
    )
    .await;
    assert_eq!(read_response(&mut connection).await.status, 200);
    assert_eq!(get_health(&mut connection).await.status, 200, "kept alive");
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused_until_one_closes() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.max_connections_per_client = NonZeroU32::new(2).unwrap();
    })
    .await;
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    assert_eq!(get_health(&mut first).await.status, 200);
    assert_eq!(get_health(&mut second).await.status, 200);

    let mut third = connect(&app).await;
    let refused = get_health(&mut third).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.error_code(), "too_many_connections");
    assert!(
        closed_by_server(&mut third).await,
        "the extra connection is closed"
    );

    // The others keep working.
    assert_eq!(get_health(&mut first).await.status, 200);
    assert_eq!(get_health(&mut second).await.status, 200);

    // Once one closes, a new connection is let in (as soon as the server has seen the close).
    drop(first);
    eventually("a place to free up", async || {
        let mut fresh = connect(&app).await;
        let status = get_health(&mut fresh).await.status;
        assert!(status == 200 || status == 429, "{status}");
        (status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_connection_cap() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.max_connections_per_client = NonZeroU32::new(1).unwrap();
        settings.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse::<Cidr>().unwrap()];
    })
    .await;
    let mut connections = Vec::new();
    for _ in 0..3 {
        let mut connection = connect(&app).await;
        assert_eq!(get_health(&mut connection).await.status, 200);
        connections.push(connection);
    }
}

// --- Item 12: JWT claims ---

fn hs256(claims: &impl Serialize) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn token_with(extra: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"sub": "u1", "email": "ada@example.com", "exp": now + 600});
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    hs256(&claims)
}

async fn chat_with_token(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json_as(
        "/chat/send",
        token,
        &json!({"specialist_id": "demo", "message": "hi"}),
    )
    .await
}

#[tokio::test]
async fn a_token_whose_email_is_not_verified_is_refused() {
    let app = TestApp::spawn_with(|settings, _| auth_required(settings)).await;
    for flag in [json!(false), json!("false"), json!(0)] {
        let token = token_with(json!({ "email_verified": flag }));
        let response = chat_with_token(&app, &token).await;
        assert_eq!(response.status(), 401, "email_verified = {flag}");
        let error = error_body(response).await;
        assert_eq!(error["code"], "unauthorized");
        assert!(
            error["message"].as_str().unwrap().contains("not verified"),
            "{error}"
        );
    }
    for flag in [json!(true), json!("true")] {
        let token = token_with(json!({ "email_verified": flag }));
        assert_eq!(chat_with_token(&app, &token).await.status(), 200, "{flag}");
    }
    assert_eq!(
        chat_with_token(&app, &token_with(json!({}))).await.status(),
        200,
        "no claim: the identity provider does not say"
    );
    assert_eq!(app.usage_rows().await.len(), 3);

    // An operator whose identity provider never verifies can opt out.
    let lenient = TestApp::spawn_with(|settings, _| {
        auth_required(settings);
        if let Some(jwt) = settings.auth.jwt.as_mut() {
            jwt.require_verified_email = false;
        }
    })
    .await;
    let token = token_with(json!({"email_verified": false}));
    assert_eq!(chat_with_token(&lenient, &token).await.status(), 200);
}

/// Claims JSON with a name written twice, as a forger would sign it.
struct RepeatedRole {
    exp: i64,
    nested: bool,
}

impl Serialize for RepeatedRole {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Inner;
        impl Serialize for Inner {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("roles", &["user"])?;
                map.serialize_entry("roles", &["admin"])?;
                map.end()
            }
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("sub", "u1")?;
        map.serialize_entry("email", "ada@example.com")?;
        map.serialize_entry("exp", &self.exp)?;
        if self.nested {
            map.serialize_entry("realm_access", &Inner)?;
        } else {
            map.serialize_entry("role", "user")?;
            map.serialize_entry("role", "admin")?;
        }
        map.end()
    }
}

#[tokio::test]
async fn a_token_repeating_a_claim_name_is_refused() {
    let app = TestApp::spawn_with(|settings, _| auth_required(settings)).await;
    let exp = chrono::Utc::now().timestamp() + 600;
    for nested in [false, true] {
        let token = hs256(&RepeatedRole { exp, nested });
        assert!(
            jsonwebtoken::dangerous::insecure_decode::<Value>(&token).is_ok(),
            "the forged token is otherwise well formed"
        );
        // Read last-wins, the top-level one would be an admin allowed to duplicate.
        let response = app
            .client
            .post(app.url("/specialists/demo/duplicate"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "nested: {nested}");
        let error = error_body(response).await;
        assert!(
            error["message"].as_str().unwrap().contains("repeat"),
            "{error}"
        );
    }
}

// --- Item 16: request ids ---

#[tokio::test]
async fn request_ids_are_v7_uuids_with_random_tails() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let response = app.get("/health").await;
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(uuid.get_version(), Some(uuid::Version::SortRand), "{id}");
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        ids.push(uuid);
    }
    // A process prefix plus a counter repeats its first 16 hex digits and counts up in the
    // last; ids whose 74 bits after the timestamp are random do neither.
    let tails: std::collections::HashSet<u64> = ids.iter().map(|id| id.as_u64_pair().1).collect();
    assert_eq!(tails.len(), ids.len());
    let consecutive = ids
        .windows(2)
        .filter(|pair| pair[1].as_u64_pair().1 == pair[0].as_u64_pair().1.wrapping_add(1))
        .count();
    assert_eq!(consecutive, 0);
}

// --- Item 18: one client, two spellings ---

/// A server that lets each client one request and trusts `X-Forwarded-For` from 127.0.0.1.
async fn one_request_per_client_behind_a_local_proxy() -> TestApp {
    TestApp::spawn_with(|settings, _| {
        settings.rate_limit.requests = NonZeroU32::new(1).unwrap();
        settings.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse::<Cidr>().unwrap()];
    })
    .await
}

/// A chat call relayed by the local proxy for `forwarded_for`.
async fn chat_forwarded_for(app: &TestApp, forwarded_for: &str) -> reqwest::Response {
    app.client
        .post(app.url("/chat/send"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"specialist_id": "demo", "message": "hi"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn ipv4_mapped_and_plain_spellings_of_a_client_share_one_bucket() {
    let app = one_request_per_client_behind_a_local_proxy().await;
    assert_eq!(chat_forwarded_for(&app, "9.9.9.9").await.status(), 200);
    let second = chat_forwarded_for(&app, "::ffff:9.9.9.9").await;
    assert_eq!(second.status(), 429, "the same client, spelled as IPv6");
    assert_eq!(error_body(second).await["code"], "rate_limited");
    assert_eq!(
        chat_forwarded_for(&app, "[::ffff:9.9.9.9]:443")
            .await
            .status(),
        429
    );
    assert_eq!(
        chat_forwarded_for(&app, "9.9.9.8").await.status(),
        200,
        "another client"
    );
}

#[tokio::test]
async fn one_ipv6_64_is_one_rate_limit_bucket() {
    let app = one_request_per_client_behind_a_local_proxy().await;
    assert_eq!(
        chat_forwarded_for(&app, "2001:db8:1:2::1").await.status(),
        200
    );
    let same_host = chat_forwarded_for(&app, "2001:db8:1:2:ffff:ffff:ffff:9").await;
    assert_eq!(
        same_host.status(),
        429,
        "another address of the same /64 is the same client"
    );
    assert_eq!(error_body(same_host).await["code"], "rate_limited");
    assert_eq!(
        chat_forwarded_for(&app, "2001:db8:1:3::1").await.status(),
        200,
        "the next /64 is another client"
    );
}

// --- Item 19: HEAD ---

#[tokio::test]
async fn head_is_answered_on_get_routes() {
    let app = TestApp::spawn_with(|settings, _| auth_required(settings)).await;
    for path in ["/health", "/ready"] {
        let response = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
        assert!(
            response.bytes().await.unwrap().is_empty(),
            "{path}: no body"
        );
    }
    let head_as_admin = |path| app.client.head(app.url(path)).bearer_auth(ADMIN_KEY).send();
    let listed = head_as_admin("/specialists").await.unwrap();
    assert_eq!(listed.status(), 200);
    assert!(listed.headers().contains_key("x-ratelimit-limit"));
    let anonymous = app
        .client
        .head(app.url("/specialists"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "HEAD is authenticated like GET");
    let post_only = head_as_admin("/chat/send").await.unwrap();
    assert_eq!(post_only.status(), 405);

    // On a kept-alive connection, a HEAD answer carries no body to desynchronise the next.
    let mut connection = connect(&app).await;
    send(
        &mut connection,
        "HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    let head = tokio::time::timeout(Duration::from_secs(5), async {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            connection.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                return head;
            }
            head.push_str(&line);
        }
    })
    .await
    .expect("the HEAD answer within 5 s");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(get_health(&mut connection).await.status, 200);
}
