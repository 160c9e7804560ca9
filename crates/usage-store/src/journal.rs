//! The journal's files: an append-only log of what chat calls started, delivered and finished,
//! kept in a directory of segments in front of the database.
//!
//! A segment is a file of JSON lines named by the sequence number of its first line
//! (`journal-00000000000000000042.log`); the n-th line of a segment has sequence number
//! `first + n`, so a line needs no number of its own and can be encoded before the lock that
//! orders it is taken. A line is written with one `write`, so a killed process leaves whole
//! lines; a machine that lost power may leave a torn last line, which reading skips.
//!
//! The `checkpoint` file holds the highest sequence number through which every `finished`
//! record is in the database. It may lag (it is written after the database commit, without
//! `fsync`): applying a record twice stores it once, because rows are keyed by request id.
//!
//! This module knows files and lines only; [`crate::writer`] decides what to append and when a
//! segment may go.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use core_domain::{
    Door, EmailHash, ErrorCode, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd,
};
use serde::{Deserialize, Serialize};

use crate::{AttemptRecord, StoreError, UsageRecord};

const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".log";
const CHECKPOINT: &str = "checkpoint";

/// What a call's usage row needs to be written if the process ends before the call does: the
/// `started` record, journaled before the upstream request is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStart {
    /// The call's request id (the row's key).
    pub request_id: RequestId,
    /// The id the caller sent for its own tracing, if any.
    #[serde(default)]
    pub client_request_id: Option<RequestId>,
    /// When the call started (UTC).
    pub timestamp: DateTime<Utc>,
    /// The caller; `None` for the anonymous caller.
    pub user_email_hash: Option<EmailHash>,
    /// The specialist called.
    pub specialist_id: SpecialistId,
    /// Its name at call time.
    pub specialist_name: String,
    /// Its provider.
    pub provider: ProviderKind,
    /// Its model.
    pub model: String,
    /// True for a streamed call.
    pub streamed: bool,
    /// The caller's own id for its end user, if any.
    #[serde(default)]
    pub end_user: Option<String>,
    /// The name of the API key the caller authenticated with, if it used one (see
    /// [`UsageRecord::api_key`]).
    #[serde(default)]
    pub api_key: Option<String>,
    /// The front door the call came in by (lines from before doors were recorded read as
    /// `native`).
    #[serde(default = "crate::record::door_of_old_lines")]
    pub door: Door,
    /// The prompt's estimated token count.
    pub prompt_tokens: u32,
    /// The model's prices at call time, so a call interrupted by a crash is priced as it would
    /// have been; `None` when the model has no known price.
    pub rates: Option<Rates>,
}

/// A model's prices per million tokens, for pricing a call the journal's recovery finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// The price of a million input tokens.
    pub input_per_1m: Usd,
    /// The price of a million output tokens.
    pub output_per_1m: Usd,
}

impl Rates {
    /// The cost of `input` and `output` tokens, rounded to the nearest nano-dollar (the rule
    /// the pricing crate uses for uncached input and output).
    pub fn cost_of(&self, input: u32, output: u32) -> Usd {
        let nanos_times_1m = u128::from(input) * u128::from(self.input_per_1m.nanos())
            + u128::from(output) * u128::from(self.output_per_1m.nanos());
        let nanos = (nanos_times_1m + 500_000) / 1_000_000;
        Usd::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// How far a streamed call had got when last checkpointed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Characters handed to the client so far.
    pub delivered_chars: u64,
    /// From the request's arrival to the first text handed over, in milliseconds.
    #[serde(default)]
    pub first_token_ms: Option<f64>,
}

impl CallStart {
    /// The row for a call the process did not live to finish: `interrupted`, charged for the
    /// prompt estimate plus the text delivered (about four characters a token), at the rates
    /// of its start.
    pub(crate) fn interrupted(&self, progress: Progress) -> UsageRecord {
        let output = u32::try_from(progress.delivered_chars.div_ceil(4)).unwrap_or(u32::MAX);
        let usage = TokenUsage::estimated(self.prompt_tokens, output);
        let cost = self
            .rates
            .map_or(Usd::ZERO, |rates| rates.cost_of(usage.input_tokens, output));
        let from_ms = |ms: f64| Duration::try_from_secs_f64(ms / 1000.0).ok();
        UsageRecord {
            request_id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            timestamp: self.timestamp,
            user_email_hash: self.user_email_hash.clone(),
            specialist_id: self.specialist_id.clone(),
            specialist_name: self.specialist_name.clone(),
            provider: self.provider,
            model: self.model.clone(),
            usage,
            cost,
            pricing_known: self.rates.is_some(),
            // Unknown: the process ended somewhere between its last record and now.
            latency: Duration::ZERO,
            time_to_first_token: progress.first_token_ms.and_then(from_ms),
            error_code: Some(ErrorCode::Interrupted),
            streamed: self.streamed,
            end_user: self.end_user.clone(),
            api_key: self.api_key.clone(),
            door: self.door,
            // The journal keeps no attempt of an unfinished call: it is counted as its one.
            attempts: 1,
            attempt_details: Vec::new(),
        }
    }
}

/// One journal line as written: borrowed, so journaling a row copies nothing but its JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Line<'a> {
    /// A call is about to be sent upstream.
    Started(&'a CallStart),
    /// A stream has delivered this much (its latest checkpoint counts).
    Progress {
        /// The call.
        request_id: &'a RequestId,
        /// How far it got.
        progress: Progress,
    },
    /// A call's row, final.
    Finished(&'a UsageRecord),
}

/// One journal line as read back (the shape [`Line`] writes).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A call is about to be sent upstream.
    Started(Box<CallStart>),
    /// A stream has delivered this much.
    Progress {
        /// The call.
        request_id: RequestId,
        /// How far it got.
        progress: Progress,
    },
    /// A call's row, final.
    Finished(Box<UsageRecord>),
}

/// `line` as JSON, newline included: byte for byte what `serde_json` writes for it (a test
/// holds the two to that), written by hand because this runs twice per chat call. serde_json
/// escapes every key and every value through its general path and clones each id newtype into
/// a `String` to serialize it; here keys are literals, ids (validated to plain ASCII) are copied
/// as they are, and only free text (names, the model, the end user, the key's name) goes through the escaper.
pub(crate) fn encode(line: &Line<'_>) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(768);
    match line {
        Line::Started(call) => {
            out.extend_from_slice(b"{\"started\":");
            identity(
                &mut out,
                &Identity {
                    request_id: &call.request_id,
                    client_request_id: call.client_request_id.as_ref(),
                    timestamp: call.timestamp,
                    user_email_hash: call.user_email_hash.as_ref(),
                    specialist_id: &call.specialist_id,
                    specialist_name: &call.specialist_name,
                    provider: call.provider,
                    model: &call.model,
                },
            )?;
            out.extend_from_slice(b",\"streamed\":");
            boolean(&mut out, call.streamed);
            out.extend_from_slice(b",\"end_user\":");
            option_text(&mut out, call.end_user.as_deref())?;
            out.extend_from_slice(b",\"api_key\":");
            option_text(&mut out, call.api_key.as_deref())?;
            out.extend_from_slice(b",\"door\":\"");
            out.extend_from_slice(call.door.as_str().as_bytes());
            out.extend_from_slice(b"\",\"prompt_tokens\":");
            number(&mut out, call.prompt_tokens);
            out.extend_from_slice(b",\"rates\":");
            match call.rates {
                None => out.extend_from_slice(b"null"),
                Some(rates) => {
                    out.extend_from_slice(b"{\"input_per_1m\":");
                    number(&mut out, rates.input_per_1m.nanos());
                    out.extend_from_slice(b",\"output_per_1m\":");
                    number(&mut out, rates.output_per_1m.nanos());
                    out.push(b'}');
                }
            }
            out.extend_from_slice(b"}}");
        }
        Line::Finished(record) => {
            out.extend_from_slice(b"{\"finished\":");
            identity(
                &mut out,
                &Identity {
                    request_id: &record.request_id,
                    client_request_id: record.client_request_id.as_ref(),
                    timestamp: record.timestamp,
                    user_email_hash: record.user_email_hash.as_ref(),
                    specialist_id: &record.specialist_id,
                    specialist_name: &record.specialist_name,
                    provider: record.provider,
                    model: &record.model,
                },
            )?;
            out.extend_from_slice(b",\"usage\":");
            token_usage(&mut out, &record.usage);
            out.extend_from_slice(b",\"cost\":");
            number(&mut out, record.cost.nanos());
            out.extend_from_slice(b",\"pricing_known\":");
            boolean(&mut out, record.pricing_known);
            out.extend_from_slice(b",\"latency\":");
            duration(&mut out, record.latency);
            out.extend_from_slice(b",\"time_to_first_token\":");
            match record.time_to_first_token {
                None => out.extend_from_slice(b"null"),
                Some(ttft) => duration(&mut out, ttft),
            }
            out.extend_from_slice(b",\"error_code\":");
            option_raw_str(&mut out, record.error_code.map(ErrorCode::as_str));
            out.extend_from_slice(b",\"streamed\":");
            boolean(&mut out, record.streamed);
            out.extend_from_slice(b",\"end_user\":");
            option_text(&mut out, record.end_user.as_deref())?;
            out.extend_from_slice(b",\"api_key\":");
            option_text(&mut out, record.api_key.as_deref())?;
            out.extend_from_slice(b",\"door\":\"");
            out.extend_from_slice(record.door.as_str().as_bytes());
            out.extend_from_slice(b"\",\"attempts\":");
            number(&mut out, record.attempts);
            // Left out when empty, as serde's `skip_serializing_if` does.
            if let Some((first, rest)) = record.attempt_details.split_first() {
                out.extend_from_slice(b",\"attempt_details\":[");
                attempt(&mut out, first)?;
                for each in rest {
                    out.push(b',');
                    attempt(&mut out, each)?;
                }
                out.push(b']');
            }
            out.extend_from_slice(b"}}");
        }
        Line::Progress { .. } => {
            serde_json::to_writer(&mut out, line).map_err(encoding_failed)?;
        }
    }
    out.push(b'\n');
    Ok(out)
}

/// The fields a `started` line and a row begin with, in their order.
struct Identity<'a> {
    request_id: &'a RequestId,
    client_request_id: Option<&'a RequestId>,
    timestamp: DateTime<Utc>,
    user_email_hash: Option<&'a EmailHash>,
    specialist_id: &'a SpecialistId,
    specialist_name: &'a str,
    provider: ProviderKind,
    model: &'a str,
}

/// Opens the object and writes [`Identity`]'s fields (the caller writes the rest and closes it).
fn identity(out: &mut Vec<u8>, fields: &Identity<'_>) -> Result<(), StoreError> {
    out.extend_from_slice(b"{\"request_id\":");
    raw_str(out, fields.request_id.as_str());
    out.extend_from_slice(b",\"client_request_id\":");
    option_raw_str(out, fields.client_request_id.map(RequestId::as_str));
    out.extend_from_slice(b",\"timestamp\":");
    timestamp(out, fields.timestamp)?;
    out.extend_from_slice(b",\"user_email_hash\":");
    option_raw_str(out, fields.user_email_hash.map(EmailHash::as_str));
    out.extend_from_slice(b",\"specialist_id\":");
    raw_str(out, fields.specialist_id.as_str());
    out.extend_from_slice(b",\"specialist_name\":");
    text(out, fields.specialist_name)?;
    out.extend_from_slice(b",\"provider\":");
    raw_str(out, fields.provider.as_str());
    out.extend_from_slice(b",\"model\":");
    text(out, fields.model)
}

/// A [`TokenUsage`] as serde writes it.
fn token_usage(out: &mut Vec<u8>, usage: &TokenUsage) {
    out.extend_from_slice(b"{\"input_tokens\":");
    number(out, usage.input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    number(out, usage.output_tokens);
    out.extend_from_slice(b",\"cached_input_tokens\":");
    number(out, usage.cached_input_tokens);
    out.extend_from_slice(b",\"cache_write_tokens\":");
    number(out, usage.cache_write_tokens);
    out.extend_from_slice(b",\"reasoning_tokens\":");
    number(out, usage.reasoning_tokens);
    out.extend_from_slice(b",\"is_estimated\":");
    boolean(out, usage.is_estimated);
    out.push(b'}');
}

/// An [`AttemptRecord`] as serde writes it.
fn attempt(out: &mut Vec<u8>, attempt: &AttemptRecord) -> Result<(), StoreError> {
    out.extend_from_slice(b"{\"provider\":");
    raw_str(out, attempt.provider.as_str());
    out.extend_from_slice(b",\"model\":");
    text(out, &attempt.model)?;
    out.extend_from_slice(b",\"base_url\":");
    option_text(out, attempt.base_url.as_deref())?;
    out.extend_from_slice(b",\"error_code\":");
    option_raw_str(out, attempt.error_code.map(ErrorCode::as_str));
    out.extend_from_slice(b",\"usage\":");
    token_usage(out, &attempt.usage);
    out.extend_from_slice(b",\"cost\":");
    number(out, attempt.cost.nanos());
    out.extend_from_slice(b",\"pricing_known\":");
    boolean(out, attempt.pricing_known);
    out.extend_from_slice(b",\"latency\":");
    duration(out, attempt.latency);
    out.extend_from_slice(b",\"continuation\":");
    boolean(out, attempt.continuation);
    out.push(b'}');
    Ok(())
}

fn encoding_failed(error: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("cannot encode a journal record: {error}"))
}

/// A string that needs no escaping (ids, hashes, codes: validated plain ASCII).
fn raw_str(out: &mut Vec<u8>, value: &str) {
    debug_assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'),
        "{value:?} needs escaping"
    );
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

fn option_raw_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(b"null"),
        Some(value) => raw_str(out, value),
    }
}

/// Free text, escaped as JSON.
fn text(out: &mut Vec<u8>, value: &str) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *out, value).map_err(encoding_failed)
}

fn option_text(out: &mut Vec<u8>, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
        Some(value) => text(out, value),
    }
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

fn number(out: &mut Vec<u8>, value: impl Into<u64>) {
    let mut digits = [0u8; 20];
    let mut rest = value.into();
    let mut start = digits.len();
    loop {
        start -= 1;
        // A digit: `rest % 10` is below 10.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// A `Duration` as serde writes it.
fn duration(out: &mut Vec<u8>, value: Duration) {
    out.extend_from_slice(b"{\"secs\":");
    number(out, value.as_secs());
    out.extend_from_slice(b",\"nanos\":");
    number(out, value.subsec_nanos());
    out.push(b'}');
}

/// A UTC time as chrono's serde writes it (RFC 3339, `Z`, the fraction in 0, 3, 6 or 9
/// digits); anything unusual (a leap second, a year beyond 4 digits) goes through chrono.
fn timestamp(out: &mut Vec<u8>, value: DateTime<Utc>) -> Result<(), StoreError> {
    use chrono::{Datelike, Timelike};
    let year = value.year();
    let nanos = value.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return serde_json::to_writer(&mut *out, &value).map_err(encoding_failed);
    }
    let two = |out: &mut Vec<u8>, n: u32| {
        out.push(b'0' + (n / 10 % 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    out.push(b'"');
    let year = year.unsigned_abs();
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, value.month());
    out.push(b'-');
    two(out, value.day());
    out.push(b'T');
    two(out, value.hour());
    out.push(b':');
    two(out, value.minute());
    out.push(b':');
    two(out, value.second());
    let (fraction, digits) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if digits > 0 {
        out.push(b'.');
        let mut buffer = [b'0'; 9];
        let mut rest = fraction;
        for slot in buffer[..digits].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&buffer[..digits]);
    }
    out.extend_from_slice(b"Z\"");
    Ok(())
}

/// Parses a line read back.
pub(crate) fn parse(line: &[u8]) -> ReadLine {
    match serde_json::from_slice::<Entry>(line) {
        Ok(entry) => ReadLine::Entry(entry),
        Err(e) => ReadLine::Unreadable(e.to_string()),
    }
}

/// The file of the segment whose first line is `first_seq`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// The first sequence numbers of the segments in `dir`, in order.
pub(crate) fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut segments = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let first = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            segments.push(first);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Creates the segment starting at `first_seq` for appending. (With `journal_sync =
/// "machine"`, the sync thread `fsync`s the directory, so the new name survives a power cut.)
///
/// A file of that name may already hold the torn start of its first line (a power cut, or a
/// write that failed half way, as the segment's first line): no line was numbered from it, so
/// the new segment takes its name. The fragment is moved aside to `<name>.torn` first;
/// appended to, it would glue itself to the first new line and make that line unreadable.
pub(crate) fn create_segment(dir: &Path, first_seq: u64) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let path = segment_path(dir, first_seq);
    move_torn_fragment_aside(&path)?;
    OpenOptions::new().create(true).append(true).open(&path)
}

/// Renames `path` to `<path>.torn` when it holds bytes but no whole line. Reads only until the
/// first newline, so a large file costs no more than its first line.
fn move_torn_fragment_aside(path: &Path) -> std::io::Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut bytes = 0usize;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        if chunk.contains(&b'\n') {
            return Ok(());
        }
        let read = chunk.len();
        bytes += read;
        reader.consume(read);
    }
    if bytes == 0 {
        return Ok(());
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(".torn");
    tracing::warn!(segment = %path.display(), bytes,
        "a journal segment held only a torn first line; moved aside");
    std::fs::rename(path, aside)
}

/// A line of a segment as read back.
pub(crate) enum ReadLine {
    /// A record.
    Entry(Entry),
    /// A line that does not parse, with why.
    Unreadable(String),
}

/// Calls `visit` with the sequence number and bytes of every line of the segment starting at
/// `first_seq`, in order, until it answers `false`; returns the sequence number after the last
/// line visited. A last line with no newline (torn by a power cut mid-write) is skipped without
/// a number, as if never written. Lines are handed over unparsed, so a reader skipping to a
/// position pays for finding newlines only.
pub(crate) fn read_segment(
    dir: &Path,
    first_seq: u64,
    mut visit: impl FnMut(u64, &[u8]) -> bool,
) -> std::io::Result<u64> {
    let file = match File::open(segment_path(dir, first_seq)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(first_seq),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut seq = first_seq;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(seq);
        }
        if line.last() != Some(&b'\n') {
            tracing::warn!(
                segment = first_seq,
                bytes = line.len(),
                "the journal's last line was torn (a power cut mid-write?); skipped"
            );
            return Ok(seq);
        }
        let more = visit(seq, &line);
        seq += 1;
        if !more {
            return Ok(seq);
        }
    }
}

/// The highest sequence number known to be applied (0: none).
pub(crate) fn read_checkpoint(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(CHECKPOINT))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Records that every `finished` record through `seq` is in the database. Written to a
/// temporary file and renamed, so a crash leaves the old checkpoint or the new, never half.
pub(crate) fn write_checkpoint(dir: &Path, seq: u64) -> std::io::Result<()> {
    let temporary = dir.join(format!("{CHECKPOINT}.tmp"));
    std::fs::write(&temporary, format!("{seq}\n"))?;
    std::fs::rename(temporary, dir.join(CHECKPOINT))
}

/// Appends `line` to the file `name` in `dir` (creating it), for lines moved aside.
pub(crate) fn append_aside(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// What the journal held when it was opened.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The segments found, by first sequence number.
    pub segments: Vec<u64>,
    /// The sequence number the next line gets.
    pub next_seq: u64,
    /// Calls started and never finished, with how far they got, in the order they started.
    pub unfinished: Vec<(CallStart, Progress)>,
    /// `finished` records after the checkpoint: not yet known to be in the database.
    pub unapplied: u64,
    /// Lines that did not parse (moved aside to `unreadable.jsonl`).
    pub unreadable: u64,
}

/// Reads every segment in `dir`: where the next line goes, which calls never finished, and
/// how much is waiting for the database. Unreadable lines are copied to `unreadable.jsonl`
/// beside the segments, so nothing is lost to a line the code cannot parse.
pub(crate) fn scan(dir: &Path, checkpoint: u64) -> Result<Scan, StoreError> {
    let mut scan = Scan {
        segments: list_segments(dir)?,
        next_seq: checkpoint + 1,
        ..Scan::default()
    };
    let mut started: HashMap<RequestId, (usize, CallStart, Progress)> = HashMap::new();
    let mut order = 0usize;
    let mut aside = String::new();
    for &first in &scan.segments {
        let end = read_segment(dir, first, |seq, line| {
            match parse(line) {
                ReadLine::Entry(Entry::Started(call)) => {
                    order += 1;
                    started.insert(call.request_id.clone(), (order, *call, Progress::default()));
                }
                ReadLine::Entry(Entry::Progress {
                    request_id,
                    progress,
                }) => {
                    if let Some((_, _, latest)) = started.get_mut(&request_id) {
                        *latest = progress;
                    }
                }
                ReadLine::Entry(Entry::Finished(record)) => {
                    started.remove(&record.request_id);
                    if seq > checkpoint {
                        scan.unapplied += 1;
                    }
                }
                ReadLine::Unreadable(error) => {
                    scan.unreadable += 1;
                    tracing::error!(segment = first, seq, %error, "unreadable journal line; copied to unreadable.jsonl");
                    let text = String::from_utf8_lossy(line);
                    aside.push_str(&format!(
                        "{{\"seq\":{seq},\"error\":{},\"line\":{}}}\n",
                        serde_json::Value::from(error),
                        serde_json::Value::from(text.trim_end())
                    ));
                }
            }
            true
        })?;
        scan.next_seq = scan.next_seq.max(end);
    }
    if !aside.is_empty() {
        append_aside(&dir.join("unreadable.jsonl"), &aside)?;
    }
    let mut unfinished: Vec<(usize, CallStart, Progress)> = started.into_values().collect();
    unfinished.sort_by_key(|(order, _, _)| *order);
    scan.unfinished = unfinished
        .into_iter()
        .map(|(_, call, progress)| (call, progress))
        .collect();
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> CallStart {
        let record = crate::fixture::usage_record(id);
        CallStart {
            request_id: record.request_id,
            client_request_id: None,
            timestamp: record.timestamp,
            user_email_hash: record.user_email_hash,
            specialist_id: record.specialist_id,
            specialist_name: record.specialist_name,
            provider: record.provider,
            model: record.model,
            streamed: true,
            end_user: Some("u-1".into()),
            api_key: Some("ci-runner".into()),
            door: Door::Messages,
            prompt_tokens: 1000,
            rates: Some(Rates {
                input_per_1m: Usd::from_nanos(2_500_000_000),
                output_per_1m: Usd::from_nanos(10_000_000_000),
            }),
        }
    }

    fn write_lines(dir: &Path, first: u64, lines: &[Line<'_>]) {
        let mut file = create_segment(dir, first).unwrap();
        for line in lines {
            file.write_all(&encode(line).unwrap()).unwrap();
        }
    }

    #[test]
    fn an_interrupted_call_bills_its_prompt_and_what_it_delivered_at_its_own_rates() {
        let row = call("r-1").interrupted(Progress {
            delivered_chars: 401,
            first_token_ms: Some(120.0),
        });
        assert_eq!(row.error_code, Some(ErrorCode::Interrupted));
        assert_eq!(row.usage, TokenUsage::estimated(1000, 101));
        // 1000 × $2.50/M + 101 × $10/M = $0.0025 + $0.00101.
        assert_eq!(row.cost, Usd::from_nanos(3_510_000));
        assert!(row.pricing_known);
        assert_eq!(row.time_to_first_token, Some(Duration::from_millis(120)));
        assert_eq!(row.end_user.as_deref(), Some("u-1"));
        assert_eq!(row.api_key.as_deref(), Some("ci-runner"));
        let unpriced = CallStart {
            rates: None,
            ..call("r-2")
        }
        .interrupted(Progress::default());
        assert_eq!((unpriced.cost, unpriced.pricing_known), (Usd::ZERO, false));
        assert_eq!(unpriced.usage.output_tokens, 0);
    }

    #[test]
    fn a_scan_finds_unfinished_calls_their_progress_and_the_unapplied_rows() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c, d] = ["a", "b", "c", "d"].map(call);
        let [row_a, row_c] = ["a", "c"].map(crate::fixture::usage_record);
        let progress = |delivered_chars, first_token_ms| Progress {
            delivered_chars,
            first_token_ms,
        };
        write_lines(
            dir.path(),
            1,
            &[
                Line::Started(&a),
                Line::Started(&b),
                Line::Finished(&row_a),
                Line::Progress {
                    request_id: &b.request_id,
                    progress: progress(40, None),
                },
            ],
        );
        write_lines(
            dir.path(),
            5,
            &[
                Line::Started(&c),
                Line::Progress {
                    request_id: &b.request_id,
                    progress: progress(80, Some(5.0)),
                },
                Line::Finished(&row_c),
                Line::Started(&d),
            ],
        );
        // A torn last line: not counted, not a record.
        let mut file = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 5))
            .unwrap();
        file.write_all(b"{\"finished\":{\"request_").unwrap();

        let scan = scan(dir.path(), 3).unwrap();
        assert_eq!(scan.segments, vec![1, 5]);
        assert_eq!(scan.next_seq, 9);
        assert_eq!(
            scan.unapplied, 1,
            "a (seq 3) is within the checkpoint, c (seq 7) not"
        );
        let unfinished: Vec<(&str, u64)> = scan
            .unfinished
            .iter()
            .map(|(call, progress)| (call.request_id.as_str(), progress.delivered_chars))
            .collect();
        assert_eq!(unfinished, vec![("b", 80), ("d", 0)]);
        assert_eq!(scan.unreadable, 0);
    }

    #[test]
    fn an_unreadable_line_keeps_its_number_and_is_copied_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(segment_path(dir.path(), 10), "not json\n").unwrap();
        write_lines(dir.path(), 11, &[Line::Started(&call("x"))]);
        let scan = scan(dir.path(), 0).unwrap();
        assert_eq!(scan.unreadable, 1);
        assert_eq!(scan.next_seq, 12);
        let aside = std::fs::read_to_string(dir.path().join("unreadable.jsonl")).unwrap();
        assert!(aside.contains("\"seq\":10"), "{aside}");
    }

    #[test]
    fn a_new_segment_never_appends_to_a_torn_first_line_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let torn = b"{\"finished\":{\"request_";
        std::fs::write(segment_path(dir.path(), 7), torn).unwrap();
        write_lines(dir.path(), 7, &[Line::Started(&call("x"))]);
        let scan = scan(dir.path(), 0).unwrap();
        assert_eq!(scan.unreadable, 0);
        assert_eq!(scan.next_seq, 8);
        assert_eq!(scan.unfinished.len(), 1);
        let aside = dir.path().join(format!("journal-{:020}.log.torn", 7));
        let kept = std::fs::read(aside).unwrap();
        assert_eq!(kept, torn, "the fragment is kept aside");

        // A segment holding whole lines is appended to as before.
        write_lines(dir.path(), 7, &[Line::Started(&call("y"))]);
        assert_eq!(lines_in(dir.path(), 7), 2);
    }

    #[test]
    fn a_finished_line_from_before_attempts_were_counted_reads_as_one_attempt() {
        let record = crate::fixture::usage_record("old-1");
        let line = String::from_utf8(encode(&Line::Finished(&record)).unwrap()).unwrap();
        let old = line.replace(",\"attempts\":1", "");
        assert_ne!(old, line, "the line carried the count");
        let ReadLine::Entry(Entry::Finished(back)) = parse(old.as_bytes()) else {
            panic!("an old line still reads: {old}");
        };
        assert_eq!(back.attempts, 1);
        assert!(back.attempt_details.is_empty());
        assert_eq!(*back, record);
    }

    #[test]
    fn lines_from_before_api_keys_were_recorded_read_as_no_key() {
        let record = UsageRecord {
            api_key: None,
            ..crate::fixture::usage_record("old-2")
        };
        let line = String::from_utf8(encode(&Line::Finished(&record)).unwrap()).unwrap();
        let old = line.replace(",\"api_key\":null", "");
        assert_ne!(old, line, "the line carried the key");
        let ReadLine::Entry(Entry::Finished(back)) = parse(old.as_bytes()) else {
            panic!("an old finished line still reads: {old}");
        };
        assert_eq!(*back, record);

        let start = CallStart {
            api_key: None,
            ..call("old-3")
        };
        let line = String::from_utf8(encode(&Line::Started(&start)).unwrap()).unwrap();
        let old = line.replace(",\"api_key\":null", "");
        assert_ne!(old, line, "the line carried the key");
        let ReadLine::Entry(Entry::Started(back)) = parse(old.as_bytes()) else {
            panic!("an old started line still reads: {old}");
        };
        assert_eq!(*back, start);
    }

    #[test]
    fn lines_from_before_doors_were_recorded_read_as_the_native_door() {
        let record = UsageRecord {
            door: Door::Native,
            ..crate::fixture::usage_record("old-4")
        };
        let line = String::from_utf8(encode(&Line::Finished(&record)).unwrap()).unwrap();
        let old = line.replace(",\"door\":\"native\"", "");
        assert_ne!(old, line, "the line carried the door");
        let ReadLine::Entry(Entry::Finished(back)) = parse(old.as_bytes()) else {
            panic!("an old finished line still reads: {old}");
        };
        assert_eq!(*back, record);

        let start = CallStart {
            door: Door::Native,
            ..call("old-5")
        };
        let line = String::from_utf8(encode(&Line::Started(&start)).unwrap()).unwrap();
        let old = line.replace(",\"door\":\"native\"", "");
        assert_ne!(old, line, "the line carried the door");
        let ReadLine::Entry(Entry::Started(back)) = parse(old.as_bytes()) else {
            panic!("an old started line still reads: {old}");
        };
        assert_eq!(*back, start);
    }

    fn lines_in(dir: &Path, first: u64) -> u64 {
        read_segment(dir, first, |_, _| true).unwrap() - first
    }

    mod fast_encoding {
        use proptest::prelude::*;

        use super::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z0-9 _-]{0,20}",
                any::<String>(),
                Just("Nul\u{0}Name \"quoted\" \\ back\u{7f}\u{2028}".to_owned()),
            ]
        }

        prop_compose! {
            fn a_time()(secs in -62_135_596_800i64..253_402_300_799, pick in 0u8..4, nanos in 0u32..1_000_000_000)
                -> DateTime<Utc> {
                let nanos = match pick { 0 => 0, 1 => nanos / 1_000_000 * 1_000_000, 2 => nanos / 1_000 * 1_000, _ => nanos };
                DateTime::from_timestamp(secs, nanos).unwrap()
            }
        }

        prop_compose! {
            fn a_record()(id in "[A-Za-z0-9._:-]{1,40}", client in proptest::option::of("[A-Za-z0-9._:-]{1,40}"),
                time in a_time(), hash in any::<bool>(), name in text(), model in text(),
                end_user in proptest::option::of(text()), api_key in proptest::option::of(text()), door in 0usize..Door::ALL.len(), counts in any::<[u32; 5]>(),
                flags in any::<[bool; 3]>(), cost in any::<u64>(), latency in any::<(u64, u32)>(),
                ttft in proptest::option::of(any::<(u64, u32)>()), code in proptest::option::of(0usize..ErrorCode::ALL.len()),
                attempts in any::<u16>(), details in proptest::collection::vec(an_attempt(), 0..4))
                -> UsageRecord {
                let duration = |(secs, nanos): (u64, u32)| Duration::new(secs, nanos % 1_000_000_000);
                UsageRecord {
                    request_id: RequestId::parse(&id).unwrap(),
                    client_request_id: client.map(|c| RequestId::parse(&c).unwrap()),
                    timestamp: time,
                    user_email_hash: hash.then(|| EmailHash::of_email("ada@example.com")),
                    specialist_name: name,
                    model,
                    end_user,
                    api_key,
                    door: Door::ALL[door],
                    usage: TokenUsage {
                        input_tokens: counts[0],
                        output_tokens: counts[1],
                        cached_input_tokens: counts[2],
                        cache_write_tokens: counts[3],
                        reasoning_tokens: counts[4],
                        is_estimated: flags[0],
                    },
                    cost: Usd::from_nanos(cost),
                    pricing_known: flags[1],
                    streamed: flags[2],
                    latency: duration(latency),
                    time_to_first_token: ttft.map(duration),
                    error_code: code.map(|i| ErrorCode::ALL[i]),
                    attempts,
                    attempt_details: details,
                    ..crate::fixture::usage_record("x")
                }
            }
        }

        prop_compose! {
            fn an_attempt()(provider in 0usize..ProviderKind::ALL.len(), model in text(),
                base_url in proptest::option::of(text()), code in proptest::option::of(0usize..ErrorCode::ALL.len()),
                counts in any::<[u32; 5]>(), flags in any::<[bool; 3]>(), cost in any::<u64>(),
                latency in any::<(u64, u32)>())
                -> AttemptRecord {
                AttemptRecord {
                    provider: ProviderKind::ALL[provider],
                    model,
                    base_url,
                    error_code: code.map(|i| ErrorCode::ALL[i]),
                    usage: TokenUsage {
                        input_tokens: counts[0],
                        output_tokens: counts[1],
                        cached_input_tokens: counts[2],
                        cache_write_tokens: counts[3],
                        reasoning_tokens: counts[4],
                        is_estimated: flags[0],
                    },
                    cost: Usd::from_nanos(cost),
                    pricing_known: flags[1],
                    latency: Duration::new(latency.0, latency.1 % 1_000_000_000),
                    continuation: flags[2],
                }
            }
        }

        fn serde_bytes(line: &Line<'_>) -> Vec<u8> {
            let mut bytes = serde_json::to_vec(line).unwrap();
            bytes.push(b'\n');
            bytes
        }

        proptest! {
            #[test]
            fn a_finished_line_is_what_serde_writes(record in a_record()) {
                let line = Line::Finished(&record);
                let encoded = encode(&line).unwrap();
                prop_assert_eq!(
                    String::from_utf8(encoded.clone()).unwrap(),
                    String::from_utf8(serde_bytes(&line)).unwrap()
                );
                let ReadLine::Entry(Entry::Finished(back)) = parse(&encoded) else {
                    panic!("reads back as a finished line");
                };
                prop_assert_eq!(*back, record);
            }

            #[test]
            fn a_started_line_is_what_serde_writes(record in a_record(), prompt in any::<u32>(),
                rates in proptest::option::of(any::<(u64, u64)>())) {
                let call = CallStart {
                    request_id: record.request_id,
                    client_request_id: record.client_request_id,
                    timestamp: record.timestamp,
                    user_email_hash: record.user_email_hash,
                    specialist_id: record.specialist_id,
                    specialist_name: record.specialist_name,
                    provider: record.provider,
                    model: record.model,
                    streamed: record.streamed,
                    end_user: record.end_user,
                    api_key: record.api_key,
                    door: record.door,
                    prompt_tokens: prompt,
                    rates: rates.map(|(input, output)| Rates {
                        input_per_1m: Usd::from_nanos(input),
                        output_per_1m: Usd::from_nanos(output),
                    }),
                };
                let line = Line::Started(&call);
                let encoded = encode(&line).unwrap();
                prop_assert_eq!(
                    String::from_utf8(encoded.clone()).unwrap(),
                    String::from_utf8(serde_bytes(&line)).unwrap()
                );
                let ReadLine::Entry(Entry::Started(back)) = parse(&encoded) else {
                    panic!("reads back as a started line");
                };
                prop_assert_eq!(*back, call);
            }
        }
    }

    #[test]
    fn the_checkpoint_round_trips_and_defaults_to_nothing_applied() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_checkpoint(dir.path()), 0);
        write_checkpoint(dir.path(), 41).unwrap();
        write_checkpoint(dir.path(), 42).unwrap();
        assert_eq!(read_checkpoint(dir.path()), 42);
    }

    #[test]
    fn segments_are_listed_in_order_and_strangers_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for first in [30, 2, 100] {
            create_segment(dir.path(), first).unwrap();
        }
        std::fs::write(dir.path().join("journal-x.log"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2, 30, 100]);
        assert!(
            list_segments(&dir.path().join("absent"))
                .unwrap()
                .is_empty()
        );
    }
}
