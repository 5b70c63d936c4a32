//! The driver of the sans-IO client ([`postel_proto::client::Client`]): a
//! TCP connection (from a chosen source address), TLS on it, and rounds of
//! commands and their replies, each round under a timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use postel_proto::client::{Client, ClientEvent, Command, ServerReply};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UnixStream};

/// Why a connection ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// No connection, or it broke.
    #[error("{0}")]
    Io(String),
    /// No reply in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// Bytes that are not SMTP replies.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A local socket (LMTP).
    Unix(UnixStream),
    /// During a handshake.
    Gone,
}

/// One SMTP connection, client side.
pub struct Connection {
    stream: Stream,
    /// The protocol state.
    pub client: Client,
    /// The remote address.
    pub peer: SocketAddr,
    /// `"TLSv1.3 TLS13_AES_256_GCM_SHA384"` once TLS is up.
    pub tls: Option<String>,
    out: Vec<u8>,
}

impl Connection {
    /// Connects to `peer` from `source` (any port), within `timeout`.
    ///
    /// # Errors
    /// [`ConnError::Io`] or [`ConnError::Timeout`].
    pub async fn connect(
        peer: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Connection, ConnError> {
        let io = |e: std::io::Error| ConnError::Io(format!("connect to {peer}: {e}"));
        let socket = if peer.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(io)?;
        if let Some(ip) = source.filter(|s| s.is_ipv4() == peer.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0)).map_err(io)?;
        }
        let stream = tokio::time::timeout(timeout, socket.connect(peer))
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
            .map_err(io)?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream: Stream::Plain(stream),
            client: Client::new(),
            peer,
            tls: None,
            out: Vec::new(),
        })
    }

    /// Connects to the local socket at `path` (LMTP), within `timeout`.
    /// `peer` is then the unspecified address.
    ///
    /// # Errors
    /// [`ConnError::Io`] or [`ConnError::Timeout`].
    pub async fn connect_unix(
        path: &std::path::Path,
        timeout: Duration,
    ) -> Result<Connection, ConnError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
            .map_err(|e| ConnError::Io(format!("connect to {}: {e}", path.display())))?;
        Ok(Connection {
            stream: Stream::Unix(stream),
            client: Client::new(),
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            tls: None,
            out: Vec::new(),
        })
    }

    /// Connects with TLS from the first byte (port 465).
    ///
    /// # Errors
    /// As [`Connection::connect`], and [`ConnError::Tls`].
    pub async fn connect_tls(
        peer: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<Connection, ConnError> {
        let mut c = Connection::connect(peer, source, timeout).await?;
        c.handshake(config, name, timeout).await?;
        Ok(c)
    }

    /// Sends what the client queued, and reads until every command sent
    /// has its reply. Returns the replies, each with its command; a `421`
    /// (the server closing) ends the round early, with what came.
    ///
    /// # Errors
    /// A [`ConnError`]: what came before it is lost with the connection.
    pub async fn round(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<(Command, ServerReply)>, ConnError> {
        tokio::time::timeout(timeout, self.round_inner())
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
    }

    /// Sends what the client queued, and reads until at least one reply
    /// came (or none is awaited): the replies so far, each with its
    /// command. For LMTP's replies after the content, so that those that
    /// came are kept if the connection then breaks.
    ///
    /// # Errors
    /// A [`ConnError`] before any reply came.
    pub async fn some_replies(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<(Command, ServerReply)>, ConnError> {
        tokio::time::timeout(timeout, self.exchange(true))
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
    }

    async fn round_inner(&mut self) -> Result<Vec<(Command, ServerReply)>, ConnError> {
        self.exchange(false).await
    }

    /// Writes the queued commands, then reads until every awaited reply
    /// came, or (`first`) until one did.
    async fn exchange(&mut self, first: bool) -> Result<Vec<(Command, ServerReply)>, ConnError> {
        self.out.clear();
        self.client.take_output(&mut self.out);
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let written = self.write_all(&out).await;
            self.out = out;
            written?;
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            while let Some(event) = self.client.poll_event() {
                match event {
                    ClientEvent::Reply { to, reply } => replies.push((to, reply)),
                    ClientEvent::ProtocolError(e) => return Err(ConnError::Protocol(e)),
                }
            }
            if self.client.in_flight() == 0 || (first && !replies.is_empty()) {
                return Ok(replies);
            }
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.client.feed(&buf[..n]);
        }
    }

    /// The TLS handshake after a `220` to STARTTLS (or at once, for 465).
    ///
    /// # Errors
    /// [`ConnError::Tls`]: the connection is then unusable.
    pub async fn handshake(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: &str,
        timeout: Duration,
    ) -> Result<(), ConnError> {
        // Bytes after the 220 to STARTTLS would be read as if they came
        // over TLS: an injection. The session ends instead.
        if !self.client.is_idle() {
            return Err(ConnError::Protocol(
                "bytes after the reply to STARTTLS, before TLS".into(),
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(ConnError::Tls("TLS is already on".into()));
        };
        let server_name = ServerName::try_from(name.to_owned())
            .or_else(|_| ServerName::try_from(self.peer.ip().to_string()))
            .map_err(|e| ConnError::Tls(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::time::timeout(timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
            .map_err(|e| ConnError::Tls(e.to_string()))?;
        let (_, conn) = tls.get_ref();
        self.tls = Some(format!(
            "{} {}",
            conn.protocol_version()
                .map_or("TLS".into(), |v| format!("{v:?}").replace('_', ".")),
            conn.negotiated_cipher_suite()
                .map_or("unknown".into(), |c| format!("{:?}", c.suite()))
        ));
        self.stream = Stream::Tls(Box::new(tls));
        self.client.tls_established();
        Ok(())
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => s.write_all(bytes).await,
            Stream::Unix(s) => s.write_all(bytes).await,
            Stream::Gone => return Err(ConnError::Closed),
        };
        r.map_err(|e| ConnError::Io(e.to_string()))
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ConnError> {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
            Stream::Gone => return Err(ConnError::Closed),
        };
        r.map_err(|e| ConnError::Io(e.to_string()))
    }

    /// Says QUIT and closes, not waiting long for the reply.
    pub async fn quit(mut self) {
        if self.client.is_closed() {
            return;
        }
        self.client.quit();
        let _ = self.round(Duration::from_secs(5)).await;
        if let Stream::Tls(s) = &mut self.stream {
            let _ = s.shutdown().await;
        }
    }
}

/// TLS client settings: verifying (WebPKI roots and the extra ones), or
/// accepting any certificate (opportunistic TLS: encryption against
/// passive listeners, as Postfix's `may` and `encrypt`).
pub fn tls_config(roots: Option<Arc<rustls::RootCertStore>>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder());
    let config = match roots {
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Arc::new(config)
}

/// Accepts any certificate, checking only the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
