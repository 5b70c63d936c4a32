//! DANE (RFC 7672) against a DNSSEC-signed zone: Knot signs a fake root
//! (`.`, with a 4096-bit KSK and ZSK, so that its DNSKEY answer is too
//! large for UDP and comes truncated), `test.` under it, `bogus.test.`
//! under that with a DS that matches none of its keys, and serves the
//! unsigned `plain.`. Postel validates from the fake root's key as its
//! trust anchor. One Knot per test binary; the receiving MX is a second
//! Postel on 127.0.12.1-4 with a certificate of a test CA.
//!
//! - `dane.test`: TLSA 3 1 1 (DANE-EE, the key's SHA-256): delivered,
//!   "certificate verified by DANE";
//! - `ta.test`: TLSA 2 0 1 (DANE-TA, the CA certificate's SHA-256; the MX
//!   sends its chain): delivered;
//! - `bad.test`: a TLSA record no certificate matches: deferred, never
//!   sent in plaintext;
//! - `plain.`: unsigned, with the same wrong record: DANE does not apply,
//!   delivered opportunistically;
//! - `bogus.test`: bogus answers: deferred.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::delivery_smarthost::test_pki;
use crate::rig::{queue, wait_for};
use crate::support::{Server, arg, temp_dir};
use crate::tools::free_port;

struct Rig {
    dns_port: u16,
    mx_port: u16,
    /// The HTTPS receiver of TLS reports, `reports.test` (127.0.9.3).
    sink_port: u16,
    dir: PathBuf,
    _knot: Mutex<std::process::Child>,
}

fn keymgr(conf: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("keymgr")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("keymgr (knot; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "keymgr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("pem")
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let dir = temp_dir("dane-rig");
        let (dns_port, mx_port, sink_port) = (free_port(), free_port(), free_port());
        let (sink_ca, sink_cert, sink_key) = test_pki(&["reports.test"]);
        std::fs::write(dir.join("sink-ca.pem"), &sink_ca).expect("sink ca");
        std::fs::write(dir.join("sink-cert.pem"), &sink_cert).expect("sink cert");
        std::fs::write(dir.join("sink-key.pem"), &sink_key).expect("sink key");
        let (ca, cert, key) = test_pki(&["mx.dane.test", "mx.ta.test", "mx.bad.test", "mx.plain"]);
        std::fs::write(dir.join("ca.pem"), &ca).expect("ca");
        // The chain: the CA goes along, for DANE-TA.
        std::fs::write(dir.join("chain.pem"), format!("{cert}{ca}")).expect("chain");
        std::fs::write(dir.join("key.pem"), &key).expect("key");
        let leaf_der = der(&cert);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
        let ee = sha256_hex(leaf.tbs_certificate.subject_pki.raw);
        let ta = sha256_hex(&der(&ca));
        let wrong = "00".repeat(32);

        let d = dir.display();
        let conf = dir.join("knot.conf");
        std::fs::create_dir_all(dir.join("keys")).expect("keys");
        std::fs::write(
            &conf,
            format!(
                "server:\n    rundir: {d}\n    listen: 127.0.0.1@{dns_port}\n    udp-max-payload: 1220\n\
                 log:\n  - target: stderr\n    any: warning\n\
                 database:\n    storage: {d}\n\
                 keystore:\n  - id: ks\n    config: {d}/keys\n\
                 policy:\n  - id: manual\n    keystore: ks\n    manual: on\n\
                 template:\n  - id: default\n    storage: {d}\n    dnssec-signing: on\n    dnssec-policy: manual\n    zonefile-sync: -1\n\
                 zone:\n  - domain: .\n    file: root.zone\n  - domain: test.\n    file: test.zone\n\
                 \x20 - domain: bogus.test.\n    file: bogus.zone\n\
                 \x20 - domain: plain.\n    file: plain.zone\n    dnssec-signing: off\n"
            ),
        )
        .expect("knot.conf");
        // The root: a 4096-bit KSK and ZSK (a large DNSKEY answer).
        keymgr(&conf, &[".", "generate", "algorithm=rsasha256", "size=4096", "ksk=yes"]);
        keymgr(&conf, &[".", "generate", "algorithm=rsasha256", "size=4096"]);
        for zone in ["test.", "bogus.test."] {
            keymgr(&conf, &[zone, "generate", "algorithm=ecdsap256sha256", "ksk=yes", "zsk=yes"]);
        }
        // A second signing key: every RRset of test. carries two RRSIGs,
        // as during a key rollover.
        keymgr(&conf, &["test.", "generate", "algorithm=ecdsap256sha256"]);
        let ds = keymgr(&conf, &["test.", "ds"]);
        let ds = ds
            .lines()
            .find(|l| l.contains(" DS ") && l.split_whitespace().nth(4) == Some("2"))
            .expect("a SHA-256 DS")
            .replace("test. DS", "test. 3600 IN DS");
        let anchor: String = keymgr(&conf, &[".", "dnskey"])
            .lines()
            .filter(|l| l.contains("DNSKEY 257"))
            .map(|l| format!("{}\n", l.replace(". DNSKEY", ". 3600 IN DNSKEY")))
            .collect();
        assert!(!anchor.is_empty());
        std::fs::write(dir.join("anchor.keys"), anchor).expect("anchor");
        // Another key passed off as the root's: nothing validates.
        let wrong_root: String = keymgr(&conf, &["bogus.test.", "dnskey"])
            .lines()
            .filter(|l| l.contains("DNSKEY 257"))
            .map(|l| format!("{}\n", l.replace("bogus.test. DNSKEY", ". 3600 IN DNSKEY")))
            .collect();
        std::fs::write(dir.join("wrong.keys"), wrong_root).expect("wrong anchor");
        let soa = |z: &str| format!("{z} 3600 IN SOA ns.test. h.test. 1 3600 600 86400 300\n{z} 3600 IN NS ns.test.\n");
        std::fs::write(
            dir.join("root.zone"),
            format!(
                "{}test. 3600 IN NS ns.test.\nns.test. 3600 IN A 127.0.0.1\n{ds}\nplain. 3600 IN NS ns.test.\n",
                soa(".")
            ),
        )
        .expect("root.zone");
        let p = mx_port;
        std::fs::write(
            dir.join("test.zone"),
            format!(
                "{}ns.test. 3600 IN A 127.0.0.1\n\
                 dane.test. 300 IN MX 10 mx.dane.test.\nmx.dane.test. 300 IN A 127.0.12.1\n\
                 _{p}._tcp.mx.dane.test. 300 IN TLSA 3 1 1 {ee}\n\
                 ta.test. 300 IN MX 10 mx.ta.test.\nmx.ta.test. 300 IN A 127.0.12.2\n\
                 _{p}._tcp.mx.ta.test. 300 IN TLSA 2 0 1 {ta}\n\
                 bad.test. 300 IN MX 10 mx.bad.test.\nmx.bad.test. 300 IN A 127.0.12.3\n\
                 _{p}._tcp.mx.bad.test. 300 IN TLSA 3 1 1 {wrong}\n\
                 notlsa.test. 300 IN MX 10 mx.notlsa.test.\nmx.notlsa.test. 300 IN A 127.0.12.4\n\
                 pkix.test. 300 IN MX 10 mx.pkix.test.\nmx.pkix.test. 300 IN A 127.0.12.4\n\
                 _{p}._tcp.mx.pkix.test. 300 IN TLSA 1 1 1 {wrong}\n\
                 _smtp._tls.ta.test. 300 IN TXT \"v=TLSRPTv1; rua=https://reports.test:{sink_port}/v1/tlsrpt\"\n\
                 reports.test. 300 IN A 127.0.9.3\n\
                 _smtp._tls.dane.test. 300 IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@here.test\"\n\
                 _smtp._tls.bad.test. 300 IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@here.test\"\n\
                 bogus.test. 3600 IN NS ns.test.\n\
                 bogus.test. 3600 IN DS 4242 13 2 {wrong}\n",
                soa("test.")
            ),
        )
        .expect("test.zone");
        std::fs::write(
            dir.join("bogus.zone"),
            format!(
                "{}bogus.test. 300 IN MX 10 mx.bogus.test.\nmx.bogus.test. 300 IN A 127.0.12.5\n",
                soa("bogus.test.")
            ),
        )
        .expect("bogus.zone");
        std::fs::write(
            dir.join("plain.zone"),
            format!(
                "{}plain. 300 IN MX 10 mx.plain.\nmx.plain. 300 IN A 127.0.12.4\n\
                 _{p}._tcp.mx.plain. 300 IN TLSA 3 1 1 {wrong}\n",
                soa("plain.")
            ),
        )
        .expect("plain.zone");
        // The reports' DKIM key (RFC 8460 3: unsigned reports are not
        // sent).
        let out = crate::support::postel(&[
            "dkim",
            "generate",
            "mx.test",
            "--selector",
            "rpt",
            "--dir",
            arg(&dir.join("keys-dkim")),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let knot = crate::processes::watched(&[(&format!("knotd -c '{}'", conf.display()), None)]);
        // Ready once every signed zone answers with its signatures.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let signed = ["." , "test.", "bogus.test."].iter().all(|z| {
                kdig(dns_port, &["+dnssec", "+tcp", "SOA", z]).contains("RRSIG")
            });
            if signed {
                break;
            }
            assert!(Instant::now() < deadline, "knotd did not sign its zones");
            std::thread::sleep(Duration::from_millis(200));
        }
        Rig {
            dns_port,
            mx_port,
            sink_port,
            dir,
            _knot: knot,
        }
    })
}

/// A sender relaying for loopback into the rig with DANE on, validating
/// from the rig's file `anchor`; `delivery_extra` goes in `[delivery]`,
/// `extra` after `[dns]`.
fn sender_config(r: &Rig, anchor: &str, delivery_extra: &str, extra: &str) -> String {
    format!(
        "[policy]\ndomains = [\"here.test\"]\n\
         [delivery]\nenabled = true\nrelay_networks = [\"127.0.0.0/8\"]\nmx_port = {}\n\
         allow_private_addresses = true\nretry = [\"1h\"]\nconnect_timeout = \"2s\"\n\
         mta_sts = false\ndane = true\n{delivery_extra}\
         [dns]\nnameservers = [\"127.0.0.1:{}\"]\ntrust_anchor = \"{}\"\n{extra}",
        r.mx_port,
        r.dns_port,
        arg(&r.dir.join(anchor)),
    )
}

fn kdig(port: u16, args: &[&str]) -> String {
    let out = Command::new("kdig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("kdig (knot-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dane_delivers_by_tlsa_and_defers_on_mismatch_or_bogus() {
    let r = rig();
    // The root's DNSKEY answer does not fit in UDP: it comes truncated, and
    // the validator has to ask again over TCP.
    let udp = kdig(
        r.dns_port,
        &[
            "+dnssec",
            "+notcp",
            "+ignore",
            "+bufsize=1220",
            "DNSKEY",
            ".",
        ],
    );
    assert!(udp.contains(" tc"), "{udp}");

    let mx = Server::start_in(
        &temp_dir("dane-mx"),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[policy]\ndomains = [\"dane.test\", \"ta.test\", \"bad.test\", \"plain\", \"bogus.test\", \"notlsa.test\", \"pkix.test\"]\n",
            arg(&r.dir.join("chain.pem")),
            arg(&r.dir.join("key.pem"))
        ),
        &[
            "--smtp",
            &format!("127.0.12.1:{}", r.mx_port),
            "--smtp",
            &format!("127.0.12.2:{}", r.mx_port),
            "--smtp",
            &format!("127.0.12.3:{}", r.mx_port),
            "--smtp",
            &format!("127.0.12.4:{}", r.mx_port),
            "--smtp",
            &format!("127.0.12.5:{}", r.mx_port),
        ],
    );
    // The HTTPS receiver of ta.test's reports.
    let sink_dir = temp_dir("tlsrpt-sink");
    let mut sink = Command::new("python3")
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/peers/tlsrpt_sink.py"),
        )
        .args(["--listen", &format!("127.0.9.3:{}", r.sink_port)])
        .args(["--cert", arg(&r.dir.join("sink-cert.pem"))])
        .args(["--key", arg(&r.dir.join("sink-key.pem"))])
        .args(["--dir", arg(&sink_dir)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tlsrpt_sink.py");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sink.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("ready");
    let _sink = crate::processes::Killed(sink);
    let sender = Server::start(
        &sender_config(
            r,
            "anchor.keys",
            "tls_report_period = \"4s\"\n",
            &format!(
                "[tls]\nca_file = \"{}\"\n[[dkim]]\ndomain = \"mx.test\"\nselector = \"rpt\"\nkey = \"{}\"\n",
                arg(&r.dir.join("sink-ca.pem")),
                arg(&r.dir.join("keys-dkim/mx.test/rptr.pem"))
            ),
        ),
        &[],
    );
    let mut c = sender.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &[
            "a@dane.test",
            "b@ta.test",
            "c@bad.test",
            "d@plain",
            "e@bogus.test",
            "g@notlsa.test",
            "h@pkix.test",
        ],
        b"Subject: dane\r\n\r\nhello\r\n",
    );
    let reply = |to: &str| {
        queue(&sender)
            .iter()
            .find(|e| e["recipient"] == to)
            .map(|e| {
                format!(
                    "{} {}",
                    e["state"].as_str().unwrap_or(""),
                    e["last_reply"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_default()
    };
    wait_for(40, "every row tried", || {
        [
            "a@dane.test",
            "b@ta.test",
            "c@bad.test",
            "d@plain",
            "e@bogus.test",
            "g@notlsa.test",
            "h@pkix.test",
        ]
        .iter()
        .all(|to| {
            let r = reply(to);
            r.starts_with("delivered") || r.starts_with("deferred")
        })
    });
    let a = reply("a@dane.test");
    assert!(
        a.starts_with("delivered") && a.ends_with("certificate verified by DANE)"),
        "{a}"
    );
    let b = reply("b@ta.test");
    assert!(
        b.starts_with("delivered") && b.ends_with("certificate verified by DANE)"),
        "{b}"
    );
    let c = reply("c@bad.test");
    assert!(
        c.starts_with("deferred") && c.contains("no TLSA record matches the certificate"),
        "{c}"
    );
    let d = reply("d@plain");
    assert!(
        d.starts_with("delivered") && d.ends_with("certificate not verified)"),
        "{d}"
    );
    let e = reply("e@bogus.test");
    assert!(e.starts_with("deferred") && e.contains("bogus"), "{e}");
    // Signed, and securely without TLSA records: opportunistic.
    let g = reply("g@notlsa.test");
    assert!(
        g.starts_with("delivered") && g.ends_with("certificate not verified)"),
        "{g}"
    );
    // Only a PKIX-EE record, unusable for SMTP: TLS still required, not
    // authenticated (RFC 7672 2.2).
    let h = reply("h@pkix.test");
    assert!(
        h.starts_with("delivered") && h.ends_with("certificate not verified)"),
        "{h}"
    );
    let got: Vec<String> = mx
        .messages()
        .iter()
        .flat_map(|m| m["to"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert!(
        !got.iter().any(|t| t == "c@bad.test" || t == "e@bogus.test"),
        "{got:?}"
    );

    // TLS reports (RFC 8460): dane.test and bad.test ask for them (to a
    // local address here); plain does not. Read back with Python's email,
    // gzip and json, not with Postel's code.
    wait_for(30, "two TLS reports", || tls_reports(&sender).len() >= 2);
    let reports = tls_reports(&sender);
    let by_domain = |d: &str| {
        reports
            .iter()
            .find(|r| r["policies"][0]["policy"]["policy-domain"] == d)
            .unwrap_or_else(|| panic!("no report for {d}: {reports:?}"))
            .clone()
    };
    let ok = by_domain("dane.test");
    let p = &ok["policies"][0];
    assert_eq!(p["policy"]["policy-type"], "tlsa", "{ok}");
    assert!(
        p["policy"]["policy-string"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("3 1 1 ")),
        "{ok}"
    );
    assert!(
        p["summary"]["total-successful-session-count"].as_u64() >= Some(1),
        "{ok}"
    );
    assert_eq!(p["summary"]["total-failure-session-count"], 0, "{ok}");
    assert_eq!(ok["organization-name"], "mx.test", "{ok}");
    let bad = by_domain("bad.test");
    let p = &bad["policies"][0];
    assert!(
        p["summary"]["total-failure-session-count"].as_u64() >= Some(1),
        "{bad}"
    );
    assert_eq!(
        p["failure-details"][0]["result-type"], "validation-failure",
        "{bad}"
    );
    assert_eq!(
        p["failure-details"][0]["receiving-mx-hostname"], "mx.bad.test",
        "{bad}"
    );
    assert!(
        reports
            .iter()
            .all(|r| r["policies"][0]["policy"]["policy-domain"] != "plain"),
        "{reports:?}"
    );
    // ta.test asks for its reports over HTTPS.
    wait_for(30, "ta.test's report posted", || {
        !crate::processes::json_files(&sink_dir).is_empty()
    });
    let posted = &crate::processes::json_files(&sink_dir)[0];
    assert_eq!(posted["path"], "/v1/tlsrpt", "{posted}");
    let p = &posted["report"]["policies"][0];
    assert_eq!(p["policy"]["policy-domain"], "ta.test", "{posted}");
    assert_eq!(p["policy"]["policy-type"], "tlsa", "{posted}");
    assert!(
        p["summary"]["total-successful-session-count"].as_u64() >= Some(1),
        "{posted}"
    );

    // The day's counts outlive the process: written at a graceful stop
    // (and every five minutes), read back at start. A sender whose period
    // is a day, so that no report closes it meanwhile.
    let mut keeper = Server::start(&sender_config(r, "anchor.keys", "", ""), &[]);
    let mut c = keeper.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["i@dane.test"],
        b"Subject: kept\r\n\r\nhello\r\n",
    );
    wait_for(30, "i@dane.test delivered", || {
        mx.messages().iter().any(|m| m["to"][0] == "i@dane.test")
    });
    let data = keeper.data_dir.clone();
    keeper.signal("TERM");
    assert_eq!(keeper.wait_exit(30), Some(true));
    let kept: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("tls-report.json")).expect("tls-report.json"),
    )
    .expect("json");
    assert!(
        kept["domains"]["dane.test"]["success"].as_u64() >= Some(1),
        "{kept}"
    );

    // With a trust anchor the root's keys do not match, every answer is
    // bogus: DANE mail waits. (A key of `test.` alone would do as an
    // anchor: hickory takes anchors below the root.)
    let wrong_anchor = Server::start(&sender_config(r, "wrong.keys", "", ""), &[]);
    let before = mx.messages().len();
    let mut c = wrong_anchor.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["f@dane.test"],
        b"Subject: dane\r\n\r\nhello\r\n",
    );
    wait_for(40, "a deferral", || {
        queue(&wrong_anchor)
            .iter()
            .any(|e| e["state"] == "deferred")
    });
    let q = queue(&wrong_anchor);
    assert!(
        q[0]["last_reply"]
            .as_str()
            .is_some_and(|r| r.contains("bogus")),
        "{q:?}"
    );
    assert_eq!(mx.messages().len(), before);
}

/// The TLS reports in `s`'s inbox, each report's JSON as Python reads it
/// out of the message (the `application/tlsrpt+gzip` part).
pub(crate) fn tls_reports(s: &Server) -> Vec<serde_json::Value> {
    const READ: &str = r#"
import email, gzip, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read())
assert m["TLS-Report-Domain"] and m["TLS-Report-Submitter"], dict(m)
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "tlsrpt"
assert m["DKIM-Signature"] and "d=mx.test" in m["DKIM-Signature"], dict(m)
assert m["TLS-Required"] == "No", dict(m)
for part in m.walk():
    if part.get_content_type() == "application/tlsrpt+gzip":
        assert part.get_filename().endswith(".json.gz"), part.get_filename()
        print(json.dumps(json.loads(gzip.decompress(part.get_payload(decode=True)))))
"#;
    s.messages()
        .iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|t| t.starts_with("Report Domain:"))
        })
        .map(|m| {
            use std::io::Write as _;
            let raw = s.raw(m["id"].as_str().unwrap_or(""));
            let mut child = Command::new("python3")
                .args(["-c", READ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python3");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&raw)
                .expect("write");
            let out = child.wait_with_output().expect("python3");
            assert!(out.status.success());
            serde_json::from_slice(&out.stdout).expect("report json")
        })
        .collect()
}
