//! The delivery queue on PostgreSQL: claims into leases, renewals,
//! outcomes written under the lease's token, and the operator's actions.
//!
//! A claim locks the due rows it looks at with `FOR UPDATE SKIP LOCKED`,
//! so two nodes claiming at once take different rows, and no transaction
//! stays open beyond the claim itself: the delivery runs outside any. A
//! lease names its node (`lease_owner`) and its claim (`lease_token`, from
//! a sequence); an outcome is written only where both still match, so a
//! node whose lease ran out and was taken over cannot overwrite the new
//! owner's work.
//!
//! Whatever changes a message's queue rows and may then finish it (an
//! outcome, an operator's action, a delete) first locks the message's row:
//! two such transactions on one message take turns, so the second sees
//! the first's rows and finishes the message if it is done. Message rows
//! are locked before queue rows, in `seq` order, everywhere.

use deadpool_postgres::GenericClient;
use futures_util::future::try_join_all;

use super::read::{ENTRY, ENTRY_FROM, entry};
use super::*;
use crate::{QueueAction, QueueClaim, QueueEntry, QueueState, QueueUpdate};

/// States in which a row is waiting for a delivery.
const WAITING: &str = "('queued', 'deferred')";

impl PgStore {
    pub(super) async fn queue_claim(&self, c: &QueueClaim) -> Result<Vec<QueueEntry>, StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        // Due rows numbered within their domain, as SQLite does, so that no
        // domain's backlog hides the others; domains whose rows in flight
        // (on every node) fill their share are left out in the query.
        let limit = i64::try_from(c.limit).unwrap_or(i64::MAX);
        let per = i64::try_from(c.per_domain).unwrap_or(i64::MAX);
        // How many due rows are looked at: bounded, so that a claim costs
        // the same however long the backlog (full domains are left out
        // before the bound, so they never fill it).
        let scan = limit.saturating_mul(4).min(8192);
        let candidates = tx
            .query(
                &format!(
                    "WITH busy AS (
                         SELECT domain, count(*) AS n FROM queue
                         WHERE leased_until > $1 AND state IN {WAITING} GROUP BY domain
                     ), looked AS (
                         SELECT q.message_seq, q.position, q.domain, q.next_attempt
                         FROM queue q
                         WHERE q.state IN {WAITING} AND q.next_attempt <= $1
                           AND (q.leased_until IS NULL OR q.leased_until <= $1)
                           AND ($2::text IS NULL OR q.domain = $2)
                           AND NOT (q.domain = ANY($3))
                           AND q.domain NOT IN (SELECT domain FROM busy WHERE n >= $4)
                         ORDER BY q.next_attempt, q.message_seq, q.position
                         LIMIT $6
                     ), due AS (
                         SELECT w.*, row_number() OVER (PARTITION BY w.domain
                                    ORDER BY w.next_attempt, w.message_seq, w.position) AS rn,
                                coalesce(b.n, 0) AS busy
                         FROM looked w LEFT JOIN busy b ON b.domain = w.domain
                     )
                     SELECT message_seq, position FROM due WHERE rn + busy <= $4
                     ORDER BY next_attempt, message_seq, position LIMIT $5"
                ),
                &[&c.now, &c.only, &c.skip, &per, &limit, &scan],
            )
            .await?;
        let seqs: Vec<i64> = candidates.iter().map(|r| r.get(0)).collect();
        let positions: Vec<i32> = candidates.iter().map(|r| r.get(1)).collect();
        // Locked now, skipping what another node is claiming this instant,
        // and still due (it may have been claimed since the look above).
        let locked = tx
            .query(
                &format!(
                    "SELECT q.message_seq, q.position FROM queue q
                     JOIN unnest($1::int8[], $2::int4[]) AS k (s, p)
                       ON q.message_seq = k.s AND q.position = k.p
                     WHERE q.state IN {WAITING} AND q.next_attempt <= $3
                       AND (q.leased_until IS NULL OR q.leased_until <= $3)
                     FOR UPDATE OF q SKIP LOCKED"
                ),
                &[&seqs, &positions, &c.now],
            )
            .await?;
        let seqs: Vec<i64> = locked.iter().map(|r| r.get(0)).collect();
        let positions: Vec<i32> = locked.iter().map(|r| r.get(1)).collect();
        if seqs.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let token: i64 = tx
            .query_one("SELECT nextval('postel_leases')", &[])
            .await?
            .get(0);
        tx.execute(
            "UPDATE queue q SET leased_until = $1, lease_owner = $2, lease_token = $3
             FROM unnest($4::int8[], $5::int4[]) AS k (s, p)
             WHERE q.message_seq = k.s AND q.position = k.p",
            &[&c.until, &self.node, &token, &seqs, &positions],
        )
        .await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {ENTRY} FROM {ENTRY_FROM}
                     JOIN unnest($1::int8[], $2::int4[]) AS k (s, p)
                       ON q.message_seq = k.s AND q.position = k.p
                     ORDER BY q.next_attempt, q.message_seq, q.position"
                ),
                &[&seqs, &positions],
            )
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(entry).collect())
    }

    pub(super) async fn queue_renew(
        &self,
        rows: &[QueueUpdate],
        until: i64,
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = rows.iter().map(|u| u.id.as_str()).collect();
        let positions: Vec<i32> = rows.iter().map(|u| pos(u.position)).collect();
        let tokens: Vec<i64> = rows.iter().map(|u| u.lease_token).collect();
        let client = get(&self.pool).await?;
        // Rows an outcome is being written to are skipped, never waited
        // for: the outcome ends their lease anyway.
        Ok(client
            .execute(
                "WITH l AS (
                     SELECT q.message_seq, q.position FROM queue q
                     JOIN messages m ON m.seq = q.message_seq
                     JOIN unnest($2::text[], $3::int4[], $4::int8[]) AS k (id, p, t)
                       ON m.id = k.id AND q.position = k.p
                     WHERE q.lease_owner = $5 AND q.lease_token = k.t
                       AND q.leased_until IS NOT NULL
                     ORDER BY q.message_seq, q.position
                     FOR UPDATE OF q SKIP LOCKED
                 )
                 UPDATE queue q SET leased_until = $1 FROM l
                 WHERE q.message_seq = l.message_seq AND q.position = l.position",
                &[&until, &ids, &positions, &tokens, &self.node],
            )
            .await?)
    }

    pub(super) async fn queue_release_claims(&self) -> Result<(), StoreError> {
        let client = get(&self.pool).await?;
        client
            .execute(
                "UPDATE queue SET leased_until = NULL, lease_owner = NULL WHERE lease_owner = $1",
                &[&self.node],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn queue_counts(&self) -> Result<Vec<(QueueState, u64)>, StoreError> {
        let client = get(&self.pool).await?;
        let rows = client
            .query("SELECT state, count(*) FROM queue GROUP BY state", &[])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    QueueState::parse(r.get(0))?,
                    u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                ))
            })
            .collect())
    }

    pub(super) async fn queue_list(&self) -> Result<Vec<QueueEntry>, StoreError> {
        let client = get(&self.pool).await?;
        let rows = client
            .query(
                &format!("SELECT {ENTRY} FROM {ENTRY_FROM} ORDER BY q.message_seq, q.position"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(entry).collect())
    }

    pub(super) async fn queue_record(&self, updates: &[QueueUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut client = get(&self.pool).await?;
        let txn = client.transaction().await?;
        let tx = &txn;
        // Rows in one order everywhere: by message, then position.
        let mut updates: Vec<&QueueUpdate> = updates.iter().collect();
        updates.sort_by(|a, b| (&a.id, a.position).cmp(&(&b.id, b.position)));
        let ids: Vec<&str> = updates.iter().map(|u| u.id.as_str()).collect();
        tx.execute(
            "SELECT 1 FROM messages WHERE id = ANY($1) ORDER BY seq FOR UPDATE",
            &[&ids],
        )
        .await?;
        // A deferral only where no operator changed the row meanwhile; a
        // delivery or a failure whatever happened (it did happen). Either
        // only under this node's claim.
        let update = tx
            .prepare_cached(&format!(
                "UPDATE queue q SET state = $3, attempts = $4, next_attempt = $5,
                     last_reply = $6, warned = $7, leased_until = NULL, lease_owner = NULL
                 FROM messages m
                 WHERE m.id = $1 AND q.message_seq = m.seq AND q.position = $2
                   AND q.lease_owner = $8 AND q.lease_token = $9
                   AND ($3 IN ('delivered', 'failed') OR q.state IN {WAITING})
                 RETURNING q.message_seq"
            ))
            .await?;
        let unlease = tx
            .prepare_cached(
                "UPDATE queue q SET leased_until = NULL, lease_owner = NULL FROM messages m
                 WHERE m.id = $1 AND q.message_seq = m.seq AND q.position = $2
                   AND q.lease_owner = $3 AND q.lease_token = $4
                 RETURNING q.message_seq",
            )
            .await?;
        // Sent together: the connection pipelines them.
        let tx = &tx;
        let done = try_join_all(updates.iter().map(|u| {
            let (update, unlease) = (&update, &unlease);
            async move {
                let state = u.state.as_str();
                let attempts = i32::try_from(u.attempts).unwrap_or(i32::MAX);
                let warned = i32::try_from(u.warned).unwrap_or(i32::MAX);
                let reply = u.last_reply.as_deref().map(text);
                let rows = tx
                    .query(
                        update,
                        &[
                            &u.id,
                            &pos(u.position),
                            &state,
                            &attempts,
                            &u.next_attempt,
                            &reply,
                            &warned,
                            &self.node,
                            &u.lease_token,
                        ],
                    )
                    .await?;
                if let Some(r) = rows.first() {
                    return Ok::<_, tokio_postgres::Error>(Some(r.get::<_, i64>(0)));
                }
                let rows = tx
                    .query(
                        unlease,
                        &[&u.id, &pos(u.position), &self.node, &u.lease_token],
                    )
                    .await?;
                if rows.is_empty() {
                    tracing::info!(id = %u.id, position = u.position,
                        "an outcome came after its claim passed to another delivery: not recorded");
                }
                Ok(rows.first().map(|r| r.get::<_, i64>(0)))
            }
        }))
        .await?;
        let mut seqs: Vec<i64> = done.into_iter().flatten().collect();
        seqs.sort_unstable();
        seqs.dedup();
        finish_done(&txn, &seqs).await?;
        txn.commit().await?;
        Ok(())
    }

    pub(super) async fn queue_act(
        &self,
        id: Option<&str>,
        action: QueueAction,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        // The messages first (as an outcome does), and only those: a
        // message committed meanwhile is left alone.
        let locked: Vec<i64> = tx
            .query(
                "SELECT m.seq FROM messages m WHERE ($1::text IS NULL OR m.id = $1)
                   AND EXISTS (SELECT 1 FROM queue q WHERE q.message_seq = m.seq)
                 ORDER BY m.seq FOR UPDATE",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let scope = "message_seq = ANY($1)";
        let sql = match action {
            QueueAction::Retry => format!(
                "UPDATE queue SET state = CASE state WHEN 'held' THEN 'queued' ELSE state END,
                 next_attempt = $2 WHERE state IN ('queued', 'deferred', 'held') AND {scope}"
            ),
            QueueAction::Hold => format!(
                "UPDATE queue SET state = 'held' WHERE state IN {WAITING} AND {scope} AND $2::int8 IS NOT NULL"
            ),
            QueueAction::Release => format!(
                "UPDATE queue SET state = 'queued', next_attempt = $2 WHERE state = 'held' AND {scope}"
            ),
            QueueAction::Delete => format!(
                "UPDATE queue SET state = 'failed', last_reply = 'deleted by the operator'
                 WHERE state IN ('queued', 'deferred', 'held') AND {scope} AND $2::int8 IS NOT NULL"
            ),
            // A worker returns it with a notice at its next look.
            QueueAction::Bounce => format!(
                "UPDATE queue SET bounce = true, next_attempt = $2,
                 state = CASE state WHEN 'held' THEN 'queued' ELSE state END
                 WHERE state IN ('queued', 'deferred', 'held') AND {scope}"
            ),
        };
        let n = tx.execute(&sql, &[&locked, &now]).await?;
        if action == QueueAction::Delete {
            finish_done(&tx, &locked).await?;
        }
        tx.commit().await?;
        if action != QueueAction::Hold {
            self.announce(&client, 'Q', Vec::new()).await;
        }
        Ok(n)
    }
}

/// Locks these messages' rows, in `seq` order (the callers' transaction
/// may hold them already).
pub(super) async fn lock_messages(tx: &impl GenericClient, seqs: &[i64]) -> Result<(), StoreError> {
    tx.execute(
        "SELECT 1 FROM messages WHERE seq = ANY($1) ORDER BY seq FOR UPDATE",
        &[&seqs],
    )
    .await?;
    Ok(())
}

fn pos(position: u32) -> i32 {
    i32::try_from(position).unwrap_or(i32::MAX)
}

/// Messages whose queue rows are all done leave the queue: their rows go,
/// and so does the message (with its blob) unless it is kept in the inbox.
async fn finish_done(tx: &impl GenericClient, seqs: &[i64]) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    lock_messages(tx, seqs).await?;
    tx.execute(
        "DELETE FROM queue q WHERE q.message_seq = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM queue p WHERE p.message_seq = q.message_seq
                           AND p.state NOT IN ('delivered', 'failed'))",
        &[&seqs],
    )
    .await?;
    let gone: Vec<String> = tx
        .query(
            "DELETE FROM messages m WHERE m.seq = ANY($1) AND NOT m.local
               AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.message_seq = m.seq)
             RETURNING m.id, m.apart",
            &[&seqs],
        )
        .await?
        .iter()
        .filter(|r| r.get::<_, i64>(1) > 0)
        .map(|r| r.get(0))
        .collect();
    blobs::delete(tx, &gone).await
}
