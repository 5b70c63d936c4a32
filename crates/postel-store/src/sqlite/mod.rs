//! [`SqliteStore`]: the embedded store, one SQLite file (WAL,
//! `synchronous=FULL`) and the content of large messages in files beside
//! it.
//!
//! # Layout
//! - this file: the store, how it opens, and what its parts share;
//! - `schema`: tables and migration;
//! - `folder`: the folder lock and the sweep at open;
//! - `writer`: group commit;
//! - `read`: rows back into summaries, search patterns;
//! - `queue`: the delivery queue's rows;
//! - `store_impl`: the `Store` trait over it all;
//! - `users`: accounts for AUTH;
//! - `export`: everything read out, for `postel store migrate`.

mod export;
mod folder;
mod queue;
mod read;
mod schema;
mod store_impl;
#[cfg(test)]
mod tests;
mod users;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::Incoming;
use crate::private;

/// Content past this much goes to a spool file as it arrives, a write per
/// this much: a session holds little more of a message than this in
/// memory, however large the message. Smaller messages never touch the
/// spool, and are kept whole in the database.
pub const SPILL_AT: usize = 256 * 1024;
use crate::{
    Change, Envelope, Message, NewMessage, Page, Query, QueueAction, QueueClaim, QueueEntry,
    QueueState, QueueUpdate, RawMessage, Recipient, SpoolFile, Stats, Store, StoreError, Summary,
};
use folder::*;
use read::*;
use schema::*;
use writer::*;

/// What the writer thread commits: a message, or the outcomes of delivery
/// attempts. Both kinds share a batch, and so an fsync.
enum Job {
    Insert {
        msg: Box<NewMessage>,
        /// Octets of content kept apart in `blobs/<id>`.
        apart: u64,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
    Record {
        updates: Vec<QueueUpdate>,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The embedded store: `messages.db` in the data folder.
pub struct SqliteStore {
    path: PathBuf,
    spool: PathBuf,
    blobs: PathBuf,
    /// `lock` in the data folder, held (flock) by the store that writes;
    /// `None` for the ones opened beside it.
    _lock: Option<std::fs::File>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
    last_id: Mutex<u64>,
    changes: tokio::sync::broadcast::Sender<Change>,
}

/// Changes kept for slow subscribers before they miss some.
const CHANGES_BUFFER: usize = 1024;

/// The size the write-ahead log is cut back to after a checkpoint, so that
/// a burst of large messages does not leave it large for good.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Messages deleted per transaction by [`Store::prune`].
const PRUNE_BATCH: usize = 256;

fn open_connection(path: &Path, write: bool) -> Result<Connection, StoreError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL: readers (the CLI, the web inbox) never block the writer. FULL:
    // every commit fsyncs the log before it returns (the 250 promise).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if need be) the store in `dir`, to write: it holds
    /// the folder's lock until it is dropped, and tidies what a crash left.
    ///
    /// # Errors
    /// When the folder cannot be created or the database opened, or
    /// [`StoreError::InUse`] when another process holds the folder for
    /// more than 10 seconds.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_waiting(dir, LOCK_WAIT)
    }

    fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<SqliteStore, StoreError> {
        private::prepare(dir)?;
        let spool = dir.join("spool");
        let blobs = dir.join("blobs");
        // One writing store per folder, for its whole life: the sweep
        // below must never meet another writer's files in flight.
        let lock = lock_folder(dir, wait)?;
        let path = dir.join("messages.db");
        let writer_conn = open_connection(&path, true)?;
        writer_conn.execute_batch(SCHEMA)?;
        migrate(&writer_conn)?;
        sweep(&writer_conn, &spool, &blobs)?;
        let reader = open_connection(&path, false)?;
        let last: Option<String> = reader
            .query_row(
                "SELECT id FROM messages ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let last_id = last
            .and_then(|s| u64::from_str_radix(&s, 16).ok())
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel();
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_BUFFER);
        let notify = changes.clone();
        let writer = std::thread::Builder::new()
            .name("postel-store-writer".into())
            .spawn({
                let blobs = blobs.clone();
                move || writer_loop(writer_conn, rx, notify, blobs)
            })?;
        Ok(SqliteStore {
            path,
            spool,
            blobs,
            _lock: Some(lock),
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(reader),
            last_id: Mutex::new(last_id),
            changes,
        })
    }

    /// Opens an existing store for reading, deleting and managing users
    /// only: no writer thread, no sweep, no lock; the schema is brought up
    /// to date if it is older. For tools that run beside the server.
    ///
    /// # Errors
    /// When there is no store in `dir` or it cannot be opened.
    pub fn open_existing(dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = dir.join("messages.db");
        let reader = open_connection(&path, false)?;
        migrate(&reader)?;
        Ok(SqliteStore::beside(dir, reader))
    }

    /// As [`open_existing`](Self::open_existing), but creates the folder
    /// and the database if there are none yet (`postel users add` before
    /// the server first ran).
    ///
    /// # Errors
    /// When the folder cannot be created or the database opened.
    pub fn open_beside(dir: &Path) -> Result<SqliteStore, StoreError> {
        private::prepare(dir)?;
        let path = dir.join("messages.db");
        let conn = open_connection(&path, true)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(SqliteStore::beside(dir, conn))
    }

    fn beside(dir: &Path, reader: Connection) -> SqliteStore {
        let path = dir.join("messages.db");
        SqliteStore {
            path,
            spool: dir.join("spool"),
            blobs: dir.join("blobs"),
            _lock: None,
            jobs: Mutex::new(None),
            writer: Mutex::new(None),
            reader: Mutex::new(reader),
            last_id: Mutex::new(0),
            changes: tokio::sync::broadcast::channel(1).0,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new file in the data folder's `spool/`, for content too large to
    /// hold in memory until it is stored. It is on the same disk as the
    /// rest of the store; dropped, it is deleted, and what a crash leaves
    /// there is removed when the store next opens.
    ///
    /// # Errors
    /// When the file cannot be created (disk full, permissions).
    pub fn spool_file(&self) -> Result<SpoolFile, StoreError> {
        Ok(SpoolFile::new_in(&self.spool)?)
    }

    /// Where a message being received goes: memory, then past
    /// [`SPILL_AT`] a spool file in the data folder.
    pub fn receive(&self) -> Incoming {
        Incoming::spooling(self.spool.clone(), SPILL_AT)
    }

    /// Returns true if and only if message `id` is stored.
    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached("SELECT 1 FROM messages WHERE id = ?1")?;
        Ok(stmt.exists([id])?)
    }

    /// Where the content of message `id` is kept apart, if it is.
    fn blob_path(&self, id: &str) -> PathBuf {
        self.blobs.join(id)
    }

    /// Removes the files of deleted messages (after their delete is
    /// committed: a crash in between leaves a file that `sweep` removes).
    fn remove_blobs<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            match std::fs::remove_file(self.blob_path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(id, error = %e, "cannot remove a deleted message's content")
                }
            }
        }
    }

    /// Stops the writer after the messages already handed to it are
    /// committed, and waits for it. Later inserts fail with
    /// [`StoreError::Closed`].
    pub fn close(&self) {
        lock(&self.jobs).take();
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Locks a mutex, recovering from poisoning: the data behind it (a
/// connection, a counter) stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
