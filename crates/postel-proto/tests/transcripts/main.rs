//! Transcript tests: a client's bytes in, the server's exact replies out, for
//! every row of `docs/replies.md` that needs neither TLS nor AUTH.
//!
//! Each transcript is fed whole, one byte at a time, and (by proptest) at
//! random splits; all three must give the same replies and store the same
//! messages. A failure prints the whole transcript.

use std::sync::Arc;

use postel_proto::session::{ConnInfo, Event, Limits, Session, Verdict};
use postel_proto::sim::{Run, drive};
use postel_proto::{BareLinePolicy, ReversePath};
use proptest::prelude::*;

const HOST: &str = "mx.test";

fn limits() -> Limits {
    Limits {
        hostname: HOST.into(),
        version: "9.9.9".into(),
        max_message_size: 1000,
        ..Limits::default()
    }
}

fn whole(input: &[u8]) -> Run {
    drive(
        limits(),
        ConnInfo {
            trusted: true,
            ..ConnInfo::default()
        },
        &[input],
    )
}

/// Runs the input whole and byte by byte; both must agree. Returns the run.
fn check(input: &[u8]) -> Run {
    let a = whole(input);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let b = drive(
        limits(),
        ConnInfo {
            trusted: true,
            ..ConnInfo::default()
        },
        &bytes,
    );
    assert_eq!(
        a,
        b,
        "byte-by-byte feeding changed the result for {:?}",
        String::from_utf8_lossy(input)
    );
    a
}

const GREETING: &str = "220 mx.test ESMTP Postel 9.9.9\r\n";
const EHLO_REPLY: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n250 HELP\r\n";

/// Asserts the replies after the greeting (and after an EHLO, when the input
/// starts with one) equal `expected`.
#[track_caller]
fn expect(input: &str, expected: &str) -> Run {
    let run = check(input.as_bytes());
    let mut want = GREETING.to_owned();
    if input.starts_with("EHLO client.test\r\n") {
        want.push_str(EHLO_REPLY);
    }
    want.push_str(expected);
    assert_eq!(run.output, want, "\ntranscript C: {input:?}\n");
    run
}

const E: &str = "EHLO client.test\r\n";

mod commands;
mod tls_auth;
mod transaction;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The same bytes split differently give the same replies and messages.
    #[test]
    fn chunking_never_changes_the_result(cuts in proptest::collection::vec(0usize..400, 0..12), pick in 0usize..4) {
        let inputs = [
            format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n..a\r\nb\r\n.\r\nBDAT 4\r\nxy\r\nBDAT 0 LAST\r\nQUIT\r\n"),
            format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx\n.\ny\r\n.\r\nNOOP\r\n"),
            format!("{}\r\nNOOP\r\nFOO\r\n{E}HELP\r\n", "z".repeat(700)),
            format!("{E}MAIL FROM:<a@b.test> SIZE=5\r\nRCPT TO:<nobody@x.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 3 LAST\r\na\rb"),
        ];
        let input = inputs[pick].as_bytes();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&input[last..p]);
            last = p;
        }
        chunks.push(&input[last..]);
        let split = drive(limits(), ConnInfo::default(), &chunks);
        let one = drive(limits(), ConnInfo::default(), &[input]);
        prop_assert_eq!(split, one);
    }

    /// No input panics, stalls, or makes the session hold more than its limits.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), alphabet in any::<bool>()) {
        // Half the cases map bytes onto the SMTP alphabet, to reach deeper states.
        let words: [&[u8]; 12] = [b"EHLO a.test\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<c@d.test>\r\n", b"DATA\r\n", b"BDAT 3\r\n", b"BDAT 2 LAST\r\n", b".\r\n", b"\r\n", b"\n", b"\r", b".", b"RSET\r\n"];
        let input: Vec<u8> = if alphabet {
            data.iter().flat_map(|b| words[(*b as usize) % words.len()].iter().copied()).collect()
        } else {
            data
        };
        let run = drive(limits(), ConnInfo::default(), &[&input]);
        prop_assert!(run.output.starts_with(GREETING));
        for m in &run.stored {
            prop_assert!(m.len() <= 1000);
        }
    }
}

/// The tally counts every command line by verb and every reply by code,
/// the greeting included, and starts over after each take.
#[test]
fn tally_counts_commands_and_replies() {
    use postel_proto::command::Verb;
    let mut s = Session::new(Arc::new(limits()), ConnInfo::default());
    s.feed(b"EHLO c.test\r\nNOOP\r\nFOO\r\nNOOP\r\nETRN x\r\n");
    while s.poll_event().is_some() {}
    let t = std::mem::take(s.tally_mut());
    let count = |v: Verb| t.commands[v.index()];
    assert_eq!(count(Verb::Ehlo), 1);
    assert_eq!(count(Verb::Noop), 2);
    assert_eq!(count(Verb::Unknown), 1);
    assert_eq!(count(Verb::NotImplemented), 1);
    assert_eq!(t.commands.iter().sum::<u32>(), 5);
    let mut replies = t.replies.clone();
    replies.sort_unstable();
    assert_eq!(replies, vec![(220, 1), (250, 3), (500, 1), (502, 1)]);
    assert!(std::mem::take(s.tally_mut()).is_empty());
    s.feed(b"QUIT\r\n");
    let t = std::mem::take(s.tally_mut());
    assert_eq!(t.commands[Verb::Quit.index()], 1);
    assert_eq!(t.replies, vec![(221, 1)]);
}

/// SMTPUTF8 allows UTF-8, not any octet: an address with invalid UTF-8 is
/// a syntax error (the address fuzzer found it being accepted).
#[test]
fn invalid_utf8_address_is_553_even_with_smtputf8() {
    let run = check(b"EHLO client.test\r\nMAIL FROM:<\xfe\xff@b.test> SMTPUTF8\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\nRCPT TO:<x@d\xc3.test>\r\n");
    assert!(
        run.output.ends_with(
            "553 5.1.7 Sender address syntax invalid\r\n250 2.1.0 Sender OK\r\n553 5.1.3 Recipient address syntax invalid\r\n"
        ),
        "{}",
        run.output
    );
}
