//! The crate's error type: what can go wrong when building domain values
//! from untrusted text, and what the seams report.
//!
//! Routing refusals are not errors of this kind: they are answers to a
//! request and live in [`crate::router::Refusal`].

use crate::provider::Provider;

/// Everything the core can refuse outside routing.
///
/// Messages name the problem and say the fix, because they reach people
/// through every door of the command language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name that is not a valid DNS-label style name.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What kind of name ("integration name", "tag", …).
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why, and what a valid one looks like.
        reason: String,
    },
    /// An attachment spec that is not `vm:NAME`, `tag:NAME` or `auto:all`.
    #[error("invalid attachment {value:?}: {reason}; use vm:NAME, tag:NAME or auto:all")]
    InvalidAttachment {
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An unknown provider name.
    #[error("unknown provider {0:?}; use anthropic, openai or fireworks")]
    UnknownProvider(String),
    /// An unknown provider source.
    #[error("unknown source {0:?}; use gateway, byok, chatgpt, custom or disabled")]
    UnknownSource(String),
    /// A source that the provider cannot have.
    #[error("provider {provider} cannot use source {source_name}: {reason}")]
    SourceNotAllowed {
        /// The provider concerned.
        provider: Provider,
        /// The refused source.
        source_name: &'static str,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// A custom endpoint URL that cannot be used.
    #[error("invalid endpoint URL {value:?}: {reason}")]
    InvalidEndpoint {
        /// The rejected value (cut at 200 characters).
        value: String,
        /// Why, and what to give instead.
        reason: String,
    },
    /// A custom header for an endpoint that cannot be used.
    #[error("invalid endpoint header: {0}")]
    InvalidEndpointHeader(String),
    /// An unknown reflection field.
    #[error("unknown reflection field {0:?}; use all or a comma-separated list of email, integrations, tags, comment, default_port")]
    UnknownReflectionField(String),
}
