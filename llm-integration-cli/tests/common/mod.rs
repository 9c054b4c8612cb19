//! What the CLI's tests share: running the binary, and a fake server.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one run of the binary did.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `llm-integration ARGS` with `env` (and no token, server or saved
/// login from this machine), `stdin` piped in.
pub async fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-integration"));
        cmd.args(&args)
            .env_remove("LLM_INTEGRATION_TOKEN")
            .env_remove("LLM_INTEGRATION_SERVER")
            .env("LLM_INTEGRATION_CLI_CONFIG", "/nonexistent/cli.toml")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let output = child.wait_with_output().unwrap();
        Out {
            code: output.status.code().unwrap(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// The characters that would drive a terminal or reorder what it shows.
pub const DANGEROUS: [char; 9] = [
    '\x1b', '\r', '\x07', '\x7f', '\u{9b}', '\u{202e}', '\u{2066}', '\u{200b}', '\u{feff}',
];

/// Asserts that `text` (what the CLI printed) holds none of [`DANGEROUS`].
pub fn assert_printable(text: &str) {
    for c in DANGEROUS {
        assert!(
            !text.contains(c),
            "raw U+{:04X} printed:\n{text:?}",
            c as u32
        );
    }
}

/// A server on 127.0.0.1:0 that answers every request with raw bytes it
/// is given, written in parts (a short pause between them, then the
/// connection closes), as a hostile or broken server would; it keeps what
/// it was sent.
pub struct FakeServer {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    /// `answer` gives the parts of the raw response to a request (its head
    /// and body as text).
    pub async fn start(answer: impl Fn(&str) -> Vec<Vec<u8>> + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let kept = kept.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    kept.lock().unwrap().push(request.clone());
                    for part in answer(&request) {
                        if stream.write_all(&part).await.is_err() {
                            return;
                        }
                        let _ = stream.flush().await;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeServer { url, requests }
    }

    /// Every request received so far (head and body).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Some(text);
            }
        }
    }
}

/// A raw HTTP/1.1 response head: `status` line, then `headers` (raw
/// bytes, so they may hold what HTTP forbids), closing the connection; the
/// body runs to the close.
pub fn head(status: &str, headers: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n").into_bytes();
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}
