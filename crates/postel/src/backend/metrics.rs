//! What the backend counts for `/metrics`: messages and octets stored,
//! store errors, commit time, failed logins.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What the backend counts for `/metrics`.
#[derive(Debug)]
pub(crate) struct BackendMetrics {
    pub(crate) messages: Counter,
    pub(crate) bytes: Counter,
    pub(crate) store_errors: Counter,
    pub(crate) commit_seconds: Histogram,
    pub(crate) auth_failures: Counter,
}

impl BackendMetrics {
    /// Creates the metrics and registers them under `postel_`.
    pub(crate) fn register(registry: &mut Registry) -> BackendMetrics {
        let m = BackendMetrics {
            // 0.25 ms to 4 s: an fsync on a fast disk to a stalled one.
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
            messages: Counter::default(),
            bytes: Counter::default(),
            store_errors: Counter::default(),
            auth_failures: Counter::default(),
        };
        registry.register(
            "postel_messages_stored",
            "Messages stored and acknowledged with 250",
            m.messages.clone(),
        );
        registry.register(
            "postel_message_bytes_stored",
            "Octets of the messages stored, trace header included",
            m.bytes.clone(),
        );
        registry.register(
            "postel_store_errors",
            "Messages refused because the store failed (451 or 554)",
            m.store_errors.clone(),
        );
        registry.register(
            "postel_store_commit_seconds",
            "Time from handing a message to the store to its durable commit",
            m.commit_seconds.clone(),
        );
        registry.register(
            "postel_auth_failures",
            "AUTH attempts refused (bad credentials or locked out)",
            m.auth_failures.clone(),
        );
        m
    }
}
