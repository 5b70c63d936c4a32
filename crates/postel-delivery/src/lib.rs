//! Postel's outbound side: mail that is not for a local domain is sent on
//! to the MX hosts of its domain (or a smarthost), retried on a schedule,
//! and, when it fails, returned to its sender in a delivery status
//! notification.
//!
//! The queue itself is the store's ([`postel_store::Store::queue_due`] and
//! the rest): rows are written with the message, in the same commit as its
//! `250`. This crate reads them, delivers, and records the outcomes.
//!
//! # Layout
//! - `settings`: what the config tells delivery;
//! - `schedule`: retry schedule, lifetime, delay warnings (sans-IO: `now`
//!   is passed in);
//! - `outcome`: what an attempt did for a recipient, with its status code;
//! - `mx`: MX resolution, null MX, implicit MX, Postel itself, private
//!   addresses;
//! - `mta_sts`: destinations' MTA-STS policies (RFC 8461): the record,
//!   the HTTPS fetch, the cache; parsing and matching sans-IO;
//! - `requiretls`: RFC 8689's REQUIRETLS and `TLS-Required: No`;
//! - `dane`: DANE (RFC 7672): TLSA records from DNSSEC-validated
//!   answers, and the certificate check they make;
//! - `policy_file`: MTA-STS policies kept across restarts;
//! - `report_post`: TLS reports POSTed over HTTPS;
//! - `report_file`: the day's TLS-report counts kept across restarts;
//! - `state_file`: how those files are written (whole, private, renamed);
//! - `down`: hosts that did not answer, remembered for a while;
//! - `tls_report`: TLS results per destination, and the daily reports
//!   (RFC 8460) to those that ask;
//! - `handoff`: messages just committed, passed to delivery in memory;
//! - `connection`: the tokio driver of the sans-IO client (TCP, TLS,
//!   rounds of commands and replies under timeouts);
//! - `session`: one outbound session: host choice, EHLO, STARTTLS policy,
//!   AUTH, transactions;
//! - `local`: where local recipients go (store, Maildir, LMTP);
//! - `maildir`: Maildir delivery (tmp, fsync, new);
//! - `lmtp`: LMTP sessions (RFC 2033), on `session`'s transactions;
//! - `dsn`: RFC 3464 notices (DKIM-signed, with `settings`' keys);
//! - `report`: outcomes into queue updates and notices;
//! - `metrics`: the queue, attempts and latency for `/metrics`;
//! - `worker`: the loop over the queue: claims, destinations, sessions
//!   (a folder: `route` is where mail for a destination goes, and under
//!   which TLS policy).

#![warn(missing_docs)]

pub mod connection;
pub mod dane;
pub mod down;
pub mod dsn;
pub mod handoff;
pub mod lmtp;
pub mod local;
pub mod maildir;
pub mod metrics;
pub mod mta_sts;
pub mod mx;
pub mod outcome;
mod policy_file;
mod report;
mod report_file;
mod report_post;
mod requiretls;
pub mod schedule;
pub mod session;
pub mod settings;
mod state_file;
pub mod tls_report;
pub mod worker;

pub use handoff::Handoff;
pub use metrics::DeliveryMetrics;
pub use settings::{Settings, Smarthost, Timeouts, TlsPolicy};
pub use worker::Worker;
