//! Local delivery (`[[local_delivery]]`) into Dovecot: over LMTP (TCP and
//! a local socket), and into Maildirs that Dovecot then serves. Every
//! message is read back over IMAP with Python's imaplib and compared with
//! what was sent, byte for byte below the trace fields.

use crate::dovecot::{dovecot, without_trace};
use crate::rig::{config, notices, queue, wait_for};
use crate::support::{Server, arg, temp_dir};
use crate::tools::free_port;

/// A message as sent in DATA (dot-stuffed: its third line starts with
/// one dot), and as it must arrive.
fn body(subject: &str) -> (Vec<u8>, Vec<u8>) {
    let wire = format!(
        "From: me@here.test\r\nTo: someone\r\nSubject: {subject}\r\n\r\nFirst line.\r\n..a line that starts with a dot\r\nLast line.\r\n"
    );
    let content = wire.replace("\r\n..", "\r\n.");
    (wire.into_bytes(), content.into_bytes())
}

/// A Postel with `here.test`, `lmtp.test` and `maildir.test` local, and
/// `tables` (the `[[local_delivery]]` entries) after the rest.
fn postel(tables: &str) -> Server {
    let cfg = config(free_port(), "retry = [\"1s\"]", tables).replace(
        "domains = [\"here.test\"]",
        "domains = [\"here.test\", \"lmtp.test\", \"maildir.test\"]",
    );
    Server::start(&cfg, &[])
}

#[test]
fn lmtp_delivers_each_mailbox_with_its_own_reply_and_dovecot_serves_it() {
    let d = dovecot();
    let s = postel(&format!(
        "[[local_delivery]]\ndomains = [\"lmtp.test\"]\nto = \"lmtp:127.0.0.1:{}\"\n\
         [[local_delivery]]\ndomains = [\"bob@lmtp.test\"]\nto = \"lmtp:unix:{}\"\n",
        d.lmtp_port,
        d.lmtp_socket.display()
    ));
    let (wire, sent) = body("over lmtp");
    let mut c = s.connect();
    c.greet();
    // nobody@lmtp.test is unknown to Dovecot: refused by LMTP, alone.
    c.mail(
        "me@here.test",
        &["alice@lmtp.test", "bob@lmtp.test", "nobody@lmtp.test"],
        &wire,
    );
    // Finished rows leave the queue: the notice is the last thing made.
    wait_for(20, "the LMTP deliveries", || {
        queue(&s).is_empty() && notices(&s).len() == 1
    });
    for user in ["alice@lmtp.test", "bob@lmtp.test"] {
        let inbox = d.inbox(user);
        assert_eq!(inbox.len(), 1, "{user}");
        assert_eq!(
            String::from_utf8_lossy(without_trace(&inbox[0])),
            String::from_utf8_lossy(&sent),
            "{user}'s copy differs"
        );
    }
    // The unknown mailbox: one notice, with Dovecot's own reply.
    let n = &notices(&s)[0];
    let r = n["recipients"].as_array().expect("recipients");
    assert_eq!(r.len(), 1, "{n}");
    assert_eq!(r[0]["Final-Recipient"], "rfc822; nobody@lmtp.test");
    assert_eq!(r[0]["Status"], "5.1.1");
    let diagnostic = r[0]["Diagnostic-Code"].as_str().unwrap_or("");
    assert!(diagnostic.starts_with("smtp; 550 5.1.1"), "{diagnostic}");
    // Not kept in Postel's own inbox: it went to the mailboxes.
    assert!(
        s.messages().iter().all(|m| m["from"] == ""),
        "only the notice is in Postel's store"
    );
}

#[test]
fn an_lmtp_server_that_is_down_defers_and_nothing_is_lost() {
    let down = free_port();
    let s = postel(&format!(
        "[[local_delivery]]\ndomains = [\"lmtp.test\"]\nto = \"lmtp:127.0.0.1:{down}\"\n"
    ));
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["carol@lmtp.test"], &body("later").0);
    wait_for(10, "the deferral", || {
        queue(&s)
            .first()
            .is_some_and(|e| e["state"] == "deferred" && e["attempts"].as_u64() >= Some(1))
    });
    let e = &queue(&s)[0];
    let reply = e["last_reply"].as_str().unwrap_or("");
    assert!(reply.contains(&format!("lmtp:127.0.0.1:{down}")), "{reply}");
    assert!(notices(&s).is_empty(), "a deferral is not a failure");
}

#[test]
fn maildir_delivery_is_private_retried_and_read_by_dovecot() {
    let d = dovecot();
    let root = &d.mail_root;
    let s = postel(&format!(
        "[[local_delivery]]\ndomains = [\"maildir.test\"]\nto = \"maildir:{}/{{domain}}/{{local}}\"\n",
        root.display()
    ));
    // A file where carol's Maildir should be: the delivery fails, and is
    // deferred, not lost.
    let domain_dir = root.join("maildir.test");
    std::fs::create_dir_all(&domain_dir).expect("domain dir");
    let blocker = domain_dir.join("carol");
    std::fs::write(&blocker, b"in the way").expect("blocker");
    let (wire, sent) = body("into a maildir");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["Carol@maildir.test"], &wire);
    wait_for(10, "the deferral", || {
        queue(&s).first().is_some_and(|e| e["state"] == "deferred")
    });
    let reply = queue(&s)[0]["last_reply"].as_str().unwrap_or("").to_owned();
    assert!(reply.contains("cannot write to the Maildir"), "{reply}");
    std::fs::remove_file(&blocker).expect("remove the blocker");
    wait_for(20, "the retry", || queue(&s).is_empty());

    let new = blocker.join("new");
    let files: Vec<_> = std::fs::read_dir(&new)
        .expect("new/")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(files.len(), 1);
    use std::os::unix::fs::PermissionsExt as _;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&files[0].path()), 0o600);
    assert_eq!(mode(&blocker), 0o700);
    assert_eq!(
        std::fs::read_dir(blocker.join("tmp"))
            .expect("tmp/")
            .count(),
        0
    );
    // Dovecot reads it as its mail user (Postel's, in a real set-up).
    let status = std::process::Command::new("chown")
        .args([
            "-R",
            &format!("{}:{}", d.owner.0, d.owner.1),
            arg(&domain_dir),
        ])
        .status()
        .expect("chown");
    assert!(status.success());
    let inbox = d.inbox("carol@maildir.test");
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(without_trace(&inbox[0])),
        String::from_utf8_lossy(&sent)
    );
}

#[test]
fn local_parts_that_are_not_plain_names_are_refused_at_rcpt() {
    let root = temp_dir("maildir-hostile");
    let s = postel(&format!(
        "[[local_delivery]]\ndomains = [\"maildir.test\"]\nto = \"maildir:{}/{{domain}}/{{local}}\"\n",
        root.display()
    ));
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<me@here.test>", "250 2.1.0 Sender OK");
    for rcpt in [
        "<\"../../etc\"@maildir.test>",
        "<a/b@maildir.test>",
        "<\".hidden\"@maildir.test>",
        "<\"..\"@maildir.test>",
    ] {
        c.cmd(
            &format!("RCPT TO:{rcpt}"),
            "553 5.1.3 Mailbox name not allowed",
        );
    }
    c.cmd(
        "RCPT TO:<plain.name+tag@maildir.test>",
        "250 2.1.5 Recipient OK",
    );
    assert!(
        std::fs::read_dir(&root).expect("root").next().is_none(),
        "nothing was written"
    );
}
