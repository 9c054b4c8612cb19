//! The embedded SQLite store: one file, migrations embedded and applied on
//! open, WAL mode. One server process owns it.

use std::path::Path;
use std::time::Duration;

use llm_integration_core::seams::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::unavailable;

// The shared SQL, compiled for this driver (once per backend, on purpose).
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

type Db = Sqlite;
type Store = SqliteStore;

/// A SQLite database file holding the whole control plane.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` and applies
    /// the embedded migrations.
    ///
    /// Errors: [`StoreError::Unavailable`] when the file cannot be opened,
    /// [`StoreError::Corrupt`] when a migration fails.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open database {}: {e}", path.display()))
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| {
                StoreError::Corrupt(format!("cannot migrate database {}: {e}", path.display()))
            })?;
        Ok(SqliteStore { pool })
    }

    /// The connection pool (for `admin migrate`, which reads every table).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'_, Sqlite>, StoreError> {
        self.pool.begin().await.map_err(unavailable)
    }
}

/// Bumps the configuration version and commits: the poller of this process
/// sees the new version.
async fn commit(_store: &SqliteStore, mut tx: Transaction<'_, Sqlite>) -> Result<(), StoreError> {
    sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

/// One process owns a SQLite database: its callers' own in-memory locks
/// are enough, so this lock holds nothing.
async fn hold_lock(
    _store: &SqliteStore,
    _name: &str,
) -> Result<llm_integration_core::seams::StoreLock, StoreError> {
    Ok(Box::new(()))
}

/// Appends `chunk` to the ledger: one multi-row `INSERT` (not kept in the
/// statement cache: each batch size is its own statement, and a cached one
/// of hundreds of rows holds hundreds of KiB).
async fn insert_usage(
    tx: &mut Transaction<'_, Sqlite>,
    chunk: &[llm_integration_core::seams::UsageRecord],
) -> Result<(), StoreError> {
    let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
        "INSERT INTO usage_ledger (started_at_ms, owner_kind, owner_id, vm_id, integration_id, provider, source, model, \
         input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_micros, status, duration_ms, ttfb_ms, estimated) ",
    );
    insert.push_values(chunk.iter().map(super::LedgerRow::from), |mut row, r| {
        row.push_bind(r.started_at_ms)
            .push_bind(r.owner_kind)
            .push_bind(r.owner_id)
            .push_bind(r.vm_id)
            .push_bind(r.integration_id)
            .push_bind(r.provider)
            .push_bind(r.source)
            .push_bind(r.model)
            .push_bind(r.input_tokens)
            .push_bind(r.output_tokens)
            .push_bind(r.cache_creation_tokens)
            .push_bind(r.cache_read_tokens)
            .push_bind(r.cost_micros)
            .push_bind(r.status)
            .push_bind(r.duration_ms)
            .push_bind(r.ttfb_ms)
            .push_bind(r.estimated);
    });
    insert
        .build()
        .persistent(false)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}
