//! Greeting, envelope and content: the rows of a mail transaction.

use super::*;

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
        &format!("{E}MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test> XFOO=1\r\n"),
        "250 2.1.0 Sender OK\r\n555 5.5.4 Unsupported parameter XFOO\r\n",
    );
}

#[test]
fn dsn_parameters_are_taken_and_bad_ones_are_501() {
    expect(
        &format!(
            "{E}MAIL FROM:<a@b.test> RET=HDRS ENVID=x+2B1\r\nRCPT TO:<c@d.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c@d.test\r\nRCPT TO:<e@d.test> NOTIFY=NEVER,SUCCESS\r\nRCPT TO:<e@d.test> ORCPT=c@d.test\r\n"
        ),
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n501 5.5.4 Syntax: bad value or repeated parameter NOTIFY\r\n501 5.5.4 Syntax: bad value or repeated parameter ORCPT\r\n",
    );
    expect(
        &format!("{E}MAIL FROM:<a@b.test> RET=SOME\r\n"),
        "501 5.5.4 Syntax: bad value or repeated parameter RET\r\n",
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
