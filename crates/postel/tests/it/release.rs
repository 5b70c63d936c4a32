//! Releasing a stored message to an SMTP server (Mailpit's "release"):
//! from the CLI to any server; from the web only to configured targets,
//! and only behind a login.

use crate::rig::{Mx, message, wait_for};
use crate::support::{BIN, Server, arg, http, http_with_body};
use crate::tools::free_port;

#[test]
fn the_cli_releases_a_stored_message_as_it_is_stored() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    let id = c.mail("me@here.test", &["dev@app.test"], &message("captured"));
    let stored = s.raw(&id);
    let out = std::process::Command::new(BIN)
        .args([
            "messages",
            "release",
            &id,
            "--server",
            &format!("127.0.2.1:{port}"),
        ])
        .args(["--to", "qa@staging.test", "--data-dir", arg(&s.data_dir)])
        .output()
        .expect("release");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("<qa@staging.test>: 250"), "{text}");
    wait_for(10, "the release", || mx.received().len() == 1);
    let got = &mx.received()[0];
    assert_eq!(got["rcpt_tos"], serde_json::json!(["qa@staging.test"]));
    assert_eq!(got["mail_from"], "me@here.test");
    assert_eq!(
        got["content"].as_str().map(str::as_bytes),
        Some(stored.as_slice())
    );
    // A refusal is reported, with exit status 1.
    let out = std::process::Command::new(BIN)
        .args([
            "messages",
            "release",
            &id,
            "--server",
            &format!("127.0.2.1:{port}"),
        ])
        .args([
            "--to",
            "reject9@staging.test",
            "--data-dir",
            arg(&s.data_dir),
        ])
        .output()
        .expect("release");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("550 5.1.1"));
}

#[test]
fn the_web_releases_only_to_configured_targets_and_only_after_a_login() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let token = "t0ken-for-release-tests-0123456789";
    let s = Server::start(
        &format!(
            "[web]\ntoken = \"{token}\"\n[web.release_targets]\nstaging = \"127.0.2.1:{port}\"\n"
        ),
        &["--web", "127.0.0.1:0"],
    );
    let web = s.addrs["web"];
    let mut c = s.connect();
    c.greet();
    let id = c.mail("me@here.test", &["dev@app.test"], &message("to staging"));
    let auth = format!("Authorization: Bearer {token}");
    let path = format!("/api/v1/messages/{id}/release");
    let json = "Content-Type: application/json";
    // No login: refused before anything else.
    let anon = http_with_body("POST", web, &path, &[json], b"{\"target\":\"staging\"}");
    assert_eq!(anon.status, 401);
    // A target the config does not list.
    let r = http_with_body("POST", web, &path, &[json, &auth], b"{\"target\":\"prod\"}");
    assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(&r.body));
    // The listed one, to another recipient.
    let r = http_with_body(
        "POST",
        web,
        &path,
        &[json, &auth],
        b"{\"target\":\"staging\",\"to\":[\"qa@staging.test\"]}",
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["results"][0]["recipient"], "qa@staging.test");
    assert!(
        v["results"][0]["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("250")),
        "{v}"
    );
    wait_for(10, "the release", || mx.received().len() == 1);
    assert_eq!(
        mx.received()[0]["rcpt_tos"],
        serde_json::json!(["qa@staging.test"])
    );
    // The status tells the page which targets there are.
    let st = http("GET", web, "/api/v1/status", &[&auth]).json();
    assert_eq!(st["release_targets"], serde_json::json!(["staging"]));

    // On loopback without a login, the button would be an open relay.
    let open = Server::start(
        &format!("[web.release_targets]\nstaging = \"127.0.2.1:{port}\"\n"),
        &["--web", "127.0.0.1:0"],
    );
    let mut c = open.connect();
    c.greet();
    let id = c.mail("me@here.test", &["dev@app.test"], &message("open"));
    let r = http_with_body(
        "POST",
        open.addrs["web"],
        &format!("/api/v1/messages/{id}/release"),
        &[json],
        b"{\"target\":\"staging\"}",
    );
    assert_eq!(r.status, 403, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(mx.received().len(), 1);
}
