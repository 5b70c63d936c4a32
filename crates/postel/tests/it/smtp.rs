//! The reply contract over real TCP against the real binary.

use std::io::Write;
use std::time::Duration;

use crate::support::{HOST, Server, queued_id, strip_trace};

#[test]
fn greeting_names_host_and_postel_version() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.expect(&format!(
        "220 {HOST} ESMTP Postel {}",
        env!("CARGO_PKG_VERSION")
    ));
    c.send("EHLO client.test\r\n");
    c.expect(
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 37748736\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n250 HELP",
    );
    c.cmd("QUIT", "221 2.0.0 mx.test Bye");
    assert!(c.is_closed());
}

#[test]
fn sequence_errors_are_503() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.expect_start("220 ");
    c.cmd("MAIL FROM:<a@b.test>", "503 5.5.1 Send EHLO/HELO first");
    c.cmd("RCPT TO:<a@b.test>", "503 5.5.1 Need MAIL command first");
    c.cmd("DATA", "503 5.5.1 Need RCPT command first");
    c.cmd("HELO client.test", "250 mx.test");
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("MAIL FROM:<a@b.test>", "503 5.5.1 Nested MAIL command");
    c.cmd("DATA", "503 5.5.1 Need RCPT command first");
    c.cmd("RSET", "250 2.0.0 Ok");
    c.cmd("RCPT TO:<a@b.test>", "503 5.5.1 Need MAIL command first");
}

#[test]
fn pipelined_transactions_in_one_write() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.expect_start("220 ");
    let mut burst = String::from("EHLO client.test\r\n");
    for i in 0..3 {
        burst.push_str(&format!("MAIL FROM:<a@b.test>\r\nRCPT TO:<c{i}@d.test>\r\nDATA\r\nSubject: {i}\r\n\r\nbody {i}\r\n.\r\n"));
    }
    burst.push_str("QUIT\r\n");
    c.send(&burst);
    c.expect_start("250-mx.test");
    let mut ids = Vec::new();
    for _ in 0..3 {
        c.expect("250 2.1.0 Sender OK");
        c.expect("250 2.1.5 Recipient OK");
        c.expect("354 End data with <CR><LF>.<CR><LF>");
        ids.push(queued_id(&c.expect_start("250 2.0.0 Ok: queued as ")));
    }
    c.expect("221 2.0.0 mx.test Bye");
    let stored = s.messages();
    assert_eq!(stored.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            strip_trace(&s.raw(id)),
            format!("Subject: {i}\r\n\r\nbody {i}\r\n").as_bytes()
        );
    }
}

#[test]
fn hundred_recipients_then_452_and_all_hundred_stored() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    for i in 0..100 {
        c.cmd(&format!("RCPT TO:<r{i}@d.test>"), "250 2.1.5 Recipient OK");
    }
    c.cmd("RCPT TO:<r100@d.test>", "452 4.5.3 Too many recipients");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send("x\r\n.\r\n");
    c.expect_start("250 2.0.0 Ok: queued as ");
    let m = &s.messages()[0];
    assert_eq!(m["to"].as_array().expect("to").len(), 100);
    assert_eq!(m["to"][99], "r99@d.test");
}

#[test]
fn message_of_exactly_the_limit_is_accepted_one_more_octet_is_552() {
    let s = Server::start("[limits]\nmax_message_size = 5000\n", &[]);
    let mut c = s.connect();
    c.expect_start("220 ");
    c.send("EHLO client.test\r\n");
    assert!(c.reply().contains("250-SIZE 5000\r\n"));
    let exact: Vec<u8> = [vec![b'a'; 4998], b"\r\n".to_vec()].concat();
    let id = c.mail("a@b.test", &["c@d.test"], &exact);
    assert_eq!(strip_trace(&s.raw(&id)), &exact[..]);
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send([vec![b'a'; 4999], b"\r\n.\r\n".to_vec()].concat());
    c.expect("552 5.3.4 Message size exceeds fixed maximum");
    // The session goes on.
    c.cmd("NOOP", "250 2.0.0 Ok");
    c.cmd(
        "MAIL FROM:<a@b.test> SIZE=5001",
        "552 5.3.4 Message size exceeds fixed maximum",
    );
    c.mail("a@b.test", &["c@d.test"], b"small\r\n");
    assert_eq!(s.messages().len(), 2);
}

#[test]
fn smuggling_attempts_never_make_a_second_message() {
    let s = Server::start("", &[]);
    for end in ["\n.\n", "\r.\r", "\n.\r\n", "\r.\n", "\r\n.\r", "\r\n.\n"] {
        let mut c = s.connect();
        c.greet();
        c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
        c.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
        c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
        c.send(format!(
            "Subject: first\r\n\r\nhello{end}MAIL FROM:<evil@b.test>\r\nRCPT TO:<victim@d.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n"
        ));
        c.expect("550 5.5.2 Bare CR or LF not allowed");
        c.cmd("NOOP", "250 2.0.0 Ok");
    }
    assert!(
        s.messages().is_empty(),
        "a smuggled or bare-LF message was stored: {:?}",
        s.messages()
    );
}

#[test]
fn smuggling_with_normalize_policy_stores_one_message_to_the_first_envelope() {
    let s = Server::start("[policy]\nbare_line_endings = \"normalize\"\n", &[]);
    let mut c = s.connect();
    c.greet();
    c.mail(
        "a@b.test",
        &["c@d.test"],
        b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@b.test>\r\nRCPT TO:<victim@d.test>\r\nDATA\r\nx\r\n",
    );
    let all = s.messages();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["to"][0], "c@d.test");
    let raw = s.raw(all[0]["id"].as_str().expect("id"));
    assert!(
        !raw.windows(2)
            .enumerate()
            .any(|(i, w)| w[1] == b'\n' && (i == 0 || w[0] != b'\r')),
        "bare LF stored"
    );
}

#[test]
fn command_line_of_512_octets_is_read_513_is_500() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.expect_start("220 ");
    let ok = format!("NOOP {}\r\n", "x".repeat(505));
    assert_eq!(ok.len(), 512);
    c.send(&ok);
    c.expect("250 2.0.0 Ok");
    let long = format!("NOOP {}\r\n", "x".repeat(506));
    c.send(&long);
    c.expect("500 5.5.2 Line too long");
    c.cmd("NOOP", "250 2.0.0 Ok");
}

#[test]
fn megabyte_line_without_crlf_is_refused_and_session_goes_on() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.expect_start("220 ");
    let chunk = vec![b'A'; 64 * 1024];
    for _ in 0..16 {
        c.stream().write_all(&chunk).expect("write");
    }
    c.send("\r\n");
    c.expect("500 5.5.2 Line too long");
    c.cmd("NOOP", "250 2.0.0 Ok");
}

#[test]
fn bdat_in_several_chunks_is_stored_byte_exact() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test> BODY=8BITMIME", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
    let parts: [&[u8]; 3] = [
        b"Subject: chunks\r\n\r\nfirst ",
        b"second\r\n.\r\nQUIT\r\n",
        "dritte Zeile \u{e9}\r\n".as_bytes(),
    ];
    for (i, p) in parts.iter().enumerate() {
        let last = if i == parts.len() - 1 { " LAST" } else { "" };
        c.send(format!("BDAT {}{last}\r\n", p.len()));
        c.send(p);
        if last.is_empty() {
            c.expect(&format!("250 2.0.0 {} octets received", p.len()));
        }
    }
    let id = queued_id(&c.expect_start("250 2.0.0 Ok: queued as "));
    assert_eq!(strip_trace(&s.raw(&id)), parts.concat().as_slice());
    c.cmd("DATA", "503 5.5.1 Need RCPT command first");
}

#[test]
fn many_concurrent_sessions_all_store() {
    let s = Server::start("", &[]);
    let addr = s.addr;
    let threads: Vec<_> = (0..40)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = crate::support::Client::connect(addr);
                c.greet();
                (0..5)
                    .map(|i| {
                        c.mail(
                            "a@b.test",
                            &["c@d.test"],
                            format!("Subject: t{t} m{i}\r\n\r\nx\r\n").as_bytes(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert_eq!(s.messages().len(), 200);
}

#[test]
fn help_status_is_211_on_loopback() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    c.mail("a@b.test", &["c@d.test"], b"x\r\n");
    c.send("HELP STATUS\r\n");
    let r = c.reply();
    assert!(r.starts_with("211-2.0.0 mx.test Postel"), "{r}");
    assert!(r.contains("211-2.0.0 Messages stored: 1 "), "{r}");
    assert!(r.contains("211-2.0.0 Sessions open: 1\r\n"), "{r}");
    assert!(r.ends_with("211 2.0.0 End of status\r\n"), "{r}");
    c.send("HELP\r\n");
    assert!(c.reply().ends_with("214 2.0.0 End of HELP info\r\n"));
    c.cmd(
        "VRFY someone",
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
    );
    c.cmd("EXPN list", "502 5.5.1 EXPN not available");
    c.cmd("ETRN x.test", "502 5.5.1 Command not implemented");
    c.cmd("STARTTLS", "502 5.5.1 STARTTLS not available");
    c.cmd("FOO", "500 5.5.2 Command not recognized");
}

#[test]
fn domain_policy_never_relays() {
    let s = Server::start(
        "[policy]\ndomains = [\"example.test\", \"list.test\"]\nmailboxes = { \"list.test\" = [\"alice\"] }\n",
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@elsewhere.test>", "250 2.1.0 Sender OK");
    c.cmd(
        "RCPT TO:<victim@elsewhere.test>",
        "554 5.7.1 Relaying denied",
    );
    c.cmd("RCPT TO:<bob@list.test>", "550 5.1.1 Mailbox unavailable");
    c.cmd("RCPT TO:<Alice@List.test>", "250 2.1.5 Recipient OK");
    c.cmd("RCPT TO:<anyone@example.test>", "250 2.1.5 Recipient OK");
    c.cmd("RCPT TO:<postmaster>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send("x\r\n.\r\n");
    c.expect_start("250 2.0.0 Ok: queued as ");
    let to: Vec<_> = s.messages()[0]["to"]
        .as_array()
        .expect("to")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(to, ["Alice@List.test", "anyone@example.test", "postmaster"]);
}

#[test]
fn domain_flag_sets_accepted_domains() {
    let s = Server::start("", &["--domain", "only.test"]);
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<x@other.test>", "554 5.7.1 Relaying denied");
    c.cmd("RCPT TO:<x@only.test>", "250 2.1.5 Recipient OK");
}

#[test]
fn too_many_errors_closes_with_421() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.expect_start("220 ");
    for _ in 0..9 {
        c.cmd("BOGUS", "500 5.5.2 Command not recognized");
    }
    c.send("BOGUS\r\n");
    c.expect("500 5.5.2 Command not recognized");
    c.expect("421 4.7.0 mx.test Too many errors");
    assert!(c.is_closed());
}

#[test]
fn idle_client_gets_421_timeout() {
    let s = Server::start("[limits]\ncommand_timeout = 1\n", &[]);
    let mut c = s.connect();
    c.expect_start("220 ");
    std::thread::sleep(Duration::from_millis(1500));
    c.expect("421 4.4.2 mx.test Timeout exceeded");
    assert!(c.is_closed());
}

#[test]
fn client_that_never_reads_is_dropped_after_the_command_timeout() {
    let s = Server::start("[limits]\ncommand_timeout = 1\n", &[]);
    let stream = std::net::TcpStream::connect(s.addr).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // 2 MB of NOOPs: the replies fill both socket buffers while we read none.
    let flood = std::thread::spawn(move || {
        let chunk = "NOOP\r\n".repeat(10_000);
        for _ in 0..60 {
            if writer.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(4));
    // Had the server kept waiting on its write, reading now would let it go
    // on answering, and no end of stream would come.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut sink = Vec::new();
    let r = std::io::Read::read_to_end(&mut &stream, &mut sink);
    assert!(
        r.is_ok()
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server did not drop the client: {r:?}"
    );
    let _ = flood.join();
    // And it still serves others.
    let mut c = s.connect();
    c.expect_start("220 ");
    c.cmd("NOOP", "250 2.0.0 Ok");
}

#[test]
fn per_ip_connection_limit_is_421() {
    let s = Server::start(
        "[limits]\nmax_connections_per_ip = 2\nexempt_loopback = false\n",
        &[],
    );
    let mut a = s.connect();
    let mut b = s.connect();
    a.expect_start("220 ");
    b.expect_start("220 ");
    let mut c = s.connect();
    c.expect("421 4.7.0 mx.test Too many connections, try again later");
    assert!(c.is_closed());
    a.cmd("QUIT", "221 2.0.0 mx.test Bye");
    assert!(a.is_closed());
    // The slot is freed once the session ends.
    std::thread::sleep(Duration::from_millis(200));
    let mut d = s.connect();
    d.expect_start("220 ");
}

#[test]
fn loopback_is_exempt_from_the_per_ip_limit_by_default_but_not_the_total() {
    let s = Server::start(
        "[limits]\nmax_connections_per_ip = 1\nmax_connections = 3\n",
        &[],
    );
    let mut open: Vec<_> = (0..3).map(|_| s.connect()).collect();
    for c in &mut open {
        c.expect_start("220 ");
    }
    let mut over = s.connect();
    over.expect("421 4.7.0 mx.test Too many connections, try again later");
}

#[test]
fn sigterm_finishes_data_in_progress_and_421s_idle_sessions() {
    let mut s = Server::start("", &[]);
    let mut idle = s.connect();
    idle.greet();
    let mut busy = s.connect();
    busy.greet();
    busy.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    busy.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
    busy.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    busy.send("Subject: in flight\r\n\r\nfirst half ");
    std::thread::sleep(Duration::from_millis(200));
    s.signal("TERM");
    idle.expect("421 4.3.2 mx.test Service shutting down");
    assert!(idle.is_closed());
    // New connections are refused once shutdown has begun.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "listener still open during shutdown"
    );
    busy.send("second half\r\n.\r\n");
    let id = queued_id(&busy.expect_start("250 2.0.0 Ok: queued as "));
    busy.expect("421 4.3.2 mx.test Service shutting down");
    assert_eq!(s.wait_exit(10), Some(true), "server did not exit cleanly");
    let all = crate::support::list_messages(&s.data_dir);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], id.as_str());
    assert_eq!(all[0]["subject"], "in flight");
}
