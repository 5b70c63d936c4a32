//! Policy delegation (Postfix's `check_policy_service` protocol) against
//! postgrey, the greylisting server, and a fixed-answer policy server: the
//! refusal, PREPEND, HOLD, a server that is down, and an `OK` that must not
//! open relaying.

use std::process::{Child, Command, Stdio};

use crate::rig::{message, queue, wait_for};
use crate::support::{Server, temp_dir};
use crate::tools::free_port;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

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
    let port = free_port();
    let script = format!(
        r#"
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            if line in (b"\n", b"\r\n"):
                self.wfile.write(b"action={action}\n\n")
socketserver.TCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", {port}), H).serve_forever()
"#
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    let child = Killed(child);
    wait_for(10, "the policy server", || listening(port));
    (port, child)
}

#[test]
fn postgrey_greylists_then_passes_with_its_header() {
    let (port, _pg) = postgrey();
    let s = Server::start(
        &format!("[policy]\npolicy_services = [\"127.0.0.1:{port}\"]\n"),
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
        &format!("[policy]\npolicy_services = [\"127.0.0.1:{down}\"]\npolicy_timeout = 2\n"),
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
    let cfg = crate::rig::config(free_port(), "", "")
        .replace("relay_networks = [\"127.0.0.0/8\"]", "relay_networks = []")
        .replace(
            "domains = [\"here.test\"]",
            &format!("domains = [\"here.test\"]\npolicy_services = [\"127.0.0.1:{ok}\"]"),
        );
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
        &format!("[policy]\npolicy_services = [\"127.0.0.1:{rej}\"]\n"),
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
    let cfg = crate::rig::config(mx_port, "", "").replace(
        "domains = [\"here.test\"]",
        &format!("domains = [\"here.test\"]\npolicy_services = [\"127.0.0.1:{hold}\"]"),
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
