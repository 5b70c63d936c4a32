//! Policy delegation (Postfix's `check_policy_service` protocol) against
//! postgrey, the greylisting server, and a fixed-answer policy server: the
//! refusal, PREPEND, HOLD, a server that is down, and an `OK` that must not
//! open relaying.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::processes::{Killed, listening};
use crate::rig::{message, queue, wait_for};
use crate::support::{Server, temp_dir};
use crate::tools::free_port;

/// postgrey on a free port, greylisting for one second.
fn postgrey() -> (u16, Killed) {
    let port = free_port();
    let db = temp_dir("postgrey");
    // As root it runs as its own user, which must own its database folder.
    let _ = Command::new("chown").arg("postgrey").arg(&db).status();
    let child = Command::new("/usr/sbin/postgrey")
        .arg(format!("--inet=127.0.0.1:{port}"))
        .arg(format!("--dbdir={}", db.display()))
        .args(["--delay=1", "--user=postgrey"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgrey (Debian's postgrey; scripts/test.sh installs it)");
    let child = Killed(child);
    wait_for(15, "postgrey", || listening(port));
    (port, child)
}

/// A policy server that answers every request with `action`.
fn fixed(action: &str) -> (u16, Killed) {
    let (addr, _, child) = fixed_server(action, None);
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("port");
    (port, child)
}

/// A policy server that answers every request with `action`, on a TCP
/// port or at the local socket `unix`: its address as the config writes
/// it, and the file where it appends each request it gets.
pub(crate) fn fixed_server(action: &str, unix: Option<&Path>) -> (String, PathBuf, Killed) {
    let log = temp_dir("policy-log").join("requests");
    let port = free_port();
    let (serve, addr) = match unix {
        Some(p) => (
            format!(
                "socketserver.ThreadingUnixStreamServer({:?}, H)",
                p.display().to_string()
            ),
            format!("unix:{}", p.display()),
        ),
        None => (
            format!("socketserver.ThreadingTCPServer((\"127.0.0.1\", {port}), H)"),
            format!("127.0.0.1:{port}"),
        ),
    };
    let script = format!(
        r#"
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        req = b""
        while True:
            line = self.rfile.readline()
            if not line:
                return
            if line in (b"\n", b"\r\n"):
                with open({log:?}, "ab") as f:
                    f.write(req + b"\n")
                req = b""
                self.wfile.write(b"action={action}\n\n")
            else:
                req += line
socketserver.TCPServer.allow_reuse_address = True
{serve}.serve_forever()
"#,
        log = log.display().to_string(),
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    let child = Killed(child);
    wait_for(10, "the policy server", || match unix {
        Some(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
        None => listening(port),
    });
    (addr, log, child)
}

/// The requests a fixed server got, each as its `name=value` lines.
pub(crate) fn requests(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .split("\n\n")
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_stage_asks_its_own_servers_with_postfix_attributes() {
    let sock = temp_dir("policy-unix").join("p.sock");
    let (mail, mail_log, _m) = fixed_server("DUNNO", None);
    let (eod, eod_log, _e) = fixed_server("DEFER_IF_PERMIT 4.7.1 come back later", Some(&sock));
    let s = Server::start(
        &format!(
            "[[policy_service]]\naddress = \"{mail}\"\nstage = \"mail\"\n\
             [[policy_service]]\naddress = \"{eod}\"\nstage = \"end_of_data\"\ntimeout = \"5s\"\n"
        ),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test> SIZE=100", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: x\r\n\r\nhi\r\n.\r\n");
    c.expect("450 4.7.1 come back later");
    assert!(s.messages().is_empty(), "a deferred message is not kept");

    let at_mail = requests(&mail_log);
    assert_eq!(at_mail.len(), 1, "{at_mail:?}");
    for line in [
        "request=smtpd_access_policy",
        "protocol_state=MAIL",
        "sender=a@b.test",
        "recipient=",
        "size=100",
    ] {
        assert!(
            at_mail[0].lines().any(|l| l == line),
            "{line} in {}",
            at_mail[0]
        );
    }
    let at_end = requests(&eod_log);
    assert_eq!(at_end.len(), 1, "{at_end:?}");
    assert!(
        at_end[0]
            .lines()
            .any(|l| l == "protocol_state=END-OF-MESSAGE")
    );
    assert!(at_end[0].lines().any(|l| l == "recipient_count=1"));
    let queue_id = at_end[0]
        .lines()
        .find_map(|l| l.strip_prefix("queue_id="))
        .unwrap_or("");
    assert!(
        !queue_id.is_empty(),
        "the queue id exists at the end of data"
    );

    // A refusal at MAIL ends the transaction there.
    let (rej, _, _r) = fixed_server("REJECT 5.7.1 not you", None);
    let s = Server::start(
        &format!("[[policy_service]]\naddress = \"{rej}\"\nstage = \"mail\"\n"),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "554 5.7.1 not you");
    c.cmd("RCPT TO:<c@d.test>", "503 5.5.1 Need MAIL command first");
}

#[test]
fn postgrey_greylists_then_passes_with_its_header() {
    let (port, _pg) = postgrey();
    let s = Server::start(
        &format!("[[policy_service]]\naddress = \"127.0.0.1:{port}\"\nstage = \"rcpt\"\n"),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    let r = c.expect_start_after("RCPT TO:<c@d.test>", "450 4.7.1 Greylisted");
    assert!(r.contains("postgrey"), "{r}");
    c.cmd("RSET", "250 2.0.0 Ok");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let id = c.mail("a@b.test", &["c@d.test"], &message("after the wait"));
    let raw = String::from_utf8_lossy(&s.raw(&id)).into_owned();
    let prepended = raw
        .lines()
        .position(|l| l.starts_with("X-Greylist: delayed"));
    let subject = raw
        .lines()
        .position(|l| l.starts_with("Subject: after the wait"));
    assert!(prepended.is_some() && prepended < subject, "{raw}");
}

#[test]
fn a_policy_server_that_is_down_defers_and_ok_never_opens_relaying() {
    let down = free_port();
    let s = Server::start(
        &format!("[[policy_service]]\naddress = \"127.0.0.1:{down}\"\ntimeout = 2\n"),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd(
        "RCPT TO:<c@d.test>",
        "451 4.3.5 Server configuration problem",
    );

    // OK from the policy server: a remote recipient from a client that may
    // not relay is still refused (the policy server is not even asked).
    let (ok, _ok) = fixed("OK");
    let cfg = crate::rig::config(
        free_port(),
        "",
        &format!("[[policy_service]]\naddress = \"127.0.0.1:{ok}\"\n"),
    )
    .replace("relay_networks = [\"127.0.0.0/8\"]", "relay_networks = []");
    let s = Server::start(&cfg, &[]);
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<x@far.test>", "554 5.7.1 Relaying denied");
    c.cmd("RCPT TO:<x@here.test>", "250 2.1.5 Recipient OK");
}

#[test]
fn reject_refuses_and_hold_keeps_a_relayed_message_from_going_out() {
    let (rej, _rej) = fixed("REJECT 5.7.1 not from here");
    let s = Server::start(
        &format!("[[policy_service]]\naddress = \"127.0.0.1:{rej}\"\n"),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<c@d.test>", "554 5.7.1 not from here");

    let (hold, _hold) = fixed("HOLD");
    // An MX that would take it at once: a held message must not go there.
    let mx_port = free_port();
    let mx = crate::rig::Mx::start("127.0.2.1", mx_port, &[]);
    let cfg = crate::rig::config(
        mx_port,
        "",
        &format!("[[policy_service]]\naddress = \"127.0.0.1:{hold}\"\n"),
    );
    let s = Server::start(&cfg, &[]);
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["bob@ok.test"], &message("held"));
    wait_for(10, "the queue row", || !queue(&s).is_empty());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(queue(&s)[0]["state"], "held");
    assert_eq!(queue(&s)[0]["attempts"], 0);
    assert!(mx.received().is_empty(), "a held message went out");
    // Released by the operator, it goes.
    let id = queue(&s)[0]["id"].as_str().unwrap_or("").to_owned();
    let data = crate::support::arg(&s.data_dir).to_owned();
    let o = crate::support::postel(&["queue", "release", &id, "--data-dir", &data]);
    assert!(o.status.success());
    wait_for(20, "the delivery after release", || {
        mx.received().len() == 1
    });
}
