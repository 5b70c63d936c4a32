//! Postel's SMTP protocol core, sans IO.
//!
//! Bytes in, replies and events out: no sockets, no clock, no files. The
//! server, the tests and the fuzzers all drive the same [`Session`], so what
//! is tested is what runs.
//!
//! # Layout
//! In reading order:
//! - [`command`]: a line to a verb and its arguments;
//! - [`address`]: mailboxes and paths (RFC 5321 4.1.2, RFC 6531);
//! - [`params`]: MAIL/RCPT parameters;
//! - [`data`]: DATA and BDAT content decoders;
//! - [`display`]: client-given text made safe to show (bidi controls escaped);
//! - [`mime`]: the MIME structure check (nesting depth, header sections);
//! - [`reply`]: every reply, one constructor per row of the reply contract;
//! - [`sasl`]: AUTH's PLAIN and LOGIN mechanisms;
//! - [`scram`]: SCRAM-SHA-256's messages (the keys are the driver's);
//! - [`session`]: the state machine that ties them together (a folder:
//!   one file per group of verbs);
//! - [`client`]: the client side, the same discipline (commands in, replies
//!   paired with them out), for `send`, `probe` and delivery;
//! - `sim` (feature `sim`, tests and fuzzing only): a scripted backend.

#![warn(missing_docs)]

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod display;
pub mod mime;
pub mod params;
pub mod reply;
pub mod sasl;
pub mod scram;
pub mod session;
#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use address::{ForwardPath, Mailbox, ReversePath};
pub use data::BareLinePolicy;
pub use params::{MailParams, RcptParams};
pub use reply::{EnhancedCode, Reply};
pub use session::{ConnInfo, Event, Limits, Session, Verdict};
