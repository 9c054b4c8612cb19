//! Storage backends for the control plane.
//!
//! Two implementations of the core's [`ControlStore`], one SQL text:
//! [`SqliteStore`] is the embedded default (one file, one server process);
//! [`PgStore`] serves several gateway replicas from one PostgreSQL
//! database. The SQL lives once in `sql.rs`, compiled per driver; each
//! backend module supplies only its connection set-up, its migrations
//! (`migrations/sqlite/`, `migrations/postgres/`) and the few hooks where
//! the databases differ (PostgreSQL notifies the other replicas of every
//! configuration write). [`Database`] picks the backend from the
//! `--database` setting.

pub mod postgres;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use llm_integration_core::seams::{
    Account, ConfigStore, ControlStore, NewCredential, SealedSecret, StoreError,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Where the control plane lives, as given by `--database`.
///
/// A `postgres://` or `postgresql://` URL selects PostgreSQL; a `sqlite:`
/// URL or any other value is a SQLite file path. The URL's password never
/// appears in [`Database::describe`].
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (libpq's form:
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?options=-c%20search_path%3DSCHEMA]`).
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Database {
    /// Reads a `--database` value: `postgres://…`/`postgresql://…`,
    /// `sqlite:PATH` (also `sqlite://PATH`), or a plain path.
    ///
    /// Errors: a value that starts like a URL (`NAME:/…`) with any other
    /// scheme, or a PostgreSQL scheme without `//` (a typo must not become
    /// a SQLite file named after the URL, password included); the message
    /// shows the value with any password hidden.
    pub fn parse(value: &str) -> Result<Database, String> {
        let scheme = value
            .split_once(':')
            .map(|(s, _)| s)
            .filter(|s| {
                s.len() >= 2
                    && s.starts_with(|c: char| c.is_ascii_alphabetic())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            })
            .map(str::to_ascii_lowercase);
        let looks_like_url = value
            .split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with('/'));
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => {
                let rest = &value[value.find(':').map_or(0, |i| i + 1)..];
                if rest.starts_with("//") {
                    return Ok(Database::Postgres(value.to_owned()));
                }
                Err(format!(
                    "--database `{}:…` is not a whole URL: a PostgreSQL URL is postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME (two slashes after the scheme)",
                    scheme.as_deref().unwrap_or("postgres")
                ))
            }
            Some("sqlite") => {
                let path = value
                    .strip_prefix("sqlite://")
                    .or_else(|| value.get("sqlite:".len()..))
                    .unwrap_or(value);
                Ok(Database::Sqlite(PathBuf::from(path)))
            }
            Some(other) if looks_like_url => Err(format!(
                "--database {}: unknown scheme `{other}:`; give a SQLite file path (or sqlite:PATH), or a PostgreSQL URL postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME",
                redact_password(value)
            )),
            _ => Ok(Database::Sqlite(PathBuf::from(value))),
        }
    }

    /// The database for messages: the file's path, or the URL with any
    /// password replaced by `***`.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => redact_password(url),
        }
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

/// The passwords a PostgreSQL URL carries: its userinfo's
/// (`scheme://user:SECRET@host`) and any `password=SECRET` parameter.
pub(crate) fn url_passwords(url: &str) -> Vec<&str> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p);
    let query = tail
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
        .map(|(_, v)| v);
    userinfo
        .into_iter()
        .chain(query)
        .filter(|p| !p.is_empty())
        .collect()
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`; the query
/// string's `password=` too.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://(unparsable URL)".into();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Opens the store `database` names (creating a SQLite file or applying
/// PostgreSQL migrations as needed).
pub async fn open(database: &Database) -> Result<Arc<dyn ControlStore>, StoreError> {
    Ok(match database {
        Database::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        Database::Postgres(url) => Arc::new(PgStore::connect(url).await?),
    })
}

/// `t` as Unix milliseconds (0 before the epoch, saturating far after).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A usage record as the ledger's columns store it.
pub(crate) struct LedgerRow {
    started_at_ms: i64,
    owner_kind: &'static str,
    owner_id: i64,
    vm_id: i64,
    integration_id: i64,
    provider: &'static str,
    source: &'static str,
    model: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
    cache_creation_tokens: i64,
    cache_read_tokens: i64,
    cost_micros: i64,
    status: i64,
    duration_ms: i64,
    ttfb_ms: Option<i64>,
    estimated: bool,
}

impl From<&llm_integration_core::seams::UsageRecord> for LedgerRow {
    fn from(r: &llm_integration_core::seams::UsageRecord) -> Self {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let (owner_kind, owner_id) = owner_parts(r.owner);
        LedgerRow {
            started_at_ms: unix_ms(r.started_at),
            owner_kind,
            owner_id,
            vm_id: r.vm.0,
            integration_id: r.integration.0,
            provider: r.provider.as_str(),
            source: r.source.as_str(),
            model: r.model.clone(),
            input_tokens: n(r.tokens.input),
            output_tokens: n(r.tokens.output),
            cache_creation_tokens: n(r.tokens.cache_creation),
            cache_read_tokens: n(r.tokens.cache_read),
            cost_micros: n(r.cost_micros),
            status: i64::from(r.status),
            duration_ms: ms(r.duration),
            ttfb_ms: r.time_to_first_byte.map(ms),
            estimated: r.estimated,
        }
    }
}

/// The text stored for an owner kind.
pub(crate) fn owner_parts(owner: llm_integration_core::Owner) -> (&'static str, i64) {
    match owner {
        llm_integration_core::Owner::User(u) => ("user", u.0),
        llm_integration_core::Owner::Team(t) => ("team", t.0),
    }
}

pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Maps a unique-constraint violation to `Conflict(message)`.
pub(crate) fn conflict(message: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(message.to_owned())
        }
        _ => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        let ok = |v: &str| Database::parse(v).unwrap();
        assert_eq!(
            ok("postgres://u@h/db"),
            Database::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            ok("PostgreSQL://u@h/db"),
            Database::Postgres("PostgreSQL://u@h/db".into())
        );
        assert_eq!(ok("sqlite:/d/x.db"), Database::Sqlite("/d/x.db".into()));
        assert_eq!(ok("sqlite:///d/x.db"), Database::Sqlite("/d/x.db".into()));
        assert_eq!(ok("SQLite:x.db"), Database::Sqlite("x.db".into()));
        assert_eq!(ok("x.db"), Database::Sqlite("x.db".into()));
        assert_eq!(ok("./a:b.db"), Database::Sqlite("./a:b.db".into()));
        assert_eq!(ok("C:x.db"), Database::Sqlite("C:x.db".into()));
    }

    /// A typo in the scheme is refused, never a SQLite file named after
    /// the URL; the refusal hides the password.
    #[test]
    fn scheme_typos_are_refused() {
        for (value, says) in [
            ("postgress://u:s3cret@h/db", "unknown scheme `postgress:`"),
            ("postgre://u:s3cret@h/db", "unknown scheme `postgre:`"),
            ("mysql://u:s3cret@h/db", "unknown scheme `mysql:`"),
            ("postgres:/u:s3cret@h/db", "two slashes"),
            ("postgres:u:s3cret@h/db", "two slashes"),
        ] {
            let e = Database::parse(value).unwrap_err();
            assert!(e.contains(says), "{value}: {e}");
            assert!(!e.contains("s3cret"), "{value}: {e}");
        }
    }

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            (
                "postgres://u:s3cret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u:s3cret@h", "postgres://u:***@h"),
            ("postgres://u:a@b@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?user=u&password=s3cret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
        ] {
            let d = Database::parse(url).unwrap();
            assert_eq!(d.describe(), shown);
            if url.contains("s3cret") {
                assert_eq!(url_passwords(url), ["s3cret"], "{url}");
            }
            assert!(!format!("{d:?}").contains("s3cret"));
        }
    }
}
