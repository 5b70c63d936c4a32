//! The command line: config check, refusing bad configs, and the messages
//! commands while the server runs.

use crate::support::{Server, arg, postel, temp_dir};

#[test]
fn config_check_names_every_bad_key_and_serve_refuses_to_start() {
    let dir = temp_dir("badcfg");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "hostname = \"not a host\"\n[limits]\nmax_recipients = 10\n[policy]\nbare_line_endings = \"maybe\"\n")
        .expect("write");
    let out = postel(&["config", "check", "--config", arg(&cfg)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "hostname:",
        "limits.max_recipients:",
        "policy.bare_line_endings:",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    let data = dir.join("data");
    let out = postel(&[
        "serve",
        "--smtp",
        "127.0.0.1:0",
        "--data-dir",
        arg(&data),
        "--config",
        arg(&cfg),
    ]);
    assert!(!out.status.success(), "serve started on a bad config");
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_recipients:"));
    assert!(
        !dir.join("data").exists(),
        "serve touched the data folder before refusing"
    );
}

#[test]
fn config_check_rejects_unknown_keys_and_prints_effective_config() {
    let dir = temp_dir("cfg");
    let cfg = dir.join("typo.toml");
    std::fs::write(&cfg, "[limits]\nmax_recipient = 200\n").expect("write");
    let out = postel(&["config", "check", "--config", arg(&cfg)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_recipient"));

    std::fs::write(
        &cfg,
        "hostname = \"mx.example.test\"\n[limits]\nmax_recipients = 200\n",
    )
    .expect("write");
    let out = postel(&["config", "check", "--config", arg(&cfg)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_recipients = 200"), "{text}");
    assert!(text.contains("hostname = \"mx.example.test\""), "{text}");
    assert!(text.contains("max_message_size = 37748736"), "{text}");
}

#[test]
fn example_config_in_the_repo_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../postel.example.toml");
    let out = postel(&["config", "check", "--config", path]);
    assert!(
        out.status.success(),
        "postel.example.toml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn messages_list_show_delete_while_serving() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    let a = c.mail("a@b.test", &["c@d.test"], b"Subject: one\r\n\r\n1\r\n");
    let b = c.mail("", &["c@d.test", "e@d.test"], b"Subject: two\r\n\r\n2\r\n");
    let run = |args: &[&str]| postel(&[args, &["--data-dir", arg(&s.data_dir)]].concat());
    let out = run(&["messages", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&a) && text.contains(&b) && text.contains("one") && text.contains("two"),
        "{text}"
    );
    assert!(text.contains("<>"), "null sender shown as <>: {text}");

    let all = s.messages();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["from"], "");
    assert_eq!(all[1]["to"], serde_json::json!(["c@d.test", "e@d.test"]));

    let out = run(&["messages", "show", &a]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From:      <a@b.test>") && text.contains("Subject: one"),
        "{text}"
    );

    let out = run(&["messages", "delete", &a]);
    assert!(out.status.success());
    assert_eq!(s.messages().len(), 1);
    let out = run(&["messages", "delete", &a]);
    assert!(!out.status.success(), "deleting twice should fail");
    let out = run(&["messages", "show", &a]);
    assert!(!out.status.success());
    // The server keeps storing after a delete from outside.
    c.mail("a@b.test", &["c@d.test"], b"three\r\n");
    assert_eq!(s.messages().len(), 2);
}

#[test]
fn json_list_is_never_cut() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    for i in 0..120 {
        c.mail(
            "a@b.test",
            &["c@d.test"],
            format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
        );
    }
    let all = s.messages();
    assert_eq!(all.len(), 120);
    assert_eq!(all[119]["subject"], "119");
}

#[test]
fn messages_on_a_missing_store_says_what_to_do() {
    let dir = temp_dir("nostore");
    let out = postel(&["messages", "list", "--data-dir", arg(&dir)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("postel serve"));
}

#[test]
fn a_second_server_on_the_same_data_folder_is_refused_and_users_add_works_beside() {
    let s = Server::start("", &[]);
    let cfg = s.data_dir.join("test-config.toml");
    // After waiting its 10 s for the folder's lock, the second one says why.
    let out = postel(&[
        "serve",
        "--smtp",
        "127.0.0.1:0",
        "--config",
        arg(&cfg),
        "--data-dir",
        arg(&s.data_dir),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another postel server"), "{err}");
    // The first one is unharmed, and a user can be added beside it.
    let mut c = s.connect();
    c.greet();
    crate::tls::add_user(&s.data_dir, "alice", "secret");
    let list = postel(&["users", "list", "--data-dir", arg(&s.data_dir)]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("alice"));
    c.cmd("NOOP", "250 2.0.0 Ok");
}

#[test]
fn output_cut_short_by_the_reader_is_not_an_error() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    // Larger than a pipe's buffer, so the writer meets the closed pipe.
    let line = "x".repeat(76) + "\r\n";
    let id = c.mail("a@b.test", &["c@d.test"], line.repeat(4000).as_bytes());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_postel"))
        .args([
            "messages",
            "show",
            "--raw",
            &id,
            "--data-dir",
            arg(&s.data_dir),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("read");
    assert_eq!(&first, b"Received: ");
    drop(stdout); // `| head -c 10`
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
