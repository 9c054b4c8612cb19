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
