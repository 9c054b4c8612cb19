//! `integrations test`: checks a stored key against its provider's models
//! endpoint, and reports the provider's own words when it refuses.

use std::time::Duration;

use llm_integration_core::{Provider, SecretString};
use secrecy::ExposeSecret;

use crate::upstreams::Upstreams;

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks keys against the providers.
#[derive(Debug, Clone)]
pub struct ProviderCheck {
    client: reqwest::Client,
    upstreams: Upstreams,
}

impl ProviderCheck {
    /// A checker for the configured upstreams.
    pub fn new(upstreams: Upstreams) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("llm-integration/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ProviderCheck { client, upstreams })
    }

    /// `Ok(detail)` if `provider` accepts `key`, `Err(detail)` with the
    /// provider's answer otherwise. Neither ever contains the key.
    pub async fn check(&self, provider: Provider, key: &SecretString) -> Result<String, String> {
        let url = format!(
            "{}{}/v1/models",
            self.upstreams.base(provider).trim_end_matches('/'),
            provider.upstream_prefix()
        );
        let request = self.client.get(&url);
        let request = match provider {
            Provider::Anthropic => request
                .header("x-api-key", key.expose_secret())
                .header("anthropic-version", "2023-06-01"),
            Provider::OpenAi | Provider::Fireworks => request.bearer_auth(key.expose_secret()),
        };
        let redact = |text: String| {
            llm_integration_core::redact::Redactor::new([key.expose_secret()])
                .redact(&text)
                .into_owned()
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    error_chain(&e.without_url())
                };
                return Err(redact(format!("could not reach {url}: {why}")));
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        if status.is_success() {
            let count = parsed
                .as_ref()
                .and_then(|v| v["data"].as_array())
                .map(Vec::len);
            return Ok(match count {
                Some(n) => format!("the key works ({n} models listed)"),
                None => "the key works".to_owned(),
            });
        }
        let message = parsed
            .as_ref()
            .and_then(|v| {
                v["error"]["message"]
                    .as_str()
                    .or_else(|| v["message"].as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        Err(redact(format!(
            "{provider} answered HTTP {}: {message}",
            status.as_u16()
        )))
    }
}
