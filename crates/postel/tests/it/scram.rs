//! SCRAM-SHA-256 (RFC 7677) against two independent implementations:
//! Python's `scramp` (client side, which also checks the server's
//! signature) and GNU SASL's `gsasl` (its SMTP client, and its
//! `--mkpasswd` for the stored keys).

use std::process::Command;

use crate::support::{BIN, Server, arg};
use crate::tls::{add_user, tls_server};

/// One SMTP login with scramp over smtplib; prints each reply code, and
/// "server-verified" once scramp accepted the server's signature.
const SCRAMP_LOGIN: &str = r#"
import base64, smtplib, ssl, sys
from scramp import ScramClient
port, user, password, starttls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
# "full"; "salt": print the salt and stop; "cancel": answer the server's
# signature with "*" instead of an empty line.
mode = sys.argv[5] if len(sys.argv) > 5 else "full"
rcpt = sys.argv[6] if len(sys.argv) > 6 else None
c = smtplib.SMTP("127.0.0.1", port, timeout=30)
if starttls:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.starttls(context=ctx)
c.ehlo("scramp.test")
assert "SCRAM-SHA-256" in c.esmtp_features["auth"].split(), c.esmtp_features
client = ScramClient(["SCRAM-SHA-256"], user, password)
b64 = lambda s: base64.b64encode(s.encode()).decode()
code, text = c.docmd("AUTH", "SCRAM-SHA-256 " + b64(client.get_client_first()))
print(code)
if code != 334:
    sys.exit(0)
server_first = base64.b64decode(text).decode()
if mode == "salt":
    print(dict(kv.split("=", 1) for kv in server_first.split(","))["s"])
    sys.exit(0)
client.set_server_first(server_first)
code, text = c.docmd(b64(client.get_client_final()))
print(code)
if code != 334:
    sys.exit(0)
client.set_server_final(base64.b64decode(text).decode())
print("server-verified")
code, text = c.docmd("*" if mode == "cancel" else "")
print(code)
code, _ = c.mail("alice@example.test")
print(code)
if rcpt:
    code, _ = c.rcpt(rcpt)
    print(code)
"#;

fn scramp(port: u16, user: &str, password: &str, starttls: bool) -> Vec<String> {
    scramp_with(port, user, password, starttls, &["full"])
}

fn scramp_with(
    port: u16,
    user: &str,
    password: &str,
    starttls: bool,
    more: &[&str],
) -> Vec<String> {
    let out = Command::new("python3")
        .args(["-c", SCRAMP_LOGIN, &port.to_string(), user, password])
        .arg(if starttls { "1" } else { "0" })
        .args(more)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "scramp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn scramp_logs_in_over_starttls_and_checks_the_server() {
    let s = tls_server("");
    let port = s.addrs["submission"].port();
    assert_eq!(
        scramp(port, "alice", "secret", true),
        ["334", "334", "server-verified", "235", "250"]
    );
    // A wrong password and an unknown user fail alike, at the proof: the
    // first step gives nothing away.
    assert_eq!(scramp(port, "alice", "wrong", true), ["334", "535"]);
    assert_eq!(scramp(port, "nobody", "secret", true), ["334", "535"]);
}

#[test]
fn gsasl_smtp_client_logs_in_and_its_keys_match_ours() {
    // Plain SMTP with AUTH on the smtp listener (loopback), so gsasl
    // needs no certificate.
    let s = tls_server("[smtp]\nauth = true\nrequire_tls = false\n");
    let port = s.addrs["smtp"].port().to_string();
    let run = |password: &str| {
        Command::new("gsasl")
            .args(["--smtp", "--no-starttls", "--connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-m", "SCRAM-SHA-256", "-a", "alice", "-p", password])
            .output()
            .expect("gsasl")
    };
    let ok = run("secret");
    let text =
        String::from_utf8_lossy(&ok.stdout).into_owned() + &String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "gsasl: {text}");
    assert!(text.contains("235 2.7.0"), "{text}");
    let bad = run("wrong");
    let text =
        String::from_utf8_lossy(&bad.stdout).into_owned() + &String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && text.contains("535 5.7.8"),
        "{text}"
    );

    // The stored keys are RFC 5803's; gsasl derives the same from the
    // password, salt and count.
    let stored = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT scram FROM users WHERE name='alice'\").fetchone()[0])",
        ])
        .arg(s.data_dir.join("messages.db"))
        .output()
        .expect("python3");
    let stored = String::from_utf8_lossy(&stored.stdout).trim().to_owned();
    let rest = stored
        .strip_prefix("SCRAM-SHA-256$")
        .expect("RFC 5803 form");
    let (params, keys) = rest.split_once('$').expect("two parts");
    let (count, salt) = params.split_once(':').expect("count:salt");
    let (stored_key, server_key) = keys.split_once(':').expect("keys");
    let theirs = Command::new("gsasl")
        .args(["--mkpasswd", "-m", "SCRAM-SHA-256", "-p", "secret"])
        .args(["--salt", salt, "--iteration-count", count])
        .output()
        .expect("gsasl --mkpasswd");
    let theirs = String::from_utf8_lossy(&theirs.stdout).trim().to_owned();
    assert_eq!(
        theirs,
        format!("{{SCRAM-SHA-256}}{count},{salt},{stored_key},{server_key}")
    );
}

#[test]
fn users_from_before_scram_keep_plain_and_are_listed() {
    let dir = crate::support::temp_dir("scram-old");
    add_user(&dir, "alice", "secret");
    add_user(&dir, "bob", "builder");
    // bob's password was set by a Postel without SCRAM keys.
    let db = dir.join("messages.db");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE users SET scram=NULL WHERE name='bob'\"); c.commit()",
        ])
        .arg(&db)
        .output()
        .expect("python3");
    assert!(out.status.success());
    let list = Command::new(BIN)
        .args(["users", "list", "--data-dir", arg(&dir)])
        .output()
        .expect("users list");
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} not in {list}"))
            .to_owned()
    };
    assert!(
        line("alice").contains("\tPLAIN LOGIN SCRAM-SHA-256\t"),
        "{list}"
    );
    assert!(
        line("bob").contains("no SCRAM-SHA-256 until the password is set again"),
        "{list}"
    );

    let config = "[smtp]\nauth = true\nrequire_tls = false\n";
    let s = Server::start_in(&dir, config, &[]);
    let port = s.addrs["smtp"].port();
    assert_eq!(scramp(port, "bob", "builder", false), ["334", "535"]);
    assert_eq!(
        scramp(port, "alice", "secret", false),
        ["334", "334", "server-verified", "235", "250"]
    );
    // PLAIN still works for bob (\0bob\0builder).
    let mut c = s.connect();
    c.greet();
    c.cmd(
        "AUTH PLAIN AGJvYgBidWlsZGVy",
        "235 2.7.0 Authentication successful",
    );
    drop(c);
    drop(s);
    // Setting the password again brings the keys.
    add_user(&dir, "bob", "builder2");
    let s = Server::start_in(&dir, config, &[]);
    let port = s.addrs["smtp"].port();
    assert_eq!(
        scramp(port, "bob", "builder2", false),
        ["334", "334", "server-verified", "235", "250"]
    );
}

#[test]
fn a_login_cancelled_after_the_proof_is_no_login() {
    // AUTH offered but not required, and delivery on: only a logged-in
    // user may relay, so RCPT tells whether the backend thinks so.
    let config = "hostname = \"mx.example.test\"\n[smtp]\nauth = true\nrequire_tls = false\n[policy]\ndomains = [\"example.test\"]\n[delivery]\nenabled = true\n";
    let dir = crate::support::temp_dir("scram-cancel");
    add_user(&dir, "alice", "secret");
    let out = Command::new(BIN)
        .args(["users", "add", "alice", "--keep-password", "--address"])
        .args(["alice@example.test", "--data-dir", arg(&dir)])
        .output()
        .expect("users add");
    assert!(out.status.success());
    let s = Server::start_in(&dir, config, &[]);
    let port = s.addrs["smtp"].port();
    let cancelled = scramp_with(
        port,
        "alice",
        "secret",
        false,
        &["cancel", "bob@elsewhere.test"],
    );
    assert_eq!(cancelled[..4], ["334", "334", "server-verified", "501"]);
    assert_eq!(cancelled[4], "250", "MAIL");
    assert!(cancelled[5].starts_with('5'), "RCPT relayed: {cancelled:?}");
    let done = scramp_with(
        port,
        "alice",
        "secret",
        false,
        &["full", "bob@elsewhere.test"],
    );
    assert_eq!(done, ["334", "334", "server-verified", "235", "250", "250"]);
}

#[test]
fn unknown_users_keep_their_salt_across_a_restart() {
    let dir = crate::support::temp_dir("scram-decoy");
    add_user(&dir, "alice", "secret");
    let config = "[smtp]\nauth = true\nrequire_tls = false\n";
    let salts = |s: &Server| {
        let port = s.addrs["smtp"].port();
        ["alice", "ghost"].map(|u| scramp_with(port, u, "x", false, &["salt"])[1].clone())
    };
    let s = Server::start_in(&dir, config, &[]);
    let before = salts(&s);
    drop(s);
    let s = Server::start_in(&dir, config, &[]);
    assert_eq!(salts(&s), before);
    assert_ne!(before[0], before[1]);
    let mode = std::fs::metadata(dir.join("scram-decoy.key"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("decoy key");
    assert_eq!(mode, 0o600);
}
