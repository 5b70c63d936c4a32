//! The `Received:` trace header Postel prepends to every message it stores
//! (RFC 5321 4.4), and the RFC 5322 date it carries.
//!
//! Header injection is impossible by construction: every value written here
//! has passed the protocol core's grammar (HELO names and addresses hold no
//! CR, LF or control bytes), and the client address is formatted by us.
//! Text-reordering Unicode controls in an SMTPUTF8 address are escaped
//! ([`visible`]), so the header reads as what was sent.

use std::net::IpAddr;

use postel_proto::display::visible;

/// RFC 5322 date-time in UTC: `Mon, 23 Nov 2026 11:18:29 +0000`.
fn rfc5322_date(unix: i64) -> String {
    use time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc2822)
        .unwrap_or_default()
}

/// What goes into one trace header.
pub struct Trace<'a> {
    /// The name the client gave in EHLO/HELO.
    pub helo: &'a str,
    /// The client's address.
    pub peer: IpAddr,
    /// This server's name.
    pub hostname: &'a str,
    /// Postel's version.
    pub version: &'a str,
    /// RFC 3848 / RFC 6531 `with` value: SMTP, ESMTP, UTF8SMTP...
    pub protocol: &'a str,
    /// The message's id, as in the `250` reply.
    pub id: &'a str,
    /// Named only when there is exactly one, so the header does not list
    /// the other (possibly blind) recipients.
    pub recipient: Option<&'a str>,
    /// When the message was received, in Unix seconds.
    pub unix_time: i64,
}

impl Trace<'_> {
    /// Appends the header, folded, ending with CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let literal = match self.peer {
            IpAddr::V4(a) => format!("[{a}]"),
            IpAddr::V6(a) => format!("[IPv6:{a}]"),
        };
        let mut h = format!(
            "Received: from {} ({literal})\r\n\tby {} (Postel {}) with {} id {}",
            visible(self.helo),
            self.hostname,
            self.version,
            self.protocol,
            self.id
        );
        if let Some(r) = self.recipient {
            h.push_str(&format!("\r\n\tfor <{}>", visible(r)));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(self.unix_time)));
        out.extend_from_slice(h.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bidi_controls_in_an_address_are_escaped() {
        let t = Trace {
            helo: "client.test",
            peer: "192.0.2.1".parse().expect("ip"),
            hostname: "mx.test",
            version: "0.1.0",
            protocol: "UTF8SMTP",
            id: "ABC",
            recipient: Some("\u{202E}gpj.exe@x.test"),
            unix_time: 0,
        };
        let mut out = Vec::new();
        t.write_to(&mut out);
        let h = String::from_utf8(out).expect("utf-8");
        assert!(h.contains("for <\\u{202E}gpj.exe@x.test>"), "{h}");
        assert!(!h.contains('\u{202E}'));
    }
}
