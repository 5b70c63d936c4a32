//! Failed logins counted per client address: after `max` failures, the
//! address is locked out until `window` after the first of them. Used for
//! SMTP AUTH and for the web login alike. In memory: a restart clears it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before expired entries are swept (bounds the map).
const SWEEP_AT: usize = 10_000;

/// Failed logins per client address.
#[derive(Debug)]
pub struct Lockout {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Lockout {
    /// Locks an address out after `max` failures within `window`.
    pub fn new(max: u32, window: Duration) -> Lockout {
        Lockout {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns true if and only if `ip` is locked out now.
    pub fn locked_out(&self, ip: IpAddr) -> bool {
        let mut map = self.map();
        match map.get(&ip) {
            Some((_, since)) if since.elapsed() > self.window => {
                map.remove(&ip);
                false
            }
            Some((n, _)) => *n >= self.max,
            None => false,
        }
    }

    /// Counts a failure from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = self.map();
        if map.len() > SWEEP_AT {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() <= window);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() > self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_and_forgets_after_the_window() {
        let l = Lockout::new(3, Duration::from_millis(50));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..2 {
            l.record_failure(ip);
        }
        assert!(!l.locked_out(ip));
        l.record_failure(ip);
        assert!(l.locked_out(ip));
        assert!(!l.locked_out(other));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!l.locked_out(ip));
    }
}
