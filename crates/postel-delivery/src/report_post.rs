//! TLS reports over HTTPS (RFC 8460 3): the gzip-compressed JSON POSTed as
//! `application/tlsrpt+gzip` to a `rua=https:` URL. The URL comes from the
//! destination's DNS, so it is treated like MTA-STS's fetch: `https` only,
//! the host's addresses from Postel's resolver (never a private one unless
//! `allow_private_addresses`), the certificate verified for the host, one
//! timeout for the whole exchange, the response body not read.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::Settings;
use crate::mx::Dns;

/// The whole exchange, connection to status.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The report's JSON, gzip-compressed.
pub(crate) fn gzip(json: &str) -> std::io::Result<Vec<u8>> {
    use mail_auth::flate2::{Compression, write::GzEncoder};
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(json.as_bytes())?;
    e.finish()
}

/// POSTs `body` to `url`; Ok when the server answers 2xx.
pub(crate) async fn post(
    url: &str,
    body: Vec<u8>,
    settings: &Settings,
    dns: &Dns,
) -> Result<(), String> {
    tokio::time::timeout(TIMEOUT, exchange(url, body, settings, dns))
        .await
        .map_err(|_| format!("no answer from {url} within {TIMEOUT:?}"))?
}

async fn exchange(url: &str, body: Vec<u8>, settings: &Settings, dns: &Dns) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url}: not https"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let addrs: Vec<std::net::IpAddr> = dns
        .addresses(&host)
        .await
        .map_err(|f| f.text)?
        .into_iter()
        .filter(|ip| settings.allow_private_addresses || !crate::mx::is_private(*ip))
        .collect();
    let ip = addrs
        .first()
        .ok_or_else(|| format!("{host} has no usable address"))?;
    let tcp = tokio::net::TcpStream::connect(SocketAddr::new(*ip, port))
        .await
        .map_err(|e| format!("cannot connect to {host} [{ip}]: {e}"))?;
    let config = crate::connection::tls_config(Some(settings.roots()));
    let name =
        rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP with {host}: {e}"))?;
    let driver = tokio::spawn(conn);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), ToString::to_string);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), ToString::to_string);
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/tlsrpt+gzip")
        .header(hyper::header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let status = sender
        .send_request(req)
        .await
        .map(|r| r.status())
        .map_err(|e| format!("HTTP with {host}: {e}"));
    driver.abort();
    let status = status?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{host} answered {status}"))
    }
}
