//! Error bodies in the two dialects clients understand.
//!
//! Anthropic: `{"type":"error","error":{"type":"not_found_error","message":"…"}}`.
//! OpenAI: `{"error":{"message":"…","type":"invalid_request_error","param":null,"code":"…"}}`.
//! Errors from upstreams are never rewrapped; these are for errors the
//! gateway itself decides.

use http::StatusCode;
use serde::Serialize;

use crate::provider::Dialect;

/// The class of an error the gateway generates, which decides its status
/// and its `type` in each dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// 400: the request is malformed.
    InvalidRequest,
    /// 401: the caller could not be authenticated.
    Authentication,
    /// 403: the caller may not do this.
    Permission,
    /// 404: nothing here (never reveals whether it exists elsewhere).
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 408: the client took too long to send its request.
    RequestTimeout,
    /// 413: the body is over the limit.
    TooLarge,
    /// 429: the owner's allocation is exhausted, or a rate limit.
    RateLimited,
    /// 500: a fault of the gateway.
    Internal,
    /// 502: the upstream failed.
    BadGateway,
    /// 503: the gateway cannot serve right now.
    Unavailable,
    /// 504: the upstream did not answer in time.
    Timeout,
}

impl ErrorClass {
    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorClass::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorClass::Authentication => StatusCode::UNAUTHORIZED,
            ErrorClass::Permission => StatusCode::FORBIDDEN,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorClass::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorClass::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `error.type` in `dialect`.
    pub const fn type_name(self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Anthropic => match self {
                ErrorClass::InvalidRequest
                | ErrorClass::MethodNotAllowed
                | ErrorClass::RequestTimeout => "invalid_request_error",
                ErrorClass::Authentication => "authentication_error",
                ErrorClass::Permission => "permission_error",
                ErrorClass::NotFound => "not_found_error",
                ErrorClass::TooLarge => "request_too_large",
                ErrorClass::RateLimited => "rate_limit_error",
                ErrorClass::Internal | ErrorClass::BadGateway => "api_error",
                ErrorClass::Unavailable => "overloaded_error",
                ErrorClass::Timeout => "timeout_error",
            },
            Dialect::OpenAi => match self {
                ErrorClass::InvalidRequest
                | ErrorClass::NotFound
                | ErrorClass::MethodNotAllowed
                | ErrorClass::RequestTimeout
                | ErrorClass::TooLarge => "invalid_request_error",
                ErrorClass::Authentication => "authentication_error",
                ErrorClass::Permission => "permission_error",
                ErrorClass::RateLimited => "rate_limit_error",
                ErrorClass::Internal
                | ErrorClass::BadGateway
                | ErrorClass::Unavailable
                | ErrorClass::Timeout => "server_error",
            },
        }
    }
}

/// The JSON body of a gateway error. `code` is the machine-readable reason
/// (OpenAI's `error.code`; Anthropic's shape has no such field).
///
/// ```
/// use llm_integration_core::wire::errors::{error_body, ErrorClass};
/// use llm_integration_core::Dialect;
///
/// let body = error_body(Dialect::Anthropic, ErrorClass::NotFound, "integration_not_found", "nothing here");
/// assert_eq!(body, r#"{"type":"error","error":{"type":"not_found_error","message":"nothing here"}}"#);
/// ```
pub fn error_body(dialect: Dialect, class: ErrorClass, code: &str, message: &str) -> String {
    #[derive(Serialize)]
    struct AnthropicError<'a> {
        r#type: &'static str,
        error: AnthropicDetail<'a>,
    }
    #[derive(Serialize)]
    struct AnthropicDetail<'a> {
        r#type: &'static str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct OpenAiError<'a> {
        error: OpenAiDetail<'a>,
    }
    #[derive(Serialize)]
    struct OpenAiDetail<'a> {
        message: &'a str,
        r#type: &'static str,
        param: Option<&'a str>,
        code: &'a str,
    }
    let type_name = class.type_name(dialect);
    let encoded = match dialect {
        Dialect::Anthropic => serde_json::to_string(&AnthropicError {
            r#type: "error",
            error: AnthropicDetail {
                r#type: type_name,
                message,
            },
        }),
        Dialect::OpenAi => serde_json::to_string(&OpenAiError {
            error: OpenAiDetail {
                message,
                r#type: type_name,
                param: None,
                code,
            },
        }),
    };
    // Serializing borrowed strings into a String cannot fail.
    encoded.unwrap_or_else(|_| String::from(r#"{"error":{"message":"internal error"}}"#))
}

/// One SSE `error` event in `dialect`, for a failure in the middle of a
/// relayed stream (the head, `200`, is already sent): `event: error`, then
/// the error body as its data.
pub fn sse_error_event(dialect: Dialect, message: &str) -> String {
    let body = error_body(
        dialect,
        ErrorClass::BadGateway,
        "upstream_stream_error",
        message,
    );
    format!("event: error\ndata: {body}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let body = error_body(
            Dialect::OpenAi,
            ErrorClass::RateLimited,
            "allocation_exhausted",
            "no credit",
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "allocation_exhausted");
        assert_eq!(v["error"]["message"], "no credit");
        assert_eq!(
            ErrorClass::RateLimited.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn messages_are_escaped() {
        let body = error_body(
            Dialect::Anthropic,
            ErrorClass::InvalidRequest,
            "x",
            "a \"quoted\"\r\nline",
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["message"], "a \"quoted\"\r\nline");
        assert!(!body.contains('\n'));
    }
}
