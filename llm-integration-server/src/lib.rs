//! The LLM integration gateway server: storage, the command executor, the
//! admin door (`POST /exec`) and, on top of the core's routing engine, the
//! data plane.
//!
//! Binaries stay thin: `main.rs` parses flags into a [`config::Config`],
//! binds listeners and calls [`server::App::serve`]; tests and embedders
//! call the same functions on `127.0.0.1:0`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod chatgpt;
pub mod config;
pub mod crypto;
pub mod dataplane;
pub mod endpoints;
pub mod exec_http;
pub mod executor;
pub mod listen;
pub mod live;
pub mod log_throttle;
pub mod metering;
pub mod migrate;
pub mod provider_check;
pub mod server;
pub mod ssh;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upstreams;
pub mod usage_report;
pub mod web;

pub use server::{App, Bootstrapped, StartError};

/// An error and its causes as one line, `outer: inner: innermost`, each
/// text once (HTTP clients repeat their cause in their own message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        current = err.source();
    }
    line
}
