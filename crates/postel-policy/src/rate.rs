//! Rate limits per client address, per authenticated user and per sender
//! domain: messages (counted at MAIL, as Postfix's
//! `smtpd_client_message_rate_limit`) and recipients (counted at each
//! accepted RCPT) per time window. Over a limit, the command gets
//! `450 4.7.1` and nothing is counted.
//!
//! Each counter is a token bucket: it holds up to the limit and refills
//! at the limit per window, so a burst of the whole limit is allowed once,
//! then a steady rate. IPv6 clients are counted per /64, so that one host
//! cannot take a new address for each message. The table is bounded: when
//! it is full, counters that have refilled (and so say nothing) go first;
//! past that, an old counter makes room, so a new key is always counted.
//!
//! Several nodes share their counts: each says how much its senders took
//! of each counter in the current slot of time (one window long, counted
//! from the Unix epoch, so that every node's slots line up)
//! ([`RateLimiter::snapshot`], every second or so, through a shared store),
//! and what the others took since the last time
//! ([`RateLimiter::set_remote`]) is taken off this node's counters too: all
//! of it, the first time a slot is heard of. Every node's counter then
//! drains by what all of them took, and refills at the limit's rate once:
//! the limit holds for the nodes together, give or take a second's worth.
//!
//! Sans-IO: every decision takes `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most counters kept at once.
const MAX_KEYS: usize = 100_000;

/// One scope's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Messages per window, if limited.
    pub messages: Option<u32>,
    /// Recipients per window, if limited.
    pub recipients: Option<u32>,
    /// The window.
    pub window: Duration,
}

/// The limits of each scope; None: not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Per client address (IPv6 per /64).
    pub client: Option<Limit>,
    /// Per authenticated user.
    pub user: Option<Limit>,
    /// Per domain of the MAIL FROM address.
    pub sender_domain: Option<Limit>,
}

impl RateLimits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.client.is_none() && self.user.is_none() && self.sender_domain.is_none()
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum What {
    Messages,
    Recipients,
}

/// The scope of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The client's address.
    Client,
    /// The authenticated user.
    User,
    /// The sender's domain.
    SenderDomain,
}

impl Scope {
    /// For the reply and the log.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Client => "client",
            Scope::User => "user",
            Scope::SenderDomain => "sender domain",
        }
    }
}

/// Who is sending: the keys of the counters.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The authenticated user.
    pub user: Option<&'a str>,
    /// The domain of the reverse-path (None for `<>`).
    pub sender_domain: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Taken by this node's own senders since the counter was made.
    taken: f64,
    /// The slot it was last reported in, and `taken` when it began.
    slot: u64,
    slot_base: f64,
}

impl Bucket {
    fn level(&self, limit: u32, window: Duration, now: Instant) -> f64 {
        let per_sec = f64::from(limit) / window.as_secs_f64().max(0.001);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * per_sec).min(f64::from(limit))
    }
}

/// The counters, and when the full table was last pruned.
#[derive(Debug, Default)]
struct Table {
    buckets: HashMap<(Scope, What, String), Bucket>,
    pruned: Option<Instant>,
    /// What the other nodes had taken, per counter (see [`shared_key`]),
    /// when they last said.
    seen: HashMap<String, f64>,
}

/// A counter's name between nodes, in one slot of time.
fn shared_key(scope: Scope, what: What, slot: u64, key: &str) -> String {
    format!("{scope:?} {what:?} {slot} {key}")
}

/// A counter's name read back; None for one this version does not know.
fn parse_shared_key(s: &str) -> Option<(Scope, What, String)> {
    let (scope, rest) = s.split_once(' ')?;
    let (what, rest) = rest.split_once(' ')?;
    let (_slot, key) = rest.split_once(' ')?;
    let scope = match scope {
        "Client" => Scope::Client,
        "User" => Scope::User,
        "SenderDomain" => Scope::SenderDomain,
        _ => return None,
    };
    let what = match what {
        "Messages" => What::Messages,
        "Recipients" => What::Recipients,
        _ => return None,
    };
    Some((scope, what, key.to_owned()))
}

/// The counters.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    table: Mutex<Table>,
}

/// The key of a client address: itself for IPv4, its /64 for IPv6.
fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        v4 => v4.to_string(),
    }
}

impl RateLimiter {
    /// Counters for `limits`.
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Counts one message (a MAIL) from `sender`.
    ///
    /// # Errors
    /// The scope whose limit it is over; nothing is counted then.
    pub fn message(&self, sender: &Sender<'_>, now: Instant) -> Result<(), Scope> {
        self.take(What::Messages, sender, now)
    }

    /// Counts one recipient (an accepted RCPT) from `sender`.
    ///
    /// # Errors
    /// The scope whose limit it is over; nothing is counted then.
    pub fn recipient(&self, sender: &Sender<'_>, now: Instant) -> Result<(), Scope> {
        self.take(What::Recipients, sender, now)
    }

    fn take(&self, what: What, sender: &Sender<'_>, now: Instant) -> Result<(), Scope> {
        // Nothing to count (the default): no key is even made.
        if self.limits.is_empty() {
            return Ok(());
        }
        let scopes = [
            (
                Scope::Client,
                self.limits.client,
                Some(client_key(sender.client)),
            ),
            (
                Scope::User,
                self.limits.user,
                sender.user.map(str::to_lowercase),
            ),
            (
                Scope::SenderDomain,
                self.limits.sender_domain,
                sender.sender_domain.map(str::to_lowercase),
            ),
        ];
        let counted: Vec<(Scope, u32, Duration, String)> = scopes
            .into_iter()
            .filter_map(|(scope, limit, key)| {
                let limit = limit?;
                let n = match what {
                    What::Messages => limit.messages,
                    What::Recipients => limit.recipients,
                }?;
                Some((scope, n, limit.window, key?))
            })
            .collect();
        if counted.is_empty() {
            return Ok(());
        }
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Table {
            buckets, pruned, ..
        } = &mut *table;
        // Every scope must have room before any is counted.
        for (scope, n, window, key) in &counted {
            let level = buckets
                .get(&(*scope, what, key.clone()))
                .map_or(f64::from(*n), |b| b.level(*n, *window, now));
            if level < 1.0 {
                return Err(*scope);
            }
        }
        // A full table is pruned at most once a second: a flood of new
        // keys must not make every command scan it.
        let due = pruned.is_none_or(|p| now.saturating_duration_since(p) >= Duration::from_secs(1));
        if buckets.len() + counted.len() > MAX_KEYS && due {
            *pruned = Some(now);
            let limits = self.limits;
            buckets.retain(|(scope, w, _), b| {
                let limit = match scope {
                    Scope::Client => limits.client,
                    Scope::User => limits.user,
                    Scope::SenderDomain => limits.sender_domain,
                };
                let Some(limit) = limit else { return false };
                let n = match w {
                    What::Messages => limit.messages,
                    What::Recipients => limit.recipients,
                };
                n.is_some_and(|n| b.level(n, limit.window, now) < f64::from(n))
            });
        }
        for (scope, n, window, key) in counted {
            let k = (scope, what, key);
            let level = buckets
                .get(&k)
                .map_or(f64::from(n), |b| b.level(n, window, now));
            let old = buckets.get(&k).copied();
            // Still full: a counter goes to make room, one of the same
            // scope if one comes soon, so that a new key is always counted
            // (a flood of made-up keys can reset counters, never stop them).
            if !buckets.contains_key(&k) && buckets.len() >= MAX_KEYS {
                let victim = buckets
                    .keys()
                    .take(64)
                    .find(|(s, _, _)| *s == scope)
                    .or_else(|| buckets.keys().next())
                    .cloned();
                if let Some(v) = victim {
                    buckets.remove(&v);
                }
            }
            buckets.insert(
                k,
                Bucket {
                    tokens: level - 1.0,
                    at: now,
                    taken: old.map_or(0.0, |b| b.taken) + 1.0,
                    slot: old.map_or(0, |b| b.slot),
                    slot_base: old.map_or(0.0, |b| b.slot_base),
                },
            );
        }
        Ok(())
    }

    /// How much this node's senders took of each counter in the current
    /// slot (`unix`: seconds since the epoch), for the other nodes;
    /// counters nobody took from in the slot say nothing.
    pub fn snapshot(&self, unix: u64) -> Vec<(String, f64)> {
        let limits = self.limits;
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        for ((scope, what, key), b) in &mut table.buckets {
            let Some(limit) = (match scope {
                Scope::Client => limits.client,
                Scope::User => limits.user,
                Scope::SenderDomain => limits.sender_domain,
            }) else {
                continue;
            };
            let slot = unix / limit.window.as_secs().max(1);
            if b.slot != slot {
                // A new slot starts from what was taken by then; a counter
                // never reported yet (slot 0) counts all it took.
                if b.slot != 0 {
                    b.slot_base = b.taken;
                }
                b.slot = slot;
            }
            let in_slot = b.taken - b.slot_base;
            if in_slot > 0.0 {
                out.push((shared_key(*scope, *what, slot, key), in_slot));
            }
        }
        out
    }

    /// What the other nodes have taken of each counter in its slot (summed
    /// over them, as their [`RateLimiter::snapshot`]s give it): what they
    /// took since the last call is taken off this node's counters, and the
    /// whole of a slot heard of for the first time.
    pub fn set_remote(&self, remote: HashMap<String, f64>, now: Instant) {
        let limits = self.limits;
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Table { buckets, seen, .. } = &mut *table;
        for (name, total) in &remote {
            let delta = total - seen.get(name).copied().unwrap_or(0.0);
            if delta <= 0.0 {
                continue;
            }
            let Some((scope, what, key)) = parse_shared_key(name) else {
                continue;
            };
            let limit = match scope {
                Scope::Client => limits.client,
                Scope::User => limits.user,
                Scope::SenderDomain => limits.sender_domain,
            };
            let Some(limit) = limit else { continue };
            let Some(n) = (match what {
                What::Messages => limit.messages,
                What::Recipients => limit.recipients,
            }) else {
                continue;
            };
            let k = (scope, what, key);
            if !buckets.contains_key(&k) && buckets.len() >= MAX_KEYS {
                continue;
            }
            let old = buckets.get(&k).copied();
            let level = old.map_or(f64::from(n), |b| b.level(n, limit.window, now));
            buckets.insert(
                k,
                Bucket {
                    tokens: level - delta,
                    at: now,
                    taken: old.map_or(0.0, |b| b.taken),
                    slot: old.map_or(0, |b| b.slot),
                    slot_base: old.map_or(0.0, |b| b.slot_base),
                },
            );
        }
        let mut remote = remote;
        if remote.len() > MAX_KEYS {
            remote = remote.into_iter().take(MAX_KEYS).collect();
        }
        *seen = remote;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(client: Option<Limit>, domain: Option<Limit>) -> RateLimiter {
        RateLimiter::new(RateLimits {
            client,
            user: None,
            sender_domain: domain,
        })
    }

    fn sender<'a>(ip: &str, domain: Option<&'a str>) -> Sender<'a> {
        Sender {
            client: ip.parse().expect("ip"),
            user: None,
            sender_domain: domain,
        }
    }

    #[test]
    fn what_other_nodes_took_is_taken_off_and_refilled_once() {
        let limit = Limit {
            messages: Some(6),
            recipients: None,
            window: Duration::from_secs(3600),
        };
        let (a, b) = (limiter(Some(limit), None), limiter(Some(limit), None));
        let t = Instant::now();
        let unix = 1_800_000_000;
        let s = sender("192.0.2.1", None);
        let share = |from: &RateLimiter, to: &RateLimiter, unix: u64| {
            to.set_remote(from.snapshot(unix).into_iter().collect(), t);
        };
        // b hears of a's slot: all of it counts.
        assert_eq!(a.message(&s, t), Ok(()));
        share(&a, &b, unix);
        for _ in 0..3 {
            assert_eq!(a.message(&s, t), Ok(()));
        }
        share(&a, &b, unix + 1);
        // 4 taken on a: b has 2 left.
        for _ in 0..2 {
            assert_eq!(b.message(&s, t), Ok(()));
        }
        assert_eq!(b.message(&s, t), Err(Scope::Client));
        assert_eq!(
            b.message(&sender("192.0.2.2", None), t),
            Ok(()),
            "others apart"
        );
        // Nothing new: nothing more taken off. Refilled once, at the
        // limit's rate: in 10 minutes, one more message on b (6 an hour).
        share(&a, &b, unix + 2);
        let later = t + Duration::from_secs(600);
        assert_eq!(b.message(&s, later), Ok(()));
        assert_eq!(b.message(&s, later), Err(Scope::Client));
        // A new slot: a's counts start again from what it takes in it.
        let next = unix + 3600;
        assert!(
            a.snapshot(next).is_empty(),
            "nothing taken in the new slot yet"
        );
    }

    #[test]
    fn a_burst_of_the_limit_then_the_steady_rate() {
        let limit = Limit {
            messages: Some(3),
            recipients: None,
            window: Duration::from_secs(60),
        };
        let r = limiter(Some(limit), None);
        let t = Instant::now();
        let s = sender("192.0.2.1", None);
        for _ in 0..3 {
            assert_eq!(r.message(&s, t), Ok(()));
        }
        assert_eq!(r.message(&s, t), Err(Scope::Client));
        // Another client is counted apart; recipients are not limited.
        assert_eq!(r.message(&sender("192.0.2.2", None), t), Ok(()));
        assert_eq!(r.recipient(&s, t), Ok(()));
        // A third of the window gives one message back.
        assert_eq!(
            r.message(&s, t + Duration::from_secs(19)),
            Err(Scope::Client)
        );
        assert_eq!(r.message(&s, t + Duration::from_secs(21)), Ok(()));
        assert_eq!(
            r.message(&s, t + Duration::from_secs(21)),
            Err(Scope::Client)
        );
    }

    #[test]
    fn a_refusal_counts_nothing_and_every_scope_must_have_room() {
        let one = Limit {
            messages: None,
            recipients: Some(1),
            window: Duration::from_secs(3600),
        };
        let many = Limit {
            recipients: Some(100),
            ..one
        };
        let r = limiter(Some(many), Some(one));
        let t = Instant::now();
        let a = sender("192.0.2.1", Some("Spam.test"));
        assert_eq!(r.recipient(&a, t), Ok(()));
        assert_eq!(r.recipient(&a, t), Err(Scope::SenderDomain));
        assert_eq!(
            r.recipient(&sender("192.0.2.9", Some("spam.TEST")), t),
            Err(Scope::SenderDomain),
            "domains are compared without case"
        );
        // The client's own count was not charged by the refusals: 99 left.
        let b = sender("192.0.2.1", None);
        for _ in 0..99 {
            assert_eq!(r.recipient(&b, t), Ok(()));
        }
        assert_eq!(r.recipient(&b, t), Err(Scope::Client));
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let limit = Limit {
            messages: Some(1),
            recipients: None,
            window: Duration::from_secs(60),
        };
        let r = limiter(Some(limit), None);
        let t = Instant::now();
        assert_eq!(r.message(&sender("2001:db8:1:2::1", None), t), Ok(()));
        assert_eq!(
            r.message(&sender("2001:db8:1:2:ffff::9", None), t),
            Err(Scope::Client)
        );
        assert_eq!(r.message(&sender("2001:db8:1:3::1", None), t), Ok(()));
    }

    #[test]
    fn a_full_table_still_counts_a_new_client() {
        let one = Limit {
            messages: Some(1),
            recipients: None,
            window: Duration::from_secs(3600),
        };
        let r = limiter(
            Some(one),
            Some(Limit {
                messages: Some(1_000_000),
                ..one
            }),
        );
        let t = Instant::now();
        for i in 0..MAX_KEYS {
            let d = format!("d{i}.test");
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            assert_eq!(r.message(&sender(&ip, Some(&d)), t), Ok(()));
        }
        assert!(r.table.lock().expect("lock").buckets.len() <= MAX_KEYS);
        let newcomer = sender("192.0.2.77", None);
        assert_eq!(r.message(&newcomer, t), Ok(()));
        assert_eq!(
            r.message(&newcomer, t),
            Err(Scope::Client),
            "counted despite the flood"
        );
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_sender_domains() {
        let limit = Limit {
            messages: Some(1_000_000),
            recipients: None,
            window: Duration::from_secs(1),
        };
        let r = limiter(None, Some(limit));
        let t = Instant::now();
        for i in 0..(MAX_KEYS + 5000) {
            let d = format!("d{i}.test");
            assert_eq!(r.message(&sender("192.0.2.1", Some(&d)), t), Ok(()));
        }
        let n = r.table.lock().expect("lock").buckets.len();
        assert!(n <= MAX_KEYS, "{n} counters");
    }
}
