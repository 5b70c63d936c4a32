//! One POST, over HTTP/1.1 (plain, or TLS verified against the WebPKI roots
//! and `[tls] ca_file`), under one timeout for the whole exchange: the
//! response's status, or why there is none. The response body is not read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Post<'a> {
    /// The absolute URL.
    pub url: &'a str,
    /// Header fields beyond Host, Content-Type and Content-Length.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// Sends `post`; its HTTP status.
///
/// # Errors
/// Why no status came: the URL, the connection, TLS, the timeout.
pub async fn send(
    post: Post<'_>,
    roots: Arc<rustls::RootCertStore>,
    timeout: Duration,
) -> Result<u16, String> {
    tokio::time::timeout(timeout, exchange(post, roots))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn exchange(post: Post<'_>, roots: Arc<rustls::RootCertStore>) -> Result<u16, String> {
    let uri: hyper::Uri = post.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), ToString::to_string);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), ToString::to_string);
    let mut req = Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONTENT_LENGTH, post.body.len());
    for (name, value) in &post.headers {
        req = req.header(*name, value.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(post.body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    if https {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(bare)
            .map_err(|e| format!("bad TLS name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        round_trip(TokioIo::new(tls), req).await
    } else {
        round_trip(TokioIo::new(tcp), req).await
    }
}

async fn round_trip<T>(io: T, req: Request<Full<Bytes>>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let status = sender
        .send_request(req)
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("HTTP: {e}"));
    driver.abort();
    status
}
