//! The backend that joins policy and store: which recipients are accepted
//! ([`Policy`], in `postel-policy`), and how an accepted message becomes a
//! stored one.
//!
//! With delivery off (the mail catcher), an authenticated user may send
//! anywhere and the message is kept; anyone else's recipients go through
//! the policy. With delivery on, a recipient outside the local domains is
//! queued for delivery, and taken only from an authenticated user or a
//! client in `relay_networks` ([`postel_policy::RelayPolicy`]); an
//! authenticated user sends only from the addresses given to it.
//!
//! AUTH goes through [`postel_policy::Authenticator`], shared with the web
//! login: one lockout per client address (`421` without a check once it has
//! too many failures), one bounded pool of Argon2id checks (`454` when it
//! is full), an unknown user checked against a dummy hash so that both
//! failures take the same time, and a delay before every `535`.
//!
//! Beside this file: `checks` (SPF, DKIM, DMARC and ARC on mail from
//! outside, forged results removed, DKIM signatures on mail from inside),
//! `envelope` (where recipients go), `filters` (milters), `screening` (DNS
//! lists, rate limits), `metrics` (what it counts), `tests` (over the
//! memory store).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use postel_policy::{Authenticator, UserHashes};
use postel_proto::sasl::Mechanism;

use postel_policy::RelayPolicy;
use postel_policy::relay::owns;
use postel_proto::{ForwardPath, MailParams, RcptParams, Reply, ReversePath, reply};
use postel_server::{Backend, BackendSession, ConnMeta};
use postel_store::{Envelope, Incoming, NewMessage, Recipient, Store, Users};
use tracing::{info, warn};

mod checks;
mod envelope;
mod filters;
mod login;
pub(crate) use login::{decoy_secret, scram_keys_for};
mod metrics;
mod screening;

pub(crate) use checks::Authentication;
pub(crate) use filters::{DefaultAction, Filters, MilterConfig};
pub(crate) use metrics::BackendMetrics;
pub(crate) use screening::Screening;

use postel_policy::Trace;
use postel_policy::delegation::Stage;
use postel_policy::recipients::Policy;

/// Hashes a password with Argon2id and a random salt (PHC string form).
///
/// # Errors
/// Only if the hasher fails, which it does not for in-range inputs.
pub(crate) fn hash_password(password: &str) -> anyhow::Result<String> {
    postel_policy::hash_password(password)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// The accounts as the source of password hashes.
pub(crate) struct StoreUsers<U>(pub(crate) U);

impl<U: Users> UserHashes for StoreUsers<U> {
    fn user_hash(&self, user: &str) -> Option<String> {
        self.0.user_hash(user).ok().flatten()
    }

    fn try_user_hash(&self, user: &str) -> Result<Option<String>, String> {
        self.0.user_hash(user).map_err(|e| e.to_string())
    }

    fn try_user_scram(&self, user: &str) -> Result<Option<String>, String> {
        self.0.user_scram(user).map_err(|e| e.to_string())
    }

    fn user_scram(&self, user: &str) -> Option<String> {
        self.0.user_scram(user).ok().flatten()
    }
}

/// What every session of the backend shares.
pub(crate) struct Inner<S> {
    pub(crate) store: S,
    pub(crate) policy: Policy,
    pub(crate) hostname: String,
    pub(crate) version: String,
    /// Login attempts: the lockout and the password pool, shared with the
    /// web login.
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) metrics: BackendMetrics,
    /// The accounts (for the sender addresses of a user).
    pub(crate) users: Arc<dyn Users>,
    /// Delivery, when on: who may relay, and the queue worker to wake.
    pub(crate) relay: Option<Relay>,
    /// The data folder and the free space (octets) below which MAIL is
    /// refused; None: no check.
    pub(crate) disk: Option<(std::path::PathBuf, u64)>,
    /// Policy servers (Postfix's `check_policy_service`), in order, each
    /// asked at its stage.
    pub(crate) policy_services: Vec<postel_policy::delegation::Service>,
    /// DNS lists at connect, rate limits at MAIL and RCPT.
    pub(crate) screening: Screening,
    /// Milters, in order.
    pub(crate) milters: Vec<MilterConfig>,
    /// The resolver for clients' names, when milters or policy servers
    /// are told them.
    pub(crate) dns: Option<Arc<postel_delivery::mx::Dns>>,
    /// Webhooks (by URL) each kept message is posted to, and the worker
    /// to wake when one is.
    pub(crate) webhooks: Vec<String>,
    pub(crate) webhook_wake: Arc<tokio::sync::Notify>,
    /// Checking mail from outside, signing mail from inside.
    pub(crate) authentication: Authentication,
}

/// What the backend needs of delivery.
pub(crate) struct Relay {
    /// Who may relay.
    pub(crate) policy: RelayPolicy,
    /// Woken when a message is queued.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Where a message just queued is handed to delivery in memory.
    pub(crate) handoff: Arc<postel_delivery::Handoff>,
    /// Local recipients that go to a Maildir or over LMTP: queued.
    pub(crate) local_routes: postel_delivery::local::LocalRoutes,
    /// Local addresses (lowercase) whose mail goes to others instead.
    pub(crate) forward: Arc<std::collections::BTreeMap<String, Vec<String>>>,
}

/// Free octets for unprivileged users on the file system of `dir`.
fn free_space(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The backend the `postel` binary serves with.
pub(crate) struct PostelBackend<S> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> PostelBackend<S> {
    pub(crate) fn new(inner: Arc<Inner<S>>) -> PostelBackend<S> {
        PostelBackend { inner }
    }
}

impl<S: Store> Backend for PostelBackend<S> {
    type Session = PostelSession<S>;

    fn new_session(&self, conn: &ConnMeta) -> PostelSession<S> {
        PostelSession {
            inner: self.inner.clone(),
            meta: conn.clone(),
            helo: String::new(),
            extended: false,
            from: String::new(),
            mail_params: Vec::new(),
            smtputf8: false,
            recipients: Vec::new(),
            incoming: None,
            tls: None,
            user: None,
            addresses: Vec::new(),
            queue: Vec::new(),
            local: false,
            prepend: Vec::new(),
            hold: false,
            mail_size: 0,
            filters: Filters::new(self.inner.milters.clone()),
            mechanism: None,
            scram: None,
            scram_proven: None,
            forwarded: false,
            client_name: "unknown".to_owned(),
            client_ptr: "unknown".to_owned(),
            spf: checks::SpfState::Off,
            prefetch: None,
            lookahead: None,
        }
    }

    async fn status_lines(&self) -> Vec<String> {
        match self.inner.store.stats().await {
            Ok(s) => vec![format!(
                "Messages stored: {} ({} octets)",
                s.messages, s.bytes
            )],
            Err(e) => vec![format!("Messages stored: unknown ({e})")],
        }
    }
}

/// One session's transaction as it is built.
pub(crate) struct PostelSession<S> {
    inner: Arc<Inner<S>>,
    meta: ConnMeta,
    helo: String,
    extended: bool,
    from: String,
    mail_params: Vec<String>,
    smtputf8: bool,
    recipients: Vec<Recipient>,
    /// The content so far: where it is kept is the store's choice.
    incoming: Option<Incoming>,
    /// `"<version> <cipher>"` once TLS is up.
    tls: Option<String>,
    /// The authenticated user.
    user: Option<String>,
    /// The sender addresses given to the user.
    addresses: Vec<String>,
    /// Positions of the recipients to send on.
    queue: Vec<u32>,
    /// Whether some recipient is local.
    local: bool,
    /// Header fields a policy server asked to prepend.
    prepend: Vec<String>,
    /// A policy server asked to hold the message.
    hold: bool,
    /// MAIL's `SIZE=`, for policy servers.
    mail_size: u64,
    /// The session's milters.
    filters: Filters,
    /// The SASL mechanism of the login.
    mechanism: Option<Mechanism>,
    /// Some recipient was forwarded to another domain: the message is
    /// ARC-sealed when it is checked.
    forwarded: bool,
    /// A SCRAM login between its two steps: the user and its keys.
    scram: Option<(String, postel_policy::scram::ScramKeys)>,
    /// A SCRAM proof that checked out, until the client takes our
    /// signature.
    scram_proven: Option<String>,
    /// The client's forward-confirmed name and PTR name (`unknown`: none,
    /// or not looked up).
    client_name: String,
    client_ptr: String,
    /// SPF of the transaction, from MAIL on (mail from outside).
    spf: checks::SpfState,
    /// Octets of the content's first part scanned for the header's end,
    /// while the lookups it needs are still to start; None: nothing to do.
    prefetch: Option<usize>,
    /// The lookups started ahead, stopped with the transaction.
    lookahead: Option<tokio::task::JoinHandle<()>>,
}

impl<S: Store> PostelSession<S> {
    /// The RFC 3848 / RFC 6531 `with` protocol name: ESMTP, plus S for TLS
    /// and A for AUTH; UTF8SMTP... with SMTPUTF8; plain SMTP after HELO.
    fn protocol(&self) -> String {
        let base = match (self.smtputf8, self.extended) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => return "SMTP".to_owned(),
        };
        let s = if self.tls.is_some() { "S" } else { "" };
        let a = if self.user.is_some() { "A" } else { "" };
        format!("{base}{s}{a}")
    }

    fn clear(&mut self) {
        self.from.clear();
        self.mail_params.clear();
        self.smtputf8 = false;
        self.recipients.clear();
        self.incoming = None;
        self.queue.clear();
        self.local = false;
        self.forwarded = false;
        self.prepend.clear();
        self.hold = false;
        self.mail_size = 0;
        if let checks::SpfState::Pending(task) = &self.spf {
            task.abort();
        }
        self.spf = checks::SpfState::Off;
        self.prefetch = None;
        if let Some(task) = self.lookahead.take() {
            task.abort();
        }
    }

    /// The content whole in memory: a message spooled to disk is read
    /// back (for milters, checks and signing).
    async fn whole(
        content: Vec<u8>,
        spooled: Option<postel_store::SpoolFile>,
    ) -> Result<Vec<u8>, Reply> {
        let Some(file) = spooled else {
            return Ok(content);
        };
        let read = tokio::task::spawn_blocking(move || file.read_all()).await;
        match read {
            Ok(Ok(mut all)) => {
                all.extend_from_slice(&content);
                Ok(all)
            }
            _ => Err(reply::local_error()),
        }
    }

    /// The milters' turn at the end of data: the content as they left it,
    /// None when one discarded the message, or the refusal. A message
    /// spooled to disk is read back whole for them.
    async fn filter(
        &mut self,
        id: &str,
        content: Vec<u8>,
        spooled: Option<postel_store::SpoolFile>,
    ) -> Result<Option<(Vec<u8>, Option<postel_store::SpoolFile>)>, Reply> {
        if self.filters.is_empty() || !self.filters.want_content() {
            return Ok(Some((content, spooled)));
        }
        let content = Self::whole(content, spooled).await?;
        let (content, outcome) = self
            .filters
            .message(self.meta.session_id, id, content)
            .await?;
        if outcome.discard {
            return Ok(None);
        }
        if !outcome.quarantine.is_empty() {
            self.hold = true;
            let reason: String = outcome
                .quarantine
                .join("; ")
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            if self.prepend.len() < 100 {
                self.prepend.push(format!("X-Postel-Quarantine: {reason}"));
            }
        }
        self.apply_envelope(outcome.envelope);
        if self.recipients.is_empty() {
            return Ok(None);
        }
        Ok(Some((content, None)))
    }

    /// The client's names from DNS, for milters and policy servers: not
    /// for a loopback client (its name is the host's own business), and
    /// given up after 5 s.
    async fn look_up_client(&mut self, inner: &Inner<S>) {
        let ip = match self.meta.peer.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(self.meta.peer.ip(), Into::into),
            v4 => v4,
        };
        let Some(dns) = &inner.dns else { return };
        let wanted = !inner.milters.is_empty() || !inner.policy_services.is_empty();
        if !wanted || ip.is_loopback() {
            return;
        }
        let lookup = dns.client_names(ip);
        if let Ok((ptr, confirmed)) =
            tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await
        {
            // Valid host names (checked in `client_names`), as they are.
            if let Some(p) = ptr {
                self.client_ptr = p;
            }
            if let Some(c) = confirmed {
                self.client_name = c;
            }
        }
    }

    /// What the milters are told of the session.
    fn facts<'a>(&'a self, inner: &'a Inner<S>) -> filters::SessionFacts<'a> {
        filters::SessionFacts {
            id: self.meta.session_id,
            hostname: &inner.hostname,
            version: &inner.version,
            peer: self.meta.peer,
            local: self.meta.local,
            tls: self.tls.as_deref(),
            user: self.user.as_deref(),
            mechanism: self.mechanism.map(Mechanism::name),
            client_name: &self.client_name,
            client_ptr: &self.client_ptr,
        }
    }

    /// Who sends, as the rate limits count it.
    fn rate_sender(&self) -> postel_policy::rate::Sender<'_> {
        postel_policy::rate::Sender {
            client: self.meta.peer.ip(),
            user: self.user.as_deref(),
            sender_domain: self.from.rsplit_once('@').map(|(_, d)| d),
        }
    }

    /// Asks the policy servers of `stage` (about `to` at RCPT), in
    /// order: the first refusal wins; PREPEND and HOLD are kept for the
    /// message.
    async fn ask_policy(
        &mut self,
        stage: Stage,
        to: Option<&ForwardPath>,
        queue_id: &str,
    ) -> Result<(), Reply> {
        use postel_policy::delegation::{self, Verdict};
        let inner = self.inner.clone();
        if !inner.policy_services.iter().any(|s| s.stage == stage) {
            return Ok(());
        }
        let recipient = to.map(ToString::to_string).unwrap_or_default();
        let req = delegation::Request {
            protocol_state: stage.protocol_state(),
            protocol_name: if self.extended { "ESMTP" } else { "SMTP" },
            client_address: self.meta.peer.ip().to_string(),
            client_name: &self.client_name,
            reverse_client_name: &self.client_ptr,
            helo_name: &self.helo,
            sender: &self.from,
            recipient: &recipient,
            recipient_count: self.recipients.len(),
            sasl_username: self.user.as_deref().unwrap_or(""),
            size: self.mail_size,
            instance: format!("{:x}", self.meta.session_id),
            queue_id,
        };
        for service in inner.policy_services.iter().filter(|s| s.stage == stage) {
            let addr = &service.address;
            match delegation::ask(addr, &req, service.timeout).await {
                Ok(action) => match delegation::verdict(&action) {
                    Verdict::Accept => {}
                    Verdict::Prepend(h) => {
                        if self.prepend.len() < 100 {
                            self.prepend.push(h);
                        }
                    }
                    Verdict::Hold => self.hold = true,
                    Verdict::Refuse(r) => {
                        info!(session = self.meta.session_id, policy = %addr, stage = stage.name(), code = r.code, "refused by a policy server");
                        return Err(r);
                    }
                },
                Err(e) => {
                    warn!(session = self.meta.session_id, error = %e, "policy server failed: 451");
                    return Err(delegation::unavailable());
                }
            }
        }
        Ok(())
    }
}

impl<S: Store> BackendSession for PostelSession<S> {
    async fn connect(&mut self) -> Result<(), Reply> {
        let inner = self.inner.clone();
        inner
            .screening
            .connect(self.meta.session_id, self.meta.peer.ip())
            .await?;
        self.look_up_client(&inner).await;
        if self.filters.is_empty() {
            return Ok(());
        }
        // The filters are taken out while they are told: the session's
        // facts borrow the rest of it.
        let mut filters = std::mem::take(&mut self.filters);
        let told = filters.connect(&self.facts(&inner)).await;
        self.filters = filters;
        told
    }

    fn helo(&mut self, name: &str, extended: bool) {
        self.filters.helo(name);
        self.helo = name.to_owned();
        self.extended = extended;
    }

    async fn mail(&mut self, from: &ReversePath, params: &MailParams) -> Result<(), Reply> {
        self.clear();
        if let Some((dir, min)) = &self.inner.disk
            && free_space(dir).is_some_and(|free| free < *min)
        {
            warn!(session = self.meta.session_id, client = %self.meta.peer, "MAIL refused: the disk is nearly full");
            return Err(reply::insufficient_storage());
        }
        if let Some(user) = &self.user {
            let sender = from.to_string();
            let enforce = self.inner.relay.is_some() || !self.addresses.is_empty();
            if enforce && !sender.is_empty() && !owns(&self.addresses, &sender) {
                let (user, sender) = (
                    postel_proto::display::visible(user),
                    postel_proto::display::visible(&sender),
                );
                warn!(session = self.meta.session_id, client = %self.meta.peer, %user, %sender, "MAIL refused: sender not owned by the user");
                return Err(reply::sender_not_owned());
            }
        }
        self.from = from.to_string();
        self.mail_params.clone_from(&params.raw);
        self.smtputf8 = params.smtputf8;
        self.mail_size = params.size.unwrap_or(0);
        if let Err(r) = self.ask_policy(Stage::Mail, None, "").await {
            self.clear();
            return Err(r);
        }
        if let Err(r) = self.inner.screening.message(&self.rate_sender()) {
            warn!(session = self.meta.session_id, client = %self.meta.peer, "MAIL refused: over a rate limit");
            self.clear();
            return Err(r);
        }
        self.start_checks();
        if !self.filters.is_empty() {
            let inner = self.inner.clone();
            let mut filters = std::mem::take(&mut self.filters);
            let told = filters
                .mail(&self.facts(&inner), &self.from, &self.mail_params)
                .await;
            self.filters = filters;
            if let Err(r) = told {
                self.clear();
                return Err(r);
            }
        }
        Ok(())
    }

    async fn rcpt(&mut self, to: &ForwardPath, params: &RcptParams) -> Result<(), Reply> {
        let may_relay = self.user.is_some()
            || self
                .inner
                .relay
                .as_ref()
                .is_some_and(|r| r.policy.trusts(self.meta.peer.ip()));
        let forward = self.forward_targets(to);
        let queued = match &forward {
            Some(_) => false,
            None => self.placement(to, may_relay)?,
        };
        self.spf_refusal().await?;
        // Asked only once routing took the recipient: a policy server's
        // OK never opens relaying.
        self.ask_policy(Stage::Rcpt, Some(to), "").await?;
        if let Err(r) = self.inner.screening.recipient(&self.rate_sender()) {
            warn!(session = self.meta.session_id, client = %self.meta.peer, "RCPT refused: over a rate limit");
            return Err(r);
        }
        if !self.filters.is_empty() {
            let address = to.to_string();
            self.filters
                .rcpt(self.meta.session_id, &address, &params.raw)
                .await?;
        }
        match forward {
            Some(targets) => self.push_forwarded(to, &targets, &params.raw)?,
            None => self.push_recipient(to, params.raw.clone(), queued),
        }
        Ok(())
    }

    fn body(&mut self) -> &mut Vec<u8> {
        let store = &self.inner.store;
        self.incoming
            .get_or_insert_with(|| store.receive())
            .buffer()
    }

    async fn body_appended(&mut self) {
        self.prefetch();
        if let Some(incoming) = self.incoming.as_mut() {
            incoming.appended().await;
        }
    }

    async fn data(&mut self) -> Result<String, Reply> {
        let inner = self.inner.clone();
        let id = inner.store.next_id();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let incoming = self
            .incoming
            .take()
            .unwrap_or_else(|| inner.store.receive());
        // The subject from the content alone: parsing our own Received:
        // header again would cost more than the rest of the headers.
        let subject = subject_of(incoming.first_part());
        // A first line that starts with white space would read as the
        // continuation of the fields Postel puts on top (Received:,
        // Authentication-Results:): a way to forge their content.
        if incoming
            .first_part()
            .first()
            .is_some_and(|b| matches!(b, b' ' | b'\t'))
        {
            warn!(session = self.meta.session_id, client = %self.meta.peer, "message refused: it starts with white space");
            self.clear();
            return Err(reply::content_starts_with_space());
        }
        // Only a spooled message can be wanted whole: one in memory is.
        let wants_whole = incoming.is_spooled()
            && (self.wants_whole(incoming.first_part())
                || (!self.filters.is_empty() && self.filters.want_content()));
        let (content, spooled) = match incoming.finish().await {
            Ok(c) => c,
            Err(e) => {
                inner.metrics.store_errors.inc();
                let r = reply::local_error();
                warn!(session = self.meta.session_id, client = %self.meta.peer, error = %e, code = r.code, "message not stored");
                self.clear();
                return Err(r);
            }
        };
        if let Err(r) = self.ask_policy(Stage::EndOfData, None, &id).await {
            self.clear();
            return Err(r);
        }
        // Checks, signatures and milters need the message whole: a
        // spooled one is read back, within a budget shared by every session
        // (held until it is stored).
        let mut _room = None;
        let (mut content, spooled) = match spooled {
            Some(file) if wants_whole => {
                match inner
                    .authentication
                    .room_for(file.len() + content.len() as u64)
                    .await
                {
                    Ok(permit) => _room = Some(permit),
                    Err(r) => {
                        warn!(session = self.meta.session_id, client = %self.meta.peer, "message not taken: no room to read it back whole");
                        self.clear();
                        return Err(r);
                    }
                }
                match Self::whole(content, Some(file)).await {
                    Ok(c) => (c, None),
                    Err(r) => {
                        self.clear();
                        return Err(r);
                    }
                }
            }
            other => (content, other),
        };
        // Only a message whole in memory can hold a field to remove (one
        // left spooled has none in its header section: wants_whole).
        let checked = if spooled.is_none() {
            match self.check_message(&mut content).await {
                Ok(c) => c,
                Err(r) => {
                    self.clear();
                    return Err(r);
                }
            }
        } else {
            None
        };
        let (content, spooled) = match self.filter(&id, content, spooled).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                info!(session = self.meta.session_id, client = %self.meta.peer, id, "message discarded by a milter");
                self.clear();
                return Ok(id);
            }
            Err(r) => {
                self.clear();
                return Err(r);
            }
        };
        let mut raw = Vec::with_capacity(content.len() + 256);
        Trace {
            helo: &self.helo,
            peer: self.meta.peer.ip(),
            hostname: &inner.hostname,
            version: &inner.version,
            protocol: &self.protocol(),
            id: &id,
            recipient: (self.recipients.len() == 1).then(|| self.recipients[0].address.as_str()),
            unix_time: now,
        }
        .write_to(&mut raw);
        let mut seal = None;
        let checks = checked.map(|(header, checks, arc_set)| {
            raw.extend_from_slice(header.as_bytes());
            seal = arc_set;
            checks
        });
        if checks.as_ref().is_some_and(|c| c.quarantine) {
            info!(
                session = self.meta.session_id,
                id, "message failed DMARC: quarantine flag set"
            );
        }
        for h in &self.prepend {
            raw.extend_from_slice(h.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(&content);
        drop(content);
        // Signed last, over every field Postel wrote.
        let signatures = self.signatures(&raw);
        raw.splice(0..0, signatures);
        // An ARC set goes on top (RFC 8617 5.1).
        if let Some(seal) = seal {
            raw.splice(0..0, seal.into_bytes());
        }
        let count = self.recipients.len();
        let kept = self.local || self.queue.is_empty();
        let webhooks_for = if kept {
            inner.webhooks.clone()
        } else {
            Vec::new()
        };
        let msg = NewMessage {
            id: id.clone(),
            received_at: now,
            envelope: Envelope {
                mail_from: std::mem::take(&mut self.from),
                mail_params: std::mem::take(&mut self.mail_params),
                recipients: std::mem::take(&mut self.recipients),
                client_addr: self.meta.peer.to_string(),
                helo: self.helo.clone(),
                protocol: self.protocol(),
                tls: self.tls.clone(),
                auth_user: self.user.clone(),
                checks,
            },
            subject,
            raw,
            spooled,
            local: kept,
            queue: std::mem::take(&mut self.queue),
            claimed_until: None,
            hold: self.hold,
            webhooks: webhooks_for,
        };
        let queued = !msg.queue.is_empty();
        // A small message to send on goes to delivery in memory (unless
        // other nodes share the queue: the rows are theirs to take too,
        // and a lease held in memory would not be renewed): its rows
        // are committed claimed, and handed over with its content after
        // the commit, so that delivery neither claims nor reads them back.
        let mut msg = msg;
        let handoff = match &inner.relay {
            Some(relay)
                if queued
                    && inner.store.lease().is_none()
                    && !msg.hold
                    && msg.spooled.is_none()
                    && relay.handoff.accepts(msg.raw.len()) =>
            {
                msg.claimed_until = Some(now + postel_delivery::worker::CLAIM);
                Some((Arc::new(msg.raw.clone()), handed_rows(&msg)))
            }
            _ => None,
        };
        let size = msg.size();
        let from = postel_proto::display::visible(&msg.envelope.mail_from).into_owned();
        let started = Instant::now();
        let result = inner.store.insert(msg).await;
        inner
            .metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.clear();
        let session = self.meta.session_id;
        let client = self.meta.peer;
        match result {
            Ok(()) => {
                if let (true, Some(relay)) = (queued, &inner.relay) {
                    if let Some((raw, rows)) = handoff {
                        relay.handoff.put(&id, raw, rows);
                    }
                    relay.wake.notify_one();
                }
                if kept && !inner.webhooks.is_empty() {
                    inner.webhook_wake.notify_one();
                }
                inner.metrics.messages.inc();
                inner.metrics.bytes.inc_by(size as u64);
                info!(session, %client, from, recipients = count, size, id, code = 250, "message stored");
                Ok(id)
            }
            Err(e) => {
                // The commit's outcome may be unknown (a failed batch can
                // still be recovered): rows that were to be handed over
                // are released, so that they are never stranded claimed.
                if let (Some((_, rows)), Some(relay)) = (handoff, &inner.relay) {
                    relay.handoff.set_aside(rows);
                }
                let r = if e.is_transient() {
                    reply::local_error()
                } else {
                    reply::transaction_failed()
                };
                inner.metrics.store_errors.inc();
                warn!(session, %client, from, recipients = count, size, error = %e, code = r.code, "message not stored");
                Err(r)
            }
        }
    }

    fn reset(&mut self) {
        self.clear();
    }

    fn tls(&mut self, description: &str) {
        // RFC 3207 4.2: what came before the handshake no longer counts.
        self.clear();
        self.helo.clear();
        self.user = None;
        self.mechanism = None;
        self.scram = None;
        self.scram_proven = None;
        self.tls = Some(description.to_owned());
    }

    async fn auth(
        &mut self,
        mechanism: Mechanism,
        authzid: &str,
        username: &str,
        password: &str,
    ) -> Result<(), Reply> {
        self.password_login(mechanism, authzid, username, password)
            .await
    }

    async fn scram_first(
        &mut self,
        authzid: &str,
        username: &str,
        client_nonce: &str,
    ) -> Result<String, Reply> {
        self.scram_login_first(authzid, username, client_nonce)
            .await
    }

    async fn scram_final(&mut self, auth_message: &str, proof: &[u8]) -> Result<String, Reply> {
        self.scram_login_final(auth_message, proof).await
    }

    async fn scram_done(&mut self) {
        self.scram_login_done().await;
    }
}

/// The queue rows of a message about to be committed, as the store will
/// hold them (claimed), for the handoff to delivery.
fn handed_rows(msg: &NewMessage) -> Vec<postel_store::QueueEntry> {
    msg.queue
        .iter()
        .filter_map(|&position| {
            postel_store::QueueEntry::committed(
                &msg.id,
                position,
                &msg.envelope,
                msg.received_at,
                msg.size(),
                msg.claimed_until,
                false,
            )
        })
        .collect()
}

/// The decoded `Subject:` of a message, if it has one.
pub(crate) fn subject_of(raw: &[u8]) -> Option<String> {
    mail_parser::MessageParser::new()
        .parse_headers(raw)
        .and_then(|m| m.subject().map(str::to_owned))
}

#[cfg(test)]
mod tests;
