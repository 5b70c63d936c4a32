//! Postel's milter client: the Sendmail/Postfix mail filter protocol,
//! version 6, as Postfix's `smtpd_milters` speaks it, so that rspamd,
//! OpenDKIM, OpenDMARC, clamav-milter and spamass-milter plug into Postel
//! unchanged.
//!
//! # Layout
//! - `wire`: packets, the MTA's commands, the negotiation and the
//!   protocol's constants (sans-IO);
//! - `client`: one connection to one filter: events with their macros,
//!   verdicts, and the changes asked for at the end of a message;
//! - `message`: a message as header fields and body, and the filters'
//!   header and body changes applied to it, made safe.
//!
//! The order of filters, their default actions and the envelope changes
//! are the caller's (the server's backend).

#![warn(missing_docs)]

pub mod client;
pub mod message;
pub mod wire;

pub use client::{Address, Edit, Error, MessageMacros, Milter, Verdict};
pub use message::Parsed;

/// The most changes one filter may ask for at the end of one message.
pub const MAX_EDITS: usize = 1_000;

/// The largest replacement body a filter may send.
pub const MAX_BODY: usize = 64 << 20;
