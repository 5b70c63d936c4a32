//! Configuration in three layers: the TOML file ([`FileConfig`], every field
//! optional, unknown keys refused), command-line overrides, and the validated
//! [`Config`] the server runs on.
//!
//! Validation reports every problem at once, each with its key, so an
//! operator fixes a file in one pass; `serve` refuses to start on any.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use postel_proto::address::{is_domain, parse_mailbox};
use postel_proto::{BareLinePolicy, Limits};
use postel_server::{ListenerKind, ListenerSettings};

use crate::tls::TlsFiles;
mod effective;
mod file;
#[cfg(test)]
mod tests;

pub(crate) use file::*;

/// The zero-config listener: loopback only, an unprivileged port.
pub(crate) const DEFAULT_SMTP: &str = "127.0.0.1:2525";
/// The zero-config web inbox: loopback, Mailpit's and MailHog's port.
pub(crate) const DEFAULT_WEB: &str = "127.0.0.1:8025";
/// The zero-config retention: the newest 10,000 messages.
const DEFAULT_ZERO_CONFIG_MAX_MESSAGES: u64 = 10_000;
/// The shortest web token accepted.
const MIN_TOKEN_LEN: usize = 16;

/// The zero-config data folder, relative to the working directory.
pub(crate) const DEFAULT_DATA_DIR: &str = "postel-data";

/// The largest `limits.max_message_size` accepted: a message over 256 KiB
/// is a file of its own, but the web inbox and `messages show` read a
/// message whole, and SQLite's blob limit (1,000,000,000 octets) binds
/// the smaller ones.
const MAX_MESSAGE_SIZE_CEILING: u64 = 512 * 1024 * 1024;

/// The web side, once validated.
#[derive(Debug, Clone)]
pub(crate) struct WebSettings {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The bearer token, if any.
    pub(crate) token: Option<String>,
    /// What a client may hold of it.
    pub(crate) limits: postel_web::WebLimits,
}

impl WebSettings {
    /// True if and only if requests need a login: off loopback, or
    /// whenever a token is set (behind a proxy, the listener is loopback
    /// but the clients are not).
    pub(crate) fn needs_login(&self) -> bool {
        !self.addr.ip().is_loopback() || self.token.is_some()
    }
}

/// Where TLS comes from, once validated.
#[derive(Debug, Clone)]
pub(crate) enum TlsMode {
    /// No TLS: no STARTTLS, no submission listeners.
    Off,
    /// Certificate and key files.
    Files(TlsFiles),
    /// A self-signed certificate in `<data_dir>/tls`.
    SelfSigned,
}

/// Command-line values that override the file: the flags of `postel serve`.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct Overrides {
    /// The name in the greeting and trace headers.
    #[arg(long)]
    pub(crate) hostname: Option<String>,
    /// Where messages are stored.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Listen for SMTP on IP:PORT (repeatable; replaces the config's list).
    #[arg(long = "smtp", value_name = "ADDR")]
    pub(crate) smtp: Vec<String>,
    /// Listen for submission (STARTTLS, then AUTH) on IP:PORT (repeatable).
    #[arg(long = "submission", value_name = "ADDR")]
    pub(crate) submission: Vec<String>,
    /// Listen for submission over implicit TLS on IP:PORT (repeatable).
    #[arg(long = "smtps", value_name = "ADDR")]
    pub(crate) smtps: Vec<String>,
    /// No config file: the zero-config mode (a self-signed certificate).
    #[arg(skip)]
    pub(crate) zero_config: bool,
    /// Accept mail for this domain only (repeatable); others get 554 5.7.1.
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub(crate) domains: Vec<String>,
    /// Serve the web inbox, API and metrics on IP:PORT (zero-config: 127.0.0.1:8025).
    #[arg(long, value_name = "ADDR")]
    pub(crate) web: Option<String>,
    /// No web inbox, not even in the zero-config mode.
    #[arg(long, conflicts_with = "web")]
    pub(crate) no_web: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Per-session limits and identity.
    pub(crate) limits: Limits,
    /// Where messages are stored.
    pub(crate) data_dir: PathBuf,
    /// Every listener with its settings.
    pub(crate) listeners: Vec<(SocketAddr, ListenerSettings)>,
    /// Where TLS comes from.
    pub(crate) tls: TlsMode,
    /// Sessions open at once.
    pub(crate) max_connections: usize,
    /// Sessions open at once per client IP.
    pub(crate) max_connections_per_ip: usize,
    /// Loopback is exempt from the per-IP limit.
    pub(crate) exempt_loopback: bool,
    /// How long the greeting waits for a client that talks first.
    pub(crate) greet_wait: Duration,
    /// Accepted domains, lowercase; empty: every domain.
    pub(crate) domains: BTreeSet<String>,
    /// Known mailboxes per domain, lowercase.
    pub(crate) mailboxes: BTreeMap<String, BTreeSet<String>>,
    /// The web inbox, if on.
    pub(crate) web: Option<WebSettings>,
    /// Keep at most this many messages.
    pub(crate) max_messages: Option<u64>,
    /// Keep messages at most this long.
    pub(crate) max_age: Option<Duration>,
}

/// The host's name, if it is a valid domain; else `localhost`.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|h| is_domain(h.as_bytes(), false))
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Config {
    /// Validates a file config with its overrides.
    ///
    /// # Errors
    /// Every problem found, one a line, each with its key.
    pub(crate) fn build(file: FileConfig, over: Overrides) -> anyhow::Result<Config> {
        let mut problems = Vec::new();
        let defaults = Limits::default();

        let hostname = over
            .hostname
            .or(file.hostname)
            .unwrap_or_else(system_hostname);
        if !is_domain(hostname.as_bytes(), false) {
            problems.push(format!("hostname: {hostname:?} is not a valid domain name"));
        }

        let tls = match (&file.tls.cert, &file.tls.key, file.tls.self_signed) {
            (Some(cert), Some(key), _) => TlsMode::Files(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), None, _) | (None, Some(_), _) => {
                problems.push("tls: set both cert and key (PEM files), or neither".to_owned());
                TlsMode::Off
            }
            (None, None, Some(true)) => TlsMode::SelfSigned,
            (None, None, Some(false)) => TlsMode::Off,
            (None, None, None) if over.zero_config => TlsMode::SelfSigned,
            (None, None, None) => TlsMode::Off,
        };
        let mut listeners = Vec::new();
        let sections = [
            (ListenerKind::Smtp, &file.smtp, over.smtp),
            (ListenerKind::Submission, &file.submission, over.submission),
            (ListenerKind::Smtps, &file.smtps, over.smtps),
        ];
        for (kind, section, flags) in sections {
            let name = kind.name();
            let listen = if !flags.is_empty() {
                flags
            } else if let Some(l) = section.listen.clone() {
                l
            } else if kind == ListenerKind::Smtp {
                vec![DEFAULT_SMTP.to_owned()]
            } else {
                Vec::new()
            };
            let mut settings = ListenerSettings::for_kind(kind);
            if let Some(auth) = section.auth {
                if kind != ListenerKind::Smtp && !auth {
                    problems.push(format!("{name}.auth: a {name} listener always requires AUTH (it would be an open relay)"));
                }
                settings.auth = auth || settings.auth;
            }
            settings.auth_requires_tls = section.require_tls.unwrap_or(true);
            let needs_tls =
                kind == ListenerKind::Smtps || (settings.auth && settings.auth_requires_tls);
            if !listen.is_empty() && needs_tls && matches!(tls, TlsMode::Off) {
                problems.push(format!(
                    "{name}: this listener needs TLS: set [tls] cert and key (or self_signed = true){}",
                    if kind == ListenerKind::Smtps { "" } else { ", or require_tls = false" }
                ));
            }
            for (i, a) in listen.iter().enumerate() {
                match a.parse::<SocketAddr>() {
                    Ok(addr) => listeners.push((addr, settings)),
                    Err(_) => problems.push(format!("{name}.listen[{i}]: {a:?} is not IP:PORT (for example 127.0.0.1:2525 or [::]:25)")),
                }
            }
        }

        let l = &file.limits;
        let max_message_size = l.max_message_size.unwrap_or(defaults.max_message_size);
        if max_message_size == 0 || max_message_size > MAX_MESSAGE_SIZE_CEILING {
            problems.push(format!(
                "limits.max_message_size: must be from 1 to {MAX_MESSAGE_SIZE_CEILING} (512 MiB; the store keeps a message as one SQLite blob), got {max_message_size}"
            ));
        }
        let max_recipients = l.max_recipients.unwrap_or(defaults.max_recipients);
        if max_recipients < 100 {
            problems.push(format!(
                "limits.max_recipients: must be at least 100 (RFC 5321 4.5.3.1.8), got {max_recipients}"
            ));
        }
        let max_errors = l.max_errors.unwrap_or(defaults.max_errors);
        if max_errors == 0 {
            problems.push("limits.max_errors: must be at least 1".to_owned());
        }
        let max_connections = l.max_connections.unwrap_or(10_000);
        let max_connections_per_ip = l.max_connections_per_ip.unwrap_or(100);
        for (key, v) in [
            ("limits.max_connections", max_connections),
            ("limits.max_connections_per_ip", max_connections_per_ip),
        ] {
            if v == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        let secs = |key: &str, v: Option<u64>, default: Duration, problems: &mut Vec<String>| {
            let d = v.map_or(default, Duration::from_secs);
            if d.is_zero() {
                problems.push(format!("{key}: must be at least 1 second"));
            }
            d
        };
        let command_timeout = secs(
            "limits.command_timeout",
            l.command_timeout,
            defaults.command_timeout,
            &mut problems,
        );
        let data_timeout = secs(
            "limits.data_timeout",
            l.data_timeout,
            defaults.data_timeout,
            &mut problems,
        );

        let min_data_rate = l.min_data_rate.unwrap_or(defaults.min_data_rate);
        if min_data_rate == 0 {
            problems.push("limits.min_data_rate: must be at least 1 octet per second".to_owned());
        }
        let mut mime = defaults.mime;
        mime.max_depth = l.max_mime_depth.unwrap_or(mime.max_depth);
        mime.max_header_lines = l.max_header_lines.unwrap_or(mime.max_header_lines);
        mime.max_header_bytes = l.max_header_bytes.unwrap_or(mime.max_header_bytes);
        if mime.max_depth == 0 || mime.max_header_lines == 0 || mime.max_header_bytes == 0 {
            problems.push("limits.max_mime_depth, max_header_lines, max_header_bytes: each must be at least 1".to_owned());
        }
        let soft_refused = l
            .soft_refused_recipients
            .unwrap_or(defaults.soft_refused_recipients);
        let max_refused = l
            .max_refused_recipients
            .unwrap_or(defaults.max_refused_recipients);
        if max_refused == 0 || soft_refused > max_refused {
            problems.push(format!(
                "limits.max_refused_recipients: must be at least 1 and at least soft_refused_recipients ({soft_refused}), got {max_refused}"
            ));
        }
        let refused_delay = l
            .refused_recipient_delay_ms
            .map_or(defaults.refused_recipient_delay, Duration::from_millis);
        if refused_delay > Duration::from_secs(60) {
            problems.push("limits.refused_recipient_delay_ms: at most 60000".to_owned());
        }
        let greet_wait_ms = l.greet_wait_ms.unwrap_or(0);
        if greet_wait_ms > 30_000 {
            problems.push(format!(
                "limits.greet_wait_ms: at most 30000 (30 s; Postfix's postscreen waits 6 s), got {greet_wait_ms}"
            ));
        }

        let p = &file.policy;
        let bare_line_endings = match p.bare_line_endings.as_deref() {
            None | Some("reject") => BareLinePolicy::Reject,
            Some("normalize") => BareLinePolicy::Normalize,
            Some(other) => {
                problems.push(format!(
                    "policy.bare_line_endings: {other:?} is not \"reject\" or \"normalize\""
                ));
                BareLinePolicy::Reject
            }
        };
        let domain_list = if over.domains.is_empty() {
            p.domains.clone().unwrap_or_default()
        } else {
            over.domains
        };
        let mut domains = BTreeSet::new();
        for (i, d) in domain_list.iter().enumerate() {
            if is_domain(d.as_bytes(), true) {
                domains.insert(d.to_lowercase());
            } else {
                problems.push(format!(
                    "policy.domains[{i}]: {d:?} is not a valid domain name"
                ));
            }
        }
        let mut mailboxes = BTreeMap::new();
        for (domain, locals) in p.mailboxes.clone().unwrap_or_default() {
            let key = domain.to_lowercase();
            if !domains.contains(&key) {
                problems.push(format!(
                    "policy.mailboxes.{domain}: the domain is not in policy.domains (add it there, or remove its mailboxes)"
                ));
            }
            let mut set = BTreeSet::new();
            for (i, local) in locals.iter().enumerate() {
                if parse_mailbox(format!("{local}@{key}").as_bytes(), true).is_err() {
                    problems.push(format!(
                        "policy.mailboxes.{domain}[{i}]: {local:?} is not a valid local part"
                    ));
                }
                set.insert(local.to_lowercase());
            }
            mailboxes.insert(key, set);
        }

        let web_listen = if over.no_web {
            None
        } else if let Some(w) = over.web {
            Some(w)
        } else if let Some(w) = file.web.listen.clone() {
            Some(w)
        } else if over.zero_config {
            Some(DEFAULT_WEB.to_owned())
        } else {
            None
        };
        let token = file.web.token.clone();
        if let Some(t) = &token
            && (t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            problems.push(format!(
                "web.token: use at least {MIN_TOKEN_LEN} printable ASCII characters, no spaces (for example the output of `openssl rand -hex 24`)"
            ));
        }
        let web_defaults = postel_web::WebLimits::default();
        let web_limits = postel_web::WebLimits {
            max_connections: file
                .web
                .max_connections
                .unwrap_or(web_defaults.max_connections),
            header_timeout: file
                .web
                .header_timeout
                .map_or(web_defaults.header_timeout, Duration::from_secs),
            max_streams: file.web.max_streams.unwrap_or(web_defaults.max_streams),
            max_connections_per_ip: file
                .web
                .max_connections_per_ip
                .unwrap_or(web_defaults.max_connections_per_ip),
            ..web_defaults
        };
        if web_limits.max_connections == 0
            || web_limits.max_connections_per_ip == 0
            || web_limits.header_timeout.is_zero()
        {
            problems.push(
                "web.max_connections, web.max_connections_per_ip and web.header_timeout: each must be at least 1".to_owned(),
            );
        }
        let web = match web_listen.map(|w| (w.parse::<SocketAddr>(), w)) {
            None => None,
            Some((Ok(addr), _)) => Some(WebSettings {
                addr,
                token,
                limits: web_limits,
            }),
            Some((Err(_), w)) => {
                problems.push(format!(
                    "web.listen: {w:?} is not IP:PORT (for example 127.0.0.1:8025)"
                ));
                None
            }
        };
        let r = &file.retention;
        if r.max_messages == Some(0) {
            problems.push(
                "retention.max_messages: must be at least 1 (leave it out to keep every message)"
                    .to_owned(),
            );
        }
        if r.max_age_days == Some(0) {
            problems.push("retention.max_age_days: must be at least 1 (leave it out to keep messages forever)".to_owned());
        }
        let max_messages = r.max_messages.or(if over.zero_config {
            Some(DEFAULT_ZERO_CONFIG_MAX_MESSAGES)
        } else {
            None
        });
        let max_age = r
            .max_age_days
            .map(|d| Duration::from_secs(d.saturating_mul(86_400)));

        if !problems.is_empty() {
            bail!("invalid configuration:\n  {}", problems.join("\n  "));
        }
        let data_dir = over
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        Ok(Config {
            limits: Limits {
                hostname,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                max_message_size,
                max_recipients,
                max_errors,
                max_auth_failures: defaults.max_auth_failures,
                bare_line_endings,
                command_timeout,
                data_timeout,
                min_data_rate,
                mime,
                soft_refused_recipients: soft_refused,
                max_refused_recipients: max_refused,
                refused_recipient_delay: refused_delay,
            },
            data_dir,
            listeners,
            tls,
            max_connections,
            max_connections_per_ip,
            exempt_loopback: l.exempt_loopback.unwrap_or(true),
            greet_wait: Duration::from_millis(greet_wait_ms),
            domains,
            mailboxes,
            web,
            max_messages,
            max_age,
        })
    }
}
