//! Failed logins counted per client address: after `max` failures, the
//! address is locked out until `window` after the first of them. One
//! lockout serves SMTP AUTH and the web login, so that guesses on one side
//! count on the other. In memory: a restart clears it.
//!
//! Several nodes share one count: each node's own failures are counted
//! here, and what the other nodes counted (within their windows) is set
//! from outside ([`Lockout::set_remote`], from a shared store, every
//! second or so), and counts toward the same `max`. A client spreading
//! guesses over the nodes gets at most what the last sync missed.
//!
//! The invariant: no more than `max` checks per address and window can
//! fail, however many run at once. A check takes its failure slot *before*
//! it runs ([`Lockout::begin`]) and gives it back only if it succeeds
//! ([`Attempt::succeeded`]); counting after the check let 100 parallel
//! sessions run 69 to 100 checks where 10 were allowed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before expired entries are swept.
const SWEEP_AT: usize = 10_000;
/// The most addresses tracked at once (some 50 MB). Past it, a new address
/// is refused as if locked out until entries expire: failing closed is
/// better than forgetting failures.
const MAX_TRACKED: usize = 1_000_000;

/// The most addresses one node tells the others about each time.
pub const SHARED: usize = 100_000;

/// Failed logins per client address.
#[derive(Debug)]
pub struct Lockout {
    max: u32,
    window: Duration,
    /// Failures (and checks in flight) with the time of the first.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// The size past which the next `begin` sweeps expired entries: twice
    /// what the last sweep left, so sweeping costs O(1) per call on average.
    sweep_at: Mutex<usize>,
    /// Failures the other nodes counted, per key, as last synced.
    remote: Mutex<HashMap<IpAddr, u32>>,
}

/// The key an address is counted under: an IPv4 address, or an IPv6
/// address's /64 (one subscriber's network: the other 2^64 addresses are
/// theirs too, and would each get ten guesses).
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(net.into())
        }
        v4 => v4,
    }
}

impl Lockout {
    /// Locks an address out after `max` failures within `window`.
    pub fn new(max: u32, window: Duration) -> Lockout {
        Lockout {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
            sweep_at: Mutex::new(SWEEP_AT),
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The failure window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// This node's counts within the window: key, failures (checks in
    /// flight included), and how long ago the first was. For sharing.
    /// At most [`SHARED`] of them, the most failed first.
    pub fn snapshot(&self, now: Instant) -> Vec<(IpAddr, u32, Duration)> {
        let mut all: Vec<(IpAddr, u32, Duration)> = self
            .map()
            .iter()
            .filter(|(_, (n, since))| {
                *n > 0 && now.saturating_duration_since(*since) <= self.window
            })
            .map(|(ip, (n, since))| (*ip, *n, now.saturating_duration_since(*since)))
            .collect();
        if all.len() > SHARED {
            all.select_nth_unstable_by(SHARED, |a, b| b.1.cmp(&a.1));
            all.truncate(SHARED);
        }
        all
    }

    /// What the other nodes counted, per key (as [`Lockout::snapshot`]
    /// gives them): replaces the last set.
    pub fn set_remote(&self, remote: HashMap<IpAddr, u32>) {
        *self
            .remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = remote;
    }

    fn remote(&self, ip: IpAddr) -> u32 {
        self.remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns true if and only if `ip` is locked out at `now`.
    pub fn locked_out(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = key(ip);
        let remote = self.remote(ip);
        let mut map = self.map();
        match map.get(&ip) {
            Some((_, since)) if now.saturating_duration_since(*since) > self.window => {
                map.remove(&ip);
                remote >= self.max
            }
            Some((n, _)) => n.saturating_add(remote) >= self.max,
            None => remote >= self.max,
        }
    }

    /// Starts a check from `ip`: takes a failure slot, or returns None if
    /// the address is locked out (every slot is used by failures or by
    /// checks still running).
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Option<Attempt<'_>> {
        let ip = key(ip);
        let remote = self.remote(ip);
        let mut map = self.map();
        let mut sweep_at = self
            .sweep_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > *sweep_at {
            let window = self.window;
            map.retain(|_, (_, since)| now.saturating_duration_since(*since) <= window);
            *sweep_at = (map.len() * 2).max(SWEEP_AT);
        }
        drop(sweep_at);
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            return None;
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.saturating_duration_since(entry.1) > self.window {
            *entry = (0, now);
        }
        if entry.0.saturating_add(remote) >= self.max {
            return None;
        }
        entry.0 += 1;
        Some(Attempt { lockout: self, ip })
    }

    /// Gives a slot back (`ip` is already a key).
    fn give_back(&self, ip: IpAddr) {
        let mut map = self.map();
        if let Some(entry) = map.get_mut(&ip) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// A check in flight, holding its failure slot. Dropped as it is (a
/// wrong password, or a task cancelled mid-check), the failure counts;
/// [`Attempt::succeeded`] and [`Attempt::not_run`] give the slot back.
#[derive(Debug)]
#[must_use = "dropping an attempt counts it as a failure"]
pub struct Attempt<'a> {
    lockout: &'a Lockout,
    ip: IpAddr,
}

impl Attempt<'_> {
    /// The credentials were right: the slot is given back.
    pub fn succeeded(self) {
        self.lockout.give_back(self.ip);
    }

    /// The check never ran (no room to run it): the slot is given back.
    pub fn not_run(self) {
        self.lockout.give_back(self.ip);
    }

    /// The credentials were wrong: the failure stays counted.
    pub fn failed(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn locks_after_max_and_forgets_after_the_window() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            l.begin(ip("192.0.2.1"), t0).expect("room").failed();
        }
        assert!(!l.locked_out(ip("192.0.2.1"), t0));
        l.begin(ip("192.0.2.1"), t0).expect("room").failed();
        assert!(l.locked_out(ip("192.0.2.1"), t0));
        assert!(l.begin(ip("192.0.2.1"), t0).is_none());
        assert!(!l.locked_out(ip("192.0.2.2"), t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!l.locked_out(ip("192.0.2.1"), later));
        assert!(l.begin(ip("192.0.2.1"), later).is_some());
    }

    #[test]
    fn parallel_checks_take_their_slots_first() {
        // 100 checks start before any ends: only `max` may run.
        let l = Lockout::new(10, Duration::from_secs(900));
        let now = Instant::now();
        let running: Vec<_> = (0..100)
            .filter_map(|_| l.begin(ip("192.0.2.9"), now))
            .collect();
        assert_eq!(running.len(), 10);
        assert!(l.locked_out(ip("192.0.2.9"), now));
        drop(running);
        assert!(l.locked_out(ip("192.0.2.9"), now), "dropped attempts count");
    }

    #[test]
    fn an_ipv6_network_is_counted_as_one() {
        let l = Lockout::new(2, Duration::from_secs(900));
        let now = Instant::now();
        l.begin(ip("2001:db8:1:2::1"), now).expect("room").failed();
        l.begin(ip("2001:db8:1:2:ffff::9"), now)
            .expect("room")
            .failed();
        assert!(l.locked_out(ip("2001:db8:1:2::77"), now));
        assert!(!l.locked_out(ip("2001:db8:1:3::1"), now));
        // An IPv4 client seen on a dual-stack socket is its IPv4 address.
        l.begin(ip("::ffff:192.0.2.5"), now).expect("room").failed();
        l.begin(ip("192.0.2.5"), now).expect("room").failed();
        assert!(l.locked_out(ip("192.0.2.5"), now));
    }

    #[test]
    fn the_other_nodes_failures_count_toward_the_same_max() {
        let a = Lockout::new(5, Duration::from_secs(900));
        let b = Lockout::new(5, Duration::from_secs(900));
        let now = Instant::now();
        for _ in 0..3 {
            a.begin(ip("2001:db8::1"), now).expect("room").failed();
        }
        let shared: HashMap<IpAddr, u32> = a
            .snapshot(now)
            .into_iter()
            .map(|(k, n, _)| (k, n))
            .collect();
        assert_eq!(shared.get(&ip("2001:db8::")), Some(&3), "counted by /64");
        b.set_remote(shared);
        b.begin(ip("2001:db8::7"), now).expect("room").failed();
        b.begin(ip("2001:db8::8"), now).expect("room").failed();
        assert!(
            b.begin(ip("2001:db8::9"), now).is_none(),
            "3 there + 2 here"
        );
        assert!(b.locked_out(ip("2001:db8::9"), now));
        b.set_remote(HashMap::new());
        assert!(!b.locked_out(ip("2001:db8::9"), now));
    }

    #[test]
    fn success_and_not_run_give_the_slot_back() {
        let l = Lockout::new(2, Duration::from_secs(900));
        let now = Instant::now();
        let a = l.begin(ip("192.0.2.3"), now).expect("room");
        let b = l.begin(ip("192.0.2.3"), now).expect("room");
        assert!(l.begin(ip("192.0.2.3"), now).is_none());
        a.succeeded();
        b.not_run();
        assert!(!l.locked_out(ip("192.0.2.3"), now));
        l.begin(ip("192.0.2.3"), now).expect("room").failed();
        assert!(!l.locked_out(ip("192.0.2.3"), now));
    }
}
