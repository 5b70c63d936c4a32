//! Delivery through a smarthost (a second Postel, on its submission port,
//! with a certificate from a test CA, AUTH required), and over IPv6.

use crate::rig::{Mx, config, message, queue, wait_for};
use crate::support::{Server, arg, temp_dir};
use crate::tls::add_user;
use crate::tools::free_port;

/// A test CA and a certificate for `names` signed by it: (CA PEM, cert
/// PEM, key PEM).
pub(crate) fn test_pki(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Postel test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let leaf = rcgen::CertificateParams::new(names).expect("params");
    let cert = leaf.signed_by(&key, &issuer).expect("cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// tests/peers/mta_sts.py on `listen`, with `sts-cert.pem` and
/// `sts-key.pem` of `dir`, serving `policies` (`host=mode:mx,...`), those
/// of `html` as text/html; stopped when dropped.
pub(crate) fn policy_server(
    listen: &str,
    dir: &std::path::Path,
    policies: &[&str],
    html: &[&str],
) -> crate::processes::Killed {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/mta_sts.py");
    let mut command = std::process::Command::new("python3");
    command
        .arg(script)
        .args(["--listen", listen])
        .args(["--cert", arg(&dir.join("sts-cert.pem"))])
        .args(["--key", arg(&dir.join("sts-key.pem"))]);
    for p in policies {
        command.args(["--policy", p]);
    }
    for h in html {
        command.args(["--html", h]);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mta_sts.py");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("ready");
    crate::processes::Killed(child)
}

#[test]
fn a_smarthost_with_verified_tls_and_auth_gets_every_remote_message() {
    let port = free_port();
    let dir = temp_dir("smarthost");
    let (ca, cert, key) = test_pki(&["smarthost.test"]);
    std::fs::write(dir.join("ca.pem"), &ca).expect("ca");
    std::fs::write(dir.join("cert.pem"), &cert).expect("cert");
    std::fs::write(dir.join("key.pem"), &key).expect("key");
    std::fs::write(dir.join("pw"), "relay-secret\n").expect("pw");
    // The smarthost: a Postel that takes mail from its user on 587.
    let hub_dir = temp_dir("hub");
    add_user(&hub_dir, "relay", "relay-secret");
    let hub = Server::start_in(
        &hub_dir,
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[submission]\nlisten = [\"127.0.8.1:{port}\"]\n",
            arg(&dir.join("cert.pem")),
            arg(&dir.join("key.pem"))
        ),
        &[],
    );
    // The sender: every remote message to the hub.
    let sender = Server::start(
        &config(
            port,
            &format!(
                "smarthost = \"smarthost.test:{port}\"\nsmarthost_user = \"relay\"\nsmarthost_password_file = \"{}\"",
                arg(&dir.join("pw"))
            ),
            &format!("[tls]\nca_file = \"{}\"\n", arg(&dir.join("ca.pem"))),
        ),
        &[],
    );
    let mut c = sender.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["a@ok.test", "b@pref.test"],
        &message("via the hub"),
    );
    wait_for(20, "the hub to have it", || !hub.messages().is_empty());
    let got = &hub.messages()[0];
    assert_eq!(got["auth_user"], "relay", "{got}");
    assert!(
        got["tls"].as_str().is_some_and(|t| t.starts_with("TLS")),
        "{got}"
    );
    let mut to: Vec<String> = got["to"]
        .as_array()
        .expect("to")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect();
    to.sort();
    assert_eq!(to, ["a@ok.test", "b@pref.test"]);
    wait_for(10, "the queue to empty", || queue(&sender).is_empty());

    // A wrong password is the operator's to fix: deferred, not bounced.
    std::fs::write(dir.join("pw2"), "wrong\n").expect("pw");
    let wrong = Server::start(
        &config(
            port,
            &format!(
                "smarthost = \"smarthost.test:{port}\"\nsmarthost_user = \"relay\"\nsmarthost_password_file = \"{}\"\nretry = [\"1h\"]",
                arg(&dir.join("pw2"))
            ),
            &format!("[tls]\nca_file = \"{}\"\n", arg(&dir.join("ca.pem"))),
        ),
        &[],
    );
    let mut c = wrong.connect();
    c.greet();
    c.mail("me@here.test", &["a@ok.test"], &message("refused login"));
    wait_for(30, "a deferral", || {
        queue(&wrong)
            .first()
            .is_some_and(|e| e["state"] == "deferred")
    });
    let reply = queue(&wrong)[0]["last_reply"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reply.starts_with("535"), "{reply}");

    // Without the test CA, the hub's certificate does not verify: no AUTH
    // is sent, the mail waits.
    let unverified = Server::start(
        &config(
            port,
            &format!(
                "smarthost = \"smarthost.test:{port}\"\nsmarthost_user = \"relay\"\nsmarthost_password_file = \"{}\"\nretry = [\"1h\"]",
                arg(&dir.join("pw"))
            ),
            "",
        ),
        &[],
    );
    let mut c = unverified.connect();
    c.greet();
    c.mail("me@here.test", &["a@ok.test"], &message("unverified"));
    wait_for(30, "a deferral", || {
        queue(&unverified)
            .first()
            .is_some_and(|e| e["state"] == "deferred")
    });
    let reply = queue(&unverified)[0]["last_reply"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        reply.contains("TLS") || reply.contains("certificate"),
        "{reply}"
    );
    assert_eq!(hub.messages().len(), 1);
}

#[test]
fn an_mx_with_only_an_ipv6_address_is_reached_over_ipv6() {
    let port = free_port();
    let mx = Mx::start("::1", port, &[]);
    let s = crate::rig::relay(port, "");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["bob@v6.test"], &message("six"));
    wait_for(20, "delivery over IPv6", || mx.received().len() == 1);
    assert_eq!(mx.received()[0]["peer"], "::1");
}

/// The queue view tells how each delivered recipient went: the reply,
/// the TLS version and cipher, and whether the certificate was verified.
/// The receiving MX is a Postel with a certificate of the test CA.
#[test]
fn the_queue_shows_the_tls_of_each_delivery() {
    let port = free_port();
    let dir = temp_dir("mx-tls");
    let (ca, cert, key) = test_pki(&["mx.tls.test"]);
    std::fs::write(dir.join("ca.pem"), &ca).expect("ca");
    std::fs::write(dir.join("cert.pem"), &cert).expect("cert");
    std::fs::write(dir.join("key.pem"), &key).expect("key");
    let mx_dir = temp_dir("mx-tls-data");
    let mx = Server::start_in(
        &mx_dir,
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[policy]\ndomains = [\"tls.test\"]\n",
            arg(&dir.join("cert.pem")),
            arg(&dir.join("key.pem"))
        ),
        &["--smtp", &format!("127.0.5.1:{port}")],
    );
    // servfail.test keeps the message in the queue (deferred), so that
    // the delivered row is still there to be shown.
    let sender = Server::start(
        &config(
            port,
            "retry = [\"1h\"]\n[delivery.tls_policies]\n\"tls.test\" = \"verify\"",
            &format!("[tls]\nca_file = \"{}\"\n", arg(&dir.join("ca.pem"))),
        ),
        &[],
    );
    let mut c = sender.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["bob@tls.test", "carol@servfail.test"],
        &message("over tls"),
    );
    wait_for(20, "the delivery", || !mx.messages().is_empty());
    let got = &mx.messages()[0];
    assert!(
        got["tls"].as_str().is_some_and(|t| t.starts_with("TLS")),
        "{got}"
    );
    wait_for(20, "both rows recorded", || {
        let q = queue(&sender);
        q.iter().any(|e| e["state"] == "delivered") && q.iter().any(|e| e["state"] == "deferred")
    });
    let q = queue(&sender);
    let delivered = q
        .iter()
        .find(|e| e["recipient"] == "bob@tls.test")
        .and_then(|e| e["last_reply"].as_str())
        .unwrap_or("")
        .to_owned();
    assert!(delivered.starts_with("250"), "{delivered}");
    assert!(
        delivered.contains("(TLSv1.") && delivered.ends_with(", certificate verified)"),
        "{delivered}"
    );
}

/// MTA-STS (RFC 8461): the policies come from an HTTPS server with a
/// certificate of the test CA. `enforce` delivers only to a matching MX,
/// over TLS whose certificate verifies; a non-matching MX defers; a
/// certificate that does not verify defers, never plaintext; `testing`
/// delivers.
#[test]
fn mta_sts_policies_are_fetched_and_enforced() {
    let (port, sts_port) = (free_port(), free_port());
    let dir = temp_dir("mta-sts");
    let (mx_ca, mx_cert, mx_key) = test_pki(&["mx.tls.test"]);
    let (sts_ca, sts_cert, sts_key) = test_pki(&[
        "mta-sts.sts.test",
        "mta-sts.stsbad.test",
        "mta-sts.ststest.test",
        "mta-sts.stshtml.test",
    ]);
    for (name, pem) in [
        ("mx-cert.pem", &mx_cert),
        ("mx-key.pem", &mx_key),
        ("sts-cert.pem", &sts_cert),
        ("sts-key.pem", &sts_key),
        ("sts-ca.pem", &sts_ca),
    ] {
        std::fs::write(dir.join(name), pem).expect("write");
    }
    std::fs::write(dir.join("both-ca.pem"), format!("{mx_ca}{sts_ca}")).expect("ca");
    let mx = Server::start_in(
        &temp_dir("mta-sts-mx"),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[policy]\ndomains = [\"sts.test\", \"stsbad.test\", \"ststest.test\", \"stshtml.test\"]\n",
            arg(&dir.join("mx-cert.pem")),
            arg(&dir.join("mx-key.pem"))
        ),
        &["--smtp", &format!("127.0.5.1:{port}")],
    );
    let _policy_server = policy_server(
        &format!("127.0.9.1:{sts_port}"),
        &dir,
        &[
            "mta-sts.sts.test=enforce:mx.tls.test",
            "mta-sts.stsbad.test=enforce:mx.elsewhere.test",
            "mta-sts.ststest.test=testing:mx.elsewhere.test",
            // Served as text/html: not a policy (RFC 8461 3.2), so none.
            "mta-sts.stshtml.test=enforce:mx.elsewhere.test",
        ],
        &["mta-sts.stshtml.test"],
    );

    let sender = Server::start(
        &config(
            port,
            &format!("retry = [\"1h\"]\nmta_sts_port = {sts_port}"),
            &format!("[tls]\nca_file = \"{}\"\n", arg(&dir.join("both-ca.pem"))),
        ),
        &[],
    );
    let mut c = sender.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &[
            "a@sts.test",
            "b@stsbad.test",
            "c@ststest.test",
            "e@stshtml.test",
        ],
        &message("sts"),
    );
    wait_for(30, "all but b@stsbad.test delivered", || {
        let mut to: Vec<String> = mx
            .messages()
            .iter()
            .flat_map(|m| m["to"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        to.sort();
        to == ["a@sts.test", "c@ststest.test", "e@stshtml.test"]
    });
    wait_for(20, "the rows recorded", || {
        queue(&sender)
            .iter()
            .any(|e| e["recipient"] == "b@stsbad.test" && e["state"] == "deferred")
    });
    let q = queue(&sender);
    let reply = |to: &str| {
        q.iter()
            .find(|e| e["recipient"] == to)
            .and_then(|e| e["last_reply"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        reply("b@stsbad.test").contains("MTA-STS: no MX host of stsbad.test"),
        "{q:?}"
    );
    assert!(
        reply("a@sts.test").ends_with(", certificate verified)"),
        "{q:?}"
    );
    assert!(
        reply("c@ststest.test").ends_with(", certificate not verified)"),
        "{q:?}"
    );

    // The MX's certificate does not verify (its CA is not trusted): enforce
    // defers, and nothing goes in plaintext.
    let strict = Server::start(
        &config(
            port,
            &format!("retry = [\"1h\"]\nmta_sts_port = {sts_port}"),
            &format!("[tls]\nca_file = \"{}\"\n", arg(&dir.join("sts-ca.pem"))),
        ),
        &[],
    );
    let before = mx.messages().len();
    let mut c = strict.connect();
    c.greet();
    c.mail("me@here.test", &["d@sts.test"], &message("unverified"));
    wait_for(30, "a deferral", || {
        queue(&strict)
            .first()
            .is_some_and(|e| e["state"] == "deferred")
    });
    assert_eq!(
        mx.messages().len(),
        before,
        "nothing sent without verified TLS"
    );

    // The policies outlive a restart (RFC 8461 5: trusted for max_age):
    // with the policy server gone, stsbad.test's still keeps mail away
    // from the MX it does not name.
    drop(_policy_server);
    let data = sender.data_dir.clone();
    drop(sender);
    let kept = std::fs::read_to_string(data.join("mta-sts.policies")).expect("kept policies");
    assert!(
        kept.contains("stsbad.test ") && kept.contains(" enforce "),
        "{kept}"
    );
    let again = Server::start_in(
        &data,
        &config(
            port,
            &format!("retry = [\"1h\"]\nmta_sts_port = {sts_port}"),
            &format!("[tls]\nca_file = \"{}\"\n", arg(&dir.join("both-ca.pem"))),
        ),
        &[],
    );
    let before = mx.messages().len();
    let mut c = again.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["f@stsbad.test"],
        &message("after restart"),
    );
    wait_for(30, "f@stsbad.test deferred by the kept policy", || {
        queue(&again).iter().any(|e| {
            e["recipient"] == "f@stsbad.test"
                && e["state"] == "deferred"
                && e["last_reply"]
                    .as_str()
                    .is_some_and(|r| r.contains("MTA-STS: no MX host of stsbad.test"))
        })
    });
    assert_eq!(mx.messages().len(), before);
}
