use std::collections::VecDeque;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::Notify;

use crate::reply::{Answer, Ending, ReplyKind};
use crate::{Reply, render};

/// Which API the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions: `POST {base}/chat/completions`.
    OpenAi,
    /// Anthropic Messages: `POST /v1/messages`.
    Anthropic,
    /// Google Gemini: `POST /v1beta/models/{model}:generateContent` and
    /// `:streamGenerateContent?alt=sse`.
    Google,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (without `?`).
    pub query: String,
    /// Headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: Value,
    /// The body exactly as it arrived, for tests that compare bytes.
    pub raw_body: Vec<u8>,
}

impl RecordedRequest {
    /// The body as text (lossy where it is not UTF-8), for byte-for-byte comparisons.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw_body).into_owned()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    wire: Wire,
    record: bool,
    script: Mutex<VecDeque<Reply>>,
    default_reply: Mutex<Reply>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: AtomicUsize,
    streams_closed: AtomicUsize,
    stream_closed: Notify,
    padding_bytes_sent: AtomicUsize,
    /// Makes the reply from the request when the queue is empty (the conversational model).
    responder: Option<Responder>,
}

/// Makes a reply from a request's JSON body.
pub(crate) type Responder = fn(Wire, &Value) -> Reply;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fake upstream on 127.0.0.1, stopped when dropped; if told how many calls to expect
/// ([`FakeUpstream::expect_calls`]), dropping it also checks that many arrived.
pub struct FakeUpstream {
    base_url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
    expected_calls: Mutex<Option<usize>>,
}

impl FakeUpstream {
    /// Starts a fake of `wire` on a free port, answering "Hello from the fake upstream." until
    /// told otherwise. Must be called inside a Tokio runtime.
    pub async fn start(wire: Wire) -> Self {
        Self::start_with(
            "127.0.0.1:0",
            wire,
            Reply::text("Hello from the fake upstream."),
            true,
            1,
        )
        .expect("a fake upstream binds 127.0.0.1:0")
    }

    /// Starts a fake on `bind` with `default_reply`, recording requests or not, on `workers`
    /// threads (the standalone benchmark server records nothing).
    pub fn start_with(
        bind: &str,
        wire: Wire,
        default_reply: Reply,
        record: bool,
        workers: usize,
    ) -> std::io::Result<Self> {
        Self::start_responding(bind, wire, default_reply, record, workers, None)
    }

    /// Like [`FakeUpstream::start_with`], replying with `responder` when the queue is empty.
    pub(crate) fn start_responding(
        bind: &str,
        wire: Wire,
        default_reply: Reply,
        record: bool,
        workers: usize,
        responder: Option<Responder>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            wire,
            record,
            script: Mutex::new(VecDeque::new()),
            default_reply: Mutex::new(default_reply),
            requests: Mutex::new(Vec::new()),
            request_count: AtomicUsize::new(0),
            streams_closed: AtomicUsize::new(0),
            stream_closed: Notify::new(),
            padding_bytes_sent: AtomicUsize::new(0),
            responder,
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::default().limit(64 * 1024 * 1024))
                .default_service(web::to(handle))
        })
        .workers(workers.max(1))
        .tcp_nodelay(true)
        // A client that goes away ends its stream at once, so tests can see the close.
        .h1_allow_half_closed(false)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let base_url = match wire {
            Wire::OpenAi => format!("http://{address}/v1"),
            Wire::Anthropic | Wire::Google => format!("http://{address}"),
        };
        Ok(Self {
            base_url,
            shared,
            handle,
            expected_calls: Mutex::new(None),
        })
    }

    /// The base URL to configure a client with (`http://127.0.0.1:PORT/v1` for OpenAI,
    /// `http://127.0.0.1:PORT` for the others).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Expects exactly `calls` requests over this fake's life: when it is dropped with any
    /// other count it panics, naming both (unless the test is already panicking, so the
    /// test's own failure is the one reported). A later call replaces the expectation.
    pub fn expect_calls(&self, calls: usize) {
        *lock(&self.expected_calls) = Some(calls);
    }

    /// Queues `reply` for the next request that finds the queue non-empty.
    pub fn push(&self, reply: Reply) {
        lock(&self.shared.script).push_back(reply);
    }

    /// The reply used when the queue is empty.
    pub fn set_default(&self, reply: Reply) {
        *lock(&self.shared.default_reply) = reply;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        self.shared.request_count.load(Ordering::SeqCst)
    }

    /// How many streamed responses have ended: completed, or cut off because the client went
    /// away.
    pub fn streams_closed(&self) -> usize {
        self.shared.streams_closed.load(Ordering::SeqCst)
    }

    /// How many bytes of [`Reply::oversized`] bodies have been handed to the socket.
    pub fn padding_bytes_sent(&self) -> usize {
        self.shared.padding_bytes_sent.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` streamed responses have ended, or `timeout` passes; true
    /// when they did.
    pub async fn wait_for_streams_closed(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.stream_closed.notified();
            if self.streams_closed() >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.streams_closed() >= count;
            }
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        // `stop` sends its command when called; the future only awaits completion.
        drop(self.handle.stop(false));
        let expected = *lock(&self.expected_calls);
        if let Some(expected) = expected
            && !std::thread::panicking()
        {
            let received = self.request_count();
            assert!(
                received == expected,
                "the fake {:?} upstream at {} expected {expected} call(s) but received {received}",
                self.shared.wire,
                self.base_url,
            );
        }
    }
}

async fn handle(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    shared.request_count.fetch_add(1, Ordering::SeqCst);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if shared.record {
        lock(&shared.requests).push(RecordedRequest {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: json.clone(),
            raw_body: body.to_vec(),
        });
    }

    if shared.wire == Wire::Anthropic
        && req.method() == actix_web::http::Method::POST
        && req.path() == "/v1/messages/count_tokens"
    {
        return count_tokens(&shared, &json);
    }

    let embedding = crate::embedding::embedding_call(shared.wire, &req, &json);
    let routed = match &embedding {
        Some(call) => Some((call.model.clone(), false)),
        None => route(shared.wire, &req, &json),
    };
    let Some((model, streamed)) = routed else {
        return HttpResponse::NotFound().json(render::error_body(
            shared.wire,
            404,
            &format!("no route {} {}", req.method(), req.path()),
        ));
    };
    let reply = lock(&shared.script)
        .pop_front()
        .unwrap_or_else(|| match shared.responder {
            Some(respond) => respond(shared.wire, &json),
            None => lock(&shared.default_reply).clone(),
        });
    if !reply.first_byte_delay.is_zero() {
        tokio::time::sleep(reply.first_byte_delay).await;
    }

    match reply.kind {
        ReplyKind::Status {
            status,
            body,
            headers,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::from_str::<Value>(&body)
                .unwrap_or_else(|_| render::error_body(shared.wire, status.as_u16(), &body));
            let mut response = HttpResponse::build(status);
            for header in headers {
                response.insert_header(header);
            }
            response.json(body)
        }
        ReplyKind::Oversized { status, bytes } => {
            let (head, tail): (&'static [u8], &'static [u8]) = if streamed {
                (b"data: {\"padding\": \"", b"\"}\n\n")
            } else {
                (b"{\"padding\": \"", b"\"}")
            };
            let padding = bytes.saturating_sub(head.len() + tail.len());
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let content_type = if streamed {
                "text/event-stream"
            } else {
                "application/json"
            };
            HttpResponse::build(status)
                .content_type(content_type)
                .streaming(CloseCounted {
                    inner: padded(Arc::clone(&shared), head, padding, tail),
                    shared: Arc::clone(&shared),
                })
        }
        ReplyKind::EchoKeyUpperCased => {
            let key = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .or_else(|| {
                    ["x-api-key", "x-goog-api-key"]
                        .iter()
                        .find_map(|name| req.headers().get(*name)?.to_str().ok())
                })
                .unwrap_or("no key");
            let message = format!(
                "Incorrect API key provided: {}. You can find your API key in your account.",
                key.to_uppercase()
            );
            HttpResponse::Unauthorized().json(render::error_body(shared.wire, 401, &message))
        }
        ReplyKind::Raw(body) => HttpResponse::Ok()
            .content_type(if streamed {
                "text/event-stream"
            } else {
                "application/json"
            })
            .body(body),
        // A count scripted for a message call: answered as a count all the same.
        ReplyKind::TokenCount(input_tokens) => {
            HttpResponse::Ok().json(serde_json::json!({"input_tokens": input_tokens}))
        }
        ReplyKind::Malformed if streamed => sse(
            Arc::clone(&shared),
            stream::iter([Ok(Bytes::from_static(b"data: {\"choices\": [oops\n\n"))]).boxed(),
        ),
        ReplyKind::Malformed => HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"choices\": [{\"message\": "),
        ReplyKind::Answer(answer) if streamed => {
            let include_usage = json["stream_options"]["include_usage"] == Value::Bool(true);
            let frames = render::stream(shared.wire, &model, &answer, include_usage);
            sse(Arc::clone(&shared), answer_stream(&shared, &answer, frames))
        }
        ReplyKind::Answer(answer) => match &embedding {
            Some(call) => {
                HttpResponse::Ok().json(crate::embedding::render(shared.wire, call, &answer))
            }
            None => HttpResponse::Ok().json(render::whole(shared.wire, &model, &answer)),
        },
    }
}

/// Answers Anthropic's `POST /v1/messages/count_tokens` from the script: a scripted count, an
/// error status, a raw or malformed body; anything else (an answer) counts a quarter token per
/// byte of the request's `system`, `messages` and `tools` JSON.
fn count_tokens(shared: &Shared, json: &Value) -> HttpResponse {
    let reply = lock(&shared.script)
        .pop_front()
        .unwrap_or_else(|| lock(&shared.default_reply).clone());
    match reply.kind {
        ReplyKind::TokenCount(input_tokens) => {
            HttpResponse::Ok().json(serde_json::json!({"input_tokens": input_tokens}))
        }
        ReplyKind::Status { status, body, .. } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::from_str::<Value>(&body)
                .unwrap_or_else(|_| render::error_body(shared.wire, status.as_u16(), &body));
            HttpResponse::build(status).json(body)
        }
        ReplyKind::Raw(body) => HttpResponse::Ok()
            .content_type("application/json")
            .body(body),
        ReplyKind::Malformed => HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"input_tokens\": "),
        _ => {
            let bytes: usize = ["system", "messages", "tools"]
                .iter()
                .map(|field| match &json[*field] {
                    Value::Null => 0,
                    value => value.to_string().len(),
                })
                .sum();
            let input_tokens = u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX);
            HttpResponse::Ok().json(serde_json::json!({"input_tokens": input_tokens}))
        }
    }
}

/// The model named by the request, and whether it asks for a stream; `None` for a path the
/// real API does not have.
fn route(wire: Wire, req: &HttpRequest, json: &Value) -> Option<(String, bool)> {
    if req.method() != actix_web::http::Method::POST {
        return None;
    }
    let path = req.path();
    let from_body = || json["model"].as_str().unwrap_or_default().to_owned();
    let streamed = json["stream"] == Value::Bool(true);
    match wire {
        Wire::OpenAi if path.ends_with("/chat/completions") => Some((from_body(), streamed)),
        Wire::Anthropic if path == "/v1/messages" => Some((from_body(), streamed)),
        Wire::Google => {
            let rest = path.strip_prefix("/v1beta/models/")?;
            if let Some(model) = rest.strip_suffix(":generateContent") {
                Some((model.to_owned(), false))
            } else {
                let model = rest.strip_suffix(":streamGenerateContent")?;
                Some((model.to_owned(), req.query_string().contains("alt=sse")))
            }
        }
        _ => None,
    }
}

type Chunks = BoxStream<'static, Result<Bytes, std::io::Error>>;

fn answer_stream(shared: &Arc<Shared>, answer: &Answer, frames: render::Frames) -> Chunks {
    let wire = shared.wire;
    let delay = answer.chunk_delay;
    let first_delay = answer.first_chunk_delay;
    let (shown, after): (usize, Chunks) = match &answer.ending {
        Ending::Complete => (
            frames.deltas.len(),
            stream::iter(frames.tail.into_iter().map(|f| Ok(Bytes::from(f)))).boxed(),
        ),
        Ending::DropAfter(n) => (
            *n,
            // Let what was sent reach the client first: actix discards unflushed bytes when a
            // body fails, and a real mid-stream drop happens after data was on the wire.
            stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake upstream dropped the connection",
                ))
            })
            .boxed(),
        ),
        Ending::StallAfter(n) => (*n, stream::pending().boxed()),
        Ending::OversizedEventAfter(n, bytes) => (
            *n,
            padded(
                Arc::clone(shared),
                b"data: {\"padding\": \"",
                *bytes,
                b"\"}\n\n",
            ),
        ),
        Ending::ErrorEventAfter(n, message) => (
            *n,
            stream::iter([Ok(Bytes::from(render::error_frame(wire, message)))]).boxed(),
        ),
    };
    let bom = answer
        .byte_order_mark
        .then_some(Ok(Bytes::from_static(b"\xEF\xBB\xBF")));
    let head = stream::iter(
        bom.into_iter()
            .chain(frames.head.into_iter().map(|f| Ok(Bytes::from(f)))),
    );
    let deltas = stream::iter(frames.deltas.into_iter().take(shown).enumerate()).then(
        move |(i, frame)| async move {
            let wait = if i == 0 { first_delay } else { delay };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok(Bytes::from(frame))
        },
    );
    head.chain(deltas).chain(after).boxed()
}

/// `head`, `padding` bytes of `x` in 64 KiB pieces made as they are asked for, then `tail`.
fn padded(shared: Arc<Shared>, head: &'static [u8], padding: usize, tail: &'static [u8]) -> Chunks {
    static PIECE: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let pieces = stream::unfold(padding, move |left| {
        let shared = Arc::clone(&shared);
        async move {
            if left == 0 {
                return None;
            }
            let size = left.min(PIECE.len());
            shared.padding_bytes_sent.fetch_add(size, Ordering::SeqCst);
            Some((Ok(Bytes::from_static(&PIECE[..size])), left - size))
        }
    });
    stream::once(async move { Ok(Bytes::from_static(head)) })
        .chain(pieces)
        .chain(stream::once(async move { Ok(Bytes::from_static(tail)) }))
        .boxed()
}

fn sse(shared: Arc<Shared>, chunks: Chunks) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(CloseCounted {
            inner: chunks,
            shared,
        })
}

/// A response body that counts itself closed when actix drops it: at its end, or when the
/// client went away.
struct CloseCounted {
    inner: Chunks,
    shared: Arc<Shared>,
}

impl Stream for CloseCounted {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for CloseCounted {
    fn drop(&mut self) {
        self.shared.streams_closed.fetch_add(1, Ordering::SeqCst);
        self.shared.stream_closed.notify_waiters();
    }
}
