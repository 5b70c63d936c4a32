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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use postel_store::{QueueEntry, QueueState};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::outcome::Outcome;
    use crate::session::Job;

    fn entry(rcpt: &str, position: u32) -> QueueEntry {
        QueueEntry {
            id: "M1".into(),
            position,
            recipient: rcpt.into(),
            rcpt_params: Vec::new(),
            mail_from: "a@b.test".into(),
            mail_params: Vec::new(),
            auth_user: None,
            client_addr: "127.0.0.1:1".into(),
            received_at: 0,
            size: 10,
            state: QueueState::Queued,
            attempts: 0,
            next_attempt: 0,
            last_reply: None,
            warned: 0,
            leased_until: None,
            bounce: false,
            lease_token: 0,
        }
    }

    /// An LMTP server that takes the first recipient's delivery, then
    /// closes before the second's reply: the first stays delivered.
    #[tokio::test]
    async fn replies_that_came_count_when_the_server_then_breaks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut s = BufReader::new(stream);
            s.get_mut().write_all(b"220 lmtp\r\n").await.expect("greet");
            let mut line = String::new();
            loop {
                line.clear();
                if s.read_line(&mut line).await.expect("read") == 0 {
                    return;
                }
                let reply: &[u8] = match line.get(..4).unwrap_or("") {
                    "LHLO" => b"250-lmtp\r\n250 8BITMIME\r\n",
                    "MAIL" | "RCPT" => b"250 ok\r\n",
                    "DATA" => b"354 go\r\n",
                    _ if line == ".\r\n" => {
                        s.get_mut()
                            .write_all(b"250 2.0.0 <x@y.test> saved\r\n")
                            .await
                            .expect("w");
                        return;
                    }
                    _ => continue,
                };
                s.get_mut().write_all(reply).await.expect("write");
            }
        });
        let mut settings = Settings::new("postel.test");
        settings.timeouts.command = std::time::Duration::from_secs(5);
        settings.timeouts.data = std::time::Duration::from_secs(5);
        let mut session = open(&LmtpAddr::Tcp("127.0.0.1".into(), port), &settings)
            .await
            .expect("open");
        let job = Job {
            entries: vec![entry("x@y.test", 0), entry("z@y.test", 1)],
            content: Arc::new(b"Subject: t\r\n\r\nhi\r\n".to_vec()),
        };
        let outcomes = session.deliver(&job, &settings).await;
        assert!(
            matches!(outcomes[0], Outcome::Delivered { .. }),
            "{outcomes:?}"
        );
        assert!(matches!(outcomes[1], Outcome::Deferred(_)), "{outcomes:?}");
    }
}
