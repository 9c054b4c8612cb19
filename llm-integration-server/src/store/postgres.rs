//! The PostgreSQL store: one database shared by several gateway replicas.
//!
//! The same SQL as the SQLite store (`sql.rs`), with PostgreSQL's own
//! migrations (`migrations/postgres/`). Every configuration write bumps
//! `config_version` and, in the same transaction, notifies the channel
//! [`PgStore::channel`] (`NOTIFY` is delivered at commit, so a replica
//! never reloads before the write is visible). [`PgStore::follow`] keeps a
//! dedicated `LISTEN` connection per replica and reloads the snapshot on
//! each notification; the version poll stays as the fallback for a lost
//! connection.
//!
//! Concurrent replicas starting at once are safe: sqlx's migrator holds an
//! advisory lock while it migrates.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use llm_integration_core::seams::StoreError;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::unavailable;
use crate::live::LiveConfig;

// The shared SQL, compiled for this driver (once per backend, on purpose).
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

type Db = Postgres;
type Store = PgStore;

/// How long a request waits for a pooled connection before the store
/// answers `Unavailable` (a write then fails clearly instead of hanging).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections per replica, at most (the `LISTEN` connection is extra).
const MAX_CONNECTIONS: u32 = 8;

/// A PostgreSQL database holding the whole control plane.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    channel: String,
}

impl PgStore {
    /// Connects to `url` (libpq's URL form; a schema other than `public`
    /// through `?options=-c%20search_path%3DSCHEMA`) and applies the
    /// embedded migrations.
    ///
    /// Errors: [`StoreError::Unavailable`] when the URL does not parse or
    /// the server cannot be reached (the message never repeats the URL's
    /// password), [`StoreError::Corrupt`] when a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let shown = super::Database::Postgres(url.to_owned()).describe();
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot read the PostgreSQL URL {shown}: {}; the form is postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME",
                redact(&e.to_string(), url)
            ))
        })?;
        let options = options.application_name("llm-integration");
        // One connection first, so that a refusal says why (a pool that
        // cannot connect only says it timed out).
        let first = tokio::time::timeout(ACQUIRE_TIMEOUT * 2, {
            use sqlx::ConnectOptions;
            options.connect()
        })
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {shown}: no answer within {} s",
                (ACQUIRE_TIMEOUT * 2).as_secs()
            ))
        })?
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {shown}: {}",
                redact(&e.to_string(), url)
            ))
        })?;
        {
            use sqlx::Connection;
            let _ = first.close().await;
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Some(Duration::from_secs(60)))
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {shown}: {}",
                    redact(&e.to_string(), url)
                ))
            })?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| {
                StoreError::Corrupt(format!(
                    "cannot migrate the PostgreSQL database {shown}: {e}"
                ))
            })?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await
            .map_err(unavailable)?;
        Ok(PgStore {
            pool,
            channel: channel_for(&schema),
        })
    }

    /// The `LISTEN`/`NOTIFY` channel configuration writes are announced on:
    /// `llm_integration_config` for the `public` schema, with the schema's
    /// name appended for any other (installations sharing a database in
    /// separate schemas do not wake each other).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The connection pool (for the replica tests and `admin migrate`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'_, Postgres>, StoreError> {
        self.pool.begin().await.map_err(unavailable)
    }

    /// Reloads `live` whenever another replica (or this one) writes the
    /// configuration, until `shutdown` resolves.
    ///
    /// Holds one dedicated connection in `LISTEN`. When it is lost, the
    /// loop reconnects (every second at most), and reloads once after
    /// listening again, for what it missed; meanwhile the version poll
    /// keeps the snapshot current.
    pub async fn follow(
        self: Arc<Self>,
        live: Arc<LiveConfig>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut failing = false;
        loop {
            let listening = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(&self.channel).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let outcome = tokio::select! {
                () = &mut shutdown => return,
                l = listening => l,
            };
            match outcome {
                Ok(mut listener) => {
                    if failing {
                        tracing::info!("configuration notifications resumed");
                    }
                    let _ = live.reload(false).await;
                    loop {
                        let next = tokio::select! {
                            () = &mut shutdown => return,
                            n = listener.try_recv() => n,
                        };
                        match next {
                            Ok(Some(_)) => {
                                if let Err(e) = live.reload(false).await {
                                    tracing::warn!(error = %e, "reload after a notification failed; the poll retries");
                                }
                            }
                            // The connection was lost; `try_recv` reconnects on
                            // the next call, but notifications sent meanwhile
                            // are gone: reload for them.
                            Ok(None) => {
                                let _ = live.reload(false).await;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "configuration notifications interrupted; polling until they resume");
                                failing = true;
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot listen for configuration notifications; polling until PostgreSQL answers");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Bumps the configuration version, notifies the replicas (delivered at
/// commit) and commits.
async fn commit(store: &PgStore, mut tx: Transaction<'_, Postgres>) -> Result<(), StoreError> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(&store.channel)
        .bind(version.to_string())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

/// Appends `chunk` to the ledger with one statement of one array per
/// column (`UNNEST`): the same text whatever the batch size, so it is
/// prepared once per connection, and PostgreSQL binds 17 parameters
/// instead of 17 per row.
async fn insert_usage(
    tx: &mut Transaction<'_, Postgres>,
    chunk: &[llm_integration_core::seams::UsageRecord],
) -> Result<(), StoreError> {
    let rows: Vec<super::LedgerRow> = chunk.iter().map(super::LedgerRow::from).collect();
    let column = |f: fn(&super::LedgerRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(
        "INSERT INTO usage_ledger (started_at_ms, owner_kind, owner_id, vm_id, integration_id, provider, source, model, \
         input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_micros, status, duration_ms, ttfb_ms, estimated) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], \
         $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[], $17::BOOLEAN[])",
    )
    .bind(column(|r| r.started_at_ms))
    .bind(rows.iter().map(|r| r.owner_kind).collect::<Vec<&str>>())
    .bind(column(|r| r.owner_id))
    .bind(column(|r| r.vm_id))
    .bind(column(|r| r.integration_id))
    .bind(rows.iter().map(|r| r.provider).collect::<Vec<&str>>())
    .bind(rows.iter().map(|r| r.source).collect::<Vec<&str>>())
    .bind(rows.iter().map(|r| r.model.clone()).collect::<Vec<Option<String>>>())
    .bind(column(|r| r.input_tokens))
    .bind(column(|r| r.output_tokens))
    .bind(column(|r| r.cache_creation_tokens))
    .bind(column(|r| r.cache_read_tokens))
    .bind(column(|r| r.cost_micros))
    .bind(column(|r| r.status))
    .bind(column(|r| r.duration_ms))
    .bind(rows.iter().map(|r| r.ttfb_ms).collect::<Vec<Option<i64>>>())
    .bind(rows.iter().map(|r| r.estimated).collect::<Vec<bool>>())
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// How long a server waits for a lock another holds (a ChatGPT refresh
/// takes seconds at most).
const LOCK_WAIT: &str = "30s";

/// Takes a transaction-scoped advisory lock keyed by the schema and `name`;
/// the returned guard holds its transaction, and dropping it rolls back,
/// which releases the lock (also if this server dies: PostgreSQL ends the
/// session).
async fn hold_lock(
    store: &PgStore,
    name: &str,
) -> Result<llm_integration_core::seams::StoreLock, StoreError> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\n{name}", store.channel).as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    let key = i64::from_be_bytes(key);
    let mut tx = store.pool.begin().await.map_err(unavailable)?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "another replica held the lock {name} for more than {LOCK_WAIT}: {e}"
            ))
        })?;
    Ok(Box::new(tx))
}

/// The channel for `schema` (identifiers are at most 63 bytes).
fn channel_for(schema: &str) -> String {
    let base = "llm_integration_config";
    if schema == "public" {
        return base.to_owned();
    }
    let named = format!("{base}_{schema}");
    if named.len() <= 63 {
        return named;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(schema.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{base}_{hex}")
}

/// Removes the URL's passwords (its userinfo's and a `password=`
/// parameter's) from a driver message that may quote them.
fn redact(message: &str, url: &str) -> String {
    super::url_passwords(url)
        .into_iter()
        .fold(message.to_owned(), |m, p| m.replace(p, "***"))
}
