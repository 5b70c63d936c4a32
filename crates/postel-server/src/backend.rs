//! The policy seam: what the network layer asks of whoever decides and stores.
//!
//! The driver turns protocol events into calls here and the answers into
//! replies. A backend picks the exact reply for a refusal (from
//! `postel_proto::reply`), and its `data` returns only once the message is on
//! stable storage: that is the `250` promise.

use std::net::SocketAddr;

use postel_proto::sasl::Mechanism;
use postel_proto::{ForwardPath, MailParams, RcptParams, Reply, ReversePath};

/// What a backend knows of a connection when a session starts.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// A number unique in this process, for logs.
    pub session_id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
}

/// Creates one [`BackendSession`] per SMTP session.
pub trait Backend: Send + Sync + 'static {
    /// The per-session state.
    type Session: BackendSession;

    /// A session has been accepted.
    fn new_session(&self, conn: &ConnMeta) -> Self::Session;

    /// Lines for the `211` reply to `HELP STATUS` beyond what the server
    /// itself reports (version, uptime, sessions).
    fn status_lines(&self) -> impl Future<Output = Vec<String>> + Send {
        async { Vec::new() }
    }
}

/// One session's decisions.
///
/// The methods a backend need not care about have defaults, so that each
/// new decision point (a connect-time check, a HELO check, a multi-step
/// AUTH, end-of-data filters) is one more method with a default, as
/// go-smtp adds optional interfaces.
pub trait BackendSession: Send + 'static {
    /// The connection is open and the greeting is due: accept the client,
    /// or refuse it (DNS block lists, rate limits). A refused client gets
    /// `554 5.7.1 <host> Service unavailable` instead of the greeting, and
    /// then only QUIT is answered (RFC 5321 3.1). Default: accept.
    fn connect(&mut self) -> impl Future<Output = Result<(), Reply>> + Send {
        async { Ok(()) }
    }

    /// The client greeted with EHLO (`extended`) or HELO.
    fn helo(&mut self, name: &str, extended: bool);

    /// Accept or refuse a sender.
    fn mail(
        &mut self,
        from: &ReversePath,
        params: &MailParams,
    ) -> impl Future<Output = Result<(), Reply>> + Send;

    /// Accept or refuse a recipient.
    fn rcpt(
        &mut self,
        to: &ForwardPath,
        params: &RcptParams,
    ) -> impl Future<Output = Result<(), Reply>> + Send;

    /// The buffer the decoded content is appended to while it arrives.
    fn body(&mut self) -> &mut Vec<u8>;

    /// Content was appended to [`body`](Self::body). A backend may move it
    /// out now (to a spool file), so that a large message is never held
    /// whole in memory; a failure to do so is `data`'s to report.
    fn body_appended(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The content is complete: store it durably and return its id, or the
    /// refusal. The transaction is over either way.
    fn data(&mut self) -> impl Future<Output = Result<String, Reply>> + Send;

    /// The transaction was dropped: forget sender, recipients and content.
    fn reset(&mut self);

    /// TLS is now active (`"<version> <cipher>"`), after STARTTLS or on an
    /// implicit-TLS listener. What was learnt before STARTTLS is void.
    fn tls(&mut self, description: &str);

    /// Check credentials. Refuse with `reply::auth_failed` (the same for an
    /// unknown user and a wrong password), or with a `421` to end the
    /// session (too many failures from this client).
    fn auth(
        &mut self,
        mechanism: Mechanism,
        authzid: &str,
        username: &str,
        password: &str,
    ) -> impl Future<Output = Result<(), Reply>> + Send;

    /// SCRAM-SHA-256's first message: find `username`'s keys and answer
    /// with the server's first message (`postel_proto::scram::server_first`
    /// over `client_nonce`), or refuse. Unknown users get keys that match no
    /// proof, so that they fail as a wrong password does, at the next step.
    fn scram_first(
        &mut self,
        authzid: &str,
        username: &str,
        client_nonce: &str,
    ) -> impl Future<Output = Result<String, Reply>> + Send;

    /// SCRAM-SHA-256's final message: check `proof` of `auth_message`
    /// against the keys of [`BackendSession::scram_first`]; answer with the
    /// server's final message (`v=...`), or refuse as
    /// [`BackendSession::auth`] does. Not a login yet: see
    /// [`BackendSession::scram_done`].
    fn scram_final(
        &mut self,
        auth_message: &str,
        proof: &[u8],
    ) -> impl Future<Output = Result<String, Reply>> + Send;

    /// The client took the server's signature: the user whose proof
    /// [`BackendSession::scram_final`] accepted is now logged in.
    fn scram_done(&mut self) -> impl Future<Output = ()> + Send;
}
