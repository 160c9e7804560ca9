//! The HTTP side every provider shares: the pooled clients, sending with deadlines and
//! retries, reading a JSON body, and reading an SSE stream with an idle-gap deadline.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use core_domain::{ProviderKind, TokenUsage};
use futures_util::{Stream, stream};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::config::CallLimits;
use crate::keys::{KeyPool, Lease};
use crate::sse::{SseDecoder, SseEvent};
use crate::upstream_error::{classify, redact, retry_after, scrub};
use crate::{ProviderError, TimeoutPhase};

/// The pooled clients every provider shares.
///
/// `trusted` calls URLs ops configured. `guarded` calls base URLs that came from a specialist
/// (set by an admin over the API): its resolver refuses names that resolve only to loopback,
/// private, link-local or metadata addresses, so a public-looking name cannot be pointed at
/// the inside of the network.
///
/// Each thread gets its own pair (its own connection pool). A server runs one async runtime
/// per worker thread, and a pooled connection is driven by a task on the runtime that opened
/// it: shared across workers, a request on one thread would wait for another thread to do its
/// I/O, which showed as a millisecond of tail latency under load.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    id: usize,
    connect_timeout: Duration,
    /// Built once up front, so configuration errors surface at start; also the fallback.
    prototype: (reqwest::Client, reqwest::Client),
}

thread_local! {
    /// This thread's clients, by transport id: (trusted, guarded).
    static CLIENTS: RefCell<HashMap<usize, (reqwest::Client, reqwest::Client)>> =
        RefCell::new(HashMap::new());
}

static NEXT_TRANSPORT_ID: AtomicUsize = AtomicUsize::new(0);

impl Transport {
    pub(crate) fn new(connect_timeout: Duration) -> Result<Self, ProviderError> {
        // reqwest is built without a default TLS crypto provider (the default one needs cmake
        // and a C toolchain); use ring. Installing twice is harmless, so ignore "already set".
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            id: NEXT_TRANSPORT_ID.fetch_add(1, Ordering::Relaxed),
            connect_timeout,
            prototype: Self::build(connect_timeout).map_err(|e| ProviderError::Setup {
                message: e.to_string(),
            })?,
        })
    }

    fn build(
        connect_timeout: Duration,
    ) -> Result<(reqwest::Client, reqwest::Client), reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                // An API endpoint has no business redirecting a POST. Following one would
                // re-send the prompt and the key headers reqwest does not strip (x-api-key,
                // x-goog-api-key) to wherever the Location points, and a redirect to a
                // literal internal address would slip past the guarded resolver.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
        };
        Ok((
            builder().build()?,
            builder()
                .dns_resolver(std::sync::Arc::new(PublicOnlyResolver))
                .build()?,
        ))
    }

    /// This thread's client (a cheap handle to its pool).
    pub(crate) fn client(&self, trusted: bool) -> reqwest::Client {
        let pick = |(t, g): &(reqwest::Client, reqwest::Client)| {
            if trusted { t.clone() } else { g.clone() }
        };
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some(pair) = clients.get(&self.id) {
                return pick(pair);
            }
            // Built successfully once already, so this only fails if the system changed.
            let pair = Self::build(self.connect_timeout).unwrap_or_else(|_| self.prototype.clone());
            let client = pick(&pair);
            clients.insert(self.id, pair);
            client
        })
    }
}

/// A header value for an API key, marked sensitive so that no `Debug` output or HTTP/2 header
/// table ever shows it.
pub(crate) fn secret_header(key: &secrecy::SecretString) -> reqwest::header::HeaderValue {
    use secrecy::ExposeSecret;
    let mut value = reqwest::header::HeaderValue::from_str(key.expose_secret())
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

/// Resolves names with the system resolver and keeps only public addresses.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| !core_domain::is_internal_ip(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "refusing to connect: {host} resolves only to internal addresses"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// How a call waits before it retries. [`TokioSleeper`] is the real one; a test passes its own
/// to [`ProviderRegistry::from_config_with_sleeper`](crate::ProviderRegistry::from_config_with_sleeper)
/// to see the backoff a call chose without spending that time. Deadlines and timeouts keep the
/// real clock: they bound real I/O.
pub trait Sleeper: Send + Sync + std::fmt::Debug {
    /// Resolves once the call may retry, `wait` from now.
    fn sleep(&self, wait: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Waits on Tokio's timer: what every server uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, wait: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(wait))
    }
}

/// One call's deadlines and retry policy, fixed when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    limits: CallLimits,
    deadline: Instant,
    /// One HTTP request only: no retries, no other key (a router retries elsewhere).
    single_attempt: bool,
}

impl Call {
    /// The call for `request`: its deadline is the upstream's total timeout from now, or the
    /// request's own deadline when that is sooner.
    pub(crate) fn start(limits: CallLimits, request: &crate::ProviderRequest) -> Self {
        Self::with(limits, request.single_attempt, request.deadline)
    }

    /// The call for an embedding `request`, as [`Call::start`].
    pub(crate) fn embedding(limits: CallLimits, request: &crate::EmbeddingRequest) -> Self {
        Self::with(limits, request.single_attempt, request.deadline)
    }

    fn with(limits: CallLimits, single_attempt: bool, asked: Option<std::time::Instant>) -> Self {
        let mut deadline = instant_after(limits.total);
        if let Some(asked) = asked {
            deadline = deadline.min(Instant::from_std(asked));
        }
        Self {
            limits,
            deadline,
            single_attempt,
        }
    }

    /// Runs `future` until `phase_limit` from now or the call's deadline, whichever is first,
    /// reporting which one was missed.
    async fn within<T>(
        &self,
        phase_limit: Duration,
        phase: TimeoutPhase,
        future: impl Future<Output = T>,
    ) -> Result<T, ProviderError> {
        let phase_deadline = instant_after(phase_limit);
        let (deadline, missed) = if phase_deadline < self.deadline {
            (phase_deadline, phase)
        } else {
            (self.deadline, TimeoutPhase::Total)
        };
        tokio::time::timeout_at(deadline, future)
            .await
            .map_err(|_| ProviderError::Timeout { phase: missed })
    }
}

/// Now plus `wait`, without the panic `Instant + Duration` has on overflow: configured
/// timeouts are arbitrary `u64` milliseconds. Anything past 30 years is as good as never.
fn instant_after(wait: Duration) -> Instant {
    const NEVER: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    let now = Instant::now();
    now.checked_add(wait.min(NEVER)).unwrap_or(now)
}

/// Sends the request `build` makes (with the key it is given) until it gets a success status,
/// retrying what [`ProviderError::is_retryable`] allows (connect failures, 429s and 5xx) with
/// exponential backoff and jitter (or the upstream's `Retry-After`), within the call's
/// deadline. Nothing has been passed to the caller yet, so retrying is safe.
///
/// Each request takes its key from `pool` and reports how it went. A 429 or 401/403 moves to
/// the next usable key at once, without backoff; with none left, the call carries on as with
/// one key (a retry sends the same key again). When no key is usable at the start, nothing is
/// sent: [`ProviderError::Unavailable`].
pub(crate) async fn send(
    call: &Call,
    provider: ProviderKind,
    pool: &KeyPool,
    secrets: &[&str],
    build: impl Fn(Option<&secrecy::SecretString>) -> RequestBuilder,
) -> Result<Response, ProviderError> {
    let mut lease = pool
        .pick(std::time::Instant::now())
        .map_err(|none| pool.unavailable(&none))?;
    let mut attempt: u32 = 0;
    let mut other_keys_tried: usize = 0;
    loop {
        let (error, asked_wait) = match attempt_once(call, provider, secrets, &build, &lease).await
        {
            Ok(response) => {
                lease.succeeded();
                return Ok(response);
            }
            Err(failure) => failure,
        };
        let now = std::time::Instant::now();
        let used = lease.index();
        let moves_key = match &error {
            ProviderError::RateLimited { .. } => {
                lease.rate_limited(asked_wait, now);
                true
            }
            ProviderError::Upstream {
                status: Some(429), ..
            } => {
                lease.rate_limited(asked_wait, now);
                true
            }
            ProviderError::AuthFailed { .. } => {
                lease.auth_failed(now);
                true
            }
            // The whole call's deadline is ours (perhaps a router's short one), not the
            // endpoint's failure: it proves nothing either way.
            ProviderError::Timeout {
                phase: TimeoutPhase::Total,
            } => {
                drop(lease);
                false
            }
            ProviderError::Timeout { .. } | ProviderError::Unreachable { .. } => {
                lease.failed(now);
                false
            }
            ProviderError::Upstream { status, .. }
                if status.is_none_or(|s| (500..600).contains(&s)) =>
            {
                lease.failed(now);
                false
            }
            // A request error proves nothing about the key or the endpoint.
            _ => {
                drop(lease);
                false
            }
        };
        if call.single_attempt {
            return Err(error);
        }
        if moves_key
            && other_keys_tried + 1 < pool.len()
            && let Ok(next) = pool.pick(now)
        {
            tracing::debug!(error = %error, "moving to the endpoint's next key");
            other_keys_tried += 1;
            lease = next;
            continue;
        }
        if !error.is_retryable() || attempt >= call.limits.max_retries {
            return Err(error);
        }
        let wait = match asked_wait {
            // The upstream asked for longer than we will wait: give its answer now.
            Some(wait) if wait > call.limits.max_delay => return Err(error),
            Some(wait) => wait,
            None => backoff(call.limits.base_delay, call.limits.max_delay, attempt),
        };
        if wait >= call.deadline.saturating_duration_since(Instant::now()) {
            return Err(error);
        }
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(attempt, wait_ms, error = %error, "retrying upstream call");
        call.limits.sleeper.sleep(wait).await;
        attempt += 1;
        lease = pool
            .pick(std::time::Instant::now())
            .unwrap_or_else(|_| pool.again(used));
    }
}

/// One HTTP request with `lease`'s key: the response when its status is a success, else the
/// classified error and the `Retry-After` the upstream asked for.
async fn attempt_once(
    call: &Call,
    provider: ProviderKind,
    secrets: &[&str],
    build: &impl Fn(Option<&secrecy::SecretString>) -> RequestBuilder,
    lease: &Lease<'_>,
) -> Result<Response, (ProviderError, Option<Duration>)> {
    let sent = call
        .within(
            call.limits.first_byte,
            TimeoutPhase::FirstByte,
            build(lease.key()).send(),
        )
        .await
        .map_err(|timeout| (timeout, None))?;
    match sent {
        Ok(response) if response.status().is_success() => Ok(response),
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body = call
                .within(
                    call.limits.first_byte,
                    TimeoutPhase::FirstByte,
                    read_capped(response, call.limits.max_response_bytes),
                )
                .await
                .map_err(|timeout| (timeout, None))?;
            let error = match body {
                Ok(body) => classify(provider, status, &headers, &body, secrets),
                Err(BodyError::TooLarge) => too_large(Some(status.as_u16()), call),
                // The status says what happened; a body cut short only loses the details.
                Err(BodyError::Broken(_)) => classify(provider, status, &headers, &[], secrets),
            };
            if let ProviderError::AuthFailed {
                provider,
                status,
                message,
            } = &error
            {
                // The one place the upstream's words about our credentials go (redacted):
                // clients only learn that the credentials were refused.
                tracing::warn!(%provider, status, upstream_message = %message, "the upstream refused the configured credentials");
            }
            Err((error, retry_after(&headers)))
        }
        Err(e) => Err((transport_error(&e, secrets), None)),
    }
}

/// Classifies a failure to get a response. Only a failure to connect is retryable (see
/// [`ProviderError::is_retryable`]): once the request may have reached the model, a retry
/// could be billed twice.
fn transport_error(e: &reqwest::Error, secrets: &[&str]) -> ProviderError {
    if e.is_connect() {
        if e.is_timeout() {
            return ProviderError::Timeout {
                phase: TimeoutPhase::Connect,
            };
        }
        return ProviderError::Unreachable {
            message: redact(&format!("cannot connect: {}", error_chain(e)), secrets),
        };
    }
    ProviderError::Upstream {
        status: None,
        message: redact(&format!("request failed: {}", error_chain(e)), secrets),
    }
}

/// The error and its causes on one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `base × 2^attempt`, capped at `max`, with full jitter in its upper half so that many
/// callers retrying together spread out.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt)).min(max);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(attempt);
    let fraction = 0.5 + (hasher.finish() % 1000) as f64 / 2000.0;
    exp.mul_f64(fraction)
}

/// Why a body could not be read whole.
enum BodyError {
    /// It passed `providers.max_response_bytes`.
    TooLarge,
    /// The connection failed part way.
    Broken(reqwest::Error),
}

/// The whole body, read piece by piece and abandoned as soon as it passes `limit` bytes (a
/// `Content-Length` over the limit is refused before reading anything).
async fn read_capped(mut response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let announced = response
        .content_length()
        .map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if announced.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge);
    }
    // Trust the announced length for the first allocation only up to a modest size.
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(64 * 1024));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Broken)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(status: Option<u16>, call: &Call) -> ProviderError {
    ProviderError::Upstream {
        status,
        message: format!(
            "response too large: the upstream's body exceeded providers.max_response_bytes \
             ({} bytes)",
            call.limits.max_response_bytes
        ),
    }
}

/// Reads and parses a whole JSON body within the call's deadline and size bound. A body that
/// does not parse as `T` is [`ProviderError::BadResponse`], carrying what `reported_usage`
/// still finds in it: the upstream answered, so the call is billed as far as it can be counted.
pub(crate) async fn read_json<T: DeserializeOwned>(
    call: &Call,
    response: Response,
    reported_usage: fn(&[u8]) -> Option<TokenUsage>,
) -> Result<T, ProviderError> {
    let remaining = call.deadline.saturating_duration_since(Instant::now());
    // The status was a success: the model did the work, so a body that cannot be read whole
    // fails without a status, as a failure once the request reached the model (billed for the
    // prompt, never retried).
    let body = call
        .within(
            remaining,
            TimeoutPhase::Total,
            read_capped(response, call.limits.max_response_bytes),
        )
        .await?
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(None, call),
            BodyError::Broken(e) => ProviderError::Upstream {
                status: None,
                message: format!("the response broke off: {}", error_chain(&e)),
            },
        })?;
    serde_json::from_slice(&body).map_err(|e| ProviderError::BadResponse {
        // serde quotes a wrongly typed string whole, so the message is bounded.
        message: scrub(&format!("malformed response from the upstream: {e}"), &[]),
        usage: reported_usage(&body),
    })
}

/// Where [`sse_events`] is: reading, with events decoded but not yet handed on.
struct Reading {
    response: Response,
    decoder: SseDecoder,
    decoded: VecDeque<SseEvent>,
}

/// The SSE events of a streamed response, each within the idle gap and the call's deadline,
/// none larger than `providers.max_event_bytes`. The stream ends after its first error.
/// Dropping it drops the connection.
pub(crate) fn sse_events(
    call: Call,
    response: Response,
) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static {
    let reading = Reading {
        response,
        decoder: SseDecoder::new(call.limits.max_event_bytes),
        decoded: VecDeque::new(),
    };
    stream::unfold(Some(reading), move |state| async move {
        let mut reading = state?;
        if let Some(event) = reading.decoded.pop_front() {
            return Some((Ok(event), Some(reading)));
        }
        let next = call
            .within(
                call.limits.idle,
                TimeoutPhase::IdleGap,
                next_events(&mut reading),
            )
            .await
            .and_then(|read| read);
        match next {
            Ok(true) => {
                let event = reading.decoded.pop_front()?;
                Some((Ok(event), Some(reading)))
            }
            Ok(false) => None,
            Err(error) => Some((Err(error), None)),
        }
    })
}

/// Reads until at least one event is decoded (true) or the stream ends (false).
async fn next_events(reading: &mut Reading) -> Result<bool, ProviderError> {
    while reading.decoded.is_empty() {
        let chunk = reading
            .response
            .chunk()
            .await
            .map_err(|e| ProviderError::Upstream {
                status: None,
                message: format!("the stream broke off: {}", error_chain(&e)),
            })?;
        let Some(chunk) = chunk else {
            return Ok(false);
        };
        reading
            .decoder
            .feed(&chunk, &mut reading.decoded)
            .map_err(|e| ProviderError::Upstream {
                status: None,
                message: format!("{e} (providers.max_event_bytes)"),
            })?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_in_the_upper_half() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 0..6 {
            let full = base.saturating_mul(2u32.pow(attempt)).min(max);
            let wait = backoff(base, max, attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}
