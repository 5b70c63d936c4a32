//! `postel messages ...`: read and delete stored messages from the command
//! line, while the server runs or not (SQLite WAL lets readers and the
//! server's writer work side by side).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use postel_store::SqliteStore;

use postel_store::time::rfc3339;

pub(crate) fn open(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    if !data_dir.join("messages.db").exists() {
        bail!(
            "no message store in {}: start `postel serve` there first, or pass --data-dir",
            data_dir.display()
        );
    }
    SqliteStore::open_existing(data_dir)
        .with_context(|| format!("cannot open the message store in {}", data_dir.display()))
}

/// Cuts `s` to at most `n` characters, marking the cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `postel messages list`
pub(crate) fn list(data_dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let store = open(data_dir)?;
    let all = store.list()?;
    let mut out = std::io::stdout().lock();
    if as_json {
        let v: Vec<_> = all.iter().map(postel_web::json::summary).collect();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    if all.is_empty() {
        writeln!(out, "no messages in {}", data_dir.display())?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<14}  {:<20}  {:<28}  {:<28}  {:>9}  SUBJECT",
        "ID", "RECEIVED", "FROM", "TO", "SIZE"
    )?;
    for s in &all {
        let rcpts = &s.envelope.recipients;
        let to = match rcpts.len() {
            0 => String::new(),
            1 => rcpts[0].address.clone(),
            n => format!("{} (+{})", rcpts[0].address, n - 1),
        };
        let from = if s.envelope.mail_from.is_empty() {
            "<>"
        } else {
            &s.envelope.mail_from
        };
        writeln!(
            out,
            "{:<14}  {:<20}  {:<28}  {:<28}  {:>9}  {}",
            s.id,
            rfc3339(s.received_at),
            cut(from, 28),
            cut(&to, 28),
            s.size,
            s.subject.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `postel messages show ID [--raw]`
pub(crate) fn show(data_dir: &Path, id: &str, raw: bool) -> anyhow::Result<()> {
    let store = open(data_dir)?;
    let Some(m) = store.get(id)? else {
        bail!(
            "no message with id {id} in {} (see `postel messages list`)",
            data_dir.display()
        );
    };
    let mut out = std::io::stdout().lock();
    if raw {
        out.write_all(&m.raw)?;
        return Ok(out.flush()?);
    }
    let s = &m.summary;
    let e = &s.envelope;
    writeln!(out, "ID:        {}", s.id)?;
    writeln!(out, "Received:  {}", rfc3339(s.received_at))?;
    writeln!(
        out,
        "Client:    {} (HELO {}, {})",
        e.client_addr, e.helo, e.protocol
    )?;
    writeln!(
        out,
        "From:      <{}> {}",
        e.mail_from,
        e.mail_params.join(" ")
    )?;
    for r in &e.recipients {
        writeln!(out, "To:        <{}> {}", r.address, r.params.join(" "))?;
    }
    if let Some(t) = &e.tls {
        writeln!(out, "TLS:       {t}")?;
    }
    if let Some(u) = &e.auth_user {
        writeln!(out, "User:      {u}")?;
    }
    if let Some(c) = &e.checks {
        writeln!(out, "Checks:    {}", c.to_text())?;
    }
    writeln!(out, "Size:      {}", s.size)?;
    writeln!(out, "Subject:   {}", s.subject.as_deref().unwrap_or(""))?;
    writeln!(out)?;
    out.write_all(&m.raw)?;
    Ok(out.flush()?)
}

/// `postel messages delete ID`
pub(crate) fn delete(data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let store = open(data_dir)?;
    if !store.delete(id)? {
        bail!("no message with id {id} in {}", data_dir.display());
    }
    println!("deleted {id}");
    Ok(())
}
