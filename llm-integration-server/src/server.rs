//! Opening the store, bootstrapping a first user, and serving.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use llm_integration_core::seams::{ControlStore, StoreError};
use llm_integration_core::upstream::UpstreamTargets;
use llm_integration_core::{SnapshotOptions, Vm, VmId};
use tokio::net::TcpListener;

use crate::admin::provision_user;
use crate::chatgpt::ChatGpt;
use crate::config::Config;
use crate::crypto::{write_private, KeyError, KeySource, MasterKey};
use crate::dataplane::{serve_data, tls_acceptor, Accept, DataPlane, ServerCredentials};
use crate::exec_http::{self, AdminState};
use crate::executor::{ExecError, Executor};
use crate::live::LiveConfig;
use crate::metering::{Allocator, Ledger, LedgerWriter, Metering};
use crate::provider_check::ProviderCheck;
use crate::ssh::SshDoor;
use crate::store::{Database, PgStore, SqliteStore};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The master key is missing, malformed or wrong.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Bootstrapping the first user failed.
    #[error("cannot create the first user: {0}")]
    Bootstrap(#[from] ExecError),
    /// Something else (I/O, HTTP client).
    #[error("{0}")]
    Other(String),
}

pub(crate) const KEY_CHECK: &str = "master_key_check";

/// An opened store: the trait object every part uses, and the PostgreSQL
/// store itself when that is the backend (its notifications are followed).
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn ControlStore>,
    /// The same store when it is PostgreSQL.
    pub postgres: Option<Arc<PgStore>>,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore")
            .field("postgres", &self.postgres.is_some())
            .finish()
    }
}

/// Opens the store `database` names and unlocks it with the master key from
/// `source`: a new database gets a new key (file created 0600 if absent);
/// an existing one must be opened with the key it was created with.
pub async fn open_store(
    database: &Database,
    source: &KeySource,
) -> Result<(OpenedStore, Arc<MasterKey>), StartError> {
    let opened = match database {
        Database::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.exists() {
                    let mut builder = std::fs::DirBuilder::new();
                    builder.recursive(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::DirBuilderExt;
                        builder.mode(0o700);
                    }
                    builder.create(dir).map_err(|e| {
                        StartError::Other(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
            let store = SqliteStore::open(path).await?;
            crate::crypto::restrict_to_owner(path);
            OpenedStore {
                store: Arc::new(store),
                postgres: None,
            }
        }
        Database::Postgres(url) => {
            let store = Arc::new(PgStore::connect(url).await?);
            OpenedStore {
                store: store.clone(),
                postgres: Some(store),
            }
        }
    };
    let store = &opened.store;
    let check = store.meta(KEY_CHECK).await?;
    let (key, created) = MasterKey::load(source, check.is_none())?;
    match check {
        Some(stored) if !key.matches_check(&stored) => {
            return Err(StartError::Key(KeyError::Mismatch(format!(
                "the master key from {} is not the key the database {} was created with; nothing was changed. \
Start with the original key (file or LLM_INTEGRATION_MASTER_KEY)",
                source.describe(),
                database.describe()
            ))))
        }
        Some(_) => {}
        None => {
            // Replicas starting at once on a new database: the first key
            // check written wins, and the others must hold the same key.
            if !store.init_meta(KEY_CHECK, &key.key_check()?).await? {
                let stored = store.meta(KEY_CHECK).await?.unwrap_or_default();
                if !key.matches_check(&stored) {
                    return Err(StartError::Key(KeyError::Mismatch(format!(
                        "another replica initialised the database {} with a different master key; \
start every replica with the same key (file or LLM_INTEGRATION_MASTER_KEY)",
                        database.describe()
                    ))));
                }
            } else if created {
                tracing::info!(key = %source.describe(), "generated a new master key");
            }
        }
    }
    Ok((opened, Arc::new(key)))
}

/// Open admin connections at most, in all.
const ADMIN_MAX_CONNECTIONS: usize = 1024;
/// Open admin connections at most from one peer address.
const ADMIN_MAX_PER_PEER: usize = 64;

/// A running server's parts, for the binary, tests and embedders.
pub struct App {
    /// The resolved configuration.
    pub config: Config,
    /// The store.
    pub store: Arc<dyn ControlStore>,
    /// The same store when it is PostgreSQL (its notifications are
    /// followed while serving).
    pub postgres: Option<Arc<PgStore>>,
    /// The live snapshot.
    pub live: Arc<LiveConfig>,
    /// The command executor.
    pub executor: Arc<Executor>,
    /// The data plane.
    pub data_plane: Arc<DataPlane>,
    /// How the data plane accepts connections (TLS, PROXY protocol).
    pub accept: Accept,
    /// Prices, allocations, the ledger and metrics.
    pub metering: Arc<Metering>,
    /// The ledger (also the metering's usage sink), closed at shutdown.
    pub ledger: Ledger,
    /// The ledger's writer, flushed at shutdown.
    pub ledger_writer: LedgerWriter,
    /// The SSH door, when the configuration turns it on (`--ssh-listen`).
    pub ssh: Option<Arc<SshDoor>>,
    /// Where the SSH door accepts, once bound ([`App::listen_ssh`]).
    ssh_listener: Option<TcpListener>,
}

/// What the first start created.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    /// The first user's email.
    pub email: String,
    /// Where their access token was written.
    pub token_file: PathBuf,
}

impl App {
    /// Opens the store and loads the configuration.
    pub async fn open(config: Config) -> Result<App, StartError> {
        let (opened, key) = open_store(&config.database, &config.master_key).await?;
        for warning in crate::crypto::key_file_warnings(&config.master_key, &config.data_dir) {
            tracing::warn!("{warning}");
        }
        let OpenedStore { store, postgres } = opened;
        let options = SnapshotOptions::default().with_domain(&config.domain);
        let live = Arc::new(LiveConfig::load(store.clone(), options).await?);
        let check = ProviderCheck::new(config.upstreams.clone())
            .map_err(|e| StartError::Other(e.to_string()))?;
        let chatgpt = Arc::new(
            ChatGpt::new(config.chatgpt.clone(), store.clone(), key.clone())
                .map_err(StartError::Other)?,
        );
        let credentials = Arc::new(ServerCredentials::new(
            config.gateway_keys.clone(),
            store.clone(),
            key.clone(),
            chatgpt.clone(),
        ));
        let allocator = Arc::new(Allocator::with_lease_lifetime(
            store.clone(),
            config.default_allocation,
            config.allocation_lease,
        ));
        let (ledger, ledger_writer) = Ledger::start(store.clone(), allocator.clone());
        let endpoints = crate::dataplane::EndpointOptions {
            policy: Arc::new(crate::endpoints::EndpointPolicy::new(
                config.endpoints.allow_private,
            )),
            resolver: config.endpoints.resolver.clone(),
            extra_roots: config.endpoints.extra_roots.clone(),
        };
        let executor = Arc::new(
            Executor::new(
                store.clone(),
                live.clone(),
                key,
                check,
                config.default_allocation,
                chatgpt.clone(),
            )
            .with_ledger(ledger.clone())
            .with_gateway_keys(llm_integration_core::PerProvider::from_fn(|p| {
                config.gateway_keys.get(p).is_some()
            }))
            .with_endpoints(endpoints.clone(), &config.limits)
            .map_err(StartError::Other)?,
        );
        // The tokenizer that meters cut streams, built off the request path.
        std::thread::Builder::new()
            .name("tokenizer-warm".into())
            .spawn(crate::metering::tokens::warm)
            .map_err(|e| StartError::Other(format!("cannot start a thread: {e}")))?;
        let metering = Arc::new(Metering::new(
            config.prices.clone(),
            Some(allocator),
            Arc::new(ledger.clone()),
        ));
        let targets = UpstreamTargets {
            base: (*config.upstreams).clone(),
            chatgpt_backend: config.chatgpt.backend.clone(),
        };
        let data_plane = Arc::new(
            DataPlane::builder(live.clone(), credentials, metering.clone())
                .targets(targets)
                .limits(config.limits.clone())
                .trusted_proxies(config.trusted.clone())
                .models_ttl(config.models_ttl)
                .default_host(config.default_host.clone())
                .endpoints(endpoints.clone())
                .build()
                .map_err(StartError::Other)?,
        );
        let accept = Accept {
            tls: match &config.tls {
                Some((cert, key)) => Some(tls_acceptor(cert, key).map_err(StartError::Other)?),
                None => None,
            },
            proxy_protocol_from: if config.proxy_protocol {
                config.trusted.addresses.clone()
            } else {
                Vec::new()
            },
        };
        let ssh = match &config.ssh {
            Some(settings) => {
                let (door, created) =
                    SshDoor::new(settings.clone(), executor.clone(), store.clone())
                        .map_err(StartError::Other)?;
                if created {
                    tracing::info!(file = %settings.host_key.display(), "generated a new SSH host key");
                }
                Some(Arc::new(door))
            }
            None => None,
        };
        Ok(App {
            ssh,
            ssh_listener: None,
            config,
            store,
            postgres,
            live,
            executor,
            data_plane,
            accept,
            metering,
            ledger,
            ledger_writer,
        })
    }

    /// On a store with no users: creates the first user (with the default
    /// integrations), registers this machine (127.0.0.1, ::1) as their VM
    /// `local`, and writes their access token to `DATA_DIR/owner.token`.
    pub async fn bootstrap(&self) -> Result<Option<Bootstrapped>, StartError> {
        if !self.store.accounts().await?.is_empty() {
            return Ok(None);
        }
        let email = self.config.bootstrap_email.clone();
        let (user, token) = match provision_user(self.store.as_ref(), &email, true).await {
            Ok(created) => created,
            // Another replica on the same database bootstrapped it first.
            Err(_) if !self.store.accounts().await?.is_empty() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut vm = Vm::new(
            VmId(0),
            "local"
                .parse()
                .map_err(|e: llm_integration_core::Error| StartError::Other(e.to_string()))?,
            user,
        );
        vm.addresses = vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ];
        vm.comment = "this machine".into();
        self.store.create_vm(&vm).await?;
        let token_file = self.config.data_dir.join("owner.token");
        if token_file.exists() {
            // A token file left from an earlier database is useless now.
            std::fs::remove_file(&token_file).map_err(|e| {
                StartError::Other(format!("cannot replace {}: {e}", token_file.display()))
            })?;
        }
        write_private(&token_file, token.as_bytes())?;
        if let Some(path) = self.config.database.sqlite_path() {
            crate::crypto::restrict_to_owner(path);
        }
        self.live.reload(true).await?;
        Ok(Some(Bootstrapped { email, token_file }))
    }

    /// Has [`App::serve`] serve the SSH door on `listener` too (bound to
    /// the configuration's `ssh_listen` by the binary). Without an SSH
    /// door in the configuration the listener is dropped.
    pub fn listen_ssh(&mut self, listener: TcpListener) {
        self.ssh_listener = self.ssh.as_ref().map(|_| listener);
    }

    /// Serves the admin listener and, when given, the data plane until
    /// `shutdown` resolves, then finishes in-flight requests (within the
    /// configured drain time).
    pub async fn serve(
        mut self,
        admin: TcpListener,
        data: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        // Custom endpoints may not point back at this server.
        let policy = self.data_plane.endpoint_policy();
        let listeners = [Some(&admin), data.as_ref(), self.ssh_listener.as_ref()];
        for listener in listeners.into_iter().flatten() {
            if let Ok(address) = listener.local_addr() {
                policy.add_own(address);
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let poller = {
            let live = self.live.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(live.poll(self.config.config_poll, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }))
        };
        let leases = self.metering.allocator.clone().map(|allocator| {
            let mut rx = stop_rx.clone();
            tokio::spawn(allocator.maintain(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }))
        });
        let follower = self.postgres.clone().map(|pg| {
            let live = self.live.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(pg.follow(live, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }))
        });
        let catalog = {
            let plane = self.data_plane.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(plane.refresh_catalog(self.config.models_ttl, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }))
        };
        let data_task = data.map(|listener| {
            let plane = self.data_plane.clone();
            let mut rx = stop_rx.clone();
            let drain = self.config.drain;
            let accept = self.accept.clone();
            tokio::spawn(async move {
                serve_data(
                    listener,
                    plane,
                    accept,
                    async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    },
                    drain,
                )
                .await;
            })
        });
        let ssh_task = match (self.ssh.clone(), self.ssh_listener.take()) {
            (Some(door), Some(listener)) => {
                let mut rx = stop_rx.clone();
                Some(tokio::spawn(door.serve(listener, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })))
            }
            _ => None,
        };
        let state = AdminState {
            executor: self.executor.clone(),
            store: self.store.clone(),
            metrics: self.metering.metrics.clone(),
            web: Arc::new(crate::web::WebState::default()),
        };
        let app = exec_http::router(state);
        let limits = self.config.limits.connections(&[]);
        let admin_limits = crate::listen::ConnectionLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_per_peer: ADMIN_MAX_PER_PEER,
            ..limits
        };
        let metrics = self.metering.metrics.clone();
        let builder = Arc::new(crate::listen::builder(&admin_limits));
        let serving_limits = admin_limits.clone();
        crate::listen::accept_loop(
            admin,
            admin_limits,
            metrics.clone(),
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            },
            self.config.drain,
            Duration::ZERO,
            || {},
            move |stream, peer, counted, stop| {
                let (app, builder, limits, metrics) = (
                    app.clone(),
                    builder.clone(),
                    serving_limits.clone(),
                    metrics.clone(),
                );
                async move {
                    let _counted = counted;
                    let handler = move |req| exec_http::handle(app.clone(), req);
                    crate::listen::serve_connection(
                        stream, peer, &builder, &limits, &metrics, stop, handler,
                    )
                    .await;
                }
            },
        )
        .await;
        drop(stop_rx);
        if let Some(task) = data_task {
            let _ = task.await;
        }
        if let Some(task) = ssh_task {
            let _ = task.await;
        }
        let _ = poller.await;
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        let _ = catalog.await;
        // Every response has ended or was cut at the deadline; a cut HTTP/2
        // stream may record its usage a moment after its connection closed.
        let in_flight = &self.metering.in_flight;
        if tokio::time::timeout(Duration::from_secs(5), in_flight.none())
            .await
            .is_err()
        {
            tracing::error!(
                requests = in_flight.count(),
                "requests still unrecorded 5 s after the data plane stopped; their usage is lost"
            );
        }
        // Write what they used.
        self.ledger.close();
        self.ledger_writer.finished().await;
        // Then give back what the leases hold unspent, for the other replicas.
        if let Some(task) = leases {
            let _ = task.await;
        }
        if let Some(allocator) = &self.metering.allocator {
            allocator.release_all().await;
        }
        self.store.close().await;
        Ok(())
    }
}
