//! `postel messages ...`: read and delete stored messages from the command
//! line, while the server runs or not (SQLite WAL lets readers and the
//! server's writer work side by side).

use std::io::Write;

use anyhow::bail;
use postel_store::Store as _;
use postel_store::time::rfc3339;

use crate::admin::Admin;
use crate::cli::StoreArgs;

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
pub(crate) fn list(args: &StoreArgs, as_json: bool) -> anyhow::Result<()> {
    let admin = Admin::open(args, false)?;
    let all = admin.run(admin.store.list())?;
    let mut out = std::io::stdout().lock();
    if as_json {
        let v: Vec<_> = all.iter().map(postel_web::json::summary).collect();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    if all.is_empty() {
        writeln!(out, "no messages {}", admin.place)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<18}  {:<20}  {:<28}  {:<28}  {:>9}  SUBJECT",
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
pub(crate) fn show(args: &StoreArgs, id: &str, raw: bool) -> anyhow::Result<()> {
    let admin = Admin::open(args, false)?;
    let Some(m) = admin.run(admin.store.get(id))? else {
        bail!(
            "no message with id {id} {} (see `postel messages list`)",
            admin.place
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
pub(crate) fn delete(args: &StoreArgs, id: &str) -> anyhow::Result<()> {
    let admin = Admin::open(args, false)?;
    if !admin.run(admin.store.delete(id))? {
        bail!("no message with id {id} {}", admin.place);
    }
    println!("deleted {id}");
    Ok(())
}
