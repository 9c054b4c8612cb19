//! Protocol translation through the real data plane against the mock
//! upstream, which answers each provider's route in its own shape: an
//! Anthropic Messages client on OpenAI models (Chat Completions, streamed
//! and not, tool calls both ways), OpenAI clients (Chat Completions and
//! Responses) on Claude models, upstream errors in the client's dialect,
//! the dropped-members header, refusals naming the member, `count_tokens`
//! estimated, `--translate=off`, and usage priced as the served model.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use llm_integration_mock::MockUpstream;
use llm_integration_server::testing::{Dirs, Server};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

const LLM: &str = "llm.int.exe.xyz";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The `data:` payloads of an event stream, parsed (`[DONE]` left out).
    fn events(&self) -> Vec<Value> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect()
    }
}

async fn post(s: &Server, path: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
    let client = s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &[LLM]);
    let mut r = client
        .post(format!("{}{path}", s.data_url(LLM)))
        .json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    Answer {
        status,
        headers,
        text: r.text().await.unwrap(),
    }
}

const ANTHROPIC: [(&str, &str); 2] = [
    ("anthropic-version", "2023-06-01"),
    ("x-api-key", "placeholder"),
];

fn bash_tool() -> Value {
    json!({"name": "Bash", "description": "Run a shell command",
           "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}})
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
async fn anthropic_client_on_an_openai_model_streamed_and_not() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;

    let a = post(
        &s,
        "/v1/messages",
        json!({"model": "gpt-5", "max_tokens": 1000, "top_k": 5,
               "system": "Be brief.", "messages": [{"role": "user", "content": "Hello"}]}),
        &ANTHROPIC,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let m = a.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["model"], "gpt-5");
    assert_eq!(m["content"][0]["text"], "tok0 tok1 tok2 ");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(
        m["usage"]["input_tokens"], 9,
        "prompt tokens less the cached"
    );
    assert_eq!(m["usage"]["cache_read_input_tokens"], 3);
    assert_eq!(m["usage"]["output_tokens"], 3);
    assert_eq!(a.header("llm-integration-dropped"), Some("top_k"));
    let seen = mock.last().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    let sent = seen.json().unwrap();
    assert_eq!(sent["max_completion_tokens"], 1000);
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert!(seen.header("anthropic-version").is_none());
    assert!(seen.header("authorization").unwrap().starts_with("Bearer "));

    let a = post(
        &s,
        "/v1/messages?beta=true",
        json!({"model": "gpt-5", "max_tokens": 1000, "stream": true,
               "messages": [{"role": "user", "content": "Hello"}]}),
        &ANTHROPIC,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(a.header("llm-integration-dropped").is_none());
    assert_eq!(mock.last().unwrap().path, "/v1/chat/completions");
    let events = a.events();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);

    // Usage is read from the upstream's own answers and priced as the
    // served model: gpt-5 at $1.25 / $10, cache reads $0.125 per million.
    // Non-streamed: 9 input, 3 output, 3 cached; streamed (the usage
    // chunk): 12 input, 3 output. 21×1.25 + 6×10 + 3×0.125 = 86.625
    // micro-dollars, rounded up.
    let rows = usage_by_model(&s, 2).await;
    let row = &rows["gpt-5"];
    assert_eq!(row["requests"], 2);
    assert_eq!(tokens(row), [21, 6, 0, 3], "{row}");
    assert_eq!(row["cost_micros"], 87);
}

#[tokio::test]
async fn a_tool_call_round_trip_from_an_anthropic_client_on_an_openai_model() {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_tool_scenario(Some("Bash"));
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let ask = json!({"role": "user", "content": "What is 6*7? Use Bash."});
    for stream in [false, true] {
        let a = post(
            &s,
            "/v1/messages",
            json!({"model": "gpt-5", "max_tokens": 1000, "stream": stream,
                   "tools": [bash_tool()], "messages": [ask]}),
            &ANTHROPIC,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let sent = mock.last().unwrap().json().unwrap();
        assert_eq!(sent["tools"][0]["type"], "function");
        assert_eq!(sent["tools"][0]["function"]["name"], "Bash");
        let (id, input) = if stream {
            let events = a.events();
            let start = events
                .iter()
                .find(|e| e["type"] == "content_block_start")
                .unwrap();
            assert_eq!(start["content_block"]["type"], "tool_use");
            assert_eq!(start["content_block"]["name"], "Bash");
            let json: String = events
                .iter()
                .filter(|e| e["delta"]["type"] == "input_json_delta")
                .map(|e| e["delta"]["partial_json"].as_str().unwrap())
                .collect();
            let delta = events
                .iter()
                .find(|e| e["type"] == "message_delta")
                .unwrap();
            assert_eq!(delta["delta"]["stop_reason"], "tool_use");
            (
                start["content_block"]["id"].as_str().unwrap().to_owned(),
                serde_json::from_str::<Value>(&json).unwrap(),
            )
        } else {
            let m = a.json();
            assert_eq!(m["stop_reason"], "tool_use");
            let block = &m["content"][0];
            assert_eq!(block["type"], "tool_use");
            (
                block["id"].as_str().unwrap().to_owned(),
                block["input"].clone(),
            )
        };
        assert_eq!(input, json!({"command": "echo $((6*7))"}));

        // The tool's result goes back as a `tool` message; the model answers.
        let a = post(
            &s,
            "/v1/messages",
            json!({"model": "gpt-5", "max_tokens": 1000, "stream": stream, "tools": [bash_tool()],
                   "messages": [ask,
                     {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": input}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "42"}]}]}),
            &ANTHROPIC,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let sent = mock.last().unwrap().json().unwrap();
        let messages = sent["messages"].as_array().unwrap();
        assert_eq!(messages[1]["tool_calls"][0]["id"], id.as_str());
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": id, "content": "42"})
        );
        let text = if stream {
            a.events()
                .iter()
                .filter_map(|e| e["delta"]["text"].as_str().map(str::to_owned))
                .collect::<String>()
        } else {
            a.json()["content"][0]["text"].as_str().unwrap().to_owned()
        };
        assert_eq!(text, "tok0 tok1 tok2 ");
    }
}

#[tokio::test]
async fn chat_completions_client_on_a_claude_model() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;

    let a = post(
        &s,
        "/v1/chat/completions",
        json!({"model": "claude-sonnet-4-6", "max_completion_tokens": 500, "seed": 7,
               "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let c = a.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "claude-sonnet-4-6");
    assert_eq!(c["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    assert_eq!(a.header("llm-integration-dropped"), Some("seed"));
    let seen = mock.last().unwrap();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert!(seen.header("x-api-key").is_some());
    let sent = seen.json().unwrap();
    assert_eq!(sent["max_tokens"], 500);
    assert_eq!(sent["system"][0]["text"], "Be brief.");

    let a = post(
        &s,
        "/v1/chat/completions",
        json!({"model": "claude-sonnet-4-6", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "Hello"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.ends_with("data: [DONE]\n\n"), "{}", a.text);
    let chunks = a.events();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    let usage = chunks.iter().find(|c| c["choices"] == json!([])).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 3);

    // Metered as the Claude model it is: claude-sonnet at $3 / $15, cache
    // writes $3.75, reads $0.30 per million: 12×3 + 3×15 + 2×3.75 + 3×0.3
    // = 89.4 micro-dollars, rounded up to 90 a request.
    let rows = usage_by_model(&s, 2).await;
    let row = &rows["claude-sonnet-4-6"];
    assert_eq!(tokens(row), [24, 6, 4, 6]);
    assert_eq!(row["cost_micros"], 180);
}

#[tokio::test]
async fn responses_client_on_a_claude_model_with_a_tool_call() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let a = post(
        &s,
        "/v1/responses",
        json!({"model": "claude-sonnet-4-6", "input": "Hello", "store": false}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let r = a.json();
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"][0]["content"][0]["text"], "tok0 tok1 tok2 ");

    mock.set_tool_scenario(Some("shell"));
    let tool = json!({"type": "function", "name": "shell", "description": "Run a command",
                      "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}});
    let a = post(
        &s,
        "/v1/responses",
        json!({"model": "claude-sonnet-4-6", "input": "What is 6*7?", "store": false, "stream": true,
               "tools": [tool]}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let sent = mock.last().unwrap().json().unwrap();
    assert_eq!(sent["tools"][0]["name"], "shell");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    let events = a.events();
    let done = events
        .iter()
        .find(|e| e["type"] == "response.completed")
        .unwrap_or_else(|| panic!("{}", a.text));
    let call = &done["response"]["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "shell");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"command": "echo $((6*7))"}));
    let call_id = call["call_id"].as_str().unwrap().to_owned();

    let a = post(
        &s,
        "/v1/responses",
        json!({"model": "claude-sonnet-4-6", "store": false, "stream": true, "tools": [tool],
               "input": [{"role": "user", "content": "What is 6*7?"}, call,
                         {"type": "function_call_output", "call_id": call_id, "output": "42"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let sent = mock.last().unwrap().json().unwrap();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        sent["messages"][2]["content"][0]["tool_use_id"],
        call_id.as_str()
    );
    let text: String = a
        .events()
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
}

#[tokio::test]
async fn errors_and_refusals_answer_in_the_clients_dialect() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;

    // The upstream's error, translated.
    let a = post(
        &s,
        "/v1/messages",
        json!({"model": "gpt-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
        &[ANTHROPIC[0], ANTHROPIC[1], ("x-mock-status", "429")],
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let e = a.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mock 429 error"));
    let a = post(
        &s,
        "/v1/chat/completions",
        json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "Hi"}]}),
        &[("x-mock-status", "529")],
    )
    .await;
    assert_eq!(a.status.as_u16(), 529);
    let e = a.json();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mock 529 error"),
        "{e}"
    );

    // Requests that cannot be expressed: 400, naming the member.
    let before = mock.count();
    let a = post(
        &s,
        "/v1/responses",
        json!({"model": "claude-sonnet-4-6", "input": "Hi", "previous_response_id": "resp_1"}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let e = a.json();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("previous_response_id"),
        "{e}"
    );
    assert_eq!(e["error"]["code"], "untranslatable_request");
    let a = post(
        &s,
        "/v1/messages",
        json!({"model": "gpt-5", "max_tokens": 10,
               "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}),
        &ANTHROPIC,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let e = a.json();
    assert_eq!(e["type"], "error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[0]"),
        "{e}"
    );
    assert_eq!(mock.count(), before, "nothing refused reached the upstream");
}

#[tokio::test]
async fn count_tokens_of_an_openai_model_is_an_estimate_that_says_so() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let before = mock.count();
    let a = post(
        &s,
        "/v1/messages/count_tokens?beta=true",
        json!({"model": "gpt-5", "system": "Be brief.", "tools": [bash_tool()],
               "messages": [{"role": "user", "content": "The quick brown fox jumps over the lazy dog."}]}),
        &ANTHROPIC,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let n = a.json()["input_tokens"].as_u64().unwrap();
    assert!((30..200).contains(&n), "{n}");
    assert_eq!(
        a.header("llm-integration-estimate"),
        Some("tiktoken o200k_base")
    );
    let a = post(
        &s,
        "/v1/messages/count_tokens",
        json!({"model": "accounts/fireworks/models/glm-4p6",
               "messages": [{"role": "user", "content": "Hello"}]}),
        &ANTHROPIC,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a
        .header("llm-integration-estimate")
        .unwrap()
        .contains("approximating"));
    assert_eq!(mock.count(), before, "estimated without the upstream");
}

#[tokio::test]
async fn translate_off_keeps_the_wrong_endpoint_refusals() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let shown = s.json("integrations show llm").await;
    assert_eq!(shown["translate"], true, "{shown}");
    let text = s.ok("integrations edit llm --translate=off").await;
    assert!(text.contains("translate: off"), "{text}");
    let shown = s.json("integrations show llm").await;
    assert_eq!(shown["translate"], false, "{shown}");
    assert!(s.ok("integrations list").await.contains("translate=off"));
    let before = mock.count();
    let a = post(
        &s,
        "/v1/messages",
        json!({"model": "gpt-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
        &ANTHROPIC,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.text
            .contains("use /v1/chat/completions or /v1/responses for OpenAI models"),
        "{}",
        a.text
    );
    let a = post(
        &s,
        "/v1/responses",
        json!({"model": "claude-sonnet-4-6", "input": "Hi"}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.text.contains("use /v1/messages for Anthropic models"),
        "{}",
        a.text
    );
    let a = post(
        &s,
        "/v1/messages/count_tokens",
        json!({"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}),
        &ANTHROPIC,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(mock.count(), before);

    s.ok("integrations edit llm --translate=on").await;
    let a = post(
        &s,
        "/v1/responses",
        json!({"model": "claude-sonnet-4-6", "input": "Hi"}),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let added = s
        .json("integrations add llm --name plain --translate=off")
        .await;
    assert_eq!(added["integration"]["translate"], false, "{added}");
}

#[tokio::test]
async fn a_translated_stream_cut_by_the_upstream_ends_with_an_error_in_the_clients_dialect() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let a = post(
        &s,
        "/v1/messages",
        json!({"model": "gpt-5", "max_tokens": 100, "stream": true,
               "messages": [{"role": "user", "content": "Hello"}]}),
        &[ANTHROPIC[0], ANTHROPIC[1], ("x-mock-fail", "reset")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text.starts_with("event: message_start\n"), "{}", a.text);
    assert!(a.text.contains("event: error\n"), "{}", a.text);
    assert!(
        !a.text.contains("message_stop"),
        "never a completion: {}",
        a.text
    );
    let a = post(
        &s,
        "/v1/responses",
        json!({"model": "claude-sonnet-4-6", "input": "Hello", "stream": true}),
        &[("x-mock-fail", "reset")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.text.contains("response.completed"), "{}", a.text);
    assert!(
        a.text.contains("event: response.failed\n"),
        "the Responses API's own failure, which Codex retries: {}",
        a.text
    );
    // Both recorded, as failed requests of the served models.
    let rows = usage_by_model(&s, 2).await;
    assert_eq!(rows["gpt-5"]["requests"], 1);
    assert_eq!(rows["claude-sonnet-4-6"]["requests"], 1);
}
