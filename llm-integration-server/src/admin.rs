//! Operator commands: users, teams, VMs and their addresses.
//!
//! They run in the server binary (`llm-integration-server admin …`)
//! directly against the store, authenticated by access to the database and
//! its master key. A running server picks the changes up within its poll
//! interval.

use std::net::IpAddr;

use clap::{Args, Subcommand};
use llm_integration_core::command::{Since, UsageBy};
use llm_integration_core::seams::ControlStore;
use llm_integration_core::{
    IntegrationConfig, IntegrationId, Owner, TagName, TeamName, UserId, Vm, VmId, VmName,
};
use zeroize::Zeroizing;

use crate::crypto::new_access_token;
use crate::executor::ExecError;

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Users and their access tokens.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Teams and their members.
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// VMs, their owners, teams, tags and addresses.
    #[command(subcommand)]
    Vms(VmsCommand),
    /// LLM allocations, in US dollars.
    #[command(subcommand)]
    Allocations(AllocationsCommand),
    /// Any owner's usage.
    Usage {
        /// user:EMAIL or team:NAME.
        owner: OwnerArg,
        /// From when: 30m, 24h, 7d, or a date (2026-11-01).
        #[arg(long, default_value = "30d")]
        since: Since,
        /// Sum per vm, integration, model or provider.
        #[arg(long)]
        by: Option<UsageBy>,
    },
    /// Copy this installation's SQLite database into an empty PostgreSQL database, and verify the copy.
    #[command(
        after_help = "The master key: `admin --master-key-file FILE migrate …` or LLM_INTEGRATION_MASTER_KEY, as the server was started with. See README, Moving an installation to PostgreSQL."
    )]
    Migrate(crate::migrate::MigrateArgs),
}

/// `admin allocations …`
#[derive(Debug, Subcommand)]
pub enum AllocationsCommand {
    /// Show an owner's balance.
    Show {
        /// user:EMAIL or team:NAME.
        owner: OwnerArg,
    },
    /// Set an owner's balance.
    Set {
        /// user:EMAIL or team:NAME.
        owner: OwnerArg,
        /// US dollars.
        usd: f64,
    },
    /// Add to an owner's balance (negative to take away).
    Grant {
        /// user:EMAIL or team:NAME.
        owner: OwnerArg,
        /// US dollars.
        #[arg(allow_hyphen_values = true)]
        usd: f64,
    },
}

/// An owner named on the command line: `user:EMAIL` or `team:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerArg {
    /// A user by email.
    User(String),
    /// A team by name.
    Team(TeamName),
}

impl std::str::FromStr for OwnerArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("user", email)) => check_email(email).map(|()| OwnerArg::User(email.to_owned())),
            Some(("team", name)) => name
                .parse()
                .map(OwnerArg::Team)
                .map_err(|e: llm_integration_core::Error| e.to_string()),
            _ => Err(format!(
                "{s:?} is not an owner; use user:EMAIL or team:NAME"
            )),
        }
    }
}

impl std::fmt::Display for OwnerArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerArg::User(email) => write!(f, "user:{email}"),
            OwnerArg::Team(name) => write!(f, "team:{name}"),
        }
    }
}

async fn owner_of(store: &dyn ControlStore, owner: &OwnerArg) -> Result<Owner, ExecError> {
    Ok(match owner {
        OwnerArg::User(email) => Owner::User(user_id(store, email).await?),
        OwnerArg::Team(name) => Owner::Team(team_id(store, name).await?),
    })
}

/// The largest allocation, in micro-dollars ($1,000,000,000): far below
/// what a 64-bit balance holds, so grants cannot overflow it.
const MAX_BALANCE_MICROS: i64 = 1_000_000_000_000_000;

fn usd_to_micros(usd: f64) -> Result<i64, ExecError> {
    if !usd.is_finite() || usd.abs() > 1e9 {
        return Err(ExecError::Usage(format!(
            "{usd} is not an amount in US dollars"
        )));
    }
    Ok((usd * 1e6).round() as i64)
}

/// `admin users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user with the default integrations; prints their access token once.
    Add {
        /// The user's email.
        email: String,
        /// The user may run operator commands.
        #[arg(long)]
        operator: bool,
    },
    /// List users.
    List,
    /// Delete a user with their VMs, integrations, keys and tokens.
    Remove {
        /// The user's email.
        email: String,
    },
    /// Register an SSH public key for a user (the SSH door's sign-in).
    #[command(
        after_help = "Example:\n  llm-integration-server admin users add-key alice@example.com \"$(cat alice.pub)\""
    )]
    AddKey {
        /// The user's email.
        email: String,
        /// The public key line: ssh-ed25519 AAAA… [comment] (quoted as one
        /// argument, or as separate words).
        #[arg(value_name = "KEY", required = true, num_args = 1..)]
        key: Vec<String>,
    },
    /// Print a one-time sign-in link to the web page for a user (works
    /// once, for 15 minutes).
    #[command(name = "login-link")]
    LoginLink {
        /// The user's email.
        email: String,
        /// The web page's address as the user's browser reaches it (the
        /// admin listener, or the proxy in front of it).
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7701")]
        url: String,
    },
    /// Issue another access token for a user; prints it once.
    Token {
        /// The user's email.
        email: String,
        /// A label for the token.
        #[arg(long, default_value = "")]
        label: String,
    },
}

/// `admin teams …`
#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Create a team.
    Add {
        /// The team's name.
        name: TeamName,
    },
    /// List teams and members.
    List,
    /// Delete a team and its integrations (its VMs leave it).
    Remove {
        /// The team's name.
        name: TeamName,
    },
    /// Add a member.
    AddMember {
        /// The team.
        team: TeamName,
        /// The user's email.
        email: String,
    },
    /// Remove a member.
    RemoveMember {
        /// The team.
        team: TeamName,
        /// The user's email.
        email: String,
    },
}

/// `admin vms …`
#[derive(Debug, Subcommand)]
pub enum VmsCommand {
    /// Register a VM.
    Add(VmAddArgs),
    /// List VMs.
    List,
    /// Change a VM's team, addresses, tags, comment or port.
    Edit(VmEditArgs),
    /// Delete a VM.
    Remove {
        /// The VM.
        name: VmName,
    },
}

/// `admin vms add`
#[derive(Debug, Args)]
pub struct VmAddArgs {
    /// The VM's name.
    pub name: VmName,
    /// The owner's email.
    #[arg(long)]
    pub owner: String,
    /// The VM's team.
    #[arg(long)]
    pub team: Option<TeamName>,
    /// A source address the VM connects from (repeatable).
    #[arg(long = "address", value_name = "IP")]
    pub addresses: Vec<IpAddr>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<TagName>,
    /// A comment.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// The VM's default port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// `admin vms edit`
#[derive(Debug, Args)]
pub struct VmEditArgs {
    /// The VM's name.
    pub name: VmName,
    /// Move the VM into this team.
    #[arg(long, conflicts_with = "no_team")]
    pub team: Option<TeamName>,
    /// Take the VM out of its team.
    #[arg(long)]
    pub no_team: bool,
    /// Replace the VM's addresses (repeatable).
    #[arg(long = "address", value_name = "IP")]
    pub addresses: Vec<IpAddr>,
    /// Replace the VM's tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<TagName>,
    /// A new comment.
    #[arg(long)]
    pub comment: Option<String>,
    /// A new default port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Checks an email address well enough to catch typos.
pub fn check_email(email: &str) -> Result<(), String> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid email {email:?}: use name@domain"))
    }
}

/// Creates a user with the default `llm` and `reflection` integrations and
/// an access token, which is returned (it is stored only hashed).
pub async fn provision_user(
    store: &dyn ControlStore,
    email: &str,
    operator: bool,
) -> Result<(UserId, Zeroizing<String>), ExecError> {
    check_email(email).map_err(ExecError::Usage)?;
    let user = store.create_user(email, operator).await?;
    let owner = Owner::User(user);
    store
        .insert_integration(
            &IntegrationConfig::default_llm(IntegrationId(0), owner),
            Vec::new(),
        )
        .await?;
    store
        .insert_integration(
            &IntegrationConfig::default_reflection(IntegrationId(0), owner),
            Vec::new(),
        )
        .await?;
    let (token, hash) = new_access_token().map_err(|e| ExecError::Unavailable(e.to_string()))?;
    store.add_token(user, &hash, "initial").await?;
    Ok((user, token))
}

async fn user_id(store: &dyn ControlStore, email: &str) -> Result<UserId, ExecError> {
    store
        .accounts()
        .await?
        .into_iter()
        .find(|a| a.user.email == email)
        .map(|a| a.user.id)
        .ok_or_else(|| {
            ExecError::NotFound(format!(
                "no user with email {email}; `admin users list` shows them"
            ))
        })
}

async fn team_id(
    store: &dyn ControlStore,
    name: &TeamName,
) -> Result<llm_integration_core::TeamId, ExecError> {
    store
        .load()
        .await?
        .teams
        .into_iter()
        .find(|t| t.name == *name)
        .map(|t| t.id)
        .ok_or_else(|| {
            ExecError::NotFound(format!(
                "no team named {name}; `admin teams list` shows them"
            ))
        })
}

async fn vm_named(store: &dyn ControlStore, name: &VmName) -> Result<Vm, ExecError> {
    store
        .load()
        .await?
        .vms
        .into_iter()
        .find(|v| v.name == *name)
        .ok_or_else(|| {
            ExecError::NotFound(format!("no VM named {name}; `admin vms list` shows them"))
        })
}

/// Runs an operator command and returns its text answer.
/// `default_allocation` is the balance of an owner never given one.
pub async fn run(
    store: &dyn ControlStore,
    command: AdminCommand,
    default_allocation: i64,
) -> Result<String, ExecError> {
    use crate::usage_report::dollars;
    match command {
        AdminCommand::Migrate(_) => Err(ExecError::Usage(
            "admin migrate runs from the command line (llm-integration-server admin migrate --from PATH --to URL), not against an open store".into(),
        )),
        AdminCommand::Allocations(AllocationsCommand::Show { owner }) => {
            let o = owner_of(store, &owner).await?;
            let balance = store.allocation(o).await?;
            Ok(match balance {
                Some(b) => format!("allocation left for {owner}: {}\n", dollars(b)),
                None => format!(
                    "allocation left for {owner}: {} (the default; never set)\n",
                    dollars(default_allocation)
                ),
            })
        }
        AdminCommand::Allocations(AllocationsCommand::Set { owner, usd }) => {
            let o = owner_of(store, &owner).await?;
            let micros = usd_to_micros(usd)?;
            store.set_allocation(o, micros).await?;
            Ok(format!("allocation set to {}\n", dollars(micros)))
        }
        AdminCommand::Allocations(AllocationsCommand::Grant { owner, usd }) => {
            let o = owner_of(store, &owner).await?;
            let micros = usd_to_micros(usd)?;
            let current = store.allocation(o).await?.unwrap_or(default_allocation);
            if current.saturating_add(micros).abs() > MAX_BALANCE_MICROS {
                return Err(ExecError::Usage(format!(
                    "that would make the allocation {}, beyond the ${} an allocation can hold; use `allocations set`",
                    dollars(current.saturating_add(micros)),
                    MAX_BALANCE_MICROS / 1_000_000
                )));
            }
            let balance = store.grant_allocation(o, micros, default_allocation).await?;
            Ok(format!("allocation now {}\n", dollars(balance)))
        }
        AdminCommand::Usage { owner, since, by } => {
            let o = owner_of(store, &owner).await?;
            let from = since.time(std::time::SystemTime::now());
            let grouping = UsageBy::grouping(by);
            let rows = store.usage_summary(&[o], from, grouping).await?;
            let records = store.load().await?;
            let column = crate::usage_report::KeyColumn::of(by);
            let named: Vec<(String, &llm_integration_core::seams::UsageRow)> = rows
                .iter()
                .map(|r| (column.name(&records, &r.key), r))
                .collect();
            Ok(crate::usage_report::table(
                &format!("usage of {owner} since {since}"),
                column,
                &named,
            ))
        }
        AdminCommand::Users(UsersCommand::Add { email, operator }) => {
            let (_, token) = provision_user(store, &email, operator).await?;
            Ok(format!(
                "created user {email} with the default integrations llm and reflection\naccess token (shown once): {}\n",
                token.as_str()
            ))
        }
        AdminCommand::Users(UsersCommand::List) => {
            let mut out = String::new();
            for a in store.accounts().await? {
                out.push_str(&format!(
                    "{}{}\n",
                    a.user.email,
                    if a.operator { " (operator)" } else { "" }
                ));
            }
            Ok(out)
        }
        AdminCommand::Users(UsersCommand::Remove { email }) => {
            let id = user_id(store, &email).await?;
            store.delete_user(id).await?;
            Ok(format!("removed user {email}\n"))
        }
        AdminCommand::Users(UsersCommand::AddKey { email, key }) => {
            let id = user_id(store, &email).await?;
            let record = crate::ssh::keys::authorized_key(&key.join(" "))
                .map_err(|e| ExecError::Usage(e.replacen("ssh-key add: ", "", 1)))?;
            store.add_ssh_key(id, &record).await?;
            Ok(format!(
                "added SSH key {} for {email}; they can now sign in with `ssh`\n",
                record.fingerprint
            ))
        }
        AdminCommand::Users(UsersCommand::LoginLink { email, url }) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ExecError::Usage(format!(
                    "--url {url:?} is not an http:// or https:// address; give the page's address, e.g. http://127.0.0.1:7701"
                )));
            }
            let id = user_id(store, &email).await?;
            let secret = crate::web::session::mint_login_link(store, id).await?;
            Ok(crate::web::session::login_link_text(&url, &secret))
        }
        AdminCommand::Users(UsersCommand::Token { email, label }) => {
            let id = user_id(store, &email).await?;
            let (token, hash) =
                new_access_token().map_err(|e| ExecError::Unavailable(e.to_string()))?;
            store.add_token(id, &hash, &label).await?;
            Ok(format!(
                "access token for {email} (shown once): {}\n",
                token.as_str()
            ))
        }
        AdminCommand::Teams(TeamsCommand::Add { name }) => {
            store.create_team(&name).await?;
            Ok(format!("created team {name}\n"))
        }
        AdminCommand::Teams(TeamsCommand::List) => {
            let records = store.load().await?;
            let mut out = String::new();
            for t in &records.teams {
                let members: Vec<&str> = records
                    .users
                    .iter()
                    .filter(|u| t.members.contains(&u.id))
                    .map(|u| u.email.as_str())
                    .collect();
                out.push_str(&format!(
                    "{}: {}\n",
                    t.name,
                    if members.is_empty() {
                        "(no members)".to_owned()
                    } else {
                        members.join(", ")
                    }
                ));
            }
            Ok(out)
        }
        AdminCommand::Teams(TeamsCommand::Remove { name }) => {
            let id = team_id(store, &name).await?;
            store.delete_team(id).await?;
            Ok(format!("removed team {name}\n"))
        }
        AdminCommand::Teams(TeamsCommand::AddMember { team, email }) => {
            let (t, u) = (team_id(store, &team).await?, user_id(store, &email).await?);
            store.set_team_member(t, u, true).await?;
            Ok(format!("added {email} to team {team}\n"))
        }
        AdminCommand::Teams(TeamsCommand::RemoveMember { team, email }) => {
            let (t, u) = (team_id(store, &team).await?, user_id(store, &email).await?);
            store.set_team_member(t, u, false).await?;
            Ok(format!("removed {email} from team {team}\n"))
        }
        AdminCommand::Vms(VmsCommand::Add(a)) => {
            let owner = user_id(store, &a.owner).await?;
            let mut vm = Vm::new(VmId(0), a.name.clone(), owner);
            if let Some(t) = &a.team {
                vm.team = Some(team_id(store, t).await?);
            }
            vm.addresses = a.addresses;
            vm.tags = a.tags.into_iter().collect();
            vm.comment = a.comment;
            vm.default_port = a.port;
            store.create_vm(&vm).await?;
            Ok(format!("registered VM {} for {}\n", a.name, a.owner))
        }
        AdminCommand::Vms(VmsCommand::List) => {
            let records = store.load().await?;
            let mut out = String::new();
            for vm in &records.vms {
                let owner = records
                    .users
                    .iter()
                    .find(|u| u.id == vm.owner)
                    .map_or("?", |u| u.email.as_str());
                let team = vm
                    .team
                    .and_then(|t| records.teams.iter().find(|x| x.id == t))
                    .map(|t| t.name.to_string());
                let addresses: Vec<String> = vm.addresses.iter().map(ToString::to_string).collect();
                let tags: Vec<&str> = vm.tags.iter().map(TagName::as_str).collect();
                out.push_str(&format!(
                    "{}\towner={owner}\tteam={}\taddresses={}\ttags={}\n",
                    vm.name,
                    team.as_deref().unwrap_or("-"),
                    if addresses.is_empty() {
                        "-".to_owned()
                    } else {
                        addresses.join(",")
                    },
                    if tags.is_empty() {
                        "-".to_owned()
                    } else {
                        tags.join(",")
                    },
                ));
            }
            Ok(out)
        }
        AdminCommand::Vms(VmsCommand::Edit(e)) => {
            let mut vm = vm_named(store, &e.name).await?;
            if let Some(t) = &e.team {
                vm.team = Some(team_id(store, t).await?);
            }
            if e.no_team {
                vm.team = None;
            }
            if !e.addresses.is_empty() {
                vm.addresses = e.addresses;
            }
            if !e.tags.is_empty() {
                vm.tags = e.tags.into_iter().collect();
            }
            if let Some(c) = e.comment {
                vm.comment = c;
            }
            if e.port.is_some() {
                vm.default_port = e.port;
            }
            store.update_vm(&vm).await?;
            Ok(format!("updated VM {}\n", e.name))
        }
        AdminCommand::Vms(VmsCommand::Remove { name }) => {
            let vm = vm_named(store, &name).await?;
            store.delete_vm(vm.id).await?;
            Ok(format!("removed VM {name}\n"))
        }
    }
}
