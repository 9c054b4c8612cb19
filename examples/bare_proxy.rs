//! The gateway's HTTP stack with none of the gateway's work: a reverse
//! proxy built from the same parts (tokio's multi-thread runtime, hyper's
//! HTTP/1.1 and HTTP/2 server through hyper-util's `auto` builder, and
//! hyper-util's pooled client), which forwards every request to one
//! upstream and relays its answer as it comes. No routing, credential,
//! body reading, metering or ledger. The benchmark's `--floor` runs it
//! beside the gateway and nginx: what it costs is the floor this stack
//! sets, and the gateway's own work is the difference.
//!
//! `target/release/examples/bare_proxy UPSTREAM` (`127.0.0.1:PORT`)
//! listens on a free loopback port and prints it (`listening on ADDR`);
//! `LLM_INTEGRATION_WORKER_THREADS` sets the worker threads, as for the
//! server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

fn main() -> ExitCode {
    let Some(upstream) = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        eprintln!("usage: bare_proxy UPSTREAM (an address such as 127.0.0.1:7800)");
        return ExitCode::FAILURE;
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("LLM_INTEGRATION_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(upstream: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let server = Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, server) = (client.clone(), server.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                async move { Ok::<_, Infallible>(forward(&client, upstream, req).await) }
            });
            let _ = server
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `req` sent to `upstream` on a pooled connection; its answer, or a 502.
async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<http_body_util::Either<Incoming, String>> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse::<Uri>() else {
        return bad_gateway("the request target cannot be forwarded");
    };
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    match client.request(req).await {
        Ok(answer) => answer.map(http_body_util::Either::Left),
        Err(e) => bad_gateway(&format!("the upstream failed: {e}")),
    }
}

fn bad_gateway(message: &str) -> Response<http_body_util::Either<Incoming, String>> {
    let mut r = Response::new(http_body_util::Either::Right(format!("{message}\n")));
    *r.status_mut() = http::StatusCode::BAD_GATEWAY;
    r
}
