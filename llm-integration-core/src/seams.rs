//! The seams a server plugs into: where configuration comes from, how
//! credentials are obtained, who is calling, where usage goes.
//!
//! Everything here that may wait on IO is an object-safe `async_trait`
//! trait, meant to be held as `Arc<dyn …>`; the core never calls them
//! itself and never depends on a runtime.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::domain::{
    ConfigRecords, CredentialId, IntegrationConfig, IntegrationId, Owner, TeamId, User, UserId, Vm,
    VmId,
};
use crate::names::{AccountName, TeamName};
use crate::provider::Provider;
use crate::secret::KeyHint;
use crate::secret::SecretString;
use crate::snapshot::Snapshot;
use crate::source::{CredentialRef, SourceKind};

/// What a browser-door secret is (the web page's sign-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebTokenKind {
    /// A one-time login link (`login-link`): used once, then deleted.
    LoginLink,
    /// A session cookie's secret.
    Session,
}

impl WebTokenKind {
    /// The stored form: `link` or `session`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebTokenKind::LoginLink => "link",
            WebTokenKind::Session => "session",
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or answered with an error; retrying may help.
    #[error("the configuration store is unavailable: {0}")]
    Unavailable(String),
    /// The stored data is inconsistent; retrying will not help.
    #[error("the configuration store holds invalid data: {0}")]
    Corrupt(String),
    /// A uniqueness rule was broken (the message names what exists).
    #[error("{0}")]
    Conflict(String),
    /// The record to change does not exist (any more).
    #[error("{0}")]
    NotFound(String),
}

/// Where the configuration lives (SQLite by default; PostgreSQL for
/// several replicas). The data plane only reads from it to build
/// snapshots; the command executor writes through its own interface.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// Every record a snapshot is built from.
    async fn load(&self) -> Result<ConfigRecords, StoreError>;

    /// A number that changes whenever the configuration changes, so that a
    /// replica can tell its snapshot is stale without loading everything.
    async fn version(&self) -> Result<u64, StoreError>;
}

/// The output of an AEAD seal: what the store keeps of a secret. Opaque to
/// the store; only the server's master key opens it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The nonce the secret was sealed with.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.ciphertext.len())
    }
}

/// A key to store with an integration change: it gets a [`CredentialId`]
/// in the same transaction and the integration's `byok` source of
/// `provider` is pointed at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// The provider whose source uses it.
    pub provider: Provider,
    /// The sealed key.
    pub sealed: SealedSecret,
    /// What may be shown of it.
    pub hint: KeyHint,
}

/// A connected ChatGPT account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatGptAccountRecord {
    /// The tokens (JSON), sealed.
    pub sealed: SealedSecret,
    /// `connected`, or `needs_login` after a refresh was refused.
    pub status: String,
    /// The account's email, when known.
    pub email: Option<String>,
    /// The ChatGPT plan, when known.
    pub plan: Option<String>,
}

/// An SSH public key registered for a user (the SSH door's sign-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeyRecord {
    /// The key's SHA-256 fingerprint as `ssh-keygen -l` prints it
    /// (`SHA256:` and 43 unpadded base64 characters); unique in the store.
    pub fingerprint: String,
    /// The key in OpenSSH's one-line form without its comment
    /// (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// The comment given with it (`alice@laptop`), possibly empty.
    pub comment: String,
}

/// A user account as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user.
    pub user: User,
    /// Whether the user may run operator commands.
    pub operator: bool,
}

/// A lock held across servers (see [`ControlStore::hold_lock`]); dropping
/// it releases the lock.
pub type StoreLock = Box<dyn std::any::Any + Send + Sync>;

/// What a server asks of [`ControlStore::lease_allocation`], in
/// micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The slice it would like (enough for many requests).
    pub want: i64,
    /// What the request waiting on this lease needs at the least.
    pub need: i64,
    /// When the lease expires unless renewed (Unix milliseconds).
    pub expires_at_ms: i64,
    /// The server's clock now (Unix milliseconds), for expired leases.
    pub now_ms: i64,
}

/// The answer of [`ControlStore::lease_allocation`], in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocationLease {
    /// Moved into the lease by this call.
    pub granted: i64,
    /// The lease's whole amount now (spent debits already deducted).
    pub held: i64,
    /// What remains unleased after this call (may be negative after
    /// overspend).
    pub unleased: i64,
}

/// The writes the command executor and the operator commands make. Every
/// write bumps the configuration version in the same transaction, so the
/// data plane (on every replica) notices and rebuilds its snapshot.
#[async_trait]
pub trait ControlStore: ConfigStore {
    /// Creates a user; `Conflict` if the email is taken.
    async fn create_user(&self, email: &str, operator: bool) -> Result<UserId, StoreError>;
    /// Every account.
    async fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// Deletes a user with their VMs, integrations, keys and tokens.
    async fn delete_user(&self, user: UserId) -> Result<(), StoreError>;
    /// Records an access token by its hash.
    async fn add_token(
        &self,
        user: UserId,
        token_hash: &[u8],
        label: &str,
    ) -> Result<(), StoreError>;
    /// The user an access token belongs to.
    async fn user_by_token(&self, token_hash: &[u8]) -> Result<Option<UserId>, StoreError>;
    /// Creates a team; `Conflict` if the name is taken.
    async fn create_team(&self, name: &TeamName) -> Result<TeamId, StoreError>;
    /// Deletes a team and its integrations; its VMs leave it.
    async fn delete_team(&self, team: TeamId) -> Result<(), StoreError>;
    /// Adds (`member` true) or removes a member.
    async fn set_team_member(
        &self,
        team: TeamId,
        user: UserId,
        member: bool,
    ) -> Result<(), StoreError>;
    /// Creates a VM (its id is ignored); `Conflict` if the name or an address is taken.
    async fn create_vm(&self, vm: &Vm) -> Result<VmId, StoreError>;
    /// Replaces a VM's team, tags, comment, port and addresses.
    async fn update_vm(&self, vm: &Vm) -> Result<(), StoreError>;
    /// Deletes a VM.
    async fn delete_vm(&self, vm: VmId) -> Result<(), StoreError>;
    /// Creates an integration (its id is ignored) with its new keys.
    async fn insert_integration(
        &self,
        integration: &IntegrationConfig,
        keys: Vec<NewCredential>,
    ) -> Result<IntegrationId, StoreError>;
    /// Replaces an integration's name, comment, settings and attachments,
    /// storing its new keys and deleting the keys it no longer uses.
    async fn update_integration(
        &self,
        integration: &IntegrationConfig,
        keys: Vec<NewCredential>,
    ) -> Result<(), StoreError>;
    /// Deletes an integration and its keys.
    async fn delete_integration(&self, integration: IntegrationId) -> Result<(), StoreError>;
    /// A stored key, sealed.
    async fn sealed_credential(
        &self,
        credential: CredentialId,
    ) -> Result<Option<SealedSecret>, StoreError>;
    /// The names of a user's connected ChatGPT accounts, with their status.
    async fn chatgpt_accounts(
        &self,
        user: UserId,
    ) -> Result<Vec<(AccountName, String)>, StoreError>;
    /// One connected ChatGPT account, with its sealed tokens.
    async fn chatgpt_account(
        &self,
        user: UserId,
        name: &AccountName,
    ) -> Result<Option<ChatGptAccountRecord>, StoreError>;
    /// Stores (or replaces) a ChatGPT account's sealed tokens and what is known of it.
    async fn save_chatgpt_account(
        &self,
        user: UserId,
        name: &AccountName,
        account: &ChatGptAccountRecord,
    ) -> Result<(), StoreError>;
    /// Disconnects a ChatGPT account; `NotFound` if there is none of that name.
    async fn delete_chatgpt_account(
        &self,
        user: UserId,
        name: &AccountName,
    ) -> Result<(), StoreError>;
    /// An owner's allocation balance in micro-dollars (`None`: never set,
    /// the server's default applies): what is not leased plus what the
    /// servers' leases hold unspent.
    async fn allocation(&self, owner: Owner) -> Result<Option<i64>, StoreError>;
    /// Sets an owner's balance: `micros` is what the owner has left from
    /// now, so the servers' leases on it are revoked (each server learns it
    /// at its next renewal; requests in flight still debit).
    async fn set_allocation(&self, owner: Owner, micros: i64) -> Result<(), StoreError>;
    /// Adds `micros` to an owner's balance (starting from `default` when
    /// never set); returns the new balance.
    async fn grant_allocation(
        &self,
        owner: Owner,
        micros: i64,
        default: i64,
    ) -> Result<i64, StoreError>;
    /// Moves part of an owner's unleased balance (starting from `default`
    /// when never set) into the lease of server `holder`, atomically, and
    /// sets that lease to expire at `expires_at_ms` (Unix milliseconds).
    /// Leases of that owner expired at `now_ms` are returned to the balance
    /// first. The part moved is `min(unleased, max(need, min(want,
    /// unleased / 4)))` and never negative: a server takes what its request
    /// needs, and otherwise at most a quarter of what is left, so others
    /// still find some.
    async fn lease_allocation(
        &self,
        owner: Owner,
        holder: &str,
        request: LeaseRequest,
        default: i64,
    ) -> Result<AllocationLease, StoreError>;
    /// Returns up to `micros` of `holder`'s lease on `owner` to the
    /// unleased balance (the whole lease, and its row, when `micros` covers
    /// it); returns how much was returned.
    async fn return_allocation(
        &self,
        owner: Owner,
        holder: &str,
        micros: i64,
    ) -> Result<i64, StoreError>;
    /// Extends every lease of `holder` to `expires_at_ms`, returns the
    /// leases of every server expired at `now_ms` to their balances, and
    /// answers what each of `holder`'s leases holds now (a lease revoked
    /// or returned as expired is absent).
    async fn renew_allocation_leases(
        &self,
        holder: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(Owner, i64)>, StoreError>;
    /// Appends usage records to the ledger and debits the cost of metered
    /// ones, in one transaction: from `holder`'s lease on the owner when it
    /// has one, otherwise from the owner's balance (starting from
    /// `default`).
    async fn record_usage(
        &self,
        records: &[UsageRecord],
        default: i64,
        holder: &str,
    ) -> Result<(), StoreError>;
    /// Usage of `owners` since `since`, summed per group.
    async fn usage_summary(
        &self,
        owners: &[Owner],
        since: SystemTime,
        by: UsageGrouping,
    ) -> Result<Vec<UsageRow>, StoreError>;
    /// Holds a lock named `name` shared by every server on this store
    /// until the returned guard is dropped (waiting for another server
    /// that holds it). Used so that one server at a time refreshes a
    /// ChatGPT account's single-use refresh token. A store used by one
    /// process may answer a guard that locks nothing (its callers also lock
    /// in memory).
    async fn hold_lock(&self, name: &str) -> Result<StoreLock, StoreError>;
    /// Registers an SSH public key for `user`; `Conflict` if a key with
    /// that fingerprint is registered already (for anyone).
    async fn add_ssh_key(&self, user: UserId, key: &SshKeyRecord) -> Result<(), StoreError>;
    /// A user's SSH keys, oldest first.
    async fn ssh_keys(&self, user: UserId) -> Result<Vec<SshKeyRecord>, StoreError>;
    /// Removes one of `user`'s SSH keys by fingerprint; `NotFound` if
    /// `user` has no key with that fingerprint.
    async fn delete_ssh_key(&self, user: UserId, fingerprint: &str) -> Result<(), StoreError>;
    /// The user whose SSH key has this fingerprint (the SSH door's sign-in).
    async fn user_by_ssh_key(&self, fingerprint: &str) -> Result<Option<UserId>, StoreError>;
    /// A value of the store's own metadata (e.g. the master key check).
    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets a metadata value if it is not set yet; returns whether it was set.
    async fn init_meta(&self, key: &str, value: &[u8]) -> Result<bool, StoreError>;
    /// Stores a browser-door secret by its hash (lowercase hex SHA-256):
    /// a one-time login link or a session, valid until `expires_at`.
    /// `Conflict` if that hash is already stored.
    async fn add_web_token(
        &self,
        kind: WebTokenKind,
        user: UserId,
        token_hash: &str,
        expires_at: SystemTime,
    ) -> Result<(), StoreError>;
    /// The user a browser-door secret of `kind` belongs to, if it exists
    /// and expires after `now`. With `consume` the secret is deleted in
    /// the same statement (a login link works once, even when two
    /// requests race). Expired secrets are deleted on the way.
    async fn web_token_user(
        &self,
        kind: WebTokenKind,
        token_hash: &str,
        now: SystemTime,
        consume: bool,
    ) -> Result<Option<UserId>, StoreError>;
    /// Deletes a browser-door secret (signing out); deleting one that is
    /// not there is not an error.
    async fn delete_web_token(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Closes the store's connections (at shutdown, after the last write).
    async fn close(&self) {}
}

/// A credential ready to inject upstream.
pub struct Credential {
    /// The key or access token.
    pub secret: SecretString,
    /// For a ChatGPT account: the account id sent as `ChatGPT-Account-ID`.
    pub account_id: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("secret", &"[REDACTED]")
            .field("account_id", &self.account_id.as_ref().map(|_| "[set]"))
            .finish()
    }
}

/// Why a credential could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Nothing is configured for it (e.g. no gateway key for a provider).
    #[error("no credential is configured for {0}")]
    NotConfigured(String),
    /// The owner must act (e.g. a ChatGPT login expired or was revoked).
    #[error("{0}")]
    NeedsOwner(String),
    /// A transient failure (store or token endpoint unreachable); retrying may help.
    #[error("the credential is temporarily unavailable: {0}")]
    Unavailable(String),
}

impl CredentialError {
    /// Whether the client may retry the same request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CredentialError::Unavailable(_))
    }
}

/// Produces the credential for a source. A ChatGPT source may need an
/// asynchronous token refresh; implementations keep one refresh in flight
/// per account.
#[async_trait]
pub trait CredentialResolver: Send + Sync {
    /// The credential for `provider` of an integration owned by `owner`.
    async fn resolve(
        &self,
        owner: Owner,
        provider: Provider,
        source: CredentialRef<'_>,
    ) -> Result<Credential, CredentialError>;
}

/// What the listener knows of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The original client address, when a trusted front proxy said it
    /// (PROXY protocol or a configured forwarding header). Never taken from
    /// an untrusted peer.
    pub original: Option<IpAddr>,
}

impl ConnectionInfo {
    /// The address the caller is identified by.
    pub fn client_address(&self) -> IpAddr {
        self.original.unwrap_or_else(|| self.peer.ip())
    }
}

/// Front proxies whose word about the client's address is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Peers whose forwarding header is believed.
    pub addresses: Vec<IpAddr>,
    /// The header carrying the original client address (e.g.
    /// `x-forwarded-for`; its last entry is used, the one the trusted proxy
    /// appended).
    pub header: Option<http::HeaderName>,
}

impl TrustedProxies {
    /// The address the caller is identified by: the PROXY protocol's
    /// original address, else the trusted proxy's forwarding header (when
    /// the peer is a trusted proxy), else the peer itself.
    pub fn client_address(&self, connection: &ConnectionInfo, headers: &http::HeaderMap) -> IpAddr {
        if let Some(original) = connection.original {
            return original;
        }
        let peer = connection.peer.ip();
        match &self.header {
            Some(name) if self.addresses.contains(&peer) => headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .last()
                .and_then(|a| a.trim().parse::<IpAddr>().ok())
                .unwrap_or(peer),
            _ => peer,
        }
    }
}

/// What a caller resolver may look at: the connection (when the server
/// knows it) and the request head, including the extensions an
/// embedder's own middleware attached (an authenticated identity, say).
#[derive(Debug, Clone, Copy)]
pub struct CallerRequest<'a> {
    /// The connection, as the listener saw it.
    pub connection: Option<&'a ConnectionInfo>,
    /// The request headers (client-sent: never proof of identity by
    /// themselves).
    pub headers: &'a http::HeaderMap,
    /// The request's extensions.
    pub extensions: &'a http::Extensions,
}

/// Decides which VM is calling. Embedders with their own network identity
/// supply their own.
#[async_trait]
pub trait CallerResolver: Send + Sync {
    /// The calling VM, or `None` when the request is from no known VM.
    async fn resolve(&self, snapshot: &Snapshot, request: &CallerRequest<'_>) -> Option<VmId>;
}

/// The default caller resolver: the client address (see
/// [`TrustedProxies::client_address`]) through the snapshot's VM registry.
#[derive(Debug, Clone, Default)]
pub struct AddressResolver {
    /// Front proxies whose forwarding header is believed.
    pub trusted: TrustedProxies,
}

impl AddressResolver {
    /// A resolver believing `trusted` front proxies.
    pub fn new(trusted: TrustedProxies) -> Self {
        AddressResolver { trusted }
    }

    /// The synchronous lookup the default resolver does.
    pub fn lookup(&self, snapshot: &Snapshot, request: &CallerRequest<'_>) -> Option<VmId> {
        let connection = request.connection?;
        snapshot.vm_by_address(self.trusted.client_address(connection, request.headers))
    }
}

#[async_trait]
impl CallerResolver for AddressResolver {
    async fn resolve(&self, snapshot: &Snapshot, request: &CallerRequest<'_>) -> Option<VmId> {
        self.lookup(snapshot, request)
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenUsage {
    /// Input (prompt) tokens, excluding cache reads and writes.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
}

/// One proxied request, as the ledger records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageRecord {
    /// When the request started.
    pub started_at: SystemTime,
    /// Who is charged or informed.
    pub owner: Owner,
    /// The calling VM.
    pub vm: VmId,
    /// The integration used.
    pub integration: IntegrationId,
    /// The provider forwarded to.
    pub provider: Provider,
    /// The source kind (`gateway` traffic is debited).
    pub source: SourceKind,
    /// The model, as sent upstream.
    pub model: Option<String>,
    /// Tokens read from the response (or estimated, see `estimated`).
    pub tokens: TokenUsage,
    /// The counts are the gateway's estimate: the provider's final usage
    /// never came (the client hung up, the upstream failed, the gateway
    /// stopped).
    #[serde(default)]
    pub estimated: bool,
    /// Cost in millionths of a currency unit.
    pub cost_micros: u64,
    /// The HTTP status answered to the client.
    pub status: u16,
    /// Until the response ended (or was cut off).
    pub duration: Duration,
    /// Until the first response byte.
    pub time_to_first_byte: Option<Duration>,
}

/// How usage is summed in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageGrouping {
    /// One line in all.
    Total,
    /// Per VM.
    Vm,
    /// Per integration.
    Integration,
    /// Per model.
    Model,
    /// Per provider.
    Provider,
}

/// One line of a usage report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageRow {
    /// The group's key (a VM or integration id, a model, a provider; empty for the total).
    pub key: String,
    /// Requests.
    pub requests: u64,
    /// Token counts.
    pub tokens: TokenUsage,
    /// Cost of all of them, in micro-dollars.
    pub cost_micros: u64,
    /// Cost debited (gateway sources), in micro-dollars.
    pub debited_micros: u64,
    /// Requests whose counts are estimates (their final usage never came).
    #[serde(default)]
    pub estimated: u64,
    /// Requests answered below 400 (a 2xx, or a 1xx or 3xx passed on).
    #[serde(default)]
    pub ok: u64,
    /// Requests answered with a 4xx status (refused by the gateway or the
    /// provider).
    #[serde(default)]
    pub refused: u64,
    /// Requests answered with a 5xx status, or with none (the connection
    /// ended first).
    #[serde(default)]
    pub failed: u64,
}

/// Where usage records go. `record` must not block: implementations queue
/// and write in batches off the hot path.
pub trait UsageSink: Send + Sync {
    /// Queues one record.
    fn record(&self, record: UsageRecord);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_debug_hides_the_secret() {
        let c = Credential {
            secret: SecretString::from("sk-very-secret-value"),
            account_id: Some("acct-123".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("acct-123"),
            "{shown}"
        );
    }

    #[test]
    fn forwarding_header_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies {
            addresses: vec!["10.0.0.1".parse().unwrap()],
            header: Some(http::HeaderName::from_static("x-forwarded-for")),
        };
        let mut headers = http::HeaderMap::new();
        headers.append("x-forwarded-for", "1.1.1.1, 127.0.0.7".parse().unwrap());
        let from = |peer: &str| ConnectionInfo {
            peer: peer.parse().unwrap(),
            original: None,
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            trusted.client_address(&from("10.0.0.1:1"), &headers),
            ip("127.0.0.7")
        );
        assert_eq!(
            trusted.client_address(&from("10.0.0.2:1"), &headers),
            ip("10.0.0.2")
        );
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(
            trusted.client_address(&from("10.0.0.1:1"), &headers),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn client_address_prefers_the_trusted_original() {
        let c = ConnectionInfo {
            peer: "10.0.0.1:5000".parse().unwrap(),
            original: None,
        };
        assert_eq!(c.client_address(), "10.0.0.1".parse::<IpAddr>().unwrap());
        let c = ConnectionInfo {
            original: Some("127.0.0.9".parse().unwrap()),
            ..c
        };
        assert_eq!(c.client_address(), "127.0.0.9".parse::<IpAddr>().unwrap());
    }
}
