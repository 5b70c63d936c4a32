//! Mail authentication against independent implementations: messages
//! signed by dkimpy and by OpenDKIM (`opendkim-testmsg`) verify in Postel
//! and an altered copy fails; SPF results match pyspf's on a table of
//! records; an ARC chain sealed by dkimpy validates; Postel's own
//! signatures (RSA and Ed25519, keys from `postel dkim generate`) verify
//! with dkimpy and with OpenDKIM, and fail once the message is altered.
//!
//! One dnsmasq per test binary serves every record, on a loopback port
//! that Postel (`[dns]`), dkimpy and pyspf are pointed at. OpenDKIM reads
//! `/etc/resolv.conf` only, so its checks run in a network namespace whose
//! dnsmasq answers on port 53.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::processes::Netns;
use crate::support::{Server, arg, postel, temp_dir};

/// SPF records, by domain, for the table compared with pyspf (the client
/// is 127.0.0.1).
const SPF_TABLE: &[(&str, &str)] = &[
    ("pass.test", "v=spf1 ip4:127.0.0.0/8 -all"),
    ("fail.test", "v=spf1 ip4:192.0.2.1 -all"),
    ("soft.test", "v=spf1 ip4:192.0.2.1 ~all"),
    ("neutral.test", "v=spf1 ?all"),
    ("syntax.test", "v=spf1 ip4:300.1.1.1 -all"),
    ("incl.test", "v=spf1 include:pass.test -all"),
    ("redir.test", "v=spf1 redirect=fail.test"),
    ("a.test", "v=spf1 a -all"),
    ("mxs.test", "v=spf1 mx -all"),
    ("macro.test", "v=spf1 exists:%{i}._spf.macro.test -all"),
    ("loop.test", "v=spf1 include:loop.test -all"),
    ("voidincl.test", "v=spf1 include:none.test -all"),
];

/// The rig: keys, records and the dnsmasq serving them.
pub(crate) struct Rig {
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    /// dnsmasq options with every record, for a namespace's dnsmasq.
    records: Vec<String>,
    /// The `[[dkim]]` tables for out.test (from `postel dkim generate`).
    dkim_tables: String,
    _dns: Mutex<std::process::Child>,
}

/// Every quoted string of `text`, joined (a zone file's TXT value).
fn quoted_joined(text: &str) -> String {
    text.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

/// A TXT record as dnsmasq options take it: strings of at most 255.
fn txt(name: &str, text: &str) -> String {
    let parts: Vec<String> = text
        .as_bytes()
        .chunks(250)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!("--txt-record={name},{}", parts.join(","))
}

pub(crate) fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let dir = temp_dir("auth-rig");
        // Postel's own keys, as an operator makes them: for the users'
        // domain, and for the host's (its notices come from there).
        let mut records = Vec::new();
        let mut dkim_tables = String::new();
        for domain in ["out.test", "mx.test"] {
            let out = postel(&[
                "dkim",
                "generate",
                domain,
                "--selector",
                "pk",
                "--dir",
                arg(&dir.join("keys")),
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed = String::from_utf8(out.stdout).expect("utf-8");
            let mut in_tables = false;
            let mut lines = printed.lines();
            while let Some(line) = lines.next() {
                if let Some((name, value)) = line.split_once(" IN TXT ") {
                    let mut value = value.to_owned();
                    while value.starts_with('(') && !value.ends_with(')') {
                        value.push_str(lines.next().expect("continued record"));
                    }
                    records.push(txt(name.trim_end_matches('.'), &quoted_joined(&value)));
                }
                if line.starts_with("[[dkim]]") {
                    in_tables = true;
                }
                if in_tables {
                    dkim_tables.push_str(line);
                    dkim_tables.push('\n');
                }
            }
        }
        assert_eq!(records.len(), 4, "{records:?}");
        // A key of OpenDKIM's own making, for the mail that comes in.
        let status = Command::new("opendkim-genkey")
            .args(["-b", "2048", "-D", arg(&dir), "-d", "in.test", "-s", "od"])
            .status()
            .expect("opendkim-genkey (opendkim-tools; scripts/test.sh installs it)");
        assert!(status.success());
        let od = std::fs::read_to_string(dir.join("od.txt")).expect("od.txt");
        records.push(txt("od._domainkey.in.test", &quoted_joined(&od)));
        // The same key under a selector only the prefetch test signs with.
        records.push(txt("pre._domainkey.in.test", &quoted_joined(&od)));
        for (domain, spf) in SPF_TABLE {
            records.push(txt(domain, spf));
        }
        records.extend(
            [
                // SPF fails for in.test: DMARC passes by DKIM alone.
                txt("in.test", "v=spf1 ip4:192.0.2.1 -all"),
                txt("_dmarc.in.test", "v=DMARC1; p=reject"),
                txt("quar.test", "v=spf1 ip4:192.0.2.1 -all"),
                txt("_dmarc.quar.test", "v=DMARC1; p=quarantine"),
                txt("out.test", "v=spf1 ip4:127.0.0.0/8 -all"),
                txt("_dmarc.out.test", "v=DMARC1; p=reject"),
                "--host-record=a.test,127.0.0.1".to_owned(),
                "--mx-host=mxs.test,mx.mxs.test,10".to_owned(),
                "--host-record=mx.mxs.test,127.0.0.1".to_owned(),
                "--host-record=127.0.0.1._spf.macro.test,127.0.0.2".to_owned(),
                // The DMARC table (dmarc_results_match_authheaders).
                txt("unal.test", "v=spf1 ip4:192.0.2.1 -all"),
                txt("_dmarc.unal.test", "v=DMARC1; p=quarantine"),
                txt("_dmarc.tree.test", "v=DMARC1; p=reject; sp=quarantine"),
                txt("_dmarc.pass.test", "v=DMARC1; p=none"),
                txt("mail.pass.test", "v=spf1 ip4:127.0.0.0/8 -all"),
                txt("_dmarc.nonep.test", "v=DMARC1; p=none"),
                txt("_dmarc.tree2.test", "v=DMARC1; p=none; sp=none; np=reject"),
                // Where forwarded mail goes (tests/it/forward.rs).
                "--mx-host=away.test,mx.away.test,10".to_owned(),
                "--host-record=mx.away.test,127.0.11.1".to_owned(),
            ]
            .map(|s| s.to_owned()),
        );
        // Queries are logged, for the test of lookups made ahead.
        let mut options = records.clone();
        options.push("--log-queries".to_owned());
        options.push(format!("--log-facility={}", dir.join("dns.log").display()));
        let (port, dns) = crate::rig::dnsmasq(&options);
        Rig {
            port,
            dir,
            records,
            dkim_tables,
            _dns: dns,
        }
    })
}

/// A Postel that checks loopback clients too, asking the rig's DNS.
fn checking_server(extra: &str) -> Server {
    let r = rig();
    Server::start(
        &format!(
            "[dns]\nnameservers = [\"127.0.0.1:{}\"]\n[verify]\nignore_networks = []\n{extra}",
            r.port
        ),
        &[],
    )
}

/// `tests/peers/dkim_tool.py ARGS < input`, its output.
pub(crate) fn dkimpy(args: &[&str], input: &[u8]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/dkim_tool.py");
    run_with_input(Command::new("python3").arg(script).args(args), input)
}

fn run_with_input(command: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn message(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Someone <{from}>\r\nTo: you@here.test\r\nSubject: {subject}\r\n\
         Date: Mon, 30 Nov 2026 06:00:00 +0000\r\nMessage-ID: <{subject}@test>\r\n\r\n\
         Hello.\r\n\r\nA second paragraph.\r\n"
    )
    .into_bytes()
}

/// The stored message `id`'s summary (from `messages list --json`).
fn summary(s: &Server, id: &str) -> serde_json::Value {
    s.messages()
        .into_iter()
        .find(|m| m["id"] == id)
        .expect("stored")
}

/// Sends `content` from `from` over SMTP; the id.
fn send(s: &Server, from: &str, content: &[u8]) -> String {
    let mut c = s.connect();
    c.greet();
    c.mail(from, &["you@here.test"], content)
}

/// Replaces a body line, as a list or a forwarder might.
fn altered(signed: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(signed.to_vec()).expect("utf-8");
    assert!(text.contains("Hello."));
    text.replace("Hello.", "Hello, altered.").into_bytes()
}

#[test]
fn dkimpy_and_opendkim_signatures_verify_and_altered_copies_are_refused() {
    let r = rig();
    let key = r.dir.join("od.private");
    let by_dkimpy = dkimpy(
        &["sign", "in.test", "od", arg(&key)],
        &message("a@in.test", "dkimpy"),
    );
    let by_opendkim = run_with_input(
        Command::new("opendkim-testmsg").args(["-C", "-d", "in.test", "-s", "od", "-k", arg(&key)]),
        &message("a@in.test", "opendkim"),
    );
    assert!(String::from_utf8_lossy(&by_opendkim).contains("DKIM-Signature:"));
    let s = checking_server("reject_dmarc = true\n");
    for signed in [&by_dkimpy, &by_opendkim] {
        let id = send(&s, "a@in.test", signed);
        let m = summary(&s, &id);
        // SPF fails (in.test lists only 192.0.2.1); DKIM alone makes
        // DMARC pass, aligned on in.test.
        assert_eq!(m["checks"]["dkim"], "pass", "{m}");
        assert_eq!(m["checks"]["spf"], "fail", "{m}");
        assert_eq!(m["checks"]["dmarc"], "pass", "{m}");
        assert_eq!(m["checks"]["quarantine"], false, "{m}");
        let raw = String::from_utf8(s.raw(&id)).expect("utf-8");
        let ar = raw
            .split("\r\nAuthentication-Results: ")
            .nth(1)
            .expect("an Authentication-Results field after Received");
        assert!(ar.starts_with("mx.test;"), "{ar}");
        assert!(ar.contains("dkim=pass"), "{ar}");
        assert!(ar.contains("dmarc=pass"), "{ar}");
        assert!(ar.contains("spf=fail"), "{ar}");
    }
    // Altered after signing: DKIM fails, so does DMARC, and in.test asks
    // for rejection.
    for signed in [&by_dkimpy, &by_opendkim] {
        let mut c = s.connect();
        c.greet();
        c.cmd("MAIL FROM:<a@in.test>", "250 2.1.0 Sender OK");
        c.cmd("RCPT TO:<you@here.test>", "250 2.1.5 Recipient OK");
        c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
        c.send(altered(signed));
        c.send(".\r\n");
        c.expect("550 5.7.1 Rejected by DMARC policy of in.test");
    }
    // The same copy without enforcement: kept, flagged for quarantine.
    let lenient = checking_server("");
    let id = send(&lenient, "a@in.test", &altered(&by_dkimpy));
    let m = summary(&lenient, &id);
    // mail-auth writes a body hash mismatch as neutral (dkimpy and
    // OpenDKIM: fail); either way it is no pass, and DMARC fails.
    assert!(
        m["checks"]["dkim"] == "fail" || m["checks"]["dkim"] == "neutral",
        "{m}"
    );
    assert_eq!(m["checks"]["dmarc"], "fail", "{m}");
    assert_eq!(m["checks"]["quarantine"], true, "{m}");
}

#[test]
fn spf_results_match_pyspf() {
    let r = rig();
    let mut domains: Vec<&str> = SPF_TABLE.iter().map(|(d, _)| *d).collect();
    domains.push("none.test");
    let senders: Vec<String> = domains.iter().map(|d| format!("x@{d}")).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/spf_check.py");
    let port = r.port.to_string();
    let mut args = vec![arg(&script), port.as_str(), "127.0.0.1", "client.test"];
    args.extend(senders.iter().map(String::as_str));
    let out = Command::new("/usr/bin/python3")
        .args(&args)
        .output()
        .expect("pyspf (python3-spf; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(theirs.len(), senders.len());
    let s = checking_server("");
    let mut ours = Vec::new();
    for sender in &senders {
        let id = send(&s, sender, &message(sender, "spf"));
        ours.push(
            summary(&s, &id)["checks"]["spf"]
                .as_str()
                .expect("spf")
                .to_owned(),
        );
    }
    let table: Vec<(&str, &str, &str)> = domains
        .iter()
        .zip(&theirs)
        .zip(&ours)
        .map(|((d, t), o)| (*d, t.as_str(), o.as_str()))
        .collect();
    for (domain, theirs, ours) in &table {
        if *domain == "syntax.test" {
            // A known difference, written down in README: RFC 7208 4.6
            // makes any syntax error a permerror (pyspf); mail-auth 0.13
            // skips the bad mechanism and reaches -all.
            assert_eq!((*theirs, *ours), ("permerror", "fail"));
            continue;
        }
        assert_eq!(
            theirs, ours,
            "{domain}: pyspf {theirs}, Postel {ours}; all: {table:?}"
        );
    }
    // The table covers every result but temperror.
    for want in ["pass", "fail", "softfail", "neutral", "none", "permerror"] {
        assert!(ours.iter().any(|o| o == want), "no {want} in {table:?}");
    }
}

#[test]
fn an_spf_fail_is_refused_at_rcpt_when_asked() {
    let s = checking_server("reject_spf = true\n");
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<x@fail.test>", "250 2.1.0 Sender OK");
    c.cmd(
        "RCPT TO:<you@here.test>",
        "550 5.7.23 SPF validation failed for fail.test",
    );
    c.cmd("RSET", "250 2.0.0 Ok");
    // softfail is not fail.
    c.mail(
        "x@soft.test",
        &["you@here.test"],
        &message("x@soft.test", "soft"),
    );
    c.mail(
        "x@pass.test",
        &["you@here.test"],
        &message("x@pass.test", "pass"),
    );
}

#[test]
fn forged_results_are_removed_and_others_kept() {
    let s = checking_server("");
    let mut content =
        b"Authentication-Results: mx.test; dkim=pass header.d=quar.test; dmarc=pass\r\n\
        Authentication-Results: other.test; spf=pass\r\n"
            .to_vec();
    content.extend_from_slice(&message("x@quar.test", "forged"));
    let id = send(&s, "x@quar.test", &content);
    let raw = String::from_utf8(s.raw(&id)).expect("utf-8");
    let ours: Vec<&str> = raw
        .split("\r\n")
        .filter(|l| l.starts_with("Authentication-Results: mx.test;"))
        .collect();
    assert_eq!(ours.len(), 1, "{raw}");
    assert!(raw.contains("Authentication-Results: other.test; spf=pass\r\n"));
    assert!(!raw.contains("dmarc=pass"), "{raw}");
    let m = summary(&s, &id);
    assert_eq!(m["checks"]["dmarc"], "fail", "{m}");
    assert_eq!(m["checks"]["quarantine"], true, "{m}");
}

#[test]
fn an_arc_chain_sealed_by_dkimpy_validates() {
    let r = rig();
    let mut content =
        b"Authentication-Results: relay.in.test; spf=pass smtp.mailfrom=in.test\r\n".to_vec();
    content.extend_from_slice(&message("a@in.test", "arc"));
    let sealed = dkimpy(
        &[
            "arcsign",
            "in.test",
            "od",
            arg(&r.dir.join("od.private")),
            "relay.in.test",
        ],
        &content,
    );
    assert!(String::from_utf8_lossy(&sealed).contains("ARC-Seal:"));
    let s = checking_server("");
    let id = send(&s, "a@in.test", &sealed);
    assert_eq!(summary(&s, &id)["checks"]["arc"], "pass");
    // A chain broken by a change after the seal fails.
    // (mail-auth writes the body hash mismatch of the last instance as
    // neutral; RFC 8617 would say fail: no pass either way.)
    let id = send(&s, "a@in.test", &altered(&sealed));
    let arc = summary(&s, &id)["checks"]["arc"].clone();
    assert!(arc == "fail" || arc == "neutral", "{arc}");
}

#[test]
fn postel_signatures_verify_with_dkimpy_and_opendkim() {
    let r = rig();
    let s = Server::start(
        &format!(
            "[policy]\ndomains = [\"here.test\"]\n\
             [delivery]\nenabled = true\nrelay_networks = [\"127.0.0.0/8\"]\n\
             [dns]\nnameservers = [\"127.0.0.1:{}\"]\n{}",
            r.port, r.dkim_tables
        ),
        &[],
    );
    let id = send(&s, "alice@out.test", &message("alice@out.test", "signed"));
    let raw = s.raw(&id);
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(
        text.starts_with("DKIM-Signature: "),
        "signed last, on top: {text}"
    );
    assert!(text.contains("a=rsa-sha256"), "{text}");
    assert!(text.contains("a=ed25519-sha256"), "{text}");
    assert!(!text.contains("l="), "never l=");
    // Mail from a trusted client is not checked.
    assert!(summary(&s, &id)["checks"].is_null());
    let port = r.port.to_string();
    let verdicts = |m: &[u8]| String::from_utf8(dkimpy(&["verify", &port], m)).expect("utf-8");
    assert_eq!(verdicts(&raw), "pass\npass\n", "dkimpy on {text}");
    assert_eq!(verdicts(&altered(&raw)), "fail\nfail\n");
    // Over-signed: a second Subject: breaks both signatures.
    let mut second = b"Subject: added later\r\n".to_vec();
    second.extend_from_slice(&raw);
    assert_eq!(verdicts(&second), "fail\nfail\n");

    // OpenDKIM reads resolv.conf: a namespace whose port 53 has the keys.
    let ns = Netns::new(&format!("postel-dkim-{}", std::process::id()));
    let records: Vec<&str> = r.records.iter().map(String::as_str).collect();
    let _dns = ns.dnsmasq(&records);
    let opendkim = |m: &[u8]| {
        let mut child = ns
            .command("opendkim-testmsg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("opendkim-testmsg");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(m)
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, why) = opendkim(&raw);
    assert!(ok, "OpenDKIM refused Postel's signature: {why}");
    let (ok, _) = opendkim(&altered(&raw));
    assert!(!ok, "OpenDKIM passed an altered message");

    // A notice (DSN) is signed too, with the host's domain: here.test's
    // user writes to a domain that does not exist.
    let mut c = s.connect();
    c.greet();
    c.mail(
        "bob@here.test",
        &["nobody@nx.test"],
        &message("bob@here.test", "bounced"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let dsn = loop {
        let found = s
            .messages()
            .into_iter()
            .find(|m| m["from"] == "" && m["to"][0] == "bob@here.test");
        if let Some(m) = found {
            break s.raw(m["id"].as_str().expect("id"));
        }
        assert!(Instant::now() < deadline, "no notice came back");
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&dsn).into_owned();
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    assert!(text.contains("d=mx.test"), "{text}");
    assert_eq!(
        verdicts(&dsn),
        "pass\npass\n",
        "dkimpy on the notice {text}"
    );
}

/// DMARC cases: (From, MAIL FROM, signed by in.test's key).
const DMARC_TABLE: &[(&str, &str, bool)] = &[
    // Aligned DKIM (SPF fails): pass under p=reject.
    ("a@in.test", "a@in.test", true),
    // A signature of another domain: not aligned; p=quarantine.
    ("a@unal.test", "a@unal.test", true),
    // No record of its own: the tree walk finds tree.test, whose sp= rules.
    ("a@sub.tree.test", "a@sub.tree.test", false),
    // Aligned SPF, strict and relaxed; p=none.
    ("a@pass.test", "a@pass.test", false),
    ("a@pass.test", "x@mail.pass.test", false),
    // Unaligned SPF pass; p=none.
    ("a@nonep.test", "x@pass.test", false),
    // No record anywhere.
    ("a@norec.test", "a@norec.test", false),
    // A subdomain that does not exist: np= (DMARCbis).
    ("a@ghost.tree2.test", "a@ghost.tree2.test", false),
];

#[test]
fn dmarc_results_match_authheaders() {
    let r = rig();
    let key = r.dir.join("od.private");
    let s = checking_server("");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/dmarc_check.py");
    let port = r.port.to_string();
    let mut table = Vec::new();
    for (from, mail_from, signed) in DMARC_TABLE {
        let mut content = message(from, "dmarc");
        if *signed {
            content = dkimpy(&["sign", "in.test", "od", arg(&key)], &content);
        }
        let id = send(&s, mail_from, &content);
        let spf = summary(&s, &id)["checks"]["spf"]
            .as_str()
            .expect("spf")
            .to_owned();
        let raw = String::from_utf8(s.raw(&id)).expect("utf-8");
        let ar = raw
            .split("\r\nAuthentication-Results: ")
            .nth(1)
            .expect("results");
        let field = |name: &str| {
            ar.split(name)
                .nth(1)
                .and_then(|v| v.split([' ', ';', '\r']).next())
                .unwrap_or("")
                .to_owned()
        };
        let ours = format!("{} {}", field("dmarc="), field("policy.dmarc="));
        let theirs = String::from_utf8(run_with_input(
            Command::new("python3").args([arg(&script), &port, &spf, mail_from]),
            &content,
        ))
        .expect("utf-8")
        .trim()
        .to_owned();
        table.push((*from, *mail_from, ours, theirs));
    }
    for (from, mail_from, ours, theirs) in &table {
        // A known difference, written down in README: authheaders aligns
        // by the public suffix list even in its DMARCbis mode, and finds
        // "test" to be the organizational domain of every .test name, so
        // any two of them align; DMARCbis's tree walk (mail-auth) makes
        // each domain with its own record an organization of its own.
        if matches!(*from, "a@unal.test" | "a@nonep.test") {
            assert_eq!(ours.replace("fail", "pass"), *theirs, "{from}: {table:#?}");
            continue;
        }
        assert_eq!(
            ours, theirs,
            "From {from}, MAIL FROM {mail_from}; all: {table:#?}"
        );
    }
    // The table covers pass, fail and none, and each policy.
    for want in [
        "pass none",
        "pass reject",
        "fail quarantine",
        "fail none",
        "fail reject",
        "none none",
    ] {
        assert!(
            table.iter().any(|t| t.2 == want),
            "no {want:?} in {table:#?}"
        );
    }
}

#[test]
fn what_a_sender_controls_is_bounded() {
    let s = checking_server("reject_dmarc = true\n");
    // A signature listing 100 fields: permerror, not checked.
    let fields: Vec<String> = (0..100).map(|i| format!("x-f{i}")).collect();
    let mut long = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=in.test; s=od;\r\n\th={};\r\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n",
        fields.join(":")
    )
    .into_bytes();
    long.extend_from_slice(&message("a@quar.test", "long-h"));
    let id = send(&s, "a@quar.test", &long);
    assert_eq!(summary(&s, &id)["checks"]["dkim"], "permerror");
    // Twenty signatures that do not verify: eight are looked at.
    let mut many = Vec::new();
    for i in 0..20 {
        many.extend_from_slice(
            format!(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=in.test; s=od; h=from;\r\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA{i:04}\r\n"
            )
            .as_bytes(),
        );
    }
    many.extend_from_slice(&message("a@quar.test", "many"));
    let id = send(&s, "a@quar.test", &many);
    let raw = String::from_utf8(s.raw(&id)).expect("utf-8");
    let ar = raw
        .split("\r\nAuthentication-Results: ")
        .nth(1)
        .expect("results")
        .split("\r\n")
        .take_while(|l| !l.starts_with("DKIM-Signature"))
        .collect::<Vec<_>>()
        .join("\n");
    let entries = ar.matches("dkim=").count();
    assert_eq!(entries, 8, "{ar}");
    // Two From: fields: DMARC fails as under p=reject, and is refused.
    let mut two = b"From: ceo@in.test\r\n".to_vec();
    two.extend_from_slice(&message("x@quar.test", "two-from"));
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<x@quar.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<you@here.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send(&two);
    c.send(".\r\n");
    c.expect("550 5.7.1 Rejected by DMARC policy of in.test");
    // One From: field, two domains (RFC 7489 6.6.1): each is checked;
    // the strictest policy of those that fail applies (quarantine here,
    // so kept and flagged even with reject_dmarc), and two passes pass.
    let r = rig();
    let mut two_domains = message("a@in.test", "two-domains");
    let text = String::from_utf8(two_domains.clone()).expect("utf-8");
    two_domains = text
        .replace("From: Someone <a@in.test>", "From: a@in.test, b@quar.test")
        .into_bytes();
    let signed = dkimpy(
        &["sign", "in.test", "od", arg(&r.dir.join("od.private"))],
        &two_domains,
    );
    let id = c.mail("a@in.test", &["you@here.test"], &signed);
    let m = summary(&s, &id);
    assert_eq!(m["checks"]["dmarc"], "fail", "{m}");
    assert_eq!(m["checks"]["quarantine"], true, "{m}");
    let both = String::from_utf8(message("a@pass.test", "both-pass"))
        .expect("utf-8")
        .replace(
            "From: Someone <a@pass.test>",
            "From: a@pass.test, b@mail.pass.test",
        )
        .into_bytes();
    let id = c.mail("x@pass.test", &["you@here.test"], &both);
    assert_eq!(summary(&s, &id)["checks"]["dmarc"], "pass");
    // More author domains than are checked one by one fail as under
    // p=reject: none hides behind five that pass.
    let six = String::from_utf8(message("a@pass.test", "six"))
        .expect("utf-8")
        .replace(
            "From: Someone <a@pass.test>",
            "From: a@pass.test, b@mail.pass.test, c@p1.test, d@p2.test, e@p3.test, ceo@in.test",
        );
    c.cmd("MAIL FROM:<x@pass.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<you@here.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send(six.as_bytes());
    c.send(".\r\n");
    c.expect("550 5.7.1 Rejected by DMARC policy of pass.test");
    // Content that starts with white space would continue our fields.
    c.cmd("MAIL FROM:<x@pass.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<you@here.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send(" ; dkim=pass header.d=paypal.example\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    c.expect("550 5.6.0 Message must not start with white space");
}

#[test]
fn forged_results_are_removed_with_checking_off_and_users_sign_only_their_domains() {
    // Checking off, loopback (ignored anyway): the forged field still goes.
    let s = Server::start("[verify]\nenabled = false\n", &[]);
    let mut content =
        b"Authentication-Results: MX.TEST; dmarc=pass header.from=bank.example\r\n".to_vec();
    content.extend_from_slice(&message("x@bank.example", "off"));
    let mut c = s.connect();
    c.greet();
    let id = c.mail("x@bank.example", &["you@here.test"], &content);
    let raw = String::from_utf8(s.raw(&id)).expect("utf-8");
    assert!(
        !raw.to_ascii_lowercase()
            .contains("authentication-results: mx.test"),
        "{raw}"
    );
    assert!(summary(&s, &id)["checks"].is_null());

    // A user signs for the domains of its own addresses only.
    let r = rig();
    let dir = temp_dir("user-sign");
    crate::tls::add_user(&dir, "alice", "secret");
    let out = postel(&[
        "users",
        "add",
        "alice",
        "--keep-password",
        "--address",
        "alice@out.test",
        "--data-dir",
        arg(&dir),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start_in(
        &dir,
        &format!(
            "[tls]\nself_signed = true\n[submission]\nlisten = [\"127.0.0.1:0\"]\n{}",
            r.dkim_tables
        ),
        &[],
    );
    let port = s.addrs["submission"].port().to_string();
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for author in ("alice@out.test", "someone@mx.test"):
    c = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
    c.starttls(context=ctx)
    c.login("alice", "secret")
    forged = "Authentication-Results: mx.test; dmarc=pass header.from=mx.test\r\n"
    msg = f"{forged}From: {author}\r\nTo: you@here.test\r\nSubject: as {author}\r\n\r\nhi\r\n"
    c.sendmail("alice@out.test", ["you@here.test"], msg)
    c.quit()
"#;
    let st = Command::new("python3")
        .args(["-c", script, &port])
        .status()
        .expect("python3");
    assert!(st.success());
    let by_subject = |subject: &str| {
        let m = s
            .messages()
            .into_iter()
            .find(|m| m["subject"] == subject)
            .expect("stored");
        String::from_utf8(s.raw(m["id"].as_str().expect("id"))).expect("utf-8")
    };
    let own = by_subject("as alice@out.test");
    assert!(
        own.starts_with("DKIM-Signature: ") && own.contains("d=out.test"),
        "{own}"
    );
    let other = by_subject("as someone@mx.test");
    assert!(!other.contains("DKIM-Signature"), "{other}");
    // A user's forged results go too.
    for raw in [&own, &other] {
        assert!(!raw.contains("Authentication-Results: mx.test"), "{raw}");
    }
}

/// The DKIM key a message's header names is looked up while the rest of
/// the content is still coming: the query reaches DNS before the end of
/// data is sent (dnsmasq logs it).
#[test]
fn dkim_keys_are_looked_up_while_the_content_arrives() {
    let r = rig();
    let signed = dkimpy(
        &["sign", "in.test", "pre", arg(&r.dir.join("od.private"))],
        &message("a@in.test", "ahead"),
    );
    let split = signed
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end")
        + 4;
    let log = r.dir.join("dns.log");
    let asked = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("pre._domainkey.in.test")
    };
    assert!(!asked(), "nobody asked yet");
    let s = checking_server("");
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@in.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<you@here.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send(&signed[..split]);
    crate::rig::wait_for(10, "the key asked for before the end of data", asked);
    c.send(&signed[split..]);
    c.send(".\r\n");
    let id = crate::support::queued_id(&c.expect_start("250 2.0.0 Ok: queued as "));
    assert_eq!(summary(&s, &id)["checks"]["dkim"], "pass");
}
