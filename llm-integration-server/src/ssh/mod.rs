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
//! authentication attempts, connections capped in all, per address and
//! while not signed in (past half of that cap new connections are refused
//! at random, as OpenSSH's `MaxStartups` does, so strangers cannot take
//! every connection), an idle timeout (no typing at a prompt, no standard
//! input awaited past it, no connection left without a running command),
//! the same bound on output that cannot be delivered (a client that stops
//! reading is disconnected, and a session holds at most one window of
//! output), and keepalives that drop a vanished client. A key removed
//! (or its user deleted) runs nothing more: it is checked before every
//! command and every new channel, and its connection is closed when the
//! check fails. Nothing typed reaches a shell of this machine: a line is
//! parsed by the core's grammar or refused. Refused connections are
//! logged once a minute at most, with the count of those not logged.

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
use crate::log_throttle::LogThrottle;

/// How long a client has to sign in.
pub const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// Session channels one connection may hold at once.
const MAX_CHANNELS: usize = 4;
/// How often a refused connection is logged at most (the others are
/// counted in the next line).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// The share (percent) of new connections refused once half of the
/// unauthenticated cap is taken; it rises linearly to all at the cap.
const EARLY_DROP_PERCENT: u32 = 30;

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
    /// Open connections not signed in yet, at most (within
    /// `max_connections`). Past half of it a new connection is refused at
    /// random: 30 % at half, rising to all at the cap.
    pub max_unauthenticated: usize,
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
    /// Open connections per address, and in all, and not signed in.
    peers: Mutex<Counts>,
    /// Refused connections, for the log.
    refusals: LogThrottle,
}

/// Open connections, counted under one lock.
#[derive(Debug, Default)]
struct Counts {
    by_peer: HashMap<IpAddr, usize>,
    open: usize,
    unauthenticated: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerAddress,
    Total,
    NotSignedIn,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::PerAddress => "over the per-address connection cap",
            Refusal::Total => "over the connection cap",
            Refusal::NotSignedIn => "too many connections not signed in",
        }
    }
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
                peers: Mutex::new(Counts::default()),
                refusals: LogThrottle::new(REFUSAL_LOG_EVERY),
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
        let mut summary = tokio::time::interval(REFUSAL_LOG_EVERY);
        summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = summary.tick() => self.summarise_refusals(),
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "ssh: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let slot = match self.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            drop(stream);
                            self.refused(peer.ip(), refusal);
                            continue;
                        }
                    };
                    let door = self.clone();
                    let stop = stop_rx.clone();
                    sessions.spawn(async move {
                        let state = slot.state.clone();
                        door.connection(stream, peer, state, stop).await;
                        drop(slot);
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

    /// A slot for a connection from `ip`, if the caps allow one; else why not.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut counts = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if counts.by_peer.get(&ip).copied().unwrap_or(0) >= self.settings.max_connections_per_peer {
            return Err(Refusal::PerAddress);
        }
        if counts.open >= self.settings.max_connections {
            return Err(Refusal::Total);
        }
        if early_drop(counts.unauthenticated, self.settings.max_unauthenticated) {
            return Err(Refusal::NotSignedIn);
        }
        *counts.by_peer.entry(ip).or_insert(0) += 1;
        counts.open += 1;
        counts.unauthenticated += 1;
        Ok(Slot {
            door: self.clone(),
            ip,
            state: Arc::new(ConnectionState::default()),
        })
    }

    /// Counts `state`'s connection as signed in (once).
    fn signed_in(&self, state: &ConnectionState) {
        if !state.authenticated.swap(true, Ordering::SeqCst) {
            let mut counts = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            counts.unauthenticated = counts.unauthenticated.saturating_sub(1);
        }
    }

    /// Logs a refused connection: the first in a minute with its address,
    /// the others counted in the next line.
    fn refused(&self, ip: IpAddr, refusal: Refusal) {
        let Some(unlogged) = self.refusals.admit() else {
            return;
        };
        tracing::warn!(
            peer = %ip,
            reason = refusal.reason(),
            refused_before = unlogged,
            "ssh: connection refused ({}); more refusals in the next minute are counted, not logged one by one",
            refusal.reason()
        );
    }

    /// Logs how many connections were refused without a line of their own.
    fn summarise_refusals(&self) {
        let Some(unlogged) = self.refusals.held_back() else {
            return;
        };
        tracing::warn!(
            refused = unlogged,
            "ssh: {unlogged} more connections refused over the connection caps"
        );
    }

    /// Whether `key` is still registered to `user` (not removed, the user
    /// not deleted). `Err` when the store cannot tell.
    async fn still_registered(&self, user: UserId, key: &str) -> Result<bool, String> {
        match self.store.user_by_ssh_key(key).await {
            Ok(owner) => Ok(owner == Some(user)),
            Err(e) => {
                tracing::error!(error = %e, "ssh: store unavailable while checking a key");
                Err("cannot check your SSH key now: the store is unavailable; try again".into())
            }
        }
    }

    /// Serves one connection: the SSH session, with the sign-in grace
    /// time, the idle timeout and the server's shutdown watched.
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        state: Arc<ConnectionState>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let handler = Connection {
            door: self.clone(),
            peer,
            user: None,
            key: String::new(),
            state: state.clone(),
            channels: HashMap::new(),
            ptys: Vec::new(),
        };
        // Whatever ends the connection, its channels' tasks stop waiting.
        let _closing = Closing(state.clone());
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
        let idle = self.settings.idle_timeout;
        let reason = loop {
            tokio::select! {
                result = &mut running => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "ssh: session ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s) => break "the server is stopping".to_owned(),
                _ = tick.tick() => {
                    if !state.authenticated.load(Ordering::Relaxed) {
                        if started.elapsed() > LOGIN_GRACE {
                            break "not signed in in time".to_owned();
                        }
                    } else if state.revoked.load(Ordering::Relaxed) {
                        break "this SSH key is no longer registered".to_owned();
                    } else if state.stalled.load(Ordering::Relaxed) {
                        tracing::info!(peer = %peer.ip(), "ssh: output not read for {} s; connection closed", idle.as_secs());
                        break format!("output not read for {} s", idle.as_secs());
                    } else if state.running.load(Ordering::Relaxed) == 0
                        && state.idle_since().elapsed() >= idle
                    {
                        break "idle for too long".to_owned();
                    }
                }
            }
        };
        state.close();
        // The session may be stuck on a client that reads nothing: the
        // goodbye is tried, then the connection dropped regardless.
        let bye = handle.disconnect(russh::Disconnect::ByApplication, reason, String::new());
        let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
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
        // No version: it would only help someone looking for a known flaw.
        server_id: russh::SshId::Standard("SSH-2.0-llm-integration".into()),
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
        // Input a channel has not read yet, in messages (of up to 32 KiB):
        // past it the connection waits for the channel.
        channel_buffer_size: 16,
        ..Default::default()
    }
}

/// Whether a new connection is refused at random, with `pending` not
/// signed in of at most `cap`: never below half the cap, then 30 % rising
/// linearly to all at the cap.
fn early_drop(pending: usize, cap: usize) -> bool {
    if pending >= cap {
        return true;
    }
    let start = cap.div_ceil(2);
    if pending < start {
        return false;
    }
    let rise = (100 - EARLY_DROP_PERCENT) as usize * (pending - start) / (cap - start);
    let percent = EARLY_DROP_PERCENT as usize + rise;
    getrandom::u32().is_ok_and(|r| (r % 100) < percent as u32)
}

/// A connection's place under the caps, given back when it ends.
struct Slot {
    door: Arc<SshDoor>,
    ip: IpAddr,
    state: Arc<ConnectionState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.door.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.by_peer.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.by_peer.remove(&self.ip);
            }
        }
        counts.open = counts.open.saturating_sub(1);
        if !self.state.authenticated.swap(true, Ordering::SeqCst) {
            counts.unauthenticated = counts.unauthenticated.saturating_sub(1);
        }
    }
}

/// What the connection's watchdog reads of its session, and how it tells
/// the channels' tasks that the connection is gone.
#[derive(Debug)]
struct ConnectionState {
    authenticated: AtomicBool,
    /// Channels running an exec or a shell.
    running: AtomicUsize,
    /// When the last one ended (or the connection signed in).
    idle_since: Mutex<tokio::time::Instant>,
    /// A channel's output could not be delivered within the idle timeout.
    stalled: AtomicBool,
    /// The key the connection signed in with was removed.
    revoked: AtomicBool,
    /// The connection is closing: `true` once.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for ConnectionState {
    fn default() -> Self {
        ConnectionState {
            authenticated: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            idle_since: Mutex::new(tokio::time::Instant::now()),
            stalled: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            closed: tokio::sync::watch::Sender::new(false),
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

    /// Counts the connection as idle since `idle` ago (a channel ended by
    /// the idle timeout: the connection closes at once if nothing else runs).
    fn idle_out(&self, idle: Duration) {
        let now = tokio::time::Instant::now();
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) =
            now.checked_sub(idle).unwrap_or(now);
    }

    fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// Marks the connection closed when dropped.
struct Closing(Arc<ConnectionState>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
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
    /// The fingerprint of the key the connection signed in with.
    key: String,
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
        shell: bool,
        run: impl FnOnce(session::Context) -> session::Job,
    ) -> Result<(), russh::Error> {
        let (Some(open), Some(user)) = (self.channels.remove(&channel), self.user) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let context = session::Context::new(
            self.door.clone(),
            user,
            self.key.clone(),
            self.peer.ip(),
            open,
            self.ptys.contains(&channel),
            shell,
            Running::new(self.state.clone()),
        );
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
                self.key = keys::fingerprint(key);
                self.door.signed_in(&self.state);
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
        let Some(user) = self.user.filter(|_| held < MAX_CHANNELS) else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let registered = self.door.still_registered(user, &self.key).await;
        if registered != Ok(true) {
            if registered == Ok(false) {
                tracing::info!(peer = %self.peer.ip(), user = user.0, key = %self.key, "ssh: key no longer registered; connection closed");
                self.state.revoked.store(true, Ordering::Relaxed);
            }
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.state.touch();
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
        self.start(channel, session, true, |c| Box::pin(session::shell(c)))
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = data.to_vec();
        self.start(channel, session, false, move |c| {
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

#[cfg(test)]
mod tests {
    use super::early_drop;

    #[test]
    fn connections_not_signed_in_are_refused_at_random_past_half_the_cap() {
        assert!((0..32).all(|pending| !early_drop(pending, 64)));
        assert!(early_drop(64, 64) && early_drop(65, 64));
        // A cap of one: the first is let in, no second.
        assert!(!early_drop(0, 1) && early_drop(1, 1));
        // 30 % at half the cap, 97 % one short of it.
        let at_half = (0..1000).filter(|_| early_drop(32, 64)).count();
        assert!((200..=400).contains(&at_half), "{at_half}");
        let near_full = (0..1000).filter(|_| early_drop(63, 64)).count();
        assert!(near_full > 900, "{near_full}");
    }
}
