//! Configuration in three layers: the TOML file ([`FileConfig`], every field
//! optional, unknown keys refused), command-line overrides, and the validated
//! [`Config`] the server runs on.
//!
//! Validation reports every problem at once, each with its key, so an
//! operator fixes a file in one pass; `serve` refuses to start on any.
//!
//! # Layout
//! - this file: [`Config`], the overrides, and `build`, which runs one
//!   validator per section and puts the results together;
//! - `file`: the TOML sections as written;
//! - `listeners`, `limits`, `policy`, `web`, `delivery`, `integrations`,
//!   `screening`, `authentication` (`[verify]`, `[[dkim]]`): the validators;
//! - `store`: `[store]`, SQLite or PostgreSQL;
//! - `effective`: the config written back (`postel config check`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use postel_proto::Limits;
use postel_proto::address::is_domain;
use postel_server::ListenerSettings;

use crate::tls::TlsFiles;
pub(crate) use authentication::{VerifySettings, signer};
pub(crate) use forward::sealer;
pub(crate) use store::{PgSettings, masked as masked_url};
mod authentication;
mod delivery;
mod effective;
mod file;
mod forward;
mod integrations;
mod limits;
mod listeners;
mod policy;
mod screening;
mod store;
#[cfg(test)]
mod tests;
mod web;

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
    /// Release targets: name → `HOST:PORT`.
    pub(crate) release_targets: BTreeMap<String, String>,
    /// HTTPS, with `[tls]`'s certificate.
    pub(crate) tls: bool,
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
    /// Delivery, when on.
    pub(crate) delivery: Option<postel_delivery::Settings>,
    /// Free disk (octets) below which MAIL gets 452 4.3.1; 0: no check.
    pub(crate) min_free_disk: u64,
    /// Policy servers, in order, each with its stage and timeout.
    pub(crate) policy_services: Vec<postel_policy::delegation::Service>,
    /// Milters, in order.
    pub(crate) milters: Vec<crate::backend::MilterConfig>,
    /// Webhooks.
    pub(crate) webhooks: Vec<postel_webhook::Hook>,
    /// Rate limits.
    pub(crate) rate_limits: postel_policy::rate::RateLimits,
    /// DNS block and allow lists, and the score that refuses a client.
    pub(crate) dnsbl: Vec<postel_policy::dnsbl::List>,
    pub(crate) dnsbl_threshold: i32,
    /// The nameservers of `[dns]` (empty: the system's).
    pub(crate) nameservers: Vec<SocketAddr>,
    /// Checking mail from outside.
    pub(crate) verify: VerifySettings,
    /// DKIM signing keys (checked: each loaded once).
    pub(crate) dkim: Vec<authentication::DkimEntry>,
    /// Local addresses (lowercase) whose mail is sent on to others.
    pub(crate) forward: BTreeMap<String, Vec<String>>,
    /// The key that ARC-seals forwarded mail.
    pub(crate) arc: Option<authentication::DkimEntry>,
    /// PostgreSQL, when `[store] url` names it; None: SQLite.
    pub(crate) store: Option<store::PgSettings>,
}

/// A network (`10.0.0.0/8`), or one address as a network of one.
fn network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

/// The host's name, if it is a valid domain; else `localhost`.
pub(crate) fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|h| is_domain(h.as_bytes(), false))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The `[store]` of a file: PostgreSQL settings, or None for SQLite.
pub(crate) fn store_settings(
    file: &FileConfig,
    hostname: &str,
    problems: &mut Vec<String>,
) -> Option<PgSettings> {
    store::validate(&file.store, hostname, problems)
}

impl Config {
    /// Validates a file config with its overrides.
    ///
    /// # Errors
    /// Every problem found, one a line, each with its key.
    pub(crate) fn build(file: FileConfig, over: Overrides) -> anyhow::Result<Config> {
        let mut problems = Vec::new();

        let hostname = over
            .hostname
            .or(file.hostname.clone())
            .unwrap_or_else(system_hostname);
        if !is_domain(hostname.as_bytes(), false) {
            problems.push(format!("hostname: {hostname:?} is not a valid domain name"));
        }

        let tls = listeners::tls(&file.tls, over.zero_config, &mut problems);
        let listeners = listeners::listeners(
            &file,
            [over.smtp, over.submission, over.smtps],
            &tls,
            &mut problems,
        );

        let limits::Values {
            session,
            max_connections,
            max_connections_per_ip,
            greet_wait,
        } = limits::validate(&file.limits, &mut problems);

        let (bare_line_endings, domains, mailboxes) =
            policy::validate(&file.policy, over.domains, &mut problems);
        let web = web::validate(
            &file.web,
            over.web,
            over.no_web,
            over.zero_config,
            &mut problems,
        );
        if web.as_ref().is_some_and(|w| w.tls) && matches!(tls, TlsMode::Off) {
            problems.push(
                "web.tls: HTTPS uses the [tls] certificate: set [tls] cert and key".to_owned(),
            );
        }
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

        let delivery = delivery::validate(
            &file.delivery,
            &file.dns,
            &delivery::Context {
                hostname: &hostname,
                domains: &domains,
                listeners: listeners.iter().map(|(a, _)| *a).collect(),
                ca_file: file.tls.ca_file.as_ref(),
            },
            &mut problems,
        );
        let min_free_disk = file
            .limits
            .min_free_disk_mb
            .unwrap_or(100)
            .saturating_mul(1 << 20);

        let mut delivery = delivery;
        let routes = integrations::local_routes(
            &file.local_delivery,
            &domains,
            delivery.is_some(),
            &mut problems,
        );
        if let Some(d) = delivery.as_mut() {
            d.local_routes = routes;
        }
        if file.policy.policy_services.is_some() || file.policy.policy_timeout.is_some() {
            problems.push(
                "policy.policy_services: replaced by [[policy_service]] tables, each with address = \"HOST:PORT\", stage = \"rcpt\" and timeout".to_owned(),
            );
        }
        let policy_services = integrations::policy_services(&file.policy_service, &mut problems);
        let milters = integrations::milters(&file.milter, &mut problems);
        let webhooks = integrations::webhooks(&file.webhook, &mut problems);
        let rate_limits = screening::rate_limits(file.limits.rate.as_ref(), &mut problems);
        let dnsbl = screening::dnsbl(&file.dnsbl, &mut problems);
        let dnsbl_threshold = file.policy.dnsbl_threshold.unwrap_or(1);
        if dnsbl_threshold < 1 {
            problems.push("policy.dnsbl_threshold: must be at least 1 (a lower one would refuse every client)".to_owned());
        }
        let verify = authentication::verify(&file.verify, &hostname, &mut problems);
        let dkim = authentication::dkim(&file.dkim, &mut problems);
        let forward = forward::forward(
            file.delivery.forward.as_ref(),
            &domains,
            delivery.is_some(),
            &mut problems,
        );
        let arc = forward::arc(file.arc.as_ref(), &mut problems);
        let store = store::validate(&file.store, &hostname, &mut problems);
        let nameservers: Vec<SocketAddr> = file
            .dns
            .nameservers
            .iter()
            .flatten()
            .filter_map(|n| n.parse().ok())
            .collect();

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
                bare_line_endings,
                ..session
            },
            data_dir,
            listeners,
            tls,
            max_connections,
            max_connections_per_ip,
            exempt_loopback: file.limits.exempt_loopback.unwrap_or(true),
            greet_wait,
            domains,
            mailboxes,
            web,
            max_messages,
            max_age,
            delivery,
            min_free_disk,
            policy_services,
            milters,
            webhooks,
            rate_limits,
            dnsbl,
            dnsbl_threshold,
            nameservers,
            verify,
            dkim,
            forward,
            arc,
            store,
        })
    }
}
