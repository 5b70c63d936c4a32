//! Whole messages in and out, for `postel store migrate`: written as they
//! were (queue rows keep their state, without their leases), and read back
//! to be compared.

use deadpool_postgres::Transaction;
use futures_util::future::try_join_all;

use super::read::{RAW, SUMMARY, summary};
use super::*;
use crate::migrate::{Exported, ExportedRow, ExportedUser};
use crate::{WebhookEntry, WebhookState};

impl PgStore {
    /// Writes these messages in one transaction; one already there (by id)
    /// is left as it is. Returns how many were written.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn import_messages(&self, batch: &[Exported]) -> Result<u64, StoreError> {
        let mut client = get(&self.pool).await?;
        let txn = client.transaction().await?;
        let now = unix_now();
        // Two waves, each sent at once (the connection pipelines them): the
        // messages, then everything that names them.
        let tx = &txn;
        let seqs = try_join_all(batch.iter().map(|m| insert_message(tx, m))).await?;
        let mut rows = Vec::new();
        for (m, seq) in batch.iter().zip(&seqs) {
            if let Some(seq) = seq {
                rows.push(insert_rows(tx, m, *seq, now));
            }
        }
        let copied = rows.len() as u64;
        try_join_all(rows).await?;
        txn.commit().await?;
        Ok(copied)
    }

    /// Writes users (replacing any of the same name), with their addresses.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn import_users(&self, users: &[ExportedUser]) -> Result<(), StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        for (name, hash, created, scram, addresses) in users {
            tx.execute(
                "INSERT INTO users (name, hash, created_at, scram) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash,
                     created_at = excluded.created_at, scram = excluded.scram",
                &[&text(name), hash, created, scram],
            )
            .await?;
            tx.execute("DELETE FROM user_addresses WHERE name = $1", &[&text(name)])
                .await?;
            for a in addresses {
                tx.execute(
                    "INSERT INTO user_addresses (name, address) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&text(name), &text(a)],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` messages stored after the one numbered `after` (0: from
    /// the first), in that order, each whole, with its queue and webhook
    /// rows; and the number of the last.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn export_messages(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Exported>, i64), StoreError> {
        let client = get(&self.pool).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT {SUMMARY}, m.raw, m.apart, m.local FROM messages m
                     WHERE m.seq > $1 ORDER BY m.seq LIMIT $2"
                ),
                &[&after, &limit],
            )
            .await?;
        // No more than a batch's worth of content (but one message).
        let mut bytes = 0u64;
        let n = rows
            .iter()
            .take_while(|r| {
                bytes += u64::try_from(r.get::<_, i64>("size")).unwrap_or(0);
                bytes <= crate::migrate::BATCH_BYTES
            })
            .count()
            .max(1);
        let rows = &rows[..n.min(rows.len())];
        let last = rows.last().map_or(after, |r| r.get::<_, i64>(0));
        // Each message's rows asked for at once (pipelined).
        let client = &client;
        let batch = try_join_all(rows.iter().map(|row| complete(client, row))).await?;
        Ok((batch, last))
    }

    /// Every user, by name (bytewise), with its addresses.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn export_users(&self) -> Result<Vec<ExportedUser>, StoreError> {
        let client = get(&self.pool).await?;
        let rows = client
            .query(
                "SELECT u.name, u.hash, u.created_at, u.scram,
                     ARRAY(SELECT a.address FROM user_addresses a WHERE a.name = u.name
                           ORDER BY a.address COLLATE \"C\")
                 FROM users u ORDER BY u.name COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect())
    }
}

/// Inserts one message's row (its first [`crate::SPILL_AT`] octets); None
/// when a message of that id is there already.
async fn insert_message(tx: &Transaction<'_>, m: &Exported) -> Result<Option<i64>, StoreError> {
    let s = &m.summary;
    let e = &s.envelope;
    let cut = m.raw.len().min(crate::SPILL_AT);
    let head = &m.raw[..cut];
    let apart = i64::try_from(m.raw.len() - cut).unwrap_or(i64::MAX);
    let size = i64::try_from(m.raw.len()).unwrap_or(i64::MAX);
    let row = tx
        .query_opt(
            "INSERT INTO messages (id, received_at, client_addr, helo, protocol, tls,
                 auth_user, mail_from, mail_params, subject, size, raw, apart, local,
                 checks, node)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                 'migrated')
             ON CONFLICT (id) DO NOTHING RETURNING seq",
            &[
                &s.id,
                &s.received_at,
                &text(&e.client_addr),
                &text(&e.helo),
                &text(&e.protocol),
                &e.tls.as_deref().map(text),
                &e.auth_user.as_deref().map(text),
                &text(&e.mail_from),
                &text(&e.mail_params.join(" ")),
                &s.subject.as_deref().map(text),
                &size,
                &head,
                &apart,
                &m.local,
                &e.checks.as_ref().map(crate::Checks::to_text),
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Inserts what names message `seq`: recipients, queue rows, webhook rows
/// and the rest of its content.
async fn insert_rows(
    tx: &Transaction<'_>,
    m: &Exported,
    seq: i64,
    now: i64,
) -> Result<(), StoreError> {
    let e = &m.summary.envelope;
    for (i, r) in e.recipients.iter().enumerate() {
        tx.execute(
            "INSERT INTO recipients (message_seq, position, address, params)
             VALUES ($1, $2, $3, $4)",
            &[
                &seq,
                &i32::try_from(i).unwrap_or(i32::MAX),
                &text(&r.address),
                &text(&r.params.join(" ")),
            ],
        )
        .await?;
    }
    for q in &m.queue {
        let domain = e
            .recipients
            .get(q.position as usize)
            .map(|r| crate::queue::domain_of(&r.address))
            .unwrap_or_default();
        tx.execute(
            "INSERT INTO queue (message_seq, position, state, attempts, next_attempt,
                 last_reply, warned, bounce, domain)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &seq,
                &i32::try_from(q.position).unwrap_or(i32::MAX),
                &q.state,
                &i32::try_from(q.attempts).unwrap_or(i32::MAX),
                &q.next_attempt,
                &q.last_reply.as_deref().map(text),
                &i32::try_from(q.warned).unwrap_or(i32::MAX),
                &q.bounce,
                &text(&domain),
            ],
        )
        .await?;
    }
    for w in &m.webhooks {
        tx.execute(
            "INSERT INTO webhooks (message_seq, hook, state, attempts, next_attempt,
                 last_status) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &seq,
                &text(&w.hook),
                &w.state.as_str(),
                &i32::try_from(w.attempts).unwrap_or(i32::MAX),
                &w.next_attempt,
                &w.last_status.as_deref().map(text),
            ],
        )
        .await?;
    }
    let cut = m.raw.len().min(crate::SPILL_AT);
    blobs::put_bytes(tx, &m.summary.id, &m.raw[cut..], now).await
}

/// A message row made whole: its content, queue rows and webhook rows.
async fn complete(
    client: &deadpool_postgres::Object,
    row: &tokio_postgres::Row,
) -> Result<Exported, StoreError> {
    let seq: i64 = row.get(0);
    let summary = summary(row);
    let mut raw: Vec<u8> = row.get(RAW);
    let apart = u64::try_from(row.get::<_, i64>(RAW + 1)).unwrap_or(0);
    if apart > 0 {
        raw.extend(blobs::read_all(client, &summary.id, apart).await?);
    }
    let queue = client
        .query(
            "SELECT position, state, attempts, next_attempt, last_reply, warned, bounce
                 FROM queue WHERE message_seq = $1 ORDER BY position",
            &[&seq],
        )
        .await?
        .iter()
        .map(|r| ExportedRow {
            position: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
            state: r.get(1),
            attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
            next_attempt: r.get(3),
            last_reply: r.get(4),
            warned: u32::try_from(r.get::<_, i32>(5)).unwrap_or(0),
            bounce: r.get(6),
        })
        .collect();
    let webhooks = client
        .query(
            "SELECT hook, state, attempts, next_attempt, last_status
                 FROM webhooks WHERE message_seq = $1 ORDER BY hook COLLATE \"C\"",
            &[&seq],
        )
        .await?
        .iter()
        .map(|r| WebhookEntry {
            id: summary.id.clone(),
            hook: r.get(0),
            state: WebhookState::parse(r.get(1)).unwrap_or(WebhookState::Failed),
            attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
            next_attempt: r.get(3),
            last_status: r.get(4),
            received_at: summary.received_at,
        })
        .collect();
    Ok(Exported {
        local: row.get(RAW + 2),
        summary,
        raw,
        queue,
        webhooks,
    })
}
