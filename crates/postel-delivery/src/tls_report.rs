//! SMTP TLS Reporting (RFC 8460): what happened to TLS on the way to each
//! destination, kept per policy domain for a period (a UTC day by
//! default), then sent as an aggregate report to the addresses the domain
//! publishes in `_smtp._tls.<domain>` (`v=TLSRPTv1; rua=mailto:...`).
//!
//! What is counted, per destination and period:
//! - the policy that applied: DANE (`tlsa`, with its records), MTA-STS
//!   (`sts`, with its policy), or none (`no-policy-found`);
//! - each session opened (one per delivery run to the destination): a
//!   success when TLS was negotiated, a failure when it was not
//!   (`starttls-not-supported`);
//! - each failure to open one for a TLS reason, by result type (RFC 8460
//!   4.3), MX host and address: certificate not trusted, name mismatch,
//!   expired, DANE mismatch, bogus DNSSEC, an MTA-STS policy that could not
//!   be fetched. A host that does not answer is not a TLS failure.
//!
//! The report's JSON and its message come from mail-auth (its `report`
//! feature); the message is DKIM-signed with the host's keys and queued
//! like any other. Reports over HTTPS (`rua=https:`) are not sent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use mail_auth::report::tlsrpt::{
    DateRange, FailureDetails, Policy, PolicyDetails, PolicyType, ResultType, Summary, TlsReport,
};

use crate::outcome::Failure;

/// Destinations counted at most per period.
const MAX_DOMAINS: usize = 10_000;
/// Policy strings (TLSA records, policy lines) kept per destination.
const MAX_STRINGS: usize = 20;
/// Distinct failure details kept per destination.
const MAX_DETAILS: usize = 100;

/// The policy in force for a destination, as the report names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// DANE: the TLSA records (`3 1 1 <hex>`) and the hosts they cover.
    Tlsa {
        /// Each record, presentation form.
        records: Vec<String>,
        /// The MX hosts with records.
        hosts: Vec<String>,
    },
    /// MTA-STS: the policy's lines and its `mx` patterns.
    Sts {
        /// `version: STSv1`, `mode: ...`, `mx: ...`, `max_age: ...`.
        lines: Vec<String>,
        /// The `mx` patterns.
        mx: Vec<String>,
    },
    /// Neither.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) applied: Applied,
    pub(crate) success: u32,
    pub(crate) failure: u32,
    pub(crate) details: BTreeMap<(ResultKey, String, Option<IpAddr>), u32>,
}

/// [`ResultType`] is not `Ord`: its index in [`RESULTS`] stands in.
pub(crate) type ResultKey = u8;

const RESULTS: [ResultType; 11] = [
    ResultType::StartTlsNotSupported,
    ResultType::CertificateHostMismatch,
    ResultType::CertificateExpired,
    ResultType::CertificateNotTrusted,
    ResultType::ValidationFailure,
    ResultType::TlsaInvalid,
    ResultType::DnssecInvalid,
    ResultType::DaneRequired,
    ResultType::StsPolicyFetchError,
    ResultType::StsPolicyInvalid,
    ResultType::StsWebpkiInvalid,
];

fn key_of(r: ResultType) -> ResultKey {
    RESULTS.iter().position(|t| *t == r).unwrap_or(4) as u8
}

/// One period's results, by destination.
#[derive(Debug)]
pub struct TlsResults {
    period: i64,
    inner: Mutex<(i64, BTreeMap<String, Counts>)>,
    /// The policy last seen per destination, until something is counted
    /// for it: routing alone makes no entry (a flood of destinations
    /// that never answer cannot fill the table).
    seen: Mutex<BTreeMap<String, Applied>>,
}

/// One destination's report, ready to be addressed.
#[derive(Debug, Clone)]
pub struct DomainReport {
    /// The policy domain.
    pub domain: String,
    /// The report.
    pub report: TlsReport,
}

impl TlsResults {
    /// Results kept per `period` seconds (86,400: a UTC day), from the
    /// period that holds `now`.
    pub fn new(period: i64, now: i64) -> TlsResults {
        let period = period.max(1);
        TlsResults {
            period,
            inner: Mutex::new((now - now.rem_euclid(period), BTreeMap::new())),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// `f` on `domain`'s counts, made (with the policy last seen for it)
    /// if there is room.
    fn with(&self, domain: &str, f: impl FnOnce(&mut Counts)) {
        let domain = domain.to_ascii_lowercase();
        let applied = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&domain)
            .cloned()
            .unwrap_or(Applied::None);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let map = &mut g.1;
        if !map.contains_key(&domain) && map.len() >= MAX_DOMAINS {
            return;
        }
        let c = map.entry(domain).or_insert_with(|| Counts {
            applied: Applied::None,
            success: 0,
            failure: 0,
            details: BTreeMap::new(),
        });
        c.applied = applied;
        f(c);
    }

    /// The policy that applies to `domain` now (kept for the counts that
    /// follow; at most [`MAX_DOMAINS`] remembered: when full, one is
    /// forgotten (the first by name) to make room.
    pub fn applied(&self, domain: &str, applied: Applied) {
        let applied = match applied {
            Applied::Tlsa {
                mut records,
                mut hosts,
            } => {
                records.sort();
                records.dedup();
                records.truncate(MAX_STRINGS);
                hosts.truncate(MAX_STRINGS);
                Applied::Tlsa { records, hosts }
            }
            Applied::Sts { mut lines, mut mx } => {
                lines.truncate(MAX_STRINGS);
                mx.truncate(MAX_STRINGS);
                Applied::Sts { lines, mx }
            }
            Applied::None => Applied::None,
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_DOMAINS && !seen.contains_key(domain) {
            seen.pop_first();
        }
        seen.insert(domain.to_ascii_lowercase(), applied);
    }

    /// A session to `domain` was opened: with TLS, or without it when its
    /// host did not offer STARTTLS. (A session without TLS where STARTTLS
    /// was offered, by the operator's choice or after a failed handshake
    /// under `may`, is not counted: its failure was.)
    pub fn session(&self, domain: &str, tls: bool, offered: bool, host: &str) {
        if tls {
            self.with(domain, |c| c.success = c.success.saturating_add(1));
        } else if !offered {
            self.failure(domain, ResultType::StartTlsNotSupported, host, None);
        }
    }

    /// A failure of `result` with `host` (and its address, if known).
    pub fn failure(&self, domain: &str, result: ResultType, host: &str, ip: Option<IpAddr>) {
        self.with(domain, |c| {
            c.failure = c.failure.saturating_add(1);
            Self::detail(c, result, host, ip);
        });
    }

    /// A failure detail that is not a session of its own (the policy
    /// could not be fetched; the session that follows is counted).
    pub fn note(&self, domain: &str, result: ResultType) {
        self.with(domain, |c| Self::detail(c, result, "", None));
    }

    fn detail(c: &mut Counts, result: ResultType, host: &str, ip: Option<IpAddr>) {
        let k = (key_of(result), host.to_ascii_lowercase(), ip);
        if c.details.contains_key(&k) || c.details.len() < MAX_DETAILS {
            *c.details.entry(k).or_insert(0) += 1;
        }
    }

    /// Records what `failure` (from opening a session to `domain`) says
    /// of TLS; nothing when it was not about TLS.
    pub fn failed(&self, domain: &str, failure: &Failure) {
        if let Some((result, host)) = classify(failure) {
            self.failure(domain, result, &host, None);
        }
    }

    /// Keeps the period under way in `file` across restarts: what the
    /// file holds is read back now (a period that ended meanwhile is
    /// reported at the next look), and [`TlsResults::save`] writes it.
    pub(crate) fn kept_in(self, file: std::path::PathBuf) -> (TlsResults, std::path::PathBuf) {
        if let Some((start, counts)) = crate::report_file::load(&file) {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if start <= g.0 {
                tracing::info!(destinations = counts.len(), "TLS report counts read back");
                *g = (start, counts);
            }
        }
        (self, file)
    }

    /// Writes the period under way to `file`.
    pub(crate) fn save(&self, file: &std::path::Path) {
        let (start, counts) = {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            (g.0, g.1.clone())
        };
        if let Err(e) = crate::report_file::save(file, start, &counts) {
            tracing::warn!(file = %file.display(), error = %e, "cannot keep the TLS report counts");
        }
    }

    /// When the period under way ends.
    pub fn ends(&self) -> i64 {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 + self.period
    }

    /// At or after the period's end: its reports (one per destination
    /// with something counted), and a new period. None before the end.
    pub fn close(&self, now: i64, submitter: &str) -> Option<Vec<DomainReport>> {
        let (start, results) = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if now < g.0 + self.period {
                return None;
            }
            let start = g.0;
            g.0 = now - now.rem_euclid(self.period);
            (start, std::mem::take(&mut g.1))
        };
        let end = start + self.period;
        Some(
            results
                .into_iter()
                .filter(|(_, c)| c.success > 0 || c.failure > 0)
                .map(|(domain, c)| DomainReport {
                    report: report(&domain, &c, start, end, submitter),
                    domain,
                })
                .collect(),
        )
    }
}

fn report(domain: &str, c: &Counts, start: i64, end: i64, submitter: &str) -> TlsReport {
    let (policy_type, strings, hosts) = match &c.applied {
        Applied::Tlsa { records, hosts } => (PolicyType::Tlsa, records.clone(), hosts.clone()),
        Applied::Sts { lines, mx } => (PolicyType::Sts, lines.clone(), mx.clone()),
        Applied::None => (PolicyType::NoPolicyFound, Vec::new(), Vec::new()),
    };
    let mut details = PolicyDetails::new(policy_type, domain);
    details.policy_string = strings;
    details.mx_host = hosts;
    let failure_details = c
        .details
        .iter()
        .map(|((result, host, ip), n)| {
            let mut d = FailureDetails::new(RESULTS[usize::from(*result)]);
            if !host.is_empty() {
                d = d.with_receiving_mx_hostname(host.clone());
            }
            if let Some(ip) = ip {
                d = d.with_receiving_ip(*ip);
            }
            d.failed_session_count = *n;
            d
        })
        .collect();
    TlsReport {
        organization_name: Some(submitter.to_owned()),
        // The last second of the period: ranges do not overlap.
        date_range: DateRange::from_timestamps(start, end - 1),
        contact_info: Some(format!("postmaster@{submitter}")),
        report_id: format!("{start}.{:08x}.{domain}@{submitter}", fastrand::u32(..)),
        policies: vec![Policy {
            policy: details,
            summary: Summary {
                total_success: c.success,
                total_failure: c.failure,
            },
            failure_details,
        }],
    }
}

/// The result type a failure to open a session stands for, and the host
/// it names (the text starts `host: ` or `host [ip]: `); None when it was
/// not about TLS.
pub fn classify(f: &Failure) -> Option<(ResultType, String)> {
    // A remote's reply is its own text, not what TLS did.
    if f.remote.is_some() {
        return None;
    }
    let text = f.text.as_str();
    let host = text.split([':', ' ']).next().unwrap_or("").to_owned();
    let result = if text.contains("STARTTLS not offered") {
        ResultType::StartTlsNotSupported
    } else if text.contains("no TLSA record matches") {
        ResultType::ValidationFailure
    } else if text.starts_with("DANE: ") {
        ResultType::DnssecInvalid
    } else if text.starts_with("MTA-STS: no MX host") {
        ResultType::ValidationFailure
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        ResultType::CertificateHostMismatch
    } else if text.contains("Expired") || text.contains("certificate expired") {
        ResultType::CertificateExpired
    } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        ResultType::CertificateNotTrusted
    } else if text.contains(": TLS") || text.contains("STARTTLS") {
        // A handshake that failed, or STARTTLS broken otherwise (bytes
        // smuggled after its reply).
        ResultType::ValidationFailure
    } else {
        return None;
    };
    let host = if text.starts_with("DANE: ") || text.starts_with("MTA-STS: ") {
        String::new()
    } else {
        host
    };
    Some((result, host))
}

/// Where a destination wants its reports: `mailto:` addresses and
/// `https:` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rua {
    /// Addresses to mail the report to.
    pub mail: Vec<String>,
    /// URLs to POST it to.
    pub https: Vec<String>,
}

/// The `rua` of a `_smtp._tls` TXT record set (RFC 8460 3); none unless
/// exactly one record is a TLSRPTv1 record. At most 10 of each kind.
pub fn rua(texts: &[String]) -> Rua {
    use mail_auth::common::parse::TxtRecordParser as _;
    let records: Vec<mail_auth::mta_sts::TlsRpt> = texts
        .iter()
        .filter(|t| t.trim_start().starts_with("v=TLSRPTv1"))
        .filter_map(|t| mail_auth::mta_sts::TlsRpt::parse(t.as_bytes()).ok())
        .collect();
    let [record] = records.as_slice() else {
        return Rua::default();
    };
    let mut out = Rua::default();
    for u in &record.rua {
        match u {
            mail_auth::mta_sts::ReportUri::Mail(a)
                if out.mail.len() < 10
                    && postel_proto::address::parse_mailbox(a.as_bytes(), true).is_ok() =>
            {
                out.mail.push(a.clone());
            }
            mail_auth::mta_sts::ReportUri::Http(u)
                if out.https.len() < 10 && u.starts_with("https://") =>
            {
                out.https.push(u.clone());
            }
            _ => {}
        }
    }
    out
}

/// Sends `reports`: each POSTed to the `https:` URLs its domain publishes,
/// and mailed to its `mailto:` addresses, DKIM-signed, queued from `<>`
/// (neither: not sent).
pub(crate) async fn send<S: postel_store::Store>(
    store: &S,
    settings: &crate::Settings,
    dns: &crate::mx::Dns,
    reports: Vec<DomainReport>,
    now: i64,
) {
    for r in reports {
        let rua = match dns.txt(&format!("_smtp._tls.{}", r.domain)).await {
            Ok(texts) => rua(&texts),
            Err(e) => {
                tracing::info!(
                    domain = r.domain,
                    error = e,
                    "TLS report not sent: its _smtp._tls record cannot be read"
                );
                continue;
            }
        };
        if !rua.https.is_empty() {
            match crate::report_post::gzip(&r.report.to_json()) {
                Ok(body) => {
                    for url in &rua.https {
                        match crate::report_post::post(url, body.clone(), settings, dns).await {
                            Ok(()) => tracing::info!(domain = r.domain, url, "TLS report posted"),
                            Err(e) => {
                                tracing::warn!(
                                    domain = r.domain,
                                    url,
                                    error = e,
                                    "TLS report not posted"
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(domain = r.domain, error = %e, "cannot compress a TLS report")
                }
            }
        }
        let to = rua.mail;
        if to.is_empty() {
            continue;
        }
        let host = settings.hostname.as_str();
        let from = format!("postmaster@{host}");
        // TLS-Required: No (RFC 8460 3: reports go despite TLS failures;
        // the waiver path sends them without the destination's policy).
        let Ok(mut raw) = r
            .report
            .to_rfc5322(
                &r.domain,
                host,
                from.as_str(),
                to.iter().map(String::as_str),
            )
            .map(String::into_bytes)
        else {
            continue;
        };
        raw.splice(0..0, b"TLS-Required: No\r\n".iter().copied());
        let signatures = settings.signer.sign(&raw);
        // RFC 8460 3: receivers ignore unsigned reports.
        if signatures.is_empty() {
            tracing::warn!(
                domain = r.domain,
                "TLS report not sent: no DKIM key for the host's domain ([[dkim]])"
            );
            continue;
        }
        raw.splice(0..0, signatures);
        let id = store.next_id();
        let subject = format!("Report Domain: {} Submitter: {host}", r.domain);
        let msg = crate::report::own_message(settings, id.clone(), now, &to, subject, raw);
        match store.insert(msg).await {
            Ok(()) => tracing::info!(id, domain = r.domain, to = to.join(","), "TLS report sent"),
            Err(e) => tracing::error!(domain = r.domain, error = %e, "cannot queue a TLS report"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_closes_into_reports() {
        let r = TlsResults::new(86_400, 86_400 * 10 + 500);
        r.applied(
            "sts.test",
            Applied::Sts {
                lines: vec!["version: STSv1".into(), "mode: enforce".into()],
                mx: vec!["mx.sts.test".into()],
            },
        );
        r.session("sts.test", true, true, "mx.sts.test");
        r.session("sts.test", true, true, "mx.sts.test");
        // STARTTLS offered but not used (the operator's `none`): no count.
        r.session("sts.test", false, true, "mx.sts.test");
        r.failed(
            "sts.test",
            &Failure::local(
                "4.7.5",
                "mx.sts.test: TLS: invalid peer certificate: UnknownIssuer",
            ),
        );
        r.failed(
            "other.test",
            &Failure::local("4.4.1", "mx.other.test [192.0.2.1]: connection refused"),
        );
        assert_eq!(r.ends(), 86_400 * 11);
        assert!(r.close(86_400 * 11 - 1, "me.test").is_none());
        let reports = r.close(86_400 * 11 + 5, "me.test").expect("closed");
        assert_eq!(reports.len(), 1, "a connection refused is no TLS result");
        let json: serde_json::Value =
            serde_json::from_str(&reports[0].report.to_json()).expect("json");
        let p = &json["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["policy-domain"], "sts.test");
        assert_eq!(p["summary"]["total-successful-session-count"], 2);
        assert_eq!(p["summary"]["total-failure-session-count"], 1);
        assert_eq!(
            p["failure-details"][0]["result-type"],
            "certificate-not-trusted"
        );
        assert_eq!(
            p["failure-details"][0]["receiving-mx-hostname"],
            "mx.sts.test"
        );
        assert_eq!(json["date-range"]["start-datetime"], "1970-01-11T00:00:00Z");
        assert_eq!(json["date-range"]["end-datetime"], "1970-01-11T23:59:59Z");
        assert_eq!(r.ends(), 86_400 * 12, "a new period");
    }

    #[test]
    fn rua_takes_mailto_of_one_record() {
        let one = vec![
            "v=TLSRPTv1; rua=mailto:tls@a.test,https://r.a.test/v1,http://plain.test/".to_owned(),
        ];
        assert_eq!(
            rua(&one),
            Rua {
                mail: vec!["tls@a.test".into()],
                https: vec!["https://r.a.test/v1".into()],
            }
        );
        let two = vec![one[0].clone(), "v=TLSRPTv1; rua=mailto:b@b.test".to_owned()];
        assert_eq!(rua(&two), Rua::default());
        assert_eq!(rua(&["v=spf1 -all".to_owned()]), Rua::default());
    }

    #[test]
    fn tls_failures_are_told_from_others() {
        let c = |t: &str| classify(&Failure::local("4.7.5", t));
        assert_eq!(
            c("mx.a.test: STARTTLS not offered"),
            Some((ResultType::StartTlsNotSupported, "mx.a.test".into()))
        );
        assert_eq!(
            c("mx.a.test: TLS: unexpected error: no TLSA record matches the certificate (DANE)")
                .map(|x| x.0),
            Some(ResultType::ValidationFailure)
        );
        assert_eq!(
            c("DANE: the MX records of a.test are bogus: x").map(|x| x.0),
            Some(ResultType::DnssecInvalid)
        );
        assert_eq!(c("mx.a.test [192.0.2.1]: connection refused"), None);
        assert_eq!(
            c("mx.a.test: protocol error: bytes after the reply to STARTTLS, before TLS"),
            Some((ResultType::ValidationFailure, "mx.a.test".into()))
        );
        assert_eq!(
            c("mx.a.test: TLS: invalid peer certificate: certificate not valid for name \"x\"")
                .map(|x| x.0),
            Some(ResultType::CertificateHostMismatch)
        );
        assert_eq!(
            c("mx.a.test: TLS: invalid peer certificate: certificate expired: at 1").map(|x| x.0),
            Some(ResultType::CertificateExpired)
        );
        // A remote's words are not Postel's finding.
        let mut remote = Failure::local("4.7.5", "mx.a.test: TLS: certificate expired");
        remote.remote = Some("mx.a.test".into());
        assert_eq!(classify(&remote), None);
    }
}
