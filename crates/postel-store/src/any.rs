//! [`AnyStore`]: the store a config chose, SQLite or PostgreSQL, behind one
//! type, so that the server, the web side and the tools are built once and
//! work on either.

use std::sync::Arc;

use crate::{
    Change, Incoming, Message, NewMessage, Page, PgStore, Query, QueueAction, QueueClaim,
    QueueEntry, QueueState, QueueUpdate, RawMessage, SqliteStore, Stats, Store, StoreError,
    Summary, Users, WebhookEntry, WebhookUpdate,
};

/// SQLite in the data folder, or PostgreSQL shared by several nodes.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// The embedded store.
    Sqlite(Arc<SqliteStore>),
    /// The shared store.
    Postgres(Arc<PgStore>),
}

/// Calls the same method on whichever store it is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl AnyStore {
    /// Commits what the writer holds and stops it (at shutdown).
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => {
                let s = s.clone();
                let _ = tokio::task::spawn_blocking(move || s.close()).await;
            }
            AnyStore::Postgres(s) => s.close().await,
        }
    }

    /// What it is, for logs: `sqlite PATH` or `postgresql (node NAME)`.
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Sqlite(s) => format!("sqlite {}", s.path().display()),
            AnyStore::Postgres(s) => format!("postgresql (node {})", s.node()),
        }
    }
}

impl Store for AnyStore {
    fn next_id(&self) -> String {
        each!(self, s => s.next_id())
    }

    fn receive(&self) -> Incoming {
        each!(self, s => s.receive())
    }

    async fn insert(&self, msg: NewMessage) -> Result<(), StoreError> {
        each!(self, s => Store::insert(s, msg).await)
    }

    async fn list(&self) -> Result<Vec<Summary>, StoreError> {
        each!(self, s => Store::list(s).await)
    }

    async fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        each!(self, s => Store::get(s, id).await)
    }

    async fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        each!(self, s => Store::open_raw(s, id).await)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        each!(self, s => Store::delete(s, id).await)
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        each!(self, s => Store::stats(s).await)
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        each!(self, s => Store::query(s, q).await)
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        each!(self, s => Store::delete_all(s).await)
    }

    async fn prune(
        &self,
        keep: Option<u64>,
        before: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        each!(self, s => Store::prune(s, keep, before).await)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        each!(self, s => Store::subscribe(s))
    }

    fn lease(&self) -> Option<i64> {
        each!(self, s => Store::lease(s))
    }

    async fn queue_claim(&self, c: &QueueClaim) -> Result<Vec<QueueEntry>, StoreError> {
        each!(self, s => Store::queue_claim(s, c).await)
    }

    async fn queue_renew(&self, rows: &[QueueUpdate], until: i64) -> Result<u64, StoreError> {
        each!(self, s => Store::queue_renew(s, rows, until).await)
    }

    async fn share_sessions(
        &self,
        mine: &[(String, u32)],
    ) -> Result<std::collections::HashMap<String, u32>, StoreError> {
        each!(self, s => Store::share_sessions(s, mine).await)
    }

    async fn queue_release_claims(&self) -> Result<(), StoreError> {
        each!(self, s => Store::queue_release_claims(s).await)
    }

    async fn queue_counts(&self) -> Result<Vec<(QueueState, u64)>, StoreError> {
        each!(self, s => Store::queue_counts(s).await)
    }

    async fn queue_list(&self) -> Result<Vec<QueueEntry>, StoreError> {
        each!(self, s => Store::queue_list(s).await)
    }

    async fn queue_record(&self, updates: Vec<QueueUpdate>) -> Result<(), StoreError> {
        each!(self, s => Store::queue_record(s, updates).await)
    }

    async fn queue_act(
        &self,
        id: Option<&str>,
        action: QueueAction,
        now: i64,
    ) -> Result<u64, StoreError> {
        each!(self, s => Store::queue_act(s, id, action, now).await)
    }

    async fn webhook_claim(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<WebhookEntry>, StoreError> {
        each!(self, s => Store::webhook_claim(s, now, until, limit).await)
    }

    async fn webhook_record(&self, updates: Vec<WebhookUpdate>) -> Result<(), StoreError> {
        each!(self, s => Store::webhook_record(s, updates).await)
    }

    async fn webhook_list(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookEntry>, StoreError> {
        each!(self, s => Store::webhook_list(s, id, limit).await)
    }
}

impl Users for AnyStore {
    fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.user_hash(name))
    }

    fn user_scram(&self, name: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.user_scram(name))
    }

    fn set_user(&self, name: &str, hash: &str, scram: Option<&str>) -> Result<bool, StoreError> {
        each!(self, s => s.set_user(name, hash, scram))
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        each!(self, s => s.remove_user(name))
    }

    fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        each!(self, s => s.users())
    }

    fn user_addresses(&self, name: &str) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.user_addresses(name))
    }

    fn set_user_addresses(&self, name: &str, addresses: &[String]) -> Result<(), StoreError> {
        each!(self, s => s.set_user_addresses(name, addresses))
    }
}
