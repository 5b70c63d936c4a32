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
//! [`PgStore`] keeps the same promise on PostgreSQL, for several nodes that
//! share one store and one queue.
//!
//! Not here: parsing messages (the caller passes the subject), policy, or
//! anything network-facing.
//!
//! # Layout
//! - `any`: [`AnyStore`], the store a config chose;
//! - `error`: [`StoreError`], transient or not;
//! - `message`: envelopes, messages, summaries, queries, changes;
//! - `incoming`: [`Incoming`], content as it arrives (memory or spool:
//!   the store decides);
//! - `queue`: the delivery queue's rows, states and actions;
//! - `spool`: [`SpoolFile`], the file a large message goes to;
//! - `store`: the [`Store`] trait, the seam;
//! - `users`: the [`Users`] trait, accounts for AUTH;
//! - `memory`: [`MemoryStore`], the trait in memory (tests; the seam's proof);
//! - `sqlite`: [`SqliteStore`] (schema, folder lock and sweep, group-commit
//!   writer, reads, the trait, users);
//! - `pg`: [`PgStore`], the store on PostgreSQL that several nodes share
//!   (schema and migrations, group commit, blobs, leases, LISTEN/NOTIFY);
//! - [`migrate`]: an SQLite folder moved into PostgreSQL, checked;
//! - `private`: the data folder's permissions;
//! - [`time`]: Unix seconds as RFC 3339 and RFC 5322 (the `time` crate).

#![warn(missing_docs)]

mod any;
mod error;
mod incoming;
mod memory;
mod message;
pub mod migrate;
mod pg;
mod private;
mod queue;
#[cfg(test)]
mod seam_tests;
mod spool;
mod sqlite;
mod store;
#[cfg(any(test, feature = "pg-rig"))]
pub mod testing;
pub mod time;
mod users;
mod webhook;

pub use any::AnyStore;
pub use error::StoreError;
pub use incoming::Incoming;
pub use memory::MemoryStore;
pub use message::{
    Change, Checks, Envelope, Message, NewMessage, Page, Query, RawMessage, Recipient, Stats,
    Summary,
};
pub use pg::{PG_SCHEMA_VERSION, PgOptions, PgStore, inspect as inspect_pg, pg_config};
pub use private::private_folder;
pub use queue::{QueueAction, QueueClaim, QueueEntry, QueueState, QueueUpdate, domain_of};
pub use spool::SpoolFile;
pub use sqlite::{SPILL_AT, SqliteStore};
pub use store::Store;
pub use users::Users;
pub use webhook::{WebhookEntry, WebhookState, WebhookUpdate};
