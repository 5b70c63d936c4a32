//! The server side of one SMTP session, as a state machine that does no IO
//! and reads no clock.
//!
//! Bytes go in with [`Session::feed`]; replies come out of
//! [`Session::take_output`]; whatever needs a decision from outside (accept
//! this sender? this recipient? is the message stored?) comes out of
//! [`Session::poll_event`] and is answered with [`Session::resolve`]. While a
//! decision is pending, `feed` consumes nothing, so replies always leave in
//! the order of the commands, however many the client pipelined (RFC 2920).
//!
//! Invariants:
//! - `feed` never fails and never panics: every client mistake becomes a
//!   queued reply from [`crate::reply`]; only [`Event::Close`] ends a session.
//! - Memory is bounded by the limits, whatever the client sends: a command
//!   line past its limit is skipped, not buffered; content past the size
//!   limit is counted, not kept.
//! - The transaction is reset on RSET, EHLO/HELO, and after every end of
//!   data, whatever its outcome.
//!
//! Not here: sockets, timers, TLS, storage, policy. The driver owns those and
//! tells the session what happened (`on_timeout`, `shutdown`).
//!
//! # Layout
//! - `limits`: `Limits` and `ConnInfo`;
//! - `event`: `Event`, `Verdict`, `Tally`;
//! - this file: the `Session` itself, feeding, verdicts, replies;
//! - `helo`, `mail`, `content`, `auth`: one file per group of verbs;
//! - `timing`: timeouts, deadlines and the tarpit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::AddressError;
use crate::command::{self, PathError, Verb};
use crate::data::{BdatDecoder, DataDecoder, Outcome};
use crate::mime::{MimeProblem, MimeScanner};
use crate::params::ParamError;
use crate::reply::{self, Reply};
use crate::sasl::{self, MAX_SASL_LINE, Mechanism, SaslError, Secret};
use crate::scram;

mod auth;
mod content;
mod event;
mod helo;
mod limits;
mod mail;
mod timing;

use auth::{SaslStep, ScramExchange};
pub use event::{Event, Tally, Verdict};
pub use limits::{ConnInfo, Limits};

/// RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 1870 section 3: SIZE adds 26 octets to MAIL.
const SIZE_EXTRA: usize = 26;
/// RFC 6531 section 3.4: SMTPUTF8 adds 10 octets to MAIL and RCPT.
const SMTPUTF8_EXTRA: usize = 10;
/// RFC 4954 section 5: the AUTH= parameter adds 500 octets to MAIL.
const AUTH_EXTRA: usize = 500;
/// Decoded content is handed out in pieces of about this size.
const BODY_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Mail,
    Rcpt,
    DataEnd,
    Status,
    Auth,
    ScramFirst,
    ScramFinal,
}

#[derive(Debug)]
enum Input {
    /// Reading command lines.
    Command,
    /// Skipping the rest of an over-long command line.
    DiscardLine,
    /// Inside DATA.
    Data(DataDecoder),
    /// Inside a BDAT chunk: `remaining` octets still belong to it.
    Bdat {
        size: u64,
        remaining: u64,
        last: bool,
        keep: bool,
    },
    /// STARTTLS accepted: the driver runs the handshake; any plaintext
    /// still arriving is discarded.
    TlsPending,
    /// Closed: nothing more is read.
    Closed,
}

#[derive(Debug)]
struct Transaction {
    smtputf8: bool,
    recipients: usize,
    bdat: Option<BdatDecoder>,
}

/// One SMTP session, server side.
#[derive(Debug)]
pub struct Session {
    limits: Arc<Limits>,
    conn: ConnInfo,
    input: Input,
    /// A command line split across reads.
    line: Vec<u8>,
    helo: Option<String>,
    extended: bool,
    tx: Option<Transaction>,
    /// MAIL parameters waiting for the verdict, to open the transaction.
    pending_utf8: bool,
    pending: Option<Pending>,
    events: VecDeque<Event>,
    body: Vec<u8>,
    out: Vec<u8>,
    errors: u32,
    /// Refused by policy: only QUIT is answered (RFC 5321 3.1).
    refused: bool,
    /// The user who authenticated, if any.
    authenticated: Option<String>,
    /// The user of the AUTH awaiting its verdict.
    pending_user: String,
    auth_failures: u32,
    sasl: Option<SaslStep>,
    /// A SCRAM exchange under way.
    scram: Option<Box<ScramExchange>>,
    tally: Tally,
    /// The structure check of the content being received.
    mime: Option<MimeScanner>,
    /// Recipients refused by policy in this session.
    refused_recipients: u32,
    /// How long the driver should wait before sending what is queued.
    delay: Duration,
    /// When the command or content being read must be complete.
    deadline: Option<(Phase, Instant)>,
    /// A command line ended since the last [`Session::after_read`].
    line_ended: bool,
}

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Command,
    Content,
}

impl Session {
    /// A new session; the greeting is already queued.
    pub fn new(limits: Arc<Limits>, conn: ConnInfo) -> Session {
        let mut out = Vec::with_capacity(128);
        reply::greeting(&limits.hostname, &limits.version).write_to(&mut out);
        let mut tally = Tally::default();
        tally.reply(220);
        Session {
            limits,
            conn,
            input: Input::Command,
            line: Vec::new(),
            helo: None,
            extended: false,
            tx: None,
            pending_utf8: false,
            pending: None,
            events: VecDeque::new(),
            body: Vec::new(),
            out,
            errors: 0,
            refused: false,
            authenticated: None,
            pending_user: String::new(),
            auth_failures: 0,
            sasl: None,
            scram: None,
            tally,
            mime: None,
            refused_recipients: 0,
            delay: Duration::ZERO,
            deadline: None,
            line_ended: false,
        }
    }

    /// A session that refuses the client (contract: "client refused by
    /// policy"): `554` instead of the greeting, then only QUIT is answered
    /// (RFC 5321 3.1), every other command with `503`.
    pub fn refused(limits: Arc<Limits>) -> Session {
        let r = reply::service_unavailable(&limits.hostname);
        Session::refused_with(limits, &r)
    }

    /// A session that refuses the client with `r` (a block list's reply,
    /// naming the list) instead of the greeting; then as [`Session::refused`].
    pub fn refused_with(limits: Arc<Limits>, r: &Reply) -> Session {
        let mut s = Session::new(limits, ConnInfo::default());
        s.out.clear();
        s.tally = Tally::default();
        s.tally.reply(r.code);
        r.write_to(&mut s.out);
        s.refused = true;
        s
    }

    /// Feeds bytes from the client. Returns how many were consumed; fewer
    /// than given when an event awaits its verdict (feed the rest after
    /// [`Session::resolve`]) or the session is closed.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut pos = 0;
        while pos < input.len() && self.pending.is_none() {
            let rest = &input[pos..];
            match &mut self.input {
                // Plaintext behind STARTTLS is never read as commands.
                Input::Closed | Input::TlsPending => return input.len(),
                Input::Command => pos += self.feed_command(rest),
                Input::DiscardLine => match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        pos += i + 1;
                        self.input = Input::Command;
                        self.error(reply::line_too_long());
                    }
                    None => pos = input.len(),
                },
                Input::Data(dec) => {
                    let before = self.body.len();
                    let (n, done) = dec.decode(rest, &mut self.body);
                    if let Some(m) = self.mime.as_mut() {
                        m.feed(&self.body[before..]);
                    }
                    pos += n;
                    if let Some(outcome) = done {
                        self.input = Input::Command;
                        self.end_of_content(outcome);
                    }
                }
                Input::Bdat {
                    size,
                    remaining,
                    last,
                    keep,
                } => {
                    let n = (*remaining).min(rest.len() as u64) as usize;
                    *remaining -= n as u64;
                    let (done, size, last, keep) = (*remaining == 0, *size, *last, *keep);
                    if keep && let Some(dec) = self.tx.as_mut().and_then(|t| t.bdat.as_mut()) {
                        let before = self.body.len();
                        dec.decode(&rest[..n], &mut self.body);
                        if let Some(m) = self.mime.as_mut() {
                            m.feed(&self.body[before..]);
                        }
                    }
                    pos += n;
                    if done {
                        self.input = Input::Command;
                        self.end_of_chunk(size, last, keep);
                    }
                }
            }
            if self.body.len() >= BODY_CHUNK {
                self.push_body_event();
            }
        }
        if !self.body.is_empty() && matches!(self.input, Input::Data(_) | Input::Bdat { .. }) {
            self.push_body_event();
        }
        pos
    }

    fn push_body_event(&mut self) {
        if self.events.back() != Some(&Event::Body) {
            self.events.push_back(Event::Body);
        }
    }

    /// Consumes command input up to and including one line, if complete.
    fn feed_command(&mut self, rest: &[u8]) -> usize {
        let cap = self.max_buffered_line();
        let Some(i) = memchr::memchr(b'\n', rest) else {
            if self.line.len() + rest.len() > cap {
                self.line.clear();
                self.sasl = None;
                self.scram = None;
                self.input = Input::DiscardLine;
            } else {
                self.line.extend_from_slice(rest);
            }
            return rest.len();
        };
        let seg = &rest[..i];
        if self.line.len() + seg.len() > cap {
            self.line.clear();
            // An over-long answer ends an AUTH exchange: the next line is
            // a command again.
            self.sasl = None;
            self.scram = None;
            self.error(reply::line_too_long());
        } else if self.line.is_empty() {
            self.handle_line(seg);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(seg);
            self.handle_line(&line);
            line.clear();
            self.line = line;
        }
        i + 1
    }

    /// Returns the next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Moves the decoded content received so far into `out` (appending).
    pub fn take_body(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.body);
        } else {
            out.append(&mut self.body);
        }
    }

    /// Moves the queued replies into `out` (appending).
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.out);
        } else {
            out.append(&mut self.out);
        }
    }

    /// Returns true if and only if replies are waiting.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Returns true if and only if the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.input, Input::Closed)
    }

    /// The name the client gave in EHLO/HELO, if any.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// Returns true if and only if the client greeted with EHLO.
    pub fn is_extended(&self) -> bool {
        self.extended
    }

    /// The user who authenticated in this session, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Returns true if and only if TLS is active on the connection.
    pub fn is_tls(&self) -> bool {
        self.conn.tls_active
    }

    /// The TLS handshake after STARTTLS succeeded: everything learnt before
    /// it is forgotten (RFC 3207 section 4.2) and the client must EHLO again.
    pub fn tls_established(&mut self) {
        self.reset_transaction();
        self.helo = None;
        self.extended = false;
        self.authenticated = None;
        self.sasl = None;
        self.scram = None;
        self.line.clear();
        self.conn.tls_active = true;
        if matches!(self.input, Input::TlsPending) {
            self.input = Input::Command;
        }
    }

    /// The longest command line kept in memory: AUTH lines may be long
    /// (RFC 4954), everything else is short.
    fn max_buffered_line(&self) -> usize {
        if self.conn.auth_offered {
            MAX_SASL_LINE
        } else {
            MAX_COMMAND_LINE + SIZE_EXTRA + SMTPUTF8_EXTRA
        }
    }

    /// Returns true if and only if the session is between commands: no
    /// content is being read and no verdict is pending.
    pub fn is_idle(&self) -> bool {
        matches!(self.input, Input::Command) && self.line.is_empty() && self.pending.is_none()
    }

    /// Ends the session with `r` (a `421`): the driver could not go on (the
    /// backend failed). Whatever was pending is dropped.
    pub fn abort(&mut self, r: Reply) {
        self.close_with(r);
    }

    /// The server is stopping. Returns true if and only if the session was
    /// idle and is now closed with `421`; a session in the middle of a
    /// message is left to finish (call again later).
    pub fn shutdown(&mut self) -> bool {
        if !self.is_idle() {
            return false;
        }
        self.close_with(reply::shutting_down(&self.limits.hostname));
        true
    }

    /// Answers the pending [`Event::Mail`], [`Event::Rcpt`] or
    /// [`Event::DataEnd`]. Ignored when nothing is pending.
    pub fn resolve(&mut self, verdict: Verdict) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match (pending, verdict) {
            (Pending::Mail, Verdict::Accept) => {
                self.tx = Some(Transaction {
                    smtputf8: self.pending_utf8,
                    recipients: 0,
                    bdat: None,
                });
                self.send(reply::sender_ok());
            }
            (Pending::Rcpt, Verdict::Accept) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.recipients += 1;
                }
                self.send(reply::recipient_ok());
            }
            (Pending::DataEnd, Verdict::Queued(id)) => self.send(reply::queued(&id)),
            (Pending::Auth, Verdict::Accept) => {
                self.authenticated = Some(std::mem::take(&mut self.pending_user));
                self.send(reply::auth_ok());
            }
            (Pending::ScramFirst, Verdict::Challenge(text)) => self.scram_challenge(true, text),
            (Pending::ScramFinal, Verdict::Challenge(text)) => self.scram_challenge(false, text),
            (Pending::Auth | Pending::ScramFirst | Pending::ScramFinal, Verdict::Reject(r)) => {
                self.pending_user.clear();
                self.scram = None;
                // A temporary refusal (454: no room to check) is not a
                // failed attempt.
                let failed = r.code >= 500;
                self.send(r);
                self.auth_failures += u32::from(failed);
                if self.auth_failures >= self.limits.max_auth_failures {
                    self.close_with(reply::too_many_auth_failures());
                }
            }
            (Pending::DataEnd, Verdict::Reject(r)) => self.send(r),
            (Pending::Rcpt, Verdict::Reject(r)) => self.refuse_recipient(r),
            // A policy refusal (relaying denied, unknown mailbox) is not a
            // client mistake: it does not count toward `max_errors`, so a
            // sender with a few bad addresses is not cut off.
            (_, Verdict::Reject(r)) => self.send(r),
            // A verdict that does not fit the event: refuse rather than guess.
            (_, _) => self.send(reply::local_error()),
        }
    }

    /// The counts of commands and replies so far; the driver adds them to
    /// its metrics and clears them.
    pub fn tally_mut(&mut self) -> &mut Tally {
        &mut self.tally
    }

    /// Answers the pending [`Event::Status`] with the lines of a `211` reply.
    pub fn resolve_status(&mut self, lines: Vec<String>) {
        if self.pending.take() == Some(Pending::Status) {
            self.send(reply::status(lines));
        }
    }

    fn send(&mut self, r: Reply) {
        r.write_to(&mut self.out);
        self.tally.reply(r.code);
        // RFC 5321 3.8: 421 means the server is closing the channel.
        if r.code == 421 && !self.is_closed() {
            self.close();
        }
    }

    /// Sends a reply to a bad command and counts it; past the limit the
    /// session ends with `421` (as Postfix's smtpd_hard_error_limit does).
    fn error(&mut self, r: Reply) {
        self.send(r);
        self.errors = self.errors.saturating_add(1);
        if self.errors >= self.limits.max_errors && !self.is_closed() {
            self.close_with(reply::too_many_errors(&self.limits.hostname));
        }
    }

    fn close_with(&mut self, r: Reply) {
        if self.is_closed() {
            return;
        }
        self.send(r);
        if !self.is_closed() {
            self.close();
        }
    }

    fn close(&mut self) {
        self.reset_transaction();
        self.pending = None;
        self.input = Input::Closed;
        self.events.push_back(Event::Close);
    }

    fn reset_transaction(&mut self) {
        self.mime = None;
        if self.tx.take().is_some() {
            self.body.clear();
            self.events.push_back(Event::Reset);
        }
    }

    fn handle_line(&mut self, line: &[u8]) {
        self.line_ended = true;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(step) = self.sasl.take() {
            return self.handle_sasl_line(step, line);
        }
        let (verb, args) = Verb::split(line);
        self.tally.commands[verb.index()] += 1;
        // RFC 5321 4.5.3.1.4 and the extensions' allowances (contract row
        // "command line longer than 512 octets").
        let limit = match verb {
            Verb::Mail if self.conn.auth_offered => {
                MAX_COMMAND_LINE + SIZE_EXTRA + SMTPUTF8_EXTRA + AUTH_EXTRA
            }
            Verb::Mail => MAX_COMMAND_LINE + SIZE_EXTRA + SMTPUTF8_EXTRA,
            Verb::Auth => MAX_SASL_LINE,
            Verb::Rcpt => MAX_COMMAND_LINE + SMTPUTF8_EXTRA,
            _ => MAX_COMMAND_LINE,
        };
        if line.len() + 2 > limit {
            return self.error(reply::line_too_long());
        }
        if self.refused {
            // A refused client (RFC 5321 3.1): only QUIT gets an answer.
            return match verb {
                Verb::Quit => self.close_with(reply::bye(&self.limits.hostname)),
                _ => self.send(reply::refused_sequence()),
            };
        }
        match verb {
            Verb::Ehlo | Verb::Helo => self.handle_helo(verb, args),
            Verb::Mail => self.handle_mail(args),
            Verb::Rcpt => self.handle_rcpt(args),
            Verb::Data => self.handle_data(args),
            Verb::Bdat => self.handle_bdat(args),
            Verb::Rset if !args.is_empty() => self.error(reply::syntax("RSET")),
            Verb::Rset => {
                self.reset_transaction();
                self.send(reply::ok());
            }
            Verb::Noop => self.send(reply::ok()),
            Verb::Quit if !args.is_empty() => self.error(reply::syntax("QUIT")),
            Verb::Quit => self.close_with(reply::bye(&self.limits.hostname)),
            Verb::Help => self.handle_help(args),
            Verb::Vrfy if args.is_empty() => self.error(reply::syntax("VRFY <address>")),
            Verb::Vrfy => self.send(reply::cannot_vrfy()),
            Verb::Expn => self.error(reply::no_expn()),
            Verb::StartTls => self.handle_starttls(args),
            Verb::Auth => self.handle_auth(args),
            Verb::NotImplemented => self.error(reply::not_implemented()),
            Verb::Unknown => self.error(reply::unrecognized()),
        }
    }
}

fn path_error(e: PathError, structure: fn() -> Reply, address: fn() -> Reply) -> Reply {
    match e {
        PathError::Structure => structure(),
        PathError::Address(AddressError::Syntax) => address(),
        PathError::Address(AddressError::NeedsUtf8) => reply::needs_smtputf8(),
        PathError::Param(ParamError::Unknown(name)) => reply::unsupported_parameter(&name),
        PathError::Param(ParamError::Syntax(name)) => reply::parameter_syntax(&name),
    }
}
