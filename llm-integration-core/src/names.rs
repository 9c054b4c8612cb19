//! Validated names: integrations, VMs, teams, tags and ChatGPT accounts.
//!
//! Integration names become hostnames (`NAME.int.DOMAIN`), so they follow
//! the DNS label rules: `[a-z0-9-]{1,63}` with no leading or trailing `-`.
//! VM, team and account names follow the same rules so they can be typed,
//! quoted and shown anywhere; tags also allow `_`.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Checks `value` against the DNS label rules, with `_` allowed when
/// `underscore` is set. Returns why it fails.
fn check_label(value: &str, underscore: bool) -> Result<(), String> {
    if value.is_empty() {
        return Err("it is empty".into());
    }
    if value.len() > 63 {
        return Err(format!(
            "it is {} characters long; the limit is 63",
            value.len()
        ));
    }
    if let Some(bad) = value.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || (underscore && *c == '_'))
    }) {
        let allowed = if underscore {
            "lowercase letters, digits, '-' and '_'"
        } else {
            "lowercase letters, digits and '-'"
        };
        return Err(if bad.is_ascii_uppercase() {
            format!("it contains the uppercase letter {bad:?}; use lowercase")
        } else {
            format!("it contains {bad:?}; use only {allowed}")
        });
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err("it starts or ends with '-'".into());
    }
    Ok(())
}

macro_rules! label_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $underscore:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                match check_label(&value, $underscore) {
                    Ok(()) => Ok(Self(value)),
                    Err(reason) => Err(Error::InvalidName { what: $what, value, reason }),
                }
            }

            /// Wraps a name known valid at compile time (checked in debug builds).
            #[allow(dead_code)]
            pub(crate) fn from_static(value: &'static str) -> Self {
                debug_assert!(check_label(value, $underscore).is_ok());
                Self(value.to_owned())
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

label_type!(
    /// An integration name: a DNS label, unique within its owner.
    IntegrationName, "integration name", false
);
label_type!(
    /// A VM name: a DNS label, unique on the platform.
    VmName, "VM name", false
);
label_type!(
    /// A team name: a DNS label.
    TeamName, "team name", false
);
label_type!(
    /// A tag on a VM: lowercase letters, digits, `-` and `_`.
    TagName, "tag", true
);
label_type!(
    /// The local name a user gives a connected ChatGPT account.
    AccountName, "account name", false
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_labels() {
        for ok in ["llm", "a", "openai-key", "x1", &"a".repeat(63)] {
            assert!(IntegrationName::new(ok).is_ok(), "{ok}");
        }
        assert!(TagName::new("gpu_box").is_ok());
    }

    #[test]
    fn invalid_labels_say_why() {
        let cases = [
            ("", "empty"),
            ("-a", "starts or ends"),
            ("a-", "starts or ends"),
            ("LLM", "uppercase"),
            ("a.b", "'.'"),
            ("a_b", "'_'"),
            (&"a".repeat(64), "64 characters"),
        ];
        for (value, needle) in cases {
            let err = IntegrationName::new(value).unwrap_err().to_string();
            assert!(err.contains(needle), "{value:?}: {err}");
            assert!(err.starts_with("invalid integration name"), "{err}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: IntegrationName = serde_json::from_str("\"llm\"").unwrap();
        assert_eq!(ok.as_str(), "llm");
        assert!(serde_json::from_str::<IntegrationName>("\"Bad Name\"").is_err());
    }
}
