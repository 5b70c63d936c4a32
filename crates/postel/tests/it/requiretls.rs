//! REQUIRETLS and `TLS-Required: No` (RFC 8689), end to end: a client
//! sends over STARTTLS to a Postel that delivers into the rig, where a
//! second Postel (with a certificate of the test CA, offering REQUIRETLS)
//! is the MX of `sts.test` (MTA-STS enforce), `stsbad.test` (an enforce
//! policy that names another MX) and `tls.test` (no policy).

use std::process::Command;

use crate::delivery_smarthost::test_pki;
use crate::rig::{config, queue, wait_for};
use crate::support::{Server, arg, temp_dir};
use crate::tools::free_port;

/// Sends one message over STARTTLS with smtplib; `REQUIRETLS` on MAIL
/// when asked. Prints MAIL's reply code.
const SEND: &str = r#"
import smtplib, ssl, sys
port, rcpt, requiretls, header = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = smtplib.SMTP("127.0.0.1", port, timeout=30)
c.starttls(context=ctx)
c.ehlo("client.test")
assert c.has_extn("requiretls"), c.esmtp_features
msg = f"From: me@here.test\r\nTo: {rcpt}\r\nSubject: rtls\r\n{header}\r\nsecret body\r\n"
code, _ = c.mail("me@here.test", ["REQUIRETLS"] if requiretls else [])
print(code)
c.rcpt(rcpt)
c.data(msg.encode())
c.quit()
"#;

fn send(port: u16, rcpt: &str, requiretls: bool, header: &str) {
    let out = Command::new("python3")
        .args(["-c", SEND, &port.to_string(), rcpt])
        .arg(if requiretls { "1" } else { "0" })
        .arg(header)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "250");
}

#[test]
fn requiretls_goes_only_over_authenticated_tls_and_tls_required_no_waives_mta_sts() {
    let (port, sts_port) = (free_port(), free_port());
    let dir = temp_dir("rtls");
    let (mx_ca, mx_cert, mx_key) = test_pki(&["mx.tls.test"]);
    let (sts_ca, sts_cert, sts_key) = test_pki(&[
        "mta-sts.sts.test",
        "mta-sts.stsbad.test",
        "mta-sts.rtls.test",
    ]);
    // One certificate (of the MX CA) for both of rtls.test's hosts.
    let (rtls_ca, rtls_cert, rtls_key) = test_pki(&["mx1.rtls.test", "mx2.rtls.test"]);
    for (name, pem) in [
        ("mx-cert.pem", &mx_cert),
        ("mx-key.pem", &mx_key),
        ("sts-cert.pem", &sts_cert),
        ("sts-key.pem", &sts_key),
        ("rtls-cert.pem", &rtls_cert),
        ("rtls-key.pem", &rtls_key),
    ] {
        std::fs::write(dir.join(name), pem).expect("write");
    }
    std::fs::write(dir.join("both-ca.pem"), format!("{mx_ca}{sts_ca}{rtls_ca}")).expect("ca");
    let mx = Server::start_in(
        &temp_dir("rtls-mx"),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[policy]\ndomains = [\"sts.test\", \"stsbad.test\", \"tls.test\"]\n",
            arg(&dir.join("mx-cert.pem")),
            arg(&dir.join("mx-key.pem"))
        ),
        &["--smtp", &format!("127.0.5.1:{port}")],
    );
    let _policy_server = crate::delivery_smarthost::policy_server(
        &format!("127.0.9.1:{sts_port}"),
        &dir,
        &[
            "mta-sts.sts.test=enforce:mx.tls.test",
            "mta-sts.stsbad.test=enforce:mx.elsewhere.test",
            "mta-sts.rtls.test=enforce:*.rtls.test",
        ],
        &[],
    );

    // The sender takes mail over STARTTLS (self-signed) and trusts the test
    // CAs on the way out.
    let sender = Server::start(
        &config(
            port,
            &format!("retry = [\"1h\"]\nmta_sts_port = {sts_port}"),
            &format!(
                "[tls]\nself_signed = true\nca_file = \"{}\"\n",
                arg(&dir.join("both-ca.pem"))
            ),
        ),
        &[],
    );
    let smtp = sender.addrs["smtp"].port();
    let to = |m: &serde_json::Value| m["to"][0].as_str().unwrap_or("").to_owned();

    // 1. MTA-STS enforce, verified certificate, REQUIRETLS offered: sent on
    //    with REQUIRETLS.
    send(smtp, "a@sts.test", true, "");
    wait_for(30, "a@sts.test delivered", || {
        mx.messages().iter().any(|m| to(m) == "a@sts.test")
    });
    let got = mx
        .messages()
        .into_iter()
        .find(|m| to(m) == "a@sts.test")
        .expect("delivered");
    let params = got["mail_params"].to_string();
    assert!(params.contains("REQUIRETLS"), "{got}");

    // 2. No policy for tls.test: its MX name is not authenticated, so the
    //    message is returned with 5.7.30, and the notice carries only the
    //    header (not "secret body").
    send(smtp, "b@tls.test", true, "");
    wait_for(30, "b@tls.test failed", || {
        queue(&sender)
            .iter()
            .all(|e| e["recipient"] != "b@tls.test")
            && !crate::rig::notices(&sender).is_empty()
    });
    assert!(
        mx.messages().iter().all(|m| to(m) != "b@tls.test"),
        "sent without authentication"
    );
    let notice = crate::rig::notices(&sender)
        .into_iter()
        .next()
        .expect("a notice");
    let text = notice.to_string();
    assert!(text.contains("5.7.30"), "{text}");
    let raw_notices: Vec<Vec<u8>> = sender
        .messages()
        .iter()
        .filter(|m| m["from"] == "")
        .map(|m| sender.raw(m["id"].as_str().unwrap_or("")))
        .collect();
    assert!(
        raw_notices
            .iter()
            .all(|r| !String::from_utf8_lossy(r).contains("secret body")),
        "the notice returned the content"
    );

    // 3. stsbad.test's policy names another MX: plain mail waits, mail
    //    with `TLS-Required: No` goes to the MX the policy leaves out.
    send(smtp, "c@stsbad.test", false, "TLS-Required: No\r\n");
    send(smtp, "d@stsbad.test", false, "");
    wait_for(30, "c@stsbad.test delivered", || {
        mx.messages().iter().any(|m| to(m) == "c@stsbad.test")
    });
    wait_for(20, "d@stsbad.test deferred", || {
        queue(&sender)
            .iter()
            .any(|e| e["recipient"] == "d@stsbad.test" && e["state"] == "deferred")
    });
    assert!(mx.messages().iter().all(|m| to(m) != "d@stsbad.test"));

    // 4. REQUIRETLS outweighs the header: the same waiver does not send it.
    send(smtp, "e@stsbad.test", true, "TLS-Required: No\r\n");
    wait_for(20, "e@stsbad.test deferred", || {
        queue(&sender)
            .iter()
            .any(|e| e["recipient"] == "e@stsbad.test" && e["state"] == "deferred")
    });
    assert!(mx.messages().iter().all(|m| to(m) != "e@stsbad.test"));

    // 5. rtls.test: its first MX (aiosmtpd, verified TLS, no REQUIRETLS)
    //    refuses the message for itself; the second (a Postel) takes it
    //    (RFC 8689 4.2.1: each MX host in turn).
    let mx1 = crate::rig::Mx::start(
        "127.0.13.1",
        port,
        &[
            "--cert",
            arg(&dir.join("rtls-cert.pem")),
            "--key",
            arg(&dir.join("rtls-key.pem")),
        ],
    );
    let mx2 = Server::start_in(
        &temp_dir("rtls-mx2"),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[policy]\ndomains = [\"rtls.test\"]\n",
            arg(&dir.join("rtls-cert.pem")),
            arg(&dir.join("rtls-key.pem"))
        ),
        &["--smtp", &format!("127.0.13.2:{port}")],
    );
    send(smtp, "f@rtls.test", true, "");
    wait_for(30, "f@rtls.test delivered by the second MX", || {
        mx2.messages().iter().any(|m| to(m) == "f@rtls.test")
    });
    assert!(
        mx1.received().is_empty(),
        "the first MX got it: {:?}",
        mx1.received()
    );
    // Plain mail takes the first MX, as ever.
    send(smtp, "g@rtls.test", false, "");
    wait_for(30, "g@rtls.test delivered by the first MX", || {
        !mx1.received().is_empty()
    });
}
