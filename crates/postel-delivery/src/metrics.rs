//! What delivery counts for `/metrics`: the queue by state, attempts by
//! result, and how long delivered mail waited.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label with a fixed name.
type Label = [(&'static str, &'static str); 1];

/// Delivery's metrics, registered under `postel_`.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    /// Recipients in the queue, by `state`.
    pub queue: Family<Label, Gauge>,
    /// Attempts for one recipient, by `result` (delivered, deferred,
    /// failed).
    pub attempts: Family<Label, Counter>,
    /// Seconds from arrival to delivery.
    pub latency: Histogram,
    /// Notices sent.
    pub notices: Counter,
}

impl Default for DeliveryMetrics {
    fn default() -> DeliveryMetrics {
        DeliveryMetrics {
            queue: Family::default(),
            attempts: Family::default(),
            // 10 ms to about 2 days.
            latency: Histogram::new(exponential_buckets(0.01, 3.0, 16)),
            notices: Counter::default(),
        }
    }
}

impl DeliveryMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> DeliveryMetrics {
        let m = DeliveryMetrics::default();
        registry.register(
            "postel_queue_recipients",
            "Recipients in the delivery queue, by state",
            m.queue.clone(),
        );
        registry.register(
            "postel_delivery_attempts",
            "Delivery attempts for one recipient, by result",
            m.attempts.clone(),
        );
        registry.register(
            "postel_delivery_latency_seconds",
            "Seconds from a message's arrival to its delivery to the next hop",
            m.latency.clone(),
        );
        registry.register(
            "postel_delivery_notices",
            "Delivery status notifications sent",
            m.notices.clone(),
        );
        m
    }
}
