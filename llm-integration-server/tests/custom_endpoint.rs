//! Custom HTTPS endpoints through the real server: a TLS endpoint (an
//! rcgen certificate issued by a test-only root the server is told to
//! trust) in front of the mock upstream, reached by VMs through the
//! gateway with the endpoint's own authentication; and the address rule
//! (no SSRF), at configuration and at connection, with a test resolver
//! whose answers change between the two.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use llm_integration_mock::MockUpstream;
use llm_integration_server::endpoints::EndpointResolver;
use llm_integration_server::testing::{Dirs, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const VM: &str = "127.0.0.1";
const HOST: &str = "local.int.exe.xyz";
const OPENAI_TOKEN: &str = "endpoint-openai-token-0123456789";
const ANTHROPIC_VALUE: &str = "endpoint-anthropic-value-9876543210";

/// A resolver answering from a table; a host's answers are used in turn,
/// the last one repeating (a name that resolves elsewhere later).
#[derive(Default)]
struct Table(Mutex<HashMap<String, Vec<Vec<IpAddr>>>>);

impl Table {
    fn with(entries: &[(&str, &[&[&str]])]) -> Arc<Table> {
        let table = Table::default();
        for (host, answers) in entries {
            let answers = answers
                .iter()
                .map(|a| a.iter().map(|ip| ip.parse().unwrap()).collect())
                .collect();
            table.0.lock().unwrap().insert((*host).to_owned(), answers);
        }
        Arc::new(table)
    }
}

#[async_trait]
impl EndpointResolver for Table {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let mut table = self.0.lock().unwrap();
        match table.get_mut(host) {
            Some(answers) if answers.len() > 1 => Ok(answers.remove(0)),
            Some(answers) => Ok(answers[0].clone()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        }
    }
}

/// A test-only certificate authority and a TLS front for the mock
/// upstream: it terminates TLS with a certificate for `names` and relays
/// the bytes to the mock (which records what arrives), or answers every
/// request with a redirect.
struct TlsFront {
    addr: SocketAddr,
    root: rustls_pki_types::CertificateDer<'static>,
}

async fn tls_front(backend: Option<SocketAddr>, names: &[&str]) -> TlsFront {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                match backend {
                    Some(backend) => {
                        if let Ok(mut plain) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        }
                    }
                    None => {
                        let mut head = [0u8; 4096];
                        let _ = tls.read(&mut head).await;
                        let _ = tls
                            .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        let _ = tls.shutdown().await;
                    }
                }
            });
        }
    });
    TlsFront {
        addr,
        root: ca_cert.der().clone(),
    }
}

async fn server(
    mock: &MockUpstream,
    dirs: &Dirs,
    resolver: Arc<Table>,
    allow_private: bool,
    root: Option<&TlsFront>,
) -> Server {
    let root = root.map(|f| f.root.clone());
    Server::start_with(dirs, &mock.url(), move |c| {
        c.endpoints.allow_private = allow_private;
        c.endpoints.resolver = resolver;
        c.endpoints.extra_roots.extend(root);
    })
    .await
}

/// A VM's Chat Completion request through the gateway.
async fn chat(vm: &reqwest::Client, s: &Server) -> reqwest::Response {
    vm.post(format!("{}/v1/chat/completions", s.data_url(HOST)))
        .json(&json!({"model": "gpt-5.5", "messages": []}))
        .send()
        .await
        .unwrap()
}

fn usage_of(s: &Value) -> (u64, i64) {
    let requests = s["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["requests"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    (
        requests,
        s["allocation"]["left_micros"].as_i64().unwrap_or(-1),
    )
}

#[tokio::test]
async fn a_custom_endpoint_serves_each_api_family_with_its_own_authentication() {
    let mock = MockUpstream::start().await.unwrap();
    let front = tls_front(Some(mock.addr()), &["models.test"]).await;
    let dirs = Dirs::new();
    let resolver = Table::with(&[
        ("models.test", &[&["127.0.0.1"]]),
        ("other.test", &[&["127.0.0.1"]]),
    ]);
    let s = server(&mock, &dirs, resolver, true, Some(&front)).await;
    let base = format!("https://models.test:{}", front.addr.port());

    // Two secrets from standard input, one line each (anthropic, then openai).
    let (status, body) = s
        .with_stdin(
            &format!(
                "integrations add llm --name local --openai=custom --openai-url={base}/v1 --openai-key=- \
                 --anthropic=custom --anthropic-url={base} --anthropic-header='x-api-key: -' --fireworks=disabled --attach auto:all"
            ),
            &format!("{ANTHROPIC_VALUE}\n{OPENAI_TOKEN}\n"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !body.contains(OPENAI_TOKEN) && !body.contains(ANTHROPIC_VALUE),
        "{body}"
    );

    // Shown by hint only, in text and JSON.
    let shown = s.ok("integrations show local").await;
    assert!(
        shown.contains(&format!(
            "custom endpoint {base}/v1, bearer token set (…6789)"
        )),
        "{shown}"
    );
    assert!(shown.contains("header x-api-key set (…3210)"), "{shown}");
    let view = s.json("integrations show local").await;
    assert_eq!(view["providers"]["openai"]["source"], "custom");
    assert_eq!(view["providers"]["openai"]["auth"], "bearer");
    assert_eq!(view["providers"]["anthropic"]["header"], "x-api-key");
    assert!(!view.to_string().contains(OPENAI_TOKEN));

    // `integrations test` lists the endpoint's models with its credential.
    let tested = s.ok("integrations test local --provider openai").await;
    assert!(
        tested.contains("openai: ok:") && tested.contains("models"),
        "{tested}"
    );
    let listed = mock.last().unwrap();
    assert_eq!(listed.path, "/v1/models");
    assert_eq!(
        listed.header("authorization"),
        Some(format!("Bearer {OPENAI_TOKEN}").as_str())
    );

    let before = usage_of(&s.json("usage").await);
    mock.clear();
    let vm = s.vm_client(VM.parse().unwrap(), &[HOST]);
    // OpenAI family, streaming: the client's own credential never arrives.
    let r = vm
        .post(format!("{}/v1/chat/completions", s.data_url(HOST)))
        .header("authorization", "Bearer vm-own-credential")
        .header("x-api-key", "vm-own-key")
        .json(&json!({"model": "gpt-5.5", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");
    let got = mock.last().unwrap();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {OPENAI_TOKEN}").as_str())
    );
    assert_eq!(got.header("x-api-key"), None);
    assert_eq!(
        got.header("host"),
        Some(format!("models.test:{}", front.addr.port()).as_str())
    );

    // OpenAI family, not streaming.
    let r = vm
        .post(format!("{}/v1/chat/completions", s.data_url(HOST)))
        .json(&json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["object"],
        "chat.completion"
    );

    // Anthropic family: the custom header, `anthropic-version` defaulted.
    let r = vm
        .post(format!("{}/v1/messages", s.data_url(HOST)))
        .header("x-api-key", "vm-own-key")
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 16, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("message_stop"));
    let got = mock.last().unwrap();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some(ANTHROPIC_VALUE));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.header("authorization"), None);

    // The model list is the endpoints', marked with their providers.
    let models: Value = vm
        .get(format!("{}/v1/models", s.data_url(HOST)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.iter().any(|id| id.contains("gpt-5.5")), "{models}");
    assert!(mock.requests().iter().any(
        |r| r.path.starts_with("/v1/models") && r.header("x-api-key") == Some(ANTHROPIC_VALUE)
    ));

    // Recorded like an API key: counted, not debited.
    let after = usage_of(&s.json("usage").await);
    assert!(after.0 >= before.0 + 3, "{before:?} {after:?}");
    assert_eq!(
        after.1, before.1,
        "a custom endpoint's usage is not debited"
    );

    // Moving the endpoint elsewhere needs its credential again.
    let (status, body) = s
        .run("integrations edit local --openai=custom --openai-url=https://other.test/v1")
        .await;
    assert_ne!(status, StatusCode::OK);
    assert!(body.contains("give its credential again"), "{body}");
    // The same origin keeps it.
    s.ok(&format!(
        "integrations edit local --openai=custom --openai-url={base}/openai/v1"
    ))
    .await;
    assert!(s
        .ok("integrations show local")
        .await
        .contains("bearer token set (…6789)"));
    s.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_redirects_is_not_followed() {
    let mock = MockUpstream::start().await.unwrap();
    let front = tls_front(None, &["redirect.test"]).await;
    let dirs = Dirs::new();
    let resolver = Table::with(&[("redirect.test", &[&["127.0.0.1"]])]);
    let s = server(&mock, &dirs, resolver, true, Some(&front)).await;
    s.ok(&format!(
        "integrations add llm --name local --openai=custom --openai-url=https://redirect.test:{}/v1 --attach auto:all",
        front.addr.port()
    ))
    .await;
    let vm = s.vm_client(VM.parse().unwrap(), &[HOST]);
    let r = chat(&vm, &s).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("redirect") && body.contains("does not follow"),
        "{body}"
    );
    assert!(!body.contains("169.254.169.254"), "{body}");
    let tested = s.run("integrations test local --provider openai").await.1;
    assert!(tested.contains("redirect"), "{tested}");
    s.stop().await;
}

#[tokio::test]
async fn endpoints_reaching_the_platform_network_are_refused_by_rule() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let resolver = Table::with(&[
        ("public.test", &[&["93.184.216.34"]]),
        ("loopback.test", &[&["127.0.0.1"]]),
        ("mixed.test", &[&["93.184.216.34", "10.1.2.3"]]),
        ("metadata.test", &[&["::ffff:169.254.169.254"]]),
        ("localhost", &[&["127.0.0.1", "::1"]]),
        // Public when configured, loopback when connected to.
        ("rebind.test", &[&["93.184.216.34"], &["127.0.0.1"]]),
    ]);
    let s = server(&mock, &dirs, resolver, false, None).await;

    for (url, rule) in [
        ("https://127.0.0.1/v1", "loopback"),
        ("https://localhost/v1", "loopback"),
        ("https://[::1]:8443/v1", "loopback"),
        ("https://10.0.0.5/v1", "private"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://[::ffff:7f00:1]/v1", "loopback"),
        ("https://[fd00::1]/v1", "unique-local"),
        (
            "https://loopback.test/v1",
            "resolves to 127.0.0.1, which is loopback",
        ),
        (
            "https://mixed.test/v1",
            "resolves to 10.1.2.3, which is private",
        ),
        ("https://metadata.test/v1", "link-local"),
        ("http://public.test/v1", "plain http"),
        ("https://nowhere.test/v1", "does not resolve"),
    ] {
        let (status, body) = s
            .run(&format!(
                "integrations add llm --name probe --openai=custom --openai-url={url}"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert!(body.contains(rule), "{url}: {body}");
        assert!(
            body.contains("allow_private_endpoints") || rule == "does not resolve",
            "{url}: {body}"
        );
    }
    assert!(!s.ok("integrations list").await.contains("probe"));

    // Configured while it resolved to a public address; at connection it
    // resolves to loopback, and the connection is refused by the same rule.
    s.ok("integrations add llm --name local --openai=custom --openai-url=https://rebind.test/v1 --attach auto:all")
        .await;
    let before = mock.count();
    let vm = s.vm_client(VM.parse().unwrap(), &[HOST]);
    let r = chat(&vm, &s).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("rebind.test resolves to 127.0.0.1, which is loopback"),
        "{body}"
    );
    assert_eq!(mock.count(), before, "nothing reached a local service");
    s.stop().await;
}

#[tokio::test]
async fn allowing_private_endpoints_never_allows_the_gateway_itself() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    // Public when configured, the gateway's own address when connected to.
    let resolver = Table::with(&[("self.test", &[&["93.184.216.34"], &["127.0.0.1"]])]);
    let s = server(&mock, &dirs, resolver, true, None).await;
    let own = s.data;
    // Plain http and loopback are allowed here; the data plane's own port is not.
    let (status, body) = s
        .run(&format!(
            "integrations add llm --name local --openai=custom --openai-url=http://{own}/v1"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("is this gateway itself"), "{body}");
    s.ok(&format!(
        "integrations add llm --name local --openai=custom --openai-url=http://self.test:{}/v1 --attach auto:all",
        own.port()
    ))
    .await;
    let vm = s.vm_client(VM.parse().unwrap(), &[HOST]);
    let r = chat(&vm, &s).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("is this gateway itself"));
    // The mock itself, on loopback over plain http, is reachable.
    s.ok(&format!(
        "integrations edit local --openai=custom --openai-url={}/v1",
        mock.url()
    ))
    .await;
    let r = chat(&vm, &s).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        mock.last().unwrap().header("authorization"),
        None,
        "no authentication configured, none sent"
    );
    s.stop().await;
}

#[tokio::test]
async fn team_integrations_may_use_a_custom_endpoint() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = server(&mock, &dirs, Table::with(&[]), true, None).await;
    s.team("core", &["owner@localhost"]).await;
    let (status, body) = s
        .with_stdin(
            &format!(
                "integrations add llm --name shared --team core --fireworks=custom --fireworks-url={}/inference --fireworks-key=- --attach auto:all",
                mock.url()
            ),
            "team-endpoint-token-000111",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view = s.json("integrations show shared --team core").await;
    assert_eq!(view["providers"]["fireworks"]["source"], "custom");
    assert!(!view.to_string().contains("team-endpoint-token"));
    s.stop().await;
}

/// A removed key's id is never another key's: the next key stored (here
/// a custom endpoint's token, after an API key was used and removed)
/// reaches its endpoint, not the removed one.
#[tokio::test]
async fn a_removed_key_never_reaches_the_next_endpoint_stored() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = server(&mock, &dirs, Table::with(&[]), true, None).await;
    let vm = s.vm_client(VM.parse().unwrap(), &[HOST]);
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name local --openai=byok --openai-key=- --attach auto:all",
            "sk-removed-key-0000000001",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(chat(&vm, &s).await.status(), StatusCode::OK);
    assert_eq!(
        mock.last().unwrap().header("authorization"),
        Some("Bearer sk-removed-key-0000000001")
    );
    s.ok("integrations remove local").await;
    let (status, body) = s
        .with_stdin(
            &format!(
                "integrations add llm --name local --openai=custom --openai-url={}/v1 --openai-key=- --attach auto:all",
                mock.url()
            ),
            "endpoint-token-0000000002",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(chat(&vm, &s).await.status(), StatusCode::OK);
    assert_eq!(
        mock.last().unwrap().header("authorization"),
        Some("Bearer endpoint-token-0000000002")
    );
    s.stop().await;
}
