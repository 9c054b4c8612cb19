//! `admin migrate`: moves a single-machine installation (its SQLite file)
//! into an empty PostgreSQL database, for several replicas to share.
//!
//! The copy is by table, preserving every id, in one PostgreSQL
//! transaction: a failure leaves the target as it was (empty). Sealed keys
//! and ChatGPT tokens are copied as bytes, so they stay sealed under the
//! same master key; access tokens stay hashed. Columns are read from both
//! schemas (`PRAGMA table_info`, `information_schema.columns`) and each
//! value is converted to the PostgreSQL column's type (0/1 → `BOOLEAN`,
//! SQLite's UTC text timestamps → `TIMESTAMPTZ`, blobs → `BYTEA`).
//!
//! The tables are listed once, in dependency order ([`TABLES`]); a SQLite
//! table the list does not know stops the copy before anything is written,
//! so a table added later is never silently left behind.
//!
//! After the commit the copy is verified: row counts per table, the whole
//! configuration read through both stores, and a sample round trip (one
//! sealed API key and one ChatGPT account opened with the master key from
//! both sides). A failed verification empties the target again.

use std::fmt;
use std::path::{Path, PathBuf};

use llm_integration_core::seams::{ConfigStore, ControlStore, StoreError};
use llm_integration_core::{CredentialId, UserId};
use sqlx::{Postgres, Row, Sqlite, Transaction};

use crate::crypto::{purpose, KeySource, MasterKey};
use crate::store::{Database, PgStore, SqliteStore};

/// `admin migrate` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The installation's SQLite database file (DATA_DIR/llm-integration.db); stop its server first.
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The PostgreSQL database to fill (postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME); it must hold no data.
    #[arg(long, value_name = "URL")]
    pub to: String,
}

/// The tables copied, parents before the tables that refer to them. Every
/// table of the SQLite schema must be here, in [`FOLDED`] or in
/// [`IGNORED`]; `admin migrate` refuses a database with any other.
pub const TABLES: &[&str] = &[
    "users",
    "teams",
    "team_members",
    "vms",
    "vm_tags",
    "vm_addresses",
    "integrations",
    "attachments",
    "credentials",
    "chatgpt_accounts",
    "access_tokens",
    "ssh_keys",
    "web_tokens",
    "allocations",
    "usage_ledger",
    "meta",
    "config_version",
];

/// Tables whose rows are folded into another table instead of copied:
/// `allocation_leases` (a replica's slice of an owner's balance) goes back
/// into `allocations.balance_micros`.
pub const FOLDED: &[&str] = &["allocation_leases"];

/// Tables that are the database's own bookkeeping, never copied.
pub const IGNORED: &[&str] = &["_sqlx_migrations"];

/// The table whose one row counts configuration writes: not copied; the
/// target's version is set above the source's so that every replica
/// reloads.
const VERSION_TABLE: &str = "config_version";

/// Bound parameters per statement, at most (PostgreSQL allows 65 535).
const MAX_BINDS: usize = 30_000;

/// Why the installation was not moved. The message names the problem and
/// the fix; it never holds a key, a token or the URL's password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MigrateError(String);

fn fail(message: impl Into<String>) -> MigrateError {
    MigrateError(message.into())
}

/// What was copied and verified.
#[derive(Debug, Clone)]
pub struct Report {
    /// The source file.
    pub from: PathBuf,
    /// The target, its password hidden.
    pub to: String,
    /// Rows copied per table, in copy order.
    pub tables: Vec<(String, u64)>,
    /// Allocation lease rows folded back into balances.
    pub folded_leases: u64,
    /// What the sample round trip opened: sealed API keys and ChatGPT
    /// accounts (0 or 1 each).
    pub sampled_keys: u64,
    /// See [`Report::sampled_keys`].
    pub sampled_accounts: u64,
    /// The target's configuration version after the copy.
    pub config_version: i64,
    /// The master key file used (the replicas need the same key); `None`
    /// when the key came from `LLM_INTEGRATION_MASTER_KEY`.
    pub master_key_file: Option<PathBuf>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Copied {} into {}:", self.from.display(), self.to)?;
        writeln!(f, "  {:<18} {:>8}", "TABLE", "ROWS")?;
        for (table, rows) in &self.tables {
            writeln!(f, "  {table:<18} {rows:>8}")?;
        }
        if self.folded_leases > 0 {
            writeln!(
                f,
                "  ({} allocation leases folded back into the balances)",
                self.folded_leases
            )?;
        }
        writeln!(f, "  configuration version set to {}", self.config_version)?;
        let mut sample = Vec::new();
        if self.sampled_keys > 0 {
            sample.push("a sealed API key");
        }
        if self.sampled_accounts > 0 {
            sample.push("a ChatGPT account's tokens");
        }
        let sample = if sample.is_empty() {
            "no sealed secret to open (none stored)".to_owned()
        } else {
            format!(
                "{} opened with the master key from PostgreSQL, equal to the source's",
                sample.join(" and ")
            )
        };
        writeln!(
            f,
            "Verified: row counts equal; the configuration reads the same from both; {sample}."
        )?;
        writeln!(
            f,
            "Next: keep the SQLite server stopped (its file is no longer the installation's database), \
and start each replica on PostgreSQL with the same master key:"
        )?;
        let key = match &self.master_key_file {
            Some(path) => format!(" --master-key-file {}", path.display()),
            None => String::new(),
        };
        writeln!(f, "  llm-integration-server --database '{}'{key}", self.to)?;
        if self.master_key_file.is_none() {
            writeln!(
                f,
                "  (with LLM_INTEGRATION_MASTER_KEY set as for this command)"
            )?;
        }
        Ok(())
    }
}

/// A value as SQLite stored it (its storage class, from `typeof`).
#[derive(Debug, Clone)]
enum Stored {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Stored {
    fn kind(&self) -> &'static str {
        match self {
            Stored::Null => "NULL",
            Stored::Integer(_) => "an integer",
            Stored::Real(_) => "a real number",
            Stored::Text(_) => "text",
            Stored::Blob(_) => "a blob",
        }
    }
}

/// A value converted for a PostgreSQL column.
#[derive(Debug, Clone)]
enum Bound {
    Int(Option<i64>),
    Bool(Option<bool>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// How a PostgreSQL column is filled: which binding, which cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Int,
    Bool,
    Float,
    Text,
    Json,
    Bytes,
    TimestampTz,
    Timestamp,
}

impl Target {
    fn of(data_type: &str) -> Option<Target> {
        Some(match data_type {
            "bigint" | "integer" | "smallint" => Target::Int,
            "boolean" => Target::Bool,
            "double precision" | "real" | "numeric" => Target::Float,
            "text" | "character varying" | "character" => Target::Text,
            "json" | "jsonb" => Target::Json,
            "bytea" => Target::Bytes,
            "timestamp with time zone" => Target::TimestampTz,
            "timestamp without time zone" => Target::Timestamp,
            _ => return None,
        })
    }

    /// The placeholder `$n` with the cast this column needs.
    fn placeholder(self, n: usize, data_type: &str) -> String {
        match self {
            Target::Int | Target::Bool | Target::Text | Target::Bytes => format!("${n}"),
            Target::Float => format!("CAST(${n} AS {data_type})"),
            Target::Json => format!("CAST(${n} AS {data_type})"),
            Target::TimestampTz => format!("CAST(${n} AS timestamptz)"),
            Target::Timestamp => format!("CAST(${n} AS timestamp)"),
        }
    }

    fn convert(self, value: Stored) -> Result<Bound, Stored> {
        Ok(match (self, value) {
            (Target::Int, Stored::Null) => Bound::Int(None),
            (Target::Int, Stored::Integer(i)) => Bound::Int(Some(i)),
            (Target::Int, Stored::Text(t)) => match t.trim().parse() {
                Ok(i) => Bound::Int(Some(i)),
                Err(_) => return Err(Stored::Text(t)),
            },
            (Target::Bool, Stored::Null) => Bound::Bool(None),
            (Target::Bool, Stored::Integer(i)) => Bound::Bool(Some(i != 0)),
            (Target::Bool, Stored::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" => Bound::Bool(Some(true)),
                "0" | "false" | "f" => Bound::Bool(Some(false)),
                _ => return Err(Stored::Text(t)),
            },
            (Target::Float, Stored::Null) => Bound::Float(None),
            (Target::Float, Stored::Real(r)) => Bound::Float(Some(r)),
            (Target::Float, Stored::Integer(i)) => Bound::Float(Some(i as f64)),
            (Target::Text | Target::Json, Stored::Null) => Bound::Text(None),
            (Target::Text | Target::Json, Stored::Text(t)) => Bound::Text(Some(t)),
            (Target::Text | Target::Json, Stored::Integer(i)) => Bound::Text(Some(i.to_string())),
            (Target::Text | Target::Json, Stored::Blob(b)) => match String::from_utf8(b) {
                Ok(t) => Bound::Text(Some(t)),
                Err(e) => return Err(Stored::Blob(e.into_bytes())),
            },
            (Target::Bytes, Stored::Null) => Bound::Bytes(None),
            (Target::Bytes, Stored::Blob(b)) => Bound::Bytes(Some(b)),
            (Target::Bytes, Stored::Text(t)) => Bound::Bytes(Some(t.into_bytes())),
            (Target::TimestampTz, Stored::Null) | (Target::Timestamp, Stored::Null) => {
                Bound::Text(None)
            }
            (Target::TimestampTz, Stored::Text(t)) => Bound::Text(Some(utc_timestamp(&t))),
            (Target::Timestamp, Stored::Text(t)) => Bound::Text(Some(t)),
            (_, other) => return Err(other),
        })
    }
}

/// SQLite's `CURRENT_TIMESTAMP` text (`2026-12-01 07:14:13`, UTC, no
/// offset) with its offset made explicit, so PostgreSQL does not read it
/// in the session's time zone. Text that already has an offset (`Z`,
/// `+01:00`) is kept.
fn utc_timestamp(text: &str) -> String {
    let t = text.trim();
    // An offset can only follow the date (`YYYY-MM-DD`, 10 bytes).
    let has_offset = t
        .get(10..)
        .is_some_and(|time| time.ends_with(['Z', 'z']) || time.contains('+') || time.contains('-'));
    if has_offset {
        t.to_owned()
    } else {
        format!("{t}+00")
    }
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL column: its name and `information_schema` data type.
#[derive(Debug, Clone)]
struct PgColumn {
    name: String,
    data_type: String,
    target: Target,
}

/// What is copied of one table.
#[derive(Debug, Clone)]
struct Plan {
    table: &'static str,
    columns: Vec<PgColumn>,
}

/// Copies the installation in `from` into the empty PostgreSQL database
/// `to`, then verifies the copy with the master key from `key`.
///
/// Errors, each with its fix: `to` is not a `postgres://` URL or cannot be
/// reached; `from` is missing or not a SQLite database; the master key is
/// not the installation's; the target already holds data; the source holds
/// a table this version does not know; the copy or its verification failed
/// (the target is left empty).
pub async fn migrate(from: &Path, to: &str, key: &KeySource) -> Result<Report, MigrateError> {
    let target = Database::parse(to).map_err(fail)?;
    let Database::Postgres(url) = &target else {
        return Err(fail(format!(
            "--to {} is not a PostgreSQL URL; give postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME",
            target.describe()
        )));
    };
    let shown = target.describe();
    let from = match Database::parse(&from.to_string_lossy()).map_err(fail)? {
        Database::Sqlite(path) => path,
        source @ Database::Postgres(_) => {
            return Err(fail(format!(
                "--from {} is a PostgreSQL URL; give --from the SQLite installation's database file (DATA_DIR/llm-integration.db)",
                source.describe()
            )))
        }
    };
    check_sqlite_file(&from)?;

    let source = SqliteStore::open(&from).await.map_err(|e| {
        fail(format!(
            "cannot open the SQLite database {}: {e}",
            from.display()
        ))
    })?;
    let outcome = async {
        refuse_a_running_source(&source, &from).await?;
        let master = master_key(&source, &from, key).await?;
        let samples = Samples::read(&source, &master, &from).await?;
        let pg = PgStore::connect(url)
            .await
            .map_err(|e| fail(format!("{e}; nothing was copied")))?;
        let outcome = copy_and_verify(&source, &pg, &from, &shown, (&master, key), &samples).await;
        pg.close().await;
        outcome
    }
    .await;
    source.close().await;
    outcome
}

async fn copy_and_verify(
    source: &SqliteStore,
    pg: &PgStore,
    from: &Path,
    shown: &str,
    (key, key_source): (&MasterKey, &KeySource),
    samples: &Samples,
) -> Result<Report, MigrateError> {
    let mut read = source
        .pool()
        .begin()
        .await
        .map_err(|e| fail(format!("cannot read {}: {e}", from.display())))?;
    let plans = plan(&mut read, pg, from).await?;
    let mut tx = pg
        .pool()
        .begin()
        .await
        .map_err(|e| fail(format!("cannot write to {shown}: {e}; nothing was copied")))?;
    refuse_non_empty(&mut tx, shown).await?;

    let mut tables = Vec::new();
    for plan in &plans {
        let rows = copy_table(&mut read, &mut tx, plan)
            .await
            .map_err(|e| fail(format!("{e}; nothing was copied")))?;
        tables.push((plan.table.to_owned(), rows));
    }
    let folded_leases = fold_leases(&mut read, &mut tx)
        .await
        .map_err(|e| fail(format!("{e}; nothing was copied")))?;
    let config_version = set_version(&mut read, &mut tx)
        .await
        .map_err(|e| fail(format!("{e}; nothing was copied")))?;
    for plan in &plans {
        move_sequences(&mut tx, plan)
            .await
            .map_err(|e| fail(format!("{e}; nothing was copied")))?;
    }
    // Counts, before anything is committed.
    for (table, copied) in &tables {
        let there = count_pg(&mut tx, table)
            .await
            .map_err(|e| fail(format!("{e}; nothing was copied")))?;
        if there != *copied {
            return Err(fail(format!(
                "the copy of {table} holds {there} rows instead of {copied}; nothing was copied"
            )));
        }
    }
    tx.commit().await.map_err(|e| {
        fail(format!(
            "cannot commit the copy to {shown}: {e}; nothing was copied"
        ))
    })?;
    let _ = read.rollback().await;

    if let Err(problem) = verify(source, pg, key, samples).await {
        let emptied = empty_again(pg, &plans).await;
        return Err(fail(format!(
            "verification failed: {problem}; {}",
            match emptied {
                Ok(()) => "the target was emptied again".to_owned(),
                Err(e) => format!(
                    "emptying the target again failed too ({e}): drop and recreate the target database before trying again"
                ),
            }
        )));
    }
    Ok(Report {
        from: from.to_path_buf(),
        to: shown.to_owned(),
        tables: tables
            .into_iter()
            .filter(|(t, _)| t != VERSION_TABLE)
            .collect(),
        folded_leases,
        sampled_keys: u64::from(samples.key.is_some()),
        sampled_accounts: u64::from(samples.account.is_some()),
        config_version,
        master_key_file: match key_source {
            KeySource::File(path) => Some(path.clone()),
            KeySource::Env(_) => None,
        },
    })
}

/// A server still running on the source renews its allocation leases
/// every second: an unexpired lease means the copy would miss what it
/// writes next (and fold back a lease it is still spending).
async fn refuse_a_running_source(source: &SqliteStore, from: &Path) -> Result<(), MigrateError> {
    let newest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(expires_at_ms) FROM allocation_leases")
            .fetch_one(source.pool())
            .await
            .map_err(|e| fail(format!("cannot read {}: {e}", from.display())))?;
    let now = crate::store::unix_ms(std::time::SystemTime::now());
    match newest {
        Some(expires) if expires > now => Err(fail(format!(
            "a server is running on {}, or stopped without shutting down (its allocation lease expires in {} s); stop it with SIGTERM (or wait for the lease), then run admin migrate again",
            from.display(),
            (expires - now + 999) / 1000
        ))),
        _ => Ok(()),
    }
}

/// The source must be an existing SQLite file (opening would create one).
fn check_sqlite_file(from: &Path) -> Result<(), MigrateError> {
    use std::io::Read;
    let mut file = std::fs::File::open(from).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            fail(format!(
                "no SQLite database at {}; give --from the installation's database file (DATA_DIR/llm-integration.db, or the server's --database path)",
                from.display()
            ))
        } else {
            fail(format!("cannot read {}: {e}", from.display()))
        }
    })?;
    let mut header = [0u8; 16];
    let read = file.read(&mut header).unwrap_or(0);
    if read < 16 || &header != b"SQLite format 3\0" {
        return Err(fail(format!(
            "{} is not a SQLite database; give --from the installation's database file (DATA_DIR/llm-integration.db)",
            from.display()
        )));
    }
    Ok(())
}

/// The master key, checked against the installation's key check.
async fn master_key(
    source: &SqliteStore,
    from: &Path,
    key: &KeySource,
) -> Result<MasterKey, MigrateError> {
    let (master, _) = MasterKey::load(key, false).map_err(|e| fail(e.to_string()))?;
    let check = source
        .meta(crate::server::KEY_CHECK)
        .await
        .map_err(|e| fail(format!("cannot read {}: {e}", from.display())))?;
    if let Some(stored) = check {
        if !master.matches_check(&stored) {
            return Err(fail(format!(
                "the master key from {} is not the key {} was created with; nothing was copied. \
Pass the installation's key with --master-key-file FILE or LLM_INTEGRATION_MASTER_KEY",
                key.describe(),
                from.display()
            )));
        }
    }
    Ok(master)
}

/// One sealed key and one ChatGPT account, as the source holds them, to
/// open on the target after the copy.
struct Samples {
    key: Option<(CredentialId, zeroize::Zeroizing<Vec<u8>>)>,
    account: Option<(UserId, String, zeroize::Zeroizing<Vec<u8>>)>,
}

impl Samples {
    async fn read(
        source: &SqliteStore,
        key: &MasterKey,
        from: &Path,
    ) -> Result<Self, MigrateError> {
        let unreadable = |e: sqlx::Error| fail(format!("cannot read {}: {e}", from.display()));
        let store_err = |e: StoreError| fail(format!("cannot read {}: {e}", from.display()));
        let wrong_key = |what: &str| {
            fail(format!(
                "{what} in {} cannot be opened with this master key; nothing was copied. \
Pass the installation's key with --master-key-file FILE or LLM_INTEGRATION_MASTER_KEY",
                from.display()
            ))
        };
        let credential: Option<i64> =
            sqlx::query_scalar("SELECT id FROM credentials ORDER BY id LIMIT 1")
                .fetch_optional(source.pool())
                .await
                .map_err(unreadable)?;
        let mut samples = Samples {
            key: None,
            account: None,
        };
        if let Some(id) = credential {
            let id = CredentialId(id);
            if let Some(sealed) = source.sealed_credential(id).await.map_err(store_err)? {
                let plain = key
                    .open(&sealed, purpose::API_KEY)
                    .map_err(|_| wrong_key("a stored API key"))?;
                samples.key = Some((id, plain));
            }
        }
        let account: Option<(i64, String)> =
            sqlx::query_as("SELECT user_id, name FROM chatgpt_accounts ORDER BY id LIMIT 1")
                .fetch_optional(source.pool())
                .await
                .map_err(unreadable)?;
        if let Some((user, name)) = account {
            let user = UserId(user);
            let parsed = name
                .parse()
                .map_err(|e| fail(format!("a ChatGPT account name in {}: {e}", from.display())))?;
            if let Some(record) = source
                .chatgpt_account(user, &parsed)
                .await
                .map_err(store_err)?
            {
                let plain = key
                    .open(&record.sealed, purpose::CHATGPT_TOKENS)
                    .map_err(|_| wrong_key("a ChatGPT account's tokens"))?;
                samples.account = Some((user, name, plain));
            }
        }
        Ok(samples)
    }
}

/// The tables of a SQLite database (not its own `sqlite_` ones).
async fn sqlite_tables(read: &mut Transaction<'_, Sqlite>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(&mut **read)
    .await
}

/// What to copy of each table: the columns both schemas have. Refuses a
/// source table the lists do not know, and a source column the target
/// lacks.
async fn plan(
    read: &mut Transaction<'_, Sqlite>,
    pg: &PgStore,
    from: &Path,
) -> Result<Vec<Plan>, MigrateError> {
    let unreadable = |e: sqlx::Error| fail(format!("cannot read {}: {e}", from.display()));
    let present = sqlite_tables(read).await.map_err(unreadable)?;
    let unknown: Vec<&str> = present
        .iter()
        .map(String::as_str)
        .filter(|t| !TABLES.contains(t) && !FOLDED.contains(t) && !IGNORED.contains(t))
        .collect();
    if !unknown.is_empty() {
        return Err(fail(format!(
            "{} holds tables this version of admin migrate does not know how to copy: {}; nothing was copied. \
Run admin migrate from the llm-integration-server release that wrote this database (or a newer one)",
            from.display(),
            unknown.join(", ")
        )));
    }
    let mut plans = Vec::new();
    for &table in TABLES {
        if !present.iter().any(|t| t == table) {
            continue;
        }
        let source_columns: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(&mut **read)
                .await
                .map_err(unreadable)?;
        let target_columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(pg.pool())
        .await
        .map_err(|e| fail(format!("cannot read the PostgreSQL schema: {e}")))?;
        if target_columns.is_empty() {
            return Err(fail(format!(
                "the PostgreSQL schema has no table {table}; nothing was copied (the migrations of this release should have made it)"
            )));
        }
        let mut columns = Vec::new();
        for name in &source_columns {
            let Some((_, data_type)) = target_columns.iter().find(|(c, _)| c == name) else {
                return Err(fail(format!(
                    "the PostgreSQL schema has no column {table}.{name}, which {} has; nothing was copied. \
Use the llm-integration-server release that wrote this database",
                    from.display()
                )));
            };
            let target = Target::of(data_type).ok_or_else(|| {
                fail(format!(
                    "column {table}.{name} has the PostgreSQL type {data_type}, which admin migrate cannot fill; nothing was copied"
                ))
            })?;
            columns.push(PgColumn {
                name: name.clone(),
                data_type: data_type.clone(),
                target,
            });
        }
        plans.push(Plan { table, columns });
    }
    Ok(plans)
}

/// Refuses a target that holds any row (other than the configuration
/// version every new database starts with).
async fn refuse_non_empty(
    tx: &mut Transaction<'_, Postgres>,
    shown: &str,
) -> Result<(), MigrateError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| fail(format!("cannot read the PostgreSQL schema: {e}")))?;
    let mut found = Vec::new();
    for table in tables {
        if table == VERSION_TABLE || IGNORED.contains(&table.as_str()) {
            continue;
        }
        let rows = count_pg(tx, &table)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if rows > 0 {
            found.push(format!(
                "{table}: {rows} row{}",
                if rows == 1 { "" } else { "s" }
            ));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(fail(format!(
        "the target {shown} is not empty ({}); nothing was written. \
Migrate into a new database (CREATE DATABASE …) or an empty schema; if this data is a failed earlier attempt, drop and recreate the target",
        found.join(", ")
    )))
}

async fn count_pg(tx: &mut Transaction<'_, Postgres>, table: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", ident(table)))
        .fetch_one(&mut **tx)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Copies one table in batches; returns the rows copied.
async fn copy_table(
    read: &mut Transaction<'_, Sqlite>,
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan,
) -> Result<u64, String> {
    if plan.table == VERSION_TABLE || plan.columns.is_empty() {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", ident(plan.table)))
            .fetch_one(&mut **read)
            .await
            .map_err(|e| format!("cannot read {}: {e}", plan.table))?;
        return Ok(u64::try_from(n).unwrap_or(0));
    }
    let width = plan.columns.len();
    let batch = (MAX_BINDS / width).clamp(1, 1000);
    let select = format!(
        "SELECT rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT {batch}",
        plan.columns
            .iter()
            .map(|c| format!("typeof({0}), {0}", ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", "),
        ident(plan.table)
    );
    let names = plan
        .columns
        .iter()
        .map(|c| ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut after = i64::MIN;
    let mut copied = 0u64;
    loop {
        let rows = sqlx::query(&select)
            .bind(after)
            .fetch_all(&mut **read)
            .await
            .map_err(|e| format!("cannot read {}: {e}", plan.table))?;
        let Some(last) = rows.last() else { break };
        after = last
            .try_get::<i64, _>(0)
            .map_err(|e| format!("cannot read {}: {e}", plan.table))?;
        let mut values = Vec::with_capacity(rows.len() * width);
        let mut tuples = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut placeholders = Vec::with_capacity(width);
            for (i, column) in plan.columns.iter().enumerate() {
                let stored = stored_value(row, 1 + 2 * i)
                    .map_err(|e| format!("cannot read {}.{}: {e}", plan.table, column.name))?;
                let bound = column.target.convert(stored).map_err(|v| {
                    format!(
                        "{}.{} holds {} where PostgreSQL expects {}",
                        plan.table,
                        column.name,
                        v.kind(),
                        column.data_type
                    )
                })?;
                values.push(bound);
                placeholders.push(column.target.placeholder(values.len(), &column.data_type));
            }
            tuples.push(format!("({})", placeholders.join(", ")));
        }
        let insert = format!(
            "INSERT INTO {} ({names}) OVERRIDING SYSTEM VALUE VALUES {}",
            ident(plan.table),
            tuples.join(", ")
        );
        let mut query = sqlx::query(&insert);
        for value in values {
            query = match value {
                Bound::Int(v) => query.bind(v),
                Bound::Bool(v) => query.bind(v),
                Bound::Float(v) => query.bind(v),
                Bound::Text(v) => query.bind(v),
                Bound::Bytes(v) => query.bind(v),
            };
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(|e| format!("cannot write {}: {e}", plan.table))?;
        copied += rows.len() as u64;
        if rows.len() < batch {
            break;
        }
    }
    Ok(copied)
}

/// The value after `row`'s column `index`, which holds its storage class
/// (SQLite's `typeof`: integer, real, text, blob or null).
fn stored_value(row: &sqlx::sqlite::SqliteRow, index: usize) -> Result<Stored, sqlx::Error> {
    let class: String = row.try_get(index)?;
    let value = index + 1;
    Ok(match class.as_str() {
        "integer" => Stored::Integer(row.try_get_unchecked(value)?),
        "real" => Stored::Real(row.try_get_unchecked(value)?),
        "text" => Stored::Text(row.try_get_unchecked(value)?),
        "blob" => Stored::Blob(row.try_get_unchecked(value)?),
        _ => Stored::Null,
    })
}

/// Adds what allocation leases hold back to their owners' balances;
/// returns the lease rows folded.
async fn fold_leases(
    read: &mut Transaction<'_, Sqlite>,
    tx: &mut Transaction<'_, Postgres>,
) -> Result<u64, String> {
    let present = sqlite_tables(read)
        .await
        .map_err(|e| format!("cannot read the SQLite schema: {e}"))?;
    if !present.iter().any(|t| t == "allocation_leases") {
        return Ok(0);
    }
    let leases: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT owner_kind, owner_id, COALESCE(SUM(micros), 0), COUNT(*) FROM allocation_leases GROUP BY owner_kind, owner_id",
    )
    .fetch_all(&mut **read)
    .await
    .map_err(|e| format!("cannot read allocation_leases: {e}"))?;
    let mut folded = 0u64;
    for (kind, owner, micros, rows) in leases {
        // A lease is taken from a balance row; without one (never set)
        // there is nothing to give it back to, and the owner starts again
        // from the default allocation.
        let updated = sqlx::query(
            "UPDATE allocations SET balance_micros = balance_micros + $3 \
             WHERE owner_kind = $1 AND owner_id = $2",
        )
        .bind(&kind)
        .bind(owner)
        .bind(micros)
        .execute(&mut **tx)
        .await
        .map_err(|e| format!("cannot fold the allocation leases: {e}"))?
        .rows_affected();
        if updated == 0 {
            continue;
        }
        folded += u64::try_from(rows).unwrap_or(0);
    }
    Ok(folded)
}

/// Sets the target's configuration version above the source's; returns it.
async fn set_version(
    read: &mut Transaction<'_, Sqlite>,
    tx: &mut Transaction<'_, Postgres>,
) -> Result<i64, String> {
    let source: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM config_version")
        .fetch_one(&mut **read)
        .await
        .map_err(|e| format!("cannot read config_version: {e}"))?;
    sqlx::query_scalar(
        "INSERT INTO config_version (id, version) VALUES (1, $1 + 1) \
         ON CONFLICT (id) DO UPDATE SET version = GREATEST(config_version.version, EXCLUDED.version) RETURNING version",
    )
    .bind(source)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| format!("cannot write config_version: {e}"))
}

/// Moves each identity sequence of `plan`'s table past the largest id
/// copied, so the next row PostgreSQL numbers does not collide.
async fn move_sequences(tx: &mut Transaction<'_, Postgres>, plan: &Plan) -> Result<(), String> {
    for column in &plan.columns {
        let sequence: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
            .bind(ident(plan.table))
            .bind(&column.name)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| {
                format!(
                    "cannot find the sequence of {}.{}: {e}",
                    plan.table, column.name
                )
            })?;
        let Some(sequence) = sequence else { continue };
        let (table, name) = (ident(plan.table), ident(&column.name));
        sqlx::query(&format!(
            "SELECT setval($1::regclass, COALESCE((SELECT MAX({name}) FROM {table}), 1), \
             (SELECT MAX({name}) FROM {table}) IS NOT NULL)"
        ))
        .bind(&sequence)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            format!(
                "cannot move the sequence of {}.{}: {e}",
                plan.table, column.name
            )
        })?;
    }
    Ok(())
}

/// After the commit: the configuration reads the same through both stores,
/// and the sampled secrets open the same from the target.
async fn verify(
    source: &SqliteStore,
    pg: &PgStore,
    key: &MasterKey,
    samples: &Samples,
) -> Result<(), String> {
    let before = ConfigStore::load(source)
        .await
        .map_err(|e| format!("cannot read the source's configuration: {e}"))?;
    let after = ConfigStore::load(pg)
        .await
        .map_err(|e| format!("cannot read the copied configuration: {e}"))?;
    if before != after {
        let differs = [
            ("users", before.users != after.users),
            ("teams", before.teams != after.teams),
            ("VMs", before.vms != after.vms),
            ("integrations", before.integrations != after.integrations),
        ]
        .into_iter()
        .filter_map(|(what, differ)| differ.then_some(what))
        .collect::<Vec<_>>();
        return Err(format!(
            "the configuration read from PostgreSQL differs from the source's ({}); \
was the SQLite server still running? Stop it and run admin migrate again",
            differs.join(", ")
        ));
    }
    if let Some((id, plain)) = &samples.key {
        let sealed = pg
            .sealed_credential(*id)
            .await
            .map_err(|e| format!("cannot read key {id} from PostgreSQL: {e}"))?
            .ok_or_else(|| format!("key {id} is missing from PostgreSQL"))?;
        let opened = key.open(&sealed, purpose::API_KEY).map_err(|_| {
            format!("key {id} copied to PostgreSQL does not open with the master key")
        })?;
        if opened.as_slice() != plain.as_slice() {
            return Err(format!("key {id} opens to a different value on PostgreSQL"));
        }
    }
    if let Some((user, name, plain)) = &samples.account {
        let parsed = name.parse().map_err(|e| format!("{e}"))?;
        let record = pg
            .chatgpt_account(*user, &parsed)
            .await
            .map_err(|e| format!("cannot read ChatGPT account {name} from PostgreSQL: {e}"))?
            .ok_or_else(|| format!("ChatGPT account {name} is missing from PostgreSQL"))?;
        let opened = key
            .open(&record.sealed, purpose::CHATGPT_TOKENS)
            .map_err(|_| {
                format!(
                    "ChatGPT account {name} copied to PostgreSQL does not open with the master key"
                )
            })?;
        if opened.as_slice() != plain.as_slice() {
            return Err(format!(
                "ChatGPT account {name} opens to different tokens on PostgreSQL"
            ));
        }
    }
    Ok(())
}

/// Removes what the copy wrote, so the command can be run again.
async fn empty_again(pg: &PgStore, plans: &[Plan]) -> Result<(), sqlx::Error> {
    let tables: Vec<String> = plans
        .iter()
        .filter(|p| p.table != VERSION_TABLE)
        .map(|p| ident(p.table))
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "TRUNCATE {} RESTART IDENTITY CASCADE",
        tables.join(", ")
    ))
    .execute(pg.pool())
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_without_an_offset_are_utc() {
        assert_eq!(
            utc_timestamp("2026-12-01 07:14:13"),
            "2026-12-01 07:14:13+00"
        );
        assert_eq!(
            utc_timestamp("2026-12-01T07:14:13.5Z"),
            "2026-12-01T07:14:13.5Z"
        );
        assert_eq!(
            utc_timestamp("2026-12-01 07:14:13+01:00"),
            "2026-12-01 07:14:13+01:00"
        );
        assert_eq!(
            utc_timestamp("2026-12-01 07:14:13-05"),
            "2026-12-01 07:14:13-05"
        );
    }

    #[test]
    fn values_convert_per_column_type() {
        assert!(matches!(
            Target::Bool.convert(Stored::Integer(1)),
            Ok(Bound::Bool(Some(true)))
        ));
        assert!(matches!(
            Target::Bool.convert(Stored::Integer(0)),
            Ok(Bound::Bool(Some(false)))
        ));
        assert!(matches!(
            Target::Bytes.convert(Stored::Blob(vec![1, 2])),
            Ok(Bound::Bytes(Some(b))) if b == [1, 2]
        ));
        assert!(matches!(
            Target::Int.convert(Stored::Null),
            Ok(Bound::Int(None))
        ));
        assert!(Target::Int.convert(Stored::Text("x".into())).is_err());
        assert!(Target::Bool.convert(Stored::Real(0.5)).is_err());
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn every_listed_table_is_listed_once() {
        let mut all: Vec<&str> = TABLES
            .iter()
            .chain(FOLDED)
            .chain(IGNORED)
            .copied()
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
