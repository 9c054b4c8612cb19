//! The official OpenAI and Anthropic Python SDKs call the gateway with a
//! placeholder key, streaming and not, and receive the mock's answers (the
//! Anthropic SDK from a GPT model and the OpenAI SDK from a Claude model
//! too, translated); the mock receives the real credential and never the
//! placeholder.
//!
//! The SDKs are installed by `.ci/run` into `.venv` (pinned in
//! `tests/sdk/requirements.txt`); `LLM_INTEGRATION_TEST_PYTHON` may name
//! another interpreter that has them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use llm_integration_mock::MockUpstream;
use llm_integration_server::testing::{Dirs, Server, GATEWAY_KEYS};
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn python() -> PathBuf {
    let path = std::env::var_os("LLM_INTEGRATION_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} does not exist: the Python SDKs are not installed; run .ci/install (it creates .venv from tests/sdk/requirements.txt)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn official_python_sdks_work_through_the_gateway() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let gateway = format!("http://127.0.0.1:{}", s.data.port());
    let script = workspace().join("tests/sdk/sdk_check.py");
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("GATEWAY", gateway)
            .env("HOST", "llm.int.exe.xyz")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "sdk_check.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["openai_version"], "3.57.0");
    assert_eq!(v["anthropic_version"], "2.14.0");
    for key in [
        "chat",
        "chat_stream",
        "responses",
        "responses_stream",
        "messages",
        "messages_stream",
    ] {
        assert_eq!(v[key], "tok0 tok1 tok2 ", "{key}: {v}");
    }
    for framing in ["crlf", "cr", "spaced", "gzip", "untyped"] {
        assert_eq!(
            v["framings"][framing],
            serde_json::json!(["tok0 tok1 tok2 ", "tok0 tok1 tok2 "]),
            "{framing}: {v}"
        );
    }
    assert_eq!(v["chat_stream_usage"], 3);
    assert_eq!(v["responses_stream_usage"], 3);
    assert_eq!(v["chat_tool"], "shell");
    assert_eq!(v["messages_tool"], "shell");
    assert_eq!(v["messages_usage"], serde_json::json!([12, 3]));
    assert_eq!(v["count_tokens"], 12);
    // Across the families, translated by the gateway.
    let cross = &v["cross"];
    assert_eq!(cross["messages_stream_on_gpt"], "tok0 tok1 tok2 ", "{v}");
    assert_eq!(cross["messages_stream_on_gpt_stop"], "end_turn");
    assert_eq!(cross["messages_on_gpt_gzip"], "tok0 tok1 tok2 ");
    assert_eq!(
        cross["messages_tool_on_gpt"],
        serde_json::json!(["shell", {"command": "echo $((6*7))"}, "tool_use"])
    );
    assert_eq!(cross["count_tokens_on_gpt"][1], "tiktoken o200k_base");
    assert!(cross["count_tokens_on_gpt"][0].as_u64().unwrap() > 0);
    assert_eq!(
        cross["chat_stream_on_claude"],
        serde_json::json!(["tok0 tok1 tok2 ", 3])
    );
    assert_eq!(
        cross["responses_stream_on_claude"],
        serde_json::json!(["tok0 tok1 tok2 ", 3])
    );
    assert_eq!(
        cross["responses_tool_on_claude"],
        serde_json::json!(["function_call", "shell"])
    );
    assert_eq!(v["embedding_len"], 3);
    let openai_models: Vec<&str> = v["openai_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        openai_models.contains(&"gpt-5.5") && openai_models.contains(&"claude-opus-4-6"),
        "{openai_models:?}"
    );
    let anthropic_models: Vec<&str> = v["anthropic_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    // Translation is on: an Anthropic client can call OpenAI's models too.
    assert!(
        anthropic_models.contains(&"claude-opus-4-6") && anthropic_models.contains(&"gpt-5.5"),
        "{anthropic_models:?}"
    );

    // What the upstream received: real credentials, no placeholder, SDK headers intact.
    let requests = mock.requests();
    assert!(requests.len() >= 10, "{}", requests.len());
    for r in &requests {
        let all: String = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("")))
            .collect();
        assert!(
            !all.contains("implicit"),
            "the placeholder reached the upstream:\n{all}"
        );
        if r.path.starts_with("/inference/") {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {}", GATEWAY_KEYS[2]).as_str()),
                "{} {all}",
                r.path
            );
        } else if r.path.starts_with("/v1/messages") || r.header("anthropic-version").is_some() {
            assert_eq!(
                r.header("x-api-key"),
                Some(GATEWAY_KEYS[0]),
                "{} {all}",
                r.path
            );
        } else {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {}", GATEWAY_KEYS[1]).as_str()),
                "{} {all}",
                r.path
            );
        }
        if r.path.contains("/v1/models") {
            // The gateway's own list fetches, cached and merged.
            assert!(
                r.header("user-agent")
                    .is_some_and(|ua| ua.starts_with("llm-integration/")),
                "{all}"
            );
            continue;
        }
        assert!(
            r.header("user-agent")
                .is_some_and(|ua| ua.contains("Python")),
            "{all}"
        );
        assert!(
            r.header("x-stainless-lang").is_some(),
            "SDK headers pass: {all}"
        );
    }
    s.stop().await;
}

/// A refusal that retrying cannot cure (the allocation is exhausted) is
/// final: the official SDK, with its default retries, asks once.
#[tokio::test(flavor = "multi_thread")]
async fn final_refusals_are_not_retried_by_the_sdks() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let snapshot = s.live.snapshot();
    let vm = snapshot
        .vm_by_address("127.0.0.1".parse().unwrap())
        .unwrap();
    let owner = llm_integration_core::Owner::User(snapshot.vm(vm).unwrap().owner);
    s.store.set_allocation(owner, 0).await.unwrap();
    let gateway = format!("http://127.0.0.1:{}", s.data.port());
    let python = python();
    let script = r#"
import os, anthropic, openai
an = anthropic.Anthropic(api_key="implicit", base_url=os.environ["GATEWAY"], default_headers={"Host": os.environ["HOST"]})
try:
    an.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    print("anthropic served")
except anthropic.RateLimitError:
    print("anthropic refused")
oa = openai.OpenAI(api_key="implicit", base_url=os.environ["GATEWAY"] + "/v1", default_headers={"Host": os.environ["HOST"]})
try:
    oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    print("openai served")
except openai.RateLimitError:
    print("openai refused")
"#;
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", script])
            .env("GATEWAY", gateway)
            .env("HOST", "llm.int.exe.xyz")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("anthropic refused") && stdout.contains("openai refused"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
        metrics.contains("llm_integration_refusals_total{code=\"allocation_exhausted\"} 2"),
        "one attempt each: {metrics}"
    );
    assert_eq!(
        mock.requests()
            .iter()
            .filter(|r| !r.path.contains("/models"))
            .count(),
        0
    );
    s.stop().await;
}
