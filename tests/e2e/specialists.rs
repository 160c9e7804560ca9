//! Reading the catalogue over HTTP.

use e2e_support::{TestApp, error_body, field_of_each};

#[tokio::test]
async fn list_is_sorted_by_name_and_filterable_by_provider() {
    let app = TestApp::spawn().await;
    let body: serde_json::Value = app.get_json("/specialists").await;
    let names: Vec<&str> = field_of_each(&body["specialists"], "name");
    assert_eq!(
        names,
        [
            "Code Reviewer",
            "Demo",
            "Demo Embeddings",
            "Financial Analyst",
            "General Assistant",
            "Grok Analyst"
        ]
    );

    let openai: serde_json::Value = app.get_json("/specialists?provider=openai").await;
    let ids: Vec<&str> = field_of_each(&openai["specialists"], "id");
    assert_eq!(ids, ["financial_analyst", "general", "grok_analyst"]);

    let response = app.get("/specialists?provider=cohere").await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        error_body(response).await["details"][0]["field"],
        "provider"
    );
}

#[tokio::test]
async fn one_specialist_in_the_file_format_or_404() {
    let app = TestApp::spawn().await;
    let grok: serde_json::Value = app.get_json("/specialists/grok_analyst").await;
    assert_eq!(grok["base_url"], "https://api.x.ai/v1");
    assert_eq!(grok["version"], 1);
    assert_eq!(grok["pricing"]["input_per_1m"], 2.0);
    assert_eq!(grok["prompt_history"], serde_json::json!([]));

    for missing in ["/specialists/nobody", "/specialists/has%20space"] {
        let response = app.get(missing).await;
        assert_eq!(response.status(), 404, "{missing}");
        assert_eq!(error_body(response).await["code"], "specialist_not_found");
    }
}

mod management {

    use core_domain::AccessRole;
    use e2e_support::{TestApp, catalogue, error_body, eventually, server_logs, specialist};
    use fake_upstreams::{FakeUpstream, Wire};
    use http_api::{ApiKeyConfig, AuthMode};
    use serde_json::{Value, json};

    const ADMIN_KEY: &str = "cmdr_admin_specialists_test_key_0000000000000000000000000000000000";
    const USER_KEY: &str = "cmdr_user_specialists_test_key_00000000000000000000000000000000000";

    fn sha256_hex(text: &str) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    fn valid() -> Value {
        json!({
            "name": "Tax Advisor",
            "description": "Answers tax questions",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "system_prompt": "You explain tax rules plainly.",
            "temperature": 0.2,
            "max_tokens": 1000,
            "pricing": {"input_per_1m": 0.15, "output_per_1m": 0.6}
        })
    }

    async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
        app.client
            .post(app.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The fields at fault of a 422, in alphabetical order.
    async fn sorted_fields_of(response: reqwest::Response) -> Vec<String> {
        let mut fields = fields_of(response).await;
        fields.sort();
        fields
    }

    async fn fields_of(response: reqwest::Response) -> Vec<String> {
        assert_eq!(response.status(), 422);
        let error = error_body(response).await;
        error["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn every_validation_rule_at_and_past_its_limit() {
        let app = TestApp::spawn().await;
        // Each case gets a name of its own (names must be unique), unless it tests the name.
        let with = |field: &str, value: Value| {
            let mut body = valid();
            body["name"] = json!(format!("{field} {}", uuid_like(&value)));
            body[field] = value;
            body
        };
        let cases: Vec<(&str, Value, Value)> = vec![
            ("name", json!("n".repeat(100)), json!("n".repeat(101))),
            (
                "description",
                json!("d".repeat(500)),
                json!("d".repeat(501)),
            ),
            (
                "system_prompt",
                json!("p".repeat(4000)),
                json!("p".repeat(4001)),
            ),
            ("system_prompt", json!("p"), json!("   ")),
            ("temperature", json!(0.0), json!(-0.1)),
            ("temperature", json!(2.0), json!(2.1)),
            ("max_tokens", json!(1), json!(0)),
            ("max_tokens", json!(128_000), json!(128_001)),
            ("provider", json!("google"), json!("cohere")),
            ("model", json!("llama3.1:8b"), json!("bad model!")),
            ("model", json!("m"), json!("")),
            ("model", json!("m".repeat(200)), json!("m".repeat(201))),
            (
                "base_url",
                json!("https://api.x.ai/v1"),
                json!("http://api.x.ai/v1"),
            ),
        ];
        for (field, ok, bad) in cases {
            let accepted = post(&app, "/specialists", &with(field, ok.clone())).await;
            assert_eq!(
                accepted.status(),
                201,
                "{field} = {ok}: {}",
                accepted.text().await.unwrap()
            );
            let refused = post(&app, "/specialists", &with(field, bad.clone())).await;
            assert_eq!(refused.status(), 422, "{field} = {bad} was accepted");
            assert_eq!(fields_of(refused).await, [field], "{field} = {bad}");
        }
        // Prices: 0 (free, a local model) to 10,000 USD per million tokens, each side.
        let priced = |name: &str, input: Value, output: Value| {
            let mut body = valid();
            body["name"] = json!(name);
            body["pricing"] = json!({"input_per_1m": input, "output_per_1m": output});
            body
        };
        for (i, (input, output)) in [(0.0, 0.0), (10_000.0, 10_000.0)].into_iter().enumerate() {
            let body = priced(&format!("Priced {i}"), json!(input), json!(output));
            assert_eq!(post(&app, "/specialists", &body).await.status(), 201);
        }
        for (input, output, field) in [
            (json!(-1), json!(1), "pricing.input_per_1m"),
            (json!(-0.01), json!(0), "pricing.input_per_1m"),
            (json!(10_000.01), json!(1), "pricing.input_per_1m"),
            (json!(1), json!(10_000.01), "pricing.output_per_1m"),
        ] {
            let body = priced("Bad price", input, output);
            assert_eq!(
                fields_of(post(&app, "/specialists", &body).await).await,
                [field]
            );
        }
        // The name must say something; the id is 1-64 of [A-Za-z0-9_-].
        for blank in ["", "   "] {
            let mut body = valid();
            body["name"] = json!(blank);
            assert_eq!(
                fields_of(post(&app, "/specialists", &body).await).await,
                ["name"]
            );
        }
        let mut longest_id = valid();
        longest_id["name"] = json!("Longest id");
        longest_id["id"] = json!("i".repeat(64));
        assert_eq!(post(&app, "/specialists", &longest_id).await.status(), 201);
        longest_id["name"] = json!("Too long id");
        longest_id["id"] = json!("i".repeat(65));
        assert_eq!(
            fields_of(post(&app, "/specialists", &longest_id).await).await,
            ["id"]
        );

        // The same rules guard PUT and PATCH.
        let mut replacement = valid();
        replacement["name"] = json!("Longest id");
        replacement["temperature"] = json!(2.1);
        replacement["max_tokens"] = json!(0);
        let path = format!("/specialists/{}", "i".repeat(64));
        let put = app.put_json(&path, &replacement).await;
        assert_eq!(put.status(), 422);
        assert_eq!(fields_of(put).await, ["temperature", "max_tokens"]);
        let patch = app
            .client
            .patch(app.url(&path))
            .json(&json!({"system_prompt": "p".repeat(4001), "model": "bad model!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), 422);
        let fields = sorted_fields_of(patch).await;
        assert_eq!(fields, ["model", "system_prompt"]);
        let unchanged: Value = app.get_json(&path).await;
        assert_eq!(unchanged["version"], 1, "refused changes change nothing");
    }

    fn uuid_like(value: &Value) -> String {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        value.to_string().hash(&mut h);
        format!("{:x}", h.finish())
    }

    #[tokio::test]
    async fn all_problems_are_reported_at_once_and_names_are_unique() {
        let app = TestApp::spawn().await;
        let response = post(
            &app,
            "/specialists",
            &json!({"id": "bad id", "temperature": 9, "provider": "nope"}),
        )
        .await;
        let fields = sorted_fields_of(response).await;
        assert_eq!(
            fields,
            [
                "id",
                "model",
                "name",
                "provider",
                "system_prompt",
                "temperature"
            ],
            "every problem at once, the id's too"
        );

        let response = post(
            &app,
            "/specialists",
            &json!({"temperature": 9, "provider": "nope"}),
        )
        .await;
        let fields = sorted_fields_of(response).await;
        assert_eq!(
            fields,
            ["model", "name", "provider", "system_prompt", "temperature"]
        );

        let mut taken = valid();
        taken["name"] = json!("financial analyst");
        assert_eq!(
            fields_of(post(&app, "/specialists", &taken).await).await,
            ["name"]
        );

        // Rules that need the rest of the catalogue (a taken name, the base URL policy) are
        // listed too when other fields are missing or the id is bad.
        let response = post(
            &app,
            "/specialists",
            &json!({"id": "bad id", "name": "FINANCIAL ANALYST",
                    "base_url": "https://169.254.169.254/v1"}),
        )
        .await;
        let fields = sorted_fields_of(response).await;
        assert_eq!(
            fields,
            [
                "base_url",
                "id",
                "model",
                "name",
                "provider",
                "system_prompt"
            ]
        );
        // And on a PUT whose body names another id.
        let mut renamed = valid();
        renamed["id"] = json!("someone-else");
        renamed["name"] = json!("Financial Analyst");
        renamed["temperature"] = json!(3);
        let put = app.put_json("/specialists/general", &renamed).await;
        let fields = sorted_fields_of(put).await;
        assert_eq!(fields, ["id", "name", "temperature"]);

        let unknown = post(&app, "/specialists", &json!({"nmae": "typo"})).await;
        assert_eq!(
            unknown.status(),
            400,
            "unknown fields are refused, not ignored"
        );
    }

    #[tokio::test]
    async fn put_replaces_every_editable_field_and_patch_only_those_sent() {
        let app = TestApp::spawn_with(|settings, _| {
            settings.providers.allowed_http_base_urls = vec!["http://127.0.0.1:11434/v1".into()];
        })
        .await;
        let mut full = valid();
        full["id"] = json!("local");
        full["base_url"] = json!("http://127.0.0.1:11434/v1");
        full["pricing"] = json!({"input_per_1m": 1, "output_per_1m": 2});
        full["description"] = json!("Runs locally.");
        assert_eq!(post(&app, "/specialists", &full).await.status(), 201);

        // PATCH: only what is sent changes.
        let patched: Value = app
            .client
            .patch(app.url("/specialists/local"))
            .json(&json!({"temperature": 1.5}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(patched["temperature"], 1.5);
        assert_eq!(patched["base_url"], "http://127.0.0.1:11434/v1");
        assert_eq!(patched["pricing"]["input_per_1m"], 1.0);

        // PUT: what is left out goes back to its default or goes away.
        let replaced = app
            .client
            .put(app.url("/specialists/local"))
            .json(&specialist(
                "local",
                "mock",
                "mock-echo",
                "Replaced.",
                json!({}),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(replaced.status(), 200);
        let replaced: Value = replaced.json().await.unwrap();
        assert_eq!(replaced["version"], 3);
        assert_eq!(replaced["base_url"], Value::Null);
        assert_eq!(replaced["pricing"], Value::Null);
        assert_eq!(replaced["description"], "");
        assert_eq!(replaced["temperature"], 0.7);
        assert_eq!(replaced["max_tokens"], 2048);
    }

    #[tokio::test]
    async fn ssrf_unsafe_base_urls_are_refused_unless_listed() {
        let app = TestApp::spawn_with(|settings, _| {
            settings.providers.allowed_http_base_urls = vec!["http://127.0.0.1:11434/v1".into()];
        })
        .await;
        for (i, url) in [
            "https://169.254.169.254/latest/meta-data",
            "https://localhost:8080/v1",
            "https://10.0.0.8/v1",
            "https://[::1]/v1",
            "https://metadata.google.internal/v1",
            "http://api.example.com/v1",
            "https://127.0.0.1:11434/v1",
        ]
        .iter()
        .enumerate()
        {
            let mut body = valid();
            body["name"] = json!(format!("ssrf {i}"));
            body["base_url"] = json!(url);
            assert_eq!(
                fields_of(post(&app, "/specialists", &body).await).await,
                ["base_url"],
                "{url}"
            );
        }
        let mut ollama = valid();
        ollama["name"] = json!("Local Llama");
        ollama["model"] = json!("llama3.1:8b");
        ollama["base_url"] = json!("http://127.0.0.1:11434/v1");
        assert_eq!(post(&app, "/specialists", &ollama).await.status(), 201);
    }

    #[tokio::test]
    async fn create_get_update_patch_duplicate_delete() {
        let app = TestApp::spawn().await;
        let created = post(
            &app,
            "/specialists",
            &specialist("tax", "mock", "mock-echo", "Version one.", json!({})),
        )
        .await;
        assert_eq!(created.status(), 201);
        assert_eq!(created.headers()["location"], "/specialists/tax");
        assert_eq!(created.headers()["etag"], "\"1\"");
        let body: Value = created.json().await.unwrap();
        assert_eq!(
            (body["version"].as_u64(), body["max_tokens"].as_u64()),
            (Some(1), Some(2048))
        );

        let got: Value = app.get_json("/specialists/tax").await;
        assert_eq!(got, body);

        // PUT replaces every field; the prompt change is archived.
        let mut replacement = got.clone();
        replacement["system_prompt"] = json!("Version two.");
        replacement["description"] = json!("Now described");
        let put = app.put_json("/specialists/tax", &replacement).await;
        assert_eq!(put.status(), 200);
        assert_eq!(put.headers()["etag"], "\"2\"");
        let v2: Value = put.json().await.unwrap();
        assert_eq!(v2["version"], 2);
        assert_eq!(v2["created_at"], body["created_at"]);
        assert_ne!(v2["updated_at"], body["updated_at"]);
        assert_eq!(v2["prompt_history"][0]["system_prompt"], "Version one.");
        assert_eq!(v2["prompt_history"][0]["version"], 1);

        // PATCH changes only what is sent; an unchanged prompt adds no history.
        let patched: Value = app
            .client
            .patch(app.url("/specialists/tax"))
            .json(&json!({"temperature": 1.5, "pricing": {"input_per_1m": 1, "output_per_1m": 2}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(patched["version"], 3);
        assert_eq!(patched["temperature"], 1.5);
        assert_eq!(patched["description"], "Now described");
        assert_eq!(patched["prompt_history"].as_array().unwrap().len(), 1);
        let cleared: Value = app
            .client
            .patch(app.url("/specialists/tax"))
            .json(&json!({"pricing": null}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(cleared.get("pricing").is_none(), "{cleared}");

        let copy = post(&app, "/specialists/tax/duplicate", &json!({})).await;
        assert_eq!(copy.status(), 201);
        let copy: Value = copy.json().await.unwrap();
        assert_eq!(copy["name"], "Tax (Copy)");
        assert_eq!(copy["version"], 1);
        assert_eq!(copy["prompt_history"], json!([]));
        assert_ne!(copy["id"], "tax");
        assert_eq!(copy["system_prompt"], "Version two.");

        let delete = app.delete("/specialists/tax").await;
        assert_eq!(delete.status(), 204);
        let gone = app.get("/specialists/tax").await;
        assert_eq!(gone.status(), 404);
        // The file holds what the API says.
        let file = std::fs::read_to_string(app.dir().join("specialists.json")).unwrap();
        assert!(!file.contains("\"id\": \"tax\""));
        assert!(file.contains("Tax (Copy)"));
    }

    #[tokio::test]
    async fn unknown_ids_are_404_everywhere() {
        let app = TestApp::spawn().await;
        for response in [
            app.client
                .put(app.url("/specialists/nope"))
                .json(&valid())
                .send()
                .await
                .unwrap(),
            app.client
                .patch(app.url("/specialists/nope"))
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
            app.delete("/specialists/nope").await,
            post(&app, "/specialists/nope/duplicate", &json!({})).await,
        ] {
            assert_eq!(response.status(), 404);
            assert_eq!(error_body(response).await["code"], "specialist_not_found");
        }
    }

    #[tokio::test]
    async fn a_stale_if_match_is_409() {
        let app = TestApp::spawn().await;
        let ok = app
            .client
            .patch(app.url("/specialists/general"))
            .header("if-match", "\"1\"")
            .json(&json!({"temperature": 0.1}))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        for request in [
            app.client
                .patch(app.url("/specialists/general"))
                .json(&json!({"temperature": 0.9})),
            app.client
                .put(app.url("/specialists/general"))
                .json(&valid()),
            app.client.delete(app.url("/specialists/general")),
        ] {
            let stale = request.header("if-match", "\"1\"").send().await.unwrap();
            assert_eq!(stale.status(), 409);
            let error = error_body(stale).await;
            assert_eq!(error["code"], "version_conflict");
            assert!(
                error["message"].as_str().unwrap().contains("version 2"),
                "{error}"
            );
        }
        let current: Value = app.get_json("/specialists/general").await;
        assert_eq!(current["temperature"], 0.1);
    }

    #[tokio::test]
    async fn fifty_concurrent_updates_all_land() {
        let app = TestApp::spawn().await;
        let url = app.url("/specialists/general");
        let updates = (0..50).map(|i| {
            let request = app
                .client
                .patch(&url)
                .json(&json!({"description": format!("update {i}")}));
            async move { request.send().await.unwrap().status() }
        });
        let statuses = futures_util::future::join_all(updates).await;
        assert!(statuses.iter().all(|s| s.as_u16() == 200), "{statuses:?}");
        let current: Value = app.get_json("/specialists/general").await;
        assert_eq!(current["version"], 51);
        // The file on disk is valid and agrees.
        let text = std::fs::read_to_string(app.dir().join("specialists.json")).unwrap();
        let list =
            specialists::parse_catalogue(&text, &Default::default(), chrono::Utc::now()).unwrap();
        let general = list.iter().find(|s| s.id().as_str() == "general").unwrap();
        assert_eq!(general.version(), 51);
    }

    #[tokio::test]
    async fn external_edits_are_picked_up_and_a_corrupt_file_is_ignored() {
        let logs = server_logs();
        let app =
            TestApp::spawn_with(|settings, _| settings.specialists.reload_interval_ms = 50).await;
        let path = app.dir().join("specialists.json");
        let deployed = specialist("deployed", "mock", "mock-echo", "New from ops.", json!({}));
        std::fs::write(&path, catalogue([deployed])).unwrap();
        eventually("the edited file to be picked up", async || {
            let response = app.get("/specialists/deployed").await;
            (response.status() == 200).then_some(())
        })
        .await;
        assert_eq!(
            app.get("/specialists/demo").await.status(),
            404,
            "the catalogue is the new file's"
        );

        // Not JSON at all, then JSON whose specialist breaks the rules (it would replace
        // "deployed" if it were taken). The poll's error line, naming this test's file and
        // the reason, says the server has read the file and rejected it.
        let sneaky = specialist(
            "sneaky",
            "mock",
            "mock-echo",
            "x",
            json!({"name": "", "temperature": 9}),
        );
        for (corrupt, reason) in [
            ("{\"specialists\": [ oops".to_owned(), "is not valid JSON"),
            (catalogue([sneaky]), "invalid specialist"),
        ] {
            std::fs::write(&path, &corrupt).unwrap();
            let file = format!("path={}", path.display());
            eventually("the poll to reject the corrupt file", async || {
                logs.text()
                    .lines()
                    .any(|line| {
                        line.contains("catalogue cannot be used")
                            && line.contains(&file)
                            && line.contains(reason)
                    })
                    .then_some(())
            })
            .await;
            // A change now would overwrite the file: refused.
            let patch = app
                .client
                .patch(app.url("/specialists/deployed"))
                .json(&json!({"temperature": 0.5}))
                .send()
                .await
                .unwrap();
            assert_eq!(patch.status(), 409);
            let error = error_body(patch).await;
            assert_eq!(error["code"], "catalogue_file_invalid");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt);

            let get = |id: &str| {
                app.client
                    .get(app.url(&format!("/specialists/{id}")))
                    .send()
            };
            assert_eq!(
                get("deployed").await.unwrap().status(),
                200,
                "a corrupt file keeps the last good catalogue"
            );
            assert_eq!(get("sneaky").await.unwrap().status(), 404);
            let chat = app.chat("deployed", "hi").await;
            assert_eq!(chat.status(), 200);
        }
    }

    #[tokio::test]
    async fn only_admins_may_change_specialists() {
        let app = TestApp::spawn_with(|settings, _| {
            settings.auth.mode = AuthMode::Required;
            settings.auth.api_keys = vec![
                ApiKeyConfig {
                    name: "user".into(),
                    email: "user@example.com".into(),
                    role: AccessRole::User,
                    sha256: sha256_hex(USER_KEY),
                },
                ApiKeyConfig {
                    name: "admin".into(),
                    email: "admin@example.com".into(),
                    role: AccessRole::Admin,
                    sha256: sha256_hex(ADMIN_KEY),
                },
            ];
        })
        .await;
        let as_user = [
            app.client.post(app.url("/specialists")).json(&valid()),
            app.client
                .put(app.url("/specialists/general"))
                .json(&valid()),
            app.client
                .patch(app.url("/specialists/general"))
                .json(&json!({"temperature": 1})),
            app.client.delete(app.url("/specialists/general")),
            app.client.post(app.url("/specialists/general/duplicate")),
        ];
        for request in as_user {
            let response = request.bearer_auth(USER_KEY).send().await.unwrap();
            assert_eq!(response.status(), 403);
            assert_eq!(error_body(response).await["code"], "forbidden");
        }
        // Reading is for everyone authenticated.
        let list = app.get_as("/specialists", USER_KEY).await;
        assert_eq!(list.status(), 200);
        let created = app.post_json_as("/specialists", ADMIN_KEY, &valid()).await;
        assert_eq!(created.status(), 201);
    }

    #[tokio::test]
    async fn chat_uses_the_current_version_and_rows_keep_the_name_at_call_time() {
        let fake = FakeUpstream::start(Wire::OpenAi).await;
        let base_url = fake.base_url().to_owned();
        let app = TestApp::spawn_with(move |settings, _| {
            settings.providers.openai.base_url = base_url;
            settings.providers.openai.api_key = Some(secrecy::SecretString::from("k"));
        })
        .await;
        let question = json!({"specialist_id": "general", "message": "hi"});
        let ask = || app.post_json("/chat/send", &question);
        assert_eq!(ask().await.status(), 200);
        let patch = app
            .client
            .patch(app.url("/specialists/general"))
            .json(&json!({"system_prompt": "Answer in French.", "name": "Assistant Général"}))
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), 200);
        assert_eq!(ask().await.status(), 200);

        let sent = fake.requests();
        assert_ne!(sent[0].body["messages"][0]["content"], "Answer in French.");
        assert_eq!(sent[1].body["messages"][0]["content"], "Answer in French.");
        let rows = app.usage_rows().await;
        let names: Vec<&str> = rows.iter().map(|r| r.specialist_name.as_str()).collect();
        assert_eq!(names, ["General Assistant", "Assistant Général"]);
        assert!(rows.iter().all(|r| r.specialist_id == "general"));
    }

    async fn patch(
        app: &TestApp,
        path: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = app.client.patch(app.url(path)).json(body);
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        request.send().await.unwrap()
    }

    #[tokio::test]
    async fn fallbacks_are_created_replaced_cleared_and_versioned() {
        let app = TestApp::spawn_with(|settings, _| {
            settings.providers.allowed_http_base_urls = vec!["http://127.0.0.1:11434/v1".into()];
        })
        .await;
        // Without the fields a specialist has no fallbacks and continues streams.
        let mut plain = valid();
        plain["id"] = json!("plain");
        let created: Value = post(&app, "/specialists", &plain)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(created["fallbacks"], json!([]), "always shown, empty too");
        assert_eq!(created["continue_streams"], true);

        let mut body = valid();
        body["id"] = json!("resilient");
        body["name"] = json!("Resilient");
        body["fallbacks"] = json!([
            {"provider": "anthropic", "model": "claude-sonnet-4"},
            {"provider": "openai", "model": "llama3.1:8b", "base_url": "http://127.0.0.1:11434/v1/"}
        ]);
        body["continue_streams"] = json!(false);
        let response = post(&app, "/specialists", &body).await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        assert_eq!(
            created["fallbacks"],
            json!([
                {"provider": "anthropic", "model": "claude-sonnet-4"},
                {"provider": "openai", "model": "llama3.1:8b", "base_url": "http://127.0.0.1:11434/v1"}
            ])
        );
        assert_eq!(created["continue_streams"], false);
        let got: Value = app.get_json("/specialists/resilient").await;
        assert_eq!(got["fallbacks"], created["fallbacks"]);

        // PATCH with a list replaces the whole list, and makes a new version.
        let replaced = patch(
            &app,
            "/specialists/resilient",
            Some("\"1\""),
            &json!({"fallbacks": [{"provider": "mock", "model": "mock-echo"}]}),
        )
        .await;
        assert_eq!(replaced.status(), 200);
        assert_eq!(replaced.headers()["etag"], "\"2\"");
        let replaced: Value = replaced.json().await.unwrap();
        assert_eq!(
            replaced["fallbacks"],
            json!([{"provider": "mock", "model": "mock-echo"}])
        );
        assert_eq!(replaced["continue_streams"], false, "not sent: kept");

        // The same list again is no change: no new version.
        let same = patch(
            &app,
            "/specialists/resilient",
            None,
            &json!({"fallbacks": [{"provider": "mock", "model": "mock-echo"}]}),
        )
        .await;
        assert_eq!(same.headers()["etag"], "\"2\"");

        // A change based on an old version is refused and changes nothing.
        let stale = patch(
            &app,
            "/specialists/resilient",
            Some("\"1\""),
            &json!({"fallbacks": null}),
        )
        .await;
        assert_eq!(stale.status(), 409);

        // null clears the list; continue_streams alone is a change too.
        let cleared = patch(
            &app,
            "/specialists/resilient",
            Some("\"2\""),
            &json!({"fallbacks": null}),
        )
        .await;
        assert_eq!(cleared.status(), 200);
        let cleared: Value = cleared.json().await.unwrap();
        assert_eq!(
            (&cleared["fallbacks"], &cleared["version"]),
            (&json!([]), &json!(3))
        );
        let continuing: Value = patch(
            &app,
            "/specialists/resilient",
            None,
            &json!({"continue_streams": true}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            (&continuing["continue_streams"], &continuing["version"]),
            (&json!(true), &json!(4))
        );

        // PUT needs nothing new: left out, the fields take their defaults.
        let mut put_body = valid();
        put_body["name"] = json!("Resilient");
        put_body["continue_streams"] = json!(false);
        put_body["fallbacks"] = json!([{"provider": "google", "model": "gemini-2.5-pro"}]);
        let put: Value = app
            .put_json("/specialists/resilient", &put_body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(put["version"], 5);
        assert_eq!(put["fallbacks"][0]["provider"], "google");
        let put: Value = app
            .put_json("/specialists/resilient", &valid_named("Resilient"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (&put["fallbacks"], &put["continue_streams"]),
            (&json!([]), &json!(true))
        );
        assert_eq!(put["version"], 6);
    }

    fn valid_named(name: &str) -> Value {
        let mut body = valid();
        body["name"] = json!(name);
        body
    }

    #[tokio::test]
    async fn bad_fallbacks_are_422_with_every_field_at_fault() {
        let app = TestApp::spawn().await;
        let mut body = valid();
        body["fallbacks"] = json!([
            {"provider": "cohere", "model": "command-r"},
            {"provider": "anthropic", "model": ""},
            {"provider": "openai", "model": "m", "base_url": "http://api.example.com/v1"},
            {"provider": "openai", "model": "m", "base_url": "https://169.254.169.254/v1"},
            {"provider": "openai", "model": "gpt-4o-mini"}
        ]);
        body["temperature"] = json!(5);
        let response = post(&app, "/specialists", &body).await;
        assert_eq!(
            fields_of(response).await,
            [
                "temperature",
                "fallbacks",
                "fallbacks[0].provider",
                "fallbacks[1].model",
                "fallbacks[4]",
                "fallbacks[2].base_url",
                "fallbacks[3].base_url",
            ],
            "too many, unknown provider, empty model, repeats the primary, http, internal"
        );

        let mut repeated = valid();
        repeated["fallbacks"] = json!([
            {"provider": "mock", "model": "mock-echo"},
            {"provider": "mock", "model": " mock-echo "}
        ]);
        let response = post(&app, "/specialists", &repeated).await;
        assert_eq!(response.status(), 422);
        let error = error_body(response).await;
        assert_eq!(error["details"][0]["field"], "fallbacks[1]");
        assert_eq!(error["details"][0]["message"], "repeats fallbacks[0]");

        // PATCH is held to the same rules and a refusal changes nothing.
        let refused = patch(
            &app,
            "/specialists/general",
            None,
            &json!({"fallbacks": [{"provider": "google", "model": "g", "base_url": "https://x.example.com"}]}),
        )
        .await;
        assert_eq!(fields_of(refused).await, ["fallbacks[0].base_url"]);
        let general: Value = app.get_json("/specialists/general").await;
        assert_eq!(
            (&general["fallbacks"], &general["version"]),
            (&json!([]), &json!(1))
        );

        // A target has exactly its three fields.
        let unknown = patch(
            &app,
            "/specialists/general",
            None,
            &json!({"fallbacks": [{"provider": "mock", "model": "m", "temperature": 1}]}),
        )
        .await;
        assert_eq!(unknown.status(), 400);
    }

    #[tokio::test]
    async fn the_openapi_document_describes_fallbacks_and_continue_streams() {
        let app = TestApp::spawn().await;
        let doc: Value = app.get_json("/openapi.json").await;
        let schemas = &doc["components"]["schemas"];
        for schema in ["SpecialistView", "SpecialistBody"] {
            let properties = &schemas[schema]["properties"];
            assert!(
                properties["fallbacks"].is_object(),
                "{schema}: {properties}"
            );
            assert!(properties["continue_streams"].is_object(), "{schema}");
        }
        assert!(
            schemas["TargetView"]["properties"]["model"].is_object(),
            "{}",
            schemas["TargetView"]
        );
    }
}
