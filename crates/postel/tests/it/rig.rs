//! The loopback delivery rig: one dnsmasq per test binary serving a fixed
//! zone of test domains, receiving MXes (tests/peers/mx.py, aiosmtpd) on
//! 127.0.X.Y, each test on a port of its own, and a Postel that delivers
//! to them.
//!
//! The zone (every name under `.test`, answered by dnsmasq alone):
//! - `pref.test`: MX 10 `mx1.pref.test` (127.0.1.1), MX 20 `mx2.pref.test`
//!   (127.0.1.2);
//! - `ok.test`: MX 10 `mx.ok.test` (127.0.2.1);
//! - `null.test`: a null MX (RFC 7505);
//! - `implicit.test`: no MX, an A record 127.0.3.1 (the implicit MX);
//! - `nx.test`: NXDOMAIN;
//! - `servfail.test`: forwarded to a server that does not answer;
//! - `small.test`: MX `mx.small.test` (127.0.4.1);
//! - `loop.test`: MX `mx.test`, Postel's own hostname in these tests;
//! - `tls.test`: MX `mx.tls.test` (127.0.5.1), TLS reports asked for by
//!   mail to `tlsrpt@here.test`;
//! - `flaky.test`: MX `mx.flaky.test` (127.0.6.1);
//! - `dual.test`: MX 10 `mx1.dual.test` (127.0.7.1), MX 20 `mx2.dual.test`
//!   (127.0.7.2);
//! - `smarthost.test`: an A record 127.0.8.1;
//! - `example.test`: MX `mx.example.test` (127.0.0.1: the Postfix peer);
//! - `v6.test`: MX `mx.v6.test`, whose only address is `::1`;
//! - `sts.test`, `stsbad.test`, `ststest.test`, `stshtml.test`: MX
//!   `mx.tls.test`, each
//!   with an MTA-STS record and `mta-sts.<domain>` at 127.0.9.1;
//! - `rtls.test`: MX 10 `mx1.rtls.test` (127.0.13.1), MX 20
//!   `mx2.rtls.test` (127.0.13.2), an MTA-STS record likewise.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::processes::{json_files, watched};
use crate::support::{Server, arg, postel, temp_dir};
use crate::tools::free_port;

const ZONE: &[&str] = &[
    "--mx-host=pref.test,mx1.pref.test,10",
    "--mx-host=pref.test,mx2.pref.test,20",
    "--host-record=mx1.pref.test,127.0.1.1",
    "--host-record=mx2.pref.test,127.0.1.2",
    "--mx-host=ok.test,mx.ok.test,10",
    "--host-record=mx.ok.test,127.0.2.1",
    // A null MX: preference 0, the root as the exchange.
    "--dns-rr=null.test,15,000000",
    "--host-record=implicit.test,127.0.3.1",
    "--address=/nx.test/",
    "--server=/servfail.test/127.0.0.1#9",
    "--mx-host=small.test,mx.small.test,10",
    "--host-record=mx.small.test,127.0.4.1",
    "--mx-host=loop.test,mx.test,10",
    "--mx-host=tls.test,mx.tls.test,10",
    "--host-record=mx.tls.test,127.0.5.1",
    "--txt-record=_smtp._tls.tls.test,v=TLSRPTv1; rua=mailto:tlsrpt@here.test",
    "--mx-host=flaky.test,mx.flaky.test,10",
    "--host-record=mx.flaky.test,127.0.6.1",
    "--mx-host=dual.test,mx1.dual.test,10",
    "--mx-host=dual.test,mx2.dual.test,20",
    "--host-record=mx1.dual.test,127.0.7.1",
    "--host-record=mx2.dual.test,127.0.7.2",
    "--host-record=smarthost.test,127.0.8.1",
    "--mx-host=example.test,mx.example.test,10",
    "--host-record=mx.example.test,127.0.0.1",
    "--mx-host=v6.test,mx.v6.test,10",
    // MTA-STS (delivery_smarthost.rs): three domains whose MX is
    // mx.tls.test, each with a policy served from 127.0.9.1.
    "--mx-host=sts.test,mx.tls.test,10",
    "--mx-host=stsbad.test,mx.tls.test,10",
    "--mx-host=ststest.test,mx.tls.test,10",
    "--txt-record=_mta-sts.sts.test,v=STSv1; id=20261130",
    "--txt-record=_mta-sts.stsbad.test,v=STSv1; id=20261130",
    "--txt-record=_mta-sts.ststest.test,v=STSv1; id=20261130",
    "--host-record=mta-sts.sts.test,127.0.9.1",
    "--host-record=mta-sts.stsbad.test,127.0.9.1",
    "--host-record=mta-sts.ststest.test,127.0.9.1",
    "--mx-host=stshtml.test,mx.tls.test,10",
    "--txt-record=_mta-sts.stshtml.test,v=STSv1; id=1",
    "--host-record=mta-sts.stshtml.test,127.0.9.1",
    // REQUIRETLS over two MX hosts under one MTA-STS policy
    // (tests/it/requiretls.rs).
    "--mx-host=rtls.test,mx1.rtls.test,10",
    "--mx-host=rtls.test,mx2.rtls.test,20",
    "--host-record=mx1.rtls.test,127.0.13.1",
    "--host-record=mx2.rtls.test,127.0.13.2",
    "--txt-record=_mta-sts.rtls.test,v=STSv1; id=1",
    "--host-record=mta-sts.rtls.test,127.0.9.1",
    "--host-record=mx.v6.test,::1",
    // DNS lists (tests/it/screening.rs): 127.0.0.9 is on the block list,
    // 127.0.0.10 on both lists, 127.0.0.11 gets the list's error code.
    "--host-record=9.0.0.127.bl.test,127.0.0.2",
    "--host-record=10.0.0.127.bl.test,127.0.0.2",
    "--host-record=10.0.0.127.wl.test,127.0.10.3",
    "--host-record=11.0.0.127.bl.test,127.255.255.254",
];

/// The port of the one dnsmasq of this test binary, started at first use.
/// A watchdog shell stops it when this process is gone.
pub(crate) fn dns_port() -> u16 {
    // The watchdog is kept (never waited on: it ends with this process).
    static DNS: OnceLock<(u16, std::sync::Mutex<Child>)> = OnceLock::new();
    DNS.get_or_init(|| {
        let zone: Vec<String> = ZONE.iter().map(|s| (*s).to_owned()).collect();
        dnsmasq(&zone)
    })
    .0
}

/// A dnsmasq on a free loopback port answering for `.test` with
/// `records` (dnsmasq options), under a watchdog that stops it with this
/// test binary; returns once it answers.
pub(crate) fn dnsmasq(records: &[String]) -> (u16, std::sync::Mutex<Child>) {
    let port = free_port();
    let dnsmasq = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dnsmasq (dnsmasq-base; scripts/test.sh installs it)");
    let mut args = vec![
        dnsmasq.to_owned(),
        "--keep-in-foreground".into(),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".into(),
        "--bind-interfaces".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--local=/test/".into(),
        "--user=root".into(),
        "--pid-file=".into(),
    ];
    args.extend(records.iter().cloned());
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let watchdog = watched(&[(&quoted.join(" "), None)]);
    // Ready once it answers on TCP.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "dnsmasq did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (port, watchdog)
}

/// The peer scripts' folder.
fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers")
}

/// A receiving MX (tests/peers/mx.py) on `ip:port`; killed when dropped.
pub(crate) struct Mx {
    child: Child,
    /// Where it writes what it accepted.
    pub(crate) dir: PathBuf,
}

impl Mx {
    pub(crate) fn start(ip: &str, port: u16, extra: &[&str]) -> Mx {
        let dir = temp_dir(&format!("mx-{ip}"));
        let mut child = Command::new("python3")
            .arg(peers().join("mx.py"))
            .args(["--listen", &format!("{ip}:{port}"), "--dir", arg(&dir)])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 tests/peers/mx.py (aiosmtpd; scripts/test.sh installs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("mx.py output");
        assert_eq!(line.trim(), "ready", "mx.py on {ip}:{port} did not start");
        Mx { child, dir }
    }

    /// Every message it accepted, oldest first.
    pub(crate) fn received(&self) -> Vec<serde_json::Value> {
        json_files(&self.dir)
    }
}

impl Drop for Mx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config of a Postel that delivers into the rig: local domain
/// `here.test`, relaying for loopback, MXes dialled on `mx_port`, retries
/// after a second; `extra` is appended (more `[delivery]` keys first).
pub(crate) fn config(mx_port: u16, delivery_extra: &str, extra: &str) -> String {
    // Defaults a test may set otherwise in `delivery_extra`.
    let defaults: String = [
        ("connect_timeout", "\"2s\""),
        ("command_timeout", "\"5s\""),
        ("data_timeout", "\"5s\""),
    ]
    .iter()
    .filter(|(k, _)| !delivery_extra.contains(&format!("{k} =")))
    .map(|(k, v)| format!("{k} = {v}\n"))
    .collect();
    format!(
        "[policy]\ndomains = [\"here.test\"]\n\
         [delivery]\nenabled = true\nrelay_networks = [\"127.0.0.0/8\"]\nmx_port = {mx_port}\n\
         allow_private_addresses = true\n{defaults}{delivery_extra}\n\
         [dns]\nnameservers = [\"127.0.0.1:{}\"]\n{extra}",
        dns_port()
    )
}

/// A Postel delivering into the rig.
pub(crate) fn relay(mx_port: u16, delivery_extra: &str) -> Server {
    Server::start(&config(mx_port, delivery_extra, ""), &[])
}

/// Waits up to `secs` for `f` to hold; panics with `what` if it never does.
#[track_caller]
pub(crate) fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `postel queue list --json` on the server's data folder.
pub(crate) fn queue(s: &Server) -> Vec<serde_json::Value> {
    queue_in(&s.data_dir)
}

/// `postel queue list --json` on a data folder.
pub(crate) fn queue_in(data_dir: &Path) -> Vec<serde_json::Value> {
    let out = postel(&["queue", "list", "--json", "--data-dir", arg(data_dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

/// The notices in the server's inbox (messages from `<>`), each read by
/// tests/peers/dsn.py: its fields, and the RFC 3464 rules it breaks.
pub(crate) fn notices(s: &Server) -> Vec<serde_json::Value> {
    s.messages()
        .iter()
        .filter(|m| m["from"] == "")
        .map(|m| parse_dsn(&s.raw(m["id"].as_str().expect("id"))))
        .collect()
}

/// One notice read by tests/peers/dsn.py.
pub(crate) fn parse_dsn(raw: &[u8]) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg(peers().join("dsn.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 dsn.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(raw)
        .expect("write");
    let out = child.wait_with_output().expect("dsn.py");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["errors"], serde_json::json!([]), "not RFC 3464: {v}");
    v
}

/// A message with a subject, as sent in these tests.
pub(crate) fn message(subject: &str) -> Vec<u8> {
    format!("From: me@here.test\r\nSubject: {subject}\r\n\r\nHello.\r\n").into_bytes()
}
