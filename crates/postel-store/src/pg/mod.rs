//! [`PgStore`]: the store on PostgreSQL, which several Postel nodes share.
//! Messages, envelopes, users, the delivery queue and the webhook outbox
//! are rows; a large message's content goes in chunks to a table of its
//! own (`blobs`), written before the commit that records the message.
//!
//! The `250` promise holds as with SQLite: every connection runs with
//! `synchronous_commit = on`, and a message is acknowledged only once the
//! commit that carries it has returned. A commit whose outcome is unknown
//! (the connection broke during COMMIT) is reported as a transient error,
//! so the client hears `451` and sends again: a duplicate at worst, never
//! a loss.
//!
//! Several nodes: ids carry a node number taken from a sequence, so two
//! nodes never mint the same one; queue rows are claimed with
//! `FOR UPDATE SKIP LOCKED` into leases (owner, token, expiry) that the
//! worker renews, and an outcome is written only under the lease's token;
//! NOTIFY (once per commit batch, after the commit) wakes the other nodes'
//! workers and live views.
//!
//! # Layout
//! - this file: the store, how it connects, the node it is;
//! - `schema`: tables and versioned migrations, under an advisory lock;
//! - `writer`: group commit;
//! - `blobs`: large contents in chunks (the seam where S3 could go);
//! - `read`: rows back into summaries and queue entries;
//! - `store_impl`: the `Store` trait over it all;
//! - `queue`: claims, leases and outcomes;
//! - `webhooks`: the webhook outbox;
//! - `users`: accounts for AUTH (blocking calls, as the trait wants), and
//!   DKIM keys;
//! - `shared`: counts the nodes share (failed logins, delivery sessions,
//!   rate counters);
//! - `events`: LISTEN: changes and wake-ups from every node;
//! - `transfer`: whole messages in and out (`postel store migrate`).

mod blobs;
mod events;
mod queue;
mod read;
mod schema;
mod shared;
mod store_impl;
#[cfg(test)]
mod tests;
mod transfer;
mod users;
mod webhooks;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::{Change, Incoming, StoreError};
pub use schema::{SCHEMA_VERSION as PG_SCHEMA_VERSION, inspect};
use writer::Job;

/// How a [`PgStore`] connects, and who it is.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database` (or the key=value
    /// form).
    pub url: String,
    /// This node's name: it owns the queue claims it makes, and takes
    /// them back when it starts again. Each node needs its own.
    pub node: String,
    /// Connections in the pool (the writer and the listener have one of
    /// their own besides).
    pub pool_size: usize,
    /// Where a message being received is spooled past [`crate::SPILL_AT`].
    pub spool_dir: PathBuf,
    /// How long a queue claim lasts unless renewed (seconds).
    pub lease: i64,
    /// Bring the schema up to date (a server); false for a tool, which
    /// only checks that it can use the schema as it is.
    pub migrate: bool,
}

/// The store on PostgreSQL.
pub struct PgStore {
    pool: Pool,
    /// The counts shared with the other nodes every second go through
    /// their own connection, never waiting behind intake's readers.
    share_pool: Pool,
    node: String,
    /// This run's number, from a sequence: the tail of every id it mints.
    tag: u16,
    spool: PathBuf,
    lease: i64,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    last_id: Mutex<u64>,
    changes: broadcast::Sender<Change>,
    queue_wake: Arc<Notify>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("node", &self.node)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// Changes kept for slow subscribers before they miss some.
const CHANGES_BUFFER: usize = 1024;

/// How long a caller waits for a connection from the pool (or for a new
/// one to be made) before the call fails, transiently.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Parses `url` into a connection config with Postel's session settings:
/// every commit waits for its WAL flush (and for the synchronous standbys
/// the server names), whatever the server's default.
///
/// # Errors
/// When the URL is not a PostgreSQL connection string.
pub fn pg_config(url: &str, node: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Unreachable(format!("bad url: {e}")))?;
    // Added to whatever options the URL gives (a search_path, say). A
    // statement that takes a minute is a server that stopped answering.
    let options = format!(
        "{} -c synchronous_commit=on -c statement_timeout=60000",
        cfg.get_options().unwrap_or("")
    );
    cfg.options(options.trim_start());
    cfg.application_name(format!("postel {node}"));
    cfg.connect_timeout(CONNECT_WAIT);
    // A peer that vanished without a reset (a partition) is noticed in
    // about half a minute, not the system's default of many minutes.
    cfg.keepalives(true);
    cfg.keepalives_idle(Duration::from_secs(10));
    cfg.keepalives_interval(Duration::from_secs(5));
    cfg.keepalives_retries(3);
    cfg.tcp_user_timeout(Duration::from_secs(30));
    Ok(cfg)
}

impl PgStore {
    /// Connects, brings the schema up to date (one node at a time, under an
    /// advisory lock), takes a node number and starts the writer and the
    /// listener. Must run inside a Tokio runtime, which the store then uses.
    ///
    /// # Errors
    /// When the database cannot be reached, or holds a schema newer than
    /// this postel can use.
    pub async fn connect(opts: PgOptions) -> Result<PgStore, StoreError> {
        let cfg = pg_config(&opts.url, &opts.node)?;
        let pool = new_pool(&cfg, opts.pool_size.max(2))?;
        // The writer's own: intake never waits behind readers for one.
        let writer_pool = new_pool(&cfg, 1)?;
        let share_pool = new_pool(&cfg, 1)?;
        let tag = {
            let mut client = get(&pool).await?;
            schema::check_encoding(&client).await?;
            if opts.migrate {
                schema::migrate(&mut client).await?;
                let n: i64 = client
                    .query_one("SELECT nextval('postel_nodes')", &[])
                    .await?
                    .get(0);
                (n.rem_euclid(0x1_0000)) as u16
            } else {
                // A tool only checks the schema, and mints no ids.
                schema::usable(&client).await?;
                0
            }
        };
        crate::private::private_folder(&opts.spool_dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let queue_wake = Arc::new(Notify::new());
        let writer = tokio::spawn(writer::run(
            writer_pool,
            pool.clone(),
            opts.node.clone(),
            rx,
        ));
        let sweeper = opts
            .migrate
            .then(|| tokio::spawn(blobs::sweeper(pool.clone())));
        let (ready, listening) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(events::listen(
            cfg,
            pool.clone(),
            changes.clone(),
            queue_wake.clone(),
            ready,
        ));
        // Live views see what is committed from now on (a listener that is
        // slow to start only delays them: everything is polled besides).
        let _ = tokio::time::timeout(CONNECT_WAIT, listening).await;
        Ok(PgStore {
            pool,
            share_pool,
            node: opts.node,
            tag,
            spool: opts.spool_dir,
            lease: opts.lease.max(3),
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            listener: Mutex::new(Some(listener)),
            sweeper: Mutex::new(sweeper),
            last_id: Mutex::new(0),
            changes,
            queue_wake,
            handle: tokio::runtime::Handle::current(),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Notified when any node queued mail or an operator acted on the
    /// queue (NOTIFY): the delivery worker looks at the queue then, and
    /// polls besides.
    pub fn queue_wake(&self) -> Arc<Notify> {
        self.queue_wake.clone()
    }

    /// The server's version and this database's schema version, for
    /// `postel config check`.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn describe(&self) -> Result<(String, i32), StoreError> {
        let client = get(&self.pool).await?;
        let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
        let schema: i32 = client
            .query_one("SELECT version FROM postel_schema", &[])
            .await?
            .get(0);
        Ok((version, schema))
    }

    /// Where a message being received goes: memory, then past
    /// [`crate::SPILL_AT`] a spool file on this node's disk, until its
    /// content goes to the database.
    pub fn receive(&self) -> Incoming {
        Incoming::spooling(self.spool.clone(), crate::SPILL_AT)
    }

    /// Stops the writer after the messages already handed to it are
    /// committed, and waits for it; stops listening.
    pub async fn close(&self) {
        lock(&self.jobs).take();
        let writer = lock(&self.writer).take();
        if let Some(h) = writer {
            let _ = h.await;
        }
        self.stop_tasks();
    }

    fn stop_tasks(&self) {
        for task in [&self.listener, &self.sweeper] {
            if let Some(h) = lock(task).take() {
                h.abort();
            }
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        lock(&self.jobs).take();
        self.stop_tasks();
    }
}

/// A pool of up to `size` connections made with `cfg`.
fn new_pool(cfg: &tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        cfg.clone(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CONNECT_WAIT))
        .create_timeout(Some(CONNECT_WAIT))
        .recycle_timeout(Some(CONNECT_WAIT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Unreachable(e.to_string()))
}

/// A connection from the pool; failing to get one is transient.
pub(super) async fn get(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
        e => StoreError::Unreachable(e.to_string()),
    })
}

/// Locks a mutex, recovering from poisoning.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Text as PostgreSQL takes it: a NUL (which SQLite keeps, and a decoded
/// subject may hold) becomes U+FFFD.
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
