//! Postel's webhooks: each message kept in the store is posted as JSON to
//! the configured URLs, signed with HMAC-SHA256, from a durable outbox
//! (rows written in the message's own commit), and retried with backoff
//! until the receiver answers 2xx: delivery is at least once, with the
//! message id as the idempotency key.
//!
//! # Layout
//! - `settings`: the webhooks and the retry schedule;
//! - `payload`: the JSON posted, and its signature (sans-IO);
//! - `http`: one POST over HTTP or HTTPS, under a timeout;
//! - `worker`: the loop over the outbox: claims, posts, records.

#![warn(missing_docs)]

pub mod http;
pub mod payload;
pub mod settings;
pub mod worker;

pub use settings::{Hook, Settings};
pub use worker::Worker;
