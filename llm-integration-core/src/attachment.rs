//! Attachment specs: which VMs an integration is available to.

use std::fmt;
use std::str::FromStr;

use crate::domain::Vm;
use crate::error::Error;
use crate::names::{TagName, VmName};

/// Decides whether an integration applies to a VM.
///
/// Scope (the owner's VMs for a personal integration, the team's VMs for a
/// team integration) is checked by the snapshot before any attachment is
/// asked; an attachment only narrows within that scope.
pub trait Attachment {
    /// Whether this attachment selects `vm`.
    fn matches(&self, vm: &Vm) -> bool;
}

/// `vm:NAME`, `tag:NAME` or `auto:all`. Parses and prints back identically.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum AttachmentSpec {
    /// One VM, by name.
    Vm(VmName),
    /// Every VM carrying the tag.
    Tag(TagName),
    /// Every VM in scope.
    AutoAll,
}

impl Attachment for AttachmentSpec {
    fn matches(&self, vm: &Vm) -> bool {
        match self {
            AttachmentSpec::Vm(name) => vm.name == *name,
            AttachmentSpec::Tag(tag) => vm.tags.contains(tag),
            AttachmentSpec::AutoAll => true,
        }
    }
}

impl FromStr for AttachmentSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidAttachment {
            value: s.to_owned(),
            reason,
        };
        let Some((kind, value)) = s.split_once(':') else {
            return Err(invalid("it has no ':'".into()));
        };
        match kind {
            "vm" => VmName::new(value)
                .map(AttachmentSpec::Vm)
                .map_err(|e| invalid(e.to_string())),
            "tag" => TagName::new(value)
                .map(AttachmentSpec::Tag)
                .map_err(|e| invalid(e.to_string())),
            "auto" if value == "all" => Ok(AttachmentSpec::AutoAll),
            "auto" => Err(invalid(format!(
                "auto:{value} is not known; the only automatic attachment is auto:all"
            ))),
            other => Err(invalid(format!("{other:?} is not an attachment kind"))),
        }
    }
}

impl TryFrom<String> for AttachmentSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<AttachmentSpec> for String {
    fn from(a: AttachmentSpec) -> String {
        a.to_string()
    }
}

impl fmt::Display for AttachmentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachmentSpec::Vm(name) => write!(f, "vm:{name}"),
            AttachmentSpec::Tag(tag) => write!(f, "tag:{tag}"),
            AttachmentSpec::AutoAll => f.write_str("auto:all"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{UserId, VmId};

    #[test]
    fn parse_and_print() {
        for s in ["vm:devbox", "tag:llm", "tag:gpu_box", "auto:all"] {
            let spec: AttachmentSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
    }

    #[test]
    fn refusals_name_the_fix() {
        for (s, needle) in [
            ("devbox", "no ':'"),
            ("auto:some", "auto:all"),
            ("host:x", "not an attachment kind"),
            ("vm:Dev", "uppercase"),
            ("tag:", "empty"),
        ] {
            let err = s.parse::<AttachmentSpec>().unwrap_err().to_string();
            assert!(err.contains(needle), "{s}: {err}");
            assert!(err.contains("use vm:NAME, tag:NAME or auto:all"), "{err}");
        }
    }

    #[test]
    fn matching() {
        let mut vm = Vm::new(VmId(1), "devbox".parse().unwrap(), UserId(1));
        vm.tags.insert("llm".parse().unwrap());
        assert!(AttachmentSpec::AutoAll.matches(&vm));
        assert!("vm:devbox".parse::<AttachmentSpec>().unwrap().matches(&vm));
        assert!(!"vm:other".parse::<AttachmentSpec>().unwrap().matches(&vm));
        assert!("tag:llm".parse::<AttachmentSpec>().unwrap().matches(&vm));
        assert!(!"tag:gpu".parse::<AttachmentSpec>().unwrap().matches(&vm));
    }
}
