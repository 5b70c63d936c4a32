//! The [`Store`] trait over PostgreSQL: insert through the writer, reads,
//! queries, deletes and pruning.

use deadpool_postgres::GenericClient;

use super::read::{RAW, SUMMARY, summary};
use super::*;
use crate::message::contains_pattern;
use crate::{
    Message, NewMessage, Page, Query, QueueAction, QueueClaim, QueueEntry, QueueState, QueueUpdate,
    RawMessage, Stats, Store, Summary,
};

/// Messages deleted per transaction by `prune`.
const PRUNE_BATCH: i64 = 256;

/// The advisory lock a node holds (for one transaction) while it prunes:
/// one node at a time.
const PRUNE_LOCK: i64 = 0x706f_7374_656c_0002;

impl PgStore {
    /// As [`Store::next_id`]: the time in microseconds, then this run's
    /// node number, so that ids sort by arrival and no two nodes share one.
    pub fn next_id(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut last = lock(&self.last_id);
        *last = now.max(*last + 1);
        format!("{:014X}{:04X}", *last, self.tag)
    }

    /// As [`Store::insert`].
    ///
    /// # Errors
    /// As the trait's.
    pub async fn insert(&self, mut msg: NewMessage) -> Result<(), StoreError> {
        let mut apart = 0;
        let id = msg.id.clone();
        if let Some(spool) = msg.spooled.take() {
            apart = blobs::put(&self.pool, &id, spool).await?;
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = lock(&self.jobs).as_ref().is_some_and(|tx| {
            tx.send(writer::Job {
                msg: Box::new(msg),
                apart,
                done,
            })
            .is_ok()
        });
        let result = if sent {
            wait.await.unwrap_or(Err(StoreError::Closed))
        } else {
            Err(StoreError::Closed)
        };
        // Content stays when the commit failed: its outcome may be unknown
        // (the connection broke during COMMIT), and a message committed
        // after all needs it. The sweep removes it if no message names it.
        if !sent && apart > 0 {
            blobs::forget(&self.pool, &id).await;
        }
        result
    }

    async fn read_one(
        &self,
        id: &str,
    ) -> Result<Option<(deadpool_postgres::Object, Summary, Vec<u8>, u64)>, StoreError> {
        let client = get(&self.pool).await?;
        let row = client
            .query_opt(
                &format!("SELECT {SUMMARY}, m.raw, m.apart FROM messages m WHERE m.id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.map(|row| {
            let s = summary(&row);
            let raw: Vec<u8> = row.get(RAW);
            let apart = u64::try_from(row.get::<_, i64>(RAW + 1)).unwrap_or(0);
            (client, s, raw, apart)
        }))
    }

    async fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let Some((client, summary, mut raw, apart)) = self.read_one(id).await? else {
            return Ok(None);
        };
        if apart > 0 {
            match blobs::read_all(&client, id, apart).await {
                Ok(rest) => raw.extend_from_slice(&rest),
                // Deleted since the row was read: as if never found.
                Err(StoreError::ContentLost { .. }) if !self.exists(&client, id).await? => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(Message { summary, raw }))
    }

    async fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        let Some((client, summary, head, apart)) = self.read_one(id).await? else {
            return Ok(None);
        };
        let rest = if apart > 0 {
            match blobs::to_file(&client, id, apart, &self.spool).await {
                Ok(f) => Some((f, apart)),
                Err(StoreError::ContentLost { .. }) if !self.exists(&client, id).await? => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
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

    async fn exists(&self, client: &impl GenericClient, id: &str) -> Result<bool, StoreError> {
        Ok(client
            .query_opt("SELECT 1 FROM messages WHERE id = $1", &[&id])
            .await?
            .is_some())
    }

    async fn list(&self) -> Result<Vec<Summary>, StoreError> {
        let client = get(&self.pool).await?;
        let rows = client
            .query(
                &format!("SELECT {SUMMARY} FROM messages m WHERE m.local ORDER BY m.seq"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(summary).collect())
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        let seq: Option<i64> = tx
            .query_opt(
                "SELECT seq FROM messages WHERE id = $1 AND local FOR UPDATE",
                &[&id],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(seq) = seq {
            take_out(&tx, &[seq]).await?;
        }
        tx.commit().await?;
        if seq.is_some() {
            self.announce(&client, 'D', vec![id.to_owned()]).await;
        }
        Ok(seq.is_some())
    }

    /// Tells every node's live views (this one's too, through its
    /// listener) what changed. Best effort.
    pub(super) async fn announce(&self, client: &impl GenericClient, kind: char, ids: Vec<String>) {
        let payloads = if ids.is_empty() {
            vec![kind.to_string()]
        } else {
            writer::payloads(kind, ids.into_iter())
        };
        for p in payloads {
            if let Err(e) = client
                .execute("SELECT pg_notify('postel_events', $1)", &[&p])
                .await
            {
                tracing::debug!(error = %e, "cannot NOTIFY a change");
            }
        }
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let client = get(&self.pool).await?;
        let row = client
            .query_one(
                "SELECT count(*), coalesce(sum(size), 0)::int8 FROM messages WHERE local",
                &[],
            )
            .await?;
        Ok(Stats {
            messages: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            bytes: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        })
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let searches = [&q.text, &q.from, &q.to, &q.subject];
        // Stored text holds no NUL: such a search matches nothing.
        if searches
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            return Ok(Page::default());
        }
        let mut clauses = vec!["m.local".to_owned()];
        let mut args: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
        let mut arg = |v: Box<dyn tokio_postgres::types::ToSql + Sync + Send>| {
            args.push(v);
            format!("${}", args.len())
        };
        let rcpt = |p: &str| {
            format!(
                "EXISTS (SELECT 1 FROM recipients r WHERE r.message_seq = m.seq AND r.address ILIKE {p})"
            )
        };
        if let Some(t) = q.text.as_deref().filter(|t| !t.is_empty()) {
            let p = arg(Box::new(contains_pattern(t)));
            clauses.push(format!(
                "(m.mail_from ILIKE {p} OR m.subject ILIKE {p} OR {})",
                rcpt(&p)
            ));
        }
        if let Some(f) = q.from.as_deref().filter(|t| !t.is_empty()) {
            let p = arg(Box::new(contains_pattern(f)));
            clauses.push(format!("m.mail_from ILIKE {p}"));
        }
        if let Some(t) = q.to.as_deref().filter(|t| !t.is_empty()) {
            let p = arg(Box::new(contains_pattern(t)));
            clauses.push(rcpt(&p));
        }
        if let Some(s) = q.subject.as_deref().filter(|t| !t.is_empty()) {
            let p = arg(Box::new(contains_pattern(s)));
            clauses.push(format!("m.subject ILIKE {p}"));
        }
        if let Some(t) = q.since {
            let p = arg(Box::new(t));
            clauses.push(format!("m.received_at >= {p}"));
        }
        if let Some(t) = q.until {
            let p = arg(Box::new(t));
            clauses.push(format!("m.received_at < {p}"));
        }
        let filter = clauses.join(" AND ");
        let n = args.len();
        let client = get(&self.pool).await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
            .iter()
            .map(|a| &**a as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let total: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM messages m WHERE {filter}"),
                &refs,
            )
            .await?
            .get(0);
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
        let mut refs = refs;
        refs.push(&limit);
        refs.push(&offset);
        let rows = client
            .query(
                &format!(
                    "SELECT {SUMMARY} FROM messages m WHERE {filter} ORDER BY m.seq DESC LIMIT ${} OFFSET ${}",
                    n + 1,
                    n + 2
                ),
                &refs,
            )
            .await?;
        Ok(Page {
            total: u64::try_from(total).unwrap_or(0),
            messages: rows.iter().map(summary).collect(),
        })
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        let seqs: Vec<i64> = tx
            .query(
                "SELECT seq FROM messages WHERE local ORDER BY seq FOR UPDATE",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        take_out(&tx, &seqs).await?;
        tx.commit().await?;
        self.announce(&client, 'A', Vec::new()).await;
        Ok(seqs.len() as u64)
    }

    async fn prune(
        &self,
        keep: Option<u64>,
        before: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let mut deleted = Vec::new();
        let mut client = get(&self.pool).await?;
        loop {
            let tx = client.transaction().await?;
            // One node at a time: the others find the lock taken and
            // leave the work to it.
            let mine: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
                .await?
                .get(0);
            if !mine {
                break;
            }
            let excess = match keep {
                Some(keep) => {
                    let n: i64 = tx
                        .query_one("SELECT count(*) FROM messages WHERE local", &[])
                        .await?
                        .get(0);
                    (u64::try_from(n).unwrap_or(0)).saturating_sub(keep)
                }
                None => 0,
            };
            let cut = before.unwrap_or(i64::MIN);
            let excess = i64::try_from(excess).unwrap_or(i64::MAX).min(PRUNE_BATCH);
            let rows = tx
                .query(
                    "SELECT seq, id FROM (
                         (SELECT seq, id FROM messages WHERE local AND received_at < $1 ORDER BY seq LIMIT $3)
                         UNION
                         (SELECT seq, id FROM messages WHERE local ORDER BY seq LIMIT $2)
                     ) t ORDER BY seq LIMIT $3",
                    &[&cut, &excess, &PRUNE_BATCH],
                )
                .await?;
            if rows.is_empty() {
                tx.commit().await?;
                break;
            }
            let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            let ids: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
            take_out(&tx, &seqs).await?;
            tx.commit().await?;
            self.announce(&client, 'D', ids.clone()).await;
            deleted.extend(ids);
        }
        Ok(deleted)
    }
}

/// Takes these messages out of the inbox: one that still has recipients
/// to send on keeps its body (and leaves when its queue is done); any
/// other is deleted with its rows and blob.
async fn take_out(tx: &impl GenericClient, seqs: &[i64]) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    // As an outcome does (queue.rs): the message first, so that a
    // delivery finishing it meanwhile is seen.
    super::queue::lock_messages(tx, seqs).await?;
    let hidden: Vec<i64> = tx
        .query(
            "UPDATE messages m SET local = false WHERE m.seq = ANY($1)
               AND EXISTS (SELECT 1 FROM queue q WHERE q.message_seq = m.seq
                           AND q.state IN ('queued', 'deferred', 'held'))
             RETURNING m.seq",
            &[&seqs],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !hidden.is_empty() {
        // Out of the inbox: not posted any more either.
        tx.execute(
            "DELETE FROM webhooks WHERE message_seq = ANY($1)",
            &[&hidden],
        )
        .await?;
    }
    let gone: Vec<String> = tx
        .query(
            "DELETE FROM messages WHERE seq = ANY($1) AND NOT (seq = ANY($2))
             RETURNING id, apart",
            &[&seqs, &hidden],
        )
        .await?
        .iter()
        .filter(|r| r.get::<_, i64>(1) > 0)
        .map(|r| r.get(0))
        .collect();
    blobs::delete(tx, &gone).await
}

/// The store as the server and the web side use it: shared.
impl Store for Arc<PgStore> {
    fn next_id(&self) -> String {
        PgStore::next_id(self)
    }

    fn receive(&self) -> crate::Incoming {
        PgStore::receive(self)
    }

    async fn insert(&self, msg: NewMessage) -> Result<(), StoreError> {
        PgStore::insert(self, msg).await
    }

    async fn list(&self) -> Result<Vec<Summary>, StoreError> {
        PgStore::list(self).await
    }

    async fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        PgStore::get(self, id).await
    }

    async fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        PgStore::open_raw(self, id).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        PgStore::delete(self, id).await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        PgStore::stats(self).await
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        PgStore::query(self, q).await
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        PgStore::delete_all(self).await
    }

    async fn prune(
        &self,
        keep: Option<u64>,
        before: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        PgStore::prune(self, keep, before).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn lease(&self) -> Option<i64> {
        Some(self.lease)
    }

    async fn queue_claim(&self, c: &QueueClaim) -> Result<Vec<QueueEntry>, StoreError> {
        PgStore::queue_claim(self, c).await
    }

    async fn queue_renew(&self, rows: &[QueueUpdate], until: i64) -> Result<u64, StoreError> {
        PgStore::queue_renew(self, rows, until).await
    }

    async fn share_sessions(
        &self,
        mine: &[(String, u32)],
    ) -> Result<std::collections::HashMap<String, u32>, StoreError> {
        PgStore::share_sessions(self, mine).await
    }

    async fn queue_release_claims(&self) -> Result<(), StoreError> {
        PgStore::queue_release_claims(self).await
    }

    async fn queue_counts(&self) -> Result<Vec<(QueueState, u64)>, StoreError> {
        PgStore::queue_counts(self).await
    }

    async fn queue_list(&self) -> Result<Vec<QueueEntry>, StoreError> {
        PgStore::queue_list(self).await
    }

    async fn queue_record(&self, updates: Vec<QueueUpdate>) -> Result<(), StoreError> {
        PgStore::queue_record(self, &updates).await
    }

    async fn queue_act(
        &self,
        id: Option<&str>,
        action: QueueAction,
        now: i64,
    ) -> Result<u64, StoreError> {
        PgStore::queue_act(self, id, action, now).await
    }

    async fn webhook_claim(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<crate::WebhookEntry>, StoreError> {
        PgStore::webhook_claim(self, now, until, limit).await
    }

    async fn webhook_record(&self, updates: Vec<crate::WebhookUpdate>) -> Result<(), StoreError> {
        PgStore::webhook_record(self, &updates).await
    }

    async fn webhook_list(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::WebhookEntry>, StoreError> {
        PgStore::webhook_list(self, id, limit).await
    }
}
