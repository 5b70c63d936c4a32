//! Reading rows back: summaries, search patterns, and the deletes that
//! share their helpers.

use super::*;

pub(super) use crate::message::contains_pattern;

/// Takes the messages with these sequence numbers out of the inbox: a
/// message that still has recipients to send on keeps its body (and leaves
/// when its queue is done); any other is deleted with its recipients and
/// finished queue rows. Returns true per seq whose body is gone (its file,
/// if any, is the caller's to remove).
pub(super) fn delete_seqs(conn: &Connection, seqs: &[i64]) -> Result<Vec<bool>, rusqlite::Error> {
    let mut active = conn.prepare_cached(
        "SELECT 1 FROM queue WHERE message_seq = ?1 AND state IN ('queued', 'deferred', 'held')",
    )?;
    let mut hide = conn.prepare_cached("UPDATE messages SET local = 0 WHERE seq = ?1")?;
    let mut rcpts = conn.prepare_cached("DELETE FROM recipients WHERE message_seq = ?1")?;
    let mut queue = conn.prepare_cached("DELETE FROM queue WHERE message_seq = ?1")?;
    let mut msgs = conn.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
    let mut hooks = conn.prepare_cached("DELETE FROM webhooks WHERE message_seq = ?1")?;
    let mut gone = Vec::with_capacity(seqs.len());
    for seq in seqs {
        if active.exists([seq])? {
            // Out of the inbox: not posted any more either.
            hooks.execute([seq])?;
            hide.execute([seq])?;
            gone.push(false);
        } else {
            rcpts.execute([seq])?;
            queue.execute([seq])?;
            hooks.execute([seq])?;
            msgs.execute([seq])?;
            gone.push(true);
        }
    }
    Ok(gone)
}

pub(super) const SUMMARY_COLUMNS: &str = "seq, id, received_at, client_addr, helo, protocol, tls, auth_user, mail_from, mail_params, subject, size, checks";

/// The index of the first column after [`SUMMARY_COLUMNS`] (`raw`, then
/// `apart`, where a query asks for them).
pub(super) const RAW_COLUMN: usize = 13;

pub(super) fn split_params(s: String) -> Vec<String> {
    s.split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn read_summary(
    conn: &Connection,
    row: &rusqlite::Row<'_>,
) -> Result<Summary, rusqlite::Error> {
    let seq: i64 = row.get(0)?;
    let mut stmt = conn.prepare_cached(
        "SELECT address, params FROM recipients WHERE message_seq = ?1 ORDER BY position",
    )?;
    let recipients = stmt
        .query_map([seq], |r| {
            Ok(Recipient {
                address: r.get(0)?,
                params: split_params(r.get(1)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Summary {
        id: row.get(1)?,
        received_at: row.get(2)?,
        envelope: Envelope {
            client_addr: row.get(3)?,
            helo: row.get(4)?,
            protocol: row.get(5)?,
            tls: row.get(6)?,
            auth_user: row.get(7)?,
            mail_from: row.get(8)?,
            mail_params: split_params(row.get(9)?),
            recipients,
            checks: row
                .get::<_, Option<String>>(12)?
                .as_deref()
                .and_then(crate::Checks::from_text),
        },
        subject: row.get(10)?,
        size: row.get::<_, i64>(11)? as u64,
    })
}
