//! Mailboxes, domains and paths: the RFC 5321 section 4.1.2 grammar, with the
//! RFC 6531 extension for UTF-8 in local parts and domains.
//!
//! Invariant: a value of these types is syntactically valid and within the
//! RFC 5321 4.5.3.1 size limits, so it can be written into a trace header or
//! a reply without further checks (it holds no CR, LF, space or control byte
//! outside a quoted local part, and a quoted local part holds no CR or LF).
//!
//! What this module does not do: decide whether an address is *acceptable*
//! (that is policy, in the binary) or look anything up.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

/// RFC 5321 4.5.3.1.1: the maximum length of a local part.
pub const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 4.5.3.1.2: the maximum length of a domain.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 4.5.3.1.3: the maximum length of a path, with its punctuation.
pub const MAX_PATH: usize = 256;

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not a mailbox by the RFC 5321 grammar, or over a length limit.
    #[error("address syntax invalid")]
    Syntax,
    /// Non-ASCII where the client did not ask for SMTPUTF8 (RFC 6531 3.5).
    #[error("non-ASCII address requires SMTPUTF8")]
    NeedsUtf8,
}

/// A mailbox, `local-part@domain`, as the client wrote it (local part kept
/// verbatim, quotes included; domain kept in its original case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part, verbatim (a quoted string keeps its quotes).
    pub local: String,
    /// The domain, or an address literal with its brackets.
    pub domain: String,
}

impl Mailbox {
    /// Returns true if and only if the domain is an address literal (`[...]`).
    pub fn is_literal(&self) -> bool {
        self.domain.starts_with('[')
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The argument of MAIL FROM: a mailbox, or the null path `<>` of bounces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>` (RFC 5321 4.5.5).
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Mailbox(m) => m.fmt(f),
        }
    }
}

/// The argument of RCPT TO: a mailbox, or the bare `<postmaster>` that every
/// server must accept (RFC 5321 4.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<postmaster>` with no domain, in any case.
    Postmaster,
    /// A recipient mailbox (a source route, if any, is dropped).
    Mailbox(Mailbox),
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("postmaster"),
            ForwardPath::Mailbox(m) => m.fmt(f),
        }
    }
}

/// Splits `<path> params` into the path (with its brackets) and the rest.
///
/// The closing `>` is found with quoted strings and backslash escapes taken
/// into account, so `<"a>b"@c>` is one path. Returns `None` when the text does
/// not start with `<` or has no closing `>`.
pub fn split_path(s: &[u8]) -> Option<(&[u8], &[u8])> {
    if s.first() != Some(&b'<') {
        return None;
    }
    let mut quoted = false;
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some((&s[..=i], &s[i + 1..])),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses a reverse-path with its brackets: `<>` or `<[route:]mailbox>`.
///
/// # Errors
/// [`AddressError::NeedsUtf8`] for 8-bit text when `utf8` is false,
/// [`AddressError::Syntax`] for anything else that is not a valid path.
pub fn parse_reverse_path(path: &[u8], utf8: bool) -> Result<ReversePath, AddressError> {
    if path == b"<>" {
        return Ok(ReversePath::Null);
    }
    parse_path(path, utf8).map(ReversePath::Mailbox)
}

/// Parses a forward-path with its brackets: `<postmaster>` or
/// `<[route:]mailbox>`.
///
/// # Errors
/// As [`parse_reverse_path`]; `<>` is a syntax error here.
pub fn parse_forward_path(path: &[u8], utf8: bool) -> Result<ForwardPath, AddressError> {
    if path.len() == 12 && path[1..11].eq_ignore_ascii_case(b"postmaster") {
        return Ok(ForwardPath::Postmaster);
    }
    parse_path(path, utf8).map(ForwardPath::Mailbox)
}

fn parse_path(path: &[u8], utf8: bool) -> Result<Mailbox, AddressError> {
    let inner = path
        .strip_prefix(b"<")
        .and_then(|p| p.strip_suffix(b">"))
        .ok_or(AddressError::Syntax)?;
    if !inner.is_ascii() {
        if !utf8 {
            return Err(AddressError::NeedsUtf8);
        }
        if core::str::from_utf8(inner).is_err() {
            return Err(AddressError::Syntax);
        }
    }
    if path.len() > MAX_PATH {
        return Err(AddressError::Syntax);
    }
    // A source route, `@a,@b:`, is checked and then ignored (RFC 5321 4.1.2, C).
    let mailbox = if inner.first() == Some(&b'@') {
        let colon = find_unquoted(inner, b':').ok_or(AddressError::Syntax)?;
        for hop in inner[..colon].split(|&b| b == b',') {
            let d = hop.strip_prefix(b"@").ok_or(AddressError::Syntax)?;
            if !is_domain(d, utf8) {
                return Err(AddressError::Syntax);
            }
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    parse_mailbox(mailbox, utf8)
}

/// Parses a bare mailbox (no brackets), `local@domain`.
///
/// # Errors
/// [`AddressError::Syntax`] when it is not one, or over a length limit.
pub fn parse_mailbox(s: &[u8], utf8: bool) -> Result<Mailbox, AddressError> {
    // RFC 6531 allows UTF-8, not any octet: invalid UTF-8 is a syntax error
    // (found by the address fuzzer: it was stored with U+FFFD in its place).
    if utf8 && std::str::from_utf8(s).is_err() {
        return Err(AddressError::Syntax);
    }
    let at = if s.first() == Some(&b'"') {
        // Quoted local part: the `@` is the first one after the closing quote.
        let close = quoted_end(s).ok_or(AddressError::Syntax)?;
        if s.get(close + 1) != Some(&b'@') {
            return Err(AddressError::Syntax);
        }
        close + 1
    } else {
        s.iter()
            .rposition(|&b| b == b'@')
            .ok_or(AddressError::Syntax)?
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.len() > MAX_LOCAL_PART || !is_local_part(local, utf8) {
        return Err(AddressError::Syntax);
    }
    if !is_domain(domain, utf8) && !is_address_literal(domain) {
        return Err(AddressError::Syntax);
    }
    // Both halves are ASCII, or valid UTF-8 (checked above).
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Mailbox {
        local: text(local),
        domain: text(domain),
    })
}

fn find_unquoted(s: &[u8], needle: u8) -> Option<usize> {
    let mut quoted = false;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b if b == needle && !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the closing quote of a quoted string that starts at 0.
fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'"' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// RFC 5322 atext (RFC 5321 4.1.2 Atom), plus UTF-8 when allowed (RFC 6531).
fn is_atext(b: u8, utf8: bool) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || (utf8 && b >= 0x80)
}

/// Local-part = Dot-string / Quoted-string (RFC 5321 4.1.2).
fn is_local_part(s: &[u8], utf8: bool) -> bool {
    if s.first() == Some(&b'"') {
        if s.len() < 2 || quoted_end(s) != Some(s.len() - 1) {
            return false;
        }
        let mut i = 1;
        while i < s.len() - 1 {
            let b = s[i];
            if b == b'\\' {
                // quoted-pairSMTP = %d92 %d32-126
                match s.get(i + 1) {
                    Some(&n) if (32..=126).contains(&n) => i += 2,
                    _ => return false,
                }
                continue;
            }
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF-8 (RFC 6531)
            let ok = (32..=126).contains(&b) && b != b'"' || (utf8 && b >= 0x80);
            if !ok {
                return false;
            }
            i += 1;
        }
        return true;
    }
    !s.is_empty()
        && s.split(|&b| b == b'.')
            .all(|atom| !atom.is_empty() && atom.iter().all(|&b| is_atext(b, utf8)))
}

/// Returns true if and only if `s` is an RFC 5321 Domain: dot-separated
/// labels of letters, digits and inner hyphens, each 1 to 63 octets, 255 in
/// all. With `utf8`, non-ASCII octets count as letters (U-labels, RFC 6531).
pub fn is_domain(s: &[u8], utf8: bool) -> bool {
    if s.is_empty() || s.len() > MAX_DOMAIN || (utf8 && std::str::from_utf8(s).is_err()) {
        return false;
    }
    s.split(|&b| b == b'.').all(|label| {
        let letdig = |b: u8| b.is_ascii_alphanumeric() || (utf8 && b >= 0x80);
        !label.is_empty()
            && label.len() <= 63
            && label.first().is_some_and(|&b| letdig(b))
            && label.last().is_some_and(|&b| letdig(b))
            && label.iter().all(|&b| letdig(b) || b == b'-')
    })
}

/// Returns true if and only if `s` is an RFC 5321 4.1.3 address literal:
/// `[IPv4]`, `[IPv6:addr]` or `[tag:content]`.
pub fn is_address_literal(s: &[u8]) -> bool {
    let Some(inner) = s.strip_prefix(b"[").and_then(|s| s.strip_suffix(b"]")) else {
        return false;
    };
    let Ok(inner) = core::str::from_utf8(inner) else {
        return false;
    };
    if let Some(v6) = strip_prefix_ignore_case(inner, "IPv6:") {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    if inner.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    match inner.split_once(':') {
        Some((tag, content)) => {
            // is_domain also keeps the tag from ending in '-' (Ldh-str).
            is_domain(tag.as_bytes(), false)
                && !content.is_empty()
                && content
                    .bytes()
                    .all(|b| (33..=90).contains(&b) || (94..=126).contains(&b))
        }
        None => false,
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(s: &str) -> Result<ReversePath, AddressError> {
        parse_reverse_path(s.as_bytes(), false)
    }
    fn fwd(s: &str) -> Result<ForwardPath, AddressError> {
        parse_forward_path(s.as_bytes(), false)
    }

    #[test]
    fn valid_paths() {
        for p in [
            "<a@b.example>",
            "<first.last@sub.example.com>",
            "<\"a b\"@example.com>",
            "<\"a\\\"b\"@example.com>",
            "<user+tag@[192.0.2.1]>",
            "<user@[IPv6:2001:db8::1]>",
            "<x@a-b.c>",
            "<!#$%&'*+-/=?^_`{|}~@example.com>",
            "<@relay.example,@other.example:user@c.example>",
        ] {
            assert!(rev(p).is_ok(), "{p} should parse");
            assert!(fwd(p).is_ok(), "{p} should parse");
        }
    }

    #[test]
    fn seed_004_invalid_mailboxes() {
        for p in [
            "<a b@c>",
            "<user@>",
            "<@@>",
            "<x@-bad-.example>",
            "<@>",
            "<user>",
            "<.user@example.com>",
            "<us..er@example.com>",
            "<user.@example.com>",
            "<user@example..com>",
            "<user@example.com.>",
            "<user@[300.1.1.1]>",
            "<user@[IPv6:zz]>",
            "<\"unterminated@example.com>",
            "<a@b@c>",
            "<user@exa_mple.com>",
            "<user@\x01x.com>",
            "<>x",
        ] {
            assert_eq!(rev(p), Err(AddressError::Syntax), "{p:?}");
        }
    }

    #[test]
    fn null_path_only_for_mail() {
        assert_eq!(rev("<>"), Ok(ReversePath::Null));
        assert_eq!(fwd("<>"), Err(AddressError::Syntax));
    }

    #[test]
    fn postmaster_any_case() {
        assert_eq!(fwd("<postmaster>"), Ok(ForwardPath::Postmaster));
        assert_eq!(fwd("<PostMaster>"), Ok(ForwardPath::Postmaster));
        assert!(matches!(
            fwd("<postmaster@example.com>"),
            Ok(ForwardPath::Mailbox(_))
        ));
    }

    #[test]
    fn source_route_is_dropped() {
        let Ok(ForwardPath::Mailbox(m)) = fwd("<@a.example,@b.example:user@c.example>") else {
            panic!("route should parse");
        };
        assert_eq!(m.to_string(), "user@c.example");
        assert_eq!(fwd("<@a.example:>"), Err(AddressError::Syntax));
        assert_eq!(fwd("<@-a:user@c.example>"), Err(AddressError::Syntax));
    }

    #[test]
    fn length_limits() {
        let local64 = "a".repeat(64);
        let local65 = "a".repeat(65);
        assert!(rev(&format!("<{local64}@example.com>")).is_ok());
        assert_eq!(
            rev(&format!("<{local65}@example.com>")),
            Err(AddressError::Syntax)
        );
        let label = "a".repeat(63);
        let long_domain = [label.as_str(); 4].join("."); // 255 octets
        assert_eq!(long_domain.len(), 255);
        assert!(is_domain(long_domain.as_bytes(), false));
        assert!(!is_domain(format!("{long_domain}a").as_bytes(), false));
        assert!(!is_domain("a".repeat(64).as_bytes(), false));
        // 256 octets in all with the brackets is the most a path may be.
        let d = format!(
            "{}.{}.{}.{}",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
            "e".repeat(51)
        );
        let ok = format!("<{}@{}>", "a".repeat(10), d);
        assert_eq!(ok.len(), 256);
        assert!(rev(&ok).is_ok());
        let d = format!(
            "{}.{}.{}.{}",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
            "e".repeat(52)
        );
        let over = format!("<{}@{}>", "a".repeat(10), d);
        assert_eq!(over.len(), 257);
        assert_eq!(rev(&over), Err(AddressError::Syntax));
    }

    #[test]
    fn utf8_needs_smtputf8() {
        let p = "<josé@exämple.com>".as_bytes();
        assert_eq!(parse_reverse_path(p, false), Err(AddressError::NeedsUtf8));
        assert!(parse_reverse_path(p, true).is_ok());
        assert_eq!(
            parse_reverse_path(b"<\xff@example.com>", true),
            Err(AddressError::Syntax)
        );
    }

    #[test]
    fn split_path_respects_quotes() {
        assert_eq!(
            split_path(b"<\"a>b\"@c> SIZE=1"),
            Some((&b"<\"a>b\"@c>"[..], &b" SIZE=1"[..]))
        );
        assert_eq!(split_path(b"a@b"), None);
        assert_eq!(split_path(b"<a@b"), None);
    }

    #[test]
    fn address_literals() {
        assert!(is_address_literal(b"[127.0.0.1]"));
        assert!(is_address_literal(b"[IPv6:::1]"));
        assert!(is_address_literal(b"[x-tag:abc]"));
        assert!(!is_address_literal(b"[1.2.3]"));
        assert!(!is_address_literal(b"127.0.0.1"));
        assert!(!is_address_literal(b"[]"));
    }
}
