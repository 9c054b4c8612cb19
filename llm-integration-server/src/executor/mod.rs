//! The command executor: runs the core's typed commands against the store,
//! as a given user, with owner and team permissions enforced.
//!
//! *API boundary*: every door (`POST /exec`, the CLI through it, SSH, and
//! later the web page) calls [`Executor::execute`]; none of them
//! interprets a command itself. Each configuration change reloads the live
//! snapshot before the answer is returned, so the data plane routes on it
//! from the next request.

mod render;

use std::sync::Arc;

use llm_integration_core::command::{
    AddLlm, AddReflection, ChatgptSetup, Command, CommandLine, Edit, EndpointAuthInput,
    IntegrationRef, KeyInput, ProviderChoices, SourceChoice,
};
use llm_integration_core::endpoint::EndpointUrl;
use llm_integration_core::seams::{ControlStore, NewCredential, StoreError};
use llm_integration_core::{
    AttachmentSpec, ConfigRecords, CredentialId, EndpointAuth, IntegrationConfig, IntegrationId,
    IntegrationKind, KeyHint, LlmSettings, Owner, Provider, ReflectionSettings, SecretString,
    Source, UserId,
};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::crypto::{purpose, MasterKey};
use crate::live::LiveConfig;
use crate::provider_check::ProviderCheck;

pub use render::integration_json;

/// What a command answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The plain-text answer.
    pub text: String,
    /// The JSON answer (`--json`).
    pub json: Value,
    /// The command ran but reported a failure (e.g. `integrations test`
    /// found a key the provider refuses).
    pub failed: bool,
}

impl Answer {
    fn ok(text: impl Into<String>, json: Value) -> Self {
        Answer {
            text: text.into(),
            json,
            failed: false,
        }
    }
}

/// What the web page's forms offer a user (see [`Executor::page_context`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageContext {
    /// The user's email.
    pub email: String,
    /// The teams the user is a member of, by name.
    pub teams: Vec<String>,
    /// The user's VMs and their teams' VMs, by name (what a `vm:`
    /// attachment may name; the executor checks which scope each fits).
    pub vms: Vec<String>,
    /// The tags on the user's VMs.
    pub tags: Vec<String>,
    /// The user's connected ChatGPT accounts, by name.
    pub chatgpt_accounts: Vec<String>,
    /// The domain integration hostnames end in (`int.DOMAIN`, `team.DOMAIN`).
    pub domain: String,
}

/// Why a command did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The command line is wrong (400, CLI exit 2).
    #[error("{0}")]
    Usage(String),
    /// What it names does not exist for this user (404).
    #[error("{0}")]
    NotFound(String),
    /// It would break a uniqueness rule (409).
    #[error("{0}")]
    Conflict(String),
    /// The store or a dependency is unavailable (503).
    #[error("{0}")]
    Unavailable(String),
}

impl ExecError {
    /// The HTTP status of this error on `/exec`.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ExecError::Usage(_) => http::StatusCode::BAD_REQUEST,
            ExecError::NotFound(_) => http::StatusCode::NOT_FOUND,
            ExecError::Conflict(_) => http::StatusCode::CONFLICT,
            ExecError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A machine-readable kind, for JSON answers.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::Usage(_) => "usage",
            ExecError::NotFound(_) => "not_found",
            ExecError::Conflict(_) => "conflict",
            ExecError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ExecError::Conflict(m),
            StoreError::NotFound(m) => ExecError::NotFound(m),
            other => {
                tracing::error!(error = %other, "store error while executing a command");
                ExecError::Unavailable(
                    "the configuration store is unavailable; nothing was changed, try again".into(),
                )
            }
        }
    }
}

/// Runs commands.
pub struct Executor {
    store: Arc<dyn ControlStore>,
    live: Arc<LiveConfig>,
    key: Arc<MasterKey>,
    check: ProviderCheck,
    /// The allocation of an owner never given one (for `usage`).
    default_allocation: i64,
    /// ChatGPT logins and tokens.
    chatgpt: Arc<crate::chatgpt::ChatGpt>,
    /// One configuration change at a time: each command reads, decides and
    /// writes without another command's write in between.
    write_lock: tokio::sync::Mutex<()>,
    /// The usage ledger, flushed before a usage report is read.
    ledger: Option<crate::metering::Ledger>,
    /// Usage reports read at once: a report scans the ledger, and however
    /// many are asked for, the store keeps connections for the data
    /// plane's balance reads and for configuration writes.
    reports: tokio::sync::Semaphore,
    /// Custom endpoints: the address policy, the resolver, and a client
    /// for `integrations test` (the data plane's rules).
    endpoints: Option<(
        crate::dataplane::EndpointOptions,
        crate::endpoints::EndpointClient,
    )>,
    /// Whether this server has the platform's key for each provider (for
    /// `integrations test`); all, unless told.
    gateway_keys: llm_integration_core::PerProvider<bool>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// Polls until the device code is approved, denied or expired, then
/// stores the tokens. Gives up when the client goes away.
async fn wait_for_login(
    chatgpt: &crate::chatgpt::ChatGpt,
    device: &crate::chatgpt::DeviceCode,
    user: UserId,
    name: &llm_integration_core::AccountName,
    progress: &tokio::sync::mpsc::Sender<String>,
) -> Result<String, String> {
    use crate::chatgpt::Poll;
    let deadline = tokio::time::Instant::now() + crate::chatgpt::DEVICE_CODE_LIFETIME;
    let mut interval = device.interval;
    loop {
        tokio::time::sleep(interval).await;
        if progress.is_closed() {
            return Err("the client went away".into());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for authorization; run `integrations setup chatgpt --name {name}` again"));
        }
        match chatgpt.poll(device).await? {
            Poll::Pending => {}
            Poll::SlowDown => interval += std::time::Duration::from_secs(5),
            Poll::Expired => {
                return Err(format!("the code expired before it was approved; run `integrations setup chatgpt --name {name}` again"))
            }
            Poll::Denied => {
                return Err(format!(
                    "the authorization was denied in ChatGPT; run `integrations setup chatgpt --name {name}` again and approve it"
                ))
            }
            Poll::Approved { code, verifier } => {
                let tokens = chatgpt.exchange(&code, &verifier).await?;
                // Cancelled (the receiver closed) while ChatGPT answered:
                // nothing is connected.
                if progress.is_closed() {
                    return Err("the login was cancelled; nothing was connected".into());
                }
                chatgpt.save(user, name, &tokens, "connected").await?;
                return Ok(format!(
                    "plan {}, {}",
                    tokens.plan.as_deref().unwrap_or("unknown"),
                    tokens.email.as_deref().unwrap_or("email unknown")
                ));
            }
        }
    }
}

/// The key of `provider` from standard input: the whole input when one key
/// is read, else its line (keys are read in the order anthropic, openai,
/// fireworks, one per line).
/// `scheme://host:port` of an endpoint: where a stored secret may go.
fn origin(url: &EndpointUrl) -> String {
    let scheme = if url.is_plain_http() { "http" } else { "https" };
    let host = match url.host() {
        llm_integration_core::endpoint::EndpointHost::Name(n) => n.to_owned(),
        llm_integration_core::endpoint::EndpointHost::Address(std::net::IpAddr::V6(a)) => {
            format!("[{a}]")
        }
        llm_integration_core::endpoint::EndpointHost::Address(a) => a.to_string(),
    };
    format!("{scheme}://{host}:{}", url.port())
}

fn stdin_key(
    choices: &ProviderChoices,
    stdin: &Option<SecretString>,
    provider: Provider,
) -> Result<SecretString, ExecError> {
    let text = stdin.as_ref().map(|s| s.expose_secret()).unwrap_or("");
    let wanted = choices.stdin_providers();
    if wanted.len() == 1 {
        return Ok(SecretString::from(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() != wanted.len() {
        let order: Vec<&str> = wanted.iter().map(|p| p.as_str()).collect();
        return Err(ExecError::Usage(format!(
            "{} keys are read from standard input, one line each in the order {}, but it holds {} non-empty line(s)",
            wanted.len(),
            order.join(", "),
            lines.len()
        )));
    }
    let index = wanted.iter().position(|p| *p == provider).unwrap_or(0);
    Ok(SecretString::from(lines[index].to_owned()))
}

/// What a command sees of the world: the records, loaded fresh, and who runs it.
struct Ctx {
    records: ConfigRecords,
    user: UserId,
    domain: String,
}

impl Ctx {
    fn owner(&self, team: Option<&llm_integration_core::TeamName>) -> Result<Owner, ExecError> {
        let Some(name) = team else {
            return Ok(Owner::User(self.user));
        };
        self.records
            .teams
            .iter()
            .find(|t| t.name == *name && t.members.contains(&self.user))
            .map(|t| Owner::Team(t.id))
            .ok_or_else(|| {
                ExecError::NotFound(format!(
                    "you are not a member of a team named {name}; `integrations list` shows your teams' integrations"
                ))
            })
    }

    fn integration(&self, target: &IntegrationRef) -> Result<&IntegrationConfig, ExecError> {
        let owner = self.owner(target.team.as_ref())?;
        self.records
            .integrations
            .iter()
            .find(|i| i.owner == owner && i.name == target.name)
            .ok_or_else(|| {
                ExecError::NotFound(match &target.team {
                    None => format!(
                        "you have no integration named {}; `integrations list` shows yours",
                        target.name
                    ),
                    Some(t) => format!(
                        "team {t} has no integration named {}; `integrations list` shows yours",
                        target.name
                    ),
                })
            })
    }

    /// The owner of a new integration named `name`, once its name is free and
    /// its attachments are in scope.
    fn new_integration(
        &self,
        team: Option<&llm_integration_core::TeamName>,
        name: &llm_integration_core::IntegrationName,
        attach: &[AttachmentSpec],
    ) -> Result<Owner, ExecError> {
        let owner = self.owner(team)?;
        if self.name_taken(owner, name) {
            return Err(ExecError::Conflict(format!(
                "an integration named {name} already exists; pick another --name, or change it with `integrations edit {name}`"
            )));
        }
        for spec in attach {
            self.check_attachment(owner, spec)?;
        }
        Ok(owner)
    }

    fn name_taken(&self, owner: Owner, name: &llm_integration_core::IntegrationName) -> bool {
        self.records
            .integrations
            .iter()
            .any(|i| i.owner == owner && i.name == *name)
    }

    fn team_name(&self, owner: Owner) -> Option<String> {
        match owner {
            Owner::Team(t) => self
                .records
                .teams
                .iter()
                .find(|x| x.id == t)
                .map(|x| x.name.to_string()),
            Owner::User(_) => None,
        }
    }

    /// `vm:NAME` must name a VM the integration's owner scope contains.
    fn check_attachment(&self, owner: Owner, spec: &AttachmentSpec) -> Result<(), ExecError> {
        let AttachmentSpec::Vm(name) = spec else {
            return Ok(());
        };
        let in_scope = self.records.vms.iter().any(|vm| {
            vm.name == *name
                && match owner {
                    Owner::User(u) => vm.owner == u,
                    Owner::Team(t) => vm.team == Some(t),
                }
        });
        if in_scope {
            return Ok(());
        }
        Err(ExecError::NotFound(match owner {
            Owner::User(_) => format!("you have no VM named {name}; vm: attachments of a personal integration name one of your VMs"),
            Owner::Team(_) => format!("the team has no VM named {name}; vm: attachments of a team integration name one of the team's VMs"),
        }))
    }
}

impl Executor {
    /// An executor over `store`, reloading `live` after every change.
    pub fn new(
        store: Arc<dyn ControlStore>,
        live: Arc<LiveConfig>,
        key: Arc<MasterKey>,
        check: ProviderCheck,
        default_allocation: i64,
        chatgpt: Arc<crate::chatgpt::ChatGpt>,
    ) -> Self {
        Executor {
            chatgpt,
            store,
            live,
            key,
            check,
            default_allocation,
            write_lock: tokio::sync::Mutex::new(()),
            ledger: None,
            reports: tokio::sync::Semaphore::new(1),
            gateway_keys: llm_integration_core::PerProvider::from_fn(|_| true),
            endpoints: None,
        }
    }

    /// Checks custom endpoints by `options` (at configuration time, and
    /// in `integrations test`). Without it, every custom endpoint is
    /// checked as public-only with the system's resolver.
    ///
    /// # Errors
    /// A message when an extra trusted root is not a usable certificate.
    pub fn with_endpoints(
        mut self,
        options: crate::dataplane::EndpointOptions,
        limits: &crate::dataplane::Limits,
    ) -> Result<Self, String> {
        let client = crate::endpoints::endpoint_client(
            limits,
            options.policy.clone(),
            options.resolver.clone(),
            &options.extra_roots,
        )?;
        self.endpoints = Some((options, client));
        Ok(self)
    }

    fn endpoint_options(&self) -> crate::dataplane::EndpointOptions {
        self.endpoints
            .as_ref()
            .map(|(o, _)| o.clone())
            .unwrap_or_default()
    }

    /// Which providers this server has the platform's key for, so that
    /// `integrations test` tells a `gateway` source that cannot work.
    pub fn with_gateway_keys(mut self, present: llm_integration_core::PerProvider<bool>) -> Self {
        self.gateway_keys = present;
        self
    }

    /// Flushes `ledger` before every usage report, so `usage` counts every
    /// request that has finished.
    pub fn with_ledger(mut self, ledger: crate::metering::Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Runs `line` as `user`. `stdin` is what the door read from standard
    /// input, for a `-` key.
    pub async fn execute(
        &self,
        user: UserId,
        line: &CommandLine,
        stdin: Option<SecretString>,
    ) -> Result<Answer, ExecError> {
        let command = &line.command;
        if command.reads_stdin() && stdin.as_ref().is_none_or(|s| s.expose_secret().is_empty()) {
            let provider = command
                .stdin_providers()
                .first()
                .map_or("openai", |p| p.as_str());
            return Err(ExecError::Usage(format!(
                "this command reads the {provider} key from standard input (-), but none was given; pipe it in, e.g. \
printf '%s' \"${}_API_KEY\" | llm-integration integrations edit NAME --{provider}-key=-",
                provider.to_uppercase()
            )));
        }
        let _guard = if command.is_read_only() {
            None
        } else {
            Some(self.write_lock.lock().await)
        };
        let snapshot = self.live.snapshot();
        let ctx = Ctx {
            records: self.store.load().await?,
            user,
            domain: snapshot.domain().to_owned(),
        };
        let answer = match command {
            Command::List => render::list(&ctx),
            Command::Show(target) => {
                let i = ctx.integration(target)?;
                let view = integration_json(i, &ctx.domain, ctx.team_name(i.owner));
                Answer::ok(render::show_text(&view), view)
            }
            Command::AddLlm(add) => self.add_llm(&ctx, add, stdin).await?,
            Command::AddReflection(add) => self.add_reflection(&ctx, add).await?,
            Command::Edit(edit) => self.edit(&ctx, edit, stdin).await?,
            Command::Remove(target) => {
                let i = ctx.integration(target)?;
                self.store.delete_integration(i.id).await?;
                self.changed().await?;
                Answer::ok(
                    format!("removed integration {}\n", i.name),
                    json!({"ok": true, "removed": i.name}),
                )
            }
            Command::Rename { target, new_name } => {
                let i = ctx.integration(target)?;
                if ctx.name_taken(i.owner, new_name) {
                    return Err(ExecError::Conflict(format!(
                        "an integration named {new_name} already exists; pick another name or remove that one first"
                    )));
                }
                let mut renamed = i.clone();
                renamed.name = new_name.clone();
                self.store.update_integration(&renamed, Vec::new()).await?;
                self.changed().await?;
                let view = integration_json(&renamed, &ctx.domain, ctx.team_name(renamed.owner));
                let text = format!(
                    "renamed {} to {new_name}; VMs now reach it at {}\n",
                    i.name,
                    view["hostname"].as_str().unwrap_or("")
                );
                Answer::ok(text, json!({"ok": true, "integration": view}))
            }
            Command::Attach { target, spec } => {
                let i = ctx.integration(target)?;
                if i.attachments.contains(spec) {
                    return Err(ExecError::Conflict(format!(
                        "{} is already attached to {spec}",
                        i.name
                    )));
                }
                ctx.check_attachment(i.owner, spec)?;
                let mut changed = i.clone();
                changed.attachments.push(spec.clone());
                self.store.update_integration(&changed, Vec::new()).await?;
                self.changed().await?;
                let view = integration_json(&changed, &ctx.domain, ctx.team_name(changed.owner));
                Answer::ok(
                    format!("attached {} to {spec}\n", i.name),
                    json!({"ok": true, "integration": view}),
                )
            }
            Command::Detach { target, spec } => {
                let i = ctx.integration(target)?;
                if !i.attachments.contains(spec) {
                    let now = render::attachments_text(&i.attachments);
                    return Err(ExecError::NotFound(format!(
                        "{} is not attached to {spec}; it is attached to: {now}",
                        i.name
                    )));
                }
                let mut changed = i.clone();
                changed.attachments.retain(|a| a != spec);
                self.store.update_integration(&changed, Vec::new()).await?;
                self.changed().await?;
                let view = integration_json(&changed, &ctx.domain, ctx.team_name(changed.owner));
                Answer::ok(
                    format!("detached {} from {spec}\n", i.name),
                    json!({"ok": true, "integration": view}),
                )
            }
            Command::Test { target, provider } => self.test(&ctx, target, *provider).await?,
            Command::SetupChatgpt(setup) => self.chatgpt(&ctx, setup).await?,
            Command::Tag { delete, vm, tags } => self.tag(&ctx, *delete, vm, tags).await?,
            Command::Usage { since, by, team } => {
                self.usage(&ctx, *since, *by, team.as_ref()).await?
            }
            Command::SshKey(key) => self.ssh_key(ctx.user, key).await?,
            Command::LoginLink => {
                return Err(ExecError::Usage(
                    "`login-link` prints a link to this server's web page; run it through `POST /exec` or the CLI, which know the page's address"
                        .into(),
                ))
            }
            other => {
                return Err(ExecError::Usage(format!(
                    "`{other}` is not supported by this server"
                )))
            }
        };
        Ok(answer)
    }

    /// `ssh-key add|list|remove`: the keys `user` signs in to the SSH door
    /// with. Keys are public, but their comments are the user's text, so
    /// they are shown escaped.
    async fn ssh_key(
        &self,
        user: UserId,
        command: &llm_integration_core::command::SshKeyCommand,
    ) -> Result<Answer, ExecError> {
        use llm_integration_core::command::SshKeyCommand;
        use llm_integration_core::redact::printable_line;
        let view = |k: &llm_integration_core::seams::SshKeyRecord| {
            json!({"fingerprint": k.fingerprint, "type": k.public_key.split(' ').next().unwrap_or(""),
                   "comment": k.comment})
        };
        Ok(match command {
            SshKeyCommand::Add(line) => {
                let record = crate::ssh::keys::authorized_key(line).map_err(ExecError::Usage)?;
                // Yours is said to be yours; another account's is refused
                // without saying whose, or that it is another's.
                match self.store.user_by_ssh_key(&record.fingerprint).await? {
                    Some(owner) if owner == user => {
                        return Err(ExecError::Conflict(format!(
                            "SSH key {} is registered to you already; `ssh-key list` shows it",
                            record.fingerprint
                        )))
                    }
                    Some(_) => {
                        return Err(ExecError::Conflict(
                            "that SSH key cannot be registered; make a new one with `ssh-keygen -t ed25519` and add its .pub line"
                                .into(),
                        ))
                    }
                    None => {}
                }
                self.store.add_ssh_key(user, &record).await?;
                Answer::ok(
                    format!(
                        "added SSH key {} {}\n",
                        record.fingerprint,
                        printable_line(&record.comment)
                    )
                    .replace(" \n", "\n"),
                    json!({"ok": true, "key": view(&record)}),
                )
            }
            SshKeyCommand::List => {
                let keys = self.store.ssh_keys(user).await?;
                let text = if keys.is_empty() {
                    "no SSH keys; add one with `ssh-key add \"$(cat ~/.ssh/id_ed25519.pub)\"`\n"
                        .to_owned()
                } else {
                    keys.iter()
                        .map(|k| {
                            format!(
                                "{}  {}  {}\n",
                                k.fingerprint,
                                k.public_key.split(' ').next().unwrap_or(""),
                                printable_line(&k.comment)
                            )
                            .replace("  \n", "\n")
                        })
                        .collect()
                };
                Answer::ok(
                    text,
                    json!({"keys": keys.iter().map(view).collect::<Vec<_>>()}),
                )
            }
            SshKeyCommand::Remove(fingerprint) => {
                self.store.delete_ssh_key(user, fingerprint).await?;
                Answer::ok(
                    format!("removed SSH key {fingerprint}\n"),
                    json!({"ok": true, "removed": fingerprint}),
                )
            }
        })
    }

    /// `login-link` as `user`: a one-time sign-in link to the web page at
    /// `base` (the door's own origin, e.g. `http://127.0.0.1:7701`).
    pub async fn login_link(&self, user: UserId, base: &str) -> Result<Answer, ExecError> {
        let secret = crate::web::session::mint_login_link(self.store.as_ref(), user).await?;
        let url = format!(
            "{}/login?link={}",
            base.trim_end_matches('/'),
            secret.as_str()
        );
        Ok(Answer::ok(
            crate::web::session::login_link_text(base, &secret),
            json!({"url": url, "expires_in": crate::web::session::LOGIN_LINK_LIFETIME.as_secs()}),
        ))
    }

    /// Checks a pasted `key` against `provider` before anything is saved
    /// (the web page's `Test`): the key's form first, with the same words
    /// as a command, then one model-list request to the provider. `Ok` is
    /// the provider's answer in brief; `Err` says what is wrong. Neither
    /// contains the key.
    pub async fn check_key(
        &self,
        provider: Provider,
        key: &SecretString,
    ) -> Result<String, String> {
        self.seal_key(provider, key).map_err(|e| e.to_string())?;
        let key = SecretString::from(key.expose_secret().trim().to_owned());
        self.check
            .check(provider, &key)
            .await
            .map(|d| llm_integration_core::redact::printable_line(&d).into_owned())
            .map_err(|d| llm_integration_core::redact::printable_line(&d).into_owned())
    }

    /// What the web page's forms offer `user`: the teams they are in, their
    /// VMs with tags, their connected ChatGPT accounts, and the domain
    /// hostnames are made of. Reads only.
    pub async fn page_context(&self, user: UserId) -> Result<PageContext, ExecError> {
        let records = self.store.load().await?;
        let email = records
            .users
            .iter()
            .find(|u| u.id == user)
            .map(|u| u.email.clone())
            .unwrap_or_default();
        let my_teams: Vec<&llm_integration_core::Team> = records
            .teams
            .iter()
            .filter(|t| t.members.contains(&user))
            .collect();
        let teams = my_teams.iter().map(|t| t.name.to_string()).collect();
        let mut tags = std::collections::BTreeSet::new();
        let vms = records
            .vms
            .iter()
            .filter(|v| {
                v.owner == user || v.team.is_some_and(|t| my_teams.iter().any(|m| m.id == t))
            })
            .map(|v| {
                tags.extend(v.tags.iter().map(|t| t.to_string()));
                v.name.to_string()
            })
            .collect();
        let accounts = self
            .store
            .chatgpt_accounts(user)
            .await?
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(PageContext {
            email,
            teams,
            vms,
            tags: tags.into_iter().collect(),
            chatgpt_accounts: accounts,
            domain: self.live.snapshot().domain().to_owned(),
        })
    }

    async fn changed(&self) -> Result<(), ExecError> {
        self.live.reload(true).await.map_err(|e| {
            tracing::error!(error = %e, "configuration saved but the snapshot could not be reloaded");
            ExecError::Unavailable("the change was saved but could not be loaded yet; it takes effect within seconds".into())
        })?;
        Ok(())
    }

    /// Seals a checked secret (an API key, a token, a header value) under
    /// the master key, with its hint.
    fn seal(&self, provider: Provider, text: &str) -> Result<NewCredential, ExecError> {
        let sealed = self
            .key
            .seal(text.as_bytes(), purpose::API_KEY)
            .map_err(|e| ExecError::Unavailable(e.to_string()))?;
        Ok(NewCredential {
            provider,
            sealed,
            hint: KeyHint::of(&SecretString::from(text.to_owned())),
        })
    }

    fn seal_key(&self, provider: Provider, key: &SecretString) -> Result<NewCredential, ExecError> {
        let text = key.expose_secret().trim();
        if text.is_empty() {
            return Err(ExecError::Usage(format!(
                "the {provider} key is empty; give the key itself"
            )));
        }
        if text.chars().any(char::is_control) || text.contains(' ') {
            return Err(ExecError::Usage(format!(
                "the {provider} key contains spaces or control characters; give the key alone, without quotes or newlines"
            )));
        }
        self.seal(provider, text)
    }

    /// Lists a custom endpoint's models with its credential: `Ok(detail)`
    /// when it answers a list, `Err(detail)` saying what failed.
    /// Checks a custom endpoint before anything is saved (the web page's
    /// `Test`): the credential's form with the same words as a command
    /// (`auth` is `None`, `Some((None, token))` for a bearer token or
    /// `Some((Some(header), value))`), the address rule, then one
    /// model-list request. `Ok` says how many models the endpoint lists;
    /// `Err` says what is wrong. Neither contains the credential.
    pub async fn check_endpoint(
        &self,
        provider: Provider,
        url: &EndpointUrl,
        auth: Option<(Option<&str>, &SecretString)>,
    ) -> Result<String, String> {
        let (auth, secret) = match auth {
            None => (EndpointAuth::None, SecretString::from(String::new())),
            Some((None, token)) => {
                let sealed = self.seal_key(provider, token).map_err(|e| e.to_string())?;
                let auth = EndpointAuth::Bearer {
                    credential: CredentialId(0),
                    hint: sealed.hint,
                };
                (
                    auth,
                    SecretString::from(token.expose_secret().trim().to_owned()),
                )
            }
            Some((Some(header), value)) => {
                let name =
                    llm_integration_core::check_endpoint_header(header.trim()).map_err(|e| {
                        e.to_string()
                            .replace("--PROVIDER-", &format!("--{provider}-"))
                    })?;
                let sealed = self
                    .seal_header_value(provider, &name, value)
                    .map_err(|e| e.to_string())?;
                let auth = EndpointAuth::Header {
                    name,
                    credential: CredentialId(0),
                    hint: sealed.hint,
                };
                (
                    auth,
                    SecretString::from(value.expose_secret().trim().to_owned()),
                )
            }
        };
        match self.probe_endpoint(provider, url, &auth, &secret).await {
            Ok(Ok(detail)) => {
                Ok(llm_integration_core::redact::printable_line(&detail).into_owned())
            }
            Ok(Err(detail)) => {
                Err(llm_integration_core::redact::printable_line(&detail).into_owned())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn test_endpoint(
        &self,
        provider: Provider,
        url: &EndpointUrl,
        auth: &EndpointAuth,
    ) -> Result<Result<String, String>, ExecError> {
        let secret = match auth.credential() {
            Some(id) => {
                let sealed = self.store.sealed_credential(id).await?.ok_or_else(|| {
                    ExecError::Unavailable(format!(
                        "the stored {provider} endpoint credential is missing from the store"
                    ))
                })?;
                let plain = self
                    .key
                    .open(&sealed, purpose::API_KEY)
                    .map_err(|e| ExecError::Unavailable(e.to_string()))?;
                SecretString::from(String::from_utf8_lossy(&plain).into_owned())
            }
            None => SecretString::from(String::new()),
        };
        self.probe_endpoint(provider, url, auth, &secret).await
    }

    /// One model-list request to a custom endpoint with `secret`, after
    /// the address rule.
    async fn probe_endpoint(
        &self,
        provider: Provider,
        url: &EndpointUrl,
        auth: &EndpointAuth,
        secret: &SecretString,
    ) -> Result<Result<String, String>, ExecError> {
        let options = self.endpoint_options();
        if let Err(refused) = options
            .policy
            .check_url(url, options.resolver.as_ref())
            .await
        {
            return Ok(Err(refused.to_string()));
        }
        let client = match &self.endpoints {
            Some((_, client)) => client.clone(),
            None => crate::endpoints::endpoint_client(
                &crate::dataplane::Limits::default(),
                options.policy.clone(),
                options.resolver.clone(),
                &[],
            )
            .map_err(ExecError::Unavailable)?,
        };
        let redactor = llm_integration_core::redact::Redactor::new([secret.expose_secret()]);
        Ok(
            match crate::dataplane::models::endpoint_list(
                &client,
                provider,
                url,
                auth,
                secret.expose_secret(),
            )
            .await
            {
                Ok(models) => Ok(format!("{url} answers with {} models", models.len())),
                Err(e) => Err(format!("{url}: {}", redactor.redact(&e))),
            },
        )
    }

    /// Seals a custom endpoint's header value (spaces allowed inside, as
    /// in `Token abc`; not control characters).
    fn seal_header_value(
        &self,
        provider: Provider,
        name: &str,
        value: &SecretString,
    ) -> Result<NewCredential, ExecError> {
        let text = value.expose_secret().trim();
        if text.is_empty() {
            return Err(ExecError::Usage(format!(
                "the value of the {provider} endpoint's {name} header is empty; give 'Name: value'"
            )));
        }
        if !text
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(ExecError::Usage(format!(
                "the value of the {provider} endpoint's {name} header has control or non-ASCII characters; give it on one line"
            )));
        }
        self.seal(provider, text)
    }

    /// The custom source `choice` makes of `current` (what is not given is
    /// kept), with the credential to store, if a new one was given.
    async fn custom_source(
        &self,
        provider: Provider,
        current: &Source,
        url: Option<&EndpointUrl>,
        auth: Option<&EndpointAuthInput>,
        read: impl Fn(&KeyInput) -> Result<SecretString, ExecError>,
        name: &str,
    ) -> Result<(Source, Option<NewCredential>), ExecError> {
        let existing = match current {
            Source::Custom { url, auth } => Some((url, auth)),
            _ => None,
        };
        let url = match (url, existing) {
            (Some(u), _) => u.clone(),
            (None, Some((u, _))) => u.clone(),
            (None, None) => {
                return Err(ExecError::Usage(format!(
                    "--{provider}=custom needs the endpoint: {name} has no {provider} endpoint yet; add --{provider}-url=https://HOST/v1"
                )))
            }
        };
        let options = self.endpoint_options();
        options
            .policy
            .check_url(&url, options.resolver.as_ref())
            .await
            .map_err(|e| ExecError::Usage(format!("--{provider}-url: {e}")))?;
        let (auth, credential) = match auth {
            Some(EndpointAuthInput::Bearer(input)) => {
                let key = self.seal_key(provider, &read(input)?)?;
                let auth = EndpointAuth::Bearer {
                    credential: CredentialId(0),
                    hint: key.hint.clone(),
                };
                (auth, Some(key))
            }
            Some(EndpointAuthInput::Header {
                name: header,
                value,
            }) => {
                let key = self.seal_header_value(provider, header, &read(value)?)?;
                let auth = EndpointAuth::Header {
                    name: header.clone(),
                    credential: CredentialId(0),
                    hint: key.hint.clone(),
                };
                (auth, Some(key))
            }
            None => match existing {
                // A stored secret goes only to the endpoint it was given for.
                Some((old, auth)) if auth.credential().is_some() && origin(old) != origin(&url) => {
                    return Err(ExecError::Usage(format!(
                        "the {provider} endpoint moves from {} to {}: give its credential again (--{provider}-key or --{provider}-header), \
since the stored one is sent only to the endpoint it was given for",
                        origin(old),
                        origin(&url)
                    )));
                }
                Some((_, auth)) => (auth.clone(), None),
                None => (EndpointAuth::None, None),
            },
        };
        Ok((Source::Custom { url, auth }, credential))
    }

    /// Applies provider choices to `settings`, returning the keys to store.
    async fn apply_providers(
        &self,
        ctx: &Ctx,
        owner: Owner,
        settings: &mut LlmSettings,
        choices: &ProviderChoices,
        stdin: &Option<SecretString>,
        name: &str,
    ) -> Result<Vec<NewCredential>, ExecError> {
        let mut keys = Vec::new();
        for provider in Provider::ALL {
            let Some(choice) = choices.get(provider) else {
                continue;
            };
            let source = match choice {
                SourceChoice::Gateway => Source::Gateway,
                SourceChoice::Disabled => Source::Disabled,
                SourceChoice::Byok(Some(input)) => {
                    let key = match input {
                        KeyInput::Value(k) => k.clone(),
                        KeyInput::Stdin => stdin_key(choices, stdin, provider)?,
                    };
                    keys.push(self.seal_key(provider, &key)?);
                    // Replaced by the stored key's id in the same transaction.
                    Source::Byok { credential: CredentialId(0), hint: KeyHint::from_last4(None) }
                }
                SourceChoice::Byok(None) => match settings.source(provider) {
                    existing @ Source::Byok { .. } => existing.clone(),
                    _ => {
                        return Err(ExecError::Usage(format!(
                            "--{provider}=byok needs the key: {name} has no stored {provider} key; add --{provider}-key=KEY \
or --{provider}-key=- to read it from standard input"
                        )))
                    }
                },
                SourceChoice::Custom { url, auth } => {
                    let read = |input: &KeyInput| match input {
                        KeyInput::Value(k) => Ok(k.clone()),
                        KeyInput::Stdin => stdin_key(choices, stdin, provider),
                    };
                    let (source, key) = self
                        .custom_source(
                            provider,
                            settings.source(provider),
                            url.as_ref(),
                            auth.as_ref(),
                            read,
                            name,
                        )
                        .await?;
                    keys.extend(key);
                    source
                }
                SourceChoice::Chatgpt(account) => {
                    if let Owner::Team(_) = owner {
                        return Err(ExecError::Usage(
                            "--openai=chatgpt: team integrations cannot use a ChatGPT subscription; use --openai=gateway or --openai=byok"
                                .into(),
                        ));
                    }
                    let accounts = self.store.chatgpt_accounts(ctx.user).await?;
                    if !accounts.iter().any(|(a, _)| a == account) {
                        return Err(ExecError::NotFound(format!(
                            "you have no ChatGPT account named {account}; connect it first with \
`integrations setup chatgpt --name {account}`"
                        )));
                    }
                    Source::Chatgpt { account: account.clone() }
                }
            };
            *settings.source_mut(provider) = source;
        }
        Ok(keys)
    }

    async fn add_llm(
        &self,
        ctx: &Ctx,
        add: &AddLlm,
        stdin: Option<SecretString>,
    ) -> Result<Answer, ExecError> {
        let owner = ctx.new_integration(add.team.as_ref(), &add.name, &add.attach)?;
        let mut settings = LlmSettings::all_gateway();
        settings.translate = add.translate.is_none_or(|t| t.is_on());
        let keys = self
            .apply_providers(
                ctx,
                owner,
                &mut settings,
                &add.providers,
                &stdin,
                add.name.as_str(),
            )
            .await?;
        let mut integration = IntegrationConfig {
            id: IntegrationId(0),
            owner,
            name: add.name.clone(),
            comment: add.comment.clone().unwrap_or_default(),
            kind: IntegrationKind::Llm(settings),
            attachments: add.attach.clone(),
        };
        integration.id = self.store.insert_integration(&integration, keys).await?;
        self.added(ctx, integration.id, "llm").await
    }

    async fn add_reflection(&self, ctx: &Ctx, add: &AddReflection) -> Result<Answer, ExecError> {
        let owner = ctx.new_integration(add.team.as_ref(), &add.name, &add.attach)?;
        let integration = IntegrationConfig {
            id: IntegrationId(0),
            owner,
            name: add.name.clone(),
            comment: add.comment.clone().unwrap_or_default(),
            kind: IntegrationKind::Reflection(ReflectionSettings { fields: add.fields }),
            attachments: add.attach.clone(),
        };
        let id = self
            .store
            .insert_integration(&integration, Vec::new())
            .await?;
        self.added(ctx, id, "reflection").await
    }

    async fn added(&self, ctx: &Ctx, id: IntegrationId, kind: &str) -> Result<Answer, ExecError> {
        self.changed().await?;
        let snapshot = self.live.snapshot();
        let integration = snapshot.integration(id).ok_or_else(|| {
            ExecError::Unavailable("the integration was added but is not loaded yet".into())
        })?;
        let view = integration_json(integration, &ctx.domain, ctx.team_name(integration.owner));
        let mut text = format!(
            "added {kind} integration {}\n\n{}",
            integration.name,
            render::show_text(&view)
        );
        if integration.attachments.is_empty() {
            text.push_str(&format!(
                "\nIt is not attached to any VM yet: `integrations attach {} vm:NAME` (or tag:NAME, auto:all).\n",
                integration.name
            ));
        }
        Ok(Answer::ok(text, json!({"ok": true, "integration": view})))
    }

    async fn edit(
        &self,
        ctx: &Ctx,
        edit: &Edit,
        stdin: Option<SecretString>,
    ) -> Result<Answer, ExecError> {
        let current = ctx.integration(&edit.target)?;
        let mut changed = current.clone();
        let mut keys = Vec::new();
        match &mut changed.kind {
            IntegrationKind::Llm(settings) => {
                if edit.fields.is_some() {
                    return Err(ExecError::Usage(format!(
                        "--fields applies to reflection integrations; {} is an llm integration",
                        current.name
                    )));
                }
                keys = self
                    .apply_providers(
                        ctx,
                        current.owner,
                        settings,
                        &edit.providers,
                        &stdin,
                        current.name.as_str(),
                    )
                    .await?;
                if let Some(translate) = edit.translate {
                    settings.translate = translate.is_on();
                }
            }
            IntegrationKind::Reflection(settings) => {
                if !edit.providers.is_empty() || edit.translate.is_some() {
                    return Err(ExecError::Usage(format!(
                        "provider flags and --translate apply to llm integrations; {} is a reflection integration (use --fields)",
                        current.name
                    )));
                }
                if let Some(fields) = edit.fields {
                    settings.fields = fields;
                }
            }
        }
        if let Some(comment) = &edit.comment {
            changed.comment.clone_from(comment);
        }
        self.store.update_integration(&changed, keys).await?;
        self.changed().await?;
        let snapshot = self.live.snapshot();
        let updated = snapshot.integration(current.id).unwrap_or(&changed);
        let view = integration_json(updated, &ctx.domain, ctx.team_name(updated.owner));
        Ok(Answer::ok(
            format!("updated {}\n\n{}", current.name, render::show_text(&view)),
            json!({"ok": true, "integration": view}),
        ))
    }

    async fn test(
        &self,
        ctx: &Ctx,
        target: &IntegrationRef,
        only: Option<Provider>,
    ) -> Result<Answer, ExecError> {
        let i = ctx.integration(target)?;
        let IntegrationKind::Llm(settings) = &i.kind else {
            return Err(ExecError::Usage(format!(
                "{} is a reflection integration; only llm integrations have keys to test",
                i.name
            )));
        };
        let providers: Vec<Provider> = only
            .map(|p| vec![p])
            .unwrap_or_else(|| Provider::ALL.to_vec());
        let mut lines = Vec::new();
        let mut results = serde_json::Map::new();
        let mut failed = false;
        let mut tested = 0;
        for provider in providers {
            let (status, detail) = match settings.source(provider) {
                Source::Byok { credential, .. } => {
                    tested += 1;
                    let sealed = self.store.sealed_credential(*credential).await?.ok_or_else(|| {
                        ExecError::Unavailable(format!("the stored {provider} key is missing from the store"))
                    })?;
                    let key = self.key.open(&sealed, purpose::API_KEY).map_err(|e| ExecError::Unavailable(e.to_string()))?;
                    let key = SecretString::from(String::from_utf8_lossy(&key).into_owned());
                    match self.check.check(provider, &key).await {
                        Ok(detail) => ("ok", detail),
                        Err(detail) => {
                            failed = true;
                            ("failed", detail)
                        }
                    }
                }
                Source::Gateway if self.gateway_keys[provider] => ("skipped", "uses the platform's key, which this server has (the operator's; not tested here)".to_owned()),
                Source::Gateway => {
                    failed = true;
                    (
                        "unavailable",
                        format!(
                            "uses the platform's key, which this server does not have ({} is not set): requests answer 503; \
ask the operator to set it, or use --{provider}=byok with your own key",
                            crate::upstreams::GatewayKeys::env_var(provider)
                        ),
                    )
                }
                Source::Chatgpt { account } => ("skipped", format!("uses ChatGPT account {account}; check it with `integrations setup chatgpt --verify`")),
                Source::Custom { url, auth } => {
                    tested += 1;
                    match self.test_endpoint(provider, url, auth).await? {
                        Ok(detail) => ("ok", detail),
                        Err(detail) => {
                            failed = true;
                            ("failed", detail)
                        }
                    }
                }
                Source::Disabled => ("skipped", "disabled".to_owned()),
            };
            // A provider's answer is quoted in `detail`: shown on one line,
            // unable to drive the terminal or forge a line.
            let detail = llm_integration_core::redact::printable_line(&detail).into_owned();
            lines.push(format!("{provider}: {status}: {detail}"));
            results.insert(
                provider.to_string(),
                json!({"status": status, "detail": detail}),
            );
        }
        if tested == 0 && only.is_some() {
            let p = only.unwrap_or(Provider::OpenAi);
            return Err(ExecError::Usage(format!(
                "{}'s {p} source is {}, not byok or custom; there is no stored key or endpoint to test",
                i.name,
                llm_integration_core::ProviderSource::kind(settings.source(p))
            )));
        }
        let text = lines.join("\n") + "\n";
        Ok(Answer {
            text,
            json: json!({"ok": !failed, "integration": i.name, "providers": results}),
            failed,
        })
    }

    async fn chatgpt(&self, ctx: &Ctx, setup: &ChatgptSetup) -> Result<Answer, ExecError> {
        match setup {
            ChatgptSetup::List => {
                let accounts = self.store.chatgpt_accounts(ctx.user).await?;
                let mut text = String::new();
                let mut list = Vec::new();
                for (name, status) in &accounts {
                    let record = self.store.chatgpt_account(ctx.user, name).await?;
                    let email = record.as_ref().and_then(|r| r.email.clone());
                    let plan = record.as_ref().and_then(|r| r.plan.clone());
                    text.push_str(&format!(
                        "{name}\t{status}\t{}\t{}\n",
                        email.as_deref().unwrap_or("-"),
                        plan.as_deref().map(|p| format!("plan {p}")).unwrap_or_else(|| "-".into())
                    ));
                    list.push(json!({"name": name, "status": status, "email": email, "plan": plan}));
                }
                if accounts.is_empty() {
                    text.push_str("no ChatGPT accounts connected; connect one with `integrations setup chatgpt --name ACCOUNT`\n");
                }
                Ok(Answer::ok(text, json!({"accounts": list})))
            }
            ChatgptSetup::Verify => {
                let accounts = self.store.chatgpt_accounts(ctx.user).await?;
                if accounts.is_empty() {
                    return Err(ExecError::NotFound(
                        "no ChatGPT accounts connected; connect one with `integrations setup chatgpt --name ACCOUNT`".into(),
                    ));
                }
                let mut text = String::new();
                let mut list = Vec::new();
                let mut failed = false;
                for (name, _) in &accounts {
                    match self.chatgpt.tokens(ctx.user, name, true).await {
                        Ok(t) => {
                            let detail = format!(
                                "ok (refreshed; plan {}, {})",
                                t.plan.as_deref().unwrap_or("unknown"),
                                t.email.as_deref().unwrap_or("email unknown")
                            );
                            text.push_str(&format!("{name}: {detail}\n"));
                            list.push(json!({"name": name, "ok": true, "detail": detail}));
                        }
                        Err(e) => {
                            failed = true;
                            text.push_str(&format!("{name}: failed: {e}\n"));
                            list.push(json!({"name": name, "ok": false, "detail": e.to_string()}));
                        }
                    }
                }
                Ok(Answer { text, json: json!({"accounts": list}), failed })
            }
            ChatgptSetup::Delete(name) => {
                self.store.delete_chatgpt_account(ctx.user, name).await?;
                self.chatgpt.forget(ctx.user, name);
                self.changed().await?;
                // Integrations still naming the account fail until it is
                // connected again or they are changed: say which.
                let users: Vec<String> = ctx
                    .records
                    .integrations
                    .iter()
                    .filter(|i| i.owner == Owner::User(ctx.user))
                    .filter(|i| match &i.kind {
                        IntegrationKind::Llm(settings) => matches!(
                            settings.source(Provider::OpenAi),
                            Source::Chatgpt { account } if account == name
                        ),
                        IntegrationKind::Reflection(_) => false,
                    })
                    .map(|i| i.name.to_string())
                    .collect();
                let mut text = format!("disconnected ChatGPT account {name}\n");
                if let Some(first) = users.first() {
                    text.push_str(&format!(
                        "warning: still used by {}: their OpenAI requests fail until you connect it again \
(`integrations setup chatgpt --name {name}`) or change their source (`integrations edit {first} --openai=gateway`)\n",
                        users.join(", ")
                    ));
                }
                Ok(Answer::ok(text, json!({"ok": true, "deleted": name, "still_used_by": users})))
            }
            ChatgptSetup::Connect(name) => Err(ExecError::Usage(format!(
                "`integrations setup chatgpt --name {name}` waits for the login as it happens; this door cannot show that"
            ))),
        }
    }

    /// `integrations setup chatgpt --name ACCOUNT`: starts ChatGPT's
    /// device-code login and returns the lines to show as they happen (the
    /// URL and code first, then the outcome). A last line starting with
    /// `error:` (or a JSON event `error`) means the login failed.
    pub async fn connect_chatgpt(
        &self,
        user: UserId,
        name: llm_integration_core::AccountName,
        json_lines: bool,
    ) -> Result<tokio::sync::mpsc::Receiver<String>, ExecError> {
        let device = self.chatgpt.start().await.map_err(ExecError::Unavailable)?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let first = if json_lines {
            json!({"event": "code", "verification_url": device.verification_url, "user_code": device.user_code,
                   "expires_in": crate::chatgpt::DEVICE_CODE_LIFETIME.as_secs()})
                .to_string()
                + "\n"
        } else {
            format!(
                "Open this URL to authorize ChatGPT:\n  {}\n\nEnter this code:\n  {}\n\n\
Device codes are a common phishing target. Never share this code.\n\nWaiting for authorization...\n",
                device.verification_url, device.user_code
            )
        };
        let _ = tx.send(first).await;
        let chatgpt = self.chatgpt.clone();
        tokio::spawn(async move {
            let outcome = wait_for_login(&chatgpt, &device, user, &name, &tx).await;
            let line = match (outcome, json_lines) {
                (Ok(detail), false) => format!("Connected ChatGPT account {name} ({detail}).\n"),
                (Ok(detail), true) => {
                    json!({"event": "connected", "account": name, "detail": detail}).to_string()
                        + "\n"
                }
                (Err(message), false) => format!("error: {message}\n"),
                (Err(message), true) => {
                    json!({"event": "error", "message": message}).to_string() + "\n"
                }
            };
            let _ = tx.send(line).await;
        });
        Ok(rx)
    }
    async fn usage(
        &self,
        ctx: &Ctx,
        since: llm_integration_core::command::Since,
        by: Option<llm_integration_core::command::UsageBy>,
        team: Option<&llm_integration_core::TeamName>,
    ) -> Result<Answer, ExecError> {
        use llm_integration_core::command::UsageBy;
        let owner = ctx.owner(team)?;
        let _turn = self
            .reports
            .acquire()
            .await
            .map_err(|_| ExecError::Unavailable("the server is stopping; try again".into()))?;
        if let Some(ledger) = &self.ledger {
            ledger.flush().await;
        }
        let from = since.time(std::time::SystemTime::now());
        let grouping = UsageBy::grouping(by);
        let rows = self.store.usage_summary(&[owner], from, grouping).await?;
        let column = crate::usage_report::KeyColumn::of(by);
        let balance = self
            .store
            .allocation(owner)
            .await?
            .unwrap_or(self.default_allocation);
        let named: Vec<(String, &llm_integration_core::seams::UsageRow)> = rows
            .iter()
            .map(|r| (column.name(&ctx.records, &r.key), r))
            .collect();
        let mut text = crate::usage_report::table(&format!("usage since {since}"), column, &named);
        text.push_str(&format!(
            "allocation left: {} (spent on the platform's keys)\n",
            crate::usage_report::dollars(balance)
        ));
        let list: Vec<Value> = named
            .iter()
            .map(|(name, r)| {
                json!({
                    "key": name,
                    "requests": r.requests,
                    "ok_requests": r.ok,
                    "refused_requests": r.refused,
                    "failed_requests": r.failed,
                    "estimated_requests": r.estimated,
                    "input_tokens": r.tokens.input,
                    "cache_creation_tokens": r.tokens.cache_creation,
                    "cache_read_tokens": r.tokens.cache_read,
                    "output_tokens": r.tokens.output,
                    "cost_micros": r.cost_micros,
                    "debited_micros": r.debited_micros,
                })
            })
            .collect();
        Ok(Answer::ok(
            text,
            json!({"since": since.to_string(), "rows": list, "allocation_micros": balance}),
        ))
    }

    async fn tag(
        &self,
        ctx: &Ctx,
        delete: bool,
        vm: &llm_integration_core::VmName,
        tags: &[llm_integration_core::TagName],
    ) -> Result<Answer, ExecError> {
        let Some(current) = ctx
            .records
            .vms
            .iter()
            .find(|v| v.name == *vm && v.owner == ctx.user)
        else {
            return Err(ExecError::NotFound(format!("you have no VM named {vm}")));
        };
        let mut changed = current.clone();
        for tag in tags {
            if delete {
                if !changed.tags.remove(tag) {
                    return Err(ExecError::NotFound(format!(
                        "VM {vm} has no tag {tag}; its tags: {}",
                        render::tags_text(&current.tags)
                    )));
                }
            } else {
                changed.tags.insert(tag.clone());
            }
        }
        self.store.update_vm(&changed).await?;
        self.changed().await?;
        let list: Vec<&str> = changed.tags.iter().map(|t| t.as_str()).collect();
        Ok(Answer::ok(
            format!("VM {vm} tags: {}\n", render::tags_text(&changed.tags)),
            json!({"ok": true, "vm": vm, "tags": list}),
        ))
    }
}
