//! Where mail for a destination goes: the smarthost, or the MX hosts with
//! their TLS policy: DANE (RFC 7672) where the destination's records are
//! signed, else its MTA-STS policy (RFC 8461), else the configured one;
//! and what the TLS report (RFC 8460) says applied.

use std::sync::Arc;

use postel_store::Store;

use super::{Worker, unix_now};
use crate::mx::{self, Host, Myself};
use crate::outcome::{Failure, Outcome};
use crate::session::Dial;
use crate::settings::TlsPolicy;

impl<S: Store + Clone> Worker<S> {
    /// The hosts for `dest`, and how to dial them; or the outcome for all
    /// its recipients when there is nowhere to go.
    pub(super) async fn route(
        &self,
        dest: &str,
        waived: bool,
    ) -> Result<(Vec<Host>, Dial<'_>), (Outcome, bool)> {
        let s = &self.settings;
        if let Some(sh) = &s.smarthost {
            let addrs = match self.dns.addresses(&sh.host).await {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => {
                    return Err((
                        Outcome::Deferred(Failure::local(
                            "4.4.4",
                            format!("the smarthost {} has no address", sh.host),
                        )),
                        false,
                    ));
                }
                Err(f) => return Err((Outcome::Deferred(f), false)),
            };
            let host = Host {
                name: sh.host.clone(),
                preference: 0,
                addrs,
                dane: None,
                encrypt: false,
            };
            let dial = Dial {
                settings: s,
                tls: TlsPolicy::Verify,
                auth: sh.auth.as_ref(),
                implicit_tls: sh.implicit_tls,
                port: sh.port,
                down: &self.down,
                // The operator named it; its certificate is verified.
                authenticated: true,
                sts_unknown: false,
            };
            return Ok((vec![host], dial));
        }
        let myself = Myself {
            hostname: s.hostname.to_ascii_lowercase(),
            listeners: s.own_addresses.clone(),
            mx_port: s.mx_port,
        };
        let mut authenticated = false;
        let (mut hosts, mut tls) =
            match mx::route(&self.dns, dest, &myself, s.allow_private_addresses).await {
                Ok(hosts) => (hosts, s.tls_for(dest)),
                Err(f) if f.is_permanent() => return Err((Outcome::Failed(f), false)),
                Err(f) => return Err((Outcome::Deferred(f), false)),
            };
        // DANE first: where it applies, it takes precedence over MTA-STS
        // (RFC 8461 2).
        let dane = match self.dane.as_ref().filter(|_| !waived) {
            Some(dane) => self.apply_dane(dane, dest, &mut hosts).await?,
            None => false,
        };
        let mut sts_unknown = false;
        let policy = match self.mta_sts.as_ref().filter(|_| !waived && !dane) {
            Some(sts) => sts.lookup(dest, unix_now()).await.unwrap_or_else(|_| {
                sts_unknown = true;
                None
            }),
            None => None,
        };
        // The policy the report names: not the one a waiver set aside.
        if let Some(tls) = self.tls.as_ref().filter(|_| !waived) {
            if sts_unknown {
                tls.note(
                    dest,
                    mail_auth::report::tlsrpt::ResultType::StsPolicyFetchError,
                );
            }
            tls.applied(dest, applied_policy(&hosts, policy.as_deref()));
        }
        if let Some(policy) = policy {
            let outside: Vec<&str> = hosts
                .iter()
                .filter(|h| !policy.allows(&h.name))
                .map(|h| h.name.as_str())
                .collect();
            match policy.mode {
                crate::mta_sts::Mode::Enforce => {
                    if !outside.is_empty() {
                        tracing::warn!(domain = dest, hosts = ?outside, "MTA-STS: MX hosts outside the policy skipped");
                    }
                    hosts.retain(|h| policy.allows(&h.name));
                    if hosts.is_empty() {
                        let f = Failure::local(
                            "4.7.5",
                            format!("MTA-STS: no MX host of {dest} matches its policy"),
                        );
                        return Err((Outcome::Deferred(f), true));
                    }
                    // Verified TLS for the MX name, never plaintext.
                    tls = TlsPolicy::Verify;
                    authenticated = true;
                }
                crate::mta_sts::Mode::Testing if !outside.is_empty() => {
                    tracing::warn!(domain = dest, hosts = ?outside, "MTA-STS testing: these MX hosts would be skipped under enforce");
                }
                _ => {}
            }
        }
        Ok((
            hosts,
            Dial {
                settings: s,
                tls,
                auth: None,
                implicit_tls: false,
                port: s.mx_port,
                down: &self.down,
                authenticated,
                sts_unknown,
            },
        ))
    }

    /// DANE for `dest`: each host's TLSA records when its MX RRset is
    /// secure; hosts whose records are bogus are left out. Whether DANE
    /// applies (some host has records), or the outcome when no host is
    /// left or the MX RRset is bogus.
    async fn apply_dane(
        &self,
        dane: &crate::dane::Dane,
        dest: &str,
        hosts: &mut Vec<Host>,
    ) -> Result<bool, (Outcome, bool)> {
        use crate::dane::Lookup;
        // Enforced (true): mail that waived the policy may go without it.
        let defer = |why: String| (Outcome::Deferred(Failure::local("4.7.5", why)), true);
        let secure_hosts = match dane.mx(dest).await {
            Lookup::Secure(names) => names,
            Lookup::Insecure => return Ok(false),
            Lookup::Bogus(e) => {
                tracing::warn!(domain = dest, error = %e, "DANE: the MX records are bogus");
                return Err(defer(format!(
                    "DANE: the MX records of {dest} are bogus: {e}"
                )));
            }
        };
        let mut applies = false;
        let mut kept = Vec::with_capacity(hosts.len());
        let mut last = format!("DANE: no MX host of {dest} is in its signed MX records");
        // Only the hosts the signed MX records name: the plain resolver's
        // answer could be forged.
        let (named, unnamed): (Vec<Host>, Vec<Host>) = std::mem::take(hosts)
            .into_iter()
            .partition(|h| secure_hosts.iter().any(|n| n.eq_ignore_ascii_case(&h.name)));
        for h in &unnamed {
            tracing::warn!(
                domain = dest,
                host = h.name,
                "DANE: MX host not in the signed MX records: skipped"
            );
        }
        // The hosts' TLSA lookups at once, not one after another.
        let port = self.settings.mx_port;
        let lookups =
            futures_util::future::join_all(named.iter().map(|h| dane.tlsa(&h.name, port))).await;
        for (mut h, lookup) in named.into_iter().zip(lookups) {
            match lookup {
                // Only unusable records: TLS required, unauthenticated.
                Lookup::Secure(records) if records.is_empty() => {
                    h.encrypt = true;
                    kept.push(h);
                }
                Lookup::Secure(records) => {
                    applies = true;
                    h.dane = Some(Arc::new(records));
                    kept.push(h);
                }
                Lookup::Insecure => kept.push(h),
                Lookup::Bogus(e) => {
                    tracing::warn!(domain = dest, host = h.name, error = %e, "DANE: TLSA records bogus: host skipped");
                    last = format!("DANE: the TLSA records of {} are bogus: {e}", h.name);
                }
            }
        }
        if kept.is_empty() {
            return Err(defer(last));
        }
        *hosts = kept;
        Ok(applies)
    }
}

/// The policy in force for a destination, for its TLS report: DANE when
/// some host has TLSA records, else its MTA-STS policy, else none.
fn applied_policy(
    hosts: &[Host],
    sts: Option<&crate::mta_sts::Policy>,
) -> crate::tls_report::Applied {
    use crate::tls_report::Applied;
    let dane: Vec<&Host> = hosts.iter().filter(|h| h.dane.is_some()).collect();
    if !dane.is_empty() {
        let mut records: Vec<String> = dane
            .iter()
            .flat_map(|h| h.dane.iter().flat_map(|r| r.iter()))
            .map(|t| {
                let hex: String = t.data.iter().map(|b| format!("{b:02x}")).collect();
                format!("{} {} {} {hex}", t.usage, t.selector, t.matching)
            })
            .collect();
        records.dedup();
        return Applied::Tlsa {
            records,
            hosts: dane.iter().map(|h| h.name.clone()).collect(),
        };
    }
    match sts {
        Some(p) => {
            let mode = match p.mode {
                crate::mta_sts::Mode::Enforce => "enforce",
                crate::mta_sts::Mode::Testing => "testing",
                crate::mta_sts::Mode::None => "none",
            };
            let mut lines = vec!["version: STSv1".to_owned(), format!("mode: {mode}")];
            lines.extend(p.mx.iter().map(|m| format!("mx: {m}")));
            lines.push(format!("max_age: {}", p.max_age));
            Applied::Sts {
                lines,
                mx: p.mx.clone(),
            }
        }
        None => Applied::None,
    }
}
