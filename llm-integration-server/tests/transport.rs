//! How the data plane accepts connections and tells VMs apart: HTTP/2
//! cleartext, TLS, the PROXY protocol and a forwarding header from trusted
//! proxies only; and a client that goes away cancels the upstream request.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{AdminCommand, VmAddArgs, VmsCommand};
use llm_integration_server::testing::{Dirs, Server};
use reqwest::StatusCode;
use serde_json::json;

/// Registers VM `second` at 127.0.0.2, tagged `llm`, with an integration
/// only it can reach (`only2`).
async fn second_vm(s: &Server) {
    s.admin(AdminCommand::Vms(VmsCommand::Add(VmAddArgs {
        name: "second".parse().unwrap(),
        owner: "owner@localhost".into(),
        team: None,
        addresses: vec!["127.0.0.2".parse().unwrap()],
        tags: vec!["llm".parse().unwrap()],
        comment: String::new(),
        port: None,
    })))
    .await;
    s.ok("integrations add llm --name only2 --attach vm:second")
        .await;
}

fn raw(addr: std::net::SocketAddr, bytes: Vec<u8>) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn models_request(host: &str) -> Vec<u8> {
    format!("GET /v1/models HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_and_forwarding_header_from_trusted_proxies_only() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    // 127.0.0.1 is a trusted proxy speaking the PROXY protocol.
    let s = Server::start_with(&dirs, &mock.url(), |c| {
        c.trusted.addresses = vec!["127.0.0.1".parse().unwrap()];
        c.proxy_protocol = true;
    })
    .await;
    second_vm(&s).await;
    let addr = s.data;
    // v1: the original client is 127.0.0.2.
    let mut v1 = b"PROXY TCP4 127.0.0.2 127.0.0.1 50000 80\r\n".to_vec();
    v1.extend(models_request("only2.int.exe.xyz"));
    let answer = tokio::task::spawn_blocking(move || raw(addr, v1))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // v2, binary.
    let mut v2 = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00,
        0x0C,
    ];
    v2.extend([127, 0, 0, 2, 127, 0, 0, 1, 0xC3, 0x50, 0x00, 0x50]);
    v2.extend(models_request("only2.int.exe.xyz"));
    let answer = tokio::task::spawn_blocking(move || raw(addr, v2))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Without the header, a trusted proxy's connection is refused outright.
    let answer = tokio::task::spawn_blocking(move || raw(addr, models_request("llm.int.exe.xyz")))
        .await
        .unwrap();
    assert!(answer.is_empty(), "{answer}");
    // From an untrusted peer a PROXY header is not believed (it is not HTTP at all).
    let c = s.vm_client(
        "127.0.0.2".parse::<IpAddr>().unwrap(),
        &["only2.int.exe.xyz"],
    );
    let r = c
        .get(format!("{}/v1/models", s.data_url("only2.int.exe.xyz")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a direct VM still works");
    let mut forged = b"PROXY TCP4 127.0.0.2 127.0.0.1 50000 80\r\n".to_vec();
    forged.extend(models_request("only2.int.exe.xyz"));
    let answer = tokio::task::spawn_blocking(move || {
        // Connect from 127.0.0.3 (untrusted).
        let mut stream = connect_from("127.0.0.3", addr);
        stream.write_all(&forged).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    s.stop().await;

    // A forwarding header, believed from the trusted proxy only.
    let dirs = Dirs::new();
    let s = Server::start_with(&dirs, &mock.url(), |c| {
        c.trusted.addresses = vec!["127.0.0.1".parse().unwrap()];
        c.trusted.header = Some(http::HeaderName::from_static("x-forwarded-for"));
    })
    .await;
    second_vm(&s).await;
    let via_proxy = s.vm_client(
        "127.0.0.1".parse::<IpAddr>().unwrap(),
        &["only2.int.exe.xyz"],
    );
    let r = via_proxy
        .get(format!("{}/v1/models", s.data_url("only2.int.exe.xyz")))
        .header("x-forwarded-for", "10.9.9.9, 127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the last entry is the client the proxy saw"
    );
    let untrusted = s.vm_client(
        "127.0.0.3".parse::<IpAddr>().unwrap(),
        &["only2.int.exe.xyz"],
    );
    let r = untrusted
        .get(format!("{}/v1/models", s.data_url("only2.int.exe.xyz")))
        .header("x-forwarded-for", "127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "an untrusted peer's header is ignored"
    );
    // The header never reaches the upstream.
    via_proxy
        .post(format!(
            "{}/v1/chat/completions",
            s.data_url("only2.int.exe.xyz")
        ))
        .header("x-forwarded-for", "127.0.0.2")
        .json(&json!({"model": "gpt-5.5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.last().unwrap().header("x-forwarded-for"), None);
    s.stop().await;
}

/// A blocking TCP connection from a chosen local address.
fn connect_from(local: &str, to: std::net::SocketAddr) -> TcpStream {
    // std has no bind-before-connect; tokio's TcpSocket does, so use a small runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    });
    let std_stream = stream.into_std().unwrap();
    std_stream.set_nonblocking(false).unwrap();
    std_stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std_stream
}

#[tokio::test]
async fn http2_cleartext_and_tls() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("llm.int.exe.xyz", s.data)
        .build()
        .unwrap();
    let r = h2
        .post(format!("{}/v1/messages", s.data_url("llm.int.exe.xyz")))
        .json(&json!({"model": "claude-x", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("message_stop"));
    s.stop().await;

    // TLS with a certificate for *.int.exe.xyz.
    let certified = rcgen::generate_simple_self_signed(vec!["*.int.exe.xyz".to_owned()]).unwrap();
    let cert_path = dirs.keys.path().join("cert.pem");
    let key_path = dirs.keys.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let dirs2 = Dirs::new();
    let s = Server::start_with(&dirs2, &mock.url(), |c| {
        c.tls = Some((cert_path.clone(), key_path.clone()))
    })
    .await;
    let tls = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("llm.int.exe.xyz", s.data)
        .build()
        .unwrap();
    let r = tls
        .post(format!(
            "https://llm.int.exe.xyz:{}/v1/chat/completions",
            s.data.port()
        ))
        .json(&json!({"model": "gpt-5.5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), http::Version::HTTP_2, "ALPN offers h2");
    // Plain HTTP on a TLS port gets nothing.
    let plain = reqwest::Client::builder()
        .resolve("llm.int.exe.xyz", s.data)
        .build()
        .unwrap();
    assert!(plain
        .get(format!("{}/v1/models", s.data_url("llm.int.exe.xyz")))
        .send()
        .await
        .is_err());
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let c = s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &["llm.int.exe.xyz"]);
    let mut response = c
        .post(format!("{}/v1/messages", s.data_url("llm.int.exe.xyz")))
        .header("x-mock-delay-ms", "100")
        .header("x-mock-chunks", "100")
        .json(&json!({"model": "claude-x", "stream": true}))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    drop(response);
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while mock.abandoned_streams() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream stream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}
