//! The web console in a real browser (headless Chromium through WebDriver): an administrator
//! signs in with the keyboard, reads the overview, the calls and one call's detail, edits a
//! specialist's prompt, compares and rolls back its versions, visits budgets, keys and health,
//! and signs out; then a user signs in and sees only their own calls and no administrator's
//! page. Every page is checked for one heading, a label on every field and a skip link that
//! Tab reaches first, and saved as `console-screenshots/NN-name.png` in the target directory.
//!
//! On SQLite and on PostgreSQL. Needs Chromium and ChromeDriver (Debian: `apt-get install
//! chromium chromium-driver`).

use std::path::PathBuf;

use e2e_support::{Browser, TestApp, TestDatabase, catalogue, keys, screenshot_dir, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use http_api::{ApiKeyConfig, AuthMode};
use secrecy::SecretString;
use serde_json::{Value, json};
use usage_store::Backend;

const ADMIN_KEY: &str = "cmdr_console_admin_key_000000000000000000000000000000000000000000";
const USER_KEY: &str = "cmdr_console_user_key_0000000000000000000000000000000000000000000";

const DEMO_PROMPT: &str = "You echo the question back.";
/// The prompt the administrator types in the edit form: one line kept, one changed, one new.
const EDITED_PROMPT_LINES: [&str; 2] = ["You echo the question back politely.", "Then you stop."];

/// Calls each person makes before the browser opens.
const ADMIN_DEMO_CALLS: usize = 3;
const ADMIN_ANALYST_CALLS: usize = 1;
const USER_CALLS: usize = 2;

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Auth required with an administrator's and a user's key; `demo` on the mock provider and
/// `analyst` on `fake` (OpenAI's wire); usage in `postgres` when given, else in SQLite.
async fn app(fake: &FakeUpstream, postgres: Option<&TestDatabase>) -> TestApp {
    let base_url = fake.base_url().to_owned();
    let database_url = postgres.map(TestDatabase::url);
    TestApp::spawn_with(move |settings, dir| {
        if let Some(url) = database_url {
            settings.database.url = url;
        }
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                specialist("demo", "mock", "mock-echo", DEMO_PROMPT, json!({})),
                specialist("analyst", "openai", "gpt-4o", "You analyse.", json!({})),
            ]),
        )
        .expect("write the catalogue");
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
        settings.auth.mode = AuthMode::Required;
        settings.auth.api_keys = vec![
            ApiKeyConfig {
                name: "ops".into(),
                email: "ops@example.com".into(),
                role: core_domain::AccessRole::Admin,
                sha256: sha256_hex(ADMIN_KEY),
            },
            ApiKeyConfig {
                name: "ada".into(),
                email: "ada@example.com".into(),
                role: core_domain::AccessRole::User,
                sha256: sha256_hex(USER_KEY),
            },
        ];
    })
    .await
}

/// Sends one chat call as the holder of `key`; returns its request id.
async fn chat(app: &TestApp, key: &str, specialist_id: &str) -> String {
    let response = app
        .post_json_as(
            "/chat/send",
            key,
            &json!({"specialist_id": specialist_id, "message": "How are the numbers?"}),
        )
        .await;
    assert_eq!(response.status(), 200, "{specialist_id}");
    response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII request id")
        .to_owned()
}

/// The browser walking through the console, numbering its screenshots.
struct Tour {
    browser: Browser,
    base_url: String,
    dir: PathBuf,
    pages_seen: usize,
}

impl Tour {
    async fn goto(&self, path: &str) {
        self.browser.goto(&format!("{}{path}", self.base_url)).await;
    }

    /// The path (and query) of the page shown.
    async fn path(&self) -> String {
        let url = self.browser.current_url().await;
        url.strip_prefix(&self.base_url)
            .unwrap_or_else(|| panic!("{url} is not on the server"))
            .to_owned()
    }

    /// Saves the page as `NN-name.png` and checks what every page must have: exactly one
    /// `h1`, a label (or an accessible name) on every field, and — when nothing has the focus
    /// yet — the skip link as the first stop of Tab.
    async fn check_page(&mut self, name: &str) {
        self.pages_seen += 1;
        let file = self.dir.join(format!("{:02}-{name}.png", self.pages_seen));
        self.browser.screenshot(&file).await;
        let page = self
            .browser
            .execute(
                r#"
                const unlabelled = [];
                for (const field of document.querySelectorAll('input, select, textarea')) {
                    const type = (field.getAttribute('type') || '').toLowerCase();
                    if (['hidden', 'submit', 'button', 'reset', 'image'].includes(type)) continue;
                    const named = field.labels.length > 0
                        || (field.getAttribute('aria-label') || '').trim() !== ''
                        || (field.getAttribute('aria-labelledby') || '').trim() !== '';
                    if (!named) unlabelled.push(field.outerHTML);
                }
                const active = document.activeElement;
                return {
                    headings: document.querySelectorAll('h1').length,
                    unlabelled: unlabelled,
                    nothing_focused: active === null || active === document.body,
                };
                "#,
                vec![],
            )
            .await;
        let path = self.path().await;
        assert_eq!(page["headings"], 1, "one h1 on {name} ({path})");
        assert_eq!(
            page["unlabelled"],
            json!([]),
            "fields without a label on {name} ({path})"
        );
        if page["nothing_focused"] == true {
            self.browser.press(keys::TAB).await;
            let first_stop = self
                .browser
                .execute(
                    "const a = document.activeElement; \
                     return [a.tagName, a.className, a.getAttribute('href')];",
                    vec![],
                )
                .await;
            assert_eq!(
                first_stop,
                json!(["A", "skip", "#main"]),
                "Tab's first stop on {name} ({path})"
            );
        }
    }

    /// Follows the navigation link whose text is `label`.
    async fn open_nav(&self, label: &str) {
        for link in self.browser.find_all("nav a").await {
            if link.text().await.trim() == label {
                link.click().await;
                return;
            }
        }
        panic!("no navigation link {label} on {}", self.path().await);
    }

    /// Keyboard only: the credential field has the focus on arrival; type the key, press
    /// Enter.
    async fn sign_in(&self, key: &str) {
        self.browser.wait_for("input#credential").await;
        let focused = self.browser.active_element().await;
        assert_eq!(
            focused.attribute("id").await.as_deref(),
            Some("credential"),
            "the sign-in page puts the focus in the credential field"
        );
        focused.send_keys(key).await;
        focused.send_keys(keys::ENTER).await;
        self.browser
            .wait_for_url("the console after signing in", |url| {
                !url.contains("/console/sign-in")
            })
            .await;
    }

    async fn sign_out(&self) {
        self.browser.find("button#sign-out").await.click().await;
        self.browser
            .wait_for_url("the sign-in page after signing out", |url| {
                url.contains("/console/sign-in")
            })
            .await;
    }

    /// The overview's request count, as the page shows it.
    async fn requests_on_overview(&self) -> String {
        self.browser
            .wait_for("#totals [data-metric=requests] dd")
            .await
            .text()
            .await
            .trim()
            .to_owned()
    }

    /// Picks `value` in the select `select` (a click on its option, as a mouse would).
    async fn choose(&self, select: &str, value: &str) {
        self.browser
            .find(&format!("{select} option[value=\"{value}\"]"))
            .await
            .click()
            .await;
    }

    /// Submits `form` with its submit button.
    async fn submit(&self, form: &str) {
        self.browser
            .find(&format!(
                "{form} button[type=submit], {form} input[type=submit], {form} button:not([type])"
            ))
            .await
            .click()
            .await;
    }

    /// The request ids of the rows of `table#calls`.
    async fn listed_calls(&self) -> Vec<String> {
        self.browser.wait_for("table#calls").await;
        let mut ids = Vec::new();
        for row in self
            .browser
            .find_all("table#calls tr[data-request-id]")
            .await
        {
            ids.push(row.attribute("data-request-id").await.unwrap_or_default());
        }
        ids.sort();
        ids
    }
}

/// The specialist `id` as the API serves it to the administrator.
async fn specialist_from_api(app: &TestApp, id: &str) -> Value {
    let response = app.get_as(&format!("/specialists/{id}"), ADMIN_KEY).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("a specialist as JSON")
}

/// The texts of the elements matching `selector`, trimmed.
async fn texts(browser: &Browser, selector: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for element in browser.find_all(selector).await {
        texts.push(element.text().await.trim().to_owned());
    }
    texts
}

/// The whole walk on `backend`; its screenshots go to `console-screenshots/` (SQLite) or
/// `console-screenshots-postgres/`.
async fn an_administrator_and_a_user_use_the_console_in_a_real_browser(backend: Backend) {
    let postgres = (backend == Backend::Postgres).then(TestDatabase::create);
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    for _ in 0..ADMIN_ANALYST_CALLS {
        fake.push(Reply::text("Up and to the right.").usage(120, 30));
    }
    let app = app(&fake, postgres.as_ref()).await;
    let mut admin_calls = Vec::new();
    for _ in 0..ADMIN_DEMO_CALLS {
        admin_calls.push(chat(&app, ADMIN_KEY, "demo").await);
    }
    for _ in 0..ADMIN_ANALYST_CALLS {
        admin_calls.push(chat(&app, ADMIN_KEY, "analyst").await);
    }
    let mut user_calls = Vec::new();
    for _ in 0..USER_CALLS {
        user_calls.push(chat(&app, USER_KEY, "demo").await);
    }
    let every_call = admin_calls.len() + user_calls.len();
    app.wait_for_usage_rows(every_call).await;

    let dir = match backend {
        Backend::Sqlite => screenshot_dir(),
        Backend::Postgres => screenshot_dir().with_file_name("console-screenshots-postgres"),
    };
    // Last run's pictures would mix with this run's.
    let _ = std::fs::remove_dir_all(&dir);
    let mut tour = Tour {
        browser: Browser::start().await,
        base_url: app.base_url.clone(),
        dir,
        pages_seen: 0,
    };

    // Signed out, the console sends the browser to sign in, then back to the page asked for.
    tour.goto("/console/requests").await;
    let path = tour.path().await;
    assert!(
        path.starts_with("/console/sign-in?next="),
        "signed out, {path}: {}",
        tour.browser.page_source().await
    );
    tour.check_page("sign-in").await;
    // A wrong key: the form again, the problem beside the field.
    tour.goto("/console/sign-in").await;
    let field = tour.browser.wait_for("input#credential").await;
    field.send_keys("cmdr_not_a_key").await;
    field.send_keys(keys::ENTER).await;
    let problem = tour.browser.wait_for("#credential-error").await;
    assert!(problem.text().await.starts_with("Not signed in"));
    assert_eq!(
        tour.browser
            .find("input#credential")
            .await
            .attribute("aria-describedby")
            .await
            .as_deref(),
        Some("credential-error")
    );
    tour.check_page("sign-in-refused").await;

    // The administrator signs in with the keyboard alone.
    tour.goto("/console/sign-in").await;
    tour.sign_in(ADMIN_KEY).await;
    assert_eq!(tour.path().await, "/console");
    assert_eq!(
        tour.requests_on_overview().await,
        every_call.to_string(),
        "an administrator's overview counts everyone's calls"
    );
    assert!(
        !tour.browser.find_all("figure figcaption").await.is_empty(),
        "the overview's charts have captions"
    );
    tour.check_page("overview").await;
    // Split by specialist: one row for each.
    tour.choose("form#range select[name=split]", "specialist")
        .await;
    tour.submit("form#range").await;
    tour.browser
        .wait_for_url("the overview split by specialist", |url| {
            url.contains("split=specialist")
        })
        .await;
    let mut split_keys = Vec::new();
    for row in tour.browser.find_all("table#split tr[data-key]").await {
        split_keys.push(row.attribute("data-key").await.unwrap_or_default());
    }
    split_keys.sort();
    assert_eq!(split_keys, ["analyst", "demo"]);
    tour.check_page("overview-by-specialist").await;

    // Requests: every call, newest first; a filter; one call's detail.
    tour.open_nav("Requests").await;
    let mut everyone: Vec<String> = admin_calls.iter().chain(&user_calls).cloned().collect();
    everyone.sort();
    assert_eq!(tour.listed_calls().await, everyone);
    tour.check_page("requests").await;
    tour.choose("form#call-filters select[name=specialist]", "analyst")
        .await;
    tour.submit("form#call-filters").await;
    tour.browser
        .wait_for_url("the calls to analyst", |url| {
            url.contains("specialist=analyst")
        })
        .await;
    let analyst_call = admin_calls[ADMIN_DEMO_CALLS].clone();
    assert_eq!(tour.listed_calls().await, [analyst_call.as_str()]);
    tour.check_page("requests-filtered").await;
    tour.browser
        .find(&format!("tr[data-request-id=\"{analyst_call}\"] a"))
        .await
        .click()
        .await;
    tour.browser.wait_for("dl#call-detail").await;
    assert_eq!(
        tour.path().await,
        format!("/console/requests/{analyst_call}")
    );
    let detail = tour.browser.find("dl#call-detail").await.text().await;
    assert!(detail.contains("analyst"), "{detail}");
    assert!(detail.contains("gpt-4o"), "{detail}");
    // 120 tokens in at $2.50 and 30 out at $10 per million, in the console's money format.
    assert!(detail.contains("$0.000600"), "{detail}");
    assert!(
        !tour
            .browser
            .find_all("table#attempts tbody tr")
            .await
            .is_empty(),
        "the call's attempts"
    );
    tour.check_page("request-detail").await;

    // Specialists: edit demo's prompt.
    tour.open_nav("Specialists").await;
    tour.browser.wait_for("table#specialists").await;
    let mut listed = Vec::new();
    for row in tour
        .browser
        .find_all("table#specialists tr[data-specialist]")
        .await
    {
        listed.push(row.attribute("data-specialist").await.unwrap_or_default());
    }
    listed.sort();
    assert_eq!(listed, ["analyst", "demo"]);
    assert!(
        !tour.browser.find_all("a#new-specialist").await.is_empty(),
        "administrators may add a specialist"
    );
    tour.check_page("specialists").await;
    tour.browser
        .find("tr[data-specialist=demo] a")
        .await
        .click()
        .await;
    tour.browser.wait_for("a#edit").await;
    assert_eq!(tour.path().await, "/console/specialists/demo");
    tour.check_page("specialist").await;
    tour.browser.find("a#edit").await.click().await;
    let prompt = tour
        .browser
        .wait_for("form#specialist-form textarea#field-system_prompt")
        .await;
    assert_eq!(prompt.property("value").await, DEMO_PROMPT);
    tour.check_page("specialist-edit").await;
    let prompt = tour.browser.find("#field-system_prompt").await;
    prompt.clear().await;
    prompt.send_keys(&EDITED_PROMPT_LINES.join("\n")).await;
    tour.browser.find("#save").await.click().await;
    tour.browser
        .wait_for_url("the specialist after saving", |url| {
            url.split('?')
                .next()
                .is_some_and(|page| page.ends_with("/console/specialists/demo"))
        })
        .await;
    let edited = specialist_from_api(&app, "demo").await;
    assert_eq!(edited["system_prompt"], EDITED_PROMPT_LINES.join("\n"));
    assert_eq!(edited["version"], 2);
    let shown = tour.browser.find("main").await.text().await;
    assert!(
        shown.contains(EDITED_PROMPT_LINES[1]),
        "the new prompt is shown: {shown}"
    );
    tour.check_page("specialist-edited").await;

    // History: compare the two versions, then roll back to the first.
    tour.browser.find("a#history").await.click().await;
    tour.browser.wait_for("table#versions").await;
    let mut versions = Vec::new();
    for row in tour
        .browser
        .find_all("table#versions tr[data-version]")
        .await
    {
        versions.push(row.attribute("data-version").await.unwrap_or_default());
    }
    versions.sort();
    assert_eq!(versions, ["1", "2"]);
    tour.choose("form#compare select[name=from]", "1").await;
    tour.choose("form#compare select[name=to]", "2").await;
    tour.submit("form#compare").await;
    tour.browser
        .wait_for_url("the comparison", |url| {
            url.contains("from=1") && url.contains("to=2")
        })
        .await;
    tour.browser.wait_for("div#diff").await;
    let removed = texts(&tour.browser, "#diff del").await;
    let added = texts(&tour.browser, "#diff ins").await;
    assert!(
        removed.iter().any(|line| line.contains(DEMO_PROMPT)),
        "the old line is struck: {removed:?}"
    );
    for line in EDITED_PROMPT_LINES {
        assert!(
            added.iter().any(|shown| shown.contains(line)),
            "{line} is marked new: {added:?}"
        );
    }
    tour.check_page("specialist-history").await;
    let comparison = tour.browser.current_url().await;
    tour.browser.find("button#rollback-1").await.click().await;
    tour.browser
        .wait_for_url("the page after the rollback", |url| url != comparison)
        .await;
    let rolled_back = specialist_from_api(&app, "demo").await;
    assert_eq!(rolled_back["system_prompt"], DEMO_PROMPT);
    assert_eq!(rolled_back["version"], 3, "a rollback is a new version");
    tour.goto("/console/specialists/demo/history").await;
    tour.browser
        .wait_for("table#versions tr[data-version=\"3\"]")
        .await;
    tour.check_page("specialist-rolled-back").await;

    // The other pages render.
    for (label, name) in [
        ("Budgets", "budgets"),
        ("Keys", "keys"),
        ("Health", "health"),
    ] {
        tour.open_nav(label).await;
        tour.browser
            .wait_for_url(&format!("the {name} page"), |url| {
                url.ends_with(&format!("/console/{name}"))
            })
            .await;
        let heading = tour.browser.find("h1").await.text().await;
        assert_eq!(heading, label, "the {name} page's heading");
        tour.check_page(name).await;
    }

    tour.sign_out().await;
    // Signed out means signed out: the console asks again.
    tour.goto("/console").await;
    assert!(tour.path().await.starts_with("/console/sign-in"));

    // The user sees their own calls only, and no administrator's page or control.
    tour.sign_in(USER_KEY).await;
    assert_eq!(
        tour.requests_on_overview().await,
        user_calls.len().to_string(),
        "a user's overview counts only their calls"
    );
    tour.check_page("user-overview").await;
    tour.open_nav("Requests").await;
    let mut own = user_calls.clone();
    own.sort();
    assert_eq!(tour.listed_calls().await, own);
    tour.open_nav("Specialists").await;
    tour.browser.wait_for("table#specialists").await;
    assert!(
        tour.browser.find_all("a#new-specialist").await.is_empty(),
        "a user is not offered to add a specialist"
    );
    tour.browser
        .find("tr[data-specialist=demo] a")
        .await
        .click()
        .await;
    tour.browser
        .wait_for_url("demo's page", |url| {
            url.ends_with("/console/specialists/demo")
        })
        .await;
    tour.browser.wait_for("main h1").await;
    for control in ["a#edit", "#duplicate", "#delete"] {
        assert!(
            tour.browser.find_all(control).await.is_empty(),
            "a user is not offered {control}"
        );
    }
    tour.check_page("user-specialist").await;
    tour.goto("/console/specialists/new").await;
    let heading = tour.browser.wait_for("h1").await.text().await;
    assert_eq!(heading, "Administrators only");
    tour.check_page("user-forbidden").await;
    tour.sign_out().await;

    tour.browser.quit().await;
}

on_both_backends!(an_administrator_and_a_user_use_the_console_in_a_real_browser);

/// One synthetic call of a past week: `specialist` on `provider`'s `model`, `ago` before now.
fn past_call(
    index: usize,
    (specialist, provider, model): (&str, core_domain::ProviderKind, &str),
    ago: chrono::TimeDelta,
) -> usage_store::UsageRecord {
    use core_domain::{ErrorCode, SpecialistId, TokenUsage, Usd};
    let mut record = usage_store::fixture::usage_record(&format!("week-{index:04}"));
    record.timestamp = chrono::Utc::now() - ago;
    record.specialist_id = SpecialistId::parse(specialist).expect("a valid specialist id");
    record.specialist_name = specialist.to_owned();
    record.provider = provider;
    record.model = model.to_owned();
    let input = 400 + 37 * (index % 23) as u32;
    let output = 80 + 11 * (index % 17) as u32;
    record.usage = TokenUsage::reported(input, output);
    record.cost = Usd::from_nanos(u64::from(input) * 2_500 + u64::from(output) * 10_000);
    record.latency = std::time::Duration::from_millis(300 + 97 * (index % 13) as u64);
    // One call in nine fails upstream.
    record.error_code = (index % 9 == 4).then_some(ErrorCode::UpstreamError);
    record
}

/// With auth disabled the browser on this machine goes straight in as the local operator; a
/// week of calls (written to the store as the server would have) is summed by the overview
/// over 7 days by day and over the last 24 hours, as the range form chooses; the requests
/// page walks back through all of them with "Older". The overview's screenshot is the
/// README's picture of the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_sums_a_week_chosen_with_its_range_form_in_a_real_browser() {
    use core_domain::ProviderKind;
    const SPECIALISTS: [(&str, ProviderKind, &str); 3] = [
        ("analyst", ProviderKind::OpenAi, "gpt-4o"),
        ("reviewer", ProviderKind::Anthropic, "claude-sonnet-4"),
        ("support", ProviderKind::OpenAi, "gpt-4o-mini"),
    ];
    let app = TestApp::spawn().await;
    // Today (within the last 20 hours) and the five days before it, busier towards today;
    // every call inside both the 7-day range and, for today's, the 24-hour one.
    let mut week = Vec::new();
    let mut today = 0;
    for days_ago in 0..6i64 {
        for (rank, &specialist) in SPECIALISTS.iter().enumerate() {
            let calls = (6 - days_ago) as usize * (3 - rank) + 2;
            for call in 0..calls {
                let hours_ago = if days_ago == 0 { call % 20 } else { call % 12 };
                let ago = chrono::TimeDelta::days(days_ago)
                    + chrono::TimeDelta::hours(hours_ago as i64)
                    + chrono::TimeDelta::minutes((7 * call % 50) as i64);
                week.push(past_call(week.len(), specialist, ago));
                today += usize::from(days_ago == 0);
            }
        }
    }
    let store = app.store();
    let written = week.clone();
    tokio::task::spawn_blocking(move || store.insert_batch(&written))
        .await
        .expect("insert task")
        .expect("the week's calls are written");

    let dir = screenshot_dir().with_file_name("console-screenshots-week");
    let _ = std::fs::remove_dir_all(&dir);
    let mut tour = Tour {
        browser: Browser::start().await,
        base_url: app.base_url.clone(),
        dir,
        pages_seen: 0,
    };
    tour.goto("/console").await;
    assert_eq!(
        tour.path().await,
        "/console",
        "no sign-in with auth disabled"
    );
    assert!(
        tour.browser.find_all("button#sign-out").await.is_empty(),
        "the local operator has no session to end"
    );

    tour.choose("form#range select[name=range]", "7d").await;
    tour.choose("form#range select[name=bucket]", "day").await;
    tour.choose("form#range select[name=split]", "specialist")
        .await;
    tour.submit("form#range").await;
    tour.browser
        .wait_for_url("the overview of 7 days", |url| url.contains("range=7d"))
        .await;
    assert_eq!(tour.requests_on_overview().await, week.len().to_string());
    for (specialist, _, _) in SPECIALISTS {
        let of =
            |column: &str| format!("table#split tr[data-key={specialist}] td[data-col={column}]");
        let calls: Vec<_> = week
            .iter()
            .filter(|call| call.specialist_id.as_str() == specialist)
            .collect();
        let requests = tour.browser.find(&of("requests")).await.text().await;
        assert_eq!(requests, calls.len().to_string(), "{specialist}'s calls");
        let failures = tour.browser.find(&of("failures")).await.text().await;
        let failed = calls
            .iter()
            .filter(|call| call.error_code.is_some())
            .count();
        assert_eq!(failures, failed.to_string(), "{specialist}'s failures");
    }
    tour.check_page("overview-week").await;

    tour.choose("form#range select[name=range]", "24h").await;
    tour.choose("form#range select[name=bucket]", "hour").await;
    tour.submit("form#range").await;
    tour.browser
        .wait_for_url("the overview of 24 hours", |url| url.contains("range=24h"))
        .await;
    assert_eq!(tour.requests_on_overview().await, today.to_string());
    tour.check_page("overview-day").await;

    // The requests page shows the week 50 calls at a time, newest first; "Older" walks back
    // through every one of them exactly once.
    tour.open_nav("Requests").await;
    let mut seen = Vec::new();
    for page in 1.. {
        assert!(page <= 10, "at most 4 pages of 50 for {} calls", week.len());
        let on_page = tour.listed_calls().await;
        assert!(!on_page.is_empty() && on_page.len() <= 50, "page {page}");
        seen.extend(on_page);
        if page == 1 {
            tour.check_page("requests-week").await;
        }
        let Some(older) = tour.browser.find_all("a#older").await.into_iter().next() else {
            break;
        };
        let newer_page = tour.browser.current_url().await;
        older.click().await;
        tour.browser
            .wait_for_url("the older calls", |url| url != newer_page)
            .await;
    }
    let mut written: Vec<String> = week
        .iter()
        .map(|call| call.request_id.to_string())
        .collect();
    written.sort();
    seen.sort();
    assert_eq!(seen, written, "every call once");
    tour.browser.quit().await;
}
