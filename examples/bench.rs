//! The gateway against a direct call, in one run: what a proxy hop costs.
//!
//! `cargo run --release --example bench` (add `-- --smoke` for a seconds-long
//! run, `-- --memory` for the gateway's memory figures alone, `-- --profile`
//! for instructions and allocations per request under callgrind, `-- --json
//! PATH` to choose where the figures go; default `target/release/bench.json`).
//!
//! It starts a fast mock upstream (in this process) and the real gateway
//! (`target/release/llm-integration-server`, built first if missing) with
//! metering on. The gateway runs on core 1 (`taskset -c 1`, one Tokio
//! worker); this process, the load generator and the mock, on core 0
//! (`BENCH_GATEWAY_CORE=0` puts the gateway on their core, to see what
//! crossing cores costs; `BENCH_GATEWAY_WRAPPER="perf record -g --"` runs it
//! under a profiler).
//! Direct and gateway runs alternate in rounds, so machine noise hits both
//! alike. Measured: non-streaming requests at concurrency 1 and 64
//! (requests/s, p50, p99, p99.9); streams of 20 events plus usage (time to
//! first event, total time, body frames received); the gateway's memory
//! idle, after load and holding 10,000 open streams; its CPU time per
//! request; a routing decision alone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use llm_integration_mock::MockUpstream;
use serde_json::{json, Value};
use tokio::net::TcpStream;

struct Settings {
    smoke: bool,
    /// Only the gateway's memory: idle, after load, holding open streams.
    memory_only: bool,
    /// Only the replicas-on-PostgreSQL section.
    replicas_only: bool,
    /// Only the exact counts: instructions and allocations per request.
    profile_only: bool,
    /// Another build to compare this one with.
    compare: Option<PathBuf>,
    /// Only the gateway against its bare HTTP stack and nginx.
    floor_only: bool,
    rounds: usize,
    slice: Duration,
    streams_c1: usize,
    streams_c64: usize,
    open_streams: usize,
    json: PathBuf,
}

/// The gateway against a direct call to the same mock upstream, and
/// against nginx when installed, in one run (about 4 minutes): latency,
/// throughput, time to the first streamed event, CPU and memory. Needs
/// `taskset`; builds `target/release/llm-integration-server` if missing.
#[derive(Debug, clap::Parser)]
#[command(
    name = "bench",
    bin_name = "cargo run --release --example bench --",
    after_help = "Environment: BENCH_GATEWAY_CORE=0 puts the gateway on the load generator's core; \
BENCH_GATEWAY_WRAPPER=\"perf record -g --\" runs it under a profiler; \
BENCH_GATEWAY_BIN=PATH runs another build of the server (to compare two builds)."
)]
struct Args {
    /// A seconds-long run (the figures are rough).
    #[arg(long)]
    smoke: bool,
    /// Only the gateway's memory: idle, after load, holding open streams.
    #[arg(long)]
    memory: bool,
    /// Only the replicas-on-PostgreSQL section: change propagation between
    /// three replicas, and one replica's throughput against SQLite.
    #[arg(long, conflicts_with = "memory")]
    replicas: bool,
    /// Only the exact counts, gateway and nginx each run under valgrind's
    /// callgrind: instructions and allocator calls per request, streamed
    /// and not (about 2 minutes; with --smoke, fewer requests).
    #[arg(long, conflicts_with_all = ["memory", "replicas"])]
    profile: bool,
    /// Only the gateway against its HTTP stack with no gateway work (the
    /// `bare_proxy` example: hyper's server and client on tokio) and
    /// nginx, alternating in one run: what the stack costs, and what the
    /// gateway's work adds.
    #[arg(long, conflicts_with_all = ["memory", "replicas", "profile", "compare"])]
    floor: bool,
    /// Only this build against the server binary at PATH (another build),
    /// alternating in one run: throughput, latency, CPU per request and
    /// per stream of each, and their ratio.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["memory", "replicas", "profile"])]
    compare: Option<PathBuf>,
    /// Where the figures go [default: target/release/bench.json].
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn settings() -> Settings {
    let args = <Args as clap::Parser>::parse();
    let (smoke, memory_only) = (args.smoke, args.memory);
    let json = args.json.unwrap_or_else(|| target_dir().join("bench.json"));
    if smoke {
        Settings {
            smoke,
            memory_only,
            replicas_only: args.replicas,
            profile_only: args.profile,
            compare: args.compare.clone(),
            floor_only: args.floor,
            rounds: 1,
            slice: Duration::from_millis(300),
            streams_c1: 20,
            streams_c64: 128,
            open_streams: 200,
            json,
        }
    } else {
        Settings {
            smoke,
            memory_only,
            replicas_only: args.replicas,
            profile_only: args.profile,
            compare: args.compare.clone(),
            floor_only: args.floor,
            rounds: 5,
            slice: Duration::from_secs(2),
            streams_c1: 300,
            streams_c64: 3200,
            open_streams: 10_000,
            json,
        }
    }
}

fn target_dir() -> PathBuf {
    // target/release/examples/bench → target/release
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

fn gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_GATEWAY_BIN") {
        return PathBuf::from(path);
    }
    built(
        target_dir().join("llm-integration-server"),
        &[
            "-p",
            "llm-integration-server",
            "--bin",
            "llm-integration-server",
        ],
    )
}

/// `path`, built first with `cargo build TARGET…` (in this build's
/// profile) when missing.
fn built(path: PathBuf, target: &[&str]) -> PathBuf {
    if !path.exists() {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.arg("build").args(target);
        if target_dir().ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building {} failed", path.display());
    }
    path
}

struct Gateway {
    child: Child,
    addr: SocketAddr,
    /// The admin listener (`POST /exec`).
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A graceful stop first, so a profiler around the gateway writes
        // its report.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(mock: &str) -> Gateway {
    start_server(mock, "", &[])
}

/// A profiler's command line from `BENCH_GATEWAY_WRAPPER`, empty without it.
fn wrapper_from_env() -> Vec<String> {
    std::env::var("BENCH_GATEWAY_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The real server on 127.0.0.1:0 (both listeners) in a new directory, on
/// the gateway's core with one worker, every provider at `mock`, with
/// `config` added to its configuration file and `env` to its environment.
fn start_server(mock: &str, config: &str, env: &[(&str, &str)]) -> Gateway {
    start_server_under(mock, config, env, &wrapper_from_env())
}

/// [`start_server`] run under `wrapper` (a profiler's command line).
fn start_server_under(
    mock: &str,
    config: &str,
    env: &[(&str, &str)],
    wrapper: &[String],
) -> Gateway {
    start_build(&gateway_binary(), mock, config, env, wrapper)
}

/// [`start_server_under`] with the server binary at `binary`.
fn start_build(
    binary: &std::path::Path,
    mock: &str,
    config: &str,
    env: &[(&str, &str)],
    wrapper: &[String],
) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        // The load comes from one address: the per-peer cap is lifted.
        format!(
            "default_allocation_usd = 1000000000.0\nshutdown_drain_secs = 1\n\
max_connections = 100000\nmax_connections_per_peer = 100000\n{config}"
        ),
    )
    .unwrap();
    let mut cmd = pinned_command(binary, wrapper);
    cmd.args(["--config", "config.toml"])
        .current_dir(dir.path())
        .env_remove("LLM_INTEGRATION_MASTER_KEY")
        .env_remove("LLM_INTEGRATION_DATABASE")
        .env("LLM_INTEGRATION_WORKER_THREADS", "1")
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("LLM_INTEGRATION_LISTEN", "127.0.0.1:0")
        .env("LLM_INTEGRATION_ADMIN_LISTEN", "127.0.0.1:0")
        .env("LLM_INTEGRATION_DEFAULT_HOST", "llm.int.exe.xyz")
        .env("LLM_INTEGRATION_LOG", "warn")
        .env("LLM_INTEGRATION_ANTHROPIC_BASE_URL", mock)
        .env("LLM_INTEGRATION_OPENAI_BASE_URL", mock)
        .env("LLM_INTEGRATION_FIREWORKS_BASE_URL", mock)
        .env("LLM_INTEGRATION_GATEWAY_OPENAI_KEY", "bench-key")
        .env("LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY", "bench-key");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut admin) = (None, None);
    while admin.is_none() {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the gateway exited"
        );
        let line = line.trim();
        if let Some(url) = line.strip_prefix("Data plane (what VMs call): http://") {
            addr = Some(url.parse().unwrap());
        }
        if let Some(url) = line.strip_prefix("Admin API (POST /exec): http://") {
            admin = Some(url.parse().unwrap());
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut sink);
    });
    Gateway {
        child,
        addr: addr.expect("the data plane's address is printed before the admin API's"),
        admin: admin.unwrap(),
        dir,
    }
}

/// A plain nginx reverse proxy in front of the same mock, pinned like the
/// gateway: the reference for what a proxy hop costs on this machine.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    /// The same proxy over HTTP/2 (prior knowledge), for the open streams.
    h2: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn start_nginx(mock: SocketAddr) -> Option<Nginx> {
    start_nginx_under(mock, &[])
}

/// [`start_nginx`] run under `wrapper` (a profiler's command line).
fn start_nginx_under(mock: SocketAddr, wrapper: &[String]) -> Option<Nginx> {
    let binary = nginx_binary()?;
    let dir = tempfile::tempdir().unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, h2_port) = (free_port(), free_port());
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
error_log stderr warn;\nworker_rlimit_nofile 30000;\nevents {{ worker_connections 25000; }}\n\
http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 600s;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  upstream mock {{ server {mock}; keepalive 256; keepalive_requests 100000000; }}\n\
  server {{\n    listen 127.0.0.1:{port};\n    listen 127.0.0.1:{h2_port} http2;\n    http2_max_concurrent_streams 128;\n\
    location / {{\n      proxy_pass http://mock;\n\
      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut cmd = pinned_command(&binary, wrapper);
    let child = cmd
        .args(["-e", "stderr", "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut nginx = Nginx {
        child,
        addr,
        h2: ([127, 0, 0, 1], h2_port).into(),
        _dir: dir,
    };
    // Under a profiler, starting takes seconds.
    let tries = if wrapper.is_empty() { 100 } else { 3000 };
    for _ in 0..tries {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Some(nginx);
        }
        if nginx.child.try_wait().ok().flatten().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// `program` on the gateway's core, when `taskset` is there, under
/// `wrapper` (a profiler: `BENCH_GATEWAY_WRAPPER="perf record -g --"`).
fn pinned_command(program: &std::path::Path, wrapper: &[String]) -> Command {
    let mut line: Vec<std::ffi::OsString> = Vec::new();
    if Command::new("taskset").arg("-V").output().is_ok() {
        let core = std::env::var("BENCH_GATEWAY_CORE").unwrap_or_else(|_| "1".into());
        line.extend(["taskset".into(), "-c".into(), core.into()]);
    }
    line.extend(wrapper.iter().map(Into::into));
    line.push(program.into());
    let mut c = Command::new(&line[0]);
    c.args(&line[1..]);
    c
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The `Rss*` lines of `pid` (anonymous, file-backed, shared), joined.
fn rss_parts(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Rss"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// User + system CPU time of `pid`, in microseconds (clock ticks of 10 ms).
fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10_000
}

/// CPU time of this machine's PostgreSQL server processes (named
/// `postgres`), in microseconds; 0 when there are none (a remote server).
fn postgres_cpu_us() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_us)
        .sum()
}

const BODY: &str =
    r#"{"model":"gpt-5.5","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#;

fn request(stream: bool) -> hyper::Request<Full<Bytes>> {
    let body = if stream {
        r#"{"model":"gpt-5.5","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}"#
    } else {
        BODY
    };
    let mut r = hyper::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("host", "llm.int.exe.xyz")
        .header("content-type", "application/json")
        .header("authorization", "Bearer implicit");
    if stream {
        r = r
            .header("x-mock-chunks", "20")
            .header("x-mock-delay-ms", "1");
    }
    r.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn http1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Non-streaming requests on `concurrency` keep-alive connections for `slice`.
async fn load(addr: SocketAddr, concurrency: usize, slice: Duration) -> (Vec<u32>, Duration) {
    let started = Instant::now();
    let deadline = started + slice;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut send = http1(addr).await;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = send.send_request(request(false)).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.unwrap();
                latencies.push(t.elapsed().as_nanos() as u32);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, started.elapsed())
}

/// `total` non-streaming requests, `concurrency` at a time on keep-alive
/// connections.
async fn load_count(addr: SocketAddr, concurrency: usize, total: usize) {
    let per = total.div_ceil(concurrency);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut send = http1(addr).await;
            for _ in 0..per {
                let response = send.send_request(request(false)).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

struct StreamRun {
    ttfe: Vec<u32>,
    total: Vec<u32>,
    frames: Vec<usize>,
}

/// `count` streams, `concurrency` at a time.
async fn streams(addr: SocketAddr, concurrency: usize, count: usize) -> StreamRun {
    let per = count.div_ceil(concurrency);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut send = http1(addr).await;
            let mut out = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..per {
                let t = Instant::now();
                let response = send.send_request(request(true)).await.unwrap();
                assert!(response.status().is_success());
                let mut body = response.into_body();
                let mut first = None;
                let mut frames = 0;
                let mut text = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.unwrap();
                    if let Some(data) = frame.data_ref() {
                        frames += 1;
                        if first.is_none() {
                            first = Some(t.elapsed());
                        }
                        text.extend_from_slice(data);
                    }
                }
                assert!(text.ends_with(b"data: [DONE]\n\n"));
                out.0.push(first.unwrap_or_default().as_nanos() as u32);
                out.1.push(t.elapsed().as_nanos() as u32);
                out.2.push(frames);
            }
            out
        }));
    }
    let mut run = StreamRun {
        ttfe: Vec::new(),
        total: Vec::new(),
        frames: Vec::new(),
    };
    for t in tasks {
        let (a, b, c) = t.await.unwrap();
        run.ttfe.extend(a);
        run.total.extend(b);
        run.frames.extend(c);
    }
    run
}

/// Opens `count` streams to the gateway over HTTP/2 that stay open (the
/// mock waits between events); returns once each has its first event.
async fn open_streams(addr: SocketAddr, count: usize) -> Vec<hyper::body::Incoming> {
    let connections = count.div_ceil(100);
    let mut senders = Vec::new();
    for _ in 0..connections {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        senders.push(send);
    }
    let mut tasks = Vec::new();
    for i in 0..count {
        let mut send = senders[i % connections].clone();
        tasks.push(tokio::spawn(async move {
            let r = hyper::Request::builder()
                .method("POST")
                .uri("http://llm.int.exe.xyz/v1/chat/completions")
                .header("content-type", "application/json")
                .header("x-mock-chunks", "2")
                .header("x-mock-delay-ms", "600000")
                .body(Full::new(Bytes::from_static(
                    br#"{"model":"gpt-5.5","messages":[],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}"#,
                )))
                .unwrap();
            send.ready().await.unwrap();
            let response = send.send_request(r).await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let mut body = response.into_body();
            let _first = body.frame().await;
            body
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    bodies
}

/// nginx's RSS before and while holding `count` open streams (KiB).
async fn nginx_memory(nginx: &Nginx, count: usize) -> (u64, u64) {
    let pid = nginx.child.id();
    let before = rss_kib(pid);
    let holding = rss_holding_streams(nginx.h2, pid, count).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (before, holding)
}

/// The RSS of `pid` (KiB) while `count` streams through `addr` stay open;
/// they are closed on return.
async fn rss_holding_streams(addr: SocketAddr, pid: u32, count: usize) -> u64 {
    let open = open_streams(addr, count).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holding = rss_kib(pid);
    drop(open);
    holding
}

/// Samples `read(pid)` every `every` until two samples in a row satisfy
/// `settled(last, now)`, at most `tries` times; returns the last sample.
async fn settle(
    pid: u32,
    every: Duration,
    tries: usize,
    read: fn(u32) -> u64,
    settled: impl Fn(u64, u64) -> bool,
) -> u64 {
    let mut last = read(pid);
    for _ in 0..tries {
        tokio::time::sleep(every).await;
        let now = read(pid);
        let done = settled(last, now);
        last = now;
        if done {
            break;
        }
    }
    last
}

/// The RSS of `pid` (KiB) once it has settled after the open streams
/// closed: each cut stream is metered and recorded first, so it is sampled
/// every 500 ms until two samples agree within 1% (at most 10 s).
async fn rss_settled(pid: u32) -> u64 {
    settle(pid, Duration::from_millis(500), 20, rss_kib, |last, now| {
        now.abs_diff(last) * 100 <= last
    })
    .await
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[derive(Default)]
struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

fn summarize(mut latencies: Vec<u32>, elapsed: Duration) -> Summary {
    let n = latencies.len();
    latencies.sort_unstable();
    Summary {
        rps: n as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        p999: percentile(&latencies, 0.999),
    }
}

/// A server [`alternate`] measures: its name, address and process.
struct Target {
    name: String,
    addr: SocketAddr,
    pid: u32,
}

impl Target {
    fn new(name: &str, addr: SocketAddr, child: &Child) -> Self {
        Target {
            name: name.into(),
            addr,
            pid: child.id(),
        }
    }
}

/// Loads `targets` in turn, slice by slice (and stream batch by stream
/// batch), so that machine noise hits all alike: throughput, p50 and CPU
/// per request at concurrency 1 and 64, and for 24-event streams the first
/// event's p50 and CPU per stream. Rows of one figure per target.
async fn alternate(s: &Settings, targets: &[Target]) -> Vec<(String, Vec<f64>)> {
    for t in targets {
        load(t.addr, 8, Duration::from_millis(300)).await;
        rss_settled(t.pid).await;
    }
    let n = targets.len();
    let rounds = s.rounds * 2;
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for concurrency in [1usize, 64] {
        let mut lat: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut time = vec![Duration::ZERO; n];
        let mut cpu = vec![0u64; n];
        for _ in 0..rounds {
            for (i, t) in targets.iter().enumerate() {
                let before = cpu_us(t.pid);
                let (l, took) = load(t.addr, concurrency, s.slice / 2).await;
                cpu[i] += cpu_us(t.pid) - before;
                lat[i].extend(l);
                time[i] += took;
            }
        }
        let per: Vec<f64> = (0..n)
            .map(|i| cpu[i] as f64 / lat[i].len().max(1) as f64)
            .collect();
        let summaries: Vec<Summary> = lat
            .into_iter()
            .zip(time)
            .map(|(l, t)| summarize(l, t))
            .collect();
        rows.push((
            format!("c={concurrency} requests/s"),
            summaries.iter().map(|x| x.rps).collect(),
        ));
        rows.push((
            format!("c={concurrency} p50 (µs)"),
            summaries.iter().map(|x| x.p50).collect(),
        ));
        rows.push((format!("c={concurrency} CPU per request (µs)"), per));
    }
    for (concurrency, count) in [(1usize, s.streams_c1 / 2), (64, s.streams_c64 / 2)] {
        let mut ttfe: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut cpu = vec![0u64; n];
        let mut done = vec![0usize; n];
        for _ in 0..4 {
            for (i, t) in targets.iter().enumerate() {
                let before = cpu_us(t.pid);
                let run = streams(t.addr, concurrency, count / 4).await;
                cpu[i] += cpu_us(t.pid) - before;
                done[i] += run.total.len();
                ttfe[i].extend(run.ttfe);
            }
        }
        for t in &mut ttfe {
            t.sort_unstable();
        }
        rows.push((
            format!("c={concurrency} stream first event p50 (µs)"),
            ttfe.iter().map(|t| percentile(t, 0.5)).collect(),
        ));
        rows.push((
            format!("c={concurrency} CPU per 24-event stream (µs)"),
            (0..n)
                .map(|i| cpu[i] as f64 / done[i].max(1) as f64)
                .collect(),
        ));
    }
    rows
}

/// Prints `rows` with a column per target and `ratio` (the first
/// column's label over the second's, by index) as the last.
fn print_rows(targets: &[Target], rows: &[(String, Vec<f64>)], ratio: (usize, usize)) -> Value {
    print!("{:<40}", "");
    for t in targets {
        print!(" {:>12}", t.name);
    }
    println!(
        " {:>10}",
        format!("{}/{}", targets[ratio.0].name, targets[ratio.1].name)
    );
    for (label, values) in rows {
        print!("{label:<40}");
        for v in values {
            print!(" {v:>12.1}");
        }
        println!(" {:>9.2}×", values[ratio.0] / values[ratio.1]);
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    json!({"columns": names, "rows": rows.iter().map(|(l, v)| json!({"figure": l, "values": v})).collect::<Vec<_>>()})
}

/// This build (A) against the build at `other` (B), both pinned like the
/// gateway, alternating ([`alternate`]); prints each figure of both and
/// B/A.
async fn compare(s: &Settings, mock: &str, other: &std::path::Path) -> Value {
    let wrapper = wrapper_from_env();
    let builds = [
        start_build(&gateway_binary(), mock, "", &[], &wrapper),
        start_build(other, mock, "", &[], &wrapper),
    ];
    println!(
        "this build (A: {}) against B ({}), alternating, pinned as in the full run",
        gateway_binary().display(),
        other.display()
    );
    let targets: Vec<Target> = builds
        .iter()
        .zip(["A", "B"])
        .map(|(g, name)| Target::new(name, g.addr, &g.child))
        .collect();
    let rows = alternate(s, &targets).await;
    print_rows(&targets, &rows, (1, 0))
}

/// The bare proxy example (`examples/bare_proxy.rs`), built when missing.
fn bare_proxy_binary() -> PathBuf {
    built(
        target_dir().join("examples").join("bare_proxy"),
        &["--example", "bare_proxy"],
    )
}

/// The bare proxy in front of `mock`, pinned like the gateway, one worker.
struct BareProxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for BareProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bare_proxy(mock: SocketAddr) -> BareProxy {
    start_bare_proxy_under(mock, &[])
}

/// [`start_bare_proxy`] run under `wrapper` (a profiler's command line).
fn start_bare_proxy_under(mock: SocketAddr, wrapper: &[String]) -> BareProxy {
    let mut child = pinned_command(&bare_proxy_binary(), wrapper)
        .arg(mock.to_string())
        .env("LLM_INTEGRATION_WORKER_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .expect("the bare proxy prints its address");
    BareProxy { child, addr }
}

/// The gateway, its HTTP stack alone (the bare proxy) and nginx,
/// alternating ([`alternate`]): what the stack costs with no gateway
/// work, and so what the gateway's own work adds.
async fn floor(s: &Settings, mock: &MockUpstream) -> Value {
    let gateway = start_server(&mock.url(), "", &[]);
    let bare = start_bare_proxy(mock.addr());
    let nginx = start_nginx(mock.addr());
    println!(
        "the gateway, its HTTP stack with no gateway work (bare: hyper server and client on tokio, one worker) and nginx, alternating, each pinned as in the full run"
    );
    let mut targets = vec![
        Target::new("gateway", gateway.addr, &gateway.child),
        Target::new("bare", bare.addr, &bare.child),
    ];
    if let Some(n) = &nginx {
        targets.push(Target::new("nginx", n.addr, &n.child));
    }
    let rows = alternate(s, &targets).await;
    print_rows(&targets, &rows, (0, 1))
}

/// The routing decision's cost (ns) in a snapshot of 10,000 VMs, each with
/// its `llm` integration: `(one, rotating)`, the same VM asked again and
/// again (the criterion bench's case: its entries stay in the CPU's
/// caches) and the 10,000 VMs asked in turn (as under real load: each
/// decision reads a VM's entries from memory).
fn routing_ns() -> (f64, f64) {
    use llm_integration::{
        ConfigRecords, IntegrationConfig, IntegrationId, Owner, RouteRequest, Snapshot,
        SnapshotOptions, User, UserId, Vm, VmId,
    };
    let mut records = ConfigRecords::default();
    for i in 0..10_000 {
        records
            .users
            .push(User::new(UserId(i), format!("u{i}@example.com")));
        records.vms.push(Vm::new(
            VmId(i),
            format!("vm{i}").parse().unwrap(),
            UserId(i),
        ));
        records.integrations.push(IntegrationConfig::default_llm(
            IntegrationId(i),
            Owner::User(UserId(i)),
        ));
    }
    let snapshot = Snapshot::build(records, SnapshotOptions::default());
    let method = http::Method::POST;
    let run = |vm: &dyn Fn(i64) -> i64| {
        let n = 1_000_000;
        let t = Instant::now();
        for i in 0..n {
            let req = RouteRequest::new(
                Some(VmId(vm(i))),
                "llm.int.exe.xyz",
                &method,
                "/v1/chat/completions",
            );
            std::hint::black_box(snapshot.route_with_model(&req, Some("gpt-5.5")).unwrap());
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let one = |_| 5_000;
    let rotating = |i| (i * 7_919) % 10_000;
    run(&rotating);
    (run(&one), run(&rotating))
}

fn main() {
    let s = settings();
    // This process (load generator and mock) on core 0; the gateway on core 1.
    let pinned = Command::new("taskset")
        .args(["-cp", "0", &std::process::id().to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(s, pinned));
}

/// One row of the table: a figure direct, through the gateway and through
/// nginx (when there is one).
fn row(label: &str, d: f64, g: f64, n: Option<f64>, unit: &str) {
    let added = |v: f64| {
        if unit == "µs" {
            format!("{:+.1} µs", v - d)
        } else {
            format!("{:.2}×", v / d)
        }
    };
    let nginx = n.map_or_else(
        || format!("{:>12} {:>12}", "-", ""),
        |n| format!("{n:>12.1} {:>12}", added(n)),
    );
    println!("{label:<34} {d:>12.1} {g:>12.1} {:>12} {nginx}", added(g));
}

fn stream_json(r: &StreamRun) -> Value {
    json!({"ttfe_p50_us": percentile(&r.ttfe, 0.5), "ttfe_p99_us": percentile(&r.ttfe, 0.99),
           "total_p50_us": percentile(&r.total, 0.5), "frames": frames(r)})
}

fn frames(r: &StreamRun) -> f64 {
    r.frames.iter().sum::<usize>() as f64 / r.frames.len().max(1) as f64
}

async fn run(s: Settings, pinned: bool) {
    let mock = MockUpstream::start_on("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    if s.profile_only {
        let figures = json!({"smoke": s.smoke, "profile": profile(&s, &mock).await});
        write_json(&s, &figures);
        return;
    }
    if let Some(other) = &s.compare {
        let figures = json!({"smoke": s.smoke, "compare": compare(&s, &mock.url(), other).await});
        write_json(&s, &figures);
        return;
    }
    if s.floor_only {
        let figures = json!({"smoke": s.smoke, "floor": floor(&s, &mock).await});
        write_json(&s, &figures);
        return;
    }
    let gateway = start_gateway(&mock.url());
    let nginx = start_nginx(mock.addr());
    let pid = gateway.child.id();
    let direct = mock.addr();
    let via = gateway.addr;
    let core = std::env::var("BENCH_GATEWAY_CORE").unwrap_or_else(|_| "1".into());
    println!(
        "llm-integration benchmark{}: gateway pid {pid} {}; load generator and mock {}",
        if s.smoke { " (smoke)" } else { "" },
        if pinned {
            format!("on core {core}, one worker")
        } else {
            "(not pinned: taskset unavailable)".into()
        },
        if pinned { "on core 0" } else { "unpinned" }
    );
    match &nginx {
        Some(_) => println!(
            "reference: nginx reverse proxy, one worker, pinned like the gateway, keep-alive to the mock, proxy_buffering off"
        ),
        None => println!("reference: nginx not installed (apt-get install nginx-light adds its column)"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    if s.replicas_only {
        load(via, 8, Duration::from_millis(200)).await;
        let figures = json!({
            "smoke": s.smoke,
            "pinned": pinned,
            "gateway_core": core,
            "replicas_postgres": replicas(&s, &mock.url(), via, pid).await,
        });
        write_json(&s, &figures);
        return;
    }
    // Settled: the tokenizer the server builds at start is in.
    let rss_idle = rss_settled(pid).await;
    if s.memory_only {
        for _ in 0..s.rounds {
            load(via, 64, s.slice).await;
        }
        let after_load = rss_kib(pid);
        streams(via, 64, s.streams_c64).await;
        let after_streams = rss_kib(pid);
        println!(
            "gateway RSS after {} streams at concurrency 64: {:.1} MiB ({})",
            s.streams_c64,
            after_streams as f64 / 1024.0,
            rss_parts(pid)
        );
        let holding = rss_holding_streams(via, pid, s.open_streams).await;
        let closed = rss_settled(pid).await;
        println!(
            "gateway RSS: idle {:.1} MiB, after the concurrency-64 load {:.1} MiB, holding {} open streams {:.1} MiB, after they closed {:.1} MiB",
            rss_idle as f64 / 1024.0,
            after_load as f64 / 1024.0,
            s.open_streams,
            holding as f64 / 1024.0,
            closed as f64 / 1024.0
        );
        if let Some(n) = &nginx {
            let (before, holding) = nginx_memory(n, s.open_streams).await;
            println!(
                "nginx RSS: {:.1} MiB, holding {} open streams {:.1} MiB",
                before as f64 / 1024.0,
                s.open_streams,
                holding as f64 / 1024.0
            );
        }
        return;
    }
    // Warm up every path.
    load(direct, 8, Duration::from_millis(200)).await;
    load(via, 8, Duration::from_millis(200)).await;
    if let Some(n) = &nginx {
        load(n.addr, 8, Duration::from_millis(200)).await;
    }

    let mut results: Vec<(String, Summary, Summary, Option<Summary>)> = Vec::new();
    let mut cpu_per_request = 0.0;
    let mut nginx_cpu_per_request = None;
    let nginx_pid = nginx.as_ref().map(|n| n.child.id());
    for concurrency in [1usize, 64] {
        let mut lat: [Vec<u32>; 3] = Default::default();
        let mut time = [Duration::ZERO; 3];
        let cpu_before = cpu_us(pid);
        let nginx_cpu_before = nginx_pid.map(cpu_us);
        for _ in 0..s.rounds {
            let targets = [Some(direct), Some(via), nginx.as_ref().map(|n| n.addr)];
            for (i, target) in targets.into_iter().enumerate() {
                let Some(addr) = target else { continue };
                let (l, t) = load(addr, concurrency, s.slice).await;
                lat[i].extend(l);
                time[i] += t;
            }
        }
        let [d_lat, g_lat, n_lat] = lat;
        if concurrency == 64 {
            cpu_per_request = (cpu_us(pid) - cpu_before) as f64 / g_lat.len().max(1) as f64;
            if let (Some(npid), Some(before)) = (nginx_pid, nginx_cpu_before) {
                nginx_cpu_per_request =
                    Some((cpu_us(npid) - before) as f64 / n_lat.len().max(1) as f64);
            }
        }
        let n = nginx.as_ref().map(|_| summarize(n_lat, time[2]));
        results.push((
            format!("non-streaming, concurrency {concurrency}"),
            summarize(d_lat, time[0]),
            summarize(g_lat, time[1]),
            n,
        ));
    }
    let rss_after_load = rss_kib(pid);
    let rss_after_load_parts = rss_parts(pid);

    let mut stream_results = Vec::new();
    let (mut cpu_per_stream, mut nginx_cpu_per_stream) = (0.0, None);
    for (concurrency, count) in [(1usize, s.streams_c1), (64, s.streams_c64)] {
        let d = streams(direct, concurrency, count).await;
        let before = cpu_us(pid);
        let g = streams(via, concurrency, count).await;
        cpu_per_stream = (cpu_us(pid) - before) as f64 / g.total.len().max(1) as f64;
        let n = match &nginx {
            Some(n) => {
                let before = cpu_us(n.child.id());
                let run = streams(n.addr, concurrency, count).await;
                nginx_cpu_per_stream =
                    Some((cpu_us(n.child.id()) - before) as f64 / run.total.len().max(1) as f64);
                Some(run)
            }
            None => None,
        };
        stream_results.push((concurrency, d, g, n));
    }

    let rss_open = rss_holding_streams(via, pid, s.open_streams).await;
    let rss_after_open = rss_settled(pid).await;
    let nginx_rss = match &nginx {
        Some(n) => Some(nginx_memory(n, s.open_streams).await),
        None => None,
    };
    let route = routing_ns();

    // The table.
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "", "direct", "gateway", "added", "nginx", "added"
    );
    let mut json_rows = Vec::new();
    for (name, d, g, n) in &results {
        println!("{name}");
        row("  requests/s", d.rps, g.rps, n.as_ref().map(|n| n.rps), "");
        row("  p50", d.p50, g.p50, n.as_ref().map(|n| n.p50), "µs");
        row("  p99", d.p99, g.p99, n.as_ref().map(|n| n.p99), "µs");
        row("  p99.9", d.p999, g.p999, n.as_ref().map(|n| n.p999), "µs");
        let summary = |s: &Summary| json!({"rps": s.rps, "p50_us": s.p50, "p99_us": s.p99, "p999_us": s.p999});
        json_rows.push(
            json!({"case": name, "direct": summary(d), "gateway": summary(g),
            "nginx": n.as_ref().map(summary)}),
        );
    }
    let mut streams_json = Vec::new();
    for (concurrency, d, g, n) in &mut stream_results {
        for r in [Some(&mut *d), Some(&mut *g), n.as_mut()]
            .into_iter()
            .flatten()
        {
            r.ttfe.sort_unstable();
            r.total.sort_unstable();
        }
        println!(
            "streams of 20 events + usage, concurrency {concurrency} ({} each)",
            d.total.len()
        );
        let n = n.as_ref();
        let ttfe: fn(&StreamRun) -> &[u32] = |r| &r.ttfe;
        let total: fn(&StreamRun) -> &[u32] = |r| &r.total;
        for (label, times, p) in [
            ("  first event p50", ttfe, 0.5),
            ("  first event p99", ttfe, 0.99),
            ("  whole stream p50", total, 0.5),
        ] {
            let at = |r: &StreamRun| percentile(times(r), p);
            row(label, at(d), at(g), n.map(at), "µs");
        }
        println!(
            "{:<34} {:>12.1} {:>12.1} {:>12} {:>12}",
            "  body frames per stream",
            frames(d),
            frames(g),
            "",
            n.map_or("-".into(), |n| format!("{:.1}", frames(n)))
        );
        streams_json.push(json!({"concurrency": concurrency, "direct": stream_json(d),
            "gateway": stream_json(g), "nginx": n.map(stream_json)}));
    }
    println!("gateway memory (RSS)");
    println!("{:<34} {:>12.1} MiB", "  idle", rss_idle as f64 / 1024.0);
    println!(
        "{:<34} {:>12.1} MiB",
        "  after the load above",
        rss_after_load as f64 / 1024.0
    );
    println!("{:<34} {rss_after_load_parts}", "");
    println!(
        "{:<34} {:>12.1} MiB",
        format!("  holding {} open streams", s.open_streams),
        rss_open as f64 / 1024.0
    );
    println!(
        "{:<34} {:>12.1} MiB",
        "  after they closed",
        rss_after_open as f64 / 1024.0
    );
    if let Some((idle, holding)) = nginx_rss {
        println!(
            "nginx memory (RSS): {:.1} MiB before the open streams, {:.1} MiB holding them",
            idle as f64 / 1024.0,
            holding as f64 / 1024.0
        );
    }
    println!(
        "{:<34} {:>12.1} µs",
        "gateway CPU per request (c=64)", cpu_per_request
    );
    if let Some(n) = nginx_cpu_per_request {
        println!("{:<34} {:>12.1} µs", "nginx CPU per request (c=64)", n);
    }
    println!(
        "{:<34} {:>12.1} µs",
        "gateway CPU per stream (c=64)", cpu_per_stream
    );
    if let Some(n) = nginx_cpu_per_stream {
        println!("{:<34} {:>12.1} µs", "nginx CPU per stream (c=64)", n);
    }
    println!(
        "{:<34} {:>12.1} ns   (one VM asked again and again, as in the criterion bench)",
        "routing decision (10,000 VMs)", route.0
    );
    println!(
        "{:<34} {:>12.1} ns   (the 10,000 VMs in turn: each VM's entries read from memory)",
        "", route.1
    );
    let replicas_postgres = replicas(&s, &mock.url(), via, pid).await;
    let figures = json!({
        "smoke": s.smoke,
        "pinned": pinned,
        "gateway_core": core,
        "non_streaming": json_rows,
        "streaming": streams_json,
        "rss_mib": {"idle": rss_idle as f64 / 1024.0, "after_load": rss_after_load as f64 / 1024.0,
                    "open_streams": rss_open as f64 / 1024.0, "open_stream_count": s.open_streams, "after_close": rss_after_open as f64 / 1024.0},
        "nginx_rss_mib": nginx_rss.map(|(idle, holding)| json!({"before_open_streams": idle as f64 / 1024.0, "open_streams": holding as f64 / 1024.0})),
        "cpu_us_per_request": cpu_per_request,
        "nginx_cpu_us_per_request": nginx_cpu_per_request,
        "cpu_us_per_stream": cpu_per_stream,
        "nginx_cpu_us_per_stream": nginx_cpu_per_stream,
        "routing_ns": route.1,
        "routing_ns_one_vm": route.0,
        "replicas_postgres": replicas_postgres,
    });
    write_json(&s, &figures);
}

fn write_json(s: &Settings, figures: &Value) {
    if let Some(dir) = s.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&s.json, serde_json::to_string_pretty(figures).unwrap()).unwrap();
    println!("\nfigures written to {}", s.json.display());
}

/// The PostgreSQL server the replica section uses:
/// `LLM_INTEGRATION_TEST_POSTGRES`, or the local one (trust authentication,
/// database `test`).
fn postgres_base_url() -> String {
    std::env::var("LLM_INTEGRATION_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The replicas' version poll (`config_poll_ms`): a minute, so that only
/// notifications propagate changes within the measurement.
const POLL_MS: u64 = 60_000;

/// `url` with the password of its user part (if any) replaced by `***`,
/// for output.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Prefix of the schemas this benchmark creates (and drops, also when an
/// interrupted run left one behind for more than an hour).
const BENCH_SCHEMA_PREFIX: &str = "llmi_bench_";

/// A schema of its own on `base` for one run, and the connection that
/// made it (to drop it at the end); the error when PostgreSQL is unreachable.
async fn bench_schema(base: &str) -> Result<(sqlx::PgConnection, String), String> {
    use sqlx::Connection;
    let mut conn = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(base))
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'llmi\\_bench\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    for name in stale {
        let created = name
            .strip_prefix(BENCH_SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t + 3600 < now) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut conn)
                .await;
        }
    }
    let schema = format!("{BENCH_SCHEMA_PREFIX}{now}_{}", std::process::id());
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok((conn, schema))
}

/// How a replica routes the `llm` integration's OpenAI requests.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Routing {
    Gateway,
    Disabled,
}

impl Routing {
    fn flag(self) -> &'static str {
        match self {
            Routing::Gateway => "gateway",
            Routing::Disabled => "disabled",
        }
    }

    /// How a data-plane answer of `status` was routed: 200 from the mock,
    /// or 404 `provider_disabled`; `None` for anything else.
    fn of(status: hyper::StatusCode) -> Option<Self> {
        match status {
            hyper::StatusCode::OK => Some(Routing::Gateway),
            hyper::StatusCode::NOT_FOUND => Some(Routing::Disabled),
            _ => None,
        }
    }
}

/// Requests on `addr` (one keep-alive connection, one about every
/// millisecond) until one is routed `want`; when its answer arrived
/// (`None` after `give_up`).
async fn first_routed(addr: SocketAddr, want: Routing, give_up: Instant) -> Option<Instant> {
    let mut send = http1(addr).await;
    loop {
        if send.ready().await.is_err() {
            send = http1(addr).await;
        }
        let response = send.send_request(request(false)).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let answered = Instant::now();
        let routing = Routing::of(status).unwrap_or_else(|| {
            panic!(
                "replica {addr} answered {status}: {}",
                String::from_utf8_lossy(&body)
            )
        });
        if routing == want {
            return Some(answered);
        }
        if answered > give_up {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// `line` through the admin API at `admin`; panics unless it succeeded.
async fn exec(http: &reqwest::Client, admin: SocketAddr, token: &str, line: &str) {
    let response = http
        .post(format!("http://{admin}/exec"))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(line.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "{line}: {status} {body}");
}

fn ms_percentiles(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    json!({"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0), "min_ms": at(0.0), "count": v.len()})
}

/// Three replicas on one fresh PostgreSQL schema: how long a configuration
/// write on one takes to route requests on the other two (notifications
/// only: their version poll is a minute), and c=64 throughput of one
/// replica against `sqlite` (the SQLite gateway) in alternating rounds.
/// Prints the figures; returns them for the JSON file (a `skipped` reason
/// when PostgreSQL cannot be reached).
async fn replicas(s: &Settings, mock: &str, sqlite: SocketAddr, sqlite_pid: u32) -> Value {
    println!();
    println!("replicas on PostgreSQL");
    let base = postgres_base_url();
    let (mut conn, schema) = match bench_schema(&base).await {
        Ok(made) => made,
        Err(e) => {
            let reason = format!(
                "PostgreSQL is not reachable at {}: {e}",
                without_password(&base)
            );
            println!(
                "  skipped: {reason} (set LLM_INTEGRATION_TEST_POSTGRES to use another server)"
            );
            return json!({"skipped": reason});
        }
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let database = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let key_file = key_file.to_str().unwrap();
    let config = format!("config_poll_ms = {POLL_MS}\n");
    let env = [
        ("LLM_INTEGRATION_DATABASE", database.as_str()),
        ("LLM_INTEGRATION_MASTER_KEY_FILE", key_file),
    ];
    let figures = {
        // The first bootstraps the owner and VM `local` (127.0.0.1).
        let a = start_server(mock, &config, &env);
        let token = std::fs::read_to_string(a.dir.path().join("llm-integration-data/owner.token"))
            .expect("the first replica bootstraps the owner")
            .trim()
            .to_owned();
        let b = start_server(mock, &config, &env);
        let c = start_server(mock, &config, &env);
        let figures = replica_figures(s, &token, &a, [b.addr, c.addr], (sqlite, sqlite_pid)).await;
        drop((a, b, c));
        figures
    };
    let dropped = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await;
    if let Err(e) = dropped {
        println!("  (could not drop schema {schema}: {e})");
    }
    figures
}

async fn replica_figures(
    s: &Settings,
    token: &str,
    a: &Gateway,
    others: [SocketAddr; 2],
    (sqlite, sqlite_pid): (SocketAddr, u32),
) -> Value {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let writes = if s.smoke { 20 } else { 200 };
    let give_up = Duration::from_secs(10);
    // Every replica routes by the bootstrapped configuration first.
    let deadline = Instant::now() + give_up;
    for addr in [a.addr].into_iter().chain(others) {
        assert!(
            first_routed(addr, Routing::Gateway, deadline)
                .await
                .is_some(),
            "replica {addr} does not serve the bootstrapped configuration"
        );
    }
    let (mut from_answer, mut from_sent, mut exec_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut missed = 0;
    let mut state = Routing::Gateway;
    for i in 0..writes {
        let want = if i % 2 == 0 {
            Routing::Disabled
        } else {
            Routing::Gateway
        };
        let probes: Vec<_> = others
            .iter()
            .map(|&addr| tokio::spawn(first_routed(addr, want, Instant::now() + give_up)))
            .collect();
        let sent = Instant::now();
        exec(
            &http,
            a.admin,
            token,
            &format!("integrations edit llm --openai={}", want.flag()),
        )
        .await;
        let answered = Instant::now();
        state = want;
        exec_ms.push(answered.duration_since(sent).as_secs_f64() * 1000.0);
        for probe in probes {
            match probe.await.unwrap() {
                Some(routed) => {
                    from_sent.push(routed.duration_since(sent).as_secs_f64() * 1000.0);
                    // Signed: a replica may route the new way before the
                    // writer's answer arrives here.
                    from_answer.push(if routed >= answered {
                        routed.duration_since(answered).as_secs_f64() * 1000.0
                    } else {
                        -(answered.duration_since(routed).as_secs_f64() * 1000.0)
                    });
                }
                None => missed += 1,
            }
        }
    }
    if state != Routing::Gateway {
        exec(
            &http,
            a.admin,
            token,
            "integrations edit llm --openai=gateway",
        )
        .await;
    }
    let answer = ms_percentiles(from_answer);
    let sent = ms_percentiles(from_sent);
    let exec_ms = ms_percentiles(exec_ms);
    println!(
        "  propagation: {writes} writes on replica A (`integrations edit llm --openai=disabled|gateway` through POST /exec), \
first request routed the new way on B and C (polled about every ms); notifications only (config_poll_ms = {POLL_MS})"
    );
    let line = |label: &str, v: &Value, target: &str| {
        println!(
            "{label:<34} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms   {target}",
            v["p50_ms"].as_f64().unwrap(),
            v["p99_ms"].as_f64().unwrap(),
            v["max_ms"].as_f64().unwrap()
        )
    };
    line("  from the write's answer", &answer, "target: p99 ≤ 50 ms");
    line("  from the write's request", &sent, "");
    line("  the write itself (POST /exec)", &exec_ms, "");
    if missed > 0 {
        println!(
            "  {missed} of {} did not route the new way within {} s",
            writes * 2,
            give_up.as_secs()
        );
    }

    // Throughput: the same load on replica A and on the SQLite gateway,
    // alternating.
    load(a.addr, 8, Duration::from_millis(200)).await;
    let (mut pg, mut lite) = ((Vec::new(), Duration::ZERO), (Vec::new(), Duration::ZERO));
    let (mut pg_cpu, mut lite_cpu, mut server_cpu) = (0, 0, 0);
    for _ in 0..s.rounds {
        let before = cpu_us(sqlite_pid);
        let (l, t) = load(sqlite, 64, s.slice).await;
        lite_cpu += cpu_us(sqlite_pid) - before;
        lite.0.extend(l);
        lite.1 += t;
        let before = cpu_us(a.child.id());
        let server_before = postgres_cpu_us();
        let (l, t) = load(a.addr, 64, s.slice).await;
        pg_cpu += cpu_us(a.child.id()) - before;
        server_cpu += postgres_cpu_us().saturating_sub(server_before);
        pg.0.extend(l);
        pg.1 += t;
    }
    let lite_cpu = lite_cpu as f64 / lite.0.len().max(1) as f64;
    let pg_cpu = pg_cpu as f64 / pg.0.len().max(1) as f64;
    let server_cpu = server_cpu as f64 / pg.0.len().max(1) as f64;
    let (pg, lite) = (summarize(pg.0, pg.1), summarize(lite.0, lite.1));
    let ratio = pg.rps / lite.rps.max(f64::MIN_POSITIVE);
    println!(
        "  non-streaming, concurrency 64, gateway source (metering, ledger, leased allocation)"
    );
    println!(
        "{:<34} {:>12.1} requests/s (p50 {:.1} µs, p99 {:.1} µs, CPU {:.1} µs per request)",
        "  one server on SQLite", lite.rps, lite.p50, lite.p99, lite_cpu
    );
    println!(
        "{:<34} {:>12.1} requests/s (p50 {:.1} µs, p99 {:.1} µs, CPU {:.1} µs per request)",
        "  one replica on PostgreSQL", pg.rps, pg.p50, pg.p99, pg_cpu
    );
    if server_cpu > 0.0 {
        println!(
            "{:<34} {:>12.1} µs per request (the PostgreSQL server's processes on this machine)",
            "  PostgreSQL server CPU", server_cpu
        );
    }
    println!(
        "{:<34} {:>12.2}×        target: ≥ 0.9×",
        "  PostgreSQL / SQLite", ratio
    );
    let summary =
        |s: &Summary| json!({"rps": s.rps, "p50_us": s.p50, "p99_us": s.p99, "p999_us": s.p999});
    json!({
        "replicas": 3,
        "writes": writes,
        "config_poll_ms": POLL_MS,
        "propagation_from_answer": answer,
        "propagation_from_request": sent,
        "exec": exec_ms,
        "not_propagated": missed,
        "throughput_c64": {"sqlite": summary(&lite), "postgres": summary(&pg), "ratio": ratio,
                           "cpu_us_per_request": {"sqlite": lite_cpu, "postgres": pg_cpu, "postgres_server": server_cpu}},
    })
}

/// Instructions and allocator calls, counted by callgrind over one
/// workload.
#[derive(Clone, Copy, Default)]
struct Counts {
    instructions: u64,
    allocations: u64,
}

/// Allocation entry points: Rust's global allocator (whichever it is) and
/// the C library's (nginx's pools, and C code linked into the gateway).
const RUST_ALLOC: [&str; 3] = ["__rust_alloc", "__rust_alloc_zeroed", "__rust_realloc"];
const C_ALLOC: [&str; 6] = [
    "malloc",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
];

/// The total instructions of a callgrind dump (written with
/// `--compress-strings=no`) and its calls to an allocation entry point.
/// A C allocation made on behalf of Rust's global allocator (its caller is
/// the allocator shim) is not counted twice.
fn parse_callgrind(text: &str) -> Counts {
    let base = |name: &str| -> String {
        // `malloc'2` is callgrind's name for a recursion level.
        let name = name.split('\'').next().unwrap_or(name).trim();
        name.rsplit("::").next().unwrap_or(name).to_owned()
    };
    let mut counts = Counts::default();
    let (mut caller, mut callee) = (String::new(), String::new());
    for line in text.lines() {
        if let Some(v) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            counts.instructions = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(name) = line.strip_prefix("fn=") {
            caller = base(name);
        } else if let Some(name) = line.strip_prefix("cfn=") {
            callee = base(name);
        } else if let Some(calls) = line.strip_prefix("calls=") {
            let n: u64 = calls
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let shim = caller.starts_with("__rdl_")
                || caller.starts_with("__rust_")
                || caller.starts_with("__rg_")
                || C_ALLOC.contains(&caller.as_str());
            let rust =
                RUST_ALLOC.contains(&callee.as_str()) && !RUST_ALLOC.contains(&caller.as_str());
            let c = C_ALLOC.contains(&callee.as_str()) && !shim;
            if rust || c {
                counts.allocations += n;
            }
        }
    }
    counts
}

/// Runs `workload` against a process under callgrind (`pid`, dumps in
/// `dir`): counters zeroed before, dumped after, and the dump read.
async fn counted<F: std::future::Future<Output = ()>>(
    pid: u32,
    dir: &std::path::Path,
    workload: F,
) -> Counts {
    let control = |flag: &str| {
        let out = Command::new("callgrind_control")
            .args([flag, &pid.to_string()])
            .output()
            .expect("callgrind_control runs (valgrind installed)");
        assert!(out.status.success(), "callgrind_control {flag} failed");
    };
    let before: std::collections::HashSet<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    control("-z");
    workload.await;
    control("-d");
    let dump = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !before.contains(p))
        .expect("callgrind wrote a dump");
    parse_callgrind(&std::fs::read_to_string(dump).unwrap())
}

/// The counts per request of one proxy under callgrind: non-streaming at
/// concurrency 1 and 64, streams of 24 events at concurrency 1 and 64.
async fn profile_proxy(addr: SocketAddr, pid: u32, dir: &std::path::Path, s: &Settings) -> Value {
    let (requests, stream_count) = if s.smoke { (200, 16) } else { (2000, 128) };
    // Warm up: connections to the upstream pooled, lazy state built.
    load_count(addr, 64, 256).await;
    streams(addr, 8, 16).await;
    // Then idle: what the process does at start (the tokenizer it builds,
    // slow under callgrind) is not counted against the requests.
    settle(pid, Duration::from_millis(200), 300, cpu_us, |last, now| {
        now.saturating_sub(last) < 20_000
    })
    .await;
    let mut out = serde_json::Map::new();
    for (name, concurrency, streamed) in [
        ("request_c1", 1usize, false),
        ("request_c64", 64, false),
        ("stream_c1", 1, true),
        ("stream_c64", 64, true),
    ] {
        let n = if streamed { stream_count } else { requests };
        let c = counted(pid, dir, async {
            if streamed {
                streams(addr, concurrency, n).await;
            } else {
                load_count(addr, concurrency, n).await;
            }
        })
        .await;
        let n = n.div_ceil(concurrency) * concurrency;
        out.insert(
            name.into(),
            json!({"instructions": c.instructions as f64 / n as f64,
                   "allocations": c.allocations as f64 / n as f64}),
        );
    }
    Value::Object(out)
}

/// Instructions (callgrind's exact count) and allocator calls per request,
/// of the gateway (metering and the ledger on), of its HTTP stack alone
/// (the bare proxy) and of nginx, each run under callgrind in turn.
/// Prints a table; returns the figures.
async fn profile(s: &Settings, mock: &MockUpstream) -> Value {
    // Kept for `callgrind_annotate --inclusive=yes FILE`.
    let dumps = s
        .json
        .parent()
        .map_or_else(|| PathBuf::from("callgrind"), |d| d.join("callgrind"));
    let _ = std::fs::remove_dir_all(&dumps);
    std::fs::create_dir_all(&dumps).unwrap();
    let dir = &dumps;
    let wrapper = |name: &str| -> Vec<String> {
        vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--compress-strings=no".into(),
            "--compress-pos=no".into(),
            format!("--callgrind-out-file={}/{name}.%p", dir.display()),
        ]
    };
    println!(
        "exact counts under callgrind (the gateway, its bare HTTP stack and nginx, each pinned, one worker)"
    );
    let gateway = start_server_under(&mock.url(), "", &[], &wrapper("gateway"));
    let g = profile_proxy(gateway.addr, gateway.child.id(), dir, s).await;
    drop(gateway);
    let bare = start_bare_proxy_under(mock.addr(), &wrapper("bare"));
    let b = profile_proxy(bare.addr, bare.child.id(), dir, s).await;
    drop(bare);
    let n = match start_nginx_under(mock.addr(), &wrapper("nginx")) {
        Some(nginx) => {
            let n = profile_proxy(nginx.addr, nginx.child.id(), dir, s).await;
            drop(nginx);
            Some(n)
        }
        None => None,
    };
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "instr: gw", "bare", "nginx", "allocs: gw", "bare", "nginx"
    );
    for (key, label) in [
        ("request_c1", "per request, concurrency 1"),
        ("request_c64", "per request, concurrency 64"),
        ("stream_c1", "per 24-event stream, c=1"),
        ("stream_c64", "per 24-event stream, c=64"),
    ] {
        let get = |v: Option<&Value>, what: &str| {
            v.and_then(|v| v[key][what].as_f64())
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"))
        };
        println!(
            "{label:<30} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            get(Some(&g), "instructions"),
            get(Some(&b), "instructions"),
            get(n.as_ref(), "instructions"),
            get(Some(&g), "allocations"),
            get(Some(&b), "allocations"),
            get(n.as_ref(), "allocations"),
        );
    }
    println!(
        "(callgrind's dumps, one per line above and in that order: {})",
        dumps.display()
    );
    json!({"gateway": g, "bare": b, "nginx": n})
}
