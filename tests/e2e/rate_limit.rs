//! Rate limits end to end: headers, 429, route groups, and who counts as the caller.

use std::num::{NonZeroU32, NonZeroU64};

use e2e_support::{TestApp, error_body};
use http_api::{Cidr, GroupLimit};
use serde_json::json;

fn limited(requests: u32) -> impl FnOnce(&mut commander::Settings, &std::path::Path) {
    move |settings, _| {
        settings.rate_limit.requests = NonZeroU32::new(requests).unwrap();
        settings.rate_limit.window_seconds = NonZeroU64::new(3600).unwrap();
    }
}

async fn chat(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/chat/send"))
        .json(&json!({"specialist_id": "demo", "message": "hi"}));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn every_limited_response_has_the_headers_and_the_bucket_runs_out_with_429() {
    let app = TestApp::spawn_with(limited(3)).await;
    for remaining in [2, 1, 0] {
        let response = chat(&app, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit"), "3");
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            remaining.to_string()
        );
        // Three per hour: each spent token takes 1,200 s to come back.
        let reset = (3 - remaining) * 1200;
        assert_eq!(header(&response, "x-ratelimit-reset"), reset.to_string());
        assert_eq!(header(&response, "ratelimit-policy"), "\"chat\";q=3;w=3600");
        assert_eq!(
            header(&response, "ratelimit"),
            format!("\"chat\";r={remaining};t={reset}")
        );
    }
    let refused = chat(&app, None).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1200");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "x-ratelimit-limit"), "3");
    let error = error_body(refused).await;
    assert_eq!(error["code"], "rate_limited");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("retry in 1200 s"),
        "{error}"
    );
    assert_eq!(
        app.usage_rows().await.len(),
        3,
        "a refused call reaches no specialist"
    );
}

#[tokio::test]
async fn health_and_ready_are_never_limited() {
    let app = TestApp::spawn_with(limited(1)).await;
    for path in ["/health", "/ready", "/health", "/ready", "/health"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn chat_and_management_have_separate_limits() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.rate_limit.requests = NonZeroU32::new(1).unwrap();
        settings.rate_limit.management = Some(GroupLimit {
            requests: NonZeroU32::new(2).unwrap(),
            window_seconds: NonZeroU64::new(60).unwrap(),
        });
    })
    .await;
    assert_eq!(chat(&app, None).await.status(), 200);
    assert_eq!(chat(&app, None).await.status(), 429);
    for expected in [200, 200, 429] {
        let response = app.get("/specialists").await;
        assert_eq!(response.status(), expected);
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"management\";q=2;w=60"
        );
    }
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::spawn_with(limited(1)).await;
    assert_eq!(chat(&app, Some("198.51.100.1")).await.status(), 200);
    // A different claimed address from the same socket address: the same bucket.
    assert_eq!(chat(&app, Some("198.51.100.2")).await.status(), 429);
    assert_eq!(chat(&app, None).await.status(), 429);
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarded_for_names_the_caller() {
    let app = TestApp::spawn_with(|settings, dir| {
        limited(1)(settings, dir);
        settings.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse::<Cidr>().unwrap()];
    })
    .await;
    assert_eq!(chat(&app, Some("198.51.100.1")).await.status(), 200);
    assert_eq!(
        chat(&app, Some("198.51.100.2")).await.status(),
        200,
        "another caller"
    );
    assert_eq!(
        chat(&app, Some("198.51.100.1")).await.status(),
        429,
        "the first, again"
    );
    // Only the rightmost untrusted hop counts: a client cannot buy a new bucket by prepending.
    assert_eq!(
        chat(&app, Some("203.0.113.99, 198.51.100.1"))
            .await
            .status(),
        429
    );
    // Without the header, the proxy itself is the caller.
    assert_eq!(chat(&app, None).await.status(), 200);

    // A proxy that adds its own header line rather than appending to the client's: the
    // lines are one list, so the client's line cannot choose the bucket.
    let two_lines = |claimed: &'static str| {
        app.client
            .post(app.url("/chat/send"))
            .header("x-forwarded-for", claimed)
            .header("x-forwarded-for", "198.51.100.1")
            .json(&serde_json::json!({"specialist_id": "demo", "message": "hi"}))
            .send()
    };
    assert_eq!(two_lines("203.0.113.7").await.unwrap().status(), 429);
    assert_eq!(two_lines("203.0.113.8").await.unwrap().status(), 429);
    // Nor can bytes that are not text in the client's part make the proxy (whose own bucket
    // is spent by now) the caller: a fresh client address is its first call...
    let with_forwarded = |lines: &[&'static [u8]]| {
        let mut request = app.client.post(app.url("/chat/send"));
        for line in lines {
            request = request.header(
                "x-forwarded-for",
                reqwest::header::HeaderValue::from_bytes(line).unwrap(),
            );
        }
        request
            .json(&serde_json::json!({"specialist_id": "demo", "message": "hi"}))
            .send()
    };
    assert_eq!(
        with_forwarded(&[b"\x80\xff", b"198.51.100.50"])
            .await
            .unwrap()
            .status(),
        200
    );
    // ...and garbage on the same line as the proxy's hop changes nothing either.
    assert_eq!(
        with_forwarded(&[b"\xfe\xfe, 198.51.100.50"])
            .await
            .unwrap()
            .status(),
        429,
        "the same caller's second call"
    );
}
