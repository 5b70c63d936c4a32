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
const EHLO_REPLY: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 HELP\r\n";

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

#[test]
fn greeting_names_host_and_software() {
    assert_eq!(whole(b"").output, GREETING);
}

#[test]
fn ehlo_lists_capabilities_in_contract_order() {
    expect(E, "");
}

#[test]
fn helo_is_plain_250() {
    expect("HELO client.test\r\n", "250 mx.test\r\n");
}

#[test]
fn ehlo_syntax_errors_are_501() {
    expect("EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
    expect("HELO\r\n", "501 5.5.4 Syntax: HELO hostname\r\n");
    expect("EHLO -bad-\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
    expect("EHLO a b\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
    expect("EHLO [127.0.0.1]\r\n", EHLO_REPLY);
}

#[test]
fn second_ehlo_resets_transaction() {
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\n{E}RCPT TO:<c@d.test>\r\n"),
        &format!("250 2.1.0 Sender OK\r\n{EHLO_REPLY}503 5.5.1 Need MAIL command first\r\n"),
    );
}

#[test]
fn full_transaction_stores_message() {
    let run = expect(
        &format!(
            "{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@f.test>\r\nDATA\r\nSubject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n"
        ),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n221 2.0.0 mx.test Bye\r\n",
    );
    assert_eq!(run.stored, vec![b"Subject: x\r\n\r\nhello\r\n".to_vec()]);
    assert_eq!(
        run.envelopes,
        vec![(
            "a@b.test".into(),
            vec!["c@d.test".into(), "e@f.test".into()]
        )]
    );
    assert!(run.closed);
}

#[test]
fn null_reverse_path_is_accepted() {
    expect(&format!("{E}MAIL FROM:<>\r\n"), "250 2.1.0 Sender OK\r\n");
}

#[test]
fn mail_before_ehlo_is_503() {
    expect(
        "MAIL FROM:<a@b.test>\r\n",
        "503 5.5.1 Send EHLO/HELO first\r\n",
    );
}

#[test]
fn nested_mail_is_503() {
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\n"),
        "250 2.1.0 Sender OK\r\n503 5.5.1 Nested MAIL command\r\n",
    );
}

#[test]
fn mail_structure_errors_are_501() {
    for cmd in [
        "MAIL",
        "MAIL FROM",
        "MAIL FROM:a@b.test",
        "MAIL TO:<a@b.test>",
        "MAIL <a@b.test>",
        "MAIL FROM:<a@b.test",
    ] {
        expect(
            &format!("{E}{cmd}\r\n"),
            "501 5.5.4 Syntax: MAIL FROM:<address>\r\n",
        );
    }
}

#[test]
fn seed_004_invalid_mailbox_is_553() {
    for addr in ["<a b@c>", "<user@>", "<@@>", "<x@-bad-.example>"] {
        expect(
            &format!("{E}MAIL FROM:{addr}\r\n"),
            "553 5.1.7 Sender address syntax invalid\r\n",
        );
        expect(
            &format!("{E}MAIL FROM:<>\r\nRCPT TO:{addr}\r\n"),
            "250 2.1.0 Sender OK\r\n553 5.1.3 Recipient address syntax invalid\r\n",
        );
    }
}

#[test]
fn overlong_parts_are_553() {
    let local = "a".repeat(65);
    expect(
        &format!("{E}MAIL FROM:<{local}@b.test>\r\n"),
        "553 5.1.7 Sender address syntax invalid\r\n",
    );
    let domain = format!("{}.test", "d".repeat(64));
    expect(
        &format!("{E}MAIL FROM:<>\r\nRCPT TO:<a@{domain}>\r\n"),
        "250 2.1.0 Sender OK\r\n553 5.1.3 Recipient address syntax invalid\r\n",
    );
}

#[test]
fn non_ascii_needs_smtputf8() {
    expect(
        &format!("{E}MAIL FROM:<jösé@b.test>\r\n"),
        "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n",
    );
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<ü@d.test>\r\n"),
        "250 2.1.0 Sender OK\r\n553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n",
    );
    let run = expect(
        &format!("{E}MAIL FROM:<jösé@b.test> SMTPUTF8\r\nRCPT TO:<ü@dömäin.test>\r\n"),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n",
    );
    assert!(run.output.is_ascii() || !run.output.is_empty());
}

#[test]
fn unknown_parameter_is_555() {
    expect(
        &format!("{E}MAIL FROM:<a@b.test> FOO=bar\r\n"),
        "555 5.5.4 Unsupported parameter FOO\r\n",
    );
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test> NOTIFY=NEVER\r\n"),
        "250 2.1.0 Sender OK\r\n555 5.5.4 Unsupported parameter NOTIFY\r\n",
    );
}

#[test]
fn bad_parameter_value_is_501() {
    let run = check(format!("{E}MAIL FROM:<a@b.test> SIZE=abc\r\n").as_bytes());
    assert!(
        run.output
            .ends_with("\r\n501 5.5.4 Syntax: bad value or repeated parameter SIZE\r\n"),
        "{}",
        run.output
    );
}

#[test]
fn size_over_limit_is_552() {
    expect(
        &format!("{E}MAIL FROM:<a@b.test> SIZE=1001\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum\r\n",
    );
    expect(
        &format!("{E}MAIL FROM:<a@b.test> SIZE=1000\r\n"),
        "250 2.1.0 Sender OK\r\n",
    );
}

#[test]
fn rcpt_before_mail_is_503() {
    expect(
        &format!("{E}RCPT TO:<c@d.test>\r\n"),
        "503 5.5.1 Need MAIL command first\r\n",
    );
    expect(
        "RCPT TO:<c@d.test>\r\n",
        "503 5.5.1 Need MAIL command first\r\n",
    );
}

#[test]
fn postmaster_without_domain_is_accepted() {
    let run = expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<Postmaster>\r\n"),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n",
    );
    assert!(!run.closed);
}

#[test]
fn source_route_is_accepted_and_ignored() {
    let run = expect(
        &format!(
            "{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<@hop1.test,@hop2.test:user@c.test>\r\nDATA\r\nx\r\n.\r\n"
        ),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n",
    );
    assert_eq!(run.envelopes[0].1, vec!["user@c.test".to_owned()]);
}

#[test]
fn backend_refusals_pass_through() {
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\n"),
        "250 2.1.0 Sender OK\r\n550 5.1.1 Mailbox unavailable\r\n",
    );
    expect(
        &format!("{E}MAIL FROM:<refuse@b.test>\r\n"),
        "554 5.7.1 Relaying denied\r\n",
    );
}

#[test]
fn hundred_recipients_then_452() {
    let mut input = format!("{E}MAIL FROM:<a@b.test>\r\n");
    let mut want = "250 2.1.0 Sender OK\r\n".to_owned();
    for i in 0..100 {
        input.push_str(&format!("RCPT TO:<r{i}@d.test>\r\n"));
        want.push_str("250 2.1.5 Recipient OK\r\n");
    }
    for i in 0..15 {
        input.push_str(&format!("RCPT TO:<x{i}@d.test>\r\n"));
        want.push_str("452 4.5.3 Too many recipients\r\n");
    }
    input.push_str("DATA\r\nx\r\n.\r\n");
    want.push_str("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n");
    let run = expect(&input, &want);
    assert_eq!(run.envelopes[0].1.len(), 100);
}

#[test]
fn data_sequence_and_syntax() {
    expect(
        &format!("{E}DATA\r\n"),
        "503 5.5.1 Need RCPT command first\r\n",
    );
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nDATA\r\n"),
        "250 2.1.0 Sender OK\r\n503 5.5.1 Need RCPT command first\r\n",
    );
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nDATA\r\n"),
        "250 2.1.0 Sender OK\r\n550 5.1.1 Mailbox unavailable\r\n503 5.5.1 Need RCPT command first\r\n",
    );
    expect(&format!("{E}DATA x\r\n"), "501 5.5.4 Syntax: DATA\r\n");
}

#[test]
fn oversized_message_is_552_and_session_goes_on() {
    let body = "x".repeat(998) + "\r\n"; // 1000 octets: exactly the limit
    let run = expect(
        &format!(
            "{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n{body}.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx{body}.\r\nNOOP\r\n"
        ),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID1\r\n\
         250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Message size exceeds fixed maximum\r\n250 2.0.0 Ok\r\n",
    );
    assert_eq!(run.stored.len(), 1);
    assert_eq!(run.stored[0].len(), 1000);
}

#[test]
fn smuggling_never_makes_a_second_message() {
    for end in ["\n.\n", "\r.\r", "\n.\r\n", "\r.\n", "\r\n.\r", "\r\n.\n"] {
        let input = format!(
            "{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nfirst{end}MAIL FROM:<evil@b.test>\r\nRCPT TO:<victim@d.test>\r\nDATA\r\nsmuggled\r\n.\r\n"
        );
        let run = expect(
            &input,
            "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Bare CR or LF not allowed\r\n",
        );
        assert!(run.stored.is_empty(), "{end:?} smuggled a message");
        // With normalization, everything is one message, to the first envelope.
        let mut l = limits();
        l.bare_line_endings = BareLinePolicy::Normalize;
        let run = drive(l, ConnInfo::default(), &[input.as_bytes()]);
        assert_eq!(run.stored.len(), 1, "{end:?}");
        assert_eq!(run.envelopes[0].1, vec!["c@d.test".to_owned()]);
        let text = String::from_utf8_lossy(&run.stored[0]);
        assert!(
            text.contains("MAIL FROM:<evil@b.test>\r\n"),
            "{end:?}: the smuggled commands stay content"
        );
    }
}

#[test]
fn dot_stuffing_is_removed() {
    let run = check(
        format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n..leading\r\n.\r\n")
            .as_bytes(),
    );
    assert_eq!(run.stored, vec![b".leading\r\n".to_vec()]);
}

#[test]
fn rset_noop_vrfy_expn_help() {
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nRSET\r\nRCPT TO:<c@d.test>\r\n"),
        "250 2.1.0 Sender OK\r\n250 2.0.0 Ok\r\n503 5.5.1 Need MAIL command first\r\n",
    );
    expect(
        "NOOP\r\nNOOP anything at all\r\n",
        "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n",
    );
    expect(
        "VRFY user\r\n",
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n",
    );
    expect("EXPN list\r\n", "502 5.5.1 EXPN not available\r\n");
    for verb in ["TURN", "ETRN x", "ATRN", "SEND FROM:<a@b>", "SOML", "SAML"] {
        expect(
            &format!("{verb}\r\n"),
            "502 5.5.1 Command not implemented\r\n",
        );
    }
    let run = check(b"HELP\r\n");
    let lines: Vec<&str> = run.output.lines().skip(1).collect();
    assert!(lines.len() >= 2);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("214-2.0.0 ")),
        "{lines:?}"
    );
    assert!(lines[lines.len() - 1].starts_with("214 2.0.0 "));
    assert!(
        check(b"HELP MAIL\r\n")
            .output
            .contains("MAIL FROM:<address>")
    );
}

#[test]
fn help_status_only_for_trusted() {
    assert!(
        check(b"HELP STATUS\r\n")
            .output
            .ends_with("211 2.0.0 status line\r\n")
    );
    let run = drive(limits(), ConnInfo::default(), &[b"HELP STATUS\r\n"]);
    assert!(run.output.contains("214 2.0.0"), "{}", run.output);
    assert!(!run.output.contains("211"));
}

#[test]
fn argument_errors_for_bare_verbs() {
    expect("RSET x\r\n", "501 5.5.4 Syntax: RSET\r\n");
    let run = expect("QUIT now\r\n", "501 5.5.4 Syntax: QUIT\r\n");
    assert!(!run.closed);
}

#[test]
fn unknown_and_junk_lines_are_500() {
    for line in [
        "FOO",
        "",
        "  ",
        "\0\0",
        "\u{1b}[A",
        "MAILFROM:<a@b>",
        "NOOP\rRSET",
    ] {
        expect(
            &format!("{line}\r\n"),
            "500 5.5.2 Command not recognized\r\n",
        );
    }
    expect("\u{ff}\u{fe}\r\n", "500 5.5.2 Command not recognized\r\n");
}

#[test]
fn line_limit_512_with_crlf() {
    let ok = format!("NOOP {}\r\n", "x".repeat(505));
    assert_eq!(ok.len(), 512);
    expect(&ok, "250 2.0.0 Ok\r\n");
    let long = format!("NOOP {}\r\n", "x".repeat(506));
    assert_eq!(long.len(), 513);
    expect(
        &format!("{long}NOOP\r\n"),
        "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n",
    );
}

#[test]
fn mail_gets_size_and_smtputf8_allowance() {
    // 512 + 26 + 10 = 548 octets with CRLF for MAIL.
    let local = "a".repeat(64);
    let base = format!("MAIL FROM:<{local}@b.test> SIZE=10 SMTPUTF8");
    let pad = 548 - 2 - base.len();
    let line = format!("{base}{}\r\n", " ".repeat(pad));
    assert_eq!(line.len(), 548);
    expect(&format!("{E}{line}"), "250 2.1.0 Sender OK\r\n");
    let line = format!("{base}{}\r\n", " ".repeat(pad + 1));
    expect(&format!("{E}{line}"), "500 5.5.2 Line too long\r\n");
}

#[test]
fn megabyte_line_without_crlf_is_skipped_not_buffered() {
    let mut input = vec![b'A'; 1 << 20];
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let run = whole(&input);
    assert_eq!(
        run.output,
        format!("{GREETING}500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n")
    );
}

#[test]
fn bare_lf_ends_a_command_line_bare_cr_does_not() {
    expect("NOOP\nNOOP\r\n", "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
    expect("NOOP\rNOOP\r\n", "500 5.5.2 Command not recognized\r\n");
}

#[test]
fn too_many_errors_is_421_and_close() {
    let input = "FOO\r\n".repeat(12);
    let run = check(input.as_bytes());
    let want = format!(
        "{GREETING}{}421 4.7.0 mx.test Too many errors\r\n",
        "500 5.5.2 Command not recognized\r\n".repeat(10)
    );
    assert_eq!(run.output, want);
    assert!(run.closed);
}

#[test]
fn policy_refusals_do_not_count_as_errors() {
    let mut input = format!("{E}MAIL FROM:<a@b.test>\r\n");
    let mut want = "250 2.1.0 Sender OK\r\n".to_owned();
    for i in 0..15 {
        input.push_str(&format!("RCPT TO:<nobody{i}@d.test>\r\n"));
        want.push_str("550 5.1.1 Mailbox unavailable\r\n");
    }
    input.push_str("NOOP\r\n");
    want.push_str("250 2.0.0 Ok\r\n");
    let run = expect(&input, &want);
    assert!(!run.closed);
}

#[test]
fn quit_is_221_and_close() {
    let run = expect("QUIT\r\nNOOP\r\n", "221 2.0.0 mx.test Bye\r\n");
    assert!(run.closed);
}

#[test]
fn starttls_without_certificate_is_502() {
    expect("STARTTLS\r\n", "502 5.5.1 STARTTLS not available\r\n");
}

#[test]
fn bdat_in_chunks() {
    let run = expect(
        &format!(
            "{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 7\r\nHello\r\nBDAT 9\r\n, world\r\nBDAT 0 LAST\r\n"
        ),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.0.0 7 octets received\r\n250 2.0.0 9 octets received\r\n250 2.0.0 Ok: queued as ID1\r\n",
    );
    assert_eq!(run.stored, vec![b"Hello\r\n, world\r\n".to_vec()]);
}

#[test]
fn bdat_content_is_not_commands() {
    let chunk = "QUIT\r\n.\r\nRSET\r\n";
    let run = expect(
        &format!(
            "{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT {} LAST\r\n{chunk}NOOP\r\n",
            chunk.len()
        ),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.0.0 Ok: queued as ID1\r\n250 2.0.0 Ok\r\n",
    );
    assert_eq!(run.stored, vec![chunk.as_bytes().to_vec()]);
}

#[test]
fn bdat_without_rcpt_discards_chunk() {
    expect(
        &format!("{E}BDAT 12 LAST\r\nRSET\r\nQUIT\r\nNOOP\r\n"),
        "503 5.5.1 Need RCPT command first\r\n250 2.0.0 Ok\r\n",
    );
}

#[test]
fn data_after_bdat_is_503() {
    expect(
        &format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 3\r\nabcDATA\r\n"),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.0.0 3 octets received\r\n503 5.5.1 DATA not allowed after BDAT\r\n",
    );
}

#[test]
fn bdat_bad_size_is_501_and_close() {
    let run = expect(
        &format!("{E}BDAT x\r\nNOOP\r\n"),
        "501 5.5.4 Syntax: BDAT <size> [LAST]\r\n",
    );
    assert!(run.closed);
}

#[test]
fn bdat_over_limit_is_552() {
    let big = "y".repeat(1001);
    let run = expect(
        &format!(
            "{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 1001 LAST\r\n{big}NOOP\r\n"
        ),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n552 5.3.4 Message size exceeds fixed maximum\r\n250 2.0.0 Ok\r\n",
    );
    assert!(run.stored.is_empty());
}

#[test]
fn pipelined_transactions_answer_in_order() {
    let one = "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nm\r\n.\r\n";
    let run = expect(
        &format!("{E}{one}{one}{one}"),
        &"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as IDn\r\n"
            .repeat(3)
            .replacen("IDn", "ID1", 1)
            .replacen("IDn", "ID2", 1)
            .replacen("IDn", "ID3", 1),
    );
    assert_eq!(run.stored.len(), 3);
}

#[test]
fn refused_client_only_gets_quit() {
    let mut s = Session::refused(Arc::new(limits()));
    assert_eq!(s.feed(b"EHLO x.test\r\nQUIT\r\n"), 19);
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "554 5.7.1 mx.test Service unavailable\r\n503 5.5.1 Bad sequence of commands: only QUIT is accepted\r\n221 2.0.0 mx.test Bye\r\n"
    );
}

#[test]
fn timeout_and_shutdown_replies() {
    let mut s = Session::new(Arc::new(limits()), ConnInfo::default());
    s.on_timeout();
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("421 4.4.2 mx.test Timeout exceeded\r\n"));
    assert!(s.is_closed());

    let mut s = Session::new(Arc::new(limits()), ConnInfo::default());
    s.feed(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n");
    while let Some(ev) = s.poll_event() {
        if matches!(ev, Event::Mail { .. }) {
            s.resolve(Verdict::Accept);
        }
    }
    s.feed(b"RCPT TO:<c@d.test>\r\n");
    s.poll_event();
    s.resolve(Verdict::Accept);
    s.feed(b"DATA\r\npart of the body");
    assert!(!s.shutdown(), "a DATA in progress finishes first");
    s.feed(b"\r\n.\r\n");
    assert_eq!(s.poll_event(), Some(Event::Body));
    assert_eq!(s.poll_event(), Some(Event::DataEnd));
    s.resolve(Verdict::Queued("Q".into()));
    assert!(s.shutdown());
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert!(
        String::from_utf8_lossy(&out)
            .ends_with("250 2.0.0 Ok: queued as Q\r\n421 4.3.2 mx.test Service shutting down\r\n")
    );
}

#[test]
fn reverse_path_display() {
    assert_eq!(ReversePath::Null.to_string(), "");
}

// ---- STARTTLS and AUTH ------------------------------------------------------

/// A submission listener: STARTTLS offered, AUTH after TLS, AUTH required.
fn submission() -> ConnInfo {
    ConnInfo {
        starttls_available: true,
        auth_offered: true,
        auth_requires_tls: true,
        auth_required: true,
        ..ConnInfo::default()
    }
}

fn chunks(conn: ConnInfo, parts: &[&str]) -> Run {
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    drive(limits(), conn, &bytes)
}

/// base64 of PLAIN `\0alice\0secret` and of a wrong password.
const PLAIN_OK: &str = "AGFsaWNlAHNlY3JldA==";
const PLAIN_BAD: &str = "AGFsaWNlAHdyb25n";

fn ehlo_with(extra: &[&str]) -> String {
    let mut caps = vec![
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ];
    caps.extend_from_slice(extra);
    caps.push("HELP");
    let mut r = "250-mx.test\r\n".to_owned();
    for (i, c) in caps.iter().enumerate() {
        r.push_str(&format!(
            "250{}{c}\r\n",
            if i == caps.len() - 1 { ' ' } else { '-' }
        ));
    }
    r
}

#[test]
fn starttls_is_advertised_before_tls_and_auth_only_after() {
    let run = chunks(submission(), &[E, "STARTTLS\r\n", E]);
    let want = format!(
        "{GREETING}{}220 2.0.0 Ready to start TLS\r\n{}",
        ehlo_with(&["STARTTLS"]),
        ehlo_with(&["AUTH PLAIN LOGIN"])
    );
    assert_eq!(run.output, want);
}

#[test]
fn auth_offered_without_tls_when_not_required() {
    let conn = ConnInfo {
        auth_offered: true,
        ..ConnInfo::default()
    };
    let run = chunks(conn, &[E]);
    assert_eq!(
        run.output,
        format!("{GREETING}{}", ehlo_with(&["AUTH PLAIN LOGIN"]))
    );
}

#[test]
fn commands_pipelined_behind_starttls_are_discarded() {
    // CVE-2011-0411: RSET and MAIL arrive in the same read as STARTTLS.
    let run = chunks(
        submission(),
        &[
            E,
            "STARTTLS\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n",
            "MAIL FROM:<a@b.test>\r\n",
        ],
    );
    let want = format!(
        "{GREETING}{}220 2.0.0 Ready to start TLS\r\n503 5.5.1 Send EHLO/HELO first\r\n",
        ehlo_with(&["STARTTLS"])
    );
    assert_eq!(run.output, want, "the RSET must never be answered");
}

#[test]
fn starttls_error_rows() {
    let run = chunks(submission(), &[E, "STARTTLS now\r\n"]);
    assert!(
        run.output.ends_with("501 5.5.4 Syntax: STARTTLS\r\n"),
        "{}",
        run.output
    );
    let run = chunks(submission(), &[E, "STARTTLS\r\n", E, "STARTTLS\r\n"]);
    assert!(
        run.output.ends_with("503 5.5.1 TLS already active\r\n"),
        "{}",
        run.output
    );
    let run = chunks(
        ConnInfo {
            tls_active: true,
            ..ConnInfo::default()
        },
        &["STARTTLS\r\n"],
    );
    assert!(
        run.output.ends_with("503 5.5.1 TLS already active\r\n"),
        "{}",
        run.output
    );
    let run = chunks(ConnInfo::default(), &["STARTTLS\r\n"]);
    assert!(
        run.output.ends_with("502 5.5.1 STARTTLS not available\r\n"),
        "{}",
        run.output
    );
}

#[test]
fn auth_before_tls_is_530_and_mail_before_auth_is_530() {
    let run = chunks(
        submission(),
        &[
            E,
            &format!("AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.test>\r\n"),
        ],
    );
    assert!(
        run.output.ends_with(
            "530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Authentication required\r\n"
        ),
        "{}",
        run.output
    );
}

/// A submission session after STARTTLS and a second EHLO.
fn after_tls(rest: &str) -> Run {
    chunks(submission(), &[E, "STARTTLS\r\n", &format!("{E}{rest}")])
}

fn tail(run: &Run) -> String {
    let marker = "250 HELP\r\n";
    run.output
        .rsplit_once(marker)
        .map(|(_, t)| t.to_owned())
        .unwrap_or_default()
}

#[test]
fn auth_plain_with_initial_response_then_mail() {
    let run = after_tls(&format!(
        "AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.test>\r\nAUTH PLAIN {PLAIN_OK}\r\n"
    ));
    assert_eq!(
        tail(&run),
        "235 2.7.0 Authentication successful\r\n250 2.1.0 Sender OK\r\n503 5.5.1 Already authenticated\r\n"
    );
}

#[test]
fn auth_plain_without_initial_response() {
    let run = after_tls(&format!("AUTH PLAIN\r\n{PLAIN_OK}\r\n"));
    assert_eq!(
        tail(&run),
        "334 \r\n235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn auth_login_two_steps() {
    // "alice" / "secret"
    let run = after_tls("AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n");
    assert_eq!(
        tail(&run),
        "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
    );
    let run = after_tls("AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n");
    assert_eq!(
        tail(&run),
        "334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn auth_error_rows() {
    let run = after_tls(&format!(
        "AUTH PLAIN {PLAIN_BAD}\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN !!notbase64\r\nAUTH\r\n"
    ));
    assert_eq!(
        tail(&run),
        "535 5.7.8 Authentication credentials invalid\r\n504 5.5.4 Unrecognized authentication type\r\n334 \r\n501 5.0.0 Authentication cancelled\r\n501 5.5.2 Cannot decode response\r\n501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
    );
}

#[test]
fn auth_inside_a_transaction_is_503() {
    let conn = ConnInfo {
        auth_offered: true,
        ..ConnInfo::default()
    };
    let run = chunks(
        conn,
        &[
            E,
            &format!("MAIL FROM:<a@b.test>\r\nAUTH PLAIN {PLAIN_OK}\r\n"),
        ],
    );
    assert!(
        run.output.ends_with(
            "250 2.1.0 Sender OK\r\n503 5.5.1 AUTH not allowed during a mail transaction\r\n"
        ),
        "{}",
        run.output
    );
}

#[test]
fn three_auth_failures_close_with_421() {
    let run = after_tls(&format!("AUTH PLAIN {PLAIN_BAD}\r\n").repeat(4));
    assert_eq!(
        tail(&run),
        "535 5.7.8 Authentication credentials invalid\r\n".repeat(3)
            + "421 4.7.0 Too many authentication failures\r\n"
    );
    assert!(run.closed);
}

#[test]
fn auth_not_offered_is_502() {
    let run = chunks(
        ConnInfo::default(),
        &[E, &format!("AUTH PLAIN {PLAIN_OK}\r\n")],
    );
    assert!(
        run.output
            .ends_with("502 5.5.1 Command not implemented\r\n"),
        "{}",
        run.output
    );
}

#[test]
fn mail_auth_parameter_is_accepted() {
    let run = after_tls(&format!(
        "AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.test> AUTH=<>\r\n"
    ));
    assert!(
        tail(&run).ends_with("250 2.1.0 Sender OK\r\n"),
        "{}",
        run.output
    );
}

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
