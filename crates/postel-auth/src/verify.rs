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
    Parameters, SpfOutput, SpfResult,
};

use crate::cache::TxtCache;
use crate::seal::Sealer;

/// The most DKIM signatures checked on one message; the rest are not
/// looked at (each costs a DNS lookup).
pub const MAX_SIGNATURES: usize = 8;

/// The longest ARC chain validated; a longer one is `fail` without a
/// lookup (RFC 8617 allows 50, each costing two).
pub const MAX_ARC_SETS: usize = 10;

/// The most fields one signature's `h=` may list: the check of a longer
/// list costs time in the square of its length, so such a signature is a
/// `permerror`, not checked (signers list a dozen or two).
pub const MAX_SIGNED_FIELDS: usize = 64;

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
    /// The author's domain (of `From:`) DMARC looked at, its domain
    /// characters only ([`domain_chars`]); empty: none.
    pub author_domain: String,
    /// The `Authentication-Results:` field, CRLF-terminated.
    pub header: String,
    /// A new ARC set (three fields, CRLF-terminated) to put on top, when
    /// a sealer was given and the chain could be sealed.
    pub seal: Option<String>,
}

impl Outcome {
    /// Whether the message failed DMARC.
    pub fn dmarc_failed(&self) -> bool {
        self.dmarc == "fail"
    }
}

/// Whether a message carries no ARC field at all (and none that failed to
/// parse): a new chain may start. Stray fields (a seal without its
/// signature) are not "no chain".
fn no_arc(m: &AuthenticatedMessage<'_>) -> bool {
    m.ams_headers.is_empty()
        && m.as_headers.is_empty()
        && m.aar_headers.is_empty()
        && !m.has_arc_errors
}
/// Records held parsed at once (see [`TxtCache`]).
pub const TXT_CACHE_SIZE: usize = 10_000;

/// Checks mail: one per server, shared by its sessions.
pub struct Verifier {
    auth: MessageAuthenticator,
    authserv_id: String,
    deadline: Duration,
    txt: TxtCache,
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
            txt: TxtCache::new(TXT_CACHE_SIZE),
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
            let params = Parameters::new(SpfParameters::verify_ehlo(ip, helo, host))
                .with_txt_cache(&self.txt);
            Some(self.within(self.auth.verify_spf(params), spf_timeout).await)
        };
        let from_check = async {
            if sender.is_empty() {
                return None;
            }
            let params = Parameters::new(SpfParameters::verify_mail_from(ip, helo, host, sender))
                .with_txt_cache(&self.txt);
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

    /// Looks up, ahead of [`Verifier::message`], what a message's header
    /// section will need: the keys of its DKIM signatures (as many as will
    /// be checked) and the DMARC record of its author's domain. They wait
    /// in the cache, so the lookups overlap the rest of the content.
    pub async fn prefetch(&self, header: &[u8]) {
        // All of it within one step's deadline.
        let _ = tokio::time::timeout(self.deadline, self.look_ahead(header)).await;
    }

    async fn look_ahead(&self, header: &[u8]) {
        use mail_auth::common::verify::{DomainKey, VerifySignature};
        let Some(parsed) = AuthenticatedMessage::parse(header) else {
            return;
        };
        let mut names: Vec<String> = parsed
            .dkim_headers
            .iter()
            .filter(|h| h.header.h.len() <= MAX_SIGNED_FIELDS)
            .take(MAX_SIGNATURES)
            .map(|h| h.header.domain_key())
            .collect();
        names.sort();
        names.dedup();
        for name in &names {
            let _ = self
                .auth
                .txt_lookup::<DomainKey>(name.as_str(), Some(&self.txt))
                .await;
        }
        if let Some((_, domain)) = parsed.from.first().and_then(|f| f.rsplit_once('@')) {
            let _ = self
                .auth
                .txt_lookup::<mail_auth::dmarc::Dmarc>(format!("_dmarc.{domain}"), Some(&self.txt))
                .await;
        }
    }

    /// DKIM, ARC and DMARC of `message` (header and body, CRLF), with
    /// SPF's results: the outcome and its `Authentication-Results:`; with
    /// `sealer`, also a new ARC set over these results (mail forwarded).
    pub async fn message(&self, message: &[u8], spf: &Spf, sealer: Option<&Sealer>) -> Outcome {
        let Some(mut parsed) = AuthenticatedMessage::parse(message) else {
            return self.unparsable(spf);
        };
        let signatures = parsed.dkim_headers.len();
        parsed
            .dkim_headers
            .retain(|h| h.header.h.len() <= MAX_SIGNED_FIELDS);
        let oversized = signatures - parsed.dkim_headers.len();
        parsed.dkim_headers.truncate(MAX_SIGNATURES);
        let mut dkim = self
            .within(
                self.auth
                    .verify_dkim(Parameters::new(&parsed).with_txt_cache(&self.txt)),
                |_| Vec::new(),
            )
            .await;
        for _ in 0..oversized.min(MAX_SIGNATURES) {
            dkim.push(mail_auth::DkimOutput::perm_err(
                mail_auth::Error::ParseError,
            ));
        }
        // Passes first, then failures: a flood of malformed signatures
        // neither hides a result nor grows the field past MAX_SIGNATURES.
        dkim.sort_by_key(|d| match d.result() {
            DkimResult::Pass => 0,
            DkimResult::Fail(_) => 1,
            _ => 2,
        });
        dkim.truncate(MAX_SIGNATURES);
        let arc_too_long = parsed.ams_headers.len() > MAX_ARC_SETS
            || parsed
                .ams_headers
                .iter()
                .any(|h| h.header.h.len() > MAX_SIGNED_FIELDS);
        let arc = if arc_too_long {
            None
        } else {
            Some(
                self.within(
                    self.auth
                        .verify_arc(Parameters::new(&parsed).with_txt_cache(&self.txt)),
                    |_| mail_auth::ArcOutput::default(),
                )
                .await,
            )
        };
        let from_domain = spf
            .sender
            .rsplit_once('@')
            .map_or(spf.helo_name.as_str(), |(_, d)| d);
        let dmarc = self
            .dmarc(&parsed, &dkim, from_domain, &spf.mail_from)
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
        // Several author domains: mail-auth leaves DMARC out (none), which
        // would let a forged author through. RFC 7489 6.6.1: each domain
        // is checked, and the strictest policy of those that fail applies.
        // Several From: fields (RFC 5322 allows one) fail as under
        // p=reject.
        let authors = authors(&parsed);
        let mut each = Vec::new();
        if let Authors::Domains(domains) = &authors {
            for d in domains {
                let mut one = parsed.clone();
                one.from = vec![format!("author@{d}")];
                let out = self.dmarc(&one, &dkim, from_domain, &spf.mail_from).await;
                results = results.with_dmarc_result(&out);
                each.push(out);
            }
        }
        let several_fields = match &authors {
            Authors::Fields(domain) => Some(domain.clone()),
            _ => None,
        };
        if matches!(authors, Authors::One) {
            results = results.with_dmarc_result(&dmarc);
        }
        let dkim_summary = dkim.first().map_or("none", |d| dkim_word(d.result()));
        let mut header = results.to_header();
        let mut extra = Vec::new();
        if arc.is_none() {
            // mail-auth has no result to write for a chain not looked at.
            extra.push("arc=fail (too many sets or signed fields)".to_owned());
        }
        if let Some(domain) = &several_fields {
            let from = if domain.is_empty() {
                String::new()
            } else {
                format!(" header.from={domain}")
            };
            extra.push(format!(
                "dmarc=fail (several From fields){from} policy.dmarc=reject"
            ));
        }
        if !extra.is_empty() {
            header.truncate(header.trim_end().len());
            for e in extra {
                header.push_str(";\r\n\t");
                header.push_str(&e);
            }
            header.push_str("\r\n");
        }
        // Sealed over no chain, or one that passed (see `seal`).
        let seal = match (sealer, &arc) {
            (Some(sealer), Some(a)) if no_arc(&parsed) || a.result() == &DkimResult::Pass => {
                sealer.seal(&parsed, &results, a)
            }
            _ => None,
        };
        let (dmarc_result, policy, author_domain) = match (several_fields, each.is_empty()) {
            (Some(domain), _) => ("fail", Policy::Reject, domain),
            (None, true) => (
                dmarc_word(&dmarc.result()),
                policy_of(&dmarc),
                domain_chars(dmarc.domain()),
            ),
            (None, false) => strictest(&each),
        };
        Outcome {
            spf: spf.result(),
            dkim: dkim_summary,
            dmarc: dmarc_result,
            arc: arc_word,
            policy,
            author_domain,
            header,
            seal,
        }
    }

    /// DMARC of `message`, under the deadline.
    async fn dmarc<'x>(
        &'x self,
        message: &'x AuthenticatedMessage<'x>,
        dkim: &'x [mail_auth::DkimOutput<'x>],
        mail_from_domain: &'x str,
        spf: &'x SpfOutput,
    ) -> mail_auth::DmarcOutput {
        self.within(
            self.auth.verify_dmarc(
                Parameters::new(DmarcParameters::new(message, dkim, mail_from_domain, spf))
                    .with_txt_cache(&self.txt),
            ),
            |_| mail_auth::DmarcOutput::default(),
        )
        .await
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
            seal: None,
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

/// The most author domains of one `From:` field checked one by one.
pub const MAX_AUTHOR_DOMAINS: usize = 5;

/// Who wrote a message, as DMARC sees it.
enum Authors {
    /// One `From:` field, one domain (or none).
    One,
    /// One field, authors in these domains.
    Domains(Vec<String>),
    /// Several `From:` fields: the first author's domain.
    Fields(String),
}

fn authors(parsed: &AuthenticatedMessage<'_>) -> Authors {
    let fields = parsed
        .headers
        .iter()
        .filter(|(name, _)| name.trim_ascii().eq_ignore_ascii_case(b"From"))
        .count();
    // Compared as mail-auth compares them (A-labels), so that no two
    // domains it tells apart are taken for one.
    // One past the limit is enough to know: a header of thousands of
    // addresses costs no more than six.
    let mut domains: Vec<String> = Vec::new();
    for d in parsed
        .from
        .iter()
        .filter_map(|a| a.rsplit_once('@'))
        .map(|(_, d)| mail_auth::common::to_a_label(d).to_ascii_lowercase())
    {
        if !domains.contains(&d) {
            domains.push(d);
            if domains.len() > MAX_AUTHOR_DOMAINS {
                break;
            }
        }
    }
    // More author domains than are checked one by one count as several
    // fields: a sender cannot hide one behind passing others.
    if fields > 1 || domains.len() > MAX_AUTHOR_DOMAINS {
        Authors::Fields(domain_chars(domains.first().map_or("", String::as_str)))
    } else if domains.len() > 1 {
        Authors::Domains(domains)
    } else {
        Authors::One
    }
}

/// A domain with its domain characters only (letters, digits, `.`, `-`,
/// `_`), at most 255: for a header field, a reply or a log line.
pub fn domain_chars(d: &str) -> String {
    d.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(255)
        .collect()
}

fn policy_of(d: &mail_auth::DmarcOutput) -> Policy {
    match d.policy() {
        DmarcPolicy::Reject => Policy::Reject,
        DmarcPolicy::Quarantine => Policy::Quarantine,
        DmarcPolicy::None | DmarcPolicy::Unspecified => Policy::None,
    }
}

/// The verdict over several author domains (RFC 7489 6.6.1): the
/// strictest policy of those that fail; else pass if one passed; else
/// the first result.
fn strictest(each: &[mail_auth::DmarcOutput]) -> (&'static str, Policy, String) {
    let rank = |p: Policy| match p {
        Policy::Reject => 2,
        Policy::Quarantine => 1,
        Policy::None => 0,
    };
    let failing = each
        .iter()
        .filter(|d| matches!(d.result(), DmarcResult::Fail(_)))
        .max_by_key(|d| rank(policy_of(d)));
    if let Some(d) = failing {
        return ("fail", policy_of(d), domain_chars(d.domain()));
    }
    let pick = each
        .iter()
        .find(|d| d.result() == DmarcResult::Pass)
        .or_else(|| each.first());
    pick.map_or(("none", Policy::None, String::new()), |d| {
        (
            dmarc_word(&d.result()),
            policy_of(d),
            domain_chars(d.domain()),
        )
    })
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
