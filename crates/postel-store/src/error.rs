//! What can go wrong in the store, and whether trying again may help.

use std::path::PathBuf;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed (disk full, I/O error, corruption...).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed, or the connection to it broke.
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to the database could be had (it is down or out of
    /// reach, or every connection is busy).
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    /// The database holds a schema this postel cannot use (a newer one).
    #[error("{0}")]
    Schema(String),
    /// The writer thread is gone (the store is shutting down).
    #[error("the store is closed")]
    Closed,
    /// The data folder could not be prepared.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Another process has the data folder (its `lock`): two servers
    /// must not share one.
    #[error("the data folder {} is in use by another postel server", .0.display())]
    InUse(PathBuf),
    /// The task that ran a store call failed (it panicked, or the runtime
    /// is stopping).
    #[error("a store task failed: {0}")]
    Task(String),
    /// A stored message's content is gone or cut short (a disk fault, or a
    /// file removed by hand): what the row records cannot be read back.
    #[error("the content of message {id} is lost: {why}")]
    ContentLost {
        /// The message id.
        id: String,
        /// What was found instead.
        why: String,
    },
    /// The group commit that carried this message failed as a whole.
    #[error("commit failed: {message}")]
    Commit {
        /// What SQLite said.
        message: String,
        /// Whether trying again may succeed.
        transient: bool,
    },
}

impl StoreError {
    /// Returns true if and only if trying again later may succeed (disk
    /// full, I/O error, busy): the SMTP reply is then `451`, not `554`.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code != rusqlite::ErrorCode::ConstraintViolation
                    && e.code != rusqlite::ErrorCode::TooBig
            }
            StoreError::Commit { transient, .. } => *transient,
            // A broken connection (no SQLSTATE) may come back; a row
            // that the database refuses for its data or its constraints
            // would be refused again.
            StoreError::Postgres(e) => e
                .code()
                .is_none_or(|c| !matches!(&c.code()[..2], "22" | "23")),
            StoreError::Schema(_) => false,
            StoreError::ContentLost { .. } => false,
            _ => true,
        }
    }
}
