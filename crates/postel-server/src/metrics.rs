//! The server's Prometheus metrics: sessions, commands, replies, TLS.
//!
//! The binary owns the [`Registry`] (it adds its own metrics, such as
//! messages stored and store latency) and serves it on `/metrics`; this
//! module only registers and updates the network layer's part.

use std::sync::atomic::AtomicU64;

use postel_proto::command::Verb;
use postel_proto::session::Tally;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a per-listener metric.
type KindLabel = [(&'static str, &'static str); 1];

/// The network layer's metrics. Cheap to update: atomics, and a lookup per
/// reply code.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions open now.
    pub sessions_open: Gauge,
    /// Sessions accepted since start, by listener kind.
    pub sessions: Family<KindLabel, Counter>,
    /// Connections refused with 421 over the connection limits.
    pub connections_refused: Counter,
    /// Clients that talked before the greeting (closed with 554 5.5.0).
    pub pregreet: Counter,
    /// Command lines by verb; one counter per [`Verb`], in [`Verb::ALL`]
    /// order, so that counting needs no label lookup.
    commands: Vec<Counter<u64, AtomicU64>>,
    /// Replies by code.
    replies: Family<[(&'static str, String); 1], Counter>,
    /// TLS handshakes by result (`ok` or `failed`).
    pub tls_handshakes: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them under `postel_`.
    pub fn register(registry: &mut Registry) -> Metrics {
        // Each verb's counter is made once and kept: a clone shares its
        // value with the family that is exported.
        let commands = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let m = Metrics {
            commands: Verb::ALL
                .iter()
                .map(|v| commands.get_or_create(&[("verb", v.label())]).clone())
                .collect(),
            ..Metrics::default()
        };
        registry.register(
            "postel_sessions_open",
            "SMTP sessions open now",
            m.sessions_open.clone(),
        );
        registry.register(
            "postel_sessions",
            "SMTP sessions accepted, by listener kind",
            m.sessions.clone(),
        );
        registry.register(
            "postel_connections_refused",
            "Connections refused with 421 over the connection limits",
            m.connections_refused.clone(),
        );
        registry.register(
            "postel_pregreet",
            "Clients that talked before the greeting, refused with 554 5.5.0",
            m.pregreet.clone(),
        );
        registry.register(
            "postel_commands",
            "SMTP command lines received, by verb",
            commands,
        );
        registry.register(
            "postel_replies",
            "SMTP replies sent, by code",
            m.replies.clone(),
        );
        registry.register(
            "postel_tls_handshakes",
            "TLS handshakes (STARTTLS and implicit), by result",
            m.tls_handshakes.clone(),
        );
        m
    }

    /// Adds a session's counts.
    pub fn add(&self, tally: &Tally) {
        for (c, &n) in self.commands.iter().zip(&tally.commands) {
            if n > 0 {
                c.inc_by(u64::from(n));
            }
        }
        for &(code, n) in &tally.replies {
            self.replies
                .get_or_create(&[("code", code.to_string())])
                .inc_by(u64::from(n));
        }
    }

    /// Sessions accepted since start, over all listeners.
    pub fn sessions_total(&self) -> u64 {
        ["smtp", "submission", "smtps"]
            .iter()
            .map(|k| self.sessions.get_or_create(&[("kind", k)]).get())
            .sum()
    }
}
