//! Group commit: one task takes every message waiting at that moment and
//! commits them in one transaction, a few statements for the whole batch
//! (arrays unnested), one WAL flush for all. After the commit, one NOTIFY
//! tells the other nodes; it is sent apart from the commit (and not waited
//! for), so that a full notification queue, or a server slow to answer it,
//! can never fail or hold up an acceptance.

use std::borrow::Cow;

use deadpool_postgres::Object;

use super::*;
use crate::NewMessage;

/// The most messages in one transaction.
const MAX_BATCH: usize = 512;

/// How long a batch's commit may take before its outcome is given up as
/// unknown (a server that stopped answering): the connection is dropped
/// and the senders hear `451`.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// The most octets of one NOTIFY payload (PostgreSQL takes under 8000).
const PAYLOAD: usize = 7000;

/// A message for the writer, and where its outcome goes.
pub(super) struct Job {
    pub(super) msg: Box<NewMessage>,
    /// Octets of content already in `blobs`.
    pub(super) apart: u64,
    pub(super) done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Commits what comes in on `rx`, on `pool` (the writer's own); the
/// NOTIFY after each commit goes out on `others` (the store's pool), so
/// that it never holds up the next commit.
pub(super) async fn run(
    pool: Pool,
    others: Pool,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = commit_or_split(&pool, &others, &node, &batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.done.send(result);
        }
    }
}

/// Commits the batch; when the database refuses it for what one message
/// holds (not for being out of reach), each message alone, so that one bad
/// message does not sink the others.
async fn commit_or_split(
    pool: &Pool,
    others: &Pool,
    node: &str,
    batch: &[Job],
) -> Vec<Result<(), StoreError>> {
    let all: Vec<&Job> = batch.iter().collect();
    match commit_batch(pool, others, node, &all).await {
        Ok(()) => batch.iter().map(|_| Ok(())).collect(),
        Err(e) if !e.is_transient() && batch.len() > 1 => {
            let mut results = Vec::with_capacity(batch.len());
            for job in batch {
                results.push(commit_batch(pool, others, node, &[job]).await);
            }
            results
        }
        Err(e) => {
            tracing::error!(error = %e, messages = batch.len(), "store commit failed");
            let (message, transient) = (e.to_string(), e.is_transient());
            batch
                .iter()
                .map(|_| {
                    Err(StoreError::Commit {
                        message: message.clone(),
                        transient,
                    })
                })
                .collect()
        }
    }
}

/// One transaction for `jobs`, then the NOTIFY. An error from COMMIT (or
/// a timeout) leaves the outcome unknown: it is an error all the same.
async fn commit_batch(
    pool: &Pool,
    others: &Pool,
    node: &str,
    jobs: &[&Job],
) -> Result<(), StoreError> {
    let mut client = get(pool).await?;
    match tokio::time::timeout(COMMIT_WAIT, insert_all(&mut client, node, jobs)).await {
        Ok(Ok(seqs)) => {
            let queued = jobs.iter().any(|j| !j.msg.queue.is_empty() && !j.msg.hold);
            drop(client);
            notify(others.clone(), queued, &seqs);
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            // The connection may be in any state: never reuse it.
            drop(Object::take(client));
            Err(StoreError::Unreachable(
                "the commit did not finish in time; its outcome is unknown".into(),
            ))
        }
    }
}

/// Inserts the messages, their recipients, queue rows and webhook rows,
/// and commits. Returns the sequence numbers of the messages shown in the
/// inbox.
async fn insert_all(
    client: &mut Object,
    node: &str,
    jobs: &[&Job],
) -> Result<Vec<i64>, StoreError> {
    let tx = client.transaction().await?;
    let n = jobs.len();
    let mut ids = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut client_addr = Vec::with_capacity(n);
    let mut helo = Vec::with_capacity(n);
    let mut protocol = Vec::with_capacity(n);
    // Borrowed from the jobs unless a NUL had to be replaced: intake
    // copies no text it need not.
    let mut tls: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(n);
    let mut auth_user: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(n);
    let mut mail_from = Vec::with_capacity(n);
    let mut mail_params = Vec::with_capacity(n);
    let mut subject: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(n);
    let mut size = Vec::with_capacity(n);
    let mut raw: Vec<&[u8]> = Vec::with_capacity(n);
    let mut apart = Vec::with_capacity(n);
    let mut local = Vec::with_capacity(n);
    let mut checks: Vec<Option<String>> = Vec::with_capacity(n);
    let nodes = vec![node; n];
    for job in jobs {
        let m = &job.msg;
        let e = &m.envelope;
        ids.push(m.id.as_str());
        received.push(m.received_at);
        client_addr.push(text(&e.client_addr));
        helo.push(text(&e.helo));
        protocol.push(text(&e.protocol));
        tls.push(e.tls.as_deref().map(text));
        auth_user.push(e.auth_user.as_deref().map(text));
        mail_from.push(text(&e.mail_from));
        mail_params.push(text(&e.mail_params.join(" ")).into_owned());
        subject.push(m.subject.as_deref().map(text));
        size.push(i64::try_from(m.raw.len() as u64 + job.apart).unwrap_or(i64::MAX));
        raw.push(&m.raw);
        apart.push(i64::try_from(job.apart).unwrap_or(i64::MAX));
        local.push(m.local);
        checks.push(e.checks.as_ref().map(crate::Checks::to_text));
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (id, received_at, client_addr, helo, protocol, tls, auth_user,
                 mail_from, mail_params, subject, size, raw, apart, local, checks, node)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[],
                 $12::bytea[], $13::int8[], $14::bool[], $15::text[], $16::text[])
             RETURNING seq, id",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &ids,
                &received,
                &client_addr,
                &helo,
                &protocol,
                &tls,
                &auth_user,
                &mail_from,
                &mail_params,
                &subject,
                &size,
                &raw,
                &apart,
                &local,
                &checks,
                &nodes,
            ],
        )
        .await?;
    let seq_of: std::collections::HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(1), r.get::<_, i64>(0)))
        .collect();
    let (mut r_seq, mut r_pos, mut r_addr, mut r_params) = (vec![], vec![], vec![], vec![]);
    let (mut q_seq, mut q_pos, mut q_state, mut q_next, mut q_domain) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut q_until, mut q_owner): (Vec<Option<i64>>, Vec<Option<&str>>) = (vec![], vec![]);
    let (mut h_seq, mut h_hook, mut h_next) = (vec![], vec![], vec![]);
    let mut shown = Vec::new();
    for job in jobs {
        let m = &job.msg;
        let seq = *seq_of
            .get(&m.id)
            .ok_or_else(|| StoreError::Unreachable("an inserted row went missing".into()))?;
        if m.local {
            shown.push(seq);
        }
        for (i, r) in m.envelope.recipients.iter().enumerate() {
            r_seq.push(seq);
            r_pos.push(i32::try_from(i).unwrap_or(i32::MAX));
            r_addr.push(text(&r.address));
            r_params.push(text(&r.params.join(" ")).into_owned());
        }
        for position in &m.queue {
            let domain = m
                .envelope
                .recipients
                .get(*position as usize)
                .map(|r| crate::queue::domain_of(&r.address))
                .unwrap_or_default();
            q_seq.push(seq);
            q_pos.push(i32::try_from(*position).unwrap_or(i32::MAX));
            q_state.push(if m.hold { "held" } else { "queued" });
            q_next.push(m.received_at);
            q_domain.push(text(&domain).into_owned());
            q_until.push(m.claimed_until);
            q_owner.push(m.claimed_until.map(|_| node));
        }
        for hook in &m.webhooks {
            h_seq.push(seq);
            h_hook.push(text(hook));
            h_next.push(m.received_at);
        }
    }
    if !r_seq.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO recipients (message_seq, position, address, params)
                 SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[])",
            )
            .await?;
        tx.execute(&stmt, &[&r_seq, &r_pos, &r_addr, &r_params])
            .await?;
    }
    if !q_seq.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO queue (message_seq, position, state, next_attempt, domain,
                     leased_until, lease_owner)
                 SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::int8[],
                     $5::text[], $6::int8[], $7::text[])",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &q_seq, &q_pos, &q_state, &q_next, &q_domain, &q_until, &q_owner,
            ],
        )
        .await?;
    }
    if !h_seq.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO webhooks (message_seq, hook, state, next_attempt)
                 SELECT s, h, 'pending', n FROM unnest($1::int8[], $2::text[], $3::int8[])
                     AS t (s, h, n)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&stmt, &[&h_seq, &h_hook, &h_next]).await?;
    }
    tx.commit().await?;
    Ok(shown)
}

/// After a commit: one NOTIFY, saying whether the batch queued mail
/// (`Q`) and which new messages are in the inbox (`S seq...`), on its own
/// task. Best effort: the commit stands whatever happens here, and every
/// node polls besides. (More than a few hundred new messages would take a
/// second payload.)
fn notify(pool: Pool, queued: bool, shown: &[i64]) {
    let mut all = payloads('S', shown.iter().map(ToString::to_string));
    if queued {
        match all.first_mut() {
            Some(first) => first.insert_str(0, "Q;"),
            None => all.push("Q".to_owned()),
        }
    }
    if all.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let Ok(client) = get(&pool).await else {
            return;
        };
        let sent = tokio::time::timeout(NOTIFY_WAIT, async {
            for p in &all {
                client
                    .execute("SELECT pg_notify('postel_events', $1)", &[p])
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot NOTIFY"),
            Err(_) => drop(Object::take(client)),
        }
    });
}

/// How long a NOTIFY may take before its connection is given up.
const NOTIFY_WAIT: Duration = Duration::from_secs(10);

/// `kind` and the words, as few payloads as fit under [`PAYLOAD`].
pub(super) fn payloads(kind: char, words: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for w in words {
        if !cur.is_empty() && cur.len() + w.len() + 1 > PAYLOAD {
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.push(kind);
        }
        cur.push(' ');
        cur.push_str(&w);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
