//! The client side of an SMTP session, as a state machine that does no IO
//! and reads no clock: the mirror of [`crate::Session`].
//!
//! Commands go in as method calls ([`Client::ehlo`], [`Client::mail`],
//! [`Client::content`]...), which queue their bytes for
//! [`Client::take_output`]; the server's bytes go in with
//! [`Client::feed`]; each reply comes out of [`Client::poll_event`] paired
//! with the command it answers. Commands may be queued before earlier ones
//! are answered (RFC 2920 PIPELINING): replies are matched to commands in
//! order.
//!
//! Invariants: content is dot-stuffed and its line endings made CRLF, so
//! that nothing a message holds can end the DATA early (the client side of
//! SMTP smuggling); what the server sends is bounded
//! ([`reply::MAX_REPLY_LINE`]), and a reply nobody asked for, or bytes that
//! are not replies, end the session as a protocol error.
//!
//! Not here: sockets, TLS, timeouts, DNS. The driver owns those; after a
//! STARTTLS handshake it calls [`Client::tls_established`].
//!
//! # Layout
//! - `reply`: replies decoded from bytes, with their bounds;
//! - this file: the commands, their order, and the capabilities.

pub mod reply;

use std::collections::VecDeque;

use base64::Engine as _;

pub use reply::{ReplyDecoder, ReplyError, ServerReply};

/// A command whose reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The `220` greeting (no command: the connection).
    Greeting,
    /// EHLO.
    Ehlo,
    /// HELO.
    Helo,
    /// STARTTLS.
    StartTls,
    /// AUTH (with an initial response).
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA (its `354`).
    Data,
    /// The content and its final dot (the `250` that stores it).
    Content,
    /// One BDAT chunk.
    Bdat,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
}

/// What the server offered in its EHLO reply (RFC 5321 4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: the largest message, if the server said (0: no limit).
    pub size: Option<u64>,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 4954: the mechanisms, upper case.
    pub auth: Vec<String>,
    /// RFC 3030.
    pub chunking: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 6152.
    pub eightbitmime: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// RFC 3461.
    pub dsn: bool,
    /// RFC 8689.
    pub requiretls: bool,
}

impl Capabilities {
    /// Reads the lines of a `250` EHLO reply (the first is the server's
    /// name).
    pub fn parse(lines: &[String]) -> Capabilities {
        let mut c = Capabilities::default();
        for line in lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "STARTTLS" => c.starttls = true,
                "AUTH" => c.auth = words.map(str::to_ascii_uppercase).collect(),
                "CHUNKING" => c.chunking = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "8BITMIME" => c.eightbitmime = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_status_codes = true,
                "DSN" => c.dsn = true,
                "REQUIRETLS" => c.requiretls = true,
                _ => {}
            }
        }
        c
    }
}

/// What the driver learns from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The reply to a command (or the greeting).
    Reply {
        /// The command it answers.
        to: Command,
        /// The reply.
        reply: ServerReply,
    },
    /// The server broke the protocol: bytes that are not replies, or a
    /// reply to nothing. The session is over.
    ProtocolError(String),
}

/// One SMTP session, client side.
#[derive(Debug)]
pub struct Client {
    decoder: ReplyDecoder,
    out: Vec<u8>,
    awaiting: VecDeque<Command>,
    events: VecDeque<ClientEvent>,
    capabilities: Option<Capabilities>,
    closed: bool,
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// A new session, awaiting the greeting.
    pub fn new() -> Client {
        Client {
            decoder: ReplyDecoder::default(),
            out: Vec::new(),
            awaiting: VecDeque::from([Command::Greeting]),
            events: VecDeque::new(),
            capabilities: None,
            closed: false,
        }
    }

    /// Feeds bytes from the server.
    pub fn feed(&mut self, input: &[u8]) {
        if self.closed {
            return;
        }
        let mut replies = Vec::new();
        let decoded = self.decoder.decode(input, &mut replies);
        for reply in replies {
            let Some(to) = self.awaiting.pop_front() else {
                return self.fail(format!("a reply to no command: {}", reply.code));
            };
            if to == Command::Ehlo && reply.code == 250 {
                self.capabilities = Some(Capabilities::parse(&reply.lines));
            }
            // RFC 5321 3.8: the server is closing the channel.
            let closing = reply.code == 421 || to == Command::Quit;
            self.events.push_back(ClientEvent::Reply { to, reply });
            if closing {
                self.closed = true;
                self.awaiting.clear();
                return;
            }
        }
        if let Err(e) = decoded {
            self.fail(e.to_string());
        }
    }

    fn fail(&mut self, why: String) {
        self.closed = true;
        self.awaiting.clear();
        self.events.push_back(ClientEvent::ProtocolError(why));
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Moves the queued command bytes into `out` (appending).
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    /// Returns true if and only if bytes wait to be sent.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Replies still awaited.
    pub fn in_flight(&self) -> usize {
        self.awaiting.len()
    }

    /// Returns true if and only if no reply is half read. A driver checks
    /// it before a TLS handshake: bytes after the `220` to STARTTLS would
    /// be an injection (CVE-2011-0411 and kin, from the server's side).
    pub fn is_idle(&self) -> bool {
        self.decoder.is_idle()
    }

    /// Returns true if and only if the session is over (QUIT answered,
    /// `421`, or a protocol error).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// What the last EHLO reply offered.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }

    fn command(&mut self, line: &str, awaits: Command) {
        // A line break in an argument would be a second command.
        let line: String = line.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.awaiting.push_back(awaits);
    }

    /// `EHLO <domain>`.
    pub fn ehlo(&mut self, domain: &str) {
        self.command(&format!("EHLO {domain}"), Command::Ehlo);
    }

    /// `LHLO <domain>` (RFC 2033 4.1): LMTP's EHLO. Its reply is paired
    /// with [`Command::Ehlo`], and its capabilities are kept as EHLO's.
    pub fn lhlo(&mut self, domain: &str) {
        self.command(&format!("LHLO {domain}"), Command::Ehlo);
    }

    /// `HELO <domain>`.
    pub fn helo(&mut self, domain: &str) {
        self.command(&format!("HELO {domain}"), Command::Helo);
    }

    /// `STARTTLS`. After its `220`, the driver runs the handshake and calls
    /// [`Client::tls_established`].
    pub fn starttls(&mut self) {
        self.command("STARTTLS", Command::StartTls);
    }

    /// The TLS handshake is done: what was learnt before it is void (RFC
    /// 3207 4.2), so EHLO again.
    pub fn tls_established(&mut self) {
        self.capabilities = None;
        self.decoder = ReplyDecoder::default();
    }

    /// `AUTH PLAIN` with its initial response (RFC 4616).
    pub fn auth_plain(&mut self, user: &str, password: &str) {
        let blob =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.command(&format!("AUTH PLAIN {blob}"), Command::Auth);
    }

    /// `MAIL FROM:<from>` and parameters.
    pub fn mail(&mut self, from: &str, params: &[&str]) {
        let mut line = format!("MAIL FROM:<{from}>");
        for p in params {
            line.push(' ');
            line.push_str(p);
        }
        self.command(&line, Command::Mail);
    }

    /// `RCPT TO:<to>` and parameters.
    pub fn rcpt(&mut self, to: &str, params: &[&str]) {
        let mut line = format!("RCPT TO:<{to}>");
        for p in params {
            line.push(' ');
            line.push_str(p);
        }
        self.command(&line, Command::Rcpt);
    }

    /// `DATA`. Send the content with [`Client::content`] after its `354`.
    pub fn data(&mut self) {
        self.command("DATA", Command::Data);
    }

    /// The message, then the end of data ([`dot_stuff`]).
    pub fn content(&mut self, message: &[u8]) {
        dot_stuff(message, &mut self.out);
        self.awaiting.push_back(Command::Content);
    }

    /// The content and its end of data as LMTP answers it: one reply per
    /// recipient that RCPT accepted, in RCPT order (RFC 2033 4.2).
    pub fn content_lmtp(&mut self, message: &[u8], accepted: usize) {
        dot_stuff(message, &mut self.out);
        for _ in 0..accepted {
            self.awaiting.push_back(Command::Content);
        }
    }

    /// `BDAT <size> [LAST]` and the chunk as it is (RFC 3030: no stuffing).
    pub fn bdat(&mut self, chunk: &[u8], last: bool) {
        let line = format!("BDAT {}{}", chunk.len(), if last { " LAST" } else { "" });
        self.command(&line, Command::Bdat);
        self.out.extend_from_slice(chunk);
    }

    /// `RSET`.
    pub fn rset(&mut self) {
        self.command("RSET", Command::Rset);
    }

    /// `NOOP`.
    pub fn noop(&mut self) {
        self.command("NOOP", Command::Noop);
    }

    /// `QUIT`.
    pub fn quit(&mut self) {
        self.command("QUIT", Command::Quit);
    }
}

/// Appends `message` as DATA content to `out`, then the end of data.
/// Every line end becomes CRLF (a bare CR or LF too) and a line starting
/// with a dot gets another (RFC 5321 4.5.2), so the content cannot end the
/// data early.
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 32 + 5);
    let mut rest = message;
    loop {
        // One line: its text, then its end (CRLF, or a bare CR or LF,
        // each written as CRLF).
        let end = memchr::memchr2(b'\r', b'\n', rest);
        let text = &rest[..end.unwrap_or(rest.len())];
        if text.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(text);
        let Some(i) = end else {
            if !text.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            break;
        };
        out.extend_from_slice(b"\r\n");
        let step = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[i + step..];
        if rest.is_empty() {
            break;
        }
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests;
