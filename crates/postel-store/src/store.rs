//! The store seam: what the server and the web side ask of whatever keeps
//! the messages. SQLite implements it today; a PostgreSQL store will next.

use std::sync::Arc;

use crate::{Change, Message, NewMessage, Page, Query, RawMessage, Stats, StoreError, Summary};

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
