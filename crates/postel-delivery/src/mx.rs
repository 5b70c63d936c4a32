//! Where mail for a domain goes (RFC 5321 5.1): its MX hosts by
//! preference, random among equals; the domain itself when it has no MX
//! (the implicit MX); nowhere for a null MX (RFC 7505). Then each host's
//! addresses, IPv6 and IPv4, with Postel itself and (unless allowed)
//! private addresses taken out.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::outcome::Failure;

/// The most MX hosts looked at for one domain.
const MAX_MX: usize = 10;

/// One host to try, with its addresses in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The MX name (or the domain, for an implicit MX).
    pub name: String,
    /// Its preference (0 for an implicit MX).
    pub preference: u16,
    /// Where to connect, IPv6 first.
    pub addrs: Vec<IpAddr>,
    /// Its TLSA records, when DANE applies to it (see `dane`).
    pub dane: Option<std::sync::Arc<Vec<crate::dane::Tlsa>>>,
    /// TLS required without authentication (signed TLSA records that are
    /// all unusable, RFC 7672 2.2).
    pub encrypt: bool,
}

/// The resolver, with the configured nameservers or the system's.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

/// A resolver's builder asking `nameservers` (`IP:PORT`), or the system's
/// when the list is empty, with delivery's options: 5 s a query, two
/// attempts, names taken as absolute. Shared by [`Dns`] and DANE's
/// validating resolver.
///
/// # Errors
/// When the system's configuration cannot be read.
pub(crate) fn resolver_builder(
    nameservers: &[SocketAddr],
) -> Result<hickory_resolver::ResolverBuilder<TokioRuntimeProvider>, String> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let opts = builder.options_mut();
    opts.timeout = std::time::Duration::from_secs(5);
    opts.attempts = 2;
    opts.ndots = 0;
    Ok(builder)
}

impl Dns {
    /// A resolver asking `nameservers` (`IP:PORT`), or the system's when
    /// the list is empty.
    ///
    /// # Errors
    /// When the system's configuration cannot be read.
    pub fn new(nameservers: &[SocketAddr]) -> Result<Dns, String> {
        let mut builder = resolver_builder(nameservers)?;
        // A name that does not exist is asked again after 30 s at the
        // earliest, even from a server that gives no negative TTL (SOA):
        // the HELO names of mail from outside are checked on every message.
        builder.options_mut().negative_min_ttl = Some(std::time::Duration::from_secs(30));
        let resolver = builder.build().map_err(|e| e.to_string())?;
        Ok(Dns { resolver })
    }

    /// The TXT records of `name`, each one string (its parts joined):
    /// none when it has none or does not exist.
    ///
    /// # Errors
    /// When DNS fails (SERVFAIL, timeout).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.txt_lookup(fqdn.as_str()).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The resolver itself (shared: same cache), for other checks.
    pub fn resolver(&self) -> TokioResolver {
        self.resolver.clone()
    }

    /// The IPv4 addresses of `name` (a DNS list query): none when it does
    /// not exist or has none.
    ///
    /// # Errors
    /// When DNS fails (SERVFAIL, timeout).
    pub async fn ipv4(&self, name: &str) -> Result<Vec<std::net::Ipv4Addr>, String> {
        match self.resolver.ipv4_lookup(name).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A client's names as Postfix gives them: the name of its PTR record
    /// (unverified, `reverse_client_name`), and that name again when its
    /// addresses include `ip` (forward-confirmed, `client_name`). None for
    /// either when there is none, or DNS fails.
    pub async fn client_names(&self, ip: IpAddr) -> (Option<String>, Option<String>) {
        let ptr = match self.resolver.reverse_lookup(ip).await {
            // The name as it is in DNS (A-labels, never decoded to
            // Unicode), and only a real host name: a name that could be
            // rewritten, or that looks like an address, is no name.
            Ok(l) => l.answers().iter().find_map(|r| match &r.data {
                RData::PTR(p) => {
                    let name = p.0.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                    valid_hostname(&name).then_some(name)
                }
                _ => None,
            }),
            Err(_) => None,
        };
        let Some(name) = ptr.filter(|n| !n.is_empty()) else {
            return (None, None);
        };
        let confirmed = self
            .addresses(&name)
            .await
            .is_ok_and(|addrs| addrs.contains(&ip));
        (Some(name.clone()), confirmed.then_some(name))
    }

    /// The MX hosts of `domain` by preference, random among equals; the
    /// domain itself when it has none.
    ///
    /// # Errors
    /// A [`Failure`]: `5.1.10` for a null MX, `5.1.2` when the domain does
    /// not exist, `4.4.3` when DNS fails (SERVFAIL, timeout).
    pub async fn mx_hosts(&self, domain: &str) -> Result<Vec<(u16, String)>, Failure> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut hosts: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((
                            mx.preference,
                            // A-labels: what certificates and MTA-STS
                            // patterns name.
                            mx.exchange
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        )),
                        _ => None,
                    })
                    .collect();
                if hosts.iter().any(|(_, name)| name.is_empty()) {
                    return Err(Failure::local(
                        "5.1.10",
                        format!("{domain} does not accept mail (null MX)"),
                    ));
                }
                if hosts.is_empty() {
                    return Ok(vec![(0, domain.to_ascii_lowercase())]);
                }
                fastrand::shuffle(&mut hosts);
                hosts.sort_by_key(|(p, _)| *p);
                Ok(hosts)
            }
            Err(e) if e.is_nx_domain() => Err(Failure::local(
                "5.1.2",
                format!("{domain}: no such domain (NXDOMAIN)"),
            )),
            Err(e) if e.is_no_records_found() => Ok(vec![(0, domain.to_ascii_lowercase())]),
            Err(e) => Err(Failure::local(
                "4.4.3",
                format!("MX lookup for {domain} failed: {e}"),
            )),
        }
    }

    /// The addresses of `host`, IPv6 first. An empty list: it has none.
    ///
    /// # Errors
    /// `4.4.3` when DNS fails.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, Failure> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let mut addrs = Vec::new();
        let mut failure = None;
        let (v6, v4) = tokio::join!(
            self.resolver.ipv6_lookup(fqdn.as_str()),
            self.resolver.ipv4_lookup(fqdn.as_str())
        );
        for lookup in [v6, v4] {
            match lookup {
                Ok(l) => addrs.extend(l.answers().iter().filter_map(|r| match &r.data {
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })),
                Err(e) if e.is_no_records_found() => {}
                Err(e) => failure = Some(e.to_string()),
            }
        }
        match failure {
            Some(e) if addrs.is_empty() => Err(Failure::local(
                "4.4.3",
                format!("address lookup for {host} failed: {e}"),
            )),
            _ => Ok(addrs),
        }
    }
}

/// Whether `name` is a host name as Postfix's `valid_hostname` takes it:
/// letters, digits and hyphens in labels of 1 to 63 octets, none starting
/// or ending with a hyphen, at most 253 octets, and not all digits and
/// dots (an address is not a name).
pub fn valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Whether `ip` is loopback, private, link-local or otherwise not a public
/// address: one that DNS should not be able to send mail to.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                // 100.64.0.0/10, shared address space (RFC 6598).
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// What is known of Postel itself, to find an MX that is Postel.
#[derive(Debug, Clone, Default)]
pub struct Myself {
    /// Postel's hostname, lowercase.
    pub hostname: String,
    /// Its listeners.
    pub listeners: Vec<SocketAddr>,
    /// The port MX hosts are dialled on.
    pub mx_port: u16,
}

impl Myself {
    fn is_me(&self, name: &str, addrs: &[IpAddr]) -> bool {
        if name.eq_ignore_ascii_case(&self.hostname) {
            return true;
        }
        addrs.iter().any(|ip| {
            self.listeners.iter().any(|l| {
                l.port() == self.mx_port
                    && (l.ip() == *ip || (l.ip().is_unspecified() && ip.is_loopback()))
            })
        })
    }
}

/// The hosts to try for `domain`, in order, each with its addresses.
///
/// # Errors
/// As [`Dns::mx_hosts`]; `5.4.6` when every MX left is Postel itself (RFC
/// 5321 5.1: a loop); `5.4.4` when no host has a usable address, `4.4.3`
/// when that is for want of DNS.
pub async fn route(
    dns: &Dns,
    domain: &str,
    myself: &Myself,
    allow_private: bool,
) -> Result<Vec<Host>, Failure> {
    let mut names = dns.mx_hosts(domain).await?;
    // Enough for any real domain; a hostile one cannot make a delivery
    // resolve without end.
    names.truncate(MAX_MX);
    let mut hosts = Vec::new();
    let mut dns_failure = None;
    let mut private = false;
    let mut cut: Option<u16> = None;
    for (preference, name) in names {
        if cut.is_some_and(|c| preference >= c) {
            continue;
        }
        // Known by name, Postel needs no lookup to see itself.
        let addrs = if name.eq_ignore_ascii_case(&myself.hostname) {
            Vec::new()
        } else {
            match dns.addresses(&name).await {
                Ok(a) => a,
                Err(f) => {
                    dns_failure = Some(f);
                    continue;
                }
            }
        };
        // RFC 5321 5.1: when Postel is an MX, only hosts more preferred
        // than itself may be tried.
        if myself.is_me(&name, &addrs) {
            cut = Some(preference);
            hosts.retain(|h: &Host| h.preference < preference);
            continue;
        }
        let usable: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|ip| allow_private || !is_private(*ip))
            .collect();
        private |= usable.len() < addrs.len();
        if !usable.is_empty() {
            hosts.push(Host {
                name,
                preference,
                addrs: usable,
                dane: None,
                encrypt: false,
            });
        }
    }
    if !hosts.is_empty() {
        return Ok(hosts);
    }
    // A better MX that DNS could not resolve: not (yet) a loop.
    if let (Some(_), Some(f)) = (cut, &dns_failure) {
        return Err(f.clone());
    }
    if cut.is_some() {
        return Err(Failure::local(
            "5.4.6",
            format!("mail for {domain} loops back to myself"),
        ));
    }
    if let Some(f) = dns_failure {
        return Err(f);
    }
    Err(Failure::local(
        "5.4.4",
        if private {
            format!("{domain}: its mail hosts have only private addresses")
        } else {
            format!("{domain}: no mail host has an address")
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:4860::1", "100.128.0.1", "::ffff:1.1.1.1"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn postel_knows_itself_by_name_and_by_listener() {
        let me = Myself {
            hostname: "mx.here.test".into(),
            listeners: vec!["0.0.0.0:25".parse().expect("addr")],
            mx_port: 25,
        };
        assert!(me.is_me("MX.here.test", &[]));
        assert!(me.is_me("other.test", &["127.0.0.1".parse().expect("ip")]));
        assert!(!me.is_me("other.test", &["192.0.2.1".parse().expect("ip")]));
        let elsewhere = Myself {
            mx_port: 2525,
            ..me
        };
        assert!(!elsewhere.is_me("other.test", &["127.0.0.1".parse().expect("ip")]));
    }

    #[test]
    fn only_plain_host_names_are_names() {
        assert!(valid_hostname("mail.example.test"));
        assert!(valid_hostname("xn--bcher-kva.example"));
        for bad in [
            "",
            "203.0.113.5",
            "a..b",
            "-a.test",
            "a-.test",
            "caf\u{e9}.test",
            "a b.test",
            "a_b.test",
        ] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
    }
}
