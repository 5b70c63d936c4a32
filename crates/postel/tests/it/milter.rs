//! Milters (`[[milter]]`) against real filters: a test milter on
//! Sendmail's own libmilter (tests/peers/testmilter.py, every action), OpenDKIM
//! signing (checked with dkimpy), rspamd in milter mode (GTUBE) and
//! clamav-milter (EICAR), and a filter that is down.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::processes::{Killed, listening, watched};
use crate::rig::wait_for;
use crate::support::{Server, arg, temp_dir};
use crate::tools::free_port;

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers")
}

/// The libmilter test filter: its port, and where it writes what it saw.
fn test_milter() -> (u16, PathBuf, Killed) {
    let port = free_port();
    let dir = temp_dir("milter-seen");
    // Debian's python3-milter is built for Debian's own interpreter.
    let child = Command::new("/usr/bin/python3")
        .arg(peers().join("testmilter.py"))
        .args(["--port", &port.to_string(), "--dir", arg(&dir)])
        .stdin(Stdio::null())
        .spawn()
        .expect(
            "/usr/bin/python3 tests/peers/testmilter.py (python3-milter; scripts/test.sh installs it)",
        );
    let child = Killed(child);
    wait_for(15, "the test milter", || listening(port));
    (port, dir, child)
}

/// What the test filter saw of message `id`.
fn seen(dir: &Path, id: &str) -> serde_json::Value {
    let path = dir.join(format!("{id}.json"));
    wait_for(10, "the milter's record", || path.exists());
    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json")
}

fn with_milter(port: u16, extra: &str) -> String {
    format!("[[milter]]\naddress = \"127.0.0.1:{port}\"\ntimeout = \"10s\"\n{extra}")
}

fn msg(subject: &str) -> Vec<u8> {
    format!(
        "From: me@here.test\r\nSubject: {subject}\r\nX-Remove-Me: yes\r\nX-Folded: one\r\n two\r\n\r\nThe body.\r\n"
    )
    .into_bytes()
}

#[test]
fn libmilter_sees_the_session_with_its_macros_and_its_changes_are_applied() {
    let (port, dir, _m) = test_milter();
    let s = Server::start(
        &format!(
            "[policy]\ndomains = [\"here.test\"]\n{}",
            with_milter(port, "")
        ),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    let id = c.mail(
        "me@here.test",
        &["keep@here.test", "gone@here.test"],
        &msg("edit"),
    );
    let log = seen(&dir, &id);
    assert_eq!(log["helo"], "client.test");
    assert_eq!(log["from"], "<me@here.test>");
    assert_eq!(
        log["rcpts"],
        serde_json::json!(["<keep@here.test>", "<gone@here.test>"])
    );
    assert_eq!(log["macros"]["connect"]["{client_addr}"], "127.0.0.1");
    assert_eq!(log["macros"]["connect"]["j"], "mx.test");
    assert_eq!(log["macros"]["mail"]["{mail_addr}"], "me@here.test");
    assert_eq!(
        log["macros"]["mail"]["i"],
        serde_json::Value::Null,
        "no id before DATA"
    );
    assert_eq!(log["macros"]["data"]["i"], id.as_str());
    // Headers as Sendmail gives them: no leading space, folds as newlines,
    // and Postel's own Received: field is not shown.
    let headers = log["headers"].as_array().expect("headers");
    assert_eq!(headers[0], serde_json::json!(["From", "me@here.test"]));
    assert!(
        headers.contains(&serde_json::json!(["X-Folded", "one\n two"])),
        "{headers:?}"
    );
    assert!(!headers.iter().any(|h| h[0] == "Received"));
    assert_eq!(log["body"], "The body.\r\n");

    // The changes: the copy kept is edited, the sender changed, one
    // recipient removed and one added.
    let m = s
        .messages()
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .expect("stored");
    assert_eq!(m["from"], "changed@here.test");
    assert_eq!(
        m["to"],
        serde_json::json!(["keep@here.test", "added@here.test"])
    );
    let raw = String::from_utf8(s.raw(&id)).expect("utf-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    assert_eq!(body, "A new body.\r\n");
    assert!(head.contains("\r\nSubject: edited\r\n"), "{head}");
    assert!(head.contains("\r\nX-Test-Milter: added"), "{head}");
    assert!(!head.contains("X-Remove-Me"), "{head}");
    let inserted = head.find("X-Inserted: at the top").expect("inserted");
    assert!(inserted < head.find("From:").expect("from"), "{head}");
}

#[test]
fn libmilter_refusals_discard_and_quarantine() {
    let (port, _dir, _m) = test_milter();
    let mx_port = free_port();
    let mx = crate::rig::Mx::start("127.0.2.1", mx_port, &[]);
    let s = Server::start(
        &crate::rig::config(mx_port, "", &with_milter(port, "")),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    let send = |c: &mut crate::support::Client, subject: &str| {
        c.cmd("MAIL FROM:<me@here.test>", "250 2.1.0 Sender OK");
        c.cmd("RCPT TO:<bob@ok.test>", "250 2.1.5 Recipient OK");
        c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
        c.send(msg(subject));
        c.send(".\r\n");
        c.reply()
    };
    assert_eq!(
        send(&mut c, "reject"),
        "550 5.7.1 Rejected by the test milter\r\n"
    );
    assert_eq!(
        send(&mut c, "tempfail"),
        "451 4.7.1 Service unavailable - try again later\r\n"
    );
    // Discarded: the client is told it was taken; nothing is kept or sent.
    assert!(send(&mut c, "discard").starts_with("250 "));
    // Quarantined: held in the queue, with the reason in a header.
    assert!(send(&mut c, "quarantine").starts_with("250 "));
    wait_for(10, "the held row", || {
        crate::rig::queue(&s).iter().any(|e| e["state"] == "held")
    });
    assert_eq!(crate::rig::queue(&s).len(), 1, "only the quarantined one");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(mx.received().is_empty(), "nothing went out");

    // A refusal at HELO holds for the whole session, not one MAIL.
    let mut c = s.connect();
    c.expect_start("220 ");
    c.send("EHLO refused.test\r\n");
    c.expect_start("250-");
    c.cmd("MAIL FROM:<me@here.test>", "550 5.7.1 Not this HELO");
    c.cmd("MAIL FROM:<me@here.test>", "550 5.7.1 Not this HELO");
}

#[test]
fn a_milter_that_is_down_gets_its_default_action() {
    let down = free_port();
    // tempfail (the default): every transaction is refused for now.
    let s = Server::start(&with_milter(down, ""), &[]);
    let mut c = s.connect();
    c.greet();
    c.cmd(
        "MAIL FROM:<a@b.test>",
        "451 4.7.1 Service unavailable - try again later",
    );
    // accept: as if it were not there.
    let s = Server::start(&with_milter(down, "default_action = \"accept\"\n"), &[]);
    let mut c = s.connect();
    c.greet();
    c.mail("a@b.test", &["c@d.test"], &msg("plain"));
    assert_eq!(s.messages().len(), 1);
    // reject.
    let s = Server::start(&with_milter(down, "default_action = \"reject\"\n"), &[]);
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "550 5.7.1 Command rejected");
}

#[test]
fn opendkim_signs_and_dkimpy_verifies() {
    let dir = temp_dir("opendkim");
    let status = Command::new("opendkim-genkey")
        .args(["-D", arg(&dir), "-d", "here.test", "-s", "postel"])
        .status()
        .expect("opendkim-genkey (opendkim-tools; scripts/test.sh installs it)");
    assert!(status.success());
    let port = free_port();
    let conf = dir.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "Mode sv\nDomain here.test\nSelector postel\nKeyFile {}/postel.private\n\
             Socket inet:{port}@127.0.0.1\nBackground no\nCanonicalization relaxed/relaxed\n\
             Syslog no\nRequireSafeKeys false\n",
            dir.display()
        ),
    )
    .expect("conf");
    let child = Command::new("opendkim")
        .args(["-f", "-x", arg(&conf)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("opendkim (scripts/test.sh installs it)");
    let _opendkim = Killed(child);
    wait_for(15, "opendkim", || listening(port));
    let s = Server::start(
        &format!(
            "[policy]\ndomains = [\"here.test\"]\n{}",
            with_milter(port, "")
        ),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    let id = c.mail("me@here.test", &["you@here.test"], &msg("signed"));
    let raw = s.raw(&id);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("DKIM-Signature:"), "{text}");
    // dkimpy verifies it with the published key.
    let record = std::fs::read_to_string(dir.join("postel.txt")).expect("txt");
    let key: String = record
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat();
    let check = |message: &[u8]| {
        let path = dir.join("message.eml");
        std::fs::write(&path, message).expect("write");
        let script = format!(
            "import dkim,sys\nm=open({:?},'rb').read()\nprint(dkim.verify(m, dnsfunc=lambda name, timeout=5: {:?}.encode()))",
            path.display().to_string(),
            key
        );
        let o = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3 dkimpy (scripts/test.sh installs it)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(check(&raw), "True");
    // Altered after signing: it fails.
    let altered = text.replace("The body.", "The body!");
    assert_eq!(check(altered.as_bytes()), "False");
}

/// The rspamd of this test binary, in milter mode (its proxy worker,
/// scanning by itself), with `milter_headers` on and no local addresses,
/// asking the rig's DNS only: the milter port.
fn rspamd() -> u16 {
    static R: std::sync::OnceLock<(u16, std::sync::Mutex<Child>)> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let dir = temp_dir("rspamd");
        for sub in ["local.d", "run", "db", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dir");
        }
        let port = free_port();
        std::fs::write(
            dir.join("rspamd.conf"),
            format!(
                r#".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    local_addrs = [];
    dns {{ nameserver = ["127.0.0.1:{dns}"]; timeout = 1s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }}
worker "rspamd_proxy" {{
    bind_socket = "127.0.0.1:{port}";
    milter = yes;
    timeout = 120s;
    upstream "local" {{ default = yes; self_scan = yes; }}
    count = 1;
    reject_message = "Spam message rejected";
}}
"#,
                dns = crate::rig::dns_port()
            ),
        )
        .expect("rspamd.conf");
        std::fs::write(
            dir.join("local.d/milter_headers.conf"),
            "use = [\"x-spamd-result\", \"x-rspamd-server\"];\nskip_local = false;\nskip_authenticated = false;\n",
        )
        .expect("milter_headers.conf");
        let d = dir.display();
        let watchdog = watched(&[(
            &format!(
                "rspamd -f -i -c '{d}/rspamd.conf' --var=LOCAL_CONFDIR='{d}' --var=RUNDIR='{d}/run' --var=DBDIR='{d}/db' --var=LOGDIR='{d}/log'"
            ),
            None,
        )]);
        // Loading rules takes rspamd half a minute on 2 cores.
        wait_for(120, "rspamd", || listening(port));
        (port, watchdog)
    })
    .0
}

/// clamd with a one-signature database that matches the EICAR test
/// string (no download), and clamav-milter in front of it: the milter
/// port. Once per test binary.
fn clamav() -> u16 {
    static C: std::sync::OnceLock<(u16, std::sync::Mutex<Child>)> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let dir = temp_dir("clamav");
        std::fs::create_dir_all(dir.join("db")).expect("db");
        let eicar_hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            dir.join("db/eicar.ndb"),
            format!("Postel.Test.EICAR:0:*:{eicar_hex}\n"),
        )
        .expect("ndb");
        let d = dir.display();
        std::fs::write(
            dir.join("clamd.conf"),
            format!("LocalSocket {d}/clamd.sock\nDatabaseDirectory {d}/db\nForeground yes\nLogFile {d}/clamd.log\nUser root\n"),
        )
        .expect("clamd.conf");
        let port = free_port();
        std::fs::write(
            dir.join("clamav-milter.conf"),
            format!("MilterSocket inet:{port}@127.0.0.1\nClamdSocket unix:{d}/clamd.sock\nForeground yes\nUser root\nOnInfected Reject\nOnFail Defer\nLogFile {d}/milter.log\n"),
        )
        .expect("clamav-milter.conf");
        let socket = format!("{d}/clamd.sock");
        let watchdog = watched(&[
            (&format!("clamd -c '{d}/clamd.conf'"), Some(&socket)),
            (&format!("clamav-milter -c '{d}/clamav-milter.conf'"), None),
        ]);
        wait_for(60, "clamav-milter", || listening(port));
        (port, watchdog)
    })
    .0
}

/// The EICAR anti-virus test file.
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Sends `content` and returns the reply to its end.
fn send_data(s: &Server, content: &str) -> String {
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<me@here.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<you@here.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send(content);
    c.send(".\r\n");
    c.reply()
}

#[test]
fn rspamd_rejects_gtube_and_adds_its_headers_to_clean_mail() {
    let port = rspamd();
    let s = Server::start(
        &format!(
            "[policy]\ndomains = [\"here.test\"]\n[[milter]]\naddress = \"127.0.0.1:{port}\"\ntimeout = \"60s\"\n"
        ),
        &[],
    );
    let gtube = "From: me@here.test\r\nSubject: spam\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
    let r = send_data(&s, gtube);
    // rspamd's own reply for GTUBE.
    assert!(r.starts_with("554 5.7.1 Gtube pattern"), "{r}");
    let clean = "From: me@here.test\r\nTo: you@here.test\r\nSubject: lunch\r\nMessage-ID: <1@here.test>\r\nDate: Mon, 30 Nov 2026 04:00:00 +0000\r\n\r\nSee you at noon.\r\n";
    let r = send_data(&s, clean);
    assert!(r.starts_with("250 "), "{r}");
    let id = crate::support::queued_id(&r);
    let raw = String::from_utf8_lossy(&s.raw(&id)).into_owned();
    assert!(raw.contains("X-Spamd-Result:"), "{raw}");
    assert!(raw.contains("X-Rspamd-Server:"), "{raw}");
    assert_eq!(s.messages().len(), 1);
}

#[test]
fn clamav_milter_refuses_the_eicar_string() {
    let port = clamav();
    let s = Server::start(
        &format!(
            "[policy]\ndomains = [\"here.test\"]\n[[milter]]\naddress = \"127.0.0.1:{port}\"\ntimeout = \"30s\"\n"
        ),
        &[],
    );
    let infected = format!(
        "From: me@here.test\r\nSubject: attachment\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{EICAR}\r\n"
    );
    let r = send_data(&s, &infected);
    assert!(r.starts_with("5"), "{r}");
    let r = send_data(
        &s,
        "From: me@here.test\r\nSubject: clean\r\n\r\nNothing here.\r\n",
    );
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(s.messages().len(), 1, "only the clean one is kept");
}
