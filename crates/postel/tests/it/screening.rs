//! DNS block and allow lists at connect (`[[dnsbl]]`, served by the rig's
//! dnsmasq) and rate limits (`[limits.rate]`), from real clients.

use std::process::Command;

use crate::rig::dns_port;
use crate::support::Server;

/// Python's smtplib connecting from `source`: the greeting's code and
/// text.
fn greeting_from(s: &Server, source: &str) -> String {
    let script = format!(
        r#"
import smtplib
try:
    c = smtplib.SMTP("127.0.0.1", {port}, source_address=("{source}", 0), timeout=20)
    print(220)
    c.quit()
except smtplib.SMTPConnectError as e:
    print(e.smtp_code, e.smtp_error.decode())
"#,
        port = s.addr.port()
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn listed_clients_are_refused_with_the_list_named_and_allow_lists_weigh_against() {
    let s = Server::start(
        &format!(
            "[policy]\ndnsbl_threshold = 2\n[dns]\nnameservers = [\"127.0.0.1:{}\"]\n\
             [[dnsbl]]\nzone = \"bl.test\"\nweight = 2\n\
             [[dnsbl]]\nzone = \"wl.test\"\nweight = -2\nanswers = [\"127.0.10.0/24\"]\n",
            dns_port()
        ),
        &[],
    );
    assert_eq!(
        greeting_from(&s, "127.0.0.9"),
        "554 5.7.1 Service unavailable; client [127.0.0.9] blocked using bl.test"
    );
    // On both lists: the allow list takes the weight away.
    assert_eq!(greeting_from(&s, "127.0.0.10"), "220");
    // The list's error code (127.255.255.254) is not a listing.
    assert_eq!(greeting_from(&s, "127.0.0.11"), "220");
    // Not listed (NXDOMAIN).
    assert_eq!(greeting_from(&s, "127.0.0.1"), "220");
}

#[test]
fn rate_limits_refuse_with_450_and_count_per_scope() {
    let s = Server::start(
        "[limits.rate.client]\nmessages = 2\nrecipients = 3\nwindow = \"1h\"\n\
         [limits.rate.sender_domain]\nmessages = 1\n",
        &[],
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@one.test>", "250 2.1.0 Sender OK");
    for i in 0..3 {
        c.cmd(&format!("RCPT TO:<r{i}@x.test>"), "250 2.1.5 Recipient OK");
    }
    c.cmd(
        "RCPT TO:<r4@x.test>",
        "450 4.7.1 Rate limit exceeded for this client, try again later",
    );
    c.cmd("RSET", "250 2.0.0 Ok");
    // one.test has had its message; another domain has room.
    c.cmd(
        "MAIL FROM:<b@one.test>",
        "450 4.7.1 Rate limit exceeded for this sender domain, try again later",
    );
    c.cmd("MAIL FROM:<b@two.test>", "250 2.1.0 Sender OK");
    c.cmd("RSET", "250 2.0.0 Ok");
    // The client's two messages are used up, whatever the domain.
    c.cmd(
        "MAIL FROM:<c@three.test>",
        "450 4.7.1 Rate limit exceeded for this client, try again later",
    );
}
