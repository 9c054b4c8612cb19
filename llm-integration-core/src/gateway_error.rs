//! One typed error for every answer the data plane makes itself: what
//! happened, in which dialect to say it, who is to blame and whether a
//! retry can help (the way a production proxy's errors carry blame and
//! retryability, so clients and operators can act on them).
//!
//! A server turns a [`GatewayError`] into a response in exactly one place:
//! status [`GatewayError::status`], body [`GatewayError::body`] (the
//! route's dialect, see [`crate::wire::errors`]), and
//! `x-should-retry: false` when [`GatewayError::retryable`] is false, so
//! the official SDKs stop at once on a refusal that retrying cannot cure.

use http::StatusCode;

use crate::body::BodyError;
use crate::provider::Dialect;
use crate::router::Refused;
use crate::seams::CredentialError;
use crate::wire::errors::{error_body, ErrorClass};

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blame {
    /// The request (the VM's client): fix the request.
    Client,
    /// The provider: it failed, timed out or answered garbage.
    Upstream,
    /// The gateway or its configuration (a missing key, the store).
    Gateway,
}

impl Blame {
    /// The lowercase name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Blame::Client => "client",
            Blame::Upstream => "upstream",
            Blame::Gateway => "gateway",
        }
    }
}

/// An answer the gateway generates instead of the provider's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct GatewayError {
    /// The dialect of the route (Anthropic's or OpenAI's error shape).
    pub dialect: Dialect,
    /// The class, which decides the status and the error `type`.
    pub class: ErrorClass,
    /// The machine-readable reason (OpenAI's `error.code`).
    pub code: &'static str,
    /// What a person reads: the problem and the fix.
    pub message: String,
    /// Who caused it.
    pub blame: Blame,
    /// Whether the same request may succeed if retried.
    pub retryable: bool,
    /// A status other than the class's (426 for a WebSocket upgrade).
    pub status_override: Option<StatusCode>,
}

impl GatewayError {
    /// An error of `class`, with the blame and retryability the class
    /// implies: 4xx are the client's and final; 502 and 504 the
    /// upstream's and retryable; 503 the gateway's and retryable; 500 the
    /// gateway's and final.
    pub fn new(
        dialect: Dialect,
        class: ErrorClass,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let (blame, retryable) = match class {
            ErrorClass::BadGateway | ErrorClass::Timeout => (Blame::Upstream, true),
            ErrorClass::Unavailable => (Blame::Gateway, true),
            ErrorClass::Internal => (Blame::Gateway, false),
            _ => (Blame::Client, false),
        };
        GatewayError {
            dialect,
            class,
            code,
            message: message.into(),
            blame,
            retryable,
            status_override: None,
        }
    }

    /// The same error with another blame.
    #[must_use]
    pub fn blamed_on(mut self, blame: Blame) -> Self {
        self.blame = blame;
        self
    }

    /// The same error, retryable or not.
    #[must_use]
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The same error answered with `status` instead of the class's.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status_override = Some(status);
        self
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        self.status_override.unwrap_or_else(|| self.class.status())
    }

    /// The JSON body, in the route's dialect.
    pub fn body(&self) -> String {
        error_body(self.dialect, self.class, self.code, &self.message)
    }

    /// A request body over the limit of `limit` bytes (413).
    pub fn body_too_large(dialect: Dialect, limit: usize) -> Self {
        Self::new(
            dialect,
            ErrorClass::TooLarge,
            "request_too_large",
            format!("the request body is over the gateway's limit of {limit} bytes"),
        )
    }

    /// A request body that cannot be read as the route needs (400).
    pub fn invalid_body(dialect: Dialect, error: &BodyError) -> Self {
        Self::new(
            dialect,
            ErrorClass::InvalidRequest,
            "invalid_json",
            error.to_string(),
        )
    }
}

impl GatewayError {
    /// The answer when the source's credential cannot be produced: 503 for
    /// a key the operator did not configure (final) or a transient failure
    /// (retryable); 403 when the owner must act (a ChatGPT login to renew).
    pub fn credential(dialect: Dialect, error: &CredentialError) -> Self {
        match error {
            CredentialError::NotConfigured(what) => GatewayError::new(
                dialect,
                ErrorClass::Unavailable,
                "credential_not_configured",
                format!("no credential is configured for {what}"),
            )
            .retryable(false),
            CredentialError::NeedsOwner(message) => GatewayError::new(
                dialect,
                ErrorClass::Permission,
                "credential_needs_owner",
                message.clone(),
            )
            .blamed_on(Blame::Gateway),
            _ => GatewayError::new(
                dialect,
                ErrorClass::Unavailable,
                "credential_unavailable",
                "the credential is temporarily unavailable; retry",
            ),
        }
    }

    /// The answer to a WebSocket upgrade (Codex's Responses over
    /// WebSocket): 426, which makes Codex fall back to HTTP at once.
    pub fn websocket(dialect: Dialect) -> Self {
        GatewayError::new(
            dialect,
            ErrorClass::InvalidRequest,
            "websocket_not_supported",
            "WebSocket is not served by this gateway; use HTTP (POST /v1/responses with stream: true)",
        )
        .with_status(StatusCode::UPGRADE_REQUIRED)
    }
}

impl From<Refused> for GatewayError {
    fn from(r: Refused) -> Self {
        GatewayError::new(
            r.dialect,
            r.refusal.class(),
            r.refusal.code(),
            r.refusal.message(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Refusal;

    #[test]
    fn blame_and_retry_follow_the_class() {
        let e = GatewayError::new(Dialect::OpenAi, ErrorClass::BadGateway, "x", "m");
        assert_eq!((e.blame, e.retryable), (Blame::Upstream, true));
        let e = GatewayError::new(Dialect::OpenAi, ErrorClass::RateLimited, "x", "m");
        assert_eq!((e.blame, e.retryable), (Blame::Client, false));
        let e = GatewayError::from(Refused {
            refusal: Refusal::MissingModel,
            dialect: Dialect::Anthropic,
        });
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.body().starts_with(r#"{"type":"error""#));
        let e = e.with_status(StatusCode::UPGRADE_REQUIRED);
        assert_eq!(e.status().as_u16(), 426);
    }
}
