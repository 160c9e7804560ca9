//! Reading the catalogue over HTTP.

use e2e_support::{TestApp, error_body};

#[tokio::test]
async fn list_is_sorted_by_name_and_filterable_by_provider() {
    let app = TestApp::spawn().await;
    let body: serde_json::Value = app
        .client
        .get(app.url("/specialists"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = body["specialists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Code Reviewer",
            "Demo",
            "Financial Analyst",
            "General Assistant",
            "Grok Analyst"
        ]
    );

    let openai: serde_json::Value = app
        .client
        .get(app.url("/specialists?provider=openai"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = openai["specialists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["financial_analyst", "general", "grok_analyst"]);

    let response = app
        .client
        .get(app.url("/specialists?provider=cohere"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        error_body(response).await["details"][0]["field"],
        "provider"
    );
}

#[tokio::test]
async fn one_specialist_in_the_file_format_or_404() {
    let app = TestApp::spawn().await;
    let grok: serde_json::Value = app
        .client
        .get(app.url("/specialists/grok_analyst"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(grok["base_url"], "https://api.x.ai/v1");
    assert_eq!(grok["version"], 1);
    assert_eq!(grok["pricing"]["input_per_1m"], 2.0);
    assert_eq!(grok["prompt_history"], serde_json::json!([]));

    for missing in ["/specialists/nobody", "/specialists/has%20space"] {
        let response = app.client.get(app.url(missing)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{missing}");
        assert_eq!(error_body(response).await["code"], "specialist_not_found");
    }
}
