//! The connection driver: one task per client, moving bytes between the
//! socket and the sans-IO [`Session`], and events to the backend.
//!
//! The loop is read -> feed -> answer events -> write. Replies are written
//! once the input in hand is used up, so a pipelined burst costs one write
//! (RFC 2920), and always before the next read blocks, so a client waiting
//! for an answer always gets it.
//!
//! STARTTLS: the session discards whatever followed the command in the same
//! read; the driver writes the `220`, hands the socket to the TLS handshake,
//! and the session starts over on the encrypted stream (RFC 3207 4.2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use postel_proto::{ConnInfo, Event, Session, Verdict, reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::Shared;
use crate::backend::{Backend, BackendSession, ConnMeta};
use crate::stream::Stream;

/// The read buffer between commands: small, because an idle connection
/// should cost little memory.
const IDLE_BUFFER: usize = 4 * 1024;
/// The read buffer while content streams in: big reads, fewer wake-ups.
const DATA_BUFFER: usize = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one session to its end. IO errors end the session quietly (logged
/// once); nothing here can take the server down.
pub(crate) async fn run<B: Backend>(
    tcp: TcpStream,
    meta: ConnMeta,
    listener: crate::ListenerSettings,
    shared: Arc<Shared<B>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let id = meta.session_id;
    info!(session = id, client = %meta.peer, kind = listener.kind.name(), "session opened");
    // Contract "client speaks before the greeting": refuse it once the
    // greeting is due. (On an implicit-TLS listener the TLS handshake
    // comes first, so there is nothing to catch there.)
    if !listener.implicit_tls {
        match talked_first(&tcp, shared.config.greet_wait).await {
            Some(true) => {
                info!(session = id, client = %meta.peer, "talked before the greeting");
                shared.config.metrics.pregreet.inc();
                let mut out = Vec::new();
                reply::pregreet(&shared.limits.hostname).write_to(&mut out);
                let mut tcp = tcp;
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let _ = tcp.write_all(&out).await;
                    let _ = tcp.shutdown().await;
                })
                .await;
                return;
            }
            Some(false) => {}
            None => return,
        }
    }
    let mut stream = Stream::Plain(tcp);
    if listener.implicit_tls {
        match handshake(stream, &shared).await {
            Ok(s) => stream = s,
            Err(e) => {
                info!(session = id, client = %meta.peer, error = %e, "TLS handshake failed");
                return;
            }
        }
    }
    let conn = ConnInfo {
        trusted: meta.peer.ip().is_loopback(),
        starttls_available: shared.tls.is_some() && !listener.implicit_tls,
        tls_active: listener.implicit_tls,
        auth_offered: listener.auth,
        auth_requires_tls: listener.auth_requires_tls,
        auth_required: listener.auth_required,
    };
    let mut backend = shared.backend.new_session(&meta);
    let mut session = match backend.connect().await {
        Ok(()) => Session::new(shared.limits.clone(), conn),
        Err(r) => {
            info!(session = id, client = %meta.peer, code = r.code, "client refused at connect");
            Session::refused_with(shared.limits.clone(), &r)
        }
    };
    if let Some(t) = stream.tls_description() {
        backend.tls(&t);
    }
    let result = drive(
        stream,
        &mut session,
        &mut backend,
        &shared,
        &mut shutdown,
        id,
    )
    .await;
    if let Err(e) = result {
        debug!(session = id, client = %meta.peer, error = %e, "connection error");
    }
    info!(session = id, client = %meta.peer, seconds = started.elapsed().as_secs_f64(), "session closed");
}

/// Waits up to `wait` for the client to send anything, then looks once
/// more: Some(true) if it has spoken before its greeting, Some(false) if
/// not, None if it has already gone.
async fn talked_first(tcp: &TcpStream, wait: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut b = [0u8; 1];
        match tcp.try_read(&mut b) {
            Ok(0) => return None,
            Ok(_) => return Some(true),
            // Nothing yet (a readiness can be spurious): wait on, until the
            // greeting is due.
            // No wait: greet now. (Not a zero timeout: tokio's timers tick
            // in milliseconds, and every connection would wait for one.)
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && wait.is_zero() => {
                return Some(false);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
        if tokio::time::timeout_at(deadline, tcp.readable())
            .await
            .is_err()
        {
            return Some(false);
        }
    }
}

async fn handshake<B: Backend>(stream: Stream, shared: &Shared<B>) -> std::io::Result<Stream> {
    let (Stream::Plain(tcp), Some(tls)) = (stream, shared.tls.as_ref()) else {
        return Err(std::io::Error::other("TLS is not configured"));
    };
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))
        .and_then(|r| r);
    let result = if accepted.is_ok() { "ok" } else { "failed" };
    shared
        .config
        .metrics
        .tls_handshakes
        .get_or_create(&[("result", result)])
        .inc();
    Ok(Stream::Tls(Box::new(accepted?)))
}

async fn drive<B: Backend>(
    mut stream: Stream,
    session: &mut Session,
    backend: &mut B::Session,
    shared: &Shared<B>,
    shutdown: &mut watch::Receiver<bool>,
    id: u64,
) -> std::io::Result<()> {
    // Read into spare capacity (read_buf): switching between the idle and
    // the content buffer sizes costs an allocation, never a memset.
    let mut buf: Vec<u8> = Vec::with_capacity(IDLE_BUFFER);
    let mut out = Vec::with_capacity(512);
    let mut filled = 0;
    loop {
        // Use up the input in hand; feed stops at each event that needs an
        // answer, so the events are answered between feeds, in order.
        let read = filled;
        let mut start = 0;
        let mut starttls = false;
        loop {
            let n = session.feed(&buf[start..filled]);
            start += n;
            let (answered, tls) = handle_events(session, backend, shared).await;
            starttls |= tls;
            // Stop when closed, or when nothing moved: all input used up, or
            // (defensively) a feed that consumed nothing and raised nothing.
            if session.is_closed() || !answered && (n == 0 || start == filled) {
                break;
            }
        }
        filled = 0;
        buf.clear();
        if read > 0 {
            session.after_read(tokio::time::Instant::now().into_std(), read);
        }
        // Refused recipients past the soft limit: make the guesser wait.
        let delay = session.take_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let tally = session.tally_mut();
        if !tally.is_empty() {
            shared.config.metrics.add(tally);
            tally.clear();
        }
        if session.is_closed() {
            flush(&mut stream, session, &mut out, id).await?;
            return Ok(());
        }
        if starttls {
            flush(&mut stream, session, &mut out, id).await?;
            stream = handshake(std::mem::replace(&mut stream, Stream::Upgrading), shared).await?;
            session.tls_established();
            if let Some(t) = stream.tls_description() {
                backend.tls(&t);
            }
            continue;
        }
        if *shutdown.borrow() && session.shutdown() {
            continue;
        }
        flush(&mut stream, session, &mut out, id).await?;
        let want = if session.is_idle() {
            IDLE_BUFFER
        } else {
            DATA_BUFFER
        };
        if buf.capacity() != want {
            buf = Vec::with_capacity(want);
        }
        // The idle timeout, or less if the command or content being read
        // is due sooner.
        let mut timeout = session.read_timeout();
        if let Some(due) = session.deadline() {
            let now = tokio::time::Instant::now().into_std();
            timeout = timeout.min(due.saturating_duration_since(now));
        }
        tokio::select! {
            r = tokio::time::timeout(timeout, stream.read_buf(&mut buf)) => match r {
                Err(_) => session.on_timeout(),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => {
                    filled = n;
                    if tracing::enabled!(tracing::Level::DEBUG) && session.is_idle() {
                        debug!(session = id, "C: {}", String::from_utf8_lossy(&buf[..n]).escape_debug());
                    }
                }
                Ok(Err(e)) => return Err(e),
            },
            _ = shutdown.changed(), if !*shutdown.borrow() => {}
        }
    }
}

async fn flush(
    stream: &mut Stream,
    session: &mut Session,
    out: &mut Vec<u8>,
    id: u64,
) -> std::io::Result<()> {
    let timeout = session.command_timeout();
    if !session.has_output() {
        return Ok(());
    }
    session.take_output(out);
    if tracing::enabled!(tracing::Level::DEBUG) {
        debug!(
            session = id,
            "S: {}",
            String::from_utf8_lossy(out).escape_debug()
        );
    }
    // A client that never reads its replies must not hold the session
    // forever: the write gets the command timeout too.
    let write = async {
        stream.write_all(out).await?;
        stream.flush().await
    };
    let r = match tokio::time::timeout(timeout, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client did not read its replies",
        )),
    };
    out.clear();
    // Give back the memory of a large reply burst.
    out.shrink_to(4096);
    r
}

/// Answers every queued event. Returns whether there was one, and whether
/// one was STARTTLS (the caller runs the handshake once the 220 is out).
///
/// A backend that panics does not take the process or the connection's
/// reply with it: the session gets `421 4.3.0` and closes (as go-smtp
/// recovers a handler's panic).
async fn handle_events<B: Backend>(
    session: &mut Session,
    backend: &mut B::Session,
    shared: &Shared<B>,
) -> (bool, bool) {
    use futures_util::FutureExt as _;
    let mut any = false;
    let mut starttls = false;
    while let Some(event) = session.poll_event() {
        any = true;
        let handled = std::panic::AssertUnwindSafe(handle_event(
            event,
            session,
            backend,
            shared,
            &mut starttls,
        ))
        .catch_unwind()
        .await;
        if handled.is_err() {
            error!("the backend panicked: the session is closed with 421");
            session.abort(reply::backend_failed(&shared.limits.hostname));
            break;
        }
    }
    (any, starttls)
}

/// Answers one event.
async fn handle_event<B: Backend>(
    event: Event,
    session: &mut Session,
    backend: &mut B::Session,
    shared: &Shared<B>,
    starttls: &mut bool,
) {
    match event {
        Event::Helo => {
            if let Some(name) = session.helo() {
                backend.helo(name, session.is_extended());
            }
        }
        Event::Mail { from, params } => {
            let v = backend.mail(&from, &params).await;
            session.resolve(verdict(v));
        }
        Event::Rcpt { to, params } => {
            let v = backend.rcpt(&to, &params).await;
            session.resolve(verdict(v));
        }
        Event::Body => {
            session.take_body(backend.body());
            backend.body_appended().await;
        }
        Event::DataEnd => {
            session.take_body(backend.body());
            let v = backend.data().await;
            session.resolve(match v {
                Ok(id) => Verdict::Queued(id),
                Err(r) => Verdict::Reject(r),
            });
        }
        Event::Reset => backend.reset(),
        Event::Status => session.resolve_status(shared.status_lines().await),
        Event::StartTls => *starttls = true,
        Event::Auth {
            mechanism,
            authzid,
            username,
            password,
        } => {
            let v = backend
                .auth(mechanism, &authzid, &username, &password.0)
                .await;
            session.resolve(verdict(v));
        }
        Event::ScramFirst {
            authzid,
            username,
            nonce,
        } => {
            let v = backend.scram_first(&authzid, &username, &nonce).await;
            session.resolve(v.map_or_else(Verdict::Reject, Verdict::Challenge));
        }
        Event::ScramFinal {
            auth_message,
            proof,
        } => {
            let v = backend.scram_final(&auth_message, &proof).await;
            session.resolve(v.map_or_else(Verdict::Reject, Verdict::Challenge));
        }
        Event::ScramDone => backend.scram_done().await,
        Event::Close => {}
    }
}

fn verdict(v: Result<(), postel_proto::Reply>) -> Verdict {
    match v {
        Ok(()) => Verdict::Accept,
        Err(r) => {
            if r.code < 400 {
                warn!(code = r.code, "backend refused with a positive reply code");
            }
            Verdict::Reject(r)
        }
    }
}
