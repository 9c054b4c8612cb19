//! A hostile tenant and a hostile upstream, through real sockets: the
//! platform's shared key reaches the inference surface only, path by path;
//! credentials an upstream echoes never reach a VM, a log or a metric;
//! connections that hold nothing are closed in time and capped per peer;
//! a burst of model lists asks the upstream once; identity headers never
//! reach a provider; the gateway answers OPTIONS itself.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use llm_integration_mock::MockUpstream;
use llm_integration_server::testing::{Dirs, Process, Server, GATEWAY_KEYS};
use reqwest::StatusCode;
use serde_json::{json, Value};

const OWN_KEY: &str = "sk-own-openai-0123456789abcdef";
const HOSTS: [&str; 2] = ["llm.int.exe.xyz", "own.int.exe.xyz"];

fn client(s: &Server) -> reqwest::Client {
    s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &HOSTS)
}

async fn own_integration(s: &Server) {
    let (status, out) = s
        .with_stdin(
            "integrations add llm --name own --openai=byok --openai-key=- --anthropic=disabled --fireworks=disabled --attach auto:all",
            OWN_KEY,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
}

#[tokio::test]
async fn the_shared_key_reaches_the_inference_surface_only() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    own_integration(&s).await;
    let c = client(&s);
    let body = json!({"model": "gpt-5.5", "messages": []});
    // (method, path): refused on the shared key, forwarded on the owner's.
    let account = [
        ("GET", "/openai/v1/files"),
        ("DELETE", "/openai/v1/files/file-abc"),
        ("POST", "/openai/v1/files"),
        ("GET", "/openai/v1/batches"),
        ("POST", "/openai/v1/vector_stores"),
        ("GET", "/openai/v1/responses/resp_abc"),
        ("DELETE", "/openai/v1/responses/resp_abc"),
        ("GET", "/openai/v1/chat/completions"),
        ("GET", "/openai/v1/chat/completions/chatcmpl-1"),
        ("POST", "/openai/v1/fine_tuning/jobs"),
        ("GET", "/openai/v1/organization/costs"),
        ("POST", "/openai/v1/containers"),
        ("DELETE", "/openai/v1/models/ft:gpt-4o:acme"),
        ("GET", "/v1/files"),
        ("DELETE", "/v1/files/file-abc"),
        ("GET", "/v1/batches"),
        ("POST", "/openai/v1/Files"),
        ("POST", "/openai/v1/chat/completions/"),
        ("GET", "/openai/v1/%66iles"),
    ];
    for (method, path) in account {
        mock.clear();
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c
            .request(
                m.clone(),
                format!("{}{path}", s.data_url("llm.int.exe.xyz")),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let retry = r.headers().get("x-should-retry").cloned();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
        assert!(
            text.contains("integrations edit llm --openai=byok"),
            "{method} {path}: {text}"
        );
        assert_eq!(retry.unwrap(), "false");
        assert!(
            mock.requests().is_empty(),
            "{method} {path} reached the provider"
        );
        // The owner's own key: forwarded (the mock answers what it answers).
        mock.clear();
        let r = c
            .request(m, format!("{}{path}", s.data_url("own.int.exe.xyz")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), StatusCode::FORBIDDEN, "{method} {path} on byok");
        let seen = mock
            .last()
            .unwrap_or_else(|| panic!("{method} {path} on byok was not forwarded"));
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {OWN_KEY}").as_str())
        );
    }
    // Anthropic's account surface, in Anthropic's dialect.
    for (method, path) in [
        ("GET", "/anthropic/v1/messages/batches"),
        ("POST", "/v1/messages/batches"),
        ("GET", "/anthropic/v1/files"),
    ] {
        let r = c
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", s.data_url("llm.int.exe.xyz")),
            )
            .header("anthropic-version", "2023-06-01")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "permission_error");
    }
    // The inference surface passes on the shared key.
    mock.clear();
    for (path, body) in [
        (
            "/openai/v1/chat/completions",
            json!({"model": "gpt-5.5", "messages": []}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "x"}),
        ),
        (
            "/anthropic/v1/messages/count_tokens",
            json!({"model": "claude-sonnet-4-6", "messages": []}),
        ),
        (
            "/fireworks/inference/v1/chat/completions",
            json!({"model": "accounts/fireworks/models/x", "messages": []}),
        ),
    ] {
        let r = c
            .post(format!("{}{path}", s.data_url("llm.int.exe.xyz")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{path}: {}",
            r.text().await.unwrap()
        );
    }
    let r = c
        .get(format!(
            "{}/openai/v1/models/gpt-5.5",
            s.data_url("llm.int.exe.xyz")
        ))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::FORBIDDEN);
    // OPTIONS is the gateway's own: answered, never forwarded or metered.
    mock.clear();
    let before = s.json("usage").await["rows"].clone();
    for path in ["/v1/messages", "/v1/responses", "/openai/v1/files"] {
        let r = c
            .request(
                reqwest::Method::OPTIONS,
                format!("{}{path}", s.data_url("llm.int.exe.xyz")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
        assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
    }
    assert!(mock.requests().is_empty());
    assert_eq!(s.json("usage").await["rows"], before);
    s.stop().await;
}

/// A listener on a free loopback port whose every connection `handle`
/// serves (in a task of its own); its address.
async fn serving<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// One HTTP/1.1 request read from `stream`: its head (lowercased), the
/// credential it carried (`x-api-key` or a bearer token, in the gateway
/// key's own casing) and its body (by `content-length`).
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, String, String)> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => read.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while read.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => read.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&read[head_end..]).into_owned();
    let received = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("x-api-key: ")
                .or_else(|| l.strip_prefix("authorization: bearer "))
        })
        .unwrap_or("none")
        .trim()
        .to_owned();
    let key = GATEWAY_KEYS
        .iter()
        .find(|k| k.to_lowercase() == received)
        .map_or(received, |k| (*k).to_owned());
    Some((head, key, body))
}

/// An upstream that answers every request with a 401 quoting the credential
/// it received.
async fn echoing_upstream() -> SocketAddr {
    serving(|mut stream| async move {
                use tokio::io::AsyncWriteExt;
                let Some((_, key, _)) = read_request(&mut stream).await else {
                    return;
                };
                let body = json!({"error": {"message": format!("Incorrect API key provided: {key}. You can find your API key at https://platform.example/keys."), "type": "invalid_request_error"}}).to_string();
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_echoed_by_an_upstream_never_reach_the_vm_a_log_or_a_metric() {
    let upstream = echoing_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    let url = format!("http://{upstream}");
    command
        .env("LLM_INTEGRATION_LOG", "trace")
        .env("LLM_INTEGRATION_DEFAULT_HOST", "llm.int.exe.xyz")
        .env("LLM_INTEGRATION_ANTHROPIC_BASE_URL", &url)
        .env("LLM_INTEGRATION_OPENAI_BASE_URL", &url)
        .env("LLM_INTEGRATION_FIREWORKS_BASE_URL", &url)
        .env("LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY", GATEWAY_KEYS[0])
        .env("LLM_INTEGRATION_GATEWAY_OPENAI_KEY", GATEWAY_KEYS[1])
        .env("LLM_INTEGRATION_GATEWAY_FIREWORKS_KEY", GATEWAY_KEYS[2]);
    let mut running = Process::start(command, dir.path());
    let http = reqwest::Client::new();
    let data = &running.data;
    let mut answers = Vec::new();
    for (path, body) in [
        ("/v1/models", None),
        (
            "/v1/chat/completions",
            Some(json!({"model": "gpt-5.5", "messages": []})),
        ),
        (
            "/v1/messages",
            Some(json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": []})),
        ),
        (
            "/v1/chat/completions",
            Some(json!({"model": "accounts/fireworks/models/x", "messages": []})),
        ),
    ] {
        let r = match body {
            Some(b) => http
                .post(format!("{data}{path}"))
                .json(&b)
                .send()
                .await
                .unwrap(),
            None => http.get(format!("{data}{path}")).send().await.unwrap(),
        };
        let status = r.status();
        let text = r.text().await.unwrap();
        if path != "/v1/models" {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{path}: the upstream's status passes"
            );
            assert!(
                text.contains("Incorrect API key provided: [REDACTED]."),
                "{path}: {text}"
            );
        } else {
            assert!(text.contains("failed_providers"), "{text}");
        }
        answers.push(text);
    }
    let metrics = http
        .get(format!("{}/metrics", running.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    running.sigterm();
    running.wait();
    let log = running.log_text();
    for key in GATEWAY_KEYS {
        for (what, text) in answers
            .iter()
            .map(|a| ("an answer", a.as_str()))
            .chain([("the log", log.as_str()), ("the metrics", metrics.as_str())])
        {
            assert!(!text.contains(key), "{what} holds a gateway key:\n{text}");
        }
    }
}

/// An upstream that answers 200 and quotes the credential it received in
/// its answer: in an `error` event after a first event when the request
/// streams (the credential cut across two writes), else in a JSON answer's
/// text, gzip-coded when the request says `gzip-please`. Anthropic shapes
/// on `/v1/messages`, Chat Completions shapes elsewhere.
async fn echoing_answer_upstream() -> SocketAddr {
    serving(|mut stream| async move {
                use tokio::io::AsyncWriteExt;
                let Some((head, key, body)) = read_request(&mut stream).await else {
                    return;
                };
                let anthropic = head.starts_with("post /v1/messages");
                let streams = body.contains("\"stream\":true");
                if streams {
                    // The model it names is the key, when asked.
                    let model = if body.contains("model-please") {
                        key.clone()
                    } else {
                        "claude-sonnet-4-6".to_owned()
                    };
                    let (first, error) = if anthropic {
                        (
                            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
                            json!({"type": "error", "error": {"type": "overloaded_error", "message": format!("overloaded; key {key} is throttled")}}),
                        )
                    } else {
                        (
                            json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-5.5", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]}),
                            json!({"error": {"message": format!("server error; key {key} is throttled"), "type": "server_error"}}),
                        )
                    };
                    let name = |v: &Value| {
                        v["type"]
                            .as_str()
                            .filter(|_| anthropic)
                            .map_or(String::new(), |t| format!("event: {t}\n"))
                    };
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                    if body.contains("cut-please") || body.contains("whole-please") {
                        // The first event, then the end (a stream cut
                        // short), or the API's last event.
                        let last = match (body.contains("whole-please"), anthropic) {
                            (false, _) => String::new(),
                            (true, true) => {
                                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
                                    .to_owned()
                            }
                            (true, false) => "data: [DONE]\n\n".to_owned(),
                        };
                        let text = format!("{head}{}data: {first}\n\n{last}", name(&first));
                        let _ = stream.write_all(text.as_bytes()).await;
                        return;
                    }
                    let text = format!(
                        "{}data: {first}\n\n{}data: {error}\n\n",
                        name(&first),
                        name(&error)
                    );
                    let cut = text.find(&key).unwrap_or(0) + key.len() / 2;
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&text.as_bytes()[..cut]).await;
                    let _ = stream.flush().await;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let _ = stream.write_all(&text.as_bytes()[cut..]).await;
                    return;
                }
                if body.contains("err401-long-please") {
                    // Plain text, gzip-coded, the key where the translated
                    // message's snippet (500 or 1,000 characters) ends.
                    let pad = if anthropic { 480 } else { 980 };
                    let text = format!("{}{key} is invalid", "x".repeat(pad));
                    let mut gz =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    let _ = gz.write_all(text.as_bytes());
                    let coded = gz.finish().unwrap_or_default();
                    let head = format!(
                        "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        coded.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&coded).await;
                    return;
                }
                if body.contains("redirect-please") || body.contains("not-modified-please") {
                    let status = if body.contains("redirect") {
                        "302 Found"
                    } else {
                        "304 Not Modified"
                    };
                    let head = format!("HTTP/1.1 {status}\r\nlocation: https://elsewhere.example/v1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    return;
                }
                let said = format!("your key is {key}.");
                // Output no request could reach, when asked.
                // Output no request could reach, or a figure past any model,
                // when asked.
                let (input, output) = if body.contains("usage-lie-please") {
                    (json!(3), json!(5_000_000))
                } else if body.contains("usage-absurd-please") {
                    (json!(1e300), json!(5))
                } else {
                    (json!(3), json!(5))
                };
                let answer = if body.contains("err200-please") {
                    // An error, with a 200, quoting the key.
                    json!({"error": {"message": format!("upstream saw {key}"), "type": "server_error"}})
                } else if anthropic {
                    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [{"type": "text", "text": said}], "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": input, "cache_read_input_tokens": input, "output_tokens": output}})
                } else {
                    json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-5.5", "choices": [{"index": 0, "message": {"role": "assistant", "content": said}, "finish_reason": "stop"}], "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": 8}})
                }
                .to_string()
                .into_bytes();
                let (answer, coding) = if body.contains("gzip-please") {
                    let mut gz =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    let _ = gz.write_all(&answer);
                    (
                        gz.finish().unwrap_or_default(),
                        "content-encoding: gzip\r\n",
                    )
                } else {
                    (answer, "")
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{coding}content-length: {}\r\nconnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&answer).await;
    })
    .await
}

/// The rule: the credential the gateway injected never reaches the VM, in
/// any byte of any answer: an error event in the middle of a stream (cut
/// across reads), a successful JSON answer (its length kept true), an
/// answer coded against the gateway's `identity`, forwarded or translated.
/// Output an upstream reports past the request's stated limit is charged
/// at the limit, so a lying or broken provider cannot drain an allocation
/// with one answer's output; cached counts never exceed their prompt; a
/// figure past any model (1e300 input tokens) is no count, and the request
/// is charged an estimate.
#[tokio::test(flavor = "multi_thread")]
async fn output_past_the_stated_limit_is_charged_at_the_limit() {
    let upstream = echoing_answer_upstream().await;
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &format!("http://{upstream}")).await;
    let before = s.json("usage").await["allocation_micros"].as_i64().unwrap();
    for (path, model) in [
        ("/v1/chat/completions", "gpt-5.5"),
        ("/v1/messages", "claude-sonnet-4-6"),
    ] {
        for ask in ["usage-lie-please", "usage-absurd-please"] {
            let r = client(&s)
                .post(format!("{}{path}", s.data_url(HOSTS[0])))
                .json(&json!({"model": model, "max_tokens": 100,
                    "messages": [{"role": "user", "content": ask}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path} {ask}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let v = s.json("usage --by model").await;
        let rows = v["rows"].as_array().unwrap().clone();
        if rows.len() >= 2 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        // 100 for the lie; the absurd report's own output figure is not
        // believed either, so it is estimated, within the limit.
        let output = row["output_tokens"].as_u64().unwrap();
        assert!((101..=200).contains(&output), "{row}");
        // 3 + 3 (cached) for the lie, the request's estimate for the
        // absurd report: nowhere near ten million.
        let input = row["input_tokens"].as_u64().unwrap();
        assert!(input < 1_000, "{row}");
        assert_eq!(row["estimated_requests"], 1, "the absurd report: {row}");
    }
    // What was debited is what the rows say.
    let debited: i64 = rows
        .iter()
        .map(|r| r["debited_micros"].as_i64().unwrap())
        .sum();
    let after = s.json("usage").await["allocation_micros"].as_i64().unwrap();
    assert_eq!(before - after, debited);
    s.stop().await;
}

/// Posts to `data` (a gateway's data plane) at `path` a request for
/// `model` whose one user message is `text` (which tells the echoing
/// upstreams how to answer).
async fn ask(
    http: &reqwest::Client,
    data: &str,
    path: &str,
    model: &str,
    stream: bool,
    text: &str,
) -> reqwest::Response {
    let body = json!({"model": model, "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": text}]});
    http.post(format!("{data}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The server on the gateway keys, every provider at `upstream`.
fn gateway_on(upstream: SocketAddr, dir: &std::path::Path) -> Process {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    let url = format!("http://{upstream}");
    command
        .env("LLM_INTEGRATION_DEFAULT_HOST", "llm.int.exe.xyz")
        .env("LLM_INTEGRATION_ANTHROPIC_BASE_URL", &url)
        .env("LLM_INTEGRATION_OPENAI_BASE_URL", &url)
        .env("LLM_INTEGRATION_FIREWORKS_BASE_URL", &url)
        .env("LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY", GATEWAY_KEYS[0])
        .env("LLM_INTEGRATION_GATEWAY_OPENAI_KEY", GATEWAY_KEYS[1])
        .env("LLM_INTEGRATION_GATEWAY_FIREWORKS_KEY", GATEWAY_KEYS[2]);
    Process::start(command, dir)
}

/// A stream the upstream ends before its API's last event is not a
/// complete answer: the client gets an `error` event after what came, in
/// its dialect, forwarded or translated; a whole stream gets none.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_short_by_the_upstream_ends_with_an_error_event() {
    let upstream = echoing_answer_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut running = gateway_on(upstream, dir.path());
    let http = reqwest::Client::new();
    for (path, model) in [
        ("/v1/messages", "claude-sonnet-4-6"),
        ("/v1/chat/completions", "gpt-5.5"),
        ("/v1/messages", "gpt-5.5"),
        ("/v1/chat/completions", "claude-sonnet-4-6"),
    ] {
        for how in ["cut-please", "whole-please"] {
            let r = ask(&http, &running.data, path, model, true, how).await;
            assert_eq!(r.status(), StatusCode::OK);
            let text = r.text().await.unwrap();
            let what = format!("{path} {model} {how}");
            let error = text.contains("event: error") || text.contains("\"error\"");
            if how == "cut-please" {
                assert!(error, "{what}: {text}");
                if path == "/v1/messages" {
                    assert!(!text.contains("message_stop"), "{what}: {text}");
                    assert!(text.contains("\"type\":\"error\""), "{what}: {text}");
                }
            } else if model.starts_with("claude") == (path == "/v1/messages") {
                // Forwarded, ended as its API ends. (Translated, this
                // first chunk and `[DONE]` lack the finish reason the
                // translator needs: the core's fixtures cover whole ones.)
                assert!(!error, "{what}: {text}");
            }
        }
    }
    running.sigterm();
    running.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_echoed_anywhere_in_an_answer_is_masked() {
    let upstream = echoing_answer_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut running = gateway_on(upstream, dir.path());
    let http = reqwest::Client::new();
    let data = &running.data;
    let mut answers = Vec::new();
    for (path, model, stream, text) in [
        ("/v1/messages", "claude-sonnet-4-6", true, "hi"),
        ("/v1/chat/completions", "gpt-5.5", true, "hi"),
        ("/v1/messages", "gpt-5.5", true, "hi"),
        ("/v1/chat/completions", "claude-sonnet-4-6", true, "hi"),
        ("/v1/messages", "claude-sonnet-4-6", false, "hi"),
        ("/v1/chat/completions", "gpt-5.5", false, "hi"),
        ("/v1/messages", "gpt-5.5", false, "hi"),
        ("/v1/chat/completions", "claude-sonnet-4-6", false, "hi"),
        ("/v1/messages", "claude-sonnet-4-6", false, "gzip-please"),
        ("/v1/chat/completions", "gpt-5.5", false, "gzip-please"),
    ] {
        let r = ask(&http, data, path, model, stream, text).await;
        let what = format!("{path} {model} stream={stream} {text}");
        assert_eq!(r.status(), StatusCode::OK, "{what}");
        assert!(r.headers().get("content-encoding").is_none(), "{what}");
        let length = r.content_length();
        let bytes = r.bytes().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        if let Some(length) = length {
            assert_eq!(length, bytes.len() as u64, "{what}");
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(text.contains("[REDACTED]"), "{what}: {text}");
        if stream {
            assert!(
                text.contains("throttled"),
                "{what}: the error is relayed: {text}"
            );
        } else {
            let parsed: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
            assert!(parsed.is_object(), "{what}");
        }
        answers.push((what, text));
    }
    // The gateway's own errors built from such an answer, and the model
    // it names (logged when unpriced), are masked too.
    for (path, model, stream, text, status) in [
        ("/v1/messages", "gpt-5.5", false, "err200-please", 502),
        (
            "/v1/chat/completions",
            "claude-sonnet-4-6",
            false,
            "err200-please",
            502,
        ),
        (
            "/v1/chat/completions",
            "claude-sonnet-4-6",
            true,
            "model-please",
            200,
        ),
        (
            "/v1/messages",
            "claude-sonnet-4-6",
            true,
            "model-please",
            200,
        ),
        // A redirect is neither followed nor passed on.
        (
            "/v1/chat/completions",
            "gpt-5.5",
            false,
            "redirect-please",
            502,
        ),
        // Nor a 304 to a request that was not conditional.
        (
            "/v1/chat/completions",
            "gpt-5.5",
            false,
            "not-modified-please",
            502,
        ),
        // A translated error message cut to a snippet inside the key.
        ("/v1/messages", "gpt-5.5", false, "err401-long-please", 401),
        (
            "/v1/chat/completions",
            "claude-sonnet-4-6",
            false,
            "err401-long-please",
            401,
        ),
    ] {
        let r = ask(&http, data, path, model, stream, text).await;
        let what = format!("{path} {model} stream={stream} {text}");
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert!(r.headers().get("location").is_none(), "{what}");
        answers.push((what, r.text().await.unwrap()));
    }
    running.sigterm();
    running.wait();
    let log = running.log_text();
    assert!(log.contains("masked"), "the find is logged");
    for key in GATEWAY_KEYS {
        let half = &key[..key.len() / 2 + 2];
        for (what, text) in answers.iter().chain([&("the log".to_owned(), log.clone())]) {
            assert!(
                !text.contains(half),
                "{what} holds part of a gateway key:\n{text}"
            );
        }
    }
}

/// An upstream answering every request with a JSON answer (not a stream)
/// in `chunked` transfer coding, written in three parts a few ms apart;
/// the user message says how: `small` (300 bytes), `large` (200 KiB), and
/// either cut (`cut-small`, `cut-large`: the connection closes before the
/// last chunk, the answer unfinished).
async fn chunking_upstream() -> SocketAddr {
    serving(|mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let Some((_, _, body)) = read_request(&mut stream).await else {
            return;
        };
        let large = body.contains("large");
        let filler = "x".repeat(if large { 200 * 1024 } else { 200 });
        let answer = answer_json(&filler);
        let cut = body.contains("cut-");
        let (a, b) = answer.split_at(answer.len() / 3);
        let (b, c) = b.split_at(b.len() / 2);
        let chunk = |part: &str| format!("{:x}\r\n{part}\r\n", part.len());
        let mut writes = vec![
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{}", chunk(a)),
            chunk(b),
        ];
        if !cut {
            writes.push(format!("{}0\r\n\r\n", chunk(c)));
        }
        for write in writes {
            if stream.write_all(write.as_bytes()).await.is_err() {
                return;
            }
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A Chat Completions answer whose content is `text`.
fn answer_json(text: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-5.5",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    .to_string()
}

/// An answer that is not a stream reaches the client byte for byte, and a
/// small one with its length (sent whole, not chunked), however the
/// upstream coded it; one the upstream cuts short never reaches the client
/// as a complete, shorter answer, below or above the size sent whole.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_is_relayed_whole_and_a_cut_one_never_looks_whole() {
    let upstream = chunking_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut running = gateway_on(upstream, dir.path());
    let http = reqwest::Client::new();
    let data = running.data.clone();
    let chat = |how: &'static str| ask(&http, &data, "/v1/chat/completions", "gpt-5.5", false, how);
    for how in ["small", "large"] {
        let r = chat(how).await;
        let status = r.status();
        if status != StatusCode::OK {
            panic!("{how}: {status} {}", r.text().await.unwrap());
        }
        let length = r.content_length();
        let bytes = r.bytes().await.unwrap();
        let filler = "x".repeat(if how == "large" { 200 * 1024 } else { 200 });
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            answer_json(&filler),
            "{how}"
        );
        if how == "small" {
            assert_eq!(
                length,
                Some(bytes.len() as u64),
                "{how}: sent with its length"
            );
        }
    }
    for how in ["cut-small", "cut-large"] {
        let r = chat(how).await;
        let status = r.status();
        let read = r.bytes().await;
        assert!(
            status.is_server_error() || read.is_err(),
            "{how}: a cut answer reached the client as a whole one ({status})"
        );
    }
    // The connection the gateway keeps to the client still serves.
    let r = chat("small").await;
    assert_eq!(r.status(), StatusCode::OK);
    running.sigterm();
    running.wait();
}

/// Connects from `from` and sends `bytes`; returns how long the gateway
/// took to close the connection (`None`: still open after `wait`).
fn closed_after(to: SocketAddr, from: &str, bytes: &[u8], wait: Duration) -> Option<Duration> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    socket.connect(&to.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.write_all(bytes).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue, // an answer (a 408, a GOAWAY), then the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed())
            }
            Err(_) => return None,
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_hold_nothing_are_closed_and_capped() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start_with(&dirs, &mock.url(), |c| {
        c.limits.header_read = Duration::from_secs(1);
        c.limits.idle_connection = Duration::from_secs(2);
        c.limits.max_connections_per_peer = 5;
    })
    .await;
    let data = s.data;
    let admin: SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let mut h2_half_headers = [H2_PREFACE, H2_SETTINGS].concat();
    // HEADERS on stream 1 without END_HEADERS (flags 0), one byte of block.
    h2_half_headers.extend_from_slice(&[0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82]);
    let cases: Vec<(&str, Vec<u8>, SocketAddr)> = vec![
        ("silent TCP", Vec::new(), data),
        (
            "half a request head",
            b"POST /v1/messages HTTP/1.1\r\nHost: llm.int.exe.xyz\r\n".to_vec(),
            data,
        ),
        (
            "HTTP/2 preface only",
            [H2_PREFACE, H2_SETTINGS].concat(),
            data,
        ),
        ("HTTP/2 HEADERS without END_HEADERS", h2_half_headers, data),
        ("silent TCP on the admin listener", Vec::new(), admin),
    ];
    let checks = cases.into_iter().map(|(what, bytes, to)| {
        tokio::task::spawn_blocking(move || {
            (
                what,
                closed_after(to, "127.0.0.9", &bytes, Duration::from_secs(8)),
            )
        })
    });
    for check in checks {
        let (what, closed) = check.await.unwrap();
        let after = closed.unwrap_or_else(|| panic!("{what}: still open after 8 s"));
        assert!(
            after < Duration::from_secs(4),
            "{what}: closed after {after:?}"
        );
    }
    // Idle connections, after their request: HTTP/1.1 keep-alive (the wait
    // for a next head is bounded by the header timeout too) and HTTP/2.
    let mut h2_request = [H2_PREFACE, H2_SETTINGS].concat();
    // HEADERS, stream 1, END_STREAM | END_HEADERS: GET http://llm.int.exe.xyz/.
    let block = [&[0x82u8, 0x86, 0x84, 0x41, 15][..], b"llm.int.exe.xyz"].concat();
    h2_request.extend_from_slice(&[0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1]);
    h2_request.extend_from_slice(&block);
    for (what, request) in [
        (
            "HTTP/1.1 keep-alive",
            b"GET / HTTP/1.1\r\nHost: llm.int.exe.xyz\r\n\r\n".to_vec(),
        ),
        ("HTTP/2", h2_request),
    ] {
        let closed = tokio::task::spawn_blocking(move || {
            closed_after(data, "127.0.0.1", &request, Duration::from_secs(8))
        })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: an idle connection is closed"));
        assert!(
            closed >= Duration::from_millis(900) && closed < Duration::from_secs(4),
            "{what}: {closed:?}"
        );
    }
    // Five connections from one peer are held; the sixth is closed at once,
    // while another peer is still served.
    let held: Vec<TcpStream> = (0..5)
        .map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket
                .bind(&SocketAddr::new("127.0.0.7".parse().unwrap(), 0).into())
                .unwrap();
            socket.connect(&data.into()).unwrap();
            socket.into()
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sixth = tokio::task::spawn_blocking(move || {
        closed_after(data, "127.0.0.7", b"", Duration::from_secs(3))
    })
    .await
    .unwrap()
    .expect("the sixth connection is refused");
    assert!(sixth < Duration::from_millis(500), "{sixth:?}");
    let other = s.vm_client("127.0.0.1".parse().unwrap(), &HOSTS);
    let r = other
        .head(s.data_url("llm.int.exe.xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(held);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("llm_integration_connections_refused_total{reason=\"per_peer\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llm_integration_connections_closed_total{reason=\"header_timeout\"}"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_model_lists_asks_the_upstream_once() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    own_integration(&s).await;
    mock.clear();
    let c = client(&s);
    let url = format!("{}/v1/models", s.data_url("own.int.exe.xyz"));
    let burst: Vec<_> = (0..200)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { c.get(url).send().await.unwrap().status() })
        })
        .collect();
    for r in burst {
        assert_eq!(r.await.unwrap(), StatusCode::OK);
    }
    let lists = mock
        .requests()
        .iter()
        .filter(|r| r.path.contains("/v1/models"))
        .count();
    assert_eq!(lists, 1, "one upstream call for the owner's key's list");
    s.stop().await;
}

#[tokio::test]
async fn identity_headers_never_reach_the_provider() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let identity = [
        ("x-exedev-source-vm", "someone-else"),
        ("true-client-ip", "10.1.2.3"),
        ("cf-connecting-ip", "10.1.2.3"),
        ("x-cluster-client-ip", "10.1.2.3"),
        ("x-original-forwarded-for", "10.1.2.3"),
        ("x-forwarded-for", "10.1.2.3"),
        ("x-real-ip", "10.1.2.3"),
        ("forwarded", "for=10.1.2.3"),
        ("via", "1.1 someone"),
        ("fastly-client-ip", "10.1.2.3"),
    ];
    let mut r = client(&s).post(format!(
        "{}/v1/chat/completions",
        s.data_url("llm.int.exe.xyz")
    ));
    for (k, v) in identity {
        r = r.header(k, v);
    }
    let r = r
        .json(&json!({"model": "gpt-5.5", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the VM is still recognised");
    let seen = mock.last().unwrap();
    for (k, _) in identity {
        assert_eq!(seen.header(k), None, "{k} reached the provider");
    }
    s.stop().await;
}
