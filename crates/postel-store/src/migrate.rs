//! `postel store migrate`: an SQLite data folder moved into PostgreSQL.
//! Every message (those only passing through the queue too) with its
//! content, recipients, queue rows and webhook rows, and every user, is
//! copied in batches; a message already there (an earlier run cut short)
//! is left as it is. Then both sides are read back and compared: counts,
//! and one digest over everything each holds (the sum of each message's
//! SHA-256, so that each side is read in its own order).

use crate::{PgStore, SqliteStore, StoreError, Summary, WebhookEntry};

/// A stored message with all that goes with it, as one store hands it to
/// another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Id, time, envelope, subject, size.
    pub summary: Summary,
    /// The whole content.
    pub raw: Vec<u8>,
    /// Shown in the inbox.
    pub local: bool,
    /// Its queue rows.
    pub queue: Vec<ExportedRow>,
    /// Its webhook rows.
    pub webhooks: Vec<WebhookEntry>,
}

/// One queue row, without its lease (a moved row is claimed afresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedRow {
    /// The recipient's position.
    pub position: u32,
    /// Its state's name.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it is next due.
    pub next_attempt: i64,
    /// The last reply.
    pub last_reply: Option<String>,
    /// Delay notices sent.
    pub warned: u32,
    /// Returned by the operator.
    pub bounce: bool,
}

/// A user: name, password hash, creation time, SCRAM keys, addresses.
pub type ExportedUser = (String, String, i64, Option<String>, Vec<String>);

/// What a migration moved and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages in the SQLite store.
    pub messages: u64,
    /// Of those, copied now (the others were there already).
    pub copied: u64,
    /// Queue rows.
    pub queue_rows: u64,
    /// Webhook rows.
    pub webhook_rows: u64,
    /// Users.
    pub users: u64,
    /// The digest of everything, hex, the same on both sides: the sum of
    /// every message's SHA-256 (and the users'), in four 64-bit lanes.
    pub digest: String,
}

/// Messages per batch: each batch is one transaction.
const BATCH: usize = 200;

/// Octets of content per batch, at most (but one message, whatever its
/// size): a batch is held in memory whole.
pub(crate) const BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Appends one field to a digest's text, length first, so that no field
/// can run into the next; PostgreSQL keeps no NUL in text (it stores
/// U+FFFD instead), so neither does the digest.
fn field(text: &mut String, value: Option<&str>) {
    match value {
        None => text.push_str("-|"),
        Some(v) => {
            let v = v.replace('\0', "\u{FFFD}");
            text.push_str(&format!("{}:{v}|", v.len()));
        }
    }
}

/// A digest of many messages that does not depend on their order: the sum
/// of their SHA-256s, as four 64-bit lanes. Each side reads in its own
/// order (SQLite by id, PostgreSQL by its sequence).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sum([u64; 4]);

impl Sum {
    fn add(&mut self, d: ring::digest::Digest) {
        for (lane, chunk) in self.0.iter_mut().zip(d.as_ref().chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *lane = lane.wrapping_add(u64::from_be_bytes(b));
        }
    }

    fn hex(&self) -> String {
        self.0.iter().map(|l| format!("{l:016x}")).collect()
    }
}

/// One message's digest, in a form that does not depend on which store it
/// came from.
fn digest_message(m: &Exported) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let e = &m.summary.envelope;
    let mut text = String::new();
    let numbers = format!(
        "{} {} {} {}",
        m.summary.received_at,
        m.local,
        m.raw.len(),
        e.checks
            .as_ref()
            .map(crate::Checks::to_text)
            .unwrap_or_default()
    );
    for v in [
        Some(m.summary.id.as_str()),
        Some(numbers.as_str()),
        Some(e.mail_from.as_str()),
        Some(e.mail_params.join(" ").as_str()),
        Some(e.client_addr.as_str()),
        Some(e.helo.as_str()),
        Some(e.protocol.as_str()),
        e.tls.as_deref(),
        e.auth_user.as_deref(),
        m.summary.subject.as_deref(),
    ] {
        field(&mut text, v);
    }
    for r in &e.recipients {
        field(&mut text, Some(&r.address));
        field(&mut text, Some(&r.params.join(" ")));
    }
    for q in &m.queue {
        let n = format!(
            "{} {} {} {} {} {}",
            q.position, q.state, q.attempts, q.next_attempt, q.warned, q.bounce
        );
        field(&mut text, Some(&n));
        field(&mut text, q.last_reply.as_deref());
    }
    for w in &m.webhooks {
        let n = format!("{} {} {}", w.state.as_str(), w.attempts, w.next_attempt);
        field(&mut text, Some(&w.hook));
        field(&mut text, Some(&n));
        field(&mut text, w.last_status.as_deref());
    }
    ctx.update(&(text.len() as u64).to_be_bytes());
    ctx.update(text.as_bytes());
    ctx.update(&(m.raw.len() as u64).to_be_bytes());
    ctx.update(&m.raw);
    ctx.finish()
}

fn digest_users(users: &[ExportedUser]) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut text = String::new();
    for (name, hash, created, scram, addresses) in users {
        field(&mut text, Some(name));
        field(&mut text, Some(hash));
        field(&mut text, Some(&created.to_string()));
        field(&mut text, scram.as_deref());
        field(&mut text, Some(&addresses.join(" ")));
    }
    ctx.update(text.as_bytes());
    ctx.finish()
}

/// Moves everything in `src` into `dst`, then checks both by count and
/// digest. `progress` is told the messages done so far.
///
/// # Errors
/// When either store fails, or the check finds a difference (nothing is
/// undone then: the report says what differs, and a second run copies
/// only what is missing).
pub async fn sqlite_to_pg(
    src: std::sync::Arc<SqliteStore>,
    dst: &PgStore,
    mut progress: impl FnMut(u64),
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut src_digest = Sum::default();
    let mut after = String::new();
    loop {
        let s = src.clone();
        let from = after.clone();
        let batch = tokio::task::spawn_blocking(move || s.export_messages(&from, BATCH))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let Some(last) = batch.last() else { break };
        after.clone_from(&last.summary.id);
        for m in &batch {
            src_digest.add(digest_message(m));
            report.messages += 1;
            report.queue_rows += m.queue.len() as u64;
            report.webhook_rows += m.webhooks.len() as u64;
        }
        report.copied += dst.import_messages(&batch).await?;
        progress(report.messages);
    }
    let s = src.clone();
    let users = tokio::task::spawn_blocking(move || s.export_users())
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
    report.users = users.len() as u64;
    src_digest.add(digest_users(&users));
    dst.import_users(&users).await?;
    // Read back what the database holds, in its own order, and compare.
    let mut dst_digest = Sum::default();
    let mut found = 0u64;
    let mut after_seq = 0i64;
    loop {
        let (batch, last) = dst.export_messages(after_seq, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        after_seq = last;
        for m in &batch {
            dst_digest.add(digest_message(m));
            found += 1;
        }
    }
    dst_digest.add(digest_users(&dst.export_users().await?));
    let (a, b) = (src_digest.hex(), dst_digest.hex());
    if found != report.messages || a != b {
        return Err(StoreError::Schema(format!(
            "the copy differs: {} messages in SQLite, {found} in PostgreSQL; digests {a} and {b} (was the database in use by a server? run again on an idle one)",
            report.messages
        )));
    }
    report.digest = a;
    Ok(report)
}
