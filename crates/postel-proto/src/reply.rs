//! SMTP replies, and the one table every reply Postel sends comes from.
//!
//! Each constructor here is one row of the reply contract
//! (`docs/replies.md` in this repository), and cites it. No other module writes a reply
//! code or text: that keeps the wire behaviour reviewable in one screen and
//! makes a change to the contract a change to this file alone.
//!
//! Enhanced status codes (RFC 2034, RFC 3463) go on every reply except the
//! `220` greeting and the replies to EHLO/HELO (RFC 2034 section 4), and on
//! every line of a multi-line reply.

use std::fmt::Write as _;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

/// One SMTP reply: a three-digit code, an optional enhanced code, and one or
/// more lines of text (more than one makes a multi-line reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The RFC 5321 basic reply code, 200 to 599.
    pub code: u16,
    /// The enhanced code sent before the text of every line, if any.
    pub enhanced: Option<EnhancedCode>,
    /// The text lines. Never empty; never containing CR or LF.
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply with one line of text.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply.
    pub fn multi(code: u16, enhanced: Option<EnhancedCode>, lines: Vec<String>) -> Reply {
        debug_assert!(!lines.is_empty());
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// Returns true if and only if this is a permanent or transient failure
    /// (4xx or 5xx).
    pub fn is_negative(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply's wire form (every line ended by CRLF) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(64);
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            s.clear();
            let sep = if i == last { ' ' } else { '-' };
            // Writing to a String cannot fail.
            let _ = write!(s, "{}{}", self.code, sep);
            if let Some(EnhancedCode(a, b, c)) = self.enhanced {
                let _ = write!(s, "{a}.{b}.{c} ");
            }
            s.push_str(line);
            // A text line must never be able to end the reply early or forge
            // another one: strip anything a caller let through.
            s.retain(|ch| ch != '\r' && ch != '\n');
            // And it fits RFC 5321 4.5.3.1.5: 512 octets with the CRLF.
            if s.len() > 510 {
                let mut cut = 510;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a string (tests and logs).
    pub fn to_wire(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

const fn e(a: u8, b: u16, c: u16) -> Option<EnhancedCode> {
    Some(EnhancedCode(a, b, c))
}

// ---- Connection -----------------------------------------------------------

/// Contract "Connection / connection accepted": `220 <hostname> ESMTP Postel <version>`.
/// No enhanced code on the greeting (RFC 2034 section 4).
pub fn greeting(hostname: &str, version: &str) -> Reply {
    Reply::new(220, None, format!("{hostname} ESMTP Postel {version}"))
}

/// Contract "client speaks before the greeting (pregreet, spam bots)":
/// RFC 5321 3.1 and RFC 2920 3.1 have the client wait for the `220`.
pub fn pregreet(hostname: &str) -> Reply {
    Reply::new(
        554,
        e(5, 5, 0),
        format!("{hostname} Protocol error: talked before the greeting"),
    )
}

/// Contract "too many connections (global or per client IP)".
pub fn too_many_connections(hostname: &str) -> Reply {
    Reply::new(
        421,
        e(4, 7, 0),
        format!("{hostname} Too many connections, try again later"),
    )
}

/// Contract "client refused by policy" (RFC 5321 3.1).
pub fn service_unavailable(hostname: &str) -> Reply {
    Reply::new(554, e(5, 7, 1), format!("{hostname} Service unavailable"))
}

/// Contract "idle past the command timeout" (RFC 5321 4.5.3.2.7).
pub fn timeout(hostname: &str) -> Reply {
    Reply::new(421, e(4, 4, 2), format!("{hostname} Timeout exceeded"))
}

/// Contract "too many refused recipients in one session": a sender that
/// guesses mailboxes is cut off (as Postfix's `smtpd_hard_error_limit`
/// does for refused recipients), then the channel closes.
pub fn too_many_refused_recipients(hostname: &str) -> Reply {
    Reply::new(
        421,
        e(4, 7, 0),
        format!("{hostname} Too many refused recipients"),
    )
}

/// Contract "too many bad commands in one session".
pub fn too_many_errors(hostname: &str) -> Reply {
    Reply::new(421, e(4, 7, 0), format!("{hostname} Too many errors"))
}

/// Contract "server shutting down".
pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(421, e(4, 3, 2), format!("{hostname} Service shutting down"))
}

/// Contract "QUIT".
pub fn bye(hostname: &str) -> Reply {
    Reply::new(221, e(2, 0, 0), format!("{hostname} Bye"))
}

// ---- Greeting commands ----------------------------------------------------

/// Contract "EHLO": `250-<hostname>` then one capability a line. No enhanced
/// code (RFC 2034 section 4).
pub fn ehlo(hostname: &str, capabilities: &[String]) -> Reply {
    let mut lines = Vec::with_capacity(capabilities.len() + 1);
    lines.push(hostname.to_owned());
    lines.extend(capabilities.iter().cloned());
    Reply::multi(250, None, lines)
}

/// Contract "HELO": `250 <hostname>`.
pub fn helo(hostname: &str) -> Reply {
    Reply::new(250, None, hostname)
}

/// Contract "EHLO/HELO with no argument or a malformed domain".
pub fn helo_syntax(verb: &str) -> Reply {
    Reply::new(501, e(5, 5, 4), format!("Syntax: {verb} hostname"))
}

// ---- Transaction ----------------------------------------------------------

/// Contract "MAIL FROM accepted" (also the null reverse-path).
pub fn sender_ok() -> Reply {
    Reply::new(250, e(2, 1, 0), "Sender OK")
}

/// Contract "MAIL before EHLO/HELO", and "MAIL after TLS before a new EHLO".
pub fn send_helo_first() -> Reply {
    Reply::new(503, e(5, 5, 1), "Send EHLO/HELO first")
}

/// Contract "client refused by policy": every command but QUIT, after the
/// `554` greeting (RFC 5321 3.1).
pub fn refused_sequence() -> Reply {
    Reply::new(
        503,
        e(5, 5, 1),
        "Bad sequence of commands: only QUIT is accepted",
    )
}

/// RCPT after the first BDAT chunk (RFC 3030 section 2: recipients come
/// before the content).
pub fn rcpt_after_bdat() -> Reply {
    Reply::new(503, e(5, 5, 1), "RCPT not allowed after BDAT")
}

/// Contract "MAIL inside a transaction".
pub fn nested_mail() -> Reply {
    Reply::new(503, e(5, 5, 1), "Nested MAIL command")
}

/// Contract "MAIL without `FROM:` or without `<...>`".
pub fn mail_syntax() -> Reply {
    Reply::new(501, e(5, 5, 4), "Syntax: MAIL FROM:<address>")
}

/// RCPT counterpart of [`mail_syntax`] (RFC 5321 4.1.1.3).
pub fn rcpt_syntax() -> Reply {
    Reply::new(501, e(5, 5, 4), "Syntax: RCPT TO:<address>")
}

/// Contract "mailbox syntactically invalid" and the length limits, for MAIL
/// (seed 004; RFC 3463 X.1.7 "bad sender's mailbox address syntax").
pub fn bad_sender_syntax() -> Reply {
    Reply::new(553, e(5, 1, 7), "Sender address syntax invalid")
}

/// Contract "mailbox syntactically invalid", for RCPT (RFC 3463 X.1.3).
pub fn bad_recipient_syntax() -> Reply {
    Reply::new(553, e(5, 1, 3), "Recipient address syntax invalid")
}

/// Contract "non-ASCII address without SMTPUTF8 on MAIL" (RFC 6531 3.5).
pub fn needs_smtputf8() -> Reply {
    Reply::new(553, e(5, 6, 7), "Non-ASCII address requires SMTPUTF8")
}

/// Client text quoted in a reply: printable ASCII only (others become
/// `?`), and at most 64 characters, so the reply line stays within RFC
/// 5321's 512 octets (4.5.3.1.5) whatever the client sent.
fn quote(s: &str) -> String {
    const MAX: usize = 64;
    let mut q: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.chars().count() > MAX {
        q.push_str("...");
    }
    q
}

/// Contract "unknown MAIL/RCPT parameter" (RFC 5321 4.1.1.11).
pub fn unsupported_parameter(name: &str) -> Reply {
    Reply::new(
        555,
        e(5, 5, 4),
        format!("Unsupported parameter {}", quote(name)),
    )
}

/// A known parameter with a value that does not parse (RFC 5321 4.1.1.11:
/// 501 for syntax errors in parameters).
pub fn parameter_syntax(name: &str) -> Reply {
    Reply::new(
        501,
        e(5, 5, 4),
        format!("Syntax: bad value or repeated parameter {}", quote(name)),
    )
}

/// Contract "`SIZE=n` over the limit" and "message bigger than the limit"
/// (RFC 1870 6.1).
pub fn too_big() -> Reply {
    Reply::new(552, e(5, 3, 4), "Message size exceeds fixed maximum")
}

/// Contract "MIME nesting past the limit": multipart and message parts
/// inside each other deeper than the limit (Postfix's wording for its
/// `mime_nesting_limit`). RFC 3463: 5.6.0, other media error.
pub fn mime_too_deep() -> Reply {
    Reply::new(550, e(5, 6, 0), "MIME nesting exceeds safety limit")
}

/// Contract "header section past the limit": too many lines or octets in
/// the message's header section or a part's.
pub fn header_too_big() -> Reply {
    Reply::new(
        552,
        e(5, 3, 4),
        "Message header section exceeds fixed maximum",
    )
}

/// Contract "RCPT TO accepted".
pub fn recipient_ok() -> Reply {
    Reply::new(250, e(2, 1, 5), "Recipient OK")
}

/// Contract "RCPT before MAIL".
pub fn need_mail() -> Reply {
    Reply::new(503, e(5, 5, 1), "Need MAIL command first")
}

/// Contract "no such mailbox in an accepted domain".
pub fn no_such_mailbox() -> Reply {
    Reply::new(550, e(5, 1, 1), "Mailbox unavailable")
}

/// A local recipient whose name cannot become its Maildir folder (a `/`,
/// `..`, a leading dot or a control character).
pub fn mailbox_name_unusable() -> Reply {
    Reply::new(553, e(5, 1, 3), "Mailbox name not allowed")
}

/// Over a rate limit (`[limits.rate]`): the scope is named.
pub fn rate_limited(scope: &str) -> Reply {
    Reply::new(
        450,
        e(4, 7, 1),
        format!("Rate limit exceeded for this {scope}, try again later"),
    )
}

/// A client named by DNS block lists (`[[dnsbl]]`), instead of the
/// greeting, as Postfix words it.
pub fn blocked_by_list(client: &str, zone: &str) -> Reply {
    Reply::new(
        554,
        e(5, 7, 1),
        format!("Service unavailable; client [{client}] blocked using {zone}"),
    )
}

/// Content whose first line starts with white space: it would continue
/// the trace fields the server puts on top of it (RFC 5322 2.2.3 allows no
/// header section to start so).
pub fn content_starts_with_space() -> Reply {
    Reply::new(550, e(5, 6, 0), "Message must not start with white space")
}

/// Mail failing DMARC whose author domain publishes `p=reject`, at the end
/// of data, when `[verify] reject_dmarc` is on (RFC 7372 has no DMARC
/// code; 5.7.1 is what Gmail and OpenDMARC send).
pub fn dmarc_rejected(domain: &str) -> Reply {
    Reply::new(
        550,
        e(5, 7, 1),
        format!("Rejected by DMARC policy of {domain}"),
    )
}

/// A MAIL FROM whose SPF result is `fail`, at RCPT, when `[verify]
/// reject_spf` is on (RFC 7372 3.2).
pub fn spf_failed(domain: &str) -> Reply {
    Reply::new(
        550,
        e(5, 7, 23),
        format!("SPF validation failed for {domain}"),
    )
}

/// Contract "recipient outside the accepted domains": never an open relay.
pub fn relay_denied() -> Reply {
    Reply::new(554, e(5, 7, 1), "Relaying denied")
}

/// Contract "an authenticated user sends from an address not given to
/// it" (Postfix's `reject_sender_login_mismatch`).
pub fn sender_not_owned() -> Reply {
    Reply::new(
        553,
        e(5, 7, 1),
        "Sender address not owned by the authenticated user",
    )
}

/// Contract "too little free disk for new mail": refused before DATA, so
/// that a message is never taken that cannot be kept.
pub fn insufficient_storage() -> Reply {
    Reply::new(452, e(4, 3, 1), "Insufficient system storage")
}

/// Contract "more than the recipient limit" (RFC 5321 4.5.3.1.10).
pub fn too_many_recipients() -> Reply {
    Reply::new(452, e(4, 5, 3), "Too many recipients")
}

/// Contract "DATA (or BDAT) before any accepted RCPT".
pub fn need_rcpt() -> Reply {
    Reply::new(503, e(5, 5, 1), "Need RCPT command first")
}

/// Contract "DATA accepted".
pub fn start_data() -> Reply {
    Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
}

/// Contract "end of data, message stored durably".
pub fn queued(id: &str) -> Reply {
    Reply::new(250, e(2, 0, 0), format!("Ok: queued as {id}"))
}

/// Contract "bare CR or bare LF in the message" (policy `reject`).
pub fn bare_line_ending() -> Reply {
    Reply::new(550, e(5, 5, 2), "Bare CR or LF not allowed")
}

/// Contract "the server failed inside a session": the policy code hit a
/// bug (it panicked). The session cannot go on safely: `421`, then close.
pub fn backend_failed(hostname: &str) -> Reply {
    Reply::new(
        421,
        e(4, 3, 0),
        format!("{hostname} Local error, closing connection"),
    )
}

/// Contract "storage failed": nothing is half-stored.
pub fn local_error() -> Reply {
    Reply::new(451, e(4, 3, 0), "Local error in processing")
}

/// A permanent storage refusal (the store's non-transient errors).
pub fn transaction_failed() -> Reply {
    Reply::new(554, e(5, 3, 0), "Transaction failed")
}

// ---- BDAT (RFC 3030) ------------------------------------------------------

/// Contract "`BDAT <n>` chunk received".
pub fn chunk_received(n: u64) -> Reply {
    Reply::new(250, e(2, 0, 0), format!("{n} octets received"))
}

/// Contract "DATA after BDAT in the same transaction".
pub fn data_after_bdat() -> Reply {
    Reply::new(503, e(5, 5, 1), "DATA not allowed after BDAT")
}

/// Contract "BDAT size not a number" (the session closes after it).
pub fn bdat_syntax() -> Reply {
    Reply::new(501, e(5, 5, 4), "Syntax: BDAT <size> [LAST]")
}

// ---- Other commands -------------------------------------------------------

/// Contract "RSET" and "NOOP".
pub fn ok() -> Reply {
    Reply::new(250, e(2, 0, 0), "Ok")
}

/// Contract "QUIT/RSET/DATA (and other argument-less verbs) with unexpected
/// arguments": `501 5.5.4 Syntax: <COMMAND>`.
pub fn syntax(usage: &str) -> Reply {
    Reply::new(501, e(5, 5, 4), format!("Syntax: {usage}"))
}

/// Contract "HELP" / "HELP STATUS from anyone else".
pub fn help(lines: Vec<String>) -> Reply {
    Reply::multi(214, e(2, 0, 0), lines)
}

/// Contract "HELP STATUS from loopback or an authenticated client" (seed 003).
pub fn status(lines: Vec<String>) -> Reply {
    Reply::multi(211, e(2, 0, 0), lines)
}

/// Contract "VRFY".
pub fn cannot_vrfy() -> Reply {
    Reply::new(
        252,
        e(2, 5, 2),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

/// Contract "EXPN".
pub fn no_expn() -> Reply {
    Reply::new(502, e(5, 5, 1), "EXPN not available")
}

/// Contract "recognised, not implemented".
pub fn not_implemented() -> Reply {
    Reply::new(502, e(5, 5, 1), "Command not implemented")
}

/// Contract "unknown command, or a line that is not a command" (seed 002).
pub fn unrecognized() -> Reply {
    Reply::new(500, e(5, 5, 2), "Command not recognized")
}

/// Contract "command line longer than 512 octets" (RFC 5321 4.5.3.1.4).
pub fn line_too_long() -> Reply {
    Reply::new(500, e(5, 5, 2), "Line too long")
}

/// Contract "STARTTLS where no certificate is configured".
pub fn starttls_unavailable() -> Reply {
    Reply::new(502, e(5, 5, 1), "STARTTLS not available")
}

// ---- STARTTLS (RFC 3207) --------------------------------------------------

/// Contract "STARTTLS".
pub fn ready_for_tls() -> Reply {
    Reply::new(220, e(2, 0, 0), "Ready to start TLS")
}

/// Contract "STARTTLS when TLS is already active".
pub fn tls_already_active() -> Reply {
    Reply::new(503, e(5, 5, 1), "TLS already active")
}

// ---- AUTH (RFC 4954) ------------------------------------------------------

/// Contract "AUTH before TLS where TLS is required".
pub fn tls_required_for_auth() -> Reply {
    Reply::new(530, e(5, 7, 0), "Must issue a STARTTLS command first")
}

/// Contract "MAIL before AUTH where AUTH is required".
pub fn auth_required() -> Reply {
    Reply::new(530, e(5, 7, 0), "Authentication required")
}

/// Contract "AUTH success".
pub fn auth_ok() -> Reply {
    Reply::new(235, e(2, 7, 0), "Authentication successful")
}

/// Contract "bad credentials": the same text for an unknown user and a
/// wrong password.
pub fn auth_failed() -> Reply {
    Reply::new(535, e(5, 7, 8), "Authentication credentials invalid")
}

/// Contract "password checks busy" (RFC 4954 section 6, 454 4.7.0): every
/// check slot and the bounded queue before them are taken; try again later.
/// Not a failed attempt.
pub fn auth_busy() -> Reply {
    Reply::new(
        454,
        e(4, 7, 0),
        "Temporary authentication failure, try again later",
    )
}

/// Contract "unknown mechanism".
pub fn unknown_mechanism() -> Reply {
    Reply::new(504, e(5, 5, 4), "Unrecognized authentication type")
}

/// Contract "client sends `*`".
pub fn auth_cancelled() -> Reply {
    Reply::new(501, e(5, 0, 0), "Authentication cancelled")
}

/// Contract "malformed base64".
pub fn cannot_decode() -> Reply {
    Reply::new(501, e(5, 5, 2), "Cannot decode response")
}

/// Contract "AUTH when already authenticated".
pub fn already_authenticated() -> Reply {
    Reply::new(503, e(5, 5, 1), "Already authenticated")
}

/// Contract "AUTH inside a transaction".
pub fn auth_in_transaction() -> Reply {
    Reply::new(
        503,
        e(5, 5, 1),
        "AUTH not allowed during a mail transaction",
    )
}

/// Contract "too many failures": the session closes after it.
pub fn too_many_auth_failures() -> Reply {
    Reply::new(421, e(4, 7, 0), "Too many authentication failures")
}

/// A SASL challenge (RFC 4954 section 4): `334 <base64>`. A continuation,
/// like 354, so no enhanced code.
pub fn sasl_challenge(base64: &str) -> Reply {
    Reply::new(334, None, base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_has_enhanced_code() {
        assert_eq!(ok().to_wire(), "250 2.0.0 Ok\r\n");
    }

    #[test]
    fn greeting_has_no_enhanced_code() {
        assert_eq!(
            greeting("mx.test", "1.2.3").to_wire(),
            "220 mx.test ESMTP Postel 1.2.3\r\n"
        );
    }

    #[test]
    fn multi_line_repeats_enhanced_code_on_every_line() {
        let r = help(vec!["a".into(), "b".into()]);
        assert_eq!(r.to_wire(), "214-2.0.0 a\r\n214 2.0.0 b\r\n");
    }

    #[test]
    fn ehlo_has_no_enhanced_code() {
        let r = ehlo("mx.test", &["PIPELINING".into(), "HELP".into()]);
        assert_eq!(r.to_wire(), "250-mx.test\r\n250-PIPELINING\r\n250 HELP\r\n");
    }

    #[test]
    fn text_cannot_inject_line_breaks() {
        let r = Reply::new(250, None, "a\r\n250 forged");
        assert_eq!(r.to_wire(), "250 a250 forged\r\n");
    }
}
