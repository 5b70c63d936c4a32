//! Postel's message store: the [`Store`] trait, and [`SqliteStore`], the
//! embedded backend that keeps everything in one SQLite file in the data
//! folder.
//!
//! The invariant this crate guards is the `250` promise: when
//! [`Store::insert`] returns `Ok`, the message and its envelope are on stable
//! storage. SQLite runs in WAL mode with `synchronous=FULL`, so every commit
//! fsyncs the log before it returns; a crash at any instant leaves either the
//! whole message or none of it.
//!
//! A large message (one that the caller spooled, see [`SpoolFile`]) keeps
//! its content apart, in a file of its own under `blobs/`: the file is
//! fsynced and renamed into place before the commit that records it, so it
//! is written to disk once, by the session that received it, and not copied
//! through the database's log. Files that no commit records (a crash between
//! the rename and the commit) are removed when the store opens.
//!
//! Throughput comes from group commit: one writer thread takes every message
//! waiting at that moment and commits them in one transaction, so many
//! concurrent sessions share one fsync, and no insert waits for a timer.
//!
//! Not here: parsing messages (the caller passes the subject), policy, or
//! anything network-facing. A PostgreSQL backend for several nodes can
//! implement the same trait.
//!
//! # Layout
//! - this file: the errors, the data types, the [`Store`] trait, and
//!   [`SqliteStore`] (schema and migration, the folder lock and sweep, the
//!   group-commit writer, reads, deletes, users; to be split by concept);
//! - `private`: the data folder's permissions;
//! - [`time`]: Unix seconds as RFC 3339 and RFC 5322 (the `time` crate).

#![warn(missing_docs)]

mod private;
pub mod time;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// The most messages committed in one transaction: enough to absorb any
/// burst of concurrent sessions, small enough to bound the batch's memory.
const MAX_BATCH: usize = 512;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed (disk full, I/O error, corruption...).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
            _ => true,
        }
    }
}

/// One recipient of a message, as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path without brackets (`postmaster` for `<postmaster>`).
    pub address: String,
    /// RCPT parameters as sent.
    pub params: Vec<String>,
}

/// The SMTP envelope and connection details of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path without brackets; empty for `<>`.
    pub mail_from: String,
    /// MAIL parameters as sent.
    pub mail_params: Vec<String>,
    /// Accepted recipients, in order.
    pub recipients: Vec<Recipient>,
    /// The client's IP address and port.
    pub client_addr: String,
    /// The EHLO/HELO name.
    pub helo: String,
    /// `SMTP`, `ESMTP`, `UTF8SMTP`... (RFC 3848 / RFC 6531 `with` values).
    pub protocol: String,
    /// The TLS version and cipher, when the session was encrypted.
    pub tls: Option<String>,
    /// The authenticated user, when the client logged in.
    pub auth_user: Option<String>,
}

/// A message to store.
#[derive(Debug)]
pub struct NewMessage {
    /// From [`Store::next_id`].
    pub id: String,
    /// Seconds since the Unix epoch.
    pub received_at: i64,
    /// The envelope.
    pub envelope: Envelope,
    /// The `Subject:` header, decoded, if any.
    pub subject: Option<String>,
    /// The message as stored, trace header and content, CRLF line ends;
    /// or, with `spooled`, its first part.
    pub raw: Vec<u8>,
    /// The rest of the message, in a spool file: a large message arrives
    /// there while it is received, so that it is never held whole in memory.
    pub spooled: Option<SpoolFile>,
}

impl NewMessage {
    /// Octets of the whole message.
    pub fn size(&self) -> u64 {
        self.raw.len() as u64 + self.spooled.as_ref().map_or(0, SpoolFile::len)
    }
}

/// A file in the data folder's `spool/` that content is appended to while
/// it arrives ([`SqliteStore::spool_file`]). Dropped, it is deleted; given
/// to [`Store::insert`], it becomes the stored content.
#[derive(Debug)]
pub struct SpoolFile {
    file: tempfile::NamedTempFile,
    len: u64,
}

impl SpoolFile {
    /// Appends `buf`.
    ///
    /// # Errors
    /// When the write fails (disk full, I/O error).
    pub fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.file.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Octets appended so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Returns true if and only if nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the content durable under `path`: the data is fsynced, the
    /// file renamed into place, and the folder fsynced so that the new name
    /// survives a crash too. Blocking.
    fn persist(self, path: &Path) -> std::io::Result<()> {
        self.file.as_file().sync_all()?;
        // Never over another message's content (ids are unique; this makes
        // sure a mistake cannot cost a stored message).
        self.file.persist_noclobber(path).map_err(|e| e.error)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let synced = std::fs::File::open(dir).and_then(|d| d.sync_all());
        if synced.is_err() {
            let _ = std::fs::remove_file(path);
        }
        synced
    }
}

/// A stored message without its content (for listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The message id.
    pub id: String,
    /// Seconds since the Unix epoch.
    pub received_at: i64,
    /// The envelope.
    pub envelope: Envelope,
    /// The subject, if any.
    pub subject: Option<String>,
    /// Octets of `raw`.
    pub size: u64,
}

/// A stored message with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Everything but the content.
    pub summary: Summary,
    /// The stored bytes, exactly.
    pub raw: Vec<u8>,
}

/// A stored message as a stream: its first bytes, then an open file with
/// the rest (large messages), so that it can be sent without being read
/// into memory whole.
#[derive(Debug)]
pub struct RawMessage {
    /// Everything but the content.
    pub summary: Summary,
    /// The first bytes (all of them for a message held in the database).
    pub head: Vec<u8>,
    /// The rest, for a message whose content is kept apart: the open file
    /// and the length recorded for it.
    pub rest: Option<(std::fs::File, u64)>,
}

/// A change to the stored messages, for live views such as the web inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message was committed.
    Stored(Box<Summary>),
    /// A message was deleted (by a user, or by retention).
    Deleted(String),
    /// Every message was deleted.
    DeletedAll,
}

/// Which messages a [`Store::query`] returns: every set filter must match.
/// Text filters are case-insensitive substrings (ASCII case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// In the sender, any recipient or the subject.
    pub text: Option<String>,
    /// In the sender (the reverse-path).
    pub from: Option<String>,
    /// In any recipient.
    pub to: Option<String>,
    /// In the subject.
    pub subject: Option<String>,
    /// Received at or after, seconds since the Unix epoch.
    pub since: Option<i64>,
    /// Received before, seconds since the Unix epoch.
    pub until: Option<i64>,
    /// How many matches to skip, newest first.
    pub offset: u64,
    /// The most to return.
    pub limit: u64,
}

/// One page of a [`Store::query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// How many messages match, over all pages.
    pub total: u64,
    /// This page, newest first.
    pub messages: Vec<Summary>,
}

/// Counts for status displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages stored.
    pub messages: u64,
    /// Their total size in octets.
    pub bytes: u64,
}

/// Where messages are kept.
pub trait Store: Send + Sync + 'static {
    /// A new message id: unique in this store, and sorting in arrival order.
    fn next_id(&self) -> String;

    /// Stores a message. Returns only once it is on stable storage.
    ///
    /// # Errors
    /// A [`StoreError`]; nothing of the message is then visible.
    fn insert(&self, msg: NewMessage) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every message, oldest first, without content.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn list(&self) -> Result<Vec<Summary>, StoreError>;

    /// One message, with its content.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn get(&self, id: &str) -> Result<Option<Message>, StoreError>;

    /// One message's stored bytes, to be streamed rather than read whole:
    /// the part held in the database, then the rest as an open file (for a
    /// large message). The default reads the message whole.
    ///
    /// # Errors
    /// When the database or the file cannot be read.
    fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        Ok(self.get(id)?.map(|m| RawMessage {
            summary: m.summary,
            head: m.raw,
            rest: None,
        }))
    }

    /// Deletes one message. Returns true if and only if it existed.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Message count and total size.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn stats(&self) -> Result<Stats, StoreError>;

    /// The messages that match `q`, newest first, one page of them.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn query(&self, q: &Query) -> Result<Page, StoreError>;

    /// Deletes every message. Returns how many there were.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn delete_all(&self) -> Result<u64, StoreError>;

    /// Deletes the oldest messages beyond `keep`, and those received before
    /// `before` (seconds since the epoch), a small batch per transaction so
    /// that intake is never held up for long. Returns the ids deleted.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn prune(&self, keep: Option<u64>, before: Option<i64>) -> Result<Vec<String>, StoreError>;

    /// Changes made through this store from now on. A receiver that falls
    /// behind misses changes (and is told so by `recv`).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change>;
}

struct Job {
    msg: NewMessage,
    /// Octets of content kept apart in `blobs/<id>`.
    apart: u64,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    received_at INTEGER NOT NULL,
    client_addr TEXT NOT NULL,
    helo        TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    tls         TEXT,
    auth_user   TEXT,
    mail_from   TEXT NOT NULL,
    mail_params TEXT NOT NULL,
    subject     TEXT,
    size        INTEGER NOT NULL,
    raw         BLOB NOT NULL,
    -- Octets of content after raw, kept in blobs/<id>.
    apart       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS recipients (
    message_seq INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    address     TEXT NOT NULL,
    params      TEXT NOT NULL,
    PRIMARY KEY (message_seq, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// The schema version this code writes; see `migrate`.
const SCHEMA_VERSION: i64 = 2;

/// Brings an older database up to [`SCHEMA_VERSION`], in one transaction
/// that checks what is there: safe to run twice at once (a server and a
/// tool), after a crash half-way, or after an older postel opened it again.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version = |c: &Connection| -> Result<i64, rusqlite::Error> {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
    };
    if version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<(), StoreError> {
        let v = version(conn)?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "the store is of a newer version ({v}) than this postel knows ({SCHEMA_VERSION})"
            ))));
        }
        // Version 1 kept every message whole in the database.
        let has_apart = conn
            .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'apart'")?
            .exists([])?;
        if !has_apart {
            conn.execute_batch("ALTER TABLE messages ADD COLUMN apart INTEGER NOT NULL DEFAULT 0")?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// How long [`SqliteStore::open`] waits for the folder's lock: a server
/// restarted at once may find the old process still exiting.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes `lock` in the data folder (an exclusive flock, held as long as
/// the returned file is open), waiting up to `wait`.
fn lock_folder(dir: &Path, wait: std::time::Duration) -> Result<std::fs::File, StoreError> {
    let file = private::file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(dir.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// Empties `spool/` (files of transactions that a crash cut short) and
/// removes the files in `blobs/` that no message records (renamed into
/// place, then the commit did not happen).
fn sweep(conn: &Connection, spool: &Path, blobs: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(spool)? {
        let _ = std::fs::remove_file(entry?.path());
    }
    let mut stmt = conn.prepare("SELECT 1 FROM messages WHERE id = ?1 AND apart > 0")?;
    for entry in std::fs::read_dir(blobs)? {
        let entry = entry?;
        let name = entry.file_name();
        let known = match name.to_str() {
            Some(id) => stmt.exists([id])?,
            None => false,
        };
        if !known {
            tracing::info!(file = %entry.path().display(), "removing content that no message records");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

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
            .spawn(move || writer_loop(writer_conn, rx, notify))?;
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
        Ok(SpoolFile {
            file: tempfile::NamedTempFile::new_in(&self.spool)?,
            len: 0,
        })
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

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    changes: tokio::sync::broadcast::Sender<Change>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        // Group commit: everything that arrived while the last commit was
        // fsyncing goes into this one.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = commit_batch(&mut conn, &batch);
        // Only build summaries when someone (the web inbox) is listening.
        let notify = changes.receiver_count() > 0;
        for (job, result) in batch.drain(..).zip(results) {
            if notify && result.is_ok() {
                let _ = changes.send(Change::Stored(Box::new(summary_of(&job))));
            }
            let _ = job.done.send(result);
        }
    }
}

/// Commits a batch in one transaction; each message in its own savepoint,
/// so one bad message does not sink the others. Returns one result per job.
fn commit_batch(conn: &mut Connection, batch: &[Job]) -> Vec<Result<(), StoreError>> {
    let run = |conn: &mut Connection| -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        // Savepoints by cached statements: parsing SAVEPOINT and RELEASE
        // for every message cost more than the insert.
        let step = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([]));
        for job in batch {
            step("SAVEPOINT message")?;
            let r = insert_one(&tx, &job.msg, job.apart);
            if r.is_err() {
                step("ROLLBACK TO message")?;
            }
            step("RELEASE message")?;
            results.push(r);
        }
        tx.commit()?;
        Ok(results)
    };
    match run(conn) {
        Ok(results) => results,
        Err(e) => {
            tracing::error!(error = %e, messages = batch.len(), "store commit failed");
            let (message, transient) = (e.to_string(), e.is_transient());
            batch
                .iter()
                .map(|_| {
                    Err(StoreError::Commit {
                        message: message.clone(),
                        transient,
                    })
                })
                .collect()
        }
    }
}

fn insert_one(conn: &Connection, m: &NewMessage, apart: u64) -> Result<(), StoreError> {
    let e = &m.envelope;
    conn.prepare_cached(
        "INSERT INTO messages (id, received_at, client_addr, helo, protocol, tls, auth_user, mail_from, mail_params, subject, size, raw, apart)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        m.id,
        m.received_at,
        e.client_addr,
        e.helo,
        e.protocol,
        e.tls,
        e.auth_user,
        e.mail_from,
        e.mail_params.join(" "),
        m.subject,
        (m.raw.len() as u64 + apart) as i64,
        m.raw,
        apart as i64
    ])?;
    let seq = conn.last_insert_rowid();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO recipients (message_seq, position, address, params) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (i, r) in e.recipients.iter().enumerate() {
        stmt.execute(params![seq, i as i64, r.address, r.params.join(" ")])?;
    }
    Ok(())
}

fn summary_of(job: &Job) -> Summary {
    let m = &job.msg;
    Summary {
        id: m.id.clone(),
        received_at: m.received_at,
        envelope: m.envelope.clone(),
        subject: m.subject.clone(),
        size: m.raw.len() as u64 + job.apart,
    }
}

/// A LIKE pattern matching `s` anywhere, with `%`, `_` and `\` escaped.
fn contains_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Deletes the messages with these sequence numbers, and their recipients.
fn delete_seqs(conn: &Connection, seqs: &[i64]) -> Result<(), rusqlite::Error> {
    let mut rcpts = conn.prepare_cached("DELETE FROM recipients WHERE message_seq = ?1")?;
    let mut msgs = conn.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
    for seq in seqs {
        rcpts.execute([seq])?;
        msgs.execute([seq])?;
    }
    Ok(())
}

const SUMMARY_COLUMNS: &str = "seq, id, received_at, client_addr, helo, protocol, tls, auth_user, mail_from, mail_params, subject, size";

fn split_params(s: String) -> Vec<String> {
    s.split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn read_summary(conn: &Connection, row: &rusqlite::Row<'_>) -> Result<Summary, rusqlite::Error> {
    let seq: i64 = row.get(0)?;
    let mut stmt = conn.prepare_cached(
        "SELECT address, params FROM recipients WHERE message_seq = ?1 ORDER BY position",
    )?;
    let recipients = stmt
        .query_map([seq], |r| {
            Ok(Recipient {
                address: r.get(0)?,
                params: split_params(r.get(1)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Summary {
        id: row.get(1)?,
        received_at: row.get(2)?,
        envelope: Envelope {
            client_addr: row.get(3)?,
            helo: row.get(4)?,
            protocol: row.get(5)?,
            tls: row.get(6)?,
            auth_user: row.get(7)?,
            mail_from: row.get(8)?,
            mail_params: split_params(row.get(9)?),
            recipients,
        },
        subject: row.get(10)?,
        size: row.get::<_, i64>(11)? as u64,
    })
}

impl Store for SqliteStore {
    fn next_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut last = lock(&self.last_id);
        // Strictly increasing even if the clock steps back.
        *last = now.max(*last + 1);
        format!("{:014X}", *last)
    }

    async fn insert(&self, mut msg: NewMessage) -> Result<(), StoreError> {
        // Content kept apart is durable in its place before the commit
        // that records it; sessions do this side by side, and the
        // writer thread only commits the row.
        let mut apart = 0;
        let blob = match msg.spooled.take() {
            None => None,
            Some(spool) => {
                apart = spool.len();
                let path = self.blob_path(&msg.id);
                let to = path.clone();
                tokio::task::spawn_blocking(move || spool.persist(&to))
                    .await
                    .map_err(std::io::Error::other)??;
                Some(path)
            }
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = lock(&self.jobs)
            .as_ref()
            .is_some_and(|tx| tx.send(Job { msg, apart, done }).is_ok());
        let (result, recorded) = if sent {
            match wait.await {
                // This message's own insert failed, rolled back to its
                // savepoint: no row can name the file.
                Ok(Err(e @ StoreError::Sqlite(_))) => (Err(e), false),
                // The batch's commit failed, or the writer went away:
                // recovery may yet complete the commit, and the row
                // would need its file. The next sweep decides.
                Ok(r) => (r, true),
                Err(_) => (Err(StoreError::Closed), true),
            }
        } else {
            (Err(StoreError::Closed), false)
        };
        if let (Err(_), false, Some(path)) = (&result, recorded, &blob) {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn list(&self) -> Result<Vec<Summary>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages ORDER BY seq"
        ))?;
        let rows = stmt
            .query_map([], |row| read_summary(&conn, row))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS}, raw, apart FROM messages WHERE id = ?1"
        ))?;
        let found = stmt
            .query_row([id], |row| {
                Ok((
                    read_summary(&conn, row)?,
                    row.get::<_, Vec<u8>>(12)?,
                    row.get::<_, i64>(13)? as u64,
                ))
            })
            .optional()?;
        drop(stmt);
        drop(conn);
        let Some((summary, head, apart)) = found else {
            return Ok(None);
        };
        let rest = if apart > 0 {
            match std::fs::File::open(self.blob_path(id)) {
                Ok(f) => Some((f, apart)),
                // Deleted since the row was read: as if it never was found.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.exists(id)? => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        Ok(Some(RawMessage {
            summary,
            head,
            rest,
        }))
    }

    fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS}, raw, apart FROM messages WHERE id = ?1"
        ))?;
        let found = stmt
            .query_row([id], |row| {
                let msg = Message {
                    summary: read_summary(&conn, row)?,
                    raw: row.get(12)?,
                };
                Ok((msg, row.get::<_, i64>(13)? as u64))
            })
            .optional()?;
        drop(stmt);
        drop(conn);
        let Some((mut msg, apart)) = found else {
            return Ok(None);
        };
        if apart > 0 {
            let content = match std::fs::read(self.blob_path(id)) {
                Ok(c) => c,
                // Deleted since the row was read: as if it never was found.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.exists(id)? => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            };
            if content.len() as u64 != apart {
                return Err(StoreError::Io(std::io::Error::other(format!(
                    "the content of {id} has {} octets, not {apart}",
                    content.len()
                ))));
            }
            msg.raw.extend_from_slice(&content);
        }
        Ok(Some(msg))
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let seq: Option<i64> = tx
            .query_row("SELECT seq FROM messages WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        if let Some(seq) = seq {
            tx.execute("DELETE FROM recipients WHERE message_seq = ?1", [seq])?;
            tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
        }
        tx.commit()?;
        drop(conn);
        if seq.is_some() {
            self.remove_blobs([id]);
            let _ = self.changes.send(Change::Deleted(id.to_owned()));
        }
        Ok(seq.is_some())
    }

    fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let rcpt_match = "EXISTS (SELECT 1 FROM recipients r WHERE r.message_seq = m.seq AND r.address LIKE ? ESCAPE '\\')";
        // SQLite's LIKE reads a pattern only up to a NUL: `%\0%` would
        // match everything. Stored text holds no NUL, so such a search
        // matches nothing.
        let searches = [&q.text, &q.from, &q.to, &q.subject];
        if searches
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            clauses.push("0".to_owned());
        }
        if let Some(t) = q.text.as_deref().filter(|t| !t.is_empty()) {
            clauses.push(format!(
                "(m.mail_from LIKE ? ESCAPE '\\' OR m.subject LIKE ? ESCAPE '\\' OR {rcpt_match})"
            ));
            let p = contains_pattern(t);
            args.extend([p.clone().into(), p.clone().into(), p.into()]);
        }
        if let Some(f) = q.from.as_deref().filter(|t| !t.is_empty()) {
            clauses.push("m.mail_from LIKE ? ESCAPE '\\'".to_owned());
            args.push(contains_pattern(f).into());
        }
        if let Some(t) = q.to.as_deref().filter(|t| !t.is_empty()) {
            clauses.push(rcpt_match.to_owned());
            args.push(contains_pattern(t).into());
        }
        if let Some(s) = q.subject.as_deref().filter(|t| !t.is_empty()) {
            clauses.push("m.subject LIKE ? ESCAPE '\\'".to_owned());
            args.push(contains_pattern(s).into());
        }
        if let Some(t) = q.since {
            clauses.push("m.received_at >= ?".to_owned());
            args.push(t.into());
        }
        if let Some(t) = q.until {
            clauses.push("m.received_at < ?".to_owned());
            args.push(t.into());
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let conn = lock(&self.reader);
        let total: i64 = conn.query_row(
            &format!("SELECT count(*) FROM messages m {filter}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let columns = SUMMARY_COLUMNS
            .split(", ")
            .map(|c| format!("m.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {columns} FROM messages m {filter} ORDER BY m.seq DESC LIMIT ? OFFSET ?"
        ))?;
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
        args.push(limit.into());
        args.push(offset.into());
        let messages = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |row| {
                read_summary(&conn, row)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            total: total as u64,
            messages,
        })
    }

    fn delete_all(&self) -> Result<u64, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Only the files of the rows deleted here: a message being stored
        // meanwhile has its file in place already, and must keep it.
        let apart: Vec<String> = tx
            .prepare("SELECT id FROM messages WHERE apart > 0")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        tx.execute("DELETE FROM recipients", [])?;
        let n = tx.execute("DELETE FROM messages", [])?;
        tx.commit()?;
        drop(conn);
        self.remove_blobs(apart.iter().map(String::as_str));
        let _ = self.changes.send(Change::DeletedAll);
        Ok(n as u64)
    }

    fn prune(&self, keep: Option<u64>, before: Option<i64>) -> Result<Vec<String>, StoreError> {
        let mut deleted = Vec::new();
        loop {
            // One short transaction per batch: the writer thread and the
            // readers get the database between batches.
            let mut conn = lock(&self.reader);
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let excess = match keep {
                Some(keep) => {
                    let n: i64 = tx.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
                    (n as u64).saturating_sub(keep)
                }
                None => 0,
            };
            let cut = before.unwrap_or(i64::MIN);
            let batch = PRUNE_BATCH as i64;
            let rows: Vec<(i64, String)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, id FROM messages WHERE received_at < ?1
                     UNION
                     SELECT seq, id FROM (SELECT seq, id FROM messages ORDER BY seq LIMIT ?2)
                     ORDER BY seq LIMIT ?3",
                )?;
                stmt.query_map(
                    params![
                        cut,
                        i64::try_from(excess).unwrap_or(i64::MAX).min(batch),
                        batch
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<Result<_, _>>()?
            };
            if rows.is_empty() {
                tx.commit()?;
                break;
            }
            let seqs: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
            delete_seqs(&tx, &seqs)?;
            tx.commit()?;
            drop(conn);
            self.remove_blobs(rows.iter().map(|(_, id)| id.as_str()));
            for (_, id) in rows {
                let _ = self.changes.send(Change::Deleted(id.clone()));
                deleted.push(id);
            }
        }
        Ok(deleted)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        let conn = lock(&self.reader);
        let (messages, bytes): (i64, i64) = conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM messages",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Stats {
            messages: messages as u64,
            bytes: bytes as u64,
        })
    }
}

/// Submission users: names and password hashes (never passwords). Kept in
/// the same database, so `postel users` works while the server runs.
impl SqliteStore {
    /// Adds a user or replaces its hash. Returns true if and only if the
    /// user is new.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn set_user(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let conn = lock(&self.reader);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let existed: bool =
            conn.query_row("SELECT count(*) FROM users WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })? > 0;
        conn.execute(
            "INSERT INTO users (name, hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash",
            params![name, hash, now],
        )?;
        Ok(!existed)
    }

    /// Removes a user. Returns true if and only if it existed.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.reader).execute("DELETE FROM users WHERE name = ?1", [name])? > 0)
    }

    /// Every user name with its creation time, by name.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare("SELECT name, created_at FROM users ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The password hash of a user, if the user exists.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let conn = lock(&self.reader);
        Ok(conn
            .query_row("SELECT hash FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }
}

/// A shared store is a store.
impl<S: Store> Store for Arc<S> {
    fn next_id(&self) -> String {
        (**self).next_id()
    }
    fn insert(&self, msg: NewMessage) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).insert(msg)
    }
    fn list(&self) -> Result<Vec<Summary>, StoreError> {
        (**self).list()
    }
    fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        (**self).get(id)
    }
    fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        (**self).open_raw(id)
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        (**self).delete(id)
    }
    fn stats(&self) -> Result<Stats, StoreError> {
        (**self).stats()
    }
    fn query(&self, q: &Query) -> Result<Page, StoreError> {
        (**self).query(q)
    }
    fn delete_all(&self) -> Result<u64, StoreError> {
        (**self).delete_all()
    }
    fn prune(&self, keep: Option<u64>, before: Option<i64>) -> Result<Vec<String>, StoreError> {
        (**self).prune(keep, before)
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        (**self).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(store: &SqliteStore, body: &[u8]) -> NewMessage {
        NewMessage {
            id: store.next_id(),
            received_at: 1_700_000_000,
            envelope: Envelope {
                mail_from: "a@b.test".into(),
                mail_params: vec!["SIZE=10".into(), "BODY=8BITMIME".into()],
                recipients: vec![
                    Recipient {
                        address: "c@d.test".into(),
                        params: vec![],
                    },
                    Recipient {
                        address: "postmaster".into(),
                        params: vec![],
                    },
                ],
                client_addr: "127.0.0.1:1234".into(),
                helo: "client.test".into(),
                protocol: "ESMTP".into(),
                tls: None,
                auth_user: None,
            },
            subject: Some("hi".into()),
            raw: body.to_vec(),
            spooled: None,
        }
    }

    #[tokio::test]
    async fn insert_list_get_delete_round_trip() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        let m = msg(&store, b"Subject: hi\r\n\r\nbody\xff\r\n");
        let id = m.id.clone();
        let (envelope, raw) = (m.envelope.clone(), m.raw.clone());
        store.insert(m).await.expect("insert");
        let list = store.list().expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].envelope, envelope);
        assert_eq!(list[0].size, raw.len() as u64);
        let got = store.get(&id).expect("get").expect("present");
        assert_eq!(got.raw, raw);
        assert_eq!(
            store.stats().expect("stats"),
            Stats {
                messages: 1,
                bytes: raw.len() as u64
            }
        );
        assert!(store.delete(&id).expect("delete"));
        assert!(!store.delete(&id).expect("delete again"));
        assert!(store.get(&id).expect("get").is_none());
    }

    /// Content of every octet value, larger than any buffer on the way.
    fn big_content() -> Vec<u8> {
        (0..1_000_003).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn spooled(store: &SqliteStore, content: &[u8]) -> SpoolFile {
        let mut file = store.spool_file().expect("spool file");
        for chunk in content.chunks(65_536) {
            file.append(chunk).expect("write spool");
        }
        assert_eq!(file.len(), content.len() as u64);
        file
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn spooled_content_is_kept_apart_read_back_whole_and_deleted_with_its_message() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        let content = big_content();
        let head = b"Received: by test\r\n";
        let mut m = msg(&store, head);
        m.spooled = Some(spooled(&store, &content));
        let id = m.id.clone();
        let size = m.size();
        assert_eq!(size, (head.len() + content.len()) as u64);
        let mut changes = store.subscribe();
        store.insert(m).await.expect("insert");
        let Ok(Change::Stored(summary)) = changes.try_recv() else {
            panic!("no Stored change");
        };
        assert_eq!(summary.size, size);
        assert_eq!(files(&dir.join("blobs")), std::slice::from_ref(&id));
        assert!(files(&dir.join("spool")).is_empty());
        let got = store.get(&id).expect("get").expect("present");
        assert_eq!(got.summary.size, size);
        assert_eq!(&got.raw[..head.len()], head);
        assert!(got.raw[head.len()..] == content[..], "content differs");
        assert_eq!(store.stats().expect("stats").bytes, size);
        assert!(store.delete(&id).expect("delete"));
        assert!(files(&dir.join("blobs")).is_empty());
    }

    #[tokio::test]
    async fn prune_and_delete_all_remove_the_files_of_what_they_delete() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        let mut ids = Vec::new();
        for _ in 0..3 {
            let mut m = msg(&store, b"");
            m.spooled = Some(spooled(&store, b"content\r\n"));
            ids.push(m.id.clone());
            store.insert(m).await.expect("insert");
        }
        assert_eq!(store.prune(Some(1), None).expect("prune"), ids[..2]);
        assert_eq!(files(&dir.join("blobs")), ids[2..]);
        assert_eq!(store.delete_all().expect("delete all"), 1);
        assert!(files(&dir.join("blobs")).is_empty());
    }

    #[tokio::test]
    async fn open_removes_files_no_commit_records_and_keeps_the_rest() {
        let dir = tempdir();
        let content = big_content();
        let id = {
            let store = SqliteStore::open(&dir).expect("open");
            let mut m = msg(&store, b"");
            m.spooled = Some(spooled(&store, &content));
            let id = m.id.clone();
            store.insert(m).await.expect("insert");
            id
        };
        // What a crash can leave: a file renamed into place whose commit
        // never happened, and a spool file of a transaction cut short. But
        // while a store (a server) has the folder, such files are in use,
        // and a store opened beside it (`postel users add`) leaves them.
        let running = SqliteStore::open(&dir).expect("open");
        std::fs::write(dir.join("blobs").join("0000000000ORPHAN"), b"x").expect("orphan");
        std::fs::write(dir.join("spool").join(".tmpcut"), b"x").expect("spool leftover");
        let beside = SqliteStore::open_beside(&dir).expect("open beside");
        // A second writing store is refused, and sweeps nothing either.
        let second = SqliteStore::open_waiting(&dir, std::time::Duration::ZERO);
        assert!(
            matches!(second, Err(StoreError::InUse(_))),
            "{:?}",
            second.err()
        );
        assert_eq!(files(&dir.join("blobs")).len(), 2);
        assert_eq!(files(&dir.join("spool")).len(), 1);
        drop((beside, running));
        let store = SqliteStore::open(&dir).expect("reopen");
        assert_eq!(files(&dir.join("blobs")), std::slice::from_ref(&id));
        assert!(files(&dir.join("spool")).is_empty());
        let got = store.get(&id).expect("get").expect("present");
        assert!(got.raw == content, "content differs after reopen");
    }

    #[tokio::test]
    async fn a_refused_spooled_message_leaves_no_file_and_never_replaces_another() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        let mut first = msg(&store, b"");
        first.spooled = Some(spooled(&store, b"first\r\n"));
        let id = first.id.clone();
        store.insert(first).await.expect("insert");
        // The same id again, apart content and all: refused, and the first
        // message keeps its content.
        let mut again = msg(&store, b"");
        again.id = id.clone();
        again.spooled = Some(spooled(&store, b"second\r\n"));
        assert!(store.insert(again).await.is_err());
        assert_eq!(
            store.get(&id).expect("get").expect("present").raw,
            b"first\r\n"
        );
        // A refused commit (same id as a message without apart content)
        // takes its own file away again.
        let plain = msg(&store, b"plain\r\n");
        let plain_id = plain.id.clone();
        store.insert(plain).await.expect("insert");
        let mut dup = msg(&store, b"");
        dup.id = plain_id.clone();
        dup.spooled = Some(spooled(&store, b"dup\r\n"));
        assert!(store.insert(dup).await.is_err());
        assert_eq!(files(&dir.join("blobs")), [id]);
        assert!(files(&dir.join("spool")).is_empty());
    }

    #[tokio::test]
    async fn a_version_1_database_is_migrated_and_keeps_its_messages() {
        let dir = tempdir();
        std::fs::create_dir_all(&dir).expect("dir");
        {
            let conn = Connection::open(dir.join("messages.db")).expect("create");
            let v1 = SCHEMA.replace(
                "raw         BLOB NOT NULL,\n    -- Octets of content after raw, kept in blobs/<id>.\n    apart       INTEGER NOT NULL DEFAULT 0",
                "raw         BLOB NOT NULL",
            );
            assert!(!v1.contains("apart"));
            conn.execute_batch(&v1).expect("v1 schema");
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO messages (id, received_at, client_addr, helo, protocol, mail_from, mail_params, size, raw)
                 VALUES ('00000000000001', 1, '127.0.0.1:1', 'h', 'ESMTP', 'a@b', '', 3, X'6F6C64');",
            )
            .expect("v1 row");
        }
        let store = SqliteStore::open(&dir).expect("open v1");
        let old = store.get("00000000000001").expect("get").expect("present");
        assert_eq!(old.raw, b"old");
        let mut m = msg(&store, b"");
        m.spooled = Some(spooled(&store, b"new\r\n"));
        let id = m.id.clone();
        store.insert(m).await.expect("insert after migration");
        assert_eq!(
            store.get(&id).expect("get").expect("present").raw,
            b"new\r\n"
        );
        let version: i64 = store
            .reader
            .lock()
            .expect("reader")
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        drop(store);
        // An older postel opened it again (it sets version 1 at every
        // open), or a migration was cut short after its ALTER: the column
        // is there, the version says 1. Opening must still work.
        Connection::open(dir.join("messages.db"))
            .and_then(|c| c.pragma_update(None, "user_version", 1))
            .expect("back to 1");
        let store = SqliteStore::open(&dir).expect("open again");
        assert_eq!(
            store.get(&id).expect("get").expect("present").raw,
            b"new\r\n"
        );
        drop(store);
        let beside = SqliteStore::open_existing(&dir).expect("open existing");
        assert_eq!(beside.list().expect("list").len(), 2);
    }

    /// Stores three messages with distinct senders, recipients, subjects
    /// and times; returns their ids, oldest first.
    async fn three(store: &SqliteStore) -> Vec<String> {
        let mut ids = Vec::new();
        for (i, (from, to, subject)) in [
            ("alice@one.test", "bob@two.test", "Invoice 100%"),
            ("carol@three.test", "dave@four.test", "Lunch_plans"),
            ("erin@one.test", "BOB@two.test", "Re: invoice"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut m = msg(store, b"x\r\n");
            m.envelope.mail_from = from.into();
            m.envelope.recipients[0].address = to.into();
            m.subject = Some(subject.into());
            m.received_at = 1_000 + i as i64 * 100;
            ids.push(m.id.clone());
            store.insert(m).await.expect("insert");
        }
        ids
    }

    fn ids(p: &Page) -> Vec<&str> {
        p.messages.iter().map(|m| m.id.as_str()).collect()
    }

    #[tokio::test]
    async fn query_filters_pages_and_orders_newest_first() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        let id = three(&store).await;
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = Query {
                limit: 10,
                ..Query::default()
            };
            f(&mut q);
            store.query(&q).expect("query")
        };
        let all = q(&|_| {});
        assert_eq!(all.total, 3);
        assert_eq!(ids(&all), [&id[2], &id[1], &id[0]]);
        // Text: sender, recipient or subject, ignoring ASCII case.
        assert_eq!(
            ids(&q(&|q| q.text = Some("INVOICE".into()))),
            [&id[2], &id[0]]
        );
        assert_eq!(ids(&q(&|q| q.text = Some("four.test".into()))), [&id[1]]);
        assert_eq!(ids(&q(&|q| q.to = Some("bob@".into()))), [&id[2], &id[0]]);
        assert_eq!(
            ids(&q(&|q| q.from = Some("one.test".into()))),
            [&id[2], &id[0]]
        );
        assert_eq!(ids(&q(&|q| q.subject = Some("lunch".into()))), [&id[1]]);
        // LIKE's wildcards are plain characters in a filter.
        assert_eq!(ids(&q(&|q| q.subject = Some("100%".into()))), [&id[0]]);
        assert_eq!(ids(&q(&|q| q.subject = Some("h_p".into()))), [&id[1]]);
        assert_eq!(
            ids(&q(&|q| q.subject = Some("ice_".into()))),
            Vec::<&str>::new()
        );
        assert_eq!(ids(&q(&|q| q.subject = Some("%".into()))), [&id[0]]);
        // Time window: since inclusive, until exclusive.
        let w = q(&|q| {
            q.since = Some(1_100);
            q.until = Some(1_200);
        });
        assert_eq!(ids(&w), [&id[1]]);
        // Paging keeps the total.
        let p = q(&|q| {
            q.limit = 1;
            q.offset = 1;
        });
        assert_eq!((p.total, ids(&p)), (3, vec![id[1].as_str()]));
        // Filters combine.
        let both = q(&|q| {
            q.text = Some("invoice".into());
            q.from = Some("alice".into());
        });
        assert_eq!(ids(&both), [&id[0]]);
    }

    #[tokio::test]
    async fn prune_keeps_the_newest_and_drops_the_old_and_notifies() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        let mut changes = store.subscribe();
        let id = three(&store).await;
        for want in &id {
            match changes.recv().await.expect("change") {
                Change::Stored(s) => assert_eq!(&s.id, want),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            store.prune(Some(2), None).expect("prune"),
            vec![id[0].clone()]
        );
        assert_eq!(
            changes.recv().await.expect("change"),
            Change::Deleted(id[0].clone())
        );
        assert!(store.prune(Some(2), None).expect("prune").is_empty());
        assert_eq!(
            store.prune(None, Some(1_200)).expect("prune"),
            vec![id[1].clone()]
        );
        assert_eq!(
            ids(&store
                .query(&Query {
                    limit: 9,
                    ..Query::default()
                })
                .expect("q")),
            [&id[2]]
        );
        // Recipients go with their messages.
        let rcpts: i64 = lock(&store.reader)
            .query_row("SELECT count(*) FROM recipients", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rcpts, 2);
        assert_eq!(store.delete_all().expect("delete all"), 1);
        assert_eq!(store.stats().expect("stats").messages, 0);
    }

    #[tokio::test]
    async fn prune_works_in_batches() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        for _ in 0..(PRUNE_BATCH * 2 + 10) {
            let m = msg(&store, b"x\r\n");
            store.insert(m).await.expect("insert");
        }
        let gone = store.prune(Some(5), None).expect("prune");
        assert_eq!(gone.len(), PRUNE_BATCH * 2 + 5);
        assert_eq!(store.stats().expect("stats").messages, 5);
    }

    #[tokio::test]
    async fn concurrent_inserts_all_land_and_ids_are_unique() {
        let dir = tempdir();
        let store = Arc::new(SqliteStore::open(&dir).expect("open"));
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let m = msg(&store, format!("message {i}\r\n").as_bytes());
                store.insert(m).await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("insert");
        }
        let list = store.list().expect("list");
        assert_eq!(list.len(), 200);
        let mut ids: Vec<_> = list.iter().map(|s| s.id.clone()).collect();
        let sorted = ids.clone();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        let mut check = sorted.clone();
        check.sort();
        assert_eq!(check, sorted, "ids sort in arrival order");
    }

    #[tokio::test]
    async fn duplicate_id_fails_alone_and_permanently() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        let a = msg(&store, b"a\r\n");
        let mut b = msg(&store, b"b\r\n");
        b.id = a.id.clone();
        let c = msg(&store, b"c\r\n");
        let (ra, rb, rc) = tokio::join!(store.insert(a), store.insert(b), store.insert(c));
        assert!(ra.is_ok() && rc.is_ok());
        let err = rb.expect_err("duplicate id");
        assert!(!err.is_transient(), "{err}");
        assert_eq!(store.list().expect("list").len(), 2);
    }

    #[tokio::test]
    async fn reopen_keeps_messages_and_ids_keep_increasing() {
        let dir = tempdir();
        let first = {
            let store = SqliteStore::open(&dir).expect("open");
            let m = msg(&store, b"x\r\n");
            let id = m.id.clone();
            store.insert(m).await.expect("insert");
            id
        };
        let store = SqliteStore::open(&dir).expect("reopen");
        assert_eq!(store.list().expect("list").len(), 1);
        assert!(store.next_id() > first);
    }

    #[test]
    fn users_add_replace_list_remove() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        assert!(store.set_user("alice", "h1").expect("add"));
        assert!(!store.set_user("alice", "h2").expect("replace"));
        assert_eq!(
            store.user_hash("alice").expect("get").as_deref(),
            Some("h2")
        );
        assert_eq!(store.user_hash("bob").expect("get"), None);
        assert_eq!(store.users().expect("list").len(), 1);
        assert!(store.remove_user("alice").expect("remove"));
        assert!(!store.remove_user("alice").expect("remove again"));
    }

    #[tokio::test]
    async fn insert_after_close_is_closed_error() {
        let dir = tempdir();
        let store = SqliteStore::open(&dir).expect("open");
        store.close();
        let err = store.insert(msg(&store, b"x")).await.expect_err("closed");
        assert!(matches!(err, StoreError::Closed));
        assert!(err.is_transient());
    }

    fn tempdir() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("postel-store-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
