//! `[delivery]` and `[dns]`: whether and how mail is sent on, and the
//! checks that make turning it on safe (accepted domains listed, a fully
//! qualified hostname).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use postel_delivery::schedule::parse_duration;
use postel_delivery::{Settings, Smarthost, TlsPolicy};
use serde::{Deserialize, Serialize};

/// `[delivery]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliverySection {
    /// Send mail for other domains on. Off without a config file.
    pub(crate) enabled: Option<bool>,
    /// Client networks that may relay without AUTH (`127.0.0.0/8`...).
    pub(crate) relay_networks: Option<Vec<String>>,
    /// Waits between attempts (`"5m"`, `"1h20"`...); the last repeats.
    pub(crate) retry: Option<Vec<String>>,
    /// How long a message may wait in the queue. Default `"5d"`.
    pub(crate) lifetime: Option<String>,
    /// After how long a delayed message's sender gets a delay notice.
    /// Default `["4h", "24h"]`; `[]` for none.
    pub(crate) delay_warnings: Option<Vec<String>>,
    /// Send every remote message to this `host:port` instead.
    pub(crate) smarthost: Option<String>,
    /// AUTH user at the smarthost.
    pub(crate) smarthost_user: Option<String>,
    /// A file holding the smarthost password.
    pub(crate) smarthost_password_file: Option<PathBuf>,
    /// Recipients per transaction. Default 50.
    pub(crate) max_recipients_per_transaction: Option<usize>,
    /// Source address for IPv4 connections.
    pub(crate) source_ipv4: Option<String>,
    /// Source address for IPv6 connections.
    pub(crate) source_ipv6: Option<String>,
    /// The port every MX is dialled on. Default 25.
    pub(crate) mx_port: Option<u16>,
    /// Fetch and enforce destinations' MTA-STS policies. Default true.
    pub(crate) mta_sts: Option<bool>,
    /// The port MTA-STS policies are fetched from. Default 443 (tests
    /// only set another).
    pub(crate) mta_sts_port: Option<u16>,
    /// Deliver to loopback and private addresses learnt from DNS.
    pub(crate) allow_private_addresses: Option<bool>,
    /// `none`, `may` (default), `encrypt` or `verify`.
    pub(crate) tls: Option<String>,
    /// Per-domain TLS policy.
    pub(crate) tls_policies: Option<std::collections::BTreeMap<String, String>>,
    /// Outbound connections at once. Default 100.
    pub(crate) max_connections: Option<usize>,
    /// Outbound connections at once to one destination. Default 10.
    pub(crate) max_connections_per_destination: Option<usize>,
    /// Connecting. Default `"30s"`.
    pub(crate) connect_timeout: Option<String>,
    /// Each command's reply. Default `"5m"`.
    pub(crate) command_timeout: Option<String>,
    /// Sending content and its final reply. Default `"10m"`.
    pub(crate) data_timeout: Option<String>,
    /// Octets of an original message attached to a notice. Default 50000.
    pub(crate) notice_content_limit: Option<usize>,
    /// TLS reports (RFC 8460) to the destinations that publish an
    /// address for them. Default true.
    pub(crate) tls_reports: Option<bool>,
    /// What one report covers. Default `"24h"` (a UTC day).
    pub(crate) tls_report_period: Option<String>,
    /// DANE (RFC 7672) where MX and TLSA records are DNSSEC-signed.
    /// Default false.
    pub(crate) dane: Option<bool>,
    /// Local addresses whose mail is sent on to others.
    pub(crate) forward: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// `[dns]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsSection {
    /// Nameservers, `IP:PORT`; absent: the system's.
    pub(crate) nameservers: Option<Vec<String>>,
    /// DNSKEY records DNSSEC validation starts from (DANE); absent: the
    /// IANA root keys.
    pub(crate) trust_anchor: Option<PathBuf>,
}

/// What delivery needs from the rest of the config.
pub(super) struct Context<'a> {
    pub(super) hostname: &'a str,
    pub(super) domains: &'a std::collections::BTreeSet<String>,
    pub(super) listeners: Vec<SocketAddr>,
    pub(super) ca_file: Option<&'a PathBuf>,
}

fn duration(
    key: &str,
    v: Option<&String>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match v {
        None => default,
        Some(s) => match parse_duration(s) {
            Some(d) if !d.is_zero() => d,
            _ => {
                problems.push(format!(
                    "delivery.{key}: {s:?} is not a duration such as \"5m\" or \"1h20\""
                ));
                default
            }
        },
    }
}

/// Checks `[delivery]` and `[dns]`: the settings when delivery is on,
/// and the relay networks (which apply only then).
pub(super) fn validate(
    d: &DeliverySection,
    dns: &DnsSection,
    cx: &Context<'_>,
    problems: &mut Vec<String>,
) -> Option<Settings> {
    let mut s = Settings::new(cx.hostname);
    for (i, n) in d.relay_networks.iter().flatten().enumerate() {
        match super::network(n) {
            Some(net) => s.relay_networks.push(net),
            None => problems.push(format!(
                "delivery.relay_networks[{i}]: {n:?} is not a network such as \"127.0.0.0/8\""
            )),
        }
    }
    for (i, n) in dns.nameservers.iter().flatten().enumerate() {
        match n.parse::<SocketAddr>() {
            Ok(a) => s.nameservers.push(a),
            Err(_) => problems.push(format!(
                "dns.nameservers[{i}]: {n:?} is not IP:PORT (such as \"127.0.0.1:53\")"
            )),
        }
    }
    if let Some(list) = &d.retry {
        if list.is_empty() {
            problems.push("delivery.retry: give at least one interval".to_owned());
        }
        s.schedule.intervals = list
            .iter()
            .enumerate()
            .map(|(i, r)| {
                duration(
                    &format!("retry[{i}]"),
                    Some(r),
                    Duration::from_secs(300),
                    problems,
                )
            })
            .collect();
    }
    s.schedule.lifetime = duration(
        "lifetime",
        d.lifetime.as_ref(),
        s.schedule.lifetime,
        problems,
    );
    if let Some(list) = &d.delay_warnings {
        if list.len() > 32 {
            problems.push("delivery.delay_warnings: at most 32".to_owned());
        }
        s.schedule.warnings = list
            .iter()
            .enumerate()
            .map(|(i, w)| {
                duration(
                    &format!("delay_warnings[{i}]"),
                    Some(w),
                    Duration::from_secs(4 * 3600),
                    problems,
                )
            })
            .collect();
    }
    let t = &mut s.timeouts;
    t.connect = duration(
        "connect_timeout",
        d.connect_timeout.as_ref(),
        t.connect,
        problems,
    );
    t.command = duration(
        "command_timeout",
        d.command_timeout.as_ref(),
        t.command,
        problems,
    );
    t.data = duration("data_timeout", d.data_timeout.as_ref(), t.data, problems);
    if let Some(n) = d.max_recipients_per_transaction {
        if n == 0 {
            problems.push("delivery.max_recipients_per_transaction: must be at least 1".to_owned());
        }
        s.max_recipients_per_transaction = n.max(1);
    }
    if let Some(v) = &d.source_ipv4 {
        match v.parse::<Ipv4Addr>() {
            Ok(ip) => s.source_ipv4 = Some(ip),
            Err(_) => problems.push(format!(
                "delivery.source_ipv4: {v:?} is not an IPv4 address"
            )),
        }
    }
    if let Some(v) = &d.source_ipv6 {
        match v.parse::<Ipv6Addr>() {
            Ok(ip) => s.source_ipv6 = Some(ip),
            Err(_) => problems.push(format!(
                "delivery.source_ipv6: {v:?} is not an IPv6 address"
            )),
        }
    }
    s.mx_port = d.mx_port.unwrap_or(25);
    s.mta_sts = d.mta_sts.unwrap_or(true);
    s.mta_sts_port = d.mta_sts_port.unwrap_or(443);
    s.dane = d.dane.unwrap_or(false);
    s.tls_reports = d.tls_reports.unwrap_or(true);
    if let Some(p) = &d.tls_report_period {
        match parse_duration(p) {
            Some(t) if t.as_secs() >= 1 && t.as_secs() <= 7 * 86_400 => {
                s.tls_report_period = t.as_secs() as i64;
            }
            _ => problems.push(format!(
                "delivery.tls_report_period: {p:?} is not a duration from 1s to 7d, such as \"24h\""
            )),
        }
    }
    s.trust_anchor = dns.trust_anchor.clone();
    if let Some(path) = &s.trust_anchor {
        match std::fs::read_to_string(path) {
            Ok(text) if text.contains("DNSKEY") => {}
            Ok(_) => problems.push(format!(
                "dns.trust_anchor: {} holds no DNSKEY record",
                path.display()
            )),
            Err(e) => problems.push(format!("dns.trust_anchor: {}: {e}", path.display())),
        }
    }
    s.allow_private_addresses = d.allow_private_addresses.unwrap_or(false);
    if let Some(v) = &d.tls {
        match TlsPolicy::parse(v) {
            Some(p) => s.tls = p,
            None => problems.push(format!(
                "delivery.tls: {v:?} is not none, may, encrypt or verify"
            )),
        }
    }
    for (domain, v) in d.tls_policies.iter().flatten() {
        match TlsPolicy::parse(v) {
            Some(p) => {
                s.tls_policies.insert(domain.to_ascii_lowercase(), p);
            }
            None => problems.push(format!(
                "delivery.tls_policies.{domain}: {v:?} is not none, may, encrypt or verify"
            )),
        }
    }
    s.max_connections = d.max_connections.unwrap_or(s.max_connections).max(1);
    s.max_connections_per_destination = d
        .max_connections_per_destination
        .unwrap_or(s.max_connections_per_destination)
        .max(1);
    s.notice_content_limit = d.notice_content_limit.unwrap_or(s.notice_content_limit);
    s.local_domains = cx.domains.clone();
    s.own_addresses = cx.listeners.clone();
    s.version = env!("CARGO_PKG_VERSION").to_owned();
    if let Some(path) = cx.ca_file {
        match std::fs::read(path) {
            Ok(pem) => {
                use rustls_pki_types::pem::PemObject as _;
                let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                    .filter_map(Result::ok)
                    .collect();
                if certs.is_empty() {
                    problems.push(format!("tls.ca_file: no certificate in {}", path.display()));
                }
                s.extra_roots = certs;
            }
            Err(e) => problems.push(format!("tls.ca_file: cannot read {}: {e}", path.display())),
        }
    }
    if let Some(sh) = &d.smarthost {
        s.smarthost = smarthost(sh, d, problems);
    } else if d.smarthost_user.is_some() || d.smarthost_password_file.is_some() {
        problems.push("delivery.smarthost_user: set delivery.smarthost too".to_owned());
    }
    if !d.enabled.unwrap_or(false) {
        return None;
    }
    if cx.domains.is_empty() {
        problems.push(
            "delivery.enabled: list the local domains in policy.domains: with delivery on, \"accept every recipient\" would make an open relay".to_owned(),
        );
    }
    let h = cx.hostname;
    if !h.contains('.') || h.eq_ignore_ascii_case("localhost") || h.ends_with('.') {
        problems.push(format!(
            "hostname: {h:?} is not a fully qualified domain name; with delivery on, many MX hosts refuse an EHLO without one"
        ));
    }
    Some(s)
}

fn smarthost(sh: &str, d: &DeliverySection, problems: &mut Vec<String>) -> Option<Smarthost> {
    let (host, port) = match sh.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h.trim_matches(['[', ']']).to_owned(), p),
            _ => {
                problems.push(format!("delivery.smarthost: {sh:?} is not host:port"));
                return None;
            }
        },
        None => (sh.to_owned(), 587),
    };
    let auth = match (&d.smarthost_user, &d.smarthost_password_file) {
        (Some(user), Some(file)) => match std::fs::read_to_string(file) {
            Ok(pw) => Some((user.clone(), pw.trim_end_matches(['\r', '\n']).to_owned())),
            Err(e) => {
                problems.push(format!(
                    "delivery.smarthost_password_file: cannot read {}: {e}",
                    file.display()
                ));
                None
            }
        },
        (Some(_), None) => {
            problems
                .push("delivery.smarthost_password_file: needed with smarthost_user".to_owned());
            None
        }
        (None, Some(_)) => {
            problems
                .push("delivery.smarthost_user: needed with smarthost_password_file".to_owned());
            None
        }
        (None, None) => None,
    };
    Some(Smarthost {
        host,
        port,
        auth,
        implicit_tls: port == 465,
    })
}

/// The effective `[delivery]`, as a config section (passwords left out).
pub(super) fn effective(s: Option<&Settings>) -> DeliverySection {
    let Some(s) = s else {
        return DeliverySection {
            enabled: Some(false),
            ..DeliverySection::default()
        };
    };
    let secs = |d: Duration| Some(format!("{}s", d.as_secs()));
    let policy = |p: TlsPolicy| {
        match p {
            TlsPolicy::None => "none",
            TlsPolicy::May => "may",
            TlsPolicy::Encrypt => "encrypt",
            TlsPolicy::Verify => "verify",
        }
        .to_owned()
    };
    DeliverySection {
        enabled: Some(true),
        relay_networks: Some(s.relay_networks.iter().map(ToString::to_string).collect()),
        retry: Some(
            s.schedule
                .intervals
                .iter()
                .map(|d| format!("{}s", d.as_secs()))
                .collect(),
        ),
        lifetime: secs(s.schedule.lifetime),
        delay_warnings: Some(
            s.schedule
                .warnings
                .iter()
                .map(|d| format!("{}s", d.as_secs()))
                .collect(),
        ),
        smarthost: s
            .smarthost
            .as_ref()
            .map(|h| format!("{}:{}", h.host, h.port)),
        smarthost_user: s
            .smarthost
            .as_ref()
            .and_then(|h| h.auth.as_ref().map(|(u, _)| u.clone())),
        smarthost_password_file: None,
        max_recipients_per_transaction: Some(s.max_recipients_per_transaction),
        source_ipv4: s.source_ipv4.map(|ip| ip.to_string()),
        source_ipv6: s.source_ipv6.map(|ip| ip.to_string()),
        mx_port: Some(s.mx_port),
        mta_sts: Some(s.mta_sts),
        mta_sts_port: Some(s.mta_sts_port),
        dane: Some(s.dane),
        tls_reports: Some(s.tls_reports),
        tls_report_period: Some(format!("{}s", s.tls_report_period)),
        allow_private_addresses: Some(s.allow_private_addresses),
        tls: Some(policy(s.tls)),
        tls_policies: Some(
            s.tls_policies
                .iter()
                .map(|(d, p)| (d.clone(), policy(*p)))
                .collect(),
        ),
        max_connections: Some(s.max_connections),
        max_connections_per_destination: Some(s.max_connections_per_destination),
        connect_timeout: secs(s.timeouts.connect),
        command_timeout: secs(s.timeouts.command),
        data_timeout: secs(s.timeouts.data),
        notice_content_limit: Some(s.notice_content_limit),
        forward: None,
    }
}
