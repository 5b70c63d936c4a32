//! Test support: the real `postel` binary started on a loopback port with a
//! fresh data folder, and a minimal line-oriented SMTP client that shows the
//! whole transcript when an assertion fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_postel");
pub(crate) const HOST: &str = "mx.test";

/// Runs the `postel` binary with these arguments, to its end.
pub(crate) fn postel(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run postel {args:?}: {e}"))
}

/// A path as a test argument (temp paths are UTF-8).
pub(crate) fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A fresh, empty folder under the system temp dir.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("postel-it-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// A running `postel serve`; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// Every listener by kind: "smtp", "submission", "smtps".
    pub(crate) addrs: std::collections::HashMap<String, SocketAddr>,
    pub(crate) data_dir: PathBuf,
    pub(crate) _log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the server with a config file body (may be empty) and extra flags.
    pub(crate) fn start(config: &str, extra: &[&str]) -> Server {
        Server::start_in(&temp_dir("data"), config, extra)
    }

    /// Starts the server on an existing data folder.
    pub(crate) fn start_in(data_dir: &Path, config: &str, extra: &[&str]) -> Server {
        Server::spawn(Command::new(BIN), data_dir, config, extra)
    }

    /// Starts the server inside the network namespace `ns`.
    pub(crate) fn start_in_netns(ns: &str, config: &str) -> Server {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, BIN]);
        Server::spawn(command, &temp_dir("data"), config, &[])
    }

    fn spawn(mut command: Command, data_dir: &Path, config: &str, extra: &[&str]) -> Server {
        let cfg = data_dir.join("test-config.toml");
        std::fs::write(&cfg, config).expect("write config");
        let mut child = command
            .args([
                "serve",
                "--smtp",
                "127.0.0.1:0",
                "--hostname",
                HOST,
                "--data-dir",
            ])
            .arg(data_dir)
            .arg("--config")
            .arg(&cfg)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn postel");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining even when nobody listens, so the server never
            // blocks on a full stderr pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let mut addrs = std::collections::HashMap::new();
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "postel did not start listening; its log:\n{}",
                        seen.join("\n")
                    );
                }
            };
            let field = |name: &str| {
                line.split(&format!("{name}="))
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .map(|v| v.trim_matches('"').to_owned())
            };
            if line.contains("listening for SMTP") {
                let addr = field("addr").expect("addr").parse().expect("socket addr");
                addrs.insert(field("kind").expect("kind"), addr);
            }
            if line.contains("listening for HTTP") {
                let addr = field("addr").expect("addr").parse().expect("socket addr");
                addrs.insert("web".to_owned(), addr);
            }
            if line.contains("ready") && !addrs.is_empty() {
                let addr = addrs
                    .get("smtp")
                    .or_else(|| addrs.values().next())
                    .copied()
                    .expect("a listener");
                return Server {
                    child,
                    addr,
                    addrs,
                    data_dir: data_dir.to_owned(),
                    _log: rx,
                };
            }
            seen.push(line);
        }
    }

    pub(crate) fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `postel messages list --json`, parsed.
    pub(crate) fn messages(&self) -> Vec<serde_json::Value> {
        list_messages(&self.data_dir)
    }

    /// `postel messages show --raw ID`.
    pub(crate) fn raw(&self, id: &str) -> Vec<u8> {
        let out = postel(&[
            "messages",
            "show",
            "--raw",
            id,
            "--data-dir",
            arg(&self.data_dir),
        ]);
        assert!(
            out.status.success(),
            "messages show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Sends a signal to the server process.
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Waits for the process to exit, up to `secs`; returns its success.
    pub(crate) fn wait_exit(&mut self, secs: u64) -> Option<bool> {
        for _ in 0..secs * 20 {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn list_messages(data_dir: &Path) -> Vec<serde_json::Value> {
    let out = postel(&["messages", "list", "--json", "--data-dir", arg(data_dir)]);
    assert!(
        out.status.success(),
        "messages list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

/// The stored content without the first (our) `Received:` header.
pub(crate) fn strip_trace(raw: &[u8]) -> &[u8] {
    assert!(
        raw.starts_with(b"Received: "),
        "no trace header first: {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    let mut i = 0;
    loop {
        let nl = raw[i..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("header end")
            + i;
        i = nl + 1;
        if raw.get(i) != Some(&b'\t') && raw.get(i) != Some(&b' ') {
            return &raw[i..];
        }
    }
}

/// A blocking SMTP client that records the transcript.
pub(crate) struct Client {
    stream: BufReader<TcpStream>,
    pub(crate) transcript: String,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client {
            stream: BufReader::new(stream),
            transcript: String::new(),
        }
    }

    /// Sends raw bytes as they are.
    pub(crate) fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let b = bytes.as_ref();
        self.transcript.push_str(&format!(
            "C: {:?}\n",
            String::from_utf8_lossy(&b[..b.len().min(300)])
        ));
        self.stream.get_mut().write_all(b).expect("write");
    }

    /// Reads one whole reply (all its lines), as sent.
    pub(crate) fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.stream.read_line(&mut line) {
                Ok(0) => panic!(
                    "connection closed while reading a reply\n{}",
                    self.transcript
                ),
                Ok(_) => {}
                Err(e) => panic!("reading a reply: {e}\n{}", self.transcript),
            }
            self.transcript.push_str(&format!("S: {line:?}\n"));
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Reads one reply and asserts it equals `want` (CRLF added).
    #[track_caller]
    pub(crate) fn expect(&mut self, want: &str) {
        let got = self.reply();
        assert_eq!(
            got,
            format!("{want}\r\n"),
            "\ntranscript:\n{}",
            self.transcript
        );
    }

    /// Reads one reply and asserts it starts with `prefix`; returns it.
    #[track_caller]
    pub(crate) fn expect_start(&mut self, prefix: &str) -> String {
        let got = self.reply();
        assert!(
            got.starts_with(prefix),
            "expected {prefix:?}, got {got:?}\ntranscript:\n{}",
            self.transcript
        );
        got
    }

    /// Sends a command line and asserts the reply starts with `prefix`;
    /// returns it.
    #[track_caller]
    pub(crate) fn expect_start_after(&mut self, line: &str, prefix: &str) -> String {
        self.send(format!("{line}\r\n"));
        self.expect_start(prefix)
    }

    /// Sends a command line and asserts the reply.
    #[track_caller]
    pub(crate) fn cmd(&mut self, line: &str, want: &str) {
        self.send(format!("{line}\r\n"));
        self.expect(want);
    }

    /// Reads the greeting and says EHLO.
    pub(crate) fn greet(&mut self) {
        self.expect_start("220 ");
        self.send("EHLO client.test\r\n");
        self.expect_start("250-");
    }

    /// A whole transaction; returns the queue id from the final 250.
    #[track_caller]
    pub(crate) fn mail(&mut self, from: &str, to: &[&str], content: &[u8]) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), "250 2.1.0 Sender OK");
        for t in to {
            self.cmd(&format!("RCPT TO:<{t}>"), "250 2.1.5 Recipient OK");
        }
        self.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
        self.send(content);
        self.send(".\r\n");
        queued_id(&self.expect_start("250 2.0.0 Ok: queued as "))
    }

    /// Returns true if and only if the server has closed the connection
    /// (waiting up to the read timeout for it).
    pub(crate) fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
    }

    pub(crate) fn stream(&mut self) -> &mut TcpStream {
        self.stream.get_mut()
    }
}

/// The id in `250 2.0.0 Ok: queued as ID`.
pub(crate) fn queued_id(reply: &str) -> String {
    reply.trim_end().rsplit(' ').next().expect("id").to_owned()
}

/// An HTTP response, as read by [`http`].
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    /// Header names in lowercase.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), with
/// extra header lines such as `Authorization: Bearer x`. Small on purpose:
/// the bodies here are never chunked by the client, and the server's
/// chunked replies are decoded.
pub(crate) fn http(method: &str, addr: SocketAddr, path: &str, headers: &[&str]) -> HttpResponse {
    http_with_body(method, addr, path, headers, b"")
}

/// As [`http`], with a request body (its Content-Length is added).
pub(crate) fn http_with_body(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..nl]).expect("hex").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
}
