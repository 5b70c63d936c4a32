//! The other commands, the limits, BDAT, pipelining and the closing rows.

use super::*;

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
