//! One outbound SMTP session: the first host that answers, EHLO, STARTTLS
//! as the policy says, AUTH for a smarthost; then messages, one
//! transaction after another, with PIPELINING, SIZE, 8BITMIME, SMTPUTF8
//! and DSN as the remote offers them. Every recipient comes out with an
//! [`Outcome`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use postel_proto::client::{Capabilities, Command, ServerReply};
use postel_store::QueueEntry;

use crate::connection::{ConnError, Connection, tls_config};
use crate::down::DownHosts;
use crate::mx::Host;
use crate::outcome::{Failure, Outcome};
use crate::settings::{Settings, TlsPolicy};

/// One message for one destination: its recipients there, and its bytes.
#[derive(Debug, Clone)]
pub struct Job {
    /// The recipients' queue rows (all of one message).
    pub entries: Vec<QueueEntry>,
    /// The message as stored.
    pub content: Arc<Vec<u8>>,
}

/// What a message needs of the remote, found once per message.
#[derive(Debug, Clone, Copy)]
struct Needs {
    eight_bit: bool,
    smtputf8: bool,
    /// The sender asked for REQUIRETLS (RFC 8689).
    requiretls: bool,
}

impl Job {
    fn needs(&self) -> Needs {
        Needs {
            eight_bit: !self.content.is_ascii(),
            smtputf8: self.needs_smtputf8(),
            // RFC 8689 4.2.1 binds mail with a return path; a notice
            // (`<>`) passes the parameter on where it can, unrefused.
            requiretls: self.entries.first().is_some_and(|e| {
                !e.mail_from.is_empty() && crate::requiretls::requested(&e.mail_params)
            }),
        }
    }

    /// Whether the message needs SMTPUTF8 (RFC 6531): an address, or a
    /// header field, that is not ASCII. The client's `SMTPUTF8` alone, on
    /// an all-ASCII message, does not make it need it.
    fn needs_smtputf8(&self) -> bool {
        let Some(first) = self.entries.first() else {
            return false;
        };
        let header_end = self
            .content
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(self.content.len());
        !first.mail_from.is_ascii()
            || self.entries.iter().any(|e| !e.recipient.is_ascii())
            || !self.content[..header_end].is_ascii()
    }
}

/// The most addresses one session tries, over all the MX hosts.
const MAX_ADDRESSES: usize = 5;

/// An open session, ready for transactions.
pub struct Session {
    conn: Connection,
    caps: Capabilities,
    /// The host's name, for notices and logs.
    pub host: String,
    /// LMTP: one reply per accepted recipient after the content, and no
    /// BDAT.
    lmtp: bool,
    /// The server's certificate was checked against the roots.
    verified: bool,
    /// The host's name is authenticated: it matched the destination's
    /// MTA-STS policy in enforce mode, or the operator named it (a
    /// smarthost). With `verified`, what REQUIRETLS asks for.
    authenticated: bool,
    /// See [`Dial::sts_unknown`].
    sts_unknown: bool,
    /// The certificate was checked by the host's TLSA records.
    dane: bool,
}

/// How to reach the hosts: the settings, and TLS and AUTH for them.
pub struct Dial<'a> {
    /// Delivery settings.
    pub settings: &'a Settings,
    /// The TLS policy for this destination.
    pub tls: TlsPolicy,
    /// AUTH PLAIN credentials (a smarthost).
    pub auth: Option<&'a (String, String)>,
    /// Implicit TLS (a smarthost on 465).
    pub implicit_tls: bool,
    /// The port to dial.
    pub port: u16,
    /// Hosts that did not answer lately.
    pub down: &'a DownHosts,
    /// The hosts' names are authenticated (see [`Session`]): REQUIRETLS
    /// mail may go to them if their certificate is verified and they
    /// offer it.
    pub authenticated: bool,
    /// Whether the destination has an MTA-STS policy could not be told
    /// (DNS or the policy's server failed): REQUIRETLS mail waits.
    pub sts_unknown: bool,
}

impl Dial<'_> {
    fn source(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.settings.source_ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.settings.source_ipv6.map(IpAddr::V6),
        }
    }

    /// Opens a session with the first host, in order, that answers and
    /// meets the TLS policy. Hosts that do not answer are remembered as
    /// down, and skipped while they are (unless every one is).
    ///
    /// # Errors
    /// The last host's failure (temporary), or `4.4.1` when none answered.
    pub async fn open(&self, hosts: &[Host]) -> Result<Session, Failure> {
        self.open_noting(hosts, &mut Vec::new()).await
    }

    /// [`Dial::open`], noting each attempt's failure on the way, the last
    /// one (the error) included: for the TLS reports, which count every
    /// host's TLS failure, not just the last.
    ///
    /// # Errors
    /// As [`Dial::open`].
    pub async fn open_noting(
        &self,
        hosts: &[Host],
        noted: &mut Vec<Failure>,
    ) -> Result<Session, Failure> {
        let mut last = Failure::local("4.4.1", "no mail host answered");
        let targets: Vec<(&Host, SocketAddr)> = hosts
            .iter()
            .flat_map(|h| {
                h.addrs
                    .iter()
                    .map(move |ip| (h, SocketAddr::new(*ip, self.port)))
            })
            .collect();
        // Postfix's smtp_mx_address_limit: a domain cannot make one
        // delivery dial without end.
        let targets: Vec<_> = targets.into_iter().take(MAX_ADDRESSES).collect();
        let up: Vec<_> = targets
            .iter()
            .filter(|(_, a)| !self.down.is_down(a.ip()))
            .copied()
            .collect();
        let order = if up.is_empty() { targets } else { up };
        for (host, addr) in order {
            match self.try_host(host, addr, self.tls).await {
                Ok(s) => return Ok(s),
                Err((f, plaintext_retry)) => {
                    noted.push(f.clone());
                    if plaintext_retry {
                        // RFC 3207 4.1 and Postfix's `may`: a broken TLS
                        // handshake is tried again at once in plaintext.
                        match self.try_host(host, addr, TlsPolicy::None).await {
                            Ok(s) => return Ok(s),
                            Err((f, _)) => {
                                noted.push(f.clone());
                                last = f;
                            }
                        }
                    } else {
                        last = f;
                    }
                }
            }
        }
        Err(Failure {
            status: format!("4{}", &last.status[1..]),
            ..last
        })
    }

    /// One address: a session, or the failure and whether a plaintext try
    /// may follow (a TLS handshake that failed under `may`).
    async fn try_host(
        &self,
        host: &Host,
        addr: SocketAddr,
        tls: TlsPolicy,
    ) -> Result<Session, (Failure, bool)> {
        let t = self.settings.timeouts;
        let conn_failure =
            |e: ConnError| Failure::local("4.4.1", format!("{} [{}]: {e}", host.name, addr.ip()));
        let mut conn = if self.implicit_tls {
            let config = tls_config(Some(self.settings.roots()));
            Connection::connect_tls(addr, self.source(addr.ip()), t.connect, config, &host.name)
                .await
        } else {
            Connection::connect(addr, self.source(addr.ip()), t.connect).await
        }
        .map_err(|e| {
            if matches!(e, ConnError::Io(_) | ConnError::Timeout(_)) {
                self.down.mark(addr.ip(), self.settings.host_down_for);
            }
            (conn_failure(e), false)
        })?;
        let greeting = one(&mut conn, t.command)
            .await
            .map_err(|e| (conn_failure(e), false))?;
        if greeting.code != 220 {
            return Err((Failure::remote(&host.name, &greeting), false));
        }
        let hostname = self.settings.hostname.clone();
        let mut caps = ehlo(&mut conn, &hostname, t.command)
            .await
            .map_err(|e| (e, false))
            .and_then(|r| r.map_err(|reply| (Failure::remote(&host.name, &reply), false)))?;
        // DANE: TLS is required, checked by the TLSA records alone.
        let tls = if host.dane.is_some() {
            TlsPolicy::Verify
        } else if host.encrypt && matches!(tls, TlsPolicy::None | TlsPolicy::May) {
            TlsPolicy::Encrypt
        } else {
            tls
        };
        let required = matches!(tls, TlsPolicy::Encrypt | TlsPolicy::Verify);
        if tls != TlsPolicy::None && conn.tls.is_none() {
            if !caps.starttls {
                if required {
                    return Err((
                        Failure::local("4.7.4", format!("{}: STARTTLS not offered", host.name)),
                        false,
                    ));
                }
            } else {
                conn.client.starttls();
                let reply = one(&mut conn, t.command)
                    .await
                    .map_err(|e| (conn_failure(e), false))?;
                if reply.code != 220 {
                    if required {
                        return Err((Failure::remote(&host.name, &reply), false));
                    }
                    // `may`: on without TLS, as offered.
                } else {
                    let config = match &host.dane {
                        Some(records) => crate::dane::DaneVerifier::config(records.clone()),
                        None => {
                            tls_config((tls == TlsPolicy::Verify).then(|| self.settings.roots()))
                        }
                    };
                    if let Err(e) = conn.handshake(config, &host.name, t.command).await {
                        let f = Failure::local("4.7.5", format!("{}: {e}", host.name));
                        return Err((f, tls == TlsPolicy::May));
                    }
                    caps = ehlo(&mut conn, &hostname, t.command)
                        .await
                        .map_err(|e| (e, false))
                        .and_then(|r| {
                            r.map_err(|reply| (Failure::remote(&host.name, &reply), false))
                        })?;
                }
            }
        }
        if let Some((user, password)) = self.auth {
            if conn.tls.is_none() {
                return Err((
                    Failure::local("4.7.4", format!("{}: no TLS for AUTH", host.name)),
                    false,
                ));
            }
            conn.client.auth_plain(user, password);
            let reply = one(&mut conn, t.command)
                .await
                .map_err(|e| (conn_failure(e), false))?;
            if reply.code != 235 {
                let mut f = Failure::remote(&host.name, &reply);
                // A refused login is the operator's to fix: defer.
                f.status = format!("4{}", &f.status[1..]);
                return Err((f, false));
            }
        }
        Ok(Session {
            conn,
            caps,
            host: host.name.clone(),
            lmtp: false,
            verified: self.implicit_tls || tls == TlsPolicy::Verify,
            // A DANE host's name is authenticated by DNSSEC.
            authenticated: self.authenticated || host.dane.is_some(),
            dane: host.dane.is_some(),
            sts_unknown: self.sts_unknown,
        })
    }
}

/// Sends one command already queued and returns its one reply.
pub(crate) async fn one(
    conn: &mut Connection,
    timeout: std::time::Duration,
) -> Result<ServerReply, ConnError> {
    let mut replies = conn.round(timeout).await?;
    replies.pop().map(|(_, r)| r).ok_or(ConnError::Closed)
}

/// EHLO, and HELO if EHLO is refused: the capabilities, or the refusal.
async fn ehlo(
    conn: &mut Connection,
    hostname: &str,
    timeout: std::time::Duration,
) -> Result<Result<Capabilities, ServerReply>, Failure> {
    let peer = conn.peer;
    let failure = move |e: ConnError| Failure::local("4.4.2", format!("[{}]: {e}", peer.ip()));
    conn.client.ehlo(hostname);
    let reply = one(conn, timeout).await.map_err(failure)?;
    if reply.code == 250 {
        return Ok(Ok(conn.client.capabilities().cloned().unwrap_or_default()));
    }
    if reply.code == 421 || conn.client.is_closed() {
        return Ok(Err(reply));
    }
    conn.client.helo(hostname);
    let reply = one(conn, timeout).await.map_err(failure)?;
    Ok(if reply.code == 250 {
        Ok(Capabilities::default())
    } else {
        Err(reply)
    })
}

/// The parameter `key=...` among `params`, as sent.
fn param<'a>(params: &'a [String], key: &str) -> Option<&'a str> {
    params.iter().map(String::as_str).find(|p| {
        p.split_once('=')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case(key))
    })
}

impl Session {
    /// An LMTP session on `conn`, after its LHLO.
    pub(crate) fn lmtp(conn: Connection, caps: Capabilities, host: String) -> Session {
        Session {
            conn,
            caps,
            host,
            lmtp: true,
            verified: false,
            authenticated: false,
            sts_unknown: false,
            dane: false,
        }
    }

    /// Whether TLS is up.
    pub fn has_tls(&self) -> bool {
        self.conn.tls.is_some()
    }

    /// Whether the host offered STARTTLS (in its last EHLO; after TLS
    /// it no longer does, and TLS is up).
    pub fn offered_starttls(&self) -> bool {
        self.caps.starttls || self.conn.tls.is_some()
    }

    /// How the session is protected, for the queue view: the TLS version
    /// and cipher, and whether the certificate was verified; or no TLS.
    pub fn tls_note(&self) -> String {
        match &self.conn.tls {
            Some(t) if self.dane => format!("{t}, certificate verified by DANE"),
            Some(t) if self.verified => format!("{t}, certificate verified"),
            Some(t) => format!("{t}, certificate not verified"),
            None => "no TLS".to_owned(),
        }
    }

    /// The capabilities the remote offered.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the session can carry another transaction.
    pub fn is_open(&self) -> bool {
        !self.conn.client.is_closed()
    }

    /// Delivers one message: its recipients, at most `max_rcpt` per
    /// transaction. Returns one outcome per entry, in order.
    pub async fn deliver(&mut self, job: &Job, settings: &Settings) -> Vec<Outcome> {
        let n = job.entries.len();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        let needs = job.needs();
        if let Some(f) = self.refuse_before_sending(job, needs) {
            return vec![Outcome::Failed(f); n];
        }
        let mut pending: Vec<usize> = (0..n).collect();
        while !pending.is_empty() {
            if !self.is_open() {
                break;
            }
            let chunk: Vec<usize> = pending
                .drain(
                    ..pending
                        .len()
                        .min(settings.max_recipients_per_transaction.max(1)),
                )
                .collect();
            match self.transaction(job, needs, &chunk, settings).await {
                Ok((done, again)) => {
                    for (i, o) in done {
                        outcomes[i] = Some(o);
                    }
                    // A 452 for too many recipients: the rest go at once,
                    // in a new transaction (RFC 5321 4.5.3.1.10).
                    pending.splice(0..0, again);
                }
                Err(f) => {
                    for i in chunk {
                        outcomes[i] = Some(Outcome::Deferred(f.clone()));
                    }
                    break;
                }
            }
        }
        let lost = Failure::local("4.4.2", format!("{}: the session ended", self.host));
        let note = (!self.lmtp).then(|| self.tls_note());
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Deferred(lost.clone())))
            .map(|o| match o {
                Outcome::Delivered {
                    remote,
                    reply,
                    passed_dsn,
                    tls: _,
                } => Outcome::Delivered {
                    remote,
                    reply,
                    passed_dsn,
                    tls: note.clone(),
                },
                o => o,
            })
            .collect()
    }

    /// What this host cannot take, known before sending anything.
    fn refuse_before_sending(&self, job: &Job, needs: Needs) -> Option<Failure> {
        // RFC 8689 section 4.2.1; LMTP is the last hop, to the mailbox.
        if needs.requiretls && !self.lmtp {
            let missing = if !self.authenticated {
                Some("its name is not authenticated (no MTA-STS policy in enforce mode)")
            } else if !self.verified || self.conn.tls.is_none() {
                Some("its certificate is not verified")
            } else if !self.caps.requiretls {
                Some("it does not offer REQUIRETLS")
            } else {
                None
            };
            if let Some(why) = missing {
                // Not knowing whether the destination has a policy is not
                // knowing it has none: wait (the lifetime bounds it).
                let status = if self.sts_unknown && !self.authenticated {
                    "4.7.30"
                } else {
                    "5.7.30"
                };
                return Some(Failure::local(
                    status,
                    format!(
                        "REQUIRETLS support required: {} cannot take this message: {why}",
                        self.host
                    ),
                ));
            }
        }
        let size = job.content.len() as u64;
        if let Some(max) = self.caps.size.filter(|m| *m > 0 && size > *m) {
            return Some(Failure::local(
                "5.3.4",
                format!(
                    "{}: the message ({size} octets) is over its limit ({max})",
                    self.host
                ),
            ));
        }
        if needs.smtputf8 && !self.caps.smtputf8 {
            return Some(Failure::local(
                "5.6.7",
                format!(
                    "{}: the message needs SMTPUTF8, which it does not offer",
                    self.host
                ),
            ));
        }
        if needs.eight_bit && !self.caps.eightbitmime {
            return Some(Failure::local(
                "5.6.3",
                format!(
                    "{}: the message has 8-bit content, and it does not offer 8BITMIME",
                    self.host
                ),
            ));
        }
        None
    }

    /// One transaction for the entries `chunk`: their outcomes, and those
    /// to send again at once (refused with 452 after others were taken).
    async fn transaction(
        &mut self,
        job: &Job,
        needs: Needs,
        chunk: &[usize],
        settings: &Settings,
    ) -> Result<(Vec<(usize, Outcome)>, Vec<usize>), Failure> {
        let t = settings.timeouts;
        let first = &job.entries[chunk[0]];
        let dsn = self.caps.dsn;
        let mut mail_params: Vec<String> = Vec::new();
        if self.caps.size.is_some() {
            mail_params.push(format!("SIZE={}", job.content.len()));
        }
        if needs.eight_bit {
            mail_params.push("BODY=8BITMIME".into());
        }
        if needs.smtputf8 {
            mail_params.push("SMTPUTF8".into());
        }
        if needs.requiretls && !self.lmtp {
            mail_params.push("REQUIRETLS".into());
        }
        if dsn {
            for key in ["RET", "ENVID"] {
                if let Some(p) = param(&first.mail_params, key) {
                    mail_params.push(p.to_owned());
                }
            }
        }
        let params: Vec<&str> = mail_params.iter().map(String::as_str).collect();
        let host = self.host.clone();
        let lost = |e: ConnError| Failure::local("4.4.2", format!("{host}: {e}"));
        let client = &mut self.conn.client;
        client.mail(&first.mail_from, &params);
        let pipelined = self.caps.pipelining;
        if !pipelined {
            let r = one(&mut self.conn, t.command).await.map_err(&lost)?;
            if r.code != 250 {
                return Ok((self.refused_all(chunk, &r).await, Vec::new()));
            }
        }
        let mut rcpt_replies = Vec::new();
        for &i in chunk {
            let e = &job.entries[i];
            let mut p: Vec<&str> = Vec::new();
            if dsn {
                p.extend(param(&e.rcpt_params, "NOTIFY"));
                p.extend(param(&e.rcpt_params, "ORCPT"));
            }
            self.conn.client.rcpt(&e.recipient, &p);
            if !pipelined {
                rcpt_replies.push(one(&mut self.conn, t.command).await.map_err(&lost)?);
            }
        }
        // With CHUNKING and PIPELINING the content goes in the same round
        // as its envelope (RFC 3030): BDAT LAST, one round trip, and no
        // dot-stuffing.
        if pipelined && self.caps.chunking && !self.lmtp {
            return self.bdat_round(job, chunk, settings).await;
        }
        self.conn.client.data();
        let mut replies = self.conn.round(t.command).await.map_err(&lost)?;
        let mail_reply = if pipelined {
            let (_, r) =
                take(&mut replies, Command::Mail).ok_or_else(|| lost(ConnError::Closed))?;
            Some(r)
        } else {
            None
        };
        if pipelined {
            while let Some((_, r)) = take(&mut replies, Command::Rcpt) {
                rcpt_replies.push(r);
            }
        }
        let data_reply = take(&mut replies, Command::Data).map(|(_, r)| r);
        if let Some(r) = mail_reply.filter(|r| r.code != 250) {
            if data_reply.as_ref().is_some_and(|d| d.code == 354) {
                self.conn.client.content(b"");
                let _ = self.conn.round(t.data).await;
            }
            return Ok((self.refused_all(chunk, &r).await, Vec::new()));
        }
        let (mut done, accepted, again) = self.sort_rcpt_replies(chunk, &rcpt_replies);
        let Some(data_reply) = data_reply else {
            return Err(lost(ConnError::Closed));
        };
        if data_reply.code != 354 {
            for &i in &accepted {
                let mut o = Outcome::of_reply(&self.host, &data_reply, false);
                if matches!(o, Outcome::Delivered { .. }) {
                    o = Outcome::Deferred(Failure::remote(&self.host, &data_reply));
                }
                done.push((i, o));
            }
            self.reset(t.command).await;
            return Ok((done, again));
        }
        if accepted.is_empty() {
            // RFC 2920 3.1: DATA was taken though no recipient was; end it
            // with nothing.
            self.conn.client.content(b"");
            let _ = self.conn.round(t.data).await;
            return Ok((done, again));
        }
        if self.lmtp {
            // One reply per accepted recipient, in order (RFC 2033 4.2);
            // those that never came are deferred with the session.
            // Each reply has its own timeout (a mailbox's Sieve script may
            // take a while), and those that came count even if the
            // connection then breaks: a recipient delivered is never sent
            // again.
            self.conn.client.content_lmtp(&job.content, accepted.len());
            let mut replies = Vec::new();
            let mut broke = None;
            while replies.len() < accepted.len() {
                match self.conn.some_replies(t.data).await {
                    // Nothing more is awaited (a 421 closed the session).
                    Ok(more) if more.is_empty() => break,
                    Ok(more) => replies.extend(
                        more.into_iter()
                            .filter(|(c, _)| *c == Command::Content)
                            .map(|(_, r)| r),
                    ),
                    Err(e) => {
                        broke = Some(e);
                        break;
                    }
                }
            }
            for (k, &i) in accepted.iter().enumerate() {
                match replies.get(k) {
                    Some(r) => done.push((i, Outcome::of_reply(&self.host, r, false))),
                    None => {
                        let e = broke.clone().unwrap_or(ConnError::Closed);
                        done.push((i, Outcome::Deferred(lost(e))));
                    }
                }
            }
            return Ok((done, again));
        }
        self.conn.client.content(&job.content);
        let r = one(&mut self.conn, t.data).await.map_err(&lost)?;
        for &i in &accepted {
            done.push((i, Outcome::of_reply(&self.host, &r, dsn)));
        }
        Ok((done, again))
    }

    /// The rest of a transaction whose MAIL and RCPTs are queued: the
    /// content as one `BDAT LAST`, in the same round.
    async fn bdat_round(
        &mut self,
        job: &Job,
        chunk: &[usize],
        settings: &Settings,
    ) -> Result<(Vec<(usize, Outcome)>, Vec<usize>), Failure> {
        let host = self.host.clone();
        let lost = |e: ConnError| Failure::local("4.4.2", format!("{host}: {e}"));
        self.conn.client.bdat(&job.content, true);
        let mut replies = self
            .conn
            .round(settings.timeouts.data)
            .await
            .map_err(&lost)?;
        let (_, mail) = take(&mut replies, Command::Mail).ok_or_else(|| lost(ConnError::Closed))?;
        let mut rcpt_replies = Vec::new();
        while let Some((_, r)) = take(&mut replies, Command::Rcpt) {
            rcpt_replies.push(r);
        }
        let bdat = take(&mut replies, Command::Bdat).map(|(_, r)| r);
        if mail.code != 250 {
            return Ok((self.refused_all(chunk, &mail).await, Vec::new()));
        }
        let (mut done, accepted, again) = self.sort_rcpt_replies(chunk, &rcpt_replies);
        let Some(bdat) = bdat else {
            return Err(lost(ConnError::Closed));
        };
        if accepted.is_empty() {
            // The content went with no recipient to take it: refused, and
            // the transaction is reset.
            self.reset(settings.timeouts.command).await;
            return Ok((done, again));
        }
        for &i in &accepted {
            done.push((i, Outcome::of_reply(&self.host, &bdat, self.caps.dsn)));
        }
        if !(200..300).contains(&bdat.code) {
            self.reset(settings.timeouts.command).await;
        }
        Ok((done, again))
    }

    /// The RCPT replies of a chunk: the outcomes known already (refused),
    /// the recipients taken, and those to send again at once (a 452 for
    /// too many after others were taken). A recipient with no reply (the
    /// server closed, 421) is in none of them.
    #[allow(clippy::type_complexity)]
    fn sort_rcpt_replies(
        &self,
        chunk: &[usize],
        rcpt_replies: &[ServerReply],
    ) -> (Vec<(usize, Outcome)>, Vec<usize>, Vec<usize>) {
        let (mut done, mut accepted, mut again) = (Vec::new(), Vec::new(), Vec::new());
        for (&i, r) in chunk.iter().zip(rcpt_replies) {
            match r.code {
                200..=299 => accepted.push(i),
                452 if !accepted.is_empty() && is_too_many(r) => again.push(i),
                _ => done.push((i, Outcome::of_reply(&self.host, r, false))),
            }
        }
        (done, accepted, again)
    }

    /// Every recipient of the chunk gets the MAIL refusal; the session is
    /// reset for the next transaction.
    async fn refused_all(&mut self, chunk: &[usize], r: &ServerReply) -> Vec<(usize, Outcome)> {
        let out = chunk
            .iter()
            .map(|i| (*i, Outcome::of_reply(&self.host, r, false)))
            .map(|(i, o)| match o {
                Outcome::Delivered { .. } => (i, Outcome::Deferred(Failure::remote(&self.host, r))),
                o => (i, o),
            })
            .collect();
        self.reset(std::time::Duration::from_secs(30)).await;
        out
    }

    async fn reset(&mut self, timeout: std::time::Duration) {
        if self.is_open() {
            self.conn.client.rset();
            let _ = self.conn.round(timeout).await;
        }
    }

    /// Ends the session politely.
    pub async fn quit(self) {
        self.conn.quit().await;
    }
}

/// Takes the first reply to `command` out of `replies`.
fn take(
    replies: &mut Vec<(Command, ServerReply)>,
    command: Command,
) -> Option<(Command, ServerReply)> {
    let i = replies.iter().position(|(c, _)| *c == command)?;
    Some(replies.remove(i))
}

/// A 452 that says "too many recipients" (RFC 5321 4.5.3.1.10: 452 4.5.3).
fn is_too_many(r: &ServerReply) -> bool {
    r.enhanced() == Some("4.5.3")
        || r.lines
            .first()
            .is_some_and(|l| l.to_ascii_lowercase().contains("too many recipients"))
}
