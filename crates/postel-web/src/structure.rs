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
use mail_parser::{HeaderName, HeaderValue, MessageParser};
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

/// The parser the views use: `Content-Type` and `Content-Disposition`
/// parsed (the structure and the attachments need them), every other
/// field kept raw. The clever value parsers (dates, addresses, encoded
/// words) are where a lenient parser reads past a line end, or decodes
/// `=?us-ascii?q?base64?=` into `base64`: raw, a field ends at its line
/// end, and is what it says. Header values are decoded for display one by
/// one, each within its own bounds ([`crate::mime`]).
pub(crate) fn parser() -> MessageParser {
    MessageParser::new()
        .header_content_type(HeaderName::ContentType)
        .header_content_type(HeaderName::ContentDisposition)
}

/// The value parser [`parser`] uses for a field.
fn parse_value<'x>(stream: &mut MessageStream<'x>, name: &HeaderName<'_>) -> HeaderValue<'x> {
    match name {
        HeaderName::ContentType | HeaderName::ContentDisposition => stream.parse_content_type(),
        _ => stream.parse_raw(),
    }
}

/// A transfer encoding, as the parser tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Encoding {
    #[default]
    None,
    Base64,
    QuotedPrintable,
}

/// What the parser takes from a header section: the last `Content-Type`
/// and the last `Content-Transfer-Encoding` (it reads fields from the end).
#[derive(Default)]
struct Section {
    /// Type, subtype and boundary; None also when the last Content-Type
    /// did not parse as one.
    content_type: Option<(String, Option<String>, Option<String>)>,
    encoding: Encoding,
}

/// What kind of entity a parser state is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A message: the top one, or a nested `message/rfc822`.
    Message,
    /// `multipart/digest`: its parts are messages by default.
    Digest,
    /// Any other multipart.
    Multipart,
}

/// A parser state: the entity, and the delimiter its parts end at.
struct State {
    kind: Kind,
    boundary: Option<Vec<u8>>,
}

/// A saved state, and whether it was saved to open a nested message.
struct Saved {
    state: State,
    for_message: bool,
}

/// What [`parser`] would build from `raw`, walked the way it walks it,
/// with its own stream primitives and value parsers: None if the view may
/// parse it, else the first limit it breaks.
pub(crate) fn problem(raw: &[u8]) -> Option<Problem> {
    let limits = MimeLimits::default();
    let mut stream = MessageStream::new(raw);
    let mut state = State {
        kind: Kind::Message,
        boundary: None,
    };
    let mut stack: Vec<Saved> = Vec::new();
    let (mut parts, mut fields) = (0u64, 0u64);
    'outer: loop {
        let section = match read_section(&mut stream, &limits, &mut fields) {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(p) => return Some(p),
        };
        parts += 1;
        if parts > MAX_PARTS {
            return Some(Problem::TooManyParts);
        }
        let (kind, subtype, boundary) = match &section.content_type {
            Some((k, s, b)) => (Some(k.as_str()), s.as_deref(), b.as_deref()),
            None => (None, None, None),
        };
        // As the parser's `mime_type`: what this entity is.
        let mut message = match kind {
            Some("message") => matches!(subtype, Some("rfc822" | "global")),
            Some(_) => false,
            None => state.kind == Kind::Digest,
        };
        if kind == Some("multipart") {
            match boundary {
                Some(b) if stream.seek_next_part(b.as_bytes()) => {
                    let kind = if subtype == Some("digest") {
                        Kind::Digest
                    } else {
                        Kind::Multipart
                    };
                    let parent = std::mem::replace(
                        &mut state,
                        State {
                            kind,
                            boundary: Some(b.as_bytes().to_vec()),
                        },
                    );
                    stack.push(Saved {
                        state: parent,
                        for_message: false,
                    });
                    if stack.len() > limits.max_depth {
                        return Some(Problem::TooDeep);
                    }
                    stream.skip_crlf();
                    continue;
                }
                // No delimiter ahead: the parser reads it as text.
                _ => message = false,
            }
        }
        if message {
            if section.encoding != Encoding::None {
                return Some(Problem::EncodedMessage);
            }
            let boundary = state.boundary.take();
            let parent = std::mem::replace(
                &mut state,
                State {
                    kind: Kind::Message,
                    boundary,
                },
            );
            stack.push(Saved {
                state: parent,
                for_message: true,
            });
            if stack.len() > limits.max_depth {
                return Some(Problem::TooDeep);
            }
            continue;
        }
        // A leaf: its body runs to the delimiter, as its decoder finds it.
        let delimiter = state.boundary.clone().unwrap_or_default();
        let (end, _) = match section.encoding {
            Encoding::Base64 => stream.decode_base64_mime(&delimiter),
            Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(&delimiter),
            Encoding::None => stream.mime_part(&delimiter),
        };
        if end == usize::MAX {
            let (_, found) = stream.seek_part_end(state.boundary.as_deref());
            if !found {
                state.boundary = None;
            }
        }
        if state.boundary.is_none() {
            if stream.offset() >= raw.len() {
                return None;
            }
            continue;
        }
        loop {
            if state.kind == Kind::Message {
                match stack.pop() {
                    Some(Saved {
                        state: mut parent,
                        for_message: true,
                    }) => {
                        parent.boundary = state.boundary.take();
                        state = parent;
                    }
                    _ => break 'outer,
                }
            }
            if !stream.is_multipart_end() {
                break;
            }
            let Some(saved) = stack.pop() else {
                break 'outer;
            };
            state = saved.state;
            match &state.boundary {
                Some(b) if stream.seek_next_part_offset(b).is_some() => {}
                _ => break 'outer,
            }
        }
    }
    None
}

/// Reads one header section as the parser does, field by field with its
/// own primitives, counting against the limits as it goes. Ok(None): the
/// message ended inside it.
fn read_section(
    stream: &mut MessageStream<'_>,
    limits: &MimeLimits,
    fields: &mut u64,
) -> Result<Option<Section>, Problem> {
    let start = stream.offset();
    let raw = stream.bytes(0..stream.len());
    let (mut lines, mut counted) = (0u64, start);
    let mut section = Section::default();
    loop {
        loop {
            match stream.peek() {
                Some(b'\n') => {
                    stream.next();
                    return Ok(Some(section));
                }
                None => return Ok(None),
                Some(c) if !c.is_ascii_whitespace() => break,
                _ => {
                    stream.next();
                }
            }
        }
        if let Some(name) = stream.parse_header_name() {
            let value = parse_value(stream, &name);
            *fields += 1;
            match name {
                HeaderName::ContentType => {
                    section.content_type = value.as_content_type().map(|c| {
                        (
                            c.ctype().to_owned(),
                            c.subtype().map(str::to_owned),
                            c.attribute("boundary").map(str::to_owned),
                        )
                    });
                }
                HeaderName::ContentTransferEncoding => {
                    section.encoding = match &value {
                        HeaderValue::Text(t) if t.eq_ignore_ascii_case("base64") => {
                            Encoding::Base64
                        }
                        HeaderValue::Text(t) if t.eq_ignore_ascii_case("quoted-printable") => {
                            Encoding::QuotedPrintable
                        }
                        _ => Encoding::None,
                    };
                }
                _ => {}
            }
        } else if stream.is_eof() {
            return Ok(None);
        }
        let now = stream.offset();
        lines += memchr::memchr_iter(b'\n', &raw[counted..now]).count() as u64;
        counted = now;
        if lines > u64::from(limits.max_header_lines)
            || (now - start) as u64 > limits.max_header_bytes
        {
            return Err(Problem::HeaderTooBig);
        }
        if *fields > MAX_FIELDS {
            return Err(Problem::TooManyFields);
        }
    }
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
        // An encoded word is not decoded here, and not by the view's parser:
        // the part is parsed as the plain message it then is, and counted.
        let word = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: =?us-ascii?q?base64?=\r\n\r\n";
        assert_eq!(problem(word), None);
        let deep_word = [word.as_slice(), &chain(200)].concat();
        assert_eq!(problem(&deep_word), Some(Problem::TooDeep));
        // A Date field that would swallow the blank line under the full
        // parser is raw here: the section ends where it seems to.
        let date = b"Subject: x\r\nDate: -a\r\n\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
        assert_eq!(problem(date), None);
        // A form feed after a delimiter is white space, as the parser skips it.
        let ff = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\x0c\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n";
        assert_eq!(problem(ff), Some(Problem::EncodedMessage));
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

    /// What the parser built: the deepest nesting of message parts, and
    /// whether any message part was decoded (base64 or quoted-printable)
    /// and parsed again. Walked without recursion. None if the parser hit
    /// one of its `debug_assert!`s (compiled out of release builds, and
    /// contained by the view's own thread in debug ones).
    fn built(raw: &[u8]) -> Option<(usize, bool)> {
        use mail_parser::{Encoding, PartType};
        let parsed = std::panic::catch_unwind(|| parser().parse(raw)).ok()?;
        let Some(m) = parsed else {
            return Some((0, false));
        };
        let (mut deepest, mut encoded) = (0, false);
        let mut todo = vec![(&m, 0usize)];
        while let Some((msg, depth)) = todo.pop() {
            deepest = deepest.max(depth);
            for part in &msg.parts {
                if let PartType::Message(inner) = &part.body {
                    encoded |= part.encoding != Encoding::None;
                    todo.push((inner, depth + 1));
                }
            }
        }
        Some((deepest, encoded))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// The check and the parser agree: whatever the check lets
        /// through, the parser builds no deep nesting and parses no
        /// encoded message part. Messages are made of the fragments that
        /// broke a first version, and their neighbours.
        #[test]
        fn what_the_check_lets_through_the_parser_builds_safely(
            parts in proptest::collection::vec((0usize..24, proptest::bool::ANY), 0..300),
        ) {
            const FRAGMENTS: [&str; 24] = [
                "Content-Type: message/rfc822",
                "Content-Type: message/global",
                "Content-Type: multipart/mixed; boundary=b",
                "Content-Type: multipart/digest; boundary=d",
                "Content-Type: text/plain",
                "Content-Type:",
                " message/rfc822",
                "Content-Transfer-Encoding: base64",
                "Content-Transfer-Encoding: quoted-printable",
                "Content-Transfer-Encoding: =?us-ascii?q?base64?=",
                "Date: -a",
                "Subject: x",
                " folded",
                "junk",
                "",
                " ",
                "--b",
                "--b--",
                "--d",
                "--d--",
                "x--bContent-Type: message/rfc822",
                "--b\x0c",
                "QUFBQQ==",
                "Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822",
            ];
            let mut raw = Vec::new();
            for (i, crlf) in parts {
                raw.extend_from_slice(FRAGMENTS[i].as_bytes());
                raw.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            if problem(&raw).is_none()
                && let Some((deepest, encoded)) = built(&raw)
            {
                proptest::prop_assert!(deepest <= 101, "depth {deepest}");
                proptest::prop_assert!(!encoded, "an encoded message part was parsed");
            }
        }
    }
}
