//! The domain records: users, teams, VMs, integrations.
//!
//! These are plain data, as a store loads them. The indexed, read-only view
//! the data plane routes on is [`crate::Snapshot`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::attachment::AttachmentSpec;
use crate::error::Error;
use crate::host::Scope;
use crate::names::{IntegrationName, TagName, TeamName, VmName};
use crate::provider::Provider;
use crate::source::Source;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                $name(v)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A user's store id.
    UserId
);
id_type!(
    /// A team's store id.
    TeamId
);
id_type!(
    /// A VM's store id.
    VmId
);
id_type!(
    /// An integration's store id.
    IntegrationId
);
id_type!(
    /// A stored (encrypted) credential's id.
    CredentialId
);

/// Who owns an integration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum Owner {
    /// A personal integration.
    User(UserId),
    /// A team integration.
    Team(TeamId),
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// Store id.
    pub id: UserId,
    /// The account's email, shown by reflection's `/email`.
    pub email: String,
}

impl User {
    /// A user record.
    pub fn new(id: UserId, email: impl Into<String>) -> Self {
        User {
            id,
            email: email.into(),
        }
    }
}

/// A team: its members may manage its integrations; its VMs may use them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Team {
    /// Store id.
    pub id: TeamId,
    /// Unique team name.
    pub name: TeamName,
    /// Members, who may manage the team's integrations.
    pub members: BTreeSet<UserId>,
}

/// A VM on the platform.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vm {
    /// Store id.
    pub id: VmId,
    /// Unique name on the platform; what `vm:NAME` attachments match.
    pub name: VmName,
    /// The user who owns the VM (its personal integrations apply).
    pub owner: UserId,
    /// The team the VM belongs to, if any (its team integrations apply).
    pub team: Option<TeamId>,
    /// What `tag:NAME` attachments match.
    pub tags: BTreeSet<TagName>,
    /// Free text, shown by reflection.
    pub comment: String,
    /// The port the VM's main service listens on, shown by reflection.
    pub default_port: Option<u16>,
    /// Source addresses the data plane sees this VM's connections from.
    pub addresses: Vec<IpAddr>,
}

impl Vm {
    /// A VM with no team, tags, comment, port or addresses.
    pub fn new(id: VmId, name: VmName, owner: UserId) -> Self {
        Vm {
            id,
            name,
            owner,
            team: None,
            tags: BTreeSet::new(),
            comment: String::new(),
            default_port: None,
            addresses: Vec::new(),
        }
    }
}

/// One integration, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntegrationConfig {
    /// Store id.
    pub id: IntegrationId,
    /// Personal or team.
    pub owner: Owner,
    /// Unique within the owner; the first label of its hostname.
    pub name: IntegrationName,
    /// Free text.
    pub comment: String,
    /// The type and its settings.
    pub kind: IntegrationKind,
    /// Which VMs in scope it applies to.
    pub attachments: Vec<AttachmentSpec>,
}

impl IntegrationConfig {
    /// The default `llm` integration of a new account: every provider on
    /// `gateway`, attached `auto:all`.
    pub fn default_llm(id: IntegrationId, owner: Owner) -> Self {
        IntegrationConfig {
            id,
            owner,
            name: IntegrationName::from_static("llm"),
            comment: String::new(),
            kind: IntegrationKind::Llm(LlmSettings::all_gateway()),
            attachments: vec![AttachmentSpec::AutoAll],
        }
    }

    /// Personal (`NAME.int.DOMAIN`) or team (`NAME.team.DOMAIN`).
    pub fn scope(&self) -> Scope {
        match self.owner {
            Owner::User(_) => Scope::Personal,
            Owner::Team(_) => Scope::Team,
        }
    }

    /// The hostname VMs reach it at under `domain`.
    pub fn hostname(&self, domain: &str) -> String {
        crate::host::hostname(self.name.as_str(), self.scope(), domain)
    }

    /// The default `reflection` integration of a new account, attached
    /// `auto:all`, exposing every field.
    pub fn default_reflection(id: IntegrationId, owner: Owner) -> Self {
        IntegrationConfig {
            id,
            owner,
            name: IntegrationName::from_static("reflection"),
            comment: String::new(),
            kind: IntegrationKind::Reflection(ReflectionSettings::default()),
            attachments: vec![AttachmentSpec::AutoAll],
        }
    }
}

/// An integration's type, with its settings.
///
/// Adding a type (an HTTP proxy, say) is a new variant here, its settings
/// type, an [`crate::Integration`] impl and a routing arm: a local change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
// One value per integration, built when the configuration loads: its size
// costs nothing on the hot path, and a box would cost a pointer chase there.
#[allow(clippy::large_enum_variant)]
pub enum IntegrationKind {
    /// An LLM gateway integration.
    Llm(LlmSettings),
    /// Reflection: what a VM may learn about itself.
    Reflection(ReflectionSettings),
}

impl IntegrationKind {
    /// The type's name (`llm`, `reflection`).
    pub fn type_name(&self) -> &'static str {
        match self {
            IntegrationKind::Llm(_) => "llm",
            IntegrationKind::Reflection(_) => "reflection",
        }
    }
}

/// The settings of an `llm` integration: one source per provider, and
/// whether a client of one API family may reach the other family's models
/// through protocol translation ([`crate::translate`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LlmSettings {
    /// Anthropic's source.
    pub anthropic: Source,
    /// OpenAI's source.
    pub openai: Source,
    /// Fireworks' source.
    pub fireworks: Source,
    /// `--translate=on|off`: an Anthropic Messages request naming an
    /// OpenAI model (and an OpenAI request naming a Claude model) is
    /// translated (on, the default; settings stored before the setting
    /// existed load as on) or refused with the endpoint to use (off).
    #[serde(default = "translate_default")]
    pub translate: bool,
}

fn translate_default() -> bool {
    true
}

impl LlmSettings {
    /// Every provider on `gateway`.
    pub fn all_gateway() -> Self {
        LlmSettings {
            anthropic: Source::Gateway,
            openai: Source::Gateway,
            fireworks: Source::Gateway,
            translate: true,
        }
    }

    /// The source of `provider`.
    pub fn source(&self, provider: Provider) -> &Source {
        match provider {
            Provider::Anthropic => &self.anthropic,
            Provider::OpenAi => &self.openai,
            Provider::Fireworks => &self.fireworks,
        }
    }

    /// The source of `provider`, mutably.
    pub fn source_mut(&mut self, provider: Provider) -> &mut Source {
        match provider {
            Provider::Anthropic => &mut self.anthropic,
            Provider::OpenAi => &mut self.openai,
            Provider::Fireworks => &mut self.fireworks,
        }
    }
}

/// What a reflection integration exposes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct ReflectionSettings {
    /// The exposed fields.
    pub fields: ReflectionFields,
}

/// One thing reflection can expose.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ReflectionField {
    /// `/email`: the owner's email.
    Email,
    /// `/integrations`: every integration attached to the VM.
    Integrations,
    /// `/tags`: the VM's tags.
    Tags,
    /// `/comment`: the VM's comment.
    Comment,
    /// `/default_port`: the VM's default port.
    DefaultPort,
}

impl ReflectionField {
    /// Every field, in listing order.
    pub const ALL: [ReflectionField; 5] = [
        ReflectionField::Email,
        ReflectionField::Integrations,
        ReflectionField::Tags,
        ReflectionField::Comment,
        ReflectionField::DefaultPort,
    ];

    /// The field's name, which is also its path without the `/`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReflectionField::Email => "email",
            ReflectionField::Integrations => "integrations",
            ReflectionField::Tags => "tags",
            ReflectionField::Comment => "comment",
            ReflectionField::DefaultPort => "default_port",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl FromStr for ReflectionField {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ReflectionField::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| Error::UnknownReflectionField(s.to_owned()))
    }
}

/// A set of reflection fields; `all` by default. Parses `all` or
/// `email,tags,…` and prints back in canonical order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReflectionFields(u8);

impl ReflectionFields {
    /// Every field.
    pub const ALL: ReflectionFields = ReflectionFields(0b1_1111);

    /// Whether `field` is exposed.
    pub const fn contains(self, field: ReflectionField) -> bool {
        self.0 & field.bit() != 0
    }

    /// The exposed fields, in listing order.
    pub fn iter(self) -> impl Iterator<Item = ReflectionField> {
        ReflectionField::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

impl Default for ReflectionFields {
    fn default() -> Self {
        ReflectionFields::ALL
    }
}

impl FromIterator<ReflectionField> for ReflectionFields {
    fn from_iter<I: IntoIterator<Item = ReflectionField>>(iter: I) -> Self {
        ReflectionFields(iter.into_iter().fold(0, |acc, f| acc | f.bit()))
    }
}

impl FromStr for ReflectionFields {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "all" {
            return Ok(ReflectionFields::ALL);
        }
        let fields = s
            .split(',')
            .map(|part| part.trim().parse::<ReflectionField>())
            .collect::<Result<ReflectionFields, Error>>()?;
        Ok(fields)
    }
}

impl TryFrom<String> for ReflectionFields {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<ReflectionFields> for String {
    fn from(f: ReflectionFields) -> String {
        f.to_string()
    }
}

impl fmt::Display for ReflectionFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == ReflectionFields::ALL {
            return f.write_str("all");
        }
        let mut first = true;
        for field in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(field.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ReflectionFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReflectionFields({self})")
    }
}

/// Everything a snapshot is built from, as a store loads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigRecords {
    /// Every user.
    pub users: Vec<User>,
    /// Every team, with its members.
    pub teams: Vec<Team>,
    /// Every VM.
    pub vms: Vec<Vm>,
    /// Every integration.
    pub integrations: Vec<IntegrationConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_stored_before_translate_existed_load_with_it_on() {
        let mut stored = serde_json::to_value(LlmSettings::all_gateway()).unwrap();
        stored.as_object_mut().unwrap().remove("translate");
        let loaded: LlmSettings = serde_json::from_value(stored).unwrap();
        assert!(loaded.translate);
        let mut off = LlmSettings::all_gateway();
        off.translate = false;
        let round: LlmSettings =
            serde_json::from_str(&serde_json::to_string(&off).unwrap()).unwrap();
        assert_eq!(round, off);
    }

    #[test]
    fn fields_parse_and_print() {
        assert_eq!(
            "all".parse::<ReflectionFields>().unwrap(),
            ReflectionFields::ALL
        );
        let f: ReflectionFields = "tags,email".parse().unwrap();
        assert_eq!(f.to_string(), "email,tags");
        assert!(f.contains(ReflectionField::Email));
        assert!(!f.contains(ReflectionField::Integrations));
        let all_listed: ReflectionFields = "email,integrations,tags,comment,default_port"
            .parse()
            .unwrap();
        assert_eq!(all_listed.to_string(), "all");
        let err = "email,phone"
            .parse::<ReflectionFields>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"phone\"") && err.contains("default_port"),
            "{err}"
        );
    }

    #[test]
    fn defaults() {
        let llm = IntegrationConfig::default_llm(IntegrationId(1), Owner::User(UserId(1)));
        assert_eq!(llm.name.as_str(), "llm");
        assert_eq!(llm.kind, IntegrationKind::Llm(LlmSettings::all_gateway()));
        assert_eq!(llm.attachments, vec![AttachmentSpec::AutoAll]);
        let r = IntegrationConfig::default_reflection(IntegrationId(2), Owner::User(UserId(1)));
        assert_eq!(r.kind.type_name(), "reflection");
    }
}
