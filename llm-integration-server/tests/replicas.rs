//! Several gateway replicas on one PostgreSQL database: real server
//! processes (and, for the ChatGPT refresh, in-process servers) sharing a
//! schema of their own on the test PostgreSQL server.
//!
//! - a change made through one replica's `/exec` is served by the others;
//! - concurrent gateway-source requests spread over three replicas never
//!   debit past the allocation plus the documented bound, every served
//!   request has its ledger row, and no lease outlives the replicas;
//! - a replica killed mid-stream leaves the others serving, and its lease
//!   returns to the balance within the lease lifetime;
//! - PostgreSQL cut off and restored: the data plane keeps serving, writes
//!   answer 503 clearly, everything recovers without a restart;
//! - two replicas refreshing one ChatGPT account at once: one refresh.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};
use llm_integration_mock::MockUpstream;
use llm_integration_server::chatgpt::ChatGptEndpoints;
use llm_integration_server::testing::{fresh_postgres_schema, Dirs, Process, Server, GATEWAY_KEYS};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

/// Lease lifetime the replicas run with (short, so expiry is testable).
const LEASE_SECS: u64 = 3;

/// A replica process on `database`, in `dir` (shared by the replicas of one
/// installation: the master key lives under it, and the first replica
/// writes the owner's token there).
fn replica(dir: &Path, database: &str, upstream: &str) -> Process {
    let config = dir.join("replica.toml");
    if !config.exists() {
        std::fs::write(
            &config,
            format!("allocation_lease_secs = {LEASE_SECS}\nconfig_poll_ms = 1000\n"),
        )
        .unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    command
        .env("LLM_INTEGRATION_CONFIG", &config)
        .env("LLM_INTEGRATION_DATABASE", database)
        .env("LLM_INTEGRATION_LOG", "info")
        .env("LLM_INTEGRATION_OPENAI_BASE_URL", upstream)
        .env("LLM_INTEGRATION_ANTHROPIC_BASE_URL", upstream)
        .env("LLM_INTEGRATION_FIREWORKS_BASE_URL", upstream)
        .env("LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY", GATEWAY_KEYS[0])
        .env("LLM_INTEGRATION_GATEWAY_OPENAI_KEY", GATEWAY_KEYS[1])
        .env("LLM_INTEGRATION_GATEWAY_FIREWORKS_KEY", GATEWAY_KEYS[2]);
    Process::start(command, dir)
}

/// Three replicas of one installation: the first bootstraps it.
fn three_replicas(dir: &Path, database: &str, upstream: &str) -> Vec<Process> {
    let first = replica(dir, database, upstream);
    let rest: Vec<Process> = (0..2).map(|_| replica(dir, database, upstream)).collect();
    std::iter::once(first).chain(rest).collect()
}

fn owner_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("llm-integration-data/owner.token"))
        .unwrap()
        .trim()
        .to_owned()
}

fn data_addr(p: &Process) -> SocketAddr {
    p.data.trim_start_matches("http://").parse().unwrap()
}

/// A client that reaches `host` at replica `p`'s data plane (from
/// 127.0.0.1: the VM `local`).
fn vm(p: &Process, host: &str) -> (reqwest::Client, String) {
    let addr = data_addr(p);
    let client = reqwest::Client::builder()
        .resolve(host, addr)
        .no_proxy()
        .build()
        .unwrap();
    (client, format!("http://{host}:{}", addr.port()))
}

async fn exec(p: &Process, token: &str, line: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/exec", p.admin))
        .bearer_auth(token)
        .body(line.to_owned())
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn chat(p: &Process, host: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let (client, base) = vm(p, host);
    let mut request = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "gpt-5.5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Polls until `check` holds, up to `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pg(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.unwrap()
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let mut conn = pg(url).await;
    let v: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    let _ = conn.close().await;
    v
}

/// The owner's whole balance: unleased plus what leases hold.
const OWNER_BALANCE: &str =
    "SELECT balance_micros + (SELECT CAST(COALESCE(SUM(micros), 0) AS BIGINT) \
     FROM allocation_leases l WHERE l.owner_kind = a.owner_kind AND l.owner_id = a.owner_id) \
     FROM allocations a WHERE owner_kind = 'user' AND owner_id = 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_is_served_by_the_others() {
    let mock = MockUpstream::start().await.unwrap();
    let url = fresh_postgres_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let replicas = three_replicas(dir.path(), &url, &mock.url());
    let token = owner_token(dir.path());
    // Not there yet, on any replica.
    for p in &replicas {
        assert_eq!(
            chat(p, "shared.int.exe.xyz", &[]).await.0,
            StatusCode::NOT_FOUND
        );
    }
    let (status, body) = exec(
        &replicas[0],
        &token,
        "integrations add llm --name shared --attach auto:all",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for p in &replicas[1..] {
        eventually(
            Duration::from_secs(5),
            "the new integration is served",
            || async { chat(p, "shared.int.exe.xyz", &[]).await.0 == StatusCode::OK },
        )
        .await;
    }
    // And a removal made through another replica reaches the first.
    let (status, body) = exec(&replicas[2], &token, "integrations remove shared").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(Duration::from_secs(5), "the removal is served", || async {
        chat(&replicas[0], "shared.int.exe.xyz", &[]).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    // Every replica's listing agrees.
    for p in &replicas {
        let (_, list) = exec(p, &token, "integrations list --json").await;
        assert!(!list.contains("\"shared\""), "{list}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_three_replicas_never_overspend() {
    let mock = MockUpstream::start().await.unwrap();
    let url = fresh_postgres_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = three_replicas(dir.path(), &url, &mock.url());
    let token = owner_token(dir.path());
    // $1 for the owner; each request costs $0.01 (1000 output tokens of
    // gpt-5.5 at $10 per million) and reserves about as much.
    let (status, body) = exec(&replicas[0], &token, "usage").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut conn = pg(&url).await;
    sqlx::query(
        "INSERT INTO allocations (owner_kind, owner_id, balance_micros) VALUES ('user', 1, 1000000) \
         ON CONFLICT (owner_kind, owner_id) DO UPDATE SET balance_micros = 1000000",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    let per_request = 10_000i64;
    let replicas_ref = Arc::new(
        replicas
            .iter()
            .map(|p| vm(p, "llm.int.exe.xyz"))
            .collect::<Vec<_>>(),
    );
    let mut tasks = Vec::new();
    for i in 0..300usize {
        let clients = replicas_ref.clone();
        tasks.push(tokio::spawn(async move {
            let (client, base) = &clients[i % 3];
            let r = client
                .post(format!("{base}/v1/chat/completions"))
                .header("x-mock-usage", "input=0,output=1000")
                .header("x-mock-delay-ms", "2")
                .json(&json!({"model": "gpt-5.5", "max_tokens": 1000, "messages": []}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            (status, body)
        }));
    }
    let (mut ok, mut refused) = (0i64, 0i64);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(body.contains("allocation"), "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(ok >= 50 && refused >= 1, "ok {ok}, refused {refused}");
    // Stop the replicas gracefully: ledgers flushed, leases returned.
    for p in &replicas {
        p.sigterm();
    }
    for p in &mut replicas {
        assert!(p.wait().success(), "{}", p.log_text());
    }
    let rows = scalar(&url, "SELECT COUNT(*) FROM usage_ledger").await;
    assert_eq!(rows, ok, "one ledger row per served request");
    let debited = scalar(
        &url,
        "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_ledger WHERE source = 'gateway'",
    )
    .await;
    assert_eq!(debited, ok * per_request);
    // The bound: requests in flight at once consume at most what they did
    // not reserve; here each reserves what it costs, so the balance never
    // goes below zero by more than one request's worth per replica.
    assert!(
        debited <= 1_000_000 + 3 * per_request,
        "debited {debited} on a $1 allocation"
    );
    let leases = scalar(&url, "SELECT COUNT(*) FROM allocation_leases").await;
    assert_eq!(leases, 0, "no lease outlives the replicas");
    let balance = scalar(&url, OWNER_BALANCE).await;
    assert_eq!(balance, 1_000_000 - debited, "the books balance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_leaves_the_others_serving() {
    let mock = MockUpstream::start().await.unwrap();
    let url = fresh_postgres_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = three_replicas(dir.path(), &url, &mock.url());
    // Every replica holds a lease of the owner's balance.
    for p in &replicas {
        assert_eq!(chat(p, "llm.int.exe.xyz", &[]).await.0, StatusCode::OK);
    }
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM allocation_leases").await,
        3
    );
    // A long stream on the first, killed halfway.
    let (client, base) = vm(&replicas[0], "llm.int.exe.xyz");
    let mut stream = client
        .post(format!("{base}/v1/chat/completions"))
        .header("x-mock-chunks", "200")
        .header("x-mock-delay-ms", "20")
        .json(&json!({"model": "gpt-5.5", "max_tokens": 300, "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let _ = stream.chunk().await.unwrap();
    replicas[0].sigkill();
    let killed_at = Instant::now();
    // The stream ends (cut), and the others keep serving.
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(cut.is_ok(), "the killed replica's stream ended");
    for p in &replicas[1..] {
        for _ in 0..3 {
            let (status, body) = chat(p, "llm.int.exe.xyz", &[]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    // Its lease expires and goes back: within the lease lifetime (plus a
    // renewal round), only the two live replicas hold leases, and the
    // balance is whole: what the ledger debited is all that is gone.
    eventually(
        Duration::from_secs(LEASE_SECS + 3),
        "the killed replica's lease returns",
        || async { scalar(&url, "SELECT COUNT(*) FROM allocation_leases").await <= 2 },
    )
    .await;
    assert!(killed_at.elapsed() <= Duration::from_secs(LEASE_SECS + 3));
    let default = 10_000_000i64;
    eventually(Duration::from_secs(5), "the balance is whole again", || async {
        let debited = scalar(
            &url,
            "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_ledger WHERE source = 'gateway'",
        )
        .await;
        scalar(&url, OWNER_BALANCE).await == default - debited
    })
    .await;
    for p in &replicas[1..] {
        p.sigterm();
    }
    for p in &mut replicas[1..] {
        assert!(p.wait().success());
    }
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM allocation_leases").await,
        0
    );
}

/// A TCP relay to PostgreSQL that the test can cut (closing every relayed
/// connection and refusing new ones) and restore.
struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (o, g) = (open.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let born = g.load(Ordering::SeqCst);
                let g = g.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            () = tokio::time::sleep(Duration::from_millis(50)) => {
                                if g.load(Ordering::SeqCst) != born {
                                    return; // cut: both sides dropped
                                }
                            }
                        }
                    }
                });
            }
        });
        Relay {
            addr,
            open,
            generation,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ride_out_a_database_outage() {
    let mock = MockUpstream::start().await.unwrap();
    let direct = fresh_postgres_schema().await;
    // The same database, reached through the relay.
    let pg_addr: SocketAddr = {
        let rest = direct.split_once('@').unwrap().1;
        let hostport = rest.split('/').next().unwrap();
        hostport.parse().unwrap()
    };
    let relay = Relay::start(pg_addr).await;
    let url = direct.replacen(&pg_addr.to_string(), &relay.addr.to_string(), 1);
    let dir = tempfile::tempdir().unwrap();
    let replicas = three_replicas(dir.path(), &url, &mock.url());
    let token = owner_token(dir.path());
    for p in &replicas {
        assert_eq!(chat(p, "llm.int.exe.xyz", &[]).await.0, StatusCode::OK);
    }

    relay.cut();
    // The data plane serves from its snapshot (and its leases).
    for p in &replicas {
        for _ in 0..2 {
            let (status, body) = chat(p, "llm.int.exe.xyz", &[]).await;
            assert_eq!(status, StatusCode::OK, "during the outage: {body}");
        }
    }
    // Writes fail loudly.
    let started = Instant::now();
    let (status, body) = exec(&replicas[1], &token, "integrations add llm --name later").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("the configuration store is unavailable;"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the write failed in {:?}",
        started.elapsed()
    );

    relay.restore();
    // Without a restart: a write through one replica reaches the others.
    eventually(Duration::from_secs(15), "writes work again", || async {
        exec(
            &replicas[1],
            &token,
            "integrations add llm --name later --attach auto:all",
        )
        .await
        .0 == StatusCode::OK
    })
    .await;
    for p in [&replicas[0], &replicas[2]] {
        eventually(
            Duration::from_secs(10),
            "the change reaches every replica",
            || async { chat(p, "later.int.exe.xyz", &[]).await.0 == StatusCode::OK },
        )
        .await;
    }
    let log = replicas[0].log_text();
    assert!(!log.contains("panicked"), "no replica panicked: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_refresh_a_chatgpt_account_once() {
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 0,
        access_lifetime_secs: -10,
        refresh_delay: Duration::from_millis(300),
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let dirs = Dirs::postgres().await;
    let endpoints = ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let (e1, e2) = (endpoints.clone(), endpoints);
    let a = Server::start_with(&dirs, &upstream.url(), move |c| c.chatgpt = e1).await;
    let b = Server::start_with(&dirs, &upstream.url(), move |c| c.chatgpt = e2).await;
    // Connected through one replica; the tokens it stored have expired.
    let (status, body) = a
        .with_stdin("integrations setup chatgpt --name work", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    chatgpt.set(|c| c.access_lifetime_secs = 3600);
    a.ok("integrations add llm --name c --openai=chatgpt --openai-account=work --attach auto:all")
        .await;
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    for s in [&a, &b] {
        eventually(Duration::from_secs(5), "both replicas know `c`", || async {
            s.live
                .snapshot()
                .integrations()
                .iter()
                .any(|i| i.name.as_str() == "c")
        })
        .await;
    }
    let mut tasks = Vec::new();
    for s in [&a, &b] {
        for _ in 0..10 {
            let client = s.vm_client(loopback, &["c.int.exe.xyz"]);
            let url = format!("{}/v1/responses", s.data_url("c.int.exe.xyz"));
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({"model": "gpt-5.5", "input": "hi", "stream": true}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                (status, r.text().await.unwrap())
            }));
        }
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        chatgpt.refreshes(),
        1,
        "one refresh for the account across both replicas"
    );
    let issued = chatgpt.issued_tokens();
    let used: Vec<Value> = chatgpt
        .backend_requests()
        .iter()
        .map(|r| json!(r.header("authorization")))
        .collect();
    let latest = format!("Bearer {}", issued.last().unwrap());
    assert!(
        used.iter().all(|u| u == &json!(latest)),
        "every request used the refreshed token"
    );
    a.stop().await;
    b.stop().await;
}
