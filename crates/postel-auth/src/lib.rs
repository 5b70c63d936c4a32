//! Postel's mail authentication, over the `mail-auth` crate (pinned at
//! 0.13.3: later releases need a newer compiler).
//!
//! # Layout
//! - `cache`: parsed TXT records (keys, SPF and DMARC records) for their
//!   TTL, bounded;
//! - `verify`: inbound checks, SPF (HELO and MAIL FROM), DKIM, ARC and
//!   DMARC, under one deadline per step, written as an
//!   `Authentication-Results:` field;
//! - `strip`: the `Authentication-Results:` fields that claim this
//!   server's authserv-id, removed from mail that comes in;
//! - `sign`: outbound DKIM signatures, every key of the author's domain
//!   (RSA and Ed25519, two selectors during a rotation), over-signing the
//!   fields that matter;
//! - `seal`: ARC sets (RFC 8617) on mail Postel forwards, made with the
//!   checks' own results;
//! - `keys`: new key pairs and the DNS records to publish.
//!
//! Which mail is checked and which is signed, and what a result does to
//! it, is the caller's (the server's backend).

#![warn(missing_docs)]

pub mod cache;
pub mod keys;
pub mod seal;
pub mod sign;
pub mod strip;
pub mod verify;

pub use seal::Sealer;
pub use sign::{Key, KeyError, Signer};
pub use strip::{may_hold_forged, strip_forged};
pub use verify::{Outcome, Policy, Spf, Verifier, domain_chars};
