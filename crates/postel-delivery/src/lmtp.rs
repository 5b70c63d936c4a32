//! LMTP (RFC 2033) to a mailbox server such as Dovecot's `dovecot-lmtpd`:
//! the same transactions as SMTP ([`Session`]), opened with `LHLO` over
//! TCP or a local socket, without TLS, and with one reply per accepted
//! recipient after the content, so each mailbox's outcome is its own (one
//! over quota is deferred while the others are delivered).

use crate::connection::{ConnError, Connection};
use crate::local::{LmtpAddr, Target};
use crate::outcome::Failure;
use crate::session::{Session, one};
use crate::settings::Settings;

/// A session with the LMTP server at `addr`, ready for transactions.
///
/// # Errors
/// A temporary failure: no connection, or a refused greeting or LHLO.
pub async fn open(addr: &LmtpAddr, settings: &Settings) -> Result<Session, Failure> {
    let t = settings.timeouts;
    let name = Target::Lmtp(addr.clone()).name();
    let fail = |e: ConnError| Failure::local("4.4.1", format!("{name}: {e}"));
    let mut conn = match addr {
        LmtpAddr::Tcp(host, port) => {
            let peer = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| Failure::local("4.4.4", format!("{name}: no address")))?;
            Connection::connect(peer, None, t.connect).await
        }
        LmtpAddr::Unix(path) => Connection::connect_unix(path, t.connect).await,
    }
    .map_err(fail)?;
    let temporary = |f: Failure| Failure {
        status: format!("4{}", &f.status[1..]),
        ..f
    };
    let greeting = one(&mut conn, t.command).await.map_err(fail)?;
    if greeting.code != 220 {
        return Err(temporary(Failure::remote(&name, &greeting)));
    }
    conn.client.lhlo(&settings.hostname);
    let reply = one(&mut conn, t.command).await.map_err(fail)?;
    if reply.code != 250 {
        return Err(temporary(Failure::remote(&name, &reply)));
    }
    let caps = conn.client.capabilities().cloned().unwrap_or_default();
    Ok(Session::lmtp(conn, caps, name))
}
