//! Forwarding (`[delivery.forward]`) and ARC sealing (RFC 8617): mail
//! from outside to a forwarded address goes on to its targets, sealed
//! with Postel's results, and dkimpy (an independent ARC implementation)
//! validates the chain: Postel's set alone, and Postel's set on top of
//! one dkimpy sealed first.

use crate::authentication::{dkimpy, message, rig};
use crate::rig::{Mx, wait_for};
use crate::support::{Server, arg};
use crate::tools::free_port;

/// A Postel that checks loopback clients (none is trusted), forwards
/// `list@here.test` to `bob@away.test` and `carol@here.test`, and seals
/// with the RSA key of mx.test.
fn forwarder(mx_port: u16, arc: bool) -> Server {
    let r = rig();
    let arc = if arc {
        format!(
            "[arc]\ndomain = \"mx.test\"\nselector = \"pkr\"\nkey = \"{}\"\n",
            arg(&r.dir.join("keys/mx.test/pkr.pem"))
        )
    } else {
        String::new()
    };
    Server::start(
        &format!(
            "[policy]\ndomains = [\"here.test\"]\n\
             [delivery]\nenabled = true\nmx_port = {mx_port}\nallow_private_addresses = true\n\
             retry = [\"1h\"]\nconnect_timeout = \"2s\"\n\
             [delivery.forward]\n\"List@here.test\" = [\"bob@away.test\", \"carol@here.test\"]\n\
             [dns]\nnameservers = [\"127.0.0.1:{}\"]\n[verify]\nignore_networks = []\n{arc}",
            r.port
        ),
        &[],
    )
}

fn forwarded(mx: &Mx, n: usize) -> Vec<Vec<u8>> {
    wait_for(30, "the forwarded copies", || mx.received().len() >= n);
    mx.received()
        .iter()
        .map(|m| {
            m["content"]
                .as_str()
                .unwrap_or("")
                .chars()
                .map(|c| c as u32 as u8)
                .collect()
        })
        .collect()
}

fn arc_verify(content: &[u8]) -> String {
    let r = rig();
    String::from_utf8_lossy(&dkimpy(&["arcverify", &r.port.to_string()], content))
        .trim()
        .to_owned()
}

#[test]
fn forwarded_mail_is_sealed_and_dkimpy_validates_the_chain() {
    let port = free_port();
    let mx = Mx::start("127.0.11.1", port, &[]);
    let s = forwarder(port, true);
    let r = rig();

    // Signed by in.test (dkimpy), from outside: checked, then forwarded.
    let signed = dkimpy(
        &["sign", "in.test", "od", arg(&r.dir.join("od.private"))],
        &message("a@in.test", "forwarded"),
    );
    let mut c = s.connect();
    c.greet();
    c.mail("a@in.test", &["list@here.test"], &signed);
    let got = forwarded(&mx, 1);
    let text = String::from_utf8_lossy(&got[0]).into_owned();
    assert!(text.starts_with("ARC-Seal: i=1; "), "{text}");
    assert!(
        text.contains("ARC-Authentication-Results: i=1; mx.test;"),
        "{text}"
    );
    assert!(text.contains("cv=none"), "{text}");
    let v = arc_verify(&got[0]);
    assert!(v.starts_with("pass 1 "), "{v}");
    // The envelope: the target, with the forwarded address as ORCPT; the
    // local target kept in the inbox.
    let rec = &mx.received()[0];
    assert_eq!(rec["rcpt_tos"][0], "bob@away.test", "{rec}");
    let local = s.messages();
    assert_eq!(local.len(), 1);
    assert_eq!(
        local[0]["to"],
        serde_json::json!(["bob@away.test", "carol@here.test"]),
        "{}",
        local[0]
    );
    assert_eq!(
        local[0]["rcpt_params"][1][0], "ORCPT=rfc822;list@here.test",
        "{}",
        local[0]
    );
    // A body changed after sealing breaks the chain for dkimpy too.
    let broken = String::from_utf8_lossy(&got[0]).replace("Hello.", "Hello, altered.");
    let v = arc_verify(broken.as_bytes());
    assert!(v.starts_with("fail"), "{v}");

    // A chain dkimpy started: Postel validates it and adds i=2 (cv=pass).
    let mut results =
        b"Authentication-Results: relay.in.test; spf=pass smtp.mailfrom=in.test\r\n".to_vec();
    results.extend_from_slice(&signed);
    let sealed_first = dkimpy(
        &[
            "arcsign",
            "in.test",
            "od",
            arg(&r.dir.join("od.private")),
            "relay.in.test",
        ],
        &results,
    );
    assert!(String::from_utf8_lossy(&sealed_first).starts_with("ARC-Seal: i=1"));
    let mut c = s.connect();
    c.greet();
    c.mail("a@in.test", &["list@here.test"], &sealed_first);
    let got = forwarded(&mx, 2);
    let text = String::from_utf8_lossy(&got[1]).into_owned();
    assert!(text.starts_with("ARC-Seal: i=2; "), "{text}");
    assert!(text.contains("cv=pass"), "{text}");
    let v = arc_verify(&got[1]);
    assert!(v.starts_with("pass 2 "), "{v}");
}

#[test]
fn without_an_arc_key_forwarding_still_works_unsealed() {
    let port = free_port();
    let mx = Mx::start("127.0.11.1", port, &[]);
    let s = forwarder(port, false);
    let mut c = s.connect();
    c.greet();
    c.mail(
        "a@in.test",
        &["LIST@here.test"],
        &message("a@in.test", "unsealed"),
    );
    let got = forwarded(&mx, 1);
    let text = String::from_utf8_lossy(&got[0]).into_owned();
    assert!(!text.contains("ARC-Seal"), "{text}");
    assert!(text.contains("Authentication-Results: mx.test;"), "{text}");
}
