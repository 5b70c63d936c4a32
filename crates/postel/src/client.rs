//! A small SMTP client for `postel send` and `postel probe`: blocking, one
//! command at a time, printing the conversation as it goes, with STARTTLS
//! or implicit TLS (rustls, Mozilla's roots from `webpki-roots`).
//!
//! The certificate is always verified, and the outcome recorded; whether a
//! bad one ends the session is the caller's choice (`probe` goes on to
//! report it, `send` stops unless told `--insecure`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// How long to wait for a connection or a reply.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `s` with control characters shown as escapes: what a server sends must
/// not drive the terminal it is printed on.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One reply: the code and the text of each line (after `250-` / `250 `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code at the start of the first line, if any.
    pub(crate) fn enhanced(&self) -> Option<String> {
        let first = self.lines.first()?.split(' ').next()?;
        let parts: Vec<_> = first.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && matches!(parts[0], "2" | "4" | "5");
        ok.then(|| first.to_owned())
    }

    /// True if and only if the code is 2xx.
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The reply as one line: `550 5.1.1 text`.
    pub(crate) fn first_line(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map_or("", String::as_str)
        )
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Between the two, during a handshake.
    None,
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => s.read(buf),
            Io::None => Ok(0),
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.write(buf),
            Io::None => Err(std::io::Error::other("not connected")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
            Io::None => Ok(()),
        }
    }
}

/// What the TLS handshake showed.
#[derive(Debug, Clone)]
pub(crate) struct TlsInfo {
    /// `TLSv1_3`, ...
    pub(crate) version: String,
    /// The cipher suite.
    pub(crate) cipher: String,
    /// The certificate chain as sent, end entity first.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// Ok, or why the chain or name does not verify against Mozilla's roots.
    pub(crate) verified: Result<(), String>,
}

/// The chain a server sent, and whether it verified.
type Seen = (Vec<CertificateDer<'static>>, Result<(), String>);

/// Verifies like rustls' WebPKI verifier, records the outcome, and lets an
/// unverifiable certificate through when told to.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    accept_invalid: bool,
    seen: Mutex<Option<Seen>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let outcome = r.as_ref().map(|_| ()).map_err(ToString::to_string);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((chain, outcome));
        }
        match r {
            Ok(v) => Ok(v),
            Err(_) if self.accept_invalid => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Turns a reply into a one-line explanation, if it knows the code.
pub(crate) type Explainer = Box<dyn Fn(&Reply) -> Option<String>>;

/// An SMTP client connection.
pub(crate) struct Client {
    io: BufReader<Io>,
    host: String,
    /// Print the conversation.
    echo: bool,
    /// Called with each reply, to print an explanation under it.
    pub(crate) explain: Option<Explainer>,
    /// Replies from bytes (postel-proto's client decoder).
    decoder: postel_proto::client::ReplyDecoder,
    /// Replies decoded and not yet read.
    replies: std::collections::VecDeque<postel_proto::client::ServerReply>,
}

impl Client {
    /// Connects to `host:port`; with `implicit_tls`, the TLS handshake
    /// comes first (port 465).
    pub(crate) fn connect(
        host: &str,
        port: u16,
        implicit_tls: bool,
        accept_invalid: bool,
        echo: bool,
    ) -> anyhow::Result<(Client, Option<TlsInfo>)> {
        let addrs: Vec<_> = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(tcp) = stream else {
            bail!(
                "cannot connect to {host}:{port}: {}",
                last.map_or("no address".to_owned(), |e| e.to_string())
            );
        };
        tcp.set_read_timeout(Some(TIMEOUT))?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        if echo {
            println!("*  connected to {} ({host}:{port})", tcp.peer_addr()?);
        }
        let mut c = Client {
            io: BufReader::new(Io::Plain(tcp)),
            host: host.to_owned(),
            echo,
            explain: None,
            decoder: postel_proto::client::ReplyDecoder::default(),
            replies: std::collections::VecDeque::new(),
        };
        let info = if implicit_tls {
            Some(c.handshake(accept_invalid)?)
        } else {
            None
        };
        Ok((c, info))
    }

    /// Runs the TLS handshake on the connection as it is.
    pub(crate) fn handshake(&mut self, accept_invalid: bool) -> anyhow::Result<TlsInfo> {
        if !self.io.buffer().is_empty() || !self.replies.is_empty() || !self.decoder.is_idle() {
            bail!(
                "the server sent more after its reply to STARTTLS: refusing to go on (a STARTTLS injection?)"
            );
        }
        let Io::Plain(tcp) = std::mem::replace(self.io.get_mut(), Io::None) else {
            bail!("TLS is already active");
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let inner = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .context("cannot build the certificate verifier")?;
        let recorder = Arc::new(Recorder {
            inner,
            accept_invalid,
            seen: Mutex::new(None),
        });
        let config = ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        let name = ServerName::try_from(self.host.clone())
            .with_context(|| format!("{} is not a valid TLS server name", self.host))?;
        let conn = ClientConnection::new(Arc::new(config), name)?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                let why = recorder
                    .seen
                    .lock()
                    .ok()
                    .and_then(|s| s.as_ref().and_then(|(_, r)| r.clone().err()));
                bail!(
                    "TLS handshake failed: {}",
                    why.unwrap_or_else(|| e.to_string())
                );
            }
        }
        let (chain, verified) = recorder
            .seen
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .unwrap_or((Vec::new(), Err("no certificate".to_owned())));
        let info = TlsInfo {
            version: tls
                .conn
                .protocol_version()
                .map_or("?".to_owned(), |v| format!("{v:?}")),
            cipher: tls
                .conn
                .negotiated_cipher_suite()
                .map_or("?".to_owned(), |c| format!("{:?}", c.suite())),
            chain,
            verified,
        };
        if self.echo {
            println!("*  TLS: {} {}", info.version, info.cipher);
        }
        *self.io.get_mut() = Io::Tls(Box::new(tls));
        Ok(info)
    }

    /// True if and only if TLS is active.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.io.get_ref(), Io::Tls(_))
    }

    /// Reads one reply (all its lines), decoded by postel-proto's client
    /// decoder: the same bounds and grammar as delivery will use.
    pub(crate) fn read_reply(&mut self) -> anyhow::Result<Reply> {
        loop {
            if let Some(r) = self.replies.pop_front() {
                let reply = Reply {
                    code: r.code,
                    lines: r.lines,
                };
                if self.echo {
                    let last = reply.lines.len().saturating_sub(1);
                    for (i, line) in reply.lines.iter().enumerate() {
                        let sep = if i == last { ' ' } else { '-' };
                        println!("S: {}{sep}{}", reply.code, printable(line));
                    }
                    if let Some(text) = self.explain.as_ref().and_then(|f| f(&reply)) {
                        println!("   ({text})");
                    }
                }
                return Ok(reply);
            }
            let buf = self.io.fill_buf().context("reading the reply")?;
            if buf.is_empty() {
                bail!("the server closed the connection");
            }
            let mut decoded = Vec::new();
            let result = self.decoder.decode(buf, &mut decoded);
            let n = buf.len();
            self.io.consume(n);
            self.replies.extend(decoded);
            if let Err(e) = result {
                bail!("not an SMTP reply: {e}");
            }
        }
    }

    /// Sends one line (CRLF added); `shown` is what is printed instead,
    /// so that secrets stay off the screen.
    pub(crate) fn send_line(&mut self, line: &str, shown: Option<&str>) -> anyhow::Result<()> {
        if self.echo {
            println!("C: {}", shown.unwrap_or(line));
        }
        let io = self.io.get_mut();
        io.write_all(line.as_bytes())?;
        io.write_all(b"\r\n")?;
        io.flush()?;
        Ok(())
    }

    /// Sends a command and reads its reply.
    pub(crate) fn command(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.send_line(line, None)?;
        self.read_reply()
    }

    /// Sends message content after a `354`: dot-stuffed, CRLF line ends,
    /// then the final `.` (postel-proto's encoder).
    pub(crate) fn send_data(&mut self, message: &[u8]) -> anyhow::Result<Reply> {
        let mut out = Vec::new();
        postel_proto::client::dot_stuff(message, &mut out);
        if self.echo {
            println!("C: ({} octets of message, then \".\")", message.len());
        }
        let io = self.io.get_mut();
        io.write_all(&out)?;
        io.flush()?;
        self.read_reply()
    }
}

/// EHLO keywords and their parameters, from a `250` reply to EHLO.
pub(crate) fn capabilities(ehlo: &Reply) -> Vec<(String, String)> {
    ehlo.lines
        .iter()
        .skip(1)
        .map(|l| match l.split_once(' ') {
            Some((k, v)) => (k.to_ascii_uppercase(), v.to_owned()),
            None => (l.to_ascii_uppercase(), String::new()),
        })
        .collect()
}

/// This machine's name for EHLO, if it is a domain; else `localhost`.
pub(crate) fn ehlo_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|h| postel_proto::address::is_domain(h.as_bytes(), false))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `host`, `host:port`, `[v6]:port` or `v6` to (host, port).
pub(crate) fn split_host_port(s: &str) -> anyhow::Result<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .with_context(|| format!("{s}: missing ]"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().with_context(|| format!("{s}: bad port"))?),
            None if after.is_empty() => None,
            None => bail!("{s}: expected [ADDRESS]:PORT"),
        };
        return Ok((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        // More than one colon and no brackets: an IPv6 address alone.
        Some((h, _)) if h.contains(':') => Ok((s.to_owned(), None)),
        Some((h, p)) => Ok((
            h.to_owned(),
            Some(p.parse().with_context(|| format!("{s}: bad port"))?),
        )),
        None => Ok((s.to_owned(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        let t = |s| split_host_port(s).expect("ok");
        assert_eq!(t("mx.test"), ("mx.test".into(), None));
        assert_eq!(t("mx.test:587"), ("mx.test".into(), Some(587)));
        assert_eq!(t("[::1]:2525"), ("::1".into(), Some(2525)));
        assert_eq!(t("::1"), ("::1".into(), None));
        assert!(split_host_port("mx.test:x").is_err());
    }

    #[test]
    fn reply_parts() {
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 <a@b> unknown".into()],
        };
        assert_eq!(r.enhanced().as_deref(), Some("5.1.1"));
        assert!(!r.ok());
        let g = Reply {
            code: 220,
            lines: vec!["mx ESMTP".into()],
        };
        assert_eq!(g.enhanced(), None);
        let caps = capabilities(&Reply {
            code: 250,
            lines: vec!["mx".into(), "SIZE 100".into(), "auth PLAIN LOGIN".into()],
        });
        assert_eq!(
            caps,
            [
                ("SIZE".to_owned(), "100".to_owned()),
                ("AUTH".to_owned(), "PLAIN LOGIN".to_owned())
            ]
        );
    }
}
