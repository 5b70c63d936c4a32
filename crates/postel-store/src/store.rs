//! The store seam: what the server and the web side ask of whatever keeps
//! the messages. SQLite implements it ([`crate::SqliteStore`], shared as an
//! `Arc`), and so do [`crate::PgStore`] (several nodes, one database) and
//! [`crate::MemoryStore`] (for tests, and to show the seam holds).
//!
//! Every call that may wait (on a disk, or on a network for PostgreSQL) is
//! async: a caller never blocks a runtime thread on the store, and never
//! needs to know which calls would have.

use crate::{
    Change, Incoming, Message, NewMessage, Page, Query, QueueAction, QueueClaim, QueueEntry,
    QueueUpdate, RawMessage, Stats, StoreError, Summary,
};

/// Where messages are kept.
pub trait Store: Send + Sync + 'static {
    /// A new message id: unique in this store, and sorting in arrival order.
    fn next_id(&self) -> String;

    /// Where the content of a message being received goes, as it arrives:
    /// the store decides how to keep it (in memory, or spooled to a file).
    fn receive(&self) -> Incoming;

    /// Stores a message. Returns only once it is on stable storage.
    ///
    /// # Errors
    /// A [`StoreError`]; nothing of the message is then visible.
    fn insert(&self, msg: NewMessage) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every message, oldest first, without content.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn list(&self) -> impl Future<Output = Result<Vec<Summary>, StoreError>> + Send;

    /// One message, with its content.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Message>, StoreError>> + Send;

    /// One message's stored bytes, to be streamed rather than read whole:
    /// the part held in the database, then the rest as an open file (for a
    /// large message). The default reads the message whole.
    ///
    /// # Errors
    /// When the database or the file cannot be read.
    fn open_raw(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<RawMessage>, StoreError>> + Send {
        async move {
            Ok(self.get(id).await?.map(|m| RawMessage {
                summary: m.summary,
                head: m.raw,
                rest: None,
            }))
        }
    }

    /// Deletes one message. Returns true if and only if it existed.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn delete(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Message count and total size.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn stats(&self) -> impl Future<Output = Result<Stats, StoreError>> + Send;

    /// The messages that match `q`, newest first, one page of them.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn query(&self, q: &Query) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Deletes every message. Returns how many there were.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn delete_all(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes the oldest messages beyond `keep`, and those received before
    /// `before` (seconds since the epoch), a small batch per transaction so
    /// that intake is never held up for long. Returns the ids deleted.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn prune(
        &self,
        keep: Option<u64>,
        before: Option<i64>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Changes made through this store from now on. A receiver that falls
    /// behind misses changes (and is told so by `recv`).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change>;

    /// Claims the queued recipients due at `c.now` (Unix seconds): queued
    /// or deferred, with `next_attempt <= now`, not claimed already (or
    /// whose claim ran out), soonest first, at most `c.limit` in all and
    /// `c.per_domain` per domain, none for the domains in `c.skip`. Each
    /// is claimed until `c.until`, or until its outcome is recorded. A
    /// lost claim (a crash) costs nothing but a wait: claims need not be
    /// durable.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn queue_claim(
        &self,
        c: &QueueClaim,
    ) -> impl Future<Output = Result<Vec<QueueEntry>, StoreError>> + Send;

    /// How long a claim lasts unless it is renewed (seconds), for a store
    /// that several nodes share; None for a store that one node owns,
    /// whose claims all end when that node starts again. With a lease,
    /// the delivery worker renews its claims while it works on them, and
    /// no content is handed to it in memory (another node may take the
    /// row once the lease ends).
    fn lease(&self) -> Option<i64> {
        None
    }

    /// Extends the claims on these rows to `until`, for those still held
    /// under the claim they were made with. Returns how many were.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn queue_renew(
        &self,
        rows: &[QueueUpdate],
        until: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = until;
        let n = rows.len() as u64;
        async move { Ok(n) }
    }

    /// Tells the other nodes how many delivery sessions this node has
    /// open per destination, and returns how many they have (summed), so
    /// that the limit per destination holds across the nodes. A store
    /// that one node owns has no others: none.
    ///
    /// # Errors
    /// When the database cannot be reached.
    fn share_sessions(
        &self,
        mine: &[(String, u32)],
    ) -> impl Future<Output = Result<std::collections::HashMap<String, u32>, StoreError>> + Send
    {
        let _ = mine;
        async { Ok(std::collections::HashMap::new()) }
    }

    /// Ends every claim this node made: at start, before it claims again.
    /// (A store that one node owns ends every claim.)
    ///
    /// # Errors
    /// When the database cannot be written.
    fn queue_release_claims(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many recipients are in each state.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn queue_counts(
        &self,
    ) -> impl Future<Output = Result<Vec<(crate::QueueState, u64)>, StoreError>> + Send {
        async move {
            let mut counts: Vec<(crate::QueueState, u64)> = Vec::new();
            for e in self.queue_list().await? {
                match counts.iter_mut().find(|(s, _)| *s == e.state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((e.state, 1)),
                }
            }
            Ok(counts)
        }
    }

    /// Every queued recipient, by message then position.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn queue_list(&self) -> impl Future<Output = Result<Vec<QueueEntry>, StoreError>> + Send;

    /// Records the outcomes of attempts, durably, in one transaction, and
    /// ends their claims. A deferral leaves a row that an operator held or
    /// deleted meanwhile as it is. A message whose rows are then all done
    /// leaves the queue, with its body unless it is kept in the inbox.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn queue_record(
        &self,
        updates: Vec<QueueUpdate>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies an operator's action to the rows of message `id` (every
    /// message for None) that it applies to. Returns how many rows changed.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn queue_act(
        &self,
        id: Option<&str>,
        action: QueueAction,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Claims the webhook deliveries due at `now` (pending, with
    /// `next_attempt <= now`), oldest first, at most `limit`: each is
    /// claimed by moving its `next_attempt` to `until`, so that it comes
    /// due again if its outcome is never recorded (a crash).
    ///
    /// # Errors
    /// When the database cannot be written.
    fn webhook_claim(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::WebhookEntry>, StoreError>> + Send;

    /// Records the outcomes of webhook attempts, durably.
    ///
    /// # Errors
    /// When the database cannot be written.
    fn webhook_record(
        &self,
        updates: Vec<crate::WebhookUpdate>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The webhook deliveries of message `id` (of every message for None),
    /// newest message first, at most `limit`.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn webhook_list(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::WebhookEntry>, StoreError>> + Send;
}
