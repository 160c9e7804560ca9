//! One call over an ordered list of destinations: fallbacks, retries and streams that survive
//! their upstream dying.
//!
//! A [`Route`] is where a call may go, in order: the specialist's own provider and model first,
//! then its fallbacks. The [`Router`] makes attempts — one HTTP request each
//! ([`ProviderRequest::single_attempt`]) — until one answers, the failure is the caller's
//! (a 400 for our request is not cured by asking elsewhere), `routing.max_attempts` are spent or
//! the call's deadline passes.
//!
//! What moves a call on:
//! - a failure before any of the answer reached the caller — no connection, a timeout (first
//!   byte or total), 429, 5xx (Anthropic's 529 and Gemini's 503 included), credentials refused —
//!   moves to the next destination at once;
//! - a destination that cannot be called now — not configured, or every key resting
//!   ([`ChatProvider::check_available`]) — is passed over without an attempt;
//! - a key refused (401/403) or rate limited (429) while its endpoint has another usable key is
//!   tried again at once, on that other key (the provider picks it);
//! - on the last destination, a failure that proves the model did no work
//!   ([`ProviderError::is_retryable`]) is retried as its provider's [`RetryPolicy`] allows
//!   (`max_retries`, after the upstream's `Retry-After` or a jittered backoff) — unless that
//!   wait outlasts the provider's `retry_max_delay_ms` or the call's deadline.
//!
//! A stream that breaks after some of its text reached the caller is *continued*: the next
//! destination that can continue an answer ([`ChatProvider::can_continue`], assistant prefill)
//! is asked with the text delivered so far as the start of its answer, and its text follows on
//! the same stream, so the caller sees one answer with one end. Where nothing can continue (no
//! such destination, a tool call under way, `continue_streams` off), the stream ends with its
//! failure — never with a clean end.
//!
//! Every attempt is reported ([`AttemptEvent`]) as it starts and ends, with what it consumed, so
//! the caller can bill each one; this module prices nothing and records nothing.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_domain::{ChatMessage, Completion, ErrorCode, ProviderKind, StreamEvent, TokenUsage};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::transport::backoff;
use crate::{
    ChatProvider, EmbeddingRequest, Embeddings, EventStream, ProviderError, ProviderRequest,
    Sleeper, StreamFailure,
};

/// The `[routing]` section: how far one call may go to get an answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Upstream requests one call may make in all, over every destination and key (default 3:
    /// the first and two more).
    pub max_attempts: u32,
    /// The whole call's deadline in milliseconds, attempts and waits included (default 600000).
    /// Each attempt also keeps its provider's own `total_timeout_ms`.
    pub deadline_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            deadline_ms: 600_000,
        }
    }
}

/// Where an attempt goes: a provider, a model, and for the `openai` provider maybe a server of
/// its own. A specialist's persona (prompt, parameters) goes with the call to every one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The provider family.
    pub provider: ProviderKind,
    /// The upstream model name.
    pub model: String,
    /// An OpenAI-compatible server instead of the provider's configured endpoint.
    pub base_url: Option<String>,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// Where one call may go, in order, each with its provider — or why that provider cannot be
/// called (not configured), found when the route was made.
#[derive(Debug, Clone)]
pub struct Route {
    stops: Arc<[Stop]>,
}

#[derive(Debug)]
struct Stop {
    destination: Arc<Destination>,
    provider: Result<Arc<dyn ChatProvider>, ProviderError>,
}

impl Route {
    /// A route to `first` (the specialist's own destination), then to `fallbacks` in order.
    pub fn new(
        first: (Destination, Result<Arc<dyn ChatProvider>, ProviderError>),
        fallbacks: impl IntoIterator<Item = (Destination, Result<Arc<dyn ChatProvider>, ProviderError>)>,
    ) -> Self {
        let stops: Arc<[Stop]> = std::iter::once(first)
            .chain(fallbacks)
            .map(|(destination, provider)| Stop {
                destination: Arc::new(destination),
                provider,
            })
            .collect();
        Self { stops }
    }

    /// The first destination: the specialist's own.
    pub fn primary(&self) -> &Arc<Destination> {
        &self.stops[0].destination
    }

    /// The first destination's provider, or why it cannot be called.
    pub fn primary_provider(&self) -> &Result<Arc<dyn ChatProvider>, ProviderError> {
        &self.stops[0].provider
    }

    /// Why no destination of this route can be called at all (none is configured): the
    /// first one's reason. `None` when at least one has its provider.
    pub fn uncallable(&self) -> Option<ProviderError> {
        if self.stops.iter().any(|stop| stop.provider.is_ok()) {
            return None;
        }
        self.stops[0].provider.clone().err()
    }

    /// Every destination, in order.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.stops.iter().map(|stop| stop.destination.as_ref())
    }

    /// Every destination that can be called, with its place in the route (0: the
    /// specialist's own).
    pub fn callable(&self) -> impl Iterator<Item = (usize, &Destination)> {
        self.stops
            .iter()
            .enumerate()
            .filter(|(_, stop)| stop.provider.is_ok())
            .map(|(index, stop)| (index, stop.destination.as_ref()))
    }

    /// This route without the destinations `keep` refuses (the primary always stays: what it
    /// cannot do is the caller's error to see).
    pub fn retain_fallbacks(
        &self,
        mut keep: impl FnMut(&dyn ChatProvider, &Destination) -> bool,
    ) -> Self {
        let stops: Vec<Stop> = self
            .stops
            .iter()
            .enumerate()
            .filter(|(index, stop)| {
                *index == 0
                    || match &stop.provider {
                        Ok(provider) => keep(provider.as_ref(), &stop.destination),
                        Err(_) => true,
                    }
            })
            .map(|(_, stop)| Stop {
                destination: Arc::clone(&stop.destination),
                provider: stop.provider.clone(),
            })
            .collect();
        Self {
            stops: stops.into(),
        }
    }
}

/// An attempt beginning: one request to one destination.
#[derive(Debug, Clone)]
pub struct AttemptStart {
    /// The destination's position in the route (0 is the specialist's own).
    pub index: usize,
    /// Where the request goes.
    pub destination: Arc<Destination>,
    /// The request's estimated prompt tokens (a continuation's prompt holds the text so far).
    pub prompt_estimate: u32,
    /// True when it continues an answer an earlier attempt began.
    pub continuation: bool,
}

/// An attempt's end: how it went and what it consumed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    /// The destination's position in the route (0 is the specialist's own).
    pub index: usize,
    /// Where the request went.
    pub destination: Arc<Destination>,
    /// `None` when this attempt gave the answer (or, for a stream, its end), else why it failed.
    pub error: Option<ErrorCode>,
    /// What it consumed: the upstream's counts, else estimates (flagged).
    pub usage: TokenUsage,
    /// From the attempt's start to its end.
    pub latency: Duration,
    /// True when it continued an answer an earlier attempt began.
    pub continuation: bool,
}

/// What happens to a routed call's attempts, as it happens.
#[derive(Debug, Clone)]
pub enum AttemptEvent {
    /// An attempt began.
    Started(AttemptStart),
    /// That attempt ended.
    Ended(AttemptReport),
}

/// What a routed stream yields: the answer's events, and word of its attempts in between.
#[derive(Debug, Clone)]
pub enum RoutedEvent {
    /// An attempt began or ended.
    Attempt(AttemptEvent),
    /// The next piece of the answer. `Finished` comes once, at the end, with the usage of every
    /// attempt together.
    Answer(StreamEvent),
}

/// A routed stream: [`RoutedEvent`]s, ending after `Finished` or one [`StreamFailure`] (whose
/// usage is every attempt's together). Dropping it drops the upstream connection.
pub type RoutedStream = Pin<Box<dyn Stream<Item = Result<RoutedEvent, StreamFailure>> + Send>>;

/// Makes calls over routes, within the policy.
#[derive(Debug, Clone, Copy)]
pub struct Router {
    max_attempts: NonZeroU32,
    deadline: Duration,
    sleeper: &'static dyn Sleeper,
}

impl Router {
    /// A router following `config`, waiting between retries on `sleeper`. `max_attempts` of 0
    /// is taken as 1 (configuration validation refuses it before this).
    pub fn new(config: &RoutingConfig, sleeper: &'static dyn Sleeper) -> Self {
        Self {
            max_attempts: NonZeroU32::new(config.max_attempts).unwrap_or(NonZeroU32::MIN),
            deadline: Duration::from_millis(config.deadline_ms),
            sleeper,
        }
    }

    /// The whole answer from the first destination that gives one, with the destination that
    /// gave it; its usage is every attempt's together. `prompt_estimate` is `request`'s
    /// (the caller has it already; the same for every destination). `observe` hears of every attempt as it
    /// starts and ends (also when this future is dropped part way: what it heard by then is all
    /// that happened).
    pub async fn complete(
        &self,
        route: &Route,
        request: ProviderRequest,
        prompt_estimate: u32,
        observe: &mut (dyn FnMut(AttemptEvent) + Send),
    ) -> Result<(Completion, Arc<Destination>), ProviderError> {
        self.whole(route, request, prompt_estimate, observe).await
    }

    /// The vectors from the first destination that gives them, with the destination that
    /// gave them, as [`Router::complete`] makes a chat call (the same attempts, fallbacks,
    /// retries and deadline); `input_estimate` is `request`'s.
    pub async fn embed(
        &self,
        route: &Route,
        request: EmbeddingRequest,
        input_estimate: u32,
        observe: &mut (dyn FnMut(AttemptEvent) + Send),
    ) -> Result<(Embeddings, Arc<Destination>), ProviderError> {
        self.whole(route, request, input_estimate, observe).await
    }

    /// One whole answer to `request` along `route`: the attempt loop both kinds of call share.
    async fn whole<R: Attempted>(
        &self,
        route: &Route,
        mut request: R,
        prompt_estimate: u32,
        observe: &mut (dyn FnMut(AttemptEvent) + Send),
    ) -> Result<(R::Answer, Arc<Destination>), ProviderError> {
        let mut plan = Plan::new(*self, route.clone());
        request.limit(plan.deadline);
        let mut last_error = None;
        let mut total = TokenUsage::default();
        loop {
            let (index, destination, provider) = match plan.next_stop(last_error.as_ref()).await {
                Ok(stop) => stop,
                Err(error) => return Err(last_error.unwrap_or(error)),
            };
            request.aim(&destination);
            let start = AttemptStart {
                index,
                destination: Arc::clone(&destination),
                prompt_estimate,
                continuation: false,
            };
            observe(AttemptEvent::Started(start));
            let began = Instant::now();
            let result = request.send(provider.as_ref()).await;
            let (error, usage) = match &result {
                Ok(answer) => (None, R::usage(answer)),
                Err(error) => (Some(error.code()), error.consumed(prompt_estimate)),
            };
            total = plus(total, usage);
            observe(AttemptEvent::Ended(AttemptReport {
                index,
                destination: Arc::clone(&destination),
                error,
                usage,
                latency: began.elapsed(),
                continuation: false,
            }));
            match result {
                Ok(mut answer) => {
                    // The caller is told what the call consumed in all, as it is billed.
                    R::bill(&mut answer, total);
                    return Ok((answer, destination));
                }
                Err(error) => {
                    plan.failed(index, &error)?;
                    last_error = Some(error);
                }
            }
        }
    }

    /// The answer as a stream from the first destination that starts one, continued on the
    /// next that can when it breaks part way (unless `continue_streams` is off). The returned
    /// stream owns everything it needs.
    /// `prompt_estimate` is `request`'s, as for [`Router::complete`].
    pub fn stream(
        &self,
        route: &Route,
        request: ProviderRequest,
        prompt_estimate: u32,
        continue_streams: bool,
    ) -> RoutedStream {
        let mut request = request;
        let plan = Plan::new(*self, route.clone());
        request.single_attempt = true;
        request.deadline = Some(plan.deadline);
        let state = Streaming {
            plan,
            original_messages: request.messages.len(),
            request,
            continue_streams,
            prompt_estimate,
            current: None,
            delivered: String::new(),
            delivered_other: false,
            total: TokenUsage::default(),
            last_error: None,
            done: false,
        };
        Box::pin(
            stream::unfold(state, |mut state| async move {
                if state.done {
                    return None;
                }
                let items = state.advance().await;
                Some((stream::iter(items), state))
            })
            .flatten(),
        )
    }
}

/// A request the router sends whole, one attempt per destination: a chat request or an
/// embedding request.
trait Attempted: Send {
    /// What a successful attempt answers.
    type Answer: Send;
    /// Points the request at `destination`.
    fn aim(&mut self, destination: &Destination);
    /// One HTTP request per attempt, the whole call over by `deadline`.
    fn limit(&mut self, deadline: Instant);
    /// The attempt.
    fn send<'a>(
        &'a self,
        provider: &'a dyn ChatProvider,
    ) -> BoxFuture<'a, Result<Self::Answer, ProviderError>>;
    /// What a successful attempt consumed.
    fn usage(answer: &Self::Answer) -> TokenUsage;
    /// Puts every attempt's usage together on the answer.
    fn bill(answer: &mut Self::Answer, total: TokenUsage);
}

impl Attempted for ProviderRequest {
    type Answer = Completion;
    fn aim(&mut self, destination: &Destination) {
        aim(self, destination);
    }
    fn limit(&mut self, deadline: Instant) {
        self.single_attempt = true;
        self.deadline = Some(deadline);
    }
    fn send<'a>(
        &'a self,
        provider: &'a dyn ChatProvider,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        provider.complete(self)
    }
    fn usage(answer: &Completion) -> TokenUsage {
        answer.usage
    }
    fn bill(answer: &mut Completion, total: TokenUsage) {
        answer.usage = total;
    }
}

impl Attempted for EmbeddingRequest {
    type Answer = Embeddings;
    fn aim(&mut self, destination: &Destination) {
        if self.model != destination.model {
            self.model.clone_from(&destination.model);
        }
        if self.base_url != destination.base_url {
            self.base_url.clone_from(&destination.base_url);
        }
    }
    fn limit(&mut self, deadline: Instant) {
        self.single_attempt = true;
        self.deadline = Some(deadline);
    }
    fn send<'a>(
        &'a self,
        provider: &'a dyn ChatProvider,
    ) -> BoxFuture<'a, Result<Embeddings, ProviderError>> {
        provider.embed(self)
    }
    fn usage(answer: &Embeddings) -> TokenUsage {
        answer.usage
    }
    fn bill(answer: &mut Embeddings, total: TokenUsage) {
        answer.usage = total;
    }
}

/// Points `request` at `destination` (the persona stays).
fn aim(request: &mut ProviderRequest, destination: &Destination) {
    if request.model != destination.model {
        request.model.clone_from(&destination.model);
    }
    if request.base_url != destination.base_url {
        request.base_url.clone_from(&destination.base_url);
    }
}

/// True when `error` is a reason to try another destination: the upstream (or our way to it)
/// failed, not the request.
pub fn falls_back(error: &ProviderError) -> bool {
    match error {
        ProviderError::NotConfigured { .. }
        | ProviderError::Timeout { .. }
        | ProviderError::RateLimited { .. }
        | ProviderError::AuthFailed { .. }
        | ProviderError::Unavailable { .. }
        | ProviderError::Unreachable { .. } => true,
        // No status: the connection broke or the stream failed on the way.
        ProviderError::Upstream { status, .. } => {
            status.is_none_or(|s| s == 429 || s == 529 || (500..600).contains(&s))
        }
        // The request itself was refused, or the upstream answered (and billed) something
        // unusable: asking elsewhere would not be a retry of a failure but a second answer.
        ProviderError::InvalidRequest { .. }
        | ProviderError::BadResponse { .. }
        | ProviderError::Setup { .. } => false,
    }
}

/// How far a call has gone along its route.
struct Plan {
    router: Router,
    route: Route,
    deadline: Instant,
    /// The destination the next attempt goes to, unless it is passed over.
    index: usize,
    attempts: u32,
    /// Retries of the last destination so far (for the backoff).
    retries: u32,
    /// Wait before the next attempt (a retry of the last destination).
    wait: Option<Duration>,
}

impl Plan {
    fn new(router: Router, route: Route) -> Self {
        let now = Instant::now();
        Self {
            deadline: now.checked_add(router.deadline).unwrap_or(now),
            router,
            route,
            index: 0,
            attempts: 0,
            retries: 0,
            wait: None,
        }
    }

    /// The destination at `index` and its provider, if it has one.
    fn stop(&self, index: usize) -> Option<(Arc<Destination>, Arc<dyn ChatProvider>)> {
        let stop = self.route.stops.get(index)?;
        let provider = stop.provider.as_ref().ok()?;
        Some((Arc::clone(&stop.destination), Arc::clone(provider)))
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The stop to attempt next, after waiting if a retry asked for it, passing over stops that
    /// cannot be called now; or the error to end with when none is left. `last_error` is the
    /// failure that brought the call here, if any.
    async fn next_stop(
        &mut self,
        last_error: Option<&ProviderError>,
    ) -> Result<(usize, Arc<Destination>, Arc<dyn ChatProvider>), ProviderError> {
        if self.attempts >= self.router.max_attempts.get() {
            return Err(exhausted());
        }
        if let Some(wait) = self.wait.take() {
            self.router.sleeper.sleep(wait).await;
        }
        let mut waited = false;
        let mut passed_over: Option<ProviderError> = None;
        while let Some(stop) = self.route.stops.get(self.index) {
            let why_not = match &stop.provider {
                Err(error) => error.clone(),
                Ok(provider) => {
                    match provider.check_available(stop.destination.base_url.as_deref()) {
                        Ok(()) => {
                            if self.remaining().is_zero() {
                                return Err(ProviderError::Timeout {
                                    phase: crate::TimeoutPhase::Total,
                                });
                            }
                            self.attempts += 1;
                            return Ok((
                                self.index,
                                Arc::clone(&stop.destination),
                                Arc::clone(provider),
                            ));
                        }
                        Err(why_not) => why_not,
                    }
                }
            };
            // The last destination resting for a short while (its one key cooling after a
            // 429) is waited for once, as a retry would be.
            if let (ProviderError::Unavailable { retry_after, .. }, Ok(provider)) =
                (&why_not, &stop.provider)
                && !waited
                && last_error.is_some_and(ProviderError::is_retryable)
                && self.is_last(self.index)
                && self.retries < provider.retry_policy().max_retries
                && !retry_after.is_zero()
                && *retry_after <= provider.retry_policy().max_delay
                && *retry_after < self.remaining()
            {
                self.retries += 1;
                waited = true;
                self.router.sleeper.sleep(*retry_after).await;
                continue;
            }
            passed_over.get_or_insert(why_not);
            self.index += 1;
        }
        Err(passed_over.unwrap_or_else(exhausted))
    }

    /// True when no stop after `index` could be called.
    fn is_last(&self, index: usize) -> bool {
        self.route
            .stops
            .iter()
            .skip(index + 1)
            .all(|stop| match &stop.provider {
                Err(_) => true,
                Ok(provider) => provider
                    .check_available(stop.destination.base_url.as_deref())
                    .is_err(),
            })
    }

    /// Decides where a failed attempt at `index` goes next, or returns the error to end with.
    fn failed(&mut self, index: usize, error: &ProviderError) -> Result<(), ProviderError> {
        if !falls_back(error) {
            return Err(error.clone());
        }
        if self.attempts >= self.router.max_attempts.get() {
            return Err(error.clone());
        }
        let Some((destination, provider)) = self.stop(index) else {
            return Err(error.clone());
        };
        let base_url = destination.base_url.as_deref();
        let key_trouble = matches!(
            error,
            ProviderError::AuthFailed { .. } | ProviderError::RateLimited { .. }
        ) || matches!(
            error,
            ProviderError::Upstream {
                status: Some(429),
                ..
            }
        );
        if key_trouble
            && provider.key_count(base_url) > 1
            && provider.check_available(base_url).is_ok()
        {
            // The provider has another key that may answer: it picks it on the next request.
            self.index = index;
            return Ok(());
        }
        if !self.is_last(index) {
            self.index = index + 1;
            return Ok(());
        }
        let policy = provider.retry_policy();
        if !error.is_retryable() || self.retries >= policy.max_retries {
            return Err(error.clone());
        }
        let wait = match error {
            ProviderError::RateLimited {
                retry_after: Some(wait),
                ..
            } => *wait,
            _ => backoff(policy.base_delay, policy.max_delay, self.retries),
        };
        if wait > policy.max_delay || wait >= self.remaining() {
            return Err(error.clone());
        }
        self.retries += 1;
        self.index = index;
        self.wait = Some(wait);
        Ok(())
    }
}

/// Why a call ends when no destination is left and no upstream said anything better (the
/// caller's own last failure is preferred wherever there is one).
fn exhausted() -> ProviderError {
    ProviderError::Upstream {
        status: None,
        message: "no destination of the specialist's route could answer".to_owned(),
    }
}

/// A routed stream between items.
struct Streaming {
    plan: Plan,
    request: ProviderRequest,
    /// How many messages the caller's request had (a continuation adds the answer so far).
    original_messages: usize,
    continue_streams: bool,
    /// The caller's request's estimated prompt tokens (a continuation's is counted anew).
    prompt_estimate: u32,
    current: Option<Current>,
    /// The text handed on so far, over every attempt.
    delivered: String,
    /// True once anything but text was handed on (a tool call): then nothing can continue.
    delivered_other: bool,
    /// What the ended attempts consumed together.
    total: TokenUsage,
    last_error: Option<ProviderError>,
    done: bool,
}

/// The attempt whose stream is being read.
struct Current {
    index: usize,
    destination: Arc<Destination>,
    events: EventStream,
    began: Instant,
    prompt_estimate: u32,
    continuation: bool,
    /// Whitespace cut off the end of the prefill (Anthropic refuses a prefill that ends in
    /// it), to be cut from the start of the continuation in turn, so the seam shows neither
    /// twice nor not at all.
    seam: String,
    /// Characters of text this attempt handed on.
    chars: usize,
}

impl Streaming {
    /// The next items. Sets `done` after the last.
    async fn advance(&mut self) -> Vec<Result<RoutedEvent, StreamFailure>> {
        let mut items = Vec::new();
        loop {
            let Some(current) = self.current.as_mut() else {
                match self.start_attempt(&mut items).await {
                    Ok(()) => continue,
                    Err(failure) => {
                        self.done = true;
                        items.push(Err(failure));
                        return items;
                    }
                }
            };
            match current.events.next().await {
                Some(Ok(StreamEvent::TextDelta(text))) => {
                    let text = current.trim_seam(text);
                    if text.is_empty() {
                        continue;
                    }
                    current.chars += text.chars().count();
                    self.delivered.push_str(&text);
                    items.push(Ok(RoutedEvent::Answer(StreamEvent::TextDelta(text))));
                    return items;
                }
                Some(Ok(StreamEvent::ToolCallDelta(delta))) => {
                    self.delivered_other = true;
                    items.push(Ok(RoutedEvent::Answer(StreamEvent::ToolCallDelta(delta))));
                    return items;
                }
                // Reasoning is not text a prefill could carry on (a signed thinking block cannot
                // be continued elsewhere): once any is out, the stream is not continued.
                Some(Ok(
                    event @ (StreamEvent::ReasoningDelta(_)
                    | StreamEvent::ReasoningSignature(_)
                    | StreamEvent::RedactedReasoning(_)),
                )) => {
                    self.delivered_other = true;
                    items.push(Ok(RoutedEvent::Answer(event)));
                    return items;
                }
                Some(Ok(StreamEvent::Finished {
                    usage,
                    finish_reason,
                    model,
                })) => {
                    items.push(Ok(RoutedEvent::Attempt(AttemptEvent::Ended(
                        current.report(None, usage),
                    ))));
                    self.current = None;
                    self.total = plus(self.total, usage);
                    items.push(Ok(RoutedEvent::Answer(StreamEvent::Finished {
                        usage: self.total,
                        finish_reason,
                        model,
                    })));
                    self.done = true;
                    return items;
                }
                Some(Err(StreamFailure {
                    error,
                    usage_so_far,
                })) => {
                    self.attempt_failed(error, usage_so_far, &mut items);
                }
                None => {
                    let usage = current.consumed_so_far();
                    let error = ProviderError::Upstream {
                        status: None,
                        message: "the upstream ended the stream before the answer was complete"
                            .to_owned(),
                    };
                    self.attempt_failed(error, usage, &mut items);
                }
            }
            if self.done {
                return items;
            }
        }
    }

    /// The current attempt failed part way: reports it, and either ends the stream or leaves
    /// the next attempt to be started.
    fn attempt_failed(
        &mut self,
        error: ProviderError,
        usage: TokenUsage,
        items: &mut Vec<Result<RoutedEvent, StreamFailure>>,
    ) {
        let Some(current) = self.current.take() else {
            return;
        };
        let index = current.index;
        items.push(Ok(RoutedEvent::Attempt(AttemptEvent::Ended(
            current.report(Some(error.code()), usage),
        ))));
        self.total = plus(self.total, usage);
        let begun = !self.delivered.is_empty() || self.delivered_other;
        let may_go_on = !begun || (self.continue_streams && !self.delivered_other);
        if !may_go_on {
            self.end_with(error, items);
            return;
        }
        if let Err(error) = self.plan.failed(index, &error) {
            self.end_with(error, items);
            return;
        }
        self.last_error = Some(error);
    }

    fn end_with(
        &mut self,
        error: ProviderError,
        items: &mut Vec<Result<RoutedEvent, StreamFailure>>,
    ) {
        self.done = true;
        items.push(Err(StreamFailure {
            error,
            usage_so_far: self.total,
        }));
    }

    /// Starts the next attempt (a continuation when text was handed on already), reporting it
    /// in `items`; failures to start move on along the route. `Err` ends the stream.
    async fn start_attempt(
        &mut self,
        items: &mut Vec<Result<RoutedEvent, StreamFailure>>,
    ) -> Result<(), StreamFailure> {
        loop {
            let continuing = !self.delivered.is_empty();
            let (index, destination, provider) = match self.next_stop(continuing).await {
                Ok(stop) => stop,
                Err(error) => {
                    return Err(StreamFailure {
                        error: self.last_error.take().unwrap_or(error),
                        usage_so_far: self.total,
                    });
                }
            };
            aim(&mut self.request, &destination);
            let seam = if continuing {
                self.prefill()
            } else {
                String::new()
            };
            let prompt_estimate = if continuing {
                self.request.prompt_estimate()
            } else {
                self.prompt_estimate
            };
            items.push(Ok(RoutedEvent::Attempt(AttemptEvent::Started(
                AttemptStart {
                    index,
                    destination: Arc::clone(&destination),
                    prompt_estimate,
                    continuation: continuing,
                },
            ))));
            let began = Instant::now();
            match provider.stream(&self.request).await {
                Ok(events) => {
                    self.current = Some(Current {
                        index,
                        destination,
                        events,
                        began,
                        prompt_estimate,
                        continuation: continuing,
                        seam,
                        chars: 0,
                    });
                    return Ok(());
                }
                Err(error) => {
                    let usage = error.consumed(prompt_estimate);
                    items.push(Ok(RoutedEvent::Attempt(AttemptEvent::Ended(
                        AttemptReport {
                            index,
                            destination,
                            error: Some(error.code()),
                            usage,
                            latency: began.elapsed(),
                            continuation: continuing,
                        },
                    ))));
                    self.total = plus(self.total, usage);
                    if let Err(error) = self.plan.failed(index, &error) {
                        return Err(StreamFailure {
                            error,
                            usage_so_far: self.total,
                        });
                    }
                    self.last_error = Some(error);
                }
            }
        }
    }

    /// The next stop, passing over those that cannot continue an answer when `continuing`.
    async fn next_stop(
        &mut self,
        continuing: bool,
    ) -> Result<(usize, Arc<Destination>, Arc<dyn ChatProvider>), ProviderError> {
        loop {
            let (index, destination, provider) =
                self.plan.next_stop(self.last_error.as_ref()).await?;
            if !continuing {
                return Ok((index, destination, provider));
            }
            // Aimed now rather than by the caller: what can be continued may depend on the model.
            aim(&mut self.request, &destination);
            if provider.can_continue(&self.request) {
                return Ok((index, destination, provider));
            }
            // Not an attempt after all: nothing was sent.
            self.plan.attempts -= 1;
            self.plan.index = index + 1;
        }
    }

    /// Makes the request a continuation of the text delivered so far: the caller's messages,
    /// then the answer so far as the assistant's. Returns the whitespace cut off its end.
    fn prefill(&mut self) -> String {
        self.request.messages.truncate(self.original_messages);
        let kept = self.delivered.trim_end();
        let seam = self.delivered[kept.len()..].to_owned();
        self.request.messages.push(ChatMessage::assistant(kept));
        seam
    }
}

impl Current {
    /// `text` without the part of the seam it repeats.
    fn trim_seam(&mut self, text: String) -> String {
        if self.seam.is_empty() {
            return text;
        }
        let mut seam = self.seam.chars().peekable();
        let mut cut = 0;
        for (at, c) in text.char_indices() {
            match seam.peek() {
                Some(&s) if s == c => {
                    seam.next();
                    cut = at + c.len_utf8();
                }
                _ => break,
            }
        }
        let rest: String = seam.collect();
        // Once the continuation shows anything but seam, the seam is behind it.
        self.seam = if cut == text.len() {
            rest
        } else {
            String::new()
        };
        text[cut..].to_owned()
    }

    /// What this attempt consumed if it ends now without the upstream's word: its prompt and
    /// the text it handed on, estimated.
    fn consumed_so_far(&self) -> TokenUsage {
        let output = u32::try_from(self.chars.div_ceil(4)).unwrap_or(u32::MAX);
        TokenUsage::estimated(self.prompt_estimate, output)
    }

    fn report(&self, error: Option<ErrorCode>, usage: TokenUsage) -> AttemptReport {
        AttemptReport {
            index: self.index,
            destination: Arc::clone(&self.destination),
            error,
            usage,
            latency: self.began.elapsed(),
            continuation: self.continuation,
        }
    }
}

/// Two attempts' usage together; estimated if either was.
pub fn plus(a: TokenUsage, b: TokenUsage) -> TokenUsage {
    TokenUsage {
        input_tokens: a.input_tokens.saturating_add(b.input_tokens),
        output_tokens: a.output_tokens.saturating_add(b.output_tokens),
        cached_input_tokens: a.cached_input_tokens.saturating_add(b.cached_input_tokens),
        cache_write_tokens: a.cache_write_tokens.saturating_add(b.cache_write_tokens),
        reasoning_tokens: a.reasoning_tokens.saturating_add(b.reasoning_tokens),
        is_estimated: a.is_estimated || b.is_estimated,
    }
}

#[cfg(test)]
mod tests {
    //! The router's decisions, over providers that follow a script (the router is the unit
    //! here; the providers' own wire behaviour has its tests against the fake upstreams).
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use core_domain::{FinishReason, Role};
    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::{CompletionFuture, EventStreamFuture, RetryPolicy, TimeoutPhase};

    enum Script {
        Answer(&'static str),
        Fail(ProviderError),
        /// Streams these pieces of text, then fails with this error (or finishes when `None`).
        Text(Vec<&'static str>, Option<ProviderError>),
    }

    #[derive(Debug, Default)]
    struct Scripted {
        keys: usize,
        continues: bool,
        unavailable: bool,
        #[allow(clippy::type_complexity)]
        script: Mutex<VecDeque<ScriptBox>>,
        seen: Mutex<Vec<ProviderRequest>>,
    }

    struct ScriptBox(Script);

    impl std::fmt::Debug for ScriptBox {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("script")
        }
    }

    impl Scripted {
        fn new(script: impl IntoIterator<Item = Script>) -> Arc<Self> {
            Arc::new(Self {
                script: Mutex::new(script.into_iter().map(ScriptBox).collect()),
                ..Self::default()
            })
        }

        fn continuing(script: impl IntoIterator<Item = Script>) -> Arc<Self> {
            Arc::new(Self {
                continues: true,
                script: Mutex::new(script.into_iter().map(ScriptBox).collect()),
                ..Self::default()
            })
        }

        fn next(&self, request: &ProviderRequest) -> Script {
            assert!(request.single_attempt, "a routed attempt is one request");
            assert!(
                request.deadline.is_some(),
                "a routed attempt has the call's deadline"
            );
            self.seen.lock().unwrap().push(request.clone());
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .expect("called more often than scripted")
                .0
        }

        fn seen(&self) -> Vec<ProviderRequest> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn tokens(text: &str) -> u32 {
        u32::try_from(text.len()).unwrap()
    }

    impl ChatProvider for Scripted {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Mock
        }

        fn check_available(&self, _base_url: Option<&str>) -> Result<(), ProviderError> {
            if self.unavailable {
                return Err(ProviderError::Unavailable {
                    provider: ProviderKind::Mock,
                    retry_after: Duration::from_secs(60),
                    reason: "every key is cooling down".into(),
                });
            }
            Ok(())
        }

        fn can_continue(&self, _request: &ProviderRequest) -> bool {
            self.continues
        }

        fn key_count(&self, _base_url: Option<&str>) -> usize {
            self.keys.max(1)
        }

        fn retry_policy(&self) -> RetryPolicy {
            RetryPolicy {
                max_retries: 2,
                ..RetryPolicy::default()
            }
        }

        fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
            let script = self.next(request);
            async move {
                match script {
                    Script::Answer(text) => Ok(Completion {
                        content: text.to_owned(),
                        tool_calls: Vec::new(),
                        logprobs: None,
                        usage: TokenUsage::reported(10, tokens(text)),
                        finish_reason: FinishReason::Stop,
                        model: request.model.clone(),
                        wire_content: None,
                    }),
                    Script::Fail(error) => Err(error),
                    Script::Text(..) => unreachable!("complete is not scripted with a stream"),
                }
            }
            .boxed()
        }

        fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
            let script = self.next(request);
            let model = request.model.clone();
            let fut: BoxFuture<'a, Result<EventStream, ProviderError>> = async move {
                let (pieces, end) = match script {
                    Script::Fail(error) => return Err(error),
                    Script::Answer(text) => (vec![text], None),
                    Script::Text(pieces, end) => (pieces, end),
                };
                let written: u32 = pieces.iter().map(|p| tokens(p)).sum();
                // A piece marked `thinking:` is reasoning, the rest text.
                let mut events: Vec<Result<StreamEvent, StreamFailure>> = pieces
                    .into_iter()
                    .map(|p| match p.strip_prefix("thinking:") {
                        Some(thought) => Ok(StreamEvent::ReasoningDelta(thought.to_owned())),
                        None => Ok(StreamEvent::TextDelta(p.to_owned())),
                    })
                    .collect();
                events.push(match end {
                    None => Ok(StreamEvent::Finished {
                        usage: TokenUsage::reported(10, written),
                        finish_reason: FinishReason::Stop,
                        model,
                    }),
                    Some(error) => Err(StreamFailure {
                        error,
                        usage_so_far: TokenUsage::estimated(10, written),
                    }),
                });
                Ok(Box::pin(stream::iter(events)) as EventStream)
            }
            .boxed();
            fut
        }
    }

    /// Records the waits a call chose, without waiting.
    #[derive(Debug, Default)]
    struct NoWait {
        waits: Mutex<Vec<Duration>>,
    }

    impl Sleeper for NoWait {
        fn sleep(&self, wait: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            self.waits.lock().unwrap().push(wait);
            Box::pin(std::future::ready(()))
        }
    }

    fn router(max_attempts: u32) -> (Router, &'static NoWait) {
        let sleeper: &'static NoWait = Box::leak(Box::default());
        let config = RoutingConfig {
            max_attempts,
            ..RoutingConfig::default()
        };
        (Router::new(&config, sleeper), sleeper)
    }

    fn destination(model: &str) -> Destination {
        Destination {
            provider: ProviderKind::Mock,
            model: model.to_owned(),
            base_url: None,
        }
    }

    fn route(stops: &[(&str, &Arc<Scripted>)]) -> Route {
        let mut stops = stops.iter().map(|(model, provider)| {
            let provider: Arc<dyn ChatProvider> = Arc::clone(*provider) as Arc<dyn ChatProvider>;
            (destination(model), Ok(provider))
        });
        let first = stops.next().unwrap();
        Route::new(first, stops)
    }

    fn request() -> ProviderRequest {
        ProviderRequest {
            model: "first".into(),
            system_prompt: "Be brief.".into(),
            messages: vec![ChatMessage::user("Say hello world")],
            temperature: 0.0,
            max_tokens: 100,
            base_url: None,
            options: Default::default(),
            single_attempt: false,
            deadline: None,
            anthropic: None,
        }
    }

    fn server_error() -> ProviderError {
        ProviderError::Upstream {
            status: Some(500),
            message: "boom".into(),
        }
    }

    fn rate_limited(retry_after: Option<Duration>) -> ProviderError {
        ProviderError::RateLimited {
            retry_after,
            message: "slow down".into(),
        }
    }

    async fn complete(
        router: &Router,
        route: &Route,
    ) -> (
        Result<(Completion, Arc<Destination>), ProviderError>,
        Vec<AttemptEvent>,
    ) {
        let mut events = Vec::new();
        let result = router
            .complete(
                route,
                request(),
                request().prompt_estimate(),
                &mut |event| {
                    events.push(event);
                },
            )
            .await;
        (result, events)
    }

    fn ended(events: &[AttemptEvent]) -> Vec<(String, Option<ErrorCode>)> {
        events
            .iter()
            .filter_map(|event| match event {
                AttemptEvent::Ended(report) => {
                    Some((report.destination.model.clone(), report.error))
                }
                AttemptEvent::Started(_) => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_failing_destination_falls_back_to_the_next_and_every_attempt_is_reported() {
        let first = Scripted::new([Script::Fail(server_error())]);
        let second = Scripted::new([Script::Answer("hello")]);
        let (router, sleeper) = router(3);
        let (result, events) =
            complete(&router, &route(&[("first", &first), ("second", &second)])).await;
        let (completion, served) = result.unwrap();
        assert_eq!(completion.content, "hello");
        assert_eq!(served.model, "second");
        assert_eq!(
            ended(&events),
            [
                ("first".into(), Some(ErrorCode::UpstreamError)),
                ("second".into(), None)
            ]
        );
        // The persona goes along; the model is the fallback's.
        let asked = second.seen();
        assert_eq!(asked[0].model, "second");
        assert_eq!(asked[0].system_prompt, "Be brief.");
        assert!(
            sleeper.waits.lock().unwrap().is_empty(),
            "a fallback is tried at once"
        );
    }

    #[tokio::test]
    async fn a_request_the_upstream_refuses_is_not_sent_elsewhere() {
        let first = Scripted::new([Script::Fail(ProviderError::InvalidRequest {
            status: 400,
            message: "bad".into(),
        })]);
        let second = Scripted::new([]);
        let (router, _) = router(3);
        let (result, events) =
            complete(&router, &route(&[("first", &first), ("second", &second)])).await;
        assert!(matches!(result, Err(ProviderError::InvalidRequest { .. })));
        assert_eq!(ended(&events).len(), 1);
        assert!(second.seen().is_empty());
    }

    #[tokio::test]
    async fn unconfigured_and_resting_destinations_are_passed_over_without_an_attempt() {
        let resting = Arc::new(Scripted {
            unavailable: true,
            ..Scripted::default()
        });
        let last = Scripted::new([Script::Answer("hi")]);
        let route = Route::new(
            (
                destination("unconfigured"),
                Err(ProviderError::NotConfigured {
                    provider: ProviderKind::OpenAi,
                    env_var: "OPENAI_API_KEY",
                    config_key: "providers.openai.api_key",
                }),
            ),
            [
                (
                    destination("resting"),
                    Ok(resting.clone() as Arc<dyn ChatProvider>),
                ),
                (
                    destination("last"),
                    Ok(last.clone() as Arc<dyn ChatProvider>),
                ),
            ],
        );
        let (router, _) = router(1);
        let (result, events) = complete(&router, &route).await;
        assert_eq!(result.unwrap().1.model, "last");
        assert_eq!(ended(&events), [("last".into(), None)]);
        assert!(resting.seen().is_empty());
    }

    #[tokio::test]
    async fn nothing_callable_ends_with_why_the_first_could_not_be_called() {
        let route = Route::new(
            (
                destination("unconfigured"),
                Err(ProviderError::NotConfigured {
                    provider: ProviderKind::OpenAi,
                    env_var: "OPENAI_API_KEY",
                    config_key: "providers.openai.api_key",
                }),
            ),
            [],
        );
        let (router, _) = router(3);
        let (result, events) = complete(&router, &route).await;
        assert!(matches!(result, Err(ProviderError::NotConfigured { .. })));
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn max_attempts_bounds_the_call_over_every_destination() {
        let stops: Vec<Arc<Scripted>> = (0..4)
            .map(|_| Scripted::new([Script::Fail(server_error())]))
            .collect();
        let names = ["a", "b", "c", "d"];
        let pairs: Vec<(&str, &Arc<Scripted>)> = names.iter().copied().zip(stops.iter()).collect();
        let (router, _) = router(2);
        let (result, events) = complete(&router, &route(&pairs)).await;
        assert_eq!(
            result.unwrap_err(),
            server_error(),
            "the last failure is the answer"
        );
        assert_eq!(ended(&events).len(), 2);
        assert!(stops[2].seen().is_empty() && stops[3].seen().is_empty());
    }

    #[tokio::test]
    async fn the_last_destination_is_retried_after_a_backoff_when_the_model_did_no_work() {
        let only = Scripted::new([
            Script::Fail(server_error()),
            Script::Fail(rate_limited(Some(Duration::from_secs(2)))),
            Script::Answer("finally"),
        ]);
        let (router, sleeper) = router(3);
        let (result, events) = complete(&router, &route(&[("only", &only)])).await;
        assert_eq!(result.unwrap().0.content, "finally");
        assert_eq!(ended(&events).len(), 3);
        let waits = sleeper.waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 2);
        assert!(waits[0] >= Duration::from_millis(125) && waits[0] <= Duration::from_millis(250));
        assert_eq!(waits[1], Duration::from_secs(2), "Retry-After is honoured");
    }

    #[tokio::test]
    async fn a_refused_key_is_followed_at_once_by_another_key_of_the_same_destination() {
        let two_keys = Arc::new(Scripted {
            keys: 2,
            script: Mutex::new(
                [
                    Script::Fail(ProviderError::AuthFailed {
                        provider: ProviderKind::Mock,
                        status: 401,
                        message: "bad key".into(),
                    }),
                    Script::Answer("second key"),
                ]
                .into_iter()
                .map(ScriptBox)
                .collect(),
            ),
            ..Scripted::default()
        });
        let fallback = Scripted::new([]);
        let (router, sleeper) = router(3);
        let (result, events) = complete(
            &router,
            &route(&[("keyed", &two_keys), ("fallback", &fallback)]),
        )
        .await;
        assert_eq!(result.unwrap().0.content, "second key");
        assert_eq!(
            ended(&events),
            [
                ("keyed".into(), Some(ErrorCode::UpstreamAuthFailed)),
                ("keyed".into(), None)
            ]
        );
        assert!(sleeper.waits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_allowed_ends_the_call_at_once() {
        let only = Scripted::new([Script::Fail(rate_limited(Some(Duration::from_secs(3600))))]);
        let (router, sleeper) = router(3);
        let (result, _) = complete(&router, &route(&[("only", &only)])).await;
        assert!(matches!(result, Err(ProviderError::RateLimited { .. })));
        assert!(sleeper.waits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_long_retry_after_moves_on_to_the_next_destination_at_once() {
        let first = Scripted::new([Script::Fail(rate_limited(Some(Duration::from_secs(3600))))]);
        let second = Scripted::new([Script::Answer("elsewhere")]);
        let (router, sleeper) = router(3);
        let (result, _) =
            complete(&router, &route(&[("first", &first), ("second", &second)])).await;
        assert_eq!(result.unwrap().0.content, "elsewhere");
        assert!(sleeper.waits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_timeout_that_may_have_reached_the_model_is_not_retried_on_the_same_destination() {
        let only = Scripted::new([Script::Fail(ProviderError::Timeout {
            phase: TimeoutPhase::FirstByte,
        })]);
        let (router, _) = router(3);
        let (result, events) = complete(&router, &route(&[("only", &only)])).await;
        assert!(matches!(result, Err(ProviderError::Timeout { .. })));
        assert_eq!(ended(&events).len(), 1);
    }

    #[tokio::test]
    async fn usage_of_every_attempt_is_reported_and_summed() {
        let first = Scripted::new([Script::Fail(ProviderError::Timeout {
            phase: TimeoutPhase::FirstByte,
        })]);
        let second = Scripted::new([Script::Answer("12345")]);
        let (router, _) = router(3);
        let (result, events) =
            complete(&router, &route(&[("first", &first), ("second", &second)])).await;
        let reports: Vec<AttemptReport> = events
            .into_iter()
            .filter_map(|e| match e {
                AttemptEvent::Ended(r) => Some(r),
                AttemptEvent::Started(_) => None,
            })
            .collect();
        let prompt = request().prompt_estimate();
        assert_eq!(reports[0].usage, TokenUsage::estimated(prompt, 0));
        assert_eq!(reports[1].usage, TokenUsage::reported(10, 5));
        let usage = result.unwrap().0.usage;
        assert_eq!(usage, plus(reports[0].usage, reports[1].usage));
        assert!(usage.is_estimated);
    }

    async fn collect(
        stream: RoutedStream,
    ) -> (String, Vec<AttemptEvent>, Result<TokenUsage, StreamFailure>) {
        let mut text = String::new();
        let mut attempts = Vec::new();
        let mut end = None;
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            assert!(end.is_none(), "nothing follows the end");
            match item {
                Ok(RoutedEvent::Attempt(event)) => attempts.push(event),
                Ok(RoutedEvent::Answer(StreamEvent::TextDelta(piece))) => text.push_str(&piece),
                Ok(RoutedEvent::Answer(StreamEvent::Finished { usage, .. })) => {
                    end = Some(Ok(usage))
                }
                // Reasoning is not the answer's text.
                Ok(RoutedEvent::Answer(StreamEvent::ReasoningDelta(_))) => {}
                Ok(RoutedEvent::Answer(
                    StreamEvent::ToolCallDelta(_)
                    | StreamEvent::ReasoningSignature(_)
                    | StreamEvent::RedactedReasoning(_),
                )) => unreachable!("the scripted providers only write text and reasoning"),
                Err(failure) => end = Some(Err(failure)),
            }
        }
        (
            text,
            attempts,
            end.expect("a stream ends with Finished or a failure"),
        )
    }

    fn cut() -> Option<ProviderError> {
        Some(ProviderError::Upstream {
            status: None,
            message: "the stream broke off".into(),
        })
    }

    #[tokio::test]
    async fn a_stream_cut_part_way_is_continued_by_the_next_destination_from_the_text_so_far() {
        let first = Scripted::new([Script::Text(vec!["Hello", ", wor"], cut())]);
        let second = Scripted::continuing([Script::Text(vec!["ld", "!"], None)]);
        let (router, _) = router(3);
        let stream = router.stream(
            &route(&[("first", &first), ("second", &second)]),
            request(),
            request().prompt_estimate(),
            true,
        );
        let (text, attempts, end) = collect(stream).await;
        assert_eq!(text, "Hello, world!");
        let usage = end.unwrap();
        // The first attempt's estimate (10 in, 10 out) and the second's report (10 in, 3 out).
        assert_eq!((usage.input_tokens, usage.output_tokens), (20, 13));
        let continued = &second.seen()[0];
        let last = continued.messages.last().unwrap();
        assert_eq!(last.role, Role::Assistant);
        assert_eq!(last.text(), "Hello, wor");
        assert_eq!(continued.messages.len(), 2);
        assert_eq!(
            ended(&attempts),
            [
                ("first".into(), Some(ErrorCode::UpstreamError)),
                ("second".into(), None)
            ]
        );
        assert!(
            attempts
                .iter()
                .any(|e| matches!(e, AttemptEvent::Started(s) if s.continuation))
        );
    }

    #[tokio::test]
    async fn whitespace_at_the_seam_is_neither_lost_nor_doubled() {
        let first = Scripted::new([Script::Text(vec!["Hello "], cut())]);
        // The prefill was "Hello": the model writes the space again.
        let second = Scripted::continuing([Script::Text(vec![" ", "world"], None)]);
        let (router, _) = router(3);
        let stream = router.stream(
            &route(&[("first", &first), ("second", &second)]),
            request(),
            request().prompt_estimate(),
            true,
        );
        let (text, _, end) = collect(stream).await;
        assert!(end.is_ok());
        assert_eq!(text, "Hello world");
        assert_eq!(second.seen()[0].messages.last().unwrap().text(), "Hello");
    }

    #[tokio::test]
    async fn a_cut_stream_with_nothing_able_to_continue_ends_with_its_failure() {
        let first = Scripted::new([Script::Text(vec!["Hello"], cut())]);
        let second = Scripted::new([]);
        let (router, _) = router(3);
        let stream = router.stream(
            &route(&[("first", &first), ("second", &second)]),
            request(),
            request().prompt_estimate(),
            true,
        );
        let (text, _, end) = collect(stream).await;
        assert_eq!(text, "Hello");
        let failure = end.unwrap_err();
        assert_eq!(failure.error, cut().unwrap());
        assert_eq!(failure.usage_so_far, TokenUsage::estimated(10, 5));
        assert!(
            second.seen().is_empty(),
            "a destination that cannot continue is not asked"
        );
    }

    #[tokio::test]
    async fn a_stream_cut_after_reasoning_is_never_continued() {
        // Text after the thinking, or the thinking alone: either way a prefill could not carry
        // the signed thinking block, so no destination is asked to go on.
        for pieces in [
            vec!["thinking:Let me see.", "Hello"],
            vec!["thinking:Let me see."],
        ] {
            let first = Scripted::new([Script::Text(pieces.clone(), cut())]);
            let second = Scripted::continuing([]);
            let (router, _) = router(3);
            let stream = router.stream(
                &route(&[("first", &first), ("second", &second)]),
                request(),
                request().prompt_estimate(),
                true,
            );
            let (_, attempts, end) = collect(stream).await;
            let failure = end.unwrap_err();
            assert_eq!(failure.error, cut().unwrap(), "{pieces:?}");
            assert!(second.seen().is_empty(), "{pieces:?}: not continued");
            assert_eq!(ended(&attempts).len(), 1);
        }
        // A stream cut before anything came still falls back as usual.
        let first = Scripted::new([Script::Text(vec![], cut())]);
        let second = Scripted::continuing([Script::Text(vec!["thinking:Hm.", "Fresh"], None)]);
        let (router, _) = router(3);
        let stream = router.stream(
            &route(&[("first", &first), ("second", &second)]),
            request(),
            request().prompt_estimate(),
            true,
        );
        let (text, _, end) = collect(stream).await;
        assert!(end.is_ok());
        assert_eq!(text, "Fresh");
    }

    #[tokio::test]
    async fn continuation_turned_off_ends_a_cut_stream_with_its_failure() {
        let first = Scripted::new([Script::Text(vec!["Hello"], cut())]);
        let second = Scripted::continuing([]);
        let (router, _) = router(3);
        let stream = router.stream(
            &route(&[("first", &first), ("second", &second)]),
            request(),
            request().prompt_estimate(),
            false,
        );
        let (_, _, end) = collect(stream).await;
        assert!(end.is_err());
        assert!(second.seen().is_empty());
    }

    #[tokio::test]
    async fn a_stream_failing_before_its_first_text_falls_back_like_a_whole_answer() {
        let first = Scripted::new([Script::Text(vec![], cut())]);
        let second = Scripted::new([Script::Fail(server_error())]);
        let third = Scripted::new([Script::Answer("fresh")]);
        let (router, _) = router(3);
        let stream = router.stream(
            &route(&[("first", &first), ("second", &second), ("third", &third)]),
            request(),
            request().prompt_estimate(),
            true,
        );
        let (text, attempts, end) = collect(stream).await;
        assert_eq!(text, "fresh");
        assert!(end.is_ok());
        assert_eq!(
            third.seen()[0].messages.len(),
            1,
            "nothing to continue: no prefill"
        );
        assert_eq!(ended(&attempts).len(), 3);
    }

    #[tokio::test]
    async fn every_destination_failing_ends_the_stream_with_the_last_failure() {
        let first = Scripted::new([Script::Fail(server_error())]);
        let second = Scripted::new([Script::Fail(rate_limited(None))]);
        let (router, _) = router(2);
        let stream = router.stream(
            &route(&[("first", &first), ("second", &second)]),
            request(),
            request().prompt_estimate(),
            true,
        );
        let (text, attempts, end) = collect(stream).await;
        assert!(text.is_empty());
        assert!(matches!(
            end.unwrap_err().error,
            ProviderError::RateLimited { .. }
        ));
        assert_eq!(ended(&attempts).len(), 2);
    }
}
