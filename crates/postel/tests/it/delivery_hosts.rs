//! Delivery against hosts that limit, break or refuse: remote SIZE,
//! missing 8BITMIME and SMTPUTF8, a 421 greeting, a dropped connection, a
//! silent server, a broken STARTTLS, recipient limits, loops, notices
//! about notices, and a `kill -9` in the middle of a delivery.

use crate::rig::{Mx, config, message, notices, queue, relay, wait_for};
use crate::support::{Server, arg, postel, temp_dir};
use crate::tools::free_port;

/// The status of each notice's recipients, sorted.
fn statuses(s: &Server) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = notices(s)
        .iter()
        .flat_map(|n| n["recipients"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["Final-Recipient"].as_str().unwrap_or("").to_owned(),
                r["Status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn what_the_remote_cannot_take_fails_without_being_sent() {
    let port = free_port();
    let mx = Mx::start("127.0.4.1", port, &["--size", "3000", "--hide", "8BITMIME"]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(5000));
    c.mail("me@here.test", &["big@small.test"], big.as_bytes());
    c.mail(
        "me@here.test",
        &["eight@small.test"],
        "Subject: eight bits\r\n\r\ncaf\u{e9}\r\n".as_bytes(),
    );
    c.cmd("MAIL FROM:<me@here.test> SMTPUTF8", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<j\u{f6}rg@small.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: utf8\r\n\r\nhi\r\n.\r\n");
    c.expect_start("250 ");
    c.mail("me@here.test", &["fine@small.test"], &message("fits"));
    wait_for(30, "three notices", || notices(&s).len() == 3);
    assert_eq!(
        statuses(&s),
        [
            ("rfc822; big@small.test".to_owned(), "5.3.4".to_owned()),
            ("rfc822; eight@small.test".to_owned(), "5.6.3".to_owned()),
            ("utf-8; j\u{f6}rg@small.test".to_owned(), "5.6.7".to_owned()),
        ]
    );
    wait_for(10, "the small one", || mx.received().len() == 1);
    let got = &mx.received()[0];
    assert_eq!(got["rcpt_tos"], serde_json::json!(["fine@small.test"]));
    // SIZE was offered: the size is declared.
    let opts = got["mail_options"].as_array().expect("options");
    assert!(
        opts.iter()
            .any(|o| o.as_str().is_some_and(|o| o.starts_with("SIZE="))),
        "{got}"
    );
}

#[test]
fn a_421_greeting_moves_on_to_the_next_host() {
    let port = free_port();
    let _refuse = Mx::start("127.0.7.1", port, &["--mode", "refuse"]);
    let mx2 = Mx::start("127.0.7.2", port, &[]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["bob@dual.test"], &message("second"));
    wait_for(20, "delivery by the second host", || {
        mx2.received().len() == 1
    });
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
}

#[test]
fn a_dropped_connection_and_a_silent_server_are_deferred() {
    let port = free_port();
    let _drop = Mx::start("127.0.6.1", port, &["--mode", "drop"]);
    let _silent = Mx::start("127.0.1.1", port, &["--mode", "silent"]);
    let s = relay(port, "retry = [\"1h\"]\ncommand_timeout = \"2s\"")
        // The rig's defaults come first; these win as the later keys.
        ;
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["a@flaky.test"], &message("dropped"));
    // pref.test: mx1 is silent (times out), mx2 is down: deferred.
    c.mail("me@here.test", &["b@pref.test"], &message("silent"));
    wait_for(40, "two deferrals", || {
        let q = queue(&s);
        q.len() == 2 && q.iter().all(|e| e["state"] == "deferred")
    });
    let q = queue(&s);
    let reply = |to: &str| {
        q.iter()
            .find(|e| e["recipient"] == to)
            .and_then(|e| e["last_reply"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    assert!(reply("a@flaky.test").contains("closed"), "{q:?}");
    assert!(!reply("b@pref.test").is_empty(), "{q:?}");
    assert!(notices(&s).is_empty(), "deferrals send no notice yet");
}

#[test]
fn a_broken_starttls_falls_back_to_plaintext_under_may_and_defers_under_verify() {
    let port = free_port();
    let mx = Mx::start("127.0.5.1", port, &["--mode", "badtls"]);
    // The sender reports TLS results (tls.test asks, to a local address
    // here) every few seconds, signed with a key of its host's domain.
    let keys = temp_dir("badtls-keys");
    let out = postel(&[
        "dkim",
        "generate",
        "mx.test",
        "--selector",
        "t",
        "--dir",
        arg(&keys),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let may = Server::start(
        &config(
            port,
            "tls_report_period = \"3s\"",
            &format!(
                "[[dkim]]\ndomain = \"mx.test\"\nselector = \"tr\"\nkey = \"{}\"\n",
                arg(&keys.join("mx.test/tr.pem"))
            ),
        ),
        &[],
    );
    let mut c = may.connect();
    c.greet();
    c.mail("me@here.test", &["bob@tls.test"], &message("plain"));
    wait_for(20, "plaintext delivery", || mx.received().len() == 1);
    assert_eq!(mx.received()[0]["tls"], false);
    // The broken handshake before the plaintext retry is in the report;
    // the plaintext session (STARTTLS was offered) is no success.
    wait_for(20, "a TLS report", || {
        !crate::dane::tls_reports(&may).is_empty()
    });
    let report = &crate::dane::tls_reports(&may)[0];
    let p = &report["policies"][0];
    assert_eq!(p["policy"]["policy-domain"], "tls.test", "{report}");
    assert_eq!(p["policy"]["policy-type"], "no-policy-found", "{report}");
    assert_eq!(
        p["summary"]["total-successful-session-count"], 0,
        "{report}"
    );
    assert_eq!(
        p["failure-details"][0]["receiving-mx-hostname"], "mx.tls.test",
        "{report}"
    );
    assert!(
        p["summary"]["total-failure-session-count"].as_u64() >= Some(1),
        "{report}"
    );

    let verify = relay(
        port,
        "retry = [\"1h\"]\n[delivery.tls_policies]\n\"tls.test\" = \"verify\"",
    );
    let mut c = verify.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["bob@tls.test"],
        &message("must be private"),
    );
    wait_for(20, "a deferral", || {
        queue(&verify)
            .first()
            .is_some_and(|e| e["state"] == "deferred")
    });
    let reply = queue(&verify)[0]["last_reply"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reply.contains("TLS"), "{reply}");
    assert_eq!(mx.received().len(), 1, "nothing sent in plaintext");
}

#[test]
fn recipients_per_transaction_and_a_remote_452_for_too_many() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &["--max-rcpt", "2"]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    let to: Vec<String> = (1..=5).map(|i| format!("u{i}@ok.test")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    c.mail("me@here.test", &to, &message("many"));
    wait_for(20, "every recipient", || {
        mx.received()
            .iter()
            .map(|m| m["rcpt_tos"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
            == 5
    });
    let sizes: Vec<usize> = mx
        .received()
        .iter()
        .map(|m| m["rcpt_tos"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [2, 2, 1], "the rest at once, in new transactions");
    wait_for(10, "the queue to empty", || queue(&s).is_empty());

    // Our own limit, without a remote 452.
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "max_recipients_per_transaction = 3");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &to, &message("many"));
    wait_for(20, "every recipient", || mx.received().len() == 2);
    let sizes: Vec<usize> = mx
        .received()
        .iter()
        .map(|m| m["rcpt_tos"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [3, 2]);
}

#[test]
fn notices_follow_notify_never_bounce_a_bounce_and_go_out_to_remote_senders() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    // A bounce that fails: no notice about a notice.
    c.mail("", &["reject-null@ok.test"], &message("from null"));
    // NOTIFY=NEVER: no notice.
    c.cmd("MAIL FROM:<me@here.test>", "250 2.1.0 Sender OK");
    c.cmd(
        "RCPT TO:<reject-never@ok.test> NOTIFY=NEVER",
        "250 2.1.5 Recipient OK",
    );
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: never\r\n\r\nx\r\n.\r\n");
    c.expect_start("250 ");
    // NOTIFY=SUCCESS to a host without DSN: a "relayed" notice.
    c.cmd(
        "MAIL FROM:<me@here.test> RET=HDRS ENVID=run+2B7",
        "250 2.1.0 Sender OK",
    );
    c.cmd(
        "RCPT TO:<glad@ok.test> NOTIFY=SUCCESS ORCPT=rfc822;glad+2Bx@ok.test",
        "250 2.1.5 Recipient OK",
    );
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: success\r\n\r\nsecret\r\n.\r\n");
    c.expect_start("250 ");
    // A remote sender's failure: the notice is queued and sent to its MX.
    c.mail(
        "sam@ok.test",
        &["reject-remote@ok.test"],
        &message("remote sender"),
    );
    wait_for(30, "the relayed notice and the remote notice", || {
        notices(&s).len() == 1
            && mx
                .received()
                .iter()
                .any(|m| m["rcpt_tos"] == serde_json::json!(["sam@ok.test"]))
    });
    let n = &notices(&s)[0];
    assert_eq!(n["per_message"]["Original-Envelope-Id"], "run+7");
    let r = &n["recipients"][0];
    assert_eq!(r["Action"], "relayed");
    assert_eq!(r["Status"], "2.0.0");
    assert_eq!(r["Original-Recipient"], "rfc822;glad+x@ok.test");
    assert_eq!(n["original"], "text/rfc822-headers", "RET=HDRS");
    assert!(
        !n["original_headers"]
            .as_str()
            .unwrap_or("")
            .contains("secret")
    );
    let remote = mx
        .received()
        .into_iter()
        .find(|m| m["rcpt_tos"] == serde_json::json!(["sam@ok.test"]))
        .expect("the remote notice");
    // aiosmtpd writes the null reverse-path as "<>".
    assert_eq!(remote["mail_from"], "<>", "notices come from <>");
    let dsn = crate::rig::parse_dsn(remote["content"].as_str().expect("content").as_bytes());
    assert_eq!(
        dsn["recipients"][0]["Final-Recipient"],
        "rfc822; reject-remote@ok.test"
    );
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
    assert_eq!(notices(&s).len(), 1, "nothing about <> or NOTIFY=NEVER");
}

#[test]
fn too_many_received_headers_is_a_loop() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    let mut looped = String::new();
    for i in 0..50 {
        looped.push_str(&format!(
            "Received: from hop{i}.test by hop{i}.test; Mon, 30 Nov 2026 00:00:00 +0000\r\n"
        ));
    }
    looped.push_str("Subject: round and round\r\n\r\nx\r\n");
    c.mail("me@here.test", &["bob@ok.test"], looped.as_bytes());
    wait_for(20, "a notice", || notices(&s).len() == 1);
    assert_eq!(
        statuses(&s),
        [("rfc822; bob@ok.test".to_owned(), "5.4.6".to_owned())]
    );
    assert!(mx.received().is_empty());
}

#[test]
fn kill_9_during_a_delivery_loses_nothing_and_sends_nothing_twice() {
    let port = free_port();
    let data = temp_dir("kill9");
    let cfg = config(port, "retry = [\"1s\"]\ncommand_timeout = \"30s\"", "");
    // The MX answers TCP and then nothing: Postel is mid-delivery.
    let silent = Mx::start("127.0.2.1", port, &["--mode", "silent"]);
    let s = Server::start_in(&data, &cfg, &[]);
    let mut c = s.connect();
    c.greet();
    let id = c.mail(
        "me@here.test",
        &["bob@ok.test", "carol@ok.test"],
        &message("survivor"),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.signal("KILL");
    drop(s);
    drop(silent);
    let mx = Mx::start("127.0.2.1", port, &[]);
    let q = crate::rig::queue_in(&data);
    assert_eq!(q.len(), 2, "both still queued after kill -9: {q:?}");
    assert!(q.iter().all(|e| e["id"] == id.as_str()));
    let s = Server::start_in(&data, &cfg, &[]);
    wait_for(30, "delivery after the restart", || {
        mx.received().len() == 1
    });
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
    // Recorded as delivered: a restart sends nothing again.
    drop(s);
    let _s = Server::start_in(&data, &cfg, &[]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(mx.received().len(), 1);
    assert_eq!(
        mx.received()[0]["rcpt_tos"],
        serde_json::json!(["bob@ok.test", "carol@ok.test"])
    );
}

#[test]
fn postfix_takes_what_postel_sends_and_smtp_sink_refusals_defer() {
    // Postfix (bench/peers/start-postfix.sh) as the receiving MX of
    // example.test, on 127.0.0.1.
    let (port, _postfix) = crate::tools::start_postfix("mx-postfix");
    let s = relay(port, "retry = [\"1h\"]");
    let mut c = s.connect();
    c.greet();
    let id = c.mail(
        "me@here.test",
        &["anyone@example.test"],
        &message("to postfix"),
    );
    wait_for(30, "Postfix's 250", || queue(&s).is_empty());
    // Gone from the queue as delivered: nothing came back.
    assert!(notices(&s).is_empty());
    assert!(s.messages().iter().all(|m| m["id"] != id.as_str()));

    // smtp-sink refusing RCPT with a 4xx (-r rcpt), then one closing with
    // 421 at DATA (-Q data): both deferrals.
    let sink = |flags: &[&str]| {
        let port = free_port();
        let mut args: Vec<String> = Vec::new();
        if nix_root() {
            args.extend(["-u".to_owned(), "nobody".to_owned()]);
        }
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        args.extend([format!("127.0.6.1:{port}"), "10".to_owned()]);
        let child = std::process::Command::new("/usr/sbin/smtp-sink")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("smtp-sink (Debian's postfix)");
        wait_for(10, "smtp-sink", || {
            std::net::TcpStream::connect(("127.0.6.1", port)).is_ok()
        });
        (port, KillOnDrop(child))
    };
    for (flags, want) in [(&["-r", "rcpt"][..], "450"), (&["-Q", "data"][..], "421")] {
        let (port, _sink) = sink(flags);
        let s = relay(port, "retry = [\"1h\"]");
        let mut c = s.connect();
        c.greet();
        c.mail("me@here.test", &["a@flaky.test"], &message("sink"));
        wait_for(30, "a deferral", || {
            queue(&s).first().is_some_and(|e| e["state"] == "deferred")
        });
        let reply = queue(&s)[0]["last_reply"].as_str().unwrap_or("").to_owned();
        assert!(
            reply.starts_with(want) || reply.contains(want),
            "{flags:?}: {reply}"
        );
    }
}

fn nix_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_queued_message_whose_content_is_lost_fails_loudly_with_a_notice() {
    let port = free_port();
    let _mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "retry = [\"1s\"]");
    let mut c = s.connect();
    c.greet();
    // Large enough to be kept in a file of its own (blobs/).
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(400 * 1024));
    let id = c.mail("me@here.test", &["defer3@ok.test"], big.as_bytes());
    wait_for(20, "a first deferral", || {
        queue(&s).first().is_some_and(|e| e["state"] == "deferred")
    });
    // A disk fault: the content file is gone.
    std::fs::remove_file(s.data_dir.join("blobs").join(&id)).expect("the content file");
    wait_for(20, "a notice", || notices(&s).len() == 1);
    let r = &notices(&s)[0]["recipients"][0];
    assert_eq!(r["Status"], "5.3.0");
    assert_eq!(r["Action"], "failed");
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
}

#[test]
fn bytes_injected_after_the_reply_to_starttls_end_the_session() {
    let port = free_port();
    let mx = Mx::start("127.0.5.1", port, &["--mode", "inject"]);
    let s = relay(
        port,
        "retry = [\"1h\"]\n[delivery.tls_policies]\n\"tls.test\" = \"encrypt\"",
    );
    let mut c = s.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["bob@tls.test"],
        &message("not in the clear"),
    );
    wait_for(20, "a deferral", || {
        queue(&s).first().is_some_and(|e| e["state"] == "deferred")
    });
    let reply = queue(&s)[0]["last_reply"].as_str().unwrap_or("").to_owned();
    // Whole extra replies are "a reply to no command", a partial one is
    // "bytes after the reply to STARTTLS": either way, no handshake.
    assert!(
        reply.contains("a reply to no command") || reply.contains("after the reply to STARTTLS"),
        "{reply}"
    );
    assert!(mx.received().is_empty());
}
