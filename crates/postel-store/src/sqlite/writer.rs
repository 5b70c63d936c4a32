//! The group-commit writer: one thread takes every message (and every
//! record of delivery outcomes) waiting at that moment and commits them in
//! one transaction, one fsync for all.

use super::*;

/// The most messages committed in one transaction: enough to absorb any
/// burst of concurrent sessions, small enough to bound the batch's memory.
pub(super) const MAX_BATCH: usize = 512;

pub(super) fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    changes: tokio::sync::broadcast::Sender<Change>,
    blobs: PathBuf,
) {
    let blobs = &blobs;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        // Group commit: everything that arrived while the last commit was
        // fsyncing goes into this one.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (results, removed) = commit_batch(&mut conn, &batch, blobs);
        // Content files of messages that left the queue, once committed.
        for (dir, id) in removed {
            let _ = std::fs::remove_file(dir.join(id));
        }
        // Only build summaries when someone (the web inbox) is listening.
        let notify = changes.receiver_count() > 0;
        for (job, result) in batch.drain(..).zip(results) {
            match job {
                Job::Insert { msg, apart, done } => {
                    if notify && result.is_ok() && msg.local {
                        let _ = changes.send(Change::Stored(Box::new(summary_of(&msg, apart))));
                    }
                    let _ = done.send(result);
                }
                Job::Record { done, .. } => {
                    let _ = done.send(result);
                }
            }
        }
    }
}

/// The content files to remove once a batch is committed: the blob folder
/// and a message id.
type Removed<'a> = Vec<(&'a std::path::Path, String)>;

/// Commits a batch in one transaction; each job in its own savepoint, so
/// one bad message does not sink the others. Returns one result per job,
/// and the content files that committed records made obsolete.
pub(super) fn commit_batch<'a>(
    conn: &mut Connection,
    batch: &[Job],
    blobs: &'a std::path::Path,
) -> (Vec<Result<(), StoreError>>, Removed<'a>) {
    let mut removed = Vec::new();
    let mut run = |conn: &mut Connection| -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        // Savepoints by cached statements: parsing SAVEPOINT and RELEASE
        // for every message cost more than the insert.
        let step = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([]));
        let mut gone = Vec::new();
        for job in batch {
            step("SAVEPOINT message")?;
            let r = match job {
                Job::Insert { msg, apart, .. } => insert_one(&tx, msg, *apart),
                Job::Record { updates, .. } => {
                    super::queue::record(&tx, updates).map(|ids| gone.extend(ids))
                }
            };
            if r.is_err() {
                step("ROLLBACK TO message")?;
            }
            step("RELEASE message")?;
            results.push(r);
        }
        tx.commit()?;
        removed = gone.into_iter().map(|id| (blobs, id)).collect();
        Ok(results)
    };
    match run(conn) {
        Ok(results) => (results, removed),
        Err(e) => {
            tracing::error!(error = %e, messages = batch.len(), "store commit failed");
            let (message, transient) = (e.to_string(), e.is_transient());
            let results = batch
                .iter()
                .map(|_| {
                    Err(StoreError::Commit {
                        message: message.clone(),
                        transient,
                    })
                })
                .collect();
            (results, Vec::new())
        }
    }
}

pub(super) fn insert_one(conn: &Connection, m: &NewMessage, apart: u64) -> Result<(), StoreError> {
    let e = &m.envelope;
    conn.prepare_cached(
        "INSERT INTO messages (id, received_at, client_addr, helo, protocol, tls, auth_user, mail_from, mail_params, subject, size, raw, apart, local, checks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        m.id,
        m.received_at,
        e.client_addr,
        e.helo,
        e.protocol,
        e.tls,
        e.auth_user,
        e.mail_from,
        e.mail_params.join(" "),
        m.subject,
        (m.raw.len() as u64 + apart) as i64,
        m.raw,
        apart as i64,
        m.local,
        e.checks.as_ref().map(crate::Checks::to_text)
    ])?;
    let seq = conn.last_insert_rowid();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO recipients (message_seq, position, address, params) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (i, r) in e.recipients.iter().enumerate() {
        stmt.execute(params![seq, i as i64, r.address, r.params.join(" ")])?;
    }
    // The queue rows in the same commit: the 250 also means "queued".
    let mut queue = conn.prepare_cached(
        "INSERT INTO queue (message_seq, position, state, next_attempt, domain, leased_until)
         VALUES (?1, ?2, ?6, ?3, ?4, ?5)",
    )?;
    for position in &m.queue {
        let domain = e
            .recipients
            .get(*position as usize)
            .map(|r| crate::queue::domain_of(&r.address))
            .unwrap_or_default();
        let state = if m.hold { "held" } else { "queued" };
        queue.execute(params![
            seq,
            position,
            m.received_at,
            domain,
            m.claimed_until,
            state
        ])?;
    }
    // The webhook outbox too: posted at least once, even after a crash.
    let mut hooks = conn.prepare_cached(
        "INSERT OR IGNORE INTO webhooks (message_seq, hook, state, next_attempt)
         VALUES (?1, ?2, 'pending', ?3)",
    )?;
    for hook in &m.webhooks {
        hooks.execute(params![seq, hook, m.received_at])?;
    }
    Ok(())
}

pub(super) fn summary_of(m: &NewMessage, apart: u64) -> Summary {
    Summary {
        id: m.id.clone(),
        received_at: m.received_at,
        envelope: m.envelope.clone(),
        subject: m.subject.clone(),
        size: m.raw.len() as u64 + apart,
    }
}
