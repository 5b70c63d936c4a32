//! What the delivery side is told by the config: identity, routing, TLS
//! policy, limits and timeouts. Built by the binary, read here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::schedule::Schedule;

/// How much TLS a destination gets (Postfix's `smtp_tls_security_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate; a failed handshake is
    /// retried at once in plaintext (opportunistic, RFC 3207 4.1).
    May,
    /// STARTTLS required, any certificate; otherwise defer.
    Encrypt,
    /// STARTTLS required, and the certificate must verify for the MX host
    /// name (WebPKI roots and `[tls] ca_file`); otherwise defer.
    Verify,
}

impl TlsPolicy {
    /// The policy named `s` (`none`, `may`, `encrypt`, `verify`).
    pub fn parse(s: &str) -> Option<TlsPolicy> {
        Some(match s {
            "none" => TlsPolicy::None,
            "may" => TlsPolicy::May,
            "encrypt" => TlsPolicy::Encrypt,
            "verify" => TlsPolicy::Verify,
            _ => return None,
        })
    }
}

/// Every remote message goes to one host instead of the MX hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    /// A host name or an IP address.
    pub host: String,
    /// 587 (STARTTLS) or 465 (implicit TLS), or any other.
    pub port: u16,
    /// AUTH PLAIN with these, over verified TLS only.
    pub auth: Option<(String, String)>,
    /// Implicit TLS (port 465).
    pub implicit_tls: bool,
}

/// The timeouts of RFC 5321 4.5.3.2, and the connection's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection.
    pub connect: Duration,
    /// The greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT and the DATA `354`
    /// (RFC: 5 minutes, 2 for DATA).
    pub command: Duration,
    /// Writing the content, and the reply to its final dot (RFC: 3 and 10
    /// minutes).
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(300),
            data: Duration::from_secs(600),
        }
    }
}

/// Everything delivery needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The name in EHLO, in notices, and checked against MX names.
    pub hostname: String,
    /// The port every MX is dialled on (25).
    pub mx_port: u16,
    /// Deliver to loopback and private addresses learnt from DNS (tests).
    pub allow_private_addresses: bool,
    /// DNS servers, `IP:PORT`; empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Retries and lifetime.
    pub schedule: Schedule,
    /// Send every remote message to this host instead.
    pub smarthost: Option<Smarthost>,
    /// Recipients per transaction (Postfix: 50).
    pub max_recipients_per_transaction: usize,
    /// The source address of connections over IPv4.
    pub source_ipv4: Option<Ipv4Addr>,
    /// The source address of connections over IPv6.
    pub source_ipv6: Option<Ipv6Addr>,
    /// The TLS policy of destinations not listed in `tls_policies`.
    pub tls: TlsPolicy,
    /// Per-domain TLS policies (lowercase domain).
    pub tls_policies: BTreeMap<String, TlsPolicy>,
    /// Extra trusted roots, PEM (`[tls] ca_file`).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once to one destination.
    pub max_connections_per_destination: usize,
    /// Step timeouts.
    pub timeouts: Timeouts,
    /// Domains whose mail stays here (lowercase).
    pub local_domains: BTreeSet<String>,
    /// Postel's own listeners: an MX that resolves to one of them is Postel.
    pub own_addresses: Vec<SocketAddr>,
    /// Clients trusted as senders (they may relay, and get full notices).
    pub relay_networks: Vec<ipnet::IpNet>,
    /// The most octets of an original message attached to a notice; past
    /// this, only its headers.
    pub notice_content_limit: usize,
    /// How long a host that did not answer is skipped.
    pub host_down_for: Duration,
    /// `Received:` headers past which a message is taken for a loop.
    pub max_hops: usize,
    /// The version in notices.
    pub version: String,
    /// Local recipients delivered to a Maildir or over LMTP, not kept
    /// in the store.
    pub local_routes: crate::local::LocalRoutes,
    /// MTA-STS (RFC 8461): a destination's published policy is fetched
    /// and enforced. On by default.
    pub mta_sts: bool,
    /// The port policies are fetched from: 443 (another only in tests).
    pub mta_sts_port: u16,
    /// DANE (RFC 7672) for destinations whose MX and TLSA records are
    /// DNSSEC-signed. Off by default.
    pub dane: bool,
    /// DNSKEY records to validate from; None: the IANA root keys.
    pub trust_anchor: Option<std::path::PathBuf>,
    /// Where state kept across restarts goes (MTA-STS policies): the
    /// data folder. None: kept in memory only.
    pub state_dir: Option<std::path::PathBuf>,
    /// TLS reports (RFC 8460) to the destinations that ask for them. On by
    /// default.
    pub tls_reports: bool,
    /// Seconds a report covers: 86,400 (a UTC day; another only in
    /// tests).
    pub tls_report_period: i64,
    /// DKIM keys: notices (DSNs) from the host's domain are signed with
    /// them, since an unsigned bounce is dropped by the large providers.
    pub signer: std::sync::Arc<postel_auth::Signer>,
}

impl Settings {
    /// Settings for `hostname` with every default.
    pub fn new(hostname: &str) -> Settings {
        Settings {
            hostname: hostname.to_owned(),
            mx_port: 25,
            allow_private_addresses: false,
            nameservers: Vec::new(),
            schedule: Schedule::default(),
            smarthost: None,
            max_recipients_per_transaction: 50,
            source_ipv4: None,
            source_ipv6: None,
            tls: TlsPolicy::May,
            tls_policies: BTreeMap::new(),
            extra_roots: Vec::new(),
            max_connections: 100,
            max_connections_per_destination: 10,
            timeouts: Timeouts::default(),
            local_domains: BTreeSet::new(),
            own_addresses: Vec::new(),
            relay_networks: Vec::new(),
            notice_content_limit: 50_000,
            host_down_for: Duration::from_secs(300),
            max_hops: 50,
            version: String::new(),
            local_routes: crate::local::LocalRoutes::default(),
            signer: std::sync::Arc::new(postel_auth::Signer::default()),
            mta_sts: true,
            mta_sts_port: 443,
            dane: false,
            trust_anchor: None,
            state_dir: None,
            tls_reports: true,
            tls_report_period: 86_400,
        }
    }

    /// The TLS policy for mail to `domain`.
    pub fn tls_for(&self, domain: &str) -> TlsPolicy {
        self.tls_policies
            .get(&domain.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.tls)
    }

    /// Whether mail for `domain` stays here.
    pub fn is_local(&self, domain: &str) -> bool {
        self.local_domains.contains(&domain.to_ascii_lowercase())
    }

    /// Whether `ip` is in the relay networks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.relay_networks.iter().any(|n| n.contains(&ip))
    }

    /// The roots that verify a remote certificate.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &self.extra_roots {
            let _ = roots.add(cert.clone());
        }
        Arc::new(roots)
    }
}
