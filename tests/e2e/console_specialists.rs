//! The console's specialists pages end to end: signing in with a key, then creating, editing,
//! comparing, rolling back, duplicating and deleting through the forms — each change checked
//! through the API, and each refusal (forged form, user, stale version) checked to change
//! nothing.

use core_domain::AccessRole;
use e2e_support::TestApp;
use http_api::{ApiKeyConfig, AuthMode};
use serde_json::Value;

const ADMIN_KEY: &str = "cmdr_admin_console_specialists_key_000000000000000000000000000000";
const USER_KEY: &str = "cmdr_user_console_specialists_key_0000000000000000000000000000000";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

async fn app() -> TestApp {
    TestApp::spawn_with(|settings, _| {
        settings.auth.mode = AuthMode::Required;
        settings.auth.api_keys = vec![
            ApiKeyConfig {
                name: "ops".into(),
                email: "root@example.com".into(),
                role: AccessRole::Admin,
                sha256: sha256_hex(ADMIN_KEY),
            },
            ApiKeyConfig {
                name: "ada".into(),
                email: "ada@example.com".into(),
                role: AccessRole::User,
                sha256: sha256_hex(USER_KEY),
            },
        ];
    })
    .await
}

/// A signed-in browser: its session cookie and the session's form token.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

/// `name=value` of the first `Set-Cookie` named `name`.
fn cookie_named(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

/// The value of the first `name="csrf"` input in `html`.
fn csrf_in(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Percent-encodes a form body.
fn encoded(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl<'a> Browser<'a> {
    async fn sign_in(app: &'a TestApp, key: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        let form = client
            .get(app.url("/console/sign-in"))
            .send()
            .await
            .unwrap();
        let sign_in_cookie = cookie_named(&form, "commander_console_signin");
        let token = csrf_in(&form.text().await.unwrap());
        let signed = client
            .post(app.url("/console/sign-in"))
            .header("cookie", sign_in_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded(&[
                ("credential", key),
                ("csrf", &token),
                ("next", "/console"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), 303);
        let cookie = cookie_named(&signed, "commander_console");
        let mut browser = Self {
            app,
            client,
            cookie,
            csrf: String::new(),
        };
        let (status, html) = browser.get("/console/specialists").await;
        assert_eq!(status, 200, "{html}");
        browser.csrf = csrf_in(&html);
        browser
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(self.app.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// POSTs `pairs` as a form (the caller adds the token, or leaves it out on purpose).
    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.app.url(path))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded(pairs))
            .send()
            .await
            .unwrap()
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The specialist as the API serves it (the admin key), or `None` for 404.
async fn api_specialist(app: &TestApp, id: &str) -> Option<Value> {
    let response = app.get_as(&format!("/specialists/{id}"), ADMIN_KEY).await;
    match response.status().as_u16() {
        200 => Some(response.json().await.unwrap()),
        404 => None,
        other => panic!("GET /specialists/{id}: {other}"),
    }
}

/// Every field of the form for a chat specialist on the mock.
fn fields<'a>(csrf: &'a str, name: &'a str, prompt: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", name),
        ("description", "Answers tax questions"),
        ("kind", "chat"),
        ("provider", "mock"),
        ("model", "mock-echo"),
        ("base_url", ""),
        ("system_prompt", prompt),
        ("temperature", "0.2"),
        ("max_tokens", "900"),
        ("allow_tools", "on"),
        ("continue_streams", "on"),
        ("aliases", "tax-gpt"),
        ("pricing_input_per_1m", "1.5"),
        ("pricing_output_per_1m", "2"),
        ("fallback_0_provider", ""),
        ("fallback_0_model", ""),
    ]
}

const OLD_PROMPT: &str = "You explain tax rules.\r\nBe brief.\r\nCite the law.";
const NEW_PROMPT: &str = "You explain tax rules.\r\nBe thorough.\r\nCite the law.";

/// Creates `tax` through the form.
async fn create_tax(admin: &Browser<'_>) {
    let mut form = fields(&admin.csrf, "Tax", OLD_PROMPT);
    form.push(("id", "tax"));
    let created = admin.post("/console/specialists/new", &form).await;
    assert_eq!(created.status(), 303);
    assert_eq!(location(&created), "/console/specialists/tax?done=created");
}

#[tokio::test]
async fn a_form_with_problems_comes_back_with_each_beside_its_field_then_creates() {
    let app = app().await;
    let admin = Browser::sign_in(&app, ADMIN_KEY).await;
    let (status, list) = admin.get("/console/specialists").await;
    assert_eq!(status, 200);
    assert!(list.contains(r#"<tr data-specialist="demo">"#), "{list}");
    assert!(list.contains(r#"id="new-specialist""#));
    let (status, blank) = admin.get("/console/specialists/new").await;
    assert_eq!(status, 200);
    assert!(blank.contains(r#"id="specialist-form""#));

    let mut form = fields(&admin.csrf, "", OLD_PROMPT);
    form.retain(|(name, _)| *name != "temperature");
    form.extend([("temperature", "abc"), ("id", "tax")]);
    let refused = admin.post("/console/specialists/new", &form).await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains(r#"id="form-errors""#), "{html}");
    assert!(
        html.contains(r#"<p class="field-error" id="error-temperature">'abc' is not a number</p>"#),
        "{html}"
    );
    assert!(html.contains(r#"id="error-name""#), "{html}");
    assert!(html.contains(r#"name="temperature" value="abc" aria-invalid="true""#));
    assert!(
        html.contains("You explain tax rules.\nBe brief."),
        "the prompt is kept"
    );
    assert!(
        api_specialist(&app, "tax").await.is_none(),
        "nothing created"
    );

    create_tax(&admin).await;
    let tax = api_specialist(&app, "tax").await.unwrap();
    assert_eq!(tax["version"], 1);
    assert_eq!(
        tax["system_prompt"],
        "You explain tax rules.\nBe brief.\nCite the law."
    );
    assert_eq!(tax["temperature"], 0.2);
    assert_eq!(tax["aliases"], serde_json::json!(["tax-gpt"]));
    assert_eq!(tax["allow_images"], false);
    let (status, detail) = admin.get("/console/specialists/tax?done=created").await;
    assert_eq!(status, 200);
    assert!(detail.contains("The specialist was created."));
    for hook in [
        r#"id="edit""#,
        r#"id="duplicate""#,
        r#"id="delete""#,
        r#"id="history""#,
    ] {
        assert!(detail.contains(hook), "{hook}");
    }

    // A name the catalogue already has is refused beside the name, like the API would.
    let mut taken = fields(&admin.csrf, "TAX", OLD_PROMPT);
    taken.retain(|(name, _)| *name != "aliases");
    let refused = admin.post("/console/specialists/new", &taken).await;
    assert_eq!(refused.status(), 422);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains(r#"id="error-name">'TAX' is taken"#)
    );

    let (status, _) = admin.get("/console/specialists/nobody").await;
    assert_eq!(status, 404);
    let (status, _) = admin.get("/console/specialists/nobody/history").await;
    assert_eq!(status, 404);
    let missing = admin
        .post(
            "/console/specialists/nobody/duplicate",
            &[("csrf", &admin.csrf)],
        )
        .await;
    assert_eq!(missing.status(), 404);
    let (status, _) = admin.get("/console/specialists?page=abc").await;
    assert_eq!(status, 200, "a page that is not a number shows the first");
}

#[tokio::test]
async fn editing_the_prompt_makes_a_version_whose_diff_shows_and_a_rollback_restores_it() {
    let app = app().await;
    let admin = Browser::sign_in(&app, ADMIN_KEY).await;
    create_tax(&admin).await;
    let (status, edit) = admin.get("/console/specialists/tax/edit").await;
    assert_eq!(status, 200);
    assert!(edit.contains(r#"name="version" value="1""#), "{edit}");

    let mut form = fields(&admin.csrf, "Tax", NEW_PROMPT);
    form.push(("version", "1"));
    let saved = admin.post("/console/specialists/tax/edit", &form).await;
    assert_eq!(saved.status(), 303);
    assert_eq!(location(&saved), "/console/specialists/tax?done=saved");
    let tax = api_specialist(&app, "tax").await.unwrap();
    assert_eq!(tax["version"], 2);
    assert_eq!(
        tax["system_prompt"],
        "You explain tax rules.\nBe thorough.\nCite the law."
    );

    let (status, history) = admin
        .get("/console/specialists/tax/history?from=1&to=2")
        .await;
    assert_eq!(status, 200);
    assert!(history.contains(r#"<tr data-version="2">"#), "{history}");
    assert!(history.contains(r#"<tr data-version="1">"#));
    assert!(history.contains("<del>Be brief.</del>"), "{history}");
    assert!(history.contains("<ins>Be thorough.</ins>"));
    assert!(history.contains("<span>Cite the law.</span>"));
    assert!(history.contains(r#"id="rollback-1""#));

    // The same form again, based on version 1: someone else's version 2 is not overwritten.
    let stale = admin.post("/console/specialists/tax/edit", &form).await;
    assert_eq!(stale.status(), 409);
    let html = stale.text().await.unwrap();
    assert!(
        html.contains("Someone else changed this specialist"),
        "{html}"
    );
    assert!(html.contains(r#"name="name" value="Tax""#), "input kept");
    assert_eq!(api_specialist(&app, "tax").await.unwrap()["version"], 2);

    let rolled = admin
        .post(
            "/console/specialists/tax/rollback",
            &[("csrf", &admin.csrf), ("version", "1")],
        )
        .await;
    assert_eq!(rolled.status(), 303);
    assert_eq!(
        location(&rolled),
        "/console/specialists/tax/history?done=rolled-back&from=2&to=3"
    );
    let tax = api_specialist(&app, "tax").await.unwrap();
    assert_eq!(tax["version"], 3, "a new version, not a rewind");
    assert_eq!(
        tax["system_prompt"],
        "You explain tax rules.\nBe brief.\nCite the law."
    );
    let (_, history) = admin.get(&location(&rolled)).await;
    assert!(history.contains(r#"<tr data-version="3">"#));
    assert!(history.contains("<del>Be thorough.</del>"), "{history}");
    assert!(history.contains("<ins>Be brief.</ins>"));
}

#[tokio::test]
async fn duplicate_makes_a_copy_and_delete_asks_first() {
    let app = app().await;
    let admin = Browser::sign_in(&app, ADMIN_KEY).await;
    create_tax(&admin).await;
    let copied = admin
        .post(
            "/console/specialists/tax/duplicate",
            &[("csrf", &admin.csrf)],
        )
        .await;
    assert_eq!(copied.status(), 303);
    let copy_page = location(&copied);
    let copy_id = copy_page
        .strip_prefix("/console/specialists/")
        .and_then(|rest| rest.strip_suffix("?done=duplicated"))
        .unwrap_or_else(|| panic!("{copy_page}"))
        .to_owned();
    let copy = api_specialist(&app, &copy_id).await.unwrap();
    assert_eq!(copy["name"], "Tax (Copy)");
    let (status, html) = admin.get(&copy_page).await;
    assert_eq!(status, 200);
    assert!(html.contains("Tax (Copy)"));

    let (status, confirm) = admin.get("/console/specialists/tax/delete").await;
    assert_eq!(status, 200);
    assert!(confirm.contains(r#"id="confirm-delete""#), "{confirm}");
    assert!(
        api_specialist(&app, "tax").await.is_some(),
        "asking deletes nothing"
    );
    let deleted = admin
        .post(
            "/console/specialists/tax/delete",
            &[("csrf", &admin.csrf), ("version", "1")],
        )
        .await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(location(&deleted), "/console/specialists?done=deleted");
    assert!(api_specialist(&app, "tax").await.is_none());
    assert!(api_specialist(&app, &copy_id).await.is_some());
    let (_, list) = admin.get(&location(&deleted)).await;
    assert!(list.contains("The specialist was deleted."));
    assert!(!list.contains(r#"data-specialist="tax""#));
}

#[tokio::test]
async fn a_form_without_this_session_s_token_is_refused_and_changes_nothing() {
    let app = app().await;
    let admin = Browser::sign_in(&app, ADMIN_KEY).await;
    create_tax(&admin).await;
    let before = api_specialist(&app, "tax").await.unwrap();
    for token in [None, Some("0123456789abcdef0123456789abcdef")] {
        let with = |mut pairs: Vec<(&'static str, String)>| {
            if let Some(token) = token {
                pairs.push(("csrf", token.to_owned()));
            }
            pairs
        };
        let mut edit: Vec<(&str, String)> = fields("", "Forged", NEW_PROMPT)
            .into_iter()
            .filter(|(name, _)| *name != "csrf")
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        edit.push(("version", "1".to_owned()));
        let mut new = edit.clone();
        new.push(("id", "forged".to_owned()));
        let attempts = [
            ("/console/specialists/new", with(new)),
            ("/console/specialists/tax/edit", with(edit)),
            ("/console/specialists/tax/duplicate", with(vec![])),
            (
                "/console/specialists/tax/delete",
                with(vec![("version", "1".into())]),
            ),
            (
                "/console/specialists/tax/rollback",
                with(vec![("version", "1".into())]),
            ),
        ];
        for (path, pairs) in attempts {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = admin.post(path, &pairs).await;
            assert_eq!(response.status(), 403, "{path} with token {token:?}");
        }
    }
    assert_eq!(api_specialist(&app, "tax").await.unwrap(), before);
    assert!(api_specialist(&app, "forged").await.is_none());
    let list = app
        .get_as("/specialists", ADMIN_KEY)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        list["specialists"].as_array().unwrap().len(),
        7,
        "six defaults and tax"
    );
}

#[tokio::test]
async fn a_user_reads_the_specialists_but_every_change_is_refused() {
    let app = app().await;
    let admin = Browser::sign_in(&app, ADMIN_KEY).await;
    create_tax(&admin).await;
    let before = api_specialist(&app, "tax").await.unwrap();
    let user = Browser::sign_in(&app, USER_KEY).await;

    let (status, list) = user.get("/console/specialists").await;
    assert_eq!(status, 200);
    assert!(list.contains(r#"data-specialist="tax""#));
    assert!(!list.contains("new-specialist"));
    let (status, detail) = user.get("/console/specialists/tax").await;
    assert_eq!(status, 200);
    assert!(detail.contains(r#"id="history""#));
    for hidden in [r#"id="edit""#, r#"id="duplicate""#, r#"id="delete""#] {
        assert!(!detail.contains(hidden), "{hidden} shown to a user");
    }
    let (status, history) = user.get("/console/specialists/tax/history").await;
    assert_eq!(status, 200);
    assert!(!history.contains("rollback"), "{history}");

    for path in [
        "/console/specialists/new",
        "/console/specialists/tax/edit",
        "/console/specialists/tax/delete",
    ] {
        let (status, html) = user.get(path).await;
        assert_eq!(status, 403, "{path}: {html}");
        assert!(html.contains("Administrators only"));
    }
    let mut edit = fields(&user.csrf, "Taken over", NEW_PROMPT);
    edit.push(("version", "1"));
    let mut new = edit.clone();
    new.push(("id", "mine"));
    let csrf_and_version = [("csrf", user.csrf.as_str()), ("version", "1")];
    let attempts: [(&str, &[(&str, &str)]); 5] = [
        ("/console/specialists/new", &new),
        ("/console/specialists/tax/edit", &edit),
        ("/console/specialists/tax/duplicate", &csrf_and_version[..1]),
        ("/console/specialists/tax/delete", &csrf_and_version),
        ("/console/specialists/tax/rollback", &csrf_and_version),
    ];
    for (path, pairs) in attempts {
        let response = user.post(path, pairs).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 403, "{path}: {body}");
    }
    assert_eq!(api_specialist(&app, "tax").await.unwrap(), before);
    assert!(api_specialist(&app, "mine").await.is_none());
    let list = app
        .get_as("/specialists", ADMIN_KEY)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        list["specialists"].as_array().unwrap().len(),
        7,
        "no copy either"
    );
}
