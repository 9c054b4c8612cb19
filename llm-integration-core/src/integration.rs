//! The behaviour of an integration type.
//!
//! Each type (`llm`, `reflection`) implements [`Integration`]; the enum
//! [`IntegrationKind`] dispatches to them. Adding a type is a new variant,
//! its settings, this impl and a routing arm.

use crate::domain::{IntegrationKind, LlmSettings, ReflectionSettings};
use crate::provider::Provider;

/// What every integration type can say about itself.
pub trait Integration {
    /// The type's name (`llm`, `reflection`).
    fn type_name(&self) -> &'static str;

    /// A one-line summary of the settings, for listings. Never a key.
    fn summary(&self) -> String;

    /// A one-line example of how a VM uses it, given its hostname
    /// (reflection's `/integrations` shows it as `help`).
    fn help(&self, hostname: &str) -> String;
}

impl Integration for LlmSettings {
    fn type_name(&self) -> &'static str {
        "llm"
    }

    fn summary(&self) -> String {
        Provider::ALL
            .iter()
            .map(|p| {
                format!(
                    "{p}={}",
                    crate::source::ProviderSource::kind(self.source(*p))
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `curl https://HOST/v1/models`, then, for each provider on a custom
    /// endpoint, where its answers come from (the endpoint's URL, never
    /// its credential).
    fn help(&self, hostname: &str) -> String {
        let mut help = format!("curl https://{hostname}/v1/models");
        for p in Provider::ALL {
            if let crate::source::Source::Custom { url, .. } = self.source(p) {
                help.push_str(&format!("; {p} answers from the custom endpoint {url}"));
            }
        }
        help
    }
}

impl Integration for ReflectionSettings {
    fn type_name(&self) -> &'static str {
        "reflection"
    }

    fn summary(&self) -> String {
        format!("fields={}", self.fields)
    }

    fn help(&self, hostname: &str) -> String {
        format!("curl https://{hostname}/")
    }
}

impl Integration for IntegrationKind {
    fn type_name(&self) -> &'static str {
        match self {
            IntegrationKind::Llm(s) => s.type_name(),
            IntegrationKind::Reflection(s) => s.type_name(),
        }
    }

    fn summary(&self) -> String {
        match self {
            IntegrationKind::Llm(s) => s.summary(),
            IntegrationKind::Reflection(s) => s.summary(),
        }
    }

    fn help(&self, hostname: &str) -> String {
        match self {
            IntegrationKind::Llm(s) => s.help(hostname),
            IntegrationKind::Reflection(s) => s.help(hostname),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;

    #[test]
    fn summaries_and_help() {
        let mut llm = LlmSettings::all_gateway();
        llm.fireworks = Source::Disabled;
        assert_eq!(
            llm.summary(),
            "anthropic=gateway openai=gateway fireworks=disabled"
        );
        assert_eq!(
            llm.help("llm.int.exe.xyz"),
            "curl https://llm.int.exe.xyz/v1/models"
        );
        llm.openai = Source::Custom {
            url: "https://models.example.com/v1".parse().unwrap(),
            auth: crate::source::EndpointAuth::None,
        };
        assert_eq!(
            llm.summary(),
            "anthropic=gateway openai=custom fireworks=disabled"
        );
        assert_eq!(
            llm.help("local.int.exe.xyz"),
            "curl https://local.int.exe.xyz/v1/models; openai answers from the custom endpoint https://models.example.com/v1"
        );
        let kind = IntegrationKind::Reflection(ReflectionSettings::default());
        assert_eq!(kind.type_name(), "reflection");
        assert_eq!(kind.summary(), "fields=all");
    }
}
