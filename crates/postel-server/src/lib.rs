//! Postel's network layer: tokio listeners, the connection driver,
//! connection limits and graceful shutdown.
//!
//! It sees the world through two seams only: the sans-IO
//! [`postel_proto::Session`] for the protocol, and the [`Backend`] trait for
//! policy and storage. It holds no SMTP rule of its own.
//!
//! Invariants: the number of open sessions never exceeds the configured
//! limits (the excess gets `421 4.7.0` and is closed); on shutdown no new
//! session starts, idle ones get `421 4.3.2`, and a message being received
//! finishes before its session ends.
//!
//! # Layout
//! - this file: listener kinds and settings, [`ServerConfig`], the accept
//!   loop, connection slots and shutdown;
//! - `backend`: the [`Backend`] seam;
//! - `connection`: one session's driver (read, feed, answer, write; a
//!   backend's panic becomes a `421`);
//! - `stream`: plain TCP or TLS, upgraded mid-session;
//! - `metrics`: the SMTP counters.

#![warn(missing_docs)]

mod backend;
mod connection;
mod metrics;
mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postel_proto::{Limits, reply};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

pub use backend::{Backend, BackendSession, ConnMeta};
pub use metrics::Metrics;
pub use tokio_rustls::TlsAcceptor;

/// What a listener is for (RFC 8314, RFC 6409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Mail from other servers (port 25): STARTTLS offered, no AUTH needed.
    Smtp,
    /// Submission (port 587): STARTTLS, then AUTH before MAIL.
    Submission,
    /// Submission over implicit TLS (port 465, RFC 8314): AUTH before MAIL.
    Smtps,
}

impl ListenerKind {
    /// The name used in config and logs.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Smtps => "smtps",
        }
    }
}

/// How sessions on one listener behave.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSettings {
    /// What the listener is for.
    pub kind: ListenerKind,
    /// TLS from the first byte (port 465).
    pub implicit_tls: bool,
    /// AUTH is offered.
    pub auth: bool,
    /// AUTH is offered only once TLS is active.
    pub auth_requires_tls: bool,
    /// MAIL needs AUTH first.
    pub auth_required: bool,
}

impl ListenerSettings {
    /// The defaults for a kind: smtp offers no AUTH; submission and smtps
    /// require it, and only over TLS.
    pub fn for_kind(kind: ListenerKind) -> ListenerSettings {
        let submission = kind != ListenerKind::Smtp;
        ListenerSettings {
            kind,
            implicit_tls: kind == ListenerKind::Smtps,
            auth: submission,
            auth_requires_tls: true,
            auth_required: submission,
        }
    }
}

/// A bound socket and how its sessions behave.
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// Its settings.
    pub settings: ListenerSettings,
}

/// Server-wide settings beyond the per-session [`Limits`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The per-session limits and identity.
    pub limits: Arc<Limits>,
    /// Sessions open at once, in all. Default 10,000: an idle session costs
    /// a few KiB, and a file descriptor.
    pub max_connections: usize,
    /// Sessions open at once from one client address. Default 100.
    pub max_connections_per_ip: usize,
    /// Loopback clients are not held to `max_connections_per_ip` (as
    /// Postfix exempts `$mynetworks` from its per-client limits): local
    /// tools and load generators open many sessions from one address.
    /// Default true.
    pub exempt_loopback: bool,
    /// How long a shutdown waits for messages in progress before it closes
    /// what is left. Default: the data timeout and 10 s more, so that a
    /// client still sending is either finished or timed out by then.
    pub shutdown_grace: Duration,
    /// Where sessions, commands, replies and handshakes are counted.
    pub metrics: Arc<Metrics>,
    /// How long to hold the greeting back, watching for a client that
    /// talks first (as Postfix's postscreen_greet_wait). Zero: greet at
    /// once, and catch only what already arrived. Default zero.
    pub greet_wait: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            limits: Arc::new(Limits::default()),
            max_connections: 10_000,
            max_connections_per_ip: 100,
            exempt_loopback: true,
            shutdown_grace: Limits::default().data_timeout + Duration::from_secs(10),
            metrics: Arc::new(Metrics::register(
                &mut prometheus_client::registry::Registry::default(),
            )),
            greet_wait: Duration::ZERO,
        }
    }
}

/// State shared by the accept loop and every session.
pub(crate) struct Shared<B> {
    pub(crate) limits: Arc<Limits>,
    pub(crate) backend: Arc<B>,
    /// TLS for STARTTLS and implicit-TLS listeners, if a certificate is set.
    pub(crate) tls: Option<TlsAcceptor>,
    config: ServerConfig,
    started: Instant,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_id: AtomicU64,
}

impl<B: Backend> Shared<B> {
    /// The `211` lines for `HELP STATUS` (seed 003).
    pub(crate) async fn status_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "{} Postel {} status",
                self.limits.hostname, self.limits.version
            ),
            format!("Uptime: {} seconds", self.started.elapsed().as_secs()),
            format!("Sessions open: {}", self.open.load(Ordering::Relaxed)),
        ];
        lines.extend(self.backend.status_lines().await);
        lines.push("End of status".to_owned());
        lines
    }

    /// Takes a session slot for `ip`, or returns None when a limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot<B>> {
        let mut per_ip = self
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = per_ip.entry(ip).or_insert(0);
        let per_ip_limited = !(self.config.exempt_loopback && ip.is_loopback());
        if per_ip_limited && *n >= self.config.max_connections_per_ip
            || self.open.load(Ordering::Relaxed) >= self.config.max_connections
        {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        self.config.metrics.sessions_open.inc();
        Some(Slot {
            shared: self.clone(),
            ip,
        })
    }
}

/// A session's place under the connection limits; freed on drop.
struct Slot<B: Backend> {
    shared: Arc<Shared<B>>,
    ip: IpAddr,
}

impl<B: Backend> Drop for Slot<B> {
    fn drop(&mut self) {
        let mut per_ip = self
            .shared
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        self.shared.config.metrics.sessions_open.dec();
    }
}

/// Serves SMTP on `listeners` until `shutdown` resolves, then stops
/// accepting, closes idle sessions with `421`, lets messages in progress
/// finish (up to [`ServerConfig::shutdown_grace`]) and returns.
pub async fn serve<B: Backend>(
    listeners: Vec<Listener>,
    config: ServerConfig,
    backend: Arc<B>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared {
        limits: config.limits.clone(),
        backend,
        tls,
        started: Instant::now(),
        open: AtomicUsize::new(0),
        per_ip: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        config,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every session holds a clone of `done_tx`; when all are dropped,
    // `done_rx` yields None: all sessions have ended.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut accepts = Vec::new();
    for listener in listeners {
        let (shared, stop, done) = (shared.clone(), stop_rx.clone(), done_tx.clone());
        accepts.push(tokio::spawn(accept_loop(listener, shared, stop, done)));
    }
    drop(done_tx);
    shutdown.await;
    info!(
        sessions = shared.open.load(Ordering::Relaxed),
        "shutting down: no new sessions"
    );
    let _ = stop_tx.send(true);
    for a in accepts {
        let _ = a.await;
    }
    let grace = shared.config.shutdown_grace;
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        warn!(
            sessions = shared.open.load(Ordering::Relaxed),
            "shutdown grace period over; closing what is left"
        );
    }
}

async fn accept_loop<B: Backend>(
    listener: Listener,
    shared: Arc<Shared<B>>,
    mut stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let Listener {
        tcp: listener,
        settings,
    } = listener;
    let local = listener.local_addr().ok();
    let mut backoff = Duration::from_millis(5);
    let mut refusals = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, mut peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                error!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // On a dual-stack listener IPv4 clients appear as ::ffff:a.b.c.d:
        // use the plain IPv4 address for limits, trust and trace headers.
        peer.set_ip(peer.ip().to_canonical());
        let Some(slot) = shared.admit(peer.ip()) else {
            refusals.refused(peer, tokio::time::Instant::now());
            shared.config.metrics.connections_refused.inc();
            tokio::spawn(refuse(stream, shared.limits.hostname.clone()));
            continue;
        };
        shared
            .config
            .metrics
            .sessions
            .get_or_create(&[("kind", settings.kind.name())])
            .inc();
        let meta = ConnMeta {
            session_id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            local: local.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        let (shared, stop, done) = (shared.clone(), stop.clone(), done.clone());
        tokio::spawn(async move {
            connection::run(stream, meta, settings, shared, stop).await;
            drop(slot);
            drop(done);
        });
    }
}

/// Logs refused connections at most once a second: a flood must not
/// become a flood of log lines (3,580 in 5 s, one per connection).
#[derive(Default)]
struct RefusalLog {
    last: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: SocketAddr, now: tokio::time::Instant) {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        warn!(
            client = %peer,
            refused = self.unlogged,
            "too many connections: refused with 421 (count since the last such line)"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// Answers a connection over the limits with `421 4.7.0` and closes it.
async fn refuse(mut stream: TcpStream, hostname: String) {
    let mut out = Vec::new();
    reply::too_many_connections(&hostname).write_to(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
