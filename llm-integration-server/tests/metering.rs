//! Metering through the real data plane: exact usage for every API,
//! streaming and not; prices and debits; atomic allocations under
//! concurrency; usage kept on disconnects and upstream failures; metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use llm_integration_core::seams::UsageGrouping;
use llm_integration_core::Owner;
use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{AdminCommand, AllocationsCommand, TeamsCommand};
use llm_integration_server::testing::{Dirs, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

const HOSTS: [&str; 2] = ["llm.int.exe.xyz", "byok.int.exe.xyz"];

/// The owner of the VM the tests call from (127.0.0.1).
fn local_owner(s: &Server) -> Owner {
    let snapshot = s.live.snapshot();
    let caller = snapshot
        .vm_by_address("127.0.0.1".parse().unwrap())
        .unwrap();
    Owner::User(snapshot.vm(caller).unwrap().owner)
}

fn client(s: &Server) -> reqwest::Client {
    s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &HOSTS)
}

async fn post(
    s: &Server,
    host: &str,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut r = client(s)
        .post(format!("{}{path}", s.data_url(host)))
        .json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Usage per model from the ledger, once `expected` requests are in it.
async fn usage_by_model(s: &Server, expected: u64) -> HashMap<String, Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = s.json("usage --by model").await;
        let rows = v["rows"].as_array().unwrap().clone();
        let total: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        if total >= expected {
            return rows
                .into_iter()
                .map(|r| (r["key"].as_str().unwrap().to_owned(), r))
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {total} of {expected} records: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tokens(row: &Value) -> [u64; 4] {
    [
        "input_tokens",
        "output_tokens",
        "cache_creation_tokens",
        "cache_read_tokens",
    ]
    .map(|k| row[k].as_u64().unwrap())
}

#[tokio::test]
async fn exact_usage_for_every_api_streaming_and_not() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let llm = "llm.int.exe.xyz";
    // (path, model, stream, extra body, expected [input, output, cache write, cache read])
    let cases: &[(&str, &str, bool, Value, [u64; 4])] = &[
        (
            "/v1/messages",
            "claude-sonnet-4-6-json",
            false,
            json!({}),
            [12, 3, 2, 3],
        ),
        (
            "/v1/messages",
            "claude-sonnet-4-6-sse",
            true,
            json!({}),
            [12, 3, 2, 3],
        ),
        (
            "/v1/chat/completions",
            "gpt-5-chat-json",
            false,
            json!({}),
            [9, 3, 0, 3],
        ),
        (
            "/v1/chat/completions",
            "gpt-5-chat-usage",
            true,
            json!({"stream_options": {"include_usage": true}}),
            [12, 3, 0, 0],
        ),
        (
            "/v1/chat/completions",
            "gpt-5-chat-strip",
            true,
            json!({}),
            [12, 3, 0, 0],
        ),
        (
            "/v1/responses",
            "gpt-5-resp-json",
            false,
            json!({}),
            [9, 3, 0, 3],
        ),
        (
            "/v1/responses",
            "gpt-5-resp-sse",
            true,
            json!({}),
            [9, 3, 0, 3],
        ),
        (
            "/v1/completions",
            "gpt-5-completion",
            false,
            json!({}),
            [12, 3, 0, 0],
        ),
        (
            "/v1/embeddings",
            "text-embedding-3-small",
            false,
            json!({}),
            [5, 0, 0, 0],
        ),
        (
            "/v1/chat/completions",
            "accounts/fireworks/models/fw-sse",
            true,
            json!({}),
            [12, 3, 0, 0],
        ),
        (
            "/v1/messages",
            "accounts/fireworks/models/fw-messages",
            true,
            json!({}),
            [12, 3, 2, 3],
        ),
        // Free calls: nothing charged however large, nothing estimated.
        (
            "/v1/messages/count_tokens",
            "claude-sonnet-4-6-count",
            false,
            json!({"messages": [{"role": "user", "content": "word ".repeat(30_000)}]}),
            [0, 0, 0, 0],
        ),
    ];
    let mut bodies = HashMap::new();
    for (path, model, stream, extra, _) in cases {
        let mut body = json!({"model": model, "stream": stream, "max_tokens": 100});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, text) = post(&s, llm, path, body, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(status, StatusCode::OK, "{model}: {text}");
        bodies.insert(*model, text);
    }
    // The usage chunk the gateway asked for never reaches a client that did not.
    let strip = &bodies["gpt-5-chat-strip"];
    assert!(
        !strip.contains("\"choices\":[]") && strip.ends_with("data: [DONE]\n\n"),
        "{strip}"
    );
    assert!(
        bodies["gpt-5-chat-usage"].contains("\"choices\":[]"),
        "a client that asked keeps it"
    );
    let seen = mock
        .requests()
        .into_iter()
        .find(|r| r.json().is_some_and(|v| v["model"] == "gpt-5-chat-strip"))
        .unwrap();
    assert_eq!(
        seen.json().unwrap()["stream_options"]["include_usage"],
        true
    );
    assert_eq!(
        seen.header("accept-encoding"),
        Some("identity"),
        "responses must come uncompressed to be metered"
    );

    let rows = usage_by_model(&s, cases.len() as u64).await;
    for (_, model, _, _, expected) in cases {
        let row = rows
            .get(*model)
            .unwrap_or_else(|| panic!("no usage for {model}: {rows:?}"));
        assert_eq!(tokens(row), *expected, "{model}");
        assert_eq!(row["requests"], 1);
    }
    // Prices: claude-sonnet at $3 / $15, cache write $3.75, cache read $0.30 per million.
    // 12×3 + 3×15 + 2×3.75 + 3×0.3 = 89.4 micro-dollars, rounded up.
    let count = &rows["claude-sonnet-4-6-count"];
    assert_eq!(
        (&count["cost_micros"], &count["debited_micros"]),
        (&json!(0), &json!(0)),
        "{count}"
    );
    let sonnet = &rows["claude-sonnet-4-6-json"];
    assert_eq!(sonnet["cost_micros"], 90);
    assert_eq!(sonnet["debited_micros"], 90, "gateway traffic is debited");
    // The allocation went down by exactly what was debited.
    let debited: u64 = rows
        .values()
        .map(|r| r["debited_micros"].as_u64().unwrap())
        .sum();
    let v = s.json("usage").await;
    assert_eq!(
        v["allocation_micros"].as_i64().unwrap(),
        s.default_allocation - debited as i64
    );

    // BYOK traffic is recorded, not debited.
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name byok --anthropic=byok --anthropic-key=- --attach auto:all",
            "sk-ant-byok-000000000000",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    post(
        &s,
        "byok.int.exe.xyz",
        "/v1/messages",
        json!({"model": "claude-sonnet-4-6-byok", "max_tokens": 10}),
        &[],
    )
    .await;
    let rows = usage_by_model(&s, cases.len() as u64 + 1).await;
    let byok = &rows["claude-sonnet-4-6-byok"];
    assert_eq!(byok["cost_micros"], 90);
    assert_eq!(byok["debited_micros"], 0);
    assert_eq!(
        s.json("usage").await["allocation_micros"],
        v["allocation_micros"]
    );

    // Metrics: counted by provider and source, no secret, no model label.
    let metrics = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("llm_integration_requests_total{provider=\"anthropic\",source=\"gateway\",status=\"2xx\"}"), "{metrics}");
    assert!(
        metrics.contains(
            "llm_integration_tokens_total{provider=\"openai\",source=\"gateway\",kind=\"output\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("llm_integration_upstream_ttfb_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("sk-") && !metrics.contains("gw-") && !metrics.contains("claude-sonnet"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn allocations_are_never_overspent_under_concurrency() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let owner = local_owner(&s);
    // Each request may cost up to about 15,500 micro-dollars (max_tokens 1000 at $15 per million,
    // plus its bytes as input): 50,000 covers three at once.
    s.store.set_allocation(owner, 50_000).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = client(&s);
        let url = format!("{}/v1/messages", s.data_url("llm.int.exe.xyz"));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("x-mock-delay-ms", "50")
                .json(&json!({"model": format!("claude-sonnet-4-6-c{i}"), "max_tokens": 1000, "stream": true}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }));
    }
    let mut ok = 0u64;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["type"], "rate_limit_error");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("allocation"),
                    "{body}"
                );
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(ok >= 3 && refused >= 1, "ok {ok}, refused {refused}");
    // Wait for the ledger, then check the books.
    let rows = usage_by_model(&s, ok).await;
    let debited: u64 = rows
        .values()
        .map(|r| r["debited_micros"].as_u64().unwrap())
        .sum();
    assert_eq!(debited, ok * 90);
    let balance = s.store.allocation(owner).await.unwrap().unwrap();
    assert_eq!(balance, 50_000 - debited as i64);
    assert!(balance >= 0, "overspent: {balance}");
    assert_eq!(
        s.metering.allocator.as_ref().unwrap().reserved_total(),
        0,
        "every reservation settled"
    );

    // Operators grant and set allocations; users see what is left.
    s.admin(AdminCommand::Allocations(AllocationsCommand::Grant {
        owner: "user:owner@localhost".parse().unwrap(),
        usd: 1.5,
    }))
    .await;
    let after_grant = s.json("usage").await["allocation_micros"].as_i64().unwrap();
    assert_eq!(after_grant, balance + 1_500_000);
    s.admin(AdminCommand::Allocations(AllocationsCommand::Set {
        owner: "user:owner@localhost".parse().unwrap(),
        usd: 2.0,
    }))
    .await;
    assert_eq!(s.json("usage").await["allocation_micros"], 2_000_000);
    let text = s.ok("usage --by provider --since 1h").await;
    assert!(
        text.contains("anthropic") && text.contains("allocation left: $2.000000"),
        "{text}"
    );
    // Team usage is the team's, for members only.
    s.admin(AdminCommand::Teams(TeamsCommand::Add {
        name: "core".parse().unwrap(),
    }))
    .await;
    assert_eq!(s.run("usage --team core").await.0, StatusCode::NOT_FOUND);
    s.admin(AdminCommand::Teams(TeamsCommand::AddMember {
        team: "core".parse().unwrap(),
        email: "owner@localhost".into(),
    }))
    .await;
    let team = s.json("usage --team core").await;
    assert_eq!(team["rows"], json!([]));
    assert_eq!(team["allocation_micros"], s.default_allocation);

    // A balance that can pay the input is used, whatever the output limit.
    s.store.set_allocation(owner, 100).await.unwrap();
    s.metering.allocator.as_ref().unwrap().invalidate(owner);
    let (status, body) = post(
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        json!({"model": "gpt-5.5", "max_tokens": 128000}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Exhausted (nothing usable left): refused before any upstream call.
    s.store.set_allocation(owner, 0).await.unwrap();
    s.metering.allocator.as_ref().unwrap().invalidate(owner);
    let before = mock.count();
    let (status, body) = post(
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        json!({"model": "gpt-5.5", "max_tokens": 50}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body.contains("allocation_exhausted") && body.contains("byok"),
        "{body}"
    );
    assert_eq!(mock.count(), before, "no upstream call");
    s.stop().await;
}

#[tokio::test]
async fn usage_survives_disconnects_and_upstream_failures() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    // The client reads the first event and goes away.
    let mut r = client(&s)
        .post(format!("{}/v1/messages", s.data_url("llm.int.exe.xyz")))
        .header("x-mock-delay-ms", "200")
        .header("x-mock-chunks", "20")
        .json(&json!({"model": "claude-sonnet-4-6-gone", "max_tokens": 100, "stream": true}))
        .send()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()).contains("message_start"));
    drop(r);
    // The upstream breaks after its first event.
    let (status, body) = post(
        &s,
        "llm.int.exe.xyz",
        "/v1/messages",
        json!({"model": "claude-sonnet-4-6-reset", "max_tokens": 100, "stream": true}),
        &[("x-mock-fail", "reset")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("event: error"), "{body}");
    // An upstream error status and an unreachable upstream are recorded too.
    post(
        &s,
        "llm.int.exe.xyz",
        "/v1/messages",
        json!({"model": "claude-sonnet-4-6-429", "max_tokens": 1}),
        &[("x-mock-status", "429")],
    )
    .await;
    post(
        &s,
        "llm.int.exe.xyz",
        "/v1/messages",
        json!({"model": "claude-sonnet-4-6-503", "max_tokens": 1}),
        &[("x-mock-status", "503")],
    )
    .await;
    let rows = usage_by_model(&s, 4).await;
    // Requests by outcome: answered, refused (4xx), failed (5xx).
    for (model, outcome) in [
        ("claude-sonnet-4-6-reset", [1, 0, 0]),
        ("claude-sonnet-4-6-429", [0, 1, 0]),
        ("claude-sonnet-4-6-503", [0, 0, 1]),
    ] {
        let got = ["ok_requests", "refused_requests", "failed_requests"]
            .map(|k| rows[model][k].as_u64().unwrap());
        assert_eq!(got, outcome, "{model}: {}", rows[model]);
    }
    let text = s.ok("usage --by model").await;
    let header = text.lines().nth(1).unwrap();
    for column in [
        "MODEL",
        "REQUESTS",
        "OK",
        "REFUSED",
        "FAILED",
        "ESTIMATED",
        "INPUT",
        "CACHE WRITE",
        "CACHE READ",
        "OUTPUT",
        "COST",
        "DEBITED",
    ] {
        assert!(header.contains(column), "{column}: {text}");
    }
    let row_429: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("claude-sonnet-4-6-429 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row_429[1..5], ["1", "0", "1", "0"], "{text}");
    assert!(text.contains("input is uncached input"), "{text}");
    for model in ["claude-sonnet-4-6-gone", "claude-sonnet-4-6-reset"] {
        // message_start's input and cache counts; output estimated (at
        // least message_start's 1), as the stream was cut.
        let t = tokens(&rows[model]);
        assert_eq!([t[0], t[2], t[3]], [12, 2, 3], "{model}");
        assert!(t[1] >= 1, "{model}");
        assert_eq!(rows[model]["estimated_requests"], 1, "{model}");
        assert!(rows[model]["debited_micros"].as_u64().unwrap() > 0);
    }
    assert_eq!(tokens(&rows["claude-sonnet-4-6-429"]), [0, 0, 0, 0]);
    let owner = local_owner(&s);
    let all = s
        .store
        .usage_summary(&[owner], std::time::UNIX_EPOCH, UsageGrouping::Total)
        .await
        .unwrap();
    assert_eq!(all[0].requests, 4);
    assert_eq!(s.metering.allocator.as_ref().unwrap().reserved_total(), 0);
    s.stop().await;
}

/// A balance more than a second old is re-read off the request path: a
/// request it allows goes on at once, one it would refuse waits for the
/// fresh read, so an operator's grant is never missed.
#[tokio::test]
async fn stale_balances_are_reread_without_holding_requests_and_grants_are_never_missed() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let owner = local_owner(&s);
    let ask = || {
        post(
            &s,
            "llm.int.exe.xyz",
            "/v1/chat/completions",
            json!({"model": "gpt-5.5", "max_tokens": 50}),
            &[],
        )
    };
    assert_eq!(ask().await.0, StatusCode::OK);
    // Lowered by another process: the first request after a second is
    // served on the balance read before, and starts the re-read.
    s.store.set_allocation(owner, 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = ask().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut refused = false;
    for _ in 0..40 {
        if ask().await.0 == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the lowered balance is seen");
    // Granted by another process: the first request after a second waits
    // for the fresh read instead of being refused on the old balance.
    s.store.set_allocation(owner, 10_000_000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = ask().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}

/// With the store gone, the data plane keeps serving on its
/// last snapshot and last balances; configuration writes fail loudly.
#[tokio::test]
async fn the_data_plane_outlives_its_store() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let ask = || {
        post(
            &s,
            "llm.int.exe.xyz",
            "/v1/messages",
            json!({"model": "claude-sonnet-4-6", "max_tokens": 10}),
            &[],
        )
    };
    assert_eq!(ask().await.0, StatusCode::OK);
    s.store.close().await;
    // Past the allocation's refresh interval: its balance cannot be read again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..3 {
        let (status, body) = ask().await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = s.run("integrations add llm --name later").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("unavailable"), "{body}");
    // The server is dropped, not stopped: its ledger would wait for the store.
}

/// The record names the model the request asked for, whatever the answer
/// says it ran; an answer naming another model is priced at the dearer of
/// the two, so an upstream can neither relabel usage nor make it cheaper.
#[tokio::test]
async fn the_answers_model_cannot_relabel_or_cheapen_usage() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let cost_of =
        |rows: &HashMap<String, Value>, model: &str| rows[model]["cost_micros"].as_u64().unwrap();
    // Plain requests: the costs of each model for the mock's usage.
    post(
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        chat("gpt-5.5"),
        &[],
    )
    .await;
    post(
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        chat("gpt-4o-mini"),
        &[],
    )
    .await;
    let rows = usage_by_model(&s, 2).await;
    let (dear, cheap) = (cost_of(&rows, "gpt-5.5"), cost_of(&rows, "gpt-4o-mini"));
    assert!(dear > cheap, "{dear} > {cheap}");
    // Asked for the dear model, answered as the cheap one (with escapes).
    let (status, body) = post(
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        chat("gpt-5.5"),
        &[("x-mock-answer-model", "gpt-4o-mini%1b[31m")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Asked for the cheap model, answered as the dear one.
    post(
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        chat("gpt-4o-mini"),
        &[("x-mock-answer-model", "gpt-5.5")],
    )
    .await;
    let rows = usage_by_model(&s, 4).await;
    let mut keys: Vec<&String> = rows.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["gpt-4o-mini", "gpt-5.5"],
        "no row under the answer's name"
    );
    assert_eq!(cost_of(&rows, "gpt-5.5"), 2 * dear, "not cheapened");
    assert_eq!(
        cost_of(&rows, "gpt-4o-mini"),
        cheap + dear,
        "priced at the dearer"
    );
    s.stop().await;
}
