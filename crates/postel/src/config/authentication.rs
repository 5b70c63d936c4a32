//! `[verify]` and `[[dkim]]`: checking mail that comes in (SPF, DKIM,
//! DMARC, ARC) and signing mail that goes out.

use std::path::PathBuf;
use std::time::Duration;

use postel_delivery::schedule::parse_duration;
use postel_proto::address::is_domain;
use serde::{Deserialize, Serialize};

/// `[verify]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifySection {
    /// Check mail from outside. Default true.
    pub(crate) enabled: Option<bool>,
    /// The authserv-id of `Authentication-Results:`. Default: the hostname.
    pub(crate) authserv_id: Option<String>,
    /// How long each step (SPF, DKIM, ARC, DMARC) may wait for DNS.
    /// Default `"5s"`.
    pub(crate) timeout: Option<String>,
    /// Clients whose mail is not checked (local programs, like
    /// OpenDMARC's IgnoreHosts). Default loopback. Users who logged in and
    /// `relay_networks` are never checked: their mail is signed instead.
    pub(crate) ignore_networks: Option<Vec<String>>,
    /// Refuse, at the end of data, mail failing DMARC whose domain asks
    /// for `p=reject` (`550 5.7.1`). Default false.
    pub(crate) reject_dmarc: Option<bool>,
    /// Refuse, at RCPT, mail whose SPF result is `fail` (`550 5.7.23`).
    /// Default false.
    pub(crate) reject_spf: Option<bool>,
}

/// `[[dkim]]`: one signing key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DkimEntry {
    /// The domain signed for: mail whose `From:` is at this domain.
    pub(crate) domain: String,
    /// The selector: the key's record is `<selector>._domainkey.<domain>`.
    pub(crate) selector: String,
    /// The private key, PEM (`postel dkim generate` writes one).
    pub(crate) key: PathBuf,
}

/// Checking, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifySettings {
    pub(crate) enabled: bool,
    pub(crate) authserv_id: String,
    pub(crate) timeout: Duration,
    pub(crate) ignore: Vec<ipnet::IpNet>,
    pub(crate) reject_dmarc: bool,
    pub(crate) reject_spf: bool,
}

impl VerifySettings {
    /// Whether mail from `ip` is checked.
    pub(crate) fn checks(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, Into::into),
            v4 => v4,
        };
        self.enabled && !self.ignore.iter().any(|n| n.contains(&ip))
    }
}

/// Checks `[verify]`.
pub(super) fn verify(
    s: &VerifySection,
    hostname: &str,
    problems: &mut Vec<String>,
) -> VerifySettings {
    let authserv_id = s.authserv_id.clone().unwrap_or_else(|| hostname.to_owned());
    if !is_domain(authserv_id.as_bytes(), false) {
        problems.push(format!(
            "verify.authserv_id: {authserv_id:?} is not a domain name (RFC 8601 asks for the host's name)"
        ));
    }
    let timeout = match s.timeout.as_deref() {
        None => Duration::from_secs(5),
        Some(t) => match parse_duration(t) {
            Some(d) if !d.is_zero() && d <= Duration::from_secs(60) => d,
            _ => {
                problems.push(format!(
                    "verify.timeout: {t:?} is not a duration from 1s to 60s, such as \"5s\""
                ));
                Duration::from_secs(5)
            }
        },
    };
    let default_ignore = vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()];
    let mut ignore = Vec::new();
    for (i, n) in s
        .ignore_networks
        .as_ref()
        .unwrap_or(&default_ignore)
        .iter()
        .enumerate()
    {
        match super::network(n) {
            Some(net) => ignore.push(net),
            None => problems.push(format!(
                "verify.ignore_networks[{i}]: {n:?} is not an address or a network such as \"10.0.0.0/8\""
            )),
        }
    }
    VerifySettings {
        enabled: s.enabled.unwrap_or(true),
        authserv_id,
        timeout,
        ignore,
        reject_dmarc: s.reject_dmarc.unwrap_or(false),
        reject_spf: s.reject_spf.unwrap_or(false),
    }
}

/// The effective `[verify]`.
pub(super) fn effective_verify(v: &VerifySettings) -> VerifySection {
    VerifySection {
        enabled: Some(v.enabled),
        authserv_id: Some(v.authserv_id.clone()),
        timeout: Some(format!("{}s", v.timeout.as_secs().max(1))),
        ignore_networks: Some(v.ignore.iter().map(ToString::to_string).collect()),
        reject_dmarc: Some(v.reject_dmarc),
        reject_spf: Some(v.reject_spf),
    }
}

/// Checks `[[dkim]]`: each key must load (so that `config check` finds a
/// bad one before the server signs nothing).
pub(super) fn dkim(entries: &[DkimEntry], problems: &mut Vec<String>) -> Vec<DkimEntry> {
    let mut out: Vec<DkimEntry> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if !is_domain(e.domain.as_bytes(), false) {
            problems.push(format!(
                "dkim[{i}].domain: {:?} is not a domain name",
                e.domain
            ));
            continue;
        }
        let selector_ok = !e.selector.is_empty()
            && e.selector.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !selector_ok {
            problems.push(format!(
                "dkim[{i}].selector: {:?} is not a selector (letters, digits, hyphens, dots)",
                e.selector
            ));
            continue;
        }
        if out
            .iter()
            .any(|o| o.domain.eq_ignore_ascii_case(&e.domain) && o.selector == e.selector)
        {
            problems.push(format!(
                "dkim[{i}]: {} with selector {} is listed twice",
                e.domain, e.selector
            ));
            continue;
        }
        if let Err(err) = postel_auth::Key::load(&e.domain, &e.selector, &e.key) {
            problems.push(format!("dkim[{i}].key: {err}"));
            continue;
        }
        out.push(e.clone());
    }
    out
}

/// The signer for the configured keys.
///
/// # Errors
/// When a key file changed since the config was checked.
pub(crate) fn signer(
    entries: &[DkimEntry],
    stored: &[(String, String, String)],
) -> anyhow::Result<postel_auth::Signer> {
    let mut keys = Vec::new();
    for e in entries {
        keys.push(postel_auth::Key::load(&e.domain, &e.selector, &e.key)?);
    }
    // Keys in a shared store (domain, selector, PEM): every node's. One
    // this node cannot read (damaged, or of a newer kind) is left out
    // with a warning: the others still sign, and the node still starts.
    for (domain, selector, pem) in stored {
        let origin =
            std::path::PathBuf::from(format!("the database's key {selector}._domainkey.{domain}"));
        match postel_auth::Key::from_pem(domain, selector, pem.as_bytes(), &origin) {
            Ok(k) => keys.push(k),
            Err(e) => tracing::warn!(error = %e, "a DKIM key in the database is not used"),
        }
    }
    Ok(postel_auth::Signer::new(keys))
}
