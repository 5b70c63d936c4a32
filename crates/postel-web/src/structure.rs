//! The structure check a view runs before it parses a stored message: what
//! the parser *would* build, found without building it, without recursion,
//! and in memory that does not grow with the message.
//!
//! Why a second check, when SMTP intake already bounds nesting: intake
//! reads MIME as RFC 2046 and Postfix do (delimiters at the start of a
//! line); the view's parser (`mail-parser`) is more lenient, and what it
//! builds is what can hurt. It ends a part at `--boundary` anywhere in a
//! line, takes the last `Content-Type` of a section, and parses a
//! base64 or quoted-printable `message/rfc822` part as a message again,
//! copying the decoded text once per level of what is inside. A 1 MB
//! message built that way needed gigabytes and a stack no thread has. So
//! this check follows the parser's own rules, uses its own `Content-Type`
//! parser, and refuses:
//! - nesting deeper than the limit;
//! - any transfer-encoded message part (RFC 2046 5.2.1 forbids them; the
//!   parser's copy per level makes them a memory bomb);
//! - header sections, parts or header fields past their limits.
//!
//! Messages stored before intake had limits, and messages that intake let
//! through, are covered alike.

use mail_parser::parsers::MessageStream;
use memchr::memmem;
use postel_proto::mime::MimeLimits;

/// Why a view does not parse a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Parts nested past the depth limit.
    TooDeep,
    /// A header section past its line or octet limit.
    HeaderTooBig,
    /// A `message/*` part with a base64 or quoted-printable encoding.
    EncodedMessage,
    /// More entities than [`MAX_PARTS`].
    TooManyParts,
    /// More header fields than [`MAX_FIELDS`], over all sections.
    TooManyFields,
}

/// Entities (the message, its parts, nested messages) a view parses at most.
pub(crate) const MAX_PARTS: u64 = 2_000;
/// Header fields a view parses at most, over every header section.
pub(crate) const MAX_FIELDS: u64 = 20_000;

/// What the parser would meet in one header section.
#[derive(Default)]
struct Section {
    /// The last `Content-Type` field's value, raw (folding kept).
    content_type: Option<(usize, usize)>,
    /// The last `Content-Transfer-Encoding` is base64 or quoted-printable.
    encoded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Multipart { boundary: Vec<u8>, digest: bool },
    Message,
}

/// The structure of `raw` as the view's parser reads it; None if it may
/// be parsed.
pub(crate) fn problem(raw: &[u8]) -> Option<Problem> {
    let limits = MimeLimits::default();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut entities, mut fields) = (1u64, 0u64);
    let mut pos = 0;
    loop {
        // A header section starts at `pos`.
        let (section, end, n) = match read_section(raw, pos, &limits) {
            Ok(s) => s,
            Err(p) => return Some(p),
        };
        fields += n;
        if fields > MAX_FIELDS {
            return Some(Problem::TooManyFields);
        }
        pos = end;
        let digest_parent = matches!(stack.last(), Some(Frame::Multipart { digest: true, .. }));
        let ct = section.content_type.map(|(a, b)| {
            let mut s = MessageStream::new(&raw[a..b]);
            s.parse_content_type()
        });
        let ct = ct.as_ref().and_then(|v| v.as_content_type());
        let kind = ct.map(|c| c.ctype().to_ascii_lowercase());
        let sub = ct.and_then(|c| c.subtype()).map(str::to_ascii_lowercase);
        let boundary = ct.and_then(|c| c.attribute("boundary")).map(str::as_bytes);
        let mut next = None;
        if kind.as_deref() == Some("multipart")
            && let Some(b) = boundary.filter(|b| !b.is_empty())
        {
            // The parser opens a multipart only if its delimiter follows.
            let delimiter = [b"--".as_slice(), b].concat();
            if let Some(at) = memmem::find(&raw[pos..], &delimiter) {
                stack.push(Frame::Multipart {
                    boundary: b.to_vec(),
                    digest: sub.as_deref() == Some("digest"),
                });
                pos = skip_crlf(raw, pos + at + delimiter.len());
                next = Some(());
            }
        }
        let message = match (&kind, &sub) {
            (Some(k), Some(s)) => k == "message" && (s == "rfc822" || s == "global"),
            (None, _) => digest_parent,
            _ => false,
        };
        if next.is_none() && message {
            if section.encoded {
                return Some(Problem::EncodedMessage);
            }
            stack.push(Frame::Message);
            next = Some(());
        }
        if stack.len() > limits.max_depth {
            return Some(Problem::TooDeep);
        }
        if next.is_some() {
            entities += 1;
        } else {
            // A body: it runs to the innermost multipart's delimiter.
            match next_part(raw, &mut pos, &mut stack) {
                Some(()) => entities += 1,
                None => return None,
            }
        }
        if entities > MAX_PARTS {
            return Some(Problem::TooManyParts);
        }
    }
}

/// Moves past the body at `pos` to the header section of the next part,
/// closing multiparts on the way. None: the message ends first.
fn next_part(raw: &[u8], pos: &mut usize, stack: &mut Vec<Frame>) -> Option<()> {
    loop {
        let at = stack
            .iter()
            .rposition(|f| matches!(f, Frame::Multipart { .. }))?;
        let Frame::Multipart { boundary, .. } = &stack[at] else {
            return None;
        };
        let delimiter = [b"--".as_slice(), boundary].concat();
        let found = memmem::find(&raw[*pos..], &delimiter)?;
        *pos += found + delimiter.len();
        // What was open inside this part ends with it.
        stack.truncate(at + 1);
        let rest = &raw[*pos..];
        if rest.starts_with(b"--") {
            *pos += 2;
            stack.pop();
            continue;
        }
        *pos = match rest {
            [b'\r', b'\n', ..] => *pos + 2,
            [b'\n', ..] => *pos + 1,
            [c, ..] if c.is_ascii_whitespace() => skip_crlf(raw, *pos),
            _ => *pos,
        };
        return Some(());
    }
}

/// Skips CR, space and tab, then one LF if there is one.
fn skip_crlf(raw: &[u8], mut pos: usize) -> usize {
    while let Some(&c) = raw.get(pos) {
        match c {
            b'\r' | b' ' | b'\t' => pos += 1,
            b'\n' => return pos + 1,
            _ => break,
        }
    }
    pos
}

/// Reads the header section at `pos`: returns it, where it ends (after
/// its blank line), and how many fields it has.
fn read_section(
    raw: &[u8],
    mut pos: usize,
    limits: &MimeLimits,
) -> Result<(Section, usize, u64), Problem> {
    let start = pos;
    let mut section = Section::default();
    let (mut lines, mut fields) = (0u32, 0u64);
    // The field a continuation line belongs to, if one is open.
    let mut open: Option<Open> = None;
    // The last Content-Transfer-Encoding's value, unfolded.
    let mut cte = Vec::new();
    while pos < raw.len() {
        let end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        lines += 1;
        if lines > limits.max_header_lines || (end - start) as u64 > limits.max_header_bytes {
            return Err(Problem::HeaderTooBig);
        }
        pos = end;
        // A line that starts with white space continues an open field,
        // even if it is nothing but white space (a parser reading a value
        // reads on over it); otherwise such a line ends the section.
        if matches!(line[0], b' ' | b'\t') && open.is_some() {
            match open {
                Some(Open::ContentType) => {
                    if let Some(ct) = section.content_type.as_mut() {
                        ct.1 = end;
                    }
                }
                Some(Open::Encoding) => cte.extend_from_slice(line),
                _ => {}
            }
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            break;
        }
        let Some((name, value_at)) = field_name(line) else {
            open = None;
            continue;
        };
        fields += 1;
        let value = end - line.len() + value_at;
        open = Some(if name.eq_ignore_ascii_case(b"content-type") {
            section.content_type = Some((value, end));
            Open::ContentType
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            cte.clear();
            cte.extend_from_slice(&raw[value..end]);
            Open::Encoding
        } else {
            Open::Other
        });
    }
    section.encoded = encoded(&cte);
    Ok((section, pos, fields))
}

/// Which field continuation lines belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    ContentType,
    Encoding,
    Other,
}

fn encoded(value: &[u8]) -> bool {
    let v: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    v.eq_ignore_ascii_case(b"base64") || v.eq_ignore_ascii_case(b"quoted-printable")
}

/// The name of a header field as the parser reads it (white space inside
/// ignored, a colon before any name skipped), and where its value starts.
fn field_name(line: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut name = Vec::new();
    for (i, &b) in line.iter().enumerate() {
        match b {
            b':' if !name.is_empty() => return Some((name, i + 1)),
            b':' => {}
            _ if b.is_ascii_whitespace() => {}
            _ if name.len() < 64 => name.push(b.to_ascii_lowercase()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<u8> {
        b"Content-Type: message/rfc822\r\n\r\n".repeat(n)
    }

    #[test]
    fn plain_and_ordinary_messages_pass() {
        assert_eq!(problem(b"Subject: a\r\n\r\nhello\r\n"), None);
        let m = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: fwd\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO\r\n--b--\r\n";
        assert_eq!(problem(m), None);
        assert_eq!(problem(&chain(99)), None);
    }

    #[test]
    fn deep_chains_are_refused() {
        assert_eq!(problem(&chain(101)), Some(Problem::TooDeep));
        assert_eq!(problem(&chain(50_000)), Some(Problem::TooDeep));
    }

    #[test]
    fn an_encoded_message_part_is_refused_however_it_is_hidden() {
        let direct = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\nSubject: x\r\n\r\n";
        assert_eq!(problem(direct), Some(Problem::EncodedMessage));
        // The last Content-Type counts, as the parser takes it.
        let last = b"Content-Type: text/plain\r\nContent-Type: message/global\r\nContent-Transfer-Encoding:\r\n base64\r\n\r\nAAAA\r\n";
        assert_eq!(problem(last), Some(Problem::EncodedMessage));
        // A delimiter in the middle of a line starts a part there.
        let mid = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\ntext--zzContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
        assert_eq!(problem(mid), Some(Problem::EncodedMessage));
        // RFC 2231 continuations in the boundary, as the parser reads them.
        let split = b"Content-Type: multipart/mixed; boundary*0=\"a\"; boundary*1=\"b\"\r\n\r\n--ab\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
        assert_eq!(problem(split), Some(Problem::EncodedMessage));
        // A line of white space inside a field does not end the section.
        let folded = b"Subject: a\r\n \r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
        assert_eq!(problem(folded), Some(Problem::EncodedMessage));
        // A digest's parts are messages unless they say otherwise.
        let digest = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--d--\r\n";
        assert_eq!(problem(digest), Some(Problem::EncodedMessage));
    }

    #[test]
    fn a_multipart_whose_delimiter_never_comes_is_text() {
        // The parser reads the inner part as text up to the outer
        // delimiter; the part after it is still seen.
        let m = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/mixed; boundary=never\r\n\r\nx\r\n--o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--o--\r\n";
        assert_eq!(problem(m), Some(Problem::EncodedMessage));
    }

    #[test]
    fn sizes_are_bounded() {
        let mut lines = b"X:a\r\n".repeat(10_001);
        lines.extend_from_slice(b"\r\nbody\r\n");
        assert_eq!(problem(&lines), Some(Problem::HeaderTooBig));
        let parts = [
            b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".as_slice(),
            &b"--p\r\n\r\nx\r\n".repeat(3_000),
        ]
        .concat();
        assert_eq!(problem(&parts), Some(Problem::TooManyParts));
        let fields = [
            b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".as_slice(),
            &[b"--p\r\n".as_slice(), &b"X:a\r\n".repeat(100), b"\r\nx\r\n"]
                .concat()
                .repeat(300),
        ]
        .concat();
        assert_eq!(problem(&fields), Some(Problem::TooManyFields));
    }
}
