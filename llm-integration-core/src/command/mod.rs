//! The command language: one grammar for every door.
//!
//! A command line (shell-style quoting) is parsed with clap into the typed
//! [`Command`], then validated (a key flag only with `byok`, `chatgpt`
//! only for openai and only on personal integrations, …). Executing
//! commands is the server's job; parsing and validating is here, so the
//! CLI, `POST /exec`, SSH and the web page agree on every rule and every
//! message.
//!
//! A [`Command`] prints back as a canonical command line that parses to the
//! same command, except that a key never prints: key values print as `-`.
//!
//! ```
//! use llm_integration_core::command::{parse_command_line, Command, Parsed, SourceChoice};
//!
//! let Parsed::Command(line) = parse_command_line(
//!     "integrations add llm --name work --openai=chatgpt --openai-account=work --anthropic=disabled",
//! )? else { unreachable!() };
//! let Command::AddLlm(add) = &line.command else { unreachable!() };
//! assert!(matches!(add.providers.openai, Some(SourceChoice::Chatgpt(_))));
//!
//! let err = parse_command_line("integrations add llm --name x --anthropic=chatgpt").unwrap_err();
//! assert!(err.message.contains("--anthropic=chatgpt"));
//! # Ok::<(), llm_integration_core::command::CommandError>(())
//! ```

mod grammar;

use std::fmt;

use clap::error::ErrorKind;
use clap::Parser;
use secrecy::ExposeSecret;
use zeroize::Zeroize;

use crate::attachment::AttachmentSpec;
use crate::domain::ReflectionFields;
use crate::endpoint::EndpointUrl;
use crate::names::{AccountName, IntegrationName, TagName, TeamName, VmName};
use crate::provider::Provider;
use crate::secret::SecretString;
use crate::source::SourceKind;

/// `usage --since`: a duration back from now, or a UTC date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This many seconds before now.
    Ago(u64),
    /// Midnight UTC of this date.
    Date {
        /// Year.
        year: i32,
        /// Month, 1 to 12.
        month: u8,
        /// Day, 1 to 31.
        day: u8,
    },
}

impl Since {
    /// The time it names, `now` being the current time.
    pub fn time(&self, now: std::time::SystemTime) -> std::time::SystemTime {
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.unix_seconds(secs))
    }

    /// The time it names, given the current Unix time in seconds.
    pub fn unix_seconds(&self, now: u64) -> u64 {
        match *self {
            Since::Ago(secs) => now.saturating_sub(secs),
            Since::Date { year, month, day } => {
                // Days from civil (Howard Hinnant's algorithm).
                let y = i64::from(year) - i64::from(month <= 2);
                let era = y.div_euclid(400);
                let yoe = y - era * 400;
                let m = i64::from(month);
                let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
                let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
                let days = era * 146_097 + doe - 719_468;
                u64::try_from(days * 86_400).unwrap_or(0)
            }
        }
    }
}

impl fmt::Display for Since {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Since::Ago(s) if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            Since::Ago(s) if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            Since::Ago(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            Since::Ago(s) => write!(f, "{s}s"),
            Since::Date { year, month, day } => write!(f, "{year:04}-{month:02}-{day:02}"),
        }
    }
}

impl std::str::FromStr for Since {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration (30m, 24h, 7d) or a date (2026-11-01)");
        if let Some((unit_at, unit)) = s.char_indices().last() {
            let mult = match unit {
                's' => Some(1),
                'm' => Some(60),
                'h' => Some(3600),
                'd' => Some(86_400),
                _ => None,
            };
            if let (Some(mult), Ok(n)) = (mult, s[..unit_at].parse::<u64>()) {
                return n.checked_mul(mult).map(Since::Ago).ok_or_else(bad);
            }
        }
        let parts: Vec<&str> = s.split('-').collect();
        if let [y, m, d] = parts.as_slice() {
            if let (Ok(year), Ok(month), Ok(day)) =
                (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>())
            {
                if (1970..=9999).contains(&year)
                    && (1..=12).contains(&month)
                    && (1..=31).contains(&day)
                    && y.len() == 4
                {
                    return Ok(Since::Date { year, month, day });
                }
            }
        }
        Err(bad())
    }
}

/// A setting turned `on` or `off` (`--translate=on|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

impl Switch {
    /// `true` for [`Switch::On`].
    pub fn is_on(self) -> bool {
        self == Switch::On
    }

    /// `on` or `off`, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Switch::On => "on",
            Switch::Off => "off",
        }
    }
}

/// `usage --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageBy {
    /// Per VM.
    Vm,
    /// Per integration.
    Integration,
    /// Per model.
    Model,
    /// Per provider.
    Provider,
}

impl UsageBy {
    /// How a report grouped `by` (or not) is summed.
    pub fn grouping(by: Option<UsageBy>) -> crate::seams::UsageGrouping {
        use crate::seams::UsageGrouping;
        match by {
            None => UsageGrouping::Total,
            Some(UsageBy::Vm) => UsageGrouping::Vm,
            Some(UsageBy::Integration) => UsageGrouping::Integration,
            Some(UsageBy::Model) => UsageGrouping::Model,
            Some(UsageBy::Provider) => UsageGrouping::Provider,
        }
    }

    /// The name as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Vm => "vm",
            UsageBy::Integration => "integration",
            UsageBy::Model => "model",
            UsageBy::Provider => "provider",
        }
    }
}

/// The longest comment accepted.
pub const MAX_COMMENT_CHARS: usize = 500;

/// A parsed command line: the command and the output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// What to do.
    pub command: Command,
    /// Answer in JSON (`--json`).
    pub json: bool,
}

/// What parsing produced: a command, or help text to show (`--help`).
#[derive(Debug, Clone, PartialEq, Eq)]
// One per command line: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// A command to execute.
    Command(CommandLine),
    /// Help text to print; not an error.
    Help(String),
}

/// A command line that could not be parsed: a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// The problem, the flag concerned and the fix, ready to show.
    pub message: String,
}

impl CommandError {
    fn new(message: impl Into<String>) -> Self {
        CommandError {
            message: message.into(),
        }
    }
}

/// A typed command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `integrations list`
    List,
    /// `integrations show NAME`
    Show(IntegrationRef),
    /// `integrations add llm …`
    AddLlm(AddLlm),
    /// `integrations add reflection …`
    AddReflection(AddReflection),
    /// `integrations edit NAME …`
    Edit(Edit),
    /// `integrations remove NAME`
    Remove(IntegrationRef),
    /// `integrations rename NAME NEW_NAME`
    Rename {
        /// The integration.
        target: IntegrationRef,
        /// Its new name.
        new_name: IntegrationName,
    },
    /// `integrations attach NAME SPEC`
    Attach {
        /// The integration.
        target: IntegrationRef,
        /// Where to attach it.
        spec: AttachmentSpec,
    },
    /// `integrations detach NAME SPEC`
    Detach {
        /// The integration.
        target: IntegrationRef,
        /// The attachment to remove.
        spec: AttachmentSpec,
    },
    /// `integrations test NAME [--provider P]`
    Test {
        /// The integration.
        target: IntegrationRef,
        /// Only this provider.
        provider: Option<Provider>,
    },
    /// `integrations setup chatgpt …`
    SetupChatgpt(ChatgptSetup),
    /// `usage [--since WHEN] [--by GROUP] [--team TEAM]`
    Usage {
        /// From when.
        since: Since,
        /// How to group.
        by: Option<UsageBy>,
        /// A team's usage instead of the user's.
        team: Option<TeamName>,
    },
    /// `login-link`: a one-time sign-in link for the web page.
    LoginLink,
    /// `tag [-d] VM TAG...`
    Tag {
        /// Remove instead of add.
        delete: bool,
        /// The VM.
        vm: VmName,
        /// The tags.
        tags: Vec<TagName>,
    },
    /// `ssh-key add KEY | list | remove FINGERPRINT`
    SshKey(SshKeyCommand),
}

/// `ssh-key …`: the SSH keys a user signs in to the SSH door with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshKeyCommand {
    /// `ssh-key add KEY`: the public key line as given (`TYPE BASE64
    /// [COMMENT]`, one line, checked for shape only; the server parses it).
    Add(String),
    /// `ssh-key list`
    List,
    /// `ssh-key remove FINGERPRINT`: a `SHA256:…` fingerprint.
    Remove(String),
}

/// The longest public key line `ssh-key add` accepts, in bytes (an
/// Ed25519 key line is about 100; an RSA 16384-bit one about 2,800).
pub const MAX_SSH_KEY_BYTES: usize = 8 * 1024;

/// Names an integration: personal unless a team is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IntegrationRef {
    /// The integration's name.
    pub name: IntegrationName,
    /// The owning team, for a team integration.
    pub team: Option<TeamName>,
}

/// Where a key comes from.
#[derive(Clone)]
pub enum KeyInput {
    /// `-`: read from standard input (the door supplies it).
    Stdin,
    /// Given on the command line.
    Value(SecretString),
}

impl PartialEq for KeyInput {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (KeyInput::Stdin, KeyInput::Stdin) => true,
            (KeyInput::Value(a), KeyInput::Value(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        }
    }
}

impl Eq for KeyInput {}

impl fmt::Debug for KeyInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyInput::Stdin => f.write_str("Stdin"),
            KeyInput::Value(_) => f.write_str("Value([REDACTED])"),
        }
    }
}

/// A provider's source as chosen on the command line, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChoice {
    /// `--P=gateway`
    Gateway,
    /// `--P=byok [--P-key=KEY|-]`; `None` (edit only) keeps the stored key.
    Byok(Option<KeyInput>),
    /// `--openai=chatgpt --openai-account=ACCOUNT`
    Chatgpt(AccountName),
    /// `--P=custom --P-url=URL [--P-key=TOKEN|-] [--P-header='Name: value'|'Name: -']`;
    /// on `edit`, what is not given (the URL, the authentication) is kept.
    Custom {
        /// The endpoint's base URL (`None`, on edit only: keep the stored one).
        url: Option<EndpointUrl>,
        /// How to authenticate (`None`: none on add, keep the stored one on edit).
        auth: Option<EndpointAuthInput>,
    },
    /// `--P=disabled`
    Disabled,
}

/// A custom endpoint's authentication as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAuthInput {
    /// `--P-key=TOKEN|-`: `Authorization: Bearer TOKEN`.
    Bearer(KeyInput),
    /// `--P-header='Name: value'|'Name: -'`.
    Header {
        /// The header name, lowercase, checked by [`crate::check_endpoint_header`].
        name: String,
        /// Its value.
        value: KeyInput,
    },
}

impl EndpointAuthInput {
    /// The secret, as given.
    pub fn input(&self) -> &KeyInput {
        match self {
            EndpointAuthInput::Bearer(k) | EndpointAuthInput::Header { value: k, .. } => k,
        }
    }
    fn input_mut(&mut self) -> &mut KeyInput {
        match self {
            EndpointAuthInput::Bearer(k) | EndpointAuthInput::Header { value: k, .. } => k,
        }
    }
}

impl SourceChoice {
    /// The kind of source chosen.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceChoice::Gateway => SourceKind::Gateway,
            SourceChoice::Byok(_) => SourceKind::Byok,
            SourceChoice::Chatgpt(_) => SourceKind::Chatgpt,
            SourceChoice::Custom { .. } => SourceKind::Custom,
            SourceChoice::Disabled => SourceKind::Disabled,
        }
    }
}

/// The provider flags of `add llm` and `edit`; `None` where not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderChoices {
    /// `--anthropic=…`
    pub anthropic: Option<SourceChoice>,
    /// `--openai=…`
    pub openai: Option<SourceChoice>,
    /// `--fireworks=…`
    pub fireworks: Option<SourceChoice>,
}

impl ProviderChoices {
    /// The choice for `provider`.
    pub fn get(&self, provider: Provider) -> Option<&SourceChoice> {
        match provider {
            Provider::Anthropic => self.anthropic.as_ref(),
            Provider::OpenAi => self.openai.as_ref(),
            Provider::Fireworks => self.fireworks.as_ref(),
        }
    }

    fn slot(&mut self, provider: Provider) -> &mut Option<SourceChoice> {
        match provider {
            Provider::Anthropic => &mut self.anthropic,
            Provider::OpenAi => &mut self.openai,
            Provider::Fireworks => &mut self.fireworks,
        }
    }

    /// Whether no provider flag was given.
    pub fn is_empty(&self) -> bool {
        Provider::ALL.iter().all(|p| self.get(*p).is_none())
    }

    /// Whether some key is to be read from standard input.
    pub fn reads_stdin(&self) -> bool {
        !self.stdin_providers().is_empty()
    }

    /// The providers whose key is read from standard input, in the order
    /// their lines are read (anthropic, openai, fireworks): one key alone
    /// is the whole input; several are one line each.
    pub fn stdin_providers(&self) -> Vec<Provider> {
        Provider::ALL
            .into_iter()
            .filter(|p| self.stdin_input(*p).is_some())
            .collect()
    }

    /// `provider`'s secret, when it is to be read from standard input.
    fn stdin_input(&self, provider: Provider) -> Option<&KeyInput> {
        let input = match self.get(provider)? {
            SourceChoice::Byok(Some(k)) => k,
            SourceChoice::Custom {
                auth: Some(auth), ..
            } => auth.input(),
            _ => return None,
        };
        matches!(input, KeyInput::Stdin).then_some(input)
    }
}

/// `integrations add llm`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddLlm {
    /// The new integration's name.
    pub name: IntegrationName,
    /// The team owning it, for a team integration.
    pub team: Option<TeamName>,
    /// Provider sources; providers not given default to `gateway`.
    pub providers: ProviderChoices,
    /// `--translate=on|off`: protocol translation between the API
    /// families (on when not given).
    pub translate: Option<Switch>,
    /// A comment.
    pub comment: Option<String>,
    /// Attachments, without duplicates, in the order given.
    pub attach: Vec<AttachmentSpec>,
}

/// `integrations add reflection`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddReflection {
    /// The new integration's name.
    pub name: IntegrationName,
    /// The team owning it, for a team integration.
    pub team: Option<TeamName>,
    /// Exposed fields (`all` when not given).
    pub fields: ReflectionFields,
    /// A comment.
    pub comment: Option<String>,
    /// Attachments, without duplicates, in the order given.
    pub attach: Vec<AttachmentSpec>,
}

/// `integrations edit`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The integration.
    pub target: IntegrationRef,
    /// Provider changes (llm integrations).
    pub providers: ProviderChoices,
    /// `--translate=on|off` (llm integrations).
    pub translate: Option<Switch>,
    /// A new comment.
    pub comment: Option<String>,
    /// New fields (reflection integrations).
    pub fields: Option<ReflectionFields>,
}

/// `integrations setup chatgpt`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatgptSetup {
    /// `--name ACCOUNT`: device-code login.
    Connect(AccountName),
    /// `--list`
    List,
    /// `--verify`
    Verify,
    /// `--name ACCOUNT --delete`
    Delete(AccountName),
}

impl Command {
    /// Whether executing this command reads standard input (a `-` key).
    pub fn reads_stdin(&self) -> bool {
        !self.stdin_providers().is_empty()
    }

    /// The providers whose keys are read from standard input, in line order.
    pub fn stdin_providers(&self) -> Vec<Provider> {
        match self {
            Command::AddLlm(a) => a.providers.stdin_providers(),
            Command::Edit(e) => e.providers.stdin_providers(),
            _ => Vec::new(),
        }
    }

    /// Whether the command only reads (list, show, test, usage, setup --list/--verify).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Command::Usage { .. }
                | Command::List
                | Command::Show(_)
                | Command::Test { .. }
                | Command::SetupChatgpt(ChatgptSetup::List | ChatgptSetup::Verify)
                | Command::SshKey(SshKeyCommand::List)
        )
    }

    /// The canonical arguments of this command. Keys print as `-`.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let team = |a: &mut Vec<String>, t: &Option<TeamName>| {
            if let Some(t) = t {
                a.push(format!("--team={t}"));
            }
        };
        let target = |a: &mut Vec<String>, r: &IntegrationRef| {
            a.push(r.name.to_string());
            if let Some(t) = &r.team {
                a.push(format!("--team={t}"));
            }
        };
        match self {
            Command::List => a.extend(["integrations".into(), "list".into()]),
            Command::Show(r) | Command::Remove(r) => {
                let verb = if matches!(self, Command::Show(_)) {
                    "show"
                } else {
                    "remove"
                };
                a.extend(["integrations".into(), verb.into()]);
                target(&mut a, r);
            }
            Command::AddLlm(add) => {
                a.extend([
                    "integrations".into(),
                    "add".into(),
                    "llm".into(),
                    format!("--name={}", add.name),
                ]);
                push_providers(&mut a, &add.providers);
                if let Some(t) = add.translate {
                    a.push(format!("--translate={}", t.as_str()));
                }
                team(&mut a, &add.team);
                if let Some(c) = &add.comment {
                    a.push(format!("--comment={c}"));
                }
                a.extend(add.attach.iter().map(|s| format!("--attach={s}")));
            }
            Command::AddReflection(add) => {
                a.extend([
                    "integrations".into(),
                    "add".into(),
                    "reflection".into(),
                    format!("--name={}", add.name),
                ]);
                a.push(format!("--fields={}", add.fields));
                team(&mut a, &add.team);
                if let Some(c) = &add.comment {
                    a.push(format!("--comment={c}"));
                }
                a.extend(add.attach.iter().map(|s| format!("--attach={s}")));
            }
            Command::Edit(e) => {
                a.extend(["integrations".into(), "edit".into()]);
                target(&mut a, &e.target);
                push_providers(&mut a, &e.providers);
                if let Some(t) = e.translate {
                    a.push(format!("--translate={}", t.as_str()));
                }
                if let Some(c) = &e.comment {
                    a.push(format!("--comment={c}"));
                }
                if let Some(f) = &e.fields {
                    a.push(format!("--fields={f}"));
                }
            }
            Command::Rename {
                target: r,
                new_name,
            } => {
                a.extend(["integrations".into(), "rename".into()]);
                target(&mut a, r);
                a.push(new_name.to_string());
            }
            Command::Attach { target: r, spec } | Command::Detach { target: r, spec } => {
                let verb = if matches!(self, Command::Attach { .. }) {
                    "attach"
                } else {
                    "detach"
                };
                a.extend(["integrations".into(), verb.into()]);
                target(&mut a, r);
                a.push(spec.to_string());
            }
            Command::Test {
                target: r,
                provider,
            } => {
                a.extend(["integrations".into(), "test".into()]);
                target(&mut a, r);
                if let Some(p) = provider {
                    a.push(format!("--provider={p}"));
                }
            }
            Command::SetupChatgpt(setup) => {
                a.extend(["integrations".into(), "setup".into(), "chatgpt".into()]);
                match setup {
                    ChatgptSetup::Connect(n) => a.push(format!("--name={n}")),
                    ChatgptSetup::List => a.push("--list".into()),
                    ChatgptSetup::Verify => a.push("--verify".into()),
                    ChatgptSetup::Delete(n) => a.extend([format!("--name={n}"), "--delete".into()]),
                }
            }
            Command::Usage { since, by, team: t } => {
                a.extend(["usage".into(), format!("--since={since}")]);
                if let Some(by) = by {
                    a.push(format!("--by={}", by.as_str()));
                }
                team(&mut a, t);
            }
            Command::LoginLink => a.push("login-link".into()),
            Command::Tag { delete, vm, tags } => {
                a.push("tag".into());
                if *delete {
                    a.push("-d".into());
                }
                a.push(vm.to_string());
                a.extend(tags.iter().map(ToString::to_string));
            }
            Command::SshKey(k) => {
                a.push("ssh-key".into());
                match k {
                    SshKeyCommand::Add(key) => a.extend(["add".into(), key.clone()]),
                    SshKeyCommand::List => a.push("list".into()),
                    SshKeyCommand::Remove(f) => a.extend(["remove".into(), f.clone()]),
                }
            }
        }
        a
    }

    /// The same command with every key value replaced by `-` (what
    /// [`Command`]'s `Display` prints).
    pub fn redacted(&self) -> Command {
        let redact = |p: &ProviderChoices| {
            let mut p = p.clone();
            for provider in Provider::ALL {
                let key = match p.slot(provider) {
                    Some(SourceChoice::Byok(Some(key))) => key,
                    Some(SourceChoice::Custom {
                        auth: Some(auth), ..
                    }) => auth.input_mut(),
                    _ => continue,
                };
                *key = KeyInput::Stdin;
            }
            p
        };
        match self {
            Command::AddLlm(a) => Command::AddLlm(AddLlm {
                providers: redact(&a.providers),
                ..a.clone()
            }),
            Command::Edit(e) => Command::Edit(Edit {
                providers: redact(&e.providers),
                ..e.clone()
            }),
            other => other.clone(),
        }
    }
}

fn push_providers(a: &mut Vec<String>, p: &ProviderChoices) {
    for provider in Provider::ALL {
        if let Some(choice) = p.get(provider) {
            a.push(format!("--{provider}={}", choice.kind()));
            match choice {
                SourceChoice::Byok(Some(_)) => a.push(format!("--{provider}-key=-")),
                SourceChoice::Chatgpt(account) => a.push(format!("--openai-account={account}")),
                SourceChoice::Custom { url, auth } => {
                    if let Some(url) = url {
                        a.push(format!("--{provider}-url={url}"));
                    }
                    match auth {
                        Some(EndpointAuthInput::Bearer(_)) => a.push(format!("--{provider}-key=-")),
                        Some(EndpointAuthInput::Header { name, .. }) => {
                            a.push(format!("--{provider}-header={name}: -"));
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
    }
}

impl fmt::Display for Command {
    /// The canonical command line, shell-quoted. Never shows a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self.to_args().iter().map(|w| quote_word(w)).collect();
        f.write_str(&words.join(" "))
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.command, f)?;
        if self.json {
            f.write_str(" --json")?;
        }
        Ok(())
    }
}

/// The clap definition of the grammar, for help pages and shell
/// completions (the CLI adds its own flags to it).
pub fn grammar() -> clap::Command {
    <grammar::Cli as clap::CommandFactory>::command()
}

/// Quotes `word` for a shell only when it needs it (`--name=x` stays bare).
fn quote_word(word: &str) -> String {
    let bare = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+%".contains(&b))
        && !word.starts_with('=');
    if bare {
        word.to_owned()
    } else {
        shell_words::quote(word).into_owned()
    }
}

/// Parses one command line (shell-style quoting: `'…'`, `"…"`, `\`).
pub fn parse_command_line(line: &str) -> Result<Parsed, CommandError> {
    let words = shell_words::split(line).map_err(|e| {
        CommandError::new(format!(
            "cannot split the command line: {e}; close every quote"
        ))
    })?;
    parse_args(words)
}

/// Parses a command from already-split arguments (as a CLI receives them).
/// The argument strings are zeroized once parsed, since they may hold keys.
pub fn parse_args(mut args: Vec<String>) -> Result<Parsed, CommandError> {
    let result = grammar::Cli::try_parse_from(args.iter());
    let outcome = match result {
        Ok(cli) => convert(cli).map(Parsed::Command),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                Ok(Parsed::Help(e.render().to_string()))
            }
            _ => Err(CommandError::new(redact_keys(
                &e.render().to_string(),
                &args,
            ))),
        },
    };
    args.zeroize();
    outcome
}

/// Whether a word looks like a credential (clap may echo a mistyped
/// argument verbatim): a known key prefix, or a long unbroken token that
/// reads as random: upper- and lowercase letters and digits mixed, or 32
/// hexadecimal digits and more. Names are lowercase DNS labels, so a long
/// name is not mistaken for a key.
fn looks_like_secret(word: &str) -> bool {
    const PREFIXES: [&str; 5] = ["sk-", "fw_", "fw-", "lli_", "sess-"];
    let unbroken = word.len() >= 24 && !word.chars().any(char::is_whitespace);
    let mixed = word.chars().any(|c| c.is_ascii_uppercase())
        && word.chars().any(|c| c.is_ascii_lowercase())
        && word.chars().any(|c| c.is_ascii_digit());
    let hex = word.len() >= 32 && word.chars().all(|c| c.is_ascii_hexdigit());
    PREFIXES.iter().any(|p| word.starts_with(p)) || (unbroken && (mixed || hex))
}

/// Removes from `message` every value given to a `--*-key` flag, and every
/// argument that looks like a credential, wherever it was typed.
fn redact_keys(message: &str, args: &[String]) -> String {
    let mut out = message.to_owned();
    let mut values: Vec<&str> = Vec::new();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        let key_flag = flag.starts_with("--") && flag.ends_with("-key");
        match inline {
            Some(v) if key_flag || looks_like_secret(v) => values.push(v),
            None if key_flag => {
                if let Some(v) = iter.peek() {
                    values.push(v.as_str());
                }
            }
            _ if looks_like_secret(arg) => values.push(arg.as_str()),
            _ => {}
        }
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values.into_iter().filter(|v| v.len() > 1 && *v != "-") {
        out = out.replace(v, "[REDACTED]");
    }
    // A part of an argument may be echoed alone (`--attach=tag:VALUE`
    // quotes VALUE): key-shaped text goes wherever it is.
    crate::redact::Redactor::new([]).redact(&out).into_owned()
}

fn check_comment(comment: Option<String>) -> Result<Option<String>, CommandError> {
    let Some(c) = comment else { return Ok(None) };
    if c.chars().count() > MAX_COMMENT_CHARS {
        return Err(CommandError::new(format!(
            "--comment is {} characters long; the limit is {MAX_COMMENT_CHARS}",
            c.chars().count()
        )));
    }
    if c.chars().any(char::is_control) {
        return Err(CommandError::new(
            "--comment contains a control character (newline, tab, …); use one line of text",
        ));
    }
    // VMs read comments through reflection: a key pasted into one would
    // be shown to every VM the reflection integration applies to.
    if crate::redact::Redactor::new([]).redact(&c) != c {
        return Err(CommandError::new(
            "--comment looks like it holds an API key or token (sk-…, sk-ant-…, fw_…); VMs can read comments \
through reflection, so keep keys out of it: give a key with --anthropic-key, --openai-key or --fireworks-key",
        ));
    }
    Ok(Some(c))
}

/// `ssh-key add`'s key, checked for shape: one line of at most
/// [`MAX_SSH_KEY_BYTES`], a type and base64 data, surrounding space removed.
fn check_ssh_key(text: &str) -> Result<String, CommandError> {
    let key = text.trim();
    if key.len() > MAX_SSH_KEY_BYTES {
        return Err(CommandError::new(format!(
            "ssh-key add: the key is {} bytes long; a public key line is at most {MAX_SSH_KEY_BYTES} \
(give the .pub file's line, not the private key)",
            key.len()
        )));
    }
    if key.contains("PRIVATE KEY") {
        return Err(CommandError::new(
            "ssh-key add: that is a private key; give the public key (the line in the .pub file, e.g. ~/.ssh/id_ed25519.pub)",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(CommandError::new(
            "ssh-key add: the key contains a newline or control character; give one line of the .pub file",
        ));
    }
    let mut words = key.split_whitespace();
    match (words.next(), words.next()) {
        (Some(kind), Some(data))
            if kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-@.".contains(&b))
                && data
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) =>
        {
            Ok(key.to_owned())
        }
        _ => Err(CommandError::new(
            "ssh-key add: that is not a public key line; give TYPE BASE64 [COMMENT], \
e.g. 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… alice@laptop' (the line in ~/.ssh/id_ed25519.pub)",
        )),
    }
}

/// `ssh-key remove`'s fingerprint: `SHA256:` and unpadded base64.
fn check_fingerprint(text: &str) -> Result<String, CommandError> {
    let fingerprint = text.trim();
    let valid = fingerprint.strip_prefix("SHA256:").is_some_and(|b64| {
        (1..=64).contains(&b64.len())
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/".contains(&b))
    });
    if valid {
        return Ok(fingerprint.to_owned());
    }
    Err(CommandError::new(format!(
        "ssh-key remove: \"{}\" is not a key fingerprint; give SHA256:… as `ssh-key list` shows it",
        crate::redact::printable_field(fingerprint, 80)
    )))
}

fn dedup(specs: Vec<AttachmentSpec>) -> Vec<AttachmentSpec> {
    let mut out: Vec<AttachmentSpec> = Vec::with_capacity(specs.len());
    for s in specs {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Applies the provider-flag rules. `adding` requires a key with `byok`.
fn provider_choices(
    args: grammar::ProviderArgs,
    team: Option<&TeamName>,
    adding: bool,
) -> Result<ProviderChoices, CommandError> {
    let grammar::ProviderArgs {
        anthropic,
        openai,
        fireworks,
        anthropic_key,
        openai_key,
        fireworks_key,
        anthropic_url,
        openai_url,
        fireworks_url,
        anthropic_header,
        openai_header,
        fireworks_header,
        openai_account,
    } = args;
    let mut out = ProviderChoices::default();
    let mut account = openai_account;
    for (provider, kind, key, url, header) in [
        (
            Provider::Anthropic,
            anthropic,
            anthropic_key,
            anthropic_url,
            anthropic_header,
        ),
        (
            Provider::OpenAi,
            openai,
            openai_key,
            openai_url,
            openai_header,
        ),
        (
            Provider::Fireworks,
            fireworks,
            fireworks_key,
            fireworks_url,
            fireworks_header,
        ),
    ] {
        let key = match key {
            Some(k) if k.is_empty() => {
                return Err(CommandError::new(format!(
                    "--{provider}-key is empty; give the key, or - to read it from standard input"
                )))
            }
            Some(k) if k == "-" => Some(KeyInput::Stdin),
            Some(k) => Some(KeyInput::Value(SecretString::from(k))),
            None => None,
        };
        if kind != Some(SourceKind::Custom) {
            for (flag, given) in [("url", url.is_some()), ("header", header.is_some())] {
                if given {
                    return Err(CommandError::new(format!(
                        "--{provider}-{flag} is only used with --{provider}=custom; add --{provider}=custom or remove --{provider}-{flag}"
                    )));
                }
            }
        }
        let choice = match kind {
            None => {
                if key.is_some() {
                    return Err(CommandError::new(format!(
                        "--{provider}-key is only used with --{provider}=byok or --{provider}=custom; add --{provider}=byok or remove --{provider}-key"
                    )));
                }
                None
            }
            Some(kind) => {
                if kind == SourceKind::Chatgpt && provider != Provider::OpenAi {
                    return Err(CommandError::new(format!(
                        "--{provider}=chatgpt: a ChatGPT subscription can only be the openai source; \
use gateway, byok, custom or disabled for {provider}"
                    )));
                }
                if key.is_some() && !matches!(kind, SourceKind::Byok | SourceKind::Custom) {
                    return Err(CommandError::new(format!(
                        "--{provider}-key is only used with --{provider}=byok or --{provider}=custom, not --{provider}={kind}; \
use --{provider}=byok or remove --{provider}-key"
                    )));
                }
                Some(match kind {
                    SourceKind::Gateway => SourceChoice::Gateway,
                    SourceKind::Disabled => SourceChoice::Disabled,
                    SourceKind::Byok => {
                        if key.is_none() && adding {
                            return Err(CommandError::new(format!(
                                "--{provider}=byok needs the key: add --{provider}-key=KEY, \
or --{provider}-key=- to read it from standard input"
                            )));
                        }
                        SourceChoice::Byok(key)
                    }
                    SourceKind::Custom => custom_choice(provider, adding, url, key, header)?,
                    SourceKind::Chatgpt => {
                        if let Some(team) = team {
                            return Err(CommandError::new(format!(
                                "--openai=chatgpt: team integrations (--team {team}) cannot use a ChatGPT subscription; \
use --openai=gateway or --openai=byok"
                            )));
                        }
                        let Some(name) = account.take() else {
                            return Err(CommandError::new(
                                "--openai=chatgpt needs --openai-account=ACCOUNT; \
connect an account first with `integrations setup chatgpt --name ACCOUNT`",
                            ));
                        };
                        SourceChoice::Chatgpt(name)
                    }
                })
            }
        };
        *out.slot(provider) = choice;
    }
    if account.is_some() {
        return Err(CommandError::new(
            "--openai-account is only used with --openai=chatgpt; add --openai=chatgpt or remove --openai-account",
        ));
    }
    Ok(out)
}

/// `--P=custom` with its URL and authentication flags.
fn custom_choice(
    provider: Provider,
    adding: bool,
    url: Option<String>,
    key: Option<KeyInput>,
    header: Option<String>,
) -> Result<SourceChoice, CommandError> {
    let url = match url {
        Some(u) => Some(
            u.parse::<EndpointUrl>()
                .map_err(|e| CommandError::new(format!("--{provider}-url: {e}")))?,
        ),
        None if adding => {
            return Err(CommandError::new(format!(
                "--{provider}=custom needs the endpoint: add --{provider}-url=https://HOST/v1"
            )))
        }
        None => None,
    };
    let auth = match (key, header) {
        (Some(_), Some(_)) => {
            return Err(CommandError::new(format!(
                "give --{provider}-key (sent as Authorization: Bearer) or --{provider}-header, not both"
            )))
        }
        (Some(key), None) => Some(EndpointAuthInput::Bearer(key)),
        (None, Some(header)) => {
            let Some((name, value)) = header.split_once(':') else {
                return Err(CommandError::new(format!(
                    "--{provider}-header needs 'Name: value' (or 'Name: -' to read the value from standard input)"
                )));
            };
            let name = crate::check_endpoint_header(name.trim())
                .map_err(|e| {
                    let e = e.to_string().replace("--PROVIDER-", &format!("--{provider}-"));
                    CommandError::new(format!("--{provider}-header: {e}"))
                })?;
            let value = match value.trim() {
                "" => {
                    return Err(CommandError::new(format!(
                        "--{provider}-header has no value; give 'Name: value', or 'Name: -' to read it from standard input"
                    )))
                }
                "-" => KeyInput::Stdin,
                v => KeyInput::Value(SecretString::from(v.to_owned())),
            };
            Some(EndpointAuthInput::Header { name, value })
        }
        (None, None) => None,
    };
    Ok(SourceChoice::Custom { url, auth })
}

fn convert(cli: grammar::Cli) -> Result<CommandLine, CommandError> {
    use grammar::{AddType, Integrations, SetupType, Top};
    let reference = |name, team| IntegrationRef { name, team };
    let command = match cli.command {
        Top::Tag(t) => Command::Tag { delete: t.delete, vm: t.vm, tags: t.tags },
        Top::Usage(u) => Command::Usage { since: u.since, by: u.by, team: u.team },
        Top::SshKey(k) => Command::SshKey(match k {
            grammar::SshKeyArgs::Add { key } => SshKeyCommand::Add(check_ssh_key(&key.join(" "))?),
            grammar::SshKeyArgs::List => SshKeyCommand::List,
            grammar::SshKeyArgs::Remove { fingerprint } => {
                SshKeyCommand::Remove(check_fingerprint(&fingerprint)?)
            }
        }),
        Top::LoginLink => Command::LoginLink,
        Top::Integrations(i) => match i {
            Integrations::List => Command::List,
            Integrations::Show(t) => Command::Show(reference(t.name, t.team)),
            Integrations::Remove(t) => Command::Remove(reference(t.name, t.team)),
            Integrations::Rename(r) => {
                if r.name == r.new_name {
                    return Err(CommandError::new(format!(
                        "rename: {} already has that name; give a different NEW_NAME",
                        r.name
                    )));
                }
                Command::Rename { target: reference(r.name, r.team), new_name: r.new_name }
            }
            Integrations::Attach(a) => Command::Attach { target: reference(a.name, a.team), spec: a.spec },
            Integrations::Detach(a) => Command::Detach { target: reference(a.name, a.team), spec: a.spec },
            Integrations::Test(t) => Command::Test { target: reference(t.name, t.team), provider: t.provider },
            Integrations::Add(AddType::Llm(a)) => {
                let providers = provider_choices(a.providers, a.team.as_ref(), true)?;
                Command::AddLlm(AddLlm {
                    name: a.name,
                    team: a.team,
                    providers,
                    translate: a.translate,
                    comment: check_comment(a.comment)?,
                    attach: dedup(a.attach),
                })
            }
            Integrations::Add(AddType::Reflection(a)) => Command::AddReflection(AddReflection {
                name: a.name,
                team: a.team,
                fields: a.fields.unwrap_or_default(),
                comment: check_comment(a.comment)?,
                attach: dedup(a.attach),
            }),
            Integrations::Edit(e) => {
                let providers = provider_choices(e.providers, e.team.as_ref(), false)?;
                if e.fields.is_some() && (!providers.is_empty() || e.translate.is_some()) {
                    return Err(CommandError::new(
                        "edit: --fields applies to reflection integrations and provider flags (and --translate) to llm integrations; \
give one or the other",
                    ));
                }
                let comment = check_comment(e.comment)?;
                if providers.is_empty() && comment.is_none() && e.fields.is_none() && e.translate.is_none() {
                    return Err(CommandError::new(format!(
                        "edit {}: nothing to change; give --anthropic, --openai, --fireworks, --translate, --comment or --fields \
(see `integrations edit --help`)",
                        e.name
                    )));
                }
                Command::Edit(Edit {
                    target: reference(e.name, e.team),
                    providers,
                    translate: e.translate,
                    comment,
                    fields: e.fields,
                })
            }
            Integrations::Setup(SetupType::Chatgpt(c)) => Command::SetupChatgpt(match (c.name, c.list, c.verify, c.delete) {
                (None, true, false, false) => ChatgptSetup::List,
                (None, false, true, false) => ChatgptSetup::Verify,
                (Some(n), false, false, true) => ChatgptSetup::Delete(n),
                (Some(n), false, false, false) => ChatgptSetup::Connect(n),
                _ => {
                    return Err(CommandError::new(
                        "setup chatgpt: give --name ACCOUNT to connect an account, --list, --verify, \
or --name ACCOUNT --delete",
                    ))
                }
            }),
        },
    };
    Ok(CommandLine {
        command,
        json: cli.json,
    })
}

#[cfg(test)]
mod tests;
