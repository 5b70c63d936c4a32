//! The webhook outbox on PostgreSQL: rows claimed by moving their due time
//! (`FOR UPDATE SKIP LOCKED`, so two nodes never take the same row), a
//! claim never recorded comes due again; outcomes recorded; listed.

use super::*;
use crate::{WebhookEntry, WebhookState, WebhookUpdate};

const ENTRY: &str = "m.id, w.hook, w.state, w.attempts, w.next_attempt, w.last_status,
    m.received_at";

fn entry(row: &tokio_postgres::Row) -> WebhookEntry {
    WebhookEntry {
        id: row.get(0),
        hook: row.get(1),
        state: WebhookState::parse(row.get(2)).unwrap_or(WebhookState::Failed),
        attempts: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
        next_attempt: row.get(4),
        last_status: row.get(5),
        received_at: row.get(6),
    }
}

impl PgStore {
    pub(super) async fn webhook_claim(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<WebhookEntry>, StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let keys = tx
            .query(
                "SELECT message_seq, hook FROM webhooks
                 WHERE state = 'pending' AND next_attempt <= $1
                 ORDER BY next_attempt, message_seq LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&now, &limit],
            )
            .await?;
        let seqs: Vec<i64> = keys.iter().map(|r| r.get(0)).collect();
        let hooks: Vec<String> = keys.iter().map(|r| r.get(1)).collect();
        // The entries as they were (due then), the rows claimed till later.
        let rows = tx
            .query(
                &format!(
                    "SELECT {ENTRY} FROM webhooks w JOIN messages m ON m.seq = w.message_seq
                     JOIN unnest($1::int8[], $2::text[]) AS k (s, h)
                       ON w.message_seq = k.s AND w.hook = k.h
                     ORDER BY w.next_attempt, w.message_seq"
                ),
                &[&seqs, &hooks],
            )
            .await?;
        tx.execute(
            "UPDATE webhooks w SET next_attempt = $3
             FROM unnest($1::int8[], $2::text[]) AS k (s, h)
             WHERE w.message_seq = k.s AND w.hook = k.h",
            &[&seqs, &hooks, &until],
        )
        .await?;
        tx.commit().await?;
        Ok(rows.iter().map(entry).collect())
    }

    pub(super) async fn webhook_record(&self, updates: &[WebhookUpdate]) -> Result<(), StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE webhooks SET state = $3, attempts = $4, next_attempt = $5, last_status = $6
                 WHERE hook = $2 AND message_seq = (SELECT seq FROM messages WHERE id = $1)",
            )
            .await?;
        for u in updates {
            let attempts = i32::try_from(u.attempts).unwrap_or(i32::MAX);
            let status = u.last_status.as_deref().map(text);
            tx.execute(
                &stmt,
                &[
                    &u.id,
                    &u.hook,
                    &u.state.as_str(),
                    &attempts,
                    &u.next_attempt,
                    &status,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn webhook_list(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookEntry>, StoreError> {
        let client = get(&self.pool).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT {ENTRY} FROM webhooks w JOIN messages m ON m.seq = w.message_seq
                     WHERE ($1::text IS NULL OR m.id = $1)
                     ORDER BY w.message_seq DESC, w.hook LIMIT $2"
                ),
                &[&id, &limit],
            )
            .await?;
        Ok(rows.iter().map(entry).collect())
    }
}
