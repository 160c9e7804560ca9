//! Spend limits: what a budget is (who it covers, over which period, how much) and the rules that
//! make one valid. Counting spend against them is the `budgets` crate's job.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{is_slug, string_newtype};
use crate::{DomainError, EmailHash, SpecialistId, Usd, ValidationErrors};

/// The id of a budget: 1 to 64 characters of ASCII letters, digits, `_` and `-`, so it is safe
/// in a URL path, a metric label and a Redis key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BudgetId(String);

impl BudgetId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses an id, refusing anything outside the allowed alphabet or length.
    pub fn parse(raw: impl Into<String>) -> Result<Self, DomainError> {
        let raw = raw.into();
        if is_slug(&raw, Self::MAX_LEN) {
            Ok(Self(raw))
        } else {
            Err(DomainError::InvalidBudgetId)
        }
    }
}

string_newtype!(BudgetId, parse);

/// The longest API-key name a `key` budget may name (names are labels from config).
pub const MAX_KEY_NAME_CHARS: usize = 128;

/// The most a budget may allow: 9 million dollars, so every amount a budget counts stays an exact
/// integer below 2^53 nano-dollars wherever it is kept (a Lua number in Redis is a double).
pub const MAX_BUDGET_USD: f64 = 9_000_000.0;

/// Whose calls a budget counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// Every call.
    Global,
    /// Calls to one specialist.
    Specialist(SpecialistId),
    /// Calls by one user, named by email (only the hash is compared with callers and rows).
    User {
        /// The email as configured, for people.
        email: String,
        /// Its hash, what callers and usage rows carry.
        email_hash: EmailHash,
    },
    /// Calls made with one static API key, by the key's name in `auth.api_keys`.
    Key(String),
}

impl BudgetScope {
    /// `global`, `specialist`, `user` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Specialist(_) => "specialist",
            Self::User { .. } => "user",
            Self::Key(_) => "key",
        }
    }

    /// What the scope names: the specialist id, the email or the key name; `None` for global.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::Global => None,
            Self::Specialist(id) => Some(id.as_str()),
            Self::User { email, .. } => Some(email),
            Self::Key(name) => Some(name),
        }
    }

    /// True when a call to `specialist` by `user` (email hash) with `api_key` (its name) counts
    /// against this scope.
    pub fn covers(
        &self,
        specialist: &SpecialistId,
        user: Option<&EmailHash>,
        api_key: Option<&str>,
    ) -> bool {
        match self {
            Self::Global => true,
            Self::Specialist(id) => id == specialist,
            Self::User { email_hash, .. } => user == Some(email_hash),
            Self::Key(name) => api_key == Some(name.as_str()),
        }
    }
}

/// The calendar window a budget's spend is counted over, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// From 00:00 UTC to the next 00:00 UTC.
    Day,
    /// From the first of the month, 00:00 UTC, to the first of the next.
    Month,
    /// Forever: the budget never resets.
    Total,
}

/// One period of a budget: when it began and when the next begins (`None` for `total`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeriodWindow {
    /// A short stable name of the window (`2026-12-01`, `2026-12`, `total`): part of the keys
    /// the spend is kept under.
    pub key: String,
    /// When the window began; `None` for `total` (all time).
    pub start: Option<DateTime<Utc>>,
    /// When the next window begins (the budget resets); `None` for `total`.
    pub resets_at: Option<DateTime<Utc>>,
}

impl BudgetPeriod {
    /// `day`, `month` or `total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    /// Parses `day`, `month` or `total`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            "total" => Some(Self::Total),
            _ => None,
        }
    }

    /// The window that holds `now`.
    pub fn window(self, now: DateTime<Utc>) -> PeriodWindow {
        let midnight =
            |date: NaiveDate| Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN));
        match self {
            Self::Total => PeriodWindow {
                key: "total".to_owned(),
                start: None,
                resets_at: None,
            },
            Self::Day => {
                let today = now.date_naive();
                PeriodWindow {
                    key: date_key(today.year(), today.month(), Some(today.day())),
                    start: Some(midnight(today)),
                    resets_at: today.succ_opt().map(midnight),
                }
            }
            Self::Month => {
                let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1);
                let next = if now.month() == 12 {
                    NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(now.year(), now.month() + 1, 1)
                };
                PeriodWindow {
                    key: date_key(now.year(), now.month(), None),
                    start: first.map(midnight),
                    resets_at: next.map(midnight),
                }
            }
        }
    }
}

/// `2026-12-01` (with a day) or `2026-12`, written digit by digit: on every budgeted call, where
/// chrono's formatter costs more than the rest of the key.
fn date_key(year: i32, month: u32, day: Option<u32>) -> String {
    fn push_digits(key: &mut String, value: u32, width: usize) {
        let mut digits = [b'0'; 10];
        let mut rest = value;
        let mut at = digits.len();
        while rest > 0 && at > 0 {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let start = at.min(digits.len() - width);
        key.extend(digits[start..].iter().map(|&b| char::from(b)));
    }
    let mut key = String::with_capacity(10);
    if year < 0 {
        key.push('-');
    }
    push_digits(&mut key, year.unsigned_abs(), 4);
    key.push('-');
    push_digits(&mut key, month, 2);
    if let Some(day) = day {
        key.push('-');
        push_digits(&mut key, day, 2);
    }
    key
}

/// A budget as it is written in config or sent over HTTP, before validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetDraft {
    /// The budget's id.
    pub id: String,
    /// `global`, `specialist`, `user` or `key`.
    pub scope: String,
    /// The specialist id, the user's email or the API key's name (none for `global`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `day`, `month` or `total`.
    pub period: String,
    /// The most the scope may spend in one period, in USD.
    pub limit_usd: f64,
    /// Spend at which a warning is logged once per period, in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_usd: Option<f64>,
}

/// A valid budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Budget {
    id: BudgetId,
    scope: BudgetScope,
    period: BudgetPeriod,
    limit: Usd,
    alert: Option<Usd>,
    epoch: Option<String>,
    /// [`Budget::counter_name`], computed once (a SHA-256 per call would cost more than the
    /// rest of admission).
    counter_name: String,
}

impl BudgetDraft {
    /// The budget, or every rule it breaks (field paths as the draft spells them).
    pub fn validate(&self) -> Result<Budget, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let id = BudgetId::parse(self.id.clone())
            .map_err(|e| errors.push("id", e.to_string()))
            .ok();
        let subject = self.subject.as_deref().map(str::trim);
        let scope = match (self.scope.as_str(), subject) {
            ("global", None) => Some(BudgetScope::Global),
            ("global", Some(_)) => {
                errors.push("subject", "a global budget has no subject");
                None
            }
            ("specialist" | "user" | "key", None | Some("")) => {
                errors.push(
                    "subject",
                    format!(
                        "a {} budget needs a subject: {}",
                        self.scope,
                        match self.scope.as_str() {
                            "specialist" => "the specialist's id",
                            "user" => "the user's email",
                            _ => "the API key's name",
                        }
                    ),
                );
                None
            }
            ("specialist", Some(id)) => SpecialistId::parse(id)
                .map(BudgetScope::Specialist)
                .map_err(|e| errors.push("subject", e.to_string()))
                .ok(),
            ("user", Some(email)) => {
                if email.contains('@') && email.len() <= 320 && !email.chars().any(char::is_control)
                {
                    let email = email.to_lowercase();
                    Some(BudgetScope::User {
                        email_hash: EmailHash::of_email(&email),
                        email,
                    })
                } else {
                    errors.push(
                        "subject",
                        "a user budget's subject must be an email address",
                    );
                    None
                }
            }
            ("key", Some(name)) => {
                if name.chars().count() <= MAX_KEY_NAME_CHARS && !name.chars().any(char::is_control)
                {
                    Some(BudgetScope::Key(name.to_owned()))
                } else {
                    errors.push(
                        "subject",
                        format!(
                            "an API key's name is at most {MAX_KEY_NAME_CHARS} characters, \
                             without control characters"
                        ),
                    );
                    None
                }
            }
            (other, _) => {
                errors.push(
                    "scope",
                    format!("unknown scope '{other}': expected global, specialist, user or key"),
                );
                None
            }
        };
        let period = BudgetPeriod::parse(&self.period)
            .ok_or_else(|| {
                errors.push(
                    "period",
                    format!(
                        "unknown period '{}': expected day, month or total",
                        self.period
                    ),
                );
            })
            .ok();
        let amount = |field: &str, dollars: f64, errors: &mut ValidationErrors| {
            if !(0.0..=MAX_BUDGET_USD).contains(&dollars) {
                errors.push(
                    field,
                    format!("must be a number of dollars from 0 to {MAX_BUDGET_USD}"),
                );
                return None;
            }
            Usd::from_dollars(dollars)
        };
        let limit = amount("limit_usd", self.limit_usd, &mut errors);
        let alert = self
            .alert_usd
            .and_then(|alert| amount("alert_usd", alert, &mut errors));
        if let (Some(limit), Some(alert)) = (limit, alert)
            && alert > limit
        {
            errors.push("alert_usd", "must not be more than limit_usd");
        }
        match (id, scope, period, limit) {
            (Some(id), Some(scope), Some(period), Some(limit)) if errors.is_empty() => {
                let mut budget = Budget {
                    id,
                    scope,
                    period,
                    limit,
                    alert,
                    epoch: None,
                    counter_name: String::new(),
                };
                budget.counter_name = budget.name_counter();
                Ok(budget)
            }
            _ => Err(errors),
        }
    }
}

impl Budget {
    /// The budget's id.
    pub fn id(&self) -> &BudgetId {
        &self.id
    }

    /// Whose calls it counts.
    pub fn scope(&self) -> &BudgetScope {
        &self.scope
    }

    /// The period its spend is counted over.
    pub fn period(&self) -> BudgetPeriod {
        self.period
    }

    /// The most the scope may spend in one period.
    pub fn limit(&self) -> Usd {
        self.limit
    }

    /// The spend at which a warning is logged, once per period.
    pub fn alert(&self) -> Option<Usd> {
        self.alert
    }

    /// The same budget counting from `epoch`: a token that names when its current scope and
    /// period took effect (a budget deleted and made again, or moved to another scope and back,
    /// gets a new one), so it starts a new count instead of taking up an old one.
    pub fn with_epoch(mut self, epoch: impl Into<String>) -> Self {
        self.epoch = Some(epoch.into());
        self.counter_name = self.name_counter();
        self
    }

    /// Its epoch, if it has one (budgets managed over the API do; config ones do not).
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// The draft that validates to this budget (for config files, JSON and storage).
    pub fn to_draft(&self) -> BudgetDraft {
        BudgetDraft {
            id: self.id.to_string(),
            scope: self.scope.kind().to_owned(),
            subject: self.scope.subject().map(str::to_owned),
            period: self.period.as_str().to_owned(),
            limit_usd: self.limit.as_dollars(),
            alert_usd: self.alert.map(Usd::as_dollars),
        }
    }

    /// What the spend is counted for: the scope, the period and the epoch, as a short digest.
    /// Changing any starts a new count (so a budget moved from one user to another does not
    /// carry the first one's spend); changing only the limit or the alert keeps it.
    pub fn counter_name(&self) -> &str {
        &self.counter_name
    }

    fn name_counter(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.scope.kind().as_bytes());
        hasher.update([0]);
        hasher.update(self.scope.subject().unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(self.period.as_str().as_bytes());
        if let Some(epoch) = &self.epoch {
            hasher.update([0]);
            hasher.update(epoch.as_bytes());
        }
        let digest = hasher.finalize();
        format!("{}:{}", self.id, &hex::encode(digest)[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(scope: &str, subject: Option<&str>) -> BudgetDraft {
        BudgetDraft {
            id: "b1".into(),
            scope: scope.into(),
            subject: subject.map(str::to_owned),
            period: "day".into(),
            limit_usd: 10.0,
            alert_usd: Some(8.0),
        }
    }

    #[test]
    fn every_scope_validates_and_round_trips_through_its_draft() {
        for (scope, subject) in [
            ("global", None),
            ("specialist", Some("financial_analyst")),
            ("user", Some("ada@example.com")),
            ("key", Some("ci pipeline")),
        ] {
            let budget = draft(scope, subject).validate().unwrap();
            assert_eq!(budget.scope().kind(), scope);
            assert_eq!(budget.to_draft().validate().unwrap(), budget);
        }
    }

    #[test]
    fn a_user_budget_matches_the_callers_hash_whatever_the_emails_case() {
        let budget = draft("user", Some(" Ada@Example.com ")).validate().unwrap();
        let specialist = SpecialistId::parse("x").unwrap();
        let ada = EmailHash::of_email("ada@example.com");
        let bob = EmailHash::of_email("bob@example.com");
        assert!(budget.scope().covers(&specialist, Some(&ada), None));
        assert!(!budget.scope().covers(&specialist, Some(&bob), None));
        assert!(!budget.scope().covers(&specialist, None, None));
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let bad = BudgetDraft {
            id: "bad id!".into(),
            scope: "team".into(),
            subject: None,
            period: "week".into(),
            limit_usd: -1.0,
            alert_usd: Some(f64::NAN),
        };
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "scope", "period", "limit_usd", "alert_usd"]);
        assert!(draft("global", Some("x")).validate().is_err());
        assert!(draft("user", Some("not-an-email")).validate().is_err());
        assert!(draft("specialist", None).validate().is_err());
        let mut over = draft("global", None);
        over.alert_usd = Some(11.0);
        assert_eq!(over.validate().unwrap_err().errors()[0].field, "alert_usd");
        over.alert_usd = None;
        over.limit_usd = MAX_BUDGET_USD + 1.0;
        assert!(over.validate().is_err());
    }

    #[test]
    fn windows_are_utc_calendar_days_and_months() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let day = BudgetPeriod::Day.window(at("2026-12-31T23:59:59.999Z"));
        assert_eq!(day.key, "2026-12-31");
        assert_eq!(day.start, Some(at("2026-12-31T00:00:00Z")));
        assert_eq!(day.resets_at, Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(
            BudgetPeriod::Day.window(at("2027-01-01T00:00:00Z")).key,
            "2027-01-01"
        );
        let month = BudgetPeriod::Month.window(at("2026-12-15T12:00:00Z"));
        assert_eq!(month.key, "2026-12");
        assert_eq!(month.start, Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(month.resets_at, Some(at("2027-01-01T00:00:00Z")));
        let feb = BudgetPeriod::Month.window(at("2028-02-29T08:00:00Z"));
        assert_eq!(feb.resets_at, Some(at("2028-03-01T00:00:00Z")));
        assert_eq!(
            BudgetPeriod::Day.window(at("0987-03-04T00:00:00Z")).key,
            "0987-03-04"
        );
        let total = BudgetPeriod::Total.window(at("2026-12-15T12:00:00Z"));
        assert_eq!((total.start, total.resets_at), (None, None));
    }

    #[test]
    fn the_counter_changes_with_the_scope_or_period_but_not_the_limit() {
        let a = draft("user", Some("ada@example.com")).validate().unwrap();
        let mut more = draft("user", Some("ada@example.com"));
        more.limit_usd = 50.0;
        assert_eq!(a.counter_name(), more.validate().unwrap().counter_name());
        let b = draft("user", Some("bob@example.com")).validate().unwrap();
        assert_ne!(a.counter_name(), b.counter_name());
        let mut monthly = draft("user", Some("ada@example.com"));
        monthly.period = "month".into();
        assert_ne!(a.counter_name(), monthly.validate().unwrap().counter_name());
        let later = a.clone().with_epoch("2");
        assert_ne!(a.counter_name(), later.counter_name());
        assert_eq!(later.counter_name(), a.with_epoch("2").counter_name());
    }
}
