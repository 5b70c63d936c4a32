//! A scripted backend that drives a [`Session`] over chunks of input, for
//! the transcript tests and the fuzz targets: the same code checks both.
//!
//! It refuses senders containing "refuse" (`554`), recipients containing
//! "nobody" (`550`), accepts AUTH for alice / secret only (and SCRAM for
//! alice when the proof is the octets `proof`: no crypto here), answers STARTTLS
//! as if the handshake happened at the end of the chunk, and stores every
//! message. It panics if the session stalls with input left: a session must
//! always either consume input or raise an event.

use std::sync::Arc;

use crate::address::ForwardPath;
use crate::reply;
use crate::session::{ConnInfo, Event, Limits, Session, Verdict};

/// What a run produced: every byte the server sent, and the stored messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    /// Every byte the server sent.
    pub output: String,
    /// The messages stored, in order.
    pub stored: Vec<Vec<u8>>,
    /// Each stored message's sender and recipients.
    pub envelopes: Vec<(String, Vec<String>)>,
    /// The session ended.
    pub closed: bool,
}

/// Feeds `chunks` in order, answering events as the module doc says.
pub fn drive(limits: Limits, conn: ConnInfo, chunks: &[&[u8]]) -> Run {
    let mut s = Session::new(Arc::new(limits), conn);
    let mut out = Vec::new();
    let mut msg = Vec::new();
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut run = Run {
        output: String::new(),
        stored: vec![],
        envelopes: vec![],
        closed: false,
    };
    for chunk in chunks {
        let mut pos = 0;
        loop {
            let n = s.feed(&chunk[pos..]);
            pos += n;
            let mut progressed = n > 0;
            while let Some(ev) = s.poll_event() {
                progressed = true;
                match ev {
                    Event::Helo => {}
                    Event::Mail { from: f, .. } => {
                        from = f.to_string();
                        if from.contains("refuse") {
                            s.resolve(Verdict::Reject(reply::relay_denied()));
                        } else {
                            s.resolve(Verdict::Accept);
                        }
                    }
                    Event::Rcpt { to, .. } => {
                        let to = match to {
                            ForwardPath::Postmaster => "postmaster".to_owned(),
                            ForwardPath::Mailbox(m) => m.to_string(),
                        };
                        if to.contains("nobody") {
                            s.resolve(Verdict::Reject(reply::no_such_mailbox()));
                        } else {
                            rcpts.push(to);
                            s.resolve(Verdict::Accept);
                        }
                    }
                    Event::Body => s.take_body(&mut msg),
                    Event::DataEnd => {
                        s.take_body(&mut msg);
                        run.stored.push(std::mem::take(&mut msg));
                        run.envelopes
                            .push((std::mem::take(&mut from), std::mem::take(&mut rcpts)));
                        s.resolve(Verdict::Queued(format!("ID{}", run.stored.len())));
                    }
                    Event::Reset => {
                        msg.clear();
                        rcpts.clear();
                    }
                    Event::Status => s.resolve_status(vec!["status line".into()]),
                    // The handshake "happens" here: the next chunk is what
                    // TLS decrypted; the rest of this one was discarded.
                    Event::StartTls => s.tls_established(),
                    Event::Auth {
                        username, password, ..
                    } => {
                        if username == "alice" && password.0 == "secret" {
                            s.resolve(Verdict::Accept);
                        } else {
                            s.resolve(Verdict::Reject(reply::auth_failed()));
                        }
                    }
                    Event::ScramFirst {
                        username, nonce, ..
                    } => s.resolve(if username == "alice" {
                        Verdict::Challenge(crate::scram::server_first(&nonce, "S", b"salt", 4096))
                    } else {
                        Verdict::Reject(reply::auth_failed())
                    }),
                    Event::ScramFinal { proof, .. } => s.resolve(if proof == b"proof" {
                        Verdict::Challenge("v=c2ln".to_owned())
                    } else {
                        Verdict::Reject(reply::auth_failed())
                    }),
                    Event::ScramDone => {}
                    Event::Close => run.closed = true,
                }
            }
            if !progressed || pos >= chunk.len() {
                if pos >= chunk.len() {
                    break;
                }
                panic!("session stalled with input left");
            }
        }
    }
    s.take_output(&mut out);
    run.output = String::from_utf8_lossy(&out).into_owned();
    run
}

/// The checks behind each fuzz target (`fuzz/`), here so that the normal
/// test suite replays the committed corpus and crash inputs through the same
/// code (`tests/fuzz_corpus.rs`). Each panics on a broken invariant.
pub mod checks {
    use crate::address::{
        is_address_literal, is_domain, parse_forward_path, parse_mailbox, parse_reverse_path,
    };
    use crate::command::{Verb, parse_bdat, parse_helo, parse_mail, parse_rcpt};
    use crate::data::{BareLinePolicy, BdatDecoder, DataDecoder};
    use crate::session::{ConnInfo, Limits};

    /// A command line of any bytes: the verb split and every argument
    /// parser. A parsed reverse-path prints within RFC 5321's limit.
    pub fn command(line: &[u8]) {
        let (verb, args) = Verb::split(line);
        let _ = verb.label();
        if let Ok((from, _)) = parse_mail(args) {
            // 256 octets (RFC 5321 4.5.3.1.3), plus the brackets.
            assert!(from.to_string().len() <= 258);
        }
        for utf8 in [false, true] {
            let _ = parse_rcpt(args, utf8);
            let _ = parse_helo(args, utf8);
        }
        let _ = parse_bdat(args);
    }

    /// Addresses and domains of any bytes. A mailbox that parses prints
    /// back to a form that parses to the same.
    pub fn address(data: &[u8]) {
        for utf8 in [false, true] {
            if let Ok(m) = parse_mailbox(data, utf8) {
                let printed = m.to_string();
                let again =
                    parse_mailbox(printed.as_bytes(), utf8).expect("a printed mailbox parses");
                assert_eq!(again.to_string(), printed);
                if !utf8 {
                    assert!(printed.is_ascii());
                }
            }
            let _ = is_domain(data, utf8);
            let _ = parse_reverse_path(data, utf8);
            let _ = parse_forward_path(data, utf8);
        }
        let _ = is_address_literal(data);
    }

    /// The DATA decoder fed the same bytes whole and in pieces (their size
    /// from the first byte): the same end, octets consumed and message.
    /// Only `<CRLF>.<CRLF>` (or `.<CRLF>` first) ends the data, and no more
    /// than the limit is kept.
    pub fn data(input: &[u8]) {
        let Some((&step, data)) = input.split_first() else {
            return;
        };
        let step = usize::from(step % 32) + 1;
        for policy in [BareLinePolicy::Reject, BareLinePolicy::Normalize] {
            let mut whole = DataDecoder::new(200, policy);
            let mut out_whole = Vec::new();
            let (used_whole, end_whole) = whole.decode(data, &mut out_whole);
            let mut pieces = DataDecoder::new(200, policy);
            let mut out_pieces = Vec::new();
            let (mut used, mut end) = (0, None);
            for chunk in data.chunks(step) {
                let (n, e) = pieces.decode(chunk, &mut out_pieces);
                used += n;
                if e.is_some() {
                    end = e;
                    break;
                }
                assert_eq!(n, chunk.len(), "input left unread without an end");
            }
            assert_eq!(format!("{end_whole:?}"), format!("{end:?}"));
            assert_eq!(used_whole, used);
            assert_eq!(whole.size(), pieces.size());
            // Past the limit the content is refused, and what was kept of
            // it depends on where the pieces fell: compare only below.
            if whole.size() <= 200 {
                assert_eq!(out_whole, out_pieces);
            }
            if end_whole.is_some() {
                let seen = &data[..used_whole];
                assert!(
                    seen == b".\r\n" || seen.ends_with(b"\r\n.\r\n"),
                    "ended early: {seen:?}"
                );
            }
            assert!(out_whole.len() <= 200, "kept {} octets", out_whole.len());
        }
    }

    /// BDAT content in one chunk and in pieces: the same message and
    /// outcome, and no more than the limit kept.
    pub fn bdat(input: &[u8]) {
        let Some((&step, data)) = input.split_first() else {
            return;
        };
        let step = usize::from(step % 32) + 1;
        for policy in [BareLinePolicy::Reject, BareLinePolicy::Normalize] {
            let mut a = BdatDecoder::new(100, policy);
            let mut out_a = Vec::new();
            a.decode(data, &mut out_a);
            let end_a = a.finish(&mut out_a);
            let mut b = BdatDecoder::new(100, policy);
            let mut out_b = Vec::new();
            for chunk in data.chunks(step) {
                b.decode(chunk, &mut out_b);
            }
            let end_b = b.finish(&mut out_b);
            assert_eq!(format!("{end_a:?}"), format!("{end_b:?}"));
            assert_eq!(a.too_big(), b.too_big());
            if !a.too_big() {
                assert_eq!(out_a, out_b);
            }
            assert!(out_a.len() <= 100, "kept {} octets", out_a.len());
        }
    }

    /// A whole session fed any bytes, whole and in pieces (two sizes from
    /// the first two bytes, alternating): the same replies and messages, no
    /// stall, and every reply line well formed and within 512 octets.
    pub fn session(input: &[u8]) {
        if input.len() < 2 {
            return;
        }
        let limits = || Limits {
            hostname: "mx.test".into(),
            version: "0".into(),
            max_message_size: 300,
            ..Limits::default()
        };
        let (sizes, stream) = input.split_at(2);
        let one = super::drive(limits(), ConnInfo::default(), &[stream]);
        let (a, b) = (
            usize::from(sizes[0] % 64) + 1,
            usize::from(sizes[1] % 64) + 1,
        );
        let mut chunks = Vec::new();
        let mut rest = stream;
        let mut flip = false;
        while !rest.is_empty() {
            let n = (if flip { a } else { b }).min(rest.len());
            chunks.push(&rest[..n]);
            rest = &rest[n..];
            flip = !flip;
        }
        let split = super::drive(limits(), ConnInfo::default(), &chunks);
        assert_eq!(one, split);
        for line in one.output.split_terminator("\r\n") {
            let b = line.as_bytes();
            assert!(
                b.len() >= 4
                    && b[..3].iter().all(u8::is_ascii_digit)
                    && (b[3] == b' ' || b[3] == b'-'),
                "bad reply line {line:?}"
            );
            assert!(line.len() <= 512, "reply line too long");
        }
        for m in &one.stored {
            assert!(m.len() <= 300);
        }
    }
}
