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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::{AddressError, ForwardPath, ReversePath};
use crate::command::{self, PathError, Verb};
use crate::data::{BareLinePolicy, BdatDecoder, DataDecoder, Outcome};
use crate::mime::{MimeLimits, MimeProblem, MimeScanner};
use crate::params::{MailParams, ParamError, RcptParams};
use crate::reply::{self, Reply};
use crate::sasl::{self, MAX_SASL_LINE, Mechanism, SaslError, Secret};

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

/// The limits and identity a session works with. Defaults are the RFC's
/// values where it gives one, and Postfix's where it leaves the choice.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The name in the greeting and replies.
    pub hostname: String,
    /// The software version in the greeting.
    pub version: String,
    /// The most octets a message may have (advertised as `SIZE`). Default
    /// 36 MiB: a 25 MiB attachment after base64, as the large providers
    /// accept (Microsoft 365's default receive limit is 36 MB).
    pub max_message_size: u64,
    /// Recipients per transaction. RFC 5321 4.5.3.1.8: at least 100.
    pub max_recipients: usize,
    /// Bad commands before `421 Too many errors`. Default 10.
    pub max_errors: u32,
    /// Failed AUTH attempts before `421 Too many authentication failures`.
    /// Default 3, as Postfix's smtpd_hard_error_limit-style caps go low
    /// for credentials.
    pub max_auth_failures: u32,
    /// What to do with a bare CR or LF in content.
    pub bare_line_endings: BareLinePolicy,
    /// Waiting for a command. RFC 5321 4.5.3.2.7: 5 minutes.
    pub command_timeout: Duration,
    /// Waiting for more content inside DATA or BDAT. RFC 5321 4.5.3.2.5:
    /// 3 minutes per data block.
    pub data_timeout: Duration,
    /// Content must arrive at least this fast, in octets per second, once
    /// the first `data_timeout` is used up: each octet read adds 1/rate
    /// seconds to the deadline of the content (Postfix's
    /// `smtpd_min_data_rate`, 500). A 36 MiB message on a slow link still
    /// gets through; a byte every few seconds does not hold a session.
    pub min_data_rate: u64,
    /// How far a message's MIME structure may go: nesting depth and the
    /// size of each header section.
    pub mime: MimeLimits,
    /// Refused recipients in a session before each further refusal is
    /// delayed by `refused_recipient_delay` (Postfix's
    /// `smtpd_soft_error_limit`, 10). Slows mailbox guessing.
    pub soft_refused_recipients: u32,
    /// Refused recipients in a session before it is closed with `421`
    /// (Postfix's `smtpd_hard_error_limit`, 20).
    pub max_refused_recipients: u32,
    /// The delay before each refusal past the soft limit (Postfix's
    /// `smtpd_error_sleep_time`, 1 s).
    pub refused_recipient_delay: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            hostname: "localhost".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_message_size: 36 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_auth_failures: 3,
            bare_line_endings: BareLinePolicy::Reject,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            min_data_rate: 500,
            mime: MimeLimits::default(),
            soft_refused_recipients: 10,
            max_refused_recipients: 20,
            refused_recipient_delay: Duration::from_secs(1),
        }
    }
}

/// What the session knows of its connection.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// May see `HELP STATUS` (loopback clients; later, authenticated ones).
    pub trusted: bool,
    /// A certificate is configured, so STARTTLS can be offered.
    pub starttls_available: bool,
    /// The connection is already encrypted.
    pub tls_active: bool,
    /// AUTH is offered on this listener.
    pub auth_offered: bool,
    /// AUTH is offered (and accepted) only once TLS is active.
    pub auth_requires_tls: bool,
    /// MAIL needs a successful AUTH first (submission listeners).
    pub auth_required: bool,
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// EHLO or HELO was accepted (informational; the name is in [`Session::helo`]).
    Helo,
    /// MAIL FROM, syntactically valid and in sequence: resolve with
    /// [`Verdict::Accept`] or a rejection.
    Mail {
        /// The sender.
        from: ReversePath,
        /// Its parameters.
        params: MailParams,
    },
    /// RCPT TO, syntactically valid, in sequence and under the limit: resolve.
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// Its parameters.
        params: RcptParams,
    },
    /// Decoded content is waiting in [`Session::take_body`].
    Body,
    /// The content is complete and clean: store it, then resolve with
    /// [`Verdict::Queued`] (only once it is on stable storage) or a rejection.
    DataEnd,
    /// The transaction was dropped (RSET, EHLO, a refused message): forget
    /// its sender, recipients and any content received so far.
    Reset,
    /// `HELP STATUS` from a trusted client: resolve with
    /// [`Session::resolve_status`].
    Status,
    /// STARTTLS was accepted and its `220` queued: flush the output, run the
    /// TLS handshake, then call [`Session::tls_established`]. Input read
    /// before the handshake has been discarded (CVE-2011-0411).
    StartTls,
    /// Credentials to check: resolve with [`Verdict::Accept`] or a
    /// rejection (normally [`reply::auth_failed`]).
    Auth {
        /// The mechanism used.
        mechanism: Mechanism,
        /// The identity to act as, if the client gave one (PLAIN).
        authzid: String,
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// The session is over: flush the output, then close.
    Close,
}

/// The driver's answer to an event that needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accept the sender or recipient.
    Accept,
    /// The message is stored durably under this id.
    Queued(String),
    /// Refuse, with this reply.
    Reject(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Mail,
    Rcpt,
    DataEnd,
    Status,
    Auth,
}

/// Where an AUTH exchange stands, between its lines.
#[derive(Debug)]
enum SaslStep {
    /// PLAIN without an initial response: waiting for it.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password.
    LoginPassword(String),
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

/// What a session has seen since its driver last cleared it: commands
/// by verb and replies by code, for metrics. Counting here keeps the driver
/// from parsing its own output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Command lines by verb, indexed by [`Verb::index`].
    pub commands: [u32; Verb::COUNT],
    /// Replies by code, in the order first seen.
    pub replies: Vec<(u16, u32)>,
}

impl Tally {
    fn reply(&mut self, code: u16) {
        match self.replies.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.replies.push((code, 1)),
        }
    }

    /// True if and only if nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty() && self.commands.iter().all(|&n| n == 0)
    }

    /// Starts counting over, keeping the memory (no allocation per read).
    pub fn clear(&mut self) {
        self.commands = [0; Verb::COUNT];
        self.replies.clear();
    }
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
        let mut s = Session::new(limits, ConnInfo::default());
        s.out.clear();
        s.tally = Tally::default();
        s.tally.reply(554);
        reply::service_unavailable(&s.limits.hostname).write_to(&mut s.out);
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
                self.input = Input::DiscardLine;
            } else {
                self.line.extend_from_slice(rest);
            }
            return rest.len();
        };
        let seg = &rest[..i];
        if self.line.len() + seg.len() > cap {
            self.line.clear();
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

    /// The timeout that applies to the next read (RFC 5321 4.5.3.2).
    pub fn read_timeout(&self) -> Duration {
        match self.input {
            Input::Data(_) | Input::Bdat { .. } => self.limits.data_timeout,
            _ => self.limits.command_timeout,
        }
    }

    /// How long a write of replies may take before the client is given up:
    /// the command timeout (RFC 5321 4.5.3.2.7).
    pub fn command_timeout(&self) -> Duration {
        self.limits.command_timeout
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

    /// The client was silent past [`Session::read_timeout`]: `421` and close.
    pub fn on_timeout(&mut self) {
        self.close_with(reply::timeout(&self.limits.hostname));
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
            (Pending::Auth, Verdict::Reject(r)) => {
                self.pending_user.clear();
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

    /// A recipient refused by policy: not a client mistake (it does not
    /// count toward `max_errors`), but guessing mailboxes is slowed past the
    /// soft limit and cut off at the hard one.
    fn refuse_recipient(&mut self, r: Reply) {
        self.send(r);
        self.refused_recipients = self.refused_recipients.saturating_add(1);
        if self.refused_recipients >= self.limits.max_refused_recipients {
            self.close_with(reply::too_many_refused_recipients(&self.limits.hostname));
        } else if self.refused_recipients > self.limits.soft_refused_recipients {
            self.delay += self.limits.refused_recipient_delay;
        }
    }

    /// How long to wait before sending the replies queued now (a tarpit
    /// for refused recipients past the soft limit), and starts over.
    /// Zero: send at once.
    pub fn take_delay(&mut self) -> Duration {
        std::mem::take(&mut self.delay)
    }

    /// Tells the session that `read` octets were read at `now` and fed.
    /// It keeps the deadline of what is being read: a command line must be
    /// complete within the command timeout of its first octet (RFC 5321
    /// 4.5.3.2 times each command, not each read), and content must keep
    /// up `min_data_rate` after a first `data_timeout`.
    pub fn after_read(&mut self, now: Instant, read: usize) {
        let in_content = matches!(self.input, Input::Data(_) | Input::Bdat { .. })
            || matches!(self.input, Input::Command)
                && self.tx.as_ref().is_some_and(|t| t.bdat.is_some());
        let in_command = matches!(self.input, Input::DiscardLine)
            || matches!(self.input, Input::Command) && !self.line.is_empty();
        // A line completed in this read: the line now in hand (if any) is
        // a new one, with a deadline of its own.
        let new_line = std::mem::take(&mut self.line_ended);
        self.deadline = match self.deadline {
            _ if self.pending.is_some() => None,
            Some((Phase::Content, at)) if in_content => {
                let rate = self.limits.min_data_rate.max(1);
                let earned = at + Duration::from_secs_f64(read as f64 / rate as f64);
                // Credit is not banked: fast octets now do not pay for a
                // crawl later, past one data timeout from now.
                Some((Phase::Content, earned.min(now + self.limits.data_timeout)))
            }
            _ if in_content => Some((Phase::Content, now + self.limits.data_timeout)),
            Some((Phase::Command, at)) if in_command && !new_line => Some((Phase::Command, at)),
            _ if in_command => Some((Phase::Command, now + self.limits.command_timeout)),
            _ => None,
        };
    }

    /// When what is being read must be complete, if anything is: past it,
    /// the driver calls [`Session::on_timeout`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|(_, at)| at)
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

    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.limits.max_message_size),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
        ];
        if self.conn.starttls_available && !self.conn.tls_active {
            caps.push("STARTTLS".to_owned());
        }
        if self.auth_advertised() {
            caps.push("AUTH PLAIN LOGIN".to_owned());
        }
        caps.push("HELP".to_owned());
        caps
    }

    fn handle_helo(&mut self, verb: Verb, args: &[u8]) {
        let extended = verb == Verb::Ehlo;
        let Some(name) = command::parse_helo(args, extended) else {
            return self.error(reply::helo_syntax(verb.name()));
        };
        // RFC 5321 4.1.4: a second EHLO/HELO resets the transaction.
        self.reset_transaction();
        self.helo = Some(name);
        self.extended = extended;
        self.events.push_back(Event::Helo);
        let r = if extended {
            reply::ehlo(&self.limits.hostname, &self.capabilities())
        } else {
            reply::helo(&self.limits.hostname)
        };
        self.send(r);
    }

    fn handle_mail(&mut self, args: &[u8]) {
        if self.helo.is_none() {
            return self.error(reply::send_helo_first());
        }
        if self.tx.is_some() {
            return self.error(reply::nested_mail());
        }
        if self.conn.auth_required && self.authenticated.is_none() {
            return self.error(reply::auth_required());
        }
        match command::parse_mail(args) {
            Ok((from, params)) => {
                if params.auth && !self.auth_advertised() {
                    // RFC 4954 section 5: AUTH= only where AUTH was offered.
                    return self.error(reply::unsupported_parameter("AUTH"));
                }
                if params
                    .size
                    .is_some_and(|n| n > self.limits.max_message_size)
                {
                    return self.error(reply::too_big());
                }
                self.pending_utf8 = params.smtputf8;
                self.pending = Some(Pending::Mail);
                self.events.push_back(Event::Mail { from, params });
            }
            Err(e) => self.error(path_error(e, reply::mail_syntax, reply::bad_sender_syntax)),
        }
    }

    fn handle_rcpt(&mut self, args: &[u8]) {
        let Some(tx) = self.tx.as_ref() else {
            return self.error(reply::need_mail());
        };
        if tx.bdat.is_some() {
            // RFC 3030: recipients come before the first BDAT.
            return self.error(reply::rcpt_after_bdat());
        }
        let (utf8, count) = (tx.smtputf8, tx.recipients);
        match command::parse_rcpt(args, utf8) {
            Ok(_) if count >= self.limits.max_recipients => {
                // A 4xx the client is expected to act on (RFC 5321 4.5.3.1.10),
                // not a mistake: not counted as an error.
                self.send(reply::too_many_recipients());
            }
            Ok((to, params)) => {
                self.pending = Some(Pending::Rcpt);
                self.events.push_back(Event::Rcpt { to, params });
            }
            Err(e) => self.error(path_error(
                e,
                reply::rcpt_syntax,
                reply::bad_recipient_syntax,
            )),
        }
    }

    fn ready_for_content(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.recipients > 0)
    }

    fn handle_data(&mut self, args: &[u8]) {
        if !args.is_empty() {
            return self.error(reply::syntax("DATA"));
        }
        if self.tx.as_ref().is_some_and(|t| t.bdat.is_some()) {
            return self.error(reply::data_after_bdat());
        }
        if !self.ready_for_content() {
            return self.error(reply::need_rcpt());
        }
        self.input = Input::Data(DataDecoder::new(
            self.limits.max_message_size,
            self.limits.bare_line_endings,
        ));
        self.mime = Some(MimeScanner::new(self.limits.mime));
        self.send(reply::start_data());
    }

    fn handle_bdat(&mut self, args: &[u8]) {
        let Some((size, last)) = command::parse_bdat(args) else {
            // The octet stream can no longer be framed: close (contract).
            self.send(reply::bdat_syntax());
            self.close();
            return;
        };
        let keep = self.ready_for_content();
        if keep && let Some(tx) = self.tx.as_mut() {
            tx.bdat.get_or_insert_with(|| {
                self.mime = Some(MimeScanner::new(self.limits.mime));
                BdatDecoder::new(self.limits.max_message_size, self.limits.bare_line_endings)
            });
        }
        if size == 0 {
            self.end_of_chunk(0, last, keep);
        } else {
            self.input = Input::Bdat {
                size,
                remaining: size,
                last,
                keep,
            };
        }
    }

    fn end_of_chunk(&mut self, size: u64, last: bool, keep: bool) {
        if !keep {
            return self.error(reply::need_rcpt());
        }
        let Some(dec) = self.tx.as_mut().and_then(|t| t.bdat.as_mut()) else {
            return self.error(reply::need_rcpt());
        };
        if last {
            let before = self.body.len();
            let outcome = dec.finish(&mut self.body);
            if let Some(m) = self.mime.as_mut() {
                m.feed(&self.body[before..]);
            }
            return self.end_of_content(outcome);
        }
        if dec.too_big() {
            self.reset_transaction();
            return self.send(reply::too_big());
        }
        self.send(reply::chunk_received(size));
    }

    fn end_of_content(&mut self, outcome: Outcome) {
        let structure = self.mime.take().and_then(|mut m| {
            m.finish();
            m.problem()
        });
        match outcome {
            // Size and line endings are checked first: they are the
            // framing; the structure is a check of what was framed.
            Outcome::Complete if structure.is_some() => {
                self.reset_transaction();
                self.send(match structure {
                    Some(MimeProblem::TooDeep) => reply::mime_too_deep(),
                    _ => reply::header_too_big(),
                });
            }
            Outcome::Complete => {
                if !self.body.is_empty() {
                    self.push_body_event();
                }
                self.pending = Some(Pending::DataEnd);
                self.events.push_back(Event::DataEnd);
                // The transaction is over whatever the verdict (RFC 5321 4.1.1.4).
                self.tx = None;
            }
            Outcome::TooBig => {
                self.reset_transaction();
                self.send(reply::too_big());
            }
            Outcome::BareLineEnding => {
                self.reset_transaction();
                self.send(reply::bare_line_ending());
            }
        }
    }

    fn handle_help(&mut self, args: &[u8]) {
        if args.eq_ignore_ascii_case(b"STATUS")
            && (self.conn.trusted || self.authenticated.is_some())
        {
            self.pending = Some(Pending::Status);
            self.events.push_back(Event::Status);
            return;
        }
        let (verb, _) = Verb::split(args);
        let usage = match verb {
            Verb::Ehlo => "EHLO <hostname>: greet the server and list its extensions",
            Verb::Helo => "HELO <hostname>: greet the server (no extensions)",
            Verb::Mail => {
                "MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]: start a message"
            }
            Verb::Rcpt => "RCPT TO:<address>: add a recipient (up to the recipient limit)",
            Verb::Data => "DATA: send the message, ended by a line with a single dot",
            Verb::Bdat => "BDAT <size> [LAST]: send the next <size> octets of the message",
            Verb::Rset => "RSET: abandon the current message",
            Verb::Noop => "NOOP: do nothing",
            Verb::Quit => "QUIT: end the session",
            Verb::Vrfy => "VRFY <address>: not answered; mail is accepted and delivery attempted",
            Verb::Help => "HELP [command]: this help",
            _ => "",
        };
        let mut lines = vec![format!(
            "Postel {} on {}",
            self.limits.version, self.limits.hostname
        )];
        if usage.is_empty() {
            lines.push(
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP".to_owned(),
            );
            lines.push("HELP <command> describes one command".to_owned());
        } else {
            lines.push(usage.to_owned());
        }
        lines.push("End of HELP info".to_owned());
        self.send(reply::help(lines));
    }

    fn handle_starttls(&mut self, args: &[u8]) {
        if self.conn.tls_active {
            return self.error(reply::tls_already_active());
        }
        if !self.conn.starttls_available {
            return self.error(reply::starttls_unavailable());
        }
        if !args.is_empty() {
            return self.error(reply::syntax("STARTTLS"));
        }
        self.send(reply::ready_for_tls());
        self.line.clear();
        self.input = Input::TlsPending;
        self.events.push_back(Event::StartTls);
    }

    /// AUTH is listed in EHLO: offered here, and TLS is up if it must be.
    fn auth_advertised(&self) -> bool {
        self.conn.auth_offered && (self.conn.tls_active || !self.conn.auth_requires_tls)
    }

    fn handle_auth(&mut self, args: &[u8]) {
        if !self.conn.auth_offered {
            return self.error(reply::not_implemented());
        }
        if self.helo.is_none() {
            return self.error(reply::send_helo_first());
        }
        if !self.auth_advertised() {
            return self.error(reply::tls_required_for_auth());
        }
        if self.authenticated.is_some() {
            return self.error(reply::already_authenticated());
        }
        if self.tx.is_some() {
            return self.error(reply::auth_in_transaction());
        }
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let (Some(mech), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.error(reply::syntax("AUTH mechanism [initial-response]"));
        };
        let Some(mechanism) = Mechanism::parse(mech) else {
            return self.error(reply::unknown_mechanism());
        };
        match (mechanism, initial) {
            (Mechanism::Plain, None) => self.challenge(SaslStep::Plain, ""),
            (Mechanism::Login, None) => self.challenge(SaslStep::LoginUser, "Username:"),
            (_, Some(line)) => {
                let step = if mechanism == Mechanism::Plain {
                    SaslStep::Plain
                } else {
                    SaslStep::LoginUser
                };
                self.handle_sasl_line(step, line);
            }
        }
    }

    fn challenge(&mut self, step: SaslStep, text: &str) {
        self.sasl = Some(step);
        self.send(reply::sasl_challenge(&sasl::challenge(text)));
    }

    /// One client line of an AUTH exchange (RFC 4954 section 4).
    fn handle_sasl_line(&mut self, step: SaslStep, line: &[u8]) {
        if line.len() + 2 > MAX_SASL_LINE {
            return self.error(reply::line_too_long());
        }
        let text = match sasl::decode_line(line) {
            Ok(t) => t,
            Err(SaslError::Cancelled) => return self.error(reply::auth_cancelled()),
            Err(SaslError::Decode) => return self.error(reply::cannot_decode()),
        };
        let (mechanism, authzid, username, password) = match step {
            SaslStep::Plain => match sasl::parse_plain(&text) {
                Ok((z, u, p)) => (Mechanism::Plain, z, u, p),
                Err(_) => return self.error(reply::cannot_decode()),
            },
            SaslStep::LoginUser => {
                return self.challenge(SaslStep::LoginPassword(text), "Password:");
            }
            SaslStep::LoginPassword(user) => (Mechanism::Login, String::new(), user, Secret(text)),
        };
        self.pending_user.clone_from(&username);
        self.pending = Some(Pending::Auth);
        self.events.push_back(Event::Auth {
            mechanism,
            authzid,
            username,
            password,
        });
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
