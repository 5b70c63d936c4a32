//! What a session works with: its limits and identity ([`Limits`], whose
//! defaults are the RFC's values where it gives one, and Postfix's where it
//! leaves the choice), and what it knows of its connection ([`ConnInfo`]).

use std::time::Duration;

use crate::data::BareLinePolicy;
use crate::mime::MimeLimits;

/// The limits and identity a session works with. Defaults are the RFC's
/// values where it gives one, and Postfix's where it leaves the choice.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The name in the greeting and replies.
    pub hostname: String,
    /// The software version in the greeting.
    pub version: String,
    /// The most octets a message may have (advertised as `SIZE`). Default
    /// 36 MiB: a 25 MiB attachment after base64, as the large providers
    /// accept (Microsoft 365's default receive limit is 36 MB).
    pub max_message_size: u64,
    /// Recipients per transaction. RFC 5321 4.5.3.1.8: at least 100.
    pub max_recipients: usize,
    /// Bad commands before `421 Too many errors`. Default 10.
    pub max_errors: u32,
    /// Failed AUTH attempts before `421 Too many authentication failures`.
    /// Default 3, as Postfix's smtpd_hard_error_limit-style caps go low
    /// for credentials.
    pub max_auth_failures: u32,
    /// What to do with a bare CR or LF in content.
    pub bare_line_endings: BareLinePolicy,
    /// Waiting for a command. RFC 5321 4.5.3.2.7: 5 minutes.
    pub command_timeout: Duration,
    /// Waiting for more content inside DATA or BDAT. RFC 5321 4.5.3.2.5:
    /// 3 minutes per data block.
    pub data_timeout: Duration,
    /// Content must arrive at least this fast, in octets per second, once
    /// the first `data_timeout` is used up: each octet read adds 1/rate
    /// seconds to the deadline of the content (Postfix's
    /// `smtpd_min_data_rate`, 500). A 36 MiB message on a slow link still
    /// gets through; a byte every few seconds does not hold a session.
    pub min_data_rate: u64,
    /// How far a message's MIME structure may go: nesting depth and the
    /// size of each header section.
    pub mime: MimeLimits,
    /// Refused recipients in a session before each further refusal is
    /// delayed by `refused_recipient_delay` (Postfix's
    /// `smtpd_soft_error_limit`, 10). Slows mailbox guessing.
    pub soft_refused_recipients: u32,
    /// Refused recipients in a session before it is closed with `421`
    /// (Postfix's `smtpd_hard_error_limit`, 20).
    pub max_refused_recipients: u32,
    /// The delay before each refusal past the soft limit (Postfix's
    /// `smtpd_error_sleep_time`, 1 s).
    pub refused_recipient_delay: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            hostname: "localhost".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_message_size: 36 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_auth_failures: 3,
            bare_line_endings: BareLinePolicy::Reject,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            min_data_rate: 500,
            mime: MimeLimits::default(),
            soft_refused_recipients: 10,
            max_refused_recipients: 20,
            refused_recipient_delay: Duration::from_secs(1),
        }
    }
}

/// What the session knows of its connection.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// May see `HELP STATUS` (loopback clients; later, authenticated ones).
    pub trusted: bool,
    /// A certificate is configured, so STARTTLS can be offered.
    pub starttls_available: bool,
    /// The connection is already encrypted.
    pub tls_active: bool,
    /// AUTH is offered on this listener.
    pub auth_offered: bool,
    /// AUTH is offered (and accepted) only once TLS is active.
    pub auth_requires_tls: bool,
    /// MAIL needs a successful AUTH first (submission listeners).
    pub auth_required: bool,
}
