//! Fill a usage database with realistic calls and time the console's queries on it: the
//! measurement behind the call-list indexes, not a test.
//!
//! ```sh
//! cargo run -p usage-store --example seed_usage -- \
//!     --database-url sqlite://target/seed.db --rows 1000000 --days 30
//! cargo run -p usage-store --example seed_usage -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/seed --rows 0   # time only
//! ```
//!
//! Rows go in through the real migrations and `insert_batch`, 10,000 to a transaction: eight
//! specialists, six models on three providers, 40 users and anonymous callers, the five doors
//! (mostly native and chat completions), about 3% failures with their error codes, and
//! latencies spread log-normally around each model's own. The calls end now and reach back
//! `--days`. The same seed gives the same rows.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use core_domain::{
    Door, EmailHash, ErrorCode, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd,
};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use usage_store::{
    Backend, Bucket, CallFilter, CallListQuery, DatabaseConfig, GroupBy, OverviewQuery, Scope,
    SeriesQuery, SummaryQuery, TotalsQuery, UsageRecord, UsageStore,
};

/// Rows per `insert_batch`, one transaction each.
const BATCH: usize = 10_000;

const SPECIALISTS: [&str; 8] = [
    "financial_analyst",
    "code_reviewer",
    "support_triage",
    "legal_summary",
    "translator",
    "sql_helper",
    "demo",
    "embedder",
];

/// Model, provider, typical latency in ms, nano-dollars per input and per output token.
const MODELS: [(&str, ProviderKind, f64, u64, u64); 6] = [
    ("gpt-4o", ProviderKind::OpenAi, 1_400.0, 2_500, 10_000),
    ("gpt-4o-mini", ProviderKind::OpenAi, 600.0, 150, 600),
    (
        "claude-sonnet-4",
        ProviderKind::Anthropic,
        1_800.0,
        3_000,
        15_000,
    ),
    ("claude-3-haiku", ProviderKind::Anthropic, 500.0, 250, 1_250),
    ("gemini-1.5-flash", ProviderKind::Google, 450.0, 75, 300),
    (
        "gemini-1.5-pro",
        ProviderKind::Google,
        1_600.0,
        1_250,
        5_000,
    ),
];

/// Failure codes and their weights.
const FAILURES: [(ErrorCode, u32); 5] = [
    (ErrorCode::UpstreamTimeout, 30),
    (ErrorCode::UpstreamRateLimited, 30),
    (ErrorCode::UpstreamError, 25),
    (ErrorCode::ClientDisconnected, 10),
    (ErrorCode::UpstreamAuthFailed, 5),
];

/// Doors and their weights, in `Door::ALL` order.
const DOOR_WEIGHTS: [u32; 5] = [40, 30, 15, 10, 5];

const USERS: usize = 40;

/// splitmix64: small, fast, and the same sequence everywhere.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut pick = u32::try_from(self.next() % u64::from(total)).unwrap_or(0);
        for (index, weight) in weights.iter().enumerate() {
            if pick < *weight {
                return index;
            }
            pick -= weight;
        }
        weights.len() - 1
    }
}

struct Args {
    url: String,
    rows: usize,
    days: i64,
}

fn args() -> Result<Args, String> {
    let mut parsed = Args {
        url: String::new(),
        rows: 1_000_000,
        days: 30,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database-url" => parsed.url = value,
            "--rows" => parsed.rows = value.parse().map_err(|e| format!("--rows: {e}"))?,
            "--days" => parsed.days = value.parse().map_err(|e| format!("--days: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if parsed.url.is_empty() {
        return Err("--database-url is required".to_owned());
    }
    if parsed.days < 1 {
        return Err("--days must be at least 1".to_owned());
    }
    Ok(parsed)
}

fn record(
    n: usize,
    at: DateTime<Utc>,
    random: &mut Random,
    users: &[EmailHash],
) -> Result<UsageRecord, Box<dyn std::error::Error>> {
    let specialist = random.below(SPECIALISTS.len());
    // Each specialist favours a model; one call in five goes elsewhere (fallbacks, overrides).
    let model = if random.below(5) == 0 {
        random.below(MODELS.len())
    } else {
        specialist % MODELS.len()
    };
    let (model_name, provider, typical_ms, input_price, output_price) = MODELS[model];
    let failure = (random.below(1000) < 30).then(|| {
        let weights: Vec<u32> = FAILURES.iter().map(|(_, w)| *w).collect();
        FAILURES[random.weighted(&weights)].0
    });
    let input = 200 + u32::try_from(random.below(4_000))?;
    let output = if failure.is_some() {
        0
    } else {
        20 + u32::try_from(random.below(1_500))?
    };
    let latency_ms = (typical_ms * (0.6 * random.normal()).exp()).clamp(5.0, 120_000.0);
    let door = Door::ALL[random.weighted(&DOOR_WEIGHTS)];
    let user = match random.below(10) {
        0 => None,
        _ => Some(users[random.below(users.len())].clone()),
    };
    Ok(UsageRecord {
        request_id: RequestId::parse(format!("seed-{n:08}"))?,
        client_request_id: None,
        timestamp: at,
        user_email_hash: user,
        specialist_id: SpecialistId::parse(SPECIALISTS[specialist])?,
        specialist_name: SPECIALISTS[specialist].replace('_', " "),
        provider,
        model: model_name.to_owned(),
        usage: TokenUsage::reported(input, output),
        cost: Usd::from_nanos(
            u64::from(input) * input_price / 1_000 + u64::from(output) * output_price / 1_000,
        ),
        pricing_known: true,
        latency: Duration::from_secs_f64(latency_ms / 1000.0),
        time_to_first_token: None,
        error_code: failure,
        streamed: random.below(10) < 6,
        end_user: None,
        api_key: None,
        door,
        attempts: 1,
        attempt_details: Vec::new(),
    })
}

fn seed(store: &UsageStore, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let users: Vec<EmailHash> = (0..USERS)
        .map(|i| EmailHash::of_email(&format!("user{i}@example.com")))
        .collect();
    let mut random = Random(0x5eed);
    let end = Utc::now();
    let start = end - TimeDelta::days(args.days);
    let span_ms = (end - start).num_milliseconds() as f64;
    let started = Instant::now();
    let mut n = 0;
    while n < args.rows {
        let batch: Vec<UsageRecord> = (n..args.rows.min(n + BATCH))
            .map(|i| {
                // Evenly spread in time order, as a log fills.
                let offset = span_ms * i as f64 / args.rows as f64;
                record(
                    i,
                    start + TimeDelta::milliseconds(offset as i64),
                    &mut random,
                    &users,
                )
            })
            .collect::<Result<_, _>>()?;
        n += batch.len();
        store.insert_batch(&batch)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "seeded {} rows in {seconds:.1} s ({:.0} rows/s)",
        args.rows,
        args.rows as f64 / seconds
    );
    Ok(())
}

/// Runs `query` twice (the first may read from disk, the second from cache) and prints both
/// times and what it found.
fn time<T>(
    what: &str,
    query: impl Fn() -> Result<T, usage_store::StoreError>,
    describe: impl Fn(&T) -> String,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    let mut found = String::new();
    for _ in 0..2 {
        let started = Instant::now();
        let result = query()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        found = describe(&result);
    }
    println!(
        "{what:<52} {:>9.1} ms {:>9.1} ms   {found}",
        times[0], times[1]
    );
    Ok(())
}

fn measure(store: &UsageStore, days: i64) -> Result<(), Box<dyn std::error::Error>> {
    let to = Utc::now() + TimeDelta::minutes(1);
    let month = to - TimeDelta::days(days);
    let day = to - TimeDelta::hours(24);
    println!("rows: {}", store.count_rows()?);
    // What the server does in the background after seeding (or after the rollup's migration
    // on a full log): seal every finished hour.
    let started = Instant::now();
    let sealed = store.seal_hours(Utc::now() - TimeDelta::minutes(2), usize::MAX)?;
    println!(
        "sealed {sealed} hours of the rollup in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{:<52} {:>12} {:>12}", "query", "first", "second");
    let everyone = Scope::Everyone;
    let one_user = Scope::Caller(Some(EmailHash::of_email("user7@example.com")));
    time(
        &format!("totals, {days} d"),
        || {
            store.totals(&TotalsQuery {
                from: month,
                to,
                scope: everyone.clone(),
            })
        },
        |t| {
            format!(
                "{} calls, p50 {:.0} p95 {:.0}",
                t.requests, t.p50_latency_ms, t.p95_latency_ms
            )
        },
    )?;
    time(
        "totals, 24 h",
        || {
            store.totals(&TotalsQuery {
                from: day,
                to,
                scope: everyone.clone(),
            })
        },
        |t| format!("{} calls", t.requests),
    )?;
    time(
        &format!("totals, {days} d, one user"),
        || {
            store.totals(&TotalsQuery {
                from: month,
                to,
                scope: one_user.clone(),
            })
        },
        |t| format!("{} calls", t.requests),
    )?;
    time(
        &format!("summary by specialist, {days} d"),
        || {
            store.summary(&SummaryQuery {
                from: month,
                to,
                group_by: GroupBy::Specialist,
                scope: everyone.clone(),
            })
        },
        |summary| {
            format!(
                "{} groups, {} percentiles",
                summary.rows.len(),
                summary.percentiles.as_str()
            )
        },
    )?;
    for (bucket, from, span, split) in [
        (Bucket::Hour, day, "24 h".to_owned(), GroupBy::Specialist),
        (
            Bucket::Day,
            to - TimeDelta::days(7),
            "7 d".to_owned(),
            GroupBy::Specialist,
        ),
        (Bucket::Day, month, format!("{days} d"), GroupBy::Specialist),
        (Bucket::Day, month, format!("{days} d"), GroupBy::User),
    ] {
        time(
            &format!("overview by {split}, {span}"),
            || {
                store.overview(&OverviewQuery {
                    from,
                    to,
                    bucket,
                    split,
                    scope: everyone.clone(),
                })
            },
            |overview| {
                format!(
                    "{} calls, p95 {:.0}, {} percentiles",
                    overview.totals.requests,
                    overview.totals.p95_latency_ms,
                    overview.percentiles.as_str()
                )
            },
        )?;
    }
    for (bucket, from, span) in [(Bucket::Hour, day, "24 h"), (Bucket::Day, month, "30 d")] {
        for split in [GroupBy::Specialist, GroupBy::Model, GroupBy::Door] {
            time(
                &format!("series by {bucket}, split {split}, {span}"),
                || {
                    store.series(&SeriesQuery {
                        from,
                        to,
                        bucket,
                        split,
                        scope: everyone.clone(),
                    })
                },
                |rows| format!("{} points", rows.len()),
            )?;
        }
    }
    let user7 = EmailHash::of_email("user7@example.com").as_str().to_owned();
    let filters: [(&str, CallFilter); 9] = [
        ("none", CallFilter::default()),
        (
            "specialist",
            CallFilter {
                specialist: Some("legal_summary".into()),
                ..CallFilter::default()
            },
        ),
        (
            "user",
            CallFilter {
                user: Some(user7),
                ..CallFilter::default()
            },
        ),
        (
            "anonymous",
            CallFilter {
                user: Some("anonymous".into()),
                ..CallFilter::default()
            },
        ),
        (
            "failures",
            CallFilter {
                success: Some(false),
                ..CallFilter::default()
            },
        ),
        (
            "error code (rarest)",
            CallFilter {
                error_code: Some(ErrorCode::UpstreamAuthFailed.as_str().into()),
                ..CallFilter::default()
            },
        ),
        (
            "door (embeddings, 5%)",
            CallFilter {
                door: Some(Door::Embeddings),
                ..CallFilter::default()
            },
        ),
        (
            "streamed = false",
            CallFilter {
                streamed: Some(false),
                ..CallFilter::default()
            },
        ),
        (
            "door + failures + streamed",
            CallFilter {
                door: Some(Door::Messages),
                success: Some(false),
                streamed: Some(true),
                ..CallFilter::default()
            },
        ),
    ];
    for (name, filter) in filters {
        let query = CallListQuery {
            scope: everyone.clone(),
            filter,
            before: None,
            limit: 50,
        };
        time(
            &format!("list_calls, 50, filter {name}"),
            || store.list_calls(&query),
            |page| format!("{} rows", page.calls.len()),
        )?;
        // The tenth page, reached by its cursors: what a deep page costs.
        let mut deep = query.clone();
        for _ in 0..9 {
            match store.list_calls(&deep)?.next {
                Some(next) => deep.before = Some(next),
                None => break,
            }
        }
        time(
            &format!("list_calls, 50, filter {name}, page 10"),
            || store.list_calls(&deep),
            |page| format!("{} rows", page.calls.len()),
        )?;
    }
    time(
        "list_calls, 50, one user's own (scope)",
        || {
            store.list_calls(&CallListQuery {
                scope: one_user.clone(),
                filter: CallFilter::default(),
                before: None,
                limit: 50,
            })
        },
        |page| format!("{} rows", page.calls.len()),
    )?;
    for (span, from) in [
        ("24 h", day),
        ("7 d", to - TimeDelta::days(7)),
        (
            "30 d (the console's requests page)",
            to - TimeDelta::days(30),
        ),
    ] {
        time(
            &format!("call_filter_values, {span}"),
            || store.call_filter_values(&everyone, from),
            |v| {
                format!(
                    "{} specialists, {} codes, {} doors, {} users",
                    v.specialists.len(),
                    v.error_codes.len(),
                    v.doors.len(),
                    v.users.len()
                )
            },
        )?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let store = UsageStore::connect(&DatabaseConfig {
        url: args.url.clone(),
        ..DatabaseConfig::default()
    })?;
    if args.rows > 0 {
        seed(&store, &args)?;
        if store.backend() == Backend::Postgres {
            // What autovacuum does soon after a million inserts in production: without
            // statistics the planner guesses a few hundred rows for every condition and can
            // pick a bitmap scan of 100,000 rows where an index walk reads 50.
            PgConnection::establish(&args.url)?.batch_execute("ANALYZE usage_logs")?;
        }
    }
    measure(&store, args.days)
}
