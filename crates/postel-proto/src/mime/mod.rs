//! A streaming check of a message's MIME structure (RFC 2045, RFC 2046):
//! how deep multipart and `message/rfc822` entities nest, how many entities
//! there are, and how large each header section is.
//!
//! Why: a MIME tree is easy to make deep and cheap to send. A 1.6 MB message
//! can nest `message/rfc822` 50,000 times, and code that walks or drops such
//! a tree recursively overflows its stack, which in Rust aborts the whole
//! process. Postfix bounds nesting (`mime_nesting_limit`, 100) with a state
//! machine that never recurses; this is the same idea. The SMTP session runs
//! it over content as it arrives and refuses a message past the limits at
//! its end (`550 5.6.0`, `552 5.3.4`); the web inbox runs it over a stored
//! message before it parses anything.
//!
//! Invariant: memory is bounded whatever the input: one line prefix of
//! [`LINE_KEEP`] octets, one `Content-Type` value of at most [`FIELD_KEEP`],
//! and one frame per open entity, never more than the depth limit plus one.
//! Nothing recurses.
//!
//! The reading of header sections follows what a lenient parser (the
//! `mail-parser` crate the web side uses) does, so that the two count the
//! same nesting: a section ends at a line of white space only; a line
//! without a colon is skipped; white space inside a field name is ignored.
//! A boundary is recognised at the start of a line, and only the innermost
//! multipart's (RFC 2046 5.1.2).
//!
//! Not here: decoding, or any header other than `Content-Type` and
//! `Content-Transfer-Encoding`.

use memchr::memchr;

mod field;
#[cfg(test)]
mod tests;

use field::{boundary, field, is_message_type, media_type, trim};

/// The first octets of a line kept for inspection: enough for any header
/// field name and a boundary delimiter (RFC 2046: boundaries are at most 70
/// characters).
const LINE_KEEP: usize = 1024;
/// The most of one `Content-Type` value kept (unfolded). Longer values are
/// read no further: a real one is far shorter.
const FIELD_KEEP: usize = 4096;
/// The longest boundary taken as one (RFC 2046 5.1.1 allows 70).
const MAX_BOUNDARY: usize = 200;

/// How far a message's structure may go. Defaults follow Postfix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MimeLimits {
    /// Entities open inside each other (a multipart, or a `message/rfc822`
    /// part, inside another). Default 100, Postfix's `mime_nesting_limit`.
    pub max_depth: usize,
    /// Lines in one header section, continuation lines included. Default
    /// 10,000: a real message has tens.
    pub max_header_lines: u32,
    /// Octets in one header section. Default 1 MiB (Postfix bounds one
    /// header at 100 KiB with `header_size_limit`; this bounds them all).
    pub max_header_bytes: u64,
}

impl Default for MimeLimits {
    fn default() -> MimeLimits {
        MimeLimits {
            max_depth: 100,
            max_header_lines: 10_000,
            max_header_bytes: 1024 * 1024,
        }
    }
}

/// Why a message's structure is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MimeProblem {
    /// Nesting past [`MimeLimits::max_depth`]: `550 5.6.0`.
    TooDeep,
    /// A header section past its line or octet limit: `552 5.3.4`.
    HeaderTooBig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    /// A multipart entity, with its boundary; `digest`: parts without a
    /// Content-Type are `message/rfc822` (RFC 2046 5.1.5).
    Multipart { boundary: Vec<u8>, digest: bool },
    /// A `message/rfc822` (or `message/global`) entity.
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In a header section.
    Headers,
    /// In a body: looking for the innermost boundary.
    Body,
    /// In a body that nothing can end (no multipart is open): the rest of
    /// the message cannot change the verdict, and is not looked at.
    Rest,
}

/// Which field a continuation line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Other,
    ContentType,
    Encoding,
}

/// The structure check, fed the content in pieces of any size.
#[derive(Debug, Clone)]
pub struct MimeScanner {
    limits: MimeLimits,
    place: Place,
    /// The first [`LINE_KEEP`] octets of the line being read.
    line: Vec<u8>,
    /// The line being read was longer than what `line` holds.
    line_cut: bool,
    /// The current header section so far.
    header_lines: u32,
    header_bytes: u64,
    field: Field,
    /// A field is open: a line starting with white space continues it.
    open: bool,
    /// The section's last `Content-Type`, unfolded (bounded).
    content_type: Vec<u8>,
    seen_content_type: bool,
    /// Any `Content-Type` of the section names a message type.
    any_message: bool,
    /// The section's transfer encoding is base64 or quoted-printable.
    encoded: bool,
    stack: Vec<Frame>,
    deepest: usize,
    entities: u64,
    header_fields: u64,
    problem: Option<MimeProblem>,
}

impl MimeScanner {
    /// A scanner at the start of a message's header section.
    pub fn new(limits: MimeLimits) -> MimeScanner {
        MimeScanner {
            limits,
            place: Place::Headers,
            line: Vec::with_capacity(128),
            line_cut: false,
            header_lines: 0,
            header_bytes: 0,
            field: Field::Other,
            open: false,
            content_type: Vec::new(),
            seen_content_type: false,
            any_message: false,
            encoded: false,
            stack: Vec::new(),
            deepest: 0,
            entities: 1,
            header_fields: 0,
            problem: None,
        }
    }

    /// Reads the next piece of the message.
    pub fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() && self.problem.is_none() && self.place != Place::Rest {
            if self.place == Place::Headers {
                self.header_bytes += input.len() as u64;
            }
            match memchr(b'\n', input) {
                Some(i) => {
                    self.keep(&input[..i]);
                    if self.place == Place::Headers {
                        // Only what belongs to this line counts.
                        self.header_bytes -= (input.len() - i - 1) as u64;
                    }
                    input = &input[i + 1..];
                    self.end_of_line();
                }
                None => {
                    self.keep(input);
                    input = &[];
                }
            }
        }
    }

    /// The message ended: reads its last line if it had no line end.
    pub fn finish(&mut self) {
        if !self.line.is_empty() || self.line_cut {
            self.end_of_line();
        }
    }

    /// What is wrong, if anything (sticky: the first problem found).
    pub fn problem(&self) -> Option<MimeProblem> {
        self.problem
    }

    /// The deepest nesting seen (0: a message that is not multipart).
    pub fn depth(&self) -> usize {
        self.deepest
    }

    /// Entities seen: the message itself, and every part and nested message.
    pub fn entities(&self) -> u64 {
        self.entities
    }

    /// Header fields seen, over every header section.
    pub fn header_fields(&self) -> u64 {
        self.header_fields
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = LINE_KEEP - self.line.len();
        if bytes.len() > room {
            self.line.extend_from_slice(&bytes[..room]);
            self.line_cut = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_of_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        let cut = std::mem::replace(&mut self.line_cut, false);
        match self.place {
            Place::Headers => self.header_line(&line, cut),
            Place::Body => self.body_line(&line),
            Place::Rest => {}
        }
        line.clear();
        self.line = line;
    }

    fn header_line(&mut self, line: &[u8], cut: bool) {
        self.header_lines += 1;
        if self.header_lines > self.limits.max_header_lines
            || self.header_bytes > self.limits.max_header_bytes
        {
            self.problem = Some(MimeProblem::HeaderTooBig);
            return;
        }
        // A line starting with white space continues an open field (even
        // a line of nothing else); otherwise white space alone ends the
        // section.
        if matches!(line.first(), Some(b' ' | b'\t')) && self.open {
            return self.field_text(line);
        }
        if !cut && line.iter().all(u8::is_ascii_whitespace) {
            return self.end_of_headers();
        }
        let Some((name, value)) = field(line) else {
            // Not a field: skipped, as a lenient parser does.
            self.field = Field::Other;
            self.open = false;
            return;
        };
        self.open = true;
        self.header_fields += 1;
        self.field = if name.is(b"content-type") {
            Field::ContentType
        } else if name.is(b"content-transfer-encoding") {
            Field::Encoding
        } else {
            Field::Other
        };
        match self.field {
            Field::ContentType => {
                if is_message_type(value) {
                    self.any_message = true;
                }
                // The last one decides the structure, as parsers read
                // fields from the end; any one naming a message type
                // counts as a level above.
                self.seen_content_type = true;
                self.content_type.clear();
                self.field_text(value);
            }
            Field::Encoding => self.field_text(value),
            Field::Other => {}
        }
    }

    /// Text of the open field: the first line of its value, or a
    /// continuation line.
    fn field_text(&mut self, text: &[u8]) {
        match self.field {
            Field::ContentType => {
                let room = FIELD_KEEP.saturating_sub(self.content_type.len());
                self.content_type
                    .extend_from_slice(&text[..text.len().min(room)]);
            }
            Field::Encoding => {
                let t = trim(text);
                if t.eq_ignore_ascii_case(b"base64") || t.eq_ignore_ascii_case(b"quoted-printable")
                {
                    self.encoded = true;
                }
            }
            Field::Other => {}
        }
    }

    fn end_of_headers(&mut self) {
        let digest_parent = matches!(
            self.stack.last(),
            Some(Frame::Multipart { digest: true, .. })
        );
        let (kind, subtype) = media_type(&self.content_type);
        let frame = if self.seen_content_type && kind.eq_ignore_ascii_case(b"multipart") {
            boundary(&self.content_type).map(|boundary| Frame::Multipart {
                boundary,
                digest: subtype.eq_ignore_ascii_case(b"digest"),
            })
        } else if self.any_message
            || is_message_type(&self.content_type)
            || !self.seen_content_type && digest_parent
        {
            Some(Frame::Message)
        } else {
            None
        };
        // An encoded message is opaque here: a level, but not read into.
        let opaque = frame == Some(Frame::Message) && self.encoded;
        self.header_lines = 0;
        self.header_bytes = 0;
        self.field = Field::Other;
        self.open = false;
        self.content_type.clear();
        self.seen_content_type = false;
        self.any_message = false;
        self.encoded = false;
        match frame {
            Some(f) => {
                self.stack.push(f);
                self.deepest = self.deepest.max(self.stack.len());
                if self.stack.len() > self.limits.max_depth {
                    self.problem = Some(MimeProblem::TooDeep);
                    return;
                }
                if self.stack.last() == Some(&Frame::Message) && !opaque {
                    // The nested message's own header section starts now.
                    self.entities += 1;
                    self.place = Place::Headers;
                } else {
                    self.place = Place::Body;
                }
            }
            None => self.place = Place::Body,
        }
        if self.place == Place::Body && self.innermost_multipart().is_none() {
            self.place = Place::Rest;
        }
    }

    fn innermost_multipart(&self) -> Option<&Frame> {
        self.stack
            .iter()
            .rev()
            .find(|f| matches!(f, Frame::Multipart { .. }))
    }

    /// A body line: only a delimiter of the innermost multipart matters.
    fn body_line(&mut self, line: &[u8]) {
        let Some(rest) = line.strip_prefix(b"--") else {
            return;
        };
        let Some(at) = self
            .stack
            .iter()
            .rposition(|f| matches!(f, Frame::Multipart { .. }))
        else {
            self.place = Place::Rest;
            return;
        };
        let Frame::Multipart { boundary, .. } = &self.stack[at] else {
            return;
        };
        let Some(after) = rest.strip_prefix(boundary.as_slice()) else {
            return;
        };
        let close = after.starts_with(b"--");
        // Whatever was open inside this multipart's part ends here.
        self.stack.truncate(at + 1);
        if close {
            self.stack.pop();
            if self.innermost_multipart().is_none() {
                self.place = Place::Rest;
            }
        } else {
            self.entities += 1;
            self.place = Place::Headers;
        }
    }
}

/// Checks a whole message at once.
pub fn check(message: &[u8], limits: MimeLimits) -> MimeScanner {
    let mut s = MimeScanner::new(limits);
    s.feed(message);
    s.finish();
    s
}
