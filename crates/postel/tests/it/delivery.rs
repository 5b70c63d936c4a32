//! Delivery through the loopback rig (`rig.rs`): routing, MX preference,
//! retries, notices, and relay control, each against real receiving
//! servers (aiosmtpd) found through a real DNS server (dnsmasq).

use crate::rig::{Mx, message, notices, queue, relay, wait_for};
use crate::support::{Server, arg, postel};
use crate::tools::free_port;

#[test]
fn mx_preference_with_the_primary_down_and_nothing_kept_locally() {
    let port = free_port();
    // mx1 (preference 10) is down; mx2 (20) answers.
    let mx2 = Mx::start("127.0.1.2", port, &[]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    let id = c.mail("me@here.test", &["bob@pref.test"], &message("via mx2"));
    wait_for(20, "delivery to mx2", || mx2.received().len() == 1);
    let got = &mx2.received()[0];
    assert_eq!(got["rcpt_tos"], serde_json::json!(["bob@pref.test"]));
    assert_eq!(got["mail_from"], "me@here.test");
    assert_eq!(got["helo"], "mx.test", "EHLO with the configured hostname");
    let content = got["content"].as_str().expect("content");
    assert!(content.contains("Subject: via mx2"), "{content}");
    assert!(
        content.starts_with("Received: from client.test"),
        "{content}"
    );
    // Only passing through: not in the inbox, and gone from the queue.
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
    assert!(s.messages().iter().all(|m| m["id"] != id.as_str()));
    assert!(notices(&s).is_empty(), "no notice for a delivery");
}

#[test]
fn a_permanent_refusal_among_mixed_recipients_makes_one_notice_listing_only_it() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["bob@ok.test", "reject1@ok.test", "carol@here.test"],
        &message("mixed"),
    );
    wait_for(20, "the delivery and the notice", || {
        mx.received().len() == 1 && notices(&s).len() == 1
    });
    assert_eq!(
        mx.received()[0]["rcpt_tos"],
        serde_json::json!(["bob@ok.test"])
    );
    let n = &notices(&s)[0];
    assert_eq!(n["to"], "me@here.test");
    assert_eq!(n["auto_submitted"], "auto-replied");
    assert_eq!(n["parts"][1], "message/delivery-status");
    assert!(n["per_message"]["Reporting-MTA"] == "dns; mx.test", "{n}");
    assert!(n["per_message"]["Arrival-Date"].is_string(), "{n}");
    let r = n["recipients"].as_array().expect("recipients");
    assert_eq!(r.len(), 1, "only the failed one: {n}");
    assert_eq!(r[0]["Final-Recipient"], "rfc822; reject1@ok.test");
    assert_eq!(r[0]["Action"], "failed");
    assert_eq!(r[0]["Status"], "5.1.1");
    assert_eq!(r[0]["Remote-MTA"], "dns; mx.ok.test");
    assert_eq!(r[0]["Diagnostic-Code"], "smtp; 550 5.1.1 No such user here");
    // A trusted sender (relay_networks) gets the whole original back.
    assert_eq!(n["original"], "message/rfc822");
    assert_eq!(n["original_subject"], "mixed");
    // The local recipient's copy is in the inbox, beside the notice.
    assert_eq!(s.messages().len(), 2);
}

#[test]
fn greylisting_is_retried_on_the_schedule_and_then_delivered() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "retry = [\"1s\"]");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["grey1@ok.test"], &message("grey"));
    // The first attempt is deferred with the remote's reply...
    wait_for(20, "a deferral", || {
        queue(&s)
            .first()
            .is_some_and(|e| e["state"] == "deferred" || mx.received().len() == 1)
    });
    // ...and the retry is delivered.
    wait_for(20, "the retry", || mx.received().len() == 1);
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
    assert!(notices(&s).is_empty(), "{:?}", notices(&s));
}

#[test]
fn a_temporary_refusal_is_deferred_with_its_reply_and_the_queue_says_so() {
    let port = free_port();
    let _mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "retry = [\"1h\"]");
    let mut c = s.connect();
    c.greet();
    let id = c.mail("me@here.test", &["defer1@ok.test"], &message("later"));
    wait_for(20, "a deferral", || {
        queue(&s).first().is_some_and(|e| e["state"] == "deferred")
    });
    let q = queue(&s);
    assert_eq!(q.len(), 1);
    let e = &q[0];
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["recipient"], "defer1@ok.test");
    assert_eq!(e["attempts"], 1);
    assert_eq!(e["last_reply"], "451 4.7.1 Try again later");
    let next = e["next_attempt"].as_str().expect("next_attempt");
    assert!(
        next.ends_with('Z') && next.contains('T'),
        "RFC 3339: {next}"
    );
    // The operator's view and actions.
    let show = postel(&["queue", "show", &id, "--data-dir", arg(&s.data_dir)]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("defer1@ok.test") && text.contains("deferred"),
        "{text}"
    );
    let hold = postel(&["queue", "hold", &id, "--data-dir", arg(&s.data_dir)]);
    assert!(hold.status.success());
    assert_eq!(queue(&s)[0]["state"], "held");
    let release = postel(&["queue", "release", &id, "--data-dir", arg(&s.data_dir)]);
    assert!(release.status.success());
    assert_ne!(queue(&s)[0]["state"], "held");
    let delete = postel(&["queue", "delete", &id, "--data-dir", arg(&s.data_dir)]);
    assert!(delete.status.success());
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
    assert!(
        notices(&s).is_empty(),
        "a deleted recipient sends no notice"
    );
}

#[test]
fn all_hosts_down_then_up_and_queue_retry_delivers_at_once() {
    let port = free_port();
    let s = relay(port, "retry = [\"1h\"]");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["bob@flaky.test"], &message("patience"));
    wait_for(20, "a deferral", || {
        queue(&s).first().is_some_and(|e| e["state"] == "deferred")
    });
    let reply = queue(&s)[0]["last_reply"].as_str().unwrap_or("").to_owned();
    assert!(reply.contains("127.0.6.1"), "{reply}");
    let mx = Mx::start("127.0.6.1", port, &[]);
    // The schedule says an hour; the operator says now.
    let o = postel(&["queue", "retry", "--all", "--data-dir", arg(&s.data_dir)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for(20, "the retry", || mx.received().len() == 1);
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
}

#[test]
fn null_mx_nxdomain_and_a_loop_fail_at_once_and_implicit_mx_delivers() {
    let port = free_port();
    let implicit = Mx::start("127.0.3.1", port, &[]);
    let s = relay(port, "");
    let mut c = s.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["a@null.test", "b@nx.test", "c@loop.test", "d@implicit.test"],
        &message("routes"),
    );
    wait_for(20, "the implicit MX", || implicit.received().len() == 1);
    wait_for(20, "three notices", || notices(&s).len() == 3);
    let mut statuses: Vec<(String, String)> = notices(&s)
        .iter()
        .map(|n| {
            let r = &n["recipients"][0];
            (
                r["Final-Recipient"].as_str().unwrap_or("").to_owned(),
                r["Status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("rfc822; a@null.test".to_owned(), "5.1.10".to_owned()),
            ("rfc822; b@nx.test".to_owned(), "5.1.2".to_owned()),
            ("rfc822; c@loop.test".to_owned(), "5.4.6".to_owned()),
        ]
    );
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
}

#[test]
fn a_dns_failure_is_temporary() {
    let port = free_port();
    let s = relay(port, "retry = [\"1h\"]");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["x@servfail.test"], &message("dns"));
    wait_for(60, "a deferral", || {
        queue(&s).first().is_some_and(|e| e["state"] == "deferred")
    });
    let reply = queue(&s)[0]["last_reply"].as_str().unwrap_or("").to_owned();
    assert!(
        reply.contains("MX lookup for servfail.test failed"),
        "{reply}"
    );
    assert!(notices(&s).is_empty());
}

#[test]
fn relay_control_and_the_senders_a_user_may_use() {
    let port = free_port();
    let cfg = crate::rig::config(port, "", "[smtp]\nauth = true\nrequire_tls = false\n").replace(
        "relay_networks = [\"127.0.0.0/8\"]",
        "relay_networks = [\"127.0.0.1/32\"]",
    );
    let s = Server::start(&cfg, &[]);
    // alice may send as herself and as anyone at sales.here.test.
    let mut add = std::process::Command::new(crate::support::BIN)
        .args(["users", "add", "alice", "--address", "alice@here.test"])
        .args([
            "--address",
            "*@sales.here.test",
            "--data-dir",
            arg(&s.data_dir),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("users add");
    use std::io::Write;
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"secret\n")
        .expect("pw");
    assert!(add.wait().expect("wait").success());
    let script = format!(
        r#"
import smtplib, sys
port = {smtp}
def attempt(source, login, sender, rcpt):
    c = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0))
    c.ehlo("client.test")
    if login:
        c.login("alice", "secret")
    code, _ = c.mail(sender)
    if code != 250:
        c.quit(); return "MAIL %d" % code
    code, _ = c.rcpt(rcpt)
    c.quit()
    return "RCPT %d" % code
print(attempt("127.0.0.5", False, "x@else.test", "bob@ok.test"))
print(attempt("127.0.0.5", False, "x@else.test", "carol@here.test"))
print(attempt("127.0.0.1", False, "x@else.test", "bob@ok.test"))
print(attempt("127.0.0.5", True, "alice@here.test", "bob@ok.test"))
print(attempt("127.0.0.5", True, "bob@here.test", "bob@ok.test"))
print(attempt("127.0.0.5", True, "Anyone@Sales.here.test", "bob@ok.test"))
print(attempt("127.0.0.5", True, "", "bob@ok.test"))
"#,
        smtp = s.addr.port()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "RCPT 554", // not trusted, not logged in: no relaying
            "RCPT 250", // a local recipient is fine
            "RCPT 250", // relay_networks
            "RCPT 250", // logged in, own address
            "MAIL 553", // logged in, someone else's address
            "RCPT 250", // a whole domain of hers
            "RCPT 250", // the null sender
        ],
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn turning_delivery_on_needs_local_domains_and_a_full_hostname() {
    let dir = crate::support::temp_dir("cfg");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "hostname = \"localhost\"\n[delivery]\nenabled = true\n",
    )
    .expect("write");
    let o = postel(&["config", "check", "--config", arg(&cfg)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("policy.domains") && err.contains("open relay"),
        "{err}"
    );
    assert!(err.contains("fully qualified"), "{err}");
    std::fs::write(
        &cfg,
        "hostname = \"mx.example.test\"\n[policy]\ndomains = [\"example.test\"]\n[delivery]\nenabled = true\nretry = [\"5m\", \"1h20\"]\nlifetime = \"3d\"\n",
    )
    .expect("write");
    let o = postel(&["config", "check", "--config", arg(&cfg)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("retry = [\"300s\", \"4800s\"]"), "{out}");
    assert!(out.contains("lifetime = \"259200s\""), "{out}");
}

#[test]
fn an_operator_bounce_returns_the_message_and_the_api_and_metrics_show_the_queue() {
    let port = free_port();
    let _mx = Mx::start("127.0.2.1", port, &[]);
    let s = Server::start(
        &crate::rig::config(port, "retry = [\"1h\"]", ""),
        &["--web", "127.0.0.1:0"],
    );
    let web = s.addrs["web"];
    let mut c = s.connect();
    c.greet();
    let id = c.mail("me@here.test", &["defer2@ok.test"], &message("stuck"));
    wait_for(20, "a deferral", || {
        queue(&s).first().is_some_and(|e| e["state"] == "deferred")
    });
    // The API lists what the CLI lists.
    let r = crate::support::http("GET", web, "/api/v1/queue", &[]);
    assert_eq!(r.status, 200);
    let api = r.json();
    assert_eq!(api[0]["id"], id.as_str());
    assert_eq!(api[0]["state"], "deferred");
    // Metrics: the queue by state, attempts by result.
    wait_for(15, "the queue gauge", || {
        let m = crate::support::http("GET", web, "/metrics", &[]);
        let text = String::from_utf8_lossy(&m.body).into_owned();
        text.contains("postel_queue_recipients{state=\"deferred\"} 1")
            && text.contains("postel_delivery_attempts_total{result=\"deferred\"} 1")
    });
    // The operator gives up: a failure notice goes to the sender.
    let o = postel(&["queue", "bounce", &id, "--data-dir", arg(&s.data_dir)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for(20, "the notice", || notices(&s).len() == 1);
    let n = &notices(&s)[0];
    assert_eq!(n["recipients"][0]["Status"], "5.0.0");
    assert_eq!(n["recipients"][0]["Action"], "failed");
    wait_for(10, "the queue to empty", || queue(&s).is_empty());
    // An action on what is no longer queued changes nothing.
    let r = crate::support::http("POST", web, &format!("/api/v1/queue/{id}/retry"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["changed"], 0);
}

#[test]
fn a_delayed_message_gets_a_delay_notice_once_per_step_and_keeps_being_tried() {
    let port = free_port();
    let _mx = Mx::start("127.0.2.1", port, &[]);
    // Steps of 2 s instead of 4 h and 24 h, retries every second.
    let s = relay(port, "retry = [\"1s\"]\ndelay_warnings = [\"2s\", \"4s\"]");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["defer4@ok.test"], &message("slow"));
    wait_for(20, "two delay notices", || notices(&s).len() == 2);
    for n in notices(&s) {
        assert_eq!(n["subject"], "Delayed Mail (still being retried)");
        let r = &n["recipients"][0];
        assert_eq!(r["Action"], "delayed");
        assert_eq!(r["Status"], "4.7.1");
        assert_eq!(r["Diagnostic-Code"], "smtp; 451 4.7.1 Try again later");
        assert!(r["Will-Retry-Until"].is_string(), "{n}");
        // A delay notice carries only the headers.
        assert_eq!(n["original"], "text/rfc822-headers");
    }
    // Still queued, still tried; no third notice.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(notices(&s).len(), 2);
    let q = queue(&s);
    assert_eq!(q[0]["state"], "deferred");
    assert!(q[0]["attempts"].as_u64().unwrap_or(0) >= 3, "{q:?}");
}

#[test]
fn connections_come_from_the_configured_source_address() {
    let port = free_port();
    let mx = Mx::start("127.0.2.1", port, &[]);
    let s = relay(port, "source_ipv4 = \"127.0.0.9\"");
    let mut c = s.connect();
    c.greet();
    c.mail("me@here.test", &["bob@ok.test"], &message("from .9"));
    wait_for(20, "the delivery", || mx.received().len() == 1);
    assert_eq!(mx.received()[0]["peer"], "127.0.0.9");
}
