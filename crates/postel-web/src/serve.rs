//! The web listener: accepts HTTP/1.1 connections under a cap, with a
//! deadline on every request header.
//!
//! Why not `axum::serve`: it accepts without limit and waits for a header
//! for ever. About 20,600 half-sent requests used every file descriptor of
//! the process, and SMTP stopped greeting. Here:
//! - at most [`WebLimits::max_connections`] connections are open; past
//!   that, the loop stops accepting, and new connections wait in the
//!   kernel's listen queue, where they cost the process no descriptor;
//! - at most [`WebLimits::max_connections_per_ip`] from one address, so
//!   one client cannot hold them all; past it a connection is closed at
//!   once;
//! - a request header must arrive within [`WebLimits::header_timeout`] of
//!   the connection opening or of the previous response (an idle
//!   keep-alive connection is closed after it too);
//! - on shutdown, connections finish the request in hand and close.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use postel_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::{Web, WebLimits, router};

/// Serves HTTP on `listener` until `shutdown` resolves; HTTPS when `tls`
/// is given (the handshake must end within the header timeout, and counts
/// against the same caps).
///
/// # Errors
/// None today: accept errors are logged and retried after a pause. The
/// signature keeps room for a listener that fails for good.
pub async fn serve<S: Store + Clone>(
    listener: TcpListener,
    web: Arc<Web<S>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits: WebLimits = web.limits;
    let app = router(web);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    let open_per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, nothing more is accepted.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    tracing::error!(error = %e, "web: accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap what has finished, so the set stays the size of what is open.
        while connections.try_join_next().is_some() {}
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let Some(per_ip) = PerIp::take(&open_per_ip, peer.ip(), limits.max_connections_per_ip)
        else {
            drop(tcp);
            continue;
        };
        let service =
            TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo(peer))));
        let stop = stop_rx.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(tcp, service, limits, peer, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, service, limits, peer, stop).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %peer, error = %e, "web: TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(client = %peer, "web: TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
            drop(per_ip);
        });
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection's requests, until it ends or the server stops (then
/// gracefully: the request under way is answered).
async fn serve_connection<I, T>(
    io: I,
    service: T,
    limits: WebLimits,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: hyper::service::HttpService<hyper::body::Incoming> + Send,
    T::ResBody: Send + 'static,
    <T::ResBody as hyper::body::Body>::Data: Send,
    <T::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::Future: Send,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %peer, error = %e, "web: connection ended");
            }
        }
        () = async {
            let _ = stop.wait_for(|s| *s).await;
        } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A connection's place under the per-address cap; given back on drop.
struct PerIp {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<PerIp> {
        let mut map = open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerIp {
            open: open.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut map = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
