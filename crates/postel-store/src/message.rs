//! The data the store keeps and answers with: envelopes, messages new and
//! stored, summaries, queries and their pages, and the changes it
//! announces.

use crate::spool::SpoolFile;

/// One recipient of a message, as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path without brackets (`postmaster` for `<postmaster>`).
    pub address: String,
    /// RCPT parameters as sent.
    pub params: Vec<String>,
}

/// The SMTP envelope and connection details of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path without brackets; empty for `<>`.
    pub mail_from: String,
    /// MAIL parameters as sent.
    pub mail_params: Vec<String>,
    /// Accepted recipients, in order.
    pub recipients: Vec<Recipient>,
    /// The client's IP address and port.
    pub client_addr: String,
    /// The EHLO/HELO name.
    pub helo: String,
    /// `SMTP`, `ESMTP`, `UTF8SMTP`... (RFC 3848 / RFC 6531 `with` values).
    pub protocol: String,
    /// The TLS version and cipher, when the session was encrypted.
    pub tls: Option<String>,
    /// The authenticated user, when the client logged in.
    pub auth_user: Option<String>,
    /// What SPF, DKIM, DMARC and ARC said of the message, when it was
    /// checked (mail from outside: not from a user or a trusted network).
    pub checks: Option<Checks>,
}

/// The results of the mail authentication checks on one message, each an
/// RFC 8601 result word (`pass`, `fail`, `softfail`, `neutral`, `none`,
/// `temperror`, `permerror`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    /// SPF of the MAIL FROM identity (of the HELO name for `<>`).
    pub spf: String,
    /// DKIM: `pass` when some signature passed, else the first result.
    pub dkim: String,
    /// DMARC.
    pub dmarc: String,
    /// ARC chain validation.
    pub arc: String,
    /// The sender's domain asked for quarantine (or rejection, when
    /// that is not enforced) of mail failing DMARC, and this did.
    pub quarantine: bool,
}

impl Checks {
    /// The stored form: `spf=pass dkim=none dmarc=fail arc=none
    /// quarantine`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "spf={} dkim={} dmarc={} arc={}",
            self.spf, self.dkim, self.dmarc, self.arc
        );
        if self.quarantine {
            s.push_str(" quarantine");
        }
        s
    }

    /// Reads [`Checks::to_text`]'s form back; None when it is not that.
    pub fn from_text(text: &str) -> Option<Checks> {
        let mut c = Checks::default();
        for word in text.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("spf", v)) => c.spf = v.to_owned(),
                Some(("dkim", v)) => c.dkim = v.to_owned(),
                Some(("dmarc", v)) => c.dmarc = v.to_owned(),
                Some(("arc", v)) => c.arc = v.to_owned(),
                None if word == "quarantine" => c.quarantine = true,
                _ => return None,
            }
        }
        Some(c)
    }
}

impl Envelope {
    /// The recipients' addresses, in order.
    pub fn addresses(&self) -> Vec<String> {
        self.recipients.iter().map(|r| r.address.clone()).collect()
    }
}

/// A message to store.
#[derive(Debug)]
pub struct NewMessage {
    /// From [`Store::next_id`].
    pub id: String,
    /// Seconds since the Unix epoch.
    pub received_at: i64,
    /// The envelope.
    pub envelope: Envelope,
    /// The `Subject:` header, decoded, if any.
    pub subject: Option<String>,
    /// The message as stored, trace header and content, CRLF line ends;
    /// or, with `spooled`, its first part.
    pub raw: Vec<u8>,
    /// The rest of the message, in a spool file: a large message arrives
    /// there while it is received, so that it is never held whole in memory.
    pub spooled: Option<SpoolFile>,
    /// Positions (in `envelope.recipients`) of the recipients to send on:
    /// each gets a queue row in the same commit.
    pub queue: Vec<u32>,
    /// Whether the message is shown in the inbox (it has a local
    /// recipient); a message only passing through is not.
    pub local: bool,
    /// The queue rows come claimed until then (Unix seconds): the caller
    /// hands them to delivery itself, in memory, rather than have them
    /// claimed from the store.
    pub claimed_until: Option<i64>,
    /// The queue rows start held (a policy server's `HOLD`): nothing is
    /// sent until an operator releases them.
    pub hold: bool,
    /// The webhooks (by URL) to post the message to: each gets an outbox
    /// row in the same commit.
    pub webhooks: Vec<String>,
}

impl NewMessage {
    /// Octets of the whole message.
    pub fn size(&self) -> u64 {
        self.raw.len() as u64 + self.spooled.as_ref().map_or(0, SpoolFile::len)
    }
}

/// A stored message without its content (for listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The message id.
    pub id: String,
    /// Seconds since the Unix epoch.
    pub received_at: i64,
    /// The envelope.
    pub envelope: Envelope,
    /// The subject, if any.
    pub subject: Option<String>,
    /// Octets of `raw`.
    pub size: u64,
}

/// A stored message with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Everything but the content.
    pub summary: Summary,
    /// The stored bytes, exactly.
    pub raw: Vec<u8>,
}

/// A stored message as a stream: its first bytes, then an open file with
/// the rest (large messages), so that it can be sent without being read
/// into memory whole.
#[derive(Debug)]
pub struct RawMessage {
    /// Everything but the content.
    pub summary: Summary,
    /// The first bytes (all of them for a message held in the database).
    pub head: Vec<u8>,
    /// The rest, for a message whose content is kept apart: the open file
    /// and the length recorded for it.
    pub rest: Option<(std::fs::File, u64)>,
}

/// A change to the stored messages, for live views such as the web inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message was committed.
    Stored(Box<Summary>),
    /// A message was deleted (by a user, or by retention).
    Deleted(String),
    /// Every message was deleted.
    DeletedAll,
}

/// Which messages a [`Store::query`] returns: every set filter must match.
/// Text filters are case-insensitive substrings (ASCII case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// In the sender, any recipient or the subject.
    pub text: Option<String>,
    /// In the sender (the reverse-path).
    pub from: Option<String>,
    /// In any recipient.
    pub to: Option<String>,
    /// In the subject.
    pub subject: Option<String>,
    /// Received at or after, seconds since the Unix epoch.
    pub since: Option<i64>,
    /// Received before, seconds since the Unix epoch.
    pub until: Option<i64>,
    /// How many matches to skip, newest first.
    pub offset: u64,
    /// The most to return.
    pub limit: u64,
}

/// One page of a [`Store::query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// How many messages match, over all pages.
    pub total: u64,
    /// This page, newest first.
    pub messages: Vec<Summary>,
}

/// Counts for status displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages stored.
    pub messages: u64,
    /// Their total size in octets.
    pub bytes: u64,
}

/// A LIKE (or ILIKE) pattern matching `s` anywhere, with `%`, `_` and `\`
/// escaped (for `ESCAPE '\'`, PostgreSQL's default).
pub(crate) fn contains_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}
