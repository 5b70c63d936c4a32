//! The config file as written: every section and key, all optional,
//! unknown keys refused (`deny_unknown_fields`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The config file as written. Every field is optional.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// The name in the greeting, replies and trace headers.
    pub(crate) hostname: Option<String>,
    /// Where messages are stored.
    pub(crate) data_dir: Option<PathBuf>,
    /// Listeners for mail from other servers (port 25 in production).
    #[serde(default)]
    pub(crate) smtp: ListenSection,
    /// Submission listeners (port 587): STARTTLS, then AUTH.
    #[serde(default)]
    pub(crate) submission: ListenSection,
    /// Submission over implicit TLS (port 465).
    #[serde(default)]
    pub(crate) smtps: ListenSection,
    /// The certificate for STARTTLS and smtps.
    #[serde(default)]
    pub(crate) tls: TlsSection,
    /// Protocol and resource limits.
    #[serde(default)]
    pub(crate) limits: LimitsSection,
    /// What mail is accepted.
    #[serde(default)]
    pub(crate) policy: PolicySection,
    /// The web inbox, API and metrics.
    #[serde(default)]
    pub(crate) web: WebSection,
    /// How long messages are kept.
    #[serde(default)]
    pub(crate) retention: RetentionSection,
    /// Where messages, users and the queue are kept (PostgreSQL).
    #[serde(default)]
    pub(crate) store: super::store::StoreSection,
    /// Sending mail on to other domains.
    #[serde(default)]
    pub(crate) delivery: super::delivery::DeliverySection,
    /// The DNS servers delivery asks.
    #[serde(default)]
    pub(crate) dns: super::delivery::DnsSection,
    /// Where local recipients go: the store, a Maildir, LMTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) local_delivery: Vec<super::integrations::LocalDeliveryEntry>,
    /// Policy servers (Postfix's policy delegation), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) policy_service: Vec<super::integrations::PolicyServiceEntry>,
    /// Webhooks: each kept message is posted to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) webhook: Vec<super::integrations::WebhookEntry>,
    /// Milters (Postfix's `smtpd_milters`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) milter: Vec<super::integrations::MilterEntry>,
    /// DNS block and allow lists, asked at connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) dnsbl: Vec<super::screening::DnsblEntry>,
    /// Checking mail that comes in: SPF, DKIM, DMARC, ARC.
    #[serde(default)]
    pub(crate) verify: super::authentication::VerifySection,
    /// DKIM signing keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) dkim: Vec<super::authentication::DkimEntry>,
    /// The key that ARC-seals forwarded mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) arc: Option<super::authentication::DkimEntry>,
}

/// `[web]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebSection {
    /// `IP:PORT` for HTTP; absent: no web side (with a config file).
    pub(crate) listen: Option<String>,
    /// A secret for `Authorization: Bearer`, or as the Basic password.
    pub(crate) token: Option<String>,
    /// HTTP connections open at once. Default 256.
    pub(crate) max_connections: Option<usize>,
    /// HTTP connections open at once from one address. Default 32.
    pub(crate) max_connections_per_ip: Option<usize>,
    /// Seconds a request header may take to arrive. Default 10.
    pub(crate) header_timeout: Option<u64>,
    /// Live event streams open at once. Default 64.
    pub(crate) max_streams: Option<usize>,
    /// Serve HTTPS with the `[tls]` certificate (reloaded with it).
    /// Default false.
    pub(crate) tls: Option<bool>,
    /// Where a logged-in user may release a stored message to: a name and
    /// `HOST:PORT` each (Mailpit's "release"). Only these, never others.
    pub(crate) release_targets: Option<BTreeMap<String, String>>,
}

/// `[retention]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionSection {
    /// Keep at most this many messages (the newest).
    pub(crate) max_messages: Option<u64>,
    /// Delete messages older than this many days.
    pub(crate) max_age_days: Option<u64>,
}

/// `[smtp]`, `[submission]`, `[smtps]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenSection {
    /// Addresses to listen on, `IP:PORT`.
    pub(crate) listen: Option<Vec<String>>,
    /// Offer AUTH (smtp: default false; always true on submission and smtps).
    pub(crate) auth: Option<bool>,
    /// Offer AUTH only once TLS is active. Default true.
    pub(crate) require_tls: Option<bool>,
}

/// `[tls]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// PEM certificate chain.
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key.
    pub(crate) key: Option<PathBuf>,
    /// Make (once) and use a self-signed certificate in the data folder.
    pub(crate) self_signed: Option<bool>,
    /// Extra roots (PEM) for verifying servers that Postel connects to.
    pub(crate) ca_file: Option<PathBuf>,
}

/// `[limits]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    /// Octets per message (advertised as SIZE).
    pub(crate) max_message_size: Option<u64>,
    /// Recipients per message; at least 100 (RFC 5321 4.5.3.1.8).
    pub(crate) max_recipients: Option<usize>,
    /// Bad commands before the session is closed.
    pub(crate) max_errors: Option<u32>,
    /// Sessions open at once.
    pub(crate) max_connections: Option<usize>,
    /// Sessions open at once from one IP address.
    pub(crate) max_connections_per_ip: Option<usize>,
    /// Loopback clients are exempt from `max_connections_per_ip`.
    pub(crate) exempt_loopback: Option<bool>,
    /// Seconds to wait for a command (RFC 5321 4.5.3.2.7: 300).
    pub(crate) command_timeout: Option<u64>,
    /// Seconds to wait for more message content (RFC 5321 4.5.3.2.5: 180).
    pub(crate) data_timeout: Option<u64>,
    /// Milliseconds to hold the greeting back, watching for clients that
    /// talk first. Default 0.
    pub(crate) greet_wait_ms: Option<u64>,
    /// Octets per second content must keep up once the data timeout is
    /// used up. Default 500 (Postfix's smtpd_min_data_rate).
    pub(crate) min_data_rate: Option<u64>,
    /// MIME nesting depth. Default 100 (Postfix's mime_nesting_limit).
    pub(crate) max_mime_depth: Option<usize>,
    /// Lines in one header section. Default 10,000.
    pub(crate) max_header_lines: Option<u32>,
    /// Octets in one header section. Default 1 MiB.
    pub(crate) max_header_bytes: Option<u64>,
    /// Refused recipients in a session before each further refusal is
    /// delayed. Default 10.
    pub(crate) soft_refused_recipients: Option<u32>,
    /// Refused recipients in a session before it is closed. Default 20.
    pub(crate) max_refused_recipients: Option<u32>,
    /// Milliseconds each refusal past the soft limit waits. Default 1000.
    pub(crate) refused_recipient_delay_ms: Option<u64>,
    /// Megabytes of free disk below which new mail gets 452 4.3.1 at
    /// MAIL. Default 100; 0 turns the check off.
    pub(crate) min_free_disk_mb: Option<u64>,
    /// Messages and recipients per window, per client, user and sender
    /// domain (`[limits.rate.client]`...).
    pub(crate) rate: Option<super::screening::RateSection>,
}

/// `[policy]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicySection {
    /// Domains mail is accepted for; empty or absent: every domain.
    pub(crate) domains: Option<Vec<String>>,
    /// Known mailboxes (local parts) per domain; a listed domain refuses
    /// others with 550 5.1.1.
    pub(crate) mailboxes: Option<BTreeMap<String, Vec<String>>>,
    /// `reject` (default) or `normalize` bare CR/LF in content.
    pub(crate) bare_line_endings: Option<String>,
    /// The `[[dnsbl]]` score at which a client is refused at connect.
    /// Default 1.
    pub(crate) dnsbl_threshold: Option<i32>,
    /// Replaced by `[[policy_service]]` tables: refused with a message
    /// that says so.
    #[serde(skip_serializing)]
    pub(crate) policy_services: Option<Vec<String>>,
    /// Replaced by `[[policy_service]]`'s `timeout`.
    #[serde(skip_serializing)]
    pub(crate) policy_timeout: Option<u64>,
}

impl FileConfig {
    /// Reads and parses a config file.
    ///
    /// # Errors
    /// When the file cannot be read or is not valid TOML for this schema
    /// (the message names the line and key).
    pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }
}
