//! Fidelity through the real server: request bodies reach the provider
//! byte for byte (only the member the gateway must change differs);
//! compressed request bodies are read and forwarded as sent; event streams
//! are relayed event by event whatever their line ends, spacing, content
//! type or coding; a `200` that is not what the route speaks becomes a 502.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use llm_integration_core::sse::SseFramer;
use llm_integration_mock::MockUpstream;
use llm_integration_server::testing::{Dirs, Server};
use reqwest::StatusCode;
use serde_json::Value;

const HOST: &str = "llm.int.exe.xyz";

fn client(s: &Server) -> reqwest::Client {
    s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &[HOST])
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    /// When each chunk arrived, from the response head.
    arrivals: Vec<Duration>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The data of each event (any line ends).
    fn events(&self) -> Vec<String> {
        let mut framer = SseFramer::new(false);
        let mut out = Vec::new();
        let mut push = |e: llm_integration_core::sse::SseEvent<'_>| {
            if e.has_data {
                out.push(String::from_utf8_lossy(e.data).into_owned());
            }
        };
        framer.feed(&self.body, &mut push);
        framer.finish(&mut push);
        out
    }
}

async fn send(s: &Server, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let mut r = client(s)
        .post(format!("{}{path}", s.data_url(HOST)))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let mut response = r.send().await.unwrap();
    let start = Instant::now();
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        arrivals.push(start.elapsed());
        body.extend_from_slice(&chunk);
    }
    Answer {
        status,
        headers,
        body,
        arrivals,
    }
}

/// Usage rows by model, once `expected` requests are recorded in all.
async fn usage_by_model(s: &Server, expected: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = s.json("usage --by model").await;
        let rows = v["rows"].as_array().unwrap().clone();
        let total: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        if total >= expected {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "only {total} of {expected} records: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row<'a>(rows: &'a [Value], model: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["key"] == model)
        .unwrap_or_else(|| panic!("no usage for {model}: {rows:?}"))
}

/// `body` with `splice` inserted just before its final `}`.
fn with_member_at_end(body: &str, splice: &str) -> Vec<u8> {
    let at = body.rfind('}').unwrap();
    format!("{}{splice}{}", &body[..at], &body[at..]).into_bytes()
}

/// A deterministic stream of pseudo-random numbers.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

/// A random JSON value whose text keeps what re-serialising would lose:
/// key order, big and long numbers, escapes, odd whitespace.
fn random_json(rng: &mut Lcg, depth: u32, out: &mut String) {
    let ws = |rng: &mut Lcg, out: &mut String| {
        for _ in 0..rng.next(3) {
            out.push([' ', '\n', '\t', '\r'][rng.next(4) as usize]);
        }
    };
    match if depth > 3 { rng.next(4) } else { rng.next(6) } {
        0 => out.push_str(
            [
                "12345678901234567890123",
                "1796084580.8767915",
                "-0.0",
                "1e400",
                "0.1000000000000000055511151231257827",
            ][rng.next(5) as usize],
        ),
        1 => out.push_str(
            [
                r#""\u00e9\ud83d\ude00 \"q\" \\""#,
                r#""zzz""#,
                r#""""#,
                "\"é😀\"",
            ][rng.next(4) as usize],
        ),
        2 => out.push_str(["true", "false", "null"][rng.next(3) as usize]),
        3 => out.push_str(&rng.next(1000).to_string()),
        4 => {
            out.push('[');
            for i in 0..rng.next(4) {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                random_json(rng, depth + 1, out);
                ws(rng, out);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.next(5) {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                out.push_str(&format!("\"k{}_{}\"", rng.next(1000), i));
                ws(rng, out);
                out.push(':');
                ws(rng, out);
                random_json(rng, depth + 1, out);
            }
            out.push('}');
        }
    }
}

#[tokio::test]
async fn request_bodies_reach_the_provider_byte_for_byte() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;

    // The SDK default: a stream with no stream_options; the usage request
    // is spliced in before the last brace, nothing else moves.
    let chat = r#"{ "model":"gpt-5.5", "stream": true,
  "response_format": {"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object",
     "properties":{"reasoning":{"type":"string"},"answer":{"type":"string"},"confidence":{"type":"number"}}}}},
  "tools":[{"type":"function","function":{"name":"search","parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer"}}}}}],
  "messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00", "n": 1796084580.8767915}]
}
"#;
    // A prefixed model: only the model's value changes.
    let prefixed = r#"{"model" :  "anthropic/claude-sonnet-4-6","max_tokens":64,"messages":[
  {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"calc","input":{"n":12345678901234567890123,"b":1e400}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}]}"#;
    // A Codex request: read for metering, sent unchanged.
    let codex = r#"{"model":"gpt-5.5","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],"prompt_cache_key":"1796084580.8767915","temperature":1796084580.8767915,"max_output_tokens":100}"#;
    // The client asked for no usage: the value alone flips.
    let declined = r#"{"model":"gpt-5.5","stream":true,"stream_options":{"include_usage":false,"x":[1,2]},"messages":[]}"#;
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "/v1/chat/completions",
            chat,
            with_member_at_end(chat, r#","stream_options":{"include_usage":true}"#),
        ),
        (
            "/v1/messages",
            prefixed,
            prefixed
                .replacen(
                    "\"anthropic/claude-sonnet-4-6\"",
                    "\"claude-sonnet-4-6\"",
                    1,
                )
                .into_bytes(),
        ),
        ("/v1/responses", codex, codex.as_bytes().to_vec()),
        (
            "/v1/chat/completions",
            declined,
            declined.replacen("false", "true", 1).into_bytes(),
        ),
    ];
    for (path, body, want) in cases {
        mock.clear();
        let answer = send(&s, path, body.as_bytes().to_vec(), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
        let got = mock.last().unwrap().body;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{path}"
        );
    }

    // Random bodies of every shape, with a prefixed model somewhere in them.
    let mut rng = Lcg(7);
    for round in 0..40 {
        let mut members = Vec::new();
        for _ in 0..rng.next(5) {
            let mut v = String::new();
            random_json(&mut rng, 0, &mut v);
            members.push(format!("\"m{}\" : {v}", members.len()));
        }
        let at = rng.next(members.len() as u64 + 1) as usize;
        members.insert(at, "\"model\":\"openai/gpt-5.5\"".to_owned());
        let body = format!("{{ {} }}", members.join(" ,\n "));
        mock.clear();
        let answer = send(&s, "/v1/responses", body.clone().into_bytes(), &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "round {round}: {body}: {}",
            answer.text()
        );
        let want = body.replacen("\"openai/gpt-5.5\"", "\"gpt-5.5\"", 1);
        assert_eq!(
            String::from_utf8_lossy(&mock.last().unwrap().body),
            want,
            "round {round}"
        );
    }

    // Ambiguous or unreadable bodies are refused, not guessed at: on the
    // generic routes, and on the forced ones whose body the gateway reads
    // (a gateway source meters it), never forwarded unread.
    let refused: [(&[u8], &str); 6] = [
        (br#"{"model":"gpt-5.5","model":"claude-x"}"#, "more than once"),
        (br#"{"model":"gpt-5.5","stream":true,"stream":true}"#, "more than once"),
        (br#"{"model":"gpt-5.5","m\u006fdel":"claude-x"}"#, "more than once"),
        (
            br#"{"model":"gpt-5.5","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}"#,
            "more than once",
        ),
        (b"{\"model\":\"gpt-5.5\",\"x\":\"\xff\"}", "not valid UTF-8"),
        (b"{\"model\":\"gpt-5.5\"} trailing", "not a valid JSON object"),
    ];
    for path in [
        "/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/openai/v1/completions",
        "/anthropic/v1/messages",
    ] {
        for (body, says) in refused {
            if path.contains("messages") && body.windows(14).any(|w| w == b"stream_options") {
                continue; // read only where the gateway asks for usage
            }
            mock.clear();
            let answer = send(&s, path, body.to_vec(), &[]).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{path}: {}",
                answer.text()
            );
            assert!(answer.text().contains(says), "{path}: {}", answer.text());
            assert!(mock.requests().is_empty(), "{path}: forwarded");
        }
    }
    // Other forced routes carry what they carry (a multipart upload, say),
    // on the owner's own key (the platform's reaches inference only).
    let (status, out) = s
        .with_stdin(
            "integrations edit llm --openai=byok --openai-key=-",
            "sk-own-openai-0123456789abcdef",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    mock.clear();
    let upload = b"--x\r\nnot json".to_vec();
    let answer = send(&s, "/openai/v1/audio/transcriptions", upload.clone(), &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::NOT_FOUND,
        "the mock's own answer: {}",
        answer.text()
    );
    assert_eq!(mock.last().unwrap().body, upload);
    s.stop().await;
}

fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn compressed_request_bodies_are_read_and_forwarded_as_sent() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start_with(&dirs, &mock.url(), |c| c.limits.max_body = 1 << 20).await;
    let plain = br#"{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    for coding in ["gzip", "deflate", "br", "zstd"] {
        for path in ["/v1/messages", "/anthropic/v1/messages"] {
            mock.clear();
            let coded = compress(coding, plain);
            let answer = send(&s, path, coded.clone(), &[("content-encoding", coding)]).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{coding} {path}: {}",
                answer.text()
            );
            let seen = mock.last().unwrap();
            assert_eq!(seen.body, coded, "{coding} {path}: forwarded as sent");
            assert_eq!(seen.header("content-encoding"), Some(coding));
        }
    }
    // A body the gateway edits is sent decoded, without its coding.
    let prefixed = br#"{"model":"anthropic/claude-sonnet-4-6","max_tokens":5,"messages":[]}"#;
    mock.clear();
    let answer = send(
        &s,
        "/v1/messages",
        compress("br", prefixed),
        &[("content-encoding", "br")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = mock.last().unwrap();
    assert_eq!(seen.header("content-encoding"), None);
    assert_eq!(
        seen.body,
        br#"{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[]}"#.to_vec()
    );
    // A bomb (4 MiB decoded against a 1 MiB limit), garbage, unknown codings.
    let bomb = format!(r#"{{"model":"claude-x","pad":"{}"}}"#, "0".repeat(4 << 20));
    let cases: [(Vec<u8>, &str, StatusCode, &str); 3] = [
        (
            compress("gzip", bomb.as_bytes()),
            "gzip",
            StatusCode::PAYLOAD_TOO_LARGE,
            "over the gateway's limit",
        ),
        (
            b"not gzip at all".to_vec(),
            "gzip",
            StatusCode::BAD_REQUEST,
            "could not be decoded",
        ),
        (
            plain.to_vec(),
            "compress",
            StatusCode::BAD_REQUEST,
            "Content-Encoding \\\"compress\\\" is not supported",
        ),
    ];
    for (body, coding, status, says) in cases {
        mock.clear();
        let answer = send(&s, "/v1/messages", body, &[("content-encoding", coding)]).await;
        assert_eq!(answer.status, status, "{coding}: {}", answer.text());
        assert!(answer.text().contains(says), "{}", answer.text());
        assert!(
            answer.text().starts_with(r#"{"type":"error""#),
            "Anthropic dialect: {}",
            answer.text()
        );
        assert!(
            mock.requests().is_empty(),
            "{coding}: nothing reached the upstream"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn event_streams_are_relayed_whatever_their_framing() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let mut requests = 0;
    for framing in ["lf", "crlf", "cr"] {
        for spacing in ["plain", "spaced"] {
            let model = format!("gpt-5.5-{framing}-{spacing}");
            let body = format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#);
            let answer = send(
                &s,
                "/v1/chat/completions",
                body.into_bytes(),
                &[
                    ("x-mock-framing", framing),
                    ("x-mock-spacing", spacing),
                    ("x-mock-chunks", "3"),
                    ("x-mock-delay-ms", "300"),
                ],
            )
            .await;
            requests += 1;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
            let events = answer.events();
            assert_eq!(
                events.last().map(String::as_str),
                Some("[DONE]"),
                "{framing} {spacing}: {events:?}"
            );
            for e in &events {
                if let Ok(v) = serde_json::from_str::<Value>(e) {
                    assert!(
                        v["choices"].as_array().is_some_and(|c| !c.is_empty()),
                        "{framing} {spacing}: the usage chunk the client did not ask for was removed: {e}"
                    );
                }
            }
            // Relayed as they came: the first event long before the last.
            let (first, last) = (answer.arrivals[0], *answer.arrivals.last().unwrap());
            assert!(
                last.saturating_sub(first) > Duration::from_millis(400),
                "{framing} {spacing}: events arrived together ({:?})",
                answer.arrivals
            );
        }
    }
    let rows = usage_by_model(&s, requests).await;
    for framing in ["lf", "crlf", "cr"] {
        for spacing in ["plain", "spaced"] {
            let r = row(&rows, &format!("gpt-5.5-{framing}-{spacing}"));
            assert_eq!(r["output_tokens"], 3, "{framing} {spacing}: {r}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn streams_without_a_content_type_are_recognised() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let answer = send(
        &s,
        "/v1/messages",
        br#"{"model":"claude-sonnet-4-6-untyped","max_tokens":9,"stream":true,"messages":[]}"#
            .to_vec(),
        &[("x-mock-content-type", "none")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    assert!(answer.text().contains("message_stop"));
    let rows = usage_by_model(&s, 1).await;
    let r = row(&rows, "claude-sonnet-4-6-untyped");
    assert_eq!(
        (r["input_tokens"].as_u64(), r["output_tokens"].as_u64()),
        (Some(12), Some(3)),
        "{r}"
    );
    s.stop().await;
}

/// A path, a body, the mock's knobs, and what the 502 says.
type Refusal = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn a_200_that_is_not_what_the_route_speaks_is_a_502() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let cases: [Refusal; 4] = [
        (
            "/v1/messages",
            r#"{"model":"claude-a","stream":true,"max_tokens":5}"#,
            &[("x-mock-fail", "garbage")],
            "the upstream answered text/html where an event stream was expected",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-5.5-b"}"#,
            &[("x-mock-fail", "garbage")],
            "the upstream answered text/html where JSON was expected",
        ),
        // JSON to a request that asked for a stream.
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-5.5-c","stream":true}"#,
            &[("x-mock-fail", "json")],
            "the upstream answered JSON where an event stream was expected",
        ),
        (
            "/v1/responses",
            r#"{"model":"gpt-5.5-d"}"#,
            &[
                ("x-mock-content-type", "text/plain"),
                ("x-mock-fail", "text"),
            ],
            "the upstream answered text/plain where JSON was expected",
        ),
    ];
    for (path, body, headers, says) in cases {
        let answer = send(&s, path, body.as_bytes().to_vec(), headers).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_GATEWAY,
            "{path}: {}",
            answer.text()
        );
        assert!(answer.text().contains(says), "{path}: {}", answer.text());
        let dialect_anthropic = answer.text().starts_with(r#"{"type":"error""#);
        assert_eq!(
            dialect_anthropic,
            path == "/v1/messages",
            "{}",
            answer.text()
        );
    }
    // Each is recorded, with the status the client received.
    let rows = usage_by_model(&s, cases.len() as u64).await;
    for model in ["claude-a", "gpt-5.5-b", "gpt-5.5-c", "gpt-5.5-d"] {
        assert_eq!(row(&rows, model)["requests"], 1, "{model}");
    }
    let metrics = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (provider, n) in [("anthropic", 1), ("openai", 3)] {
        let line = format!("llm_integration_requests_total{{provider=\"{provider}\",source=\"gateway\",status=\"5xx\"}} {n}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    s.stop().await;
}

#[tokio::test]
async fn compressed_answers_are_metered_and_relayed() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let gz = [("x-mock-encoding", "gzip")];
    // An answer coded although the gateway asked for identity reaches the
    // client decoded (the credential is looked for in what it says).
    let answer = send(
        &s,
        "/v1/messages",
        br#"{"model":"claude-gz-json","max_tokens":5,"messages":[]}"#.to_vec(),
        &gz,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-encoding"), None);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["type"], "message");
    let answer = send(
        &s,
        "/v1/messages",
        br#"{"model":"claude-gz-sse","max_tokens":5,"stream":true,"messages":[]}"#.to_vec(),
        &gz,
    )
    .await;
    assert_eq!(answer.header("content-encoding"), None);
    assert!(answer.text().contains("message_stop"));
    assert!(!answer.text().contains("event: error"), "{}", answer.text());
    // An answer the relay changes (the usage chunk removed) is relayed decoded.
    let answer = send(
        &s,
        "/v1/chat/completions",
        br#"{"model":"gpt-gz-strip","stream":true,"messages":[]}"#.to_vec(),
        &gz,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-encoding"), None);
    let events = answer.events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert!(
        !answer.text().contains("\"choices\":[]"),
        "{}",
        answer.text()
    );
    let rows = usage_by_model(&s, 3).await;
    for (model, input, output) in [
        ("claude-gz-json", 12, 3),
        ("claude-gz-sse", 12, 3),
        ("gpt-gz-strip", 12, 3),
    ] {
        let r = row(&rows, model);
        assert_eq!(
            (r["input_tokens"].as_u64(), r["output_tokens"].as_u64()),
            (Some(input), Some(output)),
            "{model}: {r}"
        );
    }
    s.stop().await;
}
