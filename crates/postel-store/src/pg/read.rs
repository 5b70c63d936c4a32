//! Rows back into summaries and queue entries.

use tokio_postgres::Row;

use crate::{Envelope, QueueEntry, QueueState, Recipient, Summary};

/// The columns a summary is read from (`messages m`), recipients included.
pub(super) const SUMMARY: &str = "m.seq, m.id, m.received_at, m.client_addr, m.helo, m.protocol,
    m.tls, m.auth_user, m.mail_from, m.mail_params, m.subject, m.size, m.checks,
    ARRAY(SELECT r.address FROM recipients r WHERE r.message_seq = m.seq ORDER BY r.position),
    ARRAY(SELECT r.params FROM recipients r WHERE r.message_seq = m.seq ORDER BY r.position)";

/// The index of the first column after [`SUMMARY`] (`raw`, then `apart`,
/// where a query asks for them).
pub(super) const RAW: usize = 15;

pub(super) fn split_params(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn summary(row: &Row) -> Summary {
    let addresses: Vec<String> = row.get(13);
    let params: Vec<String> = row.get(14);
    let recipients = addresses
        .into_iter()
        .zip(params)
        .map(|(address, p)| Recipient {
            address,
            params: split_params(&p),
        })
        .collect();
    Summary {
        id: row.get(1),
        received_at: row.get(2),
        envelope: Envelope {
            client_addr: row.get(3),
            helo: row.get(4),
            protocol: row.get(5),
            tls: row.get(6),
            auth_user: row.get(7),
            mail_from: row.get(8),
            mail_params: split_params(row.get(9)),
            recipients,
            checks: row
                .get::<_, Option<&str>>(12)
                .and_then(crate::Checks::from_text),
        },
        subject: row.get(10),
        size: u64::try_from(row.get::<_, i64>(11)).unwrap_or(0),
    }
}

/// The columns a queue entry is read from (`queue q`, `messages m`,
/// `recipients r`).
pub(super) const ENTRY: &str = "m.id, q.position, r.address, r.params, m.mail_from,
    m.mail_params, m.auth_user, m.client_addr, m.received_at, m.size, q.state, q.attempts,
    q.next_attempt, q.last_reply, q.warned, q.leased_until, q.bounce, q.lease_token";

/// The joins under [`ENTRY`].
pub(super) const ENTRY_FROM: &str = "queue q JOIN messages m ON m.seq = q.message_seq
    JOIN recipients r ON r.message_seq = q.message_seq AND r.position = q.position";

pub(super) fn entry(row: &Row) -> QueueEntry {
    let state: &str = row.get(10);
    QueueEntry {
        id: row.get(0),
        position: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
        recipient: row.get(2),
        rcpt_params: split_params(row.get(3)),
        mail_from: row.get(4),
        mail_params: split_params(row.get(5)),
        auth_user: row.get(6),
        client_addr: row.get(7),
        received_at: row.get(8),
        size: u64::try_from(row.get::<_, i64>(9)).unwrap_or(0),
        // A state this version does not know is left alone: held.
        state: QueueState::parse(state).unwrap_or(QueueState::Held),
        attempts: u32::try_from(row.get::<_, i32>(11)).unwrap_or(0),
        next_attempt: row.get(12),
        last_reply: row.get(13),
        warned: u32::try_from(row.get::<_, i32>(14)).unwrap_or(0),
        leased_until: row.get(15),
        bounce: row.get(16),
        lease_token: row.get(17),
    }
}
