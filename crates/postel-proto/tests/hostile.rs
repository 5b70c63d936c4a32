//! Transcripts for what an outside audit sent: messages built to hurt a
//! parser, mailbox guessing, clients that crawl, and parameters a listener
//! never offered. Each test failed before its fix. The rows are in
//! `docs/replies.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postel_proto::session::{ConnInfo, Event, Limits, Session, Verdict};
use postel_proto::sim::{Run, drive};
use postel_proto::{BareLinePolicy, reply};

const GREETING: &str = "220 mx.test ESMTP Postel 9.9.9\r\n";
const EHLO_REPLY: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n250 HELP\r\n";
const E: &str = "EHLO client.test\r\n";
const TX: &str = "EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n";
const TX_OK: &str = "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n";

fn limits() -> Limits {
    Limits {
        hostname: "mx.test".into(),
        version: "9.9.9".into(),
        max_message_size: 10_000_000,
        ..Limits::default()
    }
}

/// Runs `input` whole and in 7-octet pieces (both must agree) and returns
/// what the server sent after the greeting and the EHLO reply.
#[track_caller]
fn run(input: &[u8]) -> (String, Run) {
    let whole = drive(limits(), ConnInfo::default(), &[input]);
    let pieces: Vec<&[u8]> = input.chunks(7).collect();
    assert_eq!(whole, drive(limits(), ConnInfo::default(), &pieces));
    let rest = whole
        .output
        .strip_prefix(GREETING)
        .and_then(|o| o.strip_prefix(EHLO_REPLY))
        .expect("greeting and EHLO")
        .to_owned();
    (rest, whole)
}

fn nested_messages(n: usize) -> Vec<u8> {
    let mut m = b"Subject: deep\r\n".to_vec();
    for _ in 0..n {
        m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    m.extend_from_slice(b"Subject: inner\r\n\r\nhello\r\n");
    m
}

fn data(content: &[u8]) -> Vec<u8> {
    [TX.as_bytes(), b"DATA\r\n", content, b".\r\nNOOP\r\n"].concat()
}

#[test]
fn mime_nesting_past_100_is_550_5_6_0_and_the_session_goes_on() {
    // The audit's message: 50,000 levels of message/rfc822, 1.6 MB.
    let (out, run) = self::run(&data(&nested_messages(50_000)));
    assert_eq!(
        out,
        format!(
            "{TX_OK}354 End data with <CR><LF>.<CR><LF>\r\n550 5.6.0 MIME nesting exceeds safety limit\r\n250 2.0.0 Ok\r\n"
        )
    );
    assert!(run.stored.is_empty());
    // 100 levels are within the limit.
    let (out, run) = self::run(&data(&nested_messages(100)));
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    assert_eq!(run.stored.len(), 1);
}

#[test]
fn mime_nesting_is_checked_in_bdat_too() {
    let m = nested_messages(101);
    let input = [
        TX.as_bytes(),
        format!("BDAT {}\r\n", m.len() / 2).as_bytes(),
        &m[..m.len() / 2],
        format!("BDAT {} LAST\r\n", m.len() - m.len() / 2).as_bytes(),
        &m[m.len() / 2..],
    ]
    .concat();
    let (out, run) = run(&input);
    assert!(
        out.ends_with("550 5.6.0 MIME nesting exceeds safety limit\r\n"),
        "{out}"
    );
    assert!(run.stored.is_empty());
}

#[test]
fn a_header_section_past_its_limits_is_552_5_3_4() {
    // 2 million short header lines in 8 MB: refused at the end of data.
    let mut m = b"X:a\r\n".repeat(1_600_000);
    m.extend_from_slice(b"\r\nbody\r\n");
    let (out, run) = run(&data(&m));
    assert!(
        out.ends_with("552 5.3.4 Message header section exceeds fixed maximum\r\n250 2.0.0 Ok\r\n"),
        "{}",
        &out[out.len().saturating_sub(200)..]
    );
    assert!(run.stored.is_empty());
    // Octets too: one 2 MiB header field.
    let m = [
        b"X-Big: ".as_slice(),
        &vec![b'a'; 2 << 20],
        b"\r\n\r\nbody\r\n",
    ]
    .concat();
    let (out, _) = self::run(&data(&m));
    assert!(
        out.contains("552 5.3.4 Message header section"),
        "{}",
        &out[..100]
    );
    // A long body is not a header section.
    let m = [b"Subject: x\r\n\r\n".as_slice(), &b"X:a\r\n".repeat(50_000)].concat();
    let (out, _) = self::run(&data(&m));
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
}

#[test]
fn auth_parameter_where_auth_is_not_offered_is_555() {
    // Audit finding 11: AUTH=<> was accepted on a listener with no AUTH.
    let (out, _) = run(format!("{E}MAIL FROM:<a@b.test> AUTH=<>\r\n").as_bytes());
    assert_eq!(out, "555 5.5.4 Unsupported parameter AUTH\r\n");
}

#[test]
fn normalize_unstuffs_a_dot_after_a_bare_lf() {
    // Audit finding 10: `\n..x\n` was stored as `..x`.
    let l = Limits {
        bare_line_endings: BareLinePolicy::Normalize,
        ..limits()
    };
    let input = format!("{TX}DATA\r\nSubject: y\r\n\r\na\n..x\n.\r\nb\r\n.\r\n");
    let run = drive(l, ConnInfo::default(), &[input.as_bytes()]);
    assert_eq!(
        run.stored,
        vec![b"Subject: y\r\n\r\na\r\n.x\r\n\r\nb\r\n".to_vec()]
    );
}

/// A session past EHLO and MAIL, with `policy` deciding each RCPT.
fn rcpt_session(l: Limits) -> Session {
    let mut s = Session::new(Arc::new(l), ConnInfo::default());
    s.feed(E.as_bytes());
    s.feed(b"MAIL FROM:<a@b.test>\r\n");
    while let Some(ev) = s.poll_event() {
        if matches!(ev, Event::Mail { .. }) {
            s.resolve(Verdict::Accept);
        }
    }
    let mut out = Vec::new();
    s.take_output(&mut out);
    s
}

#[test]
fn refused_recipients_are_slowed_past_10_and_cut_off_at_20() {
    // Audit finding 8: 5,000 RCPT probes were answered in 0.01 s.
    let mut s = rcpt_session(limits());
    let mut delays = Vec::new();
    let mut out = Vec::new();
    for i in 0..25 {
        s.feed(format!("RCPT TO:<nobody{i}@d.test>\r\n").as_bytes());
        while let Some(ev) = s.poll_event() {
            if matches!(ev, Event::Rcpt { .. }) {
                s.resolve(Verdict::Reject(reply::no_such_mailbox()));
            }
        }
        delays.push(s.take_delay());
        s.take_output(&mut out);
    }
    let second = Duration::from_secs(1);
    assert_eq!(&delays[..10], &[Duration::ZERO; 10]);
    assert_eq!(&delays[10..19], &[second; 9]);
    let out = String::from_utf8(out).expect("ascii");
    assert_eq!(out.matches("550 5.1.1").count(), 20);
    assert!(
        out.ends_with(
            "550 5.1.1 Mailbox unavailable\r\n421 4.7.0 mx.test Too many refused recipients\r\n"
        ),
        "{out}"
    );
    assert!(s.is_closed());
    // An accepted recipient is not counted.
    let mut s = rcpt_session(limits());
    for _ in 0..30 {
        s.feed(b"RCPT TO:<c@d.test>\r\n");
        while let Some(ev) = s.poll_event() {
            if matches!(ev, Event::Rcpt { .. }) {
                s.resolve(Verdict::Accept);
            }
        }
        assert_eq!(s.take_delay(), Duration::ZERO);
    }
    assert!(!s.is_closed());
}

#[test]
fn a_temporary_auth_refusal_is_not_a_failed_attempt() {
    let conn = ConnInfo {
        auth_offered: true,
        tls_active: true,
        ..ConnInfo::default()
    };
    let mut s = Session::new(Arc::new(limits()), conn);
    s.feed(E.as_bytes());
    while s.poll_event().is_some() {}
    for _ in 0..5 {
        // "\0alice\0secret"
        s.feed(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        while let Some(ev) = s.poll_event() {
            if matches!(ev, Event::Auth { .. }) {
                s.resolve(Verdict::Reject(reply::auth_busy()));
            }
        }
    }
    let mut out = Vec::new();
    s.take_output(&mut out);
    let out = String::from_utf8(out).expect("ascii");
    assert_eq!(
        out.matches("454 4.7.0 Temporary authentication failure")
            .count(),
        5
    );
    assert!(!s.is_closed(), "{out}");
}

#[test]
fn a_command_line_must_be_complete_within_the_command_timeout() {
    // Audit finding 9: a byte every 29 s held a session for ever.
    let mut s = Session::new(Arc::new(limits()), ConnInfo::default());
    let t0 = Instant::now();
    assert_eq!(s.deadline(), None, "idle: only the idle timer runs");
    s.feed(b"EH");
    s.after_read(t0, 2);
    let due = t0 + Duration::from_secs(300);
    assert_eq!(s.deadline(), Some(due));
    // More bytes of the same line do not move it.
    s.feed(b"L");
    s.after_read(t0 + Duration::from_secs(29), 1);
    assert_eq!(s.deadline(), Some(due));
    // The line is complete: no deadline until the next one starts.
    s.feed(b"O x.test\r\n");
    s.after_read(t0 + Duration::from_secs(58), 10);
    while s.poll_event().is_some() {}
    assert_eq!(s.deadline(), None);
    // A read that ends one line and starts the next: the new line gets a
    // deadline of its own, not the old one's.
    s.feed(b"NO");
    s.after_read(t0 + Duration::from_secs(60), 2);
    s.feed(b"OP\r\nNO");
    let later = t0 + Duration::from_secs(200);
    s.after_read(later, 6);
    assert_eq!(s.deadline(), Some(later + Duration::from_secs(300)));
}

#[test]
fn content_must_keep_up_the_minimum_rate() {
    let mut s = Session::new(Arc::new(limits()), ConnInfo::default());
    let t0 = Instant::now();
    for (cmd, verdict) in [
        (&b"EHLO x.test\r\n"[..], None),
        (b"MAIL FROM:<a@b.test>\r\n", Some(Verdict::Accept)),
        (b"RCPT TO:<c@d.test>\r\n", Some(Verdict::Accept)),
    ] {
        s.feed(cmd);
        while s.poll_event().is_some() {
            if let Some(v) = verdict.clone() {
                s.resolve(v);
            }
        }
    }
    s.feed(b"DATA\r\n");
    s.after_read(t0, 6);
    let first = t0 + Duration::from_secs(180);
    assert_eq!(s.deadline(), Some(first), "a first data timeout");
    // Each octet buys 1/500 s: 5,000 octets, 10 s more.
    s.feed(&[b'a'; 5_000]);
    s.after_read(t0 + Duration::from_secs(100), 5_000);
    assert_eq!(s.deadline(), Some(first + Duration::from_secs(10)));
    // Fast octets do not bank credit past one data timeout from now.
    s.feed(&vec![b'a'; 1_000_000]);
    let t2 = t0 + Duration::from_secs(101);
    s.after_read(t2, 1_000_000);
    assert_eq!(s.deadline(), Some(t2 + Duration::from_secs(180)));
    // The end of data ends the deadline.
    s.feed(b"\r\n.\r\n");
    s.after_read(t0 + Duration::from_secs(102), 5);
    assert_eq!(s.deadline(), None);
}
