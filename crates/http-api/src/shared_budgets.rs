//! The Redis ledger for budgets: every instance counts spend and reservations in the same Redis,
//! each operation one Lua script so it is atomic across instances. It keeps exactly the
//! behaviour of the in-process `budgets::LocalLedger` (the reference), which the shared
//! conformance check holds it to.
//!
//! Each counter is five keys, `PREFIX:{budget}:COUNTER:…`: `spent` (settled nano-dollars),
//! `reserved` (the running sum of unexpired holds), `holds` (hash: reservation → amount),
//! `leases` (sorted set: reservation → lease end in ms) and `alerted` (set once per window).
//! The `{budget}` hash tag puts every budget key in one Redis Cluster hash slot, so a script
//! over several counters is legal on a cluster too (at the price of all budgets living on one
//! shard, which their traffic — one script per call — does not strain).

use std::sync::Arc;

use budgets::{Counter, Ledger, LedgerError, ReserveOutcome, SettleOutcome, Standing};
use chrono::{DateTime, TimeDelta, Utc};
use core_domain::Usd;
use futures_util::future::BoxFuture;
use redis::Value;

use crate::RateLimitSetupError;
use crate::RedisConfig;
use crate::redis_connection::Connector;

/// How long after its window ends a count is kept, as the local ledger keeps it (a call that
/// began in the window may still be settling into it).
const KEEP_AFTER_WINDOW: TimeDelta = TimeDelta::days(1);

/// The keys of one counter, in the order every script expects them (`counter_keys`).
const COUNTER_KEYS: [&str; 5] = ["spent", "reserved", "holds", "leases", "alerted"];

/// The arguments of one counter, after a script's own: limit, alert (`""`: none), and in how
/// many ms its keys expire (`""`: never).
///
/// Expiry is relative (PEXPIRE), reckoned on the caller's clock: the window's end is, and a
/// caller whose clock is not Redis's (a test's injected clock, a skewed host) would otherwise
/// have a current window's keys deleted at once, or an old one's kept for years. Never less
/// than [`KEEP_AFTER_WINDOW`], so a count touched late (a settlement after its window) is not
/// dropped under the script that touched it.
///
/// Amounts are integer nano-dollars. Lua numbers are doubles, exact for integers below 2^53:
/// `core_domain::MAX_BUDGET_USD` keeps every limit (and so every spend and reservation that
/// was admitted) below that, the stored values change only through INCRBY/DECRBY (exact
/// 64-bit integers in Redis) and are handed back as Redis's own decimal strings, and the
/// limit check is written so no intermediate sum can pass 2^53.
const PRELUDE: &str = r"
local function counter_keys(i)
  local base = (i - 1) * 5
  return KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4], KEYS[base + 5]
end
local function counter_arg(i, k)
  return ARGV[head + (i - 1) * 3 + k]
end
local function take(reserved, amount)
  if redis.call('DECRBY', reserved, amount) < 0 then
    redis.call('SET', reserved, '0', 'KEEPTTL')
  end
end
local function expire(reserved, holds, leases, now)
  local gone = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  if #gone == 0 then return end
  for _, id in ipairs(gone) do
    local held = redis.call('HGET', holds, id)
    if held then
      redis.call('HDEL', holds, id)
      take(reserved, held)
    end
  end
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
end
local function release(reserved, holds, leases, id)
  local held = redis.call('HGET', holds, id)
  if held then
    redis.call('HDEL', holds, id)
    redis.call('ZREM', leases, id)
    take(reserved, held)
  end
end
local function keep(i)
  local ttl = counter_arg(i, 3)
  if ttl == '' then return end
  local spent, reserved, holds, leases, alerted = counter_keys(i)
  for _, key in ipairs({spent, reserved, holds, leases, alerted}) do
    redis.call('PEXPIRE', key, ttl)
  end
end
local function reserved_of(reserved)
  return redis.call('GET', reserved) or '0'
end
";

/// ARGV: reservation, amount, lease end (ms), now (ms), then each counter's.
/// Reply: `{0, spent, reserved, …}` held in all; `{1, index, …}` unseeded (0-based);
/// `{2, index, spent, reserved}` refused.
const RESERVE_BODY: &str = r"
local id, amount_arg, lease_until, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local amount = tonumber(amount_arg)
local n = #KEYS / 5
local unseeded = {1}
for i = 1, n do
  local spent, reserved, holds, leases = counter_keys(i)
  if redis.call('EXISTS', spent) == 1 then
    expire(reserved, holds, leases, now)
  else
    table.insert(unseeded, i - 1)
  end
end
if #unseeded > 1 then return unseeded end
for i = 1, n do
  local spent_key, reserved_key = counter_keys(i)
  local spent = redis.call('GET', spent_key)
  local reserved = reserved_of(reserved_key)
  local limit = tonumber(counter_arg(i, 1))
  local s, r = tonumber(spent), tonumber(reserved)
  -- Standing::refuses: spent + reserved + amount > limit, or spent >= limit. Once spent is
  -- known to be below the limit, each difference is an exact integer below 2^53.
  if s >= limit or amount > (limit - s) - r then
    return {2, i - 1, spent, reserved}
  end
end
local out = {0}
for i = 1, n do
  local spent, reserved, holds, leases = counter_keys(i)
  release(reserved, holds, leases, id)
  redis.call('INCRBY', reserved, amount_arg)
  redis.call('HSET', holds, id, amount_arg)
  redis.call('ZADD', leases, lease_until, id)
  keep(i)
  table.insert(out, redis.call('GET', spent))
  table.insert(out, reserved_of(reserved))
end
return out
";

/// ARGV: reservation, actual, now (ms), then each counter's.
/// Reply per counter: known (0/1), spent, reserved, alerted now (0/1).
const SETTLE_BODY: &str = r"
local id, actual, now = ARGV[1], ARGV[2], ARGV[3]
local n = #KEYS / 5
local out = {}
for i = 1, n do
  local spent, reserved, holds, leases, alerted = counter_keys(i)
  if redis.call('EXISTS', spent) == 0 then
    -- Unknown stays unknown: its spend reaches it through the usage log when it is seeded.
    for _, v in ipairs({0, '0', '0', 0}) do table.insert(out, v) end
  else
    release(reserved, holds, leases, id)
    expire(reserved, holds, leases, now)
    local total = redis.call('INCRBY', spent, actual)
    local told = 0
    local alert = counter_arg(i, 2)
    if alert ~= '' and total >= tonumber(alert) and redis.call('SET', alerted, '1', 'NX') then
      told = 1
    end
    keep(i)
    for _, v in ipairs({1, redis.call('GET', spent), reserved_of(reserved), told}) do
      table.insert(out, v)
    end
  end
end
return out
";

/// ARGV: spent, then the counter's. Reply: 1 when this call seeded it, 0 when it was known.
const SEED_BODY: &str = r"
local spent, reserved, holds, leases, alerted = counter_keys(1)
if not redis.call('SET', spent, ARGV[1], 'NX') then return 0 end
-- A count rebuilt already past its alert was told before (or the crossing happened while
-- nobody counted): it is not told again.
local alert = counter_arg(1, 2)
if alert ~= '' and tonumber(ARGV[1]) >= tonumber(alert) then
  redis.call('SET', alerted, '1')
else
  redis.call('DEL', alerted)
end
keep(1)
return 1
";

/// ARGV: now (ms), then each counter's. Reply per counter: known (0/1), spent, reserved.
const STANDINGS_BODY: &str = r"
local now = ARGV[1]
local n = #KEYS / 5
local out = {}
for i = 1, n do
  local spent, reserved, holds, leases = counter_keys(i)
  if redis.call('EXISTS', spent) == 1 then
    expire(reserved, holds, leases, now)
    for _, v in ipairs({1, redis.call('GET', spent), reserved_of(reserved)}) do
      table.insert(out, v)
    end
  else
    for _, v in ipairs({0, '0', '0'}) do table.insert(out, v) end
  end
end
return out
";

/// One script: how many arguments come before the counters', then the prelude and the body.
fn script(head: usize, body: &str) -> redis::Script {
    redis::Script::new(&format!("local head = {head}\n{PRELUDE}\n{body}"))
}

/// A [`Ledger`] in Redis (`[redis] url`), shared by every instance that uses the same Redis
/// and `redis.key_prefix`.
pub struct RedisLedger {
    connector: Arc<Connector>,
    key_prefix: String,
    reserve: redis::Script,
    settle: redis::Script,
    seed: redis::Script,
    standings: redis::Script,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLedger {
    /// A ledger on `config.url` under `config.key_prefix`; opens nothing until
    /// [`RedisLedger::connect`] or the first operation.
    pub fn new(config: &RedisConfig) -> Result<Self, RateLimitSetupError> {
        Ok(Self {
            connector: Connector::new(config)?,
            key_prefix: config.key_prefix.clone(),
            reserve: script(4, RESERVE_BODY),
            settle: script(3, SETTLE_BODY),
            seed: script(1, SEED_BODY),
            standings: script(1, STANDINGS_BODY),
        })
    }

    /// Starts connecting now (needs a Tokio runtime), so the first call finds Redis ready. A
    /// Redis that is down is not an error here: each operation then fails with a
    /// [`LedgerError`] and the connection is retried.
    pub fn connect(&self) {
        self.connector.connect_in_background();
    }

    /// Adds `counters`' keys and arguments to `invocation`.
    fn add_counters(
        &self,
        invocation: &mut redis::ScriptInvocation<'_>,
        counters: &[Counter],
        now: DateTime<Utc>,
    ) {
        for counter in counters {
            for part in COUNTER_KEYS {
                invocation.key(format!(
                    "{}:{{budget}}:{}:{part}",
                    self.key_prefix, counter.key
                ));
            }
            invocation.arg(counter.limit.nanos());
            invocation.arg(
                counter
                    .alert
                    .map(|alert| alert.nanos().to_string())
                    .unwrap_or_default(),
            );
            invocation.arg(
                counter
                    .window_ends
                    .map(|ends| {
                        (ends + KEEP_AFTER_WINDOW - now)
                            .max(KEEP_AFTER_WINDOW)
                            .num_milliseconds()
                            .to_string()
                    })
                    .unwrap_or_default(),
            );
        }
    }

    /// Runs `invocation`, connection included, within `redis.timeout_ms`.
    async fn run(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<Value, LedgerError> {
        let timeout = self.connector.timeout();
        tokio::time::timeout(timeout, async {
            let mut connection = self
                .connector
                .connection_within(timeout)
                .await
                .ok_or_else(|| LedgerError("Redis is not connected".to_owned()))?;
            invocation
                .invoke_async::<Value>(&mut connection)
                .await
                .map_err(|e| LedgerError(format!("Redis: {e}")))
        })
        .await
        .map_err(|_| LedgerError(format!("Redis gave no answer within {timeout:?}")))?
    }

    async fn reserve_all(
        &self,
        reservation: &str,
        counters: &[Counter],
        amount: Usd,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ReserveOutcome, LedgerError> {
        if counters.is_empty() {
            return Ok(ReserveOutcome::Admitted(Vec::new()));
        }
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .arg(reservation)
            .arg(amount.nanos())
            .arg(lease_until.timestamp_millis())
            .arg(now.timestamp_millis());
        self.add_counters(&mut invocation, counters, now);
        let reply = array(self.run(&invocation).await?)?;
        parse_reserve(&reply, counters.len())
    }

    async fn settle_all(
        &self,
        reservation: &str,
        counters: &[Counter],
        actual: Usd,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, LedgerError> {
        if counters.is_empty() {
            return Ok(SettleOutcome {
                standings: Vec::new(),
                alerted: Vec::new(),
            });
        }
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .arg(reservation)
            .arg(actual.nanos())
            .arg(now.timestamp_millis());
        self.add_counters(&mut invocation, counters, now);
        let reply = array(self.run(&invocation).await?)?;
        parse_settle(&reply, counters.len())
    }

    async fn seed_one(
        &self,
        counter: &Counter,
        spent: Usd,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let mut invocation = self.seed.prepare_invoke();
        invocation.arg(spent.nanos());
        self.add_counters(&mut invocation, std::slice::from_ref(counter), now);
        match self.run(&invocation).await? {
            Value::Int(0 | 1) => Ok(()),
            other => Err(nonsense("seed", &other)),
        }
    }

    async fn standings_of(
        &self,
        counters: &[Counter],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<Standing>>, LedgerError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.standings.prepare_invoke();
        invocation.arg(now.timestamp_millis());
        self.add_counters(&mut invocation, counters, now);
        let reply = array(self.run(&invocation).await?)?;
        if reply.len() != counters.len() * 3 {
            return Err(wrong_length("standings", reply.len()));
        }
        reply
            .chunks_exact(3)
            .map(|known| match flag(&known[0])? {
                true => Ok(Some(standing(&known[1], &known[2])?)),
                false => Ok(None),
            })
            .collect()
    }
}

impl Ledger for RedisLedger {
    fn reserve<'a>(
        &'a self,
        reservation: &'a str,
        counters: &'a [Counter],
        amount: Usd,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<ReserveOutcome, LedgerError>> {
        // Times are the caller's, not Redis's TIME: the same clock decides the budget's period,
        // so a lease and a window never disagree, and tests inject it to expire leases.
        Box::pin(self.reserve_all(reservation, counters, amount, lease_until, now))
    }

    fn settle<'a>(
        &'a self,
        reservation: &'a str,
        counters: &'a [Counter],
        actual: Usd,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<SettleOutcome, LedgerError>> {
        Box::pin(self.settle_all(reservation, counters, actual, now))
    }

    fn seed<'a>(
        &'a self,
        counter: &'a Counter,
        spent: Usd,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        // Old windows need no sweep here (the local ledger's seed does one): their keys
        // expire in Redis.
        Box::pin(self.seed_one(counter, spent, now))
    }

    fn standings<'a>(
        &'a self,
        counters: &'a [Counter],
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Option<Standing>>, LedgerError>> {
        Box::pin(self.standings_of(counters, now))
    }
}

fn parse_reserve(reply: &[Value], counters: usize) -> Result<ReserveOutcome, LedgerError> {
    let Some((tag, rest)) = reply.split_first() else {
        return Err(wrong_length("reserve", 0));
    };
    match integer(tag)? {
        0 if rest.len() == counters * 2 => rest
            .chunks_exact(2)
            .map(|pair| standing(&pair[0], &pair[1]))
            .collect::<Result<_, _>>()
            .map(ReserveOutcome::Admitted),
        1 if !rest.is_empty() && rest.len() <= counters => rest
            .iter()
            .map(|value| index(value, counters))
            .collect::<Result<_, _>>()
            .map(ReserveOutcome::Unseeded),
        2 if rest.len() == 3 => Ok(ReserveOutcome::Refused {
            index: index(&rest[0], counters)?,
            standing: standing(&rest[1], &rest[2])?,
        }),
        _ => Err(nonsense("reserve", tag)),
    }
}

fn parse_settle(reply: &[Value], counters: usize) -> Result<SettleOutcome, LedgerError> {
    if reply.len() != counters * 4 {
        return Err(wrong_length("settle", reply.len()));
    }
    let mut outcome = SettleOutcome {
        standings: Vec::with_capacity(counters),
        alerted: Vec::new(),
    };
    for (position, counter) in reply.chunks_exact(4).enumerate() {
        if !flag(&counter[0])? {
            outcome.standings.push(None);
            continue;
        }
        outcome
            .standings
            .push(Some(standing(&counter[1], &counter[2])?));
        if flag(&counter[3])? {
            outcome.alerted.push(position);
        }
    }
    Ok(outcome)
}

fn array(value: Value) -> Result<Vec<Value>, LedgerError> {
    match value {
        Value::Array(values) => Ok(values),
        other => Err(nonsense("a script", &other)),
    }
}

fn standing(spent: &Value, reserved: &Value) -> Result<Standing, LedgerError> {
    Ok(Standing {
        spent: Usd::from_nanos(integer(spent)?),
        reserved: Usd::from_nanos(integer(reserved)?),
    })
}

/// A non-negative integer, as Redis returns it: an integer reply, or a decimal string (what
/// GET returns for a counter).
fn integer(value: &Value) -> Result<u64, LedgerError> {
    let parsed = match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok()),
        Value::SimpleString(text) => text.parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| nonsense("a count", value))
}

fn flag(value: &Value) -> Result<bool, LedgerError> {
    match integer(value)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(nonsense("a flag", value)),
    }
}

fn index(value: &Value, counters: usize) -> Result<usize, LedgerError> {
    usize::try_from(integer(value)?)
        .ok()
        .filter(|index| *index < counters)
        .ok_or_else(|| nonsense("a counter index", value))
}

fn nonsense(what: &str, value: &Value) -> LedgerError {
    // The value is a count or a tag, never a secret; cut it short all the same.
    let mut shown = format!("{value:?}");
    shown.truncate(80);
    LedgerError(format!("Redis answered nonsense for {what}: {shown}"))
}

fn wrong_length(what: &str, length: usize) -> LedgerError {
    LedgerError(format!(
        "Redis answered {length} values for {what}, not what was asked"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn replies_are_parsed_into_outcomes() {
        let admitted = [Value::Int(0), bulk("20"), bulk("30"), bulk("0"), bulk("30")];
        assert_eq!(
            parse_reserve(&admitted, 2).unwrap(),
            ReserveOutcome::Admitted(vec![
                Standing {
                    spent: Usd::from_nanos(20),
                    reserved: Usd::from_nanos(30)
                },
                Standing {
                    spent: Usd::ZERO,
                    reserved: Usd::from_nanos(30)
                },
            ])
        );
        let unseeded = [Value::Int(1), Value::Int(1)];
        assert_eq!(
            parse_reserve(&unseeded, 2).unwrap(),
            ReserveOutcome::Unseeded(vec![1])
        );
        let refused = [Value::Int(2), Value::Int(0), bulk("100"), bulk("0")];
        assert_eq!(
            parse_reserve(&refused, 1).unwrap(),
            ReserveOutcome::Refused {
                index: 0,
                standing: Standing {
                    spent: Usd::from_nanos(100),
                    reserved: Usd::ZERO
                }
            }
        );
        let settled = [
            Value::Int(0),
            bulk("0"),
            bulk("0"),
            Value::Int(0),
            Value::Int(1),
            bulk("7"),
            bulk("0"),
            Value::Int(1),
        ];
        let outcome = parse_settle(&settled, 2).unwrap();
        assert_eq!(outcome.alerted, vec![1]);
        assert_eq!(
            outcome.standings,
            vec![
                None,
                Some(Standing {
                    spent: Usd::from_nanos(7),
                    reserved: Usd::ZERO
                })
            ]
        );
    }

    #[test]
    fn nonsense_from_redis_is_an_error_not_a_panic() {
        let cases: [(&[Value], usize); 7] = [
            (&[], 1),
            (&[Value::Int(7)], 1),
            // Admitted with a standing missing.
            (&[Value::Int(0), bulk("1")], 1),
            // Refused by a counter that was not asked about.
            (&[Value::Int(2), Value::Int(3), bulk("1"), bulk("1")], 1),
            // A negative or non-numeric count.
            (&[Value::Int(2), Value::Int(0), bulk("-1"), bulk("1")], 1),
            (&[Value::Int(2), Value::Int(0), bulk("x"), Value::Nil], 1),
            (&[Value::Int(1), Value::Int(-1)], 1),
        ];
        for (reply, counters) in cases {
            assert!(
                parse_reserve(reply, counters).is_err(),
                "{reply:?} was taken for an answer"
            );
        }
        assert!(parse_settle(&[Value::Int(1), bulk("1"), bulk("0")], 1).is_err());
        assert!(parse_settle(&[Value::Int(2), bulk("1"), bulk("0"), Value::Int(0)], 1).is_err());
        assert!(array(Value::Okay).is_err());
    }
}
