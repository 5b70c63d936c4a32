//! The delivery queue's rows: claims for the worker, all of them for the
//! operator, outcomes recorded (by the writer thread, in the group commit
//! beside new messages), and the operator's actions.

use super::*;

const ENTRY_QUERY: &str =
    "SELECT m.id, q.position, r.address, r.params, m.mail_from, m.mail_params,
        m.auth_user, m.client_addr, m.received_at, m.size, q.state, q.attempts, q.next_attempt,
        q.last_reply, q.warned, q.leased_until, q.bounce, q.message_seq
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
        leased_until: row.get(15)?,
        bounce: row.get(16)?,
        lease_token: 0,
    })
}

/// Applies outcomes inside the caller's transaction (the writer's batch).
/// Returns the ids of messages that left the store with their queue.
pub(super) fn record(tx: &Connection, updates: &[QueueUpdate]) -> Result<Vec<String>, StoreError> {
    let mut seqs: Vec<(i64, &str)> = Vec::new();
    {
        let mut seq_of = tx.prepare_cached("SELECT seq FROM messages WHERE id = ?1")?;
        // A deferral only where no operator changed the row meanwhile; a
        // delivery or a failure whatever happened (it did happen).
        let mut update = tx.prepare_cached(
            "UPDATE queue SET state = ?3, attempts = ?4, next_attempt = ?5, last_reply = ?6,
             warned = ?7, leased_until = NULL
             WHERE message_seq = ?1 AND position = ?2
               AND (?3 IN ('delivered', 'failed') OR state IN ('queued', 'deferred'))",
        )?;
        let mut unlease = tx.prepare_cached(
            "UPDATE queue SET leased_until = NULL WHERE message_seq = ?1 AND position = ?2",
        )?;
        for u in updates {
            let Some(seq) = seq_of
                .query_row([&u.id], |r| r.get::<_, i64>(0))
                .optional()?
            else {
                continue;
            };
            let n = update.execute(params![
                seq,
                u.position,
                u.state.as_str(),
                u.attempts,
                u.next_attempt,
                u.last_reply,
                u.warned
            ])?;
            if n == 0 {
                unlease.execute(params![seq, u.position])?;
            }
            if !seqs.iter().any(|(s, _)| *s == seq) {
                seqs.push((seq, u.id.as_str()));
            }
        }
    }
    let mut removed = Vec::new();
    for (seq, id) in seqs {
        if let Some(id) = finish_if_done(tx, seq, id)? {
            removed.push(id.to_owned());
        }
    }
    Ok(removed)
}

impl SqliteStore {
    /// [`Store::queue_claim`], blocking. The claim is committed without an
    /// fsync of its own: a claim lost in a crash is released at the next
    /// start anyway.
    ///
    /// # Errors
    /// As the trait's.
    pub fn queue_claim(&self, c: &QueueClaim) -> Result<Vec<QueueEntry>, StoreError> {
        let mut conn = lock(&self.reader);
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let claimed = (|| -> Result<Vec<QueueEntry>, StoreError> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let skip: String = (0..c.skip.len())
                .map(|i| format!("?{}", i + 5))
                .collect::<Vec<_>>()
                .join(", ");
            let mut rows: Vec<(QueueEntry, i64)> = {
                // Due rows, numbered within their domain: at most
                // per_domain of each, so that no domain fills the claim.
                // Cached by its text: one entry per length of `skip`.
                let mut stmt = tx.prepare_cached(&format!(
                    "{} WHERE q.rn <= ?3 ORDER BY q.next_attempt, q.message_seq, q.position LIMIT ?2",
                    ENTRY_QUERY.replace(
                        "FROM queue q",
                        "FROM (SELECT *, row_number() OVER (PARTITION BY domain
                                   ORDER BY next_attempt, message_seq, position) AS rn
                               FROM queue
                               WHERE state IN ('queued', 'deferred') AND next_attempt <= ?1
                                 AND (leased_until IS NULL OR leased_until <= ?1)
                                 AND (?4 IS NULL OR domain = ?4)
                                 AND domain NOT IN ({skip})) q"
                            .replace("{skip}", &skip)
                            .as_str()
                    )
                ))?;
                let limit = i64::try_from(c.limit).unwrap_or(i64::MAX);
                let per = i64::try_from(c.per_domain).unwrap_or(i64::MAX);
                let only = c
                    .only
                    .clone()
                    .map_or(rusqlite::types::Value::Null, rusqlite::types::Value::from);
                let mut args: Vec<rusqlite::types::Value> =
                    vec![c.now.into(), limit.into(), per.into(), only];
                args.extend(
                    c.skip
                        .iter()
                        .map(|d| rusqlite::types::Value::from(d.clone())),
                );
                stmt.query_map(rusqlite::params_from_iter(args.iter()), |row| {
                    Ok((read_entry(row)?, row.get::<_, i64>(17)?))
                })?
                .collect::<Result<_, _>>()?
            };
            {
                let mut lease = tx.prepare_cached(
                    "UPDATE queue SET leased_until = ?3 WHERE message_seq = ?1 AND position = ?2",
                )?;
                for (e, seq) in &mut rows {
                    lease.execute(params![*seq, e.position, c.until])?;
                    e.leased_until = Some(c.until);
                }
            }
            tx.commit()?;
            Ok(rows.into_iter().map(|(e, _)| e).collect())
        })();
        conn.pragma_update(None, "synchronous", "FULL")?;
        claimed
    }

    /// [`Store::queue_release_claims`], blocking.
    ///
    /// # Errors
    /// As the trait's.
    pub fn queue_release_claims(&self) -> Result<(), StoreError> {
        lock(&self.reader).execute(
            "UPDATE queue SET leased_until = NULL WHERE leased_until IS NOT NULL",
            [],
        )?;
        Ok(())
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

    /// [`Store::queue_counts`], blocking.
    ///
    /// # Errors
    /// As the trait's.
    pub fn queue_counts(&self) -> Result<Vec<(QueueState, u64)>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM queue GROUP BY state")?;
        let rows: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((QueueState::parse(&s)?, n as u64)))
            .collect())
    }

    /// [`Store::queue_record`]: through the writer thread, in the group
    /// commit beside new messages; directly for a store without one.
    ///
    /// # Errors
    /// As the trait's.
    pub async fn queue_record(&self, updates: Vec<QueueUpdate>) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let job = Job::Record { updates, done };
        let unsent = match lock(&self.jobs).as_ref() {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        match unsent {
            None => wait.await.unwrap_or(Err(StoreError::Closed)),
            Some(Job::Record { updates, .. }) => self.queue_record_here(&updates),
            Some(Job::Insert { .. }) => Err(StoreError::Closed),
        }
    }

    /// Records outcomes on this store's own connection (no writer thread).
    fn queue_record_here(&self, updates: &[QueueUpdate]) -> Result<(), StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let removed = record(&tx, updates)?;
        tx.commit()?;
        drop(conn);
        self.remove_blobs(removed.iter().map(String::as_str));
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
            // The worker returns it with a notice at its next look.
            QueueAction::Bounce => format!(
                "UPDATE queue SET bounce = 1, next_attempt = ?2,
                 state = CASE state WHEN 'held' THEN 'queued' ELSE state END
                 WHERE state IN ('queued', 'deferred', 'held') AND {scope}"
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
    tx.prepare_cached("DELETE FROM webhooks WHERE message_seq = ?1")?
        .execute([seq])?;
    tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
        .execute([seq])?;
    Ok(Some(id))
}
