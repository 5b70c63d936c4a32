//! `postel send`: submits one message, like swaks, printing the whole
//! conversation with a short explanation under each reply. The exit status
//! says what happened: 0 accepted, 1 refused (the reply says why), 2 the
//! conversation could not be had (connection, TLS, usage).

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;

use crate::client::{Client, Reply, capabilities, ehlo_name, split_host_port};

/// What to send, and how: the arguments of `postel send`.
#[derive(clap::Args)]
pub(crate) struct SendArgs {
    /// HOST[:PORT] (default port 25; 587 with --auth; 465 with --tls).
    #[arg(long)]
    pub(crate) server: String,
    /// The envelope sender, and the From header.
    #[arg(long)]
    pub(crate) from: String,
    /// A recipient (repeatable).
    #[arg(long, required = true)]
    pub(crate) to: Vec<String>,
    /// Upgrade with STARTTLS after EHLO.
    #[arg(long, conflicts_with = "tls")]
    pub(crate) starttls: bool,
    /// Implicit TLS from the first byte (port 465).
    #[arg(long)]
    pub(crate) tls: bool,
    /// Log in as USER (password from $POSTEL_PASSWORD, or asked for).
    #[arg(long, value_name = "USER")]
    pub(crate) auth: Option<String>,
    /// A header line "Name: value" (repeatable).
    #[arg(long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,
    /// The body text, from a file or - for stdin.
    #[arg(long, value_name = "FILE")]
    pub(crate) body: Option<PathBuf>,
    /// Attach a file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub(crate) attach: Vec<PathBuf>,
    /// The EHLO name (default: this host's name).
    #[arg(long)]
    pub(crate) ehlo: Option<String>,
    /// Go on when the certificate does not verify.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// The language of the explanations.
    #[arg(long, value_enum, default_value = "en")]
    pub(crate) lang: crate::explain::Lang,
}

/// The outcome for the exit status.
pub(crate) enum Outcome {
    Accepted,
    Refused,
}

/// Runs the conversation.
///
/// # Errors
/// When it cannot be had at all (exit status 2).
pub(crate) fn run(a: &SendArgs) -> anyhow::Result<Outcome> {
    let message = build(a)?;
    let password = match &a.auth {
        Some(user) => Some(match std::env::var("POSTEL_PASSWORD") {
            Ok(p) => p,
            Err(_) => rpassword::prompt_password(format!("password for {user}: "))
                .context("cannot read the password (or set POSTEL_PASSWORD)")?,
        }),
        None => None,
    };
    let (host, port) = split_host_port(&a.server)?;
    let port = port.unwrap_or(if a.tls {
        465
    } else if a.auth.is_some() {
        587
    } else {
        25
    });
    let (mut c, info) = Client::connect(&host, port, a.tls, a.insecure, true)?;
    c.explain = Some(crate::explain::brief_for(a.lang));
    if let Some(Err(why)) = info.as_ref().map(|i| &i.verified) {
        println!("*  certificate not verified ({why}); going on because of --insecure");
    }
    let greeting = c.read_reply()?;
    if !greeting.ok() {
        return refused(&mut c, &greeting);
    }
    let name = a.ehlo.clone().unwrap_or_else(ehlo_name);
    let mut ehlo = c.command(&format!("EHLO {name}"))?;
    if !ehlo.ok() {
        let helo = c.command(&format!("HELO {name}"))?;
        if !helo.ok() {
            return refused(&mut c, &helo);
        }
        ehlo = Reply {
            code: 250,
            lines: vec![name.clone()],
        };
    }
    if a.starttls {
        let r = c.command("STARTTLS")?;
        if r.code != 220 {
            return refused(&mut c, &r);
        }
        let info = c.handshake(a.insecure)?;
        if let Err(why) = &info.verified {
            println!("*  certificate not verified ({why}); going on because of --insecure");
        }
        ehlo = c.command(&format!("EHLO {name}"))?;
        if !ehlo.ok() {
            return refused(&mut c, &ehlo);
        }
    }
    let caps = capabilities(&ehlo);
    if let (Some(user), Some(password)) = (&a.auth, &password) {
        // A password never crosses the network in clear.
        if !c.is_tls() {
            let _ = c.command("QUIT");
            bail!(
                "refusing to send a password without TLS: add --starttls (port 587) or --tls (port 465)"
            );
        }
        let Some(mechs) = caps
            .iter()
            .find(|(k, _)| k == "AUTH")
            .map(|(_, v)| v.to_ascii_uppercase())
        else {
            let _ = c.command("QUIT");
            bail!("the server does not offer AUTH here");
        };
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let r = if mechs.split(' ').any(|m| m == "PLAIN") {
            let token = b64(format!("\0{user}\0{password}").as_bytes());
            c.send_line(
                &format!("AUTH PLAIN {token}"),
                Some("AUTH PLAIN (credentials hidden)"),
            )?;
            c.read_reply()?
        } else if mechs.split(' ').any(|m| m == "LOGIN") {
            let r = c.command("AUTH LOGIN")?;
            if r.code != 334 {
                return refused(&mut c, &r);
            }
            c.send_line(&b64(user.as_bytes()), Some("(user name, base64)"))?;
            let r = c.read_reply()?;
            if r.code != 334 {
                return refused(&mut c, &r);
            }
            c.send_line(&b64(password.as_bytes()), Some("(password hidden)"))?;
            c.read_reply()?
        } else {
            bail!("the server offers AUTH {mechs}; postel send speaks PLAIN and LOGIN");
        };
        if r.code != 235 {
            return refused(&mut c, &r);
        }
    }
    let utf8 = !a.from.is_ascii() || a.to.iter().any(|t| !t.is_ascii());
    if utf8 && !caps.iter().any(|(k, _)| k == "SMTPUTF8") {
        let _ = c.command("QUIT");
        bail!("the addresses are not ASCII and the server does not offer SMTPUTF8 (RFC 6531)");
    }
    let mut mail = format!("MAIL FROM:<{}>", a.from);
    if caps.iter().any(|(k, _)| k == "SIZE") {
        mail.push_str(&format!(" SIZE={}", message.len()));
    }
    if utf8 {
        mail.push_str(" SMTPUTF8");
    }
    let r = c.command(&mail)?;
    if !r.ok() {
        return refused(&mut c, &r);
    }
    let mut accepted = 0;
    for to in &a.to {
        if c.command(&format!("RCPT TO:<{to}>"))?.ok() {
            accepted += 1;
        }
    }
    if accepted == 0 {
        let r = c.command("QUIT")?;
        let _ = r;
        println!("*  no recipient was accepted: nothing sent");
        return Ok(Outcome::Refused);
    }
    let r = c.command("DATA")?;
    if r.code != 354 {
        return refused(&mut c, &r);
    }
    let done = c.send_data(&message)?;
    let _ = c.command("QUIT");
    if done.ok() {
        println!(
            "*  accepted for {accepted} of {} recipient(s): {}",
            a.to.len(),
            done.first_line()
        );
        Ok(Outcome::Accepted)
    } else {
        println!("*  refused: {}", done.first_line());
        Ok(Outcome::Refused)
    }
}

fn refused(c: &mut Client, r: &Reply) -> anyhow::Result<Outcome> {
    println!("*  refused: {}", r.first_line());
    // The server may already have closed the connection (421).
    if r.code != 421 {
        let _ = c.command("QUIT");
    }
    Ok(Outcome::Refused)
}

/// The message: the given headers (From, To, Date, Message-ID,
/// MIME-Version and a Subject added where missing; a name given twice is
/// the caller's choice), the body, and attachments.
fn build(a: &SendArgs) -> anyhow::Result<Vec<u8>> {
    let body = match &a.body {
        None => "This is a test message sent by postel send.\r\n".to_owned(),
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("cannot read the body from stdin")?;
            s
        }
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the body from {}", p.display()))?,
    };
    let mut m = MessageBuilder::new();
    let mut given = std::collections::HashSet::new();
    for h in &a.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header {h:?}: expected \"Name: value\"");
        };
        let name = name.trim();
        if name.is_empty()
            || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
            || value.contains(['\r', '\n'])
        {
            bail!("--header {h:?}: not a valid header field");
        }
        // The builder adds Date, Message-ID and MIME-Version unless it sees
        // them under these exact names.
        let name = match name.to_ascii_lowercase().as_str() {
            "date" => "Date".to_owned(),
            "message-id" => "Message-ID".to_owned(),
            "mime-version" => "MIME-Version".to_owned(),
            _ => name.to_owned(),
        };
        given.insert(name.to_ascii_lowercase());
        let value = value.trim().to_owned();
        m = if value.is_ascii() {
            m.header(name, Raw::new(value))
        } else {
            // RFC 2047 encoded words, so the header stays 7-bit.
            m.header(name, Text::new(value))
        };
    }
    if !given.contains("from") {
        m = m.from(a.from.as_str());
    }
    if !given.contains("to") {
        m = m.to(a.to.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if !given.contains("subject") {
        m = m.subject("Test message from postel send");
    }
    m = m.text_body(body);
    for path in &a.attach {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the attachment {}", path.display()))?;
        let name = path
            .file_name()
            .map_or("attachment".into(), |n| n.to_string_lossy().into_owned());
        m = m.attachment(content_type(&name), name, bytes);
    }
    m.write_to_vec().context("cannot build the message")
}

/// A content type from a file name's extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("csv") => "text/csv",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("zip") => "application/zip",
        Some("json") => "application/json",
        Some("eml") => "message/rfc822",
        _ => "application/octet-stream",
    }
}
