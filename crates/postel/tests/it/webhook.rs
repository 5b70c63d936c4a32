//! Webhooks (`[[webhook]]`): a receiver that is down at first gets every
//! message once it is up, at least once, with the same idempotency key on
//! each attempt and a valid HMAC signature, checked by Python's hmac.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::processes::{Killed, json_files};
use crate::rig::wait_for;
use crate::support::{Server, arg, http, temp_dir};
use crate::tools::free_port;

const SECRET: &str = "a-secret-of-some-length";

fn web_addr(s: &Server) -> std::net::SocketAddr {
    s.addrs["web"]
}

/// The receiver (tests/peers/webhook.py) on `port`, failing its first
/// `fail` requests with 500.
fn receiver(port: u16, fail: u32) -> (PathBuf, Killed) {
    let dir = temp_dir("webhook");
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/webhook.py"))
        .args(["--port", &port.to_string(), "--dir", arg(&dir)])
        .args(["--fail", &fail.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 tests/peers/webhook.py");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert_eq!(line.trim(), "ready");
    (dir, Killed(child))
}

/// Whether `signature` (`t=..,v1=..`) is HMAC-SHA256 of "t.body" under
/// the secret, as a receiver checks it with Python's hmac module.
fn valid(signature: &str, body: &str) -> bool {
    let script = format!(
        "import hmac,hashlib,sys\nsig={signature:?}\nbody={body:?}\n\
         parts=dict(p.split('=',1) for p in sig.split(','))\n\
         want=hmac.new({SECRET:?}.encode(), (parts['t']+'.'+body).encode(), hashlib.sha256).hexdigest()\n\
         print(hmac.compare_digest(want, parts['v1']))"
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&o.stdout).trim() == "True"
}

#[test]
fn a_receiver_that_is_down_gets_every_message_signed_with_one_idempotency_key() {
    let port = free_port();
    let s = Server::start(
        &format!(
            "[web]\nlisten = \"127.0.0.1:0\"\n\
             [[webhook]]\nurl = \"http://127.0.0.1:{port}/hooks/mail?src=postel\"\n\
             secret = \"{SECRET}\"\nretry = \"1s\"\n"
        ),
        &[],
    );
    let mut c = s.connect();
    c.greet();
    let first = c.mail("a@b.test", &["c@d.test"], b"Subject: one\r\n\r\nfirst\r\n");
    let second = c.mail("a@b.test", &["c@d.test"], b"Subject: two\r\n\r\nsecond\r\n");
    // Nothing listens yet: the attempts fail, and are kept.
    wait_for(15, "a failed attempt", || {
        let r = http("GET", web_addr(&s), "/api/v1/webhooks", &[]).json();
        r.as_array().is_some_and(|a| {
            a.len() == 2
                && a.iter()
                    .all(|e| e["state"] == "pending" && e["attempts"].as_u64() >= Some(1))
        })
    });
    // Up, but failing its first answer with 500.
    let (dir, _receiver) = receiver(port, 1);
    wait_for(30, "both deliveries", || {
        let r = http("GET", web_addr(&s), "/api/v1/webhooks", &[]).json();
        r.as_array()
            .is_some_and(|a| a.iter().filter(|e| e["state"] == "delivered").count() == 2)
    });
    let got = json_files(&dir);
    assert!(got.len() >= 3, "one refused and two taken: {}", got.len());
    for id in [&first, &second] {
        let mine: Vec<&serde_json::Value> = got
            .iter()
            .filter(|r| r["headers"]["idempotency-key"] == id.as_str())
            .collect();
        assert!(!mine.is_empty(), "{id} was posted");
        for r in &mine {
            assert_eq!(r["path"], "/hooks/mail?src=postel");
            let body = r["body"].as_str().expect("body");
            let sig = r["headers"]["x-postel-signature"]
                .as_str()
                .expect("signature");
            assert!(valid(sig, body), "bad signature on {id}: {sig}");
            let v: serde_json::Value = serde_json::from_str(body).expect("json");
            assert_eq!(v["id"], id.as_str());
            assert_eq!(v["envelope"]["to"], serde_json::json!(["c@d.test"]));
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v["raw_base64"].as_str().expect("inline"))
                .expect("base64");
            assert_eq!(raw, s.raw(id), "the inline copy is the stored message");
        }
    }
    // A wrong secret does not verify.
    let r = &got[got.len() - 1];
    assert!(!valid(
        r["headers"]["x-postel-signature"].as_str().unwrap_or(""),
        &format!("{} ", r["body"].as_str().unwrap_or(""))
    ));
    let one = http(
        "GET",
        web_addr(&s),
        &format!("/api/v1/webhooks?message={first}"),
        &[],
    )
    .json();
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    assert_eq!(one[0]["last_status"], "200");
}
