//! STARTTLS, implicit TLS and AUTH against the real binary, with real
//! clients: Python's smtplib and ssl, curl, swaks and openssl s_client.

use std::process::{Command, Stdio};

use crate::support::{BIN, Server, strip_trace, temp_dir};

/// smtp with STARTTLS, submission and smtps, a self-signed certificate, and
/// the user alice / secret.
pub(crate) fn tls_server(extra_config: &str) -> Server {
    let dir = temp_dir("tls");
    add_user(&dir, "alice", "secret");
    let config = format!(
        "[tls]\nself_signed = true\n[submission]\nlisten = [\"127.0.0.1:0\"]\n[smtps]\nlisten = [\"127.0.0.1:0\"]\n{extra_config}"
    );
    Server::start_in(&dir, &config, &[])
}

pub(crate) fn add_user(dir: &std::path::Path, name: &str, password: &str) {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(["users", "add", name, "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("postel users add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

fn port(s: &Server, kind: &str) -> String {
    s.addrs[kind].port().to_string()
}

/// Runs a Python script with the ports as argv[1..]; asserts it succeeds and
/// returns its stdout.
fn python(script: &str, args: &[String]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

const PY_PRELUDE: &str = r#"
import smtplib, ssl, socket, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def reply(f):
    lines = []
    while True:
        l = f.readline().decode()
        assert l, "connection closed"
        lines.append(l)
        if l[3:4] != "-":
            return "".join(lines)
"#;

#[test]
fn starttls_injection_is_never_answered() {
    let s = tls_server("");
    let script = format!(
        "{PY_PRELUDE}
sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = sock.makefile('rb')
assert reply(f).startswith('220 ')
sock.sendall(b'EHLO c.test\\r\\n')
assert '250-STARTTLS' in reply(f)
# CVE-2011-0411: a command pipelined in plaintext behind STARTTLS.
sock.sendall(b'STARTTLS\\r\\nRSET\\r\\nMAIL FROM:<evil@x.test>\\r\\n')
assert reply(f) == '220 2.0.0 Ready to start TLS\\r\\n'
# Had the server answered the RSET in plaintext, the handshake would fail here.
tls = ctx.wrap_socket(sock)
g = tls.makefile('rb')
tls.sendall(b'MAIL FROM:<a@b.test>\\r\\n')
first = reply(g)
assert first == '503 5.5.1 Send EHLO/HELO first\\r\\n', first
tls.sendall(b'EHLO c.test\\r\\n')
ehlo = reply(g)
assert '250-STARTTLS' not in ehlo and ehlo.startswith('250-'), ehlo
tls.sendall(b'STARTTLS\\r\\n')
print(reply(g), end='')
"
    );
    let out = python(&script, &[port(&s, "submission")]);
    assert_eq!(out, "503 5.5.1 TLS already active\r\n");
}

#[test]
fn submission_rows_over_starttls() {
    let s = tls_server("");
    let script = format!(
        "{PY_PRELUDE}
with smtplib.SMTP('127.0.0.1', int(sys.argv[1])) as c:
    c.ehlo('c.test')
    assert not c.has_extn('auth'), 'AUTH must not be offered before TLS'
    print(c.docmd('AUTH PLAIN AGFsaWNlAHNlY3JldA=='))
    print(c.docmd('MAIL FROM:<alice@x.test>'))
    c.starttls(context=ctx)
    c.ehlo('c.test')
    assert c.has_extn('auth') and 'PLAIN' in c.esmtp_features['auth'], c.esmtp_features
    print(c.docmd('MAIL FROM:<alice@x.test>'))
    print(c.docmd('AUTH CRAM-MD5'))
    print(c.docmd('AUTH PLAIN'))
    print(c.docmd('*'))
    print(c.docmd('AUTH PLAIN !!!'))
    c.login('alice', 'secret')
    print(c.docmd('AUTH PLAIN AGFsaWNlAHNlY3JldA=='))
    print(c.sendmail('alice@x.test', ['anyone@far-away.test'], b'Subject: submitted\\r\\n\\r\\nhi\\r\\n'))
"
    );
    let out = python(&script, &[port(&s, "submission")]);
    assert_eq!(
        out,
        "(530, b'5.7.0 Must issue a STARTTLS command first')\n\
         (530, b'5.7.0 Authentication required')\n\
         (530, b'5.7.0 Authentication required')\n\
         (504, b'5.5.4 Unrecognized authentication type')\n\
         (334, b'')\n\
         (501, b'5.0.0 Authentication cancelled')\n\
         (501, b'5.5.2 Cannot decode response')\n\
         (503, b'5.5.1 Already authenticated')\n\
         {}\n"
    );
    let m = &s.messages()[0];
    assert_eq!(m["auth_user"], "alice");
    assert_eq!(m["protocol"], "ESMTPSA");
    assert!(m["tls"].as_str().unwrap_or("").starts_with("TLSv1_"), "{m}");
    let raw = s.raw(m["id"].as_str().expect("id"));
    assert!(String::from_utf8_lossy(&raw).contains("with ESMTPSA id"));
    assert_eq!(strip_trace(&raw), b"Subject: submitted\r\n\r\nhi\r\n");
}

#[test]
fn smtps_implicit_tls_with_smtplib_and_curl() {
    let s = tls_server("");
    let script = format!(
        "{PY_PRELUDE}
with smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ctx) as c:
    code, text = c.ehlo('c.test')
    assert b'STARTTLS' not in text and b'AUTH PLAIN LOGIN' in text, text
    print(c.docmd('STARTTLS'))
    c.login('alice', 'secret')
    print(c.sendmail('alice@x.test', ['bob@far.test'], b'Subject: smtps\\r\\n\\r\\nx\\r\\n'))
"
    );
    let out = python(&script, &[port(&s, "smtps")]);
    assert_eq!(out, "(503, b'5.5.1 TLS already active')\n{}\n");

    let dir = temp_dir("curl-tls");
    let file = dir.join("m.eml");
    std::fs::write(&file, "Subject: curl\r\n\r\nvia curl\r\n").expect("write");
    // curl with TLS required (implicit on smtps, STARTTLS on submission).
    let curl = |url: &str, user: &str| {
        Command::new("curl")
            .args(["-sS", "-k", "--ssl-reqd", "--max-time", "20", "--url", url])
            .args(["--user", user, "--mail-from", "alice@x.test"])
            .args(["--mail-rcpt", "carol@far.test", "-T"])
            .arg(&file)
            .output()
            .expect("curl")
    };
    let smtps = format!("smtps://127.0.0.1:{}", port(&s, "smtps"));
    let submission = format!("smtp://127.0.0.1:{}", port(&s, "submission"));
    for url in [&smtps, &submission] {
        let out = curl(url, "alice:secret");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all = s.messages();
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|m| m["auth_user"] == "alice" && m["protocol"] == "ESMTPSA"),
        "{all:?}"
    );
    // curl with a wrong password is refused.
    let out = curl(&smtps, "alice:nope");
    assert!(!out.status.success());
    assert_eq!(s.messages().len(), 3);
}

#[test]
fn swaks_tls_auth_and_openssl_s_client() {
    let s = tls_server("");
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", port(&s, "submission")),
            "--tls",
        ])
        .args([
            "--auth",
            "LOGIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "secret",
        ])
        .args([
            "--from",
            "alice@x.test",
            "--to",
            "dave@far.test",
            "--header",
            "Subject: swaks tls",
        ])
        .output()
        .expect("swaks");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("<~  235 2.7.0 Authentication successful"),
        "{text}"
    );
    assert_eq!(s.messages()[0]["subject"], "swaks tls");

    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-starttls",
            "smtp",
            "-connect",
            &format!("127.0.0.1:{}", port(&s, "smtp")),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"EHLO c.test\r\nQUIT\r\n").expect("write");
    }
    let out = child.wait_with_output().expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("250 HELP") && text.contains("221 2.0.0"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("STARTTLS"),
        "STARTTLS is not offered again inside TLS: {text}"
    );
}

#[test]
fn bad_credentials_same_reply_for_unknown_user_and_lockout_at_three() {
    // AUTH in plaintext on the smtp listener, to test the backend alone.
    let s = tls_server("[smtp]\nauth = true\nrequire_tls = false\n");
    let mut c = s.connect();
    c.greet();
    // \0alice\0wrong and \0nobody\0secret
    c.cmd(
        "AUTH PLAIN AGFsaWNlAHdyb25n",
        "535 5.7.8 Authentication credentials invalid",
    );
    c.cmd(
        "AUTH PLAIN AG5vYm9keQBzZWNyZXQ=",
        "535 5.7.8 Authentication credentials invalid",
    );
    c.send("AUTH PLAIN AGFsaWNlAHdyb25n\r\n");
    c.expect("535 5.7.8 Authentication credentials invalid");
    c.expect("421 4.7.0 Too many authentication failures");
    assert!(c.is_closed());
    // A new session can still log in (the per-address cap is higher).
    let mut c = s.connect();
    c.greet();
    c.cmd(
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        "235 2.7.0 Authentication successful",
    );
}

#[test]
fn port_25_relay_needs_auth() {
    let s = tls_server(
        "[smtp]\nauth = true\nrequire_tls = false\n[policy]\ndomains = [\"mine.test\"]\n",
    );
    let mut c = s.connect();
    c.greet();
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<x@elsewhere.test>", "554 5.7.1 Relaying denied");
    c.cmd("RCPT TO:<x@mine.test>", "250 2.1.5 Recipient OK");
    c.cmd("RSET", "250 2.0.0 Ok");
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6");
    c.cmd("YWxpY2U=", "334 UGFzc3dvcmQ6");
    c.cmd("c2VjcmV0", "235 2.7.0 Authentication successful");
    c.cmd("MAIL FROM:<alice@mine.test> AUTH=<>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<x@elsewhere.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: relayed\r\n\r\nx\r\n.\r\n");
    c.expect_start("250 2.0.0 Ok: queued as ");
    let m = &s.messages()[0];
    assert_eq!(m["auth_user"], "alice");
    assert_eq!(m["protocol"], "ESMTPA");
}

/// Makes a self-signed certificate with openssl for `cn`.
fn openssl_cert(dir: &std::path::Path, cn: &str) {
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl req");
    assert!(st.success());
}

/// The smtps listener and the HTTPS web listener serve the same
/// certificate, and both the renewed one after a SIGHUP.
#[test]
fn renewed_certificate_is_served_without_restart() {
    let dir = temp_dir("reload");
    openssl_cert(&dir, "first.test");
    let config = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[smtps]\nlisten = [\"127.0.0.1:0\"]\n[web]\nlisten = \"127.0.0.1:0\"\ntls = true\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let s = Server::start_in(&data, &config, &[]);
    let script = format!(
        "{PY_PRELUDE}
import hashlib
sock = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))))
print(hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest())
"
    );
    let der_sha = |pem: &std::path::Path| {
        let out = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(pem)
            .output()
            .expect("openssl x509");
        let out = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().expect("stdin").write_all(&out.stdout)?;
                c.wait_with_output()
            });
        String::from_utf8_lossy(&out.expect("sha256sum").stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let first = der_sha(&dir.join("cert.pem"));
    assert_eq!(python(&script, &[port(&s, "smtps")]).trim(), first);
    assert_eq!(python(&script, &[port(&s, "web")]).trim(), first);
    // The web side answers HTTPS, and nothing in the clear.
    let web = format!("127.0.0.1:{}", port(&s, "web"));
    let https = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            &format!("https://{web}/api/v1/messages"),
        ])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&https.stdout);
    assert!(
        https.status.success() && body.contains("\"messages\""),
        "{body}"
    );
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{web}/api/v1/messages"))
        .output()
        .expect("curl");
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "plain HTTP was answered"
    );
    openssl_cert(&dir, "second.test");
    let second = der_sha(&dir.join("cert.pem"));
    assert_ne!(first, second);
    s.signal("HUP");
    for kind in ["smtps", "web"] {
        let mut served = String::new();
        for _ in 0..50 {
            served = python(&script, &[port(&s, kind)]).trim().to_owned();
            if served == second {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(
            served, second,
            "{kind}: the renewed certificate was not served"
        );
    }
}

#[test]
fn lettre_submits_over_starttls_and_implicit_tls_with_auth() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};

    let s = tls_server("");
    // The self-signed certificate names the hostname and localhost; lettre
    // is told not to check it, as the Python clients here are.
    let params = || {
        TlsParameters::builder("localhost".to_owned())
            .dangerous_accept_invalid_certs(true)
            .build_rustls()
            .expect("tls parameters")
    };
    let cases = [
        ("submission", Tls::Required(params()), Mechanism::Plain),
        ("smtps", Tls::Wrapper(params()), Mechanism::Login),
    ];
    for (kind, tls, mechanism) in cases {
        let email = Message::builder()
            .from("alice@x.test".parse().expect("from"))
            .to("dave@far.test".parse().expect("to"))
            .subject(format!("lettre {kind}"))
            .body(String::from("over TLS\r\n"))
            .expect("message");
        let mailer = SmtpTransport::builder_dangerous("127.0.0.1")
            .port(s.addrs[kind].port())
            .tls(tls)
            .credentials(Credentials::new("alice".into(), "secret".into()))
            .authentication(vec![mechanism])
            .build();
        let resp = mailer.send(&email).expect("lettre send");
        assert_eq!(resp.code().to_string(), "250", "{kind}");
        let stored = s
            .messages()
            .into_iter()
            .find(|m| m["subject"] == format!("lettre {kind}"))
            .expect("stored");
        assert_eq!(stored["auth_user"], "alice", "{kind}");
        assert!(
            stored["tls"].as_str().expect("tls").starts_with("TLSv1_3"),
            "{kind}: {stored}"
        );
        let raw = s.raw(stored["id"].as_str().expect("id"));
        let mut sent = email.formatted();
        sent.extend_from_slice(b"\r\n");
        assert_eq!(strip_trace(&raw), sent.as_slice(), "{kind}");
        assert!(
            String::from_utf8_lossy(&raw).contains("with ESMTPSA id"),
            "{kind}"
        );
    }
}
