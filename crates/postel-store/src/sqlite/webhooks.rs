//! The webhook outbox's rows: claimed by moving their due time (a claim
//! that is never recorded comes due again), outcomes recorded, listed for
//! the API.

use super::*;
use crate::{WebhookEntry, WebhookState, WebhookUpdate};

const ENTRY_QUERY: &str = "SELECT m.id, w.hook, w.state, w.attempts, w.next_attempt,
        w.last_status, m.received_at, w.message_seq
     FROM webhooks w JOIN messages m ON m.seq = w.message_seq";

fn read_entry(row: &rusqlite::Row<'_>) -> Result<(WebhookEntry, i64), rusqlite::Error> {
    let state: String = row.get(2)?;
    Ok((
        WebhookEntry {
            id: row.get(0)?,
            hook: row.get(1)?,
            state: WebhookState::parse(&state).unwrap_or(WebhookState::Failed),
            attempts: row.get(3)?,
            next_attempt: row.get(4)?,
            last_status: row.get(5)?,
            received_at: row.get(6)?,
        },
        row.get(7)?,
    ))
}

impl SqliteStore {
    /// See [`Store::webhook_claim`].
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn webhook_claim(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<WebhookEntry>, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<(WebhookEntry, i64)> = {
            let mut stmt = tx.prepare_cached(&format!(
                "{ENTRY_QUERY} WHERE w.state = 'pending' AND w.next_attempt <= ?1
                 ORDER BY w.next_attempt, w.message_seq LIMIT ?2"
            ))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            stmt.query_map(params![now, limit], read_entry)?
                .collect::<Result<_, _>>()?
        };
        {
            let mut claim = tx.prepare_cached(
                "UPDATE webhooks SET next_attempt = ?3 WHERE message_seq = ?1 AND hook = ?2",
            )?;
            for (e, seq) in &rows {
                claim.execute(params![seq, e.hook, until])?;
            }
        }
        tx.commit()?;
        Ok(rows.into_iter().map(|(e, _)| e).collect())
    }

    /// See [`Store::webhook_record`].
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn webhook_record(&self, updates: &[WebhookUpdate]) -> Result<(), StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE webhooks SET state = ?3, attempts = ?4, next_attempt = ?5, last_status = ?6
                 WHERE hook = ?2 AND message_seq = (SELECT seq FROM messages WHERE id = ?1)",
            )?;
            for u in updates {
                stmt.execute(params![
                    u.id,
                    u.hook,
                    u.state.as_str(),
                    u.attempts,
                    u.next_attempt,
                    u.last_status
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// See [`Store::webhook_list`].
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn webhook_list(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookEntry>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(&format!(
            "{ENTRY_QUERY} WHERE (?1 IS NULL OR m.id = ?1)
             ORDER BY w.message_seq DESC, w.hook LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![id, limit], read_entry)?
            .map(|r| r.map(|(e, _)| e))
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
