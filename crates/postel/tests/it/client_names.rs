//! Clients' names from DNS, as policy servers and milters are told them:
//! a forward-confirmed PTR name is `client_name`, an unconfirmed one only
//! `reverse_client_name`. Clients need addresses that are not loopback
//! (loopback is never looked up), so everything runs in a network
//! namespace of its own: dnsmasq on its port 53, Postel, and the client,
//! which connects from 192.0.2.10 or 192.0.2.11.

use crate::policy::{fixed_server, requests};
use crate::processes::Netns;
use crate::support::{Server, temp_dir};

#[test]
fn policy_servers_get_the_confirmed_name_and_the_ptr_name() {
    let ns = Netns::new(&format!("postel-names-{}", std::process::id()));
    for a in ["192.0.2.10/32", "192.0.2.11/32"] {
        let ok = std::process::Command::new("ip")
            .args(["-n", &ns.0, "addr", "add", a, "dev", "lo"])
            .status()
            .expect("ip");
        assert!(ok.success());
    }
    let _dns = ns.dnsmasq(&[
        "--local=/2.0.192.in-addr.arpa/",
        // A and PTR, which agree.
        "--host-record=client.example.test,192.0.2.10",
        // A PTR whose name does not lead back.
        "--ptr-record=11.2.0.192.in-addr.arpa,liar.example.test",
    ]);
    // The policy server listens on a local socket, which the namespace
    // does not hide.
    let socket = temp_dir("names").join("policy.sock");
    let (addr, log, _policy) = fixed_server("DUNNO", Some(&socket));
    let s = Server::start_in_netns(
        &ns.0,
        &format!(
            "[dns]\nnameservers = [\"127.0.0.1:53\"]\n\
             [[policy_service]]\naddress = \"{addr}\"\n"
        ),
    );
    let port = s.addr.port();
    for source in ["192.0.2.10", "192.0.2.11"] {
        let script = format!(
            "import smtplib\nc = smtplib.SMTP('127.0.0.1', {port}, source_address=('{source}', 0), timeout=20)\n\
             c.sendmail('a@b.test', ['c@d.test'], b'Subject: names\\r\\n\\r\\nhi\\r\\n')\nc.quit()"
        );
        let o = ns
            .command("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let got = requests(&log);
    assert_eq!(got.len(), 2, "{got:?}");
    let field = |r: &str, name: &str| {
        r.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(field(&got[0], "client_address"), "192.0.2.10");
    assert_eq!(field(&got[0], "client_name"), "client.example.test");
    assert_eq!(field(&got[0], "reverse_client_name"), "client.example.test");
    assert_eq!(field(&got[1], "client_address"), "192.0.2.11");
    assert_eq!(field(&got[1], "client_name"), "unknown", "not confirmed");
    assert_eq!(field(&got[1], "reverse_client_name"), "liar.example.test");
}
