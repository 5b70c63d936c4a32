//! `postel probe`: connects to an SMTP server and reports what it offers
//! and what is wrong or risky: the greeting, the EHLO capabilities,
//! STARTTLS and the certificate (names, expiry, chain), AUTH before and
//! after TLS, the size limit. It sends no mail: EHLO, STARTTLS and QUIT
//! are all it says. Given a domain without a port, it looks up the MX.

use std::net::IpAddr;

use anyhow::Context;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::client::{Client, TlsInfo, capabilities, ehlo_name, printable, split_host_port};
use crate::explain::Lang;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Ok,
    Info,
    Risk,
    Problem,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Risk => "RISK",
            Level::Problem => "PROBLEM",
        }
    }
}

/// The report, printed a finding a line as it is made.
struct Report {
    worst: Level,
}

impl Report {
    fn add(&mut self, level: Level, what: impl AsRef<str>) {
        // Names and texts come from the server: no control characters.
        println!("[{:>7}] {}", level.label(), printable(what.as_ref()));
        self.worst = self.worst.max(level);
    }

    fn worst(&self) -> Level {
        self.worst
    }
}

/// Probes `target`; returns the worst finding's level (the exit status
/// is 1 for a problem or a risk).
///
/// # Errors
/// When the server cannot be reached at all.
pub(crate) fn run(target: &str, implicit_tls: bool, lang: Lang) -> anyhow::Result<Level> {
    let (host, port) = split_host_port(target)?;
    let mut report = Report { worst: Level::Ok };
    let (host, port) = match port {
        Some(p) => (host, p),
        None if implicit_tls => (host, 465),
        None if host.parse::<IpAddr>().is_ok() => (host, 25),
        None => {
            let mx = lookup_mx(&host)?;
            if mx.is_empty() {
                report.add(
                    Level::Info,
                    format!("{host} has no MX record: mail goes to the host itself (RFC 5321 5.1)"),
                );
                (host, 25)
            } else if mx.len() == 1 && mx[0].1.is_empty() {
                report.add(
                    Level::Problem,
                    format!("{host} has a null MX (RFC 7505): it accepts no mail at all"),
                );
                return Ok(report.worst());
            } else {
                for (pref, name) in &mx {
                    println!("         MX {pref} {}", printable(name));
                }
                (mx[0].1.clone(), 25)
            }
        }
    };
    println!(
        "probing {host}:{port}{}",
        if implicit_tls { " (implicit TLS)" } else { "" }
    );
    let (mut c, tls) = Client::connect(&host, port, implicit_tls, true, true)
        .with_context(|| format!("cannot reach {host}:{port}"))?;
    c.explain = Some(crate::explain::brief_for(lang));
    if let Some(info) = &tls {
        tls_findings(&mut report, &host, info);
    }
    let greeting = c.read_reply()?;
    match greeting.code {
        220 => report.add(Level::Ok, format!("greeting: {}", greeting.first_line())),
        554 => {
            report.add(
                Level::Problem,
                format!("the server refuses this client ({}): 554 as a greeting means no SMTP service here", greeting.first_line()),
            );
            let _ = c.command("QUIT");
            return Ok(report.worst());
        }
        _ => {
            report.add(
                Level::Problem,
                format!("greeting is not 220: {}", greeting.first_line()),
            );
            return Ok(report.worst());
        }
    }
    let name = ehlo_name();
    let ehlo = c.command(&format!("EHLO {name}"))?;
    if !ehlo.ok() {
        report.add(
            Level::Problem,
            format!("EHLO refused: {}", ehlo.first_line()),
        );
        let _ = c.command("QUIT");
        return Ok(report.worst());
    }
    let caps = capabilities(&ehlo);
    capability_findings(&mut report, &caps, c.is_tls(), port);
    let starttls = caps.iter().any(|(k, _)| k == "STARTTLS");
    if !c.is_tls() && starttls {
        let r = c.command("STARTTLS")?;
        if r.code == 220 {
            match c.handshake(true) {
                Ok(info) => {
                    tls_findings(&mut report, &host, &info);
                    let again = c.command(&format!("EHLO {name}"))?;
                    if again.ok() {
                        let after = capabilities(&again);
                        auth_findings(&mut report, &after, true, port);
                        if after.iter().any(|(k, _)| k == "STARTTLS") {
                            report.add(Level::Risk, "STARTTLS is offered again inside TLS");
                        }
                    }
                }
                Err(e) => {
                    report.add(Level::Problem, format!("STARTTLS handshake failed: {e:#}"));
                    return Ok(report.worst());
                }
            }
        } else {
            report.add(
                Level::Problem,
                format!("STARTTLS offered but refused: {}", r.first_line()),
            );
        }
    }
    let _ = c.command("QUIT");
    let worst = report.worst();
    println!(
        "summary: {}",
        match worst {
            Level::Problem => "problems found",
            Level::Risk => "risks found",
            _ => "no problem found",
        }
    );
    Ok(worst)
}

fn capability_findings(report: &mut Report, caps: &[(String, String)], tls: bool, port: u16) {
    let names: Vec<&str> = caps.iter().map(|(k, _)| k.as_str()).collect();
    report.add(
        Level::Info,
        format!("EHLO capabilities: {}", names.join(" ")),
    );
    match caps.iter().find(|(k, _)| k == "SIZE") {
        Some((_, v)) => match v.parse::<u64>() {
            Ok(0) | Err(_) => report.add(Level::Info, "SIZE: no fixed limit announced"),
            Ok(n) => report.add(
                Level::Info,
                format!("size limit: {n} octets ({:.1} MiB)", n as f64 / 1_048_576.0),
            ),
        },
        None => report.add(
            Level::Info,
            "no SIZE: a too-large message is refused only after it is sent",
        ),
    }
    for (cap, why) in [
        ("PIPELINING", "every command costs a round trip"),
        ("8BITMIME", "8-bit content must be encoded"),
        (
            "ENHANCEDSTATUSCODES",
            "replies have no enhanced status codes",
        ),
        ("SMTPUTF8", "internationalized addresses are refused"),
    ] {
        if !names.contains(&cap) {
            report.add(Level::Info, format!("no {cap}: {why}"));
        }
    }
    if !tls {
        if names.contains(&"STARTTLS") {
            report.add(Level::Ok, "STARTTLS offered");
        } else {
            report.add(
                Level::Risk,
                "no STARTTLS: mail to and from this server crosses the network in clear",
            );
        }
    }
    auth_findings(report, caps, tls, port);
}

fn auth_findings(report: &mut Report, caps: &[(String, String)], tls: bool, port: u16) {
    let auth = caps
        .iter()
        .find(|(k, _)| k == "AUTH")
        .map(|(_, v)| v.clone());
    match (auth, tls) {
        (Some(m), false) => report.add(
            Level::Risk,
            format!("AUTH {m} offered before TLS: passwords can cross the network in clear"),
        ),
        (Some(m), true) => report.add(Level::Ok, format!("AUTH {m} offered over TLS")),
        (None, true) if port == 587 || port == 465 => report.add(
            Level::Info,
            "no AUTH after TLS on a submission port: users cannot log in here",
        ),
        (None, _) => {}
    }
}

fn tls_findings(report: &mut Report, host: &str, info: &TlsInfo) {
    let level = if info.version.contains("1_3") || info.version.contains("1_2") {
        Level::Ok
    } else {
        Level::Risk
    };
    report.add(level, format!("TLS {} with {}", info.version, info.cipher));
    let Some(der) = info.chain.first() else {
        report.add(Level::Problem, "no certificate received");
        return;
    };
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => {
            let mut names: Vec<String> = Vec::new();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for n in &san.value.general_names {
                    match n {
                        GeneralName::DNSName(d) => names.push((*d).to_owned()),
                        GeneralName::IPAddress(ip) => names.push(format!("{ip:?}")),
                        _ => {}
                    }
                }
            }
            for cn in cert.subject().iter_common_name() {
                if let Ok(s) = cn.as_str()
                    && !names.iter().any(|n| n == s)
                {
                    names.push(s.to_owned());
                }
            }
            report.add(
                Level::Info,
                format!("certificate names: {}", names.join(", ")),
            );
            report.add(
                Level::Info,
                format!("certificate issuer: {}", cert.issuer()),
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let not_after = cert.validity().not_after.timestamp();
            let days = (not_after - now).div_euclid(86_400);
            let expiry = postel_store::time::rfc3339(not_after);
            if not_after < now {
                report.add(Level::Problem, format!("certificate expired on {expiry}"));
            } else if days < 14 {
                report.add(
                    Level::Risk,
                    format!("certificate expires in {days} days ({expiry})"),
                );
            } else {
                report.add(
                    Level::Ok,
                    format!("certificate valid until {expiry} ({days} days)"),
                );
            }
            if cert.subject() == cert.issuer() {
                report.add(Level::Risk, "the certificate is self-signed");
            }
        }
        Err(e) => report.add(Level::Problem, format!("certificate cannot be read: {e}")),
    }
    match &info.verified {
        Ok(()) => report.add(
            Level::Ok,
            format!("certificate chain verifies for {host} (Mozilla's roots)"),
        ),
        Err(why) => report.add(
            Level::Risk,
            format!("certificate does not verify for {host}: {why}. Senders that check (MTA-STS, DANE, most submission clients) will refuse it"),
        ),
    }
}

/// The MX hosts of `domain`, by preference.
fn lookup_mx(domain: &str) -> anyhow::Result<Vec<(u16, String)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let resolver = hickory_resolver::TokioResolver::builder_tokio()
            .context("cannot read the system's DNS configuration")?
            .build()
            .context("cannot start the DNS resolver")?;
        match resolver.mx_lookup(domain).await {
            Ok(mx) => {
                let mut v: Vec<(u16, String)> = mx
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::MX(m) => Some((
                            m.preference,
                            m.exchange.to_utf8().trim_end_matches('.').to_owned(),
                        )),
                        _ => None,
                    })
                    .collect();
                v.sort();
                Ok(v)
            }
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(anyhow::anyhow!("MX lookup for {domain} failed: {e}")),
        }
    })
}
