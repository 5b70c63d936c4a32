//! Real clients no one here wrote: Python's smtplib, curl, swaks and the
//! lettre crate. Each message is read back from the store and compared
//! byte for byte with what the client sent (the trace header aside).

use std::process::Command;

use crate::support::{Server, strip_trace, temp_dir};

/// smtplib's `send_message` of a multi-recipient, 8-bit, UTF-8 message. The
/// script also writes the exact content smtplib put on the wire (its
/// flattening, CRLF line ends, before dot-stuffing), to compare.
#[test]
fn python_smtplib_send_message_utf8_multi_recipient() {
    let s = Server::start("", &[]);
    let dir = temp_dir("smtplib");
    let expected = dir.join("expected.eml");
    let script = r#"
import smtplib, sys, io, email.generator
from email.message import EmailMessage
port, out = int(sys.argv[1]), sys.argv[2]
m = EmailMessage()
m["From"] = "Jöran <jöran@exämple.test>"
m["To"] = "a@d.test, b@d.test"
m["Cc"] = "ü@dömäin.test"
m["Subject"] = "Grüße aus Köln ✓"
m.set_content("Zeile eins: äöü\n.leading dot line\n..two dots\nlast\n", cte="8bit")
with smtplib.SMTP("127.0.0.1", port) as s:
    refused = s.send_message(m)
    assert refused == {}, refused
# What smtplib flattened and sent (see smtplib.SMTP.send_message / data).
b = io.BytesIO()
email.generator.BytesGenerator(b, policy=m.policy.clone(utf8=True)).flatten(m, linesep="\r\n")
open(out, "wb").write(b.getvalue())
"#;
    let st = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(s.addr.port().to_string())
        .arg(&expected)
        .status()
        .expect("python3");
    assert!(st.success(), "smtplib failed");
    let all = s.messages();
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(m["from"], "jöran@exämple.test");
    assert_eq!(
        m["to"],
        serde_json::json!(["a@d.test", "b@d.test", "ü@dömäin.test"])
    );
    assert_eq!(m["subject"], "Grüße aus Köln ✓");
    assert_eq!(m["protocol"], "UTF8SMTP");
    let raw = s.raw(m["id"].as_str().expect("id"));
    assert_eq!(
        strip_trace(&raw),
        std::fs::read(&expected).expect("expected").as_slice()
    );
}

#[test]
fn curl_uploads_a_file() {
    let s = Server::start("", &[]);
    let dir = temp_dir("curl");
    let file = dir.join("mail.eml");
    let content = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: via curl\r\n\r\nHello from curl.\r\n.a line starting with a dot\r\n\r\nbye\r\n";
    std::fs::write(&file, content).expect("write");
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .arg(format!("smtp://127.0.0.1:{}/client.test", s.addr.port()))
        .args([
            "--mail-from",
            "a@b.test",
            "--mail-rcpt",
            "c@d.test",
            "--mail-rcpt",
            "e@f.test",
            "--upload-file",
        ])
        .arg(&file)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = s.messages();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["helo"], "client.test");
    assert_eq!(all[0]["to"], serde_json::json!(["c@d.test", "e@f.test"]));
    assert_eq!(
        strip_trace(&s.raw(all[0]["id"].as_str().expect("id"))),
        &content[..]
    );
}

#[test]
fn swaks_sends_with_pipelining() {
    let s = Server::start("", &[]);
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", s.addr.port())])
        .args([
            "--from",
            "a@b.test",
            "--to",
            "c@d.test,e@d.test",
            "--helo",
            "swaks.test",
            "--pipeline",
        ])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "line one\n.dot line\n",
        ])
        .output()
        .expect("swaks (installed by scripts/test.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("<-  250 2.0.0 Ok: queued as"), "{text}");
    let all = s.messages();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["subject"], "via swaks");
    let raw = s.raw(all[0]["id"].as_str().expect("id"));
    let body = String::from_utf8_lossy(strip_trace(&raw)).into_owned();
    // swaks dot-stuffs ".dot line" on the wire; the store has it unstuffed,
    // followed only by the blank lines swaks adds.
    let tail = body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .expect("header/body separator");
    assert_eq!(
        tail.trim_end_matches("\r\n"),
        "line one\r\n.dot line",
        "{body:?}"
    );
}

#[test]
fn lettre_sends_and_the_store_has_its_exact_bytes() {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::{Message, SmtpTransport, Transport};

    let s = Server::start("", &[]);
    let email = Message::builder()
        .from("Sender <sender@b.test>".parse::<Mailbox>().expect("from"))
        .to("Rcpt <rcpt@d.test>".parse::<Mailbox>().expect("to"))
        .subject("via lettre")
        .header(ContentType::TEXT_PLAIN)
        .body(String::from(
            "Hello from lettre.\r\n.starts with a dot\r\nend\r\n",
        ))
        .expect("message");
    let mailer = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(s.addr.port())
        .build();
    let resp = mailer.send(&email).expect("lettre send");
    assert_eq!(resp.code().to_string(), "250");
    let all = s.messages();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["from"], "sender@b.test");
    let stored = s.raw(all[0]["id"].as_str().expect("id"));
    // lettre sends the formatted message, then always "\r\n.\r\n" (see
    // lettre's SmtpConnection::message), so the content ends with one more CRLF.
    let mut sent = email.formatted();
    sent.extend_from_slice(b"\r\n");
    assert_eq!(strip_trace(&stored), sent.as_slice());
}
