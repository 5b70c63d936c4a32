//! [`MemoryStore`]: the [`Store`] trait kept in memory. For tests of what
//! sits above the store (the web side, a backend), and as the proof that
//! the seam holds: nothing above it needs SQLite. Nothing is durable: an
//! insert returns once the message is in memory, which is no `250` promise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::{
    Change, Incoming, Message, NewMessage, Page, Query, QueueAction, QueueClaim, QueueEntry,
    QueueState, QueueUpdate, RawMessage, Stats, Store, StoreError, Summary,
};

/// Messages in memory, shared by its clones.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Accounts: name to (hash, created).
    users: Mutex<std::collections::BTreeMap<String, Account>>,
    addresses: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// Oldest first.
    messages: Mutex<Vec<Message>>,
    /// Queue rows, and the messages they need (kept here even when the
    /// inbox's copy is deleted).
    queue: Mutex<(Vec<QueueEntry>, std::collections::BTreeMap<String, Message>)>,
    last_id: AtomicU64,
    changes: Mutex<Option<tokio::sync::broadcast::Sender<Change>>>,
    /// The webhook outbox, oldest first; rows of deleted messages are
    /// skipped (as the SQLite store deletes them).
    webhooks: Mutex<Vec<crate::WebhookEntry>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn hooks(&self) -> std::sync::MutexGuard<'_, Vec<crate::WebhookEntry>> {
        self.inner
            .webhooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The webhook rows whose message is still here.
    fn live_hooks(&self) -> std::sync::MutexGuard<'_, Vec<crate::WebhookEntry>> {
        let ids: std::collections::BTreeSet<String> = self
            .messages()
            .iter()
            .map(|m| m.summary.id.clone())
            .collect();
        let mut hooks = self.hooks();
        hooks.retain(|h| ids.contains(&h.id));
        hooks
    }

    fn messages(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.inner
            .messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[allow(clippy::type_complexity)]
    fn queue(
        &self,
    ) -> std::sync::MutexGuard<'_, (Vec<QueueEntry>, std::collections::BTreeMap<String, Message>)>
    {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changes(&self) -> tokio::sync::broadcast::Sender<Change> {
        let mut c = self
            .inner
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.get_or_insert_with(|| tokio::sync::broadcast::channel(1024).0)
            .clone()
    }

    fn notify(&self, change: Change) {
        let _ = self.changes().send(change);
    }
}

/// Case-insensitive "contains", as SQLite's LIKE is for ASCII.
fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

fn matches(s: &Summary, q: &Query) -> bool {
    let subject = s.subject.as_deref().unwrap_or("");
    let to = |t: &str| {
        s.envelope
            .recipients
            .iter()
            .any(|r| contains(&r.address, t))
    };
    // Each search given must match; a NUL matches nothing, as stored text
    // holds none (the SQLite store does the same).
    let ok = |v: &Option<String>, f: &dyn Fn(&str) -> bool| match v.as_deref() {
        None | Some("") => true,
        Some(t) => !t.contains('\0') && f(t),
    };
    ok(&q.text, &|t| {
        contains(&s.envelope.mail_from, t) || contains(subject, t) || to(t)
    }) && ok(&q.from, &|t| contains(&s.envelope.mail_from, t))
        && ok(&q.to, &to)
        && ok(&q.subject, &|t| contains(subject, t))
        && q.since.is_none_or(|t| s.received_at >= t)
        && q.until.is_none_or(|t| s.received_at < t)
}

impl Store for MemoryStore {
    fn next_id(&self) -> String {
        format!(
            "{:014X}",
            self.inner.last_id.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    fn receive(&self) -> Incoming {
        Incoming::in_memory()
    }

    async fn insert(&self, msg: NewMessage) -> Result<(), StoreError> {
        let NewMessage {
            id,
            received_at,
            envelope,
            subject,
            mut raw,
            spooled,
            queue,
            local,
            claimed_until,
            hold,
            webhooks,
        } = msg;
        if let Some(spool) = spooled {
            raw.extend_from_slice(&std::fs::read(spool.file.path())?);
        }
        let summary = Summary {
            id,
            received_at,
            envelope,
            subject,
            size: raw.len() as u64,
        };
        let message = Message {
            summary: summary.clone(),
            raw,
        };
        {
            let mut all = self.messages();
            let mut q = self.queue();
            if all.iter().any(|m| m.summary.id == summary.id) || q.1.contains_key(&summary.id) {
                return Err(StoreError::Commit {
                    message: format!("a message {} is already stored", summary.id),
                    transient: false,
                });
            }
            // With the message, under its lock: never apart from it.
            self.hooks()
                .extend(webhooks.into_iter().map(|hook| crate::WebhookEntry {
                    id: summary.id.clone(),
                    hook,
                    state: crate::WebhookState::Pending,
                    attempts: 0,
                    next_attempt: received_at,
                    last_status: None,
                    received_at,
                }));
            for position in queue {
                let s = &summary;
                let Some(row) = QueueEntry::committed(
                    &s.id,
                    position,
                    &s.envelope,
                    s.received_at,
                    s.size,
                    claimed_until,
                    hold,
                ) else {
                    continue;
                };
                q.0.push(row);
                q.1.insert(summary.id.clone(), message.clone());
            }
            if local {
                all.push(message);
            }
        }
        if local {
            self.notify(Change::Stored(Box::new(summary)));
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Summary>, StoreError> {
        Ok(self.messages().iter().map(|m| m.summary.clone()).collect())
    }

    async fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let found = self.messages().iter().find(|m| m.summary.id == id).cloned();
        Ok(found.or_else(|| self.queue().1.get(id).cloned()))
    }

    async fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        Ok(self.get(id).await?.map(|m| RawMessage {
            summary: m.summary,
            head: m.raw,
            rest: None,
        }))
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let gone = {
            let mut all = self.messages();
            let before = all.len();
            all.retain(|m| m.summary.id != id);
            all.len() != before
        };
        if gone {
            self.notify(Change::Deleted(id.to_owned()));
        }
        Ok(gone)
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let all = self.messages();
        Ok(Stats {
            messages: all.len() as u64,
            bytes: all.iter().map(|m| m.summary.size).sum(),
        })
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let all = self.messages();
        let hits: Vec<&Message> = all
            .iter()
            .rev()
            .filter(|m| matches(&m.summary, q))
            .collect();
        Ok(Page {
            total: hits.len() as u64,
            messages: hits
                .into_iter()
                .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
                .take(usize::try_from(q.limit).unwrap_or(usize::MAX))
                .map(|m| m.summary.clone())
                .collect(),
        })
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let n = {
            let mut all = self.messages();
            let n = all.len() as u64;
            all.clear();
            n
        };
        self.notify(Change::DeletedAll);
        Ok(n)
    }

    async fn prune(
        &self,
        keep: Option<u64>,
        before: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let gone: Vec<String> = {
            let mut all = self.messages();
            let excess = keep.map_or(0, |k| {
                all.len()
                    .saturating_sub(usize::try_from(k).unwrap_or(usize::MAX))
            });
            let mut ids = Vec::new();
            let mut index = 0;
            all.retain(|m| {
                let old = before.is_some_and(|b| m.summary.received_at < b);
                let drop = index < excess || old;
                index += 1;
                if drop {
                    ids.push(m.summary.id.clone());
                }
                !drop
            });
            ids
        };
        for id in &gone {
            self.notify(Change::Deleted(id.clone()));
        }
        Ok(gone)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes().subscribe()
    }

    async fn queue_claim(&self, c: &QueueClaim) -> Result<Vec<QueueEntry>, StoreError> {
        let mut q = self.queue();
        let mut due: Vec<&mut QueueEntry> =
            q.0.iter_mut()
                .filter(|e| {
                    matches!(e.state, QueueState::Queued | QueueState::Deferred)
                        && e.next_attempt <= c.now
                        && e.leased_until.is_none_or(|l| l <= c.now)
                        && !c.skip.contains(&crate::domain_of(&e.recipient))
                        && c.only
                            .as_ref()
                            .is_none_or(|d| *d == crate::domain_of(&e.recipient))
                })
                .collect();
        due.sort_by_key(|e| e.next_attempt);
        let mut per: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut out = Vec::new();
        for e in due {
            if out.len() >= c.limit {
                break;
            }
            let n = per.entry(crate::domain_of(&e.recipient)).or_default();
            if *n >= c.per_domain {
                continue;
            }
            *n += 1;
            e.leased_until = Some(c.until);
            out.push(e.clone());
        }
        Ok(out)
    }

    async fn queue_release_claims(&self) -> Result<(), StoreError> {
        for e in &mut self.queue().0 {
            e.leased_until = None;
        }
        Ok(())
    }

    async fn queue_list(&self) -> Result<Vec<QueueEntry>, StoreError> {
        Ok(self.queue().0.clone())
    }

    async fn queue_record(&self, updates: Vec<QueueUpdate>) -> Result<(), StoreError> {
        let mut q = self.queue();
        for u in &updates {
            if let Some(e) =
                q.0.iter_mut()
                    .find(|e| e.id == u.id && e.position == u.position)
            {
                e.leased_until = None;
                // A deferral does not undo an operator's hold or delete.
                let operator_changed =
                    !matches!(e.state, QueueState::Queued | QueueState::Deferred);
                if operator_changed && !u.state.is_done() {
                    continue;
                }
                e.state = u.state;
                e.attempts = u.attempts;
                e.next_attempt = u.next_attempt;
                e.last_reply.clone_from(&u.last_reply);
                e.warned = u.warned;
            }
        }
        finish_done(&mut q);
        Ok(())
    }

    async fn queue_act(
        &self,
        id: Option<&str>,
        action: QueueAction,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut q = self.queue();
        let mut n = 0;
        for e in q.0.iter_mut().filter(|e| id.is_none_or(|id| e.id == id)) {
            let active = matches!(
                e.state,
                QueueState::Queued | QueueState::Deferred | QueueState::Held
            );
            let changed = match action {
                QueueAction::Retry if active => {
                    if e.state == QueueState::Held {
                        e.state = QueueState::Queued;
                    }
                    e.next_attempt = now;
                    true
                }
                QueueAction::Hold if active && e.state != QueueState::Held => {
                    e.state = QueueState::Held;
                    true
                }
                QueueAction::Release if e.state == QueueState::Held => {
                    e.state = QueueState::Queued;
                    e.next_attempt = now;
                    true
                }
                QueueAction::Delete if active => {
                    e.state = QueueState::Failed;
                    e.last_reply = Some("deleted by the operator".into());
                    true
                }
                QueueAction::Bounce if active => {
                    e.bounce = true;
                    e.next_attempt = now;
                    if e.state == QueueState::Held {
                        e.state = QueueState::Queued;
                    }
                    true
                }
                _ => false,
            };
            n += u64::from(changed);
        }
        finish_done(&mut q);
        Ok(n)
    }

    async fn webhook_claim(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<crate::WebhookEntry>, StoreError> {
        let mut hooks = self.live_hooks();
        let mut due: Vec<&mut crate::WebhookEntry> = hooks
            .iter_mut()
            .filter(|h| h.state == crate::WebhookState::Pending && h.next_attempt <= now)
            .collect();
        due.sort_by_key(|h| h.next_attempt);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|h| {
                h.next_attempt = until;
                h.clone()
            })
            .collect())
    }

    async fn webhook_record(&self, updates: Vec<crate::WebhookUpdate>) -> Result<(), StoreError> {
        let mut hooks = self.hooks();
        for u in updates {
            if let Some(h) = hooks.iter_mut().find(|h| h.id == u.id && h.hook == u.hook) {
                h.state = u.state;
                h.attempts = u.attempts;
                h.next_attempt = u.next_attempt;
                h.last_status = u.last_status;
            }
        }
        Ok(())
    }

    async fn webhook_list(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::WebhookEntry>, StoreError> {
        let hooks = self.live_hooks();
        Ok(hooks
            .iter()
            .rev()
            .filter(|h| id.is_none_or(|id| h.id == id))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Messages whose queue rows are all done leave the queue.
fn finish_done(q: &mut (Vec<QueueEntry>, std::collections::BTreeMap<String, Message>)) {
    let pending: std::collections::BTreeSet<String> =
        q.0.iter()
            .filter(|e| !e.state.is_done())
            .map(|e| e.id.clone())
            .collect();
    q.0.retain(|e| pending.contains(&e.id));
    q.1.retain(|id, _| pending.contains(id));
}

/// A user: password hash, SCRAM keys, creation time.
type Account = (String, Option<String>, i64);

impl crate::Users for MemoryStore {
    fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.accounts().get(name).map(|(h, _, _)| h.clone()))
    }

    fn user_scram(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.accounts().get(name).and_then(|(_, k, _)| k.clone()))
    }

    fn set_user(&self, name: &str, hash: &str, scram: Option<&str>) -> Result<bool, StoreError> {
        let mut users = self.accounts();
        let created = users.get(name).map_or(0, |(_, _, c)| *c);
        Ok(users
            .insert(
                name.to_owned(),
                (hash.to_owned(), scram.map(str::to_owned), created),
            )
            .is_none())
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        self.addresses().remove(name);
        Ok(self.accounts().remove(name).is_some())
    }

    fn user_addresses(&self, name: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.addresses().get(name).cloned().unwrap_or_default())
    }

    fn set_user_addresses(&self, name: &str, addresses: &[String]) -> Result<(), StoreError> {
        let mut list: Vec<String> = addresses.iter().map(|a| a.to_lowercase()).collect();
        list.sort();
        list.dedup();
        self.addresses().insert(name.to_owned(), list);
        Ok(())
    }

    fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self
            .accounts()
            .iter()
            .map(|(n, (_, _, c))| (n.clone(), *c))
            .collect())
    }
}

impl MemoryStore {
    fn addresses(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<String>>> {
        self.inner
            .addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Account>> {
        self.inner
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
