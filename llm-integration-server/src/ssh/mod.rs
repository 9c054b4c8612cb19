//! The SSH door: the command language over `ssh`, built on `russh`.
//!
//! `ssh -p PORT HOST COMMAND…` (an *exec* request) runs one command;
//! `ssh -p PORT HOST` (a *shell* request) opens a session with the prompt
//! `NAME ▶ ` and a line editor ([`editor`]). Both run the command through
//! the same [`Executor`] as `POST /exec` and the CLI, as the user whose
//! registered key signed in, with the same checks and the same words.
//!
//! Who is calling: public-key authentication only ([`keys`]): a key
//! registered with `ssh-key add` or `admin users add-key`. Passwords and
//! keyboard-interactive are not offered and refused if tried; the banner
//! every client is shown before signing in says how to register a key.
//!
//! What a peer may hold: a time to sign in (`LOGIN_GRACE`), a bound on
//! authentication attempts, connections capped in all and per address, an
//! idle timeout (no typing at a prompt, no standard input awaited past it,
//! no connection left without a running command), and keepalives that
//! drop a vanished client. Nothing typed reaches a shell of this machine:
//! a line is parsed by the core's grammar or refused.

pub mod editor;
pub mod keys;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llm_integration_core::seams::ControlStore;
use llm_integration_core::UserId;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;

use crate::executor::Executor;

/// How long a client has to sign in.
pub const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// Session channels one connection may hold at once.
const MAX_CHANNELS: usize = 4;

/// The SSH door's settings (file keys `ssh_*`, flags `--ssh-listen` and
/// `--ssh-name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The host key file (Ed25519, OpenSSH format), generated when missing.
    pub host_key: PathBuf,
    /// The name in the prompt (`NAME ▶ `).
    pub name: String,
    /// How long a session may wait for input (at a prompt, for standard
    /// input) or stay open with nothing running.
    pub idle_timeout: Duration,
    /// Open connections at most, in all.
    pub max_connections: usize,
    /// Open connections at most from one address.
    pub max_connections_per_peer: usize,
    /// Authentication attempts one connection may make (each key offered
    /// counts).
    pub max_auth_attempts: usize,
}

/// The SSH door: its settings, host key and what it runs commands with.
pub struct SshDoor {
    settings: SshSettings,
    config: Arc<russh::server::Config>,
    fingerprint: String,
    executor: Arc<Executor>,
    store: Arc<dyn ControlStore>,
    /// Open connections per address.
    peers: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
}

impl std::fmt::Debug for SshDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshDoor")
            .field("settings", &self.settings)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What a client sees before it signs in: how to get a key registered.
fn banner(name: &str) -> String {
    format!(
        "{name}: sign in with an SSH key registered to your account (public keys only).\n\
To register one: `llm-integration ssh-key add \"$(cat ~/.ssh/id_ed25519.pub)\"` with your access token, \
or ask an operator: `llm-integration-server admin users add-key EMAIL 'ssh-ed25519 AAAA…'`.\n"
    )
}

impl SshDoor {
    /// The door with `settings`, loading (or generating, on first start)
    /// its host key. Returns it and whether the key was generated now.
    pub fn new(
        settings: SshSettings,
        executor: Arc<Executor>,
        store: Arc<dyn ControlStore>,
    ) -> Result<(SshDoor, bool), String> {
        let (key, created) = keys::load_or_create_host_key(&settings.host_key)?;
        let fingerprint = keys::fingerprint(key.public_key());
        let config = server_config(&settings, key);
        Ok((
            SshDoor {
                settings,
                config: Arc::new(config),
                fingerprint,
                executor,
                store,
                peers: Mutex::new(HashMap::new()),
                open: AtomicUsize::new(0),
            },
            created,
        ))
    }

    /// The host key's fingerprint (`SHA256:…`), as `ssh` shows it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The settings.
    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    /// Accepts connections on `listener` until `shutdown` resolves, then
    /// ends the sessions still open (telling their clients why).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let mut sessions = tokio::task::JoinSet::new();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "ssh: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Some(slot) = self.admit(peer.ip()) else {
                        tracing::warn!(peer = %peer.ip(), "ssh: connection refused, over the connection cap");
                        drop(stream);
                        continue;
                    };
                    let door = self.clone();
                    let stop = stop_rx.clone();
                    sessions.spawn(async move {
                        let _slot = slot;
                        door.connection(stream, peer, stop).await;
                    });
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        let _ = stop_tx.send(true);
        let ending = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), ending)
            .await
            .is_err()
        {
            sessions.abort_all();
        }
    }

    /// A slot for a connection from `ip`, if the caps allow one.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let count = peers.entry(ip).or_insert(0);
        if *count >= self.settings.max_connections_per_peer
            || self.open.load(Ordering::Relaxed) >= self.settings.max_connections
        {
            if *count == 0 {
                peers.remove(&ip);
            }
            return None;
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            door: self.clone(),
            ip,
        })
    }

    /// Serves one connection: the SSH session, with the sign-in grace
    /// time, the idle timeout and the server's shutdown watched.
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnectionState::default());
        let handler = Connection {
            door: self.clone(),
            peer,
            user: None,
            state: state.clone(),
            channels: HashMap::new(),
            ptys: Vec::new(),
        };
        let running = match tokio::time::timeout(
            LOGIN_GRACE,
            russh::server::run_stream(self.config.clone(), stream, handler),
        )
        .await
        {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "ssh: handshake failed");
                return;
            }
            Err(_) => return,
        };
        let handle = running.handle();
        tokio::pin!(running);
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let reason = loop {
            tokio::select! {
                result = &mut running => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "ssh: session ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s) => break "the server is stopping",
                _ = tick.tick() => {
                    if !state.authenticated.load(Ordering::Relaxed) {
                        if started.elapsed() > LOGIN_GRACE {
                            break "not signed in in time";
                        }
                    } else if state.running.load(Ordering::Relaxed) == 0
                        && state.idle_since().elapsed() > self.settings.idle_timeout
                    {
                        break "idle for too long";
                    }
                }
            }
        };
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                reason.to_owned(),
                String::new(),
            )
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), running).await;
    }

    /// The user a key belongs to, if it is registered.
    async fn user_of(&self, key: &PublicKey) -> Option<UserId> {
        match self.store.user_by_ssh_key(&keys::fingerprint(key)).await {
            Ok(user) => user,
            Err(e) => {
                tracing::error!(error = %e, "ssh: store unavailable during authentication");
                None
            }
        }
    }
}

fn server_config(settings: &SshSettings, key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-llm-integration_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        max_auth_attempts: settings.max_auth_attempts,
        // Idleness is judged by the door (typing, running commands), not by
        // traffic: a ChatGPT login waits minutes without a byte.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

/// A connection's place under the caps, given back when it ends.
struct Slot {
    door: Arc<SshDoor>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut peers = self.door.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = peers.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                peers.remove(&self.ip);
            }
        }
        self.door.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the connection's watchdog reads of its session.
#[derive(Debug)]
struct ConnectionState {
    authenticated: AtomicBool,
    /// Channels running an exec or a shell.
    running: AtomicUsize,
    /// When the last one ended (or the connection signed in).
    idle_since: Mutex<tokio::time::Instant>,
}

impl Default for ConnectionState {
    fn default() -> Self {
        ConnectionState {
            authenticated: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            idle_since: Mutex::new(tokio::time::Instant::now()),
        }
    }
}

impl ConnectionState {
    fn idle_since(&self) -> tokio::time::Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }
}

/// Counts a channel as running while it lives.
struct Running(Arc<ConnectionState>);

impl Running {
    fn new(state: Arc<ConnectionState>) -> Self {
        state.running.fetch_add(1, Ordering::Relaxed);
        Running(state)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.touch();
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One SSH connection: russh calls it for every request.
struct Connection {
    door: Arc<SshDoor>,
    peer: SocketAddr,
    user: Option<UserId>,
    state: Arc<ConnectionState>,
    /// Session channels opened and not yet running anything.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Channels that asked for a pseudo-terminal.
    ptys: Vec<ChannelId>,
}

impl Connection {
    fn refuse_method(&self, method: &str) -> Auth {
        tracing::info!(peer = %self.peer.ip(), method, "ssh: authentication method refused");
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    /// Starts `run` on `channel` (an exec or a shell), if it is open and
    /// signed in; answers the request.
    fn start(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        run: impl FnOnce(session::Context) -> session::Job,
    ) -> Result<(), russh::Error> {
        let (Some(open), Some(user)) = (self.channels.remove(&channel), self.user) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let context = session::Context {
            door: self.door.clone(),
            user,
            channel: open,
            pty: self.ptys.contains(&channel),
            running: Running::new(self.state.clone()),
            eof: false,
        };
        tokio::spawn(run(context));
        Ok(())
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(Some(banner(&self.door.settings.name)))
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(self.refuse_method("password"))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.refuse_method("keyboard-interactive"))
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.door.user_of(key).await {
            Some(_) => Auth::Accept,
            None => {
                tracing::info!(peer = %self.peer.ip(), key = %keys::fingerprint(key), "ssh: unregistered key refused");
                Auth::reject()
            }
        })
    }

    async fn auth_publickey(&mut self, _user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        match self.door.user_of(key).await {
            Some(user) => {
                self.user = Some(user);
                self.state.authenticated.store(true, Ordering::Relaxed);
                self.state.touch();
                tracing::info!(peer = %self.peer.ip(), user = user.0, key = %keys::fingerprint(key), "ssh: signed in");
                Ok(Auth::Accept)
            }
            None => Ok(Auth::reject()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let held = self.channels.len() + self.state.running.load(Ordering::Relaxed);
        if self.user.is_none() || held >= MAX_CHANNELS {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.ptys.retain(|c| *c != channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.channels.contains_key(&channel) {
            return session.channel_failure(channel);
        }
        if !self.ptys.contains(&channel) {
            self.ptys.push(channel);
        }
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, session, |c| Box::pin(session::shell(c)))
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = data.to_vec();
        self.start(channel, session, move |c| {
            Box::pin(session::exec(c, command))
        })
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}
