//! `postel explain`, `postel send` and `postel probe`, against Postel
//! itself and against Postfix and aiosmtpd started with the scripts in
//! `bench/peers/` (scripts/test.sh installs the servers).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{BIN, Server, temp_dir};
use crate::tls::{add_user, tls_server};

/// `postel ARGS`, with alice's password for `send --auth`.
fn postel(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("POSTEL_PASSWORD", "secret")
        .output()
        .expect("run postel")
}

/// `postel send --server SERVER --from FROM --to TO EXTRA...`
fn send(server: &str, from: &str, to: &str, extra: &[&str]) -> Output {
    postel(
        &[
            &["send", "--server", server, "--from", from, "--to", to],
            extra,
        ]
        .concat(),
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn explain_codes_lines_languages_and_differences() {
    let o = postel(&["explain", "550"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.starts_with("550  ") && t.contains("RFC 5321") && t.contains("Permanent"),
        "{t}"
    );

    // A whole line from a log: both codes.
    let o = postel(&[
        "explain",
        "550 5.1.1 <bob@example.com>: Recipient address rejected",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("550  ") && t.contains("5.1.1  Bad destination mailbox address"),
        "{t}"
    );

    // The same in Japanese and French.
    let ja = text(&postel(&["explain", "421", "--lang", "ja"]));
    assert!(
        ja.contains("区分") && ja.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
        "{ja}"
    );
    let fr = text(&postel(&["explain", "4.7.1", "--lang", "fr"]));
    assert!(fr.contains("classe") && fr.contains("que faire"), "{fr}");

    // Side by side.
    let o = postel(&["explain", "220", "--vs", "503"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("220  ") && t.contains("503  ") && t.contains("differences:"),
        "{t}"
    );
    assert!(t.contains("do not retry unchanged"), "{t}");

    // JSON for scripts.
    let o = postel(&["explain", "452 4.5.3", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["code"], "452");
    assert_eq!(v[0]["class"]["digit"], "4");
    assert_eq!(v[1]["code"], "4.5.3");
    assert_eq!(v[1]["title"], "Too many recipients");
    let o = postel(&["explain", "250", "--vs", "5.7.1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["b"]["kind"], "enhanced");
    assert!(v["differences"].as_array().expect("array").len() >= 3);

    // Not a registered code: the class is still explained, exit 1.
    let o = postel(&["explain", "599"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a registered code"), "{}", text(&o));
    // Not a code at all: exit 1 with what to give.
    let o = postel(&["explain", "hello"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("holds no reply code"), "{}", text(&o));
    let o = postel(&["explain", "650"]);
    assert_eq!(o.status.code(), Some(1));
}

fn port(s: &Server, kind: &str) -> String {
    format!("127.0.0.1:{}", s.addrs[kind].port())
}

#[test]
fn send_to_postel_plain_starttls_auth_and_refusals() {
    let s = tls_server("[policy]\ndomains = [\"here.test\"]\n");
    let dir = temp_dir("send-files");
    let body = dir.join("body.txt");
    std::fs::write(&body, "Hello.\n.a line with a dot\nBye.\n").expect("body");
    let att = dir.join("report.pdf");
    std::fs::write(&att, b"%PDF-1.4 fake").expect("attachment");

    // Plain, on port 25's listener, with a header, a body and an attachment.
    let o = send(
        &port(&s, "smtp"),
        "me@else.test",
        "you@here.test",
        &[
            "--header",
            "Subject: via postel send",
            "--body",
            body.to_str().expect("utf-8"),
            "--attach",
            att.to_str().expect("utf-8"),
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("C: MAIL FROM:<me@else.test>") && t.contains("S: 250 2.0.0 Ok: queued as"),
        "{t}"
    );
    assert!(t.contains("(250: "), "each reply is explained: {t}");
    let m = s.messages();
    assert_eq!(m[0]["subject"], "via postel send");
    let raw = String::from_utf8(s.raw(m[0]["id"].as_str().expect("id"))).expect("utf-8");
    assert!(
        raw.contains("\r\n..a line with a dot\r\n") || raw.contains("\r\n.a line with a dot\r\n"),
        "{raw}"
    );
    assert!(
        raw.contains("filename=\"report.pdf\"") || raw.contains("filename=report.pdf"),
        "{raw}"
    );

    // STARTTLS + AUTH on submission: the user is recorded. The certificate
    // is self-signed: without --insecure, send stops (exit 2).
    let submission = port(&s, "submission");
    let starttls_auth = |extra: &[&str]| {
        let args = [&["--starttls", "--auth", "alice"], extra].concat();
        send(&submission, "alice@here.test", "far@away.test", &args)
    };
    let o = starttls_auth(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("certificate"), "{}", text(&o));
    let o = starttls_auth(&["--insecure"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("AUTH PLAIN (credentials hidden)") && !t.contains("secret"),
        "{t}"
    );
    assert!(t.contains("S: 235 2.7.0"), "{t}");
    assert_eq!(s.messages().len(), 2);
    assert_eq!(s.messages()[1]["auth_user"], "alice");

    // Implicit TLS (smtps): PLAIN is offered, so PLAIN.
    let o = send(
        &port(&s, "smtps"),
        "alice@here.test",
        "x@y.test",
        &["--tls", "--insecure", "--auth", "alice"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.messages().len(), 3);

    // 5xx: relaying denied, explained; exit 1.
    let o = send(&port(&s, "smtp"), "a@b.test", "c@elsewhere.test", &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("S: 554 5.7.1") && t.contains("no recipient was accepted"),
        "{t}"
    );
    assert!(t.contains("(554: "), "{t}");

    // 5xx at MAIL: AUTH required on submission.
    let o = send(&port(&s, "submission"), "a@b.test", "c@here.test", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("refused: 530 5.7.0"), "{}", text(&o));

    // A password never goes out in clear: without --starttls, send stops.
    let o = send(
        &port(&s, "submission"),
        "a@here.test",
        "c@here.test",
        &["--auth", "alice"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("refusing to send a password without TLS") && !t.contains("C: AUTH"),
        "{t}"
    );

    // Given headers replace the defaults, whatever their case; a non-ASCII
    // value is encoded (RFC 2047).
    let o = send(
        &port(&s, "smtp"),
        "me@else.test",
        "you@here.test",
        &[
            "--header",
            "from: Me <me@else.test>",
            "--header",
            "DATE: Mon, 23 Nov 2026 10:00:00 +0000",
            "--header",
            "Subject: Réunion",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let last = s.messages().into_iter().last().expect("stored");
    assert_eq!(last["subject"], "Réunion");
    let raw = String::from_utf8(s.raw(last["id"].as_str().expect("id"))).expect("ascii");
    let count = |name: &str| {
        raw.lines()
            .take_while(|l| !l.is_empty())
            .filter(|l| l.to_ascii_lowercase().starts_with(name))
            .count()
    };
    assert_eq!(
        (count("from:"), count("date:"), count("subject:")),
        (1, 1, 1),
        "{raw}"
    );
    assert!(raw.contains("Subject: =?utf-8?"), "{raw}");

    // Nobody listening: exit 2.
    let o = send("127.0.0.1:1", "a@b.test", "c@d.test", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn send_gets_421_when_the_server_is_full() {
    let s = Server::start(
        "[limits]\nmax_connections_per_ip = 1\nexempt_loopback = false\n",
        &[],
    );
    let mut held = s.connect();
    held.expect_start("220 ");
    let o = send(&s.addr.to_string(), "a@b.test", "c@d.test", &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("S: 421 4.7.0") && t.contains("(421: "), "{t}");
}

#[test]
fn probe_postel_listeners() {
    let s = tls_server("");
    // smtp with STARTTLS and a self-signed certificate: a risk, exit 1.
    let o = postel(&["probe", &port(&s, "smtp")]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for want in [
        "[     ok] greeting: 220 mx.test ESMTP Postel",
        "[     ok] STARTTLS offered",
        "TLS TLSv1_3",
        "certificate names: mx.test, localhost",
        "[   RISK] the certificate is self-signed",
        "[   RISK] certificate does not verify for 127.0.0.1",
        "size limit: 37748736 octets",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(
        !t.contains("C: MAIL") && !t.contains("C: RCPT"),
        "probe sends no mail: {t}"
    );
    // submission: AUTH only after TLS.
    let t = text(&postel(&["probe", &port(&s, "submission")]));
    assert!(
        t.contains("[     ok] AUTH PLAIN LOGIN SCRAM-SHA-256 offered over TLS"),
        "{t}"
    );
    assert!(!t.contains("offered before TLS"), "{t}");
    // smtps: implicit TLS.
    let t = text(&postel(&["probe", &port(&s, "smtps"), "--tls"]));
    assert!(
        t.contains("(implicit TLS)")
            && t.contains("AUTH PLAIN LOGIN SCRAM-SHA-256 offered over TLS"),
        "{t}"
    );

    // AUTH in plaintext is flagged.
    let dir = temp_dir("probe-plain");
    add_user(&dir, "alice", "secret");
    let plain = Server::start_in(
        &dir,
        "[tls]\nself_signed = true\n[submission]\nlisten = [\"127.0.0.1:0\"]\nrequire_tls = false\n",
        &[],
    );
    let t = text(&postel(&["probe", &port(&plain, "submission")]));
    assert!(
        t.contains("[   RISK] AUTH PLAIN LOGIN SCRAM-SHA-256 offered before TLS"),
        "{t}"
    );

    // No TLS at all.
    let bare = Server::start("[tls]\nself_signed = false\n", &[]);
    let t = text(&postel(&["probe", &bare.addr.to_string()]));
    assert!(t.contains("[   RISK] no STARTTLS"), "{t}");

    // Nothing there: exit 2.
    let o = postel(&["probe", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// `bench/peers` in this repository.
fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers")
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Stops a peer started by a `start-*.sh` script when dropped.
pub(crate) struct Peer {
    stop: Vec<String>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new(&self.stop[0]).args(&self.stop[1..]).output();
    }
}

pub(crate) fn start_peer(script: &str, args: &[&str], stop: &str, stop_arg: &str) -> Peer {
    let dir = peers();
    let out = Command::new(dir.join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e} (scripts/test.sh installs the peers)"));
    assert!(out.status.success(), "{script} failed: {}", text(&out));
    Peer {
        stop: vec![
            dir.join(stop).to_string_lossy().into_owned(),
            stop_arg.to_owned(),
        ],
    }
}

/// Postfix on a free loopback port with a spool of its own; stopped when
/// the returned peer is dropped.
pub(crate) fn start_postfix(name: &str) -> (u16, Peer) {
    let p = free_port();
    let spool = temp_dir(name);
    let spool_s = spool.to_string_lossy().into_owned();
    let peer = start_peer(
        "start-postfix.sh",
        &[&p.to_string(), &spool_s],
        "stop-postfix.sh",
        &spool_s,
    );
    (p, peer)
}

#[test]
fn send_and_probe_against_aiosmtpd() {
    let p = free_port();
    let _peer = start_peer(
        "start-aiosmtpd.sh",
        &[&p.to_string()],
        "stop-aiosmtpd.sh",
        &p.to_string(),
    );
    let server = format!("127.0.0.1:{p}");
    let o = send(&server, "a@b.test", "c@d.test", &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("S: 250 OK") || t.contains("S: 250 "), "{t}");
    let o = postel(&["probe", &server]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "no STARTTLS is a risk: {t}");
    assert!(
        t.contains("[     ok] greeting: 220") && t.contains("[   RISK] no STARTTLS"),
        "{t}"
    );
    assert!(t.contains("no ENHANCEDSTATUSCODES"), "{t}");
}

#[test]
fn send_and_probe_against_postfix() {
    let (p, _peer) = start_postfix("postfix");
    let server = format!("127.0.0.1:{p}");
    // Accepted for its domain, over STARTTLS (self-signed).
    let o = send(
        &server,
        "a@b.test",
        "x@example.test",
        &["--starttls", "--insecure"],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("S: 250 2.0.0 Ok: queued as"), "{t}");
    // Refused for another domain: Postfix's own 5xx, explained.
    let o = send(&server, "a@b.test", "x@other.test", &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("S: 554 5.7.1") && t.contains("denied"), "{t}");
    assert!(
        t.contains("5.7.1: "),
        "the enhanced code is explained too: {t}"
    );
    // Probe: STARTTLS with a self-signed certificate.
    let o = postel(&["probe", &server]);
    let t = text(&o);
    assert!(
        t.contains("[     ok] greeting: 220") && t.contains("STARTTLS offered"),
        "{t}"
    );
    assert!(
        t.contains("TLS TLSv1_3") && t.contains("does not verify"),
        "{t}"
    );
}
