use std::time::Duration;

/// Why the fake says the answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A natural end (`stop`, `end_turn`, `STOP`).
    Stop,
    /// The token limit (`length`, `max_tokens`, `MAX_TOKENS`).
    Length,
    /// The model called tools (`tool_calls`, `tool_use`; Gemini says `STOP`).
    ToolCalls,
}

/// A tool call the fake's answer makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeToolCall {
    /// The call's id (Gemini has none on its wire; the provider makes one).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

/// How a streamed answer ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    Complete,
    /// Close the connection abruptly after this many text chunks.
    DropAfter(usize),
    /// Send this many text chunks, then nothing, forever.
    StallAfter(usize),
    /// Send this many text chunks, then the wire format's error event.
    ErrorEventAfter(usize, String),
    /// Send this many text chunks, then one event of this many bytes that never ends.
    OversizedEventAfter(usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub text: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub with_usage: bool,
    /// Usage detail, in our normalised meaning (subsets of `input_tokens`/`output_tokens`);
    /// each wire renders it its own way.
    pub usage_detail: UsageDetail,
    pub chunks: usize,
    pub chunk_delay: Duration,
    /// Silence between the response headers and the first text chunk (a model thinking).
    pub first_chunk_delay: Duration,
    /// Start the stream with a UTF-8 byte order mark (allowed by the SSE format).
    pub byte_order_mark: bool,
    pub finish: Finish,
    pub ending: Ending,
    /// Tool calls after the text (streamed after it, each call's arguments in two pieces).
    pub tool_calls: Vec<FakeToolCall>,
    /// Reasoning blocks before the text, in order (only Anthropic's wire renders them).
    pub thinking: Vec<FakeThinking>,
}

/// A reasoning block of a fake Anthropic answer, before its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FakeThinking {
    /// A `thinking` block: its text (streamed as two `thinking_delta`s) and its signature
    /// (one `signature_delta`).
    Thinking { text: String, signature: String },
    /// A `redacted_thinking` block with this opaque data.
    Redacted(String),
}

/// Prompt-cache and reasoning counts a fake answer reports (0: not reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageDetail {
    pub cached_input_tokens: u32,
    pub cache_write_tokens: u32,
    pub reasoning_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    Answer(Answer),
    Status {
        status: u16,
        body: String,
        /// Extra response headers (`Retry-After`, `Location`...).
        headers: Vec<(String, String)>,
    },
    Malformed,
    /// A body (or, for a stream, one event) of `bytes` bytes, produced as it is sent, in
    /// pieces and without a `Content-Length`, the way a runaway upstream sends one.
    Oversized {
        status: u16,
        bytes: usize,
    },
    /// A 401 in the wire's error format that quotes the request's API key back upper-cased.
    EchoKeyUpperCased,
    /// This body, byte for byte, with a success status (JSON, or SSE for a stream request).
    Raw(String),
    /// The answer to a token count (`POST /v1/messages/count_tokens`): this many input tokens.
    TokenCount(u32),
}

/// What the fake does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub(crate) kind: ReplyKind,
    pub(crate) first_byte_delay: Duration,
}

impl Reply {
    /// A successful answer with this text: usage 10 input tokens and one output token per
    /// word, streamed in 4 chunks, finish reason stop.
    pub fn text(text: impl Into<String>) -> Self {
        let text = text.into();
        let words = u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX);
        Self {
            kind: ReplyKind::Answer(Answer {
                text,
                input_tokens: 10,
                output_tokens: words.max(1),
                with_usage: true,
                usage_detail: UsageDetail::default(),
                chunks: 4,
                chunk_delay: Duration::ZERO,
                first_chunk_delay: Duration::ZERO,
                byte_order_mark: false,
                finish: Finish::Stop,
                ending: Ending::Complete,
                tool_calls: Vec::new(),
                thinking: Vec::new(),
            }),
            first_byte_delay: Duration::ZERO,
        }
    }

    /// An HTTP error with this status and body (sent as JSON).
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self {
            kind: ReplyKind::Status {
                status,
                body: body.into(),
                headers: Vec::new(),
            },
            first_byte_delay: Duration::ZERO,
        }
    }

    /// A 200 whose body (or first stream event) is not valid JSON.
    pub fn malformed() -> Self {
        Self {
            kind: ReplyKind::Malformed,
            first_byte_delay: Duration::ZERO,
        }
    }

    /// A response with this status whose body is `bytes` long: for a stream request, one SSE
    /// event that long; otherwise a JSON object padded to that length. Never held in memory
    /// whole, sent without `Content-Length`; [`FakeUpstream::padding_bytes_sent`] tells how
    /// much of it went out before the client hung up.
    ///
    /// [`FakeUpstream::padding_bytes_sent`]: crate::FakeUpstream::padding_bytes_sent
    pub fn oversized(status: u16, bytes: usize) -> Self {
        Self {
            kind: ReplyKind::Oversized { status, bytes },
            first_byte_delay: Duration::ZERO,
        }
    }

    /// A 401 whose message quotes the key the request carried (bearer token, `x-api-key` or
    /// `x-goog-api-key`), upper-cased, as one real upstream does.
    pub fn echo_key_upper_cased() -> Self {
        Self {
            kind: ReplyKind::EchoKeyUpperCased,
            first_byte_delay: Duration::ZERO,
        }
    }

    /// A 200 whose body is exactly `body` (`application/json`, or `text/event-stream` when the
    /// request asked for a stream): for answers whose every byte a test controls — odd
    /// whitespace, hostile shapes, a hand-written event sequence.
    pub fn raw(body: impl Into<String>) -> Self {
        Self {
            kind: ReplyKind::Raw(body.into()),
            first_byte_delay: Duration::ZERO,
        }
    }

    /// The answer to Anthropic's `POST /v1/messages/count_tokens`: `{"input_tokens": n}`.
    /// (Without one scripted, the fake counts a quarter token per byte of the request's
    /// `system`, `messages` and `tools`.)
    pub fn token_count(input_tokens: u32) -> Self {
        Self {
            kind: ReplyKind::TokenCount(input_tokens),
            first_byte_delay: Duration::ZERO,
        }
    }

    /// Adds `Retry-After: value` to an error reply.
    pub fn retry_after(self, value: impl Into<String>) -> Self {
        self.header("retry-after", value)
    }

    /// Adds a response header to a status reply (e.g. `Location` on a 3xx).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let ReplyKind::Status { headers, .. } = &mut self.kind {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Waits this long before sending the response headers.
    pub fn first_byte_delay(mut self, delay: Duration) -> Self {
        self.first_byte_delay = delay;
        self
    }

    fn answer(mut self, change: impl FnOnce(&mut Answer)) -> Self {
        if let ReplyKind::Answer(answer) = &mut self.kind {
            change(answer);
        }
        self
    }

    /// Reports this usage.
    pub fn usage(self, input_tokens: u32, output_tokens: u32) -> Self {
        self.answer(|a| {
            a.input_tokens = input_tokens;
            a.output_tokens = output_tokens;
        })
    }

    /// Reports this prompt-cache detail: of the `usage` input tokens, `cached` read from the
    /// cache and `written` written to it (each wire spells it its own way; Anthropic's
    /// `input_tokens` then excludes both).
    pub fn cache_usage(self, cached: u32, written: u32) -> Self {
        self.answer(|a| {
            a.usage_detail.cached_input_tokens = cached;
            a.usage_detail.cache_write_tokens = written;
        })
    }

    /// Reports this many of the `usage` output tokens as reasoning (Gemini's
    /// `candidatesTokenCount` then excludes them).
    pub fn reasoning_usage(self, reasoning: u32) -> Self {
        self.answer(|a| a.usage_detail.reasoning_tokens = reasoning)
    }

    /// Reports no usage at all (an OpenAI-compatible server without `include_usage`).
    pub fn without_usage(self) -> Self {
        self.answer(|a| a.with_usage = false)
    }

    /// Streams the text in this many chunks (at least one).
    pub fn chunks(self, chunks: usize) -> Self {
        self.answer(|a| a.chunks = chunks.max(1))
    }

    /// Waits this long before each streamed chunk after the first.
    pub fn chunk_delay(self, delay: Duration) -> Self {
        self.answer(|a| a.chunk_delay = delay)
    }

    /// Sends the response headers at once, then waits this long before the first text chunk.
    pub fn first_chunk_delay(self, delay: Duration) -> Self {
        self.answer(|a| a.first_chunk_delay = delay)
    }

    /// Starts the stream with a UTF-8 byte order mark, which the SSE format allows.
    pub fn byte_order_mark(self) -> Self {
        self.answer(|a| a.byte_order_mark = true)
    }

    /// Ends with this finish reason.
    pub fn finish(self, finish: Finish) -> Self {
        self.answer(|a| a.finish = finish)
    }

    /// Calls these tools after the text (which may be empty), finishing with
    /// [`Finish::ToolCalls`]: `(id, name, arguments JSON)` each.
    pub fn tool_calls(self, calls: &[(&str, &str, &str)]) -> Self {
        self.answer(|a| {
            a.tool_calls = calls
                .iter()
                .map(|(id, name, arguments)| FakeToolCall {
                    id: (*id).to_owned(),
                    name: (*name).to_owned(),
                    arguments: (*arguments).to_owned(),
                })
                .collect();
            a.finish = Finish::ToolCalls;
        })
    }

    /// Thinks before the text (Anthropic's wire only): a `thinking` block with `text` and its
    /// `signature`, after any reasoning blocks added before.
    pub fn thinking(self, text: impl Into<String>, signature: impl Into<String>) -> Self {
        let block = FakeThinking::Thinking {
            text: text.into(),
            signature: signature.into(),
        };
        self.answer(|a| a.thinking.push(block))
    }

    /// A `redacted_thinking` block with this opaque `data` before the text (Anthropic's wire
    /// only), after any reasoning blocks added before.
    pub fn redacted_thinking(self, data: impl Into<String>) -> Self {
        let block = FakeThinking::Redacted(data.into());
        self.answer(|a| a.thinking.push(block))
    }

    /// Streams `chunks` text chunks, then closes the connection abruptly.
    pub fn drop_after(self, chunks: usize) -> Self {
        self.answer(|a| a.ending = Ending::DropAfter(chunks))
    }

    /// Streams `chunks` text chunks, then sends nothing more and never ends.
    pub fn stall_after(self, chunks: usize) -> Self {
        self.answer(|a| a.ending = Ending::StallAfter(chunks))
    }

    /// Streams `chunks` text chunks, then the wire format's error event with `message`.
    pub fn error_event_after(self, chunks: usize, message: impl Into<String>) -> Self {
        let message = message.into();
        self.answer(|a| a.ending = Ending::ErrorEventAfter(chunks, message))
    }

    /// Streams `chunks` text chunks, then starts one event of `bytes` bytes (made as it is
    /// sent, counted by `padding_bytes_sent`).
    pub fn oversized_event_after(self, chunks: usize, bytes: usize) -> Self {
        self.answer(|a| a.ending = Ending::OversizedEventAfter(chunks, bytes))
    }
}

/// `text` cut into `count` pieces of nearly equal length on character boundaries (fewer when
/// the text is shorter); their concatenation is `text`.
pub(crate) fn split(text: &str, count: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(count.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}
