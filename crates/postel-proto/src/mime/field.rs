//! Reading header fields as a lenient parser does: a field's name (white
//! space inside ignored), a Content-Type's type, subtype and boundary.

use super::MAX_BOUNDARY;

/// `name: value` as a lenient parser reads it: white space in the name is
/// ignored, and a colon before the name is skipped. None: not a field.
pub(super) fn field(line: &[u8]) -> Option<(Name, &[u8])> {
    let mut name = Name::default();
    for (i, &b) in line.iter().enumerate() {
        match b {
            b':' if name.len > 0 => return Some((name, &line[i + 1..])),
            b':' => {}
            _ if b.is_ascii_whitespace() => {}
            _ => name.push(b),
        }
    }
    None
}

/// A field name as read, on the stack: only its first octets matter (the
/// two names looked for are 12 and 25 long), so no allocation per line.
#[derive(Default)]
pub(super) struct Name {
    buf: [u8; 32],
    pub(super) len: usize,
}

impl Name {
    pub(super) fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
        }
        self.len += 1;
    }

    /// Returns true if and only if the name is `want`, ignoring case.
    pub(super) fn is(&self, want: &[u8]) -> bool {
        self.len == want.len() && self.buf[..self.len.min(32)].eq_ignore_ascii_case(want)
    }
}

/// Returns true if and only if a Content-Type value names
/// `message/rfc822` or `message/global` (the types whose body is a whole
/// message again).
pub(super) fn is_message_type(value: &[u8]) -> bool {
    let (kind, subtype) = media_type(value);
    kind.eq_ignore_ascii_case(b"message")
        && (subtype.eq_ignore_ascii_case(b"rfc822") || subtype.eq_ignore_ascii_case(b"global"))
}

/// The type and subtype of a Content-Type value, white space and comments
/// around them ignored.
pub(super) fn media_type(value: &[u8]) -> (&[u8], &[u8]) {
    let v = skip_cfws(value);
    let end = v
        .iter()
        .position(|&b| b == b'/' || b == b';' || b == b'(' || b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let kind = &v[..end];
    let rest = skip_cfws(&v[end..]);
    let Some(rest) = rest.strip_prefix(b"/") else {
        return (kind, b"");
    };
    let rest = skip_cfws(rest);
    let end = rest
        .iter()
        .position(|&b| b == b';' || b == b'(' || b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    (kind, &rest[..end])
}

/// Skips white space and (possibly nested) comments.
pub(super) fn skip_cfws(mut v: &[u8]) -> &[u8] {
    loop {
        v = trim_start(v);
        if v.first() != Some(&b'(') {
            return v;
        }
        let mut depth = 0usize;
        let mut end = v.len();
        for (i, &b) in v.iter().enumerate() {
            match b {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        v = &v[end..];
    }
}

/// The `boundary` parameter of a Content-Type value, quoted or not.
pub(super) fn boundary(value: &[u8]) -> Option<Vec<u8>> {
    let mut rest = value;
    while let Some(i) = rest.iter().position(|&b| b == b';') {
        rest = trim_start(&rest[i + 1..]);
        let Some(eq) = rest.iter().position(|&b| b == b'=') else {
            break;
        };
        if !trim(&rest[..eq]).eq_ignore_ascii_case(b"boundary") {
            continue;
        }
        let v = trim_start(&rest[eq + 1..]);
        let b = match v.strip_prefix(b"\"") {
            Some(q) => {
                let mut out = Vec::new();
                let mut it = q.iter();
                while let Some(&c) = it.next() {
                    match c {
                        b'"' => break,
                        b'\\' => out.extend(it.next()),
                        _ => out.push(c),
                    }
                }
                out
            }
            None => {
                let end = v
                    .iter()
                    .position(|&b| b == b';' || b.is_ascii_whitespace())
                    .unwrap_or(v.len());
                v[..end].to_vec()
            }
        };
        return (!b.is_empty() && b.len() <= MAX_BOUNDARY).then_some(b);
    }
    None
}

pub(super) fn trim_start(v: &[u8]) -> &[u8] {
    let i = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    &v[i..]
}

pub(super) fn trim(v: &[u8]) -> &[u8] {
    let v = trim_start(v);
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &v[..end]
}
