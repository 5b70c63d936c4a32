//! Times of stored messages: seconds since the Unix epoch, shown and read
//! as RFC 3339 (`2026-11-23T11:18:29Z`) and RFC 5322 dates, in UTC. The
//! calendar is the `time` crate's, the one date-time crate of the
//! workspace; these are the few shapes Postel writes and reads.

use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::macros::format_description;
use time::{Date, OffsetDateTime};

fn at(unix: i64) -> OffsetDateTime {
    // Out of the calendar's range (beyond year 9999): the epoch, which
    // no stored message has.
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 5322 date-time in UTC, as in a `Received:` header:
/// `Mon, 23 Nov 2026 11:18:29 +0000`.
pub fn rfc5322_date(unix: i64) -> String {
    at(unix).format(&Rfc2822).unwrap_or_default()
}

/// RFC 3339 in UTC: `2026-11-23T11:18:29Z` (listings, JSON).
pub fn rfc3339(unix: i64) -> String {
    at(unix).format(&Rfc3339).unwrap_or_default()
}

/// Reads an RFC 3339 date-time (`2026-11-23T11:18:29Z`,
/// `2026-11-23T12:18:29.5+01:00`; `t` or a space for `T`), or a date alone
/// (`2026-11-23`, midnight UTC), or plain Unix seconds. Fractions of a
/// second are dropped. Returns None for anything else.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    if s.len() == 10 {
        let date = Date::parse(s, format_description!("[year]-[month]-[day]")).ok()?;
        return Some(date.midnight().assume_utc().unix_timestamp());
    }
    // RFC 3339 5.6 allows a space for the `T` (and either case).
    let mut t = s.to_owned();
    if t.as_bytes().get(10) == Some(&b' ') {
        t.replace_range(10..11, "T");
    }
    OffsetDateTime::parse(&t, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_433_909),
            "Mon, 23 Nov 2026 11:38:29 +0000"
        );
        assert_eq!(rfc3339(1_795_433_909), "2026-11-23T11:38:29Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for t in [0, -1, 951_782_400, 1_795_433_909, 4_102_444_800] {
            assert_eq!(parse_time(&rfc3339(t)), Some(t), "{t}");
        }
        assert_eq!(parse_time("2026-11-23T12:38:29+01:00"), Some(1_795_433_909));
        assert_eq!(parse_time("2026-11-23t11:38:29.123z"), Some(1_795_433_909));
        assert_eq!(parse_time("2026-11-23 06:38:29-05:00"), Some(1_795_433_909));
        assert_eq!(parse_time("2026-11-23"), Some(1_795_392_000));
        assert_eq!(parse_time(" 1795433909 "), Some(1_795_433_909));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-23T25:00:00Z",
            "2026-11-23T11:38:29",
            "2026-11-23T11:38:29.Z",
            "2026-11-23T11:38:29+0100",
            "2026-02-29",
            "2026-04-31",
            "2026-11-23T11:38:29+24:00",
            "2026-1-23",
            "２０２６-11-23",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }
}
