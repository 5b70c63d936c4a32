//! Postel's policy: the decisions that SMTP and the web side share, kept
//! in one place so that both sides apply them alike, and the server logic
//! that is neither protocol nor storage.
//!
//! # Layout
//! In reading order:
//! - [`lockout`]: failed logins counted per client address, with the slot
//!   of a failure taken before the check, so parallel guesses cannot race
//!   past the limit;
//! - [`passwords`]: Argon2id hashing, and the one bounded pool that runs
//!   every password check (SMTP AUTH and web logins alike), with a bounded
//!   queue in front of it;
//! - [`scram`]: SCRAM-SHA-256's stored keys (RFC 5803), made when a
//!   password is set, and the proof checked against them;
//! - [`auth`]: the two joined: a login attempt from an address, checked
//!   against the lockout, the pool and the users' hashes or keys;
//! - [`recipients`]: which recipients are accepted (domains, mailboxes);
//! - [`relay`]: with delivery on, which recipients are sent on, who may
//!   relay, and which sender addresses a user may use;
//! - [`trace`]: the `Received:` header put on every stored message;
//! - [`delegation`]: Postfix's policy delegation protocol, client side
//!   (postgrey, policyd-spf);
//! - [`rate`]: messages and recipients per window, per client, user and
//!   sender domain;
//! - [`dnsbl`]: DNS block and allow lists, scored as postscreen scores
//!   them.
//!
//! Time is passed in (`now`) wherever a decision depends on it, so that
//! tests need no clock.

#![warn(missing_docs)]

pub mod auth;
pub mod delegation;
pub mod dnsbl;
pub mod lockout;
pub mod passwords;
pub mod rate;
pub mod recipients;
pub mod relay;
pub mod scram;
pub mod trace;

pub use auth::{Authenticator, Checked, UserHashes};
pub use lockout::Lockout;
pub use passwords::{PasswordPool, hash_password};
pub use recipients::Policy;
pub use relay::{RelayPolicy, Route};
pub use trace::Trace;
