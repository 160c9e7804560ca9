//! The console's requests, budgets, keys and health pages end to end, over seeded usage rows:
//! each call filter alone, keyset pages that neither repeat nor skip a row, a call's detail
//! with its attempts, what a user may see of others' calls, bad filters, budgets and keys with
//! their spend, and the health of each part.

use std::collections::HashSet;

use chrono::Utc;
use core_domain::{Door, EmailHash, ErrorCode, SpecialistId, Usd};
use e2e_support::{ConsoleBrowser, ConsolePage, TestApp, TestDatabase};
use usage_store::{Backend, DatabaseConfig, UsageRecord, UsageStore, fixture};

use super::console_access::{KEYS, api_keys};

/// Ada's rows: 60 calls with the key `ada`, two per second (so pages split equal times).
const ADA_ROWS: usize = 60;
/// Ada's calls to `demo`: every twelfth.
const ADA_DEMO: [usize; 5] = [0, 12, 24, 36, 48];
/// Ada's failed calls (`upstream_timeout`).
const ADA_FAILED: [usize; 3] = [5, 17, 29];
/// Grace's rows (specialist `secret_project`, no key).
const GRACE_ROWS: usize = 3;

struct Console {
    app: TestApp,
    _postgres: Option<TestDatabase>,
    _sqlite: tempfile::TempDir,
}

fn grace_hash() -> String {
    EmailHash::of_email("grace@example.com").as_str().to_owned()
}

/// Ada's `i`-th call.
fn ada_call(i: usize, base: chrono::DateTime<Utc>) -> UsageRecord {
    let seconds = i64::try_from(i / 2).unwrap();
    UsageRecord {
        timestamp: base + chrono::Duration::seconds(seconds),
        specialist_id: SpecialistId::parse(if ADA_DEMO.contains(&i) {
            "demo"
        } else {
            "financial_analyst"
        })
        .unwrap(),
        door: if i.is_multiple_of(3) {
            Door::Messages
        } else {
            Door::ChatCompletions
        },
        streamed: !i.is_multiple_of(2),
        error_code: ADA_FAILED
            .contains(&i)
            .then_some(ErrorCode::UpstreamTimeout),
        api_key: Some("ada".into()),
        cost: Usd::from_nanos(6_450_000),
        ..fixture::usage_record(&format!("r-ada-{i:02}"))
    }
}

/// Auth required (Ada a user, `ops` an administrator), three budgets, and the seeded rows:
/// Ada's 60, Grace's 3, and Ada's three-attempt call `fb-1`.
async fn console(backend: Backend) -> Console {
    let postgres = (backend == Backend::Postgres).then(TestDatabase::create);
    let sqlite = tempfile::tempdir().unwrap();
    let url = match &postgres {
        Some(database) => database.url(),
        None => format!("sqlite://{}", sqlite.path().join("usage.db").display()),
    };
    // The rows are there before the server starts, as after a restart: budgets count them
    // from the usage log when they first read their standing.
    let base = Utc::now() - chrono::Duration::seconds(40);
    let mut rows: Vec<UsageRecord> = (0..ADA_ROWS).map(|i| ada_call(i, base)).collect();
    rows.extend((0..GRACE_ROWS).map(|i| UsageRecord {
        timestamp: base + chrono::Duration::seconds(5),
        user_email_hash: Some(EmailHash::of_email("grace@example.com")),
        specialist_id: SpecialistId::parse("secret_project").unwrap(),
        ..fixture::usage_record(&format!("r-grace-{i}"))
    }));
    rows.push(UsageRecord {
        timestamp: base - chrono::Duration::seconds(10),
        ..fixture::fallback_record("fb-1")
    });
    let config = DatabaseConfig {
        url: url.clone(),
        ..DatabaseConfig::default()
    };
    tokio::task::spawn_blocking(move || {
        let store = UsageStore::connect(&config).unwrap();
        store.insert_batch(&rows).unwrap();
    })
    .await
    .unwrap();
    let app = TestApp::spawn_with(move |settings, _| {
        settings.database.url = url;
        settings.auth.mode = http_api::AuthMode::Required;
        settings.auth.api_keys = api_keys();
        let budget = |id: &str, scope: &str, subject: Option<&str>, period: &str, limit_usd| {
            core_domain::BudgetDraft {
                id: id.into(),
                scope: scope.into(),
                subject: subject.map(str::to_owned),
                period: period.into(),
                limit_usd,
                alert_usd: None,
            }
        };
        settings.budgets.limits = vec![
            budget("everyone", "global", None, "day", 10.0),
            budget("ada-key", "key", Some("ada"), "total", 1.0),
            budget("grace", "user", Some("grace@example.com"), "total", 5.0),
        ];
    })
    .await;
    Console {
        app,
        _postgres: postgres,
        _sqlite: sqlite,
    }
}

async fn signed_in(app: &TestApp, key: &str) -> ConsoleBrowser {
    let mut browser = ConsoleBrowser::new(&app.base_url);
    let page = browser.sign_in(key, "/console").await;
    assert_eq!(page.status, 303, "{}", page.body);
    browser
}

/// The request ids of the calls table, in page order.
fn call_ids(page: &ConsolePage) -> Vec<String> {
    page.attribute_values("data-request-id")
}

/// The "Older" link's address, if the page has one.
fn older(page: &ConsolePage) -> Option<String> {
    let start = page.body.find("id=\"older\" href=\"")? + "id=\"older\" href=\"".len();
    page.body[start..]
        .split('"')
        .next()
        .map(|href| href.replace("&amp;", "&"))
}

fn ada_ids(indexes: &[usize]) -> Vec<String> {
    let mut ids: Vec<String> = indexes.iter().map(|i| format!("r-ada-{i:02}")).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

async fn each_filter_alone_keeps_only_its_calls(backend: Backend) {
    let console = console(backend).await;
    let mut admin = signed_in(&console.app, KEYS.1).await;
    let mut list = async |query: &str| {
        let page = admin.get(&format!("/console/requests?{query}")).await;
        assert_eq!(page.status, 200, "{query}: {}", page.body);
        page
    };
    let everything = list("").await;
    assert_eq!(call_ids(&everything).len(), 50);
    assert!(everything.body.len() < 200_000, "a full page stays light");
    for (value, label) in [
        ("secret_project", "secret_project"),
        ("upstream_timeout", "upstream_timeout"),
    ] {
        assert!(
            everything
                .body
                .contains(&format!("<option value=\"{value}\">{label}</option>")),
            "the filters offer {value}"
        );
    }
    assert_eq!(call_ids(&list("specialist=demo").await), ada_ids(&ADA_DEMO));
    assert_eq!(
        call_ids(&list("status=failure").await),
        ada_ids(&ADA_FAILED)
    );
    assert_eq!(
        call_ids(&list("error_code=upstream_timeout").await),
        ada_ids(&ADA_FAILED)
    );
    let messages: Vec<usize> = (0..ADA_ROWS).filter(|i| i.is_multiple_of(3)).collect();
    assert_eq!(call_ids(&list("door=messages").await), ada_ids(&messages));
    let unstreamed: Vec<usize> = (0..ADA_ROWS).filter(|i| i.is_multiple_of(2)).collect();
    assert_eq!(
        call_ids(&list("streamed=false").await),
        ada_ids(&unstreamed)
    );
    let grace = call_ids(&list(&format!("user={}", grace_hash())).await);
    assert_eq!(grace, ["r-grace-2", "r-grace-1", "r-grace-0"]);
    // The chosen value stays chosen.
    let page = list("door=messages").await;
    assert!(
        page.body.contains("<option value=\"messages\" selected>"),
        "{}",
        page.body
    );
}

async fn pages_follow_each_other_without_repeating_or_skipping(backend: Backend) {
    let console = console(backend).await;
    let mut admin = signed_in(&console.app, KEYS.1).await;
    let mut seen = Vec::new();
    let mut next = Some("/console/requests".to_owned());
    let mut pages = 0;
    while let Some(address) = next {
        let page = admin.get(&address).await;
        assert_eq!(page.status, 200, "{address}: {}", page.body);
        seen.extend(call_ids(&page));
        next = older(&page);
        pages += 1;
        assert!(pages <= 3, "too many pages");
    }
    assert_eq!(pages, 2);
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), ADA_ROWS + GRACE_ROWS + 1);
    assert_eq!(distinct.len(), seen.len(), "a row repeated: {seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("fb-1"),
        "the oldest last"
    );
    // A filtered list pages with its filter kept.
    let first = admin.get("/console/requests?status=success").await;
    let second = admin.get(&older(&first).unwrap()).await;
    assert!(older(&first).unwrap().contains("status=success"));
    assert_eq!(
        call_ids(&first).len() + call_ids(&second).len(),
        ADA_ROWS - ADA_FAILED.len() + GRACE_ROWS + 1
    );
    assert!(older(&second).is_none());
}

async fn a_user_sees_only_their_own_calls_and_details(backend: Backend) {
    let console = console(backend).await;
    let mut ada = signed_in(&console.app, KEYS.0).await;
    let page = ada.get("/console/requests").await;
    assert_eq!(page.status, 200);
    let ids = call_ids(&page);
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|id| id.starts_with("r-ada-")), "{ids:?}");
    assert!(
        !page.body.contains("secret_project"),
        "another's specialist offered"
    );
    assert!(!page.body.contains(&grace_hash()), "another's hash offered");
    let asked = ada
        .get(&format!("/console/requests?user={}", grace_hash()))
        .await;
    assert_eq!(asked.status, 200);
    assert!(call_ids(&asked).is_empty());

    let detail = ada.get("/console/requests/fb-1").await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(detail.body.contains("id=\"call-detail\""));
    let attempts = detail
        .body
        .split("id=\"attempts\"")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap();
    assert_eq!(
        attempts.matches("<tr>").count(),
        1 + 3,
        "a header and three attempts"
    );
    for shown in [
        "upstream_rate_limited",
        "claude-sonnet-4",
        "http://127.0.0.1:8081/v1",
        "continued the stream",
        "$0.008220",
        "3520 ms",
    ] {
        assert!(detail.body.contains(shown), "{shown} missing");
    }
    let single = ada.get("/console/requests/r-ada-05").await;
    assert!(single.body.contains("upstream_timeout") && single.body.contains("250 ms"));

    for hidden in [
        "/console/requests/r-grace-0",
        "/console/requests/no-such-call",
        "/console/requests/%3Cx%3E",
    ] {
        let page = ada.get(hidden).await;
        assert_eq!(page.status, 404, "{hidden}");
        assert!(!page.body.contains("secret_project"));
    }
    let mut admin = signed_in(&console.app, KEYS.1).await;
    assert_eq!(admin.get("/console/requests/r-grace-0").await.status, 200);
}

on_both_backends!(
    each_filter_alone_keeps_only_its_calls,
    pages_follow_each_other_without_repeating_or_skipping,
    a_user_sees_only_their_own_calls_and_details,
);

#[tokio::test]
async fn a_bad_filter_is_named_beside_its_control_with_400() {
    let console = console(Backend::Sqlite).await;
    let mut admin = signed_in(&console.app, KEYS.1).await;
    let page = admin
        .get("/console/requests?door=side&streamed=maybe")
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.body.contains("id=\"form-errors\" role=\"alert\""),
        "{}",
        page.body
    );
    for control in ["door", "streamed"] {
        assert!(
            page.body.contains(&format!(
                "aria-invalid=\"true\" aria-describedby=\"filter-error-{control}\""
            )),
            "{control}: {}",
            page.body
        );
        assert!(
            page.body
                .contains(&format!("id=\"filter-error-{control}\""))
        );
    }
    assert!(
        !page.body.contains("id=\"calls\""),
        "no calls for bad filters"
    );
    for bad in [
        "before=junk",
        "user=bob",
        "error_code=nope",
        "status=maybe",
        "specialist=%3Cb%3E",
    ] {
        let page = admin.get(&format!("/console/requests?{bad}")).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(!page.body.contains("<b>"), "escaped");
    }
}

#[tokio::test]
async fn budgets_show_what_each_person_may_see_with_spend_bars() {
    let console = console(Backend::Sqlite).await;
    let mut admin = signed_in(&console.app, KEYS.1).await;
    let page = admin.get("/console/budgets").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.attribute_values("data-budget"),
        ["everyone", "ada-key", "grace"]
    );
    let mut ada = signed_in(&console.app, KEYS.0).await;
    let page = ada.get("/console/budgets").await;
    assert_eq!(
        page.attribute_values("data-budget"),
        ["everyone", "ada-key"]
    );
    // Sixty calls of $0.00645 with Ada's key, of $1 all time.
    assert!(page.body.contains("$0.387000"), "{}", page.body);
    assert!(
        page.body
            .contains("role=\"img\" aria-label=\"39% of the limit used\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("never (all time)"));
    assert!(!page.body.contains("style="), "no inline styles");
}

#[tokio::test]
async fn keys_show_their_spend_and_budgets_never_their_digest() {
    let console = console(Backend::Sqlite).await;
    let mut admin = signed_in(&console.app, KEYS.1).await;
    let page = admin.get("/console/keys").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.attribute_values("data-key"), ["ada", "ops"]);
    assert!(page.body.contains("$0.387000"), "{}", page.body);
    assert!(page.body.contains("id=\"key-budgets\""));
    assert!(
        page.body
            .contains(&EmailHash::of_email("ada@example.com").as_str()[..12])
    );
    let mut ada = signed_in(&console.app, KEYS.0).await;
    let page = ada.get("/console/keys").await;
    assert_eq!(page.attribute_values("data-key"), ["ada"]);
    for (key, digest_of) in [("ada", KEYS.0), ("ops", KEYS.1)] {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(digest_of.as_bytes()));
        assert!(!page.body.contains(&digest), "{key}'s digest shown");
        assert!(!page.body.contains(digest_of), "{key} shown");
    }
}

#[tokio::test]
async fn health_names_each_part_with_a_word() {
    let console = console(Backend::Sqlite).await;
    let mut admin = signed_in(&console.app, KEYS.1).await;
    let page = admin.get("/console/health").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.attribute_values("data-part"),
        [
            "Usage database",
            "Usage writer",
            "Usage journal",
            "Usage rollup",
            "Rate-limit store",
            "Budget store",
            "Catalogue"
        ]
    );
    assert!(page.body.contains("<span class=\"status-ok\">ok</span>"));
    assert!(page.body.contains("counted in this process"));
    assert!(page.body.contains("answers for all 3 budgets"));
    assert!(page.body.contains("every finished hour is sealed"));
    assert!(!page.body.contains("status-bad"), "{}", page.body);
}
