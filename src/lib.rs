//! `llm-integration`: an LLM gateway for sandboxed machines.
//!
//! This package is a facade: it re-exports [`llm_integration_core`], the
//! runtime-agnostic core (domain model, routing engine, command language).
//! The server and the CLI live in their own crates
//! (`llm-integration-server`, `llm-integration-cli`).

pub use llm_integration_core::*;
