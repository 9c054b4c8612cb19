//! Storage backends for the control plane.
//!
//! [`sqlite::SqliteStore`] is the embedded default: one file, migrations
//! embedded and applied on open, WAL mode. Both it and a future PostgreSQL
//! backend implement the core's [`ControlStore`]: the SQL is written to be
//! portable (`$N` placeholders, no SQLite-only statements outside the
//! connection setup), and a second backend is a second `impl`, not a
//! rewrite.

pub mod sqlite;

pub use llm_integration_core::seams::{
    Account, ConfigStore, ControlStore, NewCredential, SealedSecret, StoreError,
};
pub use sqlite::SqliteStore;

/// The text stored for an owner kind.
pub(crate) fn owner_parts(owner: llm_integration_core::Owner) -> (&'static str, i64) {
    match owner {
        llm_integration_core::Owner::User(u) => ("user", u.0),
        llm_integration_core::Owner::Team(t) => ("team", t.0),
    }
}
