//! What comes out of a session besides replies: the events the driver acts
//! on ([`Event`]), its answers ([`Verdict`]), and the counts for metrics
//! ([`Tally`]).

use crate::address::{ForwardPath, ReversePath};
use crate::command::Verb;
use crate::params::{MailParams, RcptParams};
use crate::reply::Reply;
use crate::sasl::{Mechanism, Secret};

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
    /// SCRAM-SHA-256's first message: look the user's keys up and resolve
    /// with [`Verdict::Challenge`] carrying the server's first message
    /// (`scram::server_first`), or a rejection.
    ScramFirst {
        /// The identity to act as, if the client gave one.
        authzid: String,
        /// The user name.
        username: String,
        /// The client's nonce, which the server's message extends.
        nonce: String,
    },
    /// SCRAM-SHA-256's final message: check the proof against the keys
    /// looked up for [`Event::ScramFirst`], then resolve with
    /// [`Verdict::Challenge`] carrying `v=` and the server's signature,
    /// or a rejection (normally [`reply::auth_failed`]).
    ScramFinal {
        /// The AuthMessage that both sides sign.
        auth_message: String,
        /// The client's proof.
        proof: Vec<u8>,
    },
    /// The client took the server's signature: the SCRAM login is
    /// complete (`235` is sent). Until this, a proof that checked out is
    /// not a login: the client may still cancel.
    ScramDone,
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
    /// Send this text (not yet base64) as a SASL challenge, and go on.
    Challenge(String),
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
    pub(super) fn reply(&mut self, code: u16) {
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
