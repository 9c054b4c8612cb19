//! SIGTERM with streams in flight, on the real binary: streams finish (or
//! are cut at the drain deadline) and every usage record is in the store
//! when the process has exited.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use llm_integration_mock::MockUpstream;
use llm_integration_server::testing::Process;
use serde_json::json;

fn server(dir: &Path, mock: &str, drain_secs: u64) -> Process {
    server_with(dir, mock, drain_secs, |_| {})
}

fn server_with(
    dir: &Path,
    mock: &str,
    drain_secs: u64,
    more: impl FnOnce(&mut Command),
) -> Process {
    std::fs::write(
        dir.join("config.toml"),
        format!("shutdown_drain_secs = {drain_secs}\n"),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    command
        .args(["--config", "config.toml"])
        .env("LLM_INTEGRATION_ANTHROPIC_BASE_URL", mock)
        .env("LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY", "gw-test-key")
        .env("LLM_INTEGRATION_LOG", "info,llm_integration_server=debug");
    more(&mut command);
    Process::start(command, dir)
}

fn admin_usage(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"))
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .args(["admin", "usage", "user:owner@localhost", "--by", "model"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The figures of `model`'s row in an `admin usage --by model` table, by
/// column: requests, ok, refused, failed, estimated, input, cache_write,
/// cache_read, output, cost, debited.
fn usage_row(usage: &str, model: &str) -> std::collections::HashMap<&'static str, String> {
    const COLUMNS: [&str; 11] = [
        "requests",
        "ok",
        "refused",
        "failed",
        "estimated",
        "input",
        "cache_write",
        "cache_read",
        "output",
        "cost",
        "debited",
    ];
    let header = usage.lines().nth(1).unwrap_or_default();
    assert!(
        header.starts_with("MODEL") && header.contains("CACHE WRITE"),
        "{usage}"
    );
    let line = usage
        .lines()
        .find(|l| l.split_whitespace().next() == Some(model))
        .unwrap_or_else(|| panic!("{model} missing:\n{usage}"));
    let figures: Vec<&str> = line.split_whitespace().skip(1).collect();
    assert_eq!(figures.len(), COLUMNS.len(), "{line}");
    COLUMNS
        .into_iter()
        .zip(figures.into_iter().map(str::to_owned))
        .collect()
}

/// A client that reaches the integration host at the data plane `data`
/// (`127.0.0.1:PORT`), over HTTP/2 with prior knowledge when `http2`; and
/// the `/v1/messages` address there.
fn client(data: &str, http2: bool) -> (reqwest::Client, String) {
    let port = data.rsplit(':').next().unwrap();
    let mut builder = reqwest::Client::builder().resolve(
        "llm.int.exe.xyz",
        format!("127.0.0.1:{port}").parse().unwrap(),
    );
    if http2 {
        builder = builder.http2_prior_knowledge();
    }
    (
        builder.build().unwrap(),
        format!("http://llm.int.exe.xyz:{port}/v1/messages"),
    )
}

async fn stream(data: &str, model: &str, chunks: u32, delay_ms: u32) -> reqwest::Response {
    let (client, url) = client(data, false);
    client
        .post(url)
        .header("x-mock-chunks", chunks.to_string())
        .header("x-mock-delay-ms", delay_ms.to_string())
        .json(&json!({"model": model, "max_tokens": 100, "stream": true}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_streams_and_keeps_every_record() {
    let mock = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut running = server(dir.path(), &mock.url(), 30);
    // Two streams of ~1.2 s each are in flight when SIGTERM arrives.
    let mut a = stream(&running.data, "claude-sonnet-4-6-a", 6, 200).await;
    let mut b = stream(&running.data, "claude-sonnet-4-6-b", 6, 200).await;
    assert!(a.chunk().await.unwrap().is_some() && b.chunk().await.unwrap().is_some());
    running.sigterm();
    let mut rest_a = Vec::new();
    while let Some(c) = a.chunk().await.unwrap() {
        rest_a.extend_from_slice(&c);
    }
    let mut rest_b = Vec::new();
    while let Some(c) = b.chunk().await.unwrap() {
        rest_b.extend_from_slice(&c);
    }
    assert!(
        String::from_utf8_lossy(&rest_a).contains("message_stop"),
        "stream a finished"
    );
    assert!(
        String::from_utf8_lossy(&rest_b).contains("message_stop"),
        "stream b finished"
    );
    let status = tokio::task::spawn_blocking(move || running.wait())
        .await
        .unwrap();
    assert!(status.success());
    let usage = admin_usage(dir.path());
    for model in ["claude-sonnet-4-6-a", "claude-sonnet-4-6-b"] {
        let row = usage_row(&usage, model);
        let figures = ["requests", "ok", "estimated", "input", "output"].map(|c| row[c].as_str());
        assert_eq!(figures, ["1", "1", "0", "12", "6"], "{usage}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_at_the_drain_deadline_is_still_recorded() {
    let mock = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut running = server(dir.path(), &mock.url(), 1);
    // A 10 s stream against a 1 s drain.
    let mut long = stream(&running.data, "claude-sonnet-4-6-long", 50, 200).await;
    assert!(long.chunk().await.unwrap().is_some());
    running.sigterm();
    let started = Instant::now();
    let mut received = Vec::new();
    while let Ok(Some(c)) = long.chunk().await {
        received.extend_from_slice(&c);
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut at the deadline, not run to its end"
    );
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.contains("event: error") && received.contains("shutting down"),
        "the client learns the answer is incomplete: {received}"
    );
    let deltas = received.matches("text_delta").count() as u64;
    assert!(deltas >= 2, "{received}");
    let (status, log) = tokio::task::spawn_blocking(move || (running.wait(), running.log_text()))
        .await
        .unwrap();
    assert!(status.success());
    let usage = admin_usage(dir.path());
    let row = usage_row(&usage, "claude-sonnet-4-6-long");
    // Input from message_start; output estimated from what was relayed
    // ("tokN " a delta), not the 1 that message_start reported.
    assert_eq!(
        ["requests", "estimated", "input"].map(|c| row[c].as_str()),
        ["1", "1", "12"],
        "{usage}\n{log}"
    );
    let output: u64 = row["output"].parse().unwrap();
    let line = &usage;
    assert!(
        output >= deltas,
        "output {output} for {deltas} deltas: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_streams_cut_at_the_deadline_are_all_recorded() {
    let mock = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One worker: the cut streams' tasks queue behind each other while
    // the shutdown goes on.
    let mut running = server_with(dir.path(), &mock.url(), 1, |c| {
        c.env("LLM_INTEGRATION_WORKER_THREADS", "1");
    });
    // One HTTP/2 connection carrying many streams: each stream is its own
    // task, which ends a moment after the connection is cut.
    let (client, url) = client(&running.data, true);
    const STREAMS: usize = 150;
    let mut open = Vec::new();
    for _ in 0..STREAMS {
        let mut response = client
            .post(&url)
            .header("x-mock-chunks", "50")
            .header("x-mock-delay-ms", "200")
            .json(&json!({"model": "claude-sonnet-4-6-h2", "max_tokens": 100, "stream": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert!(response.chunk().await.unwrap().is_some());
        open.push(response);
    }
    running.sigterm();
    for mut response in open {
        while let Ok(Some(_)) = response.chunk().await {}
    }
    let (status, log) = tokio::task::spawn_blocking(move || (running.wait(), running.log_text()))
        .await
        .unwrap();
    assert!(status.success(), "{log}");
    assert!(!log.contains("is lost"), "{log}");
    let usage = admin_usage(dir.path());
    let row = usage_row(&usage, "claude-sonnet-4-6-h2");
    assert_eq!(
        row["requests"],
        STREAMS.to_string(),
        "every stream recorded: {usage}\n{log}"
    );
}
