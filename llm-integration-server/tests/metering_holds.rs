//! Metering that holds, through the real server: whoever ends a stream,
//! what was relayed is charged (an estimate when the provider's final
//! usage never came); usage is the response's own, whatever its framing,
//! content type or coding; reservations follow what a request is likely
//! to cost, media sized as the providers bill them; final refusals say so.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use llm_integration_core::Owner;
use llm_integration_mock::MockUpstream;
use llm_integration_server::testing::{Dirs, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

const HOST: &str = "llm.int.exe.xyz";

fn client(s: &Server) -> reqwest::Client {
    s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &[HOST])
}

fn local_owner(s: &Server) -> Owner {
    let snapshot = s.live.snapshot();
    let caller = snapshot
        .vm_by_address("127.0.0.1".parse().unwrap())
        .unwrap();
    Owner::User(snapshot.vm(caller).unwrap().owner)
}

async fn post(s: &Server, path: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client(s)
        .post(format!("{}{path}", s.data_url(HOST)))
        .json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// Reads a streamed answer until `stop` says so (given all text so far),
/// then hangs up; returns what was read.
async fn read_then_hang_up(mut r: reqwest::Response, stop: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if stop(&text) {
            break;
        }
    }
    drop(r);
    text
}

/// The usage row of `model`, once it is recorded.
async fn row(s: &Server, model: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = s.json("usage --by model").await;
        if let Some(r) = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == model)
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no record of {model}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets `owner`'s balance once every debit so far is written (so that the
/// balance set is the balance the next request sees).
async fn set_balance(s: &Server, owner: Owner, micros: i64) {
    let allocator = s.metering.allocator.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while allocator.unwritten_total() != 0 || allocator.reserved_total() != 0 {
        assert!(Instant::now() < deadline, "debits never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.store.set_allocation(owner, micros).await.unwrap();
    allocator.invalidate(owner);
}

fn tokens(r: &Value) -> [u64; 4] {
    [
        "input_tokens",
        "cache_creation_tokens",
        "cache_read_tokens",
        "output_tokens",
    ]
    .map(|k| r[k].as_u64().unwrap())
}

/// An integration `own` on the owner's own OpenAI and Anthropic keys.
async fn own_keys(s: &Server) {
    for (line, key) in [
        ("integrations add llm --name own --openai=byok --openai-key=- --fireworks=disabled --attach auto:all", "sk-own-openai-0123456789abcdef"),
        ("integrations edit own --anthropic=byok --anthropic-key=-", "sk-own-anthropic-0123456789abcdef"),
    ] {
        let (status, out) = s.with_stdin(line, key).await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }
}

async fn post_to(
    s: &Server,
    host: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = s
        .vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &[host])
        .post(format!("{}{path}", s.data_url(host)))
        .json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn hanging_up_early_is_charged_what_was_relayed() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    own_keys(&s).await;
    let slow = [("x-mock-chunks", "300"), ("x-mock-delay-ms", "5")];
    // On the platform's key and on the owner's own alike.
    for host in ["llm.int.exe.xyz", "own.int.exe.xyz"] {
        // Chat Completions, hung up after 100 content chunks.
        let model = format!("gpt-5.5-cut-{}", &host[..3]);
        let r = post_to(
            &s,
            host,
            "/v1/chat/completions",
            &json!({"model": model, "max_tokens": 300, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            &slow,
        )
        .await;
        let read = read_then_hang_up(r, |t| t.matches("\"content\":\"tok").count() >= 100).await;
        let relayed = read.matches("\"content\":\"tok").count() as u64;
        let r = row(&s, &model).await;
        let [input, _, _, output] = tokens(&r);
        assert_eq!(r["estimated_requests"], 1, "{r}");
        assert!(input > 0, "input estimated from the request: {r}");
        assert!(
            output >= relayed,
            "output {output} for {relayed} relayed chunks: {r}"
        );
        assert!(output <= 300, "never past the request's limit: {r}");
        assert!(r["cost_micros"].as_u64().unwrap() > 0);

        // Messages, hung up right after the last content_block_stop.
        let model = format!("claude-sonnet-4-6-cut-{}", &host[..3]);
        let r = post_to(
            &s,
            host,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 300, "stream": true, "messages": []}),
            &slow,
        )
        .await;
        let read = read_then_hang_up(r, |t| t.contains("content_block_stop")).await;
        assert_eq!(
            read.matches("text_delta").count(),
            300,
            "the whole answer was read"
        );
        let r = row(&s, &model).await;
        let [input, cache_w, cache_r, output] = tokens(&r);
        assert_eq!(
            (input, cache_w, cache_r),
            (12, 2, 3),
            "input from message_start: {r}"
        );
        assert!(output >= 300, "the 300-token answer is charged, not 1: {r}");
        assert_eq!(r["estimated_requests"], 1, "{r}");
    }
    s.stop().await;
}

/// Output the client never sees (hidden reasoning) is charged too: an
/// answer cut before its final usage is charged at least 100 tokens a
/// second since its head, up to its limit.
#[tokio::test]
async fn hidden_output_is_charged_by_the_time_it_had() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    // One visible event, then 2 s of nothing (the model "reasons"), then
    // the client leaves.
    let r = post(
        &s,
        "/v1/chat/completions",
        &json!({"model": "o3-hidden", "max_tokens": 30000, "stream": true, "messages": []}),
        &[("x-mock-chunks", "3"), ("x-mock-delay-ms", "2000")],
    )
    .await;
    let mut r = r;
    let _first = r.chunk().await.unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(r);
    let waited = started.elapsed().as_millis() as u64;
    let row = row(&s, "o3-hidden").await;
    let output = row["output_tokens"].as_u64().unwrap();
    assert_eq!(row["estimated_requests"], 1);
    assert!(
        output >= waited / 10,
        "{output} tokens for {waited} ms: {row}"
    );
    assert!(output <= 30000);
    s.stop().await;
}

#[tokio::test]
async fn cut_requests_cannot_drain_an_allocation_for_free() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let owner = local_owner(&s);
    s.store.set_allocation(owner, 10_000).await.unwrap(); // $0.01
    let mut served = 0;
    let mut refused = 0;
    for i in 0..20 {
        let r = post(
            &s,
            "/v1/chat/completions",
            &json!({"model": format!("gpt-5.5-drain{i}"), "max_tokens": 300, "stream": true, "messages": []}),
            &[("x-mock-chunks", "300"), ("x-mock-delay-ms", "2")],
        )
        .await;
        match r.status() {
            StatusCode::OK => {
                served += 1;
                read_then_hang_up(r, |t| t.matches("\"content\":\"tok").count() >= 160).await;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert_eq!(r.headers()["x-should-retry"], "false");
            }
            other => panic!("{other}"),
        }
    }
    assert!(refused > 0, "served {served}, refused {refused}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let debited = loop {
        let v = s.json("usage --by model").await;
        let rows = v["rows"].as_array().unwrap().clone();
        if rows
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum::<u64>()
            >= served
        {
            break rows
                .iter()
                .map(|r| r["debited_micros"].as_u64().unwrap())
                .sum::<u64>();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let balance = s.store.allocation(owner).await.unwrap().unwrap();
    assert_eq!(balance, 10_000 - debited as i64);
    assert!(
        debited >= 9_000,
        "the allocation was used, not kept: {debited}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_cut_between_the_content_and_the_final_usage() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let r = post(
        &s,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-6-pause", "max_tokens": 600, "stream": true, "messages": []}),
        &[
            ("x-mock-chunks", "50"),
            ("x-mock-usage", "input=1200,cache_write=3000,cache_read=40000,output=500"),
            ("x-mock-pause-before-usage-ms", "3000"),
        ],
    )
    .await;
    let started = Instant::now();
    read_then_hang_up(r, |t| t.contains("content_block_stop")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "hung up in the pause"
    );
    let r = row(&s, "claude-sonnet-4-6-pause").await;
    let [input, cache_w, cache_r, output] = tokens(&r);
    assert_eq!((input, cache_w, cache_r), (1200, 3000, 40000), "{r}");
    // 50 deltas of "tokN " (5 or 6 bytes): at least one token each.
    assert!(output >= 50, "{r}");
    assert_eq!(r["estimated_requests"], 1);
    // The same on the owner's own key.
    own_keys(&s).await;
    let r = post_to(
        &s,
        "own.int.exe.xyz",
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-6-pause-own", "max_tokens": 600, "stream": true, "messages": []}),
        &[
            ("x-mock-chunks", "50"),
            ("x-mock-usage", "input=1200,cache_write=3000,cache_read=40000,output=500"),
            ("x-mock-pause-before-usage-ms", "3000"),
        ],
    )
    .await;
    read_then_hang_up(r, |t| t.contains("content_block_stop")).await;
    let r = row(&s, "claude-sonnet-4-6-pause-own").await;
    let [input, cache_w, cache_r, output] = tokens(&r);
    assert_eq!((input, cache_w, cache_r), (1200, 3000, 40000), "{r}");
    // 50 deltas of "tokN " (5 or 6 bytes): at least one token each.
    assert!(output >= 50, "{r}");
    assert_eq!(r["estimated_requests"], 1);
    s.stop().await;
}

#[tokio::test]
async fn usage_of_every_kind_of_answer() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    // Streamed legacy Completions: the usage chunk is asked for and kept
    // from the client; prompt 2000 (1500 cached), completion 300.
    let r = post(
        &s,
        "/v1/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 1000, "stream": true}),
        &[("x-mock-usage", "input=500,cache_read=1500,output=300")],
    )
    .await;
    let text = r.text().await.unwrap();
    assert!(
        text.contains("[DONE]") && !text.contains("\"usage\""),
        "{text}"
    );
    assert_eq!(
        mock.last().unwrap().json().unwrap()["stream_options"]["include_usage"],
        true
    );
    // A large Responses answer whose echoed metadata holds a `usage` of its own.
    let r = post(
        &s,
        "/v1/responses",
        &json!({"model": "gpt-5.5-meta", "input": "x", "metadata": {"usage": "x"}}),
        &[
            ("x-mock-chunks", "100000"),
            ("x-mock-usage", "input=150000,output=20"),
        ],
    )
    .await;
    let body = r.bytes().await.unwrap();
    assert!(body.len() > 600_000, "{}", body.len());
    // An Anthropic stream with no content type; a gzipped Anthropic answer.
    post(
        &s,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-6-untyped", "max_tokens": 600, "stream": true, "messages": []}),
        &[("x-mock-content-type", "none"), ("x-mock-usage", "input=1200,cache_write=3000,cache_read=40000,output=500")],
    )
    .await
    .text()
    .await
    .unwrap();
    post(
        &s,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-6-gzip", "max_tokens": 600, "messages": []}),
        &[
            ("x-mock-encoding", "gzip"),
            ("x-mock-usage", "input=1000,output=200"),
        ],
    )
    .await
    .bytes()
    .await
    .unwrap();
    for (model, want, cost) in [
        ("gpt-3.5-turbo-instruct", [500, 0, 1500, 300], 27_750),
        ("gpt-5.5-meta", [150_000, 0, 0, 20], 187_700),
        (
            "claude-sonnet-4-6-untyped",
            [1200, 3000, 40000, 500],
            34_350,
        ),
        ("claude-sonnet-4-6-gzip", [1000, 0, 0, 200], 6_000),
    ] {
        let r = row(&s, model).await;
        assert_eq!(tokens(&r), want, "{model}: {r}");
        assert_eq!(r["cost_micros"], cost, "{model}: {r}");
        assert_eq!(
            r["estimated_requests"], 0,
            "{model}: reported, not estimated"
        );
    }
    s.stop().await;
}

/// A PNG of `w` × `h` pixels, `size` bytes long (its header is what counts).
fn png(w: u32, h: u32, size: usize) -> String {
    let mut p = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    p.extend_from_slice(&w.to_be_bytes());
    p.extend_from_slice(&h.to_be_bytes());
    p.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    p.resize(size, 7);
    base64::engine::general_purpose::STANDARD.encode(p)
}

#[tokio::test]
async fn reservations_follow_what_a_request_is_likely_to_cost() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let owner = local_owner(&s);
    // A 3 MiB photo with max_tokens 100 on a $10 allocation.
    let image = png(4032, 3024, 3 << 20);
    let r = post(
        &s,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
            {"type": "text", "text": "What is it?"}]}]}),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // An 8 MiB PDF of 30 pages.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    for i in 0..30 {
        pdf.extend_from_slice(format!("{i} 0 obj << /Type /Page >>\n").as_bytes());
    }
    pdf.resize(8 << 20, b' ');
    let pdf = base64::engine::general_purpose::STANDARD.encode(pdf);
    let r = post(
        &s,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}]}]}),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // count_tokens for a 40 KB prompt at $0.50: no output to reserve.
    set_balance(&s, owner, 500_000).await;
    let r = post(
        &s,
        "/v1/messages/count_tokens",
        &json!({"model": "claude-opus-4-6", "messages": [{"role": "user", "content": "word ".repeat(8_000)}]}),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // `n` multiplies the output reserved (128 × 10 tokens at $10 per
    // million is $0.0128), more than the $0.0005 left; the input can be
    // paid, so the request is served on what is left.
    set_balance(&s, owner, 500).await;
    let r = post(
        &s,
        "/v1/chat/completions",
        &json!({"model": "gpt-5.5", "max_tokens": 10, "n": 128, "messages": []}),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Nothing usable left: a final 429.
    set_balance(&s, owner, 0).await;
    let r = post(
        &s,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": []}),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let text = r.text().await.unwrap();
    assert!(
        text.contains("rate_limit_error") && text.contains("allocation"),
        "{text}"
    );
    s.stop().await;
}

/// A request that cost far more than it reserved leaves the lease in
/// debt; the owner's next request still gets served while the balance
/// (default allocation, $10) holds money, and the debt is paid first.
#[tokio::test]
async fn an_overspent_lease_does_not_lock_the_owner_out() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let snapshot = s.live.snapshot();
    let vm = snapshot
        .vm_by_address("127.0.0.1".parse().unwrap())
        .unwrap();
    let owner = Owner::User(snapshot.vm(vm).unwrap().owner);
    let allocator = s.metering.allocator.clone().unwrap();
    let first = allocator.reserve(owner, 1_000, 1).await.unwrap().unwrap();
    // Reserved $0.001, cost $3.
    allocator.settle(first, 3_000_000);
    let next = allocator.reserve(owner, 1_000, 1).await.unwrap();
    assert!(next.is_ok(), "refused: {next:?}");
    allocator.settle(next.unwrap(), 1_000);
    s.stop().await;
}
