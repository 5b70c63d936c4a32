//! Hosts that did not answer, remembered for a while, so that a dead MX is
//! not dialled once per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most hosts remembered: past it, the oldest entries go.
const MAX_REMEMBERED: usize = 10_000;

/// Addresses that refused or dropped a connection, until when.
#[derive(Debug, Default)]
pub struct DownHosts {
    until: Mutex<HashMap<IpAddr, Instant>>,
}

impl DownHosts {
    /// Nothing remembered.
    pub fn new() -> DownHosts {
        DownHosts::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `ip` did not answer: skip it for `for_how_long`.
    pub fn mark(&self, ip: IpAddr, for_how_long: Duration) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, until| *until > now);
            if map.len() >= MAX_REMEMBERED {
                map.clear();
            }
        }
        map.insert(ip, now + for_how_long);
    }

    /// Whether `ip` is to be skipped now.
    pub fn is_down(&self, ip: IpAddr) -> bool {
        self.map().get(&ip).is_some_and(|u| *u > Instant::now())
    }

    /// Forgets every host (`postel queue retry` asks for a fresh try).
    pub fn clear(&self) {
        self.map().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_for_a_while() {
        let d = DownHosts::new();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(!d.is_down(ip));
        d.mark(ip, Duration::from_secs(60));
        assert!(d.is_down(ip));
        d.mark(ip, Duration::ZERO);
        assert!(!d.is_down(ip));
    }
}
