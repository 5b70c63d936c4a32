//! The delivery queue's rows: due ones for the worker, all of them for the
//! operator, outcomes recorded, and the operator's actions.

use super::*;

const ENTRY_QUERY: &str =
    "SELECT m.id, q.position, r.address, r.params, m.mail_from, m.mail_params,
        m.auth_user, m.client_addr, m.received_at, m.size, q.state, q.attempts, q.next_attempt,
        q.last_reply, q.warned
     FROM queue q JOIN messages m ON m.seq = q.message_seq
     JOIN recipients r ON r.message_seq = q.message_seq AND r.position = q.position";

fn read_entry(row: &rusqlite::Row<'_>) -> Result<QueueEntry, rusqlite::Error> {
    let state: String = row.get(10)?;
    Ok(QueueEntry {
        id: row.get(0)?,
        position: row.get(1)?,
        recipient: row.get(2)?,
        rcpt_params: split_params(row.get(3)?),
        mail_from: row.get(4)?,
        mail_params: split_params(row.get(5)?),
        auth_user: row.get(6)?,
        client_addr: row.get(7)?,
        received_at: row.get(8)?,
        size: row.get::<_, i64>(9)? as u64,
        // A state this version does not know is left alone: held.
        state: QueueState::parse(&state).unwrap_or(QueueState::Held),
        attempts: row.get(11)?,
        next_attempt: row.get(12)?,
        last_reply: row.get(13)?,
        warned: row.get(14)?,
    })
}

impl SqliteStore {
    /// [`Store::queue_due`], blocking.
    ///
    /// # Errors
    /// As the trait's.
    pub fn queue_due(&self, now: i64, limit: usize) -> Result<Vec<QueueEntry>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(&format!(
            "{ENTRY_QUERY} WHERE q.state IN ('queued', 'deferred') AND q.next_attempt <= ?1
             ORDER BY q.next_attempt, q.message_seq, q.position LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(stmt
            .query_map(params![now, limit], read_entry)?
            .collect::<Result<_, _>>()?)
    }

    /// [`Store::queue_list`], blocking.
    ///
    /// # Errors
    /// As the trait's.
    pub fn queue_list(&self) -> Result<Vec<QueueEntry>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt =
            conn.prepare_cached(&format!("{ENTRY_QUERY} ORDER BY q.message_seq, q.position"))?;
        Ok(stmt.query_map([], read_entry)?.collect::<Result<_, _>>()?)
    }

    /// [`Store::queue_record`], blocking.
    ///
    /// # Errors
    /// As the trait's.
    pub fn queue_record(&self, updates: &[QueueUpdate]) -> Result<(), StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut seqs = Vec::new();
        {
            let mut seq_of = tx.prepare_cached("SELECT seq FROM messages WHERE id = ?1")?;
            let mut update = tx.prepare_cached(
                "UPDATE queue SET state = ?3, attempts = ?4, next_attempt = ?5, last_reply = ?6,
                 warned = ?7 WHERE message_seq = ?1 AND position = ?2",
            )?;
            for u in updates {
                let Some(seq) = seq_of
                    .query_row([&u.id], |r| r.get::<_, i64>(0))
                    .optional()?
                else {
                    continue;
                };
                update.execute(params![
                    seq,
                    u.position,
                    u.state.as_str(),
                    u.attempts,
                    u.next_attempt,
                    u.last_reply,
                    u.warned
                ])?;
                if !seqs.contains(&(seq, u.id.as_str())) {
                    seqs.push((seq, u.id.as_str()));
                }
            }
        }
        let mut removed = Vec::new();
        for (seq, id) in seqs {
            if let Some(id) = finish_if_done(&tx, seq, id)? {
                removed.push(id);
            }
        }
        tx.commit()?;
        drop(conn);
        self.remove_blobs(removed);
        Ok(())
    }

    /// [`Store::queue_act`], blocking.
    ///
    /// # Errors
    /// As the trait's.
    pub fn queue_act(
        &self,
        id: Option<&str>,
        action: QueueAction,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let scope = "(?1 IS NULL OR message_seq = (SELECT seq FROM messages WHERE id = ?1))";
        let sql = match action {
            QueueAction::Retry => format!(
                "UPDATE queue SET state = CASE state WHEN 'held' THEN 'queued' ELSE state END,
                 next_attempt = ?2 WHERE state IN ('queued', 'deferred', 'held') AND {scope}"
            ),
            QueueAction::Hold => format!(
                "UPDATE queue SET state = 'held' WHERE state IN ('queued', 'deferred') AND {scope} AND ?2 = ?2"
            ),
            QueueAction::Release => format!(
                "UPDATE queue SET state = 'queued', next_attempt = ?2 WHERE state = 'held' AND {scope}"
            ),
            QueueAction::Delete => format!(
                "UPDATE queue SET state = 'failed', last_reply = 'deleted by the operator'
                 WHERE state IN ('queued', 'deferred', 'held') AND {scope} AND ?2 = ?2"
            ),
        };
        let n = tx.execute(&sql, params![id, now])?;
        let mut removed = Vec::new();
        if action == QueueAction::Delete {
            let rows: Vec<(i64, String)> = tx
                .prepare(&format!(
                    "SELECT DISTINCT q.message_seq, m.id FROM queue q JOIN messages m ON m.seq = q.message_seq
                     WHERE {}",
                    scope.replace("message_seq", "q.message_seq")
                ))?
                .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (seq, id) in &rows {
                if let Some(id) = finish_if_done(&tx, *seq, id)? {
                    removed.push(id.to_owned());
                }
            }
        }
        tx.commit()?;
        drop(conn);
        self.remove_blobs(removed.iter().map(String::as_str));
        Ok(n as u64)
    }
}

/// A message whose queue rows are all done leaves the queue: its rows go,
/// and so does the message unless it is kept in the inbox. Returns the id
/// when the message (and so its body file, if any) is gone.
fn finish_if_done<'a>(
    tx: &Connection,
    seq: i64,
    id: &'a str,
) -> Result<Option<&'a str>, rusqlite::Error> {
    let pending = tx
        .prepare_cached(
            "SELECT 1 FROM queue WHERE message_seq = ?1 AND state NOT IN ('delivered', 'failed')",
        )?
        .exists([seq])?;
    if pending {
        return Ok(None);
    }
    tx.prepare_cached("DELETE FROM queue WHERE message_seq = ?1")?
        .execute([seq])?;
    let local: bool = tx
        .prepare_cached("SELECT local FROM messages WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()?
        .unwrap_or(true);
    if local {
        return Ok(None);
    }
    tx.prepare_cached("DELETE FROM recipients WHERE message_seq = ?1")?
        .execute([seq])?;
    tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
        .execute([seq])?;
    Ok(Some(id))
}
