//! The live configuration: the current [`Snapshot`], swapped atomically.
//!
//! Readers (the data plane) take an `Arc<Snapshot>` with one atomic load
//! and never wait on a writer. Every configuration write reloads it; a
//! poller also reloads it when the store's version moves (a change made by
//! an operator command or another replica). If the store is unavailable,
//! the last good snapshot keeps serving.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use llm_integration_core::seams::{ConfigStore, StoreError};
use llm_integration_core::{ModelCatalog, Snapshot, SnapshotOptions};
use tokio::sync::Mutex;

/// The current snapshot and how to rebuild it.
pub struct LiveConfig {
    current: ArcSwap<Snapshot>,
    store: Arc<dyn ConfigStore>,
    /// The options every snapshot is built with (the catalog changes).
    base: std::sync::RwLock<SnapshotOptions>,
    /// Serialises reloads so an older load never replaces a newer one.
    reload_lock: Mutex<()>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("version", &self.current.load().version())
            .finish()
    }
}

impl LiveConfig {
    /// Loads the first snapshot.
    pub async fn load(
        store: Arc<dyn ConfigStore>,
        base: SnapshotOptions,
    ) -> Result<Self, StoreError> {
        let version = store.version().await?;
        let records = store.load().await?;
        let snapshot = Snapshot::build(
            records,
            SnapshotOptions {
                version,
                ..base.clone()
            },
        );
        Ok(LiveConfig {
            current: ArcSwap::from_pointee(snapshot),
            store,
            base: std::sync::RwLock::new(base),
            reload_lock: Mutex::new(()),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rebuilds the snapshot from the store if its version moved (or
    /// always, with `force`). Returns whether a new snapshot was swapped in.
    pub async fn reload(&self, force: bool) -> Result<bool, StoreError> {
        let _guard = self.reload_lock.lock().await;
        let version = self.store.version().await?;
        if !force && version == self.current.load().version() {
            return Ok(false);
        }
        let records = self.store.load().await?;
        let base = self
            .base
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let snapshot = Snapshot::build(records, SnapshotOptions { version, ..base });
        self.current.store(Arc::new(snapshot));
        tracing::debug!(version, "configuration snapshot swapped in");
        Ok(true)
    }

    /// The model catalog the current snapshot routes with.
    pub fn catalog(&self) -> Arc<ModelCatalog> {
        self.current.load().catalog_shared()
    }

    /// Routes with `catalog` from now on: the current snapshot is swapped
    /// for one with this catalog (the configuration is shared, not
    /// rebuilt), and later reloads keep it.
    pub fn set_catalog(&self, catalog: Arc<ModelCatalog>) {
        if let Ok(mut base) = self.base.write() {
            base.catalog = catalog.clone();
        }
        // A reload racing this one rebuilds from `base`, which already has it.
        self.current
            .rcu(|current| Arc::new(current.with_catalog(catalog.clone())));
    }

    /// Polls the store every `interval` until `shutdown` resolves.
    pub async fn poll(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            match self.reload(false).await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("configuration store reachable again");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "configuration store unavailable; serving the last good snapshot");
                }
                Err(_) => {}
            }
        }
    }
}
