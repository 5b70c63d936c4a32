//! When to try again: the retry schedule (RFC 5321 4.5.4.1 says it must be
//! configurable), the lifetime of a message in the queue, and the delay
//! warnings. No clock is read here: `now` comes from the caller, so that
//! tests run on a fake clock.

use std::time::Duration;

/// The default schedule: 5m, 10m, 20m, 40m, 1h20, 2h, then every 3h.
pub const DEFAULT_RETRY: [u64; 7] = [300, 600, 1200, 2400, 4800, 7200, 10800];

/// The default lifetime: 5 days (RFC 5321 4.5.4.1: "at least 4-5 days").
pub const DEFAULT_LIFETIME: u64 = 5 * 86_400;

/// Delay notices go out once a message has waited this long (seconds), by
/// default: at 4 hours and at 24 hours.
pub const DELAY_WARNINGS: [i64; 2] = [4 * 3600, 24 * 3600];

/// Parses a duration as written in the config: a number of seconds, or
/// numbers with units `d`, `h`, `m`, `s` in that order (`5m`, `1h20`,
/// `1h20m`, `5d`, `90s`). A number after `h` with no unit is minutes, after
/// `m` seconds, as in "1h20".
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let units = [('d', 86_400u64), ('h', 3600), ('m', 60), ('s', 1)];
    let mut total: u64 = 0;
    let mut number = String::new();
    // Which units may still come: each at most once, in order.
    let mut next_unit = 0;
    let mut last_unit: Option<usize> = None;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let i = units.iter().position(|(u, _)| *u == c)?;
        if i < next_unit || number.is_empty() {
            return None;
        }
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(units[i].1)?)?;
        number.clear();
        next_unit = i + 1;
        last_unit = Some(i);
    }
    if !number.is_empty() {
        // A bare number after a unit counts in the next smaller unit.
        let i = last_unit? + 1;
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(units.get(i)?.1)?)?;
    }
    Some(Duration::from_secs(total))
}

/// The retry schedule, the lifetime and the delay warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The waits after the first attempt, the second...; the last repeats.
    pub intervals: Vec<Duration>,
    /// How long a message may stay in the queue before it fails.
    pub lifetime: Duration,
    /// After how long a delayed message gets a delay notice (at most 32).
    pub warnings: Vec<Duration>,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            intervals: DEFAULT_RETRY
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            lifetime: Duration::from_secs(DEFAULT_LIFETIME),
            warnings: DELAY_WARNINGS
                .iter()
                .map(|s| Duration::from_secs(*s as u64))
                .collect(),
        }
    }
}

impl Schedule {
    /// When to try again after the `attempts`-th attempt (1 for the first)
    /// failed at `now`, for a message received at `received_at` (Unix
    /// seconds). `jitter` in [0, 1) adds up to a tenth of the wait (at most
    /// five minutes), so that messages deferred together spread out. None:
    /// the lifetime is over, the recipient fails.
    pub fn next_attempt(
        &self,
        received_at: i64,
        attempts: u32,
        now: i64,
        jitter: f64,
    ) -> Option<i64> {
        let end = received_at.saturating_add(self.lifetime.as_secs() as i64);
        if now >= end {
            return None;
        }
        let i = (attempts.max(1) as usize - 1).min(self.intervals.len().saturating_sub(1));
        let wait = self.intervals.get(i).map_or(300, Duration::as_secs) as i64;
        let extra = ((wait as f64 / 10.0).min(300.0) * jitter.clamp(0.0, 1.0)) as i64;
        // The last try is at the end of the lifetime, not after it.
        Some(now.saturating_add(wait + extra).min(end))
    }

    /// The end of the lifetime of a message received at `received_at`.
    pub fn expires(&self, received_at: i64) -> i64 {
        received_at.saturating_add(self.lifetime.as_secs() as i64)
    }
}

/// The delay notice due at `now` for a message received at `received_at`,
/// of which `warned` (one bit per step of `steps`) were sent: the new
/// `warned`, if a notice is due.
pub fn delay_warning_due(
    steps: &[Duration],
    received_at: i64,
    now: i64,
    warned: u32,
) -> Option<u32> {
    let waited = now - received_at;
    let mut due = None;
    for (i, after) in steps.iter().take(32).enumerate() {
        if waited >= after.as_secs() as i64 && warned & (1 << i) == 0 {
            // Every step passed counts as sent: one notice, not two.
            due = Some(due.unwrap_or(warned) | (1 << i));
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_written() {
        let d = |s| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(d("5m"), Some(300));
        assert_eq!(d("1h20"), Some(4800));
        assert_eq!(d("1h20m"), Some(4800));
        assert_eq!(d("2h"), Some(7200));
        assert_eq!(d("5d"), Some(432_000));
        assert_eq!(d("1m30"), Some(90));
        assert_eq!(d("45"), Some(45));
        assert_eq!(d("1d2h3m4s"), Some(93_784));
        for bad in [
            "",
            "m",
            "5x",
            "1m1h",
            "1h1h",
            "5s1",
            "-5m",
            "99999999999999999999d",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_default_schedule_then_every_three_hours() {
        let s = Schedule::default();
        let t0 = 1_000_000;
        let mut now = t0;
        let mut waits = Vec::new();
        for attempt in 1..=9 {
            let next = s
                .next_attempt(t0, attempt, now, 0.0)
                .expect("within lifetime");
            waits.push(next - now);
            now = next;
        }
        assert_eq!(
            waits,
            [300, 600, 1200, 2400, 4800, 7200, 10800, 10800, 10800]
        );
    }

    #[test]
    fn jitter_is_small_and_positive_and_the_lifetime_ends_it() {
        let s = Schedule::default();
        let t0 = 0;
        let base = s.next_attempt(t0, 1, 100, 0.0).expect("next");
        let most = s.next_attempt(t0, 1, 100, 0.999).expect("next");
        assert!(most > base && most - base <= 30, "{base} {most}");
        let late = s.next_attempt(t0, 7, 10800 * 30, 0.999).expect("next");
        assert!(late - 10800 * 30 <= 10800 + 300 && late - 10800 * 30 >= 10800);
        // The last try lands on the end of the lifetime, then it fails.
        let end = s.expires(t0);
        assert_eq!(s.next_attempt(t0, 30, end - 60, 0.0), Some(end));
        assert_eq!(s.next_attempt(t0, 31, end, 0.0), None);
    }

    #[test]
    fn delay_warnings_at_four_and_twenty_four_hours() {
        let steps = Schedule::default().warnings;
        let delay_warning_due = |r, n, w| super::delay_warning_due(&steps, r, n, w);
        assert_eq!(delay_warning_due(0, 3 * 3600, 0), None);
        assert_eq!(delay_warning_due(0, 4 * 3600, 0), Some(1));
        assert_eq!(delay_warning_due(0, 5 * 3600, 1), None);
        assert_eq!(delay_warning_due(0, 24 * 3600, 1), Some(3));
        // Down for a day and a half: one notice, both steps marked.
        assert_eq!(delay_warning_due(0, 36 * 3600, 0), Some(3));
        assert_eq!(delay_warning_due(0, 48 * 3600, 3), None);
    }
}
