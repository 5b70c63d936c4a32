//! `postel queue ...`: the delivery queue from the command line, while the
//! server runs or not. Actions change the rows; the running server's
//! worker sees them at its next look (within a second).

use std::io::Write;

use postel_store::time::rfc3339;
use postel_store::{QueueAction, QueueEntry};

use postel_store::Store as _;

use crate::admin::Admin;
use crate::cli::{QueueCommand, QueueTarget};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs one `postel queue` command.
///
/// # Errors
/// When the store cannot be opened, read or written, or the id is unknown.
pub(crate) fn run(command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::List { store, json } => {
            let admin = Admin::open(&store, false)?;
            list(&admin.run(admin.store.queue_list())?, json)
        }
        QueueCommand::Show { id, store } => {
            let admin = Admin::open(&store, false)?;
            let rows: Vec<QueueEntry> = admin
                .run(admin.store.queue_list())?
                .into_iter()
                .filter(|e| e.id == id)
                .collect();
            if rows.is_empty() {
                anyhow::bail!("message {id} has no queued recipients");
            }
            show(&rows)
        }
        QueueCommand::Retry(t) => act(&t, QueueAction::Retry, "to retry now"),
        QueueCommand::Hold(t) => act(&t, QueueAction::Hold, "held"),
        QueueCommand::Release(t) => act(&t, QueueAction::Release, "released"),
        QueueCommand::Delete(t) => act(&t, QueueAction::Delete, "deleted"),
        QueueCommand::Bounce(t) => act(&t, QueueAction::Bounce, "to return to the sender"),
    }
}

fn act(t: &QueueTarget, action: QueueAction, done: &str) -> anyhow::Result<()> {
    let admin = Admin::open(&t.store, false)?;
    let id = if t.all { None } else { t.id.as_deref() };
    let n = admin.run(admin.store.queue_act(id, action, now()))?;
    if n == 0 && id.is_some() {
        anyhow::bail!(
            "message {} has no queued recipient that this applies to",
            id.unwrap_or_default()
        );
    }
    println!("{n} recipient(s) {done}");
    Ok(())
}

fn list(rows: &[QueueEntry], as_json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        let v: Vec<_> = rows.iter().map(postel_web::json::queue_entry).collect();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "the queue is empty")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<14}  {:<30}  {:<9}  {:>3}  {:<20}  LAST REPLY",
        "ID", "RECIPIENT", "STATE", "TRY", "NEXT ATTEMPT"
    )?;
    for e in rows {
        writeln!(
            out,
            "{:<14}  {:<30}  {:<9}  {:>3}  {:<20}  {}",
            e.id,
            postel_proto::display::visible(&e.recipient),
            e.state.as_str(),
            e.attempts,
            rfc3339(e.next_attempt),
            postel_proto::display::visible(e.last_reply.as_deref().unwrap_or("-"))
        )?;
    }
    Ok(())
}

fn show(rows: &[QueueEntry]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let first = &rows[0];
    writeln!(out, "Message:   {}", first.id)?;
    writeln!(out, "Received:  {}", rfc3339(first.received_at))?;
    writeln!(
        out,
        "From:      <{}>",
        postel_proto::display::visible(&first.mail_from)
    )?;
    writeln!(out, "Client:    {}", first.client_addr)?;
    if let Some(u) = &first.auth_user {
        writeln!(out, "User:      {}", postel_proto::display::visible(u))?;
    }
    writeln!(out, "Size:      {} octets", first.size)?;
    for e in rows {
        writeln!(out)?;
        writeln!(
            out,
            "To:        <{}>",
            postel_proto::display::visible(&e.recipient)
        )?;
        writeln!(out, "  State:   {}", e.state.as_str())?;
        writeln!(out, "  Attempts: {}", e.attempts)?;
        writeln!(out, "  Next:    {}", rfc3339(e.next_attempt))?;
        if let Some(r) = &e.last_reply {
            writeln!(out, "  Last:    {}", postel_proto::display::visible(r))?;
        }
    }
    Ok(())
}
