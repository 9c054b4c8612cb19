//! Secrets: provider keys and tokens.
//!
//! Every key and token the core handles is a [`SecretString`] (from the
//! `secrecy` crate): its `Debug` prints `[REDACTED]`, it has no `Display`,
//! and its memory is zeroized on drop. The only thing ever shown of a key is
//! a [`KeyHint`]: that it is set, and at most its last four characters.

use std::fmt;

pub use secrecy::{ExposeSecret, SecretString};

/// What may be shown of a stored key: `set (…abcd)`.
///
/// Keys shorter than 16 characters show no characters at all, since four of
/// them would be too large a share of the key.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyHint(Option<String>);

impl KeyHint {
    /// The hint for `key`.
    pub fn of(key: &SecretString) -> Self {
        let key = key.expose_secret();
        let chars = key.chars().count();
        if chars < 16 {
            return KeyHint(None);
        }
        KeyHint(Some(key.chars().skip(chars - 4).collect()))
    }

    /// A hint from stored last characters (as kept beside the encrypted key).
    pub fn from_last4(last4: Option<String>) -> Self {
        KeyHint(last4.filter(|s| s.chars().count() <= 4))
    }

    /// The stored last characters, if any.
    pub fn last4(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Display for KeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(last) => write!(f, "set (…{last})"),
            None => f.write_str("set"),
        }
    }
}

impl fmt::Debug for KeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_shows_at_most_four() {
        let key = SecretString::from("sk-test-0123456789abcdef");
        assert_eq!(KeyHint::of(&key).to_string(), "set (…cdef)");
        assert_eq!(KeyHint::of(&SecretString::from("short")).to_string(), "set");
        assert!(!format!("{key:?}").contains("0123"));
    }
}
