//! The Dovecot of this test binary (`dovecot-lmtpd` and `dovecot-imapd`),
//! started once at first use and stopped with the binary by a watchdog:
//! LMTP on TCP and on a local socket, IMAP for reading mail back. Its
//! users are in a passwd-file (`alice`, `bob` and `carol` of `lmtp.test`
//! and `maildir.test`, password `secret`); any other is unknown to it.
//! Mail lives in `<root>/<domain>/<local>` as Maildir.
//!
//! Dovecot refuses to touch mail as root, so when the tests run as root
//! its mail user is `nobody`.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::processes::watched;
use crate::support::temp_dir;
use crate::tools::free_port;

pub(crate) struct Dovecot {
    pub(crate) lmtp_port: u16,
    pub(crate) imap_port: u16,
    /// LMTP on a local socket.
    pub(crate) lmtp_socket: PathBuf,
    /// Where the Maildirs are: `<root>/<domain>/<local>`.
    pub(crate) mail_root: PathBuf,
    /// The user mail belongs to: `(uid, gid)`.
    pub(crate) owner: (u32, u32),
    _watchdog: Mutex<Child>,
}

fn id(flag: &str) -> u32 {
    let o = Command::new("id").arg(flag).output().expect("id");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("a number")
}

/// The one Dovecot, started at first use.
pub(crate) fn dovecot() -> &'static Dovecot {
    static D: OnceLock<Dovecot> = OnceLock::new();
    D.get_or_init(start)
}

fn start() -> Dovecot {
    let dir = temp_dir("dovecot");
    // A short base_dir: local socket paths are limited to 108 octets.
    let base = PathBuf::from(format!("/tmp/pdv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("base_dir");
    let mail_root = dir.join("mail");
    std::fs::create_dir_all(&mail_root).expect("mail root");
    let owner = if id("-u") == 0 {
        (65534, 65534)
    } else {
        (id("-u"), id("-g"))
    };
    let status = Command::new("chown")
        .arg(format!("{}:{}", owner.0, owner.1))
        .arg(&mail_root)
        .status()
        .expect("chown");
    assert!(status.success());
    let users: String = ["lmtp.test", "maildir.test"]
        .iter()
        .flat_map(|d| ["alice", "bob", "carol"].map(|u| format!("{u}@{d}:{{PLAIN}}secret::::::\n")))
        .collect();
    let passwd = dir.join("users");
    std::fs::write(&passwd, users).expect("users");
    let (lmtp_port, imap_port) = (free_port(), free_port());
    let conf = format!(
        r#"base_dir = {base}
state_dir = {dir}/state
log_path = {dir}/dovecot.log
instance_name = postel-test-{pid}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{mail}/%d/%n
first_valid_uid = 1
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
  default_fields = home={dir}/home/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"#,
        base = base.display(),
        dir = dir.display(),
        pid = std::process::id(),
        mail = mail_root.display(),
        uid = owner.0,
        gid = owner.1,
        passwd = passwd.display(),
    );
    std::fs::create_dir_all(dir.join("state")).expect("state");
    let conf_path = dir.join("dovecot.conf");
    std::fs::write(&conf_path, conf).expect("dovecot.conf");
    let dovecot = ["/usr/sbin/dovecot", "/usr/bin/dovecot"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("dovecot (dovecot-lmtpd, dovecot-imapd; scripts/test.sh installs them)");
    let watchdog = watched(&[(
        &format!("'{dovecot}' -F -c '{}'", conf_path.display()),
        None,
    )]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", lmtp_port)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", imap_port)).is_err()
    {
        assert!(
            Instant::now() < deadline,
            "dovecot did not start: {}",
            std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Dovecot {
        lmtp_port,
        imap_port,
        lmtp_socket: base.join("lmtp"),
        mail_root,
        owner,
        _watchdog: watchdog,
    }
}

impl Dovecot {
    /// Every message in `user`'s INBOX, read over IMAP with Python's
    /// imaplib, oldest first, as the bytes IMAP gave.
    pub(crate) fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        let script = format!(
            r#"
import imaplib, sys, base64
m = imaplib.IMAP4("127.0.0.1", {port})
m.login("{user}", "secret")
m.select("INBOX", readonly=True)
_, ids = m.search(None, "ALL")
for i in ids[0].split():
    _, data = m.fetch(i, "(BODY.PEEK[])")
    print(base64.b64encode(data[0][1]).decode())
m.logout()
"#,
            port = self.imap_port
        );
        let o = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        assert!(
            o.status.success(),
            "imaplib: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        use base64::Engine as _;
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                base64::engine::general_purpose::STANDARD
                    .decode(l)
                    .expect("base64")
            })
            .collect()
    }
}

/// `raw` without the trace fields at its top (`Return-Path:`,
/// `Delivered-To:`, `Received:`, with their folded lines).
pub(crate) fn without_trace(raw: &[u8]) -> &[u8] {
    let mut i = 0;
    loop {
        let line_end = raw[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| i + p + 1);
        let line = &raw[i..line_end];
        let is_trace = [&b"return-path:"[..], b"delivered-to:", b"received:"]
            .iter()
            .any(|h| line.len() >= h.len() && line[..h.len()].eq_ignore_ascii_case(h));
        let folded = i > 0 && matches!(line.first(), Some(b' ' | b'\t'));
        if !(is_trace || folded) || line_end == raw.len() {
            return &raw[i..];
        }
        i = line_end;
    }
}
