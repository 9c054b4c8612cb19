//! The clap definitions of the command language. Private: the public
//! surface is the typed [`super::Command`].

use clap::{Args, Parser, Subcommand};

use super::Switch;
use crate::attachment::AttachmentSpec;
use crate::domain::ReflectionFields;
use crate::names::{AccountName, IntegrationName, TagName, TeamName, VmName};
use crate::provider::Provider;
use crate::source::SourceKind;

#[derive(Debug, Parser)]
#[command(
    name = "llm-integration",
    no_binary_name = true,
    disable_version_flag = true,
    subcommand_required = true,
    arg_required_else_help = true,
    about = "Configure LLM integrations: which providers a VM may call, with which credentials."
)]
pub(super) struct Cli {
    /// Answer in JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Debug, Subcommand)]
// Parsed once per command line: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Top {
    /// List, add, edit and attach integrations.
    #[command(subcommand)]
    Integrations(Integrations),
    /// Add tags to a VM, or remove them with -d.
    #[command(after_help = "Examples:\n  tag devbox llm gpu\n  tag -d devbox gpu")]
    Tag(TagArgs),
    /// Show LLM usage and what is left of the allocation.
    #[command(
        after_help = "Examples:\n  usage\n  usage --since 7d --by model\n  usage --since 2026-11-01 --by vm --team core --json"
    )]
    Usage(UsageArgs),
    /// Print a one-time sign-in link for the web page (valid 15 minutes).
    #[command(name = "login-link")]
    LoginLink,
    /// Add, list and remove the SSH keys you sign in to the SSH door with.
    #[command(subcommand, name = "ssh-key")]
    SshKey(SshKeyArgs),
}

#[derive(Debug, Subcommand)]
pub(super) enum SshKeyArgs {
    /// Register a public key (one line of ~/.ssh/id_ed25519.pub).
    #[command(
        after_help = "Examples:\n  ssh-key add 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… alice@laptop'\n  \
llm-integration ssh-key add \"$(cat ~/.ssh/id_ed25519.pub)\""
    )]
    Add {
        /// The public key: its type, its base64 and an optional comment
        /// (quoted as one argument, or as separate words).
        #[arg(value_name = "KEY", required = true, num_args = 1.., allow_hyphen_values = true)]
        key: Vec<String>,
    },
    /// List your SSH keys with their fingerprints.
    List,
    /// Remove one of your SSH keys by its fingerprint (as `ssh-key list` shows it).
    Remove {
        /// SHA256:… as `ssh-key list` or `ssh-keygen -l -f KEY` prints it.
        #[arg(value_name = "FINGERPRINT")]
        fingerprint: String,
    },
}

#[derive(Debug, Args)]
pub(super) struct UsageArgs {
    /// From when: a duration back from now (30m, 24h, 7d) or a date (2026-11-01, UTC).
    #[arg(long, value_name = "WHEN", default_value = "30d")]
    pub since: super::Since,
    /// Sum per vm, integration, model or provider (default: one total).
    #[arg(long, value_name = "GROUP")]
    pub by: Option<super::UsageBy>,
    /// A team's usage instead of yours.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
}

#[derive(Debug, Subcommand)]
pub(super) enum Integrations {
    /// List your integrations and your teams'.
    List,
    /// Add an integration.
    #[command(subcommand)]
    Add(AddType),
    /// Change an integration's providers, keys, comment or fields.
    #[command(
        after_help = "Examples:\n  integrations edit llm --openai=disabled\n  \
printf '%s' \"$ANTHROPIC_API_KEY\" | llm-integration integrations edit llm --anthropic=byok --anthropic-key=-"
    )]
    Edit(EditArgs),
    /// Show one integration.
    Show(TargetArgs),
    /// Remove an integration.
    Remove(TargetArgs),
    /// Rename an integration (its hostname changes with it).
    Rename(RenameArgs),
    /// Attach an integration to a VM, a tag, or every VM.
    #[command(
        after_help = "Examples:\n  integrations attach llm vm:devbox\n  integrations attach llm tag:llm\n  integrations attach llm auto:all"
    )]
    Attach(AttachArgs),
    /// Detach an integration from a VM, a tag, or every VM.
    Detach(AttachArgs),
    /// Connect and manage ChatGPT accounts.
    #[command(subcommand)]
    Setup(SetupType),
    /// Check that an integration's stored API keys work.
    Test(TestArgs),
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub(super) enum AddType {
    /// Add an LLM integration. Providers not named default to the gateway.
    #[command(
        after_help = "Examples:\n  integrations add llm --name llm --attach auto:all\n  \
printf '%s' \"$OPENAI_API_KEY\" | llm-integration integrations add llm --name openai-key \
--openai=byok --openai-key=- --anthropic=disabled --fireworks=disabled --attach tag:llm\n  \
printf '%s' \"$TOKEN\" | llm-integration integrations add llm --name local \
--openai=custom --openai-url=https://models.example.com/v1 --openai-key=-\n\n\
SRC is one of: gateway (managed credentials, metered), byok (your API key), \
chatgpt (a connected ChatGPT account, openai only), custom (your own HTTPS endpoint: \
--P-url=URL, and --P-key=TOKEN for a bearer token or --P-header='Name: value'), disabled."
    )]
    Llm(LlmArgs),
    /// Add a reflection integration (what a VM may learn about itself).
    #[command(
        after_help = "Example:\n  integrations add reflection --name reflection --fields all --attach auto:all"
    )]
    Reflection(ReflectionArgs),
}

#[derive(Debug, Args)]
pub(super) struct ProviderArgs {
    /// Anthropic's source.
    #[arg(long, value_name = "SRC")]
    pub anthropic: Option<SourceKind>,
    /// OpenAI's source.
    #[arg(long, value_name = "SRC")]
    pub openai: Option<SourceKind>,
    /// Fireworks' source.
    #[arg(long, value_name = "SRC")]
    pub fireworks: Option<SourceKind>,
    /// Anthropic API key for --anthropic=byok (or bearer token for --anthropic=custom); - reads it from standard input.
    #[arg(long = "anthropic-key", value_name = "KEY|-")]
    pub anthropic_key: Option<String>,
    /// OpenAI API key for --openai=byok (or bearer token for --openai=custom); - reads it from standard input.
    #[arg(long = "openai-key", value_name = "KEY|-")]
    pub openai_key: Option<String>,
    /// Fireworks API key for --fireworks=byok (or bearer token for --fireworks=custom); - reads it from standard input.
    #[arg(long = "fireworks-key", value_name = "KEY|-")]
    pub fireworks_key: Option<String>,
    /// Anthropic-compatible endpoint's base URL for --anthropic=custom.
    #[arg(long = "anthropic-url", value_name = "URL")]
    pub anthropic_url: Option<String>,
    /// OpenAI-compatible endpoint's base URL for --openai=custom.
    #[arg(long = "openai-url", value_name = "URL")]
    pub openai_url: Option<String>,
    /// Fireworks-compatible endpoint's base URL for --fireworks=custom.
    #[arg(long = "fireworks-url", value_name = "URL")]
    pub fireworks_url: Option<String>,
    /// A header the Anthropic endpoint authenticates with ('Name: value'; 'Name: -' reads the value from standard input).
    #[arg(long = "anthropic-header", value_name = "'NAME: VALUE|-'")]
    pub anthropic_header: Option<String>,
    /// A header the OpenAI endpoint authenticates with ('Name: value'; 'Name: -' reads the value from standard input).
    #[arg(long = "openai-header", value_name = "'NAME: VALUE|-'")]
    pub openai_header: Option<String>,
    /// A header the Fireworks endpoint authenticates with ('Name: value'; 'Name: -' reads the value from standard input).
    #[arg(long = "fireworks-header", value_name = "'NAME: VALUE|-'")]
    pub fireworks_header: Option<String>,
    /// The connected ChatGPT account for --openai=chatgpt.
    #[arg(long = "openai-account", value_name = "ACCOUNT")]
    pub openai_account: Option<AccountName>,
}

#[derive(Debug, Args)]
pub(super) struct LlmArgs {
    /// The integration's name; VMs reach it at NAME.int.DOMAIN.
    #[arg(long)]
    pub name: IntegrationName,
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// Protocol translation: an Anthropic client (Claude Code) may use OpenAI models and an OpenAI client (Codex) Claude models, translated by the gateway (on, the default), or is told which endpoint to use (off).
    #[arg(long, value_name = "on|off")]
    pub translate: Option<Switch>,
    /// Make it a team integration (NAME.team.DOMAIN) of TEAM.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
    /// A comment.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Where it applies: vm:NAME, tag:NAME or auto:all (repeatable).
    #[arg(long, value_name = "SPEC")]
    pub attach: Vec<AttachmentSpec>,
}

#[derive(Debug, Args)]
pub(super) struct ReflectionArgs {
    /// The integration's name; VMs reach it at NAME.int.DOMAIN.
    #[arg(long)]
    pub name: IntegrationName,
    /// What it exposes: all, or a list of email,integrations,tags,comment,default_port.
    #[arg(long, value_name = "all|LIST")]
    pub fields: Option<ReflectionFields>,
    /// Make it a team integration of TEAM.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
    /// A comment.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Where it applies: vm:NAME, tag:NAME or auto:all (repeatable).
    #[arg(long, value_name = "SPEC")]
    pub attach: Vec<AttachmentSpec>,
}

#[derive(Debug, Args)]
pub(super) struct EditArgs {
    /// The integration to change.
    pub name: IntegrationName,
    /// The team that owns it, for a team integration.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// Protocol translation between the API families: on (Claude Code on OpenAI models, Codex on Claude) or off.
    #[arg(long, value_name = "on|off")]
    pub translate: Option<Switch>,
    /// A new comment ("" clears it).
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Reflection integrations: what they expose.
    #[arg(long, value_name = "all|LIST")]
    pub fields: Option<ReflectionFields>,
}

#[derive(Debug, Args)]
pub(super) struct TargetArgs {
    /// The integration.
    pub name: IntegrationName,
    /// The team that owns it, for a team integration.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
}

#[derive(Debug, Args)]
pub(super) struct RenameArgs {
    /// The integration.
    pub name: IntegrationName,
    /// Its new name.
    pub new_name: IntegrationName,
    /// The team that owns it, for a team integration.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
}

#[derive(Debug, Args)]
pub(super) struct AttachArgs {
    /// The integration.
    pub name: IntegrationName,
    /// vm:NAME, tag:NAME or auto:all.
    pub spec: AttachmentSpec,
    /// The team that owns it, for a team integration.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
}

#[derive(Debug, Args)]
pub(super) struct TestArgs {
    /// The integration.
    pub name: IntegrationName,
    /// Test only this provider.
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<Provider>,
    /// The team that owns it, for a team integration.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<TeamName>,
}

#[derive(Debug, Subcommand)]
pub(super) enum SetupType {
    /// Connect a ChatGPT account (device-code login), or list, verify or delete them.
    #[command(
        after_help = "Examples:\n  integrations setup chatgpt --name work\n  integrations setup chatgpt --list\n  \
integrations setup chatgpt --verify\n  integrations setup chatgpt --name work --delete"
    )]
    Chatgpt(ChatgptArgs),
}

#[derive(Debug, Args)]
pub(super) struct ChatgptArgs {
    /// The account's local name.
    #[arg(long, value_name = "ACCOUNT")]
    pub name: Option<AccountName>,
    /// List connected accounts.
    #[arg(long, conflicts_with_all = ["verify", "delete", "name"])]
    pub list: bool,
    /// Check every connected account.
    #[arg(long, conflicts_with_all = ["delete", "name"])]
    pub verify: bool,
    /// Disconnect the account named by --name.
    #[arg(long, requires = "name")]
    pub delete: bool,
}

#[derive(Debug, Args)]
pub(super) struct TagArgs {
    /// Remove the tags instead of adding them.
    #[arg(short = 'd', long = "delete")]
    pub delete: bool,
    /// The VM.
    pub vm: VmName,
    /// The tags.
    #[arg(required = true)]
    pub tags: Vec<TagName>,
}
