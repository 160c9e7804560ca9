//! Budgets end to end on the local store (issue 22): the real server against an OpenAI fake
//! whose specialist has its own round prices, so every cost is exact. Concurrent calls never
//! take the spend past a limit and are refused with the right shapes on both doors; streams
//! settle at what they delivered; a restart keeps the period's spend; `/budgets` over HTTP with
//! its roles; user and key scopes; the alert; what metrics and `/usage/summary` show; and a
//! budget made on one instance applying on another.

use std::path::Path;
use std::time::Duration;

use commander::Settings;
use core_domain::{AccessRole, BudgetDraft};
use e2e_support::{
    TestApp, TestDatabase, catalogue, error_body, eventually, field_of_each, server_logs,
    specialist,
};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use futures_util::StreamExt;
use http_api::{ApiKeyConfig, AuthMode};
use secrecy::SecretString;
use serde_json::{Value, json};
use usage_store::{Backend, StoredUsage};

const SPECIALIST: &str = "ledger";
/// A second specialist, covered by no specialist budget of the tests.
const OTHER: &str = "auditor";
const QUESTION: &str = "How much?";

const ADMIN_KEY: &str = "admin-key-0123456789";
const ADA_KEY: &str = "ada-key-0123456789";
const GRACE_KEY: &str = "grace-key-0123456789";

/// $0.001 a token both ways, and at most 8 output tokens: a call's worst case is its prompt
/// estimate (14 tokens for [`QUESTION`]) plus 8, $0.022; the fake answers with 10 input
/// tokens and 3 output tokens, $0.013 — never more than the estimate, so a limit holds exactly.
fn priced() -> Value {
    json!({"pricing": {"input_per_1m": 1000.0, "output_per_1m": 1000.0}, "max_tokens": 8})
}

const WORST_CASE_NANOS: i64 = 22_000_000;
const ANSWER_NANOS: i64 = 13_000_000;

fn nanos(dollars: f64) -> i64 {
    (dollars * 1e9).round() as i64
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn budget(id: &str, scope: &str, subject: Option<&str>, limit_usd: f64) -> BudgetDraft {
    BudgetDraft {
        id: id.to_owned(),
        scope: scope.to_owned(),
        subject: subject.map(str::to_owned),
        period: "day".to_owned(),
        limit_usd,
        alert_usd: None,
    }
}

/// Auth required: an administrator, ada and grace (users), each with their API key.
fn require_auth(settings: &mut Settings) {
    settings.auth.mode = AuthMode::Required;
    settings.auth.api_keys = [
        ("ops", "root@example.com", AccessRole::Admin, ADMIN_KEY),
        ("ada's laptop", "ada@example.com", AccessRole::User, ADA_KEY),
        (
            "grace's laptop",
            "grace@example.com",
            AccessRole::User,
            GRACE_KEY,
        ),
    ]
    .into_iter()
    .map(|(name, email, role, key)| ApiKeyConfig {
        name: name.into(),
        email: email.into(),
        role,
        sha256: sha256_hex(key),
    })
    .collect();
}

/// The server on the OpenAI fake with [`SPECIALIST`] and [`OTHER`], both priced.
struct Rig {
    openai: FakeUpstream,
    app: TestApp,
}

impl Rig {
    async fn start(customize: impl FnOnce(&mut Settings, &Path)) -> Self {
        let openai = FakeUpstream::start(Wire::OpenAi).await;
        openai.set_default(Reply::text("one two three"));
        let url = openai.base_url().to_owned();
        let app = TestApp::spawn_with(move |settings, dir| {
            std::fs::write(
                dir.join("specialists.json"),
                catalogue([
                    specialist(SPECIALIST, "openai", "gpt-4o", "Analyse.", priced()),
                    specialist(OTHER, "openai", "gpt-4o", "Analyse.", priced()),
                ]),
            )
            .unwrap();
            let openai = &mut settings.providers.openai;
            openai.base_url = url;
            openai.api_key = Some(SecretString::from("openai-key-1"));
            openai.max_retries = 0;
            openai.retry_base_delay_ms = 1;
            customize(settings, dir);
        })
        .await;
        Self { openai, app }
    }

    /// `POST /chat/send` to `specialist_id` as `token` (none: anonymous).
    async fn send(&self, specialist_id: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .post(self.app.url("/chat/send"))
            .json(&json!({"specialist_id": specialist_id, "message": QUESTION}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// `(spent, reserved)` of budget `id` in nano-dollars, as `GET /budgets/{id}` shows it.
    async fn standing(&self, id: &str, token: Option<&str>) -> (i64, i64) {
        standing(&self.app, id, token).await
    }
}

async fn standing(app: &TestApp, id: &str, token: Option<&str>) -> (i64, i64) {
    let mut request = app.client.get(app.url(&format!("/budgets/{id}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /budgets/{id}");
    let body: Value = response.json().await.unwrap();
    (
        nanos(body["spent_usd"].as_f64().unwrap()),
        nanos(body["reserved_usd"].as_f64().unwrap()),
    )
}

/// The spend of `rows`, in nano-dollars.
fn cost_of<'a>(rows: impl IntoIterator<Item = &'a StoredUsage>) -> i64 {
    rows.into_iter().map(|r| nanos(r.estimated_cost_usd)).sum()
}

/// Waits until budget `id` holds no reservation and has spent exactly what `rows` cost.
async fn settles_at(app: &TestApp, id: &str, token: Option<&str>, rows: &[StoredUsage]) {
    let expected = (cost_of(rows), 0);
    let mut seen = None;
    let settled = tokio::time::timeout(e2e_support::EVENTUALLY_WITHIN, async {
        loop {
            let now = standing(app, id, token).await;
            seen = Some(now);
            if now == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "budget {id}: (spent, reserved) {seen:?}, not {expected:?} as its rows {rows:?}"
    );
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Door {
    Native,
    OpenAi,
}

impl Door {
    fn path(self) -> &'static str {
        match self {
            Door::Native => "/chat/send",
            Door::OpenAi => "/v1/chat/completions",
        }
    }

    fn body(self, stream: bool) -> Value {
        match self {
            Door::Native => json!({"specialist_id": SPECIALIST, "message": QUESTION}),
            Door::OpenAi => json!({"model": SPECIALIST, "stream": stream,
                                   "messages": [{"role": "user", "content": QUESTION}]}),
        }
    }

    fn stream_path(self) -> &'static str {
        match self {
            Door::Native => "/chat/stream",
            Door::OpenAi => "/v1/chat/completions",
        }
    }
}

/// 200 calls at once against a global budget that fits 50 worst cases.
async fn exact_under_concurrency(door: Door) {
    const CALLS: usize = 200;
    let limit = 50 * WORST_CASE_NANOS;
    let rig = Rig::start(|settings, _| {
        settings.budgets.limits = vec![budget("team", "global", None, limit as f64 / 1e9)];
    })
    .await;
    // Answers take a while, so many calls are under way at once and admission rests on what
    // they reserved, not on what has settled.
    rig.openai
        .set_default(Reply::text("one two three").first_byte_delay(Duration::from_millis(100)));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        let request = rig
            .app
            .client
            .post(rig.app.url(door.path()))
            .json(&door.body(false));
        calls.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let should_retry = response
                .headers()
                .get("x-should-retry")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            (status, should_retry, body)
        });
    }
    let refusal_status = match door {
        Door::Native => 402,
        Door::OpenAi => 429,
    };
    let (mut answered, mut refused) = (0, 0);
    while let Some(call) = calls.join_next().await {
        let (status, should_retry, body) = call.unwrap();
        if status == 200 {
            answered += 1;
            continue;
        }
        assert_eq!(status, refusal_status, "{body}");
        refused += 1;
        assert_eq!(should_retry.as_deref(), Some("false"), "{body}");
        let error = &body["error"];
        assert_eq!(error["code"], "budget_exceeded", "{body}");
        if door == Door::OpenAi {
            assert_eq!(error["type"], "insufficient_quota", "{body}");
        }
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("budget 'team'"), "{message}");
        assert!(message.contains("resets at"), "{message}");
        // The worst case: 14 prompt tokens (estimated) and 8 output tokens at $0.001.
        assert!(message.contains("may cost up to $0.022"), "{message}");
    }
    assert_eq!(answered + refused, CALLS);
    // Each admitted call holds at most a worst case, so the first refusal comes after at least
    // 50 admissions; each settles at less, so a few more may fit later, never all.
    assert!(
        (50..=(limit / ANSWER_NANOS) as usize).contains(&answered),
        "{answered} answered"
    );
    assert_eq!(rig.openai.request_count(), answered);

    let rows = rig.app.wait_for_usage_rows(CALLS).await;
    assert_eq!(rows.len(), CALLS);
    let (succeeded, refusals): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.success);
    assert_eq!(succeeded.len(), answered);
    assert!(
        succeeded
            .iter()
            .all(|r| nanos(r.estimated_cost_usd) == ANSWER_NANOS),
        "{succeeded:?}"
    );
    assert_eq!(refusals.len(), refused);
    for row in &refusals {
        assert_eq!(
            row.error_code.as_deref(),
            Some("budget_exceeded"),
            "{row:?}"
        );
        assert_eq!(row.estimated_cost_usd, 0.0, "{row:?}");
        assert_eq!(row.attempts, 0, "{row:?}");
    }
    settles_at(&rig.app, "team", None, &succeeded).await;
    assert!(cost_of(&succeeded) <= limit);

    let metrics = rig.app.metrics().await;
    assert_eq!(
        metrics[r#"commander_budget_refusals_total{budget="team"}"#],
        refused as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_exactly_under_200_concurrent_native_calls() {
    exact_under_concurrency(Door::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_exactly_under_200_concurrent_openai_calls() {
    exact_under_concurrency(Door::OpenAi).await;
}

/// A stream that completes, then one its client leaves after the first chunk: each settles at
/// its row's cost, reserving nothing afterwards.
async fn streams_settle(door: Door) {
    let rig = Rig::start(|settings, _| {
        settings.budgets.limits = vec![budget("team", "global", None, 10.0)];
    })
    .await;
    let start_stream = || {
        rig.app
            .client
            .post(rig.app.url(door.stream_path()))
            .json(&door.body(true))
            .send()
    };

    let response = start_stream().await.unwrap();
    let events = e2e_support::read_sse(response, tokio::time::Instant::now()).await;
    assert!(events.len() > 1, "{events:?}");
    let rows = rig.app.wait_for_usage_rows(1).await;
    assert!(rows[0].success, "{rows:?}");
    assert!(rows[0].estimated_cost_usd > 0.0, "{rows:?}");
    settles_at(&rig.app, "team", None, &rows).await;

    rig.openai.push(
        Reply::text("a b c d e f g h i j k l m n o p q r s t")
            .chunks(20)
            .chunk_delay(Duration::from_millis(200)),
    );
    let response = start_stream().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    let rows = rig.app.wait_for_usage_rows(2).await;
    let cut = rows.iter().find(|r| !r.success).unwrap();
    assert_eq!(
        cut.error_code.as_deref(),
        Some("client_disconnected"),
        "{rows:?}"
    );
    assert!(cut.estimated_cost_usd > 0.0, "{cut:?}");
    settles_at(&rig.app, "team", None, &rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_settle_native_streams_at_their_delivered_cost() {
    streams_settle(Door::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_settle_openai_streams_at_their_delivered_cost() {
    streams_settle(Door::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_refuse_a_stream_before_it_starts_on_both_doors() {
    let rig = Rig::start(|settings, _| {
        settings.budgets.limits = vec![budget("nothing", "global", None, 0.0)];
    })
    .await;
    for (door, status) in [(Door::Native, 402), (Door::OpenAi, 429)] {
        let response = rig
            .app
            .client
            .post(rig.app.url(door.stream_path()))
            .json(&door.body(true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{door:?}");
        assert_eq!(response.headers()["x-should-retry"], "false", "{door:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    }
    let rows = rig.app.wait_for_usage_rows(2).await;
    for row in &rows {
        assert!(row.streamed, "{row:?}");
        assert_eq!(
            row.error_code.as_deref(),
            Some("budget_exceeded"),
            "{row:?}"
        );
        assert_eq!(row.estimated_cost_usd, 0.0, "{row:?}");
    }
    assert_eq!(rig.openai.request_count(), 0);
    assert_eq!(rig.standing("nothing", None).await, (0, 0));
}

/// Server A spends, stops gracefully; server B on the same database and journal shows that
/// spend before any call and refuses the call that would pass the limit.
async fn budgets_survive_a_restart(backend: Backend) {
    let shared = tempfile::tempdir().unwrap();
    let postgres = (backend == Backend::Postgres).then(TestDatabase::create);
    let url = match &postgres {
        Some(database) => database.url(),
        None => format!("sqlite://{}", shared.path().join("usage.db").display()),
    };
    // Three answers fit ($0.039 of $0.06), a fourth's worst case does not.
    let limit = 3 * ANSWER_NANOS + WORST_CASE_NANOS - 1;
    let on_shared_store = |settings: &mut Settings| {
        settings.database.url.clone_from(&url);
        settings.database = std::mem::take(&mut settings.database).with_files_in(shared.path());
        settings.budgets.limits = vec![budget("team", "global", None, limit as f64 / 1e9)];
    };

    let first = Rig::start(|settings, _| on_shared_store(settings)).await;
    for _ in 0..3 {
        assert_eq!(first.send(SPECIALIST, None).await.status(), 200);
    }
    let rows = first.app.usage_rows().await;
    settles_at(&first.app, "team", None, &rows).await;
    first.app.shut_down().await;

    let second = Rig::start(|settings, _| on_shared_store(settings)).await;
    assert_eq!(
        second.standing("team", None).await,
        (3 * ANSWER_NANOS, 0),
        "the spend of the period before any call"
    );
    let refused = second.send(SPECIALIST, None).await;
    assert_eq!(refused.status(), 402);
    assert_eq!(error_body(refused).await["code"], "budget_exceeded");
    assert_eq!(second.openai.request_count(), 0);
}

on_both_backends!(budgets_survive_a_restart);

/// A budget as `POST /budgets` takes it.
fn body(id: &str, scope: &str, subject: Option<&str>, limit_usd: f64) -> Value {
    let mut body = json!({"id": id, "scope": scope, "period": "day", "limit_usd": limit_usd});
    if let Some(subject) = subject {
        body["subject"] = json!(subject);
    }
    body
}

async fn put_as(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn delete_as(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn ids_seen_by(app: &TestApp, token: &str) -> Vec<String> {
    let response = app.get_as("/budgets", token).await;
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    let mut ids: Vec<String> = field_of_each(&list["budgets"], "id")
        .into_iter()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_managed_over_http_by_administrators_and_seen_by_users() {
    let rig = Rig::start(|settings, _| {
        require_auth(settings);
        settings.budgets.limits = vec![budget("from-config", "global", None, 100.0)];
    })
    .await;
    let app = &rig.app;

    // Create: 201 with the budget and its standing.
    let created = app
        .post_json_as(
            "/budgets",
            ADMIN_KEY,
            &json!({"id": "ledger-daily", "scope": "specialist", "subject": SPECIALIST,
                    "period": "day", "limit_usd": 1.5, "alert_usd": 1.0}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["id"], "ledger-daily");
    assert_eq!(created["scope"], "specialist");
    assert_eq!(created["subject"], SPECIALIST);
    assert_eq!(created["period"], "day");
    assert_eq!(created["limit_usd"], 1.5);
    assert_eq!(created["alert_usd"], 1.0);
    assert_eq!(created["managed_by"], "api");
    assert_eq!(created["spent_usd"], 0.0);
    assert_eq!(created["reserved_usd"], 0.0);
    assert_eq!(created["remaining_usd"], 1.5);
    assert!(created["period_start"].is_string() && created["resets_at"].is_string());

    // Per-user and per-key budgets, ada's and grace's.
    for (id, scope, subject) in [
        ("ada", "user", "ada@example.com"),
        ("grace", "user", "grace@example.com"),
        ("ada-laptop", "key", "ada's laptop"),
    ] {
        let response = app
            .post_json_as("/budgets", ADMIN_KEY, &body(id, scope, Some(subject), 5.0))
            .await;
        assert_eq!(response.status(), 201, "{id}");
    }

    // Spend, then a change of limit keeps it; a change of scope starts the new scope's count.
    // Ada's call counts in every budget that covers it, and in no other.
    assert_eq!(rig.send(SPECIALIST, Some(ADA_KEY)).await.status(), 200);
    for id in ["ledger-daily", "ada", "ada-laptop", "from-config"] {
        assert_eq!(
            rig.standing(id, Some(ADMIN_KEY)).await,
            (ANSWER_NANOS, 0),
            "{id}"
        );
    }
    assert_eq!(rig.standing("grace", Some(ADMIN_KEY)).await, (0, 0));
    // Two calls to the other specialist, which the budget covers after its change of scope.
    for _ in 0..2 {
        assert_eq!(rig.send(OTHER, Some(ADMIN_KEY)).await.status(), 200);
    }
    rig.app.usage_rows().await;
    let raised = put_as(
        app,
        "/budgets/ledger-daily",
        ADMIN_KEY,
        &body("ledger-daily", "specialist", Some(SPECIALIST), 2.0),
    )
    .await;
    assert_eq!(raised.status(), 200);
    let raised: Value = raised.json().await.unwrap();
    assert_eq!(raised["limit_usd"], 2.0);
    assert_eq!(nanos(raised["spent_usd"].as_f64().unwrap()), ANSWER_NANOS);
    let moved = put_as(
        app,
        "/budgets/ledger-daily",
        ADMIN_KEY,
        &json!({"scope": "specialist", "subject": OTHER, "period": "day", "limit_usd": 2.0}),
    )
    .await;
    assert_eq!(moved.status(), 200);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["subject"], OTHER);
    assert_eq!(
        nanos(moved["spent_usd"].as_f64().unwrap()),
        2 * ANSWER_NANOS,
        "rebuilt for the new scope: {moved}"
    );

    // Who sees what: nobody without credentials; /budgets is in the OpenAPI document.
    assert_eq!(app.get("/budgets").await.status(), 401);
    let document = app.get_json("/openapi.json").await;
    for path in ["/budgets", "/budgets/{id}"] {
        assert!(document["paths"][path].is_object(), "{path} documented");
    }
    assert_eq!(
        ids_seen_by(app, ADMIN_KEY).await,
        ["ada", "ada-laptop", "from-config", "grace", "ledger-daily"]
    );
    assert_eq!(
        ids_seen_by(app, ADA_KEY).await,
        ["ada", "ada-laptop", "from-config", "ledger-daily"]
    );
    assert_eq!(
        ids_seen_by(app, GRACE_KEY).await,
        ["from-config", "grace", "ledger-daily"]
    );
    let hidden = app.get_as("/budgets/grace", ADA_KEY).await;
    assert_eq!(hidden.status(), 404);
    assert_eq!(error_body(hidden).await["code"], "budget_not_found");
    assert_eq!(app.get_as("/budgets/ada", ADA_KEY).await.status(), 200);

    // A user changes nothing.
    let forbidden = app
        .post_json_as("/budgets", ADA_KEY, &body("mine", "global", None, 1.0))
        .await;
    assert_eq!(forbidden.status(), 403);
    let forbidden = put_as(
        app,
        "/budgets/ada",
        ADA_KEY,
        &body("ada", "global", None, 1.0),
    )
    .await;
    assert_eq!(forbidden.status(), 403);
    assert_eq!(delete_as(app, "/budgets/ada", ADA_KEY).await.status(), 403);

    // Validation lists every field at fault.
    let invalid = app
        .post_json_as(
            "/budgets",
            ADMIN_KEY,
            &json!({"id": "bad id!", "scope": "global", "subject": "x", "period": "week",
                    "limit_usd": -1.0}),
        )
        .await;
    assert_eq!(invalid.status(), 422);
    let error = error_body(invalid).await;
    let mut fields = field_of_each(&error["details"], "field");
    fields.sort_unstable();
    assert_eq!(fields, ["id", "limit_usd", "period", "subject"], "{error}");
    let alert_over_limit = app
        .post_json_as(
            "/budgets",
            ADMIN_KEY,
            &json!({"id": "odd", "scope": "user", "subject": "not-an-email", "period": "month",
                    "limit_usd": 1.0, "alert_usd": 2.0}),
        )
        .await;
    assert_eq!(alert_over_limit.status(), 422);
    let error = error_body(alert_over_limit).await;
    let mut fields = field_of_each(&error["details"], "field");
    fields.sort_unstable();
    assert_eq!(fields, ["alert_usd", "subject"], "{error}");
    let missing_id = app
        .post_json_as(
            "/budgets",
            ADMIN_KEY,
            &json!({"scope": "global", "period": "day", "limit_usd": 1.0}),
        )
        .await;
    assert_eq!(missing_id.status(), 422);
    assert_eq!(
        field_of_each(&error_body(missing_id).await["details"], "field"),
        ["id"]
    );
    let wrong_id = put_as(
        app,
        "/budgets/ada",
        ADMIN_KEY,
        &body("grace", "global", None, 1.0),
    )
    .await;
    assert_eq!(wrong_id.status(), 422);
    let not_json = app
        .client
        .post(app.url("/budgets"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    error_body(not_json).await;

    // Conflicts: a taken id, and a config budget.
    for id in ["ada", "from-config"] {
        let duplicate = app
            .post_json_as("/budgets", ADMIN_KEY, &body(id, "global", None, 1.0))
            .await;
        assert_eq!(duplicate.status(), 409, "{id}");
        assert_eq!(error_body(duplicate).await["code"], "budget_exists");
    }
    let read_only = put_as(
        app,
        "/budgets/from-config",
        ADMIN_KEY,
        &body("from-config", "global", None, 1.0),
    )
    .await;
    assert_eq!(read_only.status(), 409);
    assert_eq!(error_body(read_only).await["code"], "budget_read_only");
    let read_only = delete_as(app, "/budgets/from-config", ADMIN_KEY).await;
    assert_eq!(read_only.status(), 409);
    assert_eq!(error_body(read_only).await["code"], "budget_read_only");

    // Unknown ids.
    for response in [
        app.get_as("/budgets/nope", ADMIN_KEY).await,
        put_as(
            app,
            "/budgets/nope",
            ADMIN_KEY,
            &body("nope", "global", None, 1.0),
        )
        .await,
        delete_as(app, "/budgets/nope", ADMIN_KEY).await,
    ] {
        assert_eq!(response.status(), 404);
        assert_eq!(error_body(response).await["code"], "budget_not_found");
    }

    // Delete: 204, then gone.
    assert_eq!(
        delete_as(app, "/budgets/grace", ADMIN_KEY).await.status(),
        204
    );
    assert_eq!(app.get_as("/budgets/grace", ADMIN_KEY).await.status(), 404);
    assert_eq!(
        delete_as(app, "/budgets/grace", ADMIN_KEY).await.status(),
        404
    );

    // A budget made over HTTP applies to the very next call; a budget of 0 refuses everything.
    let zero = app
        .post_json_as(
            "/budgets",
            ADMIN_KEY,
            &body("frozen", "specialist", Some(OTHER), 0.0),
        )
        .await;
    assert_eq!(zero.status(), 201);
    let refused = rig.send(OTHER, Some(GRACE_KEY)).await;
    assert_eq!(refused.status(), 402);
    assert!(
        error_body(refused).await["message"]
            .as_str()
            .unwrap()
            .contains("'frozen'")
    );
    assert_eq!(
        rig.openai.request_count(),
        3,
        "the refused call never reached the fake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_by_user_and_by_key_limit_only_their_callers() {
    // Room for one answer each: the second call's worst case does not fit.
    let limit = (ANSWER_NANOS + WORST_CASE_NANOS - 1) as f64 / 1e9;
    let rig = Rig::start(move |settings, _| {
        require_auth(settings);
        settings.budgets.limits = vec![
            budget("ada", "user", Some("Ada@Example.com"), limit),
            budget("grace-laptop", "key", Some("grace's laptop"), limit),
            // Names a specialist that does not exist: it never matches anything.
            budget("ghost", "specialist", Some("nobody"), 0.0),
        ];
    })
    .await;

    for key in [ADA_KEY, GRACE_KEY] {
        assert_eq!(rig.send(SPECIALIST, Some(key)).await.status(), 200, "{key}");
        let refused = rig.send(OTHER, Some(key)).await;
        assert_eq!(refused.status(), 402, "{key}");
        let error = error_body(refused).await;
        assert_eq!(error["code"], "budget_exceeded");
    }
    // The administrator is covered by neither.
    for _ in 0..3 {
        assert_eq!(rig.send(SPECIALIST, Some(ADMIN_KEY)).await.status(), 200);
    }

    let rows = rig.app.wait_for_usage_rows(7).await;
    let by_key = |name: &str| -> Vec<StoredUsage> {
        rows.iter()
            .filter(|r| r.api_key.as_deref() == Some(name))
            .cloned()
            .collect()
    };
    let grace = by_key("grace's laptop");
    assert_eq!(grace.len(), 2, "{rows:?}");
    assert_eq!(grace[1].error_code.as_deref(), Some("budget_exceeded"));
    assert_eq!(by_key("ops").len(), 3);
    settles_at(&rig.app, "ada", Some(ADMIN_KEY), &by_key("ada's laptop")).await;
    settles_at(&rig.app, "grace-laptop", Some(ADMIN_KEY), &grace).await;
    assert_eq!(rig.standing("ghost", Some(ADMIN_KEY)).await, (0, 0));
    let stored = rig.app.store();
    let request_id = grace[0].request_id.clone();
    let call = tokio::task::spawn_blocking(move || {
        stored.call(&core_domain::RequestId::parse(request_id).unwrap())
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(call.row.api_key.as_deref(), Some("grace's laptop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_alert_once_per_period_and_show_in_metrics_and_the_summary() {
    // Crossed by the second answer ($0.026 of an alert at $0.02).
    let rig = Rig::start(|settings, _| {
        settings.budgets.limits = vec![BudgetDraft {
            alert_usd: Some(0.02),
            ..budget("alerting-budget", "global", None, 1.0)
        }];
    })
    .await;
    let logs = server_logs();
    let alerts = || {
        logs.text()
            .lines()
            .filter(|l| {
                l.contains("budget reached its alert threshold") && l.contains("alerting-budget")
            })
            .count()
    };
    assert_eq!(rig.send(SPECIALIST, None).await.status(), 200);
    assert_eq!(alerts(), 0);
    for _ in 0..3 {
        assert_eq!(rig.send(SPECIALIST, None).await.status(), 200);
    }
    let rows = rig.app.wait_for_usage_rows(4).await;
    settles_at(&rig.app, "alerting-budget", None, &rows).await;
    assert_eq!(alerts(), 1, "{}", logs.text());
    assert!(
        logs.text()
            .lines()
            .any(|l| l.contains("alerting-budget") && l.contains("WARN"))
    );

    let metrics = rig.app.metrics().await;
    let sample = |name: &str| metrics[&format!(r#"{name}{{budget="alerting-budget"}}"#)];
    assert_eq!(sample("commander_budget_alerts_total"), 1.0);
    assert_eq!(
        nanos(sample("commander_budget_spent_usd")),
        4 * ANSWER_NANOS
    );
    assert_eq!(sample("commander_budget_reserved_usd"), 0.0);
    assert_eq!(sample("commander_budget_limit_usd"), 1.0);

    let summary: Value = rig.app.usage_summary("").await.json().await.unwrap();
    let budgets = summary["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 1, "{summary}");
    assert_eq!(budgets[0]["id"], "alerting-budget");
    assert_eq!(budgets[0]["limit_usd"], 1.0);
    assert_eq!(
        nanos(budgets[0]["spent_usd"].as_f64().unwrap()),
        4 * ANSWER_NANOS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_made_on_one_instance_apply_on_another_sharing_the_database() {
    let database = TestDatabase::create();
    let shared = tempfile::tempdir().unwrap();
    let start = |journal: &'static str| {
        let url = database.url();
        let journal = shared.path().join(journal);
        std::fs::create_dir_all(&journal).unwrap();
        Rig::start(move |settings, _| {
            settings.database.url = url;
            settings.database = std::mem::take(&mut settings.database).with_files_in(&journal);
            // A minute: only PostgreSQL's notification can bring the change in the time below.
            settings.budgets.reload_interval_ms = 60_000;
        })
    };
    let first = start("first").await;
    let second = start("second").await;
    assert_eq!(second.send(SPECIALIST, None).await.status(), 200);
    // In the usage log before the budget exists, so the first instance rebuilds it with it.
    assert_eq!(second.app.usage_rows().await.len(), 1);

    let created = first
        .app
        .post_json("/budgets", &body("shared", "global", None, 0.0))
        .await;
    assert_eq!(created.status(), 201);
    // No call runs on the second instance while it takes the budget in: one admitted before
    // it knew of the budget and logged after it rebuilt the count would be missed by it (a
    // known gap, OPERATIONS.md "[budgets]").
    let began = std::time::Instant::now();
    eventually("the other instance to take the budget in", async || {
        (second.app.get("/budgets/shared").await.status() == 200).then_some(())
    })
    .await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "at once, by LISTEN/NOTIFY: {:?}",
        began.elapsed()
    );
    let refused = second.send(SPECIALIST, None).await;
    assert_eq!(refused.status(), 402);
    assert!(
        error_body(refused).await["message"]
            .as_str()
            .unwrap()
            .contains("'shared'")
    );
    // Each instance rebuilt it from the usage log both share: the second's earlier call.
    let rows = second.app.usage_rows().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    settles_at(&second.app, "shared", None, &rows).await;
    settles_at(&first.app, "shared", None, &rows).await;
    assert_eq!(second.openai.request_count(), 1);
}

/// A call under way when a budget covering it is created is not admitted against it, and its
/// row lands in the usage log after the budget's count was rebuilt from it: its cost is never
/// counted (until the count is next rebuilt: a restart, a new period). A known gap, written up
/// in OPERATIONS.md ("[budgets]"): the count would have to learn of rows logged after its
/// rebuild by calls it did not reserve, on every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap (OPERATIONS.md, [budgets]): a call in flight when its budget is created is not counted"]
async fn budgets_count_a_call_under_way_when_they_are_created() {
    let rig = Rig::start(|_, _| {}).await;
    rig.openai
        .push(Reply::text("one two three").first_byte_delay(Duration::from_millis(500)));
    let slow = rig.send(SPECIALIST, None);
    let create = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let created = rig
            .app
            .post_json("/budgets", &body("late", "global", None, 1.0))
            .await;
        assert_eq!(created.status(), 201);
    };
    let (answered, ()) = tokio::join!(slow, create);
    assert_eq!(answered.status(), 200);
    let rows = rig.app.wait_for_usage_rows(1).await;
    settles_at(&rig.app, "late", None, &rows).await;
}

/// A budget deleted and made again with the same id and scope, or moved to another scope and
/// back, must count what the usage log holds for its scope now — calls made while it did not
/// cover them included: each definition of its scope and period has an epoch of its own, so
/// the ledger's old count (in Redis too, for every instance) is not taken up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_made_again_count_the_calls_made_while_they_were_gone() {
    let rig = Rig::start(|_, _| {}).await;
    let global = body("again", "global", None, 1.0);
    assert_eq!(rig.app.post_json("/budgets", &global).await.status(), 201);
    assert_eq!(rig.send(SPECIALIST, None).await.status(), 200);
    assert_eq!(rig.app.delete("/budgets/again").await.status(), 204);
    assert_eq!(rig.send(SPECIALIST, None).await.status(), 200);
    rig.app.usage_rows().await;
    assert_eq!(rig.app.post_json("/budgets", &global).await.status(), 201);
    assert_eq!(rig.standing("again", None).await, (2 * ANSWER_NANOS, 0));

    let elsewhere = body("again", "specialist", Some(OTHER), 1.0);
    assert_eq!(
        rig.app
            .put_json("/budgets/again", &elsewhere)
            .await
            .status(),
        200
    );
    assert_eq!(rig.send(SPECIALIST, None).await.status(), 200);
    rig.app.usage_rows().await;
    assert_eq!(
        rig.app.put_json("/budgets/again", &global).await.status(),
        200
    );
    assert_eq!(rig.standing("again", None).await, (3 * ANSWER_NANOS, 0));
}
