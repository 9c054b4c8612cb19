//! Provider sources: where the credential for one provider of one `llm`
//! integration comes from.

use std::fmt;
use std::str::FromStr;

use crate::domain::CredentialId;
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
    /// The kind, as shown and typed (`gateway`, `byok`, `chatgpt`, `disabled`).
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
            SourceKind::Disabled => "disabled",
        }
    }

    /// The name as shown to people ("API Key" for `byok`).
    pub const fn label(self) -> &'static str {
        match self {
            SourceKind::Gateway => "LLM gateway",
            SourceKind::Byok => "API Key",
            SourceKind::Chatgpt => "ChatGPT subscription",
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
    /// The provider is hidden.
    Disabled,
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
}

impl ProviderSource for Source {
    fn kind(&self) -> SourceKind {
        match self {
            Source::Gateway => SourceKind::Gateway,
            Source::Byok { .. } => SourceKind::Byok,
            Source::Chatgpt { .. } => SourceKind::Chatgpt,
            Source::Disabled => SourceKind::Disabled,
        }
    }

    fn credential(&self, provider: Provider) -> Option<CredentialRef<'_>> {
        match self {
            Source::Gateway => Some(CredentialRef::Gateway(provider)),
            Source::Byok { credential, .. } => Some(CredentialRef::ApiKey(*credential)),
            Source::Chatgpt { account } => Some(CredentialRef::ChatGpt(account)),
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
