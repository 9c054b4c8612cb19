//! A mock upstream that speaks enough of Anthropic's, OpenAI's and
//! Fireworks' APIs for tests, examples and benchmarks: the endpoints
//! clients use, streaming and not, with realistic usage fields.
//!
//! It records every request it receives (method, path, headers, body) so
//! tests can assert what arrived, and takes per-request knobs as headers,
//! which a gateway forwards unchanged:
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-chunks: N` | N content deltas in a stream (default 3) |
//! | `x-mock-delay-ms: N` | N ms between stream events |
//! | `x-mock-first-byte-delay-ms: N` | N ms before the response head |
//! | `x-mock-status: 429` (or 401, 500, 529, …) | an error in the provider's shape; 429 carries `retry-after` |
//! | a key (`Authorization` or `x-api-key`) containing `mock-refused` | 401, as a provider refuses a wrong key |
//! | `x-mock-fail: reset` | the stream breaks after the first event |
//! | `x-mock-fail: garbage` | 200 with a body that is not JSON |
//! | `x-mock-fail: json` | 200 with a JSON body, whatever the request asked |
//! | `x-mock-fail: text` | 200 with a plain-text body |
//! | `x-mock-fail: hang` | never answers |
//! | `x-mock-tool: NAME` | the answer is a call of tool NAME (Messages, Chat Completions, Responses) |
//! | `x-mock-framing: crlf` (or `cr`) | event-stream lines end in CRLF (or CR) instead of LF |
//! | `x-mock-spacing: spaced` | JSON written with a space after every `:` and `,` (`"choices": []`) |
//! | `x-mock-content-type: none` (or a type) | the answer without a `Content-Type` (or with that one) |
//! | `x-mock-encoding: gzip` | the answer gzipped (streams flushed event by event) |
//! | `x-mock-usage: input=N,output=N,cache_write=N,cache_read=N` | the usage figures reported, in each API's own terms (`input` is uncached input) |
//! | `x-mock-pause-before-usage-ms: N` | N ms before the event that carries the final usage |
//! | `x-mock-answer-model: NAME` | the answer names model NAME (percent-decoded) instead of the request's |
//!
//! A `/v1/responses` request's `metadata` is echoed after the answer's
//! `usage`, as the real API orders it; `/v1/completions` streams (with the
//! usage chunk when `stream_options.include_usage` asks for it).
//!
//! Which provider a `/v1/models` call is for is told by its auth header:
//! `x-api-key` → Anthropic's list, otherwise OpenAI's; paths under
//! `/inference/` are Fireworks'.

pub mod chatgpt;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Recorded {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    counter: AtomicU64,
    /// Streams whose reader went away before the last event.
    abandoned: AtomicU64,
    /// Answer requests that carry no tool result with a call of this tool.
    tool: Mutex<Option<String>>,
    record: bool,
}

/// Serves `listener` with `handler` (given `state`) until the returned
/// sender is dropped or used.
pub(crate) fn serve<S, F, Fut>(
    listener: TcpListener,
    state: Arc<S>,
    handler: F,
) -> oneshot::Sender<()>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<MockBody>, Infallible>> + Send + 'static,
{
    let (stop, mut stopped) = oneshot::channel();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = &mut stopped => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handler(state.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    stop
}

/// A running mock upstream on 127.0.0.1.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
}

impl MockUpstream {
    /// Starts on an ephemeral port of 127.0.0.1, recording requests.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
            true,
        )
        .await
    }

    /// Starts on `addr`; `record` keeps every request (turn it off for benchmarks).
    pub async fn start_on(addr: SocketAddr, record: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            record,
            ..State::default()
        });
        let stop = serve(listener, state.clone(), handle);
        Ok(MockUpstream {
            addr,
            state,
            stop: Some(stop),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The last request received.
    pub fn last(&self) -> Option<Recorded> {
        self.requests().pop()
    }

    /// How many requests were received.
    pub fn count(&self) -> u64 {
        self.state.counter.load(Ordering::Relaxed)
    }

    /// How many streams were abandoned by their reader (the gateway dropped
    /// the upstream request) before their last event.
    pub fn abandoned_streams(&self) -> u64 {
        self.state.abandoned.load(Ordering::Relaxed)
    }

    /// From now on, answers every request that carries no tool result with
    /// a call of `tool` (a client then runs it and sends the result back);
    /// `None` turns it off.
    pub fn set_tool_scenario(&self, tool: Option<&str>) {
        if let Ok(mut t) = self.state.tool.lock() {
            *t = tool.map(str::to_owned);
        }
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        if let Ok(mut r) = self.state.requests.lock() {
            r.clear();
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response body: a whole buffer, or frames from a channel.
pub enum MockBody {
    /// One buffer.
    Full(Option<Bytes>),
    /// Frames as they are sent (SSE).
    Channel(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            MockBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            MockBody::Channel(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }
}

fn header_num(headers: &HeaderMap, name: &str, default: u64) -> u64 {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn json_response(status: StatusCode, value: &Value, request_id: &str) -> Response<MockBody> {
    let mut r = Response::new(MockBody::Full(Some(Bytes::from(value.to_string()))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        h.insert("request-id", v.clone());
        h.insert("x-request-id", v);
    }
    h.insert(
        "anthropic-ratelimit-requests-remaining",
        http::HeaderValue::from_static("999"),
    );
    h.insert(
        "x-ratelimit-remaining-requests",
        http::HeaderValue::from_static("999"),
    );
    r
}

/// Which API a path is, after an optional Fireworks `/inference` prefix.
fn api_path(path: &str) -> (bool, &str) {
    let path = path.split('?').next().unwrap_or("");
    match path.strip_prefix("/inference") {
        Some(rest) => (true, rest),
        None => (false, path),
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let n = state.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let request_id = format!("req_mock_{n}");
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if state.record {
        if let Ok(mut r) = state.requests.lock() {
            r.push(Recorded {
                method: parts.method.to_string(),
                path: path.clone(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
        }
    }
    let headers = &parts.headers;
    let first_delay = header_num(headers, "x-mock-first-byte-delay-ms", 0);
    if first_delay > 0 {
        tokio::time::sleep(Duration::from_millis(first_delay)).await;
    }
    let fail = headers
        .get("x-mock-fail")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fail == "hang" {
        std::future::pending::<()>().await;
    }
    let (fireworks, api) = api_path(&path);
    let anthropic_api = api.starts_with("/v1/messages")
        || (api == "/v1/models" && headers.contains_key("x-api-key") && !fireworks);
    // A key containing `mock-refused` is refused as a provider refuses a
    // wrong key (for key tests).
    let refused_key = ["authorization", "x-api-key"].iter().any(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("mock-refused"))
    });
    let forced_status = if refused_key {
        Some(401)
    } else {
        headers
            .get("x-mock-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
    };
    if let Some(status) = forced_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if anthropic_api {
            json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": format!("mock {} error", status.as_u16())}, "request_id": request_id})
        } else {
            json!({"error": {"message": format!("mock {} error", status.as_u16()), "type": "server_error", "param": null, "code": null}})
        };
        let mut r = json_response(status, &body, &request_id);
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("7"));
            r.headers_mut()
                .insert("x-should-retry", http::HeaderValue::from_static("true"));
        }
        return Ok(r);
    }
    if fail == "json" || fail == "text" {
        let (body, ct) = if fail == "json" {
            (&b"{\"ok\":true}"[..], "application/json")
        } else {
            (&b"Internal error, try later"[..], "text/plain")
        };
        let mut r = Response::new(MockBody::Full(Some(Bytes::from_static(body))));
        r.headers_mut()
            .insert("content-type", http::HeaderValue::from_static(ct));
        return Ok(shape(r, headers));
    }
    if fail == "garbage" {
        let mut r = Response::new(MockBody::Full(Some(Bytes::from_static(
            b"<html>not json</html>",
        ))));
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = headers
        .get("x-mock-answer-model")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_else(|| request["model"].as_str().unwrap_or("mock-model").to_owned());
    let stream = request["stream"].as_bool().unwrap_or(false);
    let chunks = header_num(headers, "x-mock-chunks", 3);
    let delay = Duration::from_millis(header_num(headers, "x-mock-delay-ms", 0));
    let tool = headers
        .get("x-mock-tool")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let scenario = state.tool.lock().ok().and_then(|t| t.clone())?;
            // A request that brings a tool's result gets text; others get the call.
            let text = String::from_utf8_lossy(&body);
            let has_result = text.contains("\"tool_result\"")
                || text.contains("\"function_call_output\"")
                || text.contains("\"role\":\"tool\"");
            (!has_result).then_some(scenario)
        });
    let reset = fail == "reset";
    let response = match (parts.method.as_str(), api) {
        ("GET", "/v1/models") => json_response(
            StatusCode::OK,
            &models(fireworks, anthropic_api),
            &request_id,
        ),
        ("POST", "/v1/messages/count_tokens") => {
            json_response(StatusCode::OK, &json!({"input_tokens": 12}), &request_id)
        }
        ("POST", "/v1/messages") if stream => sse(
            &state,
            anthropic_events(&model, chunks, tool.as_deref()),
            delay,
            reset,
            &request_id,
        ),
        ("POST", "/v1/messages") => json_response(
            StatusCode::OK,
            &anthropic_message(&model, chunks, tool.as_deref()),
            &request_id,
        ),
        ("POST", "/v1/chat/completions") if stream => {
            let usage = request["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false);
            sse(
                &state,
                chat_events(&model, chunks, usage, fireworks, tool.as_deref()),
                delay,
                reset,
                &request_id,
            )
        }
        ("POST", "/v1/chat/completions") => json_response(
            StatusCode::OK,
            &chat_completion(&model, chunks, tool.as_deref()),
            &request_id,
        ),
        ("POST", "/v1/responses") if stream => sse(
            &state,
            responses_events(&model, chunks, tool.as_deref()),
            delay,
            reset,
            &request_id,
        ),
        ("POST", "/v1/responses") => {
            let mut r = json_response(
                StatusCode::OK,
                &response_object(&model, chunks, tool.as_deref()),
                &request_id,
            );
            // The caller's metadata comes after the usage, as the API orders it.
            if let (Some(metadata), MockBody::Full(Some(body))) =
                (request.get("metadata"), r.body_mut())
            {
                let text = String::from_utf8_lossy(body);
                if let Some(open) = text.strip_suffix('}') {
                    *body = Bytes::from(format!("{open},\"metadata\":{metadata}}}"));
                }
            }
            r
        }
        ("POST", "/v1/completions") if stream => {
            let usage = request["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false);
            sse(
                &state,
                completion_events(&model, chunks, usage),
                delay,
                reset,
                &request_id,
            )
        }
        ("POST", "/v1/completions") => json_response(
            StatusCode::OK,
            &json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000, "model": model,
                     "choices": [{"text": "Hello from the mock.", "index": 0, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}}),
            &request_id,
        ),
        ("POST", "/v1/embeddings") => json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                     "model": model, "usage": {"prompt_tokens": 5, "total_tokens": 5}}),
            &request_id,
        ),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"message": format!("mock: no route {} {path}", parts.method), "type": "invalid_request_error", "param": null, "code": null}}),
            &request_id,
        ),
    };
    Ok(shape(response, headers))
}

/// `%XX` escapes decoded (a header cannot carry control characters).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The usage figures of the `x-mock-usage` knob.
#[derive(Clone, Copy, Default)]
struct UsageKnob {
    input: u64,
    output: u64,
    cache_write: u64,
    cache_read: u64,
}

impl UsageKnob {
    fn from(headers: &HeaderMap) -> Option<Self> {
        let text = headers.get("x-mock-usage")?.to_str().ok()?;
        let mut u = UsageKnob::default();
        for part in text.split(',') {
            let (k, v) = part.split_once('=')?;
            let v: u64 = v.trim().parse().ok()?;
            match k.trim() {
                "input" => u.input = v,
                "output" => u.output = v,
                "cache_write" => u.cache_write = v,
                "cache_read" => u.cache_read = v,
                _ => return None,
            }
        }
        Some(u)
    }

    /// Rewrites every `usage` object of `value` (and of its `message` or
    /// `response`) in that object's own API's terms.
    fn apply(self, value: &mut Value) {
        if value["type"] == "message_start" {
            // Anthropic's first event: input and cache figures, output 1.
            if let Some(usage) = value.pointer_mut("/message/usage") {
                *usage = json!({"input_tokens": self.input, "output_tokens": 1,
                    "cache_creation_input_tokens": self.cache_write, "cache_read_input_tokens": self.cache_read});
            }
            return;
        }
        if let Some(inner) = value.get_mut("response") {
            if inner.is_object() {
                self.apply(inner);
            }
        }
        let Some(usage) = value.get_mut("usage").filter(|u| u.is_object()) else {
            return;
        };
        let prompt = self.input + self.cache_read + self.cache_write;
        if usage.get("prompt_tokens").is_some() {
            *usage = json!({"prompt_tokens": prompt, "completion_tokens": self.output,
                "total_tokens": prompt + self.output,
                "prompt_tokens_details": {"cached_tokens": self.cache_read}});
        } else if usage.get("input_tokens_details").is_some() {
            *usage = json!({"input_tokens": prompt, "input_tokens_details": {"cached_tokens": self.cache_read},
                "output_tokens": self.output, "total_tokens": prompt + self.output});
        } else if usage.get("input_tokens").is_some() {
            // An Anthropic message.
            *usage = json!({"input_tokens": self.input, "output_tokens": self.output,
                "cache_creation_input_tokens": self.cache_write, "cache_read_input_tokens": self.cache_read});
        } else if usage.get("output_tokens").is_some() {
            *usage = json!({"output_tokens": self.output});
        }
    }
}

/// Whether an event (as the mock writes it) carries the final usage.
fn carries_final_usage(event: &[u8]) -> bool {
    let has = |n: &[u8]| memchr::memmem::find(event, n).is_some();
    has(b"\"message_delta\"")
        || has(b"response.completed")
        || (has(b"\"usage\":{") && has(b"chat.completion.chunk"))
        || (has(b"\"usage\":{") && has(b"text_completion"))
}

/// How an answer is written, from the `x-mock-framing`, `x-mock-spacing`,
/// `x-mock-content-type` and `x-mock-encoding` knobs.
#[derive(Clone, Copy, Default)]
struct Shape {
    line_end: &'static str,
    spaced: bool,
    gzip: bool,
    usage: Option<UsageKnob>,
    pause_before_usage: Duration,
}

impl Shape {
    fn from(headers: &HeaderMap) -> Self {
        let knob = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        Shape {
            line_end: match knob("x-mock-framing") {
                "crlf" => "\r\n",
                "cr" => "\r",
                _ => "\n",
            },
            spaced: knob("x-mock-spacing") == "spaced",
            gzip: knob("x-mock-encoding") == "gzip",
            usage: UsageKnob::from(headers),
            pause_before_usage: Duration::from_millis(header_num(
                headers,
                "x-mock-pause-before-usage-ms",
                0,
            )),
        }
    }

    fn is_plain(self) -> bool {
        self.line_end == "\n" && !self.spaced && self.usage.is_none()
    }

    /// A JSON text with the usage knob applied.
    fn json(self, json: &str) -> String {
        match (self.usage, serde_json::from_str::<Value>(json)) {
            (Some(u), Ok(mut v)) => {
                u.apply(&mut v);
                v.to_string()
            }
            _ => json.to_owned(),
        }
    }

    /// A chunk as this shape writes it (before any gzip).
    fn text(self, chunk: &[u8]) -> Bytes {
        if self.is_plain() {
            return Bytes::copy_from_slice(chunk);
        }
        let text = String::from_utf8_lossy(chunk);
        let mut out = String::with_capacity(text.len() + 16);
        for line in text.split_inclusive('\n') {
            let (body, ended) = match line.strip_suffix('\n') {
                Some(b) => (b, true),
                None => (line, false),
            };
            let body = match body.strip_prefix("data: ") {
                Some(json) if json.starts_with('{') => format!("data: {}", self.json(json)),
                None if body.starts_with('{') => self.json(body),
                _ => body.to_owned(),
            };
            let body = match (self.spaced, body.strip_prefix("data: ")) {
                (true, Some(json)) => format!("data: {}", spaced(json)),
                (true, None) if body.starts_with('{') => spaced(&body),
                _ => body,
            };
            out.push_str(&body);
            if ended {
                out.push_str(self.line_end);
            }
        }
        Bytes::from(out)
    }
}

/// JSON text re-written with a space after every `:` and `,` (outside strings).
fn spaced(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 8);
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        out.push(c);
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ':' || c == ',' {
            out.push(' ');
        }
    }
    out
}

fn gzip_chunk(encoder: &mut GzEncoder<Vec<u8>>, chunk: &[u8]) -> Bytes {
    let _ = encoder.write_all(chunk);
    let _ = encoder.flush();
    Bytes::from(std::mem::take(encoder.get_mut()))
}

/// Applies the shaping knobs to an answer.
pub(crate) fn shape(response: Response<MockBody>, headers: &HeaderMap) -> Response<MockBody> {
    let shape = Shape::from(headers);
    let (mut parts, body) = response.into_parts();
    match headers
        .get("x-mock-content-type")
        .and_then(|v| v.to_str().ok())
    {
        Some("none") => {
            parts.headers.remove("content-type");
        }
        Some(other) => {
            if let Ok(v) = http::HeaderValue::from_str(other) {
                parts.headers.insert("content-type", v);
            }
        }
        None => {}
    }
    if shape.gzip {
        parts
            .headers
            .insert("content-encoding", http::HeaderValue::from_static("gzip"));
        parts.headers.remove("content-length");
    }
    if shape.is_plain() && !shape.gzip && shape.pause_before_usage.is_zero() {
        return Response::from_parts(parts, body);
    }
    let body = match body {
        MockBody::Full(data) => {
            let text = shape.text(&data.unwrap_or_default());
            let out = if shape.gzip {
                let mut e = GzEncoder::new(Vec::new(), Compression::default());
                let _ = e.write_all(&text);
                Bytes::from(e.finish().unwrap_or_default())
            } else {
                text
            };
            parts.headers.remove("content-length");
            MockBody::Full(Some(out))
        }
        MockBody::Channel(mut rx) => {
            let (tx, out) = mpsc::channel(4);
            tokio::spawn(async move {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
                while let Some(item) = rx.recv().await {
                    if let Ok(chunk) = &item {
                        if !shape.pause_before_usage.is_zero() && carries_final_usage(chunk) {
                            tokio::time::sleep(shape.pause_before_usage).await;
                        }
                    }
                    let item = item.map(|chunk| {
                        let text = shape.text(&chunk);
                        if shape.gzip {
                            gzip_chunk(&mut encoder, &text)
                        } else {
                            text
                        }
                    });
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
                if shape.gzip {
                    if let Ok(tail) = encoder.finish() {
                        let _ = tx.send(Ok(Bytes::from(tail))).await;
                    }
                }
            });
            MockBody::Channel(out)
        }
    };
    Response::from_parts(parts, body)
}

fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn models(fireworks: bool, anthropic: bool) -> Value {
    if fireworks {
        return json!({"object": "list", "data": [
            {"id": "accounts/fireworks/models/kimi-k2-instruct", "object": "model", "created": 1_700_000_000, "owned_by": "fireworks"},
            {"id": "accounts/fireworks/models/deepseek-v3p2", "object": "model", "created": 1_700_000_000, "owned_by": "fireworks"}]});
    }
    if anthropic {
        return json!({"data": [
            {"type": "model", "id": "claude-opus-4-6", "display_name": "Claude Opus 4.6", "created_at": "2026-02-01T00:00:00Z"},
            {"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6", "created_at": "2026-01-01T00:00:00Z"}],
            "has_more": false, "first_id": "claude-opus-4-6", "last_id": "claude-sonnet-4-6"});
    }
    json!({"object": "list", "data": [
        {"id": "gpt-5.5", "object": "model", "created": 1_700_000_000, "owned_by": "openai"},
        {"id": "text-embedding-3-small", "object": "model", "created": 1_700_000_000, "owned_by": "openai"},
        {"id": "sora-2", "object": "model", "created": 1_700_000_000, "owned_by": "system"},
        {"id": "sora-2-pro", "object": "model", "created": 1_700_000_000, "owned_by": "system"}]})
}

fn tokens(chunks: u64) -> Vec<String> {
    (0..chunks).map(|i| format!("tok{i} ")).collect()
}

fn anthropic_message(model: &str, chunks: u64, tool: Option<&str>) -> Value {
    let content = match tool {
        Some(name) => {
            json!([{"type": "tool_use", "id": "toolu_mock", "name": name, "input": {"command": "echo $((6*7))"}}])
        }
        None => json!([{"type": "text", "text": tokens(chunks).concat()}]),
    };
    json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": content,
           "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" }, "stop_sequence": null,
           "usage": {"input_tokens": 12, "output_tokens": chunks, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}})
}

fn anthropic_events(model: &str, chunks: u64, tool: Option<&str>) -> Vec<String> {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 1, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}}}),
    )];
    match tool {
        Some(name) => {
            out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}})));
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "{\"command\": \"echo $((6*7))\"}"}})));
        }
        None => {
            out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            out.push(ev("ping", json!({"type": "ping"})));
            for t in tokens(chunks) {
                out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})));
            }
        }
    }
    out.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(ev("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" }, "stop_sequence": null},
        "usage": {"output_tokens": chunks}})));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    out
}

fn chat_completion(model: &str, chunks: u64, tool: Option<&str>) -> Value {
    let message = match tool {
        Some(name) => {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_mock", "type": "function",
            "function": {"name": name, "arguments": "{\"command\":\"echo $((6*7))\"}"}}]})
        }
        None => json!({"role": "assistant", "content": tokens(chunks).concat()}),
    };
    json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000, "model": model,
           "choices": [{"index": 0, "message": message, "finish_reason": if tool.is_some() { "tool_calls" } else { "stop" }}],
           "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks,
                     "prompt_tokens_details": {"cached_tokens": 3}}})
}

/// Chat Completions events. OpenAI adds a usage-only chunk when asked
/// (`include_usage`); Fireworks puts usage on the final chunk always.
fn chat_events(
    model: &str,
    chunks: u64,
    usage: bool,
    fireworks: bool,
    tool: Option<&str>,
) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    match tool {
        Some(name) => out.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function",
            "function": {"name": name, "arguments": "{\"command\":\"echo $((6*7))\"}"}}]}),
            Value::Null,
        )),
        None => out.extend(
            tokens(chunks)
                .into_iter()
                .map(|t| chunk(json!({"content": t}), Value::Null)),
        ),
    }
    let finish = json!(if tool.is_some() { "tool_calls" } else { "stop" });
    if fireworks {
        out.push(format!("data: {}\n\n", json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}})));
    } else {
        out.push(chunk(json!({}), finish));
    }
    if usage && !fireworks {
        out.push(format!("data: {}\n\n", json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}})));
    }
    out.push("data: [DONE]\n\n".to_owned());
    out
}

/// Legacy Completions events, with the usage-only chunk when asked.
fn completion_events(model: &str, chunks: u64, usage: bool) -> Vec<String> {
    let chunk = |text: &str, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000, "model": model,
                   "choices": [{"text": text, "index": 0, "finish_reason": finish}]})
        )
    };
    let mut out: Vec<String> = tokens(chunks)
        .iter()
        .map(|t| chunk(t, Value::Null))
        .collect();
    out.push(chunk("", json!("stop")));
    if usage {
        out.push(format!("data: {}\n\n", json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000,
            "model": model, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}})));
    }
    out.push("data: [DONE]\n\n".to_owned());
    out
}

fn response_object(model: &str, chunks: u64, tool: Option<&str>) -> Value {
    let output = match tool {
        Some(name) => {
            json!([{"type": "function_call", "id": "fc_mock", "call_id": "call_mock", "name": name,
            "arguments": "{\"command\":[\"bash\",\"-lc\",\"echo $((6*7))\"]}", "status": "completed"}])
        }
        None => {
            json!([{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": tokens(chunks).concat(), "annotations": []}]}])
        }
    };
    json!({"id": "resp_mock", "object": "response", "created_at": 1_700_000_000, "status": "completed", "model": model,
           "output": output,
           "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": chunks,
                     "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12 + chunks}})
}

/// The Responses stream events the mock sends, for other mocks.
pub fn responses_events_for(model: &str, chunks: u64) -> Vec<String> {
    responses_events(model, chunks, None)
}

fn responses_events(model: &str, chunks: u64, tool: Option<&str>) -> Vec<String> {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let done = response_object(model, chunks, tool);
    let mut created = done.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    created["usage"] = Value::Null;
    let mut out = vec![ev(
        "response.created",
        json!({"type": "response.created", "sequence_number": 0, "response": created}),
    )];
    let item = done["output"][0].clone();
    out.push(ev(
        "response.output_item.added",
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
    ));
    if tool.is_none() {
        for t in tokens(chunks) {
            out.push(ev(
                "response.output_text.delta",
                json!({"type": "response.output_text.delta", "item_id": "msg_mock",
                "output_index": 0, "content_index": 0, "delta": t}),
            ));
        }
    }
    out.push(ev(
        "response.output_item.done",
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    ));
    out.push(ev(
        "response.completed",
        json!({"type": "response.completed", "response": done}),
    ));
    out
}

fn sse(
    state: &Arc<State>,
    events: Vec<String>,
    delay: Duration,
    reset: bool,
    request_id: &str,
) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel(4);
    let state = state.clone();
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if reset && i == 1 {
                // Let the first event reach the client before the connection breaks.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "mock reset",
                    )))
                    .await;
                return;
            }
            if tx.send(Ok(Bytes::from(event))).await.is_err() {
                state.abandoned.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    });
    let mut r = Response::new(MockBody::Channel(rx));
    let h = r.headers_mut();
    h.insert(
        "content-type",
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert("cache-control", http::HeaderValue::from_static("no-cache"));
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        h.insert("request-id", v.clone());
        h.insert("x-request-id", v);
    }
    r
}
