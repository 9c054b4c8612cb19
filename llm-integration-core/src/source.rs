//! Provider sources: where the credential for one provider of one `llm`
//! integration comes from.

use std::fmt;
use std::str::FromStr;

use crate::domain::CredentialId;
use crate::endpoint::EndpointUrl;
use crate::error::Error;
use crate::names::AccountName;
use crate::provider::Provider;
use crate::secret::KeyHint;

/// The behaviour every provider source has, whatever it is.
///
/// The gateway asks a source three things: may the provider be used at all,
/// is its traffic debited from the owner's allocation, and which credential
/// does the credential resolver have to produce.
pub trait ProviderSource {
    /// The kind, as shown and typed (`gateway`, `byok`, `chatgpt`, `custom`, `disabled`).
    fn kind(&self) -> SourceKind;
    /// Whether the provider is usable (not `disabled`).
    fn is_enabled(&self) -> bool {
        self.kind() != SourceKind::Disabled
    }
    /// Whether usage is debited from the owner's allocation.
    fn is_metered(&self) -> bool {
        self.kind() == SourceKind::Gateway
    }
    /// The credential to resolve for `provider`, if the source is enabled.
    fn credential(&self, provider: Provider) -> Option<CredentialRef<'_>>;
}

/// The kinds of source, as typed in `--PROVIDER=SRC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The platform's managed credentials, metered against the allocation.
    Gateway,
    /// The owner's own API key ("API Key").
    Byok,
    /// A connected ChatGPT subscription (OpenAI, personal integrations only).
    Chatgpt,
    /// A custom HTTPS endpoint speaking the provider's API family.
    Custom,
    /// The provider is hidden.
    Disabled,
}

impl SourceKind {
    /// The name as typed.
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::Gateway => "gateway",
            SourceKind::Byok => "byok",
            SourceKind::Chatgpt => "chatgpt",
            SourceKind::Custom => "custom",
            SourceKind::Disabled => "disabled",
        }
    }

    /// The name as shown to people ("API Key" for `byok`).
    pub const fn label(self) -> &'static str {
        match self {
            SourceKind::Gateway => "LLM gateway",
            SourceKind::Byok => "API Key",
            SourceKind::Chatgpt => "ChatGPT subscription",
            SourceKind::Custom => "Custom HTTPS endpoint",
            SourceKind::Disabled => "Disabled",
        }
    }

    /// Whether `provider` may use this kind of source at all.
    pub fn check_provider(self, provider: Provider) -> Result<(), Error> {
        if self == SourceKind::Chatgpt && provider != Provider::OpenAi {
            return Err(Error::SourceNotAllowed {
                provider,
                source_name: "chatgpt",
                reason: "a ChatGPT subscription can only be the openai source",
            });
        }
        Ok(())
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "gateway" => Ok(SourceKind::Gateway),
            "byok" => Ok(SourceKind::Byok),
            "chatgpt" => Ok(SourceKind::Chatgpt),
            "custom" => Ok(SourceKind::Custom),
            "disabled" => Ok(SourceKind::Disabled),
            other => Err(Error::UnknownSource(other.to_owned())),
        }
    }
}

/// A configured provider source, with what it needs to find its credential.
///
/// It never holds a key: a `byok` source names the encrypted credential in
/// the store and keeps only its [`KeyHint`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Platform-managed credentials.
    Gateway,
    /// The owner's API key, stored encrypted.
    Byok {
        /// The stored (encrypted) key.
        credential: CredentialId,
        /// What may be shown of it.
        hint: KeyHint,
    },
    /// A connected ChatGPT account of the integration's owner.
    Chatgpt {
        /// The account's local name.
        account: AccountName,
    },
    /// A custom HTTPS endpoint speaking the provider's API family. Usage
    /// is recorded, not debited (like `byok`).
    Custom {
        /// The endpoint's API base.
        url: EndpointUrl,
        /// How requests to it are authenticated.
        auth: EndpointAuth,
    },
    /// The provider is hidden.
    Disabled,
}

/// How a custom endpoint is authenticated. The token or header value is
/// stored sealed, like an API key; only its [`KeyHint`] is kept here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "scheme", rename_all = "lowercase")]
pub enum EndpointAuth {
    /// Nothing is sent.
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer {
        /// The stored (encrypted) token.
        credential: CredentialId,
        /// What may be shown of it.
        hint: KeyHint,
    },
    /// One custom header, `NAME: VALUE`.
    Header {
        /// The header's name, lowercase (a valid HTTP field name, not one
        /// the gateway owns: see [`check_endpoint_header`]).
        name: String,
        /// The stored (encrypted) value.
        credential: CredentialId,
        /// What may be shown of it.
        hint: KeyHint,
    },
}

impl EndpointAuth {
    /// The stored credential, if any.
    pub fn credential(&self) -> Option<CredentialId> {
        match self {
            EndpointAuth::None => None,
            EndpointAuth::Bearer { credential, .. } | EndpointAuth::Header { credential, .. } => {
                Some(*credential)
            }
        }
    }

    /// Points the stored credential at `id` (after the store saved it).
    pub fn set_credential(&mut self, id: CredentialId, new_hint: KeyHint) {
        match self {
            EndpointAuth::None => {}
            EndpointAuth::Bearer { credential, hint }
            | EndpointAuth::Header {
                credential, hint, ..
            } => {
                *credential = id;
                *hint = new_hint;
            }
        }
    }
}

impl fmt::Display for EndpointAuth {
    /// `no authentication`, `bearer token set (…abcd)`, `header x-api-key set (…abcd)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAuth::None => f.write_str("no authentication"),
            EndpointAuth::Bearer { hint, .. } => write!(f, "bearer token {hint}"),
            EndpointAuth::Header { name, hint, .. } => write!(f, "header {name} {hint}"),
        }
    }
}

/// Headers a custom endpoint's credential may not be sent in: those that
/// frame the request or that the gateway sets itself.
const RESERVED_HEADERS: [&str; 19] = [
    "host",
    "expect",
    "accept",
    "accept-encoding",
    "range",
    "user-agent",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "cookie",
    "forwarded",
];

/// Checks a custom endpoint's header name and returns it lowercase.
///
/// # Errors
/// [`Error::InvalidEndpointHeader`] for a name that is not an HTTP field
/// name (RFC 9110 § 5.1: a token), or one that frames the request or that
/// the gateway owns (`Host`, `Content-Length`, `Transfer-Encoding`, …);
/// for `Authorization`, use the bearer form (`--P-key`).
pub fn check_endpoint_header(name: &str) -> Result<String, Error> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 100 || !name.bytes().all(token) {
        return Err(Error::InvalidEndpointHeader(format!(
            "{:?} is not a header name (letters, digits and -; write it as 'Name: value')",
            name.chars().take(100).collect::<String>()
        )));
    }
    let lower = name.to_ascii_lowercase();
    if lower == "authorization" {
        return Err(Error::InvalidEndpointHeader(
            "for Authorization: Bearer, give the token with --PROVIDER-key instead of --PROVIDER-header".into(),
        ));
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-forwarded-") {
        return Err(Error::InvalidEndpointHeader(format!(
            "{lower} is set by the gateway itself and cannot carry a credential; use another header name"
        )));
    }
    Ok(lower)
}

/// Which credential a request needs, for the credential resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialRef<'a> {
    /// The platform's key for this provider (server configuration).
    Gateway(Provider),
    /// A stored API key.
    ApiKey(CredentialId),
    /// A connected ChatGPT account (by owner-local name).
    ChatGpt(&'a AccountName),
    /// Nothing to inject (a custom endpoint without authentication).
    Anonymous,
}

impl ProviderSource for Source {
    fn kind(&self) -> SourceKind {
        match self {
            Source::Gateway => SourceKind::Gateway,
            Source::Byok { .. } => SourceKind::Byok,
            Source::Chatgpt { .. } => SourceKind::Chatgpt,
            Source::Custom { .. } => SourceKind::Custom,
            Source::Disabled => SourceKind::Disabled,
        }
    }

    fn credential(&self, provider: Provider) -> Option<CredentialRef<'_>> {
        match self {
            Source::Gateway => Some(CredentialRef::Gateway(provider)),
            Source::Byok { credential, .. } => Some(CredentialRef::ApiKey(*credential)),
            Source::Chatgpt { account } => Some(CredentialRef::ChatGpt(account)),
            Source::Custom { auth, .. } => Some(match auth.credential() {
                Some(id) => CredentialRef::ApiKey(id),
                None => CredentialRef::Anonymous,
            }),
            Source::Disabled => None,
        }
    }
}

impl fmt::Display for Source {
    /// How a source is shown: `gateway`, `byok set (…abcd)`,
    /// `chatgpt account work`, `disabled`. Never a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Gateway => f.write_str("gateway"),
            Source::Byok { hint, .. } => write!(f, "byok, key {hint}"),
            Source::Chatgpt { account } => write!(f, "chatgpt, account {account}"),
            Source::Custom { url, auth } => write!(f, "custom {url}, {auth}"),
            Source::Disabled => f.write_str("disabled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_rules() {
        for k in [
            SourceKind::Gateway,
            SourceKind::Byok,
            SourceKind::Chatgpt,
            SourceKind::Custom,
            SourceKind::Disabled,
        ] {
            assert_eq!(k.as_str().parse::<SourceKind>(), Ok(k));
        }
        assert!(SourceKind::Chatgpt.check_provider(Provider::OpenAi).is_ok());
        let err = SourceKind::Chatgpt
            .check_provider(Provider::Anthropic)
            .unwrap_err();
        assert!(err.to_string().contains("only be the openai source"));
        assert!("apikey"
            .parse::<SourceKind>()
            .unwrap_err()
            .to_string()
            .contains("gateway, byok"));
    }

    #[test]
    fn behaviour() {
        assert!(Source::Gateway.is_metered());
        assert!(!Source::Disabled.is_enabled());
        assert_eq!(Source::Disabled.credential(Provider::OpenAi), None);
        let byok = Source::Byok {
            credential: CredentialId(7),
            hint: KeyHint::from_last4(Some("abcd".into())),
        };
        assert!(!byok.is_metered());
        assert_eq!(
            byok.credential(Provider::OpenAi),
            Some(CredentialRef::ApiKey(CredentialId(7)))
        );
        assert_eq!(byok.to_string(), "byok, key set (…abcd)");
    }
}
