//! `postfix-policyd-spf-python`, unchanged, as a policy server: it reads
//! `/etc/resolv.conf`, so it runs in a network namespace of its own whose
//! resolv.conf points at a dnsmasq on that namespace's port 53, serving
//! the SPF records. Postel reaches it through a local socket (spawned per
//! connection, as Postfix's spawn(8) does), which crosses namespaces.

use std::process::Stdio;

use crate::processes::{Killed, Netns};
use crate::support::{Server, arg, temp_dir};

#[test]
fn policyd_spf_rejects_an_spf_fail_and_prepends_its_pass() {
    let ns = Netns::new(&format!("postel-spf-{}", std::process::id()));
    let _dns = ns.dnsmasq(&[
        "--txt-record=fail.test,v=spf1 ip4:192.0.2.1 -all",
        "--txt-record=pass.test,v=spf1 ip4:127.0.0.0/8 -all",
    ]);
    let dir = temp_dir("policyd-spf");
    // Loopback clients are checked too (the default skips them).
    let conf = dir.join("policyd-spf.conf");
    std::fs::write(
        &conf,
        "debugLevel = 1\nTestOnly = 1\nHELO_reject = False\nMail_From_reject = Fail\nskip_addresses = 192.0.0.0/29\n",
    )
    .expect("conf");
    let socket = dir.join("spf.sock");
    let peers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers");
    let mut spawn = ns
        .command("python3")
        .arg(peers.join("spawn.py"))
        .args([arg(&socket), "/usr/bin/policyd-spf", arg(&conf)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn.py (postfix-policyd-spf-python; scripts/test.sh installs it)");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(spawn.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("ready");
    let _spawn = Killed(spawn);

    let s = Server::start(
        &format!(
            "[[policy_service]]\naddress = \"unix:{}\"\nstage = \"rcpt\"\ntimeout = \"20s\"\n",
            socket.display()
        ),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<someone@fail.test>", "250 2.1.0 Sender OK");
    let r = c.expect_start_after("RCPT TO:<you@here.test>", "550 5.7.23 ");
    assert!(r.contains("SPF fail"), "{r}");
    c.cmd("RSET", "250 2.0.0 Ok");
    let id = c.mail(
        "someone@pass.test",
        &["you@here.test"],
        b"Subject: spf\r\n\r\nchecked\r\n",
    );
    let raw = String::from_utf8_lossy(&s.raw(&id)).into_owned();
    assert!(raw.contains("Received-SPF: Pass"), "{raw}");
}
