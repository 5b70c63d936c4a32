//! Delivery status notifications (RFC 3464): a `multipart/report` with a
//! human-readable part, a `message/delivery-status` part with one block
//! per recipient, and the original message (or only its headers).
//!
//! Rules kept here: a notice goes only where the recipient's NOTIFY (RFC
//! 3461) asks for it (absent means FAILURE and DELAY); never about a
//! message from `<>`; a notice about mail from an untrusted client carries
//! only the headers, whatever RET says, so that a forged sender gets no
//! copy of content it did not send (backscatter).

use postel_store::QueueEntry;
use postel_store::time::rfc5322_date;

/// What happened, as a notice reports it (RFC 3464 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Given up.
    Failed,
    /// Still being tried.
    Delayed,
    /// Delivered to the next hop, which reports no further.
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Relayed => "relayed",
        }
    }

    fn notify_keyword(self) -> &'static str {
        match self {
            Action::Failed => "FAILURE",
            Action::Delayed => "DELAY",
            Action::Relayed => "SUCCESS",
        }
    }
}

/// One recipient in a notice.
#[derive(Debug, Clone)]
pub struct Reported<'a> {
    /// Its queue row.
    pub entry: &'a QueueEntry,
    /// What happened.
    pub action: Action,
    /// The status code (`5.1.1`).
    pub status: String,
    /// The host whose reply this is, if any.
    pub remote: Option<String>,
    /// The reply, if a remote gave one.
    pub diagnostic: Option<String>,
    /// Postel's own reason, when no remote replied (`null MX`...).
    pub reason: Option<String>,
    /// For a delay: when Postel gives up (Unix seconds).
    pub will_retry_until: Option<i64>,
}

/// The value of parameter `key` among `params`, as sent.
fn param<'a>(params: &'a [String], key: &str) -> Option<&'a str> {
    params.iter().find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case(key).then_some(v)
    })
}

/// Whether the sender of `entry` wants a notice of `action` for it.
pub fn wanted(entry: &QueueEntry, action: Action) -> bool {
    if entry.mail_from.is_empty() {
        return false;
    }
    match param(&entry.rcpt_params, "NOTIFY") {
        None => action != Action::Relayed,
        Some(list) => list
            .split(',')
            .any(|k| k.trim().eq_ignore_ascii_case(action.notify_keyword())),
    }
}

/// Decodes RFC 3461 xtext (`+2B` for `+`); invalid escapes stay as sent.
pub fn decode_xtext(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// What a notice is built from.
#[derive(Debug)]
pub struct Notice<'a> {
    /// Postel's hostname (Reporting-MTA, From, Message-ID).
    pub hostname: &'a str,
    /// An id for the notice's Message-ID and boundary.
    pub notice_id: &'a str,
    /// The recipients reported, all of one message.
    pub recipients: Vec<Reported<'a>>,
    /// The original message as stored.
    pub original: &'a [u8],
    /// Whether the full content may be attached (a trusted sender, RET not
    /// HDRS, and within `content_limit`).
    pub full_content: bool,
    /// Now (Unix seconds).
    pub now: i64,
}

/// The header section of a message (through its empty line).
fn header_section(raw: &[u8]) -> &[u8] {
    memfind(raw, b"\r\n\r\n").map_or(raw, |i| &raw[..i + 4])
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Notice<'_> {
    /// The notice's subject.
    pub fn subject(&self) -> &'static str {
        if self.recipients.iter().any(|r| r.action == Action::Failed) {
            "Undelivered Mail Returned to Sender"
        } else if self.recipients.iter().any(|r| r.action == Action::Delayed) {
            "Delayed Mail (still being retried)"
        } else {
            "Successful Mail Delivery Report"
        }
    }

    /// The notice, as a message to send from `<>` to the original sender.
    pub fn render(&self) -> Vec<u8> {
        let Some(first) = self.recipients.first() else {
            return Vec::new();
        };
        let e = first.entry;
        let host = self.hostname;
        let failed = self.recipients.iter().any(|r| r.action == Action::Failed);
        let delayed = self.recipients.iter().any(|r| r.action == Action::Delayed);
        let subject = self.subject();
        let boundary = format!("{}.{:016x}/{host}", self.notice_id, fastrand::u64(..));
        let mut m = String::new();
        m.push_str(&format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"
        ));
        m.push_str(&format!("To: <{}>\r\n", e.mail_from));
        m.push_str(&format!("Subject: {subject}\r\n"));
        m.push_str(&format!("Date: {}\r\n", rfc5322_date(self.now)));
        m.push_str(&format!(
            "Message-ID: <{}.notice@{host}>\r\n",
            self.notice_id
        ));
        m.push_str("Auto-Submitted: auto-replied\r\n");
        m.push_str("MIME-Version: 1.0\r\n");
        m.push_str(&format!(
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
        ));
        m.push_str("This is a MIME-encapsulated message.\r\n\r\n");
        // The part for people.
        m.push_str(&format!(
            "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        ));
        m.push_str(&format!("This is the mail system at host {host}.\r\n\r\n"));
        m.push_str(if failed {
            "Your message could not be delivered to one or more recipients.\r\nIt is attached below.\r\n\r\n"
        } else if delayed {
            "Your message could not be delivered yet. It is still being retried;\r\nyou do not need to send it again.\r\n\r\n"
        } else {
            "Your message was delivered to a system that does not report further.\r\n\r\n"
        });
        for r in &self.recipients {
            let why = r
                .diagnostic
                .as_deref()
                .or(r.reason.as_deref())
                .unwrap_or(&r.status);
            m.push_str(&format!(
                "<{}>: {}: {}\r\n",
                r.entry.recipient,
                r.action.as_str(),
                printable(why)
            ));
        }
        m.push_str("\r\n");
        // The part for programs.
        // RFC 6533: UTF-8 addresses go in a global delivery status.
        let global = self
            .recipients
            .iter()
            .any(|r| !r.entry.recipient.is_ascii());
        let (status_type, addr_type) = if global {
            ("message/global-delivery-status", "utf-8")
        } else {
            ("message/delivery-status", "rfc822")
        };
        m.push_str(&format!(
            "--{boundary}\r\nContent-Type: {status_type}\r\n\r\n"
        ));
        m.push_str(&format!("Reporting-MTA: dns; {host}\r\n"));
        if let Some(envid) = param(&e.mail_params, "ENVID") {
            m.push_str(&format!(
                "Original-Envelope-Id: {}\r\n",
                decode_xtext(envid)
            ));
        }
        m.push_str(&format!(
            "Arrival-Date: {}\r\n",
            rfc5322_date(e.received_at)
        ));
        for r in &self.recipients {
            m.push_str("\r\n");
            m.push_str(&format!(
                "Final-Recipient: {addr_type}; {}\r\n",
                r.entry.recipient
            ));
            if let Some(orcpt) = param(&r.entry.rcpt_params, "ORCPT") {
                m.push_str(&format!("Original-Recipient: {}\r\n", decode_xtext(orcpt)));
            }
            m.push_str(&format!("Action: {}\r\n", r.action.as_str()));
            m.push_str(&format!("Status: {}\r\n", r.status));
            if let Some(remote) = &r.remote {
                m.push_str(&format!("Remote-MTA: dns; {}\r\n", printable(remote)));
            }
            if let Some(d) = &r.diagnostic {
                m.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", printable(d)));
            }
            if r.entry.attempts > 0 {
                m.push_str(&format!(
                    "Last-Attempt-Date: {}\r\n",
                    rfc5322_date(self.now)
                ));
            }
            if let Some(until) = r.will_retry_until {
                m.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
            }
        }
        m.push_str("\r\n");
        let mut out = m.into_bytes();
        // The original, or its headers.
        let (kind, body) = if self.full_content {
            ("message/rfc822", self.original)
        } else {
            ("text/rfc822-headers", header_section(self.original))
        };
        out.extend_from_slice(format!("--{boundary}\r\nContent-Type: {kind}\r\n\r\n").as_bytes());
        out.extend_from_slice(body);
        if !body.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }
}

/// Text quoted in a notice: one line, no control characters.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postel_store::QueueState;

    fn entry(from: &str, notify: Option<&str>) -> QueueEntry {
        QueueEntry {
            id: "0001".into(),
            position: 0,
            recipient: "bob@far.test".into(),
            rcpt_params: notify
                .map(|n| {
                    vec![
                        format!("NOTIFY={n}"),
                        "ORCPT=rfc822;bob+2Bx@far.test".into(),
                    ]
                })
                .unwrap_or_default(),
            mail_from: from.into(),
            mail_params: vec!["ENVID=abc+2B1".into(), "RET=HDRS".into()],
            auth_user: None,
            client_addr: "127.0.0.1:1".into(),
            received_at: 0,
            size: 10,
            state: QueueState::Deferred,
            attempts: 2,
            next_attempt: 0,
            last_reply: None,
            warned: 0,
            leased_until: None,
            bounce: false,
            lease_token: 0,
        }
    }

    #[test]
    fn notify_decides_and_null_senders_get_nothing() {
        assert!(wanted(&entry("a@b.test", None), Action::Failed));
        assert!(wanted(&entry("a@b.test", None), Action::Delayed));
        assert!(!wanted(&entry("a@b.test", None), Action::Relayed));
        assert!(!wanted(&entry("a@b.test", Some("NEVER")), Action::Failed));
        assert!(wanted(
            &entry("a@b.test", Some("success,failure")),
            Action::Relayed
        ));
        assert!(!wanted(
            &entry("a@b.test", Some("SUCCESS")),
            Action::Delayed
        ));
        assert!(!wanted(&entry("", None), Action::Failed));
    }

    #[test]
    fn xtext() {
        assert_eq!(
            decode_xtext("rfc822;bob+2Bx@far.test"),
            "rfc822;bob+x@far.test"
        );
        assert_eq!(decode_xtext("a+0Db"), "ab");
        assert_eq!(decode_xtext("a+zz"), "a+zz");
    }

    #[test]
    fn a_notice_has_the_three_parts() {
        let e = entry("a@b.test", Some("FAILURE"));
        let original = b"Subject: hi\r\nFrom: a@b.test\r\n\r\nsecret body\r\n";
        let n = Notice {
            hostname: "mx.here.test",
            notice_id: "N1",
            recipients: vec![Reported {
                entry: &e,
                action: Action::Failed,
                status: "5.1.1".into(),
                remote: Some("mx.far.test".into()),
                diagnostic: Some("550 5.1.1 no such user".into()),
                reason: None,
                will_retry_until: None,
            }],
            original,
            full_content: false,
            now: 100,
        };
        let text = String::from_utf8(n.render()).expect("utf-8");
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Content-Type: message/delivery-status\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; bob@far.test\r\n"));
        assert!(text.contains("Original-Recipient: rfc822;bob+x@far.test\r\n"));
        assert!(text.contains("Original-Envelope-Id: abc+1\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(text.contains("text/rfc822-headers"));
        assert!(!text.contains("secret body"), "headers only");
    }
}
