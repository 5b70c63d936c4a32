//! Mail authentication in a session: mail from outside is checked (SPF
//! from MAIL on, while the content arrives; DKIM, ARC and DMARC at the
//! end of data), and mail from users and trusted networks is signed.
//!
//! Who is checked: not a user who logged in, not a client in
//! `relay_networks`, not one in `[verify] ignore_networks` (loopback by
//! default). Those are inside the trust boundary (RFC 8601 5): their
//! mail is signed instead, when the author's domain has a key.
//!
//! What a result does is the config's: by default only the
//! `Authentication-Results:` field and the stored results; a DMARC
//! failure under `p=quarantine` (or an unenforced `p=reject`) sets the
//! message's quarantine flag; `reject_spf` refuses an SPF `fail` at RCPT
//! and `reject_dmarc` a `p=reject` failure at the end of data.

use std::sync::Arc;

use postel_auth::{Outcome, Policy, Signer, Spf, Verifier};
use postel_proto::{Reply, reply};
use postel_store::{Checks, Store};
use tracing::{info, warn};

use super::PostelSession;
use crate::config::VerifySettings;

/// KiB of spooled messages read back whole at once (for checks,
/// signatures and milters), over every session: a bound on that memory
/// (a message larger than the whole budget takes all of it, alone).
const WHOLE_BUDGET_KIB: u32 = 128 * 1024;

/// How long a message waits for room in the budget; then `451`.
const WHOLE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// What the backend checks and signs with.
pub(crate) struct Authentication {
    /// None when checking is off (or DNS could not be set up).
    pub(crate) verifier: Option<Arc<Verifier>>,
    pub(crate) settings: VerifySettings,
    pub(crate) signer: Arc<Signer>,
    /// KiB of [`WHOLE_BUDGET_KIB`] free.
    pub(crate) whole: Arc<tokio::sync::Semaphore>,
    /// ARC-seals checked mail that is forwarded (`[arc]`).
    pub(crate) sealer: Option<Arc<postel_auth::Sealer>>,
}

impl Authentication {
    /// The budget for messages read back whole.
    pub(crate) fn whole_budget() -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(WHOLE_BUDGET_KIB as usize))
    }

    /// Waits (at most [`WHOLE_WAIT`]) for room to hold `octets` of a
    /// message whole; the room is given back when the permit is dropped.
    ///
    /// # Errors
    /// `451` when there is no room in time.
    pub(crate) async fn room_for(
        &self,
        octets: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Reply> {
        let kib = u32::try_from(octets.div_ceil(1 << 10))
            .unwrap_or(u32::MAX)
            .clamp(1, WHOLE_BUDGET_KIB);
        match tokio::time::timeout(WHOLE_WAIT, self.whole.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(reply::local_error()),
        }
    }
}

impl Authentication {
    /// Neither checks nor signs.
    #[cfg(test)]
    pub(crate) fn none() -> Authentication {
        Authentication {
            verifier: None,
            settings: VerifySettings {
                enabled: false,
                authserv_id: "localhost".into(),
                timeout: std::time::Duration::from_secs(1),
                ignore: Vec::new(),
                reject_dmarc: false,
                reject_spf: false,
            },
            signer: Arc::new(Signer::default()),
            whole: Authentication::whole_budget(),
            sealer: None,
        }
    }
}

/// SPF for the transaction under way.
#[derive(Default)]
pub(crate) enum SpfState {
    /// Not checked.
    #[default]
    Off,
    /// Started at MAIL.
    Pending(tokio::task::JoinHandle<Spf>),
    /// Its result (None: the check failed to run).
    Done(Option<Box<Spf>>),
}

impl<S: Store> PostelSession<S> {
    /// Whether the session's client is inside the trust boundary: a user,
    /// or a client that may relay.
    pub(super) fn trusted(&self) -> bool {
        self.user.is_some()
            || self
                .inner
                .relay
                .as_ref()
                .is_some_and(|r| r.policy.trusts(self.meta.peer.ip()))
    }

    /// At MAIL: starts SPF for a client from outside, so that its lookups
    /// run while the recipients and the content arrive.
    pub(super) fn start_checks(&mut self) {
        let a = &self.inner.authentication;
        let Some(verifier) = &a.verifier else { return };
        if self.trusted() || !a.settings.checks(self.meta.peer.ip()) {
            return;
        }
        let (verifier, ip) = (verifier.clone(), self.meta.peer.ip());
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, Into::into),
            v4 => v4,
        };
        let (helo, from) = (self.helo.clone(), self.from.clone());
        self.spf = SpfState::Pending(tokio::spawn(
            async move { verifier.spf(ip, &helo, &from).await },
        ));
        self.prefetch = Some(0);
    }

    /// As content arrives: once the header section is in, the DKIM keys
    /// and the DMARC record it names are looked up ahead of the checks.
    /// Each part of the first 64 KiB is scanned once for the header's end.
    pub(super) fn prefetch(&mut self) {
        const SCAN: usize = 64 * 1024;
        let Some(scanned) = self.prefetch else { return };
        let Some(head) = self.incoming.as_ref().map(|i| i.first_part()) else {
            return;
        };
        let from = scanned.saturating_sub(3);
        let upto = head.len().min(SCAN);
        match memchr::memmem::find(&head[from.min(upto)..upto], b"\r\n\r\n") {
            Some(at) => {
                self.prefetch = None;
                if let Some(v) = self.inner.authentication.verifier.clone() {
                    let header = head[..from + at + 4].to_vec();
                    // Ends with the transaction (clear) at the latest.
                    self.lookahead = Some(tokio::spawn(async move { v.prefetch(&header).await }));
                }
            }
            None if upto >= SCAN => self.prefetch = None,
            None => self.prefetch = Some(upto),
        }
    }

    /// SPF's result, waiting for it if it is still under way.
    async fn spf(&mut self) -> Option<&Spf> {
        if let SpfState::Pending(task) = &mut self.spf {
            let done = task.await.ok().map(Box::new);
            self.spf = SpfState::Done(done);
        }
        match &self.spf {
            SpfState::Done(s) => s.as_deref(),
            _ => None,
        }
    }

    /// At RCPT, with `reject_spf`: the refusal of a MAIL FROM that SPF
    /// says the client may not send for.
    pub(super) async fn spf_refusal(&mut self) -> Result<(), Reply> {
        if !self.inner.authentication.settings.reject_spf {
            return Ok(());
        }
        let from = self.from.clone();
        if self.spf().await.is_some_and(Spf::failed) {
            let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
            let domain = postel_auth::domain_chars(domain);
            warn!(session = self.meta.session_id, client = %self.meta.peer, domain, "RCPT refused: SPF fail");
            return Err(reply::spf_failed(&domain));
        }
        Ok(())
    }

    /// At the end of data (`content` whole): removes forged results
    /// (from every message: a user's too) and, for mail from outside that
    /// is checked, checks it; returns its `Authentication-Results:` field
    /// and results, or the refusal.
    pub(super) async fn check_message(
        &mut self,
        content: &mut Vec<u8>,
    ) -> Result<Option<(String, Checks, Option<String>)>, Reply> {
        let inner = self.inner.clone();
        // Checked as it arrived (the checks do not look at a forged field
        // claiming our id), then cleaned, checked or not (RFC 8601 5).
        let outcome = self.outcome(content).await?;
        let removed =
            postel_auth::strip_forged(content, &inner.authentication.settings.authserv_id);
        if removed > 0 {
            info!(
                session = self.meta.session_id,
                removed, "forged Authentication-Results removed"
            );
        }
        let Some(outcome) = outcome else {
            return Ok(None);
        };
        let settings = &inner.authentication.settings;
        let failed = outcome.dmarc_failed();
        let domain = &outcome.author_domain;
        if failed && outcome.policy == Policy::Reject && settings.reject_dmarc {
            warn!(session = self.meta.session_id, client = %self.meta.peer, domain, "message refused: DMARC p=reject");
            return Err(reply::dmarc_rejected(domain));
        }
        let checks = Checks {
            spf: outcome.spf.to_owned(),
            dkim: outcome.dkim.to_owned(),
            dmarc: outcome.dmarc.to_owned(),
            arc: outcome.arc.to_owned(),
            quarantine: failed && outcome.policy != Policy::None,
        };
        if outcome.seal.is_some() {
            info!(session = self.meta.session_id, "forwarded mail ARC-sealed");
        }
        Ok(Some((outcome.header, checks, outcome.seal)))
    }

    /// The checks' outcome for `content`, when it is checked; a panic in
    /// them costs this message a 451, never the process.
    async fn outcome(&mut self, content: &mut Vec<u8>) -> Result<Option<Outcome>, Reply> {
        let Some(verifier) = self.inner.authentication.verifier.clone() else {
            return Ok(None);
        };
        if matches!(self.spf, SpfState::Off) {
            return Ok(None);
        }
        let Some(spf) = self.spf().await.cloned() else {
            return Ok(None);
        };
        let message = std::mem::take(content);
        // Mail forwarded elsewhere is sealed with the results (RFC 8617).
        let sealer = self
            .inner
            .authentication
            .sealer
            .clone()
            .filter(|_| self.forwarded);
        let task = tokio::spawn(async move {
            let outcome = verifier.message(&message, &spf, sealer.as_deref()).await;
            (message, outcome)
        });
        match task.await {
            Ok((message, outcome)) => {
                *content = message;
                Ok(Some(outcome))
            }
            Err(e) => {
                warn!(session = self.meta.session_id, error = %e, "mail authentication failed: 451");
                Err(reply::local_error())
            }
        }
    }

    /// The `DKIM-Signature:` fields for a message of a trusted client
    /// (`raw` whole, as stored), or nothing. A user's mail is signed only
    /// for the domains of the user's own addresses: a user of one hosted
    /// domain gets no signature of another.
    pub(super) fn signatures(&self, raw: &[u8]) -> Vec<u8> {
        let signer = &self.inner.authentication.signer;
        if signer.is_empty() || !self.trusted() {
            return Vec::new();
        }
        // The author's domain read once, for the user's check and the keys.
        let Some(author) = postel_auth::sign::author_domain(raw) else {
            return Vec::new();
        };
        let own = self.addresses.iter().any(|a| {
            a.rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&author))
        });
        if self.user.is_some() && !own {
            return Vec::new();
        }
        signer.sign_as(raw, &author)
    }

    /// Whether this message needs its content whole in memory: to be
    /// checked, signed, or cleaned of forged results. `head` is its first
    /// part: a message that is neither checked nor signed is read whole
    /// only when its header section holds a field claiming our id (or does
    /// not end within `head`).
    pub(super) fn wants_whole(&self, head: &[u8]) -> bool {
        let a = &self.inner.authentication;
        let signing = self.trusted() && !a.signer.is_empty();
        let checking = !matches!(self.spf, SpfState::Off);
        signing || checking || postel_auth::may_hold_forged(head, &a.settings.authserv_id)
    }
}
