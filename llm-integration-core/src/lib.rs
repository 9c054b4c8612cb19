//! The runtime-agnostic core of the LLM integration gateway.
//!
//! This crate holds the whole model of the product and none of its IO:
//!
//! - the domain ([`Provider`], [`Source`], [`IntegrationConfig`],
//!   [`AttachmentSpec`], [`Vm`], …) and the traits that describe their
//!   behaviour ([`Integration`], [`ProviderSource`], [`Attachment`],
//!   [`Router`]);
//! - the configuration [`Snapshot`]: an immutable, indexed view of every
//!   integration and VM, built from store records and swapped atomically by
//!   whoever serves traffic;
//! - the routing engine: a pure, synchronous function from
//!   (snapshot, caller VM, `Host`, method, path, optional model) to a
//!   [`Decision`] or a typed [`Refused`] that knows its error dialect;
//! - the command language ([`command`]): one grammar for every door (CLI,
//!   `POST /exec`, SSH, the web page), parsed and validated into typed
//!   commands;
//! - the seams a server plugs into ([`seams`]): configuration store,
//!   credential resolver, caller resolver, usage sink.
//!
//! *Architecture invariant*: nothing here knows about sockets, HTTP servers,
//! async runtimes or databases. CI fails if `cargo tree -p
//! llm-integration-core -e normal` shows tokio, hyper, reqwest or any other
//! runtime or IO crate.
//!
//! ```
//! use llm_integration_core::{
//!     ConfigRecords, IntegrationConfig, IntegrationId, Owner, RouteRequest, Snapshot,
//!     SnapshotOptions, User, UserId, Vm, VmId, Decision, Provider,
//! };
//!
//! let alice = UserId(1);
//!
//! let records = ConfigRecords {
//!     users: vec![User::new(alice, "alice@example.com")],
//!     vms: vec![Vm::new(VmId(10), "devbox".parse()?, alice)],
//!     integrations: vec![IntegrationConfig::default_llm(IntegrationId(1), Owner::User(alice))],
//!     ..ConfigRecords::default()
//! };
//! let snapshot = Snapshot::build(records, SnapshotOptions::default());
//! let request = RouteRequest::new(Some(VmId(10)), "llm.int.exe.xyz", &http::Method::POST, "/v1/messages");
//! let decision = snapshot.route_with_model(&request, Some("claude-sonnet-4-6"))?;
//! match decision {
//!     Decision::Forward(forward) => {
//!         assert_eq!(forward.provider, Provider::Anthropic);
//!         assert_eq!(forward.upstream_path, "/v1/messages");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

/// The crate's README, compiled as a doctest so its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The model and the routing engine: every public item is at the crate root.
mod attachment;
mod domain;
mod error;
mod gateway_error;
mod host;
mod integration;
mod model_id;
mod names;
mod provider;
mod router;
mod secret;
mod snapshot;
mod source;

// The data plane's pure steps, and the seams: used by their module path.
pub mod answer;
pub mod body;
pub mod endpoint;
pub mod headers;
pub mod json_scan;
pub mod model_list;
pub mod path;
pub mod redact;
pub mod reflection;
pub mod relay;
pub mod seams;
pub mod sse;
pub mod surface;
pub mod translate;
pub mod upstream;
pub mod usage;
pub mod wire;

/// The command language (feature `command`, on by default).
#[cfg(feature = "command")]
pub mod command;
/// Entry points of the fuzz targets (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
/// Images and documents sized as the providers bill them (feature `pricing`).
#[cfg(feature = "pricing")]
pub mod media;
/// The price table and request estimates (feature `pricing`, on by default).
#[cfg(feature = "pricing")]
pub mod pricing;

pub use attachment::{Attachment, AttachmentSpec};
pub use domain::{
    ConfigRecords, CredentialId, IntegrationConfig, IntegrationId, IntegrationKind, LlmSettings,
    Owner, ReflectionField, ReflectionFields, ReflectionSettings, Team, TeamId, User, UserId, Vm,
    VmId,
};
pub use error::Error;
pub use gateway_error::{Blame, GatewayError};
pub use host::{effective_host, hostname, parse_host, request_host, HostError, HostTarget, Scope};
pub use integration::Integration;
pub use model_id::{
    provider_by_prefix, route_model, route_model_for, CatalogScope, ModelCatalog, ModelError,
    ModelLookup, ModelRoute,
};
pub use names::{AccountName, IntegrationName, TagName, TeamName, VmName};
pub use provider::{Dialect, PerProvider, Provider, ProviderSet};
pub use router::{
    dialect_for, Decision, Forward, ModelListing, ModelsShape, PendingModel, Plan, ReflectionPath,
    ReflectionRoute, Refusal, Refused, RouteRequest, Router, SnapshotRouter, TokenCount,
};
pub use secret::{KeyHint, SecretString};
pub use snapshot::{Snapshot, SnapshotOptions};
pub use source::{
    check_endpoint_header, CredentialRef, EndpointAuth, ProviderSource, Source, SourceKind,
};
