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

/// The row counts of the ledger's multi-row `INSERT`s: a batch is written
/// as statements of these sizes, largest first, so four statements serve
/// every batch and each is prepared once per connection and kept (a
/// statement per batch size would be prepared anew for nearly every
/// batch, which profiles showed costing more than the rest of a request's
/// metering).
const INSERT_ROWS: [usize; 4] = [64, 16, 4, 1];

/// The text of the ledger's `INSERT` of `rows` rows (one of
/// [`INSERT_ROWS`]).
fn insert_text(rows: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        INSERT_ROWS
            .iter()
            .map(|&n| {
                let row = format!("({})", vec!["?"; LEDGER_COLUMNS].join(", "));
                let values = vec![row; n].join(", ");
                (
                    n,
                    format!(
                        "INSERT INTO usage_ledger (started_at_ms, owner_kind, owner_id, vm_id, integration_id, provider, source, model, \
                         input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_micros, status, duration_ms, ttfb_ms, estimated) \
                         VALUES {values}"
                    ),
                )
            })
            .collect()
    });
    texts
        .iter()
        .find(|(n, _)| *n == rows)
        .map_or("", |(_, text)| text.as_str())
}

/// The ledger's columns written per row.
const LEDGER_COLUMNS: usize = 17;

/// Appends `chunk` to the ledger in statements of [`INSERT_ROWS`] rows.
async fn insert_usage(
    tx: &mut Transaction<'_, Sqlite>,
    chunk: &[llm_integration_core::seams::UsageRecord],
) -> Result<(), StoreError> {
    let mut rest = chunk;
    while !rest.is_empty() {
        let rows = INSERT_ROWS
            .iter()
            .copied()
            .find(|&n| n <= rest.len())
            .unwrap_or(1);
        let (now, later) = rest.split_at(rows);
        let mut insert = sqlx::query(insert_text(rows));
        for r in now.iter().map(super::LedgerRow::from) {
            insert = insert
                .bind(r.started_at_ms)
                .bind(r.owner_kind)
                .bind(r.owner_id)
                .bind(r.vm_id)
                .bind(r.integration_id)
                .bind(r.provider)
                .bind(r.source)
                .bind(r.model)
                .bind(r.input_tokens)
                .bind(r.output_tokens)
                .bind(r.cache_creation_tokens)
                .bind(r.cache_read_tokens)
                .bind(r.cost_micros)
                .bind(r.status)
                .bind(r.duration_ms)
                .bind(r.ttfb_ms)
                .bind(r.estimated);
        }
        insert.execute(&mut **tx).await.map_err(unavailable)?;
        rest = later;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_integration_core::seams::{ControlStore, TokenUsage, UsageRecord};
    use llm_integration_core::{IntegrationId, Owner, Provider, SourceKind, UserId, VmId};

    /// Batches of every size are written whole, row for row, through the
    /// statements of [`INSERT_ROWS`] rows.
    #[tokio::test]
    async fn ledger_batches_of_any_size_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let record = |i: u64| UsageRecord {
            started_at: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(i),
            owner: Owner::User(UserId(1)),
            vm: VmId(1),
            integration: IntegrationId(1),
            provider: Provider::OpenAi,
            source: SourceKind::Byok,
            model: (i % 2 == 0).then(|| format!("m{i}")),
            tokens: TokenUsage {
                input: i,
                output: 1,
                cache_creation: 0,
                cache_read: 0,
            },
            estimated: false,
            cost_micros: 0,
            status: 200,
            duration: Duration::from_millis(i),
            time_to_first_byte: None,
        };
        let mut written = 0u64;
        for size in [1u64, 3, 4, 5, 63, 64, 65, 85, 500, 501] {
            let batch: Vec<UsageRecord> = (written..written + size).map(record).collect();
            store.record_usage(&batch, 0, "test").await.unwrap();
            written += size;
        }
        let (rows, sum, models): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), SUM(input_tokens), COUNT(DISTINCT model) FROM usage_ledger",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        let n = i64::try_from(written).unwrap();
        assert_eq!(rows, n);
        assert_eq!(sum, n * (n - 1) / 2);
        assert_eq!(models, (n + 1) / 2);
    }
}
