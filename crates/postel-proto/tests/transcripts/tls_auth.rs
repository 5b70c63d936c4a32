//! STARTTLS and AUTH.

use super::*;

// ---- STARTTLS and AUTH ------------------------------------------------------

/// A submission listener: STARTTLS offered, AUTH after TLS, AUTH required.
fn submission() -> ConnInfo {
    ConnInfo {
        starttls_available: true,
        auth_offered: true,
        auth_requires_tls: true,
        auth_required: true,
        ..ConnInfo::default()
    }
}

fn chunks(conn: ConnInfo, parts: &[&str]) -> Run {
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    drive(limits(), conn, &bytes)
}

/// base64 of PLAIN `\0alice\0secret` and of a wrong password.
const PLAIN_OK: &str = "AGFsaWNlAHNlY3JldA==";
const PLAIN_BAD: &str = "AGFsaWNlAHdyb25n";

/// The EHLO reply with `extra` in its place; after TLS, REQUIRETLS too.
fn ehlo_with(extra: &[&str]) -> String {
    ehlo_caps(extra, extra.iter().any(|c| c.starts_with("AUTH")))
}

fn ehlo_caps(extra: &[&str], tls: bool) -> String {
    let mut caps = vec![
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ];
    caps.extend_from_slice(extra);
    caps.push("DSN");
    if tls {
        caps.push("REQUIRETLS");
    }
    caps.push("HELP");
    let mut r = "250-mx.test\r\n".to_owned();
    for (i, c) in caps.iter().enumerate() {
        r.push_str(&format!(
            "250{}{c}\r\n",
            if i == caps.len() - 1 { ' ' } else { '-' }
        ));
    }
    r
}

#[test]
fn starttls_is_advertised_before_tls_and_auth_only_after() {
    let run = chunks(submission(), &[E, "STARTTLS\r\n", E]);
    let want = format!(
        "{GREETING}{}220 2.0.0 Ready to start TLS\r\n{}",
        ehlo_with(&["STARTTLS"]),
        ehlo_with(&["AUTH PLAIN LOGIN SCRAM-SHA-256"])
    );
    assert_eq!(run.output, want);
}

#[test]
fn auth_offered_without_tls_when_not_required() {
    let conn = ConnInfo {
        auth_offered: true,
        ..ConnInfo::default()
    };
    let run = chunks(conn, &[E]);
    assert_eq!(
        run.output,
        format!(
            "{GREETING}{}",
            ehlo_caps(&["AUTH PLAIN LOGIN SCRAM-SHA-256"], false)
        )
    );
}

#[test]
fn commands_pipelined_behind_starttls_are_discarded() {
    // CVE-2011-0411: RSET and MAIL arrive in the same read as STARTTLS.
    let run = chunks(
        submission(),
        &[
            E,
            "STARTTLS\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n",
            "MAIL FROM:<a@b.test>\r\n",
        ],
    );
    let want = format!(
        "{GREETING}{}220 2.0.0 Ready to start TLS\r\n503 5.5.1 Send EHLO/HELO first\r\n",
        ehlo_with(&["STARTTLS"])
    );
    assert_eq!(run.output, want, "the RSET must never be answered");
}

#[test]
fn starttls_error_rows() {
    let run = chunks(submission(), &[E, "STARTTLS now\r\n"]);
    assert!(
        run.output.ends_with("501 5.5.4 Syntax: STARTTLS\r\n"),
        "{}",
        run.output
    );
    let run = chunks(submission(), &[E, "STARTTLS\r\n", E, "STARTTLS\r\n"]);
    assert!(
        run.output.ends_with("503 5.5.1 TLS already active\r\n"),
        "{}",
        run.output
    );
    let run = chunks(
        ConnInfo {
            tls_active: true,
            ..ConnInfo::default()
        },
        &["STARTTLS\r\n"],
    );
    assert!(
        run.output.ends_with("503 5.5.1 TLS already active\r\n"),
        "{}",
        run.output
    );
    let run = chunks(ConnInfo::default(), &["STARTTLS\r\n"]);
    assert!(
        run.output.ends_with("502 5.5.1 STARTTLS not available\r\n"),
        "{}",
        run.output
    );
}

#[test]
fn auth_before_tls_is_530_and_mail_before_auth_is_530() {
    let run = chunks(
        submission(),
        &[
            E,
            &format!("AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.test>\r\n"),
        ],
    );
    assert!(
        run.output.ends_with(
            "530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Authentication required\r\n"
        ),
        "{}",
        run.output
    );
}

/// A submission session after STARTTLS and a second EHLO.
fn after_tls(rest: &str) -> Run {
    chunks(submission(), &[E, "STARTTLS\r\n", &format!("{E}{rest}")])
}

fn tail(run: &Run) -> String {
    let marker = "250 HELP\r\n";
    run.output
        .rsplit_once(marker)
        .map(|(_, t)| t.to_owned())
        .unwrap_or_default()
}

#[test]
fn auth_plain_with_initial_response_then_mail() {
    let run = after_tls(&format!(
        "AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.test>\r\nAUTH PLAIN {PLAIN_OK}\r\n"
    ));
    assert_eq!(
        tail(&run),
        "235 2.7.0 Authentication successful\r\n250 2.1.0 Sender OK\r\n503 5.5.1 Already authenticated\r\n"
    );
}

#[test]
fn auth_plain_without_initial_response() {
    let run = after_tls(&format!("AUTH PLAIN\r\n{PLAIN_OK}\r\n"));
    assert_eq!(
        tail(&run),
        "334 \r\n235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn auth_login_two_steps() {
    // "alice" / "secret"
    let run = after_tls("AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n");
    assert_eq!(
        tail(&run),
        "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
    );
    let run = after_tls("AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n");
    assert_eq!(
        tail(&run),
        "334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn auth_error_rows() {
    let run = after_tls(&format!(
        "AUTH PLAIN {PLAIN_BAD}\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN !!notbase64\r\nAUTH\r\n"
    ));
    assert_eq!(
        tail(&run),
        "535 5.7.8 Authentication credentials invalid\r\n504 5.5.4 Unrecognized authentication type\r\n334 \r\n501 5.0.0 Authentication cancelled\r\n501 5.5.2 Cannot decode response\r\n501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
    );
}

#[test]
fn auth_inside_a_transaction_is_503() {
    let conn = ConnInfo {
        auth_offered: true,
        ..ConnInfo::default()
    };
    let run = chunks(
        conn,
        &[
            E,
            &format!("MAIL FROM:<a@b.test>\r\nAUTH PLAIN {PLAIN_OK}\r\n"),
        ],
    );
    assert!(
        run.output.ends_with(
            "250 2.1.0 Sender OK\r\n503 5.5.1 AUTH not allowed during a mail transaction\r\n"
        ),
        "{}",
        run.output
    );
}

#[test]
fn three_auth_failures_close_with_421() {
    let run = after_tls(&format!("AUTH PLAIN {PLAIN_BAD}\r\n").repeat(4));
    assert_eq!(
        tail(&run),
        "535 5.7.8 Authentication credentials invalid\r\n".repeat(3)
            + "421 4.7.0 Too many authentication failures\r\n"
    );
    assert!(run.closed);
}

#[test]
fn auth_not_offered_is_502() {
    let run = chunks(
        ConnInfo::default(),
        &[E, &format!("AUTH PLAIN {PLAIN_OK}\r\n")],
    );
    assert!(
        run.output
            .ends_with("502 5.5.1 Command not implemented\r\n"),
        "{}",
        run.output
    );
}

#[test]
fn mail_auth_parameter_is_accepted() {
    let run = after_tls(&format!(
        "AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.test> AUTH=<>\r\n"
    ));
    assert!(
        tail(&run).ends_with("250 2.1.0 Sender OK\r\n"),
        "{}",
        run.output
    );
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn scram_exchange_in_four_lines() {
    // The sim answers with nonce "S", salt "salt", 4096 rounds, and takes
    // the octets "proof" as the right proof (it has no crypto).
    let first = b64("n,,n=alice,r=C1");
    let server_first = "r=C1S,s=c2FsdA==,i=4096";
    let last = b64("c=biws,r=C1S,p=cHJvb2Y=");
    let run = after_tls(&format!(
        "AUTH SCRAM-SHA-256 {first}\r\n{last}\r\n\r\nMAIL FROM:<a@b.test>\r\n"
    ));
    assert_eq!(
        tail(&run),
        format!(
            "334 {}\r\n334 {}\r\n235 2.7.0 Authentication successful\r\n250 2.1.0 Sender OK\r\n",
            b64(server_first),
            b64("v=c2ln")
        )
    );
    // Without an initial response: an empty challenge first.
    let run = after_tls(&format!("AUTH scram-sha-256\r\n{first}\r\n{last}\r\n\r\n"));
    assert!(
        tail(&run).starts_with("334 \r\n334 ")
            && tail(&run).ends_with("235 2.7.0 Authentication successful\r\n"),
        "{}",
        run.output
    );
}

#[test]
fn scram_refusals() {
    let first = b64("n,,n=alice,r=C1");
    // A wrong proof; another nonce; channel binding asked for; an answer
    // to the signature that is not empty; cancelled half-way.
    let wrong = b64("c=biws,r=C1S,p=d3Jvbmc=");
    let other_nonce = b64("c=biws,r=C2S,p=cHJvb2Y=");
    let plus = b64("p=tls-unique,,n=alice,r=C1");
    let right = b64("c=biws,r=C1S,p=cHJvb2Y=");
    let run = after_tls(&format!(
        "AUTH SCRAM-SHA-256 {first}\r\n{wrong}\r\nAUTH SCRAM-SHA-256 {first}\r\n{other_nonce}\r\nAUTH SCRAM-SHA-256 {plus}\r\nAUTH SCRAM-SHA-256 {first}\r\n{right}\r\n{}\r\nAUTH SCRAM-SHA-256 {first}\r\n*\r\nMAIL FROM:<a@b.test>\r\n",
        b64("x")
    ));
    let t = tail(&run);
    let codes: Vec<&str> = t.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        [
            "334", "535", "334", "501", "501", "334", "334", "501", "334", "501", "530"
        ],
        "{t}"
    );
}

#[test]
fn requiretls_is_offered_and_taken_only_over_tls() {
    // Before TLS: not in EHLO (the first reply), and MAIL with it is 555.
    let conn = ConnInfo {
        starttls_available: true,
        ..ConnInfo::default()
    };
    let run = chunks(conn.clone(), &[E, "MAIL FROM:<a@b.test> REQUIRETLS\r\n"]);
    assert!(!run.output.contains("REQUIRETLS\r\n250"), "{}", run.output);
    assert!(
        run.output
            .ends_with("555 5.5.4 Unsupported parameter REQUIRETLS\r\n"),
        "{}",
        run.output
    );
    // After TLS: offered, and taken (twice is a syntax error).
    let run = chunks(
        conn,
        &[
            E,
            "STARTTLS\r\n",
            &format!(
                "{E}MAIL FROM:<a@b.test> REQUIRETLS\r\nRSET\r\nMAIL FROM:<a@b.test> REQUIRETLS REQUIRETLS\r\n"
            ),
        ],
    );
    assert!(
        run.output
            .contains("250-DSN\r\n250-REQUIRETLS\r\n250 HELP\r\n"),
        "{}",
        run.output
    );
    let tail = run.output.rsplit_once("250 HELP\r\n").map(|(_, t)| t);
    assert_eq!(
        tail,
        Some(
            "250 2.1.0 Sender OK\r\n250 2.0.0 Ok\r\n501 5.5.4 Syntax: bad value or repeated parameter REQUIRETLS\r\n"
        )
    );
}
