//! Issue 16's catalogue holes, over HTTP: hidden characters, look-alike names and ids, updates
//! that change nothing, an unbounded prompt history, base URLs to internal addresses.

use e2e_support::{TestApp, error_body, field_of_each, specialist};
use serde_json::{Value, json};

/// A specialist on the mock whose name is `name`, whatever its id.
fn named(id: &str, name: &str) -> Value {
    specialist(
        id,
        "mock",
        "mock-echo",
        "Answer briefly.",
        json!({"name": name}),
    )
}

async fn get(app: &TestApp, id: &str) -> Value {
    let response = app
        .client
        .get(app.url(&format!("/specialists/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn patch(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/specialists/{id}")))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The fields at fault of a 422, sorted, and their messages.
async fn problems(response: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), 422);
    let error = error_body(response).await;
    assert_eq!(error["code"], "validation_failed");
    let mut found: Vec<(String, String)> = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().to_owned(),
                d["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn hidden_characters_are_refused_in_every_text_field_with_a_field_error_each() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            "/specialists",
            &specialist(
                "spoof",
                "openai",
                "gpt-4o",
                "Be kind.\u{202E}\u{E0049}",
                json!({"name": "De\u{200B}mo", "description": "ok\u{0}",
                       "base_url": "https://api.x.ai/v\n1"}),
            ),
        )
        .await;
    let found = problems(response).await;
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["base_url", "description", "name", "system_prompt"]);
    let name = &found[2].1;
    assert!(name.contains("U+200B at character 3"), "{name}");

    // A PATCH goes through the same rules, and a NUL in a name is no exception.
    for name in ["Demo\u{0}", "\u{202E}omeD", "Demo\u{FE0F}"] {
        let found = problems(patch(&app, "demo", &json!({"name": name})).await).await;
        assert_eq!(found.len(), 1, "{name:?}: {found:?}");
        assert_eq!(found[0].0, "name");
    }
    assert_eq!(get(&app, "demo").await["name"], "Demo", "nothing changed");

    // Line breaks and tabs stay fine in a system prompt.
    let mut multiline = named("multiline", "Multi-line");
    multiline["system_prompt"] = json!("Rules:\n\t1. Be brief.\r\n\t2. Be kind.");
    let response = app.post_json("/specialists", &multiline).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn look_alike_names_and_ids_cannot_coexist() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json("/specialists", &named("strasse", "STRASSE"))
        .await;
    assert_eq!(response.status(), 201);

    // Names: full case folding and compatibility normalisation (the default catalogue has
    // "Demo"). A taken name is a field error, as it always was for case alone.
    for (id, look_alike) in [("s2", "Straße"), ("d2", "ＤＥＭＯ"), ("d3", "dEMO")] {
        let found = problems(app.post_json("/specialists", &named(id, look_alike)).await).await;
        assert_eq!(found.len(), 1, "{look_alike}: {found:?}");
        assert_eq!(found[0].0, "name");
        assert!(found[0].1.contains("is taken"), "{}", found[0].1);
    }
    // Renaming another specialist onto a look-alike is refused too.
    let found = problems(patch(&app, "strasse", &json!({"name": "Ｄｅｍｏ"})).await).await;
    assert_eq!(found[0].0, "name");

    // Ids: `DEMO` beside `demo` is the id taken.
    let response = app
        .post_json("/specialists", &named("DEMO", "Another demo"))
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_body(response).await["code"], "specialist_exists");

    let list: Value = app.get_json("/specialists").await;
    let ids: Vec<&str> = field_of_each(&list["specialists"], "id");
    assert_eq!(
        ids.iter()
            .filter(|id| id.eq_ignore_ascii_case("demo"))
            .count(),
        1
    );
    assert_eq!(ids.len(), 7, "the six defaults and strasse: {ids:?}");
}

#[tokio::test]
async fn an_update_that_changes_nothing_keeps_version_time_and_file() {
    let app = TestApp::spawn().await;
    let path = app.dir().join("specialists.json");
    let before = get(&app, "demo").await;
    let file_before = std::fs::read(&path).unwrap();

    let response = patch(&app, "demo", &json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let answered: Value = response.json().await.unwrap();
    assert_eq!(
        answered, before,
        "PATCH {{}} answers with the specialist as it is"
    );

    // Sending back the values it has, or a PUT of what GET returned, changes nothing either.
    let response = patch(
        &app,
        "demo",
        &json!({"name": " Demo ", "temperature": before["temperature"]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = app
        .client
        .put(app.url("/specialists/demo"))
        .header("If-Match", "\"1\"")
        .json(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answered: Value = response.json().await.unwrap();
    assert_eq!(answered, before);

    assert_eq!(get(&app, "demo").await, before);
    assert_eq!(std::fs::read(&path).unwrap(), file_before, "no write");

    // A real change still makes the next version.
    let response = patch(&app, "demo", &json!({"temperature": 0.2})).await;
    assert_eq!(response.status(), 200);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["version"], 2);
    assert_ne!(changed["updated_at"], before["updated_at"]);
}

#[tokio::test]
async fn prompt_history_keeps_only_the_newest_configured_number() {
    let app = TestApp::spawn_with(|settings, _| settings.specialists.max_prompt_history = 3).await;
    for n in 1..=6 {
        let response = patch(
            &app,
            "demo",
            &json!({"system_prompt": format!("Prompt {n}")}),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let demo = get(&app, "demo").await;
    assert_eq!(demo["version"], 7);
    let kept: Vec<&str> = field_of_each(&demo["prompt_history"], "system_prompt");
    // The original prompt and Prompts 1 to 5 were replaced; the newest three are kept.
    assert_eq!(
        kept,
        ["Prompt 3", "Prompt 4", "Prompt 5"],
        "oldest dropped first"
    );

    let text = std::fs::read_to_string(app.dir().join("specialists.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let on_disk = file["specialists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "demo")
        .unwrap();
    assert_eq!(on_disk["prompt_history"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn base_urls_to_addresses_that_are_not_globally_routable_are_refused() {
    let app = TestApp::spawn().await;
    for (n, base_url) in [
        "https://[::127.0.0.1]/v1",
        "https://[::ffff:0:7f00:1]/v1",
        "https://[64:ff9b::7f00:1]/v1",
        "https://[2002:7f00:1::]/v1",
        "https://[fec0::1]/v1",
        "https://198.18.0.1/v1",
        "https://240.0.0.1/v1",
    ]
    .into_iter()
    .enumerate()
    {
        let body = specialist(
            &format!("ssrf{n}"),
            "openai",
            "gpt-4o",
            "x",
            json!({"name": format!("Ssrf {n}"), "base_url": base_url}),
        );
        let found = problems(app.post_json("/specialists", &body).await).await;
        assert_eq!(found.len(), 1, "{base_url}: {found:?}");
        assert_eq!(found[0].0, "base_url", "{base_url}");
        assert!(
            found[0].1.contains("not globally routable"),
            "{}",
            found[0].1
        );
    }
    let body = specialist(
        "public6to4",
        "openai",
        "gpt-4o",
        "x",
        json!({"name": "Public 6to4", "base_url": "https://[2002:808:808::]/v1"}),
    );
    assert_eq!(app.post_json("/specialists", &body).await.status(), 201);
}
