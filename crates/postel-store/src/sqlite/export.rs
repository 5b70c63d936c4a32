//! Everything in the store, read out for `postel store migrate`.

use super::*;
use crate::migrate::{Exported, ExportedRow, ExportedUser};
use crate::{Users, WebhookEntry, WebhookState};

impl SqliteStore {
    /// Up to `limit` messages whose ids sort after `after`, in id order,
    /// each whole, with its queue and webhook rows, and no more than
    /// [`crate::migrate::BATCH_BYTES`] of content (but one). Blocking.
    ///
    /// # Errors
    /// When the database or a content file cannot be read.
    pub fn export_messages(&self, after: &str, limit: usize) -> Result<Vec<Exported>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, raw, apart, local FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Summary, Vec<u8>, u64, bool)> = stmt
            .query_map(params![after, limit], |row| {
                Ok((
                    row.get(0)?,
                    read_summary(&conn, row)?,
                    row.get(RAW_COLUMN)?,
                    row.get::<_, i64>(RAW_COLUMN + 1)? as u64,
                    row.get(RAW_COLUMN + 2)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut queue = conn.prepare_cached(
            "SELECT position, state, attempts, next_attempt, last_reply, warned, bounce
             FROM queue WHERE message_seq = ?1 ORDER BY position",
        )?;
        let mut hooks = conn.prepare_cached(
            "SELECT hook, state, attempts, next_attempt, last_status
             FROM webhooks WHERE message_seq = ?1 ORDER BY hook",
        )?;
        let mut out = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for (seq, summary, mut raw, apart, local) in rows {
            bytes += raw.len() as u64 + apart;
            if !out.is_empty() && bytes > crate::migrate::BATCH_BYTES {
                break;
            }
            if apart > 0 {
                let rest = std::fs::read(self.blob_path(&summary.id))?;
                if rest.len() as u64 != apart {
                    return Err(StoreError::ContentLost {
                        id: summary.id.clone(),
                        why: format!("its file has {} octets, not {apart}", rest.len()),
                    });
                }
                raw.extend_from_slice(&rest);
            }
            let queue_rows = queue
                .query_map([seq], |r| {
                    Ok(ExportedRow {
                        position: r.get(0)?,
                        state: r.get(1)?,
                        attempts: r.get(2)?,
                        next_attempt: r.get(3)?,
                        last_reply: r.get(4)?,
                        warned: r.get(5)?,
                        bounce: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let webhooks = hooks
                .query_map([seq], |r| {
                    let state: String = r.get(1)?;
                    Ok(WebhookEntry {
                        id: summary.id.clone(),
                        hook: r.get(0)?,
                        state: WebhookState::parse(&state).unwrap_or(WebhookState::Failed),
                        attempts: r.get(2)?,
                        next_attempt: r.get(3)?,
                        last_status: r.get(4)?,
                        received_at: summary.received_at,
                    })
                })?
                .collect::<Result<_, _>>()?;
            out.push(Exported {
                summary,
                raw,
                local,
                queue: queue_rows,
                webhooks,
            });
        }
        Ok(out)
    }

    /// Every user, by name. Blocking.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn export_users(&self) -> Result<Vec<ExportedUser>, StoreError> {
        let mut out = Vec::new();
        for (name, created) in self.users()? {
            let hash = self.user_hash(&name)?.unwrap_or_default();
            let scram = self.user_scram(&name)?;
            let addresses = self.user_addresses(&name)?;
            out.push((name, hash, created, scram, addresses));
        }
        Ok(out)
    }
}
