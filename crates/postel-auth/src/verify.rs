//! Inbound verification: SPF of the HELO name and of the MAIL FROM
//! identity (RFC 7208), every DKIM signature (RFC 6376), the ARC chain
//! (RFC 8617) and DMARC (RFC 9989, as mail-auth 0.13 follows it), written
//! as one `Authentication-Results:` field (RFC 8601).
//!
//! SPF starts when MAIL is accepted ([`Verifier::spf`], in a task of the
//! caller's), so that its lookups run while the content arrives; the rest
//! needs the content ([`Verifier::message`]). Answers are cached by the
//! resolver (hickory's cache, for each record's TTL). Every lookup runs
//! under one deadline: a slow or dead DNS makes `temperror`, never a
//! stalled session.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy as DmarcPolicy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};

/// The most DKIM signatures checked on one message; the rest are not
/// looked at (each costs a DNS lookup).
pub const MAX_SIGNATURES: usize = 8;

/// The longest ARC chain validated; a longer one is `fail` without a
/// lookup (RFC 8617 allows 50, each costing two).
pub const MAX_ARC_SETS: usize = 10;

/// What the sender's domain asks of mail that fails DMARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No record, or `p=none`.
    None,
    /// `p=quarantine` (or `sp=`/`np=` for a subdomain).
    Quarantine,
    /// `p=reject`.
    Reject,
}

/// SPF's results for one transaction: the HELO identity and the MAIL FROM
/// identity.
#[derive(Debug, Clone)]
pub struct Spf {
    helo: Option<SpfOutput>,
    mail_from: SpfOutput,
    ip: IpAddr,
    helo_name: String,
    sender: String,
}

impl Spf {
    /// The MAIL FROM identity's result (for `<>`, the HELO name's).
    pub fn result(&self) -> &'static str {
        spf_word(self.mail_from.result())
    }

    /// Whether the sender's domain says the client may not send for it
    /// (`-all`): the result that may be refused at RCPT.
    pub fn failed(&self) -> bool {
        self.mail_from.result() == SpfResult::Fail
    }
}

/// The results for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// SPF (MAIL FROM identity).
    pub spf: &'static str,
    /// DKIM: `pass` when a signature passed, else the first result.
    pub dkim: &'static str,
    /// DMARC.
    pub dmarc: &'static str,
    /// ARC.
    pub arc: &'static str,
    /// The policy the author's domain publishes.
    pub policy: Policy,
    /// The author's domain (of `From:`) DMARC looked at; empty: none.
    pub author_domain: String,
    /// The `Authentication-Results:` field, CRLF-terminated.
    pub header: String,
}

impl Outcome {
    /// Whether the message failed DMARC.
    pub fn dmarc_failed(&self) -> bool {
        self.dmarc == "fail"
    }
}

/// Checks mail: one per server, shared by its sessions.
pub struct Verifier {
    auth: MessageAuthenticator,
    authserv_id: String,
    deadline: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("authserv_id", &self.authserv_id)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier asking `resolver`, writing `authserv_id` (the host's
    /// name) in its results, and giving each step at most `deadline`.
    pub fn new(resolver: TokioResolver, authserv_id: &str, deadline: Duration) -> Arc<Verifier> {
        Arc::new(Verifier {
            auth: MessageAuthenticator(resolver),
            authserv_id: authserv_id.to_owned(),
            deadline,
        })
    }

    /// The authserv-id results are written under.
    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    /// SPF for a transaction: the HELO name (when it is a domain name)
    /// and the MAIL FROM address (`""` for `<>`).
    pub async fn spf(&self, ip: IpAddr, helo: &str, sender: &str) -> Spf {
        let host = self.authserv_id.as_str();
        let helo_is_name = !helo.is_empty() && !helo.starts_with('[') && helo.contains('.');
        let helo_check = async {
            if !helo_is_name {
                return None;
            }
            let params = SpfParameters::verify_ehlo(ip, helo, host);
            Some(self.within(self.auth.verify_spf(params), spf_timeout).await)
        };
        let from_check = async {
            if sender.is_empty() {
                return None;
            }
            let params = SpfParameters::verify_mail_from(ip, helo, host, sender);
            Some(self.within(self.auth.verify_spf(params), spf_timeout).await)
        };
        let (helo_out, from_out) = tokio::join!(helo_check, from_check);
        // For the null sender the HELO identity stands for MAIL FROM
        // (RFC 7208 2.4).
        let mail_from = match (from_out, &helo_out) {
            (Some(f), _) => f,
            (None, Some(h)) => h.clone(),
            (None, None) => SpfOutput::new(String::new()),
        };
        Spf {
            helo: helo_out,
            mail_from,
            ip,
            helo_name: helo.to_owned(),
            sender: sender.to_owned(),
        }
    }

    /// DKIM, ARC and DMARC of `message` (header and body, CRLF), with
    /// SPF's results: the outcome and its `Authentication-Results:`.
    pub async fn message(&self, message: &[u8], spf: &Spf) -> Outcome {
        let Some(mut parsed) = AuthenticatedMessage::parse(message) else {
            return self.unparsable(spf);
        };
        parsed.dkim_headers.truncate(MAX_SIGNATURES);
        let dkim = self
            .within(self.auth.verify_dkim(&parsed), |_| Vec::new())
            .await;
        let arc = if parsed.ams_headers.len() > MAX_ARC_SETS {
            None
        } else {
            Some(
                self.within(self.auth.verify_arc(&parsed), |_| {
                    mail_auth::ArcOutput::default()
                })
                .await,
            )
        };
        let from_domain = spf
            .sender
            .rsplit_once('@')
            .map_or(spf.helo_name.as_str(), |(_, d)| d);
        let dmarc = self
            .within(
                self.auth.verify_dmarc(DmarcParameters::new(
                    &parsed,
                    &dkim,
                    from_domain,
                    &spf.mail_from,
                )),
                |_| mail_auth::DmarcOutput::default(),
            )
            .await;
        let header_from = parsed
            .from
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map_or("", |(_, d)| d);
        let mut results =
            AuthenticationResults::new(&self.authserv_id).with_dkim_results(&dkim, header_from);
        if let Some(helo) = &spf.helo {
            results = results.with_spf_ehlo_result(helo, spf.ip, &spf.helo_name);
        }
        results =
            results.with_spf_mailfrom_result(&spf.mail_from, spf.ip, &spf.sender, &spf.helo_name);
        let arc_word = match &arc {
            Some(a) => {
                results = results.with_arc_result(a, spf.ip);
                dkim_word(a.result())
            }
            None => "fail",
        };
        results = results.with_dmarc_result(&dmarc);
        let dkim_summary = if dkim.iter().any(|d| d.result() == &DkimResult::Pass) {
            "pass"
        } else {
            dkim.first().map_or("none", |d| dkim_word(d.result()))
        };
        let mut header = results.to_header();
        if arc.is_none() {
            // mail-auth has no result to write for a chain not looked at.
            header.truncate(header.trim_end().len());
            header.push_str(";\r\n\tarc=fail (too many sets)\r\n");
        }
        Outcome {
            spf: spf.result(),
            dkim: dkim_summary,
            dmarc: dmarc_word(&dmarc.result()),
            arc: arc_word,
            policy: match dmarc.policy() {
                DmarcPolicy::Reject => Policy::Reject,
                DmarcPolicy::Quarantine => Policy::Quarantine,
                DmarcPolicy::None | DmarcPolicy::Unspecified => Policy::None,
            },
            author_domain: dmarc.domain().to_owned(),
            header,
        }
    }

    /// A message whose header cannot be read: SPF alone.
    fn unparsable(&self, spf: &Spf) -> Outcome {
        let results = AuthenticationResults::new(&self.authserv_id).with_spf_mailfrom_result(
            &spf.mail_from,
            spf.ip,
            &spf.sender,
            &spf.helo_name,
        );
        let mut header = results.to_header();
        header.truncate(header.trim_end().len());
        header.push_str(";\r\n\tdkim=permerror (unreadable header)\r\n");
        Outcome {
            spf: spf.result(),
            dkim: "permerror",
            dmarc: "none",
            arc: "none",
            policy: Policy::None,
            author_domain: String::new(),
            header,
        }
    }

    /// `step` under the deadline; `late` makes its result when it is
    /// not done in time.
    async fn within<T>(&self, step: impl Future<Output = T>, late: impl FnOnce(()) -> T) -> T {
        match tokio::time::timeout(self.deadline, step).await {
            Ok(t) => t,
            Err(_) => late(()),
        }
    }
}

/// SPF's result when its lookups are not done in time.
fn spf_timeout((): ()) -> SpfOutput {
    SpfOutput::new(String::new()).with_result(SpfResult::TempError)
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}
