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
pub mod exec_http;
pub mod executor;
pub mod listen;
pub mod live;
pub mod metering;
pub mod provider_check;
pub mod server;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upstreams;
pub mod usage_report;

pub use server::{App, Bootstrapped, StartError};
