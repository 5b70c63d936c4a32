//! The `Received:` trace header Postel prepends to every message it stores
//! (RFC 5321 4.4), and the RFC 5322 date it carries.
//!
//! Header injection is impossible by construction: every value written here
//! has passed the protocol core's grammar (HELO names and addresses hold no
//! CR, LF or control bytes), and the client address is formatted by us.

use std::net::IpAddr;

/// What goes into one trace header.
pub(crate) struct Trace<'a> {
    pub(crate) helo: &'a str,
    pub(crate) peer: IpAddr,
    pub(crate) hostname: &'a str,
    pub(crate) version: &'a str,
    /// RFC 3848 / RFC 6531 `with` value: SMTP, ESMTP, UTF8SMTP...
    pub(crate) protocol: &'a str,
    pub(crate) id: &'a str,
    /// Named only when there is exactly one, so the header does not list
    /// the other (possibly blind) recipients.
    pub(crate) recipient: Option<&'a str>,
    pub(crate) unix_time: i64,
}

impl Trace<'_> {
    /// Appends the header, folded, ending with CRLF.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let literal = match self.peer {
            IpAddr::V4(a) => format!("[{a}]"),
            IpAddr::V6(a) => format!("[IPv6:{a}]"),
        };
        let mut h = format!(
            "Received: from {} ({literal})\r\n\tby {} (Postel {}) with {} id {}",
            self.helo, self.hostname, self.version, self.protocol, self.id
        );
        if let Some(r) = self.recipient {
            h.push_str(&format!("\r\n\tfor <{r}>"));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(self.unix_time)));
        out.extend_from_slice(h.as_bytes());
    }
}

/// Formats a Unix time as an RFC 5322 date-time in UTC:
/// `Mon, 23 Nov 2026 11:18:29 +0000`.
pub(crate) fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// ISO 8601 / RFC 3339 in UTC: `2026-11-23T11:18:29Z` (listings, JSON).
pub(crate) fn rfc3339(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
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
    fn header_shape() {
        let t = Trace {
            helo: "client.test",
            peer: "::1".parse().expect("ip"),
            hostname: "mx.test",
            version: "0.1.0",
            protocol: "ESMTP",
            id: "ABC",
            recipient: Some("a@b.test"),
            unix_time: 0,
        };
        let mut out = Vec::new();
        t.write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "Received: from client.test ([IPv6:::1])\r\n\tby mx.test (Postel 0.1.0) with ESMTP id ABC\r\n\tfor <a@b.test>;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
